"""`loopwright healthcare --database ...`: a database that cannot be used is one clear line,
with the exit status of what went wrong (1: the database failed; 2: the caller's mistake)."""

from __future__ import annotations

import asyncio
import os
import sqlite3
from pathlib import Path

import pytest

from local_servers import free_port
from loopwright.cli.healthcare import build_agent
from loopwright.cli.runtime import EXIT_ERROR, EXIT_USAGE, CliError
from loopwright.healthcare.agent import DatabaseUnreadable, healthcare_agent
from loopwright.sessions.store import MemoryStore
from loopwright.sql import SQLError
from loopwright.sql.duckdb import DuckDBBackend, file_problem


def _refused(database: str) -> CliError:
    with pytest.raises(CliError) as raised:
        build_agent("scripted", store=MemoryStore(), database=database)
    return raised.value


def _sqlite_file(path: Path) -> Path:
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE rx_claims (npi TEXT)")
    return path


def test_an_unreachable_server_is_a_failure_not_a_usage_error() -> None:
    """It exited 2 ("usage"): the schema reader wrapped the connection error as ValueError."""
    url = f"postgresql://analyst:s3cret@127.0.0.1:{free_port()}/claims"
    refused = _refused(url)
    assert refused.exit_code == EXIT_ERROR
    assert str(refused).startswith("cannot use the database: Cannot read the database's schema")
    assert "Could not connect to PostgreSQL" in str(refused)
    assert "s3cret" not in str(refused)


def test_the_schema_error_is_an_sql_error_and_still_a_value_error() -> None:
    url = f"postgresql://analyst@127.0.0.1:{free_port()}/claims"
    with pytest.raises(DatabaseUnreadable) as raised:
        healthcare_agent("scripted", database=url)
    assert isinstance(raised.value, SQLError)
    assert isinstance(raised.value, ValueError)  # what callers caught before


def test_a_directory_is_named_as_one(tmp_path: Path) -> None:
    """It was reported as a file that "does not exist"."""
    folder = tmp_path / "claims.duckdb"
    folder.mkdir()
    refused = _refused(str(folder))
    assert refused.exit_code == EXIT_USAGE
    assert f"The database file {folder} is a directory, not a DuckDB database file" in str(refused)


def test_a_sqlite_file_is_named_as_one(tmp_path: Path) -> None:
    """DuckDB answered "Loading external extensions is disabled", which names no cause."""
    refused = _refused(str(_sqlite_file(tmp_path / "claims.db")))
    assert refused.exit_code == EXIT_USAGE
    assert "is a SQLite database, not DuckDB" in str(refused)
    assert "extensions is disabled" not in str(refused)


def test_a_missing_file_still_says_so(tmp_path: Path) -> None:
    refused = _refused(str(tmp_path / "nowhere.duckdb"))
    assert refused.exit_code == EXIT_USAGE
    assert "nowhere.duckdb does not exist; check the path" in str(refused)


async def test_the_sql_backend_names_what_is_at_the_path(tmp_path: Path) -> None:
    folder = tmp_path / "folder.duckdb"
    folder.mkdir()
    sqlite = _sqlite_file(tmp_path / "claims.db")
    for path, expected in (
        (folder, "is a directory"),
        (sqlite, "is a SQLite database"),
        (tmp_path / "missing.duckdb", "does not exist; create it first"),
    ):
        backend = DuckDBBackend(path)
        with pytest.raises(SQLError, match=expected):
            await backend.schema()
        await backend.aclose()


def test_file_problem(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    assert file_problem(str(fifo)) == "is not a regular file, so not a DuckDB database file"
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert file_problem(str(text)) is None  # DuckDB's own error names it
    assert file_problem(str(tmp_path / "none")) == "does not exist"


def test_an_unknown_model_is_refused_before_the_database_is_built(loopwright_home: Path) -> None:
    """A mistyped --model was reported only after the first-use build (minutes, for a large
    --rows)."""
    with pytest.raises(CliError) as raised:
        build_agent("claude-typo", store=MemoryStore(), rows=1_000)
    assert raised.value.exit_code == EXIT_USAGE
    assert str(raised.value).startswith("unknown model 'claude-typo'")
    assert "choose another model with --model" in str(raised.value)
    assert not (loopwright_home / "data").exists()


def test_a_data_directory_that_cannot_be_made_is_one_clear_line(loopwright_home: Path) -> None:
    """It was "cannot use the database: [Errno 17] File exists: ...", naming no cause."""
    loopwright_home.mkdir()
    (loopwright_home / "data").write_text("not a directory")
    with pytest.raises(CliError) as raised:
        build_agent("scripted", store=MemoryStore(), rows=1_000)
    assert raised.value.exit_code == EXIT_ERROR
    message = str(raised.value)
    assert message.startswith(f"cannot build the claims database: {loopwright_home / 'data'}")
    assert "is a file, where the directory" in message
    assert "LOOPWRIGHT_HOME" in message


@pytest.mark.parametrize("content", [b"", b"not a database\n"])
def test_a_damaged_generated_database_says_to_delete_it(
    loopwright_home: Path, content: bytes
) -> None:
    """The generated file, damaged, was a usage error (exit 2) without a word on what to do."""
    from loopwright.healthcare.data import DEFAULT_SEED, default_database_path

    generated = default_database_path(1_000, DEFAULT_SEED)
    generated.parent.mkdir(parents=True)
    generated.write_bytes(content)
    with pytest.raises(CliError) as raised:
        build_agent("scripted", store=MemoryStore(), rows=1_000)
    assert raised.value.exit_code == EXIT_ERROR
    message = str(raised.value)
    assert message.startswith(
        f"cannot use the generated claims database: Cannot open the DuckDB "
        f"database {generated} read-only"
    )
    assert message.endswith("; delete that file to have it built again")
    generated.unlink()  # as the message says: the next run builds it again
    asyncio.run(build_agent("scripted", store=MemoryStore(), rows=1_000).aclose())
    assert generated.stat().st_size > 0
    damaged = _refused(str(_damaged(loopwright_home / "mine.duckdb", content)))
    assert damaged.exit_code == EXIT_USAGE  # the caller's own file
    assert "delete that file" not in str(damaged)


def _damaged(path: Path, content: bytes) -> Path:
    path.write_bytes(content)
    return path
