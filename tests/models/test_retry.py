"""RetryingModel: backoff on retryable failures, announced retries, no duplicated text.

Unit tests drive it with small Model subclasses; the integration tests at the end go through
the real Anthropic and OpenAI providers against loopback servers that inject faults.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from loopwright import Agent, MemoryStore
from loopwright.events import Error, TextDelta, Usage
from loopwright.messages import Message
from loopwright.models.anthropic import AnthropicModel
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
from loopwright.models.retry import RetryingModel

from .anthropic_server import AnthropicServer, Fault, text_turn
from .openai_server import Fault as OpenAIFault
from .openai_server import OpenAIServer

REQUEST = ModelRequest(messages=[Message.user("hi")])


@dataclass
class Attempt:
    """What one call of :class:`Flaky` does: stream ``chunks``, then fail with ``error``
    (or answer with the chunks joined), or hang forever after the chunks."""

    chunks: Sequence[str] = ()
    error: ModelError | None = None
    hang: bool = False
    thinking: str = ""


@dataclass
class Flaky(Model):
    """A model whose successive calls follow a list of :class:`Attempt`."""

    attempts: list[Attempt]
    calls: int = 0
    closed: int = 0
    name: str = "flaky"
    context_window: int = 1234
    pricing: Pricing | None = field(default_factory=lambda: Pricing(1.0, 2.0))

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        attempt = self.attempts[self.calls]
        self.calls += 1
        try:
            if attempt.thinking:
                yield ThinkingDelta(attempt.thinking)
            for chunk in attempt.chunks:
                yield TextDelta(chunk)
            if attempt.hang:
                await asyncio.Event().wait()
            if attempt.error is not None:
                raise attempt.error
            text = "".join(attempt.chunks)
            yield ModelResponse(Message.assistant(text), "end_turn", Usage(10, 5))
        finally:
            self.closed += 1


class Sleeps:
    """A ``sleep`` that records the delays instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, delay: float) -> None:
        self.delays.append(delay)


def overloaded() -> ModelError:
    return ModelError("HTTP 529 overloaded_error: Overloaded", retryable=True, status_code=529)


async def collect(model: Model) -> list[ModelEvent]:
    return [event async for event in model.stream(REQUEST)]


def retrying(model: Model, sleeps: Sleeps, **options: float) -> RetryingModel:
    options.setdefault("jitter", 0.0)
    return RetryingModel(model, sleep=sleeps, **options)  # type: ignore[arg-type]


async def test_a_retryable_failure_before_any_output_is_announced_then_retried() -> None:
    inner = Flaky([Attempt(error=overloaded()), Attempt(chunks=["Hello", " there"])])
    sleeps = Sleeps()
    events = await collect(retrying(inner, sleeps, base_delay=1.5))

    notice, *rest = events
    assert isinstance(notice, RetryNotice)
    assert notice.attempt == 2
    assert notice.delay == 1.5
    assert not notice.discard_partial
    assert "529" in notice.message
    assert "retrying in 1.5s (attempt 2 of 5)" in notice.message
    assert [e.text for e in rest if isinstance(e, TextDelta)] == ["Hello", " there"]
    assert isinstance(rest[-1], ModelResponse)
    assert rest[-1].message.text == "Hello there"
    assert sleeps.delays == [1.5]
    assert inner.calls == 2
    assert inner.closed == 2  # the failed attempt's stream was closed


async def test_text_streamed_before_a_failure_is_declared_void_not_repeated_silently() -> None:
    inner = Flaky(
        [
            Attempt(chunks=["Hel"], thinking="hmm", error=overloaded()),
            Attempt(chunks=["Hello!"]),
        ]
    )
    events = await collect(retrying(inner, Sleeps()))

    kinds = [type(e).__name__ for e in events]
    assert kinds == [
        "ThinkingDelta",
        "TextDelta",
        "RetryNotice",
        "TextDelta",
        "ModelResponse",
    ]
    notice = events[2]
    assert isinstance(notice, RetryNotice)
    assert notice.discard_partial
    assert "discarded" in notice.message


async def test_a_thinking_only_partial_also_counts_as_streamed_output() -> None:
    inner = Flaky([Attempt(thinking="let me see", error=overloaded()), Attempt(chunks=["ok"])])
    events = await collect(retrying(inner, Sleeps()))
    notice = next(e for e in events if isinstance(e, RetryNotice))
    assert notice.discard_partial


