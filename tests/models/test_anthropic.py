"""The Anthropic provider, through the official SDK, against the loopback Messages API server."""

from __future__ import annotations

import asyncio
import base64
import json
import struct
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from loopwright import Agent, MemoryStore, ReadTool, WriteTool
from loopwright.agent import BAD_TOOL_JSON, CUT_TOOL_CALL, RunResult
from loopwright.events import Done, Error, TextDelta, ToolResult, UsageUpdate
from loopwright.messages import (
    ContentBlock,
    ImageBlock,
    Message,
    TextBlock,
    ThinkingBlock,
    ToolResultBlock,
    ToolUseBlock,
)
from loopwright.models.anthropic import (
    ANTHROPIC_API_VERSION,
    DEFAULT_CONTEXT_WINDOW,
    REDACTED_THINKING_PREFIX,
    AnthropicModel,
)
from loopwright.models.base import (
    ModelError,
    ModelEvent,
    ModelRequest,
    ModelResponse,
    Pricing,
    ThinkingDelta,
)

from .anthropic_server import (
    AnthropicServer,
    Fault,
    RecordedRequest,
    RedactedThinking,
    Text,
    Thinking,
    ToolUse,
    Turn,
    cache_breakpoints,
    text_turn,
    tool_turn,
)

API_KEY = "test-key"
MODEL = "claude-sonnet-5-5"
SYSTEM = "You are a careful assistant that works in a sandboxed workspace."
EPHEMERAL = {"type": "ephemeral"}
WRITE_SCHEMA = {
    "name": "Write",
    "description": "Write a file",
    "input_schema": {"type": "object", "properties": {"file_path": {"type": "string"}}},
}

MakeModel = Callable[..., AnthropicModel]


@pytest.fixture
def server() -> Iterator[AnthropicServer]:
    with AnthropicServer(api_key=API_KEY) as started:
        yield started


@pytest.fixture
async def make_model(server: AnthropicServer) -> AsyncIterator[MakeModel]:
    made: list[AnthropicModel] = []

    def make(**options: Any) -> AnthropicModel:
        options.setdefault("api_key", API_KEY)
        model = AnthropicModel(options.pop("model", MODEL), base_url=server.url, **options)
        made.append(model)
        return model

    yield make
    for model in made:
        await model.aclose()


def make_agent(model: AnthropicModel, tmp_path: Path, **options: Any) -> Agent:
    options.setdefault("system_prompt", SYSTEM)
    options.setdefault("tools", [WriteTool])
    return Agent(model, store=MemoryStore(), workspace_root=str(tmp_path / "ws"), **options)


async def run_stream(
    model: AnthropicModel, request: ModelRequest
) -> tuple[list[ModelEvent], ModelResponse]:
    events = [event async for event in model.stream(request)]
    final = events[-1]
    assert isinstance(final, ModelResponse)
    return events[:-1], final


def texts(events: list[Any]) -> list[str]:
    return [e.text for e in events if isinstance(e, TextDelta)]


