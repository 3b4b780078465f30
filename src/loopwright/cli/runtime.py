"""What the ``run`` and ``chat`` commands share: the agent, the session, exit statuses.

Imported only by command functions (it loads the agent), never at CLI start-up.
"""

from __future__ import annotations

import contextlib
import math
import shlex
import sqlite3
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from loopwright.agent import Agent, ToolSpec
from loopwright.instrument import Instrument
from loopwright.models import ModelChoice, describe_default
from loopwright.models.base import ModelError
from loopwright.prompts import WORKSPACE_AGENT
from loopwright.sessions.lease import SessionLeased, TurnLease, process_owner
from loopwright.sessions.session import Session, new_session_id, validate_session_id
from loopwright.sessions.store import SessionDamaged, SessionStore
from loopwright.tools.files import EditTool, GlobTool, ReadTool, WriteTool
from loopwright.tools.grep import GrepTool
from loopwright.tools.python import PythonTools
from loopwright.tools.shell import ShellTools

if TYPE_CHECKING:
    from loopwright.policy import Policy

SYSTEM_PROMPT = WORKSPACE_AGENT

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


class SessionBusy(CliError):
    """Another process holds the session's turn lease (it is running a turn in it)."""


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
    """A ready agent and the session it works in (created on first use when it is new).

    ``metadata`` is what the session records about the agent that works in it (the healthcare
    agent: its name and database), given to a new session and updated on an existing one at
    its next turn."""

    agent: Agent
    session_id: str
    existing: Session | None
    metadata: dict[str, Any] = field(default_factory=dict)

    def session(self) -> Session:
        """The session, saved to the store (and given its workspace) if it is new."""
        if self.existing is None:
            try:
                self.existing = self.agent.new_session(self.session_id, **self.metadata)
            except (OSError, sqlite3.Error) as exc:
                raise CliError(
                    f"cannot create session {self.session_id} ({exc}); check that "
                    "LOOPWRIGHT_HOME points to a writable directory"
                ) from None
        return self.existing

    @contextlib.asynccontextmanager
    async def turn(self) -> AsyncIterator[Session]:
        """The session for one turn: leased in the store while the turn runs, and as the
        store has it now.

        Another process (a second ``healthcare``/``chat``/``run`` on the same id) may run
        the session too: without the lease both would write its history at once, each over
        the other's messages; without loading it again, a chat would write over the turns
        taken elsewhere since it loaded the session. A session another process holds is a
        :class:`CliError`."""
        store = self.agent.store
        lease = TurnLease(store, self.session_id, process_owner())
        _take(lease)
        try:
            yield await self._current()
        finally:
            lease.release_now()

    async def _current(self) -> Session:
        """The session as the store has it (created if it is new), replacing a stale copy."""
        existing = self.existing
        try:
            stored = self.agent.store.load(self.session_id)
            if stored is None:
                if existing is not None:  # removed meanwhile: saved again, whole
                    existing.touch(0)
                session = self.session()
            elif existing is not None and existing.holds_saved(stored):
                session = existing
            else:
                if existing is not None:  # its tools (a Python process...) are closed
                    await self.agent.close_session(existing)
                session = self.existing = stored
            session.workspace_dir.mkdir(parents=True, exist_ok=True)  # deleted meanwhile
            mend_metadata(session)  # said at start-up (:func:`load_session`)
        except (OSError, sqlite3.Error) as exc:
            raise CliError(
                f"cannot open session {self.session_id} ({exc}); check that LOOPWRIGHT_HOME "
                "points to a writable directory"
            ) from None
        if any(key in self.metadata for key in DATA_KEYS):
            # the data is recorded whole: a database given after generated data (or the
            # reverse) must not leave the other's key behind, which a later continuation
            # would take for the data the session works on
            for key in DATA_KEYS:
                session.metadata.pop(key, None)
        session.metadata.update(self.metadata)  # saved with the turn's first message
        return session


