"""The SQL tool's hints and notes for the model's mistakes on PostgreSQL and BigQuery, as on
DuckDB: checked on a real PostgreSQL server and the BigQuery stand-in (both on 127.0.0.1), and
BigQuery's own wording, which the stand-in (DuckDB underneath) does not give, as unit tests.

What each backend does, checked here:

- a text column compared with a number: DuckDB casts the column and fails ("Could not convert
  string 'CA' ... from source column x"); PostgreSQL refuses ("operator does not exist:
  character varying = integer", with a caret under the operator); BigQuery refuses ("No
  matching signature for operator = for argument types: STRING, INT64 ... at [2:7]", the
  position at the start of the comparison). Each gets the comparison rewritten, for the
  comparison the error points at, and the rewrite runs (PostgreSQL has no TRY_CAST: it casts
  only the values that are digits);
- ``COUNT(a) / COUNT(*)`` on PostgreSQL divides integers as whole numbers, silently (0):
  noted, with the cast; DuckDB and BigQuery divide integers into a fraction;
- a division by zero is an error on PostgreSQL and BigQuery ("division by zero", BigQuery's
  "division by zero: 1 / 0"), with the fix for each;
- ``[ndc_drug_nm]`` (SQL Server's quotes) is a syntax error on PostgreSQL and an ARRAY on
  BigQuery: the hint or note names the quotes of each (double quotes, backticks);
- a text comparison is case-sensitive on each: no rows is noted, and the ``lower(...)`` form
  the note gives runs and finds the rows.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from loopwright.sql import BigQueryBackend, DuckDBBackend, PostgresBackend, SQLBackend, hints
from loopwright.tools.sql import SQLTool
from postgres_server import PostgresServer

from .bigquery_server import BigQueryServer

#: The columns of conftest's rx_claims the tests use, in PostgreSQL's types.
SETUP = """
CREATE TABLE rx_claims (
    claim_id integer,
    prescriber_npi_state_cd varchar(2),
    ndc_drug_nm text,
    dispensed_quantity_val integer,
    paid_amt numeric(10, 2),
    is_specialty boolean
);
INSERT INTO rx_claims
SELECT g, (ARRAY['CA', 'TX', 'NY'])[1 + g % 3], (ARRAY['HUMIRA', 'ELIQUIS'])[1 + g % 2],
       g % 90 + 1, g * 1.5, g % 7 = 0
FROM generate_series(0, 199) AS g;
"""


@pytest.fixture(scope="module")
def dsn(postgres_server: PostgresServer) -> str:
    dsn = postgres_server.create_database("parity")
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(SETUP.encode())
    return dsn


@pytest.fixture
async def backend(
    request: pytest.FixtureRequest, claims_db: Path, dsn: str
) -> AsyncIterator[SQLBackend]:
    opened: SQLBackend
    if request.param == "duckdb":
        opened = DuckDBBackend(claims_db)
    elif request.param == "postgres":
        opened = PostgresBackend(dsn)
    else:
        server: BigQueryServer = request.getfixturevalue("bigquery_server")
        opened = BigQueryBackend("test-project", "claims", api_endpoint=server.base_url)
    yield opened
    await opened.aclose()


def each(*kinds: str) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("backend", kinds, indirect=True)


async def run(backend: SQLBackend, workspace: Path, sql: str, name: str = "r") -> dict[str, Any]:
    tool = SQLTool(workspace, backend=backend, timeout=30, preview_rows=5)
    return dict(await tool.execute({"sql": sql, "dataset_name": name, "description": "t"}))


def rows(result: dict[str, Any]) -> list[str]:
    """The preview's rows as the model reads them."""
    assert result["is_error"] is False, result["content"]
    return [line for line in str(result["content"]).splitlines() if line.startswith("| ")][1:]


def warnings(result: dict[str, Any]) -> list[str]:
    assert result["is_error"] is False, result["content"]
    found = list(result["metadata"].get("warnings", []))
    for warning in found:  # the model reads each one too
        assert f"Note: {warning}" in str(result["content"])
    return found


