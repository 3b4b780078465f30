"""``DefineCohort`` on DuckDB, PostgreSQL and BigQuery: the same data and criteria give the
same members (CSV and typed Parquet), counts and saved criteria on every backend, including
the data's odd corners (claims without a patient id or a date, mixed-case ids, accented names,
a diagnosis code stored without its dot) and a PostgreSQL database whose collation is a
language's rather than code point order."""

from __future__ import annotations

import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import duckdb
import pyarrow.parquet as pq
import pytest

from loopwright.healthcare.cohort import (
    CohortSchema,
    Criteria,
    DefineCohort,
    build_probes,
    cohort_runner,
)
from loopwright.healthcare.data import TABLES, build_database
from loopwright.sql import DuckDBBackend, SQLBackend, connect
from postgres_server import PostgresServer, postgres_server  # noqa: F401

#: Rows added to the generated data: claims without a patient id, without a date, mixed-case
#: and accented ids and names (an en-US collation sorts these ids differently).
_EDGE_RX = """
INSERT INTO RX_CLAIMS (CLAIM_ID, PATIENT_ID, PATIENT_BIRTH_YEAR, PATIENT_GENDER_CD,
    PRESCRIBER_NPI_NBR, PRESCRIBER_NPI_STATE_CD, NDC_DRUG_NM, SERVICE_DATE_DD) VALUES
 ('E1', NULL, 1970, 'F', NULL, 'CA', 'HUMIRA', DATE '2024-03-01'),
 ('E2', NULL, 1970, 'F', NULL, 'CA', 'HUMIRA', DATE '2024-03-02'),
 ('E3', 'pt-lower', 1980, 'f', NULL, 'ca', 'Humira', DATE '2024-04-01'),
 ('E4', 'PT_UPPER', 1980, 'M', NULL, 'Tx', 'humira', NULL),
 ('E5', 'Zed', NULL, NULL, NULL, NULL, 'HUMIRA', DATE '2024-05-01'),
 ('E6', 'éclair', 1990, 'F', NULL, 'NY', 'CAFÉ-X', DATE '2024-06-01'),
 ('E7', 'ÉCLAIR2', 1990, 'F', NULL, 'NY', 'café-x', DATE '2024-06-02'),
 ('E8', 'PTNODATE', 1960, 'F', NULL, 'CA', 'HUMIRA', NULL)
"""
_EDGE_MED = """
INSERT INTO MED_CLAIMS (CLAIM_ID, PATIENT_ID, PATIENT_BIRTH_YEAR, PATIENT_GENDER_CD,
    PRIMARY_HCP, SERVICE_STATE_CD, condition_label, ICD10_CD, STATEMENT_FROM_DD) VALUES
 ('M1', NULL, 1970, 'F', NULL, 'CA', 'Rheumatoid arthritis', 'M06.9', DATE '2024-03-01'),
 ('M2', 'PTNODATE', 1960, 'F', NULL, 'CA', 'Rheumatoid arthritis', 'm06.9', DATE '2024-07-01'),
 ('M3', 'éclair', 1990, 'F', NULL, 'NY', 'SJÖGREN SYNDROME', 'M35.00', DATE '2024-06-01'),
 ('M4', 'Zed', NULL, NULL, NULL, NULL, 'Rheumatoid arthritis', NULL, NULL),
 ('M5', 'NODOT', 1975, 'F', NULL, 'TX', 'Type 2 diabetes', 'E119', DATE '2024-08-01')
"""


