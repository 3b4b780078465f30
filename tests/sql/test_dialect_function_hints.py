"""Another dialect's functions (``DATEDIFF``, ``NVL``, ``GETDATE()``, ``strftime`` on
PostgreSQL, ``DATE_TRUNC('month', d)`` on BigQuery, ...) answered with this backend's
equivalent, on real DuckDB files, a real PostgreSQL server and the BigQuery stand-in, all on
127.0.0.1; and every equivalent the hints show, run on the backend it is shown for."""

from __future__ import annotations

import csv
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from loopwright.sql import BigQueryBackend, DuckDBBackend, PostgresBackend, SQLBackend
from loopwright.sql.hints import EQUIVALENTS, dialect_hint
from loopwright.tools.sql import SQLTool
from postgres_server import PostgresServer

from .bigquery_server import BigQueryServer

SETUP = """
CREATE TABLE rx_claims (
    claim_id integer,
    ndc_drug_nm text,
    service_date_dd date,
    paid_amt numeric(10, 2)
);
INSERT INTO rx_claims
SELECT g, (ARRAY['HUMIRA', 'ELIQUIS'])[1 + g % 2], DATE '2024-01-01' + g % 366, g * 1.5
FROM generate_series(1, 50) AS g;
"""

#: The longest a hint line may be (the QUALIFY hint, the longest before, is ~230).
MAX_HINT_CHARS = 200


@pytest.fixture(scope="module")
def dsn(postgres_server: PostgresServer) -> str:
    dsn = postgres_server.create_database("functions")
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


async def run(backend: SQLBackend, workspace: Path, sql: str) -> dict[str, Any]:
    tool = SQLTool(workspace, backend=backend, timeout=30)
    return dict(await tool.execute({"sql": sql, "dataset_name": "r", "description": "t"}))


async def failed(backend: SQLBackend, workspace: Path, sql: str) -> str:
    result = await run(backend, workspace, sql)
    assert result["is_error"], result
    return str(result["content"])


def hint_line(content: str, start: str) -> str:
    """The line of ``content`` starting with ``start``, checked to be short."""
    lines = [line for line in content.splitlines() if line.startswith(start)]
    assert len(lines) == 1, content
    assert len(lines[0]) <= MAX_HINT_CHARS, lines[0]
    return lines[0]


def each(*kinds: str) -> pytest.MarkDecorator:
    return pytest.mark.parametrize("backend", kinds, indirect=True)


# --- the hints, on each backend ----------------------------------------------------------

