"""A saved session whose record cannot be read back (hand-edited, cut short, written by a
bug): each reader says which session and what to do, and the others stay usable. Before, one
such record ended `sessions list` for every session with a JSONDecodeError, `sessions rm`
could not remove it, and metadata that is not a mapping gave AttributeError tracebacks."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path

import pytest

from cli_process import cli_env, run_cli
from loopwright import SQLiteStore
from loopwright.messages import Message
from loopwright.sessions import Session, SessionDamaged
from loopwright.sessions.postgres import PostgresStore
from loopwright.sessions.store import DAMAGED_TITLE, SessionStore
from postgres_server import PostgresServer, postgres_server  # noqa: F401


def _saved(store: SessionStore, root: Path, session_id: str) -> Session:
    session = Session.create(session_id, root=root, store=store, metadata={"agent": "x"})
    session.append(Message.user(f"question of {session_id}"))
    session.append(Message.assistant(f"answer of {session_id}"))
    session.save()
    return session


def _damage_sqlite(path: Path, session_id: str, metadata: str) -> None:
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE sessions SET metadata=? WHERE id=?", (metadata, session_id))


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A loopwright home with three sessions: ``good``, ``garbled`` (metadata that is not
    JSON) and ``listed`` (metadata that is JSON, but a list)."""
    home = tmp_path / "home"
    home.mkdir()
    store = SQLiteStore(home / "sessions.db")
    try:
        for session_id in ("good", "garbled", "listed"):
            _saved(store, home / "workspaces", session_id)
    finally:
        store.close()
    _damage_sqlite(home / "sessions.db", "garbled", "{not json")
    _damage_sqlite(home / "sessions.db", "listed", json.dumps(["x"]))
    return home


def test_the_sqlite_store_names_a_damaged_record_and_lists_the_rest(home: Path) -> None:
    store = SQLiteStore(home / "sessions.db")
    try:
        with pytest.raises(SessionDamaged) as caught:
            store.load("garbled")
        assert caught.value.session_id == "garbled"
        assert str(home / "sessions.db") in str(caught.value)
        assert "JSONDecodeError" in caught.value.detail
        listed = {info.id: info for info in store.list()}
        assert set(listed) == {"good", "garbled", "listed"}
        assert listed["garbled"].title == DAMAGED_TITLE
        assert listed["garbled"].updated_at > 0  # its times are readable: kept
        assert listed["listed"].metadata == {}  # not a mapping: no metadata to show
        assert listed["good"].metadata == {"agent": "x"}
        loaded = store.load("good")
        assert loaded is not None
        assert len(loaded.messages) == 2
        assert store.delete("garbled")
        assert [info.id for info in store.list()] == ["listed", "good"]
    finally:
        store.close()


def test_the_postgres_store_names_a_damaged_record_and_lists_the_rest(
    postgres_server: PostgresServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    """PostgreSQL keeps JSONB, so the JSON always parses: a message of an unknown shape is
    what a damaged record holds there."""
    import psycopg

    dsn = postgres_server.create_database("damaged")
    store = PostgresStore(dsn)
    try:
        _saved(store, tmp_path / "ws", "good")
        _saved(store, tmp_path / "ws", "odd")
        with psycopg.connect(dsn, autocommit=True) as db:
            db.execute(
                "UPDATE loopwright_messages SET data='{\"role\": 7}'::jsonb WHERE session_id='odd'"
            )
        with pytest.raises(SessionDamaged) as caught:
            store.load("odd")
        assert caught.value.session_id == "odd"
        assert {info.id for info in store.list()} == {"good", "odd"}
        assert store.load("good") is not None
    finally:
        store.close()


def test_the_sessions_commands_on_damaged_records(home: Path, tmp_path: Path) -> None:
    env = cli_env(home)

    listing = run_cli(["sessions", "list"], env=env, cwd=tmp_path)
    assert listing.returncode == 0, listing.stderr
    assert "Traceback" not in listing.stderr
    for session_id in ("good", "garbled", "listed"):
        assert session_id in listing.stdout
    assert "damaged record" in listing.stdout

    for command in (["sessions", "show", "garbled"], ["sessions", "resume", "garbled"]):
        shown = run_cli(command, env=env, cwd=tmp_path, input="")
        assert shown.returncode == 1, shown.stderr
        message = " ".join(shown.stderr.split())
        assert message.startswith(
            f"error: cannot read session garbled: its record in the session store "
            f"{home / 'sessions.db'} is damaged (JSONDecodeError: "
        ), message
        assert message.endswith(
            "start a new session instead (`loopwright sessions rm garbled` removes this one)"
        )

    shown = run_cli(["sessions", "show", "listed"], env=env, cwd=tmp_path)
    assert shown.returncode == 0, shown.stderr
    assert "answer of listed" in shown.stdout
    assert "damaged in the store" in shown.stdout

    resumed = run_cli(
        ["sessions", "resume", "listed", "-m", "scripted"], env=env, cwd=tmp_path, input=""
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "Traceback" not in resumed.stderr
    assert "session listed has damaged metadata" in " ".join(resumed.stderr.split())

    removed = run_cli(["sessions", "rm", "garbled"], env=env, cwd=tmp_path)
    assert removed.returncode == 0, removed.stderr
    assert "Removed session garbled and its workspace" in removed.stdout
    assert not (home / "workspaces" / "garbled").exists()
    assert (home / "workspaces" / "good").is_dir()
    unknown = run_cli(["sessions", "rm", "garbled"], env=env, cwd=tmp_path)
    assert unknown.returncode == 1
    assert "no saved session 'garbled'" in unknown.stderr


@pytest.mark.parametrize("command", ["report", "export"])
def test_report_and_export_on_damaged_records(home: Path, tmp_path: Path, command: str) -> None:
    env = cli_env(home)
    extra = ["-o", str(tmp_path / "out.html")] if command == "export" else []
    damaged = run_cli(["sessions", command, "garbled", *extra], env=env, cwd=tmp_path)
    assert damaged.returncode == 1, damaged.stderr
    assert "`loopwright sessions rm garbled` removes this one" in " ".join(damaged.stderr.split())
    listed = run_cli(["sessions", command, "listed", *extra], env=env, cwd=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert "Traceback" not in listed.stderr
