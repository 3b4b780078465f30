"""A per-session rate limit on tool calls: a token bucket of ``calls`` per ``per`` seconds.

The bucket starts full, so a burst of up to ``calls`` calls goes through at once; after that,
calls are admitted at the steady rate ``calls / per``. What happens to a call over the limit is
chosen with ``on_limit``:

- ``"error"`` (default): the call is not run; the model gets an ``is_error`` result telling it
  to slow down and how long until calls are admitted again. A runaway loop stops burning
  calls at once and the model is told why.
- ``"wait"``: the call waits its turn (in order of arrival) and then runs, unless the wait
  would exceed ``max_wait`` seconds, in which case it fails as with ``"error"``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Literal

OnLimit = Literal["error", "wait"]


class RateLimit:
    """The configuration: at most ``calls`` tool calls per ``per`` seconds in a session.

    ``clock`` and ``sleep`` are the monotonic clock and the sleep function used (change them
    only to test).
    """

    def __init__(
        self,
        calls: int,
        per: float = 60.0,
        *,
        on_limit: OnLimit = "error",
        max_wait: float = 60.0,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        if not isinstance(calls, int) or isinstance(calls, bool) or calls < 1:
            raise ValueError(f"RateLimit calls must be a positive integer, got {calls!r}")
        if not per > 0:
            raise ValueError(f"RateLimit per must be a positive number of seconds, got {per!r}")
        if on_limit not in ("error", "wait"):
            raise ValueError(f"RateLimit on_limit must be 'error' or 'wait', got {on_limit!r}")
        if max_wait < 0:
            raise ValueError(f"RateLimit max_wait must be zero or more seconds, got {max_wait!r}")
        self.calls = calls
        self.per = float(per)
        self.on_limit: OnLimit = on_limit
        self.max_wait = float(max_wait)
        self.clock = clock
        self.sleep = sleep

    def bucket(self) -> TokenBucket:
        """A fresh bucket for one session."""
        return TokenBucket(self)

    def __repr__(self) -> str:
        return f"RateLimit({self.calls} calls per {self.per:g}s, on_limit={self.on_limit!r})"


class TokenBucket:
    """One session's allowance of tool calls under a :class:`RateLimit`."""

    __slots__ = ("_last", "_rate", "_tokens", "limit")

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self._rate = limit.calls / limit.per
        self._tokens = float(limit.calls)
        self._last = limit.clock()

    def _refill(self) -> None:
        now = self.limit.clock()
        elapsed = now - self._last
        if elapsed > 0:
            self._tokens = min(float(self.limit.calls), self._tokens + elapsed * self._rate)
        self._last = now

    @property
    def available(self) -> float:
        """Calls that could be made right now (fractional: the bucket refills continuously)."""
        self._refill()
        return max(self._tokens, 0.0)

    async def acquire(self) -> str | None:
        """Take one call's allowance: ``None`` when the call may run, else why it may not."""
        self._refill()
        if self._tokens >= 1.0:
            self._tokens -= 1.0
            return None
        limit = self.limit
        delay = (1.0 - self._tokens) / self._rate
        if limit.on_limit == "wait" and delay <= limit.max_wait:
            self._tokens -= 1.0  # reserved now, so waiters are admitted in order of arrival
            try:
                await limit.sleep(delay)
            except BaseException:
                self._tokens += 1.0  # cancelled while waiting: give the reservation back
                raise
            return None
        return (
            f"Rate limit reached: this session allows {limit.calls} tool calls per "
            f"{limit.per:g}s, so this call was not run. Slow down: wait about "
            f"{max(delay, 0.1):.1f}s before the next tool call, and do more per call instead "
            "of many small calls."
        )
