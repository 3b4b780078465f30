"""The OpenAI provider, through the official SDK, against a loopback Chat Completions server."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from loopwright import Agent, MemoryStore, WriteTool
from loopwright.agent import BAD_TOOL_JSON, CUT_TOOL_CALL
from loopwright.events import Event, TextDelta
from loopwright.messages import (
    ImageBlock,
    Message,
    TextBlock,
    ThinkingBlock,
    ToolResultBlock,
    ToolUseBlock,
)
from loopwright.models.base import (
    ModelError,
    ModelEvent,
    ModelRequest,
    ModelResponse,
    Pricing,
    ThinkingDelta,
)
from loopwright.models.openai import (
    DEFAULT_CONTEXT_WINDOW,
    OpenAIModel,
    context_window_for,
    is_reasoning_model,
)

from .openai_server import Fault, OpenAIServer, ToolCall, Turn, server_factory

Serve = Callable[..., OpenAIServer]

WRITE_SCHEMA = WriteTool(".").schema
HELLO = {"file_path": "hello.txt", "content": "Hello World"}
PIXEL = base64.b64encode(b"\x89PNG\r\n\x1a\n fake png bytes").decode()


@pytest.fixture(autouse=True)
def no_openai_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never see a real key or endpoint from the environment."""
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "OPENAI_ORG_ID", "OPENAI_PROJECT_ID"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def serve() -> Iterator[Serve]:
    with server_factory() as start:
        yield start


@pytest.fixture
async def models() -> AsyncIterator[Callable[..., OpenAIModel]]:
    """Build OpenAIModel instances that are closed after the test."""
    made: list[OpenAIModel] = []

    def make(server: OpenAIServer, model: str = "gpt-4.1", **kwargs: Any) -> OpenAIModel:
        instance = OpenAIModel(model, base_url=server.base_url, **kwargs)
        made.append(instance)
        return instance

    yield make
    for instance in made:
        await instance.aclose()


def request(*messages: Message, **kwargs: Any) -> ModelRequest:
    return ModelRequest(list(messages) or [Message.user("hi")], **kwargs)


async def collect(model: OpenAIModel, req: ModelRequest) -> tuple[list[ModelEvent], ModelResponse]:
    events = [event async for event in model.stream(req)]
    final = events[-1]
    assert isinstance(final, ModelResponse)
    assert not any(isinstance(e, ModelResponse) for e in events[:-1])
    return events, final


def make_agent(model: OpenAIModel, tmp_path: Path, **kwargs: Any) -> Agent:
    return Agent(model, store=MemoryStore(), workspace_root=str(tmp_path / "ws"), **kwargs)


def of_type(events: list[Event], kind: str) -> list[Any]:
    return [e for e in events if e.type == kind]


# --- streaming ------------------------------------------------------------------------


async def test_text_streams_as_deltas_then_one_response(serve: Serve, models: Any) -> None:
    answer = "Paris is the capital of France, on the Seine."
    server = serve([answer], chunk_size=5)
    model = models(server)
    events, final = await collect(model, request(Message.user("Capital?"), system="Be brief."))

    deltas = [e.text for e in events if isinstance(e, TextDelta)]
    assert len(deltas) > 5
    assert "".join(deltas) == answer
    assert final.message.role == "assistant"
    assert final.message.text == answer
    assert final.stop_reason == "end_turn"
    body = server.chat_bodies[0]
    assert body["model"] == "gpt-4.1"
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Capital?"},
    ]
    assert "tools" not in body
    assert "tool_choice" not in body
    assert model.name == f"openai:gpt-4.1@{server.base_url}"


async def test_tool_call_arguments_arrive_in_several_chunks(serve: Serve, models: Any) -> None:
    arguments = {"file_path": "notes/today.md", "content": "line one\nline two\n" * 4}
    server = serve([["Writing it.", ToolCall("Write", arguments, id="call_w1", pieces=7)]])
    model = models(server)
    events, final = await collect(model, request(tools=[WRITE_SCHEMA]))

    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "Writing it."
    assert final.stop_reason == "tool_use"
    assert final.message.text == "Writing it."
    (use,) = final.message.tool_uses
    assert (use.id, use.name, use.input) == ("call_w1", "Write", arguments)
    assert use.complete
    assert server.chat_bodies[0]["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "Write",
                "description": WRITE_SCHEMA["description"],
                "parameters": WRITE_SCHEMA["input_schema"],
            },
        }
    ]


