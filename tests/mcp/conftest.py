"""Fixtures shared by the MCP tests."""

from __future__ import annotations

from pathlib import Path

import pytest

from loopwright.healthcare.data import build_database


@pytest.fixture(scope="module")
def claims(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small generated claims database (2,000 rx claims) for the healthcare agent."""
    path = tmp_path_factory.mktemp("claims") / "claims.duckdb"
    build_database(path, rx_claims=2_000)
    return path
