"""Hunted bugs of the SQL backends: what PostgreSQL and BigQuery fetch for a small row cap,
how long the table list of an unknown-table error may take, the hidden files a killed
writer leaves, and BigQuery's quoted names; against the real servers and the stand-in."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pytest

from loopwright.sql import BigQueryBackend, PostgresBackend
from loopwright.sql import files as files_module
from loopwright.sql import postgres as postgres_module
from loopwright.sql.base import UnparsableQuery, accepted_elsewhere
from loopwright.tools.sql import SQLTool
from postgres_server import PostgresServer

from .bigquery_server import BigQueryServer


async def run(tool: SQLTool, sql: str, name: str = "result") -> dict[str, Any]:
    return dict(await tool.execute({"sql": sql, "dataset_name": name, "description": "test"}))


@pytest.fixture(scope="module")
def dsn(postgres_server: PostgresServer) -> str:
    dsn = postgres_server.create_database("hunt")
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute("CREATE TABLE numbers AS SELECT g AS n FROM generate_series(1, 50000) g")
    return dsn


@pytest.fixture
async def pg(dsn: str) -> AsyncIterator[PostgresBackend]:
    backend = PostgresBackend(dsn)
    yield backend
    await backend.aclose()


class Fetches:
    """Each ``FETCH FORWARD`` the PostgreSQL backend sent: (rows asked for, rows sent)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.seen: list[tuple[int, int]] = []
        fetch = postgres_module._Fetcher.fetch

        def recorded(fetcher: Any, rows: int) -> list[tuple[Any, ...]]:
            sent = fetch(fetcher, rows)
            self.seen.append((rows, len(sent)))
            return sent

        monkeypatch.setattr(postgres_module._Fetcher, "fetch", recorded)

    @property
    def rows_sent(self) -> int:
        return sum(sent for _, sent in self.seen)


# --- 1. PostgreSQL fetched 10,000 rows a round trip whatever the row cap ---------------------