@pytest.mark.parametrize(
    "style",
    [{}, {"interleave": True}, {"indexless": True}],
    ids=["sequential", "interleaved", "without-index"],
)
async def test_two_parallel_tool_calls_in_one_turn(
    serve: Serve, models: Any, style: dict[str, Any]
) -> None:
    first = ToolCall("Read", {"file_path": "a.txt"}, id="call_a", pieces=4)
    second = ToolCall("Read", {"file_path": "b.txt", "offset": 3}, id="call_b", pieces=4)
    server = serve([Turn(tool_calls=[first, second], **style)])
    model = models(server)
    _, final = await collect(model, request(tools=[WRITE_SCHEMA]))

    assert final.stop_reason == "tool_use"
    assert [(u.id, u.name, u.input) for u in final.message.tool_uses] == [
        ("call_a", "Read", {"file_path": "a.txt"}),
        ("call_b", "Read", {"file_path": "b.txt", "offset": 3}),
    ]


async def test_reasoning_content_streams_as_thinking_and_is_not_sent_back(
    serve: Serve, models: Any
) -> None:
    server = serve([Turn(text="42.", reasoning="Six times seven is 42."), "ok"])
    model = models(server, "qwen3")
    events, final = await collect(model, request(Message.user("6*7?")))

    assert "".join(e.thinking for e in events if isinstance(e, ThinkingDelta)) == (
        "Six times seven is 42."
    )
    assert "".join(e.text for e in events if isinstance(e, TextDelta)) == "42."
    assert isinstance(final.message.content[0], ThinkingBlock)
    assert final.message.text == "42."

    await collect(model, request(Message.user("6*7?"), final.message, Message.user("thanks")))
    assert server.chat_bodies[1]["messages"] == [
        {"role": "user", "content": "6*7?"},
        {"role": "assistant", "content": "42."},
        {"role": "user", "content": "thanks"},
    ]


@pytest.mark.parametrize(
    ("turn", "stop_reason", "text"),
    [
        (Turn(refusal="I can't help with that."), "refusal", "I can't help with that."),
        (Turn(text="partial", finish_reason="content_filter"), "refusal", "partial"),
        (Turn(text="cut", finish_reason="length"), "max_tokens", "cut"),
        # some compatible servers end a tool-call turn with "stop"
        (Turn(tool_calls=[ToolCall("Write", HELLO)], finish_reason="stop"), "tool_use", ""),
    ],
    ids=["refusal", "content_filter", "length", "stop-after-tool-call"],
)
async def test_stop_reasons_are_mapped(
    serve: Serve, models: Any, turn: Turn, stop_reason: str, text: str
) -> None:
    server = serve([turn])
    _, final = await collect(models(server), request(tools=[WRITE_SCHEMA]))
    assert final.stop_reason == stop_reason
    assert final.message.text == text


# --- the request --------------------------------------------------------------------


async def test_conversation_translation_tool_results_images_and_merging(
    serve: Serve, models: Any
) -> None:
    server = serve(["Done."])
    model = models(server)
    history = [
        Message("user", [TextBlock("Look at this"), ImageBlock(PIXEL, "image/png")]),
        Message(
            "assistant",
            [
                ThinkingBlock("the user wants a screenshot", signature="sig"),
                TextBlock("Taking two screenshots."),
                ToolUseBlock("call_1", "Screenshot", {"page": 1}),
                ToolUseBlock("call_2", "Screenshot", {"page": 2}),
            ],
        ),
        Message(
            "user",
            [
                ToolResultBlock("call_1", [TextBlock("page 1"), ImageBlock(PIXEL, "image/jpeg")]),
                ToolResultBlock("call_2", "no such page", is_error=True),
            ],
        ),
        Message.user("And a note."),
    ]
    await collect(model, request(*history, system="You see images."))

    assert server.chat_bodies[0]["messages"] == [
        {"role": "system", "content": "You see images."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Look at this"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PIXEL}"}},
            ],
        },
        {
            "role": "assistant",
            "content": "Taking two screenshots.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "Screenshot", "arguments": '{"page": 1}'},
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "Screenshot", "arguments": '{"page": 2}'},
                },
            ],
        },
        {
            "role": "tool",
            "tool_call_id": "call_1",
            "content": "page 1\n[1 image(s) attached in the next message]",
        },
        {"role": "tool", "tool_call_id": "call_2", "content": "Error: no such page"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Image(s) returned by tool call call_1:"},
                {"type": "image_url", "image_url": {"url": f"data:image/jpeg;base64,{PIXEL}"}},
                {"type": "text", "text": "And a note."},
            ],
        },
    ]


