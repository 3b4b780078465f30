"""FallbackModel: the next model answers when one fails for a reason another may not share."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from loopwright import Agent, MemoryStore
from loopwright.events import TextDelta, Usage
from loopwright.messages import Message
from loopwright.models.base import (
    Model,
    ModelError,
    ModelEvent,
    ModelRequest,
    ModelResponse,
    Pricing,
    RetryNotice,
)
from loopwright.models.fallback import FallbackModel, should_fall_back
from loopwright.models.retry import RetryingModel

REQUEST = ModelRequest(messages=[Message.user("hi")])


@dataclass
class Stub(Model):
    """A model that streams ``partial``, then fails with ``error`` or answers ``answer``."""

    name: str
    answer: str = ""
    error: ModelError | None = None
    partial: str = ""
    context_window: int = 200_000
    pricing: Pricing | None = None
    usage: Usage = field(default_factory=lambda: Usage(input_tokens=1_000_000, output_tokens=0))
    calls: int = 0
    closed: bool = False

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        self.calls += 1
        if self.partial:
            yield TextDelta(self.partial)
        if self.error is not None:
            raise self.error
        yield TextDelta(self.answer)
        yield ModelResponse(Message.assistant(self.answer), "end_turn", self.usage.copy())

    async def aclose(self) -> None:
        self.closed = True


def overloaded() -> ModelError:
    return ModelError(
        "The API is overloaded (529 overloaded_error)", retryable=True, status_code=529
    )


async def collect(model: Model) -> list[ModelEvent]:
    return [event async for event in model.stream(REQUEST)]


async def test_a_failing_primary_hands_the_turn_to_the_secondary_with_a_notice() -> None:
    primary = Stub("anthropic:claude-sonnet-4-5", error=overloaded())
    secondary = Stub("openai:gpt-4.1", answer="from OpenAI")
    model = FallbackModel(primary, secondary)
    events = await collect(model)

    notice = events[0]
    assert isinstance(notice, RetryNotice)
    assert notice.message == (
        "anthropic:claude-sonnet-4-5 failed (The API is overloaded (529 overloaded_error)); "
        "switching to openai:gpt-4.1"
    )
    assert notice.attempt == 2
    assert notice.delay == 0.0
    assert not notice.discard_partial
    response = events[-1]
    assert isinstance(response, ModelResponse)
    assert response.message.text == "from OpenAI"
    assert model.last_model is secondary
    assert (primary.calls, secondary.calls) == (1, 1)


async def test_text_streamed_by_the_failed_model_is_declared_void() -> None:
    primary = Stub("a", partial="The answer is", error=overloaded())
    model = FallbackModel(primary, Stub("b", answer="Forty-two."))
    events = await collect(model)
    assert [type(e).__name__ for e in events] == [
        "TextDelta",
        "RetryNotice",
        "TextDelta",
        "ModelResponse",
    ]
    notice = events[1]
    assert isinstance(notice, RetryNotice)
    assert notice.discard_partial
    assert "discarded" in notice.message


@pytest.mark.parametrize(
    ("error", "falls_back"),
    [
        (ModelError("rate limited", retryable=True, status_code=429), True),
        (ModelError("server error", retryable=True, status_code=500), True),
        (ModelError("overloaded", retryable=True, status_code=529), True),
        (ModelError("connection refused", retryable=True), True),
        (ModelError("bad gateway, not retried here", status_code=502), True),
        (ModelError("bad request", status_code=400), False),
        (ModelError("bad key", status_code=401), False),
        (ModelError("forbidden", status_code=403), False),
        (ModelError("no such model", status_code=404), False),
        (ModelError("scripted model ran out of turns"), False),
    ],
)
async def test_which_errors_fall_back(error: ModelError, falls_back: bool) -> None:
    assert should_fall_back(error) is falls_back
    secondary = Stub("b", answer="ok")
    model = FallbackModel(Stub("a", error=error), secondary)
    if falls_back:
        assert isinstance((await collect(model))[-1], ModelResponse)
    else:
        with pytest.raises(ModelError) as raised:
            await collect(model)
        assert raised.value is error
        assert secondary.calls == 0


async def test_a_custom_policy_can_fall_back_on_a_rejected_key_too() -> None:
    denied = ModelError("bad key", status_code=401)
    model = FallbackModel(
        Stub("a", error=denied),
        Stub("b", answer="ok"),
        fall_back_on=lambda error: error.status_code == 401 or should_fall_back(error),
    )
    assert isinstance((await collect(model))[-1], ModelResponse)


async def test_when_every_model_fails_the_error_names_each_failure() -> None:
    model = FallbackModel(
        Stub("a", error=overloaded()),
        Stub("b", error=ModelError("HTTP 500 server_error", retryable=True, status_code=500)),
        Stub("c", error=ModelError("connection refused", retryable=True)),
    )
    notices: list[RetryNotice] = []

    async def consume() -> None:
        async for event in model.stream(REQUEST):
            assert isinstance(event, RetryNotice)
            notices.append(event)

    with pytest.raises(ModelError) as raised:
        await consume()
    assert [n.attempt for n in notices] == [2, 3]
    message = str(raised.value)
    assert message.startswith("every model failed (a: The API is overloaded")
    assert "b: HTTP 500 server_error" in message
    assert "c: connection refused" in message
    assert raised.value.retryable
    assert isinstance(raised.value.__cause__, ModelError)


async def test_a_later_model_with_a_non_fallback_error_still_reports_all_failures() -> None:
    model = FallbackModel(
        Stub("a", error=overloaded()), Stub("b", error=ModelError("bad request", status_code=400))
    )
    with pytest.raises(ModelError, match=r"every model failed \(a: .*; b: bad request\)") as raised:
        await collect(model)
    assert not raised.value.retryable
    assert raised.value.status_code == 400


def test_name_window_and_closing_cover_the_whole_chain() -> None:
    a = Stub("a", context_window=200_000)
    b = Stub("b", context_window=128_000)
    model = FallbackModel(a, b)
    assert model.name == "a > b"
    assert model.context_window == 128_000
    assert model.pricing is None
    with pytest.raises(AttributeError):
        model.context_window = 1
    with pytest.raises(ValueError, match="at least one fallback"):
        FallbackModel(a)


async def test_aclose_closes_every_model() -> None:
    a, b = Stub("a"), Stub("b")
    await FallbackModel(a, b).aclose()
    assert a.closed
    assert b.closed


async def test_each_response_is_priced_by_the_model_that_answered(tmp_path: Path) -> None:
    expensive = Pricing(10.0, 0.0)
    cheap = Pricing(1.0, 0.0)
    primary = Stub("primary", answer="primary answer", pricing=expensive)
    secondary = Stub("secondary", answer="secondary answer", pricing=cheap)
    model = FallbackModel(primary, secondary)
    agent = Agent(model, store=MemoryStore(), workspace_root=str(tmp_path))

    first = await agent.collect("one")
    assert first.usage.cost_usd == pytest.approx(10.0)  # 1M input tokens at $10
    primary.error = overloaded()
    second = await agent.collect("two")
    assert second.text == "secondary answer"
    assert second.usage.cost_usd == pytest.approx(1.0)  # at the secondary's price
    assert model.last_model is secondary


async def test_retries_happen_before_falling_back(tmp_path: Path) -> None:
    primary = Stub("primary", error=overloaded())
    waited: list[float] = []

    async def sleep(delay: float) -> None:
        waited.append(delay)

    model = FallbackModel(
        RetryingModel(primary, max_attempts=3, jitter=0.0, sleep=sleep),
        Stub("secondary", answer="done"),
    )
    agent = Agent(model, store=MemoryStore(), workspace_root=str(tmp_path))
    events = [event async for event in agent.run("go")]
    errors = [e["message"] for e in events if e.type == "error"]
    assert len(errors) == 3
    assert "retrying in 1.0s (attempt 2 of 3)" in errors[0]
    assert "retrying in 2.0s (attempt 3 of 3)" in errors[1]
    assert "switching to secondary" in errors[2]
    assert primary.calls == 3
    assert waited == [1.0, 2.0]
    assert events[-1]["stop_reason"] == "end_turn"


async def test_an_overloaded_anthropic_falls_back_to_openai_over_the_wire(tmp_path: Path) -> None:
    pytest.importorskip("anthropic")
    pytest.importorskip("openai")
    from loopwright.models.anthropic import AnthropicModel
    from loopwright.models.openai import OpenAIModel
    from loopwright.models.pricing import price_for

    from .anthropic_server import AnthropicServer
    from .anthropic_server import Fault as AnthropicFault
    from .openai_server import OpenAIServer

    waited: list[float] = []

    async def sleep(delay: float) -> None:
        waited.append(delay)

    with AnthropicServer() as anthropic_server, OpenAIServer(["OpenAI says hi."]) as openai_server:
        anthropic_server.inject(*[AnthropicFault.overloaded() for _ in range(2)])
        primary = RetryingModel(
            AnthropicModel(api_key="test-key", base_url=anthropic_server.url),
            max_attempts=2,
            jitter=0.0,
            sleep=sleep,
        )
        secondary = OpenAIModel(
            "gpt-4.1",
            base_url=openai_server.base_url,
            api_key="test-key",
            pricing=price_for("gpt-4.1"),
        )
        model = FallbackModel(primary, secondary)
        agent = Agent(model, store=MemoryStore(), workspace_root=str(tmp_path))
        result = await agent.collect("hello")
        await model.aclose()

    assert result.ok
    assert result.text == "OpenAI says hi."
    notices = [e["message"] for e in result.events if e.type == "error"]
    assert len(notices) == 2
    assert "overloaded" in notices[0].lower()
    assert "switching to openai:gpt-4.1" in notices[1]
    assert len(anthropic_server.requests) == 2
    assert len(openai_server.chat_requests) == 1
    usage = next(e for e in result.events if e.type == "usage")
    pricing = price_for("gpt-4.1")
    assert pricing is not None
    expected = pricing.cost(
        Usage(
            input_tokens=usage["input_tokens"],
            output_tokens=usage["output_tokens"],
            cache_read_tokens=usage["cache_read_tokens"],
        )
    )
    assert usage["cost_usd"] == pytest.approx(expected)
    assert usage["cost_usd"] > 0