# --- a text column compared with a number ---------------------------------------------------

#: The query, on four lines (PostgreSQL's caret is under line 4).
WHERE = "SELECT COUNT(*) AS n\nFROM rx_claims r\nWHERE r.ndc_drug_nm IS NOT NULL\n  AND {}"
CASES = [
    # (the condition, the rewrite on DuckDB, PostgreSQL, BigQuery)
    ("r.prescriber_npi_state_cd = 1", "r.prescriber_npi_state_cd = '1'", None, None),
    ("r.prescriber_npi_state_cd IN (1, 2)", "r.prescriber_npi_state_cd IN ('1', '2')", None, None),
    ("1 = r.prescriber_npi_state_cd", "'1' = r.prescriber_npi_state_cd", None, None),
    ("r.prescriber_npi_state_cd NOT IN (1, 2)",
     "NOT r.prescriber_npi_state_cd IN ('1', '2')", None, None),
    ("r.prescriber_npi_state_cd > 5",
     "TRY_CAST(r.prescriber_npi_state_cd AS BIGINT) > 5",
     "CASE WHEN r.prescriber_npi_state_cd ~ '^-?[0-9]+$' THEN "
     "CAST(r.prescriber_npi_state_cd AS BIGINT) END > 5",
     "SAFE_CAST(r.prescriber_npi_state_cd AS INT64) > 5"),
    ("r.prescriber_npi_state_cd <= 2.5",
     "TRY_CAST(r.prescriber_npi_state_cd AS DOUBLE) <= 2.5",
     "CASE WHEN r.prescriber_npi_state_cd ~ '^-?[0-9]+([.][0-9]+)?$' THEN "
     "CAST(r.prescriber_npi_state_cd AS DOUBLE PRECISION) END <= 2.5",
     "SAFE_CAST(r.prescriber_npi_state_cd AS FLOAT64) <= 2.5"),
]  # fmt: skip


def rewrite(content: str) -> str:
    """The comparison the hint says to write."""
    (line,) = [line for line in content.splitlines() if "compared with the number" in line]
    return line.split(": ", 2)[2].removesuffix(".")


@pytest.mark.parametrize(
    ("backend", "where", "fix"),
    [
        pytest.param(kind, case[0], case[1 + i] or case[1], id=f"{kind}: {case[0]}")
        for i, kind in enumerate(["duckdb", "postgres", "bigquery"])
        for case in CASES
    ],
    indirect=["backend"],
)
async def test_text_compared_with_a_number_gets_the_rewrite_that_runs(
    backend: SQLBackend, workspace: Path, where: str, fix: str
) -> None:
    failed = await run(backend, workspace, WHERE.format(where))
    assert failed["is_error"] is True
    content = str(failed["content"])
    assert rewrite(content) == fix
    fixed = await run(backend, workspace, WHERE.format(fix), "fixed")
    assert fixed["is_error"] is False, fixed["content"]
    if "NOT" in where:  # still the rows not listed: none of the codes is '1' or '2'
        everything = await run(backend, workspace, "SELECT COUNT(*) AS n FROM rx_claims", "all")
        assert rows(fixed) == rows(everything)


@each("postgres")
@pytest.mark.parametrize(
    ("where", "fix"),
    [
        ("claim_id = 3 OR prescriber_npi_state_cd = 1", "prescriber_npi_state_cd = '1'"),
        ("claim_id >= 0 AND\tprescriber_npi_state_cd > 5", "CASE WHEN prescriber_npi_state_cd"),
        (
            "claim_id >= 0 AND claim_id < 1000 AND prescriber_npi_state_cd IN (1, 2) AND "
            "dispensed_quantity_val > 0 AND paid_amt >= 0",  # a line PostgreSQL quotes cut
            "prescriber_npi_state_cd IN ('1', '2')",
        ),
    ],
)
async def test_postgres_rewrites_the_comparison_its_caret_points_at(
    backend: SQLBackend, workspace: Path, where: str, fix: str
) -> None:
    """PostgreSQL names only the types: the integer columns compared with numbers first are
    not the text one."""
    failed = await run(backend, workspace, f"SELECT COUNT(*) AS n FROM rx_claims WHERE {where}")
    assert "LINE 1: ..." in str(failed["content"])
    assert rewrite(str(failed["content"])).startswith(fix)


