"""The SQL tool on a real DuckDB file, opened read-only."""

from __future__ import annotations

import asyncio
import csv as csvlib
import datetime as dt
import functools
import os
import sys
import threading
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import duckdb
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal

from loopwright.sql import (
    DuckDBBackend,
    Interrupter,
    QueryRefused,
    ResultFileError,
    SQLError,
    connect,
)
from loopwright.sql.base import BUSY_WORKER, IDLE_WORKER, Workers, Written, run_in_worker
from loopwright.sql.duckdb import open_read_only
from loopwright.sql.files import RECLAIM_THREAD
from loopwright.sql.output import INLINE_ROWS, PIECE_ROWS, write_result
from loopwright.tools.sql import SQLTool

from .conftest import unholdable_intervals

HUMIRA_CA = """
SELECT prescriber_npi_nbr, COUNT(*) AS rx_count
FROM rx_claims
WHERE ndc_drug_nm = 'HUMIRA' AND prescriber_npi_state_cd = 'CA'
GROUP BY prescriber_npi_nbr
ORDER BY rx_count DESC, prescriber_npi_nbr
LIMIT 10
"""


def reference(db: Path, sql: str) -> pl.DataFrame:
    """The same query run by DuckDB directly, on its own connection."""
    with duckdb.connect(str(db), read_only=True) as connection:
        return connection.sql(sql).pl()


async def run(tool: SQLTool, sql: str, name: str = "result") -> dict[str, object]:
    result = await tool.execute({"sql": sql, "dataset_name": name, "description": "test"})
    return dict(result)


def snapshot(path: Path) -> bytes:
    return path.read_bytes()


def count_lines(path: Path) -> int:
    lines = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            lines += chunk.count(b"\n")
    return lines


def wait_for_a_worker() -> None:
    while not workers():
        time.sleep(0.005)


def workers() -> list[threading.Thread]:
    """The threads running a query, writing a file or stopping one (an idle worker, kept for
    the next query, runs nothing; nor does the one thread that frees replaced files)."""
    return [
        t
        for t in threading.enumerate()
        if t.name.startswith("loopwright-") and t.name not in (IDLE_WORKER, RECLAIM_THREAD)
    ]


def workers_left() -> list[str]:
    """The query threads still running once they have had a moment to return."""
    deadline = time.monotonic() + 10
    while (busy := workers()) and time.monotonic() < deadline:
        time.sleep(0.01)
    return [t.name for t in busy]


async def test_the_guides_example_saves_csv_and_parquet_and_previews(
    claims_db: Path, workspace: Path
) -> None:
    expected = reference(claims_db, HUMIRA_CA)
    tool = SQLTool(workspace, backend=f"duckdb://{claims_db}")
    try:
        result = await run(tool, HUMIRA_CA, "humira_ca_top10")
    finally:
        await tool.aclose()

    assert result["is_error"] is False
    csv = pl.read_csv(workspace / "humira_ca_top10.csv")
    parquet = pl.read_parquet(workspace / "humira_ca_top10.parquet")
    assert_frame_equal(parquet, expected)
    assert_frame_equal(csv, expected)
    content = str(result["content"])
    assert content.startswith(
        f"Saved {len(expected)} rows × 2 columns to humira_ca_top10.csv and "
        "humira_ca_top10.parquet."
    )
    assert "prescriber_npi_nbr (BIGINT), rx_count (BIGINT)" in content
    top = expected.row(0)
    assert f"| {top[0]} | {top[1]} |" in content
    metadata = result["metadata"]
    assert isinstance(metadata, dict)
    assert metadata["row_count"] == len(expected)
    assert metadata["truncated"] is False
    assert metadata["columns"] == [["prescriber_npi_nbr", "BIGINT"], ["rx_count", "BIGINT"]]
    assert sorted(os.listdir(workspace)) == ["humira_ca_top10.csv", "humira_ca_top10.parquet"]


async def test_csv_and_parquet_read_back_identical(claims_db: Path, workspace: Path) -> None:
    sql = """
    SELECT claim_id, ndc_drug_nm, service_date_dd, paid_amt, is_specialty,
           service_date_dd::TIMESTAMP + INTERVAL 90 MINUTE AS filled_at,
           CASE WHEN claim_id % 4 = 0 THEN NULL ELSE dispensed_quantity_val END AS qty,
           'say "hi", then, go' AS awkward_text
    FROM rx_claims ORDER BY claim_id
    """
    tool = SQLTool(workspace, backend=f"duckdb://{claims_db}")
    try:
        result = await run(tool, sql)
    finally:
        await tool.aclose()
    assert result["is_error"] is False
    parquet = pl.read_parquet(workspace / "result.parquet")
    csv = pl.read_csv(workspace / "result.csv", try_parse_dates=True, schema=parquet.schema)
    assert parquet.height == 2000
    assert_frame_equal(csv, parquet)
    assert_frame_equal(parquet, reference(claims_db, sql))
    assert parquet["service_date_dd"].dtype == pl.Date
    assert parquet["qty"].null_count() == 500


async def test_types_csv_cannot_hold_are_written_as_text(workspace: Path) -> None:
    backend = DuckDBBackend(":memory:")
    sql = """
    SELECT [1, 2] AS l, {'k': 'v'} AS s, 'ab'::BLOB AS b, INTERVAL 3 DAY AS i,
           1 AS dup, 2 AS dup, 12.50::DECIMAL(10, 2) AS price
    """
    try:
        result = await backend.query(
            sql, str(workspace / "t.csv"), str(workspace / "t.parquet"), preview_rows=1
        )
    finally:
        await backend.aclose()
    assert [c for c, _ in result.columns] == ["l", "s", "b", "i", "dup", "dup_2", "price"]
    assert result.preview == [([1, 2], {"k": "v"}, b"ab", "P3D", 1, 2, result.preview[0][6])]
    csv = pl.read_csv(workspace / "t.csv", infer_schema=False)
    assert csv.row(0) == ("[1, 2]", '{"k": "v"}', "\\x6162", "P3D", "1", "2", "12.50")
    parquet = pl.read_parquet(workspace / "t.parquet")
    assert parquet["l"].to_list() == [[1, 2]]
    assert parquet["i"].to_list() == ["P3D"]


