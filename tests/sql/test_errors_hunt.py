"""Hunted gaps in the SQL tool's error messages, as a model writing wrong SQL sees them: an
unknown table or column answered with the close names (the same on DuckDB, PostgreSQL and
BigQuery), another dialect's syntax with what to write instead, BigQuery's double-quoted
"names" that are strings, DuckDB's pages of candidate functions, and a failed call that
leaves an earlier result under the same name. Against real DuckDB files, a real PostgreSQL
server and the BigQuery stand-in, all on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from loopwright.sql import BigQueryBackend, DuckDBBackend, PostgresBackend, SQLBackend
from loopwright.sql.hints import MAX_CANDIDATES, MAX_MESSAGE_CHARS
from loopwright.tools.sql import SQLTool
from postgres_server import PostgresServer

from .bigquery_server import BigQueryServer

SETUP = """
CREATE TABLE rx_claims (
    claim_id integer,
    prescriber_npi_nbr bigint,
    ndc_drug_nm text,
    prescriber_npi_state_cd text,
    service_date_dd date,
    paid_amt numeric(10, 2)
);
INSERT INTO rx_claims
SELECT g, 1000000000 + g % 40, (ARRAY['HUMIRA', 'ELIQUIS'])[1 + g % 2],
       (ARRAY['CA', 'TX'])[1 + g % 2], DATE '2024-01-01' + g % 366, g * 1.5
FROM generate_series(1, 200) AS g;
CREATE TABLE providers_bio (npi_number bigint, specialty text);
INSERT INTO providers_bio SELECT 1000000000 + g, 'Cardiology' FROM generate_series(0, 39) AS g;
"""

BACKENDS = ["duckdb", "postgres", "bigquery"]


@pytest.fixture(scope="module")
def dsn(postgres_server: PostgresServer) -> str:
    dsn = postgres_server.create_database("errors")
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(SETUP.encode())
    return dsn


@pytest.fixture
async def backend(
    request: pytest.FixtureRequest, claims_db: Path, dsn: str
) -> AsyncIterator[SQLBackend]:
    kind = request.param
    opened: SQLBackend
    if kind == "duckdb":
        opened = DuckDBBackend(claims_db)
    elif kind == "postgres":
        opened = PostgresBackend(dsn)
    else:
        server: BigQueryServer = request.getfixturevalue("bigquery_server")
        opened = BigQueryBackend("test-project", "claims", api_endpoint=server.base_url)
    yield opened
    await opened.aclose()


async def run(backend: SQLBackend, workspace: Path, sql: str, name: str = "r") -> dict[str, Any]:
    tool = SQLTool(workspace, backend=backend, timeout=30)
    return dict(await tool.execute({"sql": sql, "dataset_name": name, "description": "t"}))


async def failed(backend: SQLBackend, workspace: Path, sql: str) -> str:
    result = await run(backend, workspace, sql)
    assert result["is_error"], result
    content = str(result["content"])
    assert "Traceback" not in content
    assert "loopwright/" not in content
    return content


def each(*kinds: str) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("backend", kinds, indirect=True)


# --- unknown tables ----------------------------------------------------------------------


@each(*BACKENDS)
async def test_an_unknown_table_names_the_close_table(backend: SQLBackend, workspace: Path) -> None:
    content = await failed(backend, workspace, "SELECT * FROM rx_claim LIMIT 5")
    assert "Did you mean rx_claims?" in content
    assert "Tables in the database: providers_bio, rx_claims." in content
    # DuckDB's own guess was one of its catalogue tables ("Did you mean "pg_collation"?")
    assert "pg_" not in content


@each("bigquery")
async def test_bigquery_says_its_table_names_are_case_sensitive(
    backend: SQLBackend, workspace: Path
) -> None:
    content = await failed(backend, workspace, "SELECT COUNT(*) FROM RX_CLAIMS")
    assert "Did you mean rx_claims? BigQuery table names are case-sensitive" in content


@each("postgres")
async def test_postgres_explains_a_quoted_table_name_in_the_wrong_case(
    backend: SQLBackend, workspace: Path
) -> None:
    content = await failed(backend, workspace, 'SELECT COUNT(*) FROM "RX_CLAIMS"')
    assert "Did you mean rx_claims? PostgreSQL keeps the case of a quoted name" in content


# --- unknown columns ---------------------------------------------------------------------


@each("postgres", "bigquery")
async def test_an_unknown_column_gets_the_close_columns(
    backend: SQLBackend, workspace: Path
) -> None:
    content = await failed(
        backend, workspace, "SELECT PRESCRIBER_NPI, COUNT(*) FROM rx_claims GROUP BY 1"
    )
    assert "Did you mean prescriber_npi_nbr or prescriber_npi_state_cd?" in content
    # the qualified form names the table the alias stands for
    content = await failed(
        backend,
        workspace,
        "SELECT p.specialty FROM rx_claims r JOIN providers_bio p "
        "ON r.prescriber_npi_nbr = p.npi_nbr",
    )
    assert "npi_number" in content


@each("postgres", "bigquery")
async def test_with_nothing_close_the_tables_columns_are_listed(
    backend: SQLBackend, workspace: Path
) -> None:
    content = await failed(backend, workspace, "SELECT SUM(amount_paid_usd) FROM rx_claims")
    assert "Columns of rx_claims: claim_id, prescriber_npi_nbr, ndc_drug_nm, " in content
    assert ", paid_amt" in content.split("Columns of rx_claims: ")[1]


@each("postgres", "bigquery")
async def test_a_column_of_a_cte_is_not_matched_against_the_base_tables(
    backend: SQLBackend, workspace: Path
) -> None:
    """The query reads t, whose columns the schema does not know: naming ndc_drug_nm of
    rx_claims would send the model the wrong way; the database's own words stand."""
    sql = "WITH t AS (SELECT ndc_drug_nm AS drug FROM rx_claims) SELECT drug_nm FROM t"
    content = await failed(backend, workspace, sql)
    assert "Did you mean ndc_drug_nm" not in content
    assert "Columns of" not in content
    # while a query on the tables themselves gets the hint
    content = await failed(backend, workspace, "SELECT drug_nm FROM rx_claims")
    assert "ndc_drug_nm" in content


