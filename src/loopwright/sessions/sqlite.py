"""The embedded default session store: one SQLite file, written after every step.

WAL journal with ``synchronous=NORMAL``: a commit survives the process being killed (the
case that matters for resuming a run), and costs tens of microseconds instead of an fsync.
Only the messages that changed since the last save are written.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from pathlib import Path

from loopwright.events import Usage
from loopwright.messages import Message
from loopwright.sessions.session import Session
from loopwright.sessions.store import SessionInfo, SessionStore, title_of

_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    workspace TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    usage TEXT NOT NULL,
    metadata TEXT NOT NULL,
    state TEXT NOT NULL,
    title TEXT NOT NULL DEFAULT '',
    message_count INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS messages (
    session_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    data TEXT NOT NULL,
    PRIMARY KEY (session_id, seq)
) WITHOUT ROWID;
"""


class SQLiteStore(SessionStore):
    """Sessions in a SQLite database file (safe to share between processes)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            self.path, timeout=30.0, isolation_level=None, check_same_thread=False
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    @classmethod
    def default(cls) -> SQLiteStore:
        """The store at ``<LOOPWRIGHT_HOME>/sessions.db``."""
        from loopwright.config import sessions_db_path

        return cls(sessions_db_path())

    def describe(self) -> str:
        return f"the session store {self.path}"

    def save(self, session: Session) -> None:
        start = session.dirty_from
        rows = [
            (session.id, seq, json.dumps(session.messages[seq].to_dict(), ensure_ascii=False))
            for seq in range(start, len(session.messages))
        ]
        title = title_of(session.messages[:4])
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                db.execute(
                    "INSERT INTO sessions (id, workspace, created_at, updated_at, usage, metadata,"
                    " state, title, message_count) VALUES (?,?,?,?,?,?,?,?,?) ON CONFLICT(id) DO"
                    " UPDATE SET updated_at=excluded.updated_at, usage=excluded.usage,"
                    " metadata=excluded.metadata, state=excluded.state,"
                    " message_count=excluded.message_count, title=excluded.title",
                    (
                        session.id,
                        str(session.workspace_dir),
                        session.created_at,
                        session.updated_at,
                        json.dumps(session.usage.to_dict()),
                        json.dumps(session.metadata, default=str),
                        json.dumps(session.state()),
                        title,
                        len(session.messages),
                    ),
                )
                db.execute(
                    "DELETE FROM messages WHERE session_id=? AND seq>=?", (session.id, start)
                )
                if rows:
                    db.executemany("INSERT INTO messages VALUES (?,?,?)", rows)
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def load(self, session_id: str) -> Session | None:
        with self._lock:
            row = self._db.execute(
                "SELECT workspace, created_at, updated_at, usage, metadata, state FROM sessions"
                " WHERE id=?",
                (session_id,),
            ).fetchone()
            if row is None:
                return None
            data = self._db.execute(
                "SELECT data FROM messages WHERE session_id=? ORDER BY seq", (session_id,)
            ).fetchall()
        workspace, created_at, updated_at, usage, metadata, state = row
        state = json.loads(state)
        return Session(
            session_id,
            workspace,
            messages=[Message.from_dict(json.loads(item)) for (item,) in data],
            usage=Usage.from_dict(json.loads(usage)),
            metadata=json.loads(metadata),
            store=self,
            created_at=created_at,
            updated_at=updated_at,
            summary=state.get("summary", ""),
            context_start=int(state.get("context_start", 0)),
            trimmed=set(state.get("trimmed", [])),
        )

    def exists(self, session_id: str) -> bool:
        with self._lock:
            row = self._db.execute("SELECT 1 FROM sessions WHERE id=?", (session_id,)).fetchone()
        return row is not None

    def list(self) -> list[SessionInfo]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, workspace, created_at, updated_at, message_count, usage, title"
                " FROM sessions ORDER BY updated_at DESC"
            ).fetchall()
        return [
            SessionInfo(i, w, c, u, n, Usage.from_dict(json.loads(us)), t)
            for i, w, c, u, n, us, t in rows
        ]

    def delete(self, session_id: str) -> bool:
        with self._lock:
            db = self._db
            db.execute("BEGIN IMMEDIATE")
            try:
                cursor = db.execute("DELETE FROM sessions WHERE id=?", (session_id,))
                db.execute("DELETE FROM messages WHERE session_id=?", (session_id,))
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return cursor.rowcount > 0

    def close(self) -> None:
        with self._lock:
            self._db.close()