async def test_row_cap_truncates_and_says_so(claims_db: Path, workspace: Path) -> None:
    tool = SQLTool(workspace, backend=f"duckdb://{claims_db}", max_rows=150)
    try:
        capped = await run(tool, "SELECT * FROM rx_claims ORDER BY claim_id", "capped")
        exact = await run(tool, "SELECT * FROM rx_claims ORDER BY claim_id LIMIT 150", "exact")
    finally:
        await tool.aclose()
    assert capped["is_error"] is False
    assert "cut at the row cap" in str(capped["content"])
    assert capped["metadata"]["truncated"] is True  # type: ignore[index]
    for name in ("capped.csv", "capped.parquet"):
        frame = (
            pl.read_csv(workspace / name)
            if name.endswith("csv")
            else pl.read_parquet(workspace / name)
        )
        assert frame["claim_id"].to_list() == list(range(150))
    assert "cut" not in str(exact["content"])
    assert exact["metadata"]["truncated"] is False  # type: ignore[index]


async def test_a_small_batch_size_still_caps_exactly(claims_db: Path, workspace: Path) -> None:
    backend = DuckDBBackend(claims_db, batch_rows=64)
    try:
        result = await backend.query(
            "SELECT claim_id FROM rx_claims ORDER BY claim_id",
            str(workspace / "r.csv"),
            str(workspace / "r.parquet"),
            max_rows=1000,
            preview_rows=3,
        )
    finally:
        await backend.aclose()
    assert (result.row_count, result.truncated) == (1000, True)
    assert result.preview == [(0,), (1,), (2,)]
    assert pl.read_parquet(workspace / "r.parquet")["claim_id"].to_list() == list(range(1000))
    assert pl.read_csv(workspace / "r.csv")["claim_id"].to_list() == list(range(1000))


async def test_a_large_result_streams_to_disk_in_bounded_memory(workspace: Path) -> None:
    """Three million rows (about 100 MB as Arrow) go to disk a batch at a time: neither
    Python objects nor pyarrow buffers ever hold more than a few batches."""
    rows = 3_000_000
    sql = (
        "SELECT range AS id, range * 0.5 AS half, 'claim number ' || range AS label "
        f"FROM range({rows})"
    )
    csv, parquet = workspace / "big.csv", workspace / "big.parquet"
    backend = DuckDBBackend(":memory:")
    previous = pa.default_memory_pool()
    pool = pa.proxy_memory_pool(previous)  # counts what pyarrow allocates from here on
    pa.set_memory_pool(pool)
    tracemalloc.start()
    try:
        result = await backend.query(sql, str(csv), str(parquet), max_rows=rows)
        _, python_peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        pa.set_memory_pool(previous)
        await backend.aclose()
    assert (result.row_count, result.truncated) == (rows, False)
    assert python_peak < 4 * 1024 * 1024
    assert pool.max_memory() < 32 * 1024 * 1024
    assert pq.ParquetFile(parquet).metadata.num_rows == rows
    assert count_lines(csv) == rows + 1
    last = pl.scan_parquet(parquet).tail(1).collect().row(0)
    assert last == (rows - 1, (rows - 1) * 0.5, f"claim number {rows - 1}")
    assert pl.scan_csv(csv).tail(1).collect().row(0) == last


async def test_an_empty_result_writes_the_header(claims_db: Path, workspace: Path) -> None:
    tool = SQLTool(workspace, backend=f"duckdb://{claims_db}")
    try:
        result = await run(tool, "SELECT claim_id, ndc_drug_nm FROM rx_claims WHERE false")
    finally:
        await tool.aclose()
    assert "Saved 0 rows × 2 columns" in str(result["content"])
    assert "no rows" in str(result["content"])
    assert (workspace / "result.csv").read_text() == "claim_id,ndc_drug_nm\n"
    parquet = pl.read_parquet(workspace / "result.parquet")
    assert parquet.schema == pl.Schema({"claim_id": pl.Int64, "ndc_drug_nm": pl.String})


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM rx_claims",
        "DROP TABLE rx_claims",
        "CREATE TABLE x AS SELECT 1",
        "INSERT INTO rx_claims (claim_id) VALUES (-1)",
        "SELECT 1; DELETE FROM rx_claims",
        "COPY rx_claims TO 'stolen.csv'",
        "ATTACH ':memory:' AS scratch",
        "PRAGMA database_list",
        "SELECT * FROM read_csv('/etc/passwd')",
        "SELECT * FROM '/etc/passwd'",
        "EXPORT DATABASE 'dump'",
    ],
)
async def test_statements_that_are_not_queries_are_refused(
    claims_db: Path, workspace: Path, sql: str
) -> None:
    before = snapshot(claims_db)
    tool = SQLTool(workspace, backend=f"duckdb://{claims_db}")
    try:
        result = await run(tool, sql)
    finally:
        await tool.aclose()
    assert result["is_error"] is True
    content = str(result["content"])
    assert any(reason in content for reason in ("not allowed", "statements", "only reads"))
    assert snapshot(claims_db) == before
    assert os.listdir(workspace) == []