def _take(lease: TurnLease) -> None:
    """Acquire ``lease``, or a :class:`SessionBusy` (another process holds it) or a
    :class:`CliError` (the store failed)."""
    try:
        lease.acquire()
    except SessionLeased:
        raise SessionBusy(
            f"session {lease.session_id} is busy: another process is running a turn in it; "
            "try again when that turn has ended (a process that was killed holds it for up "
            "to a minute)"
        ) from None
    except (OSError, sqlite3.Error) as exc:
        raise CliError(f"cannot open session {lease.session_id} ({exc})") from None


#: How long the lease :func:`refuse_busy` takes lasts if it cannot give it back (seconds).
PROBE_TTL = 5.0


def refuse_busy(store: SessionStore, session_id: str) -> None:
    """A :class:`SessionBusy` now if another process is running a turn in the session (it
    holds the session's turn lease): a command about to run a turn says so before a slow
    set-up (a database build), not after it. The lease is taken and given back at once, so
    the turn itself still takes its own (the session may be taken meanwhile: the turn then
    says so)."""
    lease = TurnLease(store, session_id, process_owner(), ttl=PROBE_TTL)
    _take(lease)
    lease.release_now()


def hold_idle(store: SessionStore, session_id: str) -> TurnLease:
    """The session's turn lease, taken for a change made outside any turn (removing it),
    or a :class:`SessionBusy` while another process runs a turn in it. It is held for
    :data:`PROBE_TTL` seconds, not renewed: make the change and give it back
    (``release_now()``)."""
    lease = TurnLease(store, session_id, process_owner(), ttl=PROBE_TTL)
    _take(lease)
    return lease


def load_session(store: SessionStore, session_id: str) -> Session | None:
    """The saved session (``None``: there is none), read once for a command's start-up; a
    record the store cannot read is a :class:`CliError` saying so, and metadata that is not
    a mapping (a damaged record) is set aside with a note, the history kept."""
    try:
        session = store.load(session_id)
    except SessionDamaged as exc:  # json, a message's shape...: what was written is damaged
        raise CliError(damaged_message(exc)) from None
    except (OSError, sqlite3.Error) as exc:
        raise CliError(
            f"cannot open session {session_id} ({exc}); check that LOOPWRIGHT_HOME points "
            "to a writable directory"
        ) from None
    if session is not None and mend_metadata(session):
        print(
            f"note: session {session_id} has damaged metadata in the store (not a mapping of "
            "names to values), so what it recorded (its agent, its data) is not known; it "
            "continues with its history, and its next turn records new metadata",
            file=sys.stderr,
            flush=True,
        )
    return session


def damaged_message(exc: SessionDamaged) -> str:
    """What to tell the user of a session whose record cannot be read back."""
    quoted = shlex.quote(exc.session_id)
    return (
        f"cannot read session {exc.session_id}: its record in {exc.where} is damaged "
        f"({exc.detail}); start a new session instead (`loopwright sessions rm {quoted}` "
        "removes this one)"
    )


def mend_metadata(session: Session) -> bool:
    """Replace ``session``'s metadata by an empty mapping if it is not one (a damaged
    record: every reader takes it for a dict); whether it was replaced."""
    if isinstance(session.metadata, dict):
        return False
    session.metadata = {}
    return True


def open_store() -> SessionStore:
    """The session store (``LOOPWRIGHT_STORE``, else SQLite in the data directory), or a
    :class:`CliError` saying why it cannot be opened."""
    import os

    from loopwright.sessions.store import default_store

    try:
        return default_store()
    except ValueError as exc:
        raise CliError(f"LOOPWRIGHT_STORE: {exc}") from None
    except (OSError, sqlite3.Error) as exc:
        from loopwright.config import sessions_db_path

        where = os.environ.get("LOOPWRIGHT_STORE") or str(sessions_db_path())
        raise CliError(
            f"cannot open the session store {where} ({exc}); check LOOPWRIGHT_STORE, or that "
            "LOOPWRIGHT_HOME points to a writable directory"
        ) from None


