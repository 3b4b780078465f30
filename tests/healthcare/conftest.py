"""A small generated claims database shared by the healthcare tests (built once per session)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import pytest

from cli_process import cli_env, run_cli
from loopwright.healthcare.data import build_database, connect_read_only

SMALL_RX_CLAIMS = 20_000
SEED = 7

Cli = Callable[..., subprocess.CompletedProcess[str]]


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


@pytest.fixture
def cli(loopwright_home: Path, tmp_path: Path) -> Cli:
    """``python -m loopwright.cli.app ARGS`` in ``tmp_path``, in :func:`cli_env`."""
    env = cli_env(loopwright_home)

    def run(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return run_cli(list(args), env=env, cwd=tmp_path, timeout=timeout)

    return run