@pytest.mark.parametrize(
    ("tool_choice", "expected"),
    [
        (None, None),
        ("auto", None),
        ("any", "required"),
        ("none", "none"),
        ({"name": "Write"}, {"type": "function", "function": {"name": "Write"}}),
    ],
)
async def test_tool_choice_is_mapped(
    serve: Serve, models: Any, tool_choice: Any, expected: Any
) -> None:
    server = serve(["ok"])
    await collect(models(server), request(tools=[WRITE_SCHEMA], tool_choice=tool_choice))
    assert server.chat_bodies[0].get("tool_choice") == expected


async def test_structured_output_keeps_tool_calls(serve: Serve, models: Any) -> None:
    schema = {
        "title": "Answer",
        "type": "object",
        "properties": {"path": {"type": "string"}, "written": {"type": "boolean"}},
        "required": ["path", "written"],
        "additionalProperties": False,
    }
    final_json = {"path": "hello.txt", "written": True}
    server = serve(
        [
            ToolCall("Write", HELLO, id="call_so"),
            json.dumps(final_json),
        ]
    )
    model = models(server)
    req = request(Message.user("Write hello.txt"), tools=[WRITE_SCHEMA], response_format=schema)
    _, first = await collect(model, req)

    body = server.chat_bodies[0]
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "Answer", "schema": schema},
    }
    assert [t["function"]["name"] for t in body["tools"]] == ["Write"]
    assert "tool_choice" not in body  # the model stays free to call tools
    assert first.stop_reason == "tool_use"
    assert first.message.tool_uses[0].input == HELLO

    results = Message("user", [ToolResultBlock("call_so", "Wrote hello.txt")])
    _, second = await collect(model, request(req.messages[0], first.message, results, **_same(req)))
    assert second.stop_reason == "end_turn"
    assert json.loads(second.message.text) == final_json
    assert server.chat_bodies[1]["response_format"] == body["response_format"]
    assert server.chat_bodies[1]["tools"] == body["tools"]


def _same(req: ModelRequest) -> dict[str, Any]:
    return {"tools": req.tools, "response_format": req.response_format}


async def test_response_format_in_openai_form_is_passed_through(serve: Serve, models: Any) -> None:
    server = serve(["{}", "{}"])
    model = models(server)
    named = {"name": "Report", "schema": {"type": "object"}, "strict": True}
    await collect(model, request(response_format=named))
    await collect(model, request(response_format={"type": "json_object"}))
    assert server.chat_bodies[0]["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "Report", "schema": {"type": "object"}, "strict": True},
    }
    assert server.chat_bodies[1]["response_format"] == {"type": "json_object"}


async def test_json_schema_falls_back_to_json_object_on_servers_without_it(
    serve: Serve, models: Any
) -> None:
    # what the llama-cpp-python server answers to response_format type json_schema
    rejection = Fault.http_error(
        500,
        "1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'response_format',"
        " 'type'), 'msg': \"Input should be 'text' or 'json_object'\"}",
        error_type="internal_server_error",
    )
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    server = serve(['{"a": 1}', ToolCall("Write", HELLO)], [rejection])
    model = models(server, "smollm2")
    req = request(tools=[WRITE_SCHEMA], response_format=schema)
    _, first = await collect(model, req)
    _, second = await collect(model, req)

    assert json.loads(first.message.text) == {"a": 1}
    assert second.message.tool_uses[0].input == HELLO
    rejected, retried, later = server.chat_bodies
    assert rejected["response_format"]["type"] == "json_schema"
    for body in (retried, later):  # remembered: the next call sends the working form at once
        assert body["response_format"] == {"type": "json_object", "schema": schema}
        assert [t["function"]["name"] for t in body["tools"]] == ["Write"]


