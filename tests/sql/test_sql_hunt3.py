"""A hunt over the day's SQL-side changes: BigQuery's temporary functions in the read-only
check, RANGE and BIGNUMERIC results, and the notes on results that are not what the query
meant. Each test here failed before its fix, but the parametrised ones of what held."""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery
from sqlglot import exp

from loopwright.sql import BigQueryBackend, QueryRefused, check_read_only
from loopwright.sql.hints import Source, sources
from loopwright.tools.sql import MaskedPreview, SQLTool

from .bigquery_server import BigQueryServer

# --- BigQuery's temporary functions: the read-only check -----------------------------------


@pytest.mark.parametrize(
    ("sql", "said"),
    [
        # a remote function has no body: the check crashed (AttributeError on None.walk)
        (
            "CREATE TEMP FUNCTION f() REMOTE WITH CONNECTION `p.us.c` "
            "OPTIONS(endpoint='https://example.invalid/f'); SELECT f()",
            "REMOTE",
        ),
        # JavaScript from Cloud Storage files: reaches outside the warehouse's tables
        (
            "CREATE TEMP FUNCTION f() RETURNS INT64 LANGUAGE js "
            "OPTIONS(library=['gs://bucket/lib.js']) AS r'''return 1'''; SELECT f()",
            "library",
        ),
        # the options were never checked, only the body
        (
            "CREATE TEMP FUNCTION f() RETURNS INT64 LANGUAGE js "
            "OPTIONS(description=EXTERNAL_QUERY('c', 'q')) AS 'return 1'; SELECT f()",
            "OPTIONS",
        ),
        # only JavaScript and SQL bodies run in BigQuery's sandbox for a query
        (
            "CREATE TEMP FUNCTION f() RETURNS INT64 LANGUAGE python AS r'''x'''; SELECT f()",
            "LANGUAGE python",
        ),
    ],
)
def test_temporary_functions_that_reach_outside_are_refused_in_words(sql: str, said: str) -> None:
    with pytest.raises(QueryRefused, match=said) as refused:
        check_read_only(sql, "bigquery")
    assert "CREATE TEMP FUNCTION" in str(refused.value)  # says what is allowed


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE TEMP FUNCTION f(x INT64) AS (x) OPTIONS(description='d'); SELECT f(1)",
        "CREATE TEMP AGGREGATE FUNCTION f(x INT64) AS (SUM(x)); SELECT f(1)",
    ],
)
def test_a_temporary_function_the_check_cannot_read_is_refused_saying_so(sql: str) -> None:
    """BigQuery accepts these; sqlglot reads them as an opaque command. The refusal said "CREATE
    statements are not allowed, but CREATE TEMP FUNCTION ... statements before one SELECT
    are": to a model that wrote exactly that, no way forward."""
    with pytest.raises(QueryRefused) as refused:
        check_read_only(sql, "bigquery")
    message = str(refused.value)
    assert "CREATE statements are not allowed" not in message
    assert "could not be checked" in message
    assert "AS (expression)" in message  # the form that can be


def test_other_create_statements_are_refused_before_parsing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """What is no temporary function is refused by its first words, as before the change:
    sqlglot logged "contains unsupported syntax. Falling back to parsing as a 'Command'" for
    each (to stderr, in a program that configures no logging)."""
    caplog.set_level(logging.WARNING)
    for sql in (
        "CREATE TEMP TABLE FUNCTION f() AS SELECT 1; SELECT * FROM f()",
        "CREATE TEMP PROCEDURE p() BEGIN SELECT 1; END; SELECT 1",
        "CREATE SNAPSHOT TABLE d.s CLONE d.t; SELECT 1",
    ):
        with pytest.raises(QueryRefused, match="CREATE TEMP FUNCTION"):
            check_read_only(sql, "bigquery")
    assert [r.getMessage() for r in caplog.records if r.name.startswith("sqlglot")] == []


@pytest.mark.parametrize(
    "sql",
    [
        "# the top drugs\nSELECT 1 AS n",
        "# a helper\nCREATE TEMP FUNCTION twice(x INT64) AS (2 * x);\nSELECT twice(1) AS n",
        "/* a */ # b\n-- c\nSELECT 1 AS n",
    ],
)
def test_bigquerys_hash_comments_before_the_query_are_comments(sql: str) -> None:
    """``#`` starts a comment in BigQuery SQL: "# the top drugs" was refused as "THE
    statements are not allowed"."""
    assert isinstance(check_read_only(sql, "bigquery"), exp.Select)


def test_a_hash_in_duckdb_is_no_comment() -> None:
    with pytest.raises(QueryRefused, match="INSERT statements are not allowed"):
        check_read_only("INSERT INTO t VALUES (1) # SELECT", "duckdb")


