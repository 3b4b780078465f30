"""A loopback server that speaks the Anthropic Messages API, for tests.

It listens on 127.0.0.1, answers ``POST /v1/messages`` in the real wire format (SSE events in
the documented order: ``message_start``, ``content_block_start``, ``ping``,
``content_block_delta`` with ``text_delta`` / ``input_json_delta`` / ``thinking_delta`` /
``signature_delta``, ``content_block_stop``, ``message_delta`` with the stop reason and usage,
``message_stop``; or one JSON message when ``stream`` is false) and replays a script of
turns. It records every request (headers and JSON body), checks the rules of the API the
tests rely on (it answers ``400 invalid_request_error`` like the real API when one is
broken), and injects faults: HTTP errors with their real bodies and headers, error events
inside the stream, a connection cut mid-stream, a hung response.

Use it as a context manager or through the ``anthropic_server`` fixture::

    with AnthropicServer([Turn([ToolUse("Write", {...})]), text_turn("Done.")]) as server:
        server.faults.append(Fault.rate_limited(retry_after=2))
        model = AnthropicModel(api_key="test-key", base_url=server.url)
        ...
        assert server.requests[-1].body["messages"][-1]["role"] == "user"

Faults are consumed one per request, before the script (a ``None`` in the queue lets one
request through: ``server.inject(None, Fault.server_error())`` fails the second request). A
failed request does not use up a scripted turn, so a retried request gets the turn the failed
one would have had. A script entry may be a function of the :class:`RecordedRequest` that
returns the turn.

The server runs its own event loop in a thread, so both sync and async tests can use it.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import http
import itertools
import json
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

import pytest

__all__ = [
    "AnthropicServer",
    "Fault",
    "RecordedRequest",
    "RedactedThinking",
    "Text",
    "Thinking",
    "ToolUse",
    "Turn",
    "anthropic_server",
    "cache_breakpoints",
    "text_turn",
    "tool_turn",
]

# --- what a scripted turn contains ----------------------------------------------------


@dataclass(slots=True)
class Text:
    """A text block of the answer."""

    text: str


@dataclass(slots=True)
class Thinking:
    """A thinking block; its signature is streamed as a ``signature_delta``."""

    thinking: str
    signature: str = "sig-loopback"


@dataclass(slots=True)
class RedactedThinking:
    """A redacted thinking block (sent whole in its ``content_block_start``)."""

    data: str


@dataclass(slots=True)
class ToolUse:
    """A tool call; ``raw_json`` (sent verbatim) replaces ``input`` to stream broken JSON."""

    name: str
    input: dict[str, Any] = field(default_factory=dict)
    id: str | None = None
    raw_json: str | None = None

    def arguments(self) -> str:
        return self.raw_json if self.raw_json is not None else json.dumps(self.input)


Block: TypeAlias = Text | Thinking | RedactedThinking | ToolUse


@dataclass(slots=True)
class Turn:
    """One scripted answer.

    ``stop_reason`` defaults to ``tool_use`` when the turn has a tool call, else
    ``end_turn``. Deltas carry ``chunk_size`` characters each; ``delay`` seconds pass between
    events (to let a test act mid-stream). ``output_tokens`` defaults to about a token per
    four characters streamed.
    """

    content: list[Block]
    stop_reason: str | None = None
    stop_sequence: str | None = None
    input_tokens: int = 25
    output_tokens: int | None = None
    cache_read_input_tokens: int = 0
    cache_creation_input_tokens: int = 0
    chunk_size: int = 8
    delay: float = 0.0


def text_turn(text: str, **options: Any) -> Turn:
    """A turn that answers with ``text``."""
    return Turn([Text(text)], **options)


def tool_turn(name: str, input: dict[str, Any], text: str = "", **options: Any) -> Turn:
    """A turn that (optionally says ``text`` and) calls one tool."""
    blocks: list[Block] = [Text(text)] if text else []
    blocks.append(ToolUse(name, input))
    return Turn(blocks, **options)


# --- faults -------------------------------------------------------------------------

FaultKind: TypeAlias = Literal["status", "stream_error", "cut", "hang"]


@dataclass(slots=True)
class Fault:
    """Something going wrong with one request.

    - ``status``: an HTTP error with the API's JSON error body (and ``headers``);
    - ``stream_error``: a 200 stream that sends ``after_events`` events of the next scripted
      turn, then an ``error`` event (how the API reports overload mid-answer);
    - ``cut``: ``after_events`` events of the next turn, then the connection is dropped;
    - ``hang``: ``after_events`` events (0: not even the headers), then nothing, until the
      client gives up.
    """

    kind: FaultKind
    status: int = 500
    error_type: str = "api_error"
    message: str = "Internal server error"
    headers: dict[str, str] = field(default_factory=dict)
    after_events: int = 0

    @classmethod
    def http(cls, status: int, error_type: str, message: str, **headers: str) -> Fault:
        """Any HTTP error (``headers`` use ``_`` for ``-``: ``retry_after="3"``)."""
        named = {k.replace("_", "-"): v for k, v in headers.items()}
        return cls("status", status, error_type, message, named)

    @classmethod
    def rate_limited(cls, retry_after: float = 1.0) -> Fault:
        """429 ``rate_limit_error`` with a ``retry-after`` header."""
        return cls.http(
            429,
            "rate_limit_error",
            "Number of request tokens has exceeded your per-minute rate limit",
            retry_after=f"{retry_after:g}",
        )

    @classmethod
    def server_error(cls) -> Fault:
        """500 ``api_error``."""
        return cls.http(500, "api_error", "Internal server error")

    @classmethod
    def overloaded(cls) -> Fault:
        """529 ``overloaded_error``."""
        return cls.http(529, "overloaded_error", "Overloaded")

    @classmethod
    def unauthorized(cls, message: str = "invalid x-api-key") -> Fault:
        """401 ``authentication_error``."""
        return cls.http(401, "authentication_error", message)

    @classmethod
    def overloaded_mid_stream(cls, after_events: int = 3) -> Fault:
        """An ``overloaded_error`` event after ``after_events`` events of a 200 stream."""
        return cls("stream_error", 529, "overloaded_error", "Overloaded", {}, after_events)

    @classmethod
    def cut(cls, after_events: int = 3) -> Fault:
        """Drop the connection after ``after_events`` events."""
        return cls("cut", after_events=after_events)

    @classmethod
    def hang(cls, after_events: int = 0) -> Fault:
        """Stop answering after ``after_events`` events (0: before the response headers)."""
        return cls("hang", after_events=after_events)


# --- what the server saw ------------------------------------------------------------


@dataclass(slots=True)
class RecordedRequest:
    """One request the server received, and what became of it.

    ``outcome`` is ``pending`` while it is answered, then ``completed``, ``fault`` (a fault
    was injected), ``rejected`` (it broke an API rule: ``error`` says which) or
    ``client_closed`` (the client went away before the answer was complete).
    """

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    fault: Fault | None = None
    outcome: str = "pending"
    error: str | None = None
    events_sent: int = 0

    @property
    def messages(self) -> list[dict[str, Any]]:
        return list(self.body.get("messages", [])) if isinstance(self.body, dict) else []

    @property
    def tools(self) -> list[dict[str, Any]]:
        return list(self.body.get("tools", [])) if isinstance(self.body, dict) else []


def cache_breakpoints(body: dict[str, Any]) -> list[str]:
    """Where ``body`` has ``cache_control`` marks, as paths like ``messages[2].content[0]``."""
    found: list[str] = []

    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict):
            if "cache_control" in value:
                found.append(path)
            for key, item in value.items():
                if key != "cache_control":
                    walk(item, f"{path}.{key}" if path else key)
        elif isinstance(value, list):
            for index, item in enumerate(value):
                walk(item, f"{path}[{index}]")

    walk(body, "")
    return found


class _Rejected(Exception):
    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type
        self.message = message


class _ClientGone(Exception):
    pass


ScriptEntry: TypeAlias = Turn | Callable[[RecordedRequest], Turn]

_REASONS = {529: "Overloaded"}
#: The API version that still takes ``temperature``, ``top_p`` and ``top_k``.
LEGACY_API_VERSION = "2023-06-01"
_IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")


# --- the server ---------------------------------------------------------------------


class AnthropicServer:
    """The loopback Messages API server (see the module docstring).

    ``script`` and ``faults`` are deques the test may append to at any time; ``requests``
    lists every request received. ``api_key`` (if set) is the only ``x-api-key`` accepted.
    ``validate=False`` skips the API-rule checks.
    """

    def __init__(
        self,
        script: Iterable[ScriptEntry] = (),
        *,
        api_key: str | None = None,
        validate: bool = True,
        model: str | None = None,
    ) -> None:
        self.script: deque[ScriptEntry] = deque(script)
        self.faults: deque[Fault | None] = deque()
        self.requests: list[RecordedRequest] = []
        self.api_key = api_key
        self.validate = validate
        self.model = model
        self._ids = itertools.count(1)
        self._changed = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.base_events.Server | None = None
        self._stopping: asyncio.Event | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.port = 0

    # --- life cycle ---

    @property
    def url(self) -> str:
        """The base URL to give the SDK."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> AnthropicServer:
        """Start listening (on a free port) in a background thread."""
        if self._thread is not None:
            return self
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._open())
            except BaseException as exc:  # reported to start()
                failure.append(exc)
                ready.set()
                loop.close()
                return
            ready.set()
            loop.run_forever()
            loop.run_until_complete(self._close())
            loop.close()

        self._thread = threading.Thread(target=run, name="anthropic-loopback", daemon=True)
        self._thread.start()
        ready.wait()
        if failure:
            raise failure[0]
        return self

    def stop(self) -> None:
        """Stop: hung responses end, open connections close, the thread exits."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._thread = None

    def __enter__(self) -> AnthropicServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _open(self) -> None:
        self._stopping = asyncio.Event()
        self._server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        assert self._server is not None
        assert self._stopping is not None
        self._stopping.set()
        self._server.close()
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.wait(self._connections, timeout=5)
        await self._server.wait_closed()

    # --- for tests ---

    def add(self, *turns: ScriptEntry) -> None:
        """Append turns to the script."""
        self.script.extend(turns)

    def inject(self, *faults: Fault | None) -> None:
        """Queue faults for the next requests, one each (``None``: this one goes through)."""
        self.faults.extend(faults)

    def wait_for(self, predicate: Callable[[AnthropicServer], bool], timeout: float = 10) -> bool:
        """Wait until ``predicate(server)`` holds (re-checked whenever a request changes)."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(self), timeout=timeout)

    def _update(self, record: RecordedRequest, **changes: Any) -> None:
        with self._changed:
            for key, value in changes.items():
                setattr(record, key, value)
            self._changed.notify_all()

    # --- HTTP ---

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            while True:
                request = await _read_request(reader)
                if request is None:
                    break
                keep_open = await self._respond(request, reader, writer)
                if not keep_open:
                    break
        except (ConnectionError, asyncio.IncompleteReadError, _ClientGone):
            pass
        except asyncio.CancelledError:
            pass
        finally:
            self._connections.discard(task)
            writer.close()

    async def _respond(
        self,
        request: tuple[str, str, dict[str, str], bytes],
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        """Answer one request; ``False`` when the connection must not be reused."""
        method, path, headers, raw = request
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        record = RecordedRequest(method, path, headers, body)
        with self._changed:
            self.requests.append(record)
            self._changed.notify_all()
        if path.split("?")[0].rstrip("/") != "/v1/messages" or method != "POST":
            self._update(record, outcome="rejected", error="not found")
            await _send_error(writer, 404, "not_found_error", f"Not found: {method} {path}")
            return True
        # like the real service, an error status (or a hang) comes before the body is checked
        fault = self.faults.popleft() if self.faults else None
        if fault is not None:
            record.fault = fault
            if fault.kind == "status":
                self._update(record, outcome="fault")
                await _send_error(
                    writer, fault.status, fault.error_type, fault.message, fault.headers
                )
                return True
            if fault.kind == "hang" and fault.after_events == 0:
                await self._hang(record, asyncio.ensure_future(reader.read(1)))
                return False
        try:
            self._check_headers(headers)
            if not isinstance(body, dict):
                raise _Rejected(400, "invalid_request_error", "The request body is not JSON.")
            if self.validate:
                _validate(body, headers["anthropic-version"])
        except _Rejected as rejected:
            self._update(record, outcome="rejected", error=rejected.message)
            await _send_error(writer, rejected.status, rejected.error_type, rejected.message)
            return True
        turn = self._next_turn(record, peek=fault is not None)
        if turn is None:
            message = "loopback server: the script has no turn left for this request"
            self._update(record, outcome="rejected", error=message)
            await _send_error(writer, 400, "invalid_request_error", message)
            return True
        if not body.get("stream"):
            self._update(record, outcome="completed")
            await _send_json(writer, 200, self._message_json(turn, body))
            return True
        return await self._stream(record, turn, body, fault, reader, writer)

    def _check_headers(self, headers: dict[str, str]) -> None:
        key = headers.get("x-api-key") or headers.get("authorization", "").removeprefix("Bearer ")
        if not key:
            raise _Rejected(401, "authentication_error", "x-api-key header is required")
        if self.api_key is not None and key != self.api_key:
            raise _Rejected(401, "authentication_error", "invalid x-api-key")
        if "anthropic-version" not in headers:
            raise _Rejected(400, "invalid_request_error", "anthropic-version header is required")

    def _next_turn(self, record: RecordedRequest, *, peek: bool) -> Turn | None:
        """The next scripted turn (left in the script when a fault will break this answer)."""
        if not self.script:
            return None
        entry = self.script[0] if peek else self.script.popleft()
        if isinstance(entry, Turn):
            return entry
        turn = entry(record)
        if peek:  # the retried request must see the same turn
            self.script[0] = turn
        return turn

    async def _hang(self, record: RecordedRequest, closed: asyncio.Future[bytes]) -> None:
        """Send nothing more; wait for the client to close (``closed``) or the server to stop."""
        assert self._stopping is not None
        self._update(record, outcome="fault")
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            waiting: set[asyncio.Future[Any]] = {closed, stopping}
            done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
        finally:
            closed.cancel()
            stopping.cancel()
        if closed in done:
            self._update(record, outcome="client_closed")

    async def _stream(
        self,
        record: RecordedRequest,
        turn: Turn,
        body: dict[str, Any],
        fault: Fault | None,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> bool:
        writer.write(
            _head(
                200,
                {
                    "content-type": "text/event-stream; charset=utf-8",
                    "cache-control": "no-cache",
                    "transfer-encoding": "chunked",
                    "request-id": f"req_loopback_{next(self._ids)}",
                },
            )
        )
        await writer.drain()
        # the client sends nothing while it reads the answer: end of input means it left
        gone = asyncio.ensure_future(reader.read(1))
        sent = 0
        try:
            for name, data in self._events(turn, body):
                if fault is not None and sent >= fault.after_events:
                    return await self._break_stream(record, fault, writer, gone)
                if gone.done():
                    raise _ClientGone
                writer.write(_chunk(f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()))
                await writer.drain()
                sent += 1
                self._update(record, events_sent=sent)
                if turn.delay:
                    await asyncio.wait({gone}, timeout=turn.delay)
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            self._update(record, outcome="completed")
            return True
        except (ConnectionError, _ClientGone):
            self._update(record, outcome="client_closed")
            return False
        finally:
            gone.cancel()

    async def _break_stream(
        self,
        record: RecordedRequest,
        fault: Fault,
        writer: asyncio.StreamWriter,
        gone: asyncio.Future[bytes],
    ) -> bool:
        if fault.kind == "stream_error":
            error = {"type": "error", "error": {"type": fault.error_type, "message": fault.message}}
            writer.write(_chunk(f"event: error\ndata: {json.dumps(error)}\n\n".encode()))
            writer.write(b"0\r\n\r\n")
            await writer.drain()
            self._update(record, outcome="fault")
            return True
        if fault.kind == "cut":
            self._update(record, outcome="fault")
            writer.transport.abort()
            return False
        await self._hang(record, gone)
        return False

    # --- the answer in the wire format ---

    def _message_id(self) -> str:
        return f"msg_loopback_{next(self._ids):04d}"

    def _tool_id(self, block: ToolUse) -> str:
        return block.id or f"toolu_loopback_{next(self._ids):04d}"

    def _usage(self, turn: Turn, output_tokens: int) -> dict[str, int]:
        return {
            "input_tokens": turn.input_tokens,
            "cache_creation_input_tokens": turn.cache_creation_input_tokens,
            "cache_read_input_tokens": turn.cache_read_input_tokens,
            "output_tokens": output_tokens,
        }

    def _events(self, turn: Turn, body: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
        model = self.model or body.get("model", "claude-loopback")
        has_calls = any(isinstance(b, ToolUse) for b in turn.content)
        stop_reason = turn.stop_reason or ("tool_use" if has_calls else "end_turn")
        streamed = 0
        yield (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": self._message_id(),
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": self._usage(turn, 1),
                },
            },
        )
        size = max(1, turn.chunk_size)
        for index, block in enumerate(turn.content):
            if isinstance(block, Text):
                start: dict[str, Any] = {"type": "text", "text": ""}
                deltas = [{"type": "text_delta", "text": p} for p in _pieces(block.text, size)]
                streamed += len(block.text)
            elif isinstance(block, Thinking):
                start = {"type": "thinking", "thinking": ""}
                deltas = [
                    {"type": "thinking_delta", "thinking": p} for p in _pieces(block.thinking, size)
                ]
                deltas.append({"type": "signature_delta", "signature": block.signature})
                streamed += len(block.thinking)
            elif isinstance(block, RedactedThinking):
                start = {"type": "redacted_thinking", "data": block.data}
                deltas = []
            else:
                start = {
                    "type": "tool_use",
                    "id": self._tool_id(block),
                    "name": block.name,
                    "input": {},
                }
                arguments = block.arguments()
                deltas = [{"type": "input_json_delta", "partial_json": ""}]
                deltas += [
                    {"type": "input_json_delta", "partial_json": p}
                    for p in _pieces(arguments, size)
                ]
                streamed += len(arguments)
            yield (
                "content_block_start",
                {"type": "content_block_start", "index": index, "content_block": start},
            )
            if index == 0:
                yield "ping", {"type": "ping"}
            for delta in deltas:
                yield (
                    "content_block_delta",
                    {"type": "content_block_delta", "index": index, "delta": delta},
                )
            yield "content_block_stop", {"type": "content_block_stop", "index": index}
        output = turn.output_tokens if turn.output_tokens is not None else max(1, streamed // 4)
        yield (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": turn.stop_sequence},
                "usage": self._usage(turn, output),
            },
        )
        yield "message_stop", {"type": "message_stop"}

    def _message_json(self, turn: Turn, body: dict[str, Any]) -> dict[str, Any]:
        """The non-streamed answer: the same turn as one Message object."""
        content: list[dict[str, Any]] = []
        streamed = 0
        for block in turn.content:
            if isinstance(block, Text):
                content.append({"type": "text", "text": block.text})
                streamed += len(block.text)
            elif isinstance(block, Thinking):
                content.append(
                    {"type": "thinking", "thinking": block.thinking, "signature": block.signature}
                )
            elif isinstance(block, RedactedThinking):
                content.append({"type": "redacted_thinking", "data": block.data})
            else:
                arguments: Any = block.input if block.raw_json is None else {}
                content.append(
                    {
                        "type": "tool_use",
                        "id": self._tool_id(block),
                        "name": block.name,
                        "input": arguments,
                    }
                )
        has_calls = any(isinstance(b, ToolUse) for b in turn.content)
        output = turn.output_tokens if turn.output_tokens is not None else max(1, streamed // 4)
        return {
            "id": self._message_id(),
            "type": "message",
            "role": "assistant",
            "model": self.model or body.get("model", "claude-loopback"),
            "content": content,
            "stop_reason": turn.stop_reason or ("tool_use" if has_calls else "end_turn"),
            "stop_sequence": turn.stop_sequence,
            "usage": self._usage(turn, output),
        }


@pytest.fixture
def anthropic_server() -> Iterator[AnthropicServer]:
    """A started :class:`AnthropicServer` with an empty script, stopped after the test."""
    with AnthropicServer() as server:
        yield server


# --- HTTP/1.1 framing -----------------------------------------------------------------


async def _read_request(
    reader: asyncio.StreamReader,
) -> tuple[str, str, dict[str, str], bytes] | None:
    line = await reader.readline()
    if not line.strip():
        return None
    method, path, _version = line.decode("latin-1").strip().split(" ", 2)
    headers: dict[str, str] = {}
    while True:
        header = await reader.readline()
        if header in (b"\r\n", b"\n", b""):
            break
        name, _, value = header.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        body = b""
        while True:
            size = int((await reader.readline()).split(b";")[0], 16)
            if size == 0:
                await reader.readline()
                break
            body += await reader.readexactly(size)
            await reader.readline()
    else:
        body = await reader.readexactly(int(headers.get("content-length", "0")))
    return method, path, headers, body


def _head(status: int, headers: dict[str, str]) -> bytes:
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = _REASONS.get(status, "Error")
    lines = [f"HTTP/1.1 {status} {reason}"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


async def _send_json(
    writer: asyncio.StreamWriter,
    status: int,
    payload: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> None:
    data = json.dumps(payload).encode()
    writer.write(
        _head(
            status,
            {
                "content-type": "application/json",
                "content-length": str(len(data)),
                "request-id": "req_loopback",
                **(headers or {}),
            },
        )
        + data
    )
    await writer.drain()


async def _send_error(
    writer: asyncio.StreamWriter,
    status: int,
    error_type: str,
    message: str,
    headers: dict[str, str] | None = None,
) -> None:
    payload = {
        "type": "error",
        "error": {"type": error_type, "message": message},
        "request_id": "req_loopback",
    }
    await _send_json(writer, status, payload, headers)


def _pieces(text: str, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


# --- the API's rules (the ones loopwright relies on) -----------------------------------


def _validate(body: Any, version: str) -> None:
    """Reject a body the real API (``version``) would reject, with the same kind of message."""
    if not isinstance(body, dict):
        raise _Rejected(400, "invalid_request_error", "The request body is not valid JSON.")
    for name in ("model", "max_tokens", "messages"):
        if name not in body:
            raise _Rejected(400, "invalid_request_error", f"{name}: Field required")
    messages = body["messages"]
    if not isinstance(messages, list) or not messages:
        raise _Rejected(400, "invalid_request_error", "messages: at least one message is required")
    marks = len(cache_breakpoints(body))
    if marks > 4:
        raise _Rejected(
            400,
            "invalid_request_error",
            f"A maximum of 4 blocks with cache_control may be provided. Found {marks}.",
        )
    thinking = body.get("thinking") or {}
    if thinking.get("type") == "enabled":
        budget = thinking.get("budget_tokens", 0)
        if budget < 1024:
            raise _Rejected(
                400, "invalid_request_error", "thinking.budget_tokens: must be at least 1024"
            )
        if budget >= body["max_tokens"]:
            raise _Rejected(
                400, "invalid_request_error", "`max_tokens` must be greater than `budget_tokens`"
            )
    if version != LEGACY_API_VERSION:  # 2026-10-21 removed the sampling parameters
        for name in ("temperature", "top_p", "top_k"):
            if name in body:
                raise _Rejected(
                    400, "invalid_request_error", f"{name}: Extra inputs are not permitted"
                )
    if thinking.get("type") in ("enabled", "adaptive") and body.get("temperature", 1) != 1:
        raise _Rejected(
            400,
            "invalid_request_error",
            "`temperature` may only be set to 1 when thinking is enabled.",
        )
    for tool in body.get("tools", []):
        if "name" not in tool or "input_schema" not in tool:
            raise _Rejected(400, "invalid_request_error", "tools: name and input_schema required")
    previous_calls: list[str] = []
    for number, message in enumerate(messages):
        _validate_message(number, message, previous_calls)
        content = message["content"]
        blocks = content if isinstance(content, list) else []
        calls = [b["id"] for b in blocks if b.get("type") == "tool_use"]
        if previous_calls and message["role"] == "user":
            answered = {b.get("tool_use_id") for b in blocks if b.get("type") == "tool_result"}
            missing = [c for c in previous_calls if c not in answered]
            if missing:
                raise _Rejected(
                    400,
                    "invalid_request_error",
                    f"messages.{number}: `tool_use` ids were found without `tool_result` blocks "
                    f"immediately after: {', '.join(missing)}. Each `tool_use` block must have a "
                    "corresponding `tool_result` block in the next message.",
                )
        previous_calls = calls if message["role"] == "assistant" else []


def _validate_message(number: int, message: Any, previous_calls: list[str]) -> None:
    where = f"messages.{number}"
    if not isinstance(message, dict) or message.get("role") not in ("user", "assistant"):
        raise _Rejected(400, "invalid_request_error", f"{where}.role: must be user or assistant")
    content = message.get("content")
    if isinstance(content, str):
        if not content:
            raise _Rejected(400, "invalid_request_error", f"{where}: content must be non-empty")
        return
    if not isinstance(content, list) or not content:
        raise _Rejected(
            400, "invalid_request_error", f"{where}: all messages must have non-empty content"
        )
    for index, block in enumerate(content):
        _validate_block(f"{where}.content.{index}", block, message["role"], previous_calls)


def _validate_block(where: str, block: Any, role: str, previous_calls: list[str]) -> None:
    kind = block.get("type") if isinstance(block, dict) else None
    if kind == "text":
        if not str(block.get("text", "")).strip():
            raise _Rejected(
                400, "invalid_request_error", f"{where}: text content blocks must be non-empty"
            )
    elif kind == "image":
        source = block.get("source") or {}
        if source.get("type") != "base64" or source.get("media_type") not in _IMAGE_TYPES:
            raise _Rejected(400, "invalid_request_error", f"{where}.source: invalid image source")
        try:
            base64.b64decode(source.get("data", ""), validate=True)
        except (binascii.Error, ValueError):
            raise _Rejected(
                400, "invalid_request_error", f"{where}.source.data: invalid base64 data"
            ) from None
    elif kind == "tool_use":
        if role != "assistant" or not isinstance(block.get("input"), dict):
            raise _Rejected(400, "invalid_request_error", f"{where}: invalid tool_use block")
        if "partial_json" in block:
            raise _Rejected(
                400,
                "invalid_request_error",
                f"{where}.partial_json: Extra inputs are not permitted",
            )
    elif kind == "tool_result":
        if role != "user" or block.get("tool_use_id") not in previous_calls:
            raise _Rejected(
                400,
                "invalid_request_error",
                f"{where}: unexpected `tool_use_id` found in `tool_result` blocks: "
                f"{block.get('tool_use_id')}. Each `tool_result` block must have a "
                "corresponding `tool_use` block in the previous message.",
            )
        content = block.get("content")
        if isinstance(content, list):
            for index, part in enumerate(content):
                if not isinstance(part, dict) or part.get("type") not in ("text", "image"):
                    raise _Rejected(
                        400, "invalid_request_error", f"{where}.content.{index}: invalid block"
                    )
                _validate_block(f"{where}.content.{index}", part, role, previous_calls)
    elif kind == "thinking":
        if role != "assistant" or not block.get("signature"):
            raise _Rejected(400, "invalid_request_error", f"{where}.signature: Field required")
        if "cache_control" in block:
            raise _Rejected(
                400, "invalid_request_error", f"{where}: thinking blocks cannot have cache_control"
            )
    elif kind == "redacted_thinking":
        if role != "assistant" or not block.get("data"):
            raise _Rejected(400, "invalid_request_error", f"{where}.data: Field required")
    else:
        raise _Rejected(400, "invalid_request_error", f"{where}.type: unknown block type {kind!r}")
