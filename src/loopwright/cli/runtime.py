"""What the ``run`` and ``chat`` commands share: the agent, the session, exit statuses.

Imported only by command functions (it loads the agent), never at CLI start-up.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from loopwright.agent import Agent
from loopwright.models.base import ModelError
from loopwright.sessions.session import Session, new_session_id, validate_session_id
from loopwright.sessions.sqlite import SQLiteStore
from loopwright.tools.files import ReadTool, WriteTool

SYSTEM_PROMPT = (
    "You are an autonomous agent working in a workspace directory on the user's behalf. Use "
    "the tools to read and write files in the workspace; paths are relative to it. Work step "
    "by step until the task is done, then answer with a short summary of what you did."
)

#: ``done.stop_reason`` values that mean a limit stopped the run (exit status 2).
LIMIT_REASONS = frozenset({"max_turns", "token_budget", "cost_budget", "timeout", "stuck_loop"})

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_LIMIT = 2
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


class CliError(Exception):
    """An error the user can act on: one sentence, printed without a traceback."""

    def __init__(self, message: str, exit_code: int = EXIT_ERROR) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def exit_code_for(stop_reason: str) -> int:
    """The process exit status for a run that ended with ``stop_reason``."""
    if stop_reason == "end_turn":
        return EXIT_OK
    if stop_reason in LIMIT_REASONS:
        return EXIT_LIMIT
    if stop_reason == "cancelled":
        return EXIT_INTERRUPTED
    return EXIT_ERROR


@dataclass(slots=True)
class Setup:
    """A ready agent and the session it works in (created on first use when it is new)."""

    agent: Agent
    session_id: str
    existing: Session | None

    def session(self) -> Session:
        """The session, saved to the store (and given its workspace) if it is new."""
        if self.existing is None:
            try:
                self.existing = self.agent.new_session(self.session_id)
            except (OSError, sqlite3.Error) as exc:
                raise CliError(
                    f"cannot create session {self.session_id} ({exc}); check that "
                    "LOOPWRIGHT_HOME points to a writable directory"
                ) from None
        return self.existing


def open_store() -> SQLiteStore:
    """The default session store, or a :class:`CliError` saying why it cannot be opened."""
    try:
        return SQLiteStore.default()
    except (OSError, sqlite3.Error) as exc:
        from loopwright.config import sessions_db_path

        raise CliError(
            f"cannot open the session store {sessions_db_path()} ({exc}); check that "
            "LOOPWRIGHT_HOME points to a writable directory"
        ) from None


def build_agent(
    model: str,
    *,
    store: SQLiteStore,
    max_turns: int | None = 50,
    timeout: float | None = None,
) -> Agent:
    """An agent with the built-in file tools, or a :class:`CliError` for a bad model string."""
    try:
        return Agent(
            model,
            system_prompt=SYSTEM_PROMPT,
            tools=[ReadTool, WriteTool],
            name="loopwright",
            max_turns=max_turns,
            timeout=timeout,
            store=store,
        )
    except ModelError as exc:
        raise CliError(f"{exc} (choose one with --model)", EXIT_USAGE) from None


def setup(
    model: str,
    session_id: str | None,
    *,
    max_turns: int | None = 50,
    timeout: float | None = None,
) -> Setup:
    """The agent and the session to continue (or the id of the one to create), with user
    errors (bad model, bad session id, unwritable data directory) as :class:`CliError`."""
    store = open_store()
    agent = build_agent(model, store=store, max_turns=max_turns, timeout=timeout)
    if session_id is None:
        return Setup(agent, new_session_id(), None)
    try:
        validate_session_id(session_id)
        if store.exists(session_id):
            return Setup(agent, session_id, Session.resume(session_id, store=store))
    except ValueError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    except (OSError, sqlite3.Error) as exc:
        raise CliError(
            f"cannot open session {session_id} ({exc}); check that LOOPWRIGHT_HOME points to "
            "a writable directory"
        ) from None
    return Setup(agent, session_id, None)
