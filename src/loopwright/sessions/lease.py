"""A turn's lease on its session, for processes that share a session store.

Several servers (or serverless containers) on one database must never run two turns of a
session at once. Before a turn, take a :class:`TurnLease` (``SessionStore.claim``); while the
turn runs it is renewed every third of its time to live; release it just before the turn's
``done`` event goes out, so the next turn can start anywhere at once. A process that dies
mid-turn holds the session until its lease runs out.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid

from loopwright.sessions.store import SessionStore

#: seconds a lease lasts unless renewed
LEASE_TTL_S = 60.0

log = logging.getLogger("loopwright.sessions")


def process_owner() -> str:
    """A name for this process on its leases: host, pid and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class SessionLeased(Exception):
    """Another process is running a turn in the session."""

    def __init__(self, session_id: str) -> None:
        super().__init__(
            f"a turn is already running in session {session_id!r} elsewhere; send the next "
            "message after its done event"
        )
        self.session_id = session_id


class TurnLease:
    """``owner``'s lease on ``session_id`` in ``store`` for one turn.

    :meth:`acquire` takes it (synchronously: call it before anything else claims the
    session) and starts renewing it; :meth:`release` ends it (idempotent, never raises).
    """

    def __init__(
        self, store: SessionStore, session_id: str, owner: str, ttl: float = LEASE_TTL_S
    ) -> None:
        self.store = store
        self.session_id = session_id
        self.owner = owner
        self.ttl = ttl
        self._renewing: asyncio.Task[None] | None = None
        self._held = False

    def acquire(self) -> None:
        """Take the lease, or raise :class:`SessionLeased`; renewals start with the event
        loop's next turn (when there is a running loop)."""
        if not self.store.claim(self.session_id, self.owner, self.ttl):
            raise SessionLeased(self.session_id)
        self._held = True
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return
        self._renewing = loop.create_task(self._renew(), name=f"lease {self.session_id}")

    async def _renew(self) -> None:
        while True:
            await asyncio.sleep(self.ttl / 3)
            try:
                held = await asyncio.to_thread(
                    self.store.claim, self.session_id, self.owner, self.ttl
                )
            except Exception as exc:  # the store is down: the next renewal may succeed
                log.warning("could not renew the lease on session %s: %s", self.session_id, exc)
                continue
            if not held:
                log.warning(
                    "the lease on session %s ran out and another process took it; this turn "
                    "goes on, but both may now write the session",
                    self.session_id,
                )

    async def release(self) -> None:
        """Stop renewing and give the lease back (it runs out by itself if that fails)."""
        if self._renewing is not None:
            self._renewing.cancel()
            self._renewing = None
        if not self._held:
            return
        self._held = False
        try:
            await asyncio.shield(asyncio.to_thread(self.store.release, self.session_id, self.owner))
        except Exception as exc:
            log.warning("could not release the lease on session %s: %s", self.session_id, exc)

    def release_now(self) -> None:
        """:meth:`release`, synchronously (for a turn that never started)."""
        if self._renewing is not None:
            self._renewing.cancel()
            self._renewing = None
        if self._held:
            self._held = False
            try:
                self.store.release(self.session_id, self.owner)
            except Exception as exc:
                log.warning("could not release the lease on session %s: %s", self.session_id, exc)
