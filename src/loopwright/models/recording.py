"""Record real provider HTTP traffic to a file, and replay it later offline, byte for byte.

The Anthropic and OpenAI SDKs send their requests through an ``httpx2.AsyncClient``; the
providers accept one as ``http_client``. Give them a client whose transport is a
:class:`RecordingTransport` and every exchange (request, response status, headers and body
chunks as they arrived, streaming included, and any transport error such as a cut
connection or a timeout) is appended to a JSON-lines file. Later, a client on a
:class:`ReplayTransport` serves those recorded responses again through the very same SDK and
provider code, with no network::

    model = AnthropicModel(http_client=recording_client("run.jsonl"))  # against the API
    ...
    model = AnthropicModel(http_client=replay_client("run.jsonl"))  # offline, later

Requests are matched by method, URL and a SHA-256 of the body; identical requests are
served their recorded responses in the order they were recorded (so a recorded retry
replays as a retry). A request that was not recorded gets an HTTP 404 whose error message
says so, which the provider reports as a clear, non-retryable error.

Credentials are never written: request headers whose names mention a key, token, secret,
cookie, authorization, organization or project, and response cookies and account ids, are
left out of the file. Request and response bodies are kept whole (they hold the prompts).
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections import deque
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

try:
    import httpx2
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "recording and replaying provider traffic needs httpx2, which comes with the provider "
        "SDKs; install them with: pip install 'loopwright[anthropic,openai]'"
    ) from exc

__all__ = [
    "RecordingTransport",
    "ReplayTransport",
    "recording_client",
    "replay_client",
]

_FORMAT = 1
#: Header names containing these are not written: credentials and account identifiers.
_REQUEST_SECRETS = ("auth", "key", "token", "secret", "cookie", "organization", "project")
_RESPONSE_SECRETS = ("cookie", "organization", "project")


def _body_hash(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _encode_bytes(data: bytes) -> str | dict[str, str]:
    """Text when the bytes are UTF-8 (readable files), base64 otherwise."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return {"base64": base64.b64encode(data).decode("ascii")}


def _decode_bytes(data: str | dict[str, str]) -> bytes:
    if isinstance(data, str):
        return data.encode("utf-8")
    return base64.b64decode(data["base64"])


def _headers(raw: list[tuple[bytes, bytes]], secrets: tuple[str, ...]) -> list[list[str]]:
    pairs: list[list[str]] = []
    for name, value in raw:
        text = name.decode("latin-1")
        if any(word in text.lower() for word in secrets):
            continue
        pairs.append([text, value.decode("latin-1")])
    return pairs


def _error_record(exc: BaseException) -> dict[str, str]:
    return {"type": type(exc).__name__, "message": str(exc)}


def _rebuild_error(record: dict[str, str], request: httpx2.Request) -> Exception:
    """The recorded transport error, as the same httpx2 exception class."""
    cls = getattr(httpx2, record.get("type", ""), None)
    message = record.get("message", "")
    if isinstance(cls, type) and issubclass(cls, httpx2.RequestError):
        return cls(message, request=request)
    return httpx2.ReadError(f"{record.get('type')}: {message}", request=request)


class _RecordingStream(httpx2.AsyncByteStream):
    """Passes the response body through and keeps a copy of every chunk."""

    def __init__(
        self, inner: httpx2.AsyncByteStream, finish: Callable[[list[bytes], str, Any], None]
    ) -> None:
        self._inner = inner
        self._finish = finish
        self._chunks: list[bytes] = []
        self._done = False

    def _end(self, how: str, error: BaseException | None = None) -> None:
        if not self._done:
            self._done = True
            self._finish(self._chunks, how, None if error is None else _error_record(error))

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._inner:
                self._chunks.append(chunk)
                yield chunk
        except httpx2.TransportError as exc:
            self._end("error", exc)
            raise
        self._end("complete")

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self._end("closed")  # the reader stopped early: what it read is recorded


