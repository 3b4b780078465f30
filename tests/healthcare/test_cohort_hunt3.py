"""``DefineCohort``, third bug hunt: the day of a ``TIMESTAMP WITH TIME ZONE`` claim, text
matched the same way on both sides of the comparison, typed parameters (on the wire and in the
saved definition), and dates no calendar holds (``infinity``, year 12000) - on DuckDB,
PostgreSQL and the BigQuery stand-in, from the same rows."""

from __future__ import annotations

import csv
import datetime as dt
import json
import os
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest

from loopwright.healthcare.cohort import CohortError, Criteria, DefineCohort
from loopwright.sql import DuckDBBackend, SQLBackend, connect
from loopwright.tools.base import BaseTool
from postgres_server import PostgresServer, postgres_server  # noqa: F401

# --- the same rows on every backend -------------------------------------------------------------

_RX = (
    "CLAIM_ID VARCHAR, PATIENT_ID VARCHAR, PATIENT_BIRTH_YEAR INTEGER, PATIENT_GENDER_CD VARCHAR, "
    "PRESCRIBER_NPI_NBR VARCHAR, PRESCRIBER_NPI_STATE_CD VARCHAR, NDC_DRUG_NM VARCHAR, "
    "SERVICE_DATE_DD {date}"
)
_MED = (
    "CLAIM_ID VARCHAR, PATIENT_ID VARCHAR, PATIENT_BIRTH_YEAR INTEGER, PATIENT_GENDER_CD VARCHAR, "
    "PRIMARY_HCP VARCHAR, SERVICE_STATE_CD VARCHAR, condition_label VARCHAR, ICD10_CD VARCHAR, "
    "STATEMENT_FROM_DD {date}"
)
_PROVIDERS = "npi_number VARCHAR, specialty VARCHAR"


def _statements(date_type: str, rx: Sequence[str], med: Sequence[str] = ()) -> list[str]:
    """DDL and inserts that DuckDB and PostgreSQL both run: ``rx``/``med`` are the rows as
    SQL (``('c1', 'p1', 1980, 'F', 'N1', 'CA', 'HUMIRA', DATE '2024-03-01')``)."""
    statements = [
        f"CREATE TABLE RX_CLAIMS ({_RX.format(date=date_type)})",
        f"CREATE TABLE MED_CLAIMS ({_MED.format(date=date_type)})",
        f"CREATE TABLE PROVIDERS_BIO ({_PROVIDERS})",
        "INSERT INTO PROVIDERS_BIO VALUES ('N1', 'Rheumatology'), ('N2', 'ΟΡΘΟΠΑΙΔΙΚΟΣ')",
    ]
    if rx:
        statements.append("INSERT INTO RX_CLAIMS VALUES " + ", ".join(rx))
    if med:
        statements.append("INSERT INTO MED_CLAIMS VALUES " + ", ".join(med))
    return statements


def _duckdb_file(path: Path, statements: Sequence[str]) -> Path:
    with duckdb.connect(str(path)) as connection:
        for statement in statements:
            connection.execute(statement)
    return path


def _postgres_database(
    server: PostgresServer, statements: Sequence[str], *, create: str = "", zone: str = ""
) -> str:
    """A new database holding the rows (``create``: options of CREATE DATABASE, ``zone``:
    its sessions' time zone); its DSN."""
    import psycopg

    name = f"hunt3_{os.getpid()}_{time.monotonic_ns()}"
    server.execute(f"CREATE DATABASE {name} TEMPLATE template0 {create}")
    if zone:
        server.execute(f"ALTER DATABASE {name} SET timezone TO '{zone}'")
    dsn = server.dsn(name)
    with psycopg.connect(dsn, autocommit=True) as connection:
        for statement in statements:
            connection.execute(statement.encode())
    return dsn


class _BigQuery:
    """BigQuery stand-ins, each loaded with a DuckDB file's claims tables."""

    def __init__(self) -> None:
        self.servers: dict[str, Any] = {}

    def __call__(self, database: Path) -> str:
        """A new stand-in holding ``database``'s claims tables as dataset ``claims``: its URL."""
        from sql.bigquery_server import BigQueryServer

        server = BigQueryServer(project="test-project").__enter__()
        url = f"bigquery://test-project/claims?api_endpoint={server.base_url}"
        self.servers[url] = server
        server.load_from("claims", database)
        return url


