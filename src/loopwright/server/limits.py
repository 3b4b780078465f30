"""Per-caller request rate limits (token buckets) and the request body size limit.

Both protect the server from one caller: the rate limit keeps one token (or, with
authentication off, one client address) from starving the others, and the body limit keeps a
huge upload from being read into memory at all.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send


@dataclass(frozen=True, slots=True)
class RequestRate:
    """At most ``requests`` per ``per`` seconds per caller, in bursts of up to ``requests``."""

    requests: int
    per: float = 60.0

    def __post_init__(self) -> None:
        if not isinstance(self.requests, int) or isinstance(self.requests, bool):
            raise ValueError(f"requests must be a whole number, got {self.requests!r}")
        if self.requests < 1 or not self.per > 0:
            raise ValueError(
                f"a rate limit needs at least 1 request per a positive number of seconds, "
                f"got {self.requests}/{self.per}"
            )

    @classmethod
    def parse(cls, text: str) -> RequestRate:
        """``"120/60"`` (120 requests per 60 seconds) or ``"120"`` (per minute)."""
        count, _, per = text.strip().partition("/")
        try:
            return cls(int(count), float(per) if per else 60.0)
        except ValueError:
            raise ValueError(
                f"invalid rate limit {text!r}; write REQUESTS/SECONDS, e.g. 120/60"
            ) from None


class _Bucket:
    __slots__ = ("stamp", "tokens")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp


class RateLimiter:
    """One token bucket per caller key; :meth:`take` says whether a request may go on."""

    #: above this many buckets, full ones (idle callers) are forgotten
    PRUNE_ABOVE = 10_000

    def __init__(self, rate: RequestRate, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self._refill_per_s = rate.requests / rate.per
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}

    def take(self, key: str) -> float:
        """Take one request's allowance: 0.0 if the request may go on, else the seconds to
        wait before the next one will be admitted."""
        now = self._clock()
        capacity = float(self.rate.requests)
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) >= self.PRUNE_ABOVE:
                self._prune(now)
            bucket = self._buckets[key] = _Bucket(capacity, now)
        else:
            bucket.tokens = min(capacity, bucket.tokens + (now - bucket.stamp) * self._refill_per_s)
            bucket.stamp = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            return 0.0
        return (1.0 - bucket.tokens) / self._refill_per_s

    def _prune(self, now: float) -> None:
        capacity = float(self.rate.requests)
        for key in [
            k
            for k, b in self._buckets.items()
            if b.tokens + (now - b.stamp) * self._refill_per_s >= capacity
        ]:
            del self._buckets[key]


def retry_after_header(seconds: float) -> str:
    """The ``Retry-After`` value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))


def too_large_message(max_bytes: int) -> str:
    """The 413 answer: what happened and what to do."""
    return (
        f"the request body is larger than the server's limit of {max_bytes:,} bytes; send "
        "less (put large inputs in files the agent can read) or raise the limit with "
        "--max-body-bytes"
    )


class _TooLarge(HTTPException):
    """Raised while the body is read; FastAPI answers it as a JSON 413 like any HTTP error."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(413, too_large_message(max_bytes))


class BodySizeLimit:
    """ASGI middleware: refuse request bodies over ``max_bytes`` with 413, before reading them.

    A ``Content-Length`` over the limit is refused at once; a chunked body is counted as it
    arrives and refused when it passes the limit (nothing beyond the limit is kept).
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for name, value in scope.get("headers", ()):
            if name == b"content-length":
                try:
                    declared = int(value)
                except ValueError:
                    declared = 0
                if declared > self.max_bytes:
                    await self._refuse(send)
                    return
        received = 0
        started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise _TooLarge(self.max_bytes)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _TooLarge:
            if started:
                raise
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = json.dumps({"detail": too_large_message(self.max_bytes)}).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body})