async def test_a_non_retryable_error_propagates_at_once() -> None:
    bad_request = ModelError("HTTP 400 invalid_request_error: messages: empty", status_code=400)
    inner = Flaky([Attempt(chunks=["x"], error=bad_request), Attempt(chunks=["never"])])
    sleeps = Sleeps()
    with pytest.raises(ModelError) as raised:
        await collect(retrying(inner, sleeps))
    assert raised.value is bad_request
    assert inner.calls == 1
    assert sleeps.delays == []


async def test_exhausted_attempts_raise_the_last_error_after_exponential_backoff() -> None:
    errors = [
        ModelError(f"HTTP 500 api_error #{i}", retryable=True, status_code=500) for i in range(6)
    ]
    inner = Flaky([Attempt(error=error) for error in errors])
    sleeps = Sleeps()
    model = retrying(inner, sleeps, max_attempts=6, base_delay=1.0, max_delay=10.0)
    notices: list[RetryNotice] = []

    async def consume() -> None:
        async for event in model.stream(REQUEST):
            assert isinstance(event, RetryNotice)
            notices.append(event)

    with pytest.raises(ModelError) as raised:
        await consume()
    assert raised.value is errors[-1]
    assert "gave up after 6 attempts" in "".join(raised.value.__notes__)
    assert inner.calls == 6
    assert sleeps.delays == [1.0, 2.0, 4.0, 8.0, 10.0]  # doubling, capped at max_delay
    assert [n.attempt for n in notices] == [2, 3, 4, 5, 6]


async def test_the_providers_retry_after_is_honoured_exactly() -> None:
    limited = ModelError(
        "HTTP 429 rate_limit_error", retryable=True, status_code=429, retry_after=7
    )
    inner = Flaky([Attempt(error=limited), Attempt(chunks=["ok"])])
    sleeps = Sleeps()
    model = RetryingModel(inner, sleep=sleeps, base_delay=0.5, jitter=1.0)
    events = await collect(model)
    assert sleeps.delays == [7.0]  # neither backoff nor jitter: what the server asked for
    assert isinstance(events[0], RetryNotice)
    assert events[0].delay == 7.0


async def test_a_retry_after_longer_than_max_delay_fails_now_instead_of_stalling() -> None:
    limited = ModelError(
        "HTTP 429 rate_limit_error", retryable=True, status_code=429, retry_after=600
    )
    inner = Flaky([Attempt(error=limited), Attempt(chunks=["ok"])])
    sleeps = Sleeps()
    with pytest.raises(ModelError) as raised:
        await collect(RetryingModel(inner, sleep=sleeps, max_delay=60))
    assert raised.value is limited
    assert "longer than max_delay=60s" in "".join(raised.value.__notes__)
    assert sleeps.delays == []


async def test_jitter_shortens_the_backoff_by_a_random_fraction() -> None:
    draws = iter([0.0, 1.0, 0.5])
    inner = Flaky([Attempt(error=overloaded()) for _ in range(3)] + [Attempt(chunks=["ok"])])
    sleeps = Sleeps()
    model = RetryingModel(
        inner, sleep=sleeps, base_delay=2.0, jitter=0.5, random=lambda: next(draws)
    )
    await collect(model)
    # backoffs 2, 4, 8 scaled by (1 - 0.5 * draw)
    assert sleeps.delays == pytest.approx([2.0, 2.0, 6.0])


async def test_a_hung_attempt_times_out_and_is_retried() -> None:
    inner = Flaky([Attempt(chunks=["par"], hang=True), Attempt(chunks=["whole answer"])])
    model = RetryingModel(inner, sleep=Sleeps(), idle_timeout=0.05)
    events = await collect(model)
    notice = next(e for e in events if isinstance(e, RetryNotice))
    assert "sent nothing for 0.05s" in notice.message
    assert notice.discard_partial
    response = events[-1]
    assert isinstance(response, ModelResponse)
    assert response.message.text == "whole answer"
    assert inner.closed == 2