@pytest.fixture(scope="module")
def edge_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2,000-rx-claim database with the odd rows above."""
    path = tmp_path_factory.mktemp("edge") / "claims.duckdb"
    build_database(path, rx_claims=2_000, seed=11)
    with duckdb.connect(str(path)) as connection:
        connection.execute(_EDGE_RX)
        connection.execute(_EDGE_MED)
    return path


def _pg_type(kind: str) -> str:
    if kind.startswith("DECIMAL"):
        return kind.replace("DECIMAL", "numeric")
    return {"VARCHAR": "text", "SMALLINT": "smallint", "INTEGER": "integer"}.get(kind, kind)


@pytest.fixture(scope="module")
def edge_postgres(edge_db: Path, postgres_server: PostgresServer) -> str:  # noqa: F811
    """The same data in PostgreSQL (lower-case names, the design guide's types), in a
    database that sorts text as en-US does (ICU), as production servers commonly do."""
    import psycopg

    name = f"cohort_icu_{os.getpid()}"
    postgres_server.execute(
        f"CREATE DATABASE {name} TEMPLATE template0 LOCALE_PROVIDER icu ICU_LOCALE 'en-US' "
        "LOCALE 'C.UTF-8'"
    )
    dsn = postgres_server.dsn(name)
    with (
        duckdb.connect(str(edge_db), read_only=True) as source,
        psycopg.connect(dsn, autocommit=True) as target,
    ):
        for table, columns in TABLES.items():
            names = [c.name.lower() for c in columns]
            types = [_pg_type(c.type) for c in columns]
            spec = ", ".join(f"{n} {t}" for n, t in zip(names, types, strict=True))
            target.execute(f"CREATE TABLE {table.lower()} ({spec})".encode())
            rows = source.execute(f"SELECT {', '.join(c.name for c in columns)} FROM {table}")
            with target.cursor().copy(f"COPY {table.lower()} FROM STDIN".encode()) as copy:
                for row in rows.fetchall():
                    copy.write_row(row)
    return dsn


@pytest.fixture(scope="module")
def edge_bigquery(edge_db: Path) -> Iterator[str]:
    """The same data on the BigQuery stand-in, as dataset ``claims``: its URL."""
    from sql.bigquery_server import BigQueryServer

    with BigQueryServer(project="test-project") as server:
        server.load_from("claims", edge_db)
        yield f"bigquery://test-project/claims?api_endpoint={server.base_url}"


@pytest.fixture
async def backends(
    edge_db: Path, edge_postgres: str, edge_bigquery: str
) -> AsyncIterator[dict[str, SQLBackend]]:
    opened: dict[str, SQLBackend] = {
        "duckdb": DuckDBBackend(edge_db),
        "postgres": connect(edge_postgres),
        "bigquery": connect(edge_bigquery),
    }
    yield opened
    for backend in opened.values():
        await backend.aclose()


async def _define(
    backend: SQLBackend, workspace: Path, criteria: dict[str, Any]
) -> tuple[dict[str, Any], str, dict[str, Any]]:
    """(tool result, members CSV, definition) of one cohort."""
    toolset = DefineCohort(backend)
    os.makedirs(workspace)
    (tool,) = toolset.bind(str(workspace))
    try:
        result = await tool.execute({"name": "c", **criteria})
    finally:
        await toolset.aclose()
    assert result["is_error"] is False, result["content"]
    members = (workspace / "cohorts" / "c.csv").read_text()
    definition = json.loads((workspace / "cohorts" / "c.json").read_text())
    return result, members, definition


_CRITERIA: list[dict[str, Any]] = [
    {"drugs": ["HUMIRA"]},
    {"drugs": [" humira ", "Humira"], "sex": "female"},
    {"drugs": ["HUMIRA"], "states": ["california", "tx"]},
    {"drugs": ["Café-X"]},
    {"conditions": ["sjögren syndrome"]},
    {"conditions": ["Rheumatoid arthritis"]},
    {"conditions": ["m06"], "exclude_drugs": ["café-x"]},
    {"drugs": ["HUMIRA"], "conditions": ["Rheumatoid arthritis", "L40"]},
    {"drugs": ["HUMIRA"], "conditions": ["M06"], "min_claims": 1},
    {"drugs": ["HUMIRA", "ENBREL"], "exclude_drugs": ["HUMIRA"]},
    {"drugs": ["HUMIRA"], "exclude_conditions": ["M06", "psoriatic arthritis"]},
    {"states": ["NY"], "exclude_conditions": ["SJÖGREN SYNDROME"]},
    {"start_date": "2024-12-31"},
    {"end_date": "2023-01-01"},
    {"start_date": "2024-02-29", "end_date": "2024-02-29"},
    {"start_date": "2025-01-01"},
    {"min_age": 40, "max_age": 40},
    {"min_age": 0, "max_age": 130, "sex": "M"},
    {"specialties": ["rheumatology", "DERMATOLOGY"], "min_age": 30},
    {"drugs": ["OZEMPIC"], "conditions": ["E11"], "specialties": ["Endocrinology"]},
    {"conditions": ["I10"], "start_date": "2024-01-01", "exclude_conditions": ["E11"]},
    {"drugs": ["NO SUCH DRUG"], "states": ["ZZ"]},
    {"conditions": ["E11.9"], "sex": "F"},
    {"conditions": ["e119", "I48.91"], "exclude_conditions": ["E1190"]},
]


@pytest.mark.parametrize("criteria", _CRITERIA, ids=lambda c: json.dumps(c, ensure_ascii=False))
async def test_the_same_criteria_give_the_same_cohort_on_every_backend(
    backends: dict[str, SQLBackend], tmp_path: Path, criteria: dict[str, Any]
) -> None:
    """Claims without a patient id made a member row with an empty id (counted as a patient;
    first on BigQuery, last elsewhere); BigQuery's LEAST/GREATEST lost a drug-and-condition
    member's first and last dates when one side had none; PostgreSQL's collation reordered
    the member list."""
    outcomes = {
        name: await _define(backend, tmp_path / name, criteria)
        for name, backend in backends.items()
    }
    result, members, definition = outcomes["duckdb"]
    assert "\n," not in members  # no member without an id
    typed = pq.read_table(tmp_path / "duckdb" / "cohorts" / "c.parquet")
    assert typed.num_rows == result["metadata"]["patients"]
    for name, (other, other_members, other_definition) in outcomes.items():
        assert other_members == members, name
        assert pq.read_table(tmp_path / name / "cohorts" / "c.parquet").equals(typed), name
        for key in ("patients", "claims", "claims_by_kind", "parameters"):
            assert other["metadata"][key] == result["metadata"][key], (name, key)
        for key in ("criteria", "counts", "unmatched_values", "parameters"):
            assert other_definition[key] == definition[key], (name, key)


async def test_a_claim_without_a_patient_id_makes_no_member(
    backends: dict[str, SQLBackend], tmp_path: Path, edge_db: Path
) -> None:
    with duckdb.connect(str(edge_db), read_only=True) as connection:
        expected = connection.execute(
            "SELECT COUNT(DISTINCT PATIENT_ID), COUNT(PATIENT_ID) FROM RX_CLAIMS "
            "WHERE lower(NDC_DRUG_NM) = 'humira'"
        ).fetchone()
    assert expected is not None
    for name, backend in backends.items():
        result, members, _ = await _define(backend, tmp_path / name, {"drugs": ["HUMIRA"]})
        lines = members.splitlines()[1:]
        assert (result["metadata"]["patients"], result["metadata"]["claims"]) == expected, name
        assert len(lines) == expected[0]
        assert all(not line.startswith(",") for line in lines), name


async def test_first_and_last_dates_skip_a_side_without_dates(
    backends: dict[str, SQLBackend], tmp_path: Path
) -> None:
    """PTNODATE's only HUMIRA fill has no date, its RA claim has one: on BigQuery, whose
    LEAST and GREATEST are NULL when any argument is, both dates came out empty."""
    for name, backend in backends.items():
        _, members, _ = await _define(
            backend, tmp_path / name, {"drugs": ["HUMIRA"], "conditions": ["M06"]}
        )
        assert "PTNODATE,1,1,2024-07-01,2024-07-01" in members.splitlines(), name


async def test_members_are_in_code_point_order_whatever_the_collation(
    backends: dict[str, SQLBackend], tmp_path: Path
) -> None:
    """The en-US database sorted PT_UPPER before pt-lower before PT0...: a member file
    that differed from DuckDB's and BigQuery's for the same data."""
    for name, backend in backends.items():
        _, members, _ = await _define(backend, tmp_path / name, {"drugs": ["HUMIRA"]})
        ids = [line.split(",")[0] for line in members.splitlines()[1:]]
        assert ids == sorted(ids), name
        assert ids[-4:] == ["PTNODATE", "PT_UPPER", "Zed", "pt-lower"], name


async def test_codes_match_with_or_without_the_dot_on_every_backend(
    backends: dict[str, SQLBackend], tmp_path: Path
) -> None:
    """NODOT's diabetes claim is stored as E119, the generated ones as E11.9: E11.9 missed
    NODOT, and E119 (taken for a condition label) found no one."""
    for name, backend in backends.items():
        members = {}
        for code in ("E11.9", "E119"):
            _, members[code], definition = await _define(
                backend, tmp_path / name / code, {"conditions": [code]}
            )
            assert definition["unmatched_values"] == {}, (name, code)
        assert members["E11.9"] == members["E119"], name
        lines = members["E11.9"].splitlines()[1:]
        assert "NODOT,1,2024-08-01,2024-08-01" in lines, name
        assert len(lines) > 1, name


async def test_the_codes_of_a_sex_column_are_listed_on_every_backend(
    backends: dict[str, SQLBackend],
) -> None:
    """The query listing what a sex column holds (run when the sex asked for matches
    nothing) has no parameters and a LIMIT: it runs on each backend, with the same answer."""
    listed = {}
    for name, backend in backends.items():
        runner = cohort_runner(backend)
        try:
            schema = CohortSchema.from_schema(await runner.schema())
            probes = build_probes(Criteria.from_input({"sex": "F"}), schema, runner.dialect)
            (probe,) = [p for p in probes if p.criterion == "sex"]
            assert probe.listing is not None
            rows = await runner.fetch(probe.listing, {}, 30)
        finally:
            await runner.aclose()
        listed[name] = sorted(str(row[0]) for row in rows)
    assert listed["duckdb"] == ["F", "M", "f"]
    assert listed["postgres"] == listed["bigquery"] == listed["duckdb"]
