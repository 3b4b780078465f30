"""``DELETE /api/sessions/{id}``: the owner removes a session, its history and its workspace;
refused while a turn runs in it, here or in another process sharing the store."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import httpx

from loopwright import SQLiteStore
from loopwright.messages import Message
from loopwright.sessions import Session

from .conftest import StartServer
from .live import make_agent, stream_turn

TOKENS = {"tok-alice": "alice", "tok-bob": "bob"}


def _new(client: httpx.Client) -> str:
    return str(client.post("/api/sessions").json()["id"])


def test_the_owner_removes_a_session_with_its_history_and_workspace(
    live: StartServer, tmp_path: Path
) -> None:
    server = live(tokens=TOKENS)
    with server.client("tok-alice") as alice, server.client("tok-bob") as bob:
        session_id = _new(alice)
        _, events = stream_turn(alice, session_id, "write notes.md findings")
        assert events[-1].data["stop_reason"] == "end_turn"
        workspace = tmp_path / "workspaces" / session_id
        assert (workspace / "notes.md").is_file()
        kept = _new(alice)

        assert bob.delete(f"/api/sessions/{session_id}").status_code == 404  # not bob's
        assert alice.get(f"/api/sessions/{session_id}").status_code == 200

        removed = alice.delete(f"/api/sessions/{session_id}")
        assert removed.status_code == 204, removed.text
        assert not workspace.exists()
        for path in ("", "/messages", "/events", "/files"):
            assert alice.get(f"/api/sessions/{session_id}{path}").status_code == 404, path
        listed = {s["id"] for s in alice.get("/api/sessions").json()["sessions"]}
        assert listed == {kept}
        again = alice.delete(f"/api/sessions/{session_id}")
        assert again.status_code == 404
        assert "no session" in again.json()["detail"]


def test_a_running_turn_is_cancelled_first(live: StartServer, tmp_path: Path) -> None:
    server = live()
    with server.client() as client:
        session_id = _new(client)
        started = client.post(
            f"/api/sessions/{session_id}/messages",
            params={"stream": "false"},
            json={"content": "sleep 30"},
        )
        assert started.status_code == 202
        refused = client.delete(f"/api/sessions/{session_id}")
        assert refused.status_code == 409
        assert "cancel it" in refused.json()["detail"]
        assert client.get(f"/api/sessions/{session_id}").json()["running"] is True

        assert client.post(f"/api/sessions/{session_id}/cancel").status_code == 200
        assert client.delete(f"/api/sessions/{session_id}").status_code == 204
        assert client.get(f"/api/sessions/{session_id}").status_code == 404


def test_a_turn_in_another_process_sharing_the_store_is_waited_for(
    live: StartServer, tmp_path: Path
) -> None:
    store = SQLiteStore(tmp_path / "sessions.db")
    try:
        session = Session.create("shared", root=tmp_path / "workspaces", store=store)
        session.append(Message.user("a question"))
        session.save()
        server = live(make_agent(tmp_path, store=store))
        assert store.claim("shared", "the-cli-in-another-process", 60)
        with server.client() as client:
            refused = client.delete("/api/sessions/shared")
            assert refused.status_code == 409
            assert "another process" in refused.json()["detail"]
            assert store.load("shared") is not None
            assert session.workspace_dir.is_dir()

            store.release("shared", "the-cli-in-another-process")
            assert client.delete("/api/sessions/shared").status_code == 204
        assert store.load("shared") is None
        assert not session.workspace_dir.exists()
        assert store.claim("shared", "anyone", 60)  # no lease left behind
    finally:
        store.close()


def test_a_damaged_record_is_removed_by_the_local_user_only(
    live: StartServer, tmp_path: Path
) -> None:
    """A record that cannot be read (its metadata is not JSON) could be removed only with
    the CLI; the local user removes it over HTTP too. With tokens, whose it is cannot be
    read: it is nobody's to remove."""
    store = SQLiteStore(tmp_path / "sessions.db")
    try:
        for session_id in ("garbled", "good"):
            made = Session.create(session_id, root=tmp_path / "workspaces", store=store)
            made.append(Message.user(f"question of {session_id}"))
            made.save()
        with contextlib.closing(sqlite3.connect(tmp_path / "sessions.db")) as db, db:
            db.execute("UPDATE sessions SET metadata='{not json' WHERE id='garbled'")
        guarded = live(make_agent(tmp_path, store=store), tokens=TOKENS)
        with guarded.client("tok-alice") as alice:
            assert alice.delete("/api/sessions/garbled").status_code == 404
        local = live(make_agent(tmp_path, store=store))
        with local.client() as client:
            assert client.get("/api/sessions/garbled").status_code == 500
            assert client.delete("/api/sessions/garbled").status_code == 204
            listed = {s["id"] for s in client.get("/api/sessions").json()["sessions"]}
        assert listed == {"good"}
        assert not (tmp_path / "workspaces" / "garbled").exists()
    finally:
        store.close()


def test_a_workspace_loopwright_did_not_make_is_kept(live: StartServer, tmp_path: Path) -> None:
    """A session whose workspace is the user's own directory (not under the workspace root)
    is forgotten; the directory and its files stay."""
    store = SQLiteStore(tmp_path / "sessions.db")
    try:
        own = tmp_path / "my-project"
        session = Session.create("mine", root=own, store=store)
        (session.workspace_dir / "data.csv").write_text("a\n1\n")
        session.save()
        server = live(make_agent(tmp_path, store=store))
        with server.client() as client:
            assert client.delete("/api/sessions/mine").status_code == 204
        assert store.load("mine") is None
        assert (session.workspace_dir / "data.csv").is_file()
    finally:
        store.close()
