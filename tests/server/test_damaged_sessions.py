"""The server on a session store holding damaged records (see
tests/sessions/test_damaged_records.py): the list goes on, a damaged session is a clear 500
to the local user and, with tokens, nobody's (its owner cannot be read)."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from pathlib import Path

from loopwright import SQLiteStore
from loopwright.messages import Message
from loopwright.sessions import Session

from .conftest import StartServer
from .live import make_agent


def _damage(path: Path, session_id: str, metadata: str) -> None:
    with contextlib.closing(sqlite3.connect(path)) as db, db:
        db.execute("UPDATE sessions SET metadata=? WHERE id=?", (metadata, session_id))


def test_the_server_on_damaged_records(live: StartServer, tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "sessions.db")
    try:
        for session_id in ("good", "garbled", "listed"):
            session = Session.create(session_id, root=tmp_path / "workspaces", store=store)
            session.append(Message.user(f"question of {session_id}"))
            session.save()
        _damage(tmp_path / "sessions.db", "garbled", "{not json")
        _damage(tmp_path / "sessions.db", "listed", json.dumps(["x"]))
        local = live(make_agent(tmp_path, store=store))
        with local.client() as client:
            listed = client.get("/api/sessions")
            assert listed.status_code == 200
            listed_ids = {item["id"] for item in listed.json()["sessions"]}
            assert listed_ids == {"good", "garbled", "listed"}
            damaged = client.get("/api/sessions/garbled")
            assert damaged.status_code == 500
            assert "cannot be read" in damaged.json()["detail"]
            assert "loopwright sessions rm garbled" in damaged.json()["detail"]
            assert client.get("/api/sessions/listed").status_code == 200
            assert client.get("/api/sessions/good").status_code == 200
        guarded = live(make_agent(tmp_path, store=store), tokens={"tok-ada": "ada"})
        with guarded.client("tok-ada") as ada:  # whose it is cannot be read: not ada's
            assert ada.get("/api/sessions/garbled").status_code == 404
            assert ada.get("/api/sessions/listed").status_code == 404
    finally:
        store.close()