class Unchecked(DuckDBBackend):
    """The backend without its parser check: what the connection alone allows."""

    def check(self, sql: str) -> None:
        pass


@pytest.mark.parametrize(
    ("sql", "refusal"),
    [
        ("CREATE TABLE x AS SELECT 1", "read-only"),
        ("DELETE FROM rx_claims", "read-only"),
        ("SELECT * FROM read_csv('/etc/passwd')", "disabled by configuration"),
        ("SELECT * FROM '{outside}'", "disabled by configuration"),
        ("COPY rx_claims TO '/tmp/stolen.csv'", "disabled by configuration"),
        ("INSTALL httpfs", "disabled by configuration"),
        ("SET enable_external_access = true", "locked"),
    ],
)
async def test_the_connection_itself_is_read_only(
    claims_db: Path, workspace: Path, tmp_path: Path, sql: str, refusal: str
) -> None:
    outside = tmp_path / "outside.csv"
    outside.write_text("secret\n42\n")
    sql = sql.format(outside=outside)
    before = snapshot(claims_db)
    backend = Unchecked(claims_db)
    try:
        with pytest.raises(SQLError) as refused:
            await backend.query(sql, str(workspace / "x.csv"))
    finally:
        await backend.aclose()
    assert refusal in str(refused.value)
    assert snapshot(claims_db) == before
    assert os.listdir(workspace) == []


@pytest.mark.parametrize("settings", ["access_mode=read_write", "ACCESS_MODE=automatic"])
def test_access_mode_cannot_be_set(claims_db: Path, settings: str) -> None:
    """A config's access_mode used to override read_only=True: the connection could write."""
    with pytest.raises(ValueError, match="opens databases read-only"):
        connect(f"duckdb://{claims_db}?{settings}")


async def test_settings_in_the_url_cannot_undo_the_locks(claims_db: Path, workspace: Path) -> None:
    backend = Unchecked(claims_db, config={"enable_external_access": True})
    try:
        with pytest.raises(SQLError, match="disabled by configuration"):
            await backend.query("SELECT * FROM read_csv('/etc/passwd')", str(workspace / "y"))
    finally:
        await backend.aclose()


@pytest.mark.parametrize(
    "name",
    ["../escape", "a/b", "/tmp/abs", ".hidden", "x.csv", "-rf", "a b", "", "x" * 101, "a\\b"],
)
async def test_dataset_names_with_path_tricks_are_refused(
    claims_db: Path, workspace: Path, name: str
) -> None:
    tool = SQLTool(workspace, backend=f"duckdb://{claims_db}")
    try:
        result = await run(tool, "SELECT 1 AS x", name)
    finally:
        await tool.aclose()
    assert result["is_error"] is True
    assert "dataset_name" in str(result["content"])
    assert "humira_ca_top10" in str(result["content"])  # says what a good name looks like
    assert os.listdir(workspace) == []
    assert sorted(os.listdir(workspace.parent)) == ["claims.duckdb", "ws"]


async def test_a_symlink_named_like_the_result_is_replaced_not_followed(
    claims_db: Path, workspace: Path, tmp_path: Path
) -> None:
    outside = tmp_path / "outside.csv"
    outside.write_text("precious\n")
    (workspace / "result.csv").symlink_to(outside)
    tool = SQLTool(workspace, backend=f"duckdb://{claims_db}")
    try:
        result = await run(tool, "SELECT 42 AS answer")
    finally:
        await tool.aclose()
    assert result["is_error"] is False
    assert outside.read_text() == "precious\n"
    assert not (workspace / "result.csv").is_symlink()
    assert (workspace / "result.csv").read_text() == "answer\n42\n"


async def test_database_errors_come_back_with_the_databases_message(
    claims_db: Path, workspace: Path
) -> None:
    tool = SQLTool(workspace, backend=f"duckdb://{claims_db}")
    try:
        unknown_table = await run(tool, "SELECT * FROM rx_claimz")
        unknown_column = await run(tool, "SELECT paid_amount FROM rx_claims")
        syntax = await run(tool, "SELECT * FROM rx_claims WHERE")
        no_function = await run(tool, "SELECT no_such_function(1)")
    finally:
        await tool.aclose()
    assert "no_such_function does not exist" in str(no_function["content"])
    assert "Tables in the database" not in str(no_function["content"])
    assert unknown_table["is_error"] is True
    assert "rx_claimz does not exist" in str(unknown_table["content"])
    assert "Tables in the database: providers_bio, rx_claims." in str(unknown_table["content"])
    assert 'Referenced column "paid_amount" not found' in str(unknown_column["content"])
    assert "Tables in the database" not in str(unknown_column["content"])
    assert "Parser Error: syntax error" in str(syntax["content"])
    assert os.listdir(workspace) == []


async def test_a_failed_query_keeps_the_earlier_file(claims_db: Path, workspace: Path) -> None:
    tool = SQLTool(workspace, backend=f"duckdb://{claims_db}")
    try:
        first = await run(tool, "SELECT 1 AS x")
        failed = await run(tool, "SELECT 1 / 0 AS x, error('boom') AS y")
    finally:
        await tool.aclose()
    assert first["is_error"] is False
    assert failed["is_error"] is True
    assert "boom" in str(failed["content"])
    assert (workspace / "result.csv").read_text() == "x\n1\n"
    assert sorted(os.listdir(workspace)) == ["result.csv", "result.parquet"]


async def test_a_result_that_cannot_be_saved_is_a_clear_error(
    claims_db: Path, tmp_path: Path
) -> None:
    not_a_directory = tmp_path / "ws-file"
    not_a_directory.write_text("a file where the workspace should be")
    tool = SQLTool(not_a_directory, backend=f"duckdb://{claims_db}")
    try:
        result = await run(tool, "SELECT 1 AS x")
    finally:
        await tool.aclose()
    assert result["is_error"] is True
    assert str(result["content"]).startswith("The query ran, but its result could not be saved")


