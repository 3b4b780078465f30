"""The healthcare agent on a database of one's own ("bring your own warehouse"): other table
and column names, names that need quotes, free text, catalogues of hundreds of tables,
person identifiers spelt otherwise, claims coded otherwise. The prompt must describe such a
database truly and within bounds, and DefineCohort must say what it has instead."""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import duckdb
import psycopg
import pytest

from cli_process import cli_env, run_cli
from loopwright.healthcare.cohort import DefineCohort
from loopwright.healthcare.prompt import (
    MAX_COMPACT_SCHEMA_CHARS,
    MAX_LISTED_COLUMNS,
    MAX_MEASURED_TABLES,
    MAX_SCHEMA_CHARS,
    DatabaseProfile,
    compact_system_prompt,
    profile_backend,
    system_prompt,
)
from loopwright.sql import DuckDBBackend, PostgresBackend
from postgres_server import PostgresServer, postgres_server  # noqa: F401


def _database(path: Path, sql: str) -> Path:
    connection = duckdb.connect(str(path))
    try:
        connection.execute(sql)
    finally:
        connection.close()
    return path


async def _profile(path: Path) -> DatabaseProfile:
    backend = DuckDBBackend(str(path))
    try:
        return await profile_backend(backend)
    finally:
        await backend.aclose()


def _schema_section(prompt: str) -> str:
    return prompt.split("**Available datasets**", 1)[1].split("**Your tools:**", 1)[0]


#: Names as people's own warehouses have them: spaces, keywords, other scripts, a leading
#: digit, a quote, a schema of their own.
ODD_NAMES = """
CREATE TABLE "Rx Claims" ("Patient Key" VARCHAR, "select" VARCHAR, Drug VARCHAR,
    "Fill Date" DATE, "Ärzt" VARCHAR, "1st" INTEGER, "a""b" INTEGER, "left" VARCHAR);
INSERT INTO "Rx Claims" VALUES ('k1', 'x', 'HUMIRA', DATE '2024-01-01', 'Dr Ö', 7, 1, 'l'),
    ('k2', 'y', 'ENBREL', DATE '2024-02-01', 'Dr Ü', 8, 2, 'r');
CREATE TABLE "order" (id INTEGER, "group" VARCHAR);
INSERT INTO "order" VALUES (1, 'a'), (2, 'b');
CREATE TABLE "dotted.name" (y INTEGER);
CREATE SCHEMA "My Schema";
CREATE TABLE "My Schema"."Totals" (n INTEGER);
CREATE VIEW "Fills by Drug" AS SELECT Drug, COUNT(*) AS fills FROM "Rx Claims" GROUP BY Drug;
"""


async def test_names_that_need_quotes_are_listed_as_duckdb_must_write_them(
    tmp_path: Path,
) -> None:
    """The prompt listed DuckDB names bare: ``Rx Claims``, ``Fill Date``, ``select``,
    ``group``, ``My Schema.Totals``. Copied as shown, each query failed with a syntax error
    (or, for ``1st``, read the number 1 under the name ``st``: a wrong answer, no error)."""
    path = _database(tmp_path / "odd.duckdb", ODD_NAMES)
    profile = await _profile(path)
    prompt = system_prompt(profile)
    schema = _schema_section(prompt)
    for written in (
        '"Rx Claims" (2 rows)',
        '- "Fill Date" DATE',
        '- "select" VARCHAR',
        '- "Ärzt" VARCHAR',
        '- "1st" INTEGER',
        '- "a""b" INTEGER',
        '- "left" VARCHAR',
        '"order" (2 rows)',
        '- "group" VARCHAR',
        '"dotted.name" (0 rows)',
        '"My Schema".Totals (0 rows)',
        '"Fills by Drug" (view)',
        "- Drug VARCHAR",  # a plain name, whatever its case, stays bare
        "- id INTEGER",
    ):
        assert written in schema, written
    assert "write them with their quotes, exactly as listed" in prompt
    compact = compact_system_prompt(profile)
    assert '"Rx Claims": "Patient Key", "select", Drug, "Fill Date"' in compact

    # every table and column, written as the prompt writes it, reads that very column
    connection = duckdb.connect(str(path), read_only=True)
    try:
        for table in profile.tables:
            for column in table.columns:
                cursor = connection.execute(f"SELECT {column.in_sql} FROM {table.in_sql}")
                assert cursor.description is not None
                assert cursor.description[0][0] == column.name, (table.in_sql, column.in_sql)
    finally:
        connection.close()