D = "service_date_dd"
DUCKDB_CASES = [
    # (the query's call, the hint's start, what it must say)
    (f"DATEDIFF(day, {D}, DATE '2025-01-01')", "DuckDB's DATEDIFF takes other arguments",
     "date_diff('day', a, b)"),
    (f"DATE_DIFF(DATE '2025-01-01', {D}, DAY)", "DuckDB's DATE_DIFF takes other arguments",
     "date_diff('day', a, b)"),
    (f"TIMESTAMPDIFF(DAY, {D}, DATE '2025-01-01')", "TIMESTAMPDIFF is not a DuckDB function",
     "date_diff('day', a, b)"),
    (f"DATEADD(month, 1, {D})", "DATEADD is not a DuckDB function", "d + INTERVAL 1 MONTH"),
    (f"ADD_MONTHS({D}, 1)", "ADD_MONTHS is not a DuckDB function", "d + INTERVAL 1 MONTH"),
    ("GETDATE()", "GETDATE is not a DuckDB function", "current_date is today, now()"),
    ("NVL(ndc_drug_nm, 'x')", "NVL is not a DuckDB function", "coalesce(x, y)"),
    ("ISNULL(ndc_drug_nm, 'x')", "ISNULL is not a DuckDB function", "coalesce(x, y)"),
    ("IIF(paid_amt > 10, 1, 0)", "IIF is not a DuckDB function", "if(cond, x, y)"),
    (f"DATE_FORMAT({D}, '%Y-%m')", "DATE_FORMAT is not a DuckDB function",
     "strftime(d, '%Y-%m')"),
    (f"TO_CHAR({D}, 'YYYY-MM')", "TO_CHAR is not a DuckDB function", "strftime(d, '%Y-%m')"),
    (f"FORMAT_DATE('%Y-%m', {D})", "FORMAT_DATE is not a DuckDB function",
     "strftime(d, '%Y-%m')"),
    ("TO_DATE('2024-01-01', 'YYYY-MM-DD')", "TO_DATE is not a DuckDB function",
     "strptime(t, '%Y-%m-%d')::DATE"),
    ("SAFE_DIVIDE(paid_amt, claim_id)", "SAFE_DIVIDE is not a DuckDB function",
     "x / NULLIF(y, 0)"),
    ("CONVERT(VARCHAR, paid_amt)", "CONVERT is not a DuckDB function", "CAST(x AS VARCHAR)"),
    ("CHARINDEX('U', ndc_drug_nm)", "CHARINDEX is not a DuckDB function", "strpos(s, 'U')"),
    (f"EOMONTH({D})", "EOMONTH is not a DuckDB function", "last_day(d)"),
]  # fmt: skip
POSTGRES_CASES = [
    (f"DATEDIFF(day, {D}, DATE '2025-01-01')", "DATEDIFF is not a PostgreSQL function",
     "b::date - a::date"),
    (f"DATEDIFF('day', {D}, DATE '2025-01-01')", "DATEDIFF is not a PostgreSQL function",
     "extract(year from age(b, a)) * 12 + extract(month from age(b, a))"),
    (f"DATEDIFF(DATE '2025-01-01', {D})", "DATEDIFF is not a PostgreSQL function",
     "b::date - a::date"),
    (f"DATE_DIFF(DATE '2025-01-01', {D}, DAY)", "DATE_DIFF is not a PostgreSQL function",
     "b::date - a::date"),
    (f"TIMESTAMPDIFF(DAY, {D}, DATE '2025-01-01')", "TIMESTAMPDIFF is not a PostgreSQL",
     "b::date - a::date"),
    (f"DATEADD(month, 1, {D})", "DATEADD is not a PostgreSQL function",
     "d + INTERVAL '1 month'"),
    (f"strftime({D}, '%Y-%m')", "STRFTIME is not a PostgreSQL function",
     "to_char(d, 'YYYY-MM')"),
    (f"strftime('%Y', {D})", "STRFTIME is not a PostgreSQL function", "to_char(d, 'YYYY-MM')"),
    (f"FORMAT_DATE('%Y-%m', {D})", "FORMAT_DATE is not a PostgreSQL function",
     "to_char(d, 'YYYY-MM')"),
    (f"DATE_FORMAT({D}, '%Y-%m')", "DATE_FORMAT is not a PostgreSQL function",
     "to_char(d, 'YYYY-MM')"),
    ("GETDATE()", "GETDATE is not a PostgreSQL function", "CURRENT_DATE is today, now()"),
    ("NVL(ndc_drug_nm, 'x')", "NVL is not a PostgreSQL function", "coalesce(x, y)"),
    ("IFNULL(ndc_drug_nm, 'x')", "IFNULL is not a PostgreSQL function", "coalesce(x, y)"),
    ("ISNULL(ndc_drug_nm, 'x')", "ISNULL is not a PostgreSQL function", "coalesce(x, y)"),
    ("IFF(paid_amt > 10, 1, 0)", "IFF is not a PostgreSQL function",
     "CASE WHEN cond THEN x ELSE y END"),
    ("IF(paid_amt > 10, 1, 0)", "IF is not a PostgreSQL function",
     "CASE WHEN cond THEN x ELSE y END"),
    ("LEN(ndc_drug_nm)", "LEN is not a PostgreSQL function", "length(s)"),
    (f"DATEPART(year, {D})", "DATEPART is not a PostgreSQL function", "date_part('year', d)"),
    (f"MONTH({D})", "MONTH is not a PostgreSQL function", "EXTRACT(MONTH FROM d)"),
    ("SAFE_DIVIDE(paid_amt, claim_id)", "SAFE_DIVIDE is not a PostgreSQL function",
     "x / NULLIF(y, 0)"),
    ("CONVERT(VARCHAR, paid_amt)", "PostgreSQL's CONVERT takes other arguments",
     "CAST(x AS text)"),
    (f"date_trunc({D}, 'month')", "PostgreSQL's DATE_TRUNC takes other arguments",
     "date_trunc('month', d), the part first"),
    ("DECODE(ndc_drug_nm, 'HUMIRA', 1, 0)", "PostgreSQL's DECODE takes other arguments",
     "CASE s WHEN 'HUMIRA' THEN 1 ELSE 0 END"),
    (f"LAST_DAY({D})", "LAST_DAY is not a PostgreSQL function",
     "(date_trunc('month', d) + INTERVAL '1 month - 1 day')::date"),
    ("COUNTIF(paid_amt > 10)", "COUNTIF is not a PostgreSQL function",
     "COUNT(*) FILTER (WHERE cond)"),
    ("MEDIAN(paid_amt)", "MEDIAN is not a PostgreSQL function", "percentile_cont(0.5)"),
    ("GROUP_CONCAT(ndc_drug_nm)", "GROUP_CONCAT is not a PostgreSQL function",
     "string_agg(s, ',')"),
]  # fmt: skip
#: What the stand-in (DuckDB under sqlglot) refuses, in DuckDB's words: BigQuery refuses these
#: too, in its own (see test_bigquerys_own_wording_gets_the_same_hints).
BIGQUERY_CASES = [
    (f"DATEDIFF(day, {D}, DATE '2025-01-01')", "DATEDIFF is not a BigQuery function",
     "DATE_DIFF(b, a, DAY)"),
    (f"TIMESTAMPDIFF(DAY, {D}, DATE '2025-01-01')", "TIMESTAMPDIFF is not a BigQuery function",
     "DATE_DIFF(b, a, DAY)"),
    (f"DATE_DIFF('day', {D}, DATE '2025-01-01')", "BigQuery's DATE_DIFF takes other arguments",
     "DATE_DIFF(b, a, DAY)"),
    (f"DATEADD(month, 1, {D})", "DATEADD is not a BigQuery function",
     "DATE_ADD(d, INTERVAL 1 MONTH)"),
    ("GETDATE()", "GETDATE is not a BigQuery function", "CURRENT_DATE() is today"),
    ("IFF(paid_amt > 10, 1, 0)", "IFF is not a BigQuery function", "IF(cond, x, y)"),
    ("ISNULL(ndc_drug_nm, 'x')", "ISNULL is not a BigQuery function", "IFNULL(x, y)"),
    (f"DATE_FORMAT({D}, '%Y-%m')", "DATE_FORMAT is not a BigQuery function",
     "FORMAT_DATE('%Y-%m', d), the format first"),
    (f"DATEPART(year, {D})", "DATEPART is not a BigQuery function", "EXTRACT(YEAR FROM d)"),
    ("TO_DATE('2024-01-01')", "TO_DATE is not a BigQuery function",
     "PARSE_DATE('%Y-%m-%d', t)"),
    (f"EOMONTH({D})", "EOMONTH is not a BigQuery function", "LAST_DAY(d)"),
    (f"DATE_TRUNC('month', {D})", "BigQuery's DATE_TRUNC takes other arguments",
     "DATE_TRUNC(d, MONTH)"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("backend", "call", "start", "said"),
    [pytest.param("duckdb", *case, id=f"duckdb: {case[0]}") for case in DUCKDB_CASES]
    + [pytest.param("postgres", *case, id=f"postgres: {case[0]}") for case in POSTGRES_CASES]
    + [pytest.param("bigquery", *case, id=f"bigquery: {case[0]}") for case in BIGQUERY_CASES],
    indirect=["backend"],
)
async def test_another_dialects_function_gets_this_backends_equivalent(
    backend: SQLBackend, workspace: Path, call: str, start: str, said: str
) -> None:
    content = await failed(backend, workspace, f"SELECT {call} AS v FROM rx_claims")
    assert said in hint_line(content, start)
    # a date part or type passed bare is not a column to look for
    assert "Columns of rx_claims" not in content
    assert "is not a column" not in content


@each("duckdb")
async def test_no_hint_when_duckdb_suggested_a_function_taking_the_same_arguments(
    backend: SQLBackend, workspace: Path
) -> None:
    content = await failed(backend, workspace, "SELECT IFF(paid_amt > 10, 1, 0) FROM rx_claims")
    assert 'Did you mean "if"?' in content
    assert "is not a DuckDB function" not in content
    content = await failed(backend, workspace, "SELECT CURDATE()")
    assert 'Did you mean "current_date"?' in content
    assert "is not a DuckDB function" not in content


@each("duckdb", "postgres")
async def test_date_trunc_with_a_bare_part_keeps_the_date_part_hint(
    backend: SQLBackend, workspace: Path
) -> None:
    content = await failed(backend, workspace, f"SELECT date_trunc({D}, month) FROM rx_claims")
    assert "month is not a column" in content
    assert "takes other arguments" not in content


@each("postgres")
async def test_postgres_functions_used_rightly_on_the_wrong_type_get_no_dialect_hint(
    backend: SQLBackend, workspace: Path
) -> None:
    """date_trunc('month', text) and convert(bytea, ...) are PostgreSQL's own shapes: the
    argument's type is wrong, not the dialect."""
    content = await failed(
        backend, workspace, "SELECT date_trunc('month', ndc_drug_nm) FROM rx_claims"
    )
    assert "function date_trunc(unknown, text) does not exist" in content
    assert "takes other arguments" not in content
    content = await failed(
        backend, workspace, "SELECT convert(ndc_drug_nm, 'UTF8', 'LATIN1') FROM rx_claims"
    )
    assert "function convert(text, unknown, unknown) does not exist" in content
    assert "takes other arguments" not in content


@each("postgres")
async def test_an_unknown_column_inside_a_foreign_function_still_gets_close_columns(
    backend: SQLBackend, workspace: Path
) -> None:
    """PostgreSQL reports the column before the function: the column is the first thing
    to fix."""
    content = await failed(backend, workspace, "SELECT NVL(drug_nm, 'x') FROM rx_claims")
    assert "Did you mean ndc_drug_nm?" in content


@each("postgres")
async def test_postgres_is_told_current_date_takes_no_parentheses(
    backend: SQLBackend, workspace: Path
) -> None:
    content = await failed(backend, workspace, "SELECT CURRENT_DATE() AS today")
    assert "PostgreSQL writes CURRENT_DATE and CURRENT_TIMESTAMP without parentheses" in content
    assert not (await run(backend, workspace, "SELECT CURRENT_DATE AS today"))["is_error"]


@each("duckdb")
@pytest.mark.parametrize(
    ("call", "says"),
    [
        (f"DATEDIFF({D}, DATE '2025-01-01')", "DuckDB's DATEDIFF takes other arguments: "
         "date_diff('day', a, b)"),
        ("CONVERT(DATE, '2024-01-01')", "CONVERT is not a DuckDB function: write CAST(x AS"),
        ("DECODE(ndc_drug_nm, 'HUMIRA', 1, 0)", "DuckDB's DECODE takes other arguments: write "
         "CASE s WHEN"),
    ],
)  # fmt: skip
async def test_a_foreign_call_the_read_only_check_cannot_parse_gets_the_equivalent(
    backend: SQLBackend, workspace: Path, call: str, says: str
) -> None:
    # DuckDB parses these (any name with any arguments) but sqlglot does not, so the read-only
    # check refuses them before DuckDB says the function does not exist: the refusal names
    # the equivalent instead of "write it with more common syntax"
    content = await failed(backend, workspace, f"SELECT {call} AS v FROM rx_claims")
    assert "the read-only check cannot parse it" in content
    assert says in content
    assert "more common syntax" not in content


def test_bigquerys_own_wording_gets_the_same_hints() -> None:
    """BigQuery says "Function not found: X[; Did you mean Y?] at [l:c]" and "No matching
    signature for function X ...". The stand-in translates NOW(), TO_CHAR, NVL, LEN and
    strftime into DuckDB and runs them, so BigQuery's wording is given here."""
    cases = [
        ("NOW()", "Function not found: NOW at [1:8]", "CURRENT_TIMESTAMP()"),
        (f"TO_CHAR({D}, 'YYYY-MM')", "Function not found: TO_CHAR at [1:8]", "FORMAT_DATE("),
        (f"strftime('%Y', {D})", "Function not found: strftime at [1:8]", "FORMAT_DATE("),
        ("NVL(x, 0)", "Function not found: NVL; Did you mean nvl2? at [1:8]", "IFNULL(x, y)"),
        ("LEN(s)", "Function not found: LEN; Did you mean ln? at [1:8]", "LENGTH(s)"),
        (
            f"DATEDIFF({D}, DATE '2025-01-01')",
            "Function not found: DATEDIFF; Did you mean date_diff? at [1:8]",
            "DATE_DIFF(b, a, DAY)",
        ),
        (
            f"DATE_TRUNC('month', {D})",
            "No matching signature for function DATE_TRUNC for argument types: STRING, DATE. "
            "Supported signature: DATE_TRUNC(DATE, DATE_TIME_PART) at [1:8]",
            "DATE_TRUNC(d, MONTH)",
        ),
    ]
    for call, said, hint in cases:
        told = dialect_hint(f"BigQuery: {said}", f"SELECT {call} FROM rx_claims", "bigquery")
        assert hint in told, (call, told)
        assert len(told.strip()) <= MAX_HINT_CHARS
    # a suggestion taking the same arguments says it all
    said = "BigQuery: Function not found: IFF; Did you mean if? at [1:8]"
    assert dialect_hint(said, "SELECT IFF(x > 1, 1, 0)", "bigquery") == ""
    # BigQuery's own DATE_TRUNC shape, wrong only in the argument's type: no dialect hint
    said = (
        "BigQuery: No matching signature for function DATE_TRUNC for argument types: STRING, "
        "DATE_TIME_PART at [1:8]"
    )
    assert dialect_hint(said, "SELECT DATE_TRUNC(s, MONTH)", "bigquery") == ""


# --- every equivalent shown runs ---------------------------------------------------------

#: The examples' names, as values each backend takes.
VALUES = {
    "a": "DATE '2024-01-15'",
    "b": "DATE '2024-03-20'",
    "d": "DATE '2024-01-31'",
    "x": "7",
    "y": "0",
    "s": "'HUMIRA'",
    "t": "'2024-01-15'",
    "cond": "TRUE",
}
#: What each example gives with :data:`VALUES` (the start of its CSV text; "" for NULL);
#: None for the current date and time.
EXPECTED = {
    "date_diff('day', a, b)": "65",
    "b::date - a::date": "65",
    "extract(year from age(b, a)) * 12 + extract(month from age(b, a))": "2",
    "DATE_DIFF(b, a, DAY)": "65",
    "d + INTERVAL 1 MONTH": "2024-02-29",
    "d + INTERVAL '1 month'": "2024-02-29",
    "DATE_ADD(d, INTERVAL 1 MONTH)": "2024-02-29",
    "current_date": None,
    "now()": None,
    "CURRENT_DATE": None,
    "CURRENT_DATE()": None,
    "CURRENT_TIMESTAMP()": None,
    "coalesce(x, y)": "7",
    "IFNULL(x, y)": "7",
    "if(cond, x, y)": "7",
    "IF(cond, x, y)": "7",
    "CASE WHEN cond THEN x ELSE y END": "7",
    "strftime(d, '%Y-%m')": "2024-01",
    "to_char(d, 'YYYY-MM')": "2024-01",
    "FORMAT_DATE('%Y-%m', d)": "2024-01",
    "strptime(t, '%Y-%m-%d')::DATE": "2024-01-15",
    "to_date(t, 'YYYY-MM-DD')": "2024-01-15",
    "PARSE_DATE('%Y-%m-%d', t)": "2024-01-15",
    "x / NULLIF(y, 0)": "",
    "CAST(x AS VARCHAR)": "7",
    "CAST(x AS text)": "7",
    "CAST(x AS STRING)": "7",
    "strpos(s, 'U')": "2",
    "STRPOS(s, 'U')": "2",
    "last_day(d)": "2024-01-31",
    "LAST_DAY(d)": "2024-01-31",
    "(date_trunc('month', d) + INTERVAL '1 month - 1 day')::date": "2024-01-31",
    "length(s)": "6",
    "LENGTH(s)": "6",
    "date_part('year', d)": "2024",
    "EXTRACT(YEAR FROM d)": "2024",
    "EXTRACT(MONTH FROM d)": "1",
    "EXTRACT(DAY FROM d)": "31",
    "COUNT(*) FILTER (WHERE cond)": "1",
    "percentile_cont(0.5) WITHIN GROUP (ORDER BY x)": "7",
    "APPROX_QUANTILES(x, 2)[OFFSET(1)]": "7",
    "string_agg(s, ',')": "HUMIRA",
    "STRING_AGG(s, ',')": "HUMIRA",
    "CASE s WHEN 'HUMIRA' THEN 1 ELSE 0 END": "1",
    "date_trunc('month', d)": "2024-01-01",
    "DATE_TRUNC(d, MONTH)": "2024-01-01",
}
_NAME_OR_TEXT = re.compile(r"'[^']*'|\b(" + "|".join(VALUES) + r")\b")


def with_values(example: str) -> str:
    return _NAME_OR_TEXT.sub(lambda m: VALUES[m[1]] if m[1] else m[0], example)


@each("duckdb", "postgres", "bigquery")
async def test_every_equivalent_shown_runs_and_gives_the_right_value(
    backend: SQLBackend, workspace: Path
) -> None:
    examples = {
        e for equivalent in EQUIVALENTS[backend.dialect].values() for e in equivalent.examples
    }
    assert examples <= set(EXPECTED)  # each has its value here
    for example in sorted(examples):
        result = await run(backend, workspace, f"SELECT {with_values(example)} AS v")
        assert not result["is_error"], (example, result["content"])
        with (workspace / "r.csv").open(newline="") as f:
            row = list(csv.reader(f))[1]  # [] for NULL alone on its line
        value = row[0] if row else ""
        expected = EXPECTED[example]
        if expected is None:
            assert value, example
        elif expected == "":
            assert value == "", (example, value)
        else:
            assert value.startswith(expected), (example, value)


def test_each_hint_is_short() -> None:
    for equivalents in EQUIVALENTS.values():
        for name, equivalent in equivalents.items():
            told = f"{name.upper()} is not a PostgreSQL function: {equivalent.text()}."
            assert len(told) <= MAX_HINT_CHARS, told
