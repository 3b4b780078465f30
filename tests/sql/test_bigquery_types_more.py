"""More of BigQuery's types and query shapes, through the real ``google.cloud.bigquery.Client``
against the loopback stand-in: ``BIGNUMERIC`` to its 76 digits, ``RANGE<T>`` columns,
date-sharded tables read with a wildcard, temporary functions, and the job's own timeout."""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from loopwright.sql import BigQueryBackend, QueryRefused, SQLError, check_read_only
from loopwright.sql.base import Bill
from loopwright.tools.sql import SQLTool

from .bigquery_server import BigQueryServer

#: BIGNUMERIC's 38 digits before and 38 after the point: decimal256(76, 38)'s largest.
WIDEST = "12345678901234567890123456789012345678.12345678901234567890123456789012345678"
#: BigQuery's largest BIGNUMERIC, 39 digits before the point: more than decimal256(76, 38).
LARGEST = "578960446186580977117854925043439539266.34992332820282019728792003956564819967"

SHARDS = """
CREATE SCHEMA ga;
CREATE TABLE ga.events_20231231 AS SELECT 1 AS n, 'dec31' AS what;
CREATE TABLE ga.events_20240101 AS SELECT 2 AS n, 'jan01' AS what;
CREATE TABLE ga.events_20240131 AS SELECT 3 AS n, 'jan31' AS what;
CREATE TABLE ga.events_20240201 AS SELECT 4 AS n, 'feb01' AS what;
"""


@pytest.fixture
async def backend(bigquery_server: BigQueryServer) -> AsyncIterator[BigQueryBackend]:
    client = bigquery.Client(
        project="test-project",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options=ClientOptions(api_endpoint=bigquery_server.base_url),
    )
    backend = BigQueryBackend(
        "test-project", "claims", maximum_bytes_billed=50_000_000, client=client, page_rows=500
    )
    yield backend
    await backend.aclose()
    client.close()  # type: ignore[no-untyped-call]


def real_jobs(server: BigQueryServer) -> list[dict[str, object]]:
    return [b for b in server.job_bodies() if not b["configuration"].get("dryRun")]


# --- BIGNUMERIC -----------------------------------------------------------------------------


async def test_bignumeric_keeps_all_76_digits_in_both_files(
    backend: BigQueryBackend, workspace: Path
) -> None:
    """38 digits each side of the point, the smallest step, and BIGNUMERIC in an array and a
    struct: every digit in the CSV (JSON text where a float would round) and in Parquet."""
    sql = f"""
    SELECT BIGNUMERIC '{WIDEST}' AS widest, BIGNUMERIC '-{WIDEST}' AS lowest,
           BIGNUMERIC '0.00000000000000000000000000000000000001' AS step,
           [BIGNUMERIC '1.5', BIGNUMERIC '{WIDEST}'] AS listed,
           STRUCT(BIGNUMERIC '-{WIDEST}' AS b) AS s
    """
    result = await backend.query(sql, workspace / "b.csv", workspace / "b.parquet")
    assert result.columns == [
        ("widest", "BIGNUMERIC"),
        ("lowest", "BIGNUMERIC"),
        ("step", "BIGNUMERIC"),
        ("listed", "ARRAY<BIGNUMERIC>"),
        ("s", "STRUCT<b BIGNUMERIC>"),
    ]
    step = "0." + "0" * 37 + "1"
    assert (workspace / "b.csv").read_text().splitlines() == [
        "widest,lowest,step,listed,s",
        f'{WIDEST},-{WIDEST},{step},"[1.5, ""{WIDEST}""]","{{""b"": ""-{WIDEST}""}}"',
    ]
    parquet = pq.read_table(workspace / "b.parquet")
    assert parquet.schema.field("widest").type == pa.decimal256(76, 38)
    widest, lowest = Decimal(WIDEST), Decimal(f"-{WIDEST}")  # not -widest: 28 digits
    assert parquet.to_pylist() == [
        {
            "widest": widest,
            "lowest": lowest,
            "step": Decimal(step),
            "listed": [Decimal("1.5"), widest],
            "s": {"b": lowest},
        }
    ]


