"""The research agent's prompt on PostgreSQL: the tables as the server has them, named as
its SQL must write them, with what the columns mean (their comments)."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

from loopwright.healthcare.prompt import (
    DatabaseProfile,
    compact_system_prompt,
    profile_backend,
    system_prompt,
)
from loopwright.sql import PostgresBackend
from loopwright.tools.sql import SQLTool
from postgres_server import PostgresServer, postgres_server  # noqa: F401

#: Claims loaded as many warehouses have them: upper-case names created quoted, in a schema
#: of their own, with comments; and a lower-case table and a view in the default schema.
SETUP = """
CREATE SCHEMA claims;
CREATE TABLE claims."RX_CLAIMS" (
    "PRESCRIBER_NPI_NBR" text, "NDC_DRUG_NM" text, "PRESCRIBER_NPI_STATE_CD" text,
    "SERVICE_DATE_DD" date, "PAID_AMT" numeric(12,2), "user" text);
COMMENT ON TABLE claims."RX_CLAIMS" IS 'Pharmacy claims: one row per fill. Loaded nightly.';
COMMENT ON COLUMN claims."RX_CLAIMS"."NDC_DRUG_NM" IS 'Drug name, upper case (e.g. HUMIRA)';
COMMENT ON COLUMN claims."RX_CLAIMS"."PAID_AMT" IS 'Amount paid for the fill, USD';
INSERT INTO claims."RX_CLAIMS" VALUES
    ('9000000001', 'HUMIRA', 'CA', DATE '2024-03-01', 100.50, 'batch');
CREATE TABLE providers_bio (npi_number text, specialty text);
COMMENT ON COLUMN providers_bio.specialty IS 'Medical specialty';
INSERT INTO providers_bio VALUES ('9000000001', 'Rheumatology');
CREATE VIEW humira_fills AS
    SELECT "PRESCRIBER_NPI_NBR" FROM claims."RX_CLAIMS" WHERE "NDC_DRUG_NM" = 'HUMIRA';
"""


@pytest.fixture(scope="module")
def dsn(postgres_server: PostgresServer) -> str:  # noqa: F811
    dsn = postgres_server.create_database("hc_prompt")
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(SETUP.encode())
    return dsn


async def _profile(dsn: str) -> DatabaseProfile:
    """The database profile the healthcare agent's prompt is written from."""
    backend = PostgresBackend(dsn)
    try:
        return await profile_backend(backend)
    finally:
        await backend.aclose()


async def test_names_with_capitals_are_quoted_as_postgresql_needs(dsn: str, tmp_path: Path) -> None:
    """The prompt listed claims.RX_CLAIMS and NDC_DRUG_NM bare: PostgreSQL reads those as
    claims.rx_claims and ndc_drug_nm, so every query the model wrote from it failed with
    "relation claims.rx_claims does not exist"."""
    profile = await _profile(dsn)
    prompt = system_prompt(profile)
    assert 'claims."RX_CLAIMS"' in prompt
    assert '- "NDC_DRUG_NM" text' in prompt
    assert '- "user" text' in prompt  # a keyword, quoted as the server quotes it
    assert "- npi_number text" in prompt  # lower-case names stay bare
    assert "claims.RX_CLAIMS" not in prompt
    assert "write the names shown in double quotes with their quotes" in prompt
    compact = compact_system_prompt(profile)
    assert 'claims."RX_CLAIMS": "PRESCRIBER_NPI_NBR", "NDC_DRUG_NM"' in compact

    # the profile still finds the tables and columns by their names
    table = profile.table("RX_CLAIMS")
    assert table is not None
    assert table.column("ndc_drug_nm") is not None
    assert profile.schema()["claims.RX_CLAIMS"][1] == ("NDC_DRUG_NM", "text")

    # and every table and column, written as the prompt writes it, can be queried
    tool = SQLTool(tmp_path, backend=dsn)
    try:
        for listed in profile.tables:
            columns = ", ".join(c.in_sql for c in listed.columns)
            sql = f"SELECT {columns} FROM {listed.in_sql}"
            assert f". {listed.in_sql}" in prompt  # "2. claims.\"RX_CLAIMS\": ..."
            result = await tool.execute({"sql": sql, "dataset_name": "t", "description": "t"})
            assert result["is_error"] is False, (sql, result["content"])
    finally:
        await tool.aclose()


async def test_table_and_column_comments_are_in_the_prompt(dsn: str) -> None:
    """The comments, which say what the columns mean, were read on DuckDB only: on
    PostgreSQL the prompt listed bare names and types."""
    profile = await _profile(dsn)
    prompt = system_prompt(profile)
    assert 'claims."RX_CLAIMS": Pharmacy claims: one row per fill.' in prompt
    assert "Loaded nightly" not in prompt  # the first sentence, as on DuckDB
    assert '- "NDC_DRUG_NM" text: Drug name, upper case (e.g. HUMIRA)' in prompt
    assert '- "PAID_AMT" numeric(12,2): Amount paid for the fill, USD' in prompt
    assert "- specialty text: Medical specialty" in prompt
    assert "humira_fills (view)" in prompt
