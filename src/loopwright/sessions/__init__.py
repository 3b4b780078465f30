"""Sessions: conversation history, workspace and usage, persisted after every step.

Stores: :class:`SQLiteStore` (default), ``loopwright.sessions.postgres.PostgresStore``
(several processes and machines), :class:`MemoryStore` (tests).
"""

from loopwright.sessions.session import Session, validate_session_id
from loopwright.sessions.sqlite import SQLiteStore
from loopwright.sessions.store import (
    MemoryStore,
    SessionDamaged,
    SessionInfo,
    SessionStore,
    default_store,
    open_store,
)

__all__ = [
    "MemoryStore",
    "SQLiteStore",
    "Session",
    "SessionDamaged",
    "SessionInfo",
    "SessionStore",
    "default_store",
    "open_store",
    "validate_session_id",
]
