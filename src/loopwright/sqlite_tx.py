"""One write transaction on a SQLite connection in autocommit mode (``isolation_level=None``).

``BEGIN IMMEDIATE`` takes the write lock up front, so two processes sharing a file never
both read and then fail to upgrade; anything raised inside (or a failed ``COMMIT``) rolls
back, so the connection is never left inside a transaction.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def write_transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """``with write_transaction(db) as db: ...``: committed at the end, rolled back on error."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
