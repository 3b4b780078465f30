"""Wide values inside one column count at their width when a result's batch size is chosen:
a fixed-size array of 2,048 numbers (an embedding) is 16 KB a row, not one value of
``_OTHER_BYTES``; a struct is its fields, a list at least its element."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow.parquet as pq

from loopwright.sql.duckdb import BATCH_BYTES, DuckDBBackend, batch_rows_for

WIDTH = 2_048
ROWS = 9_000


def _types(sql: str) -> list[duckdb.DuckDBPyType]:
    with duckdb.connect() as con:
        return list(con.sql(sql).types)


def test_nested_values_count_at_the_width_of_what_they_hold() -> None:
    [array] = _types(f"SELECT array_value(0.5::DOUBLE)::DOUBLE[{WIDTH}] FROM range(0) LIMIT 0")
    assert batch_rows_for([array], 131_072) == BATCH_BYTES // (WIDTH * 8)
    fields = ", ".join(f"'f{i}': {i}.0::DOUBLE" for i in range(1_000))
    [struct] = _types(f"SELECT {{{fields}}}")
    assert batch_rows_for([struct], 131_072) == BATCH_BYTES // 8_000
    [listed] = _types(f"SELECT [{{{fields}}}]")  # a list holds at least one such struct
    assert batch_rows_for([listed], 131_072) == BATCH_BYTES // 8_000
    [narrow] = _types("SELECT [1, 2]")
    assert batch_rows_for([narrow, "bigint"], 131_072) == 131_072
    assert batch_rows_for(["a type DuckDB adds tomorrow"], 131_072) == 131_072


async def test_a_result_of_wide_arrays_is_written_in_batches_of_bounded_size(
    tmp_path: Path,
) -> None:
    backend = DuckDBBackend(":memory:")
    values = f"list_transform(range({WIDTH}), lambda x: (x + range)::DOUBLE)"
    sql = f"SELECT {values}::DOUBLE[{WIDTH}] AS v"
    try:
        result = await backend.query(
            f"{sql} FROM range({ROWS})",
            str(tmp_path / "w.csv"),
            str(tmp_path / "w.parquet"),
            max_rows=10**7,
        )
    finally:
        await backend.aclose()
    assert not result.truncated
    meta = pq.ParquetFile(tmp_path / "w.parquet").metadata
    groups = [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]
    assert sum(groups) == ROWS
    assert max(groups) <= BATCH_BYTES // (WIDTH * 8)  # the old batch held all 9,000 rows
    last = pq.read_table(tmp_path / "w.parquet").column("v")[ROWS - 1].as_py()
    assert last[0] == ROWS - 1
    assert last[-1] == ROWS - 1 + WIDTH - 1