@each("postgres")
async def test_postgres_text_compared_with_a_text_column_gets_no_number_rewrite(
    backend: SQLBackend, workspace: Path
) -> None:
    """The failing ``=`` compares two columns: the ``b.claim_id = 3`` elsewhere is not it."""
    failed = await run(
        backend,
        workspace,
        "SELECT COUNT(*) AS n FROM rx_claims a JOIN rx_claims b "
        "ON a.prescriber_npi_state_cd = b.claim_id WHERE b.claim_id = 3",
    )
    assert "operator does not exist: character varying = integer" in str(failed["content"])
    assert "compared with the number" not in str(failed["content"])


def test_bigquerys_own_wording_of_text_compared_with_a_number() -> None:
    """BigQuery points at the start of the comparison ("WHERE DataID=CAST(? as INT64)" fails
    "at [2:7]"), and has worded the refusal two ways."""
    sql = "SELECT COUNT(*) AS n\nFROM claims.rx_claims\nWHERE claim_id = 3 AND state_cd = 1"
    old = (
        "BigQuery: No matching signature for operator = for argument types: STRING, INT64. "
        "Supported signature: ANY = ANY at [3:24]"
    )
    new = (
        "BigQuery: No matching signature for operator = for argument types: STRING, INT64\n"
        "Signature: T1 = T1\n  Unable to find common supertype for templated argument <T1>\n"
        "    Input types for <T1>: {INT64, STRING} at [3:24]"
    )
    for message in (old, new):
        told = hints.text_number_hint(message, sql, "bigquery")
        assert told == (
            "\nstate_cd is text, compared with the number 1: write the number as text in single "
            "quotes: state_cd = '1'."
        )
    # the number first, and IN (worded "STRING and {INT64}")
    said = "BigQuery: No matching signature for operator = for argument types: INT64, STRING"
    told = hints.text_number_hint(
        f"{said} at [1:36]", "SELECT * FROM t WHERE x = 2 AND 1 = state_cd", "bigquery"
    )
    assert told.endswith(": '1' = state_cd.")
    said = "BigQuery: No matching signature for operator IN for argument types STRING and {INT64}"
    told = hints.text_number_hint(
        f"{said} at [1:23]", "SELECT * FROM t WHERE state_cd IN (1, 2)", "bigquery"
    )
    assert told.endswith(": state_cd IN ('1', '2').")
    # a text column compared with a number column, where another column is compared with 3
    sql = "SELECT * FROM a JOIN b ON a.code = b.id WHERE b.id = 3"
    said = "BigQuery: No matching signature for operator = for argument types: STRING, INT64"
    assert hints.text_number_hint(f"{said} at [1:27]", sql, "bigquery") == ""
    # types that are not text and a number
    said = "BigQuery: No matching signature for operator = for argument types: TIMESTAMP, DATE"
    assert (
        hints.text_number_hint(f"{said} at [1:23]", "SELECT * FROM t WHERE ts = 1", "bigquery")
        == ""
    )


# --- integer division on PostgreSQL -----------------------------------------------------------