async def test_a_bignumeric_past_decimal256_is_refused_in_words(
    backend: BigQueryBackend, workspace: Path
) -> None:
    """BigQuery's largest BIGNUMERIC has 39 digits before the point, one more than
    decimal256(76, 38) holds: the client's ArrowInvalid ("Decimal type with precision 77 does
    not fit...") came back as if BigQuery had said it. Now the message names the columns and
    the cast that keeps every digit; the job's bill is still told."""
    bills: list[Bill] = []
    sql = f"SELECT 1 AS n, BIGNUMERIC '{LARGEST}' AS big"
    with pytest.raises(SQLError) as raised:
        await backend.query(sql, workspace / "x.csv", workspace / "x.parquet", on_bill=bills.append)
    message = str(raised.value)
    assert "10^38 or more" in message
    assert "BIGNUMERIC columns: big" in message
    assert "CAST(big AS STRING)" in message
    assert "precision 77" not in message
    assert not (workspace / "x.csv").exists()
    assert not (workspace / "x.parquet").exists()
    assert len(bills) == 1  # the job ran and was billed before its rows were read
    # cast to text, as told: every digit
    fixed = f"SELECT 1 AS n, CAST(BIGNUMERIC '{LARGEST}' AS STRING) AS big"
    result = await backend.query(fixed, workspace / "x.csv")
    assert result.preview == [(1, LARGEST)]


# --- RANGE ----------------------------------------------------------------------------------


async def test_range_columns_show_their_element_type_and_keep_start_and_end(
    backend: BigQueryBackend, workspace: Path
) -> None:
    """RANGE<DATE|DATETIME|TIMESTAMP> were shown as plain "RANGE": the model could not tell
    dates from timestamps. They are structs of start and end (null: UNBOUNDED), typed in
    Parquet and JSON in the CSV."""
    sql = """
    SELECT RANGE(DATE '2024-01-01', DATE '2024-02-01') AS d,
           RANGE<DATETIME> '[2024-01-01 10:00:00, UNBOUNDED)' AS dtm,
           RANGE<TIMESTAMP> '[2024-01-01 10:00:00.5+00, 2024-01-02 00:00:00+00)' AS ts,
           CAST(NULL AS RANGE<DATE>) AS none
    """
    result = await backend.query(sql, workspace / "r.csv", workspace / "r.parquet")
    assert result.columns == [
        ("d", "RANGE<DATE>"),
        ("dtm", "RANGE<DATETIME>"),
        ("ts", "RANGE<TIMESTAMP>"),
        ("none", "RANGE<DATE>"),
    ]
    assert (workspace / "r.csv").read_text().splitlines() == [
        "d,dtm,ts,none",
        '"{""start"": ""2024-01-01"", ""end"": ""2024-02-01""}",'
        '"{""start"": ""2024-01-01T10:00:00"", ""end"": null}",'
        '"{""start"": ""2024-01-01T10:00:00.500000+00:00"", '
        '""end"": ""2024-01-02T00:00:00+00:00""}",',
    ]
    parquet = pq.read_table(workspace / "r.parquet")
    assert parquet.schema.field("d").type == pa.struct(
        [("start", pa.date32()), ("end", pa.date32())]
    )
    assert parquet.schema.field("ts").type.field("start").type == pa.timestamp("us", "UTC")
    row = parquet.to_pylist()[0]
    assert row["d"] == {"start": dt.date(2024, 1, 1), "end": dt.date(2024, 2, 1)}
    assert row["dtm"] == {"start": dt.datetime(2024, 1, 1, 10), "end": None}
    assert row["none"] is None


async def test_arrays_of_ranges_are_read(backend: BigQueryBackend, workspace: Path) -> None:
    """ARRAY<RANGE<T>> (what GENERATE_RANGE_ARRAY returns), alone or in a struct: the client
    drops the ranges' element type and failed with "Range element type cannot be None"."""
    sql = """
    SELECT [RANGE(DATE '2024-01-01', DATE '2024-01-02'), RANGE(DATE '2024-02-01', NULL)] AS arr,
           STRUCT([RANGE(DATETIME '2024-01-01 00:00:00', NULL)] AS rs, 7 AS n) AS s
    """
    result = await backend.query(sql, workspace / "a.csv", workspace / "a.parquet")
    assert result.columns == [
        ("arr", "ARRAY<RANGE<DATE>>"),
        ("s", "STRUCT<rs ARRAY<RANGE<DATETIME>>, n INTEGER>"),
    ]
    assert pq.read_table(workspace / "a.parquet").to_pylist() == [
        {
            "arr": [
                {"start": dt.date(2024, 1, 1), "end": dt.date(2024, 1, 2)},
                {"start": dt.date(2024, 2, 1), "end": None},
            ],
            "s": {"rs": [{"start": dt.datetime(2024, 1, 1), "end": None}], "n": 7},
        }
    ]
    assert (workspace / "a.csv").read_text().splitlines()[1] == (
        '"[{""start"": ""2024-01-01"", ""end"": ""2024-01-02""}, '
        '{""start"": ""2024-02-01"", ""end"": null}]",'
        '"{""rs"": [{""start"": ""2024-01-01T00:00:00"", ""end"": null}], ""n"": 7}"'
    )


