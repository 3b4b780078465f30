"""The session store interface and the in-memory store."""

from __future__ import annotations

import json
import re
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from loopwright.events import Usage
from loopwright.messages import Message
from loopwright.sessions.session import Session

T = TypeVar("T")


@dataclass(slots=True)
class SessionInfo:
    """A line of ``sessions list``."""

    id: str
    workspace_dir: str
    created_at: float
    updated_at: float
    message_count: int
    usage: Usage
    title: str
    #: the session's metadata (its owner, a parent session...)
    metadata: dict[str, Any] = field(default_factory=dict)


class SessionDamaged(ValueError):
    """A saved session's record that cannot be read back (JSON that does not parse, a
    message of an unknown shape): the store says which session and where; the record is
    left as it is (``delete`` still removes it)."""

    def __init__(self, session_id: str, where: str, detail: str) -> None:
        super().__init__(f"the record of session {session_id} in {where} is damaged ({detail})")
        self.session_id, self.where, self.detail = session_id, where, detail


def decode_record(session_id: str, where: str, decode: Callable[[], T]) -> T:
    """``decode()``, with what a damaged record raises on the way (bad JSON, a field of the
    wrong type or missing) as a :class:`SessionDamaged` about ``session_id``."""
    try:
        return decode()
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        if isinstance(exc, SessionDamaged):
            raise
        detail = f"{type(exc).__name__}: {exc}"[:200]
        raise SessionDamaged(session_id, where, detail) from exc


def listed_info(
    session_id: str, where: str, row: tuple[Any, ...], decode: Callable[[Any], Any]
) -> SessionInfo:
    """A :class:`SessionInfo` from a store's row (``workspace, created_at, updated_at,
    message_count, usage, title, metadata``; ``decode`` turns a stored JSON value into
    Python): a damaged record is listed too, titled as such, not the end of the list."""
    workspace, created_at, updated_at, count, usage, title, metadata = row
    try:
        return decode_record(
            session_id,
            where,
            lambda: SessionInfo(
                session_id,
                workspace,
                created_at,
                updated_at,
                count,
                Usage.from_dict(decode(usage)),
                title,
                _mapping(decode(metadata)),
            ),
        )
    except SessionDamaged:
        created, updated = (float(v) if isinstance(v, int | float) else 0.0 for v in row[1:3])
        return SessionInfo(session_id, str(workspace), created, updated, 0, Usage(), DAMAGED_TITLE)


#: The title ``list`` gives a session whose record cannot be read back.
DAMAGED_TITLE = "(damaged record: see `loopwright sessions show`)"


