"""loopwright on Modal: one function call per agent turn, the conversation restored each time.

Set up once, then deploy::

    modal secret create loopwright ANTHROPIC_API_KEY=sk-... \\
        LOOPWRIGHT_TOKENS="long-random-token=alice" \\
        LOOPWRIGHT_STORE=postgresql://USER:PASSWORD@HOST/DB     # optional, see below
    modal deploy deploy/modal_app.py

and chat from a terminal (the turns run on Modal)::

    LOOPWRIGHT_TOKEN=long-random-token modal run deploy/modal_app.py [--session-id ID]

What runs where:

- ``agent_turn(token, session_id, message)`` is one turn. It maps the token to a user (the
  ``LOOPWRIGHT_TOKENS`` of the Secret, as for ``loopwright serve``), loads the session from
  the store (creating it, owned by that user, on first use; someone else's session is "not
  found"), continues its history with ``agent.run(message, session)``, streams every event as
  a dict (the same shapes as the CLI's ``--json`` and the HTTP API's SSE) and commits the
  Volume, so the next turn, in whichever container, sees this one's files.
- ``list_files`` and ``download_file`` read a session's workspace for its owner only, with
  the same path checks as the HTTP API (no ``..``, absolute paths or symlinks out).
- Sessions live in ``LOOPWRIGHT_STORE`` when the Secret sets it (PostgreSQL: shared with
  ``loopwright serve`` deployments using the same database), else in one SQLite file per
  session on the Volume (``/data/modal-sessions/<id>.db``): separate files, so containers
  running turns of different sessions never write the same file. Workspaces are on the
  Volume (``/data/workspaces/<id>/``).

One turn per session at a time: a turn leases its session in the store
(``loopwright.sessions.lease``), so a second message sent while a turn runs in another
container raises ``SessionLeased``; send it after the ``done`` event (the chat loop below
does). Tool processes (a background shell) do not
outlive their turn, as every turn may land in another container.

The functions' logic is plain Python (``run_turn``, ``list_session_files``,
``read_session_file``), so it runs and is tested without Modal: the Modal functions only add
authentication from the Secret and the Volume's reload/commit.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import modal

if TYPE_CHECKING:
    from loopwright.agent import Agent
    from loopwright.sessions.session import Session
    from loopwright.sessions.store import SessionStore

#: Names of the Modal objects, overridable at deploy time (several deployments in one
#: workspace).
APP_NAME = os.environ.get("LOOPWRIGHT_MODAL_APP", "loopwright")
SECRET_NAME = os.environ.get("LOOPWRIGHT_MODAL_SECRET", "loopwright")
VOLUME_NAME = os.environ.get("LOOPWRIGHT_MODAL_VOLUME", "loopwright-data")
#: Where the Volume is mounted: the container's LOOPWRIGHT_HOME.
DATA = "/data"
#: ripgrep for the Grep tool, bubblewrap for the sandbox (used when the container allows
#: user namespaces; otherwise the process sandbox, with a warning in the logs), git for agents
#: that work on repositories.
APT_PACKAGES = ("ripgrep", "bubblewrap", "git")
#: The project's extras installed in the image (as in deploy/Dockerfile).
EXTRAS = ("anthropic", "openai", "sql", "mcp", "memory", "tracing", "server")
#: Files larger than this are not sent back through a function call.
MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024
#: Session metadata key naming the owner (the HTTP server uses the same one).
OWNER_KEY = "owner"

_PROJECT = Path(__file__).resolve().parent.parent

image = (
    modal.Image.debian_slim(python_version="3.11")
    .apt_install(*APT_PACKAGES)
    .uv_sync(str(_PROJECT), extras=list(EXTRAS), frozen=True)
    .env({"LOOPWRIGHT_HOME": DATA, "PYTHONUNBUFFERED": "1"})
    # the package with its data files (web UI assets, report templates), not only .py files
    .add_local_python_source("loopwright", ignore=["**/__pycache__", "**/*.pyc"])
)
volume = modal.Volume.from_name(VOLUME_NAME, create_if_missing=True)
secret = modal.Secret.from_name(SECRET_NAME)
app = modal.App(APP_NAME, image=image)


# --- the logic, plain Python ---------------------------------------------------------------


class SessionNotFound(LookupError):
    """No session with this id that the caller may see (someone else's looks the same)."""

    def __init__(self, session_id: str) -> None:
        super().__init__(
            f"no session {session_id!r} for this user; start one by sending a message with a "
            "new session id"
        )


def authenticate(token: str, env: dict[str, str] | None = None) -> str:
    """The user ``token`` stands for, from ``LOOPWRIGHT_TOKENS`` (or ``LOOPWRIGHT_TOKENS_FILE``)
    in the environment, which on Modal comes from the Secret."""
    from loopwright.server.auth import TokenConfigError, TokenMap

    try:
        tokens = TokenMap.from_sources(env=env)
    except TokenConfigError as exc:
        raise PermissionError(f"the token configuration is broken: {exc}") from None
    if not tokens.enabled:
        raise PermissionError(
            f"no tokens are configured; add LOOPWRIGHT_TOKENS='TOKEN=USER,...' to the Modal "
            f"secret {SECRET_NAME!r}"
        )
    user = tokens.user_for(token) if token else None
    if user is None:
        raise PermissionError(
            "the token is not valid; pass one of LOOPWRIGHT_TOKENS (LOOPWRIGHT_TOKEN=... "
            "modal run deploy/modal_app.py)"
        )
    return user.name


def sessions_dir() -> Path:
    """Where the per-session SQLite files go when no ``LOOPWRIGHT_STORE`` is set."""
    from loopwright.config import loopwright_home

    return loopwright_home() / "modal-sessions"


def open_session_store(session_id: str, *, create: bool) -> SessionStore | None:
    """The store holding ``session_id``: ``LOOPWRIGHT_STORE``'s, else the session's own SQLite
    file. ``None`` when there is no such file and ``create`` is false (nothing is created
    for a look-up)."""
    from loopwright.sessions.session import validate_session_id
    from loopwright.sessions.sqlite import SQLiteStore
    from loopwright.sessions.store import open_store

    try:
        validate_session_id(session_id)
    except ValueError:
        raise SessionNotFound(session_id) from None
    url = os.environ.get("LOOPWRIGHT_STORE", "").strip()
    if url:
        return open_store(url)
    path = sessions_dir() / f"{session_id}.db"
    if not create and not path.is_file():
        return None
    return SQLiteStore(path)


def owned_session(store: SessionStore, user: str, session_id: str) -> Session:
    """The saved session if ``user`` owns it, else :class:`SessionNotFound` (read-only)."""
    session = store.load(session_id)
    if session is None or session.metadata.get(OWNER_KEY) != user:
        raise SessionNotFound(session_id)
    return session


def session_for_turn(store: SessionStore, user: str, session_id: str) -> Session:
    """The session to run a turn in: the user's saved one with its history (tool calls cut
    off by a crash get their "interrupted" result), or a new one owned by the user."""
    from loopwright.sessions.session import Session

    if not store.exists(session_id):
        try:
            return Session.create(session_id, store=store, metadata={OWNER_KEY: user})
        except ValueError:
            pass  # created meanwhile by another call: check whose it is
    owned_session(store, user, session_id)  # before anything is written to it
    return Session.resume(session_id, store=store)


def standard_agent(store: SessionStore) -> Agent:
    """The agent ``loopwright serve`` runs: built-in tools, the model of ``LOOPWRIGHT_MODEL``
    (else chosen by the API keys present), limits from ``LOOPWRIGHT_MAX_TURNS`` and
    ``LOOPWRIGHT_TIMEOUT``."""
    from loopwright.cli.runtime import build_agent, choose_model, settings_limits

    max_turns, timeout, mode = settings_limits(None, None, None)
    if mode == "ask":
        raise ValueError(
            "LOOPWRIGHT_PERMISSION_MODE=ask needs someone to answer approvals, which a Modal "
            "function cannot do; use auto or read-only in the Modal secret"
        )
    return build_agent(
        choose_model("auto").spec,
        store=store,
        max_turns=max_turns,
        timeout=timeout,
        permission_mode=mode,
    )


async def run_turn(
    user: str,
    session_id: str,
    message: str,
    *,
    agent_factory: Callable[[SessionStore], Agent] = standard_agent,
) -> AsyncIterator[dict[str, Any]]:
    """One turn of ``user``'s session: its history restored from the store, ``message``
    answered, each event yielded as a dict; the history is saved after every step."""
    if not message.strip():
        raise ValueError("the message is empty; send some text")
    from loopwright.events import Done
    from loopwright.sessions.lease import TurnLease, process_owner

    store = open_session_store(session_id, create=True)
    assert store is not None
    try:
        session = session_for_turn(store, user, session_id)
        # containers share the store: a turn leases its session (SessionLeased if another
        # container is running a turn there), given back before the done event goes out
        lease = TurnLease(store, session_id, process_owner())
        lease.acquire()
        agent = agent_factory(store)
        try:
            async for event in agent.run(message, session):
                if isinstance(event, Done):
                    await lease.release()
                yield event.to_dict()
        finally:
            await lease.release()
            await agent.aclose()
    finally:
        store.close()


def list_session_files(user: str, session_id: str, under: str = "") -> list[dict[str, Any]]:
    """The files of the user's session workspace (path, size, modified, content type)."""
    from loopwright.server.files import list_files as workspace_files

    store = open_session_store(session_id, create=False)
    if store is None:
        raise SessionNotFound(session_id)
    try:
        session = owned_session(store, user, session_id)
    finally:
        store.close()
    entries, _ = workspace_files(session.workspace_dir, under)
    return [entry.to_dict() for entry in entries]


def read_session_file(user: str, session_id: str, path: str) -> bytes:
    """One file of the user's session workspace; paths leading outside it are refused
    (``ValueError``), as by the HTTP API."""
    from loopwright.server.files import open_file

    store = open_session_store(session_id, create=False)
    if store is None:
        raise SessionNotFound(session_id)
    try:
        session = owned_session(store, user, session_id)
    finally:
        store.close()
    # read from the descriptor that was checked: a link swapped in meanwhile is not followed
    opened = open_file(Path(session.workspace_dir), path)
    try:
        size = opened.stat.st_size
        if size > MAX_DOWNLOAD_BYTES:
            raise ValueError(
                f"{path} is {size} bytes, more than a function call returns; copy it with "
                f"`modal volume get {VOLUME_NAME} workspaces/{session_id}/{path}`"
            )
        with os.fdopen(os.dup(opened.descriptor), "rb") as handle:
            return handle.read()
    finally:
        opened.close()


def render_event(event: dict[str, Any]) -> str:
    """How the chat loop shows an event ("" for events it does not show)."""
    kind = event.get("type")
    if kind == "text_delta":
        return str(event.get("text", ""))
    if kind == "tool_call":
        return f"\n[{event.get('name')}] ...\n"
    if kind == "tool_result":
        content = str(event.get("content", "")).strip()
        first = content.splitlines()[0][:120] if content else ""
        mark = "error: " if event.get("is_error") else ""
        return f"[{event.get('name')}] {mark}{first}\n"
    if kind == "error":
        return f"\nerror: {event.get('message')}\n"
    if kind == "done":
        reason = event.get("stop_reason")
        return "\n" if reason == "end_turn" else f"\n(stopped: {reason})\n"
    return ""


def chat_loop(
    turn: Callable[[str, str, str], Iterable[dict[str, Any]]],
    files: Callable[[str, str], list[dict[str, Any]]],
    *,
    token: str,
    session_id: str,
    read: Callable[[str], str] = input,
    write: Callable[[str], Any] = print,
) -> None:
    """A terminal chat over ``turn`` (``agent_turn.remote_gen``) and ``files``: ``/files``
    lists the workspace, ``exit`` (or end of input) ends."""
    write(f"session {session_id} (continue it later with --session-id {session_id})")
    while True:
        try:
            line = read("You: ")
        except EOFError:
            break
        text = line.strip()
        if not text:
            continue
        if text.lower() in ("exit", "quit", "/exit"):
            break
        if text == "/files":
            for entry in files(token, session_id):
                write(f"{entry['path']}  ({entry['size']} bytes)")
            continue
        out = [render_event(event) for event in turn(token, session_id, text)]
        write("".join(out).rstrip("\n"))


# --- the Modal functions -------------------------------------------------------------------


async def _reload_volume() -> None:
    """See the files other containers committed (a no-op outside Modal)."""
    if not modal.is_local():
        await volume.reload.aio()  # type: ignore[no-untyped-call]


async def _commit_volume() -> None:
    """Publish this container's writes to the Volume (a no-op outside Modal)."""
    if not modal.is_local():
        await volume.commit.aio()  # type: ignore[no-untyped-call]


@app.function(volumes={DATA: volume}, secrets=[secret], timeout=30 * 60, cpu=2.0, memory=4096)
async def agent_turn(token: str, session_id: str, message: str) -> AsyncIterator[dict[str, Any]]:
    """One agent turn in the caller's session, streamed as event dicts."""
    user = authenticate(token)
    await _reload_volume()
    try:
        async for event in run_turn(user, session_id, message):
            yield event
    finally:
        await _commit_volume()


@app.function(volumes={DATA: volume}, secrets=[secret], timeout=120)
async def list_files(token: str, session_id: str, under: str = "") -> list[dict[str, Any]]:
    """The files of the caller's session workspace."""
    user = authenticate(token)
    await _reload_volume()
    return list_session_files(user, session_id, under)


@app.function(volumes={DATA: volume}, secrets=[secret], timeout=120)
async def download_file(token: str, session_id: str, path: str) -> bytes:
    """One file of the caller's session workspace."""
    user = authenticate(token)
    await _reload_volume()
    return read_session_file(user, session_id, path)


@app.local_entrypoint()
def chat(session_id: str = "", token: str = "") -> None:
    """``modal run deploy/modal_app.py [--session-id ID] [--token TOKEN]``: chat in this
    terminal, each turn a call of ``agent_turn`` (token default: ``LOOPWRIGHT_TOKEN``)."""
    from loopwright.sessions.session import new_session_id

    chat_loop(
        agent_turn.remote_gen,
        list_files.remote,
        token=token or os.environ.get("LOOPWRIGHT_TOKEN", ""),
        session_id=session_id or new_session_id(),
    )
