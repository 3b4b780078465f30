"""A result of wide rows streams in smaller batches: DuckDB's 131,072-row batches of 3,000
numbers were 3 GB each, held at once while written. A batch now holds about
``BATCH_BYTES``; a result of narrow rows keeps the full batch size (the fast path).

Observed through the Parquet file, which gets a row group per batch."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pyarrow.parquet as pq

from loopwright.sql.duckdb import BATCH_BYTES, DuckDBBackend, batch_rows_for

COLUMNS = 600
ROWS = 12_000


async def _row_groups(sql: str, workspace: Path) -> list[int]:
    backend = DuckDBBackend(":memory:")
    try:
        result = await backend.query(
            sql, str(workspace / "w.csv"), str(workspace / "w.parquet"), max_rows=10**7
        )
    finally:
        await backend.aclose()
    assert not result.truncated
    meta = pq.ParquetFile(workspace / "w.parquet").metadata
    return [meta.row_group(i).num_rows for i in range(meta.num_row_groups)]


async def test_wide_rows_are_written_in_batches_of_bounded_size(tmp_path: Path) -> None:
    # 600 DECIMAL columns: 16 bytes a value in Arrow, 9,600 a row
    columns = ", ".join(f"range * {i}.5 AS c{i}" for i in range(COLUMNS))
    groups = await _row_groups(f"SELECT {columns} FROM range({ROWS})", tmp_path)
    per_batch = BATCH_BYTES // (COLUMNS * 16)
    assert per_batch < ROWS  # the old single batch would hold them all
    assert sum(groups) == ROWS
    assert max(groups) <= per_batch
    assert len(groups) == -(-ROWS // per_batch)
    frame = pl.read_parquet(tmp_path / "w.parquet", columns=["c0", f"c{COLUMNS - 1}"])
    last = ROWS - 1
    assert frame.row(last) == (last * 0.5, last * (COLUMNS - 1 + 0.5))
    csv = pl.read_csv(tmp_path / "w.csv", columns=[f"c{COLUMNS - 1}"])
    assert csv.height == ROWS
    assert float(csv[f"c{COLUMNS - 1}"][last]) == last * (COLUMNS - 1 + 0.5)


async def test_narrow_rows_keep_the_full_batch(tmp_path: Path) -> None:
    groups = await _row_groups(
        "SELECT range AS id, range * 0.5 AS half FROM range(200000)", tmp_path
    )
    assert sum(groups) == 200_000
    assert groups[0] >= 131_072  # never cut finer than the full batch


def test_the_batch_size_follows_the_row_width() -> None:
    assert batch_rows_for(["bigint", "varchar", "double"], 131_072) == 131_072
    assert batch_rows_for(["double"] * 3_000, 131_072) == BATCH_BYTES // 24_000
    assert batch_rows_for(["list"] * 100_000, 131_072) == 1_024  # never fewer than that
    assert batch_rows_for(["double"] * 3_000, 64) == 64  # never more than asked for