@each("postgres")
async def test_postgres_integer_division_is_noted_with_a_cast_that_keeps_the_fraction(
    backend: SQLBackend, workspace: Path
) -> None:
    share = "COUNT(*) FILTER (WHERE is_specialty) / COUNT(*)"
    result = await run(backend, workspace, f"SELECT {share} AS share FROM rx_claims")
    assert result["metadata"]["columns"] == [["share", "int8"]]
    assert rows(result) == ["| 0 |"]  # 29 of 200
    (note,) = warnings(result)
    assert note.startswith("share is an integer made by dividing integers (COUNT(*) FILTER(")
    assert "PostgreSQL does in whole numbers, dropping the fraction" in note
    fix = note.split("cast one side: ", 1)[1].split(" (or multiply by 1.0", 1)[0]
    assert fix == "(COUNT(*) FILTER(WHERE is_specialty))::numeric / COUNT(*)"
    fixed = await run(backend, workspace, f"SELECT {fix} AS share FROM rx_claims", "fixed")
    assert rows(fixed)[0].startswith("| 0.145")
    assert warnings(fixed) == []
    times = await run(backend, workspace, f"SELECT 1.0 * {share} AS share FROM rx_claims", "x")
    assert rows(times)[0].startswith("| 0.145")
    assert warnings(times) == []


@each("postgres")
async def test_postgres_integer_division_of_sums_is_noted_and_by_a_number_is_not(
    backend: SQLBackend, workspace: Path
) -> None:
    result = await run(
        backend,
        workspace,
        "SELECT claim_id / 7 AS week, SUM(dispensed_quantity_val) / SUM(claim_id) AS ratio, "
        "100 * COUNT(*) / SUM(claim_id + 1) AS pct, COUNT(*) AS n, 'a/b' AS label "
        "FROM rx_claims GROUP BY 1 ORDER BY 1 LIMIT 3",
    )
    (note,) = warnings(result)
    assert note.startswith("ratio and pct are integers made by dividing integers (")
    assert "SUM(dispensed_quantity_val)::numeric / SUM(claim_id)" in note
    assert "week" not in note  # whole weeks: a division by a number written out
    assert warnings(await run(backend, workspace, "SELECT COUNT(*) AS n, 'a/b' AS t", "n")) == []


@each("duckdb", "bigquery")
async def test_integer_division_elsewhere_gives_a_fraction_and_no_note(
    backend: SQLBackend, workspace: Path
) -> None:
    result = await run(
        backend,
        workspace,
        "SELECT COUNTIF(is_specialty) / COUNT(*) AS share FROM rx_claims"
        if backend.dialect == "bigquery"
        else "SELECT COUNT(*) FILTER (WHERE is_specialty) / COUNT(*) AS share FROM rx_claims",
    )
    assert rows(result)[0].startswith("| 0.14")
    assert warnings(result) == []


def test_integer_division_note_reads_the_sql_only_for_an_integer_column() -> None:
    columns = [("share", "numeric")]
    assert hints.integer_division_note("SELECT a / b AS share FROM t", "postgres", columns) is None
    columns = [("share", "int8")]
    assert hints.integer_division_note("SELECT a / b AS share FROM t", "duckdb", columns) is None
    assert hints.integer_division_note("SELECT a / b AS share FROM t", "postgres", columns)
    # * in the SELECT list: which expression made which column is not known
    assert hints.integer_division_note("SELECT *, a / b FROM t", "postgres", columns) is None
    assert (
        hints.integer_division_note("SELECT CAST(a / b AS int) FROM t", "postgres", columns) is None
    )


# --- division by zero ---------------------------------------------------------------------------


@each("postgres")
async def test_postgres_division_by_zero_says_nullif(backend: SQLBackend, workspace: Path) -> None:
    for sql in (
        "SELECT COUNT(*) / 0 AS r FROM rx_claims",
        "SELECT SUM(paid_amt) / 0 AS r FROM rx_claims",
    ):
        failed = await run(backend, workspace, sql)
        assert failed["is_error"] is True
        content = str(failed["content"])
        assert "PostgreSQL: division by zero" in content
        assert "Divide by NULLIF(b, 0) to get NULL where the divisor is 0." in content
    fixed = await run(backend, workspace, "SELECT COUNT(*) / NULLIF(0, 0) AS r FROM rx_claims")
    assert rows(fixed) == ["| NULL |"]


def test_bigquerys_division_by_zero_says_safe_divide() -> None:
    """The stand-in divides as DuckDB does (inf); BigQuery fails, in these words."""
    for said in ("division by zero: 1 / 0", "division by zero: MOD(5, 0)", "division by zero"):
        told = hints.dialect_hint(f"BigQuery: {said}", "SELECT x / y FROM t", "bigquery")
        assert told == "\nUse SAFE_DIVIDE(a, b), which gives NULL where b is 0."


