"""Sessions: conversation history, workspace and usage, persisted after every step."""

from loopwright.sessions.session import Session, validate_session_id
from loopwright.sessions.sqlite import SQLiteStore
from loopwright.sessions.store import MemoryStore, SessionInfo, SessionStore

__all__ = [
    "MemoryStore",
    "SQLiteStore",
    "Session",
    "SessionInfo",
    "SessionStore",
    "validate_session_id",
]