async def test_a_long_text_value_does_not_fill_the_prompt(tmp_path: Path) -> None:
    """A column of two distinct 100,000-character notes was listed as a code list: one
    column made a 200,000-character prompt."""
    path = _database(
        tmp_path / "notes.duckdb",
        "CREATE TABLE notes (kind VARCHAR, note VARCHAR);"
        "INSERT INTO notes VALUES ('a', repeat('x', 100000)), ('b', repeat('y', 100000));",
    )
    prompt = system_prompt(await _profile(path))
    assert len(prompt) < 12_000
    assert "- note VARCHAR\n" in prompt
    assert "- kind VARCHAR [2 values: a, b]" in prompt  # a short code list still is


async def test_lists_of_text_have_no_values_listed(tmp_path: Path) -> None:
    """A ``VARCHAR[]`` or ``VARCHAR[2]`` column was taken for text, and its values listed as
    Python writes them (``('p', 'q')``), which is no SQL value the model could match."""
    path = _database(
        tmp_path / "lists.duckdb",
        "CREATE TABLE t (tags VARCHAR[], pair VARCHAR[2], kind VARCHAR);"
        "INSERT INTO t VALUES (['a', 'b'], ['x', 'y'], 'k1'), (['c'], ['p', 'q'], 'k2');",
    )
    prompt = system_prompt(await _profile(path))
    assert "- tags VARCHAR[]\n" in prompt
    assert "- pair VARCHAR[2]\n" in prompt
    assert "- kind VARCHAR [2 values: k1, k2]" in prompt


async def test_a_catalogue_of_hundreds_of_tables_is_listed_within_bounds(tmp_path: Path) -> None:
    """Every table was measured (a scan and a value query per column: 2,000 small tables
    took 7 s) and described in full: 300 tables made a 240,000-character prompt, 2,000 a
    1.6-million-character one, past any model's context. Now the first tables are measured,
    the list stops at its budget and a note names the tables left out."""
    columns = ", ".join(f"c{i} VARCHAR, d{i} DATE" for i in range(6))
    values = ", ".join("'v' || (i % 5), DATE '2024-01-01' + i::INTEGER" for _ in range(6))
    sql = "".join(
        f"CREATE TABLE table_{t:03d} ({columns});"
        f"INSERT INTO table_{t:03d} SELECT {values} FROM range(10) r(i);"
        for t in range(300)
    )
    profile = await _profile(_database(tmp_path / "many.duckdb", sql))
    measured = [t for t in profile.tables if t.rows is not None]
    assert len(measured) == MAX_MEASURED_TABLES
    assert profile.tables[MAX_MEASURED_TABLES].columns  # the others: their columns alone
    prompt = system_prompt(profile)
    schema = _schema_section(prompt)
    assert len(schema) < MAX_SCHEMA_CHARS * 1.2
    assert "1. table_000 (10 rows)" in schema
    assert "- c0 VARCHAR [5 values: v0, v1, v2, v3, v4]" in schema
    (note,) = [line for line in schema.splitlines() if "more tables, not described" in line]
    assert "more tables, not described here to keep this list short: " in note
    assert "Look up a table's columns with SQL (information_schema.columns)" in note
    assert "Only the first 100 tables were measured" in prompt
    described = len(re.findall(r"^\d+\. table_\d+ ", schema, re.MULTILINE))
    left_out = int(note.split(" ", 1)[0].replace(",", ""))
    assert described + left_out == 300
    compact = compact_system_prompt(profile)
    assert len(compact) < MAX_COMPACT_SCHEMA_CHARS + 1_000
    assert "more tables, not described here" in compact


async def test_a_table_of_hundreds_of_columns_lists_the_first_and_counts_the_rest(
    tmp_path: Path,
) -> None:
    """A 900-column table was listed column by column (61,000 characters)."""
    columns = ", ".join(f"col_{i} INTEGER" for i in range(900))
    profile = await _profile(_database(tmp_path / "wide.duckdb", f"CREATE TABLE wide ({columns})"))
    prompt = system_prompt(profile)
    assert len(prompt) < 10_000
    assert f"- col_{MAX_LISTED_COLUMNS - 1} INTEGER\n" in prompt
    assert f"- col_{MAX_LISTED_COLUMNS} INTEGER" not in prompt
    more = 900 - MAX_LISTED_COLUMNS
    assert f"   - ... and {more} more columns (information_schema.columns lists them)" in prompt
    assert f", ... ({more} more columns)" in compact_system_prompt(profile)


