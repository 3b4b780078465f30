"""What the warehouse billed: BigQuery's bytes billed, next to the model's cost.

An analyst on BigQuery pays for the bytes each query bills (at least 10 MB per table read on
on-demand pricing, nothing for a result from the cache), often more than the model. The SQL
tool's metadata carries what BigQuery billed, the stats record it, and the CLI's closing line
of a turn, ``sessions report`` (tables and JSON) and the HTML transcript show it, with a cost
estimated at on-demand pricing, apart from the model's cost. DuckDB and PostgreSQL bill
nothing per query and add nothing to the output.

Real runs: the SQL tool against the BigQuery stand-in (:mod:`sql.bigquery_server`) and the
``loopwright`` CLI as a process with scripted models.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest

from cli_process import cli_env, run_cli
from loopwright.observability.stats import DEFAULT_BIGQUERY_USD_PER_TIB, WarehouseUsage
from loopwright.sql.bigquery import BigQueryBackend
from loopwright.sql.duckdb import DuckDBBackend
from loopwright.sql.postgres import PostgresBackend
from loopwright.tools.sql import SQLTool
from postgres_server import PostgresServer, postgres_server  # noqa: F401
from sql.bigquery_server import BigQueryServer

MB = 1024 * 1024
TIB = 1024**4
COUNT_RX = "SELECT COUNT(*) AS n FROM RX_CLAIMS"
JOINED = (
    "SELECT p.state, COUNT(*) AS n FROM RX_CLAIMS r JOIN PROVIDERS_BIO p "
    "ON r.PRESCRIBER_NPI_NBR = p.npi_number GROUP BY 1"
)


@pytest.fixture
def bigquery(claims_con: duckdb.DuckDBPyConnection) -> Iterator[BigQueryServer]:
    """The BigQuery stand-in with the claims tables as dataset ``claims`` (each far under
    10 MB: every table a query reads bills the 10 MB minimum)."""
    with BigQueryServer(project="test-project") as server:
        server.load_from("claims", claims_con)
        yield server


def _url(server: BigQueryServer) -> str:
    return f"bigquery://test-project/claims?api_endpoint={server.base_url}"


async def _sql(tool: SQLTool, sql: str, name: str) -> dict[str, Any]:
    result = await tool.execute({"sql": sql, "dataset_name": name, "description": name})
    assert result["is_error"] is False, result["content"]
    metadata = result.get("metadata")
    assert isinstance(metadata, dict)
    return metadata


# --- the SQL tool -----------------------------------------------------------------------------


async def test_the_sql_tool_says_what_bigquery_billed(
    bigquery: BigQueryServer, tmp_path: Path
) -> None:
    """The metadata carries BigQuery's totalBytesBilled of the finished job, not the bytes
    scanned: a query reading one small table bills 10 MB, one joining two tables 20 MB; the
    same query again, answered from BigQuery's cache, bills nothing and says so."""
    bigquery.query_cache = True
    backend = BigQueryBackend("test-project", "claims", api_endpoint=bigquery.base_url)
    try:
        tool = SQLTool(tmp_path, backend=backend)
        one = await _sql(tool, COUNT_RX, "one")
        assert one["bytes_billed"] == 10 * MB
        assert 0 < one["bytes_scanned"] < 10 * MB  # what it read is not what it cost
        assert one["cache_hit"] is False
        assert one["database"] == "BigQuery"

        two = await _sql(tool, JOINED, "two")
        assert two["bytes_billed"] == 20 * MB
        assert two["cache_hit"] is False

        again = await _sql(tool, COUNT_RX, "again")
        assert again["cache_hit"] is True
        assert again["bytes_billed"] == 0
    finally:
        await backend.aclose()
    # the figures are BigQuery's own, from the finished jobs
    finished = [j for j in bigquery.jobs.values() if j.state == "DONE"]
    assert sorted(j.bytes_billed for j in finished) == [0, 10 * MB, 20 * MB]