async def test_a_save_that_fails_halfway_keeps_the_earlier_pair(
    claims_db: Path, workspace: Path
) -> None:
    """The Parquet file was renamed into place before the CSV's rename failed, so the pair
    mixed the new query's Parquet file with the old CSV; and a directory in the way was
    answered with advice about disk space."""
    tool = SQLTool(workspace, backend=f"duckdb://{claims_db}")
    try:
        first = await run(tool, "SELECT 'old' AS v", "pair")
        (workspace / "pair.csv").unlink()
        (workspace / "pair.csv").mkdir()  # the CSV's rename fails
        failed = await run(tool, "SELECT 'new' AS v", "pair")
    finally:
        await tool.aclose()
    assert first["is_error"] is False
    assert failed["is_error"] is True
    content = str(failed["content"])
    assert content.startswith("The query ran, but its result could not be saved")
    assert "not a file is in the way: pick another dataset_name" in content
    assert "disk space" not in content
    assert pl.read_parquet(workspace / "pair.parquet")["v"].to_list() == ["old"]
    assert sorted(os.listdir(workspace)) == ["pair.csv", "pair.parquet"]


async def test_a_timeout_interrupts_the_query(claims_db: Path, workspace: Path) -> None:
    tool = SQLTool(workspace, backend=f"duckdb://{claims_db}", timeout=0.3)
    huge = "SELECT count(*) FROM range(1000000000) a, range(1000000000) b WHERE a.range < b.range"
    try:
        result = await run(tool, huge)
        assert result["is_error"] is True
        assert "stopped after 0.3 s" in str(result["content"])
        # the query was interrupted, not abandoned: its worker is gone, the cursor is free
        assert workers_left() == []
        after = await run(tool, "SELECT 7 AS x", "after")
    finally:
        await tool.aclose()
    assert after["is_error"] is False
    assert sorted(os.listdir(workspace)) == ["after.csv", "after.parquet"]


async def test_cancelling_the_call_interrupts_the_query(claims_db: Path, workspace: Path) -> None:
    tool = SQLTool(workspace, backend=f"duckdb://{claims_db}", timeout=600)
    huge = "SELECT count(*) FROM range(1000000000) a, range(1000000000) b WHERE a.range < b.range"
    try:
        call = asyncio.ensure_future(run(tool, huge))
        await asyncio.wait_for(asyncio.to_thread(wait_for_a_worker), 30)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        assert workers_left() == []
    finally:
        await tool.aclose()
    assert os.listdir(workspace) == []


async def test_concurrent_queries_share_one_backend(claims_db: Path, workspace: Path) -> None:
    tool = SQLTool(workspace, backend=f"duckdb://{claims_db}")
    drugs = ["HUMIRA", "ELIQUIS", "OZEMPIC", "KEYTRUDA"]
    try:
        results = await asyncio.gather(
            *(
                run(tool, f"SELECT count(*) AS n FROM rx_claims WHERE ndc_drug_nm = '{d}'", d)
                for d in drugs
            )
        )
    finally:
        await tool.aclose()
    assert all(r["is_error"] is False for r in results)
    for drug in drugs:
        expected = reference(
            claims_db, f"SELECT count(*) AS n FROM rx_claims WHERE ndc_drug_nm = '{drug}'"
        )
        assert_frame_equal(pl.read_csv(workspace / f"{drug}.csv"), expected)


async def test_schema_is_read_from_the_database(claims_db: Path) -> None:
    backend = connect(f"duckdb://{claims_db}")
    try:
        schema = await backend.schema()
    finally:
        await backend.aclose()
    assert list(schema) == ["providers_bio", "rx_claims"]
    assert schema["providers_bio"] == [("npi_number", "BIGINT"), ("specialty", "VARCHAR")]
    assert schema["rx_claims"][:3] == [
        ("claim_id", "BIGINT"),
        ("prescriber_npi_nbr", "BIGINT"),
        ("ndc_drug_nm", "VARCHAR"),
    ]
    assert backend.dialect == "duckdb"


async def test_a_missing_database_file_is_a_clear_error(tmp_path: Path, workspace: Path) -> None:
    tool = SQLTool(workspace, backend=f"duckdb://{tmp_path / 'nope.duckdb'}")
    result = await run(tool, "SELECT 1")
    await tool.aclose()
    assert result["is_error"] is True
    assert "does not exist; create it first" in str(result["content"])
    assert not (tmp_path / "nope.duckdb").exists()


async def test_a_file_that_is_not_a_database_is_called_that(
    tmp_path: Path, workspace: Path
) -> None:
    """Every failure to open ended "If another connection has it open for writing, close
    that connection first", whatever it was."""
    for name, content in [("junk.duckdb", os.urandom(20_000)), ("notes.duckdb", b"a,b\n1,2\n")]:
        (tmp_path / name).write_bytes(content)
        tool = SQLTool(workspace, backend=f"duckdb://{tmp_path / name}")
        result = await run(tool, "SELECT 1")
        await tool.aclose()
        assert result["is_error"] is True
        said = str(result["content"])
        assert "not a valid DuckDB database file." in said  # DuckDB's words, once ended
        assert "damaged or not a DuckDB database" in said
        assert "open for writing" not in said