def _mapping(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


class SessionStore(ABC):
    """Persists sessions. ``save`` writes only what changed since the last save."""

    @abstractmethod
    def save(self, session: Session) -> None:
        """Persist the session's header and every message from ``session.dirty_from`` on."""

    @abstractmethod
    def load(self, session_id: str) -> Session | None:
        """The saved session, attached to this store, or ``None``; a record that cannot be
        read back is a :class:`SessionDamaged`."""

    @abstractmethod
    def exists(self, session_id: str) -> bool:
        """Whether a session with this id is saved."""

    @abstractmethod
    def list(self) -> list[SessionInfo]:
        """Saved sessions, most recently updated first (a damaged record too, titled
        :data:`DAMAGED_TITLE`)."""

    @abstractmethod
    def delete(self, session_id: str) -> bool:
        """Forget a session (its workspace directory is left to the caller). True if it existed."""

    def claim(self, session_id: str, owner: str, ttl: float) -> bool:
        """Lease the session's next turn to ``owner`` for ``ttl`` seconds, or renew its lease.

        False while another owner holds an unexpired lease. Servers sharing a store take one
        before running a turn (and renew it while the turn runs), so two processes never run
        the same session at once; a crashed owner's lease runs out after ``ttl``. This
        default keeps the leases in this process, which is right for a store no other process
        writes; stores shared between processes keep them in the database.
        """
        leases: dict[str, tuple[str, float]] = self.__dict__.setdefault("_local_leases", {})
        now = time.monotonic()
        holder, expires = leases.get(session_id, (owner, now))
        if holder != owner and expires > now:
            return False
        leases[session_id] = (owner, now + ttl)
        return True

    def release(self, session_id: str, owner: str) -> None:
        """End ``owner``'s lease on the session (nothing if it holds none)."""
        leases: dict[str, tuple[str, float]] = self.__dict__.setdefault("_local_leases", {})
        if leases.get(session_id, ("", 0.0))[0] == owner:
            del leases[session_id]

    def describe(self) -> str:
        """Where the store keeps its data, for messages."""
        return type(self).__name__

    def close(self) -> None:
        """Release connections."""


def listed_workspace(store: SessionStore, session_id: str) -> str | None:
    """The workspace a session's listed row names (``None``: no such session): what a
    damaged record, which ``load`` refuses, still tells, so it can be removed whole."""
    return next((i.workspace_dir for i in store.list() if i.id == session_id), None)


def title_of(messages: list[Message]) -> str:
    """The first user text, shortened: what the session was about (a byte that is not UTF-8,
    kept as a lone surrogate, shown as U+FFFD: a database cannot store it)."""
    for message in messages:
        if message.role == "user" and message.text:
            line = message.text.strip().splitlines()[0] if message.text.strip() else ""
            return storable_text(line[:80])
    return ""


def storable_text(text: str) -> str:
    """``text`` with each lone surrogate (how Python keeps a byte that is not UTF-8: a file
    name, a program's output) as U+FFFD, which UTF-8, so a database, can store."""
    if text.isascii():
        return text
    return _LONE_SURROGATE.sub("\ufffd", text)


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def json_text(value: Any) -> str:
    """``value`` as JSON text a UTF-8 database stores: non-ASCII characters as they are, but
    escaped (``\\udcff``) where a lone surrogate is among them, so it reads back the same."""
    text = json.dumps(value, ensure_ascii=False)
    if text.isascii():  # most messages: nothing to check
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(value)
    return text


class MemoryStore(SessionStore):
    """Keeps sessions in this process only (tests, benchmarks, throwaway runs)."""

    def __init__(self) -> None:
        self._sessions: dict[str, Session] = {}

    def save(self, session: Session) -> None:
        self._sessions[session.id] = session

    def load(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)

    def exists(self, session_id: str) -> bool:
        return session_id in self._sessions

    def list(self) -> list[SessionInfo]:
        infos = [
            SessionInfo(
                s.id,
                str(s.workspace_dir),
                s.created_at,
                s.updated_at,
                len(s.messages),
                s.usage,
                title_of(s.messages),
                dict(s.metadata),
            )
            for s in self._sessions.values()
        ]
        return sorted(infos, key=lambda info: info.updated_at, reverse=True)

    def delete(self, session_id: str) -> bool:
        self.__dict__.get("_local_leases", {}).pop(session_id, None)
        return self._sessions.pop(session_id, None) is not None

    def describe(self) -> str:
        return "the in-memory session store"


def open_store(url: str) -> SessionStore:
    """A store from a URL: ``sqlite:///path/sessions.db``, ``postgresql://...``, ``memory``."""
    if url == "memory":
        return MemoryStore()
    if url.startswith(("postgresql://", "postgres://")):
        from loopwright.sessions.postgres import PostgresStore

        return PostgresStore(url)
    if url.startswith("sqlite://"):
        from loopwright.sessions.sqlite import SQLiteStore

        path = url.removeprefix("sqlite://")
        if not path.startswith("/"):
            raise ValueError(
                f"invalid store URL {url!r}: give an absolute path, e.g. "
                "sqlite:///var/lib/loopwright/sessions.db"
            )
        return SQLiteStore(path)
    raise ValueError(
        f"unknown session store URL {url!r}: use sqlite:///PATH, postgresql://USER@HOST/DB "
        "or memory"
    )


def default_store() -> SessionStore:
    """The store ``LOOPWRIGHT_STORE`` names, else SQLite at ``<LOOPWRIGHT_HOME>/sessions.db``."""
    import os

    url = os.environ.get("LOOPWRIGHT_STORE")
    if url:
        return open_store(url)
    from loopwright.sessions.sqlite import SQLiteStore

    return SQLiteStore.default()