@pytest.mark.parametrize(
    "sql",
    [
        "CREATE TEMP FUNCTION f() AS ((DELETE FROM t WHERE true)); SELECT f()",
        "CREATE TEMP FUNCTION f() AS (1); DELETE FROM t WHERE true",
        "CREATE TEMP FUNCTION f() AS (1); DECLARE x INT64; SELECT 1",
        "CREATE TEMP FUNCTION f() AS (1); BEGIN SELECT 1; END",
        "CREATE TEMP FUNCTION f() AS (1); EXECUTE IMMEDIATE 'DELETE FROM t WHERE true'",
        "CREATE TEMP FUNCTION f() AS (1); CALL p()",
        "CREATE TEMP FUNCTION f() AS (1); SET x = 1",
        "CREATE TEMP FUNCTION f() AS (1); SELECT 1;\nSET @@dataset_id = 'x'",
        "CREATE TEMP FUNCTION f() AS (1); CREATE FUNCTION d.g() AS (1); SELECT 1",
        "CREATE TEMP FUNCTION f() AS (1); CREATE TEMP TABLE t AS SELECT 1; SELECT 1",
        "CREATE TEMP FUNCTION f() AS (1); EXPORT DATA OPTIONS(uri='gs://b/*.csv') AS SELECT 1",
        "CREATE TEMP FUNCTION f() AS (1); SELECT 1 INTO x",
        "CREATE TEMP FUNCTION f() AS (1); SELECT f(); CREATE TEMP FUNCTION g() AS (1)",
        "CREATE TEMP FUNCTION f() AS (1)",
        "CREATE FUNCTION IF NOT EXISTS d.f() AS (1); SELECT 1",
        "CREATE OR REPLACE FUNCTION d.f() AS (1); SELECT d.f()",
        "CREATE TEMP VIEW v AS SELECT 1; SELECT * FROM v",
        "CREATE TEMP FUNCTION external_query(x STRING) AS (x); SELECT external_query('a')",
        "CREATE TEMP FUNCTION f() AS ((SELECT 1 FROM EXTERNAL_QUERY('c', 'q'))); SELECT f()",
        "CREATE TEMP FUNCTION f() AS (`external_query`('c', 'q')); SELECT f()",
        "CREATE TEMP FUNCTION f() AS (1); SELECT `region-us`.EXTERNAL_QUERY('c', 'q')",
        # a string that hides a statement, to sqlglot and BigQuery alike
        r"CREATE TEMP FUNCTION f() AS ('\'; DELETE FROM d.t WHERE true; SELECT \'');"
        " DELETE FROM d.t WHERE true",
        "CREATE TEMP FUNCTION f() AS (1) # c ;\nDELETE FROM t WHERE true",
        "CREATE TEMP FUNCTION f() AS (1);\n/* ; */ DROP TABLE d.t",
        # BigQuery's comments do not nest: the first */ ends them
        "CREATE TEMP FUNCTION f() AS (1 /* /* */); DELETE FROM t WHERE true; SELECT (1 /* */);"
        " SELECT f()",
    ],
)
def test_what_smuggles_more_than_a_query_stays_refused(sql: str) -> None:
    with pytest.raises(QueryRefused):
        check_read_only(sql, "bigquery")


@pytest.mark.parametrize(
    "sql",
    [
        "create temp function f() as (1); select f()",
        "CREATE/**/TEMP/**/FUNCTION f() AS (1);SELECT f()",
        "CREATE OR REPLACE TEMPORARY FUNCTION f() AS (1);\n\tSELECT f()",
        "CREATE TEMP FUNCTION f() AS ('a;b'); SELECT f()",
        "CREATE TEMP FUNCTION f(x ANY TYPE) AS (x + 1); SELECT f(1)",
        'CREATE TEMP FUNCTION f(s STRING) RETURNS STRING LANGUAGE js AS """return s;""";'
        " SELECT f('a')",
        "CREATE TEMP FUNCTION f(x INT64) RETURNS INT64 NOT DETERMINISTIC LANGUAGE js "
        "OPTIONS(description='twice') AS r'''return 2*x;'''; SELECT f(1)",
        "CREATE TEMP FUNCTION f() AS (1); CREATE TEMP FUNCTION g() AS (f() + 1);"
        " WITH x AS (SELECT g() AS n) SELECT n FROM x",
    ],
)
def test_temporary_functions_and_one_query_pass(sql: str) -> None:
    assert isinstance(check_read_only(sql, "bigquery"), exp.Select)