async def test_a_file_another_process_writes_says_so(claims_db: Path, workspace: Path) -> None:
    writer = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        "import duckdb, sys; c = duckdb.connect(sys.argv[1]); print(flush=True); sys.stdin.read()",
        str(claims_db),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
    )
    try:
        assert writer.stdout is not None
        await writer.stdout.readline()  # the writer holds the file's lock
        tool = SQLTool(workspace, backend=f"duckdb://{claims_db}")
        result = await run(tool, "SELECT 1")
        await tool.aclose()
    finally:
        await writer.communicate(b"")
    assert result["is_error"] is True
    assert "Another process has it open for writing" in str(result["content"])
    assert "a copy of the file" in str(result["content"])


async def test_the_file_open_elsewhere_in_the_process_is_a_clear_error(
    claims_db: Path, workspace: Path
) -> None:
    own = duckdb.connect(str(claims_db), read_only=True)
    tool = SQLTool(workspace, backend=f"duckdb://{claims_db}")
    try:
        result = await run(tool, "SELECT 1")
    finally:
        own.close()
        await tool.aclose()
    assert "already open in this process" in str(result["content"])
    assert "open_read_only()" in str(result["content"])
    # a connection opened with the tool's settings shares the file with it
    shared = open_read_only(claims_db)
    tool = SQLTool(workspace, backend=f"duckdb://{claims_db}")
    try:
        result = await run(tool, "SELECT count(*) AS n FROM rx_claims")
        assert shared.sql("SELECT count(*) FROM rx_claims").fetchall() == [(2000,)]
    finally:
        shared.close()
        await tool.aclose()
    assert result["is_error"] is False


async def test_values_need_no_database(workspace: Path) -> None:
    tool = SQLTool(workspace, backend="duckdb://:memory:")
    try:
        result = await run(tool, "SELECT DATE '2025-10-08' AS today, 1.5 AS x")
    finally:
        await tool.aclose()
    frame = pl.read_parquet(workspace / "result.parquet")
    assert frame.row(0)[0] == dt.date(2025, 10, 8)
    assert "| 2025-10-08 | 1.5 |" in str(result["content"])


async def test_refusals_happen_before_the_database_sees_the_statement(workspace: Path) -> None:
    backend = DuckDBBackend(":memory:")  # writable: the parser check is its only lock
    try:
        with pytest.raises(QueryRefused):
            await backend.query("CREATE TABLE t AS SELECT 1", str(workspace / "x.csv"))
        tables = await backend.schema()
    finally:
        await backend.aclose()
    assert tables == {}


def test_the_statement_duckdb_judged_is_the_one_that_runs() -> None:
    backend = DuckDBBackend(":memory:")
    sql = "SELECT 1 AS judged"
    other = duckdb.connect().extract_statements("SELECT 2 AS other")[0]

    def opened(text: str) -> list[str]:
        with backend._open(text, Interrupter(), 5.0) as stream:
            return [name for name, _ in stream.columns]

    try:
        backend.check(sql)
        assert backend._judged.query[0] is sql
        # stand a different statement in for the judged one: _open runs the object it kept
        backend._judged.query = (sql, other)
        assert opened(sql) == ["other"]
        assert backend._judged.query is None  # used once
        assert opened(sql) == ["judged"]  # nothing judged: the text is parsed as usual
        backend.check(sql)
        backend._judged.query = (sql, other)
        copy = "".join(sql)
        assert copy == sql
        assert copy is not sql
        assert opened(copy) == ["judged"]  # same text, but not the checked object
        assert backend._judged.query is None
        # a refused statement leaves nothing behind for the next query
        backend.check(sql)
        with pytest.raises(QueryRefused):
            backend.check("SELECT 1; SELECT 2")
        assert backend._judged.query is None
        # another thread's check is not seen in this one
        worker = threading.Thread(target=backend.check, args=(sql,))
        worker.start()
        worker.join()
        assert getattr(backend._judged, "query", None) is None
    finally:
        asyncio.run(backend.aclose())


def write_from_duckdb(
    sql: str, directory: Path, name: str, *, inline_rows: int, piece_rows: int
) -> tuple[Written, list[str]]:
    """``sql``'s result, streamed by DuckDB in small batches, written by the tool's writer;
    and the names of the threads the writer started."""
    started: list[str] = []

    def first_call_in_a_new_thread(frame: object, event: str, arg: object) -> None:
        started.append(threading.current_thread().name)
        sys.setprofile(None)

    with duckdb.connect() as connection:
        reader = connection.sql(sql).to_arrow_reader(300)
        threading.setprofile(first_call_in_a_new_thread)
        try:
            written = write_result(
                reader.schema,
                iter(reader),
                str(directory / f"{name}.csv"),
                str(directory / f"{name}.parquet"),
                max_rows=1_000_000,
                preview_rows=3,
                stop=Interrupter(),
                piece_rows=piece_rows,
                inline_rows=inline_rows,
            )
        finally:
            threading.setprofile(None)
    return written, started


