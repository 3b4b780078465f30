"""The SQL tool's limits and resources: the row cap, the timeout, cancellation, memory,
parallel calls and trouble on disk, against real DuckDB (and PostgreSQL where it counts)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from loopwright.sql import DuckDBBackend, SQLBackend
from loopwright.sql import output as output_module
from loopwright.sql.base import ArrowStream, Interrupter
from loopwright.tools.sql import SQLTool


async def run(tool: SQLTool, sql: str, name: str = "result") -> dict[str, Any]:
    return dict(await tool.execute({"sql": sql, "dataset_name": name, "description": "test"}))


async def until(condition: Callable[[], bool], seconds: float = 10.0) -> None:
    """Wait (polling) until ``condition()`` holds; fail the test after ``seconds``."""
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    pytest.fail("timed out waiting for a condition")


class Stubborn(SQLBackend):
    """A backend whose driver takes its time to honour an interrupt: its one batch comes
    only when the test releases it, stopped or not (as a driver busy in a network call or
    a long computation that checks for interrupts rarely)."""

    dialect = "duckdb"
    name = "Stubborn"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.interrupted = threading.Event()

    def check(self, sql: str) -> None:
        pass

    @contextlib.contextmanager
    def _open(self, sql: str, stop: Interrupter, timeout: float) -> Iterator[ArrowStream]:
        stop.on_stop(self.interrupted.set)
        schema = pa.schema([("x", pa.int64())])

        def batches() -> Iterator[pa.RecordBatch]:
            self.release.wait(10)
            yield pa.record_batch([pa.array([1])], schema=schema)

        yield ArrowStream([("x", "BIGINT")], schema, batches())

    async def schema(self) -> dict[str, list[tuple[str, str]]]:
        return {}

    async def aclose(self) -> None:
        self.release.set()


async def test_a_cancel_while_a_timed_out_query_winds_down_is_not_swallowed(
    workspace: Path,
) -> None:
    """A run's timeout or Ctrl-C that came while a timed-out query was still winding down
    was swallowed: the call returned the timeout message as if nothing had happened, and
    the agent went on (an ``asyncio.timeout`` around the run never fired)."""
    backend = Stubborn()
    tool = SQLTool(workspace, backend, timeout=0.2)
    call = asyncio.ensure_future(run(tool, "SELECT 1 AS x"))
    try:
        await until(backend.interrupted.is_set)  # timed out: the call waits for the worker
        await asyncio.sleep(0.05)
        assert not call.done()
        call.cancel()
        await asyncio.sleep(0.05)
    finally:
        backend.release.set()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(call, 10)
    await until(lambda: os.listdir(workspace) == [])  # the worker removes its partial files


async def test_a_result_saved_as_the_timeout_struck_is_reported_as_saved(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The timeout could strike after the last rows were read, while the files were being
    finished and renamed into place: the files were replaced with the new result, but the
    model was told the query was stopped (and would believe the old files still stood)."""
    (workspace / "result.csv").write_text("x\nold\n")
    stopped = threading.Event()
    stop = Interrupter.stop

    def stopping(self: Interrupter) -> None:
        stop(self)
        stopped.set()

    rename = output_module.replace_together

    def late_rename(moves: list[tuple[str, str]]) -> None:
        assert stopped.wait(10)  # the timeout has struck: the files go in place all the same
        rename(moves)

    monkeypatch.setattr(Interrupter, "stop", stopping)
    monkeypatch.setattr(output_module, "replace_together", late_rename)
    tool = SQLTool(workspace, "duckdb:///:memory:", timeout=0.2)
    try:
        result = await run(tool, "SELECT 42 AS x")
    finally:
        await tool.aclose()
    assert pl.read_csv(workspace / "result.csv")["x"].to_list() == [42]
    assert result["is_error"] is False, result["content"]
    assert str(result["content"]).startswith("Saved 1 row × 1 column to result.csv")
    assert result["metadata"]["row_count"] == 1


async def test_wide_rows_are_written_in_pieces_of_bounded_size(workspace: Path) -> None:
    """Batches were gathered into pieces of 262,144 rows whatever their width, so rows of
    a few KB (clinical notes) held gigabytes in memory at once: 600,000 rows of 2 KB peaked
    at 1.4 GB of memory for a 1.2 GB result. Pieces are cut by size too (each piece is a
    row group of the Parquet file, so the row groups show where the pieces were cut)."""
    width = 8_000
    backend = DuckDBBackend(":memory:", batch_rows=1_000)
    tool = SQLTool(workspace, backend, timeout=60)
    sql = f"SELECT range AS id, repeat('x', {width}) AS note FROM range(6000)"
    try:
        result = await run(tool, sql)
    finally:
        await backend.aclose()
    assert result["is_error"] is False, result["content"]
    assert result["metadata"]["row_count"] == 6000
    metadata = pq.ParquetFile(workspace / "result.parquet").metadata
    assert metadata.num_rows == 6000
    assert metadata.num_row_groups > 1
    largest = max(metadata.row_group(i).num_rows for i in range(metadata.num_row_groups))
    assert largest * width <= output_module.PIECE_BYTES + 1_000 * width
    csv = pl.read_csv(workspace / "result.csv")
    assert csv.height == 6000
    assert csv["id"].to_list() == list(range(6000))