async def test_the_schema_shows_a_range_columns_element_type(
    backend: BigQueryBackend, bigquery_server: BigQueryServer
) -> None:
    bigquery_server.setup(
        "CREATE TABLE claims.coverage AS SELECT 1 AS member_id, "
        "{'__range_start__': DATE '2024-01-01', '__range_end__': NULL::DATE} AS eligible"
    )
    schema = await backend.schema()
    assert schema["coverage"] == [("member_id", "INTEGER"), ("eligible", "RANGE<DATE>")]


# --- date-sharded tables --------------------------------------------------------------------


async def test_a_wildcard_over_date_shards_runs_and_scans_only_the_shards_kept(
    backend: BigQueryBackend, bigquery_server: BigQueryServer, workspace: Path
) -> None:
    """``events_*`` with a ``_TABLE_SUFFIX`` range: the read-only check, the dry run, the bytes
    cap (10 MB billed at least per shard read) and the job take it as it is."""
    bigquery_server.setup(SHARDS)
    sql = """
    SELECT what, _TABLE_SUFFIX AS day
    FROM `test-project.ga.events_*`
    WHERE _TABLE_SUFFIX BETWEEN '20240101' AND '20240131' AND what != "x"
    ORDER BY n
    """
    check_read_only(sql, "bigquery")
    tool = SQLTool(workspace, backend=backend, timeout=30)
    result = dict(await tool.execute({"sql": sql, "dataset_name": "jan", "description": "t"}))
    assert result["is_error"] is False, result["content"]
    assert (workspace / "jan.csv").read_text().splitlines() == [
        "what,day",
        "jan01,20240101",
        "jan31,20240131",
    ]
    assert "Scanned 32 bytes." in str(result["content"])  # two shards of 1 row x 2 columns x 8
    dry = backend.dry_run(sql)
    assert sorted(t.table_id for t in dry.referenced_tables) == [
        "events_20240101",
        "events_20240131",
    ]
    # SELECT * leaves the pseudo-column out, as BigQuery does
    star = "SELECT * FROM ga.`events_*` WHERE _TABLE_SUFFIX > '20240131' ORDER BY n"
    everything = await backend.query(star, workspace / "star.csv")
    assert everything.columns == [("n", "INTEGER"), ("what", "STRING")]
    assert everything.preview == [(4, "feb01")]


async def test_a_wildcard_over_too_many_shards_is_refused_before_it_runs(
    bigquery_server: BigQueryServer, workspace: Path
) -> None:
    """Each shard read bills 10 MB at least: four shards under a 30 MB cap are refused by
    the dry run's count, with what to do, before a job is started."""
    bigquery_server.setup(SHARDS)
    client = bigquery.Client(
        project="test-project",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options=ClientOptions(api_endpoint=bigquery_server.base_url),
    )
    backend = BigQueryBackend("test-project", "ga", maximum_bytes_billed=30_000_000, client=client)
    try:
        with pytest.raises(QueryRefused, match="reads 4 tables"):
            await backend.query("SELECT n FROM `events_*`", workspace / "all.csv")
        narrow = "SELECT n FROM `events_*` WHERE _TABLE_SUFFIX LIKE '202401%'"
        assert (await backend.query(narrow, workspace / "jan.csv")).row_count == 2
    finally:
        await backend.aclose()
        client.close()  # type: ignore[no-untyped-call]
    assert len(real_jobs(bigquery_server)) == 1


# --- temporary functions --------------------------------------------------------------------

TEMP_FUNCTION = """
CREATE TEMP FUNCTION per_unit(paid FLOAT64, qty INT64) AS (paid / qty);
SELECT ROUND(SUM(per_unit(paid_amt, dispensed_quantity_val)), 2) AS total FROM rx_claims
"""


def test_bigquerys_dry_run_reads_temporary_functions_and_a_query_as_a_select(
    backend: BigQueryBackend,
) -> None:
    """BigQuery: "any request with multiple statements [is] a multi-statement query, unless
    the statements consist entirely of CREATE TEMP FUNCTION statements followed by a single
    SELECT statement". The backend's own lock (the dry run's statement type) lets it
    through; a persistent function, or two queries, still make a script."""
    assert backend.dry_run(TEMP_FUNCTION).statement_type == "SELECT"
    for script in (
        "CREATE FUNCTION claims.per_unit(p FLOAT64) AS (p); SELECT 1 AS n",
        "CREATE TEMP FUNCTION f(x INT64) AS (x); SELECT f(1) AS n; SELECT 2 AS n",
    ):
        with pytest.raises(QueryRefused, match="SCRIPT"):
            backend.dry_run(script)