async def test_duckdb_and_postgresql_queries_carry_no_bill(
    claims_db: Path,
    postgres_server: PostgresServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    """DuckDB and PostgreSQL bill nothing per query: no bytes billed, no cache hit, nothing
    for the stats to add up."""
    dsn = postgres_server.create_database("warehouse_cost")
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute("CREATE TABLE rx_claims AS SELECT g AS n FROM generate_series(1, 9) g")
    for backend in (DuckDBBackend(claims_db), PostgresBackend(dsn)):
        try:
            metadata = await _sql(SQLTool(tmp_path, backend=backend), COUNT_RX, "n")
        finally:
            await backend.aclose()
        assert metadata["bytes_billed"] is None, backend.name
        assert metadata["cache_hit"] is None
        assert WarehouseUsage().add_record(metadata) is False
        assert WarehouseUsage.of([{"kind": "tool", **metadata}]) is None


def test_the_stand_in_enforces_the_cap_on_billed_bytes(bigquery: BigQueryServer) -> None:
    """As BigQuery does, maximumBytesBilled caps the bytes billed (10 MB at least per table),
    not the bytes scanned: a cap over the scan but under the minimum refuses the job."""
    from google.api_core.exceptions import BadRequest

    backend = BigQueryBackend(
        "test-project", "claims", api_endpoint=bigquery.base_url, maximum_bytes_billed=5 * MB
    )
    config = backend.job_config(dry_run=False)
    with pytest.raises(BadRequest, match=f"Query exceeded limit for bytes billed.*{10 * MB}"):
        backend.client.query(COUNT_RX, job_config=config).result()


async def test_a_cap_under_the_10_mb_minimum_is_refused_before_any_job(
    bigquery: BigQueryServer, tmp_path: Path
) -> None:
    """``maximum_bytes_billed`` caps bytes billed, 10 MB at least per table read. A join of
    two small tables under a 15 MB cap passed the check of the bytes scanned, started a job
    and came back as BigQuery's ``Query exceeded limit for bytes billed``; it is refused at
    the dry run, saying why and what to change, and no job runs."""
    backend = BigQueryBackend(
        "test-project", "claims", api_endpoint=bigquery.base_url, maximum_bytes_billed=15 * MB
    )
    try:
        tool = SQLTool(tmp_path, backend=backend)
        assert (await _sql(tool, COUNT_RX, "one"))["bytes_billed"] == 10 * MB
        refused = await tool.execute({"sql": JOINED, "dataset_name": "two", "description": "j"})
    finally:
        await backend.aclose()
    assert refused["is_error"] is True
    text = str(refused["content"])
    assert "BigQuery bills at least 10 MB per table a query reads: this one reads 2 tables" in text
    assert f"would bill at least {20 * MB:,} bytes" in text
    assert f"maximum_bytes_billed cap of {15 * MB:,} bytes" in text
    assert f"raise maximum_bytes_billed to {20 * MB:,} or more" in text
    assert "Scan less" not in text  # fewer columns would not help: each table bills 10 MB
    # a dry run and a job for the first query, a dry run only for the join: nothing started
    assert [bool(b["configuration"].get("dryRun")) for b in bigquery.job_bodies()] == [
        True,
        False,
        True,
    ]
    assert not (tmp_path / "two.csv").exists()


# --- the CLI: a turn's closing line, sessions report, the transcript ----------------------


def _script(tmp_path: Path, name: str, turns: list[Any]) -> str:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(turns), encoding="utf-8")
    return f"scripted:{path}"


def _query(sql: str, name: str) -> dict[str, Any]:
    return {"call": "SQL", "input": {"sql": sql, "dataset_name": name, "description": name}}


