"""Text holding a byte that is not UTF-8 (Python keeps it as a lone surrogate: a file name
listed by Glob, a program's output) is saved. The SQLite store failed with "surrogates not
allowed" and the agent's run stopped early; PostgreSQL's jsonb refuses such a character."""

from __future__ import annotations

import os
from pathlib import Path

from loopwright import Agent, GlobTool, ScriptedModel, SQLiteStore, call
from loopwright.messages import Message
from loopwright.sessions import Session
from loopwright.sessions.postgres import PostgresStore
from postgres_server import PostgresServer, postgres_server  # noqa: F401

ODD = "claims_\udcff.csv"  # the name b"claims_\xff.csv" as Python lists it


def test_sqlite_keeps_the_text_exactly(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "sessions.db")
    try:
        session = Session.create("odd", root=tmp_path / "ws", store=store)
        session.append(Message.user(f"look at {ODD} and 北京.csv"))
        session.save()
        loaded = store.load("odd")
        assert loaded is not None
        assert loaded.messages[0].text == f"look at {ODD} and 北京.csv"
        (info,) = store.list()
        assert info.title == "look at claims_\ufffd.csv and 北京.csv"
    finally:
        store.close()


def test_postgres_stores_it_as_the_replacement_character(
    postgres_server: PostgresServer,  # noqa: F811
    tmp_path: Path,
) -> None:
    store = PostgresStore(postgres_server.create_database("undecodable"))
    try:
        session = Session.create("odd", root=tmp_path / "ws", store=store)
        session.append(Message.user(f"look at {ODD}"))
        session.save()
        loaded = store.load("odd")
        assert loaded is not None
        assert loaded.messages[0].text == "look at claims_\ufffd.csv"
        assert [info.title for info in store.list()] == ["look at claims_\ufffd.csv"]
    finally:
        store.close()


def test_an_agent_globbing_a_file_named_in_other_bytes_finishes_its_run(tmp_path: Path) -> None:
    workspace = tmp_path / "ws" / "glob"
    workspace.mkdir(parents=True)
    with open(os.path.join(os.fsencode(workspace), b"claims_\xff.csv"), "wb") as handle:
        handle.write(b"a\n1\n")
    store = SQLiteStore(tmp_path / "sessions.db")
    try:
        agent = Agent(
            ScriptedModel([call("Glob", pattern="*.csv"), "One CSV file."]),
            tools=[GlobTool],
            store=store,
        )
        session = Session.create("glob", root=tmp_path / "ws", store=store)
        assert session.workspace_dir == workspace
        result = agent.run_sync("Which CSV files are there?", session)
        assert result.stop_reason == "end_turn", result
        assert result.text == "One CSV file."
        saved = store.load("glob")
        assert saved is not None
        assert saved.messages[2].to_dict()["content"][0]["content"] == ODD
    finally:
        store.close()