@pytest.mark.parametrize("dialect", ["duckdb", "postgres"])
@pytest.mark.parametrize(
    "sql",
    [
        "CREATE TEMP FUNCTION f(x INT64) AS (x); SELECT f(1)",
        "CREATE TEMP MACRO f(x) AS x; SELECT f(1)",
        "CREATE FUNCTION f() RETURNS int AS 'SELECT 1' LANGUAGE sql; SELECT f()",
        "/* x */ create temporary table t AS SELECT 1",
        "(CREATE TABLE t (x int))",
        ";CREATE TABLE t (x int)",
    ],
)
def test_duckdb_and_postgres_refuse_every_create(sql: str, dialect: str) -> None:
    with pytest.raises(QueryRefused):
        check_read_only(sql, dialect)


# --- BigQuery results: RANGE and INTERVAL arrays read as text ---------------------------------


@pytest.fixture
async def backend(bigquery_server: BigQueryServer) -> AsyncIterator[BigQueryBackend]:
    client = bigquery.Client(
        project="test-project",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options=ClientOptions(api_endpoint=bigquery_server.base_url),
    )
    backend = BigQueryBackend("test-project", "claims", client=client, page_rows=7)
    yield backend
    await backend.aclose()
    client.close()  # type: ignore[no-untyped-call]


@pytest.mark.parametrize(
    ("array", "first"),
    [
        ("[RANGE(service_date_dd, NULL)]", [{"start": "2024-01-02", "end": None}]),
        ("[INTERVAL 1 DAY]", ["P1D"]),
    ],
)
async def test_a_null_struct_around_an_array_read_as_text_is_read(
    backend: BigQueryBackend, workspace: Path, array: str, first: list[Any]
) -> None:
    """An array of ranges or intervals is read again as text and parsed here; inside a null
    struct (``IF(..., NULL, STRUCT(...))``, an outer join's missing side) its slots are null,
    and the whole query failed: "field 'rs' ... has nulls. Can't cast to non-nullable field"
    (shown as BigQuery's error). Over several pages, both files."""
    sql = (
        f"SELECT claim_id, IF(claim_id % 3 = 0, NULL, STRUCT({array} AS rs, 1 AS n)) AS s "
        "FROM rx_claims ORDER BY claim_id LIMIT 20"
    )
    result = await backend.query(sql, workspace / "s.csv", workspace / "s.parquet")
    assert result.row_count == 20
    rows = pq.read_table(workspace / "s.parquet").to_pylist()
    assert [row["s"] is None for row in rows] == [n % 3 == 0 for n in range(20)]
    assert rows[1]["s"]["n"] == 1
    assert len(rows[1]["s"]["rs"]) == 1
    lines = (workspace / "s.csv").read_text().splitlines()
    assert lines[1] == "0,"  # the null struct
    assert json.loads(next(csv.reader([lines[2]]))[1]) == {"rs": first, "n": 1}


# --- notes on results: no note on a query that meant what it did -------------------------------


@pytest.fixture
async def tool(claims_db: Path, workspace: Path) -> AsyncIterator[SQLTool]:
    sql = SQLTool(workspace, backend=f"duckdb://{claims_db}", preview_rows=5)
    yield sql
    await sql.aclose()


async def run(tool: SQLTool, sql: str, name: str = "result") -> dict[str, Any]:
    return dict(await tool.execute({"sql": sql, "dataset_name": name, "description": "test"}))


def warnings(result: dict[str, Any]) -> list[str]:
    assert result["is_error"] is False, result["content"]
    return list(result["metadata"].get("warnings", []))


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT list_concat([ndc_drug_nm], [prescriber_npi_state_cd]) AS l FROM rx_claims",
        "SELECT ndc_drug_nm, list_concat(list(prescriber_npi_state_cd), [ndc_drug_nm]) AS l "
        "FROM rx_claims GROUP BY 1",
        "SELECT list(ndc_drug_nm) AS l FROM rx_claims WHERE list_contains([ndc_drug_nm], 'X')"
        " OR claim_id < 3",
        "SELECT [claim_id][1] AS c, list(claim_id) AS l FROM rx_claims GROUP BY claim_id",
        "SELECT ARRAY [ndc_drug_nm] AS l FROM rx_claims",
    ],
)
async def test_a_list_made_on_purpose_from_a_bracketed_name_is_not_noted(
    tool: SQLTool, sql: str
) -> None:
    """``[name]`` handed to a list function, or indexed, is a list meant: it was noted as
    SQL Server's quotes whenever the result had a list column, and the model told to drop
    the brackets from a correct query."""
    assert warnings(await run(tool, sql)) == []