@each("duckdb", "postgres")
async def test_text_in_double_quotes_is_told_to_take_single_quotes(
    backend: SQLBackend, workspace: Path
) -> None:
    content = await failed(
        backend, workspace, 'SELECT COUNT(*) FROM rx_claims WHERE ndc_drug_nm = "HUMIRA"'
    )
    assert "write text in single quotes ('HUMIRA')" in content


@each("postgres")
async def test_postgres_explains_a_quoted_column_in_the_wrong_case(
    backend: SQLBackend, workspace: Path
) -> None:
    content = await failed(
        backend, workspace, "SELECT COUNT(*) FROM rx_claims WHERE \"NDC_DRUG_NM\" = 'HUMIRA'"
    )
    assert "The column is ndc_drug_nm: PostgreSQL keeps the case of a quoted name" in content


@each("postgres")
async def test_an_output_alias_used_in_having_is_explained(
    backend: SQLBackend, workspace: Path
) -> None:
    sql = "SELECT prescriber_npi_nbr, COUNT(*) AS fills FROM rx_claims GROUP BY 1 HAVING fills > 3"
    content = await failed(backend, workspace, sql)
    assert "fills is an alias from the SELECT list" in content
    assert "Columns of" not in content


@each("duckdb", "postgres")
async def test_a_bare_date_part_is_told_to_be_text(backend: SQLBackend, workspace: Path) -> None:
    content = await failed(
        backend, workspace, "SELECT date_trunc(service_date_dd, month) FROM rx_claims"
    )
    assert "month is not a column" in content
    assert "date_trunc('month', " in content


@each(*BACKENDS)
async def test_an_undefined_alias_names_the_querys_tables_and_aliases(
    backend: SQLBackend, workspace: Path
) -> None:
    sql = (
        "SELECT r.ndc_drug_nm FROM rx_claims r JOIN providers_bio p "
        "ON r.prescriber_npi_nbr = p.npi_number WHERE x.specialty = 'Cardiology'"
    )
    content = await failed(backend, workspace, sql)
    assert "x is neither a table nor an alias in the query's FROM" in content
    assert "rx_claims AS r, providers_bio AS p" in content
    assert "Tables in the database" not in content  # PostgreSQL's took it for a table


# --- BigQuery: double quotes make strings ------------------------------------------------


@each("bigquery")
async def test_bigquery_refuses_a_column_name_in_double_quotes(
    backend: SQLBackend, workspace: Path, bigquery_server: BigQueryServer
) -> None:
    """``"ndc_drug_nm" = 'HUMIRA'`` compares two strings in BigQuery: no row, no error, a
    billed scan. Refused before anything runs; the refusal says how to write either."""
    before = len(bigquery_server.job_bodies())
    content = await failed(
        backend, workspace, "SELECT COUNT(*) FROM rx_claims WHERE \"ndc_drug_nm\" = 'HUMIRA'"
    )
    assert '"ndc_drug_nm" is a string in BigQuery SQL, not the column ndc_drug_nm' in content
    assert "backticks (`ndc_drug_nm`)" in content
    assert "('ndc_drug_nm')" in content
    assert len(bigquery_server.job_bodies()) == before  # nothing was run
    assert not (workspace / "r.csv").exists()
    # a string that is not a column runs, as does a column name in single quotes
    fine = await run(
        backend,
        workspace,
        "SELECT 'paid_amt' AS measure, COUNT(*) AS n FROM rx_claims WHERE ndc_drug_nm = \"HUMIRA\"",
    )
    assert not fine["is_error"], fine
    assert (workspace / "r.csv").read_text().splitlines()[1].startswith("paid_amt,")
    # the table's columns are read once, not on every query with a double-quoted string
    tables_read = len([p for p in bigquery_server.paths("GET") if "/tables/" in p])
    again = await run(
        backend, workspace, 'SELECT COUNT(*) AS n FROM rx_claims WHERE ndc_drug_nm = "HUMIRA"'
    )
    assert not again["is_error"], again
    assert len([p for p in bigquery_server.paths("GET") if "/tables/" in p]) == tables_read