def choose_model(model: str) -> ModelChoice:
    """The model string to use and why: ``auto`` (or empty) means the default selection
    (Anthropic, then OpenAI, then the embedded model, by which API keys are set)."""
    if model.strip().lower() in ("", "auto"):
        return describe_default()
    return ModelChoice(model.strip(), "from --model")


def announce_model(choice: ModelChoice, name: str) -> None:
    """Say on stderr which model runs (``name`` is the model's own name) and why; stdout
    stays the answer, or pure JSON."""
    shown = choice.spec if name in choice.spec else f"{choice.spec} [{name}]"
    print(f"model {shown} ({choice.reason})", file=sys.stderr, flush=True)


PERMISSION_MODES = ("auto", "ask", "read-only")


def cli_instruments() -> list[Instrument]:
    """The environment's instruments, plus the stats recorder (per-call timings for
    ``sessions show``/``report``) unless ``LOOPWRIGHT_STATS`` says off."""
    import os

    from loopwright.instrument import default_instruments
    from loopwright.observability.stats import StatsRecorder

    instruments = default_instruments()
    wanted = os.environ.get("LOOPWRIGHT_STATS", "").strip().lower() not in ("0", "false", "off")
    if wanted and not any(isinstance(i, StatsRecorder) for i in instruments):
        instruments.append(StatsRecorder())
    return instruments


def standard_tools() -> list[ToolSpec]:
    """The CLI agent's tools: files, search, shell, Python, a task list, long-term memory,
    sub-agents; HTTP when ``LOOPWRIGHT_HTTP_ALLOW`` lists domains; the MCP servers of
    ``LOOPWRIGHT_MCP_CONFIG`` (default ``./mcp.json`` when it exists)."""
    import getpass
    import os
    from pathlib import Path

    from loopwright.tools.delegate import Delegate
    from loopwright.tools.memory import MemoryTools
    from loopwright.tools.search import SearchTools
    from loopwright.tools.todo import TodoWriteTool

    tools: list[ToolSpec] = [
        ReadTool,
        WriteTool,
        EditTool,
        GlobTool,
        GrepTool,
        ShellTools(),
        PythonTools(),
        TodoWriteTool,
        SearchTools(),
        MemoryTools(scope=f"user:{getpass.getuser()}"),
        Delegate(allow_custom=True),
    ]
    domains = [d.strip() for d in os.environ.get("LOOPWRIGHT_HTTP_ALLOW", "").split(",")]
    if any(domains):
        from loopwright.tools.http import HTTP

        tools.append(HTTP(allow_domains=[d for d in domains if d]))
    explicit = os.environ.get("LOOPWRIGHT_MCP_CONFIG", "").strip()
    config = Path(explicit).expanduser() if explicit else Path("mcp.json")
    if explicit and not config.is_file():
        raise CliError(f"LOOPWRIGHT_MCP_CONFIG names {config}, which is not a file", EXIT_USAGE)
    if config.is_file():
        from loopwright.mcp.client import MCPServers
        from loopwright.mcp.config import MCPConfigError

        try:
            tools.append(MCPServers.from_config(config))
        except MCPConfigError as exc:
            raise CliError(f"{config}: {exc}", EXIT_USAGE) from None
    return tools


def build_agent(
    model: str,
    *,
    store: SessionStore,
    max_turns: int | None = 50,
    timeout: float | None = None,
    permission_mode: str = "auto",
) -> Agent:
    """An agent with the built-in tools, or a :class:`CliError` for a bad model string.

    ``permission_mode`` ``ask`` makes write and execute calls wait for an answer at the
    prompt; ``read-only`` refuses them."""
    policy = permission_policy(permission_mode)
    try:
        return Agent(
            model,
            system_prompt=SYSTEM_PROMPT,
            tools=standard_tools(),
            instruments=cli_instruments(),
            name="loopwright",
            max_turns=max_turns,
            timeout=timeout,
            store=store,
            policy=policy,
        )
    except ModelError as exc:
        raise CliError(f"{exc} (or choose another model with --model)", EXIT_USAGE) from None


