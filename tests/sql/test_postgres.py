"""The SQL tool on a real PostgreSQL server (started on 127.0.0.1 by the test session)."""

from __future__ import annotations

import csv as csvlib
import datetime as dt
import os
import threading
import tracemalloc
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import polars as pl
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from polars.testing import assert_frame_equal

from loopwright.sql import PostgresBackend, SQLError, connect
from loopwright.tools.sql import SQLTool
from postgres_server import PostgresServer

from .conftest import unholdable_intervals

SETUP = """
CREATE TABLE rx_claims (
    claim_id integer PRIMARY KEY,
    prescriber_npi_nbr bigint NOT NULL,
    ndc_drug_nm text NOT NULL,
    prescriber_npi_state_cd char(2) NOT NULL,
    service_date_dd date NOT NULL,
    paid_amt numeric(10, 2),
    ratio double precision,
    filled_at timestamptz,
    tags text[],
    details jsonb,
    wait interval
);
INSERT INTO rx_claims
SELECT g,
       1000000000 + (g * g) % 40,
       (ARRAY['HUMIRA', 'ELIQUIS', 'OZEMPIC', 'KEYTRUDA'])[1 + (g * 3 + g / 11) % 4],
       (ARRAY['CA', 'TX', 'NY', 'FL'])[1 + (g / 3 + g % 5) % 4],
       DATE '2024-01-01' + g % 366,
       CASE WHEN g % 9 = 0 THEN NULL ELSE round((g % 1000) * 1.37, 2) END,
       g / 7.0,
       TIMESTAMPTZ '2024-01-01 00:00:00+00' + g * INTERVAL '1 hour',
       ARRAY['a', 'b'],
       jsonb_build_object('g', g),
       g * INTERVAL '1 minute'
FROM generate_series(1, 1200) AS g;
CREATE SCHEMA audit;
CREATE TABLE audit.log (id serial, note text);
CREATE FUNCTION audit.write_note() RETURNS integer LANGUAGE sql
    AS $$ INSERT INTO audit.log (note) VALUES ('written') RETURNING id $$;
"""

HUMIRA_CA = """
SELECT prescriber_npi_nbr, COUNT(*) AS rx_count, SUM(paid_amt) AS paid
FROM rx_claims
WHERE ndc_drug_nm = 'HUMIRA' AND prescriber_npi_state_cd = 'CA'
GROUP BY prescriber_npi_nbr
ORDER BY rx_count DESC, prescriber_npi_nbr
LIMIT 10
"""


@pytest.fixture(scope="module")
def dsn(postgres_server: PostgresServer) -> str:
    """One database for the module: nothing here can change it (that is the point)."""
    dsn = postgres_server.create_database("sqltool")
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(SETUP.encode())
    return dsn


@pytest.fixture
async def tool(dsn: str, workspace: Path) -> AsyncIterator[SQLTool]:
    tool = SQLTool(workspace, backend=dsn, timeout=30)
    yield tool
    await tool.aclose()


async def run(tool: SQLTool, sql: str, name: str = "result") -> dict[str, object]:
    return dict(await tool.execute({"sql": sql, "dataset_name": name, "description": "test"}))


def count_rows(dsn: str) -> int:
    with psycopg.connect(dsn) as connection:
        row = connection.execute("SELECT count(*) FROM rx_claims").fetchone()
    assert row is not None
    return int(row[0])


async def test_the_guides_example_matches_the_database(
    tool: SQLTool, dsn: str, workspace: Path
) -> None:
    result = await run(tool, HUMIRA_CA, "humira_ca_top10")
    assert result["is_error"] is False
    with psycopg.connect(dsn) as connection:
        expected = connection.execute(HUMIRA_CA).fetchall()
    parquet = pl.read_parquet(workspace / "humira_ca_top10.parquet")
    assert parquet.rows() == [(npi, n, paid) for npi, n, paid in expected]  # exact decimals
    csv = pl.read_csv(workspace / "humira_ca_top10.csv", schema=parquet.schema)
    assert_frame_equal(csv, parquet)
    content = str(result["content"])
    assert f"Saved {len(expected)} rows × 3 columns" in content
    assert (
        "prescriber_npi_nbr (int8), rx_count (int8), paid (numeric, saved as decimal(38,2))"
        in content
    )
    assert f"| {expected[0][0]} | {expected[0][1]} |" in content


