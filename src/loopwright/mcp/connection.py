"""One connection to one MCP server, owned by one long-lived task.

The SDK's transports and ``ClientSession`` are anyio context managers whose cancel scopes must
be entered and exited by the same task; a connection opened in one asyncio task and closed from
another fails with "Attempted to exit cancel scope in a different task". So each connection
runs in a task of its own that enters the contexts, initializes the session, lists the tools,
then serves calls handed to it over a queue (each call in its own child task, so calls run
concurrently) until it is told to close, the server goes away, or its event loop ends. Callers
never touch the contexts; they put a call on the queue and await a future.

A server that stops (a crashed or killed stdio process, a dropped HTTP session) is started
again on the next call, up to ``max_restarts`` times, and the call's result says so. A call
that had not reached the server yet is sent to the restarted one; a call that was running when
the server stopped is reported as such (it may or may not have taken effect) rather than
silently repeated. Past the restart budget, calls get an error saying the server is down.

A connection whose event loop ended (``asyncio.run`` returned; the SDK closed the server then)
is reopened on the next call from a new loop without counting as a crash.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import tempfile
from collections.abc import AsyncIterator, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal, TextIO, TypeAlias, cast

import anyio
import mcp_types as types
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.shared.exceptions import MCPError
from mcp.shared.message import SessionMessage
from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT

from loopwright.mcp.config import MCPServerConfig

State: TypeAlias = Literal["idle", "starting", "ready", "failed", "stopped", "closed"]

#: seconds a closing connection may take before its task is cancelled (the SDK's stdio
#: shutdown waits up to 2 s for the server to exit, then 2 s more after SIGTERM)
CLOSE_TIMEOUT_S = 10.0
#: characters of a server's error output quoted when it fails
STDERR_TAIL_CHARS = 1500
_MAX_TOOL_PAGES = 100


class MCPConnectionError(RuntimeError):
    """A server could not be started or reached, or stopped and is not restarted again."""


class MCPServerStopped(MCPConnectionError):
    """The server stopped while a call was running; the call may or may not have run."""


class MCPCallError(RuntimeError):
    """The server refused the call with a protocol error (unknown tool, invalid arguments)."""


class MCPCallTimeout(TimeoutError):
    """The server did not answer the call in time."""


class _Stopped(Exception):
    """Internal: the connection ended before the call was answered."""

    def __init__(self, sent: bool) -> None:
        super().__init__("the MCP connection ended")
        self.sent = sent


@dataclass(eq=False, slots=True)
class _Call:
    name: str
    arguments: dict[str, Any]
    timeout: float | None
    future: asyncio.Future[types.CallToolResult]
    scope: anyio.CancelScope | None = None
    abandoned: bool = False

    def abandon(self) -> None:
        """The caller went away (cancelled, timed out): stop the call on the server too."""
        self.abandoned = True
        if self.scope is not None:
            self.scope.cancel()


class _Signal:
    def __init__(self, name: str) -> None:
        self.name = name


_CLOSE = _Signal("close")
_ENDED = _Signal("ended")
_Item: TypeAlias = _Call | _Signal


class _WatchedStream:
    """The transport's read stream, noting when it ends (the server went away)."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.ended = asyncio.Event()

    @property
    def last_context(self) -> Any:
        # the dispatcher reads the sender's contextvars snapshot from here, when there is one
        return getattr(self._inner, "last_context", None)

    async def receive(self) -> SessionMessage | Exception:
        try:
            item: SessionMessage | Exception = await self._inner.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            self.ended.set()
            raise
        return item

    async def aclose(self) -> None:
        await self._inner.aclose()

    def __aiter__(self) -> _WatchedStream:
        return self

    async def __anext__(self) -> SessionMessage | Exception:
        try:
            return await self.receive()
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            raise StopAsyncIteration from None

    async def __aenter__(self) -> _WatchedStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc_val: BaseException | None,
        exc_tb: TracebackType | None,
    ) -> None:
        self.ended.set()
        await self.aclose()


