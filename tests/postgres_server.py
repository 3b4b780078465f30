"""A real PostgreSQL server for tests, started on 127.0.0.1 in a temporary directory.

PostgreSQL refuses to run as root, so when the tests run as root the cluster is created and
started as the ``postgres`` user (Debian's package creates it). One server serves a whole
test session (``postgres_server`` fixture); each test that wants a clean database asks
``server.create_database()``.

Usage in a conftest::

    from postgres_server import postgres_server  # noqa: F401  (the fixture)
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from local_servers import free_port

_BIN_DIRS = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)


def postgres_bin(name: str) -> str | None:
    """The path of a PostgreSQL server program (``initdb``, ``pg_ctl``), or None."""
    for directory in _BIN_DIRS:
        candidate = directory / name
        if candidate.exists():
            return str(candidate)
    return shutil.which(name)


@dataclass
class PostgresServer:
    """A running server: ``dsn(db)`` connects to database ``db`` as the superuser."""

    port: int
    directory: Path
    user: str = "postgres"
    _names: Iterator[int] = field(default_factory=lambda: itertools.count(1))

    def dsn(self, database: str = "postgres", user: str | None = None) -> str:
        return (
            f"postgresql://{user or self.user}@127.0.0.1:{self.port}/{database}?connect_timeout=10"
        )

    def create_database(self, prefix: str = "test") -> str:
        """A new empty database; returns its DSN."""
        import psycopg

        name = f"{prefix}_{os.getpid()}_{next(self._names)}"
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.dsn(name)

    def execute(self, sql: str, database: str = "postgres") -> None:
        """Run administrative SQL (roles, grants) as the superuser."""
        import psycopg

        with psycopg.connect(self.dsn(database), autocommit=True) as conn:
            conn.execute(sql.encode())


def _as_postgres(argv: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return argv
    runuser = shutil.which("runuser")
    if runuser is not None:
        return [runuser, "-u", "postgres", "--", *argv]
    return ["su", "postgres", "-s", "/bin/sh", "-c", " ".join(argv)]


@contextlib.contextmanager
def start_postgres() -> Iterator[PostgresServer]:
    """Create a cluster in a temporary directory, start it on 127.0.0.1, stop it after."""
    initdb, pg_ctl = postgres_bin("initdb"), postgres_bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.fail(
            "PostgreSQL server programs not found: install the Debian package 'postgresql' "
            "(scripts/system-deps.sh does, as root)"
        )
    directory = Path(tempfile.mkdtemp(prefix="lw-pg-"))
    data = directory / "data"
    if os.geteuid() == 0:
        shutil.chown(directory, "postgres", "postgres")
    port = free_port()
    subprocess.run(
        _as_postgres(
            [initdb, "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]
        ),
        check=True,
        capture_output=True,
    )
    options = (
        f"-h 127.0.0.1 -p {port} -k {directory} -c fsync=off -c synchronous_commit=off "
        "-c full_page_writes=off -c max_connections=200"
    )
    started = subprocess.run(
        _as_postgres(
            [pg_ctl, "-D", str(data), "-l", str(directory / "log"), "-o", options, "-w", "start"]
        ),
        capture_output=True,
        text=True,
    )
    if started.returncode != 0:
        log = (directory / "log").read_text() if (directory / "log").exists() else ""
        pytest.fail(f"PostgreSQL did not start: {started.stderr}\n{log}")
    try:
        yield PostgresServer(port, directory)
    finally:
        subprocess.run(
            _as_postgres([pg_ctl, "-D", str(data), "-m", "immediate", "-w", "stop"]),
            capture_output=True,
        )
        shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """One PostgreSQL server for the whole test session."""
    with start_postgres() as server:
        yield server