async def test_postgres_types_land_in_both_files(tool: SQLTool, workspace: Path) -> None:
    result = await run(tool, "SELECT * FROM rx_claims ORDER BY claim_id")
    assert result["is_error"] is False
    parquet = pl.read_parquet(workspace / "result.parquet")
    assert parquet.height == 1200
    assert parquet.schema["paid_amt"] == pl.Decimal(10, 2)
    assert parquet.schema["service_date_dd"] == pl.Date
    assert parquet.schema["filled_at"] == pl.Datetime("us", "UTC")
    assert parquet.schema["tags"] == pl.List(pl.String)
    first = parquet.row(0, named=True)
    assert first["paid_amt"] == Decimal("1.37")
    assert first["filled_at"] == dt.datetime(2024, 1, 1, 1, tzinfo=dt.UTC)
    assert first["details"] == '{"g": 1}'
    assert first["wait"] == "PT60S"  # intervals are ISO 8601 in both files, as DuckDB's
    assert first["prescriber_npi_state_cd"] in {"CA", "TX", "NY", "FL"}
    csv = pl.read_csv(workspace / "result.csv", infer_schema=False)
    assert csv.row(0, named=True)["tags"] == '["a", "b"]'
    assert csv.row(0, named=True)["wait"] == "PT60S"
    assert csv["paid_amt"].null_count() == parquet["paid_amt"].null_count() == 133


INTERVALS = """
SELECT INTERVAL '1 year 2 months 3 days 04:05:06.789' AS long, INTERVAL '1 month' AS month,
       INTERVAL '-1 day' + INTERVAL '2 hours 3 minutes' AS mixed,
       -INTERVAL '1.5 seconds' AS negative,
       INTERVAL '0' AS zero, NULL::interval AS missing
"""


async def test_intervals_keep_months_and_match_duckdbs_files(
    postgres_server: PostgresServer, workspace: Path
) -> None:
    """psycopg's timedelta made a month 30 days; the files now hold what the server holds,
    byte for byte as DuckDB writes the same intervals, even where the database's
    IntervalStyle is not the default."""
    dsn = postgres_server.create_database("intervals")
    name = dsn.rsplit("/", 1)[-1].split("?")[0]
    postgres_server.execute(f"ALTER DATABASE \"{name}\" SET intervalstyle = 'iso_8601'")
    backend = connect(dsn)
    duckdb_backend = connect("duckdb://:memory:")
    try:
        result = await backend.query(INTERVALS, workspace / "pg.csv", workspace / "pg.parquet")
        await duckdb_backend.query(INTERVALS, workspace / "dd.csv", workspace / "dd.parquet")
        array = "SELECT ARRAY[INTERVAL '1 month', NULL, INTERVAL '2 days'] AS a"
        arrays = await backend.query(array, workspace / "a.csv", workspace / "a.parquet")
        await duckdb_backend.query(array, workspace / "b.csv", workspace / "b.parquet")
    finally:
        await backend.aclose()
        await duckdb_backend.aclose()
    expected = ("P14M3DT14706.789S", "P1M", "P-1DT7380S", "PT-1.5S", "PT0S", None)
    assert result.preview == [expected]
    assert [kind for _, kind in result.columns] == ["interval"] * 6
    assert (workspace / "pg.csv").read_bytes() == (workspace / "dd.csv").read_bytes()
    assert pl.read_parquet(workspace / "pg.parquet").row(0) == expected
    assert pl.read_parquet(workspace / "dd.parquet").row(0) == expected
    # arrays of intervals: lists of the same text in Parquet, JSON in the CSV, as DuckDB's
    assert arrays.preview == [(["P1M", None, "P2D"],)]
    assert (workspace / "a.csv").read_bytes() == (workspace / "b.csv").read_bytes()
    assert (workspace / "a.csv").read_text() == 'a\n"[""P1M"", null, ""P2D""]"\n'
    assert pl.read_parquet(workspace / "a.parquet").equals(pl.read_parquet(workspace / "b.parquet"))
    assert pl.read_parquet(workspace / "a.parquet")["a"].to_list() == [["P1M", None, "P2D"]]