async def test_a_bracketed_name_in_a_subquery_or_union_is_still_noted(tool: SQLTool) -> None:
    result = await run(
        tool,
        "SELECT * FROM (SELECT [ndc_drug_nm] AS d FROM rx_claims LIMIT 1) UNION ALL "
        "SELECT [prescriber_npi_state_cd] FROM rx_claims LIMIT 1",
    )
    (note,) = warnings(result)
    assert note.startswith("[ndc_drug_nm], [prescriber_npi_state_cd] make a list")


async def test_inf_written_in_the_query_is_not_blamed_on_a_division(tool: SQLTool) -> None:
    """No division in the query: "x / 0 gives inf ... Divide by NULLIF(b, 0)" sent the model
    after a division that is not there."""
    (note,) = warnings(await run(tool, "SELECT 'inf'::DOUBLE AS x, 'nan'::DOUBLE AS y"))
    assert note.startswith("x holds inf; y holds NaN: ")
    assert "NULLIF" not in note
    assert "x / 0" not in note
    (divided,) = warnings(await run(tool, "SELECT 1 / 0 AS x -- 'inf' /"))
    assert "NULLIF(b, 0)" in divided


@pytest.mark.parametrize(
    "sql",
    [
        # a case mismatch would give more rows, not fewer
        "SELECT * FROM rx_claims WHERE ndc_drug_nm NOT IN ('HUMIRA', 'ELIQUIS', 'OZEMPIC',"
        " 'KEYTRUDA', 'JARDIANCE', 'STELARA', 'TRULICITY', 'XARELTO')",
        "SELECT * FROM rx_claims WHERE NOT (ndc_drug_nm LIKE '%I%' OR ndc_drug_nm LIKE '%A%')",
        "SELECT * FROM rx_claims r WHERE NOT EXISTS (SELECT 1 FROM rx_claims q "
        "WHERE q.ndc_drug_nm = 'HUMIRA' OR q.claim_id >= 0)",
        # not a filter: a projection, which no row's absence comes from
        "SELECT CASE WHEN ndc_drug_nm = 'Humira' THEN 1 END AS h FROM rx_claims WHERE false",
        "SELECT ndc_drug_nm = 'Humira' AS h FROM rx_claims LIMIT 0",
    ],
)
async def test_an_empty_result_a_case_mismatch_cannot_explain_is_not_noted(
    tool: SQLTool, sql: str
) -> None:
    result = await run(tool, sql)
    assert result["metadata"]["row_count"] == 0
    assert warnings(result) == []


async def test_the_notes_read_the_rows_the_mask_lets_the_model_see(
    claims_db: Path, workspace: Path
) -> None:
    """With a patient-data mask, the notes read the preview as masked: a withheld preview
    gave its values away in a note ("r holds inf and NaN")."""

    def withhold(sql: str, columns: Any, rows: Any) -> MaskedPreview:
        return MaskedPreview([], "The preview rows were withheld.", ("r",), withheld=True)

    masked = SQLTool(workspace, backend=f"duckdb://{claims_db}", preview_rows=5, mask=withhold)
    try:
        result = await run(masked, "SELECT paid_amt / (claim_id - claim_id) AS r FROM rx_claims")
    finally:
        await masked.aclose()
    assert result["metadata"]["preview_withheld"] is True
    assert warnings(result) == []
    assert "inf" not in str(result["content"])


def test_a_temporary_functions_name_is_no_table_the_query_reads() -> None:
    """The BigQuery backend reads the columns of each table a query names, for its check of
    double-quoted names: a temporary function's name was taken for one (a request per call)."""
    sql = 'CREATE TEMP FUNCTION f(x STRING) AS (x); SELECT f("a") FROM rx_claims r'
    assert sources(sql, "bigquery") == [Source("rx_claims", "r")]


async def test_many_bracketed_names_are_listed_in_a_short_note(tool: SQLTool) -> None:
    """Each one was listed: a SELECT of hundreds of ``[name]`` made a note as long as the
    SQL, in the text the model reads."""
    columns = ", ".join(f"[claim_id] AS c{i}, [ndc_drug_nm] AS d{i}" for i in range(3))
    names = ["claim_id", "ndc_drug_nm", "paid_amt", "is_specialty", "service_date_dd"]
    more = ", ".join(f"[{name}]" for name in [*names, "prescriber_npi_nbr", "claim_id"])
    (note,) = warnings(await run(tool, f"SELECT {columns}, {more} FROM rx_claims LIMIT 1"))
    assert note.startswith(
        "[claim_id], [ndc_drug_nm], [paid_amt], [is_specialty], [service_date_dd] and 1 more "
        "make a list"
    )