class RecordingTransport(httpx2.AsyncBaseTransport):
    """An httpx2 transport that sends requests on (to ``transport``, by default a normal
    network transport) and appends each exchange to the JSON-lines file ``path``.

    The file is started afresh unless ``append=True``.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        transport: httpx2.AsyncBaseTransport | None = None,
        *,
        append: bool = False,
    ) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not append:
            self.path.write_text("", encoding="utf-8")
        self._transport = transport or httpx2.AsyncHTTPTransport()
        #: How many exchanges were written.
        self.recorded = 0

    def _write(self, entry: dict[str, Any]) -> None:
        line = json.dumps(entry, ensure_ascii=False, separators=(",", ":"))
        with self.path.open("a", encoding="utf-8") as file:
            file.write(line + "\n")
        self.recorded += 1

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        """Send ``request`` and record the exchange once the response body has been read."""
        body = await request.aread()
        entry: dict[str, Any] = {
            "format": _FORMAT,
            "request": {
                "method": request.method,
                "url": str(request.url),
                "headers": _headers(request.headers.raw, _REQUEST_SECRETS),
                "body_sha256": _body_hash(body),
                "body": _encode_bytes(body),
            },
        }
        try:
            response = await self._transport.handle_async_request(request)
        except httpx2.TransportError as exc:
            entry["error"] = _error_record(exc)
            self._write(entry)
            raise
        extensions = response.extensions
        entry["response"] = {
            "status": response.status_code,
            "headers": _headers(response.headers.raw, _RESPONSE_SECRETS),
            "http_version": bytes(extensions.get("http_version", b"HTTP/1.1")).decode("ascii"),
            "reason_phrase": bytes(extensions.get("reason_phrase", b"")).decode("latin-1"),
        }

        def finish(chunks: list[bytes], how: str, error: dict[str, str] | None) -> None:
            entry["response"]["chunks"] = [_encode_bytes(chunk) for chunk in chunks]
            entry["response"]["end"] = how
            if error is not None:
                entry["response"]["error"] = error
            self._write(entry)

        assert isinstance(response.stream, httpx2.AsyncByteStream)
        return httpx2.Response(
            response.status_code,
            headers=response.headers.raw,
            stream=_RecordingStream(response.stream, finish),
            extensions=extensions,
            request=request,
        )

    async def aclose(self) -> None:
        """Close the transport that does the sending."""
        await self._transport.aclose()


class _ReplayStream(httpx2.AsyncByteStream):
    def __init__(self, chunks: list[bytes], error: Exception | None) -> None:
        self._chunks = chunks
        self._error = error

    async def __aiter__(self) -> AsyncIterator[bytes]:
        for chunk in self._chunks:
            yield chunk
        if self._error is not None:
            raise self._error


class ReplayTransport(httpx2.AsyncBaseTransport):
    """An httpx2 transport that answers from a file written by :class:`RecordingTransport`,
    without any network.

    ``ignore_host=True`` matches on the URL's path and query only, so a recording made
    against one server replays for a client pointed at another address.
    """

    def __init__(self, path: str | os.PathLike[str], *, ignore_host: bool = False) -> None:
        self.path = Path(path)
        self.ignore_host = ignore_host
        if not self.path.is_file():
            raise FileNotFoundError(
                f"no recording at {self.path}; record one first with RecordingTransport"
            )
        self._queues: dict[tuple[str, str, str], deque[dict[str, Any]]] = {}
        self._by_url: dict[tuple[str, str], int] = {}
        with self.path.open(encoding="utf-8") as file:
            for number, line in enumerate(file, 1):
                if not line.strip():
                    continue
                try:
                    entry = json.loads(line)
                    recorded = entry["request"]
                    key = self._key(recorded["method"], recorded["url"], recorded["body_sha256"])
                except (ValueError, KeyError, TypeError):
                    raise ValueError(
                        f"{self.path}:{number} is not a recorded exchange; replay a file "
                        "written by RecordingTransport"
                    ) from None
                self._queues.setdefault(key, deque()).append(entry)
                self._by_url[key[:2]] = self._by_url.get(key[:2], 0) + 1
        #: Requests that found no recorded response, as ``"METHOD URL"``.
        self.misses: list[str] = []

    def _key(self, method: str, url: str, body_sha256: str) -> tuple[str, str, str]:
        if self.ignore_host:
            parsed = httpx2.URL(url)
            url = parsed.raw_path.decode("ascii")
        return (method.upper(), url, body_sha256)

    @property
    def remaining(self) -> int:
        """How many recorded responses have not been served yet."""
        return sum(len(queue) for queue in self._queues.values())

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        """The next recorded response to this exact request (or a 404 saying there is none)."""
        body = await request.aread()
        key = self._key(request.method, str(request.url), _body_hash(body))
        queue = self._queues.get(key)
        if not queue:
            return self._miss(request, key)
        entry = queue.popleft()
        if "response" not in entry:
            raise _rebuild_error(entry.get("error", {}), request)
        recorded = entry["response"]
        chunks = [_decode_bytes(chunk) for chunk in recorded.get("chunks", [])]
        error = None
        if recorded.get("end") == "error":
            error = _rebuild_error(recorded.get("error", {}), request)
        extensions = {
            "http_version": str(recorded.get("http_version", "HTTP/1.1")).encode("ascii"),
            "reason_phrase": str(recorded.get("reason_phrase", "")).encode("latin-1"),
        }
        return httpx2.Response(
            int(recorded["status"]),
            headers=[(name, value) for name, value in recorded.get("headers", [])],
            stream=_ReplayStream(chunks, error),
            extensions=extensions,
            request=request,
        )

    def _miss(self, request: httpx2.Request, key: tuple[str, str, str]) -> httpx2.Response:
        where = f"{request.method} {request.url}"
        self.misses.append(where)
        same_url = self._by_url.get(key[:2], 0)
        if same_url:
            why = (
                f"its body (sha256 {key[2][:12]}) matches none of the {same_url} recorded for "
                "that URL, or they were all replayed already"
            )
        else:
            why = "nothing was recorded for that URL"
        message = (
            f"no recorded response for {where} in {self.path}: {why}; record the run again "
            "if the request changed"
        )
        # the error shape both the Anthropic and the OpenAI SDK read their message from
        error = {"type": "error", "error": {"type": "not_found_error", "message": message}}
        return httpx2.Response(
            404,
            headers={"content-type": "application/json", "x-loopwright-replay": "miss"},
            content=json.dumps(error).encode("utf-8"),
            request=request,
        )


def recording_client(
    path: str | os.PathLike[str],
    *,
    append: bool = False,
    transport: httpx2.AsyncBaseTransport | None = None,
    **client_options: Any,
) -> httpx2.AsyncClient:
    """An ``httpx2.AsyncClient`` that records its traffic to ``path``; pass it to a provider
    as ``http_client``. ``client_options`` go to the client (``timeout``...)."""
    return httpx2.AsyncClient(
        transport=RecordingTransport(path, transport, append=append), **client_options
    )


def replay_client(
    path: str | os.PathLike[str], *, ignore_host: bool = False, **client_options: Any
) -> httpx2.AsyncClient:
    """An ``httpx2.AsyncClient`` that replays the recording at ``path`` with no network;
    pass it to a provider as ``http_client``."""
    return httpx2.AsyncClient(
        transport=ReplayTransport(path, ignore_host=ignore_host), **client_options
    )