async def test_numeric_arrays_are_lists_of_decimals(tool: SQLTool, workspace: Path) -> None:
    """numeric[] (array_agg of an amount) used to fail in the conversion to Arrow, then was
    lists of floats; it is lists of exact decimals."""
    result = await run(
        tool,
        "SELECT prescriber_npi_nbr, array_agg(paid_amt ORDER BY claim_id) AS paid "
        "FROM rx_claims WHERE claim_id IN (1, 9, 10) GROUP BY 1 ORDER BY 1",
    )
    assert result["is_error"] is False, result["content"]
    parquet = pl.read_parquet(workspace / "result.parquet")
    assert parquet.schema["paid"] == pl.List(pl.Decimal(38, 2))
    assert sorted(v for paid in parquet["paid"].to_list() for v in paid if v is not None) == [
        Decimal("1.37"),
        Decimal("13.70"),
    ]
    assert parquet["paid"].list.len().sum() == 3  # claim 9's amount is NULL, kept as null


@pytest.mark.parametrize(
    ("sql", "says"),
    [
        (
            "SELECT ARRAY[[1, 2], [3, 4]] AS grid",
            "column grid (int4[]) could not be saved: it holds multi-dimensional arrays",
        ),
        (  # past DuckDB's last timestamp (PostgreSQL's go on to 294276): Arrow has none
            "SELECT '294250-01-01'::timestamp AS until",
            "PostgreSQL sent a value the result files cannot hold "
            "(timestamp too large (after year 10K): '294250-01-01 00:00:00')",
        ),
    ],
)
async def test_values_the_files_cannot_hold_are_clear_errors_that_keep_old_files(
    tool: SQLTool, workspace: Path, sql: str, says: str
) -> None:
    first = await run(tool, "SELECT 1 AS kept", name="held")
    assert first["is_error"] is False
    before = (workspace / "held.csv").read_bytes(), (workspace / "held.parquet").read_bytes()
    refused = await run(tool, sql, name="held")
    assert refused["is_error"] is True
    content = str(refused["content"])
    assert content.startswith("The query ran, but ")
    assert says in content
    assert "::text" in content
    assert ((workspace / "held.csv").read_bytes(), (workspace / "held.parquet").read_bytes()) == (
        before
    )
    assert sorted(os.listdir(workspace)) == ["held.csv", "held.parquet"]


