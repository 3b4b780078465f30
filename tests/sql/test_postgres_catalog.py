"""What the PostgreSQL backend says the database holds: the tables a role can really read,
each once, named as SQL must write them, with the types of the result's columns by name."""

from __future__ import annotations

import itertools
import os
from collections.abc import AsyncIterator
from pathlib import Path

import psycopg
import pytest

from loopwright.sql import PostgresBackend
from loopwright.tools.sql import SQLTool
from postgres_server import PostgresServer

SETUP = """
CREATE SCHEMA claims;
CREATE TABLE claims."RX_CLAIMS" ("NDC_DRUG_NM" text, "PATIENT_ID" text);
INSERT INTO claims."RX_CLAIMS" VALUES ('HUMIRA', 'P1');
CREATE TABLE public.providers_bio (npi_number text, specialty text, home_address text);
CREATE TABLE public."Order" ("user" text, plain_col int);
CREATE SCHEMA restricted;
CREATE TABLE restricted.notes (note text);
CREATE TABLE public.med_claims (claim_id text, service_date date)
    PARTITION BY RANGE (service_date);
CREATE TABLE public.med_claims_2023 PARTITION OF public.med_claims
    FOR VALUES FROM ('2023-01-01') TO ('2024-01-01');
CREATE TABLE public.med_claims_2024 PARTITION OF public.med_claims
    FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
CREATE TYPE payer AS ENUM ('Commercial', 'Medicare');
CREATE DOMAIN npi AS text CHECK (VALUE ~ '^[0-9]{10}$');
CREATE TABLE public.payers (kind payer, kinds payer[], prescriber npi);
INSERT INTO public.payers VALUES ('Medicare', '{Commercial,Medicare}', '9123456789');
"""

_roles = itertools.count(1)


@pytest.fixture(scope="module")
def dsn(postgres_server: PostgresServer) -> str:
    dsn = postgres_server.create_database("pgcatalog")
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(SETUP.encode())
    return dsn


@pytest.fixture
async def analyst(postgres_server: PostgresServer, dsn: str) -> AsyncIterator[PostgresBackend]:
    """A role that may read: claims."RX_CLAIMS", providers_bio's columns but the address,
    restricted.notes (but not use its schema), the partitioned med_claims (not its
    partitions one by one)."""
    role = f"analyst_{os.getpid()}_{next(_roles)}"
    database = dsn.rsplit("/", 1)[1].split("?")[0]
    postgres_server.execute(
        f"CREATE ROLE {role} LOGIN; "
        f"GRANT USAGE ON SCHEMA claims TO {role}; "
        f'GRANT SELECT ON claims."RX_CLAIMS" TO {role}; '
        f"GRANT SELECT (npi_number, specialty) ON public.providers_bio TO {role}; "
        f"GRANT SELECT ON restricted.notes TO {role}; "
        f"GRANT SELECT ON public.med_claims TO {role}; ",
        database,
    )
    backend = PostgresBackend(postgres_server.dsn(database, user=role))
    yield backend
    await backend.aclose()


async def test_a_table_in_a_schema_the_role_cannot_use_is_not_listed(
    analyst: PostgresBackend, workspace: Path
) -> None:
    """restricted.notes was listed (SELECT was granted on it) although every query of it
    fails with "permission denied for schema restricted"."""
    schema = await analyst.schema()
    assert "restricted.notes" not in schema
    assert "claims.RX_CLAIMS" in schema


async def test_a_table_readable_column_by_column_lists_those_columns(
    analyst: PostgresBackend, workspace: Path
) -> None:
    """Column grants (the way a DBA keeps addresses from analysts) hid the whole table."""
    schema = await analyst.schema()
    assert schema["providers_bio"] == [("npi_number", "text"), ("specialty", "text")]
    result = await analyst.query(
        "SELECT npi_number, specialty FROM providers_bio", workspace / "p.csv"
    )
    assert result.row_count == 0


async def test_a_partitioned_table_is_listed_once(dsn: str) -> None:
    """Each partition was listed as a table of its own, beside the partitioned table: a
    prompt of dozens of monthly tables, and queries of one partition that miss the rest."""
    backend = PostgresBackend(dsn)
    try:
        schema = await backend.schema()
    finally:
        await backend.aclose()
    assert "med_claims" in schema
    assert [t for t in schema if t.startswith("med_claims_")] == []


async def test_table_names_are_given_as_sql_must_write_them(dsn: str) -> None:
    """The SQL tool lists the tables when a query names one that does not exist: a name
    with capitals (or a keyword) must be quoted there, or the model's next query fails the
    same way (``claims.RX_CLAIMS`` is read as claims.rx_claims)."""
    backend = PostgresBackend(dsn)
    try:
        tables = await backend.tables()
    finally:
        await backend.aclose()
    assert 'claims."RX_CLAIMS"' in tables
    assert '"Order"' in tables
    assert "providers_bio" in tables
    assert "claims.RX_CLAIMS" not in tables


async def test_enum_and_domain_columns_are_typed_by_name(dsn: str, workspace: Path) -> None:
    """An enum's type was shown as its OID (``kind (16461)``), meaningless to the model."""
    tool = SQLTool(workspace, backend=dsn)
    try:
        result = await tool.execute(
            {"sql": "SELECT * FROM payers", "dataset_name": "p", "description": "payers"}
        )
    finally:
        await tool.aclose()
    assert result["is_error"] is False, result["content"]
    assert "Columns: kind (payer), kinds (payer[]), prescriber (text)" in str(result["content"])
    assert '| Medicare | ["Commercial", "Medicare"] | 9123456789 |' in str(result["content"])
