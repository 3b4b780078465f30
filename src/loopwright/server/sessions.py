"""Sessions as the server sees them: who owns each, and the live objects it runs.

The owner is stored in the session's metadata (``metadata["owner"]``), so it travels with the
session through any :class:`~loopwright.sessions.store.SessionStore`. A user sees only their
own sessions; anyone else's, like one that does not exist, is "not found". With
authentication off the caller is ``local``, who also sees sessions that have no owner (those
made by ``loopwright run`` and ``chat``).

The store is called from the event loop, as the agent itself does after every step.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from loopwright.agent import Agent
from loopwright.server.auth import LOCAL_USER, User
from loopwright.sessions.session import Session, validate_session_id
from loopwright.sessions.store import (
    SessionDamaged,
    SessionInfo,
    SessionStore,
    listed_workspace,
)

OWNER_KEY = "owner"


class SessionNotFound(LookupError):
    """No session with this id that the caller may see."""

    def __init__(self, session_id: str) -> None:
        super().__init__(
            f"no session {session_id!r} for this user; list yours with GET /api/sessions or "
            "create one with POST /api/sessions"
        )


@dataclass(frozen=True, slots=True)
class SessionHeader:
    """What never changes about a session: its owner and its workspace directory."""

    id: str
    owner: str | None
    workspace_dir: Path


class SessionAccess:
    """Ownership checks and the cache of live :class:`Session` objects.

    A live session keeps its tools' state (shells, connections) between turns; up to
    ``keep_live`` idle ones are kept, least recently used dropped first (their tools closed).

    ``shared``: other processes write to the same store (several servers on one PostgreSQL
    database). Then every turn starts from the store's copy of the session, so a turn taken
    meanwhile on another server is not lost (loading costs time in proportion to the
    history). Otherwise this server is the only writer of the sessions it runs, and a live
    session is used as it is.

    ``metadata``: what each session created here records besides its owner.
    """

    def __init__(
        self,
        agent: Agent,
        store: SessionStore,
        *,
        auth_enabled: bool,
        is_running: Callable[[str], bool],
        shared: bool = False,
        keep_live: int = 256,
        metadata: Mapping[str, Any] | None = None,
    ) -> None:
        self.agent = agent
        self.store = store
        self.auth_enabled = auth_enabled
        self.shared = shared
        self.is_running = is_running
        self.keep_live = keep_live
        self.metadata = dict(metadata or {})
        self._headers: dict[str, SessionHeader] = {}
        self._live: OrderedDict[str, Session] = OrderedDict()
        self._closing: list[Session] = []

    # --- ownership -------------------------------------------------------------------

    def may_see(self, owner: str | None, user: User) -> bool:
        if owner is None:
            return not self.auth_enabled and user.name == LOCAL_USER
        return owner == user.name

    def header(self, user: User, session_id: str) -> SessionHeader:
        """The session's owner and workspace, or :class:`SessionNotFound`."""
        header = self._headers.get(session_id)
        if header is None:
            self._load_checked(session_id)
            header = self._headers[session_id]
        if not self.may_see(header.owner, user):
            raise SessionNotFound(session_id)
        return header

    def _remember(self, session: Session) -> SessionHeader:
        metadata = session.metadata if isinstance(session.metadata, dict) else {}  # damaged
        owner = metadata.get(OWNER_KEY)
        header = SessionHeader(
            session.id, owner if isinstance(owner, str) else None, session.workspace_dir
        )
        self._headers[session.id] = header
        return header

    def _load_checked(self, session_id: str) -> Session:
        try:
            validate_session_id(session_id)
        except ValueError:
            raise SessionNotFound(session_id) from None
        try:
            session = self.store.load(session_id)
        except SessionDamaged:
            if self.auth_enabled:  # whose it is cannot be read: nobody's, to anyone asking
                raise SessionNotFound(session_id) from None
            raise
        if session is None:
            self._headers.pop(session_id, None)
            raise SessionNotFound(session_id)
        self._remember(session)
        return session

    # --- reading and creating --------------------------------------------------------

    def create(self, user: User) -> Session:
        """A new session owned by ``user``, saved to the store, with its workspace."""
        session = Session.create(
            root=self.agent.workspace_root,
            store=self.store,
            metadata={**self.metadata, OWNER_KEY: user.name},
        )
        self._remember(session)
        self._live[session.id] = session
        self._evict()
        return session

    def get(self, user: User, session_id: str) -> Session:
        """The session as it is now: the live object while a turn runs (or when this server
        is its only writer), else the store's copy."""
        live = self._live.get(session_id)
        if live is not None and (not self.shared or self.is_running(session_id)):
            self.header(user, session_id)
            return live
        session = self._load_checked(session_id)
        if not self.may_see(self._headers[session_id].owner, user):
            raise SessionNotFound(session_id)
        return session

    def list(self, user: User) -> list[SessionInfo]:
        """The user's sessions, most recently updated first."""
        mine: list[SessionInfo] = []
        for info in self.store.list():
            owner = info.metadata.get(OWNER_KEY)
            if self.may_see(owner if isinstance(owner, str) else None, user):
                mine.append(info)
        return mine

    # --- removing --------------------------------------------------------------------

    def workspace_to_remove(self, user: User, session_id: str) -> Path | None:
        """The workspace of a session ``user`` may remove (``None``: the store's row names
        none), or :class:`SessionNotFound`. A damaged record is the local user's to remove
        (with tokens on, whose it is cannot be read: nobody's)."""
        try:
            return self.header(user, session_id).workspace_dir
        except SessionDamaged:  # raised only with tokens off
            listed = listed_workspace(self.store, session_id)
            return None if listed is None else Path(listed)

    def forget(self, session_id: str) -> None:
        """Drop a removed session from the caches; its live object's tools are closed at
        the next :meth:`drop_closed`."""
        self._headers.pop(session_id, None)
        live = self._live.pop(session_id, None)
        if live is not None:
            self._closing.append(live)

    # --- running ---------------------------------------------------------------------

    def for_run(self, user: User, session_id: str) -> Session:
        """The session object to run a turn in: the live one (with a shared store, only if
        the store has nothing newer), else the store's copy (the replaced live one's tools are
        closed later by :meth:`drop_closed`)."""
        live = self._live.get(session_id)
        if live is not None and not self.shared:
            self.header(user, session_id)
            self._live.move_to_end(session_id)
            return live
        fresh = self._load_checked(session_id)
        if not self.may_see(self._headers[session_id].owner, user):
            raise SessionNotFound(session_id)
        if live is not None and live.holds_saved(fresh):
            self._live.move_to_end(session_id)
            return live
        if live is not None:
            self._closing.append(live)
        if not fresh.workspace_dir.is_dir():
            fresh.workspace_dir.mkdir(parents=True, exist_ok=True)
        self._live[session_id] = fresh
        self._live.move_to_end(session_id)
        self._evict()
        return fresh

    def _evict(self) -> None:
        excess = len(self._live) - self.keep_live
        if excess <= 0:
            return
        idle: list[str] = []
        for sid in self._live:  # least recently used first; running sessions stay
            if len(idle) == excess:
                break
            if not self.is_running(sid):
                idle.append(sid)
        for sid in idle:
            self._closing.append(self._live.pop(sid))

    async def drop_closed(self) -> None:
        """Close the tools of sessions no longer kept live."""
        closing, self._closing = self._closing, []
        for session in closing:
            await self.agent.close_session(session)

    async def aclose(self) -> None:
        """Close every live session's tools (the server is stopping)."""
        self._closing.extend(self._live.values())
        self._live.clear()
        await self.drop_closed()