async def test_the_advice_to_cast_to_text_is_postgresql_sql(
    tool: SQLTool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A value the writers refuse came with DuckDB's cast, column::VARCHAR."""
    unholdable_intervals(monkeypatch)
    refused = await run(tool, "SELECT interval '2 days' AS gaps")
    assert refused["is_error"] is True
    content = str(refused["content"])
    assert content.startswith("The query ran, but its result could not be saved")
    assert "(e.g. column::text)" in content
    assert "VARCHAR" not in content


async def test_writes_are_refused_and_change_nothing(tool: SQLTool, dsn: str) -> None:
    for sql in (
        "DELETE FROM rx_claims",
        "WITH gone AS (DELETE FROM rx_claims RETURNING *) SELECT count(*) FROM gone",
        "SELECT * INTO stolen FROM rx_claims",
        "SELECT set_config('default_transaction_read_only', 'off', false)",
        "SELECT 1; DROP TABLE rx_claims",
        "COPY rx_claims TO '/tmp/stolen.csv'",
    ):
        result = await run(tool, sql)
        assert result["is_error"] is True, sql
    assert count_rows(dsn) == 1200


async def test_a_function_that_writes_is_stopped_by_the_read_only_transaction(
    tool: SQLTool, dsn: str, workspace: Path
) -> None:
    """No parser can see inside a function; the server's read-only transaction can."""
    result = await run(tool, "SELECT audit.write_note() AS id")
    assert result["is_error"] is True
    assert "read-only transaction" in str(result["content"])
    with psycopg.connect(dsn) as connection:
        assert connection.execute("SELECT count(*) FROM audit.log").fetchone() == (0,)
    assert os.listdir(workspace) == []


class Unchecked(PostgresBackend):
    """The backend without its parser check: what the connection alone allows."""

    def check(self, sql: str) -> None:
        pass


@pytest.mark.parametrize(
    ("sql", "refusal"),
    [
        ("SELECT nextval('audit.log_id_seq')", "read-only transaction"),
        ("SELECT set_config('transaction_read_only', 'off', true)", "read-write mode"),
        ("WITH gone AS (DELETE FROM rx_claims RETURNING claim_id) SELECT 1", "data-modifying"),
        ("INSERT INTO audit.log (note) VALUES ('x') RETURNING id", "syntax error"),
    ],
)
async def test_the_connection_itself_is_read_only(
    dsn: str, workspace: Path, sql: str, refusal: str
) -> None:
    backend = Unchecked(dsn)
    try:
        with pytest.raises(SQLError, match=refusal):
            await backend.query(sql, str(workspace / "x.csv"))
    finally:
        await backend.aclose()
    assert count_rows(dsn) == 1200
    assert os.listdir(workspace) == []


async def test_whatever_slips_through_is_rolled_back(dsn: str, workspace: Path) -> None:
    """Every query's transaction is rolled back: even a write the read-only mode lets
    through (creating a large object) is gone afterwards."""
    backend = Unchecked(dsn)
    try:
        result = await backend.query("SELECT lo_create(0) AS oid", str(workspace / "lo.csv"))
    finally:
        await backend.aclose()
    assert result.row_count == 1
    with psycopg.connect(dsn) as connection:
        left = connection.execute("SELECT count(*) FROM pg_largeobject_metadata").fetchone()
    assert left == (0,)


async def test_database_errors_come_back_with_the_databases_message(tool: SQLTool) -> None:
    unknown_table = await run(tool, "SELECT * FROM rx_claimz")
    assert unknown_table["is_error"] is True
    content = str(unknown_table["content"])
    assert 'relation "rx_claimz" does not exist' in content
    assert "LINE 1: SELECT * FROM rx_claimz" in content  # points into the user's SQL
    assert "Tables in the database: audit.log, rx_claims." in content
    unknown_column = await run(tool, "SELECT paid FROM rx_claims")
    assert 'column "paid" does not exist' in str(unknown_column["content"])
    syntax = await run(tool, "SELECT * FROM rx_claims WHERE")
    assert "syntax error at end of input" in str(syntax["content"])


async def test_placeholders_are_explained_in_postgresqls_styles(tool: SQLTool) -> None:
    numbered = await run(tool, "SELECT * FROM rx_claims WHERE ndc_drug_nm = $1")
    assert "bind message supplies 0 parameters" in str(numbered["content"])
    assert "placeholders ($1), and this tool binds no values" in str(numbered["content"])
    named = await run(tool, "SELECT * FROM rx_claims WHERE ndc_drug_nm = %(drug_0)s")
    assert numbered["is_error"] is named["is_error"] is True
    assert "placeholders (%(drug_0)s), and this tool binds no values" in str(named["content"])


async def test_a_timeout_cancels_the_statement_on_the_server(dsn: str, workspace: Path) -> None:
    tool = SQLTool(workspace, backend=dsn, timeout=0.5)
    try:
        result = await run(tool, "SELECT pg_sleep(60)")
        after = await run(tool, "SELECT 1 AS x", "after")
    finally:
        await tool.aclose()
    assert result["is_error"] is True
    assert "stopped after 0.5 s" in str(result["content"])
    with psycopg.connect(dsn) as connection:
        sleeping = connection.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE query LIKE '%pg_sleep(60)%' "
            "AND state = 'active' AND pid <> pg_backend_pid()"
        ).fetchone()
    assert sleeping == (0,)
    assert after["is_error"] is False
    assert [t for t in threading.enumerate() if t.name == "loopwright-sql"] == []


async def test_row_cap_and_streaming_keep_memory_bounded(dsn: str, workspace: Path) -> None:
    """120,000 rows stream through in batches: Python never holds more than a few."""
    sql = (
        "SELECT g AS id, 'row number ' || g AS label, g * 0.5::float8 AS half "
        "FROM generate_series(1, 120000) AS g"
    )
    backend = PostgresBackend(dsn, batch_rows=5000)
    tracemalloc.start()
    try:
        result = await backend.query(
            sql, str(workspace / "big.csv"), str(workspace / "big.parquet"), max_rows=100_000
        )
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        await backend.aclose()
    assert (result.row_count, result.truncated) == (100_000, True)
    # held at once as Python rows, 100,000 of these would take over 20 MB
    assert peak < 6 * 1024 * 1024
    frame = pl.read_parquet(workspace / "big.parquet")
    assert frame.height == 100_000
    assert frame["id"].to_list()[-1] == 100_000
    assert pl.read_csv(workspace / "big.csv").height == 100_000