@pytest.fixture
def bigquery_from() -> Iterator[_BigQuery]:
    stand_ins = _BigQuery()
    yield stand_ins
    for server in stand_ins.servers.values():
        server.__exit__(None, None, None)


@asynccontextmanager
async def _tool(backend: SQLBackend, workspace: Path) -> AsyncIterator[BaseTool]:
    toolset = DefineCohort(backend)
    os.makedirs(workspace, exist_ok=True)
    (tool,) = toolset.bind(str(workspace))
    try:
        yield tool
    finally:
        await toolset.aclose()
        await backend.aclose()


def _opener(where: str | Path) -> Callable[[], SQLBackend]:
    """A new backend on ``where`` (a DuckDB file or a database URL) at each call: each
    cohort's tool closes the one it was given."""
    if isinstance(where, Path):
        return lambda: DuckDBBackend(where)
    return lambda: connect(where)


async def _run(backend: SQLBackend, workspace: Path, criteria: dict[str, Any]) -> dict[str, Any]:
    async with _tool(backend, workspace) as tool:
        return await tool.execute({"name": "c", **criteria})


async def _define(
    backend: SQLBackend, workspace: Path, criteria: dict[str, Any]
) -> tuple[dict[str, Any], list[list[str]], dict[str, Any]]:
    """(tool result, member rows without the header, saved definition) of cohort ``c``."""
    result = await _run(backend, workspace, criteria)
    assert result["is_error"] is False, result["content"]
    rows = list(csv.reader((workspace / "cohorts" / "c.csv").read_text().splitlines()))[1:]
    definition = json.loads((workspace / "cohorts" / "c.json").read_text())
    return result, rows, definition


@pytest.fixture
def local_zone() -> Iterator[Callable[[str], None]]:
    """Set this process's local time zone (``TZ``), which a DuckDB database opened after
    takes as its session's; put back afterwards."""
    before = os.environ.get("TZ")

    def set_zone(zone: str) -> None:
        os.environ["TZ"] = zone
        time.tzset()

    yield set_zone
    if before is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = before
    time.tzset()


# --- 1. the day of a TIMESTAMP WITH TIME ZONE ---------------------------------------------------

#: Claims whose day depends on the time zone it is read in: (patient, instant, born).
_INSTANTS = [
    ("LATE", "2024-03-31 23:30:00+00", 1950),  # UTC Mar 31, Tokyo Apr 1
    ("EARLY", "2024-04-01 02:00:00+00", 1950),  # UTC Apr 1, New York Mar 31
    ("END", "2024-04-30 20:00:00+00", 1950),  # UTC Apr 30, Tokyo May 1
    ("NYEND", "2024-05-01 02:00:00+00", 1950),  # UTC May 1, New York Apr 30
    ("NEWYEAR", "2024-12-31 23:30:00+00", 1980),  # UTC 2024: 44; Tokyo 2025: 45
    ("EVE", "2025-01-01 03:00:00+00", 1981),  # UTC 2025: 44; New York 2024: 43
]
_ZONED = _statements(
    "TIMESTAMPTZ",
    [
        f"('r{n}', '{patient}', {born}, 'F', 'N1', 'CA', 'TZDRUG', TIMESTAMPTZ '{instant}')"
        for n, (patient, instant, born) in enumerate(_INSTANTS)
    ],
    [
        f"('m{n}', '{patient}', {born}, 'F', 'N1', 'CA', 'Rheumatoid arthritis', 'M06.9', "
        f"TIMESTAMPTZ '{instant}')"
        for n, (patient, instant, born) in enumerate(_INSTANTS)
    ],
)


