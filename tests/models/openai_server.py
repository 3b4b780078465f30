"""A loopback server that speaks the OpenAI Chat Completions wire protocol, for tests.

It listens on 127.0.0.1 (an ephemeral port), answers ``POST /v1/chat/completions`` the way
api.openai.com does, and replays scripted turns:

* ``stream: true`` is answered with Server-Sent Events, ``data: {chat.completion.chunk}``
  lines ending with ``data: [DONE]``: a role chunk, the text in small pieces, each tool call
  with its ``index``/``id``/``type``/``name`` on its first delta and its JSON arguments split
  across later deltas, a finish chunk, and, when ``stream_options.include_usage`` is set, a
  final chunk with empty ``choices`` and the ``usage`` object;
* without ``stream`` it returns one ``chat.completion`` object;
* ``GET /v1/models`` lists the served model.

Every request is recorded (method, path, headers, JSON body) in :attr:`OpenAIServer.requests`,
faults included, so tests can assert on what the client really sent. Faults are injected per
chat-completions request, in order: HTTP errors (429 with ``retry-after``, 500, 401...), a
connection cut mid-stream, an error event mid-stream, or a hung response. A fault never
consumes a scripted turn, so a retried request gets the turn the failed one would have had.
Malformed tool-argument JSON and a ``length`` cut are scripted turns (raw ``arguments``).

The server runs its own event loop in a thread, so it serves sync and async tests alike::

    with OpenAIServer(["Hello!"], faults=[Fault.rate_limit(retry_after=2)]) as server:
        model = OpenAIModel("gpt-4.1", base_url=server.base_url)
        ...
        assert server.chat_bodies[0]["temperature"] == 0

or, with the ``openai_server`` fixture (register it with ``pytest_plugins`` or import it into
a conftest), ``server = openai_server(script=[...], faults=[...])``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeAlias

import pytest

__all__ = [
    "Fault",
    "OpenAIServer",
    "RecordedRequest",
    "ToolCall",
    "Turn",
    "TurnSpec",
    "openai_server",
    "server_factory",
]

_REASONS = {
    200: "OK",
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


@dataclass(slots=True)
class ToolCall:
    """A tool call the server streams.

    ``arguments`` is a dict (sent as compact JSON) or a raw string sent as it is, which is
    how a test sends malformed or truncated JSON. The arguments are split into ``pieces``
    deltas of about equal size.
    """

    name: str
    arguments: dict[str, Any] | str = field(default_factory=dict)
    id: str | None = None
    pieces: int = 3

    @property
    def arguments_text(self) -> str:
        """The arguments exactly as they go on the wire."""
        if isinstance(self.arguments, str):
            return self.arguments
        return json.dumps(self.arguments, separators=(",", ":"), ensure_ascii=False)


@dataclass(slots=True)
class Turn:
    """One scripted assistant turn.

    ``finish_reason`` defaults to ``tool_calls`` when there are tool calls, else ``stop``.
    ``interleave`` streams the argument deltas of several tool calls alternately (by
    ``index``) instead of one call after the other; ``indexless`` sends each call whole in
    one delta without ``index``, as older Ollama versions do. ``reasoning`` is streamed first as
    ``reasoning_content`` deltas, as vLLM and llama.cpp servers do. ``refusal`` is streamed
    as ``refusal`` deltas (structured-output refusals). ``completion_tokens`` defaults to an
    estimate from the output size.
    """

    text: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str | None = None
    prompt_tokens: int = 42
    completion_tokens: int | None = None
    cached_tokens: int = 0
    reasoning: str = ""
    refusal: str = ""
    interleave: bool = False
    indexless: bool = False
    chunk_size: int | None = None

    @property
    def finish(self) -> str:
        """The finish reason the turn ends with."""
        if self.finish_reason is not None:
            return self.finish_reason
        return "tool_calls" if self.tool_calls else "stop"

    def usage(self) -> dict[str, Any]:
        """The ``usage`` object reported for this turn."""
        out_chars = len(self.text) + len(self.reasoning) + len(self.refusal)
        out_chars += sum(len(c.name) + len(c.arguments_text) for c in self.tool_calls)
        completion = (
            self.completion_tokens if self.completion_tokens is not None else out_chars // 4 + 1
        )
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
            "prompt_tokens_details": {"cached_tokens": self.cached_tokens, "audio_tokens": 0},
            "completion_tokens_details": {
                "reasoning_tokens": len(self.reasoning) // 4,
                "audio_tokens": 0,
                "accepted_prediction_tokens": 0,
                "rejected_prediction_tokens": 0,
            },
        }


@dataclass(frozen=True, slots=True)
class Fault:
    """A failure the server produces for one chat-completions request.

    Build one with the class methods: :meth:`rate_limit`, :meth:`server_error`,
    :meth:`http_error` (any HTTP status, e.g. 403), :meth:`cut` (connection dropped mid-stream),
    :meth:`stream_error` (an ``error`` object mid-stream) or :meth:`hang` (no answer, or a
    stream that stops, until the client gives up).
    """

    kind: Literal["status", "cut", "stream_error", "hang"]
    status: int = 500
    message: str = "The server had an error while processing your request."
    error_type: str = "server_error"
    code: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    after_chunks: int = 0

    @classmethod
    def rate_limit(
        cls,
        retry_after: float | None = 1.0,
        *,
        retry_after_ms: float | None = None,
        message: str = "Rate limit reached for requests. Please try again later.",
    ) -> Fault:
        """HTTP 429 with a ``retry-after`` header in seconds (and ``retry-after-ms`` if given)."""
        headers: list[tuple[str, str]] = []
        if retry_after is not None:
            headers.append(("retry-after", f"{retry_after:g}"))
        if retry_after_ms is not None:
            headers.append(("retry-after-ms", f"{retry_after_ms:g}"))
        return cls(
            "status",
            status=429,
            message=message,
            error_type="requests",
            code="rate_limit_exceeded",
            headers=tuple(headers),
        )

    @classmethod
    def server_error(cls, status: int = 500, message: str | None = None) -> Fault:
        """An HTTP 5xx error with an OpenAI-style error body."""
        return cls(
            "status",
            status=status,
            message=message or "The server had an error while processing your request.",
            error_type="server_error",
        )

    @classmethod
    def http_error(
        cls,
        status: int,
        message: str,
        *,
        error_type: str = "invalid_request_error",
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Fault:
        """Any HTTP error status with an OpenAI-style ``{"error": {...}}`` body."""
        return cls(
            "status",
            status=status,
            message=message,
            error_type=error_type,
            code=code,
            headers=tuple((headers or {}).items()),
        )

    @classmethod
    def unauthorized(cls) -> Fault:
        """HTTP 401 as OpenAI sends it for a wrong API key."""
        return cls.http_error(
            401,
            "Incorrect API key provided: sk-wrong. You can find your API key at "
            "https://platform.openai.com/account/api-keys.",
            code="invalid_api_key",
        )

    @classmethod
    def cut(cls, after_chunks: int = 2) -> Fault:
        """Start streaming the next turn, then drop the connection after ``after_chunks``
        SSE events (no terminating chunk, no ``[DONE]``)."""
        return cls("cut", after_chunks=after_chunks)

    @classmethod
    def stream_error(cls, after_chunks: int = 1, message: str | None = None) -> Fault:
        """Stream ``after_chunks`` events, then a ``data: {"error": {...}}`` event."""
        return cls(
            "stream_error",
            after_chunks=after_chunks,
            message=message or "The server had an error while processing your request.",
        )

    @classmethod
    def hang(cls, after_chunks: int | None = None) -> Fault:
        """Send nothing at all (``after_chunks=None``), or the headers and ``after_chunks``
        events, then wait silently until the client closes the connection."""
        return cls("hang", after_chunks=-1 if after_chunks is None else after_chunks)


@dataclass(slots=True)
class RecordedRequest:
    """One HTTP request the server received."""

    method: str
    path: str
    headers: dict[str, str]
    raw: bytes
    body: Any = None
    #: What happened to it: ``answered``, ``fault:<kind>``, ``client_closed``.
    outcome: str = "pending"

    @property
    def messages(self) -> list[dict[str, Any]]:
        """The chat messages of a chat-completions request."""
        if isinstance(self.body, dict):
            return list(self.body.get("messages") or [])
        return []


TurnSpec: TypeAlias = "str | ToolCall | Turn | Sequence[str | ToolCall]"
ScriptFunction: TypeAlias = Callable[[RecordedRequest], TurnSpec]


def to_turn(spec: TurnSpec) -> Turn:
    """Normalise the shorthand forms (a string, a tool call, a list of both) into a Turn."""
    if isinstance(spec, Turn):
        return spec
    if isinstance(spec, str):
        return Turn(text=spec)
    if isinstance(spec, ToolCall):
        return Turn(tool_calls=[spec])
    turn = Turn()
    for item in spec:
        if isinstance(item, str):
            turn.text += item
        elif isinstance(item, ToolCall):
            turn.tool_calls.append(item)
        else:
            raise TypeError(f"a scripted turn holds strings and ToolCalls, not {item!r}")
    return turn


class _ClientGone(Exception):
    """The client closed the connection."""


class OpenAIServer:
    """An OpenAI Chat Completions server on 127.0.0.1 that replays a script.

    ``script`` is a list of turns (strings, :class:`ToolCall`, :class:`Turn`, or lists of
    strings and tool calls) or a function of the :class:`RecordedRequest` returning one.
    ``faults`` are applied to the chat-completions requests in order (``None`` = no fault for
    that request). ``api_key``, when set, is required as a bearer token (401 otherwise).
    ``chunk_size`` is the text size per content delta; ``delay`` seconds pass between SSE
    events. ``report_usage=False`` never sends ``usage`` (like servers that ignore
    ``stream_options``).
    """

    def __init__(
        self,
        script: Sequence[TurnSpec] | ScriptFunction = (),
        faults: Sequence[Fault | None] = (),
        *,
        model: str = "gpt-4.1",
        api_key: str | None = None,
        chunk_size: int = 8,
        delay: float = 0.0,
        report_usage: bool = True,
    ) -> None:
        self.model = model
        self.report_usage = report_usage
        self.api_key = api_key
        self.chunk_size = max(1, chunk_size)
        self.delay = delay
        self._function: ScriptFunction | None = None
        self._turns: deque[TurnSpec] = deque()
        if callable(script):
            self._function = script
        else:
            self._turns.extend(script)
        self._faults: deque[Fault | None] = deque(faults)
        self._lock = threading.Lock()
        #: Every request received, in order (faulted ones included).
        self.requests: list[RecordedRequest] = []
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stopped: asyncio.Event | None = None
        self._startup_error: BaseException | None = None
        self._client_closed = threading.Event()
        self._connections = 0

    # --- control (from the test's thread) -----------------------------------------------

    @property
    def base_url(self) -> str:
        """The URL to give the OpenAI client (``http://127.0.0.1:<port>/v1``)."""
        if not self.port:
            raise RuntimeError("the server is not running; use it as a context manager")
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def chat_requests(self) -> list[RecordedRequest]:
        """The chat-completions requests received, in order."""
        return [r for r in self.requests if r.path.rstrip("/").endswith("/chat/completions")]

    @property
    def chat_bodies(self) -> list[dict[str, Any]]:
        """The JSON bodies of the chat-completions requests received, in order."""
        return [r.body for r in self.chat_requests if isinstance(r.body, dict)]

    @property
    def remaining(self) -> int:
        """Scripted turns not yet served (0 for a function script)."""
        with self._lock:
            return len(self._turns)

    @property
    def connections(self) -> int:
        """TCP connections accepted so far."""
        return self._connections

    def add(self, *turns: TurnSpec) -> None:
        """Append turns to the script."""
        with self._lock:
            self._turns.extend(turns)

    def inject(self, *faults: Fault | None) -> None:
        """Queue faults for the next chat-completions requests."""
        with self._lock:
            self._faults.extend(faults)

    def wait_client_closed(self, timeout: float = 10.0) -> bool:
        """Wait until a client closed a connection in the middle of a response."""
        return self._client_closed.wait(timeout)

    def start(self) -> OpenAIServer:
        """Start serving in a background thread; returns once the port is open."""
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._run, name="openai-loopback", daemon=True)
        self._thread.start()
        self._ready.wait(30)
        if self._startup_error is not None:
            raise RuntimeError("the OpenAI loopback server failed to start") from (
                self._startup_error
            )
        return self

    def stop(self) -> None:
        """Stop serving: open connections (hung ones included) are closed."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        stopped = self._stopped
        if stopped is not None:
            with contextlib.suppress(RuntimeError):  # the loop already ended
                loop.call_soon_threadsafe(stopped.set)
        thread.join(30)
        self._thread = None
        self._loop = None

    def __enter__(self) -> OpenAIServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> OpenAIServer:
        return self.start()

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)

    # --- the server loop (in its own thread) --------------------------------------------

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # reported to start(), which waits for _ready
            self._startup_error = exc
            self._ready.set()
        finally:
            loop.close()

    async def _serve(self) -> None:
        self._stopped = asyncio.Event()
        tasks: set[asyncio.Task[None]] = set()

        async def on_connect(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            task = asyncio.current_task()
            assert task is not None
            tasks.add(task)
            self._connections += 1
            try:
                await self._connection(reader, writer)
            except (_ClientGone, ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                tasks.discard(task)
                writer.close()

        server = await asyncio.start_server(on_connect, "127.0.0.1", 0)
        self.port = server.sockets[0].getsockname()[1]
        self._ready.set()
        async with server:
            await self._stopped.wait()
            server.close()
            for task in list(tasks):
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=5)
        self.port = 0

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            request_line = await reader.readline()
            if not request_line:
                return  # the client closed an idle keep-alive connection
            method, path, _version = request_line.decode("latin-1").rstrip("\r\n").split(" ", 2)
            headers: dict[str, str] = {}
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b"\n", b""):
                    break
                name, _, value = line.decode("latin-1").partition(":")
                headers[name.strip().lower()] = value.strip()
            raw = await self._read_body(reader, headers)
            request = RecordedRequest(method, path, headers, raw)
            if raw:
                try:
                    request.body = json.loads(raw)
                except ValueError:
                    request.body = None
            self.requests.append(request)
            keep_alive = await self._dispatch(request, reader, writer)
            if not keep_alive or headers.get("connection", "").lower() == "close":
                return

    @staticmethod
    async def _read_body(reader: asyncio.StreamReader, headers: dict[str, str]) -> bytes:
        if "content-length" in headers:
            return await reader.readexactly(int(headers["content-length"]))
        if headers.get("transfer-encoding", "").lower() == "chunked":
            body = b""
            while True:
                size = int((await reader.readline()).split(b";")[0].strip(), 16)
                if size == 0:
                    await reader.readline()
                    return body
                body += await reader.readexactly(size)
                await reader.readline()
        return b""

    async def _dispatch(
        self, request: RecordedRequest, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> bool:
        """Answer one request; returns whether the connection stays open."""
        path = request.path.split("?", 1)[0].rstrip("/")
        expected = f"Bearer {self.api_key}"
        if self.api_key is not None and request.headers.get("authorization") != expected:
            request.outcome = "fault:unauthorized"
            await self._send_error(writer, Fault.unauthorized())
            return True
        if path.endswith("/models") and request.method == "GET":
            request.outcome = "answered"
            await self._send_json(writer, 200, self._models())
            return True
        if not path.endswith("/chat/completions"):
            request.outcome = "not_found"
            await self._send_error(
                writer, Fault.http_error(404, f"Invalid URL ({request.method} {request.path})")
            )
            return True
        if request.method != "POST":
            request.outcome = "not_found"
            await self._send_error(writer, Fault.http_error(405, "Use POST for chat completions."))
            return True
        if not isinstance(request.body, dict) or not isinstance(request.body.get("messages"), list):
            request.outcome = "bad_request"
            await self._send_error(
                writer, Fault.http_error(400, "The request body must be JSON with 'messages'.")
            )
            return True
        with self._lock:
            fault = self._faults.popleft() if self._faults else None
        if fault is not None and fault.kind == "status":
            request.outcome = "fault:status"
            await self._send_error(writer, fault)
            return True
        if fault is not None and fault.kind == "hang" and fault.after_chunks < 0:
            request.outcome = "fault:hang"
            await self._wait_for_close(reader)
            request.outcome = "client_closed"
            return False
        turn = self._peek_turn(request) if fault is not None else self._next_turn(request)
        if turn is None:
            request.outcome = "no_turn_left"
            await self._send_error(
                writer,
                Fault.http_error(
                    400,
                    f"openai_server: no scripted turn left for request #{len(self.chat_requests)};"
                    " add turns to the script",
                ),
            )
            return True
        body = request.body
        if not body.get("stream"):
            request.outcome = "answered"
            await self._send_json(writer, 200, self._completion(turn))
            return True
        stream_options = body.get("stream_options") or {}
        include_usage = self.report_usage and bool(stream_options.get("include_usage"))
        events = self._chunks(turn, include_usage)
        return await self._stream(request, reader, writer, events, fault)

    def _next_turn(self, request: RecordedRequest) -> Turn | None:
        if self._function is not None:
            return to_turn(self._function(request))
        with self._lock:
            spec = self._turns.popleft() if self._turns else None
        return None if spec is None else to_turn(spec)

    def _peek_turn(self, request: RecordedRequest) -> Turn:
        """The turn a faulted stream starts with (not consumed: the retry gets it)."""
        if self._function is not None:
            return to_turn(self._function(request))
        with self._lock:
            spec = self._turns[0] if self._turns else None
        return to_turn(spec) if spec is not None else Turn(text="partial answer")

    # --- wire format --------------------------------------------------------------------

    def _models(self) -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": self.model, "object": "model", "created": 0, "owned_by": "loopback"}],
        }

    def _completion(self, turn: Turn) -> dict[str, Any]:
        message: dict[str, Any] = {
            "role": "assistant",
            "content": turn.text or None,
            "refusal": turn.refusal or None,
            "annotations": [],
        }
        if turn.tool_calls:
            message["tool_calls"] = [
                {
                    "id": call.id or f"call_{index}_{uuid.uuid4().hex[:12]}",
                    "type": "function",
                    "function": {"name": call.name, "arguments": call.arguments_text},
                }
                for index, call in enumerate(turn.tool_calls)
            ]
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": self.model,
            "system_fingerprint": "fp_loopback",
            "choices": [
                {"index": 0, "message": message, "logprobs": None, "finish_reason": turn.finish}
            ],
            "usage": turn.usage() if self.report_usage else None,
        }

    def _chunks(self, turn: Turn, include_usage: bool) -> list[dict[str, Any]]:
        """The ``chat.completion.chunk`` objects of a streamed turn, in wire order."""
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            data: dict[str, Any] = {
                "id": completion_id,
                "object": "chat.completion.chunk",
                "created": created,
                "model": self.model,
                "service_tier": "default",
                "system_fingerprint": "fp_loopback",
                "choices": [
                    {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
                ],
            }
            if include_usage:
                data["usage"] = None
            return data

        size = turn.chunk_size or self.chunk_size
        out = [chunk({"role": "assistant", "content": "", "refusal": None})]
        out += [chunk({"reasoning_content": piece}) for piece in _pieces(turn.reasoning, size=size)]
        out += [chunk({"content": piece}) for piece in _pieces(turn.text, size=size)]
        out += [chunk({"refusal": piece}) for piece in _pieces(turn.refusal, size=size)]
        per_call: list[list[dict[str, Any]]] = []
        for index, call in enumerate(turn.tool_calls):
            first = {
                "index": index,
                "id": call.id or f"call_{uuid.uuid4().hex[:24]}",
                "type": "function",
                "function": {"name": call.name, "arguments": ""},
            }
            args = call.arguments_text
            if turn.indexless:
                whole = {k: v for k, v in first.items() if k != "index"}
                whole["function"] = {"name": call.name, "arguments": args}
                per_call.append([whole])
                continue
            step = max(1, -(-len(args) // max(1, call.pieces)))
            deltas = [first] + [
                {"index": index, "function": {"arguments": piece}}
                for piece in _pieces(args, size=step)
            ]
            per_call.append(deltas)
        if turn.interleave:
            longest = max((len(d) for d in per_call), default=0)
            ordered = [d[i] for i in range(longest) for d in per_call if i < len(d)]
        else:
            ordered = [delta for deltas in per_call for delta in deltas]
        out += [chunk({"tool_calls": [delta]}) for delta in ordered]
        out.append(chunk({}, turn.finish))
        if include_usage:
            final = chunk({})
            final["choices"] = []
            final["usage"] = turn.usage()
            out.append(final)
        return out

    async def _stream(
        self,
        request: RecordedRequest,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        events: list[dict[str, Any]],
        fault: Fault | None,
    ) -> bool:
        head = (
            "HTTP/1.1 200 OK\r\n"
            "content-type: text/event-stream; charset=utf-8\r\n"
            "transfer-encoding: chunked\r\n"
            "cache-control: no-cache\r\n"
            "connection: keep-alive\r\n"
            f"x-request-id: req_{uuid.uuid4().hex}\r\n"
            "openai-processing-ms: 1\r\n"
            "\r\n"
        )
        try:
            writer.write(head.encode())
            await writer.drain()
            limit = fault.after_chunks if fault is not None else len(events)
            for index, event in enumerate(events):
                if index >= limit:
                    break
                if self.delay:
                    await asyncio.sleep(self.delay)
                await self._send_event(
                    writer, json.dumps(event, ensure_ascii=False, separators=(",", ":"))
                )
            if fault is not None and fault.kind == "cut":
                request.outcome = "fault:cut"
                writer.transport.abort()
                return False
            if fault is not None and fault.kind == "hang":
                request.outcome = "fault:hang"
                await self._wait_for_close(reader)
                request.outcome = "client_closed"
                return False
            if fault is not None and fault.kind == "stream_error":
                request.outcome = "fault:stream_error"
                error = {
                    "error": {
                        "message": fault.message,
                        "type": fault.error_type,
                        "param": None,
                        "code": fault.code,
                    }
                }
                await self._send_event(writer, json.dumps(error))
            await self._send_event(writer, "[DONE]")
            writer.write(b"0\r\n\r\n")
            await writer.drain()
        except (ConnectionError, _ClientGone):
            request.outcome = "client_closed"
            self._client_closed.set()
            return False
        if request.outcome == "pending":
            request.outcome = "answered"
        return True

    async def _send_event(self, writer: asyncio.StreamWriter, data: str) -> None:
        if writer.transport.is_closing():
            raise _ClientGone
        payload = f"data: {data}\n\n".encode()
        writer.write(f"{len(payload):x}\r\n".encode() + payload + b"\r\n")
        await writer.drain()

    async def _wait_for_close(self, reader: asyncio.StreamReader) -> None:
        """Hold a hung response until the client gives up (or the server stops)."""
        while await reader.read(65536):
            pass
        self._client_closed.set()

    async def _send_json(
        self,
        writer: asyncio.StreamWriter,
        status: int,
        payload: Any,
        headers: Sequence[tuple[str, str]] = (),
    ) -> None:
        body = json.dumps(payload).encode()
        lines = [
            f"HTTP/1.1 {status} {_REASONS.get(status, 'Error')}",
            "content-type: application/json",
            f"content-length: {len(body)}",
            "connection: keep-alive",
            f"x-request-id: req_{uuid.uuid4().hex}",
            *(f"{name}: {value}" for name, value in headers),
        ]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        await writer.drain()

    async def _send_error(self, writer: asyncio.StreamWriter, fault: Fault) -> None:
        payload = {
            "error": {
                "message": fault.message,
                "type": fault.error_type,
                "param": None,
                "code": fault.code,
            }
        }
        await self._send_json(writer, fault.status, payload, fault.headers)


def _pieces(text: str, *, size: int) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)]


@contextlib.contextmanager
def server_factory() -> Iterator[Callable[..., OpenAIServer]]:
    """A function that starts :class:`OpenAIServer` instances, all stopped on exit."""
    servers: list[OpenAIServer] = []

    def start(
        script: Sequence[TurnSpec] | ScriptFunction = (),
        faults: Sequence[Fault | None] = (),
        **kwargs: Any,
    ) -> OpenAIServer:
        server = OpenAIServer(script, faults, **kwargs).start()
        servers.append(server)
        return server

    try:
        yield start
    finally:
        for server in servers:
            server.stop()


@pytest.fixture
def openai_server() -> Iterator[Callable[..., OpenAIServer]]:
    """Start OpenAI loopback servers: ``server = openai_server(script=[...], faults=[...])``."""
    with server_factory() as start:
        yield start