async def test_postgres_fetches_no_more_rows_than_the_cap_needs(
    pg: PostgresBackend, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a row cap of 5 the server sent 10,000 rows (``batch_rows``) for the 5 kept: the
    cap and one row more (which tells the result was cut) are all that is fetched."""
    fetches = Fetches(monkeypatch)
    tool = SQLTool(workspace, pg, max_rows=5)
    result = await run(tool, "SELECT n FROM numbers ORDER BY n")
    assert result["is_error"] is False, result["content"]
    assert result["metadata"]["row_count"] == 5
    assert result["metadata"]["truncated"] is True
    assert fetches.seen == [(6, 6)]
    assert (workspace / "result.csv").read_text().split() == ["n", "1", "2", "3", "4", "5"]


@pytest.mark.parametrize(
    ("rows", "cap", "batch", "fetched", "cut"),
    [
        (5, 5, 10_000, [(6, 5)], False),  # exactly the cap: one round trip tells all
        (6, 5, 10_000, [(6, 6)], True),
        (25, 100, 10, [(10, 10), (10, 10), (10, 5)], False),  # a short batch is the last
        (30, 20, 10, [(10, 10), (10, 10), (1, 1)], True),  # the row past the cap, alone
        (20, 100, 10, [(10, 10), (10, 10), (10, 0)], False),
    ],
)
async def test_postgres_fetches_around_the_cap(
    dsn: str,
    workspace: Path,
    monkeypatch: pytest.MonkeyPatch,
    rows: int,
    cap: int,
    batch: int,
    fetched: list[tuple[int, int]],
    cut: bool,
) -> None:
    """Where the cap and the result's end fall against the round trips: every row kept is
    fetched, and no round trip asks for more than the rows still wanted."""
    fetches = Fetches(monkeypatch)
    backend = PostgresBackend(dsn, batch_rows=batch)
    try:
        result = await backend.query(
            f"SELECT n FROM numbers WHERE n <= {rows} ORDER BY n",
            workspace / "r.csv",
            workspace / "r.parquet",
            max_rows=cap,
        )
    finally:
        await backend.aclose()
    assert fetches.seen == fetched
    assert result.row_count == min(rows, cap)
    assert result.truncated is cut
    lines = (workspace / "r.csv").read_text().split()
    assert lines == ["n", *(str(i) for i in range(1, min(rows, cap) + 1))]


@pytest.fixture
async def bq(bigquery_server: BigQueryServer) -> AsyncIterator[BigQueryBackend]:
    backend = BigQueryBackend("test-project", "claims", api_endpoint=bigquery_server.base_url)
    yield backend
    await backend.aclose()


def rows_sent(server: BigQueryServer, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The rows of each page of results the stand-in sends, as they are sent."""
    sent: list[int] = []
    page = BigQueryServer._page

    def counted(self: BigQueryServer, *args: Any) -> dict[str, Any]:
        answer = page(self, *args)
        sent.append(len(answer.get("rows", [])))
        return answer

    monkeypatch.setattr(BigQueryServer, "_page", counted)
    return sent


async def test_bigquery_pages_hold_no_more_rows_than_the_cap_needs(
    bigquery_server: BigQueryServer,
    bq: BigQueryBackend,
    workspace: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With a row cap of 5, BigQuery sent a page of 10,000 rows (``page_rows``) of which
    5 were kept; a page now holds the cap and the one row that tells the result was cut."""
    sent = rows_sent(bigquery_server, monkeypatch)
    tool = SQLTool(workspace, bq, max_rows=5)
    result = await run(tool, "SELECT claim_id FROM rx_claims ORDER BY claim_id")
    assert result["is_error"] is False, result["content"]
    assert result["metadata"]["row_count"] == 5
    assert result["metadata"]["truncated"] is True
    assert sum(sent) == 6
    assert (workspace / "result.csv").read_text().split() == ["claim_id", "0", "1", "2", "3", "4"]


# --- 2. the table list of an unknown-table error could take a minute --------------------------


async def until(condition: Callable[[], bool], seconds: float = 30.0) -> None:
    """Wait (polling) until ``condition()`` holds; fail the test after ``seconds``."""
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    pytest.fail("timed out waiting for a condition")


def sleeping_catalogues(dsn: str) -> int:
    with psycopg.connect(dsn, autocommit=True) as connection:
        row = connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE state = 'active' "
            "AND query LIKE '%pg_sleep(30)%' AND pid <> pg_backend_pid()"
        ).fetchone()
    assert row is not None
    return int(row[0])


async def test_a_slow_catalogue_does_not_hold_up_an_unknown_table_error(
    dsn: str, workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The table list shown with an unknown-table error was read with a fixed 60 s timeout,
    whatever the tool's: on a slow catalogue a 2 s tool waited (here 30 s) for a hint. The
    list now gets what the query left of its timeout, and the catalogue's statement is
    cancelled on the server when that runs out; the database's own error still answers."""
    slow = f"SELECT catalog.* FROM ({postgres_module._CATALOG_SQL}) AS catalog, pg_sleep(30)"
    monkeypatch.setattr(postgres_module, "_CATALOG_SQL", slow)
    tool = SQLTool(workspace, PostgresBackend(dsn), timeout=2)
    try:
        result = await run(tool, "SELECT * FROM no_such_table")
    finally:
        await tool.backend.aclose()
    content = str(result["content"])
    assert result["is_error"] is True
    assert 'relation "no_such_table" does not exist' in content
    assert "Tables in the database" not in content
    await until(lambda: sleeping_catalogues(dsn) == 0)  # cancelled, not left running


async def test_the_table_list_still_comes_with_an_unknown_table_error(
    dsn: str, workspace: Path
) -> None:
    tool = SQLTool(workspace, PostgresBackend(dsn), timeout=2)
    try:
        result = await run(tool, "SELECT * FROM no_such_table")
    finally:
        await tool.backend.aclose()
    assert "Tables in the database: numbers." in str(result["content"])


# --- 3. a killed writer's hidden .partial files stayed in the workspace for good -------------

#: Writes a result as the SQL tool does, then hangs before its last batch (to be killed).
HANGING_WRITER = """
import sys, time
import pyarrow as pa
from loopwright.sql.base import Interrupter
from loopwright.sql.output import write_result

schema = pa.schema([("n", pa.int64())])

def batches():
    yield pa.record_batch([pa.array(range(10))], schema=schema)
    print("writing", flush=True)
    time.sleep(3600)
    yield pa.record_batch([pa.array(range(10))], schema=schema)

write_result(schema, batches(), sys.argv[1] + "/result.csv", sys.argv[1] + "/result.parquet",
             max_rows=100, preview_rows=1, stop=Interrupter(), piece_rows=5)
"""


@contextlib.contextmanager
def hanging_writer(directory: Path) -> Iterator[subprocess.Popen[str]]:
    """A process in the middle of writing ``result.csv`` and ``result.parquet``."""
    process = subprocess.Popen(
        [sys.executable, "-c", HANGING_WRITER, str(directory)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline() == "writing\n"
        yield process
    finally:
        process.kill()
        process.wait()


def hidden(directory: Path) -> list[str]:
    return sorted(name for name in os.listdir(directory) if name.startswith("."))


async def test_a_killed_writers_partial_files_go_when_the_workspace_is_next_saved_to(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A process killed while it wrote a result left ``.result.csv.<hex>.partial`` and its
    Parquet twin in the workspace for good (the agent's file listings showed them). The
    next save into the workspace has them removed, in the background."""
    with hanging_writer(workspace) as writer:
        partials = hidden(workspace)
        assert len(partials) == 2
        assert all(name.endswith(".partial") for name in partials)
        writer.kill()
        writer.wait()
    monkeypatch.setattr(files_module, "STALE_AFTER_S", 0.0, raising=False)  # not a minute
    tool = SQLTool(workspace, "duckdb:///:memory:")
    try:
        result = await run(tool, "SELECT 42 AS n", "other")
    finally:
        await tool.aclose()
    assert result["is_error"] is False, result["content"]
    await until(lambda: hidden(workspace) == [])
    assert sorted(os.listdir(workspace)) == ["other.csv", "other.parquet"]


def test_a_live_writers_partial_files_are_never_swept(workspace: Path) -> None:
    """A writer in another process that is still at work (a long query sharing the
    workspace) keeps its files, however old they look; once it is dead they go."""
    from loopwright.sql.files import sweep

    later = time.time() + 3600  # as if everything were an hour old
    with hanging_writer(workspace) as writer:
        partials = hidden(workspace)
        assert sweep(str(workspace), now=later) == []
        assert hidden(workspace) == partials
        writer.kill()
        writer.wait()
        assert sorted(sweep(str(workspace), now=later)) == partials
    assert hidden(workspace) == []


def test_what_the_sweep_leaves_alone(workspace: Path) -> None:
    """A temporary file just created (not yet locked by its writer), files that only look
    like temporary ones, and anything not a regular file stay; an old link left by a
    crash between its making and its removal goes."""
    from loopwright.sql.files import sweep

    (workspace / "result.csv").write_text("n\n1\n")
    os.link(workspace / "result.csv", workspace / ".result.csv.0123abcd.old")
    (workspace / ".result.csv.89abcdef.partial").write_text("n\n")
    (workspace / ".notes.partial").write_text("mine")
    (workspace / ".x.csv.0123abcd.partial.txt").write_text("mine")
    (workspace / ".dir.0123abcd.partial").mkdir()
    os.symlink(workspace / "result.csv", workspace / ".link.0123abcd.partial")
    assert sweep(str(workspace)) == []  # all too fresh
    removed = sweep(str(workspace), now=time.time() + 3600)
    assert sorted(removed) == [".result.csv.0123abcd.old", ".result.csv.89abcdef.partial"]
    assert hidden(workspace) == [
        ".dir.0123abcd.partial",
        ".link.0123abcd.partial",
        ".notes.partial",
        ".x.csv.0123abcd.partial.txt",
    ]
    assert (workspace / "result.csv").read_text() == "n\n1\n"


# --- 4. BigQuery's names that need quoting ----------------------------------------------------


@pytest.fixture
def odd_names(bigquery_server: BigQueryServer) -> BigQueryServer:
    """Tables whose names BigQuery SQL must quote: a reserved word, a dash, a space."""
    for table in ("order", "rx-claims", "daily visits"):
        bigquery_server.load("claims", table, pa.table({"n": [1, 2, 3]}))
    return bigquery_server


async def test_bigquery_lists_names_as_sql_must_write_them(
    odd_names: BigQueryServer, bq: BigQueryBackend, workspace: Path
) -> None:
    """The table list of an unknown-table error named BigQuery's tables bare: ``order``,
    ``rx-claims`` and ``daily visits`` copied from it into a query are syntax errors (or
    a keyword). They come in backticks now, and each works as it is listed."""
    tool = SQLTool(workspace, bq)
    result = await run(tool, "SELECT * FROM no_such_table")
    content = str(result["content"])
    assert result["is_error"] is True
    assert "Not found: Table" in content
    listed = "`daily visits`, `order`, providers_bio, `rx-claims`, rx_claims"
    assert f"Tables in the database: {listed}." in content
    for name in listed.split(", "):
        counted = await run(tool, f"SELECT COUNT(*) AS n FROM {name}", "counted")
        assert counted["is_error"] is False, (name, counted["content"])


async def test_bigquery_names_without_a_default_dataset(
    odd_names: BigQueryServer, workspace: Path
) -> None:
    """With no default dataset the tables are listed ``dataset.table``, each part quoted
    where it must be; each works in a query as listed."""
    backend = BigQueryBackend("test-project", api_endpoint=odd_names.base_url)
    try:
        names = await backend.tables()
        assert names == [
            "claims.`daily visits`",
            "claims.`order`",
            "claims.providers_bio",
            "claims.`rx-claims`",
            "claims.rx_claims",
        ]
        for name in names:
            result = await backend.query(f"SELECT COUNT(*) AS n FROM {name}", workspace / "n.csv")
            assert result.row_count == 1
    finally:
        await backend.aclose()


def test_bigquery_quoting_of_one_name() -> None:
    from loopwright.sql.bigquery import quote_name

    assert quote_name("rx_claims") == "rx_claims"
    assert quote_name("_private2") == "_private2"
    assert quote_name("Select") == "`Select`"
    assert quote_name("2024_claims") == "`2024_claims`"
    assert quote_name("rx-claims") == "`rx-claims`"
    assert quote_name("a`b\\c") == "`a\\`b\\\\c`"


def test_bigquery_is_not_told_to_quote_with_double_quotes(
    odd_names: BigQueryServer, bq: BigQueryBackend
) -> None:
    """SQL BigQuery accepts (its dry run passes) but the read-only check cannot parse,
    holding backticks, was refused with "Quote names with double quotes, not backticks": in
    BigQuery backticks are how names are quoted, and double quotes make strings. (Its PIVOT
    advice was DuckDB's syntax too.)"""
    unparsable = UnparsableQuery("cannot parse", detail="Unexpected token at line 1")
    sql = "SELECT * FROM `order` PIVOT (SUM(n) FOR n IN (1, 2))"
    refusal = str(bq._syntax_error(sql, unparsable))
    assert "BigQuery accepts this SQL" in refusal
    assert "double quotes" not in refusal
    assert "USING" not in refusal
    assert "Write it with more common syntax" in refusal
    duckdb = str(accepted_elsewhere("DuckDB", sql, unparsable))  # DuckDB's advice stands
    assert 'Quote names with double quotes ("NDC_DRUG_NM"), not backticks.' in duckdb
