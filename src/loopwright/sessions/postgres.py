"""The PostgreSQL session store: sessions shared by several server processes and machines.

Same tables and behaviour as the SQLite store (the conformance tests run against both): each
save is one transaction that writes the session row and only the messages that changed. Any
process with the DSN can load a session another process saved and continue it (workspaces
then live on storage all of them mount).

A store holds one connection (psycopg 3, autocommit off) guarded by a lock, so it is safe
to share between threads; it reconnects once when the server closed the connection.
"""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING, Any

from loopwright.events import Usage
from loopwright.messages import Message
from loopwright.sessions.session import Session
from loopwright.sessions.store import (
    SessionInfo,
    SessionStore,
    decode_record,
    listed_info,
    storable_text,
    title_of,
)

if TYPE_CHECKING:
    import psycopg

# Two processes creating the tables at once can both pass ``IF NOT EXISTS`` and one then fails
# on the catalog's unique index, so creation runs under a transaction-scoped advisory lock.
_SCHEMA_LOCK = 0x6C6F6F70  # "loop"
_SCHEMA = """
CREATE TABLE IF NOT EXISTS loopwright_sessions (
    id TEXT PRIMARY KEY,
    workspace TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    updated_at DOUBLE PRECISION NOT NULL,
    usage JSONB NOT NULL,
    metadata JSONB NOT NULL,
    state JSONB NOT NULL,
    title TEXT NOT NULL DEFAULT '',
    message_count INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS loopwright_sessions_updated
    ON loopwright_sessions (updated_at DESC);
CREATE TABLE IF NOT EXISTS loopwright_messages (
    session_id TEXT NOT NULL REFERENCES loopwright_sessions(id) ON DELETE CASCADE,
    seq INTEGER NOT NULL,
    data JSONB NOT NULL,
    PRIMARY KEY (session_id, seq)
);
CREATE TABLE IF NOT EXISTS loopwright_leases (
    session_id TEXT PRIMARY KEY,
    owner TEXT NOT NULL,
    expires_at DOUBLE PRECISION NOT NULL
);
"""

# Taken when free, expired or already ours, by the database server's clock (the servers
# sharing it may disagree about the time); one statement, so atomic between them.
_NOW = "extract(epoch from clock_timestamp())"
_CLAIM = (
    "INSERT INTO loopwright_leases (session_id, owner, expires_at)"
    f" VALUES (%s, %s, {_NOW} + %s)"
    " ON CONFLICT (session_id) DO UPDATE SET owner=EXCLUDED.owner,"
    " expires_at=EXCLUDED.expires_at"
    f" WHERE loopwright_leases.owner=EXCLUDED.owner OR loopwright_leases.expires_at<{_NOW}"
)

_UPSERT_SESSION = (
    "INSERT INTO loopwright_sessions (id, workspace, created_at, updated_at, usage, metadata,"
    " state, title, message_count) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s)"
    " ON CONFLICT (id) DO UPDATE SET updated_at=EXCLUDED.updated_at, usage=EXCLUDED.usage,"
    " metadata=EXCLUDED.metadata, state=EXCLUDED.state, title=EXCLUDED.title,"
    " message_count=EXCLUDED.message_count"
)
_UPSERT_MESSAGE = (
    "INSERT INTO loopwright_messages (session_id, seq, data) VALUES (%s,%s,%s)"
    " ON CONFLICT (session_id, seq) DO UPDATE SET data=EXCLUDED.data"
)


