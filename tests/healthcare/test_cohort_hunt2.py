"""``DefineCohort``, second bug hunt: claims tables in schemas whose names need quotes, dates
kept as text or numbers (``03/15/2024``, ``20240315``), value lists that read unambiguously,
SQL that BigQuery accepts, and the dates given in the criteria."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import duckdb
import pytest

from loopwright.healthcare.cohort import (
    BIGQUERY,
    DUCKDB,
    POSTGRES,
    CohortError,
    CohortSchema,
    Criteria,
    DefineCohort,
    build_cohort_query,
)
from loopwright.healthcare.data import SCHEMA
from loopwright.sql import DuckDBBackend, SQLBackend, connect
from loopwright.tools.base import BaseTool
from postgres_server import PostgresServer, postgres_server  # noqa: F401


@asynccontextmanager
async def _tool(backend: SQLBackend, workspace: Path) -> AsyncIterator[BaseTool]:
    """A DefineCohort tool on ``backend`` (closed afterwards), bound to ``workspace``."""
    toolset = DefineCohort(backend)
    os.makedirs(workspace, exist_ok=True)
    (tool,) = toolset.bind(str(workspace))
    try:
        yield tool
    finally:
        await toolset.aclose()
        await backend.aclose()


async def _define(
    backend: SQLBackend, workspace: Path, criteria: dict[str, Any]
) -> tuple[dict[str, Any], str]:
    """(tool result, members CSV) of one cohort named ``c``."""
    async with _tool(backend, workspace) as tool:
        result = await tool.execute({"name": "c", **criteria})
    assert result["is_error"] is False, result["content"]
    return result, (workspace / "cohorts" / "c.csv").read_text()


async def _refused(backend: SQLBackend, workspace: Path, criteria: dict[str, Any]) -> str:
    async with _tool(backend, workspace) as tool:
        result = await tool.execute({"name": "c", **criteria})
    assert result["is_error"] is True, result["content"]
    return str(result["content"])


#: Criteria that read every claims table and column the tool knows.
_EVERYTHING: dict[str, Any] = {
    "drugs": ["HUMIRA", "ENBREL"],
    "conditions": ["Rheumatoid arthritis", "L40"],
    "specialties": ["Rheumatology", "Dermatology"],
    "start_date": "2023-06-01",
    "end_date": "2024-10-31",
    "min_age": 30,
    "sex": "F",
    "exclude_drugs": ["STELARA"],
    "exclude_conditions": ["C50"],
}


# --- a schema whose name needs quotes -----------------------------------------------------------


@pytest.mark.parametrize("schema", ["My Schema", "claims.2024", 'the "real" one'])
async def test_claims_tables_in_a_schema_whose_name_needs_quotes_are_used(
    claims_db: Path, tmp_path: Path, schema: str
) -> None:
    """A table key like ``My Schema.RX_CLAIMS`` was refused for its characters ("no
    RX_CLAIMS table"), though quoting writes any schema's name."""
    database = tmp_path / "schemas.duckdb"
    shutil.copyfile(claims_db, database)
    quoted = '"' + schema.replace('"', '""') + '"'
    with duckdb.connect(str(database)) as connection:
        connection.execute(f"CREATE SCHEMA {quoted}")
        for table in ("RX_CLAIMS", "MED_CLAIMS", "PROVIDERS_BIO"):
            connection.execute(f"CREATE TABLE {quoted}.{table} AS SELECT * FROM main.{table}")
            connection.execute(f"DROP TABLE main.{table}")
    moved, moved_members = await _define(DuckDBBackend(database), tmp_path / "moved", _EVERYTHING)
    here, members = await _define(DuckDBBackend(claims_db), tmp_path / "here", _EVERYTHING)
    assert here["metadata"]["patients"] > 0
    assert moved_members == members
    for key in ("patients", "claims", "claims_by_kind"):
        assert moved["metadata"][key] == here["metadata"][key]
    assert f'FROM {quoted}."RX_CLAIMS" AS c' in moved["metadata"]["sql"]


def test_a_schema_name_is_quoted_whole_and_percent_signs_are_doubled_for_psycopg() -> None:
    assert DUCKDB.quote("claims.2024.RX_CLAIMS") == '"claims.2024"."RX_CLAIMS"'
    assert POSTGRES.quote("50% sample.rx_claims") == '"50%% sample"."rx_claims"'
    assert BIGQUERY.quote("a`b.RX_CLAIMS") == "`a\\`b`.`RX_CLAIMS`"


@pytest.mark.parametrize("schema", ["My Schema", "50% sample"])
async def test_on_postgresql_a_schema_whose_name_needs_quotes_is_used(
    postgres_server: PostgresServer,  # noqa: F811
    claims_db: Path,
    claims_con: duckdb.DuckDBPyConnection,
    tmp_path: Path,
    schema: str,
) -> None:
    """On PostgreSQL too; a ``%`` in the name must reach psycopg doubled, or it reads the
    SQL's ``%`` as the start of a placeholder."""
    import psycopg

    dsn = postgres_server.create_database("hc_schema")
    quoted = '"' + schema + '"'
    rows = claims_con.execute(
        "SELECT PATIENT_ID, NDC_DRUG_NM, CAST(SERVICE_DATE_DD AS VARCHAR) FROM RX_CLAIMS "
        "WHERE NDC_DRUG_NM IN ('HUMIRA', 'ENBREL', 'STELARA')"
    ).fetchall()
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(f"CREATE SCHEMA {quoted}".encode())
        connection.execute(
            f"CREATE TABLE {quoted}.rx_claims (patient_id text, ndc_drug_nm text, "
            "service_date_dd text)".encode()  # text: its dates are read first, a query more
        )
        with connection.cursor().copy(f"COPY {quoted}.rx_claims FROM STDIN".encode()) as copy:
            for row in rows:
                copy.write_row(row)
    criteria = {"drugs": ["HUMIRA", "ENBREL"], "exclude_drugs": ["STELARA"], "min_claims": 2}
    result, members = await _define(connect(dsn), tmp_path / "pg", criteria)
    _, expected = await _define(DuckDBBackend(claims_db), tmp_path / "dd", criteria)
    assert result["metadata"]["patients"] > 0
    assert members == expected
    assert f'FROM {quoted.replace("%", "%%")}."rx_claims" AS c' in result["metadata"]["sql"]


# --- dates kept as text or numbers --------------------------------------------------------------

#: Claims whose dates are blanked in both copies (NULL in the DATE copy, '' in a text one).
_BLANKED = 3


@pytest.fixture(scope="module")
def dated_db(claims_db: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The small database with a few claims' dates missing: the reference."""
    path = tmp_path_factory.mktemp("dated") / "claims.duckdb"
    shutil.copyfile(claims_db, path)
    with duckdb.connect(str(path)) as connection:
        for table, column in (
            ("RX_CLAIMS", "SERVICE_DATE_DD"),
            ("MED_CLAIMS", "STATEMENT_FROM_DD"),
        ):
            connection.execute(
                f"UPDATE {table} SET {column} = NULL WHERE CLAIM_ID IN "
                f"(SELECT CLAIM_ID FROM {table} ORDER BY CLAIM_ID LIMIT {_BLANKED})"
            )
    return path


def _rewritten_dates(source: Path, target: Path, kind: str, expression: str) -> Path:
    """A copy of ``source`` whose claim dates are ``expression`` of ``DAY`` (the date), in a
    column of type ``kind``; dates that are NULL become '' in a text column."""
    shutil.copyfile(source, target)
    with duckdb.connect(str(target)) as connection:
        for table, column in (
            ("RX_CLAIMS", "SERVICE_DATE_DD"),
            ("MED_CLAIMS", "STATEMENT_FROM_DD"),
        ):
            value = expression.replace("DAY", column)
            if kind == "VARCHAR":
                value = f"coalesce({value}, '')"
            connection.execute(
                f"CREATE TABLE new_{table} AS SELECT * REPLACE (CAST({value} AS {kind}) AS "
                f"{column}) FROM {table}"
            )
            connection.execute(f"DROP TABLE {table}")
            connection.execute(f"ALTER TABLE new_{table} RENAME TO {table}")
    return target


_WRITTEN = {
    "month first": ("VARCHAR", "strftime(DAY, '%m/%d/%Y')"),
    "day first": ("VARCHAR", "strftime(DAY, '%d/%m/%Y')"),
    "dotted, day first": ("VARCHAR", "strftime(DAY, '%d.%m.%Y')"),
    "dashed, month first": ("VARCHAR", "strftime(DAY, '%m-%d-%Y')"),
    "yyyymmdd text": ("VARCHAR", "strftime(DAY, '%Y%m%d')"),
    "yyyymmdd integer": ("INTEGER", "CAST(strftime(DAY, '%Y%m%d') AS INTEGER)"),
    "yyyymmdd decimal": ("DECIMAL(8,0)", "CAST(strftime(DAY, '%Y%m%d') AS INTEGER)"),
}


@pytest.mark.parametrize("written", list(_WRITTEN))
async def test_dates_written_as_text_or_numbers_are_read_in_their_format(
    dated_db: Path, tmp_path: Path, written: str
) -> None:
    """The date column was cast to DATE whatever it held: 03/15/2024, 20240315 and the
    number 20240315 failed with the database's own conversion error (and so did an empty
    text date). The same claims give the same cohort whichever way the dates are written."""
    kind, expression = _WRITTEN[written]
    database = _rewritten_dates(dated_db, tmp_path / "written.duckdb", kind, expression)
    result, members = await _define(DuckDBBackend(database), tmp_path / "written", _EVERYTHING)
    reference, expected = await _define(DuckDBBackend(dated_db), tmp_path / "dates", _EVERYTHING)
    assert reference["metadata"]["patients"] > 0
    assert members == expected
    assert result["metadata"]["claims_by_kind"] == reference["metadata"]["claims_by_kind"]
    # no date criteria: still a whole cohort (its first and last dates read too)
    _, all_members = await _define(DuckDBBackend(database), tmp_path / "all", {"drugs": ["HUMIRA"]})
    _, all_expected = await _define(
        DuckDBBackend(dated_db), tmp_path / "all-ref", {"drugs": ["HUMIRA"]}
    )
    assert all_members == all_expected
    assert "strptime" in result["metadata"]["sql"]
    assert "'" not in result["metadata"]["sql"]  # the format is a parameter too


@pytest.mark.parametrize(
    ("kind", "values", "seen"),
    [
        ("VARCHAR", ["03/04/2024", "04/01/2024", "01/01/2024"], "dates like '03/04/2024' that "
         "read as month/day/year and as day/month/year alike (no day is past the 12th)"),
        ("VARCHAR", ["2024-03-15", "04/01/2024"], "dates written in more than one way "
         "('2024-03-15' and '04/01/2024')"),
        ("VARCHAR", ["Mar 15 2024"], "text dates like 'Mar 15 2024', in none of the formats "
         "DefineCohort reads (YYYY-MM-DD, MM/DD/YYYY, DD/MM/YYYY (with /, - or .) and "
         "YYYYMMDD)"),
        ("VARCHAR", ["03/15/24"], "text dates like '03/15/24', in none of the formats "
         "DefineCohort reads (YYYY-MM-DD, MM/DD/YYYY, DD/MM/YYYY (with /, - or .) and "
         "YYYYMMDD)"),
        ("VARCHAR", ["13/01/2024", "01/13/2024"], "dates like '13/01/2024' with days first in "
         "some and months first in others"),
        ("VARCHAR", ["02/30/2024", "12/31/2024"], "'02/30/2024', no date in the format "
         "%m/%d/%Y of its other values"),
        ("INTEGER", [45366, 45400], "numbers like 45366, not YYYYMMDD dates"),
        ("DOUBLE", [20240315.5], "numbers like 20240315.5, not YYYYMMDD dates"),
    ],
)  # fmt: skip
async def test_dates_that_cannot_be_read_are_refused_in_one_clear_sentence(
    tmp_path: Path, kind: str, values: list[Any], seen: str
) -> None:
    database = tmp_path / "odd.duckdb"
    with duckdb.connect(str(database)) as connection:
        connection.execute(
            f"CREATE TABLE RX_CLAIMS (PATIENT_ID VARCHAR, SERVICE_DATE_DD {kind}, "
            "NDC_DRUG_NM VARCHAR)"
        )
        connection.executemany(
            "INSERT INTO RX_CLAIMS VALUES (?, ?, 'HUMIRA')",
            [[f"P{i}", v] for i, v in enumerate(values)],
        )
    message = await _refused(DuckDBBackend(database), tmp_path / "ws", {"drugs": ["HUMIRA"]})
    assert message == (
        f"This database's RX_CLAIMS.SERVICE_DATE_DD holds {seen}: DefineCohort cannot read "
        "those as dates, so define the cohort with the SQL tool and convert them there as the "
        "data writes them."
    )
    assert "Conversion" not in message
    assert not (tmp_path / "ws" / "cohorts").exists()


async def test_on_postgresql_dates_written_as_text_or_numbers_are_read_too(
    postgres_server: PostgresServer,  # noqa: F811
    claims_con: duckdb.DuckDBPyConnection,
    dated_db: Path,
    tmp_path: Path,
) -> None:
    """PostgreSQL refuses ``'03/15/2024'::date`` in the default DateStyle and has no cast
    from integer to date: both failed there."""
    import psycopg

    dsn = postgres_server.create_database("hc_dates")
    with duckdb.connect(str(dated_db), read_only=True) as source:
        rx = source.execute(
            "SELECT PATIENT_ID, PATIENT_BIRTH_YEAR, NDC_DRUG_NM, "
            "coalesce(strftime(SERVICE_DATE_DD, '%m/%d/%Y'), '') FROM RX_CLAIMS"
        ).fetchall()
        med = source.execute(
            "SELECT PATIENT_ID, PATIENT_BIRTH_YEAR, condition_label, ICD10_CD, "
            "CAST(strftime(STATEMENT_FROM_DD, '%Y%m%d') AS INTEGER) FROM MED_CLAIMS"
        ).fetchall()
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(
            b"CREATE TABLE rx_claims (patient_id text, patient_birth_year integer, "
            b"ndc_drug_nm text, service_date_dd varchar(10))"
        )
        connection.execute(
            b"CREATE TABLE med_claims (patient_id text, patient_birth_year integer, "
            b"condition_label text, icd10_cd text, statement_from_dd integer)"
        )
        for table, rows in (("rx_claims", rx), ("med_claims", med)):
            with connection.cursor().copy(f"COPY {table} FROM STDIN".encode()) as copy:
                for row in rows:
                    copy.write_row(row)
    criteria = {
        "drugs": ["HUMIRA", "ENBREL"],
        "conditions": ["M06", "Psoriatic arthritis"],
        "start_date": "2023-06-01",
        "end_date": "2024-10-31",
        "min_age": 30,
    }
    result, members = await _define(connect(dsn), tmp_path / "pg", criteria)
    reference, expected = await _define(DuckDBBackend(dated_db), tmp_path / "dd", criteria)
    assert reference["metadata"]["patients"] > 0
    assert members == expected
    assert result["metadata"]["claims_by_kind"] == reference["metadata"]["claims_by_kind"]
    assert "to_date(" in result["metadata"]["sql"]


@pytest.mark.parametrize("written", ["month first", "yyyymmdd integer"])
async def test_on_bigquery_dates_written_as_text_or_numbers_are_read_too(
    dated_db: Path, tmp_path: Path, written: str
) -> None:
    from sql.bigquery_server import BigQueryServer

    kind, expression = _WRITTEN[written]
    database = _rewritten_dates(dated_db, tmp_path / "written.duckdb", kind, expression)
    with BigQueryServer(project="test-project") as server:
        server.load_from("claims", database)
        url = f"bigquery://test-project/claims?api_endpoint={server.base_url}"
        result, members = await _define(connect(url), tmp_path / "bq", _EVERYTHING)
    reference, expected = await _define(DuckDBBackend(dated_db), tmp_path / "dd", _EVERYTHING)
    assert reference["metadata"]["patients"] > 0
    assert members == expected
    assert result["metadata"]["claims_by_kind"] == reference["metadata"]["claims_by_kind"]
    assert "PARSE_DATE(@date_format_1, " in result["metadata"]["sql"]


# --- value lists that read one way -------------------------------------------------------------


def test_values_holding_a_comma_are_quoted_in_the_description() -> None:
    """ "conditions Diabetes, type 2, Obesity" read as three conditions (or two of several
    splits); a list whose values hold a separator is written with each value quoted."""
    criteria = Criteria.from_input(
        {
            "conditions": ["Diabetes, type 2", "Obesity"],
            "drugs": ["HUMIRA", "ENBREL"],
            "exclude_drugs": ["ACME; extra strength", "O'Brien's tonic"],
        }
    )
    text = criteria.describe()
    assert "conditions 'Diabetes, type 2', 'Obesity';" in text
    assert "drugs HUMIRA, ENBREL;" in text  # nothing to misread: as it was
    assert text.endswith(
        """Exclude patients ever on drugs 'ACME; extra strength', "O'Brien's tonic"."""
    )


async def test_the_tools_answer_lists_such_values_quoted(claims_db: Path, tmp_path: Path) -> None:
    result, _ = await _define(
        DuckDBBackend(claims_db),
        tmp_path / "ws",
        {"conditions": ["Type 2 diabetes", "Diabetes, type 2"]},
    )
    assert (
        "Criteria: include conditions 'Type 2 diabetes', 'Diabetes, type 2';" in result["content"]
    )
    assert "No claims match condition 'Diabetes, type 2'" in result["content"]


# --- SQL that every backend takes ---------------------------------------------------------------


def test_both_kinds_of_exclusion_are_joined_with_a_union_bigquery_takes() -> None:
    """BigQuery has no bare UNION (it wants UNION ALL or UNION DISTINCT): excluding drugs
    and conditions together was a syntax error there."""
    criteria = Criteria.from_input(
        {"drugs": ["HUMIRA"], "exclude_drugs": ["ENBREL"], "exclude_conditions": ["C50"]}
    )
    for dialect in (BIGQUERY, DUCKDB, POSTGRES):
        sql = build_cohort_query(criteria, CohortSchema.from_schema(SCHEMA), dialect).sql
        assert "UNION" in sql
        assert re.search(r"\bUNION\b(?!\s+(ALL|DISTINCT)\b)", sql) is None, dialect.name


async def test_both_kinds_of_exclusion_match_a_direct_query(
    claims_db: Path, claims_con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    criteria = {"drugs": ["HUMIRA"], "exclude_drugs": ["ENBREL"], "exclude_conditions": ["M06"]}
    result, _ = await _define(DuckDBBackend(claims_db), tmp_path / "ws", criteria)
    row = claims_con.execute(
        """SELECT COUNT(DISTINCT PATIENT_ID), COUNT(*) FROM RX_CLAIMS
           WHERE NDC_DRUG_NM = 'HUMIRA'
             AND PATIENT_ID NOT IN (SELECT PATIENT_ID FROM RX_CLAIMS WHERE NDC_DRUG_NM = 'ENBREL')
             AND PATIENT_ID NOT IN (SELECT PATIENT_ID FROM MED_CLAIMS WHERE ICD10_CD LIKE 'M06%')"""
    ).fetchone()
    assert row is not None
    assert row[0] > 0
    assert (result["metadata"]["patients"], result["metadata"]["claims"]) == row


# --- patient ids kept as text in one table and numbers in another -----------------------------


async def test_patient_ids_of_different_types_are_matched_as_text(tmp_path: Path) -> None:
    """Pharmacy ids as text, medical ids as numbers: DuckDB compared them by casting the text
    to a number, so an id like 'A9' failed the whole query (and '00123' was patient 123)."""
    database = tmp_path / "ids.duckdb"
    with duckdb.connect(str(database)) as connection:
        connection.execute(
            "CREATE TABLE RX_CLAIMS (PATIENT_ID VARCHAR, SERVICE_DATE_DD DATE, NDC_DRUG_NM VARCHAR)"
        )
        connection.execute(
            "INSERT INTO RX_CLAIMS VALUES ('00123', '2024-01-01', 'HUMIRA'), "
            "('A9', '2024-01-02', 'HUMIRA'), ('7', '2024-01-03', 'HUMIRA')"
        )
        connection.execute(
            "CREATE TABLE MED_CLAIMS (PATIENT_ID BIGINT, STATEMENT_FROM_DD DATE, ICD10_CD VARCHAR)"
        )
        connection.execute(
            "INSERT INTO MED_CLAIMS VALUES (123, '2024-02-01', 'M06.9'), (7, '2024-02-02', 'M06.9')"
        )
    both, members = await _define(
        DuckDBBackend(database), tmp_path / "both", {"drugs": ["HUMIRA"], "conditions": ["M06"]}
    )
    assert members.splitlines()[1:] == ["7,1,1,2024-01-03,2024-02-02"]
    assert 'CAST(c."PATIENT_ID" AS VARCHAR) AS patient_id' in both["metadata"]["sql"]
    _, kept = await _define(
        DuckDBBackend(database),
        tmp_path / "excluded",
        {"drugs": ["HUMIRA"], "exclude_conditions": ["M06"]},
    )
    assert [line.split(",")[0] for line in kept.splitlines()[1:]] == ["00123", "A9"]
    # the guide's schema, one type throughout: the ids are selected as they are
    same = build_cohort_query(
        Criteria.from_input({"drugs": ["HUMIRA"], "exclude_conditions": ["M06"]}),
        CohortSchema.from_schema(SCHEMA),
    )
    assert "CAST(" not in same.sql


# --- the dates in the criteria ------------------------------------------------------------------


def test_a_datetime_given_for_a_date_is_its_day() -> None:
    """A ``datetime`` (a ``date`` subclass) was kept as it was: bound as a timestamp, a
    start at 15:00 dropped that day's claims, and the definition saved a time."""
    criteria = Criteria.from_input(
        {
            "drugs": ["HUMIRA"],
            "start_date": dt.datetime(2024, 3, 1, 15),
            "end_date": dt.datetime(2024, 3, 31, 9),
        }
    )
    assert (criteria.start_date, criteria.end_date) == (dt.date(2024, 3, 1), dt.date(2024, 3, 31))
    assert type(criteria.start_date) is dt.date
    assert criteria.to_dict()["include"]["start_date"] == "2024-03-01"


async def test_a_datetime_start_keeps_that_days_claims(
    claims_db: Path, claims_con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    backend = DuckDBBackend(claims_db)
    async with _tool(backend, tmp_path / "ws") as tool:
        criteria = Criteria.from_input(
            {"drugs": ["HUMIRA"], "start_date": dt.datetime(2024, 3, 1, 15)}
        )
        result = await tool.define("d", criteria)  # type: ignore[attr-defined]
    (expected,) = claims_con.execute(
        "SELECT COUNT(*) FROM RX_CLAIMS "
        "WHERE NDC_DRUG_NM = 'HUMIRA' AND SERVICE_DATE_DD >= DATE '2024-03-01'"
    ).fetchone() or (0,)
    assert result.total_claims == expected > 0
    definition = json.loads((tmp_path / "ws" / "cohorts" / "d.json").read_text())
    assert definition["parameters"]["start_date_1"] == "2024-03-01"


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("2023-02-29", "start_date '2023-02-29' is not a date (day is out of range for month)"),
        ("2024-13-01", "start_date '2024-13-01' is not a date (month must be in 1..12)"),
    ],
)
def test_a_date_written_right_but_not_on_the_calendar_says_so(given: str, message: str) -> None:
    """ "2023-02-29 is not a date; write it as YYYY-MM-DD" told to write it as it was written."""
    with pytest.raises(CohortError, match=re.escape(message)):
        Criteria.from_input({"drugs": ["HUMIRA"], "start_date": given})
    leap = Criteria.from_input({"drugs": ["HUMIRA"], "start_date": "2024-02-29"})
    assert leap.start_date == dt.date(2024, 2, 29)