async def _zoned_backends(
    tmp_path: Path,
    postgres_server: PostgresServer,  # noqa: F811
    bigquery_from: _BigQuery,
    local_zone: Callable[[str], None],
) -> dict[str, Callable[[], SQLBackend]]:
    database = _duckdb_file(tmp_path / "zoned.duckdb", _ZONED)
    bigquery = bigquery_from(database)  # BigQuery's sessions are UTC: loaded before the zone
    postgres = _postgres_database(postgres_server, _ZONED, zone="America/New_York")
    local_zone("Asia/Tokyo")  # the DuckDB file is opened in Tokyo time
    return {
        "duckdb": _opener(database),
        "postgres": _opener(postgres),
        "bigquery": _opener(bigquery),
    }


@pytest.mark.parametrize(
    ("criteria", "expected"),
    [
        (
            {"drugs": ["TZDRUG"], "start_date": "2024-04-01", "end_date": "2024-04-30"},
            [["EARLY", "1", "2024-04-01", "2024-04-01"], ["END", "1", "2024-04-30", "2024-04-30"]],
        ),
        (
            {"drugs": ["TZDRUG"], "min_age": 44, "max_age": 44},
            [
                ["EVE", "1", "2025-01-01", "2025-01-01"],
                ["NEWYEAR", "1", "2024-12-31", "2024-12-31"],
            ],
        ),
        (
            {"conditions": ["M06"], "drugs": ["TZDRUG"], "end_date": "2024-03-31"},
            [["LATE", "1", "1", "2024-03-31", "2024-03-31"]],
        ),
    ],
)
async def test_a_zoned_timestamps_day_is_its_utc_day_whatever_the_session_zone(
    tmp_path: Path,
    postgres_server: PostgresServer,  # noqa: F811
    bigquery_from: _BigQuery,
    local_zone: Callable[[str], None],
    criteria: dict[str, Any],
    expected: list[list[str]],
) -> None:
    """The day of a TIMESTAMP WITH TIME ZONE claim was read in the session's time zone:
    DuckDB's (the machine's, here Tokyo), PostgreSQL's (the database's, here New York),
    BigQuery's (UTC): three different cohorts for one date window or age, and first/last
    claim dates a day apart. Now it is the UTC day everywhere, and the definition says so."""
    backends = await _zoned_backends(tmp_path, postgres_server, bigquery_from, local_zone)
    for name, backend in backends.items():
        result, members, definition = await _define(backend(), tmp_path / name, criteria)
        assert members == expected, name
        assert definition["parameters"]["time_zone_1"] == "UTC", name
        assert "UTC" in result["content"], name


async def test_dates_of_zoned_claims_are_their_utc_days_in_the_member_files(
    tmp_path: Path,
    postgres_server: PostgresServer,  # noqa: F811
    bigquery_from: _BigQuery,
    local_zone: Callable[[str], None],
) -> None:
    backends = await _zoned_backends(tmp_path, postgres_server, bigquery_from, local_zone)
    parquet = {}
    for name, backend in backends.items():
        _, members, _ = await _define(backend(), tmp_path / name, {"drugs": ["TZDRUG"]})
        firsts = {row[0]: row[2] for row in members}
        assert firsts == {
            "EARLY": "2024-04-01",
            "END": "2024-04-30",
            "EVE": "2025-01-01",
            "LATE": "2024-03-31",
            "NEWYEAR": "2024-12-31",
            "NYEND": "2024-05-01",
        }, name
        parquet[name] = pq.read_table(tmp_path / name / "cohorts" / "c.parquet")
    assert parquet["postgres"].equals(parquet["duckdb"])
    assert parquet["bigquery"].equals(parquet["duckdb"])


# --- 2. text matched the same way on both sides -------------------------------------------------

