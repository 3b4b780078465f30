"""loopwright as an MCP server: an agent's tools, and the agent itself, for any MCP client.

``AgentMCPServer(agent)`` exposes, through the official SDK's low-level ``Server``:

- every tool of the agent, under its own name and with loopwright's schema verbatim; a call
  goes through the session's :class:`~loopwright.tools.registry.ToolRegistry`, so input
  validation, path checks, the policy (hooks, permissions, audit) and output limits apply
  exactly as when the agent's model calls it;
- the agent as one tool, ``run_agent {prompt, session_id?}``, which runs the agent on the
  prompt to the end and returns its final answer (and the session id, to continue it). A
  client that asks for progress (a progress token, e.g. the SDK's ``progress_callback``) gets
  a progress notification per tool call started and finished, with a one-line message, and
  one every :data:`HEARTBEAT_S` seconds without another while the run goes on (a long model
  turn), so a client that stops a call after a while without progress waits for the run.

The tools work in one session's workspace (a new session unless one is given, or a directory
given as ``workspace``); ``run_agent`` continues that session unless the caller names another,
which is then kept open with its tools (background shells...) for the next call with that id
(the :data:`KEEP_LIVE` most recently used). Text that JSON cannot carry (a lone surrogate, from
bytes that are not UTF-8) is sent as U+FFFD.
The workspace files are MCP resources (``loopwright://sessions/<id>/files/<path>``, see
:mod:`loopwright.mcp.resources`): the served session's and those of the :data:`KEEP_SERVED`
sessions ``run_agent`` worked in most recently (reading one of their files counts as use; one
running a turn, or whose tools are kept open, is never dropped; a dropped one is served again
once ``run_agent`` works in it), listed page by page (each page starts after the last file of
the one before, the server's session first, then the others by id), and read (text as text,
images and Parquet as base64), each read judged by the agent's policy as a ``Read`` call of
that file (its permissions, and its hooks filtering the text:
:class:`~loopwright.mcp.resources.ReadPolicy`). While the policy filters the text, a file new
or changed since the tool call running now began is refused until that call has ended (its
hooks learn from its result what to hide), not until the whole ``run_agent`` has. A call that
creates or changes files is followed by ``notifications/resources/list_changed``.
A tool's metadata (the SQL tool's row count, columns and files, a command's exit code...) is
its result's ``structuredContent`` (each text in it through the PostToolUse hooks matching the
tool, as its output's text was); ``run_agent``'s is its answer, session id, stop reason, usage
and the URIs of the files the run created or changed: its work, not loopwright's bookkeeping
(the stats recorder's ``conversation.json``); in a workspace of over
:data:`~loopwright.tools.written.MAX_SCANNED` entries they are not known, and ``files_note``
says so. The text content stays what the model would see, and ``_meta`` says so
(:data:`~loopwright.mcp.results.STRUCTURED_IS_METADATA`), so a loopwright client does not
show the model the metadata again.
Serve it over stdio (``serve_stdio``, what desktop clients start) or streamable HTTP
(``serve_http`` or ``streamable_http_app`` to mount it in an ASGI app); ``serve_agent`` does
either and closes the session's tools afterwards. ``loopwright mcp serve`` is the command.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import math
import os
import re
import signal
import socket
import threading
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import mcp_types as types
import uvicorn
from mcp.server.context import ServerRequestContext
from mcp.server.lowlevel import NotificationOptions, Server
from mcp.server.models import InitializationOptions
from mcp.server.subscriptions import InMemorySubscriptionBus, ListenHandler, ResourcesListChanged
from mcp.shared.exceptions import MCPError
from mcp_types import INVALID_PARAMS
from mcp_types.version import MODERN_PROTOCOL_VERSIONS

from loopwright.events import Event, ToolCall, ToolResult
from loopwright.mcp.resources import (
    MAX_RESOURCE_BYTES,
    URI_TEMPLATE,
    ReadPolicy,
    ResourceError,
    as_text,
    file_uri,
    files_after,
    listing_cursor,
    mime_type,
    parse_cursor,
    parse_uri,
    read_file,
    resolve,
)
from loopwright.mcp.results import STRUCTURED_IS_METADATA
from loopwright.messages import ImageBlock, TextBlock
from loopwright.policy.kinds import declared_kind
from loopwright.sessions.lease import SessionLeased, TurnLease, process_owner
from loopwright.sessions.session import Session, new_session_id, validate_session_id
from loopwright.tools.written import MAX_SCANNED, Stamp, workspace_files

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from loopwright.agent import Agent
    from loopwright.tools.registry import ToolRegistry

RUN_AGENT = "run_agent"

#: Reports progress to the client: ``(progress, total, message)``.
Progress = Callable[[float, float | None, str | None], Awaitable[None]]
#: Seconds ``run_agent`` goes without reporting progress to a client that asked for it before
#: it reports that the run is still working (its model thinks, a tool call runs long): a
#: client stops a call after its timeout without an answer or progress.
HEARTBEAT_S = 10.0

RUN_AGENT_OUTPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "text": {"type": "string", "description": "The agent's final answer."},
        "session_id": {"type": "string", "description": "Pass it back to continue."},
        "stop_reason": {"type": "string", "description": "end_turn when it finished."},
        "usage": {
            "type": "object",
            "description": "The run's tokens, cost (USD), model and tool calls.",
        },
        "files": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Resource URIs of the workspace files the run created or changed.",
        },
        "files_note": {
            "type": "string",
            "description": "Why 'files' is not complete, when it is not.",
        },
    },
    "required": ["text", "session_id", "stop_reason", "usage", "files"],
}

#: resources listed per ``resources/list`` page
RESOURCES_PAGE = 500

#: stop reasons for which ``run_agent`` reports an error (limits still return the answer)
_FAILED = frozenset({"error", "cancelled"})

#: sessions other than the server's that ``run_agent`` keeps open between calls (their
#: tools: background shells, connections); the least recently used idle one is closed first
KEEP_LIVE = 32
#: sessions other than the server's whose files are resources: those ``run_agent`` worked in
#: (or whose files were read) most recently; past it the least recently used one that is
#: neither running nor kept open (:data:`KEEP_LIVE`) stops being served
KEEP_SERVED = 256

#: half of a UTF-16 surrogate pair on its own: what Python makes of bytes that are not UTF-8
#: (a file name, a program's output), and what JSON, so MCP, cannot carry
_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


class AgentMCPServer:
    """An MCP server for one agent: its tools and ``run_agent``.

    ``session``: the session whose workspace the tools work in (a :class:`Session` or an id,
    resumed if saved, else created); ``workspace``: a directory for a new session to work in
    instead of a fresh one. ``expose_tools``/``expose_agent`` choose what is listed.
    ``metadata`` is recorded in a session ``run_agent`` creates for a ``session_id`` (the
    healthcare agent's data, as ``loopwright healthcare`` records it). A resource read
    returns at most ``max_resource_bytes`` (a bigger file is refused, saying so).
    """

    def __init__(
        self,
        agent: Agent,
        *,
        session: Session | str | None = None,
        workspace: str | os.PathLike[str] | None = None,
        name: str | None = None,
        expose_tools: bool = True,
        expose_agent: bool = True,
        metadata: Mapping[str, Any] | None = None,
        max_resource_bytes: int = MAX_RESOURCE_BYTES,
    ) -> None:
        from loopwright import __version__

        self.agent = agent
        self.expose_tools = expose_tools
        self.expose_agent = expose_agent
        self._session_spec = session
        self._workspace = Path(workspace).expanduser().resolve() if workspace else None
        self._session: Session | None = None
        self._metadata = dict(metadata or {})
        self.max_resource_bytes = max_resource_bytes
        self._runs: dict[str, asyncio.Lock] = {}
        #: sessions run_agent continued by id, kept with their tools between calls
        self._live: OrderedDict[str, Session] = OrderedDict()
        #: the workspaces of the sessions run_agent worked in (other than the server's), whose
        #: files are resources, least recently used first (at most KEEP_SERVED of them)
        self._workspaces: OrderedDict[str, Path] = OrderedDict()
        self._owner = process_owner()
        #: the calls running now, each with its workspace's listing (see _unsettled)
        self._running: list[_Running] = []
        self._sequential = asyncio.Lock()
        #: resources/list_changed for clients of the 2026 protocol (subscriptions/listen)
        self._changes = InMemorySubscriptionBus()
        self.server: Server[Any] = _Server(
            name or ("loopwright" if agent.name == "loopwright" else f"loopwright-{agent.name}"),
            version=__version__,
            instructions=(
                f"Tools of the loopwright agent {agent.name!r}; paths are relative to its "
                f"workspace. {RUN_AGENT} gives the agent a whole task and returns its answer. "
                "The files they write are resources."
            ),
            on_list_tools=self._on_list_tools,
            on_call_tool=self._on_call_tool,
            on_list_resources=self._on_list_resources,
            on_list_resource_templates=self._on_list_resource_templates,
            on_read_resource=self._on_read_resource,
            on_subscriptions_listen=ListenHandler(self._changes),
        )

    # --- what is served -----------------------------------------------------------------

    @property
    def session(self) -> Session:
        """The session the tools work in (created or resumed on first use)."""
        if self._session is None:
            self._session = self._open_session()
        return self._session

    @property
    def registry(self) -> ToolRegistry:
        """The session's tool registry: every tool call goes through it."""
        return self.agent.registry_for(self.session)

    def tools(self) -> list[types.Tool]:
        """The tools listed to clients."""
        listed: list[types.Tool] = []
        if self.expose_tools:
            registry = self.registry
            for schema in registry.get_schemas():
                name = schema["name"]
                kind = declared_kind(name, registry.get(name))
                listed.append(
                    types.Tool(
                        name=name,
                        description=schema.get("description") or "",
                        input_schema=schema.get("input_schema") or {"type": "object"},
                        annotations=types.ToolAnnotations(
                            read_only_hint=kind == "read",
                            destructive_hint=None if kind == "read" else kind != "internal",
                            open_world_hint=kind == "network",
                        ),
                    )
                )
        if self.expose_agent:
            if self.expose_tools and RUN_AGENT in self.registry:
                raise ValueError(
                    f"the agent has a tool named {RUN_AGENT!r}, which clashes with the agent "
                    "tool; rename it, or serve with expose_agent=False"
                )
            listed.append(
                types.Tool(
                    name=RUN_AGENT,
                    description=(
                        f"Give the loopwright agent {self.agent.name!r} a task: it plans, uses "
                        "its tools in its workspace and returns its final answer. Pass the "
                        "returned session_id to continue the same conversation."
                    ),
                    input_schema={
                        "type": "object",
                        "properties": {
                            "prompt": {"type": "string", "description": "The task, in words."},
                            "session_id": {
                                "type": "string",
                                "description": (
                                    "Continue this session (or create it with this id); "
                                    "default: the server's session."
                                ),
                            },
                        },
                        "required": ["prompt"],
                    },
                    output_schema=RUN_AGENT_OUTPUT_SCHEMA,
                )
            )
        return listed

    async def call(
        self, name: str, arguments: dict[str, Any] | None, progress: Progress | None = None
    ) -> types.CallToolResult:
        """Run one call as a client would (``run_agent`` or one of the agent's tools);
        ``progress`` reports ``run_agent``'s steps."""
        result, _ = await self._call(name, arguments or {}, progress)
        return result

    async def _call(
        self, name: str, arguments: dict[str, Any], progress: Progress | None
    ) -> tuple[types.CallToolResult, bool]:
        """The call's result, and whether it created, changed or deleted files in a
        workspace (so the resources listed changed)."""
        if name == RUN_AGENT and self.expose_agent:
            return await self._run_agent(arguments, progress)
        registry = self.registry
        if not self.expose_tools or name not in registry:
            known = ", ".join(tool.name for tool in self.tools())
            raise MCPError(INVALID_PARAMS, f"Unknown tool: {name!r}. Available tools: {known}.")
        workspace = self.session.workspace_dir
        before = await _files(workspace)
        with self._running_in(_Running(workspace, before)):
            if registry.is_sequential(name):
                async with self._sequential:
                    result = await registry.execute(name, arguments)
            else:
                result = await registry.execute(name, arguments)
        after = await _files(workspace)
        metadata = await _filtered_metadata(registry, name, arguments, result)
        return _call_result(result["content"], metadata, result), _differ(before, after)

    async def run_agent(
        self, arguments: dict[str, Any], progress: Progress | None = None
    ) -> types.CallToolResult:
        """Run the agent on ``arguments["prompt"]``; the answer, with the session id.

        ``progress`` is told of each tool call as it starts and ends (a count, no total, a
        one-line message), and that the run is still working after :data:`HEARTBEAT_S`
        seconds without another; a client that went away does not stop the run."""
        result, _ = await self._run_agent(arguments, progress)
        return result

    async def _run_agent(
        self, arguments: dict[str, Any], progress: Progress | None
    ) -> tuple[types.CallToolResult, bool]:
        """:meth:`run_agent`'s result, and whether the run created, changed or deleted files."""
        prompt = arguments.get("prompt")
        if not isinstance(prompt, str) or not prompt.strip():
            return _error(f"{RUN_AGENT} needs a non-empty 'prompt' string: the task to do."), False
        session_id = arguments.get("session_id")
        try:
            key = self.session.id
            if session_id is not None and session_id != key:
                if not isinstance(session_id, str):
                    message = "'session_id' must be a string; omit it to use the server's"
                    return _error(message), False
                key = validate_session_id(session_id)
        except ValueError as exc:
            return _error(f"{exc}"), False
        reporter = _Reporter(progress) if progress is not None else None
        lock = self._runs.setdefault(key, asyncio.Lock())
        if reporter is not None:
            reporter.waiting = lock.locked()
        # progress while it waits for the session too
        async with reporter.beating() if reporter is not None else contextlib.nullcontext():
            return await self._run_locked(key, lock, prompt, reporter)

    async def _run_locked(
        self, key: str, lock: asyncio.Lock, prompt: str, reporter: _Reporter | None
    ) -> tuple[types.CallToolResult, bool]:
        async with lock:  # one run at a time per session keeps its history consistent
            # and one process at a time: the CLI or a server may run a turn in it too
            if reporter is not None:
                reporter.waiting = False
            lease = TurnLease(self.agent.store, key, self._owner)
            try:
                lease.acquire()
            except SessionLeased:
                return _error(
                    f"session {key} is busy: another process (the loopwright CLI, a server) "
                    "is running a turn in it; try again when that turn has ended"
                ), False
            try:
                target = await self._session_for(key)
                before = await _files(target.workspace_dir)
                running = _Running(target.workspace_dir, before)
                judged = self._read_policy(key, target.workspace_dir)
                on_event: Callable[[Event], Awaitable[None]] | None = None
                if reporter is not None:
                    on_event = reporter.report
                if judged is not None and judged.filters:
                    on_event = _settling(running, on_event)
                with self._running_in(running):
                    result = await self.agent.collect(prompt, target, on_event=on_event)
                after = await _files(result.session.workspace_dir)
                bookkeeping = self._bookkeeping()
                changed = [path for path in _changed(before, after) if path not in bookkeeping]
                workspace = result.session.workspace_dir
                judged = self._read_policy(result.session.id, workspace)
                if judged is not None:  # a name the policy hides is no URI to send
                    changed = await judged.unchanged_names(changed)
            except Exception as exc:  # the agent's loop reports model errors as events
                failed = f"{RUN_AGENT} failed: {type(exc).__name__}: {exc}"
                return _error(failed), False
            finally:
                lease.release_now()
        text = result.text
        if result.stop_reason != "end_turn":
            problems = [str(e["message"]) for e in result.events if e["type"] == "error"]
            detail = f": {problems[-1]}" if problems else ""
            text = f"{text}\n\n[The run stopped early{detail}.]".strip()
        text = f"{text}\n\n[session_id: {result.session.id} · stop_reason: {result.stop_reason}]"
        structured = {
            "text": result.text,
            "session_id": result.session.id,
            "stop_reason": result.stop_reason,
            "usage": result.usage.to_dict(),
            "files": [file_uri(result.session.id, path) for path in changed],
        }
        if before is None or after is None:
            structured["files_note"] = (
                f"the workspace holds over {MAX_SCANNED:,} entries, too many to tell which "
                "files the run created or changed, so 'files' names none; resources/list "
                "pages through all of them"
            )
        ran = _call_result(text, structured, {"is_error": result.stop_reason in _FAILED})
        return ran, _differ(before, after)

    # --- the SDK's handlers -------------------------------------------------------------

    async def _on_list_tools(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListToolsResult:
        return types.ListToolsResult(tools=self.tools())

    async def _on_call_tool(
        self, ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
    ) -> types.CallToolResult:
        asked = ctx.meta is not None and ctx.meta.get("progress_token") is not None
        report = ctx.session.report_progress if asked else None  # a no-op without a token
        result, changed = await self._call(params.name, dict(params.arguments or {}), report)
        if changed:
            await self._resources_changed(ctx)
        return result

    async def _on_list_resources(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourcesResult:
        cursor = params.cursor if params is not None else None
        try:
            after = parse_cursor(cursor) if cursor else None
        except ResourceError as exc:
            raise MCPError(INVALID_PARAMS, _sendable(str(exc))) from None
        # one more than a page: whether another page follows
        listed: list[tuple[str, str, Stamp]] = []
        for session_id, workspace in sorted(self._served(), key=lambda s: self._rank(s[0])):
            start = None
            if after is not None:
                if self._rank(session_id) < self._rank(after[0]):
                    continue  # listed before the cursor
                if session_id == after[0]:
                    start = after[1]
            wanted = RESOURCES_PAGE + 1 - len(listed)
            listed += await self._listed(session_id, workspace, start, wanted)
            if len(listed) > RESOURCES_PAGE:
                break
        page = listed[:RESOURCES_PAGE]
        more = len(listed) > RESOURCES_PAGE
        return types.ListResourcesResult(
            resources=[_resource(*entry) for entry in page],
            next_cursor=listing_cursor(*page[-1][:2]) if more else None,
        )

    async def _on_list_resource_templates(
        self, ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
    ) -> types.ListResourceTemplatesResult:
        template = types.ResourceTemplate(
            uri_template=URI_TEMPLATE,
            name="workspace-file",
            title="A file in a session's workspace",
            description=(
                f"A file (path relative to the workspace) of the server's session "
                f"({self.session.id}) or of a session {RUN_AGENT} worked in."
            ),
        )
        return types.ListResourceTemplatesResult(resource_templates=[template])

    async def _on_read_resource(
        self, ctx: ServerRequestContext[Any], params: types.ReadResourceRequestParams
    ) -> types.ReadResourceResult:
        uri = params.uri
        try:
            session_id, path = parse_uri(uri)
            workspace = dict(self._served()).get(session_id)
            if workspace is None:
                raise ResourceError(
                    f"session {session_id!r} is not served here: its files are resources "
                    f"while it is the server's session ({self.session.id}) or one of the "
                    f"{KEEP_SERVED} sessions {RUN_AGENT} worked in most recently; call "
                    f"{RUN_AGENT} with its session_id to serve them (again)"
                )
            if session_id in self._workspaces:  # in use: kept served
                self._workspaces.move_to_end(session_id)
            judged = self._read_policy(session_id, workspace)
            # resolved once: the file the policy judges is the file read
            resolved = await asyncio.to_thread(resolve, workspace, path)
            if judged is not None:  # as a Read of the file: the permissions first
                await judged.admit(resolved, path)
            if judged is not None and judged.filters and self._unsettled(workspace, resolved):
                raise ResourceError(
                    f"{path!r} was written by a tool call still running in session "
                    f"{session_id} (its PostToolUse hooks, such as the identifier mask "
                    "learning a result's values, run when it ends); read it again when the "
                    "call has finished"
                )
            data = await asyncio.to_thread(
                read_file, workspace, path, self.max_resource_bytes, resolved=resolved
            )
            mime = mime_type(path)
            shown: str | ImageBlock | None = None
            if judged is not None and judged.filters:
                shown = await judged.filtered(resolved, path, data, mime)
        except ResourceError as exc:
            raise MCPError(INVALID_PARAMS, _sendable(str(exc))) from None
        text = as_text(data, mime) if shown is None else shown
        contents: types.TextResourceContents | types.BlobResourceContents
        if isinstance(text, str):
            contents = types.TextResourceContents(
                uri=uri,
                mime_type=mime or "text/plain",
                text=text if shown is None else _sendable(text),
            )
        elif isinstance(text, ImageBlock):
            contents = types.BlobResourceContents(
                uri=uri, mime_type=text.media_type, blob=text.data
            )
        else:
            blob = base64.b64encode(data).decode("ascii")
            contents = types.BlobResourceContents(
                uri=uri, mime_type=mime or "application/octet-stream", blob=blob
            )
        return types.ReadResourceResult(contents=[contents])

    async def _resources_changed(self, ctx: ServerRequestContext[Any]) -> None:
        """Tell the client that the resources changed: on the call's own stream, or (the 2026
        protocol) to the clients listening for it."""
        if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
            await self._changes.publish(ResourcesListChanged())
            return
        with contextlib.suppress(Exception):  # best effort, like progress
            await ctx.session.send_notification(
                types.ResourceListChangedNotification(), related_request_id=ctx.request_id
            )

    # --- serving ------------------------------------------------------------------------

    async def serve_stdio(self) -> None:
        """Serve one client over this process's stdin/stdout until it disconnects."""
        from mcp.server.stdio import stdio_server

        self.session  # noqa: B018 - open the session before the client asks for anything
        async with stdio_server() as (read, write):
            await self.server.run(read, write, self.server.create_initialization_options())

    def streamable_http_app(self, *, host: str = "127.0.0.1", path: str = "/mcp") -> Starlette:
        """An ASGI app serving streamable HTTP at ``path`` (DNS-rebinding protection is on
        for loopback hosts). Create it once per server."""
        return self.server.streamable_http_app(streamable_http_path=path, host=host)

    async def serve_http(
        self,
        *,
        host: str = "127.0.0.1",
        port: int = 8000,
        path: str = "/mcp",
        on_ready: Callable[[str], None] | None = None,
    ) -> None:
        """Serve streamable HTTP on ``host:port`` (``port=0`` picks a free one) until the
        process is interrupted; ``on_ready(url)`` is called once it listens."""
        self.session  # noqa: B018
        sock = _listen(host, port)
        bound_port = sock.getsockname()[1]
        app = self.streamable_http_app(host=host, path=path)
        server = _QuietExitServer(
            uvicorn.Config(app, log_level="warning", lifespan="on", timeout_graceful_shutdown=5)
        )
        if on_ready is not None:
            shown = f"[{host}]" if ":" in host else host
            on_ready(f"http://{shown}:{bound_port}{path}")
        try:
            await server.serve(sockets=[sock])
        finally:
            sock.close()

    async def aclose(self) -> None:
        """Close the sessions' tools (processes, connections)."""
        live, self._live = list(self._live.values()), OrderedDict()
        for session in live:
            await self.agent.close_session(session)
        if self._session is not None:
            await self.agent.close_session(self._session)

    # --- helpers ------------------------------------------------------------------------

    def _read_policy(self, session_id: str, workspace: Path) -> ReadPolicy | None:
        """The agent's policy as it judges resource reads of the session's files (those of a
        Read call of each), or ``None`` when it does nothing to a Read."""
        policy = self.agent.policy
        if policy is None or not ReadPolicy.applies(policy):
            return None
        return ReadPolicy(policy, workspace, session_id)

    @contextlib.contextmanager
    def _running_in(self, running: _Running) -> Iterator[None]:
        """While a call runs (see :class:`_Running`)."""
        self._running.append(running)
        try:
            yield
        finally:
            self._running.remove(running)

    def _unsettled(self, workspace: Path, resolved: str) -> bool:
        """Whether the file ``resolved`` is new or changed since a call still running in
        ``workspace`` last settled (:class:`_Running`): the policy's PostToolUse hooks may
        not have seen the result of the tool call that wrote it yet (the healthcare agent's
        mask learns a SQL result's patient ids from them, and would let a read of the new
        CSV through unmasked)."""
        running = [call.settled for call in self._running if call.workspace == workspace]
        if not running:
            return False
        name = os.path.relpath(resolved, os.path.realpath(workspace))
        try:
            info = os.stat(resolved)
        except OSError:
            return False  # the read says what is wrong
        stamp = (info.st_ino, info.st_size, info.st_mtime_ns)
        return any(before is None or before.get(name) != stamp for before in running)

    def _served(self) -> list[tuple[str, Path]]:
        """The sessions whose files are resources, with their workspaces: the server's, then
        those run_agent worked in."""
        return [(self.session.id, self.session.workspace_dir), *self._workspaces.items()]

    def _rank(self, session_id: str) -> tuple[bool, str]:
        """Where a session's files come in the listing: the server's first, then by id."""
        return session_id != self.session.id, session_id

    async def _listed(
        self, session_id: str, workspace: Path, after: str | None, count: int
    ) -> list[tuple[str, str, Stamp]]:
        """The first ``count`` files of the session listed (as :func:`files_after` orders
        them) after the file ``after``: those the policy lets be read under their names."""
        judged = self._read_policy(session_id, workspace)
        listed: list[tuple[str, str, Stamp]] = []
        while len(listed) < count:
            wanted = count - len(listed)
            found = await asyncio.to_thread(files_after, workspace, after, wanted)
            if not found:
                break
            after = found[-1][0]
            stamps = dict(found)
            paths = list(stamps)
            if judged is not None:
                paths = await judged.unchanged_names([p for p in paths if judged.listed(p)])
            listed += [(session_id, path, stamps[path]) for path in paths]
            if len(found) < wanted:
                break
        return listed

    def _bookkeeping(self) -> frozenset[str]:
        """The files loopwright writes beside an agent's work, not listed as a run's: the
        stats recorder's ``conversation.json`` (the rest of its bookkeeping is in the hidden
        ``.loopwright/``, never listed)."""
        from loopwright.observability.stats import StatsRecorder
        from loopwright.observability.transcript import CONVERSATION_FILE

        instruments = self.agent.instruments.items
        if any(isinstance(i, StatsRecorder) and i.conversation for i in instruments):
            return frozenset({CONVERSATION_FILE})
        return frozenset()

    async def _session_for(self, key: str) -> Session:
        """The session ``run_agent`` continues: the server's, or one named by the caller,
        kept open (its tools, background shells included) for the next call with that id;
        each as the store has it now. A new named session records ``metadata``."""
        if key == self.session.id:
            return await self._current(self.session)
        known = self._live.get(key)
        if known is not None:
            session = await self._current(known)
        else:
            stored = await asyncio.to_thread(self.agent.store.exists, key)
            if stored:
                session = await asyncio.to_thread(Session.resume, key, store=self.agent.store)
            else:
                session = self.agent.new_session(key, **self._metadata)
        self._live[key] = session
        self._live.move_to_end(key)
        self._workspaces[key] = session.workspace_dir
        self._workspaces.move_to_end(key)
        await self._close_idle()
        self._forget_served()
        return session

    def _forget_served(self) -> None:
        """Stop serving the files of the least recently used sessions past
        :data:`KEEP_SERVED` (not those running a turn or kept open)."""
        excess = len(self._workspaces) - KEEP_SERVED
        if excess <= 0:
            return
        idle = [
            key
            for key in self._workspaces
            if key not in self._live and not (key in self._runs and self._runs[key].locked())
        ]
        for key in idle[:excess]:
            del self._workspaces[key]

    async def _close_idle(self) -> None:
        """Close the tools of the least recently used named sessions past :data:`KEEP_LIVE`
        (not those running a turn)."""
        excess = len(self._live) - KEEP_LIVE
        idle = [key for key in self._live if not self._runs[key].locked()][: max(excess, 0)]
        for key in idle:
            await self.agent.close_session(self._live.pop(key))

    async def _current(self, session: Session) -> Session:
        """The served session as the store has it now: turns taken meanwhile by another
        process (``loopwright chat --session``...) are kept, not written over by this
        server's older copy, whose tools are closed when it is replaced."""
        stored = await asyncio.to_thread(self.agent.store.load, session.id)
        if stored is None or session.holds_saved(stored):
            return session  # new (saved with its first turn), or unchanged
        await self.agent.close_session(session)
        stored.workspace_dir.mkdir(parents=True, exist_ok=True)
        if session is self._session:
            self._session = stored
        elif self._live.get(session.id) is session:
            self._live[session.id] = stored
        return stored

    def _open_session(self) -> Session:
        agent, spec = self.agent, self._session_spec
        if isinstance(spec, Session):
            if spec.store is None:
                spec.store = agent.store
            return spec
        session_id = validate_session_id(spec) if spec is not None else new_session_id()
        if spec is not None and agent.store.exists(session_id):
            return Session.resume(session_id, store=agent.store)
        if self._workspace is None:
            return agent.new_session(session_id)
        if not self._workspace.is_dir():
            raise ValueError(
                f"the workspace {self._workspace} is not a directory; create it or choose "
                "another one"
            )
        session = Session(session_id, self._workspace, store=agent.store)
        session.save()
        return session


async def serve_agent(
    agent: Agent,
    transport: Literal["stdio", "http"] = "stdio",
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    path: str = "/mcp",
    session: Session | str | None = None,
    workspace: str | os.PathLike[str] | None = None,
    name: str | None = None,
    on_ready: Callable[[str], None] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> None:
    """Serve ``agent`` over MCP (stdio or streamable HTTP) until the client or the process
    ends it; the sessions' tools are closed afterwards. ``metadata``: see
    :class:`AgentMCPServer`."""
    if transport not in ("stdio", "http"):
        raise ValueError(f"unknown MCP transport {transport!r}; use 'stdio' or 'http'")
    server = AgentMCPServer(
        agent, session=session, workspace=workspace, name=name, metadata=metadata
    )
    try:
        if transport == "stdio":
            await server.serve_stdio()
        else:
            await server.serve_http(host=host, port=port, path=path, on_ready=on_ready)
    finally:
        await server.aclose()


class _Server(Server[Any]):
    """The SDK's server, telling clients (stdio and HTTP alike) that it sends
    ``notifications/resources/list_changed``."""

    def create_initialization_options(
        self,
        notification_options: NotificationOptions | None = None,
        experimental_capabilities: dict[str, dict[str, Any]] | None = None,
        extensions: dict[str, dict[str, Any]] | None = None,
    ) -> InitializationOptions:
        return super().create_initialization_options(
            notification_options or NotificationOptions(resources_changed=True),
            experimental_capabilities,
            extensions,
        )


class _QuietExitServer(uvicorn.Server):
    """uvicorn's server, except that SIGINT/SIGTERM end ``serve()`` normally instead of being
    raised again once it stopped, so the caller's clean-up (closing the session's tools)
    still runs and the process exits with status 0."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        handled = (signal.SIGINT, signal.SIGTERM)
        original = {sig: signal.signal(sig, self.handle_exit) for sig in handled}
        try:
            yield
        finally:
            for sig, handler in original.items():
                signal.signal(sig, handler)


def _listen(host: str, port: int) -> socket.socket:
    """A listening socket, or an ``OSError`` saying what to change."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, kind, proto)
    except OSError as exc:
        raise OSError(f"cannot listen on {host}:{port} ({exc}); check --host") from None
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise OSError(
            f"cannot listen on {host}:{port} ({exc.strerror or exc}); choose another --port "
            "(0 picks a free one)"
        ) from None
    sock.setblocking(False)
    return sock


def _mcp_content(content: str | list[TextBlock | ImageBlock]) -> list[types.ContentBlock]:
    if isinstance(content, str):
        return [types.TextContent(text=_sendable(content))]
    blocks: list[types.ContentBlock] = []
    for block in content:
        if isinstance(block, ImageBlock):
            blocks.append(types.ImageContent(data=block.data, mime_type=block.media_type))
        else:
            blocks.append(types.TextContent(text=_sendable(block.text)))
    return blocks


def _call_result(
    content: str | list[TextBlock | ImageBlock], structured: Any, result: Mapping[str, Any]
) -> types.CallToolResult:
    """A tool result for MCP: the content, and the structured value (JSON-safe) marked as
    what the text does not show to a model (metadata)."""
    value = _json_safe(structured) if structured else None
    return types.CallToolResult(
        content=_mcp_content(content),
        structured_content=value,
        is_error=bool(result.get("is_error")),
        _meta={STRUCTURED_IS_METADATA: True} if value is not None else None,
    )


async def _filtered_metadata(
    registry: ToolRegistry, name: str, arguments: dict[str, Any], result: Mapping[str, Any]
) -> Any:
    """The call's metadata (its ``structuredContent``), each text in it passed through the
    policy's PostToolUse hooks for the tool as its output's text was: the healthcare agent's
    mask hides in Python's and Bash's ``files_written``/``images_written`` the patient ids it
    hid in the note naming those files. ``None`` when the hooks withhold it (or change it
    past recognition); as it is when no hook matches the tool."""
    metadata = result.get("metadata")
    policy = registry.policy
    tool = registry.get(name)
    if not metadata or policy is None or tool is None or not policy.hooks.has_post(name):
        return metadata
    texts: list[str] = []
    _each_text(metadata, texts.append)
    if not texts:
        return metadata
    bound = policy.bind(registry.workspace_dir, registry.session_id)
    call = bound.begin(name, arguments, None)
    call.executed = True
    failed = bool(result.get("is_error"))
    blocks: list[TextBlock | ImageBlock] = [TextBlock(text) for text in texts]
    hooked = await bound.run_post_hooks(
        tool, arguments, call, {"content": blocks, "is_error": failed}
    )
    shown = hooked.get("content")
    if (
        bool(hooked.get("is_error")) != failed
        or not isinstance(shown, list)
        or len(shown) < len(texts)
        or not all(isinstance(block, TextBlock) for block in shown[: len(texts)])
    ):
        return None
    masked = iter([block.text for block in shown[: len(texts)] if isinstance(block, TextBlock)])
    return _each_text(metadata, lambda _: next(masked))


def _each_text(value: Any, change: Callable[[str], Any]) -> Any:
    """``value`` with each string in it (not a mapping's keys) replaced by ``change(text)``,
    in order."""
    if isinstance(value, str):
        return change(value)
    if isinstance(value, Mapping):
        return {key: _each_text(item, change) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_each_text(item, change) for item in value]
    return value


def _json_safe(value: Any) -> Any:
    """``value`` as JSON: mappings with string keys, lists, finite numbers (NaN and
    infinity as null), text JSON can carry; anything else (a path, a date) as its text."""
    if isinstance(value, Mapping):
        return {_sendable(str(key)): _json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [_json_safe(item) for item in value]
    if isinstance(value, str):
        return _sendable(value)
    if value is None or isinstance(value, bool | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return _sendable(str(value))


def _resource(session_id: str, path: str, stamp: Stamp) -> types.Resource:
    _, size, mtime_ns = stamp
    modified = dt.datetime.fromtimestamp(mtime_ns / 1e9, dt.UTC).isoformat()
    return types.Resource(
        uri=file_uri(session_id, path),
        name=_sendable(path),
        mime_type=mime_type(path),
        size=size,
        annotations=types.Annotations(last_modified=modified),
    )


async def _files(workspace: str | os.PathLike[str]) -> dict[str, Stamp] | None:
    """The workspace's files (:func:`~loopwright.tools.written.workspace_files`) but the
    hidden ones (``.git/...``, ``.env``): the resources listed."""
    files = await asyncio.to_thread(workspace_files, os.fspath(workspace))
    if files is None:
        return None
    return {
        path: stamp
        for path, stamp in files.items()
        if not any(part.startswith(".") for part in path.split(os.sep))
    }


@dataclass(eq=False)
class _Running:
    """A call running in ``workspace``, and its listing when it last settled: when it began,
    or (``run_agent`` while the policy filters the text) when the last tool call of the run
    ended and none other was running: the files new or changed since may hold what the
    PostToolUse hooks of a tool call still running have not seen yet."""

    workspace: Path
    settled: dict[str, Stamp] | None


def _settling(
    running: _Running, report: Callable[[Event], Awaitable[None]] | None
) -> Callable[[Event], Awaitable[None]]:
    """An ``on_event`` for :meth:`Agent.collect` that settles ``running`` each time the run's
    tool calls (its sub-agents' too) have all ended, then passes the event to ``report``.
    A call that never ends (cancelled) keeps the run unsettled until it ends."""
    started: Counter[tuple[str | None, str]] = Counter()

    async def on_event(event: Event) -> None:
        if isinstance(event, ToolCall):
            started[event.agent, event.id] += 1
        elif isinstance(event, ToolResult) and started[event.agent, event.id] > 0:
            started[event.agent, event.id] -= 1
            if started.total() == 0:  # the hooks of every call so far have run
                running.settled = await _files(running.workspace)
        if report is not None:
            await report(event)

    return on_event


def _differ(before: dict[str, Stamp] | None, after: dict[str, Stamp] | None) -> bool:
    """Whether files changed between two listings (perhaps, when either is unknown)."""
    return before is None or after is None or before != after


def _changed(before: dict[str, Stamp] | None, after: dict[str, Stamp] | None) -> list[str]:
    """The files new or changed between two listings, in name order (none when either
    listing is unknown: a workspace too big to scan)."""
    if before is None or after is None:
        return []
    return sorted(name for name, stamp in after.items() if before.get(name) != stamp)


def _sendable(text: str) -> str:
    """``text`` with each lone surrogate (a byte that is not UTF-8 in a file name or a
    program's output) shown as U+FFFD, as the terminal shows it: JSON cannot encode one,
    and a result holding one could not be sent (a stdio server died of it)."""
    return _LONE_SURROGATE.sub("\ufffd", text)


def _error(message: str) -> types.CallToolResult:
    return types.CallToolResult(content=[types.TextContent(text=_sendable(message))], is_error=True)


class _Reporter:
    """Reports a run's tool calls to ``progress`` as they start and end (:meth:`report`, an
    ``on_event`` for :meth:`Agent.collect`), and, while nothing else was reported for
    :data:`HEARTBEAT_S` (a long model turn, a long tool call), that it is still working
    (:meth:`beating`), so a client that times a call out after no progress waits for it.
    The progress count goes up by one with each notification."""

    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._steps = 0
        self._sent = asyncio.Lock()  # one notification at a time, in the order counted
        self._last = asyncio.get_running_loop().time()
        self._running: Counter[str] = Counter()  # tool calls started and not ended, by name
        #: whether the run waits for an earlier run of its session to end
        self.waiting = False

    async def report(self, event: Event) -> None:
        from loopwright.summaries import key_input

        if isinstance(event, ToolCall):
            self._running[event.name] += 1
            detail = key_input(event.input)
            message = f"{event.name}: {detail}" if detail else event.name
        elif isinstance(event, ToolResult):
            self._running[event.name] -= 1
            self._running = +self._running  # drop the names no call of is running
            message = f"{event.name} {'failed' if event.is_error else 'done'}"
        else:
            return
        if event.agent:
            message = f"[{event.agent}] {message}"
        await self._send(message)

    @contextlib.asynccontextmanager
    async def beating(self) -> AsyncIterator[None]:
        """While the block runs, report every :data:`HEARTBEAT_S` seconds without another
        notification that the run is still working, and at what."""
        loop = asyncio.get_running_loop()

        async def beat() -> None:
            while True:
                await asyncio.sleep(max(0.0, self._last + HEARTBEAT_S - loop.time()))
                if loop.time() - self._last >= HEARTBEAT_S:
                    doing = ", ".join(sorted(self._running)) or "the model's turn"
                    if self.waiting:
                        doing = "waiting for the session's earlier run to end"
                    await self._send(f"still working: {doing}")

        task = asyncio.create_task(beat())
        try:
            yield
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _send(self, message: str) -> None:
        async with self._sent:
            self._steps += 1
            self._last = asyncio.get_running_loop().time()
            with contextlib.suppress(Exception):  # the client's side of progress is best effort
                await self._progress(self._steps, None, message)


__all__ = ["RUN_AGENT", "AgentMCPServer", "serve_agent"]