def _lw(
    home: Path, cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return run_cli(list(args), env={**cli_env(home), **(env or {})}, cwd=cwd)


def _footer(stdout: str) -> str:
    (line,) = [line for line in stdout.splitlines() if line.startswith("── ")]
    return line


def _report(home: Path, cwd: Path, session: str, *flags: str, **env: str) -> dict[str, Any]:
    done = _lw(home, cwd, "sessions", "report", session, "--json", *flags, env=env)
    assert done.returncode == 0, done.stderr
    report: dict[str, Any] = json.loads(done.stdout)
    return report


def _cost(billed: int, usd_per_tib: float = DEFAULT_BIGQUERY_USD_PER_TIB) -> float:
    return billed / TIB * usd_per_tib


def test_a_bigquery_turn_shows_its_bill_apart_from_the_model(
    bigquery: BigQueryServer, loopwright_home: Path, tmp_path: Path
) -> None:
    """Two turns of the healthcare agent on BigQuery: each turn's closing line says what
    BigQuery billed and its estimated cost, apart from the model's; ``sessions report``
    (JSON and tables) adds them up per run and for the session, with the total, at the
    on-demand price or the one configured; the HTML transcript shows them too."""
    bigquery.query_cache = True
    first = _script(
        tmp_path,
        "first",
        [_query(COUNT_RX, "rx_count"), _query(JOINED, "by_state"), "Counted."],
    )
    ran = _lw(
        loopwright_home, tmp_path, "healthcare", "--database", _url(bigquery),
        "-m", first, "--session", "wc1", "How many claims, and by state?",
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    footer = _footer(ran.stdout)
    assert "BigQuery 30 MB billed (2 queries) ≈ $0.0002" in footer, footer
    assert "$0.0000 model" in footer  # the scripted model costs nothing: said as the model's
    assert "≈ $0.0002 in all" in footer

    # the next turn asks the same again: BigQuery's cache answers and bills nothing
    second = _script(tmp_path, "second", [_query(COUNT_RX, "rx_again"), "Same."])
    again = _lw(
        loopwright_home, tmp_path, "healthcare", "--database", _url(bigquery),
        "-m", second, "--session", "wc1", "And again?",
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "BigQuery 0 B billed (1 query, 1 cached) ≈ $0.0000" in _footer(again.stdout)

    report = _report(loopwright_home, tmp_path, "wc1")
    warehouse = report["warehouse"]
    assert warehouse["database"] == "BigQuery"
    assert warehouse["queries"] == 3
    assert warehouse["cache_hits"] == 1
    assert warehouse["bytes_billed"] == 30 * MB
    assert warehouse["bytes_processed"] > 0
    assert warehouse["usd_per_tib"] == DEFAULT_BIGQUERY_USD_PER_TIB
    assert warehouse["cost_usd"] == pytest.approx(_cost(30 * MB))
    # the model's cost stays the model's; the total adds both
    assert report["usage"]["cost_usd"] == 0.0
    assert report["total_cost_usd"] == pytest.approx(report["usage"]["cost_usd"] + _cost(30 * MB))
    runs = report["runs"]
    assert [r["warehouse"]["bytes_billed"] for r in runs] == [30 * MB, 0]
    assert [r["warehouse"]["queries"] for r in runs] == [2, 1]
    assert runs[1]["warehouse"]["cache_hits"] == 1

    # another price: the environment's, or the option's
    priced = _report(loopwright_home, tmp_path, "wc1", LOOPWRIGHT_BIGQUERY_USD_PER_TIB="5")
    assert priced["warehouse"]["usd_per_tib"] == 5.0
    assert priced["warehouse"]["cost_usd"] == pytest.approx(_cost(30 * MB, 5.0))
    optioned = _report(loopwright_home, tmp_path, "wc1", "--usd-per-tib", "1000000")
    assert optioned["warehouse"]["cost_usd"] == pytest.approx(_cost(30 * MB, 1e6))
    assert optioned["total_cost_usd"] == pytest.approx(_cost(30 * MB, 1e6))

    # the session's history shows the whole bill on its usage line too
    shown = _lw(loopwright_home, tmp_path, "sessions", "show", "wc1")
    assert shown.returncode == 0, shown.stderr
    usage_line = next(line for line in shown.stdout.splitlines() if line.startswith("usage "))
    assert "BigQuery 30 MB billed (3 queries, 1 cached)" in usage_line, usage_line

    tables = _lw(loopwright_home, tmp_path, "sessions", "report", "wc1")
    assert tables.returncode == 0, tables.stderr
    assert "Warehouse (BigQuery)" in tables.stdout
    assert "30 MB" in tables.stdout
    assert "total cost  $0.0000 model + $0.0002 warehouse (est.) = $0.0002" in tables.stdout
    assert "6.25 USD per TiB billed" in tables.stdout

    exported = _lw(loopwright_home, tmp_path, "sessions", "export", "wc1", "-o", "-")
    assert exported.returncode == 0, exported.stderr
    page = exported.stdout
    assert "BigQuery billed" in page
    assert "total cost" in page
    assert "10 MB billed" in page  # each query's own bill, with its call
    assert "0 B billed (cached)" in page
    conversation = _lw(loopwright_home, tmp_path, "sessions", "export", "wc1", "--json", "-o", "-")
    record = json.loads(conversation.stdout)
    assert record["warehouse"]["bytes_billed"] == 30 * MB
    billed = [
        block["bytes_billed"]
        for message in record["messages"]
        for block in message["content"]
        if block.get("type") == "tool_result" and "bytes_billed" in block
    ]
    assert billed == [10 * MB, 20 * MB, 0]


def test_a_price_that_is_not_a_number_is_refused_clearly(
    bigquery: BigQueryServer, loopwright_home: Path, tmp_path: Path
) -> None:
    """A price per TiB that is not a number: the turn still ends (its bytes billed said, the
    estimate left out, and why); ``sessions report`` refuses in one sentence naming the
    setting, and the history is all there."""
    script = _script(tmp_path, "one", [_query(COUNT_RX, "rx_count"), "Counted."])
    bad = {"LOOPWRIGHT_BIGQUERY_USD_PER_TIB": "six"}
    ran = _lw(
        loopwright_home, tmp_path, "healthcare", "--database", _url(bigquery),
        "-m", script, "--session", "wc2", "How many?", env=bad,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    footer = _footer(ran.stdout)
    assert "BigQuery 10 MB billed (LOOPWRIGHT_BIGQUERY_USD_PER_TIB must be a number" in footer

    refused = _lw(loopwright_home, tmp_path, "sessions", "report", "wc2", "--json", env=bad)
    assert refused.returncode == 2
    assert "LOOPWRIGHT_BIGQUERY_USD_PER_TIB must be a number of USD per TiB" in refused.stderr
    assert "'six'" in refused.stderr
    negative = _lw(loopwright_home, tmp_path, "sessions", "report", "wc2", "--usd-per-tib", "-1")
    assert negative.returncode == 2
    assert "the price per TiB must be a number" in negative.stderr
    # nothing lost: with a usable price the report has the query's bill
    assert _report(loopwright_home, tmp_path, "wc2")["warehouse"]["bytes_billed"] == 10 * MB


def test_duckdb_turns_and_reports_say_nothing_of_a_warehouse(
    claims_db: Path, loopwright_home: Path, tmp_path: Path
) -> None:
    """On DuckDB nothing is billed per query: no warehouse in the closing line, the report's
    tables or the transcript, ``warehouse`` null in the JSON and the total the model's cost."""
    script = _script(tmp_path, "duck", [_query(COUNT_RX, "rx_count"), "Counted."])
    ran = _lw(
        loopwright_home, tmp_path, "healthcare", "--database", str(claims_db),
        "-m", script, "--session", "wc3", "How many?",
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    footer = _footer(ran.stdout)
    assert "billed" not in footer
    assert "$0.0000 · " in footer  # one cost, the model's, as ever
    assert "model ·" not in footer
    assert "in all" not in footer

    report = _report(loopwright_home, tmp_path, "wc3")
    assert report["warehouse"] is None
    assert all(run["warehouse"] is None for run in report["runs"])
    assert report["total_cost_usd"] == report["usage"]["cost_usd"]
    tables = _lw(loopwright_home, tmp_path, "sessions", "report", "wc3")
    assert "Warehouse" not in tables.stdout
    assert "billed" not in tables.stdout
    assert "total cost" not in tables.stdout
    page = _lw(loopwright_home, tmp_path, "sessions", "export", "wc3", "-o", "-").stdout
    assert "billed" not in page
    assert "total cost" not in page