async def test_a_temporary_function_and_one_query_run(
    backend: BigQueryBackend, workspace: Path
) -> None:
    """BigQuery runs temporary functions and one query as one query job: they were refused
    as "CREATE statements are not allowed", so a model that defines a helper function (a
    common BigQuery idiom) could not run the query at all."""
    result = await backend.query(TEMP_FUNCTION, workspace / "t.csv")
    assert [name for name, _ in result.columns] == ["total"]
    assert result.row_count == 1
    tool = SQLTool(workspace, backend=backend)
    sql = (
        'CREATE TEMP FUNCTION twice(x FLOAT64) RETURNS FLOAT64 LANGUAGE js AS r"""return 2*x;""";'
        "\nCREATE OR REPLACE TEMPORARY FUNCTION one() AS (1);\nSELECT one() AS n"
    )
    ran = dict(await tool.execute({"sql": sql, "dataset_name": "t2", "description": "t"}))
    assert ran["is_error"] is False, ran["content"]


@pytest.mark.parametrize(
    ("sql", "said"),
    [
        (
            "CREATE TEMP FUNCTION f() AS ((SELECT COUNT(*) FROM EXTERNAL_QUERY('c', 'x')));"
            " SELECT f()",
            "external_query",
        ),
        ("CREATE FUNCTION claims.f(x INT64) AS (x); SELECT 1", "CREATE TEMP FUNCTION"),
        ("CREATE TEMP TABLE t AS SELECT 1 AS n; SELECT n FROM t", "CREATE TEMP FUNCTION"),
        ("CREATE TEMP FUNCTION f(x INT64) AS (x)", "CREATE TEMP FUNCTION"),
        ("CREATE TEMP FUNCTION f(x INT64) AS (x); SELECT 1; SELECT 2", "2 statements"),
    ],
)
def test_the_read_only_check_judges_temporary_functions_and_their_bodies(
    sql: str, said: str
) -> None:
    with pytest.raises(QueryRefused, match=said):
        check_read_only(sql, "bigquery")


def test_temporary_functions_stay_refused_on_the_other_databases() -> None:
    for dialect in ("duckdb", "postgres"):
        with pytest.raises(QueryRefused, match="CREATE statements are not allowed"):
            check_read_only("CREATE TEMP FUNCTION f(x INT64) AS (x); SELECT f(1)", dialect)


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE FUNCTION claims.f(x INT64) AS (x); SELECT 1",
        "CREATE TEMP TABLE t AS SELECT 1 AS n; SELECT n FROM t",
        "CREATE TEMP FUNCTION f(x INT64) AS (x); SELECT 1; SELECT 2",
        "CREATE TEMP FUNCTION f(x INT64) AS (x); DELETE FROM claims.rx_claims WHERE true",
        "CREATE TEMP FUNCTION f(x INT64) AS (x)",
    ],
)
async def test_what_is_not_temporary_functions_and_one_query_stays_refused(
    backend: BigQueryBackend, bigquery_server: BigQueryServer, workspace: Path, sql: str
) -> None:
    with pytest.raises(QueryRefused):
        await backend.query(sql, workspace / "no.csv")
    assert bigquery_server.job_bodies() == []  # refused before anything reached BigQuery


# --- the job's own timeout ------------------------------------------------------------------


async def test_the_job_carries_the_tools_timeout_for_bigquery_to_enforce(
    backend: BigQueryBackend, bigquery_server: BigQueryServer, workspace: Path
) -> None:
    """``jobTimeoutMs`` is on the job BigQuery runs (it stops the job itself should the
    client die), from the SQL tool's timeout; the dry run, which runs nothing, has none."""
    tool = SQLTool(workspace, backend=backend, timeout=7.5)
    sql = "SELECT COUNT(*) AS n FROM rx_claims"
    result = dict(await tool.execute({"sql": sql, "dataset_name": "n", "description": "t"}))
    assert result["is_error"] is False
    dry, real = bigquery_server.job_bodies()
    assert "jobTimeoutMs" not in dry["configuration"]
    assert real["configuration"]["jobTimeoutMs"] == "7500"