async def test_closing_the_stream_during_the_wait_stops_without_another_attempt() -> None:
    inner = Flaky([Attempt(error=overloaded()), Attempt(chunks=["never"])])
    waiting = asyncio.Event()

    async def slow_sleep(delay: float) -> None:
        waiting.set()
        await asyncio.Event().wait()

    stream = RetryingModel(inner, sleep=slow_sleep).stream(REQUEST)
    task = asyncio.ensure_future(anext(stream))
    notice = await task
    assert isinstance(notice, RetryNotice)
    pending = asyncio.ensure_future(anext(stream))
    await waiting.wait()
    pending.cancel()
    with pytest.raises(asyncio.CancelledError):
        await pending
    await stream.aclose()  # type: ignore[attr-defined]
    assert inner.calls == 1


def test_the_wrapper_is_transparent_and_checks_its_settings() -> None:
    inner = Flaky([])
    model = RetryingModel(inner)
    assert model.name == "flaky"
    assert model.context_window == 1234
    assert model.pricing == Pricing(1.0, 2.0)
    model.context_window = 99
    assert inner.context_window == 99
    assert repr(model) == "<RetryingModel flaky>"
    bad_settings = [
        ({"max_attempts": 0}, "max_attempts must be at least 1"),
        ({"jitter": 1.5}, "jitter must be between 0 and 1"),
        ({"base_delay": -1}, "must not be negative"),
        ({"idle_timeout": 0}, "idle_timeout must be positive"),
    ]
    for bad, message in bad_settings:
        with pytest.raises(ValueError, match=message):
            RetryingModel(inner, **bad)  # type: ignore[arg-type]


# --- through the agent ------------------------------------------------------------------


def agent_for(model: Model, tmp_path: Path) -> Agent:
    return Agent(model, store=MemoryStore(), workspace_root=str(tmp_path / "ws"))


async def test_the_agent_shows_the_retry_and_keeps_only_the_final_answer(tmp_path: Path) -> None:
    inner = Flaky(
        [Attempt(chunks=["Half an ans"], error=overloaded()), Attempt(chunks=["Answer."])]
    )
    agent = agent_for(retrying(inner, Sleeps()), tmp_path)
    session = agent.new_session()
    events = [event async for event in agent.run("question", session)]

    assert [e.type for e in events] == ["text_delta", "error", "text_delta", "usage", "done"]
    retry = events[1]
    assert isinstance(retry, Error)
    assert retry.retryable
    assert "discarded" in retry.message
    assert events[-1]["stop_reason"] == "end_turn"
    assert [m.text for m in session.messages] == ["question", "Answer."]
    assert events[3]["cost_usd"] == pytest.approx((10 * 1.0 + 5 * 2.0) / 1e6)  # priced once


async def test_a_non_retryable_error_ends_the_run_with_the_providers_message(
    tmp_path: Path,
) -> None:
    denied = ModelError("HTTP 401 authentication_error: invalid x-api-key", status_code=401)
    inner = Flaky([Attempt(error=denied)])
    agent = agent_for(retrying(inner, Sleeps()), tmp_path)
    session = agent.new_session()
    events = [event async for event in agent.run("question", session)]
    assert [e.type for e in events] == ["error", "done"]
    assert events[0]["message"] == "HTTP 401 authentication_error: invalid x-api-key"
    assert not events[0]["retryable"]
    assert events[-1]["stop_reason"] == "error"
    assert [m.role for m in session.messages] == ["user"]  # history stays consistent


# --- through the real providers, against loopback servers that inject faults -------------


def fast_retries(model: Model) -> tuple[RetryingModel, Sleeps]:
    sleeps = Sleeps()
    return RetryingModel(model, sleep=sleeps, max_attempts=6, jitter=0.0, idle_timeout=5.0), sleeps


def anthropic_model(**options: object) -> Model:
    pytest.importorskip("anthropic")

    return AnthropicModel(**options)  # type: ignore[arg-type]


async def test_anthropic_faults_end_in_a_retried_success(tmp_path: Path) -> None:
    server = AnthropicServer([text_turn("The answer is 42.", chunk_size=4)])
    server.inject(
        Fault.rate_limited(retry_after=3),
        Fault.server_error(),
        Fault.overloaded(),
        Fault.overloaded_mid_stream(after_events=5),
        Fault.cut(after_events=6),
    )
    with server:
        provider = anthropic_model(api_key="test-key", base_url=server.url, timeout=5)
        model, sleeps = fast_retries(provider)
        agent = agent_for(model, tmp_path)
        session = agent.new_session()
        events = [event async for event in agent.run("What is the answer?", session)]
        await model.aclose()

    retries = [e for e in events if e.type == "error"]
    assert len(retries) == 5
    assert all(e["retryable"] for e in retries)
    assert "429" in retries[0]["message"]
    assert "(500 api_error: Internal server error)" in retries[1]["message"]
    assert "overloaded (529 overloaded_error: Overloaded)" in retries[2]["message"]
    assert sleeps.delays[0] == 3.0  # the 429's retry-after
    assert sleeps.delays[1:] == [2.0, 4.0, 8.0, 16.0]
    # text streamed by the attempts that broke mid-stream is announced as void
    assert "discarded" in retries[3]["message"]
    assert "discarded" in retries[4]["message"]
    assert events[-1]["stop_reason"] == "end_turn"
    assert session.messages[-1].text == "The answer is 42."
    assert len(server.requests) == 6