def permission_policy(permission_mode: str) -> Policy | None:
    """The policy for a ``--permission-mode`` (``None`` for ``auto``), or a :class:`CliError`
    naming the modes."""
    if permission_mode not in PERMISSION_MODES:
        raise CliError(
            f"unknown permission mode {permission_mode!r}; use one of: "
            f"{', '.join(PERMISSION_MODES)}",
            EXIT_USAGE,
        )
    audit = audit_path()
    if permission_mode == "auto" and audit is None:
        return None
    from loopwright.policy import Policy

    if audit is None:
        return Policy(mode=permission_mode)
    return Policy(mode=permission_mode, audit=audit, redact=True)


def audit_path() -> str | None:
    """Where ``LOOPWRIGHT_AUDIT`` puts the audit log (``None``: off): ``1`` (``true``,
    ``on``) for ``<home>/audit/{session_id}.jsonl``, else the path given, ``~`` expanded
    (a relative one is inside each session's workspace)."""
    import os

    from loopwright.settings import switch

    raw = os.environ.get("LOOPWRIGHT_AUDIT", "").strip()
    on = switch(raw)
    if not raw or on is False:
        return None
    if on:
        from loopwright.config import loopwright_home

        return str(loopwright_home() / "audit" / "{session_id}.jsonl")
    if raw.endswith(("/", os.sep)) or os.path.isdir(os.path.expanduser(raw)):
        raise CliError(
            f"LOOPWRIGHT_AUDIT={raw!r} is a directory; give a file path such as "
            f"{os.path.join(raw, '{session_id}.jsonl')!r}, or 1 for the default place",
            EXIT_USAGE,
        )
    return os.path.expanduser(raw)


def _env_number(name: str, kind: type[int] | type[float]) -> float | None:
    import os

    raw = os.environ.get(name, "").strip()
    if not raw:
        return None
    try:
        value = kind(raw)
    except ValueError:
        raise CliError(
            f"{name}={raw!r} is not a {'whole ' if kind is int else ''}number; fix it in the "
            "environment or loopwright.toml",
            EXIT_USAGE,
        ) from None
    # float() also takes "nan", which compares false with everything: it would slip past
    # the check for negatives and then end every run at once
    if math.isnan(value):
        raise CliError(
            f"{name}={raw!r} is not a number; give a number, or 0 for no limit", EXIT_USAGE
        )
    if value < 0:
        raise CliError(f"{name}={raw!r} must not be negative (0 means no limit)", EXIT_USAGE)
    return value


def settings_limits(
    max_turns: int | None, timeout: float | None, permission_mode: str | None
) -> tuple[int | None, float | None, str]:
    """Flags first, then the environment (and loopwright.toml through it), then defaults.
    0 in the environment means no limit."""
    import os

    if max_turns is None:
        turns = _env_number("LOOPWRIGHT_MAX_TURNS", int)
        max_turns = 50 if turns is None else (int(turns) or None)
    if timeout is None:
        seconds = _env_number("LOOPWRIGHT_TIMEOUT", float)
        timeout = seconds or None
    if timeout is not None and math.isinf(timeout):
        timeout = None  # an endless time limit is no limit, which the agent takes as None
    if permission_mode is None:
        permission_mode = os.environ.get("LOOPWRIGHT_PERMISSION_MODE", "").strip() or "auto"
    return max_turns, timeout, permission_mode


def setup(
    model: str,
    session_id: str | None,
    *,
    max_turns: int | None = None,
    timeout: float | None = None,
    permission_mode: str | None = None,
) -> Setup:
    """The agent and the session to continue (or the id of the one to create), with user
    errors (bad model, bad session id, unwritable data directory) as :class:`CliError`.

    ``model`` is a model string or ``auto``; which model was picked, and why, is printed
    on stderr."""
    max_turns, timeout, permission_mode = settings_limits(max_turns, timeout, permission_mode)
    choice, store, agent = cli_agent(
        model, max_turns=max_turns, timeout=timeout, permission_mode=permission_mode
    )
    ready = session_setup(agent, store, session_id)
    announce_model(choice, agent.model.name)
    warn_continuation(ready)
    return ready


