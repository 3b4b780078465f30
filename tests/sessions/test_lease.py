"""TurnLease: taken, renewed while a turn runs, given back once; store failures only logged."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from loopwright import SQLiteStore
from loopwright.sessions.lease import SessionLeased, TurnLease, process_owner


def test_owners_are_unique_per_lease_holder() -> None:
    assert process_owner() != process_owner()


def test_a_held_session_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    first = TurnLease(store, "s1", "a")
    first.acquire()  # no event loop: nothing renews it, nothing needs to
    with pytest.raises(SessionLeased, match="already running in session 's1'"):
        TurnLease(store, "s1", "b").acquire()
    first.release_now()
    first.release_now()  # once is enough; again does nothing
    TurnLease(store, "s1", "b").acquire()


def test_the_lease_is_renewed_while_the_turn_runs(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "s.db")

    async def turn() -> None:
        lease = TurnLease(store, "s1", "a", ttl=0.3)
        lease.acquire()
        await asyncio.sleep(1.0)  # more than three lifetimes of an unrenewed lease
        assert not store.claim("s1", "b", ttl=60)
        await lease.release()
        await lease.release()
        assert store.claim("s1", "b", ttl=60)

    asyncio.run(turn())


def test_a_store_that_fails_on_release_is_only_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    store = SQLiteStore(tmp_path / "s.db")
    lease = TurnLease(store, "s1", "a")
    lease.acquire()
    store.close()  # the database went away
    with caplog.at_level(logging.WARNING, logger="loopwright.sessions"):
        asyncio.run(lease.release())
    assert "could not release the lease on session s1" in caplog.text
