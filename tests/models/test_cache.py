"""CachedModel: the same request is answered from disk, replaying the stream, at no cost."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from loopwright import Agent, MemoryStore, ReadTool, WriteTool
from loopwright.events import TextDelta, Usage
from loopwright.messages import Message, TextBlock, ThinkingBlock, ToolUseBlock
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
from loopwright.models.cache import CachedModel
from loopwright.models.scripted import ScriptedModel, ScriptedTurn, call

REQUEST = ModelRequest(
    messages=[Message.user("What is in notes.txt?")],
    system="You are careful.",
    tools=[{"name": "Read", "description": "read a file", "input_schema": {"type": "object"}}],
)


async def collect(model: Model, request: ModelRequest = REQUEST) -> list[ModelEvent]:
    return [event async for event in model.stream(request)]


def texts(events: list[ModelEvent]) -> list[str]:
    return [e.text for e in events if isinstance(e, TextDelta)]


async def test_a_repeated_request_replays_the_same_stream_from_disk(tmp_path: Path) -> None:
    inner = ScriptedModel(
        [ScriptedTurn("Let me read it.", [call("Read", file_path="notes.txt")])],
        chunk_size=4,
        pricing=Pricing(3.0, 15.0),
    )
    cached = CachedModel(inner, tmp_path / "cache.db")

    first = await collect(cached)
    second = await collect(cached)  # the script has no second turn: only the cache can answer

    assert (cached.misses, cached.hits) == (1, 1)
    assert texts(first) == texts(second) == ["Let ", "me r", "ead ", "it."]
    fresh, replayed = first[-1], second[-1]
    assert isinstance(fresh, ModelResponse)
    assert isinstance(replayed, ModelResponse)
    assert replayed.message == fresh.message
    assert replayed.stop_reason == "tool_use"
    assert replayed.usage.output_tokens == fresh.usage.output_tokens
    assert fresh.usage.cost_usd > 0  # the real call was paid for...
    assert replayed.usage.cost_usd == 0.0  # ...the replay was not
    assert cached.pricing is None  # so the agent does not price the replay either
    assert len(inner.requests) == 1


async def test_the_cache_outlives_the_process_that_filled_it(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "cache.db"
    await collect(CachedModel(ScriptedModel(["stored answer"]), path))
    later = CachedModel(ScriptedModel([]), path)
    events = await collect(later)
    assert "".join(texts(events)) == "stored answer"
    assert len(later) == 1
    later.clear()
    assert len(later) == 0
    with pytest.raises(ModelError, match="ran out of turns"):
        await collect(later)


@pytest.mark.parametrize(
    "change",
    [
        {"system": "You are reckless."},
        {"messages": [Message.user("What is in todo.txt?")]},
        {"tools": []},
        {"max_tokens": 100},
        {"temperature": 0.7},
        {"tool_choice": "any"},
        {"response_format": {"type": "object"}},
        {"stop": ["END"]},
    ],
)
def test_any_change_to_what_the_model_sees_is_a_different_key(
    tmp_path: Path, change: dict[str, Any]
) -> None:
    cached = CachedModel(ScriptedModel([]), tmp_path / "c.db")
    assert cached.key(dataclasses.replace(REQUEST, **change)) != cached.key(REQUEST)


def test_bookkeeping_that_the_model_never_sees_is_not_part_of_the_key(tmp_path: Path) -> None:
    cached = CachedModel(ScriptedModel([]), tmp_path / "c.db")
    same = dataclasses.replace(REQUEST, estimated_input_tokens=999, metadata={"run": "x"})
    assert cached.key(same) == cached.key(REQUEST)
    other_model = CachedModel(ScriptedModel([], name="another"), tmp_path / "c.db")
    assert other_model.key(REQUEST) != cached.key(REQUEST)


class Failing(Model):
    """Fails once, mid-stream, then answers."""

    name = "failing"

    def __init__(self) -> None:
        self.calls = 0

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        self.calls += 1
        yield TextDelta("partial")
        if self.calls == 1:
            raise ModelError("connection cut", retryable=True)
        yield ModelResponse(Message.assistant("complete"), "end_turn", Usage(1, 1))


async def test_a_failed_turn_is_not_stored(tmp_path: Path) -> None:
    inner = Failing()
    cached = CachedModel(inner, tmp_path / "c.db")
    with pytest.raises(ModelError):
        await collect(cached)
    assert len(cached) == 0
    events = await collect(cached)
    assert isinstance(events[-1], ModelResponse)
    assert len(cached) == 1
    assert inner.calls == 2


class Restarting(Model):
    """Streams a partial answer, announces a restart, then streams the real one."""

    name = "restarting"

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        yield ThinkingDelta("first try")
        yield TextDelta("Hal")
        yield RetryNotice("cut; retrying", 2, 0.0, discard_partial=True)
        yield ThinkingDelta("second try")
        yield TextDelta("Hello")
        message = Message("assistant", [ThinkingBlock("second try", "sig"), TextBlock("Hello")])
        yield ModelResponse(message, "end_turn", Usage(1, 1))


async def test_only_the_final_attempt_of_a_retried_turn_is_stored(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    first = await collect(CachedModel(Restarting(), path))
    assert any(isinstance(e, RetryNotice) for e in first)
    replay = await collect(CachedModel(ScriptedModel([], name="restarting"), path))
    assert [type(e).__name__ for e in replay] == ["ThinkingDelta", "TextDelta", "ModelResponse"]
    assert isinstance(replay[0], ThinkingDelta)
    assert replay[0].thinking == "second try"
    response = replay[-1]
    assert isinstance(response, ModelResponse)
    assert response.message.content == [ThinkingBlock("second try", "sig"), TextBlock("Hello")]


async def test_a_cut_off_tool_call_round_trips(tmp_path: Path) -> None:
    path = tmp_path / "c.db"
    turn = ScriptedTurn(
        tool_calls=[dataclasses.replace(call("Write"), id="t1", partial_json='{"file_pa')],
        stop_reason="max_tokens",
    )
    await collect(CachedModel(ScriptedModel([turn]), path))
    replay = (await collect(CachedModel(ScriptedModel([]), path)))[-1]
    assert isinstance(replay, ModelResponse)
    assert replay.stop_reason == "max_tokens"
    assert replay.message.content == [ToolUseBlock("t1", "Write", {}, '{"file_pa')]


async def test_an_agent_rerun_is_served_entirely_from_the_cache(tmp_path: Path) -> None:
    def script() -> ScriptedModel:
        return ScriptedModel(
            [
                ScriptedTurn("Saving.", [call("Write", file_path="a.txt", content="hi\n")]),
                ScriptedTurn("Checking.", [call("Read", file_path="a.txt")]),
                "All done.",
            ],
            name="dev-model",
            pricing=Pricing(1.0, 1.0),
        )

    path = tmp_path / "cache.db"
    results = []
    for run in range(2):
        # the second run's script is exhausted before it starts: every turn is a cache hit
        inner = script()
        if run == 1:
            inner = ScriptedModel([], name="dev-model")
        cached = CachedModel(inner, path)
        agent = Agent(
            cached,
            tools=[WriteTool, ReadTool],
            store=MemoryStore(),
            workspace_root=str(tmp_path / f"ws{run}"),
        )
        results.append((await agent.collect("make a.txt"), cached))

    (first, first_cache), (second, second_cache) = results
    assert (first_cache.misses, second_cache.hits, second_cache.misses) == (3, 3, 0)
    assert second.ok
    assert second.text == first.text == "All done."
    assert [e.type for e in second.events] == [e.type for e in first.events]
    assert (tmp_path / "ws1" / second.session.id / "a.txt").read_text() == "hi\n"
    assert first.usage.cost_usd > 0
    assert second.usage.cost_usd == 0.0
    assert second.usage.output_tokens == first.usage.output_tokens