def warn_continuation(ready: Setup) -> None:
    """Print :func:`continuation_note` on stderr, if there is one."""
    note = continuation_note(ready)
    if note is not None:
        print(f"note: {note}", file=sys.stderr, flush=True)


def cli_agent(
    model: str, *, max_turns: int | None, timeout: float | None, permission_mode: str
) -> tuple[ModelChoice, SessionStore, Agent]:
    """The model chosen for ``model``, the session store, and the CLI's agent on them (the
    limits already resolved by :func:`settings_limits`)."""
    choice = choose_model(model)
    store = open_store()
    agent = build_agent(
        choice.spec,
        store=store,
        max_turns=max_turns,
        timeout=timeout,
        permission_mode=permission_mode,
    )
    return choice, store, agent


def checked_session_id(session_id: str) -> str:
    """``session_id`` if it is a valid id, else a usage error (callers with slow set-up, such
    as a database build, check it first)."""
    try:
        return validate_session_id(session_id)
    except ValueError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None


#: What a session made by the healthcare command records in its metadata: the agent's name
#: (``healthcare``) and its data, the generated database's size or the database given (a
#: URL with its password starred out, or a file's absolute path).
AGENT_KEY = "agent"
ROWS_KEY = "rows"
DATABASE_KEY = "database"
HEALTHCARE = "healthcare"
#: The keys that say which data a session works on (one of them at a time).
DATA_KEYS = (ROWS_KEY, DATABASE_KEY)


def describe_data(metadata: dict[str, Any]) -> str:
    """The data a session's metadata records, for messages."""
    rows = metadata.get(ROWS_KEY)
    if isinstance(rows, int) and not isinstance(rows, bool):
        return f"the generated claims database ({rows:,} rx claims)"
    return str(metadata.get(DATABASE_KEY) or "an unrecorded database")


def continuation_note(ready: Setup) -> str | None:
    """What the user should know before continuing ``ready``'s saved session with its agent:
    that a healthcare session goes on without its tools, or on other data than before
    (``None``: nothing, or the session is new)."""
    session = ready.existing
    if session is None:
        return None
    recorded = session.metadata if isinstance(session.metadata, dict) else {}
    if recorded.get(AGENT_KEY) == HEALTHCARE and ready.agent.name != HEALTHCARE:
        return (
            f"session {session.id} is a healthcare research session; this command continues "
            "it with the general agent, which has none of its tools (SQL, DefineCohort); "
            f"continue it with: loopwright healthcare --session {shlex.quote(session.id)}"
        )
    if (
        recorded.get(AGENT_KEY) == ready.metadata.get(AGENT_KEY) == HEALTHCARE
        and any(k in recorded for k in DATA_KEYS)
        # as described: a record that kept a stale key beside the data in use (before the
        # data was recorded whole) is the same data, not other data
        and describe_data(recorded) != describe_data(ready.metadata)
    ):
        return (
            f"session {session.id} worked on {describe_data(recorded)}; it continues on "
            f"{describe_data(ready.metadata)}, so its earlier results and files come from "
            "other data"
        )
    return None


def session_setup(
    agent: Agent,
    store: SessionStore,
    session_id: str | None,
    metadata: dict[str, Any] | None = None,
) -> Setup:
    """The session to continue, or the id of the one to create, for ``agent``.

    The session is read, not repaired: a tool call without a result may be another
    process's turn still running; the agent answers such calls when a turn starts, under
    the turn's lease (:meth:`Setup.turn`)."""
    metadata = dict(metadata or {})
    if session_id is None:
        return Setup(agent, new_session_id(), None, metadata)
    checked_session_id(session_id)
    return Setup(agent, session_id, load_session(store, session_id), metadata)
