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
import time
from pathlib import Path

from loopwright.events import Usage
from loopwright.messages import Message
from loopwright.sessions.session import Session
from loopwright.sessions.store import (
    SessionInfo,
    SessionStore,
    decode_record,
    json_text,
    listed_info,
    title_of,
)
from loopwright.sqlite_tx import write_transaction

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
CREATE TABLE IF NOT EXISTS leases (
    session_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at REAL NOT NULL
) WITHOUT ROWID;
"""

# Taken when free, expired or already ours; one statement, so atomic between processes.
_CLAIM = (
    "INSERT INTO leases (session_id, owner, expires_at) VALUES (?,?,?)"
    " ON CONFLICT (session_id) DO UPDATE SET owner=excluded.owner, expires_at=excluded.expires_at"
    " WHERE leases.owner=excluded.owner OR leases.expires_at<?"
)


class SQLiteStore(SessionStore):
    """Sessions in a SQLite database file (safe to share between processes)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(
            self.path, timeout=30.0, isolation_level=None, check_same_thread=False
        )
        self._initialise()
        #: ids whose row this store has written or read, so a save can be a plain UPDATE
        self._known: set[str] = set()

    def _initialise(self, timeout: float = 30.0) -> None:
        """WAL mode and the tables. Several processes may open a new file at once (parallel
        eval workers): switching to WAL takes a lock the busy timeout does not wait for, so
        a "locked" answer is retried until ``timeout``."""
        deadline = time.monotonic() + timeout
        delay = 0.005
        while True:
            try:
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=NORMAL")
                self._db.executescript(_SCHEMA)
                return
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.2)

    @classmethod
    def default(cls) -> SQLiteStore:
        """The store at ``<LOOPWRIGHT_HOME>/sessions.db``."""
        from loopwright.config import sessions_db_path

        return cls(sessions_db_path())

    def describe(self) -> str:
        return f"the session store {self.path}"

    def save(self, session: Session) -> None:
        start = session.dirty_from
        messages = session.messages
        rows = [
            (session.id, seq, json_text(messages[seq].to_dict()))
            for seq in range(start, len(messages))
        ]
        usage = json.dumps(session.usage.to_dict())
        metadata = json.dumps(session.metadata, default=str)
        state = json.dumps(session.state())
        with self._lock, write_transaction(self._db) as db:
            updated = 0
            if session.id in self._known and start >= 4:  # the title cannot have changed
                updated = db.execute(
                    "UPDATE sessions SET updated_at=?, usage=?, metadata=?, state=?,"
                    " message_count=? WHERE id=?",
                    (session.updated_at, usage, metadata, state, len(messages), session.id),
                ).rowcount
            if not updated:
                self._upsert(session, usage, metadata, state)
            if len(messages) < session.stored_count:
                db.execute(
                    "DELETE FROM messages WHERE session_id=? AND seq>=?",
                    (session.id, len(messages)),
                )
            if len(rows) == 1:
                db.execute("INSERT OR REPLACE INTO messages VALUES (?,?,?)", rows[0])
            elif rows:
                db.executemany("INSERT OR REPLACE INTO messages VALUES (?,?,?)", rows)
        self._known.add(session.id)

    def _upsert(self, session: Session, usage: str, metadata: str, state: str) -> None:
        self._db.execute(
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
                usage,
                metadata,
                state,
                title_of(session.messages[:4]),
                len(session.messages),
            ),
        )

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
        return decode_record(
            session_id,
            self.describe(),
            lambda: Session(
                session_id,
                workspace,
                messages=[Message.from_dict(json.loads(item)) for (item,) in data],
                usage=Usage.from_dict(json.loads(usage)),
                metadata=json.loads(metadata),
                store=self,
                created_at=created_at,
                updated_at=updated_at,
                **Session.state_arguments(json.loads(state)),
            ),
        )

    def exists(self, session_id: str) -> bool:
        with self._lock:
            row = self._db.execute("SELECT 1 FROM sessions WHERE id=?", (session_id,)).fetchone()
        return row is not None

    def list(self) -> list[SessionInfo]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, workspace, created_at, updated_at, message_count, usage, title,"
                " metadata FROM sessions ORDER BY updated_at DESC"
            ).fetchall()
        return [listed_info(row[0], self.describe(), row[1:], json.loads) for row in rows]

    def delete(self, session_id: str) -> bool:
        with self._lock, write_transaction(self._db) as db:
            cursor = db.execute("DELETE FROM sessions WHERE id=?", (session_id,))
            self._known.discard(session_id)
            db.execute("DELETE FROM messages WHERE session_id=?", (session_id,))
            db.execute("DELETE FROM leases WHERE session_id=?", (session_id,))
        return cursor.rowcount > 0

    def claim(self, session_id: str, owner: str, ttl: float) -> bool:
        now = time.time()  # the processes sharing a SQLite file share this clock
        with self._lock:
            cursor = self._db.execute(_CLAIM, (session_id, owner, now + ttl, now))
        return cursor.rowcount == 1

    def release(self, session_id: str, owner: str) -> None:
        with self._lock:
            self._db.execute(
                "DELETE FROM leases WHERE session_id=? AND owner=?", (session_id, owner)
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()