async def test_anthropic_hung_response_times_out_then_succeeds() -> None:
    with AnthropicServer([text_turn("Back again.")]) as server:
        server.inject(Fault.hang(after_events=3))
        provider = anthropic_model(api_key="test-key", base_url=server.url, timeout=5)
        model = RetryingModel(provider, sleep=Sleeps(), idle_timeout=0.5)
        events = await collect(model)
        await model.aclose()
    notice = next(e for e in events if isinstance(e, RetryNotice))
    assert notice.attempt == 2
    assert "sent nothing for 0.5s" in notice.message
    response = events[-1]
    assert isinstance(response, ModelResponse)
    assert response.message.text == "Back again."


async def test_anthropic_auth_error_is_not_retried(tmp_path: Path) -> None:
    with AnthropicServer([text_turn("unused")]) as server:
        server.inject(Fault.unauthorized("invalid x-api-key"))
        model, sleeps = fast_retries(anthropic_model(api_key="wrong", base_url=server.url))
        agent = agent_for(model, tmp_path)
        events = [event async for event in agent.run("hi")]
        await model.aclose()
    assert [e.type for e in events] == ["error", "done"]
    assert "invalid x-api-key" in events[0]["message"]
    assert not events[0]["retryable"]
    assert sleeps.delays == []
    assert len(server.requests) == 1


async def test_openai_faults_end_in_a_retried_success(tmp_path: Path) -> None:
    with OpenAIServer(["Forty-two, said the server."]) as server:
        server.inject(
            OpenAIFault.rate_limit(retry_after=2),
            OpenAIFault.server_error(500),
            OpenAIFault.cut(after_chunks=3),
            OpenAIFault.stream_error(after_chunks=2),
        )
        pytest.importorskip("openai")
        from loopwright.models.openai import OpenAIModel

        provider = OpenAIModel("gpt-4.1", base_url=server.base_url, api_key="test-key", timeout=5)
        model, sleeps = fast_retries(provider)
        agent = agent_for(model, tmp_path)
        session = agent.new_session()
        events = [event async for event in agent.run("What is the answer?", session)]
        await model.aclose()

    retries = [e for e in events if e.type == "error"]
    assert len(retries) == 4
    assert all(e["retryable"] for e in retries)
    assert sleeps.delays == [2.0, 2.0, 4.0, 8.0]
    assert "discarded" in retries[2]["message"]  # the cut came after text had streamed
    assert events[-1]["stop_reason"] == "end_turn"
    assert session.messages[-1].text == "Forty-two, said the server."
    # what a consumer prints after the last retry notice is the answer, exactly once
    last_notice = max(i for i, e in enumerate(events) if e.type == "error")
    after = "".join(e["text"] for e in events[last_notice:] if e.type == "text_delta")
    assert after == "Forty-two, said the server."


async def test_openai_hung_response_hits_the_provider_timeout_and_is_retried() -> None:
    with OpenAIServer(["Finally."]) as server:
        server.inject(OpenAIFault.hang())  # not even the response headers
        pytest.importorskip("openai")
        from loopwright.models.openai import OpenAIModel

        provider = OpenAIModel("gpt-4.1", base_url=server.base_url, api_key="k", timeout=0.5)
        sleeps = Sleeps()
        events = await collect(RetryingModel(provider, sleep=sleeps, jitter=0.0))
        await provider.aclose()
    notice = next(e for e in events if isinstance(e, RetryNotice))
    assert "did not answer within 0.5s" in notice.message
    assert sleeps.delays == [1.0]
    response = events[-1]
    assert isinstance(response, ModelResponse)
    assert response.message.text == "Finally."