_TEXT = _statements(
    "DATE",
    [
        "('t1', 'P_SS', 1980, 'F', 'N1', 'CA', 'STRASSE', DATE '2024-03-01')",
        "('t2', 'P_SZ', 1980, 'F', 'N1', 'CA', 'straße', DATE '2024-03-02')",
        "('t3', 'P_GREEK', 1980, 'F', 'N2', 'CA', 'ΟΔΟΣ', DATE '2024-03-03')",
        "('t4', 'P_TURKISH', 1980, 'F', 'N1', 'CA', 'İLAÇ', DATE '2024-03-04')",
        "('t5', 'P_CAFE', 1980, 'F', 'N1', 'CA', 'CAFÉ-X', DATE '2024-03-05')",
    ],
    [
        "('u1', 'P_GREEK', 1980, 'F', 'N2', 'CA', 'ΛΟΙΜΩΞΗ ΟΔΟΣ', 'A00', DATE '2024-03-03')",
        "('u2', 'P_SZ', 1980, 'F', 'N1', 'CA', 'Straße-Syndrom', 'A01', DATE '2024-03-02')",
    ],
)


async def test_values_that_only_casefold_alike_are_two_values(tmp_path: Path) -> None:
    """Criteria were told apart with Python's casefold (ß is ss) but matched with SQL's
    lower() (ß stays ß): "STRASSE" and "Straße" were one value, so straße's patient was
    left out, and "Straße, never STRASSE" was refused as empty by construction."""
    database = _duckdb_file(tmp_path / "text.duckdb", _TEXT)
    _, members, definition = await _define(
        DuckDBBackend(database), tmp_path / "both", {"drugs": ["STRASSE", "Straße"]}
    )
    assert [row[0] for row in members] == ["P_SS", "P_SZ"]
    assert definition["criteria"]["include"]["drugs"] == ["STRASSE", "Straße"]
    _, members, _ = await _define(
        DuckDBBackend(database),
        tmp_path / "not",
        {"drugs": ["Straße"], "exclude_drugs": ["STRASSE"]},
    )
    assert [row[0] for row in members] == ["P_SZ"]
    # what every database lower-cases alike is still one value, and still refused
    assert Criteria.from_input({"drugs": ["HUMIRA", " humira"]}).drugs == ("HUMIRA",)
    with pytest.raises(CohortError, match="also excluded"):
        Criteria.from_input({"drugs": ["Humira"], "exclude_drugs": ["HUMIRA"]})


#: Criteria written as the data writes them (case and all): each must find its patient
#: wherever lower() maps ΟΔΟΣ to οδος (ICU), İ to i̇ (ICU) or leaves É alone (the C locale).
_AS_WRITTEN: list[tuple[dict[str, Any], list[str]]] = [
    ({"drugs": ["ΟΔΟΣ"]}, ["P_GREEK"]),
    ({"drugs": ["İLAÇ"]}, ["P_TURKISH"]),
    ({"drugs": ["CAFÉ-X"]}, ["P_CAFE"]),
    ({"drugs": ["straße", "ΟΔΟΣ"], "exclude_conditions": ["ΛΟΙΜΩΞΗ ΟΔΟΣ"]}, ["P_SZ"]),
    ({"conditions": ["ΛΟΙΜΩΞΗ ΟΔΟΣ"]}, ["P_GREEK"]),
    ({"specialties": ["ΟΡΘΟΠΑΙΔΙΚΟΣ"]}, ["P_GREEK"]),
]


@pytest.mark.parametrize(
    ("criteria", "expected"), _AS_WRITTEN, ids=lambda c: json.dumps(c, ensure_ascii=False)
)
async def test_a_value_as_the_data_writes_it_matches_whatever_the_databases_lower(
    tmp_path: Path,
    postgres_server: PostgresServer,  # noqa: F811
    bigquery_from: _BigQuery,
    criteria: dict[str, Any],
    expected: list[str],
) -> None:
    """The values were lower-cased in Python (ΟΔΟΣ as οδοσ, İLAÇ as ilaç, CAFÉ-X as café-x)
    and compared with the database's lower() of the column, which is not Python's: on a
    PostgreSQL database with an ICU locale (οδος, i̇laç) or the C locale (cafÉ-x) such a
    drug, condition or specialty found no one and was reported as misspelt. Both sides now
    go through the database's own lower()."""
    database = _duckdb_file(tmp_path / "text.duckdb", _TEXT)
    backends = {"duckdb": _opener(database), "bigquery": _opener(bigquery_from(database))}
    for locale, create in {
        "icu": "LOCALE_PROVIDER icu ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'",
        "c": "LOCALE 'C'",
    }.items():
        backends[f"postgres-{locale}"] = _opener(
            _postgres_database(postgres_server, _TEXT, create=create)
        )
    for name, backend in backends.items():
        result, members, definition = await _define(backend(), tmp_path / name, criteria)
        assert [row[0] for row in members] == expected, name
        assert definition["unmatched_values"] == {}, name
        assert "No claims match" not in result["content"], name