async def test_person_identifiers_spelt_with_spaces_or_in_camel_case_are_not_listed(
    tmp_path: Path,
) -> None:
    """The prompt goes to the model's provider. Identifiers were recognised by names like
    PATIENT_NAME and date_of_birth only: ``"Patient Name"``, ``"Date of Birth"``,
    ``DateOfBirth``, ``"Member-ID"`` and ``"Zip Code"`` had their values (every patient's
    name, the range of birth dates, all nine zip codes) listed in it."""
    path = _database(
        tmp_path / "patients.duckdb",
        'CREATE TABLE "Patients" ("Patient Name" VARCHAR, "Date of Birth" DATE, '
        '"DateOfBirth" DATE, "Member-ID" VARCHAR, "Zip Code" VARCHAR, "Sex" VARCHAR, '
        '"Plan Type" VARCHAR);'
        "INSERT INTO \"Patients\" SELECT 'Person ' || i, DATE '1950-01-01' + (i * 100)::INTEGER, "
        "DATE '1950-01-01' + (i * 100)::INTEGER, 'M' || i, '9000' || (i % 9), "
        "CASE WHEN i % 2 = 0 THEN 'F' ELSE 'M' END, CASE WHEN i % 3 = 0 THEN 'HMO' ELSE 'PPO' "
        "END FROM range(30) r(i);",
    )
    prompt = system_prompt(await _profile(path))
    for bare in (
        '- "Patient Name" VARCHAR\n',
        '- "Date of Birth" DATE\n',
        "- DateOfBirth DATE\n",
        '- "Member-ID" VARCHAR\n',
        '- "Zip Code" VARCHAR\n',
    ):
        assert bare in prompt, bare
    for value in ("Person 1", "1950-01-01", "M12", "90003"):
        assert value not in prompt, value
    assert "- Sex VARCHAR [2 values: F, M]" in prompt  # a short code list names no one
    assert '- "Plan Type" VARCHAR [2 values: PPO, HMO]' in prompt


async def test_a_database_without_tables_says_so(tmp_path: Path) -> None:
    """An empty database gave an empty list under "Available datasets", which a model reads
    as a prompt cut short rather than as a database with nothing in it."""
    profile = await _profile(_database(tmp_path / "empty.duckdb", "SELECT 1"))
    assert "(none: this database has no tables or views)" in _schema_section(system_prompt(profile))
    assert "Tables:\n(none)" in compact_system_prompt(profile)


Define = Callable[..., Awaitable[dict[str, Any]]]


@pytest.fixture
def cohorts(tmp_path: Path) -> Define:
    """``define(database, **criteria)``: DefineCohort's answer on a DuckDB file."""

    async def define(database: Path, **criteria: Any) -> dict[str, Any]:
        toolset = DefineCohort(f"duckdb://{database}")
        try:
            (tool,) = toolset.bind(str(tmp_path / "workspace"))
            result: dict[str, Any] = await tool.execute({"name": "c", **criteria})
        finally:
            await toolset.aclose()
        return result

    return define


async def test_define_cohort_says_what_the_database_has_instead(
    tmp_path: Path, cohorts: Define
) -> None:
    """With the claims under other names, DefineCohort said only "This database has no
    RX_CLAIMS table with the columns drugs needs", even of a database with an RX_CLAIMS
    table: the model could not tell what to query instead."""
    renamed = _database(
        tmp_path / "renamed.duckdb",
        "CREATE TABLE RX_CLAIMS (claim_id INTEGER, drug VARCHAR);"
        "CREATE TABLE pharmacy_claims (member_id VARCHAR, fill_date DATE, drug_name VARCHAR);",
    )
    result = await cohorts(renamed, drugs=["HUMIRA"])
    assert result["is_error"] is True
    assert (
        "DefineCohort reads PATIENT_ID, SERVICE_DATE_DD, NDC_DRUG_NM from RX_CLAIMS, whose "
        in (result["content"])
    )
    assert "columns are claim_id, drug." in result["content"]

    result = await cohorts(renamed, conditions=["E11"])
    assert result["is_error"] is True
    assert (
        "DefineCohort reads a table named MED_CLAIMS with PATIENT_ID, STATEMENT_FROM_DD, "
        "condition_label or ICD10_CD; its tables are RX_CLAIMS, pharmacy_claims."
    ) in result["content"]

    no_age = _database(
        tmp_path / "no_age.duckdb",
        "CREATE TABLE RX_CLAIMS (PATIENT_ID VARCHAR, SERVICE_DATE_DD DATE, NDC_DRUG_NM VARCHAR,"
        " AGE INTEGER);",
    )
    result = await cohorts(no_age, drugs=["HUMIRA"], min_age=65)
    assert result["is_error"] is True
    assert "(DefineCohort reads PATIENT_BIRTH_YEAR)" in result["content"]


