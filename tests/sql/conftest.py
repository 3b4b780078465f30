"""Fixtures for the SQL backends: a DuckDB claims file, a PostgreSQL server on 127.0.0.1
(``postgres_server``, shared with the store tests) and a BigQuery stand-in on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from postgres_server import postgres_server

from .bigquery_server import BigQueryServer

__all__ = ["bigquery_server", "claims_db", "postgres_server", "workspace"]

#: A small rx-claims table: 8 drugs, 8 states, 40 prescribers, skewed so rankings are clear.
CLAIMS_SQL = """
CREATE TABLE rx_claims AS
SELECT
    range AS claim_id,
    1000000000 + (range * range + range // 7) % 40 AS prescriber_npi_nbr,
    (['HUMIRA', 'ELIQUIS', 'OZEMPIC', 'KEYTRUDA', 'JARDIANCE', 'STELARA', 'TRULICITY',
      'XARELTO'])[1 + (range * 3 + range // 11) % 8] AS ndc_drug_nm,
    (['CA', 'TX', 'NY', 'FL', 'PA', 'OH', 'IL', 'GA'])[1 + (range // 3 + range % 5) % 8]
        AS prescriber_npi_state_cd,
    DATE '2024-01-01' + (range % 366)::INTEGER AS service_date_dd,
    (range % 90) + 1 AS dispensed_quantity_val,
    round((range % 1000) * 1.37, 2)::DOUBLE AS paid_amt,
    range % 7 = 0 AS is_specialty
FROM range(2000);
CREATE TABLE providers_bio AS
SELECT DISTINCT prescriber_npi_nbr AS npi_number,
       (['Rheumatology', 'Cardiology', 'Oncology'])[1 + (prescriber_npi_nbr % 3)] AS specialty
FROM rx_claims;
"""


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws


@pytest.fixture
def claims_db(tmp_path: Path) -> Path:
    """A DuckDB file with ``rx_claims`` and ``providers_bio``, closed (ready to open read-only)."""
    path = tmp_path / "claims.duckdb"
    with duckdb.connect(str(path)) as connection:
        connection.execute(CLAIMS_SQL)
    return path


@pytest.fixture
def bigquery_server() -> Iterator[BigQueryServer]:
    """The BigQuery stand-in with dataset ``claims`` holding the same two tables."""
    with BigQueryServer(project="test-project") as server:
        server.setup("CREATE SCHEMA claims; SET schema = 'claims';" + CLAIMS_SQL)
        yield server


def unholdable_intervals(monkeypatch: pytest.MonkeyPatch) -> None:
    """Take away the Parquet writer's converter for intervals, so they reach pyarrow's
    Parquet writer as they are and it refuses them: every type DuckDB makes is written, so
    tests of that refusal need a type that cannot be."""
    import pyarrow as pa

    from loopwright.sql import output

    converter = output._parquet_converter
    monkeypatch.setattr(
        output,
        "_parquet_converter",
        lambda kind: None if pa.types.is_interval(kind) else converter(kind),
    )