async def test_a_value_the_database_does_not_lower_alike_is_reported_as_it_matched(
    tmp_path: Path,
    postgres_server: PostgresServer,  # noqa: F811
) -> None:
    """Where the database's lower() leaves É as it is (the C locale), 'café-x' finds no
    CAFÉ-X claim: the answer must say so (it matched nothing), on the database's terms."""
    dsn = _postgres_database(postgres_server, _TEXT, create="LOCALE 'C'")
    _, members, definition = await _define(
        connect(dsn), tmp_path / "c", {"drugs": ["café-x", "cafÉ-X"]}
    )
    assert [row[0] for row in members] == ["P_CAFE"]
    assert definition["unmatched_values"] == {"drug": ["café-x"]}


# --- 3. typed parameters, on the wire and in the saved definition -------------------------------

_DATED = [
    "('d1', 'P1', 1980, 'F', 'N1', 'CA', 'HUMIRA', {day} '2024-03-01{time}')",
    "('d2', 'P2', 1990, 'M', 'N1', 'TX', 'HUMIRA', {day} '2024-06-30{time}')",
    "('d3', 'P3', 1970, 'F', 'N1', 'CA', 'ENBREL', {day} '2024-07-01{time}')",
]


@pytest.mark.parametrize(
    ("kind", "time_of_day"),
    [("DATE", ""), ("TIMESTAMP", " 13:00:00"), ("TIMESTAMPTZ", " 13:00:00+00")],
)
async def test_bigquery_gets_dates_as_typed_date_parameters_and_the_definition_keeps_types(
    tmp_path: Path,
    bigquery_from: _BigQuery,
    kind: str,
    time_of_day: str,
) -> None:
    """The saved definition kept each parameter's value only, dates as text: run again as
    saved on BigQuery, they were STRING parameters compared to DATEs. The definition now
    says each parameter's type as the database names it, and the job sends DATE."""
    rows = [row.format(day=kind, time=time_of_day) for row in _DATED]
    database = _duckdb_file(tmp_path / "dated.duckdb", _statements(kind, rows))
    criteria = {
        "drugs": ["HUMIRA", "ENBREL"],
        "start_date": "2024-03-01",
        "end_date": "2024-06-30",
        "min_age": 30,
        "exclude_drugs": ["STELARA"],
    }
    url = bigquery_from(database)
    _, members, definition = await _define(connect(url), tmp_path / "bq", criteria)
    assert [row[0] for row in members] == ["P1", "P2"]
    types = definition["parameter_types"]
    assert types["start_date_1"] == types["end_date_1"] == "DATE"
    assert types["drug_1"] == "STRING"
    assert types["min_age_1"] == types["min_claims_1"] == "INT64"
    assert set(types) == set(definition["parameters"])

    # on the wire: the job's parameters, typed as the definition says
    jobs = bigquery_from.servers[url].job_bodies()
    member_jobs = [j for j in jobs if j["configuration"]["query"]["query"] == definition["sql"]]
    assert member_jobs
    for job in member_jobs:
        sent = {
            p["name"]: p["parameterType"]["type"]
            for p in job["configuration"]["query"]["queryParameters"]
        }
        assert sent == types

    # the definition runs again as saved, with its typed parameters
    again = await _rerun(url, definition)
    assert [row[0] for row in again] == ["P1", "P2"]