async def test_schema_names_tables_outside_the_search_path_with_their_schema(dsn: str) -> None:
    backend = connect(dsn.replace("postgresql://", "postgres://", 1))
    try:
        schema = await backend.schema()
    finally:
        await backend.aclose()
    assert list(schema) == ["audit.log", "rx_claims"]
    assert schema["audit.log"] == [("id", "integer"), ("note", "text")]
    assert schema["rx_claims"][5] == ("paid_amt", "numeric(10,2)")
    assert backend.dialect == "postgres"


async def test_connections_are_pooled_and_reused(dsn: str, workspace: Path) -> None:
    backend = PostgresBackend(dsn, pool_size=2)
    try:
        for i in range(4):
            await backend.query(
                "SELECT pg_backend_pid() AS pid", str(workspace / f"pid{i}.csv"), None
            )
    finally:
        await backend.aclose()
    pids = {pl.read_csv(workspace / f"pid{i}.csv")["pid"][0] for i in range(4)}
    assert len(pids) == 1


async def test_an_unreachable_server_is_a_clear_error(workspace: Path) -> None:
    tool = SQLTool(workspace, backend="postgresql://nobody@127.0.0.1:1/none?connect_timeout=2")
    try:
        result = await run(tool, "SELECT 1")
    finally:
        await tool.aclose()
    assert result["is_error"] is True
    content = str(result["content"])
    assert "Could not connect to PostgreSQL at 127.0.0.1:1/none" in content
    assert "Connection refused; Is the server running" in content  # libpq's hint, one line
    assert "\n" not in content


@pytest.mark.parametrize(
    "url", ["postgresql://u:s3cretpw@[bad/db", "postgresql://u:s3cretpw@host:notaport/db"]
)
async def test_a_malformed_url_is_a_clear_error_that_keeps_the_password_out(
    workspace: Path, url: str
) -> None:
    """psycopg's parse error quotes the whole URL; it was raised outside any handler, so the
    tool died with a traceback that printed the password."""
    tool = SQLTool(workspace, backend=url)
    try:
        assert "s3cretpw" not in repr(tool.backend)
        result = await run(tool, "SELECT 1")
    finally:
        await tool.aclose()
    assert result["is_error"] is True
    content = str(result["content"])
    assert "s3cretpw" not in content
    assert "not valid" in content or "Could not connect" in content


ODD_VALUES = """
SELECT 'null'::jsonb AS json_null, NULL::jsonb AS sql_null,
       '{"a": 1, "a": 2}'::json AS repeated,
       '{"x": 0.1000000000000000055511151231257827}'::jsonb AS digits,
       ARRAY['{"a": 1}'::jsonb, NULL, 'null'] AS documents,
       ARRAY['\\x00ff'::bytea, NULL] AS blobs,
       ROW(1, 'a b', NULL) AS pair, '[1,5)'::int4range AS span,
       '12345678901234567890123456789012345678.12'::numeric(40, 2) AS wide,
       0::numeric(40, 10) AS wide_zero, 0.00123::numeric(3, 5) AS small
"""


async def test_values_keep_what_postgresql_sent(tool: SQLTool, workspace: Path) -> None:
    """psycopg's Python values lost some: a JSON null became a missing value, json's repeated
    keys and jsonb's long digits were dropped by json.loads, bytea[] and records were
    Python reprs (["b'\\\\x00'"], ('1', 'a')), numeric wider than 38 digits a rounded float,
    and numeric(3, 5) (scale past precision) could not be saved at all."""
    result = await run(tool, ODD_VALUES)
    assert result["is_error"] is False, result["content"]
    parquet = pq.read_table(workspace / "result.parquet")
    assert parquet.schema.field("blobs").type == pa.list_(pa.binary())
    assert parquet.schema.field("small").type == pa.decimal128(5, 5)
    expected = {
        "json_null": "null",
        "sql_null": None,
        "repeated": '{"a": 1, "a": 2}',
        "digits": '{"x": 0.1000000000000000055511151231257827}',
        "documents": '[{"a": 1}, null, null]',
        "blobs": [b"\x00\xff", None],
        "pair": '(1,"a b",)',
        "span": "[1,5)",
        "wide": "12345678901234567890123456789012345678.12",
        "wide_zero": "0.0000000000",
        "small": Decimal("0.00123"),
    }
    assert parquet.to_pylist() == [expected]
    csv = list(csvlib.reader((workspace / "result.csv").read_text().splitlines()))
    assert csv[1] == [
        "null",
        "",
        '{"a": 1, "a": 2}',
        '{"x": 0.1000000000000000055511151231257827}',
        '[{"a": 1}, null, null]',
        '["00ff", null]',  # as DuckDB's lists of blobs
        '(1,"a b",)',
        "[1,5)",
        "12345678901234567890123456789012345678.12",
        "0.0000000000",
        "0.00123",
    ]