# --- another dialect's syntax ------------------------------------------------------------


@each(*BACKENDS)
async def test_top_n_is_told_to_be_limit(backend: SQLBackend, workspace: Path) -> None:
    content = await failed(backend, workspace, "SELECT TOP 10 * FROM rx_claims")
    assert "end the query with LIMIT 10" in content


@each("duckdb", "postgres")
async def test_bigquerys_date_sub_is_told_to_subtract_an_interval(
    backend: SQLBackend, workspace: Path
) -> None:
    sql = (
        "SELECT COUNT(*) FROM rx_claims "
        "WHERE service_date_dd > DATE_SUB(CURRENT_DATE(), INTERVAL 1 YEAR)"
    )
    content = await failed(backend, workspace, sql)
    assert "subtract the interval, e.g. CURRENT_DATE - INTERVAL" in content


@each("postgres")
async def test_postgres_is_told_it_has_no_qualify_and_no_backticks(
    backend: SQLBackend, workspace: Path
) -> None:
    sql = (
        "SELECT ndc_drug_nm, paid_amt FROM rx_claims QUALIFY ROW_NUMBER() "
        "OVER (PARTITION BY ndc_drug_nm ORDER BY paid_amt DESC) = 1"
    )
    assert "PostgreSQL has no QUALIFY" in await failed(backend, workspace, sql)
    content = await failed(backend, workspace, "SELECT `paid_amt` FROM rx_claims")
    assert "not backticks" in content


@each("duckdb", "postgres")
async def test_sql_server_brackets_are_told_to_be_double_quotes(
    backend: SQLBackend, workspace: Path
) -> None:
    content = await failed(backend, workspace, "SELECT [paid_amt] FROM [rx_claims]")
    assert "quote names with double quotes" in content


@each("postgres")
async def test_a_division_by_zero_suggests_nullif(backend: SQLBackend, workspace: Path) -> None:
    content = await failed(backend, workspace, "SELECT SUM(paid_amt) / 0 FROM rx_claims")
    assert "NULLIF(b, 0)" in content


# --- length ------------------------------------------------------------------------------


@each("duckdb")
async def test_duckdbs_pages_of_candidate_functions_are_cut(
    backend: SQLBackend, workspace: Path
) -> None:
    """DuckDB listed every overload of ``-`` (about 2 KB) for a date minus text."""
    content = await failed(
        backend, workspace, "SELECT service_date_dd - 'abc'::VARCHAR FROM rx_claims"
    )
    listed = [line for line in content.splitlines() if line.startswith("\t")][1:]
    assert len(listed) == MAX_CANDIDATES + 1
    assert listed[-1].startswith("\t... and ")
    assert listed[-1].endswith(" more")
    # the overloads for a date come first, not the 28 integer ones before them
    assert '"-"("left" DATE, "right" DATE, /) -> BIGINT' in [line.strip() for line in listed]
    assert len(content) < 1000


@each(*BACKENDS)
async def test_a_message_echoing_a_huge_value_is_cut(backend: SQLBackend, workspace: Path) -> None:
    """The databases quote the value they could not convert, whole: 20,000 characters of
    it reached the model."""
    sql = "SELECT CAST(repeat('x', 20000) AS INTEGER) AS n"
    content = await failed(backend, workspace, sql)
    assert len(content) <= MAX_MESSAGE_CHARS + 200
    assert " ... (cut)" in content


# --- an earlier result under the same name -----------------------------------------------


@each(*BACKENDS)
async def test_a_failed_call_says_the_file_of_that_name_is_an_earlier_result(
    backend: SQLBackend, workspace: Path
) -> None:
    first = await run(backend, workspace, "SELECT 1 AS n", name="top")
    assert not first["is_error"], first
    before = (workspace / "top.csv").read_bytes()
    failures = [
        "SELECT nope FROM rx_claims",  # the database's error
        "DELETE FROM rx_claims",  # a refusal
        "SELECT * FROM rx_claim",  # an unknown table
    ]
    for sql in failures:
        result = await run(backend, workspace, sql, name="top")
        assert result["is_error"]
        assert "top.csv in the workspace is still an earlier query's result, not this one's." in (
            str(result["content"])
        )
        assert (workspace / "top.csv").read_bytes() == before
    other = await run(backend, workspace, "SELECT nope FROM rx_claims", name="fresh")
    assert "earlier query" not in str(other["content"])