async def _rerun(url: str, definition: dict[str, Any]) -> list[tuple[Any, ...]]:
    """The saved SQL, run on BigQuery with the saved parameters typed as saved."""
    from google.cloud import bigquery

    backend = connect(url)
    try:
        config = backend.job_config(dry_run=False)  # type: ignore[attr-defined]
        config.query_parameters = [
            bigquery.ScalarQueryParameter(name, definition["parameter_types"][name], value)
            for name, value in definition["parameters"].items()
        ]
        job = backend.client.query(definition["sql"], config)  # type: ignore[attr-defined]
        return [tuple(row.values()) for row in job.result()]
    finally:
        await backend.aclose()


@pytest.mark.parametrize("dialect", ["duckdb", "postgres"])
async def test_the_definition_names_parameter_types_on_duckdb_and_postgresql_too(
    tmp_path: Path,
    postgres_server: PostgresServer,  # noqa: F811
    dialect: str,
) -> None:
    rows = [row.format(day="DATE", time="") for row in _DATED]
    statements = _statements("DATE", rows)
    backend: SQLBackend = (
        DuckDBBackend(_duckdb_file(tmp_path / "d.duckdb", statements))
        if dialect == "duckdb"
        else connect(_postgres_database(postgres_server, statements))
    )
    _, _, definition = await _define(
        backend, tmp_path / dialect, {"drugs": ["HUMIRA"], "start_date": "2024-03-01"}
    )
    expected = {
        "duckdb": {"drug_1": "VARCHAR", "start_date_1": "DATE", "min_claims_1": "BIGINT"},
        "postgres": {"drug_1": "text", "start_date_1": "date", "min_claims_1": "bigint"},
    }[dialect]
    assert definition["parameter_types"] == expected


# --- 4. dates no calendar holds -----------------------------------------------------------------

_ODD_DAYS = [
    "('i1', 'P_INF', 1980, 'F', 'N1', 'CA', 'HUMIRA', {kind} 'infinity')",
    "('i2', 'P_NEGINF', 1980, 'F', 'N1', 'CA', 'HUMIRA', {kind} '-infinity')",
    "('i3', 'P_FAR', 1980, 'F', 'N1', 'CA', 'HUMIRA', {kind} '12000-01-01')",
    "('i4', 'P_MIXED', 1980, 'F', 'N1', 'CA', 'HUMIRA', {kind} 'infinity')",
    "('i5', 'P_MIXED', 1980, 'F', 'N1', 'CA', 'HUMIRA', {kind} '2024-05-01')",
    "('i6', 'P_OK', 1980, 'F', 'N1', 'CA', 'HUMIRA', {kind} '2024-06-01')",
]


@pytest.mark.parametrize("kind", ["DATE", "TIMESTAMP", "TIMESTAMPTZ"])
async def test_infinite_and_far_dates_count_as_no_date(
    tmp_path: Path,
    postgres_server: PostgresServer,  # noqa: F811
    kind: str,
) -> None:
    """PostgreSQL's 'infinity' (and a year past 9999) failed the whole cohort (psycopg
    cannot make a date of it: "date too large"); DuckDB handed 'infinity' over as
    9999-12-31 (a member's last claim in the year 9999, inside any window from a start
    date) and 12000-01-01 as text, which failed the Parquet file. Such a claim now counts,
    as a claim without a date does: in a cohort without a date window, never inside one, and
    with no first or last date."""
    statements = _statements(kind, [row.format(kind=kind) for row in _ODD_DAYS])
    backends = {
        "duckdb": _opener(_duckdb_file(tmp_path / "odd.duckdb", statements)),
        "postgres": _opener(_postgres_database(postgres_server, statements)),
    }
    for name, backend in backends.items():
        _, members, _ = await _define(backend(), tmp_path / name / "all", {"drugs": ["HUMIRA"]})
        assert members == [
            ["P_FAR", "1", "", ""],
            ["P_INF", "1", "", ""],
            ["P_MIXED", "2", "2024-05-01", "2024-05-01"],
            ["P_NEGINF", "1", "", ""],
            ["P_OK", "1", "2024-06-01", "2024-06-01"],
        ], name
        typed = pq.read_table(tmp_path / name / "all" / "cohorts" / "c.parquet").to_pylist()
        assert typed[2]["last_claim_date"] == dt.date(2024, 5, 1), name
        _, members, _ = await _define(
            backend(), tmp_path / name / "window", {"drugs": ["HUMIRA"], "start_date": "2024-01-01"}
        )
        assert members == [
            ["P_MIXED", "1", "2024-05-01", "2024-05-01"],
            ["P_OK", "1", "2024-06-01", "2024-06-01"],
        ], name
        _, members, _ = await _define(
            backend(), tmp_path / name / "age", {"drugs": ["HUMIRA"], "min_age": 40}
        )
        assert [row[0] for row in members] == ["P_MIXED", "P_OK"], name
        _, members, _ = await _define(
            backend(),
            tmp_path / name / "calendar",
            {"drugs": ["HUMIRA"], "start_date": "0001-01-01", "end_date": "9999-12-31"},
        )
        assert [row[0] for row in members] == ["P_MIXED", "P_OK"], name