# --- [brackets] ---------------------------------------------------------------------------------


@each("postgres")
async def test_postgres_brackets_are_a_syntax_error_that_names_double_quotes(
    backend: SQLBackend, workspace: Path
) -> None:
    for sql in (
        "SELECT [ndc_drug_nm], COUNT(*) AS n FROM rx_claims GROUP BY 1",
        "SELECT COUNT(*) AS n FROM rx_claims WHERE [ndc_drug_nm] = 'HUMIRA'",
    ):
        failed = await run(backend, workspace, sql)
        content = str(failed["content"])
        assert 'PostgreSQL: syntax error at or near "["' in content
        assert (
            "[Brackets] are SQL Server's quotes: in PostgreSQL quote names with double" in content
        )
    fixed = await run(
        backend, workspace, 'SELECT "ndc_drug_nm", COUNT(*) AS n FROM rx_claims GROUP BY 1'
    )
    assert fixed["metadata"]["columns"][0] == ["ndc_drug_nm", "text"]


@each("bigquery")
async def test_bigquery_brackets_make_an_array_noted_with_backticks(
    backend: SQLBackend, workspace: Path
) -> None:
    result = await run(backend, workspace, "SELECT [ndc_drug_nm] AS d FROM rx_claims LIMIT 2")
    assert result["metadata"]["columns"] == [["d", "ARRAY<STRING>"]]
    (note,) = warnings(result)
    assert note.startswith("[ndc_drug_nm] makes a list holding the column's value")
    assert note.endswith("In BigQuery write the name bare or in backticks (`ndc_drug_nm`).")
    fixed = await run(backend, workspace, "SELECT `ndc_drug_nm` AS d FROM rx_claims LIMIT 2")
    assert fixed["metadata"]["columns"] == [["d", "STRING"]]
    assert warnings(fixed) == []


def test_bigquerys_own_wording_of_brackets_compared_with_text() -> None:
    said = (
        "BigQuery: No matching signature for operator = for argument types: ARRAY<STRING>, "
        "STRING. Supported signature: ANY = ANY at [1:43]"
    )
    sql = "SELECT COUNT(*) AS n FROM rx_claims WHERE [ndc_drug_nm] = 'HUMIRA'"
    assert hints.dialect_hint(said, sql, "bigquery") == (
        "\n[Brackets] are SQL Server's quotes: in BigQuery quote names with backticks "
        "(`RX_CLAIMS`)."
    )
    # an array compared with text that no bracketed name made
    assert hints.dialect_hint(said, "SELECT * FROM t WHERE tags = 'x'", "bigquery") == ""


# --- no rows: a case-sensitive comparison -----------------------------------------------------


@each("postgres", "bigquery")
@pytest.mark.parametrize(
    ("where", "fix"),
    [
        ("ndc_drug_nm = 'Humira'", "lower(ndc_drug_nm) = 'humira'"),
        ("ndc_drug_nm LIKE 'Hum%'", "lower(ndc_drug_nm) LIKE 'hum%'"),
    ],
)
async def test_no_rows_from_a_case_sensitive_comparison_gives_a_fix_that_runs(
    backend: SQLBackend, workspace: Path, where: str, fix: str
) -> None:
    count = "SELECT COUNT(*) AS n FROM rx_claims WHERE "
    result = await run(backend, workspace, f"SELECT claim_id FROM rx_claims WHERE {where}")
    assert result["metadata"]["row_count"] == 0
    (note,) = warnings(result)
    assert note.startswith(f"{where} is case-sensitive.")
    assert note.endswith(f"ignore case: {fix}.")
    fixed = await run(backend, workspace, count + fix, "fixed")
    upper = await run(backend, workspace, count + "ndc_drug_nm = 'HUMIRA'", "upper")
    assert rows(fixed) == rows(upper) != ["| 0 |"]