async def test_official_api_gets_null_content_beside_tool_calls(serve: Serve) -> None:
    history = [Message.user("go"), Message("assistant", [ToolUseBlock("c1", "Write", HELLO)])]
    official = OpenAIModel("gpt-4.1", api_key="sk-test")
    try:
        messages = official.request_params(request(*history))["messages"]
    finally:
        await official.aclose()
    assert messages[1]["content"] is None
    server = serve(["ok"])
    compatible = OpenAIModel("smollm2", base_url=server.base_url)
    try:
        await collect(compatible, request(*history, Message("user", [ToolResultBlock("c1", "")])))
    finally:
        await compatible.aclose()
    sent = server.chat_bodies[0]["messages"]
    assert sent[1]["content"] == ""  # the llama-cpp-python server requires a string
    assert sent[2] == {"role": "tool", "tool_call_id": "c1", "content": "(empty)"}


async def test_reasoning_model_gets_no_temperature_and_max_completion_tokens(
    serve: Serve, models: Any
) -> None:
    server = serve(["thought it through"])
    model = models(server, "o4-mini", reasoning_effort="low")
    await collect(model, request(max_tokens=777, temperature=0.0, stop=["END"]))

    body = server.chat_bodies[0]
    assert "temperature" not in body
    assert "stop" not in body
    assert "max_tokens" not in body
    assert body["max_completion_tokens"] == 777
    assert body["reasoning_effort"] == "low"


async def test_chat_model_on_a_compatible_server_gets_temperature_0_and_max_tokens(
    serve: Serve, models: Any
) -> None:
    server = serve(["ok", "ok"])
    await collect(models(server, "llama3.2"), request(max_tokens=321, stop=["END"]))
    forced = models(server, "llama3.2", max_tokens_param="max_completion_tokens")
    await collect(forced, request(max_tokens=321))

    body = server.chat_bodies[0]
    assert body["temperature"] == 0
    assert body["max_tokens"] == 321
    assert "max_completion_tokens" not in body
    assert body["stop"] == ["END"]
    assert server.chat_bodies[1]["max_completion_tokens"] == 321
    assert "max_tokens" not in server.chat_bodies[1]


@pytest.mark.parametrize(
    ("name", "reasoning"),
    [
        ("o1", True),
        ("o3-mini-2025-01-31", True),
        ("o4-mini", True),
        ("gpt-5", True),
        ("gpt-5.2-pro", True),
        ("gpt-5-mini-2025-08-07", True),
        ("openai/gpt-5-nano", True),
        ("gpt-5-chat-latest", False),
        ("gpt-4.1", False),
        ("gpt-4o-mini", False),
        ("omni-moderation-latest", False),
        ("llama3.2", False),
    ],
)
def test_reasoning_model_names(name: str, reasoning: bool) -> None:
    assert is_reasoning_model(name) is reasoning


async def test_context_window_table() -> None:
    assert context_window_for("gpt-4.1-mini-2025-04-14") == 1_047_576
    assert context_window_for("gpt-4o") == 128_000
    assert context_window_for("o3") == 200_000
    assert context_window_for("gpt-5-mini") == 272_000
    assert context_window_for("gpt-5-chat-latest") == 128_000
    assert context_window_for("gpt-4") == 8_192
    assert context_window_for("some-local-model") == DEFAULT_CONTEXT_WINDOW
    model = OpenAIModel("gpt-4.1", api_key="sk-test")
    small = OpenAIModel("smollm2", base_url="http://127.0.0.1:9/v1", context_window=8192)
    await model.aclose()
    await small.aclose()
    assert (model.name, model.context_window) == ("openai:gpt-4.1", 1_047_576)
    assert small.context_window == 8192


# --- usage ----------------------------------------------------------------------------


async def test_usage_with_cached_tokens_is_mapped(serve: Serve, models: Any) -> None:
    server = serve([Turn(text="hi", prompt_tokens=1200, cached_tokens=1000, completion_tokens=30)])
    pricing = Pricing(input_per_mtok=2.0, output_per_mtok=8.0, cache_read_per_mtok=0.5)
    _, final = await collect(models(server, pricing=pricing), request())

    usage = final.usage
    assert (usage.input_tokens, usage.cache_read_tokens, usage.output_tokens) == (200, 1000, 30)
    assert usage.cache_write_tokens == 0
    assert usage.model_calls == 1
    assert usage.cost_usd == pytest.approx((200 * 2.0 + 1000 * 0.5 + 30 * 8.0) / 1_000_000)


async def test_usage_is_estimated_when_the_server_reports_none(serve: Serve, models: Any) -> None:
    server = serve(["twelve chars"], report_usage=False)
    _, final = await collect(models(server), request(estimated_input_tokens=321))
    assert final.usage.input_tokens == 321
    assert final.usage.output_tokens == len("twelve chars") // 4 + 1
    assert final.usage.model_calls == 1