@pytest.mark.parametrize(
    ("rows", "piece_rows", "in_place"),
    [
        (0, PIECE_ROWS, True),
        (1, PIECE_ROWS, True),
        (INLINE_ROWS, PIECE_ROWS, True),
        (INLINE_ROWS + 1, PIECE_ROWS, False),  # whole, but not small
        (1000, 1000, False),  # fills a piece: more may follow
        (3005, 1000, False),
    ],
)
def test_small_results_are_written_in_place_with_the_same_files(
    workspace: Path, rows: int, piece_rows: int, in_place: bool
) -> None:
    """A whole small result is written without the Parquet thread; its files are the same
    as the threaded writer's, byte for byte (CSV) and value for value (Parquet)."""
    sql = (
        "SELECT range AS id, range * 0.5 AS half, 'row ' || range AS label, "
        f"DATE '2024-01-01' + range::INTEGER AS day FROM range({rows})"
    )
    default, threads = write_from_duckdb(
        sql, workspace, "default", inline_rows=INLINE_ROWS, piece_rows=piece_rows
    )
    never_in_place = -1
    threaded, threads_always = write_from_duckdb(
        sql, workspace, "threaded", inline_rows=never_in_place, piece_rows=piece_rows
    )
    assert threads == ([] if in_place else ["loopwright-parquet"])
    assert threads_always == ["loopwright-parquet"]
    assert default == threaded
    assert (default.row_count, default.truncated) == (rows, False)
    csv = (workspace / "default.csv").read_bytes()
    assert csv == (workspace / "threaded.csv").read_bytes()
    assert csv.count(b"\n") == rows + 1
    parquet = pl.read_parquet(workspace / "default.parquet")
    assert_frame_equal(parquet, pl.read_parquet(workspace / "threaded.parquet"))
    with duckdb.connect() as connection:
        assert_frame_equal(parquet, connection.sql(sql).pl())
    assert sorted(os.listdir(workspace)) == [
        "default.csv",
        "default.parquet",
        "threaded.csv",
        "threaded.parquet",
    ]


async def test_types_arrow_gets_wrong_are_written_as_duckdbs_text(workspace: Path) -> None:
    """UHUGEINT past 2^127 came out as -1, BIT as its internal bytes, TIMETZ without its
    offset, BIGNUM not at all: they are DuckDB's own text now (JSON inside nested values),
    the reported type stays DuckDB's, and repeated names are handled as anywhere else."""
    backend = DuckDBBackend(":memory:")
    big = "340282366920938463463374607431768211455"  # 2^128 - 1
    digits = "1234567890" * 5
    sql = f"""
    SELECT '{big}'::UHUGEINT AS u, '10101'::BIT AS b, TIMETZ '12:00:00+02' AS t,
           '{digits}'::BIGNUM AS n, ['1'::BIT, '01'::BIT] AS bits,
           {{'x': '{big}'::UHUGEINT}} AS s, [1, 2] AS l, 7 AS u, 'a"b' AS "q""uote"
    """
    try:
        result = await backend.query(
            sql, str(workspace / "t.csv"), str(workspace / "t.parquet"), preview_rows=1
        )
    finally:
        await backend.aclose()
    assert result.columns == [
        ("u", "UHUGEINT"),
        ("b", "BIT"),
        ("t", "TIME WITH TIME ZONE"),
        ("n", "BIGNUM"),
        ("bits", "BIT[]"),
        ("s", "STRUCT(x UHUGEINT)"),
        ("l", "INTEGER[]"),
        ("u_2", "INTEGER"),
        ('q"uote', "VARCHAR"),
    ]
    texts = (big, "10101", "12:00:00+02", digits, '["1","01"]', f'{{"x":{big}}}')
    assert result.preview == [(*texts, [1, 2], 7, 'a"b')]
    names = ["u", "b", "t", "n", "bits", "s", "l", "u_2", 'q"uote']
    text = (workspace / "t.csv").read_text()  # csv, not Polars: it keeps a header's quotes
    assert list(csvlib.reader(text.splitlines())) == [names, [*texts, "[1, 2]", "7", 'a"b']]
    parquet = pq.read_table(workspace / "t.parquet")
    assert parquet.to_pylist() == [dict(zip(names, (*texts, [1, 2], 7, 'a"b'), strict=True))]


def test_queries_without_those_types_run_as_written() -> None:
    from loopwright.sql.duckdb import _as_text_where_lossy

    connection = duckdb.connect()
    try:
        plain = connection.sql("SELECT 1 AS a, [2] AS l, {'k': 3::HUGEINT} AS s")
        assert _as_text_where_lossy(plain) is plain
    finally:
        connection.close()


async def test_unions_are_written_as_json_to_both_files(workspace: Path) -> None:
    backend = DuckDBBackend(":memory:")
    kind = "UNION(n INTEGER, s VARCHAR)"
    sql = (
        f"SELECT CASE WHEN range % 2 = 0 THEN union_value(n := range::INTEGER)::{kind} "
        f"ELSE union_value(s := 'x' || range)::{kind} END AS u FROM range(4)"
    )
    try:
        result = await backend.query(sql, str(workspace / "u.csv"), str(workspace / "u.parquet"))
    finally:
        await backend.aclose()
    assert result.columns == [("u", "UNION(n INTEGER, s VARCHAR)")]
    expected = ["0", '"x1"', "2", '"x3"']
    assert pl.read_parquet(workspace / "u.parquet")["u"].to_list() == expected
    assert pl.read_csv(workspace / "u.csv", infer_schema=False)["u"].to_list() == expected


@pytest.mark.parametrize("rows", [1, INLINE_ROWS + 1])
async def test_intervals_inside_lists_structs_and_maps_keep_their_shape(
    workspace: Path, rows: int
) -> None:
    """Parquet has no interval at any depth: nested ones are ISO 8601 text in a column of
    the same shape (JSON in the CSV, as every nested value); in place or in the thread."""
    backend = DuckDBBackend(":memory:")
    sql = f"""
    SELECT range AS n, [INTERVAL (range + 1) DAY, NULL] AS gaps,
           {{'span': INTERVAL '1 month 2 hours', 'n': range}} AS s,
           MAP {{'wait': INTERVAL 90 MINUTE}} AS m, [[INTERVAL 1 SECOND]] AS deep,
           NULL::STRUCT(i INTERVAL)[] AS none
    FROM range({rows}) ORDER BY n
    """
    try:
        result = await backend.query(sql, str(workspace / "i.csv"), str(workspace / "i.parquet"))
    finally:
        await backend.aclose()
    first = {
        "n": 0,
        "gaps": ["P1D", None],
        "s": {"span": "P1MT7200S", "n": 0},
        "m": [("wait", "PT5400S")],
        "deep": [["PT1S"]],
        "none": None,
    }
    parquet = pq.read_table(workspace / "i.parquet")
    assert parquet.slice(0, 1).to_pylist() == [first]
    assert parquet.num_rows == rows
    assert parquet.schema.field("s").type == pa.struct([("span", pa.string()), ("n", pa.int64())])
    assert parquet.schema.field("m").type == pa.map_(pa.string(), pa.string())
    assert (workspace / "i.csv").read_text().splitlines()[:2] == [
        "n,gaps,s,m,deep,none",
        '0,"[""P1D"", null]","{""span"": ""P1MT7200S"", ""n"": 0}","[[""wait"", ""PT5400S""]]",'
        '"[[""PT1S""]]",',
    ]
    assert result.preview[0] == tuple(first.values())  # the preview's values are the same


