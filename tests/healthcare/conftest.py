"""A small generated claims database shared by the healthcare tests (built once per session)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import duckdb
import pytest

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


def cli_env(loopwright_home: Path) -> dict[str, str]:
    """The environment of a ``loopwright`` process: this home, no provider keys, no model
    setting, plain wide output."""
    env = dict(os.environ)
    env["LOOPWRIGHT_HOME"] = str(loopwright_home)
    for name in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "EVALS_MODEL", "LOOPWRIGHT_MODEL"):
        env.pop(name, None)
    env.update(NO_COLOR="1", COLUMNS="160", PYTHONIOENCODING="utf-8")
    return env


@pytest.fixture
def cli(loopwright_home: Path, tmp_path: Path) -> Cli:
    """``python -m loopwright.cli.app ARGS`` in ``tmp_path``, in :func:`cli_env`."""
    env = cli_env(loopwright_home)

    def run(*args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "loopwright.cli.app", *args],
            capture_output=True,
            text=True,
            encoding="utf-8",
            env=env,
            cwd=tmp_path,
            timeout=timeout,
        )

    return run