async def test_a_result_without_columns_is_a_clear_error(tool: SQLTool, workspace: Path) -> None:
    """SELECT FROM t: rows of no columns, which were saved as an empty file "of 0 rows"."""
    result = await run(tool, "SELECT FROM rx_claims")
    assert result["is_error"] is True
    assert "returned no columns" in str(result["content"])
    assert os.listdir(workspace) == []


def tables_named(dsn: str, prefix: str) -> list[str]:
    with psycopg.connect(dsn) as connection:
        rows = connection.execute(
            "SELECT relname FROM pg_class WHERE relname LIKE %s ORDER BY 1", (prefix + "%",)
        ).fetchall()
    return [row[0] for row in rows]


@pytest.mark.parametrize(
    "tail",
    [
        "COMMIT; BEGIN READ WRITE; CREATE TABLE pwned_commit (x int); COMMIT",
        "SELECT CAST(pg_read_file('PG_VERSION') AS int)",  # the file in the error message
    ],
)
async def test_sql_sqlglot_cannot_parse_never_runs_more_than_one_statement(
    tool: SQLTool, dsn: str, workspace: Path, tail: str
) -> None:
    """SQL sqlglot cannot parse goes to PostgreSQL's own parser for its syntax error, as
    PREPARE ... AS <sql>: sent with the simple protocol, whatever followed a ";" ran (the
    first case committed and created a table)."""
    result = await run(tool, f"SELECT collation for ('a'); {tail}")
    assert result["is_error"] is True
    assert str(result["content"]).startswith("The SQL holds more than one statement")
    assert tables_named(dsn, "pwned") == []
    assert os.listdir(workspace) == []
    # the connection went back to the pool: the next query still runs read-only
    again = await run(tool, "SELECT collation for ('a') AS c; CREATE TABLE pwned_next (x int)")
    assert again["is_error"] is True
    assert tables_named(dsn, "pwned") == []


async def test_a_name_in_unicode_escapes_is_still_refused(tool: SQLTool, workspace: Path) -> None:
    """U&"pg_read_fil\\0065" is pg_read_file to PostgreSQL; sqlglot keeps the escapes, so the
    deny list missed it and the server file came back (the test server's role is a superuser)."""
    result = await run(tool, "SELECT U&\"pg_read_fil\\0065\"('PG_VERSION') AS version")
    assert result["is_error"] is True
    assert "pg_read_file() is not allowed" in str(result["content"])
    assert os.listdir(workspace) == []


async def test_no_session_lock_outlives_the_query(tool: SQLTool, dsn: str) -> None:
    """A session-level advisory lock survives the rollback, and the pooled connection kept it
    for good: pg_try_advisory_lock was not on the deny list (pg_advisory_lock was)."""
    result = await run(tool, "SELECT pg_try_advisory_lock(4242) AS locked")
    assert result["is_error"] is True
    with psycopg.connect(dsn) as connection:
        held = connection.execute(
            "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"
        ).fetchone()
    assert held == (0,)


async def test_a_parser_crash_is_postgresqls_syntax_error(tool: SQLTool) -> None:
    """sqlglot raises TypeError on some truncated SQL: it came back as "PostgreSQL:
    sqlglot.expressions.core.Expr object expected; got None"."""
    result = await run(tool, "SELECT ndc_drug_nm -> 'x' ->> 0, tags #> FROM rx_claims")
    assert result["is_error"] is True
    content = str(result["content"])
    assert "PostgreSQL: syntax error" in content
    assert "sqlglot" not in content