async def test_unions_inside_lists_and_structs_are_json(workspace: Path) -> None:
    backend = DuckDBBackend(":memory:")
    sql = "SELECT [union_value(n := 1)] AS l, {'u': union_value(i := INTERVAL 1 DAY)} AS s"
    try:
        await backend.query(sql, str(workspace / "u.csv"), str(workspace / "u.parquet"))
    finally:
        await backend.aclose()
    assert pq.read_table(workspace / "u.parquet").to_pylist() == [{"l": "[1]", "s": '{"u": "P1D"}'}]
    assert (workspace / "u.csv").read_text().splitlines() == ["l,s", '[1],"{""u"": ""P1D""}"']


async def test_nanosecond_timestamps_keep_their_nanoseconds(workspace: Path) -> None:
    backend = DuckDBBackend(":memory:")
    sql = "SELECT TIMESTAMP_NS '2024-01-01 00:00:00.123456789' AS at"
    try:
        result = await backend.query(sql, str(workspace / "t.csv"), str(workspace / "t.parquet"))
    finally:
        await backend.aclose()
    assert result.preview == [("2024-01-01 00:00:00.123456789",)]  # Python cannot hold ns
    assert (workspace / "t.csv").read_text() == "at\n2024-01-01T00:00:00.123456789\n"
    parquet = pq.read_table(workspace / "t.parquet")
    assert parquet.schema.field("at").type == pa.timestamp("ns")
    assert parquet["at"].cast(pa.int64()).to_pylist() == [1_704_067_200_123_456_789]


@pytest.mark.parametrize(
    ("value", "text"),
    [
        ("'infinity'::DATE", "infinity"),  # past the preview's rows: Polars panicked on it
        ("'-infinity'::TIMESTAMP", "-infinity"),
        ("DATE '10000-01-01'", "10000-01-01"),
        ("'infinity'::TIMESTAMP_NS", "infinity"),  # Polars wrote it as 2262-04-11T23:47:16...
    ],
)
async def test_dates_outside_years_1_to_9999_are_written_as_duckdb_writes_them(
    workspace: Path, value: str, text: str
) -> None:
    """They were refused with an error saying to cast them to text (or, in nanoseconds,
    written as a date in 2262); the CSV has DuckDB's own text for them now, the Parquet file
    DuckDB's stored value, and the rest of the column is written as before."""
    backend = DuckDBBackend(":memory:")
    sql = f"SELECT CASE WHEN range = 15 THEN {value} END AS d FROM range(20)"
    try:
        result = await backend.query(sql, str(workspace / "d.csv"), str(workspace / "d.parquet"))
        edges = await backend.query(
            "SELECT DATE '0001-01-01' AS a, DATE '9999-12-31' AS b, "
            "TIMESTAMP '9999-12-31 23:59:59.999999' AS c, TIMESTAMP_S '0001-01-01' AS d",
            str(workspace / "e.csv"),
        )
    finally:
        await backend.aclose()
    lines = (workspace / "d.csv").read_text().splitlines()
    assert lines == ["d", *[""] * 15, text, *[""] * 4]
    assert result.row_count == 20
    with duckdb.connect() as connection:
        stored = connection.sql(f"SELECT {value}::VARCHAR").fetchall()[0][0]
        read_back = connection.sql(
            f"SELECT d::VARCHAR FROM '{workspace / 'd.parquet'}' WHERE d IS NOT NULL"
        ).fetchall()
    assert read_back == [(stored,)] == [(text,)]
    assert (workspace / "e.csv").read_text().splitlines()[1] == (
        "0001-01-01,9999-12-31,9999-12-31T23:59:59.999999,0001-01-01T00:00:00.000"
    )
    assert edges.row_count == 1
    assert sorted(os.listdir(workspace)) == ["d.csv", "d.parquet", "e.csv"]