async def test_local_server_costs_nothing_by_default(serve: Serve, models: Any) -> None:
    server = serve([Turn(text="hi", prompt_tokens=1000, completion_tokens=100)])
    model = models(server)
    _, final = await collect(model, request())
    assert model.pricing is not None
    assert final.usage.cost_usd == 0.0


# --- the agent loop -------------------------------------------------------------------


async def test_agent_creates_hello_txt_with_the_real_write_tool(
    serve: Serve, models: Any, tmp_path: Path
) -> None:
    server = serve(
        [
            ["I'll create the file.", ToolCall("Write", HELLO, id="call_hello", pieces=4)],
            "Created hello.txt containing Hello World.",
        ]
    )
    agent = make_agent(models(server), tmp_path, tools=[WriteTool], system_prompt="Be careful.")
    session = agent.new_session("hello")
    events = [e async for e in agent.run("Create hello.txt with 'Hello World'", session)]

    assert (session.workspace_dir / "hello.txt").read_text() == "Hello World"
    assert events[-1].type == "done"
    assert events[-1]["stop_reason"] == "end_turn"
    (call,) = of_type(events, "tool_call")
    (result,) = of_type(events, "tool_result")
    assert (call["id"], call["name"], call["input"]) == ("call_hello", "Write", HELLO)
    assert result["id"] == "call_hello"
    assert not result["is_error"]
    text = "".join(e["text"] for e in of_type(events, "text_delta"))
    assert text == "I'll create the file.Created hello.txt containing Hello World."
    assert events[-1]["usage"].model_calls == 2

    first, second = server.chat_bodies
    for body in (first, second):
        assert body["temperature"] == 0
        assert body["messages"][0] == {"role": "system", "content": "Be careful."}
        assert [t["function"]["name"] for t in body["tools"]] == ["Write"]
        assert body["tools"][0]["function"]["parameters"] == WRITE_SCHEMA["input_schema"]
    assert first["messages"][1:] == [
        {"role": "user", "content": "Create hello.txt with 'Hello World'"}
    ]
    assistant, tool = second["messages"][2:4]
    assert assistant["content"] == "I'll create the file."
    (sent_call,) = assistant["tool_calls"]
    assert sent_call["id"] == "call_hello"
    assert json.loads(sent_call["function"]["arguments"]) == HELLO
    assert tool["role"] == "tool"
    assert tool["tool_call_id"] == "call_hello"
    assert tool["content"] == result["content"]
    assert len(second["messages"]) == 4
    assert [m.role for m in session.messages] == ["user", "assistant", "user", "assistant"]


async def test_length_cut_mid_tool_call_is_told_to_the_model_and_the_run_continues(
    serve: Serve, models: Any, tmp_path: Path
) -> None:
    cut = ToolCall("Write", '{"file_path": "hello.txt", "content": "Hel', id="call_cut")
    server = serve(
        [
            Turn(tool_calls=[cut], finish_reason="length"),
            ToolCall("Write", HELLO, id="call_retry"),
            "Done.",
        ]
    )
    agent = make_agent(models(server), tmp_path, tools=[WriteTool])
    session = agent.new_session("cut")
    events = [e async for e in agent.run("Create hello.txt with 'Hello World'", session)]

    assert events[-1]["stop_reason"] == "end_turn"
    assert (session.workspace_dir / "hello.txt").read_text() == "Hello World"
    cut_use = session.messages[1].tool_uses[0]
    assert cut_use.partial_json == '{"file_path": "hello.txt", "content": "Hel'
    assert cut_use.input == {}
    # the cut call was never run: only the retried one was
    assert [c["id"] for c in of_type(events, "tool_call")] == ["call_retry"]

    second = server.chat_bodies[1]["messages"]
    assert second[-2]["tool_calls"][0]["id"] == "call_cut"
    assert second[-2]["tool_calls"][0]["function"]["arguments"] == "{}"
    assert second[-1] == {
        "role": "tool",
        "tool_call_id": "call_cut",
        "content": "Error: " + CUT_TOOL_CALL.format(name="Write"),
    }


