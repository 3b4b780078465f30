"""SQL the database accepts and the read-only check could not (or did not) take.

DuckDB's ``PIVOT`` and ``UNPIVOT`` statements are queries, and were refused as "PIVOT
statements are not allowed". Where sqlglot cannot parse SQL the database accepts
(PostgreSQL's ``collation for``, a ``PIVOT`` followed by ``ORDER BY``), the refusal said
"fix the syntax", sending the model after a typo that was not there. DuckDB's ``SHOW``
statements (``SHOW TABLES``, ``SHOW rx_claims``, a bare ``DESCRIBE``) only read the catalogue,
and were refused as "SHOW statements are not allowed".
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import duckdb
import polars as pl
import psycopg
import pytest
from sqlglot import exp

from loopwright.sql import QueryRefused, UnparsableQuery, check_read_only
from loopwright.tools.sql import SQLTool
from postgres_server import PostgresServer

PIVOT = """
PIVOT rx_claims ON prescriber_npi_state_cd IN ('CA', 'NY') USING count(*) GROUP BY ndc_drug_nm
"""


async def run(tool: SQLTool, sql: str, name: str = "result") -> dict[str, object]:
    return dict(await tool.execute({"sql": sql, "dataset_name": name, "description": "test"}))


@pytest.fixture
async def duck(claims_db: Path, workspace: Path) -> AsyncIterator[SQLTool]:
    tool = SQLTool(workspace, backend=f"duckdb://{claims_db}")
    yield tool
    await tool.aclose()


def test_the_check_takes_duckdbs_pivot_statements_and_still_reads_inside_them() -> None:
    for sql in (PIVOT, "UNPIVOT t ON a, b INTO NAME k VALUE v"):
        check_read_only(sql, "duckdb")
    with pytest.raises(QueryRefused, match=r"read_csv\(\) is not allowed"):
        check_read_only("PIVOT t ON s IN (1) USING sum(read_csv('/etc/passwd'))", "duckdb")
    with pytest.raises(QueryRefused, match="looks like a file"):
        check_read_only("PIVOT 'claims.csv' ON s IN (1) USING count(*)", "duckdb")
    with pytest.raises(QueryRefused, match="PIVOT statements are not allowed"):
        check_read_only(PIVOT, "postgres")  # PostgreSQL has no PIVOT


def test_an_unparsable_query_carries_the_parsers_complaint() -> None:
    with pytest.raises(UnparsableQuery) as caught:
        check_read_only("SELECT collation for ('a')", "postgres")
    assert caught.value.detail == "Invalid expression / Unexpected token at line 1, column 20"


async def test_a_pivot_statement_runs(claims_db: Path, workspace: Path) -> None:
    with duckdb.connect(str(claims_db), read_only=True) as connection:
        expected = connection.sql(
            "SELECT ndc_drug_nm, count(*) FILTER (prescriber_npi_state_cd = 'CA') AS CA, "
            "count(*) FILTER (prescriber_npi_state_cd = 'NY') AS NY FROM rx_claims "
            "GROUP BY ndc_drug_nm ORDER BY ndc_drug_nm"
        ).fetchall()
    tool = SQLTool(workspace, backend=f"duckdb://{claims_db}")
    try:
        result = await run(tool, PIVOT, "by_state")
    finally:
        await tool.aclose()
    assert result["is_error"] is False, result["content"]
    written = pl.read_csv(workspace / "by_state.csv").sort("ndc_drug_nm")
    assert written.columns == ["ndc_drug_nm", "CA", "NY"]
    assert written.rows() == expected


async def test_an_unpivot_statement_runs(duck: SQLTool, workspace: Path) -> None:
    sql = (
        "UNPIVOT (SELECT claim_id, dispensed_quantity_val, paid_amt FROM rx_claims "
        "WHERE claim_id < 2) ON dispensed_quantity_val, paid_amt INTO NAME measure VALUE v"
    )
    result = await run(duck, sql, "long")
    assert result["is_error"] is False, result["content"]
    written = pl.read_csv(workspace / "long.csv")
    assert written.columns == ["claim_id", "measure", "v"]
    assert written.height == 4


async def test_a_pivot_without_an_in_list_says_to_list_the_values(
    duck: SQLTool, workspace: Path
) -> None:
    """DuckDB runs it as a MULTI statement: it first reads the distinct values into a type.
    The refusal said "DuckDB reads this as a MULTI statement, not a single query"."""
    for sql in (
        "PIVOT rx_claims ON prescriber_npi_state_cd USING count(*)",
        "SELECT * FROM (PIVOT rx_claims ON prescriber_npi_state_cd USING count(*))",
    ):
        result = await run(duck, sql)
        assert result["is_error"] is True
        content = str(result["content"])
        assert "PIVOT without an IN list" in content
        assert "IN ('a', 'b')" in content
        assert "MULTI" not in content
    assert os.listdir(workspace) == []


async def test_a_pivot_sqlglot_cannot_parse_is_not_called_a_syntax_error(
    duck: SQLTool, workspace: Path
) -> None:
    """sqlglot does not parse ORDER BY or LIMIT after a PIVOT statement; DuckDB does. The
    refusal said "fix the syntax", and now says what to write instead."""
    result = await run(duck, PIVOT + " ORDER BY ndc_drug_nm LIMIT 3")
    assert result["is_error"] is True
    content = str(result["content"])
    assert content.startswith("DuckDB accepts this SQL, but the read-only check cannot parse it")
    assert "fix the syntax" not in content
    assert "SELECT * FROM (PIVOT" in content
    assert os.listdir(workspace) == []
    # ...and the advice works
    rewritten = f"SELECT * FROM ({PIVOT}) ORDER BY ndc_drug_nm LIMIT 3"
    result = await run(duck, rewritten, "top")
    assert result["is_error"] is False, result["content"]
    assert pl.read_csv(workspace / "top.csv").height == 3


async def test_backticks_and_a_pivot_after_with_get_advice_that_names_them(
    duck: SQLTool, workspace: Path
) -> None:
    """DuckDB reads `name` as a name; sqlglot's DuckDB dialect does not. The advice was the
    general "more common syntax"; it now says to use double quotes. A PIVOT after WITH got
    the general advice too (only a PIVOT at the start was recognised)."""
    result = await run(duck, "SELECT `ndc_drug_nm` FROM rx_claims LIMIT 1")
    assert result["is_error"] is True
    assert "double quotes" in str(result["content"])
    result = await run(duck, 'SELECT "ndc_drug_nm" FROM rx_claims LIMIT 1', "quoted")
    assert result["is_error"] is False, result["content"]

    with_pivot = f"WITH r AS (SELECT * FROM rx_claims) {PIVOT.replace('rx_claims', 'r')} LIMIT 3"
    result = await run(duck, with_pivot)
    assert result["is_error"] is True
    assert "SELECT * FROM (PIVOT" in str(result["content"])
    rewritten = (
        "WITH r AS (SELECT * FROM rx_claims) "
        f"SELECT * FROM ({PIVOT.replace('rx_claims', 'r')}) LIMIT 3"
    )
    result = await run(duck, rewritten, "pivoted")
    assert result["is_error"] is False, result["content"]
    assert sorted(os.listdir(workspace)) == [
        "pivoted.csv",
        "pivoted.parquet",
        "quoted.csv",
        "quoted.parquet",
    ]


@pytest.mark.parametrize(
    "sql",
    ["SELECT 1 AS a;\n-- that is all", "SELECT 1 AS a; /* done */", "\ufeffSELECT 1 AS a"],
    ids=["line comment", "block comment", "byte-order mark"],
)
async def test_a_comment_after_the_semicolon_or_a_byte_order_mark_is_not_a_statement(
    duck: SQLTool, workspace: Path, sql: str
) -> None:
    """sqlglot returned a statement for the comment after the last ``;`` ("The SQL holds 2
    statements") and could not parse an editor's byte-order mark; DuckDB reads neither."""
    result = await run(duck, sql)
    assert result["is_error"] is False, result["content"]
    assert (workspace / "result.csv").read_text() == "a\n1\n"


def test_a_comment_alone_is_still_no_statement() -> None:
    with pytest.raises(QueryRefused, match="holds no statement"):
        check_read_only("-- nothing here", "duckdb")
    with pytest.raises(QueryRefused, match="holds 2 statements"):
        check_read_only("SELECT 1; -- and\nSELECT 2", "duckdb")


async def test_duckdbs_own_syntax_errors_still_come_first(duck: SQLTool) -> None:
    result = await run(duck, "SELEC 1")
    assert result["is_error"] is True
    assert str(result["content"]).startswith("The query failed. DuckDB: Parser Error")


@pytest.fixture(scope="module")
def dsn(postgres_server: PostgresServer) -> str:
    dsn = postgres_server.create_database("sqlglot_lacks")
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute("CREATE TABLE t (name text)")
        connection.execute("INSERT INTO t VALUES ('a')")
    return dsn


async def test_postgresql_syntax_sqlglot_lacks_is_refused_for_what_it_is(
    dsn: str, workspace: Path
) -> None:
    tool = SQLTool(workspace, backend=dsn, timeout=30)
    try:
        accepted = await run(tool, "SELECT collation for (name) AS c FROM t")
        typo = await run(tool, "SELECT collation for (name AS c FROM t")
    finally:
        await tool.aclose()
    assert accepted["is_error"] is True  # still refused: nothing vouches that it only reads
    content = str(accepted["content"])
    assert content.startswith(
        "PostgreSQL accepts this SQL, but the read-only check cannot parse it (Invalid "
        "expression / Unexpected token at line 1, column 20), so it cannot vouch that the "
        "query only reads. Write it with more common syntax"
    )
    assert typo["is_error"] is True
    assert str(typo["content"]).startswith("The query failed. PostgreSQL: syntax error")
    assert os.listdir(workspace) == []


async def test_a_long_statements_error_quotes_only_the_users_sql(dsn: str, workspace: Path) -> None:
    """PostgreSQL quotes a long first line cut short, and the cut left the tail of the
    statement the check wraps around the SQL in view: "LINE 1: ...RE loopwright_check AS
    SELECT collation ...". The same for the cursor a query runs in."""
    tool = SQLTool(workspace, backend=dsn, timeout=30)
    try:
        syntax = await run(tool, "SELECT collation for (name AS c FROM t")
        execution = await run(tool, "SELECT name, nosuchcolumn, 'some padding here' AS x FROM t")
    finally:
        await tool.aclose()
    said = str(syntax["content"]).splitlines()
    assert said[1] == "LINE 1: SELECT collation for (name AS c FROM ..."  # cut at the end
    assert said[2] == " " * said[1].index("AS c") + "^"
    said = str(execution["content"]).splitlines()
    assert "loopwright" not in str(execution["content"])
    column = said[1].index("nosuchcolumn")
    assert said[2] == " " * column + "^"


async def test_the_error_excerpt_is_the_same_after_many_queries(dsn: str, workspace: Path) -> None:
    """Each query ran in a cursor numbered from a process-wide count (loopwright_1, ...
    loopwright_1234), and PostgreSQL quotes a fixed width of the statement sent: as the
    number grew, the user's SQL was pushed out of the excerpt (``nosuchcolum...``), so the
    same query's error said less the longer the process had run."""
    tool = SQLTool(workspace, backend=dsn, timeout=30)
    query = "SELECT name, nosuchcolumn, 'some padding here' AS x FROM t"
    try:
        first = await run(tool, query)
        for _ in range(1_000):  # the count passes another power of ten
            await tool.backend.query("SELECT 1", str(workspace / "one.csv"), preview_rows=0)
        later = await run(tool, query)
    finally:
        await tool.aclose()
    assert later["content"] == first["content"]
    assert "LINE 1: SELECT name, nosuchcolumn," in str(later["content"])


async def test_postgresql_runs_a_query_with_a_comment_after_its_semicolon(
    dsn: str, workspace: Path
) -> None:
    tool = SQLTool(workspace, backend=dsn, timeout=30)
    try:
        result = await run(tool, "SELECT name FROM t;\n-- that is all")
    finally:
        await tool.aclose()
    assert result["is_error"] is False, result["content"]
    assert (workspace / "result.csv").read_text() == "name\na\n"


def test_the_check_reads_duckdbs_show_as_describe_or_a_listing() -> None:
    """DuckDB reads ``SHOW x`` as ``DESCRIBE x``; the listings name no table."""
    for sql in ("SHOW TABLES", "show all tables;", "SHOW", "DESCRIBE", "SHOW DATABASES"):
        assert isinstance(check_read_only(sql, "duckdb"), exp.Show), sql
    assert isinstance(check_read_only("SHOW TABLES FROM main", "duckdb"), exp.Show)
    for sql in ("SHOW rx_claims", '/* c */ SHOW "rx_claims";', "SHOW SELECT 1 AS x"):
        assert isinstance(check_read_only(sql, "duckdb"), exp.Describe), sql
    # ...and what they look at is checked as in DESCRIBE
    with pytest.raises(QueryRefused, match="looks like a file"):
        check_read_only("SHOW 'claims.csv'", "duckdb")
    with pytest.raises(QueryRefused, match="looks like a file"):
        check_read_only("SHOW TABLES FROM 'claims.csv'", "duckdb")
    with pytest.raises(QueryRefused, match=r"read_csv\(\) is not allowed"):
        check_read_only("SHOW SELECT * FROM read_csv('/etc/passwd')", "duckdb")
    with pytest.raises(QueryRefused, match="2 statements"):
        check_read_only("SHOW TABLES; DROP TABLE rx_claims", "duckdb")
    with pytest.raises(QueryRefused, match="SHOW statements are not allowed"):
        check_read_only("SHOW search_path", "postgres")  # PostgreSQL's reads settings


async def test_show_statements_run(claims_db: Path, duck: SQLTool, workspace: Path) -> None:
    with duckdb.connect(str(claims_db), read_only=True) as connection:
        tables = connection.sql("SHOW TABLES").fetchall()
        columns = connection.sql("DESCRIBE rx_claims").fetchall()
    result = await run(duck, "SHOW TABLES", "tables")
    assert result["is_error"] is False, result["content"]
    assert pl.read_csv(workspace / "tables.csv").rows() == tables
    result = await run(duck, "SHOW rx_claims", "columns")
    assert result["is_error"] is False, result["content"]
    written = pl.read_csv(workspace / "columns.csv")
    assert written.select("column_name", "column_type").rows() == [c[:2] for c in columns]
    result = await run(duck, "DESCRIBE", "everything")
    assert result["is_error"] is False, result["content"]
    assert pl.read_csv(workspace / "everything.csv")["name"].to_list() == [t for (t,) in tables]