async def test_define_cohort_refuses_numbers_where_it_matches_codes(
    tmp_path: Path, cohorts: Define
) -> None:
    """Claims data often codes sex as 1/2 and states as numbers, and keeps birth years as
    text. DefineCohort sent ``upper(PATIENT_GENDER_CD)`` or ``year - PATIENT_BIRTH_YEAR`` to
    the database, and the model got DuckDB's binder error with its list of candidate
    functions instead of what to do."""
    path = _database(
        tmp_path / "coded.duckdb",
        "CREATE TABLE RX_CLAIMS (PATIENT_ID VARCHAR, SERVICE_DATE_DD DATE, NDC_DRUG_NM VARCHAR,"
        " PRESCRIBER_NPI_STATE_CD SMALLINT, PATIENT_GENDER_CD INTEGER,"
        " PATIENT_BIRTH_YEAR VARCHAR);"
        "INSERT INTO RX_CLAIMS VALUES ('p1', DATE '2024-01-01', 'HUMIRA', 6, 2, '1970');",
    )
    result = await cohorts(path, drugs=["HUMIRA"], sex="F")
    assert result["is_error"] is True
    assert result["content"] == (
        "This database's RX_CLAIMS.PATIENT_GENDER_CD holds numbers (INTEGER), not the codes "
        "or names DefineCohort matches for sex; drop sex from the criteria and filter on that "
        "column's codes with the SQL tool."
    )
    result = await cohorts(path, drugs=["HUMIRA"], states=["CA"])
    assert "RX_CLAIMS.PRESCRIBER_NPI_STATE_CD holds numbers (SMALLINT)" in result["content"]
    result = await cohorts(path, drugs=["HUMIRA"], min_age=40)
    assert result["is_error"] is True
    assert result["content"].startswith(
        "This database's RX_CLAIMS.PATIENT_BIRTH_YEAR is VARCHAR, not a year number"
    )
    result = await cohorts(path, drugs=["humira"])  # what the columns allow still works
    assert result["is_error"] is False, result["content"]
    assert result["content"].startswith("Cohort c: 1 patient, 1 qualifying pharmacy claims.")


@pytest.fixture(scope="module")
def big_catalogue(postgres_server: PostgresServer) -> str:  # noqa: F811
    """A PostgreSQL database of 400 tables of 12 columns."""
    dsn = postgres_server.create_database("own_data_catalogue")
    columns = ", ".join(f"col_{i} text" for i in range(12))
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(
            "".join(f"CREATE TABLE table_{t:03d} ({columns});" for t in range(400)).encode()
        )
    return dsn


async def test_a_postgresql_catalogue_is_listed_within_bounds(big_catalogue: str) -> None:
    """On PostgreSQL too every table was listed (400 tables: 120,000 characters)."""
    backend = PostgresBackend(big_catalogue)
    try:
        profile = await profile_backend(backend)
    finally:
        await backend.aclose()
    assert len(profile.tables) == 400
    schema = _schema_section(system_prompt(profile))
    assert len(schema) < MAX_SCHEMA_CHARS * 1.2
    assert "- col_0 text" in schema
    assert "more tables, not described here to keep this list short: " in schema
    assert "table_399" in schema or " more. Look up" in schema


def test_cli_answers_on_a_database_of_its_own_with_the_names_as_listed(
    tmp_path: Path, loopwright_home: Path
) -> None:
    """End to end: ``loopwright healthcare --database FILE`` on a database with quoted
    names, the SQL written with the names as the prompt lists them."""
    path = _database(tmp_path / "odd.duckdb", ODD_NAMES)
    sql = 'SELECT "Fill Date", "group" FROM "Rx Claims", "order" WHERE "1st" = 7 AND id = 1'
    script = tmp_path / "script.json"
    turns = [
        {"call": "SQL", "input": {"sql": sql, "dataset_name": "fills", "description": "d"}},
        "Done.",
    ]
    script.write_text(json.dumps(turns))
    env = cli_env(loopwright_home)
    args = ["healthcare", "--database", str(path), "-m", f"scripted:{script}", "--json", "q"]
    result = run_cli(args, env=env, cwd=tmp_path, timeout=120)
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    (answer,) = [e for e in events if e["type"] == "tool_result"]
    assert answer["is_error"] is False, answer
    csv = loopwright_home / "workspaces" / events[-1]["session_id"] / "fills.csv"
    assert csv.read_text().splitlines() == ["Fill Date,group", "2024-01-01,a"]


@pytest.mark.parametrize("content", [b"", b"id,name\n1,a\n"])
def test_cli_a_file_that_is_no_duckdb_database_is_a_usage_error(
    tmp_path: Path, loopwright_home: Path, content: bytes
) -> None:
    """An empty file, a CSV named .duckdb: one line saying so, exit 2, no traceback."""
    path = tmp_path / "claims.duckdb"
    path.write_bytes(content)
    env = cli_env(loopwright_home)
    args = ["healthcare", "--database", str(path), "-m", "scripted", "q"]
    result = run_cli(args, env=env, cwd=tmp_path, timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("error: ")
    assert str(path) in result.stderr