class PostgresStore(SessionStore):
    """Sessions in PostgreSQL: ``PostgresStore("postgresql://user@host/db")``."""

    def __init__(self, dsn: str, *, connect_timeout: float = 10.0) -> None:
        try:
            import psycopg  # noqa: F401
        except ImportError:  # pragma: no cover - the extra is installed by make
            raise ImportError(
                "the PostgreSQL session store needs psycopg; install loopwright[sql]"
            ) from None
        self.dsn = dsn
        self.connect_timeout = connect_timeout
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        with self._lock:
            self._run(self._create_schema)

    @staticmethod
    def _create_schema(conn: psycopg.Connection[Any]) -> None:
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
        conn.execute(_SCHEMA)

    def describe(self) -> str:
        from psycopg.conninfo import conninfo_to_dict

        info = conninfo_to_dict(self.dsn)
        where = f"{info.get('host', 'localhost')}:{info.get('port', 5432)}/{info.get('dbname', '')}"
        return f"the PostgreSQL session store {where}"

    # --- connection -----------------------------------------------------------------------

    def _connect(self) -> psycopg.Connection[Any]:
        import psycopg

        if self._conn is None or self._conn.closed:
            try:
                self._conn = psycopg.connect(
                    self.dsn, connect_timeout=max(1, int(self.connect_timeout))
                )
            except psycopg.OperationalError as exc:
                raise ConnectionError(
                    f"cannot connect to {self.describe()}: {str(exc).strip()}; check the DSN "
                    "and that the server is running"
                ) from None
        return self._conn

    def _run(self, work: Any) -> Any:
        """Run ``work(conn)`` in one transaction; reconnect once if the connection was lost."""
        import psycopg

        for attempt in (1, 2):
            conn = self._connect()
            try:
                with conn.transaction():
                    return work(conn)
            except psycopg.OperationalError:
                if attempt == 2 or not conn.closed:
                    raise
                self._conn = None  # the server closed it: one fresh connection
        raise AssertionError("unreachable")

    # --- the store interface --------------------------------------------------------------

    def save(self, session: Session) -> None:
        from psycopg.types.json import Jsonb

        start = session.dirty_from
        messages = session.messages
        rows = [
            (session.id, seq, Jsonb(messages[seq].to_dict(), dumps=_jsonb_text))
            for seq in range(start, len(messages))
        ]
        header = (
            session.id,
            str(session.workspace_dir),
            session.created_at,
            session.updated_at,
            Jsonb(session.usage.to_dict()),
            Jsonb(json.loads(json.dumps(session.metadata, default=str))),
            Jsonb(session.state()),
            title_of(session.messages[:4]),
            len(messages),
        )
        shrunk = len(messages) < session.stored_count

        def work(conn: psycopg.Connection[Any]) -> None:
            conn.execute(_UPSERT_SESSION, header)
            if shrunk:
                conn.execute(
                    "DELETE FROM loopwright_messages WHERE session_id=%s AND seq>=%s",
                    (session.id, len(messages)),
                )
            if rows:
                with conn.cursor() as cursor:
                    cursor.executemany(_UPSERT_MESSAGE, rows)

        with self._lock:
            self._run(work)

    def load(self, session_id: str) -> Session | None:
        def work(conn: psycopg.Connection[Any]) -> tuple[Any, list[Any]] | None:
            row = conn.execute(
                "SELECT workspace, created_at, updated_at, usage, metadata, state"
                " FROM loopwright_sessions WHERE id=%s",
                (session_id,),
            ).fetchone()
            if row is None:
                return None
            data = conn.execute(
                "SELECT data FROM loopwright_messages WHERE session_id=%s ORDER BY seq",
                (session_id,),
            ).fetchall()
            return row, data

        with self._lock:
            found = self._run(work)
        if found is None:
            return None
        (workspace, created_at, updated_at, usage, metadata, state), data = found
        return decode_record(
            session_id,
            self.describe(),
            lambda: Session(
                session_id,
                workspace,
                messages=[Message.from_dict(item) for (item,) in data],
                usage=Usage.from_dict(usage),
                metadata=metadata,
                store=self,
                created_at=created_at,
                updated_at=updated_at,
                **Session.state_arguments(state),
            ),
        )

    def exists(self, session_id: str) -> bool:
        with self._lock:
            row = self._run(
                lambda conn: conn.execute(
                    "SELECT 1 FROM loopwright_sessions WHERE id=%s", (session_id,)
                ).fetchone()
            )
        return row is not None

    def list(self) -> list[SessionInfo]:
        with self._lock:
            rows = self._run(
                lambda conn: conn.execute(
                    "SELECT id, workspace, created_at, updated_at, message_count, usage, title,"
                    " metadata FROM loopwright_sessions ORDER BY updated_at DESC"
                ).fetchall()
            )
        return [listed_info(row[0], self.describe(), row[1:], lambda value: value) for row in rows]

    def delete(self, session_id: str) -> bool:
        def work(conn: psycopg.Connection[Any]) -> int:
            conn.execute("DELETE FROM loopwright_leases WHERE session_id=%s", (session_id,))
            return conn.execute(
                "DELETE FROM loopwright_sessions WHERE id=%s", (session_id,)
            ).rowcount

        with self._lock:
            count = self._run(work)
        return bool(count)

    def claim(self, session_id: str, owner: str, ttl: float) -> bool:
        with self._lock:
            count = self._run(lambda conn: conn.execute(_CLAIM, (session_id, owner, ttl)).rowcount)
        return bool(count == 1)

    def release(self, session_id: str, owner: str) -> None:
        with self._lock:
            self._run(
                lambda conn: conn.execute(
                    "DELETE FROM loopwright_leases WHERE session_id=%s AND owner=%s",
                    (session_id, owner),
                )
            )

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None


def _jsonb_text(value: Any) -> str:
    """A message as JSON PostgreSQL's jsonb takes: it refuses a lone surrogate (``\\udcff``:
    how Python keeps a byte that is not UTF-8, from a file name), stored as U+FFFD."""
    return storable_text(json.dumps(value, ensure_ascii=False))