class MCPConnection:
    """A connection to one MCP server, started on first use and restarted after a crash.

    ``await connection.start()`` connects (starting the server process for stdio) and lists
    its tools (``connection.tools``); ``call_tool`` starts it if needed; ``aclose`` ends it
    (the server process exits). All of it is safe to call from any task of the event loop.
    """

    def __init__(self, config: MCPServerConfig, tools: Iterable[types.Tool] = ()) -> None:
        self.config = config
        #: the server's tools, as listed when it last started
        self.tools: list[types.Tool] = list(tools)
        self.server_info: types.Implementation | None = None
        #: how many times the server was restarted after it stopped
        self.restarts = 0
        self._state: State = "idle"
        self._task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._jobs: asyncio.Queue[_Item] | None = None
        self._started: asyncio.Future[None] | None = None
        self._lock: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None
        self._closing = False
        self._restarting = False
        self._stderr_tail = ""
        self._stop_reason = ""

    # --- public -------------------------------------------------------------------------

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def state(self) -> State:
        """``idle``, ``starting``, ``ready``, ``failed`` (could not start), ``stopped`` (went
        away; restarted on the next call while the budget lasts) or ``closed``."""
        return self._state

    @property
    def running(self) -> bool:
        """Whether the connection is up and serving calls in this event loop."""
        return (
            self._state == "ready"
            and self._task is not None
            and not self._task.done()
            and self._loop is _running_loop()
        )

    async def start(self) -> None:
        """Connect and list the server's tools, unless already connected; raises
        :class:`MCPConnectionError` with the reason (and the server's error output)."""
        await self._ready_for_call()

    async def call_tool(
        self,
        name: str,
        arguments: dict[str, Any],
        *,
        timeout: float | None = None,  # noqa: ASYNC109 - the SDK's per-request timeout
        retry_safe: bool = False,
    ) -> tuple[types.CallToolResult, str | None]:
        """Call a tool; returns the server's result and a note when the server had to be
        restarted first. A call the server stopped during is sent again to the restarted
        server only when ``retry_safe`` (the tool is read-only or idempotent).

        Raises :class:`MCPConnectionError` (cannot start, or down for good),
        :class:`MCPServerStopped`, :class:`MCPCallError` or :class:`MCPCallTimeout`, and
        ``ValueError``, before anything is sent, for arguments JSON cannot carry."""
        problem = unsendable(arguments, name)
        if problem is not None:
            # the transport's writer would fail on it and take the connection down (seen as
            # a crash of the server, restarted, the call sent again, until none was left)
            raise ValueError(problem)
        for attempt in (1, 2):
            note = await self._ready_for_call()
            try:
                return await self._submit(name, arguments, timeout), note
            except _Stopped as stopped:
                await self._wound_down()
                if attempt == 1 and (retry_safe or not stopped.sent):
                    continue  # never reached the server, or harmless to repeat
                raise MCPServerStopped(await self._stopped_during(name)) from None
        raise AssertionError("unreachable")

    async def _submit(
        self, name: str, arguments: dict[str, Any], call_timeout: float | None
    ) -> types.CallToolResult:
        """Hand a call to the connection's task and wait for its answer."""
        assert self._jobs is not None
        assert self._loop is not None
        future: asyncio.Future[types.CallToolResult] = self._loop.create_future()
        call = _Call(name, arguments, call_timeout, future)
        self._jobs.put_nowait(call)
        try:
            return await future
        except asyncio.CancelledError:
            call.abandon()  # the SDK tells the server the request is cancelled
            raise

    async def aclose(self) -> None:
        """Close the connection; a stdio server's process ends. Idempotent."""
        self._closing = True
        task = self._task
        if task is None or task.done() or self._loop is not _running_loop():
            self._state = "closed"
            return
        if self._state == "ready" and self._jobs is not None:
            self._jobs.put_nowait(_CLOSE)
        else:
            task.cancel()  # still starting: stop the handshake
        done, _ = await asyncio.wait({task}, timeout=CLOSE_TIMEOUT_S)
        if not done:
            task.cancel()
            await asyncio.wait({task}, timeout=CLOSE_TIMEOUT_S)
        self._state = "closed"

    def __repr__(self) -> str:
        return f"<MCPConnection {self.name} {self.config.transport} {self._state}>"

    # --- starting and restarting --------------------------------------------------------

    def _lock_for(self, loop: asyncio.AbstractEventLoop) -> asyncio.Lock:
        if self._lock is None or self._lock[0] is not loop:
            self._lock = (loop, asyncio.Lock())
        return self._lock[1]

    async def _ready_for_call(self) -> str | None:
        """Make sure the connection serves calls in this loop; the note when it restarted."""
        loop = asyncio.get_running_loop()
        async with self._lock_for(loop):
            task = self._task
            if task is not None and self._loop is loop and not task.done():
                if self._state == "starting" and self._started is not None:
                    # started by a caller that was cancelled while it waited
                    with contextlib.suppress(MCPConnectionError):
                        await asyncio.shield(self._started)
                if self._state == "ready":
                    return None
                await asyncio.wait({task})  # winding down after the server stopped
            elif task is not None and self._loop is not loop and self._state == "ready":
                self._state = "idle"  # its loop ended: reopen here, not a crash
            if self._state == "stopped":
                if self.restarts >= self.config.max_restarts:
                    raise MCPConnectionError(self._exhausted())
                reason = self._stop_reason
                self.restarts += 1
                self._restarting = True
                try:
                    await self._start(loop)
                finally:
                    self._restarting = False
                return (
                    f"The MCP server {self.name!r} had stopped ({reason}) and was restarted "
                    f"(restart {self.restarts} of at most {self.config.max_restarts})."
                )
            await self._start(loop)
            return None

    async def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        started: asyncio.Future[None] = loop.create_future()
        started.add_done_callback(_retrieve)
        self._started = started
        jobs: asyncio.Queue[_Item] = asyncio.Queue()
        self._jobs = jobs
        self._loop = loop
        self._closing = False
        self._state = "starting"
        self._task = loop.create_task(self._main(started, jobs), name=f"mcp-server:{self.name}")
        await asyncio.shield(started)

    async def _wound_down(self) -> None:
        """Wait for the connection's task to finish after its server stopped."""
        task = self._task
        if task is not None and self._loop is _running_loop() and not task.done():
            await asyncio.wait({task}, timeout=CLOSE_TIMEOUT_S)

    async def _stopped_during(self, tool: str) -> str:
        what = f"The MCP server {self.name!r} stopped while running {tool!r} ({self._stop_reason})"
        try:
            await self._ready_for_call()
        except MCPConnectionError:
            return f"{what}, {self._not_restarted()}"
        return (
            f"{what}; it may or may not have taken effect. The server was restarted "
            f"(restart {self.restarts} of at most {self.config.max_restarts}); call the tool "
            "again if it should be retried."
        )

    def _exhausted(self) -> str:
        return (
            f"The MCP server {self.name!r} stopped again ({self._stop_reason}), "
            f"{self._not_restarted()}"
        )

    def _not_restarted(self) -> str:
        times = "once" if self.restarts == 1 else f"{self.restarts} times"
        after = f"after being restarted {times}" if self.restarts else "and restarts are off"
        return (
            f"{after}, so it is not restarted again and its tools cannot be used in this "
            "session. Check the server's command and its error output."
        )

    # --- the connection's own task ------------------------------------------------------

    async def _main(self, started: asyncio.Future[None], jobs: asyncio.Queue[_Item]) -> None:
        outcome = "stopped"
        failure: BaseException | None = None
        cancelled = False
        self._stderr_tail = ""
        errlog = self._open_errlog()
        try:
            async with contextlib.AsyncExitStack() as stack:
                read, write = await stack.enter_async_context(self._transport(errlog))
                watched = _WatchedStream(read)
                session = await stack.enter_async_context(
                    ClientSession(watched, write, client_info=_client_info())
                )
                with anyio.fail_after(self.config.connect_timeout):
                    init = await session.initialize()
                    tools = await _list_tools(session)
                self.server_info = init.server_info
                self.tools = tools
                self._state = "ready"
                started.set_result(None)
                outcome = await self._serve(session, watched, jobs)
        except asyncio.CancelledError:
            cancelled = True
            raise
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # a transport may raise anything (groups too): report it
            failure = exc
        finally:
            self._stderr_tail = _tail(errlog)
            if errlog is not None:
                errlog.close()
            _fail_waiting(jobs, self._closing)
            self._finish(started, outcome, failure, cancelled)

    def _finish(
        self,
        started: asyncio.Future[None],
        outcome: str,
        failure: BaseException | None,
        cancelled: bool,
    ) -> None:
        """Record how the connection ended (closed, stopped, failed to start)."""
        if not started.done():
            problem = self._start_problem(failure, cancelled)
            self._stop_reason = problem
            self._state = "stopped" if self._restarting else "failed"
            if self._closing or cancelled:
                self._state = "closed" if self._closing else "idle"
            started.set_exception(MCPConnectionError(problem))
            return
        if self._closing or (outcome == "closed" and failure is None):
            self._state = "closed"
        elif cancelled:
            self._state = "idle"  # the event loop is shutting down: reopen on the next call
        else:
            self._state = "stopped"
            self._stop_reason = self._stop_description(failure)

    async def _serve(
        self, session: ClientSession, watched: _WatchedStream, jobs: asyncio.Queue[_Item]
    ) -> str:
        outcome = "stopped"
        async with anyio.create_task_group() as group:

            async def relay_end() -> None:
                await watched.ended.wait()
                jobs.put_nowait(_ENDED)

            group.start_soon(relay_end)
            while True:
                item = await jobs.get()
                if item is _CLOSE:
                    outcome = "closed"
                    group.cancel_scope.cancel()
                    break
                if item is _ENDED:
                    # running calls were answered "connection closed" by the SDK; they end now
                    group.cancel_scope.deadline = anyio.current_time() + 5
                    break
                if isinstance(item, _Call):
                    group.start_soon(self._run_call, session, item)
        return outcome

    async def _run_call(self, session: ClientSession, call: _Call) -> None:
        if call.abandoned or call.future.done():
            return
        try:
            with anyio.CancelScope() as scope:
                call.scope = scope
                result = await _call_until_idle(session, call)
                _settle(call, result=result)
        except MCPError as exc:
            if exc.code == CONNECTION_CLOSED:
                _settle(call, error=_Stopped(sent=True))
            elif exc.code == REQUEST_TIMEOUT:
                _settle(call, error=MCPCallTimeout(exc.message))
            else:
                _settle(call, error=MCPCallError(exc.message))
        except MCPCallTimeout as exc:
            _settle(call, error=exc)
        except Exception as exc:
            _settle(call, error=MCPCallError(_describe(exc)))
        finally:
            call.scope = None
            if not call.future.done():
                _settle(call, error=self._ended_error())

    def _ended_error(self) -> Exception:
        if self._closing:
            return MCPConnectionError(f"the connection to MCP server {self.name!r} was closed")
        return _Stopped(sent=True)

    def _transport(self, errlog: TextIO | None) -> AbstractAsyncContextManager[Any]:
        config = self.config
        if config.transport == "stdio":
            assert config.command is not None
            params = StdioServerParameters(
                command=config.command,
                args=list(config.args),
                env=dict(config.env) or None,
                cwd=config.cwd,
            )
            return stdio_client(params, errlog=errlog) if errlog else stdio_client(params)
        assert config.url is not None
        if config.transport == "sse":
            from mcp.client.sse import sse_client

            return sse_client(
                config.url,
                headers=dict(config.headers) or None,
                timeout=config.connect_timeout,
            )
        return _streamable_http(config.url, dict(config.headers), config.connect_timeout)

    def _open_errlog(self) -> TextIO | None:
        """A file for a stdio server's error output, quoted when the server fails."""
        if self.config.transport != "stdio":
            return None
        try:
            return cast(TextIO, tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace"))
        except OSError:
            return None

    def _start_problem(self, failure: BaseException | None, cancelled: bool) -> str:
        config = self.config
        if cancelled or self._closing:
            return f"the connection to MCP server {self.name!r} was closed while starting"
        leaf = _leaf(failure)
        if config.transport == "stdio":
            what = f"cannot start MCP server {self.name!r} (command {config.command!r})"
            if isinstance(leaf, FileNotFoundError | PermissionError | NotADirectoryError):
                return (
                    f"{what}: {_describe(leaf)}. Check 'command' and 'cwd' in its config: is "
                    "the program installed and on PATH?"
                )
        else:
            what = f"cannot connect to MCP server {self.name!r} at {config.url}"
        if isinstance(leaf, TimeoutError):
            problem = f"it did not answer the MCP handshake within {config.connect_timeout:g}s"
        elif isinstance(leaf, MCPError) and leaf.code == CONNECTION_CLOSED:
            problem = "it closed the connection during the MCP handshake"
        else:
            problem = _describe(leaf) if leaf is not None else "the connection ended"
        stderr = f" Its error output: {self._stderr_tail}" if self._stderr_tail else ""
        fix = (
            "Check its command, arguments and environment in the config."
            if config.transport == "stdio"
            else "Check that the server is running and the URL, transport and headers are right."
        )
        return f"{what}: {problem}.{stderr} {fix}"

    def _stop_description(self, failure: BaseException | None) -> str:
        leaf = _leaf(failure)
        if self.config.transport == "stdio":
            text = "its process exited"
        else:
            text = "the connection was lost"
        if leaf is not None:
            text += f": {_describe(leaf)}"
        if self._stderr_tail:
            text += f"; its last error output: {self._stderr_tail}"
        return text


@asynccontextmanager
async def _streamable_http(
    url: str, headers: dict[str, str], connect_timeout: float
) -> AsyncIterator[Any]:
    import httpx2
    from mcp.client.streamable_http import streamable_http_client
    from mcp.shared._httpx_utils import create_mcp_http_client  # the SDK's own client factory

    client = create_mcp_http_client(
        headers=headers or None, timeout=httpx2.Timeout(connect_timeout, read=300.0)
    )
    async with client, streamable_http_client(url, http_client=client) as streams:
        yield streams


async def _list_tools(session: ClientSession) -> list[types.Tool]:
    tools: list[types.Tool] = []
    cursor: str | None = None
    for _ in range(_MAX_TOOL_PAGES):
        params = types.PaginatedRequestParams(cursor=cursor) if cursor else None
        page = await session.list_tools(params=params)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            break
    return tools


def unsendable(arguments: Mapping[str, Any], tool: str) -> str | None:
    """Why a call's ``arguments`` cannot be sent as JSON, or ``None``: text holding a lone
    surrogate, which is how Python keeps bytes that are not UTF-8 (a file name, a program's
    output) and which UTF-8, so JSON on the wire, cannot encode."""
    found = _lone_surrogate(arguments, "")
    if found is None:
        return None
    where, char, position = found
    field = f" in {where}" if where else ""
    return (
        f"The input of {tool!r} holds {char!a}{field} at character {position}: half of a "
        "UTF-16 surrogate pair on its own (a byte that is not UTF-8, from a file name or a "
        "program's output), which cannot be sent to an MCP server, so nothing was sent. "
        "Give the text without it (rename a file whose name holds such a byte first)"
    )


def _lone_surrogate(value: Any, where: str) -> tuple[str, str, int] | None:
    """Where (a path such as ``'files'[2]``), which and at what character the first lone
    surrogate inside ``value`` is (keys included), or ``None``."""
    if isinstance(value, str):
        match = _LONE_SURROGATE.search(value)
        return None if match is None else (where, match.group(), match.start())
    items: Iterable[tuple[Any, Any]] = ()
    if isinstance(value, Mapping):
        items = value.items()
    elif isinstance(value, list | tuple):
        items = enumerate(value)
    for key, item in items:
        if isinstance(key, str):
            found = _lone_surrogate(key, f"a key in {where}" if where else "a key")
            if found is not None:
                return found
        found = _lone_surrogate(item, f"{where}[{key!r}]" if where else repr(key))
        if found is not None:
            return found
    return None


_LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def _client_info() -> types.Implementation:
    from loopwright import __version__

    return types.Implementation(name="loopwright", version=__version__)


async def _call_until_idle(session: ClientSession, call: _Call) -> types.CallToolResult:
    """``session.call_tool`` for ``call``, asking the server for progress: stopped (cancelled
    on the server, :class:`MCPCallTimeout`) after ``call.timeout`` seconds without an answer
    or a progress notification. The SDK's own read timeout counts from the request alone, so
    a long call that reports its progress (a loopwright server's ``run_agent``) was cut off."""
    limit = call.timeout
    if limit is None:
        return await session.call_tool(call.name, call.arguments)
    with anyio.CancelScope(deadline=anyio.current_time() + limit) as idle:

        async def progressed(progress: float, total: float | None, message: str | None) -> None:
            idle.deadline = anyio.current_time() + limit

        result = await session.call_tool(call.name, call.arguments, progress_callback=progressed)
    if idle.cancelled_caught:
        raise MCPCallTimeout(f"no answer or progress from the server for {limit:g}s")
    return result


def _settle(
    call: _Call,
    *,
    result: types.CallToolResult | None = None,
    error: BaseException | None = None,
) -> None:
    future = call.future
    if future.done():
        return
    if call.abandoned:
        future.cancel()
    elif error is not None:
        future.set_exception(error)
    else:
        assert result is not None
        future.set_result(result)


def _fail_waiting(jobs: asyncio.Queue[_Item], closing: bool) -> None:
    """Calls still queued never reached the server: they can go to a restarted one."""
    while not jobs.empty():
        item = jobs.get_nowait()
        if isinstance(item, _Call):
            error: Exception = (
                MCPConnectionError("the MCP connection was closed") if closing else _Stopped(False)
            )
            _settle(item, error=error)


def _retrieve(future: asyncio.Future[Any]) -> None:
    """Mark a future's exception as seen (its waiter may have been cancelled)."""
    if not future.cancelled():
        future.exception()


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


def _tail(errlog: TextIO | None) -> str:
    """The last lines a server wrote to its error output, on one line."""
    if errlog is None:
        return ""
    try:
        errlog.flush()
        fd = errlog.fileno()
        size = os.fstat(fd).st_size
        start = max(0, size - STDERR_TAIL_CHARS * 2)
        data = os.pread(fd, size - start, start).decode("utf-8", "replace")
    except (OSError, ValueError):
        return ""
    lines = [line.strip() for line in data.splitlines() if line.strip()]
    text = " | ".join(lines)
    if len(text) > STDERR_TAIL_CHARS:
        text = "..." + text[-STDERR_TAIL_CHARS:]
    return text


def _leaf(exc: BaseException | None) -> BaseException | None:
    """The first real error inside (possibly nested) exception groups."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        inner = [e for e in exc.exceptions if not isinstance(e, asyncio.CancelledError)]
        exc = (inner or list(exc.exceptions))[0]
    return exc


def _describe(exc: BaseException) -> str:
    if isinstance(exc, MCPError):
        return exc.message
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


__all__ = [
    "MCPCallError",
    "MCPCallTimeout",
    "MCPConnection",
    "MCPConnectionError",
    "MCPServerStopped",
]
