"""Retries with exponential backoff for model calls that failed for a passing reason.

:class:`RetryingModel` wraps any :class:`~loopwright.models.base.Model`. When the model raises
a :class:`~loopwright.models.base.ModelError` with ``retryable=True`` (providers set it for
HTTP 429, 5xx, Anthropic's 529 ``overloaded_error``, connection errors and timeouts) it waits
and runs the turn again from the start, up to ``max_attempts`` times in all. Any other error
is raised at once.

Every retry is announced with a :class:`~loopwright.models.base.RetryNotice` before the wait,
so a user sees why nothing happens. Text is never silently duplicated: when the failed
attempt had already streamed text or thinking, the notice says ``discard_partial=True`` (that
text is void and the answer starts over), and only the final, complete
:class:`~loopwright.models.base.ModelResponse` reaches the history.

Models built from a model string by :func:`loopwright.models.resolve_model` (``anthropic:``,
``openai:``) are wrapped in a :class:`RetryingModel` with the defaults below.
"""

from __future__ import annotations

import asyncio
import random as _random
from collections.abc import AsyncIterator, Awaitable, Callable

from loopwright.events import TextDelta
from loopwright.models.base import (
    Model,
    ModelError,
    ModelEvent,
    ModelRequest,
    ModelResponse,
    Pricing,
    RetryNotice,
    ThinkingDelta,
)

__all__ = ["RetryingModel", "close_stream"]

SleepFunction = Callable[[float], Awaitable[None]]


async def close_stream(stream: AsyncIterator[ModelEvent]) -> None:
    """Close a model's event stream (an async generator) so its connection is released."""
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


class RetryingModel(Model):
    """A model that retries retryable failures with exponential backoff and jitter.

    Before retry ``n`` (``n`` = 2 for the first retry) it waits
    ``min(max_delay, base_delay * 2 ** (n - 2))`` seconds, shortened by a random fraction of
    up to ``jitter`` (0: no jitter, 1: "full jitter") so that many clients do not retry in
    lockstep. When the provider said how long to wait (``ModelError.retry_after``, from a
    ``retry-after`` header) that wait is used instead; if it is longer than ``max_delay`` the
    error is raised at once rather than stalling the run (raise ``max_delay`` to wait longer).

    ``idle_timeout`` (seconds, off by default) treats an attempt that yields nothing for that
    long as a retryable failure: a safety net for a connection that hangs without an error.
    ``sleep`` and ``random`` replace :func:`asyncio.sleep` and :func:`random.random` (tests
    use them to run without waiting). When every attempt fails, the last error is raised.
    """

    def __init__(
        self,
        model: Model,
        *,
        max_attempts: int = 5,
        base_delay: float = 1.0,
        max_delay: float = 60.0,
        jitter: float = 0.25,
        idle_timeout: float | None = None,
        sleep: SleepFunction | None = None,
        random: Callable[[], float] | None = None,
    ) -> None:
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, got {max_attempts}")
        if base_delay < 0 or max_delay < 0:
            raise ValueError("base_delay and max_delay must not be negative")
        if not 0.0 <= jitter <= 1.0:
            raise ValueError(f"jitter must be between 0 and 1, got {jitter}")
        if idle_timeout is not None and idle_timeout <= 0:
            raise ValueError(f"idle_timeout must be positive, got {idle_timeout}")
        #: The wrapped model.
        self.model = model
        self.max_attempts = max_attempts
        self.base_delay = base_delay
        self.max_delay = max_delay
        self.jitter = jitter
        self.idle_timeout = idle_timeout
        self._sleep: SleepFunction = sleep or asyncio.sleep
        self._random: Callable[[], float] = random or _random.random

    # The wrapper is transparent: name, context window and prices are the wrapped model's.

    @property
    def name(self) -> str:
        """The wrapped model's name."""
        return self.model.name

    @name.setter
    def name(self, value: str) -> None:
        self.model.name = value

    @property
    def context_window(self) -> int:
        """The wrapped model's context window."""
        return self.model.context_window

    @context_window.setter
    def context_window(self, value: int) -> None:
        self.model.context_window = value

    @property
    def pricing(self) -> Pricing | None:
        """The wrapped model's prices."""
        return self.model.pricing

    @pricing.setter
    def pricing(self, value: Pricing | None) -> None:
        self.model.pricing = value

    def delay_before(self, attempt: int, error: ModelError) -> float | None:
        """Seconds to wait before ``attempt`` (2 = the first retry) after ``error``; ``None``
        when the provider asked for a longer wait than ``max_delay``."""
        if error.retry_after is not None:
            wait = max(0.0, float(error.retry_after))
            return wait if wait <= self.max_delay else None
        backoff = min(self.max_delay, self.base_delay * 2.0 ** max(0, attempt - 2))
        return backoff * (1.0 - self.jitter * self._random())

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        """The wrapped model's stream, run again after retryable failures (announced)."""
        attempt = 1
        while True:
            streamed = False
            failure: ModelError
            events = self.model.stream(request)
            watched = self._with_idle_timeout(events)
            try:
                async for event in watched:
                    if isinstance(event, TextDelta | ThinkingDelta):
                        streamed = True
                    elif isinstance(event, RetryNotice) and event.discard_partial:
                        streamed = False  # the wrapped model restarted the turn itself
                    yield event
                    if isinstance(event, ModelResponse):
                        return
                return
            except ModelError as exc:
                if not exc.retryable:
                    raise
                if attempt >= self.max_attempts:
                    exc.add_note(f"{self.name}: gave up after {attempt} attempts")
                    raise
                failure = exc
            finally:
                await close_stream(watched)
                await close_stream(events)
            attempt += 1
            delay = self.delay_before(attempt, failure)
            if delay is None:
                failure.add_note(
                    f"{self.name}: the provider asked to wait {failure.retry_after:g}s, longer "
                    f"than max_delay={self.max_delay:g}s"
                )
                raise failure
            yield RetryNotice(
                self._notice_text(failure, attempt, delay, streamed),
                attempt,
                delay,
                discard_partial=streamed,
            )
            await self._sleep(delay)

    async def _with_idle_timeout(
        self, events: AsyncIterator[ModelEvent]
    ) -> AsyncIterator[ModelEvent]:
        if self.idle_timeout is None:
            async for event in events:
                yield event
            return
        iterator = events.__aiter__()
        while True:
            try:
                async with asyncio.timeout(self.idle_timeout):
                    event = await anext(iterator)
            except StopAsyncIteration:
                return
            except TimeoutError:
                raise ModelError(
                    f"{self.name} sent nothing for {self.idle_timeout:g}s", retryable=True
                ) from None
            yield event

    def _notice_text(self, error: ModelError, attempt: int, delay: float, streamed: bool) -> str:
        text = (
            f"{self.name} failed ({str(error).rstrip('.')}); retrying in {delay:.1f}s "
            f"(attempt {attempt} of {self.max_attempts})"
        )
        if streamed:
            text += "; the partial answer so far is discarded and the answer starts over"
        return text