@pytest.mark.parametrize("given", ["infinity", "-infinity", " Infinity "])
def test_an_infinite_date_in_the_criteria_says_to_leave_the_bound_out(given: str) -> None:
    with pytest.raises(CohortError, match="leave start_date out for no lower bound"):
        Criteria.from_input({"drugs": ["HUMIRA"], "start_date": given})
    with pytest.raises(CohortError, match="leave end_date out for no upper bound"):
        Criteria.from_input({"drugs": ["HUMIRA"], "end_date": given})


# --- dates kept as ISO text with a time ---------------------------------------------------------

_TIMED_TEXT = _statements(
    "VARCHAR",
    [
        "('s1', 'P1', 1980, 'F', 'N1', 'CA', 'HUMIRA', '2024-03-01 10:00:00')",
        "('s2', 'P2', 1980, 'F', 'N1', 'CA', 'HUMIRA', '2024-03-31T23:30:00-05:00')",
        "('s3', 'P3', 1980, 'F', 'N1', 'CA', 'HUMIRA', '2024-4-1')",
        "('s4', 'P4', 1980, 'F', 'N1', 'CA', 'HUMIRA', '')",
    ],
)


async def test_iso_text_dates_with_a_time_are_read_by_their_day_on_bigquery_too(
    tmp_path: Path,
    postgres_server: PostgresServer,  # noqa: F811
    bigquery_from: _BigQuery,
) -> None:
    """A text date column holding ``2024-03-01 10:00:00`` was cast to DATE as it was:
    DuckDB and PostgreSQL take the leading day, BigQuery casts only ``YYYY-[M]M-[D]D`` text
    and fails the whole query on the rest (the stand-in, DuckDB underneath, does not: what
    BigQuery is sent is checked). The day as written is now read first, on every backend."""
    database = _duckdb_file(tmp_path / "timed.duckdb", _TIMED_TEXT)
    url = bigquery_from(database)
    backends = {
        "duckdb": _opener(database),
        "postgres": _opener(_postgres_database(postgres_server, _TIMED_TEXT)),
        "bigquery": _opener(url),
    }
    criteria = {"drugs": ["HUMIRA"], "end_date": "2024-03-31"}
    for name, backend in backends.items():
        _, members, definition = await _define(backend(), tmp_path / name, criteria)
        assert members == [
            ["P1", "1", "2024-03-01", "2024-03-01"],
            ["P2", "1", "2024-03-31", "2024-03-31"],
        ], name
        assert definition["parameter_types"]["date_part_1"] in {"VARCHAR", "text", "STRING"}
    sent = [
        job["configuration"]["query"]
        for job in bigquery_from.servers[url].job_bodies()
        if "SERVICE_DATE_DD" in job["configuration"]["query"]["query"]
        and "COUNT(*)" in job["configuration"]["query"]["query"]
    ]
    assert sent
    for query in sent:
        assert "CAST(REGEXP_EXTRACT(NULLIF(trim(c.`SERVICE_DATE_DD`)" in query["query"]
        assert "CAST(NULLIF(trim(" not in query["query"]
        types = {p["name"]: p["parameterType"]["type"] for p in query["queryParameters"]}
        assert types["date_part_1"] == "STRING"