async def test_malformed_tool_arguments_are_told_to_the_model(
    serve: Serve, models: Any, tmp_path: Path
) -> None:
    bad = ToolCall("Write", '{"file_path": "hello.txt", content: Hello}', id="call_bad")
    server = serve([bad, ToolCall("Write", HELLO, id="call_good"), "Fixed."])
    agent = make_agent(models(server), tmp_path, tools=[WriteTool])
    session = agent.new_session("bad")
    events = [e async for e in agent.run("Create hello.txt", session)]

    assert events[-1]["stop_reason"] == "end_turn"
    assert (session.workspace_dir / "hello.txt").read_text() == "Hello World"
    assert session.messages[1].tool_uses[0].partial_json == bad.arguments
    tool_message = server.chat_bodies[1]["messages"][-1]
    assert tool_message["tool_call_id"] == "call_bad"
    assert tool_message["content"] == "Error: " + BAD_TOOL_JSON.format(name="Write")


# --- faults ---------------------------------------------------------------------------

FAULTS = [
    pytest.param(Fault.rate_limit(retry_after=2), True, 429, 2.0, "rate limit", id="429"),
    pytest.param(
        Fault.rate_limit(retry_after=None, retry_after_ms=1500), True, 429, 1.5, "retry after",
        id="429-ms",
    ),
    pytest.param(Fault.server_error(500), True, 500, None, "server error", id="500"),
    pytest.param(Fault.server_error(503), True, 503, None, "try again later", id="503"),
    pytest.param(
        Fault.server_error(502, "upstream\n  failed:\n\tbad gateway"), True, 502, None,
        "(502: upstream failed: bad gateway)", id="502-multiline",
    ),
    pytest.param(Fault.cut(after_chunks=3), True, None, None, "lost the connection", id="cut"),
    pytest.param(Fault.stream_error(after_chunks=2), True, None, None, "mid-stream", id="event"),
    pytest.param(Fault.hang(), True, None, None, "did not answer within 0.5s", id="hang"),
    pytest.param(Fault.hang(after_chunks=2), True, None, None, "did not answer", id="hang-mid"),
    pytest.param(
        Fault.unauthorized(), False, 401, None, "Incorrect API key provided", id="401"
    ),
    pytest.param(
        Fault.http_error(400, "Invalid value for 'tools[0].function.name'."),
        False, 400, None, "Invalid value for 'tools[0].function.name'", id="400",
    ),
    pytest.param(
        Fault.http_error(404, "The model `gpt-9` does not exist.", code="model_not_found"),
        False, 404, None, "check the model name", id="404",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("fault", "retryable", "status", "retry_after", "words"), FAULTS)
async def test_each_fault_is_one_model_error(
    serve: Serve,
    models: Any,
    fault: Fault,
    retryable: bool,
    status: int | None,
    retry_after: float | None,
    words: str,
) -> None:
    server = serve(["A reply long enough to be cut in the middle."], [fault], chunk_size=4)
    model = models(server, timeout=0.5)
    with pytest.raises(ModelError) as caught:
        await collect(model, request())

    error = caught.value
    assert error.retryable is retryable
    assert error.status_code == status
    assert error.retry_after == retry_after
    assert words in str(error)
    assert "\n" not in str(error)
    # the fault did not use up the turn: the next request gets it
    _, final = await collect(model, request())
    assert final.message.text == "A reply long enough to be cut in the middle."


async def test_401_message_names_the_key_variable(serve: Serve, models: Any) -> None:
    server = serve(["never"], api_key="sk-right")
    model = models(server, api_key="sk-wrong")
    with pytest.raises(ModelError, match="OPENAI_API_KEY") as caught:
        await collect(model, request())
    assert caught.value.status_code == 401
    assert not caught.value.retryable


@pytest.mark.parametrize(("fault", "retryable", "status", "retry_after", "words"), FAULTS)
async def test_faults_through_the_agent_end_the_run_with_a_consistent_history(
    serve: Serve,
    models: Any,
    tmp_path: Path,
    fault: Fault,
    retryable: bool,
    status: int | None,
    retry_after: float | None,
    words: str,
) -> None:
    server = serve(
        [
            ToolCall("Write", HELLO, id="call_1"),
            "A reply long enough to be cut in the middle.",
            "Recovered.",
        ],
        [None, fault],
        chunk_size=4,
    )
    agent = make_agent(models(server, timeout=0.5), tmp_path, tools=[WriteTool])
    session = agent.new_session("faults")
    events = [e async for e in agent.run("Create hello.txt", session)]

    (error,) = of_type(events, "error")
    assert error["retryable"] is retryable
    assert words in error["message"]
    assert events[-1].type == "done"
    assert events[-1]["stop_reason"] == "error"
    assert events[-1]["detail"] == error["message"]
    # the failed turn left nothing half-written: the tool round is complete, no partial reply
    assert [m.role for m in session.messages] == ["user", "assistant", "user"]
    assert session.messages[2].tool_results[0].tool_use_id == "call_1"
    assert session.pending_tool_uses() == []
    stored = agent.store.load(session.id)
    assert stored is not None
    assert len(stored.messages) == 3

    # the session goes on: the next run replays the whole history, and gets the turn
    more = [e async for e in agent.run("Are you there?", session)]
    assert more[-1]["stop_reason"] == "end_turn"
    last = server.chat_bodies[-1]["messages"]
    assert [m["role"] for m in last] == ["user", "assistant", "tool", "user"]
    assert last[-1] == {"role": "user", "content": "Are you there?"}
    assert session.messages[-1].text == "A reply long enough to be cut in the middle."


# --- cancellation ---------------------------------------------------------------------


async def test_closing_the_stream_closes_the_http_response(serve: Serve, models: Any) -> None:
    server = serve(["a long answer that the consumer abandons"], [Fault.hang(after_chunks=3)])
    model = models(server, timeout=60)
    stream = model.stream(request())
    first = await anext(stream)
    assert isinstance(first, TextDelta)
    await stream.aclose()  # what the agent does when its consumer breaks out or is cancelled
    assert await asyncio.to_thread(server.wait_client_closed, 10)
    assert server.chat_requests[0].outcome == "client_closed"


async def test_cancelling_an_agent_run_closes_the_http_response(
    serve: Serve, models: Any, tmp_path: Path
) -> None:
    server = serve(["an answer the user stops reading"], [Fault.hang(after_chunks=3)])
    agent = make_agent(models(server, timeout=60), tmp_path)
    session = agent.new_session("cancel")
    first_text = asyncio.Event()

    async def consume() -> None:
        async for event in agent.run("Tell me a story", session):
            if event.type == "text_delta":
                first_text.set()

    task = asyncio.create_task(consume())
    await first_text.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await asyncio.to_thread(server.wait_client_closed, 10)
    assert [m.role for m in session.messages] == ["user"]


# --- keys, base_url, clients ----------------------------------------------------------


def test_missing_key_is_one_sentence_naming_openai_api_key() -> None:
    with pytest.raises(ModelError) as caught:
        OpenAIModel("gpt-4.1")
    message = str(caught.value)
    assert message.startswith("OPENAI_API_KEY is not set")
    assert "\n" not in message
    assert message.endswith(".")
    assert not re.search(r"[.!?]\s+[A-Z]", message)  # one sentence
    with pytest.raises(ModelError, match="OPENAI_API_KEY"):
        OpenAIModel("gpt-4.1", base_url="https://api.openai.com/v1")


async def test_base_url_without_a_key_works(serve: Serve) -> None:
    server = serve(["Hi from a local server."])
    model = OpenAIModel("llama3.2", base_url=server.base_url)
    try:
        _, final = await collect(model, request())
    finally:
        await model.aclose()
    assert final.message.text == "Hi from a local server."
    authorization = server.chat_requests[0].headers["authorization"]
    assert authorization.startswith("Bearer ")
    assert len(authorization) > len("Bearer ")


async def test_key_from_the_environment_is_sent(
    serve: Serve, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-from-env")
    server = serve(["ok"], api_key="sk-from-env")
    model = OpenAIModel("gpt-4.1", base_url=server.base_url)
    try:
        _, final = await collect(model, request())
    finally:
        await model.aclose()
    assert final.message.text == "ok"
    assert server.chat_requests[0].headers["authorization"] == "Bearer sk-from-env"


async def test_a_given_httpx_client_is_used_and_left_open(serve: Serve) -> None:
    server = serve(["via my client"])
    async with httpx.AsyncClient(headers={"x-team": "loopwright"}) as client:
        model = OpenAIModel("gpt-4.1", base_url=server.base_url, http_client=client)
        _, final = await collect(model, request())
        await model.aclose()
        assert not client.is_closed
    assert final.message.text == "via my client"
    assert server.chat_requests[0].headers["x-team"] == "loopwright"
