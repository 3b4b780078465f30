"""A small generated claims database shared by the healthcare tests (built once per session)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest

from loopwright.healthcare.data import build_database, connect_read_only

SMALL_RX_CLAIMS = 20_000
SEED = 7


@pytest.fixture(scope="session")
def claims_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 20k-rx-claim database (about a second to build)."""
    path = tmp_path_factory.mktemp("claims") / "claims.duckdb"
    return build_database(path, rx_claims=SMALL_RX_CLAIMS, seed=SEED)


@pytest.fixture(scope="session")
def claims_con(claims_db: Path) -> Iterator[duckdb.DuckDBPyConnection]:
    """A read-only connection to the small database (the SQL tool's settings)."""
    con = connect_read_only(claims_db)
    yield con
    con.close()