async def test_one_dataset_name_twice_in_one_batch_is_refused_not_overwritten(
    workspace: Path,
) -> None:
    """Two calls with the same dataset_name at once (parallel tool calls) both said
    "Saved N rows to same.csv", each with its own count, while the file held only one of
    the two results: the other message was false."""
    backend = DuckDBBackend(":memory:")
    tool = SQLTool(workspace, backend, max_rows=5_000_000)
    try:
        results = await asyncio.gather(
            run(tool, "SELECT range AS n FROM range(300000)", "same"),
            run(tool, "SELECT range AS n FROM range(400000)", "same"),
            run(tool, "SELECT range AS n FROM range(10)", "other"),
        )
        after = await run(tool, "SELECT 1 AS n", "same")  # the name is free again
    finally:
        await backend.aclose()
    saved = [r for r in results[:2] if not r["is_error"]]
    refused = [r for r in results[:2] if r["is_error"]]
    assert len(saved) == 1
    assert len(refused) == 1
    assert "same" in str(refused[0]["content"])
    assert "dataset_name" in str(refused[0]["content"])
    assert results[2]["is_error"] is False
    assert after["is_error"] is False
    assert sorted(os.listdir(workspace)) == [
        "other.csv",
        "other.parquet",
        "same.csv",
        "same.parquet",
    ]


async def test_a_workspace_that_is_a_file_is_not_blamed_on_the_dataset_name(
    tmp_path: Path,
) -> None:
    """A workspace path that was a file said "Something that is not a file is in the way:
    pick another dataset_name", which no dataset_name could fix."""
    (tmp_path / "ws").write_text("not a directory")
    tool = SQLTool(tmp_path / "ws", "duckdb:///:memory:")
    try:
        result = await run(tool, "SELECT 1 AS x")
    finally:
        await tool.aclose()
    content = str(result["content"])
    assert result["is_error"] is True
    assert "pick another dataset_name" not in content
    assert "make the workspace a directory" in content
    assert (tmp_path / "ws").read_text() == "not a directory"


@pytest.mark.parametrize(
    ("rows", "saved", "cut"),
    [
        (0, 0, False),
        (1999, 1999, False),
        (2000, 2000, False),
        (2001, 2000, True),
        (10**9, 2000, True),
    ],
)
async def test_the_row_cap_at_a_batch_boundary(
    workspace: Path, rows: int, saved: int, cut: bool
) -> None:
    """At, just under and over the cap, where the cap falls between two of the driver's
    batches: both files, the metadata and the message agree on the rows saved."""
    backend = DuckDBBackend(":memory:", batch_rows=1_000)
    tool = SQLTool(workspace, backend, max_rows=2_000, preview_rows=3)
    try:  # no ORDER BY (sorting 10**9 rows takes half a minute): DuckDB keeps range's order
        result = await run(tool, f"SELECT range AS n FROM range({rows})")
    finally:
        await backend.aclose()
    assert result["is_error"] is False, result["content"]
    content = str(result["content"])
    assert content.startswith(f"Saved {saved:,} rows × 1 column")
    assert ("cut at the row cap" in content) is cut
    assert result["metadata"]["row_count"] == saved
    assert result["metadata"]["truncated"] is cut
    parquet = pl.read_parquet(workspace / "result.parquet")
    assert parquet["n"].to_list() == list(range(saved))
    assert pl.read_csv(workspace / "result.csv", schema=parquet.schema).equals(parquet)
    if saved:
        assert "First 3 rows:" in content


async def test_cancelling_a_postgresql_call_cancels_the_statement(
    postgres_server: Any, workspace: Path
) -> None:
    """Ctrl-C (the task cancelled) mid-query: the server stops the statement, no partial
    files stay, and the same tool's next call works."""
    import psycopg

    dsn = postgres_server.create_database("limits")
    tool = SQLTool(workspace, dsn, timeout=60)

    def running() -> int:
        with psycopg.connect(dsn, autocommit=True) as connection:
            row = connection.execute(
                "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'loopwright' "
                "AND state = 'active'"
            ).fetchone()
        assert row is not None
        return int(row[0])

    try:
        call = asyncio.ensure_future(run(tool, "SELECT pg_sleep(60) AS slept"))
        await until(lambda: running() == 1)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await asyncio.wait_for(call, 10)
        await until(lambda: running() == 0)
        after = await run(tool, "SELECT 1 AS x")
    finally:
        await tool.aclose()
    assert after["is_error"] is False, after["content"]
    assert sorted(os.listdir(workspace)) == ["result.csv", "result.parquet"]