def tiny_png() -> bytes:
    """A valid 1x1 PNG."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(b"\x00\xff\x00\x00")
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


# --- streaming -----------------------------------------------------------------------


async def test_text_streams_in_chunks(server: AnthropicServer, make_model: MakeModel) -> None:
    answer = "Hello from the loopback server, streamed in small pieces."
    server.add(text_turn(answer, chunk_size=6))
    model = make_model()

    events, response = await run_stream(model, ModelRequest([Message.user("Say hello")]))

    deltas = texts(events)
    assert len(deltas) == len(answer) // 6 + 1
    assert "".join(deltas) == answer
    assert response.message == Message("assistant", [TextBlock(answer)])
    assert response.stop_reason == "end_turn"
    assert response.usage.model_calls == 1
    (request,) = server.requests
    assert request.path == "/v1/messages"
    assert request.headers["authorization"] == f"Bearer {API_KEY}"
    assert request.headers["anthropic-version"] == ANTHROPIC_API_VERSION
    assert request.body["model"] == MODEL
    assert request.body["stream"] is True
    assert request.body["max_tokens"] == 4096
    assert "temperature" not in request.body  # API 2026-10-21 has no sampling parameters
    # the client may finish reading before the server records the end of its answer
    assert server.wait_for(lambda s: s.requests[-1].outcome == "completed")


async def test_tool_input_is_assembled_from_json_fragments(
    server: AnthropicServer, make_model: MakeModel
) -> None:
    arguments = {"file_path": "notes/plan.txt", "content": "step 1\nstep 2\n", "mode": "w"}
    server.add(
        Turn([Text("Writing it."), ToolUse("Write", arguments, id="toolu_01")], chunk_size=7)
    )
    model = make_model()

    events, response = await run_stream(
        model, ModelRequest([Message.user("Plan it")], tools=[WRITE_SCHEMA])
    )

    assert "".join(texts(events)) == "Writing it."
    assert response.stop_reason == "tool_use"
    text, call = response.message.content
    assert text == TextBlock("Writing it.")
    assert call == ToolUseBlock("toolu_01", "Write", arguments)
    assert call.complete
    sent = server.requests[0]
    assert sent.events_sent > len(json.dumps(arguments)) // 7  # many input_json_delta events


# --- a whole agent run ---------------------------------------------------------------


async def test_agent_creates_hello_file_through_the_api(
    server: AnthropicServer, make_model: MakeModel, tmp_path: Path
) -> None:
    server.add(
        tool_turn("Write", {"file_path": "hello.txt", "content": "Hello World"}, "I'll write it."),
        text_turn("Created hello.txt containing Hello World."),
    )
    agent = make_agent(make_model(), tmp_path)

    result = await agent.collect("Create hello.txt with 'Hello World'")

    assert result.stop_reason == "end_turn"
    assert (result.session.workspace_dir / "hello.txt").read_text() == "Hello World"
    assert result.text == "Created hello.txt containing Hello World."
    (tool_result,) = [e for e in result.events if isinstance(e, ToolResult)]
    assert not tool_result.is_error
    assert [e.type for e in result.events][-1] == "done"

    first, second = server.requests
    call_id = result.session.messages[1].tool_uses[0].id
    body = second.body
    assert [t["name"] for t in body["tools"]] == ["Write"]
    assert body["tools"][0]["input_schema"]["required"] == ["file_path", "content"]
    assert body["system"] == [{"type": "text", "text": SYSTEM, "cache_control": EPHEMERAL}]
    assert "temperature" not in body
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][1]["content"][1] == {
        "type": "tool_use",
        "id": call_id,
        "name": "Write",
        "input": {"file_path": "hello.txt", "content": "Hello World"},
    }
    (result_block,) = body["messages"][2]["content"]
    assert result_block["type"] == "tool_result"
    assert result_block["tool_use_id"] == call_id
    assert "is_error" not in result_block
    # caching: the last tool, the system prompt, the conversation's end, the previous user turn
    assert cache_breakpoints(body) == [
        "messages[0].content[0]",
        "messages[2].content[0]",
        "system[0]",
        "tools[0]",
    ]
    assert cache_breakpoints(first.body) == ["messages[0].content[0]", "system[0]", "tools[0]"]


async def test_cache_breakpoints_move_with_a_long_run(
    server: AnthropicServer, make_model: MakeModel, tmp_path: Path
) -> None:
    for number in range(1, 5):
        server.add(tool_turn("Write", {"file_path": f"f{number}.txt", "content": str(number)}))
    server.add(text_turn("Wrote four files."))
    agent = make_agent(make_model(), tmp_path, tools=[WriteTool, ReadTool])

    result = await agent.collect("Write f1.txt to f4.txt")

    assert result.stop_reason == "end_turn"
    assert len(server.requests) == 5
    for previous, request in zip(server.requests, server.requests[1:], strict=False):
        marks = cache_breakpoints(request.body)
        assert len(marks) == 4
        assert "tools[1]" in marks  # the last tool
        assert "system[0]" in marks
        # the block that ended the previous request's prompt is marked again, so this
        # request reads the prefix the previous one wrote to the cache
        ended = len(previous.messages) - 1
        assert f"messages[{ended}].content[0]" in marks
        assert f"messages[{len(request.messages) - 1}].content[0]" in marks


async def test_prompt_caching_off_sends_no_cache_control(
    server: AnthropicServer, make_model: MakeModel
) -> None:
    server.add(text_turn("ok"))
    model = make_model(prompt_caching=False)

    await run_stream(model, ModelRequest([Message.user("hi")], system=SYSTEM, tools=[WRITE_SCHEMA]))

    body = server.requests[0].body
    assert cache_breakpoints(body) == []
    assert body["system"] == SYSTEM


# --- thinking ------------------------------------------------------------------------


async def test_thinking_blocks_round_trip_with_their_signature(
    server: AnthropicServer, make_model: MakeModel, tmp_path: Path
) -> None:
    server.add(
        Turn(
            [
                Thinking("The user wants a file; Write does that.", signature="sig-Eq1"),
                ToolUse("Write", {"file_path": "hello.txt", "content": "Hello World"}),
            ]
        ),
        text_turn("Done."),
    )
    agent = make_agent(make_model(thinking=2048), tmp_path)

    result = await agent.collect("Create hello.txt with 'Hello World'")

    assert result.stop_reason == "end_turn"
    kept = result.session.messages[1].content[0]
    assert kept == ThinkingBlock("The user wants a file; Write does that.", "sig-Eq1")
    first, second = server.requests
    assert first.body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert first.body["max_tokens"] == 4096 + 2048
    assert "temperature" not in first.body
    assistant = second.body["messages"][1]
    assert assistant["role"] == "assistant"
    assert assistant["content"][0] == {
        "type": "thinking",
        "thinking": "The user wants a file; Write does that.",
        "signature": "sig-Eq1",
    }
    assert assistant["content"][1]["type"] == "tool_use"
    assert all("thinking" not in mark for mark in cache_breakpoints(second.body))


async def test_thinking_streams_deltas_and_redacted_thinking_round_trips(
    server: AnthropicServer, make_model: MakeModel
) -> None:
    server.add(
        Turn(
            [
                RedactedThinking("EnCrYpTeD=="),
                Thinking("First I consider the question.", "sig-2"),
                Text("The answer is 42."),
            ],
            chunk_size=5,
        ),
        text_turn("ok"),
    )
    model = make_model(thinking="adaptive")

    events, response = await run_stream(model, ModelRequest([Message.user("Question?")]))

    thinking = [e.thinking for e in events if isinstance(e, ThinkingDelta)]
    assert len(thinking) > 1
    assert "".join(thinking) == "First I consider the question."
    assert "".join(texts(events)) == "The answer is 42."
    redacted, thought, text = response.message.content
    assert redacted == ThinkingBlock("", REDACTED_THINKING_PREFIX + "EnCrYpTeD==")
    assert thought == ThinkingBlock("First I consider the question.", "sig-2")
    assert text == TextBlock("The answer is 42.")

    history = [Message.user("Question?"), response.message, Message.user("And?")]
    await run_stream(model, ModelRequest(history))
    sent = server.requests[1].body
    assert sent["thinking"] == {"type": "adaptive"}
    assert sent["messages"][1]["content"] == [
        {"type": "redacted_thinking", "data": "EnCrYpTeD=="},
        {"type": "thinking", "thinking": "First I consider the question.", "signature": "sig-2"},
        {"type": "text", "text": "The answer is 42."},
    ]


async def test_thinking_cannot_be_combined_with_a_forced_tool(make_model: MakeModel) -> None:
    model = make_model(thinking=1024)
    request = ModelRequest([Message.user("hi")], tools=[WRITE_SCHEMA], tool_choice="any")
    with pytest.raises(ModelError, match="thinking"):
        await run_stream(model, request)
    with pytest.raises(ValueError, match="at least 1,024"):
        make_model(thinking=500)


# --- images --------------------------------------------------------------------------


async def test_images_reach_the_api_as_base64(
    server: AnthropicServer, make_model: MakeModel, tmp_path: Path
) -> None:
    png = tiny_png()
    data = base64.b64encode(png).decode()
    server.add(tool_turn("Read", {"file_path": "chart.png"}), text_turn("Both are green."))
    agent = make_agent(make_model(), tmp_path, tools=[ReadTool])
    session = agent.new_session()
    (session.workspace_dir / "chart.png").write_bytes(png)
    prompt: list[ContentBlock] = [
        TextBlock("Compare this image with chart.png"),
        ImageBlock(data, "image/png"),
    ]

    result = await agent.collect(prompt, session)

    assert result.stop_reason == "end_turn"
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": data}}
    first, second = server.requests
    user = first.body["messages"][0]["content"]
    assert user[0] == {"type": "text", "text": "Compare this image with chart.png"}
    assert {k: v for k, v in user[1].items() if k != "cache_control"} == image
    (tool_result,) = second.body["messages"][2]["content"]
    assert tool_result["type"] == "tool_result"
    assert tool_result["content"][0]["type"] == "text"
    assert {k: v for k, v in tool_result["content"][1].items() if k != "cache_control"} == image


# --- usage ---------------------------------------------------------------------------


async def test_usage_with_cache_tokens_reaches_the_usage_events(
    server: AnthropicServer, make_model: MakeModel, tmp_path: Path
) -> None:
    server.add(
        tool_turn(
            "Write",
            {"file_path": "a.txt", "content": "a"},
            input_tokens=120,
            output_tokens=40,
            cache_creation_input_tokens=3000,
        ),
        text_turn("ok", input_tokens=30, output_tokens=5, cache_read_input_tokens=3100),
    )
    pricing = Pricing(3.0, 15.0, 0.30, 3.75)
    agent = make_agent(make_model(pricing=pricing), tmp_path)

    result = await agent.collect("Write a.txt")

    first, second = [e for e in result.events if isinstance(e, UsageUpdate)]
    assert (first.input_tokens, first.output_tokens) == (120, 40)
    assert (first.cache_read_tokens, first.cache_write_tokens) == (0, 3000)
    assert (second.input_tokens, second.output_tokens) == (30, 5)
    assert (second.cache_read_tokens, second.cache_write_tokens) == (3100, 0)
    assert first.cost_usd == pytest.approx((120 * 3 + 40 * 15 + 3000 * 3.75) / 1e6)
    assert second.cost_usd == pytest.approx((30 * 3 + 5 * 15 + 3100 * 0.30) / 1e6)
    assert result.usage.model_calls == 2
    assert result.usage.cache_read_tokens == 3100
    assert result.usage.cache_write_tokens == 3000
    assert result.usage.cost_usd == pytest.approx(first.cost_usd + second.cost_usd)


# --- cut and malformed tool calls ------------------------------------------------------


async def test_tool_call_cut_by_max_tokens_is_reported_and_the_run_continues(
    server: AnthropicServer, make_model: MakeModel, tmp_path: Path
) -> None:
    server.add(
        Turn(
            [ToolUse("Write", raw_json='{"file_path": "hello.txt", "content": "Hello Wo')],
            stop_reason="max_tokens",
        ),
        tool_turn("Write", {"file_path": "hello.txt", "content": "Hello World"}),
        text_turn("Done."),
    )
    agent = make_agent(make_model(), tmp_path)

    result = await agent.collect("Create hello.txt with 'Hello World'")

    assert result.stop_reason == "end_turn"
    assert (result.session.workspace_dir / "hello.txt").read_text() == "Hello World"
    cut = result.session.messages[1].tool_uses[0]
    assert cut.partial_json == '{"file_path": "hello.txt", "content": "Hello Wo'
    assert cut.input == {}
    sent = server.requests[1].body["messages"]
    assert sent[1]["content"] == [{"type": "tool_use", "id": cut.id, "name": "Write", "input": {}}]
    (answer,) = sent[2]["content"]
    assert answer["tool_use_id"] == cut.id
    assert answer["is_error"] is True
    assert answer["content"] == CUT_TOOL_CALL.format(name="Write")


async def test_malformed_tool_json_is_reported_to_the_model(
    server: AnthropicServer, make_model: MakeModel, tmp_path: Path
) -> None:
    server.add(
        Turn([ToolUse("Write", raw_json='{"file_path": "a.txt", content: oops}')]),
        text_turn("Sorry, giving up."),
    )
    agent = make_agent(make_model(), tmp_path)

    result = await agent.collect("Write a.txt")

    assert result.stop_reason == "end_turn"
    (answer,) = server.requests[1].body["messages"][2]["content"]
    assert answer["is_error"] is True
    assert answer["content"] == BAD_TOOL_JSON.format(name="Write")


# --- faults --------------------------------------------------------------------------

#: (fault, retryable, status code, retry_after, words in the message)
FAULTS: dict[str, tuple[Fault, bool, int | None, float | None, str]] = {
    "429": (Fault.rate_limited(retry_after=7), True, 429, 7.0, "per-minute rate limit"),
    "500": (Fault.server_error(), True, 500, None, "Internal server error"),
    "529": (Fault.overloaded(), True, 529, None, "overloaded"),
    "529-mid-stream": (Fault.overloaded_mid_stream(after_events=4), True, 529, None, "Overloaded"),
    "cut": (Fault.cut(after_events=4), True, None, None, "broke off"),
    "hang": (Fault.hang(), True, None, None, "timeout"),
    "hang-mid-stream": (Fault.hang(after_events=4), True, None, None, "timeout"),
    "401": (Fault.unauthorized("invalid x-api-key"), False, 401, None, "invalid x-api-key"),
    "400": (
        Fault.http(400, "invalid_request_error", "prompt is too long: 210000 tokens > 200000"),
        False,
        400,
        None,
        "prompt is too long",
    ),
}


@pytest.mark.parametrize("name", FAULTS)
async def test_faults_become_model_errors(
    name: str, server: AnthropicServer, make_model: MakeModel
) -> None:
    fault, retryable, status, retry_after, words = FAULTS[name]
    server.add(text_turn("This answer is long enough to be cut in the middle.", chunk_size=4))
    server.inject(fault)
    model = make_model(timeout=0.5)
    seen: list[ModelEvent] = []

    async def consume() -> None:
        async for event in model.stream(ModelRequest([Message.user("hi")])):
            seen.append(event)

    with pytest.raises(ModelError) as caught:
        await consume()

    error = caught.value
    assert error.retryable is retryable
    assert error.status_code == status
    assert error.retry_after == retry_after
    assert words.lower() in str(error).lower()
    assert not any(isinstance(e, ModelResponse) for e in seen)
    # the failed request did not use up the turn: the next request gets it whole
    _, response = await run_stream(model, ModelRequest([Message.user("hi")]))
    assert response.message.text == "This answer is long enough to be cut in the middle."


@pytest.mark.parametrize("name", ["429", "500", "529", "cut", "hang", "401"])
async def test_faults_end_an_agent_run_cleanly(
    name: str, server: AnthropicServer, make_model: MakeModel, tmp_path: Path
) -> None:
    fault, retryable, *_ = FAULTS[name]
    server.add(
        tool_turn("Write", {"file_path": "hello.txt", "content": "Hello World"}),
        text_turn("Created hello.txt."),
    )
    server.inject(None, fault)  # the second model call fails
    agent = make_agent(make_model(timeout=0.5), tmp_path)

    result = await agent.collect("Create hello.txt with 'Hello World'")

    error, done = result.events[-2:]
    assert isinstance(error, Error)
    assert error.retryable is retryable
    assert isinstance(done, Done)
    assert done.stop_reason == "error"
    assert done.detail == error.message
    session = result.session
    assert [m.role for m in session.messages] == ["user", "assistant", "user"]
    assert session.messages[2].tool_results[0].tool_use_id == session.messages[1].tool_uses[0].id
    assert session.pending_tool_uses() == []
    # the history is one the API accepts: the run continues from it
    again: RunResult = await agent.collect("Go on.", session)
    assert again.stop_reason == "end_turn"
    assert again.text == "Created hello.txt."
    assert server.wait_for(lambda s: s.requests[-1].outcome == "completed")


async def test_missing_api_key_is_one_sentence(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(ModelError) as caught:
        AnthropicModel(MODEL)
    message = str(caught.value)
    assert "ANTHROPIC_API_KEY" in message
    assert message.endswith(".")
    assert message.count(". ") == 0
    assert not caught.value.retryable


async def test_api_key_from_the_environment(
    server: AnthropicServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", API_KEY)
    server.add(text_turn("ok"))
    model = AnthropicModel(MODEL, base_url=server.url)
    try:
        _, response = await run_stream(model, ModelRequest([Message.user("hi")]))
    finally:
        await model.aclose()
    assert response.message.text == "ok"
    assert server.requests[0].headers["authorization"] == f"Bearer {API_KEY}"


# --- cancellation --------------------------------------------------------------------


async def test_closing_the_stream_closes_the_http_response(
    server: AnthropicServer, make_model: MakeModel
) -> None:
    server.add(text_turn("x" * 400, chunk_size=4))
    server.inject(Fault.hang(after_events=5))  # a few deltas, then the server waits
    model = make_model()

    stream = model.stream(ModelRequest([Message.user("hi")]))
    first = await anext(stream)
    assert isinstance(first, TextDelta)
    await stream.aclose()  # type: ignore[attr-defined]

    assert server.wait_for(lambda s: s.requests[-1].outcome == "client_closed")


async def test_cancelling_the_consumer_closes_the_http_response(
    server: AnthropicServer, make_model: MakeModel
) -> None:
    server.add(text_turn("x" * 400, chunk_size=4))
    server.inject(Fault.hang(after_events=5))
    model = make_model()
    started = asyncio.Event()

    async def consume() -> None:
        async for _ in model.stream(ModelRequest([Message.user("hi")])):
            started.set()

    task = asyncio.create_task(consume())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    assert server.wait_for(lambda s: s.requests[-1].outcome == "client_closed")


# --- the request, in detail ----------------------------------------------------------


async def test_history_is_translated_as_the_api_requires(
    server: AnthropicServer, make_model: MakeModel
) -> None:
    server.add(text_turn("ok"))
    history = [
        Message.user("first question"),
        Message.user("   "),  # whitespace only: dropped
        Message.user("second question"),
        Message(
            "assistant",
            [
                ThinkingBlock("another provider's reasoning"),  # no signature: dropped
                TextBlock("Let me look."),
                ToolUseBlock("toolu_a", "Write", {}, partial_json='{"file_pa'),
            ],
        ),
        Message("user", [ToolResultBlock("toolu_a", "cut off", is_error=True)]),
        Message.user("try again"),  # merged after the tool result
    ]
    model = make_model(prompt_caching=False)

    await run_stream(model, ModelRequest(history, tools=[WRITE_SCHEMA]))

    assert server.requests[0].body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "first question"},
                {"type": "text", "text": "second question"},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": "toolu_a", "name": "Write", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_a",
                    "content": "cut off",
                    "is_error": True,
                },
                {"type": "text", "text": "try again"},
            ],
        },
    ]


async def test_tool_choice_stop_sequences_and_structured_output(
    server: AnthropicServer, make_model: MakeModel
) -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "integer", "minimum": 0}},
        "required": ["answer"],
    }
    server.add(Turn([Text('{"answer": 4')], stop_reason="stop_sequence", stop_sequence="}"))
    server.add(text_turn("ok"), text_turn("ok"))
    model = make_model()
    request = ModelRequest(
        [Message.user("2+2?")],
        tools=[WRITE_SCHEMA],
        tool_choice={"name": "Write"},
        stop=["}"],
        response_format=schema,
    )

    _, response = await run_stream(model, request)

    assert response.stop_reason == "stop_sequence"
    body = server.requests[0].body
    assert body["tool_choice"] == {"type": "tool", "name": "Write"}
    assert body["stop_sequences"] == ["}"]
    assert [t["name"] for t in body["tools"]] == ["Write"]  # structured output keeps tools
    output_format = body["output_config"]["format"]
    assert output_format["type"] == "json_schema"
    assert output_format["schema"]["additionalProperties"] is False
    assert output_format["schema"]["required"] == ["answer"]

    request.tool_choice = "any"
    await run_stream(model, request)
    assert server.requests[1].body["tool_choice"] == {"type": "any"}

    prompt_model = make_model(structured_output="prompt")
    await run_stream(prompt_model, ModelRequest([Message.user("2+2?")], response_format=schema))
    body = server.requests[2].body
    assert "output_config" not in body
    assert json.dumps(schema) in body["system"][0]["text"]


async def test_legacy_api_version_sends_the_temperature(
    server: AnthropicServer, make_model: MakeModel
) -> None:
    server.add(text_turn("ok"))
    model = make_model(api_version="2023-06-01")

    await run_stream(model, ModelRequest([Message.user("hi")], temperature=0.0))

    request = server.requests[0]
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert request.body["temperature"] == 0.0


async def test_the_server_rejects_what_the_api_rejects(
    server: AnthropicServer, make_model: MakeModel
) -> None:
    """The loopback server holds the provider to the API's rules: prove one end to end."""
    server.add(text_turn("ok"))
    model = make_model()
    history = [
        Message.user("hi"),
        Message("assistant", [ToolUseBlock("toolu_x", "Write", {"file_path": "a"})]),
        Message.user("no result for the call"),
    ]
    with pytest.raises(ModelError) as caught:
        await run_stream(model, ModelRequest(history, tools=[WRITE_SCHEMA]))
    assert caught.value.status_code == 400
    assert not caught.value.retryable
    assert "tool_use` ids were found without `tool_result`" in str(caught.value)


def test_name_and_context_windows() -> None:
    def window(model: str, **options: Any) -> int:
        return AnthropicModel(model, api_key=API_KEY, **options).context_window

    assert AnthropicModel(MODEL, api_key=API_KEY).name == f"anthropic:{MODEL}"
    assert window("claude-opus-4-6") == 1_000_000
    assert window("claude-sonnet-4-5-20250929") == 200_000
    assert window("claude-haiku-4-5") == 200_000
    assert window("claude-some-future-model") == DEFAULT_CONTEXT_WINDOW
    assert window("claude-opus-4-6", context_window=50_000) == 50_000


def test_requests_are_recorded_for_assertions() -> None:
    """The recorded request exposes what tests assert on (a smoke test of the server API)."""
    message = {"role": "user", "content": "hi"}
    tool = {"name": "Write", "input_schema": {"type": "object"}}
    record = RecordedRequest("POST", "/v1/messages", {}, {"messages": [message], "tools": [tool]})
    assert record.messages == [message]
    assert record.tools == [tool]
    assert cache_breakpoints({"a": [{"cache_control": EPHEMERAL, "b": {"cache_control": 1}}]}) == [
        "a[0]",
        "a[0].b",
    ]