async def test_a_polars_panic_is_a_clear_error_not_a_crash(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Polars reports what it cannot write with a Rust panic, a BaseException (decimal256
    did, before it was converted): it is the same clear error as any other writer refusal."""
    from polars.exceptions import PanicException

    def panic(*args: object, **kwargs: object) -> None:
        raise PanicException("operator does not support primitive `Int256`")

    monkeypatch.setattr(pl.DataFrame, "write_csv", panic)
    backend = DuckDBBackend(":memory:")
    try:
        with pytest.raises(ResultFileError) as refused:
            await backend.query("SELECT range AS n FROM range(5000)", str(workspace / "p.csv"))
    finally:
        await backend.aclose()
    assert "could not be saved" in str(refused.value)
    assert "Int256" in str(refused.value)
    assert os.listdir(workspace) == []


@pytest.mark.parametrize("rows", [1, INLINE_ROWS + 1])
async def test_a_value_the_writers_cannot_hold_is_a_clear_error_and_keeps_old_files(
    workspace: Path, rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A value Parquet cannot hold (an interval, once its converter is taken away): in place
    or in the thread, the call fails with advice, leaves no temporary file and keeps the
    earlier result of that name."""
    unholdable_intervals(monkeypatch)
    csv, parquet = workspace / "r.csv", workspace / "r.parquet"
    backend = DuckDBBackend(":memory:")
    try:
        await backend.query("SELECT 1 AS kept", str(csv), str(parquet))
        before = csv.read_bytes(), parquet.read_bytes()
        with pytest.raises(ResultFileError) as refused:
            await backend.query(
                f"SELECT INTERVAL (range) DAY AS i FROM range({rows})", str(csv), str(parquet)
            )
    finally:
        await backend.aclose()
    message = str(refused.value)
    assert message.startswith("The query ran, but its result could not be saved")
    assert "month_day_nano_interval" in message
    assert "column::VARCHAR" in message
    assert "\n" not in message
    assert (csv.read_bytes(), parquet.read_bytes()) == before
    assert sorted(os.listdir(workspace)) == ["r.csv", "r.parquet"]


# --- the worker threads ---------------------------------------------------------------------


def run_and_wait(pool: Workers, work: Callable[[], object]) -> tuple[object, str, str]:
    """``work``'s value, the worker's name while it ran, and its name once it woke us."""
    finished = threading.Event()
    seen: dict[str, object] = {}

    def call() -> Callable[[], object]:
        seen["value"] = work()
        seen["busy"] = threading.current_thread().name

        def then() -> None:
            seen["after"] = threading.current_thread().name
            finished.set()

        return then

    pool.run(call)
    assert finished.wait(10)
    return seen["value"], str(seen["busy"]), str(seen["after"])


def test_a_finished_worker_runs_the_next_call() -> None:
    pool = Workers(keep_alive=30)
    first, busy, after = run_and_wait(pool, threading.get_ident)
    second, _, _ = run_and_wait(pool, threading.get_ident)
    assert first == second
    assert (busy, after) == (BUSY_WORKER, IDLE_WORKER)


def test_a_busy_worker_never_delays_another_call() -> None:
    """A call whose driver hangs holds up only its own thread: the next gets a new one."""
    pool = Workers(keep_alive=30)
    release = threading.Event()
    stuck_thread: list[int] = []

    def stuck() -> Callable[[], object]:
        stuck_thread.append(threading.get_ident())
        release.wait(10)
        return lambda: None

    pool.run(stuck)
    try:
        other, _, _ = run_and_wait(pool, threading.get_ident)
        assert other != stuck_thread[0]
    finally:
        release.set()


def test_idle_workers_exit_and_no_call_is_lost_as_they_do() -> None:
    """With a keep-alive of a millisecond, calls keep landing as idle workers give up: each is
    run once, and the workers are gone afterwards."""
    pool = Workers(keep_alive=0.001)
    threads: list[threading.Thread] = []

    def square(n: int) -> int:
        threads.append(threading.current_thread())
        return n * n

    for n in range(200):
        value, _, _ = run_and_wait(pool, functools.partial(square, n))
        assert value == n * n
        time.sleep(0.0005 * (n % 4))
    assert len(threads) == 200
    for thread in set(threads):
        thread.join(timeout=10)
        assert not thread.is_alive()


def test_a_forked_child_starts_its_own_workers() -> None:
    """The parent's idle workers do not exist in a forked child: its queries get new ones."""

    async def answer() -> int:
        return await run_in_worker(lambda: 42, Interrupter(), 10)

    assert asyncio.run(answer()) == 42  # leaves an idle worker in this process
    pid = os.fork()
    if pid == 0:  # the child: exit 0 only if its query ran
        code = 1
        try:
            code = 0 if asyncio.run(asyncio.wait_for(answer(), 10)) == 42 else 1
        finally:
            os._exit(code)
    deadline = time.monotonic() + 20
    while (done := os.waitpid(pid, os.WNOHANG)) == (0, 0) and time.monotonic() < deadline:
        time.sleep(0.01)
    if done == (0, 0):
        os.kill(pid, 9)
        os.waitpid(pid, 0)
        pytest.fail("the forked child's query never ran")
    assert os.waitstatus_to_exitcode(done[1]) == 0


async def test_sql_nested_deeper_than_the_parser_goes_is_a_clear_refusal(
    workspace: Path,
) -> None:
    """DuckDB parses 900 levels of parentheses; sqlglot's RecursionError came back as
    "The query failed. DuckDB: maximum recursion depth exceeded", not DuckDB's at all."""
    tool = SQLTool(workspace, backend="duckdb:///:memory:")
    try:
        result = await run(tool, "SELECT " + "(" * 900 + "1" + ")" * 900 + " AS x")
    finally:
        await tool.aclose()
    assert result["is_error"] is True
    content = str(result["content"])
    assert "nested too deeply" in content
    assert "DuckDB:" not in content
    assert os.listdir(workspace) == []


async def test_serialized_sql_is_not_run_behind_the_checks_back(workspace: Path) -> None:
    """json_execute_serialized_sql runs a statement the parser check never sees (here the
    refused query()); in memory, the check is the only lock."""
    tool = SQLTool(workspace, backend="duckdb:///:memory:")
    hidden = "SELECT * FROM query('SELECT 42 AS answer')"
    try:
        result = await run(
            tool, f"FROM json_execute_serialized_sql(json_serialize_sql($${hidden}$$))"
        )
    finally:
        await tool.aclose()
    assert result["is_error"] is True
    assert "json_execute_serialized_sql() is not allowed" in str(result["content"])
    assert os.listdir(workspace) == []
