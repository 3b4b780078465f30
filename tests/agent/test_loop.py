"""The agentic loop: real tools, multi-turn, parallel and sequential calls, errors."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import pytest

from loopwright import Agent, ReadTool, Session, WriteTool, call, tool
from loopwright.events import Event
from loopwright.messages import Message, ToolResultBlock
from loopwright.models.base import ModelError, ModelRequest
from loopwright.models.scripted import ScriptedModel, ScriptedToolCall, ScriptedTurn

from .helpers import make_agent, of_type, types


async def test_agent_creates_hello_txt_with_the_real_write_tool(tmp_path: Path) -> None:
    model = ScriptedModel(
        [
            ["I'll create the file.", call("Write", file_path="hello.txt", content="Hello World")],
            "Created hello.txt containing Hello World.",
        ]
    )
    agent = make_agent(model, tmp_path, tools=[WriteTool, ReadTool])
    session = agent.new_session("test")
    events = [e async for e in agent.run("Create hello.txt with 'Hello World'", session)]

    assert (session.workspace_dir / "hello.txt").read_text() == "Hello World"
    assert session.workspace_dir == tmp_path / "ws" / "test"
    assert types(events)[-1] == "done"
    assert events[-1]["stop_reason"] == "end_turn"
    call_event = of_type(events, "tool_call")[0]
    result = of_type(events, "tool_result")[0]
    assert call_event["name"] == "Write"
    assert result["id"] == call_event["id"]
    assert not result["is_error"]
    assert result["duration_ms"] >= 0
    text = "".join(e["text"] for e in of_type(events, "text_delta"))
    assert text == "I'll create the file.Created hello.txt containing Hello World."
    # the history is the linear conversation the model saw
    roles = [m.role for m in session.messages]
    assert roles == ["user", "assistant", "user", "assistant"]
    assert session.messages[2].tool_results[0].tool_use_id == call_event["id"]
    # the model was sent the tool schemas
    assert {s["name"] for s in model.requests[0].tools} == {"Write", "Read"}


async def test_text_streams_in_chunks_before_the_turn_ends(tmp_path: Path) -> None:
    model = ScriptedModel(["a fairly long answer that arrives in several pieces"], chunk_size=8)
    agent = make_agent(model, tmp_path)
    events = [e async for e in agent.run("hi")]
    deltas = of_type(events, "text_delta")
    assert len(deltas) > 3
    assert "".join(d.text for d in deltas) == "a fairly long answer that arrives in several pieces"


def test_run_sync_returns_the_final_answer(tmp_path: Path) -> None:
    agent = make_agent(ScriptedModel(["Four."]), tmp_path, system_prompt="Be brief.")
    result = agent.run_sync("What is 2+2?")
    assert result.text == "Four."
    assert result.ok
    assert result.usage.model_calls == 1
    assert agent.model.requests[0].system == "Be brief."  # type: ignore[attr-defined]


async def test_run_sync_inside_an_event_loop_is_refused_clearly(tmp_path: Path) -> None:
    agent = make_agent(ScriptedModel(["x"]), tmp_path)
    with pytest.raises(RuntimeError, match=r"agent\.run"):
        agent.run_sync("hi")


async def test_multi_turn_session_keeps_history(tmp_path: Path) -> None:
    model = ScriptedModel(["Nice to meet you, Ada.", "Your name is Ada."])
    agent = make_agent(model, tmp_path)
    session = agent.new_session()
    [e async for e in agent.run("My name is Ada.", session)]
    [e async for e in agent.run("What is my name?", session)]
    second = model.requests[1].messages
    assert [m.text for m in second] == [
        "My name is Ada.",
        "Nice to meet you, Ada.",
        "What is my name?",
    ]
    assert session.usage.model_calls == 2


async def test_session_given_by_id_is_created_then_continued(tmp_path: Path) -> None:
    model = ScriptedModel(["one", "two"])
    agent = make_agent(model, tmp_path)
    first = await agent.collect("first", "named-session")
    second = await agent.collect("second", "named-session")
    assert first.session.id == second.session.id == "named-session"
    assert [m.text for m in model.requests[1].messages] == ["first", "one", "second"]


async def test_collect_shows_each_event_to_on_event_as_it_comes(tmp_path: Path) -> None:
    model = ScriptedModel(
        [["Writing.", call("Write", file_path="a.txt", content="a")], "Wrote a.txt."]
    )
    agent = make_agent(model, tmp_path, tools=[WriteTool])
    seen: list[str] = []
    files_when_result_seen: list[bool] = []

    async def on_event(event: Event) -> None:  # a coroutine function...
        seen.append(event.type)
        if event.type == "tool_result":
            files_when_result_seen.append((tmp_path / "ws" / "s1" / "a.txt").exists())

    result = await agent.collect("write a.txt", "s1", on_event=on_event)
    assert seen == [e.type for e in result.events]
    assert seen[-1] == "done"
    assert files_when_result_seen == [True]
    plain: list[str] = []
    await agent.collect("again", "s2", on_event=lambda e: plain.append(e.type))  # ...or not
    assert plain[-1] == "done"


async def test_an_on_event_that_raises_ends_the_run_and_keeps_the_history_whole(
    tmp_path: Path,
) -> None:
    model = ScriptedModel(
        [["Writing.", call("Write", file_path="a.txt", content="a")], "never reached"]
    )
    agent = make_agent(model, tmp_path, tools=[WriteTool])
    session = agent.new_session("s")

    def on_event(event: Event) -> None:
        if event.type == "tool_call":
            raise RuntimeError("the consumer went away")

    with pytest.raises(RuntimeError, match="went away"):
        await agent.collect("write a.txt", session, on_event=on_event)
    assert len(model.requests) == 1  # the run stopped: no second model call
    # closed at once, as a cancelled run: the call has its "interrupted" result
    assert [m.role for m in session.messages] == ["user", "assistant", "user"]
    (interrupted,) = session.messages[-1].tool_results
    assert "interrupted" in str(interrupted.content)
    assert not (session.workspace_dir / "a.txt").exists()


async def test_parallel_tool_calls_really_overlap(tmp_path: Path) -> None:
    @tool
    async def slow(label: str) -> str:
        """Wait half a second."""
        await asyncio.sleep(0.5)
        return f"{label} done"

    model = ScriptedModel([[call("slow", label="a"), call("slow", label="b")], "both done"])
    agent = make_agent(model, tmp_path, tools=[slow])
    started = time.perf_counter()
    events = [e async for e in agent.run("go")]
    elapsed = time.perf_counter() - started
    assert elapsed < 0.9, f"two 0.5 s tools took {elapsed:.2f}s: they did not overlap"
    results = of_type(events, "tool_result")
    assert sorted(r.content for r in results) == ["a done", "b done"]
    # history keeps results in the order of the calls
    session_results = model.requests[1].messages[-1].tool_results
    assert [r.text for r in session_results] == ["a done", "b done"]


async def test_sequential_tools_keep_their_order(tmp_path: Path) -> None:
    order: list[str] = []

    @tool(sequential=True)
    async def append(item: str, wait: float) -> str:
        """Append an item after waiting."""
        await asyncio.sleep(wait)
        order.append(item)
        return item

    model = ScriptedModel(
        [
            [
                call("append", item="first", wait=0.2),
                call("append", item="second", wait=0.0),
                call("append", item="third", wait=0.1),
            ],
            "ok",
        ]
    )
    agent = make_agent(model, tmp_path, tools=[append])
    events = [e async for e in agent.run("go")]
    assert order == ["first", "second", "third"]
    assert [r.content for r in of_type(events, "tool_result")] == ["first", "second", "third"]


async def test_a_read_after_a_write_in_the_same_turn_sees_the_write(tmp_path: Path) -> None:
    model = ScriptedModel(
        [
            [
                call("Write", file_path="a.txt", content="version 1"),
                call("Read", file_path="a.txt"),
                call("Write", file_path="a.txt", content="version 2"),
                call("Read", file_path="a.txt"),
            ],
            "ok",
        ]
    )
    agent = make_agent(model, tmp_path, tools=[WriteTool, ReadTool])
    events = [e async for e in agent.run("go")]
    reads = [r.content for r in of_type(events, "tool_result") if r.name == "Read"]
    assert "version 1" in reads[0]
    assert "version 2" in reads[1]


async def test_schema_invalid_input_comes_back_as_an_error_and_the_loop_continues(
    tmp_path: Path,
) -> None:
    model = ScriptedModel(
        [
            call("Write", file_path="x.txt"),  # missing "content"
            call("Write", file_path="x.txt", content="fixed"),
            "done",
        ]
    )
    agent = make_agent(model, tmp_path, tools=[WriteTool])
    session = agent.new_session()
    events = [e async for e in agent.run("write x", session)]
    results = of_type(events, "tool_result")
    assert results[0].is_error
    assert "content" in results[0].content
    assert not results[1].is_error
    assert (session.workspace_dir / "x.txt").read_text() == "fixed"
    assert events[-1].stop_reason == "end_turn"
    assert events[-1].usage.tool_errors == 1


async def test_tool_exceptions_and_unknown_tools_are_error_results(tmp_path: Path) -> None:
    @tool
    def explode(reason: str) -> str:
        """Always fails."""
        raise RuntimeError(f"boom: {reason}")

    model = ScriptedModel([[call("explode", reason="test"), call("NoSuchTool")], "recovered"])
    agent = make_agent(model, tmp_path, tools=[explode])
    events = [e async for e in agent.run("go")]
    by_name = {r.name: r for r in of_type(events, "tool_result")}
    first, second = by_name["explode"], by_name["NoSuchTool"]
    assert first.is_error
    assert "RuntimeError" in first.content
    assert "boom: test" in first.content
    assert second.is_error
    assert "Unknown tool" in second.content
    assert "explode" in second.content
    assert events[-1].stop_reason == "end_turn"


async def test_path_escape_is_refused_as_an_error_result(tmp_path: Path) -> None:
    model = ScriptedModel([call("Read", file_path="../../../../etc/passwd"), "cannot"])
    agent = make_agent(model, tmp_path, tools=[ReadTool])
    events = [e async for e in agent.run("read /etc/passwd")]
    result = of_type(events, "tool_result")[0]
    assert result.is_error
    assert "Access denied" in result.content
    assert "root:" not in result.content


async def test_max_tokens_cutting_a_tool_call_is_recovered(tmp_path: Path) -> None:
    cut = ScriptedTurn(
        text="Writing the report.",
        tool_calls=[
            ScriptedToolCall("Write", partial_json='{"file_path": "report.md", "content": "# Rep')
        ],
        stop_reason="max_tokens",
    )
    model = ScriptedModel(
        [cut, call("Write", file_path="report.md", content="# Report\n"), "Report written."]
    )
    agent = make_agent(model, tmp_path, tools=[WriteTool])
    session = agent.new_session()
    events = [e async for e in agent.run("write a report", session)]
    assert events[-1].stop_reason == "end_turn"
    # the model was told its call was cut off, in a tool result for that call
    told = model.requests[1].messages[-1].tool_results[0]
    assert told.is_error
    assert "output token limit" in told.text
    assert (session.workspace_dir / "report.md").read_text() == "# Report\n"
    # the cut call was never executed: only one tool_call/tool_result pair was streamed
    assert len(of_type(events, "tool_call")) == 1


async def test_text_cut_by_max_tokens_is_continued(tmp_path: Path) -> None:
    model = ScriptedModel(
        [ScriptedTurn(text="The answer is", stop_reason="max_tokens"), " forty-two."]
    )
    agent = make_agent(model, tmp_path)
    result = await agent.collect("question")
    assert result.stop_reason == "end_turn"
    assert "Continue exactly where it stopped" in model.requests[1].messages[-1].text


async def test_model_error_ends_the_run_with_an_error_event(tmp_path: Path) -> None:
    model = ScriptedModel(
        [ScriptedTurn(error=ModelError("provider overloaded, try later", retryable=True))]
    )
    agent = make_agent(model, tmp_path)
    session = agent.new_session()
    events = [e async for e in agent.run("hi", session)]
    assert types(events) == ["error", "done"]
    assert events[0].to_dict() == {
        "type": "error",
        "message": "provider overloaded, try later",
        "retryable": True,
        "retrying": False,
        "discard_partial": False,
    }
    assert events[1].stop_reason == "error"
    assert [m.role for m in session.messages] == ["user"]


async def test_function_script_sees_tool_results(tmp_path: Path) -> None:
    def script(request: ModelRequest) -> ScriptedTurn:
        last = request.messages[-1]
        if last.tool_results:
            return ScriptedTurn(text=f"The file says: {last.tool_results[0].text.split(chr(9))[1]}")
        return ScriptedTurn(tool_calls=[call("Read", file_path="note.txt")])

    agent = make_agent(ScriptedModel(script), tmp_path, tools=[ReadTool])
    session = agent.new_session()
    (session.workspace_dir / "note.txt").write_text("remember the milk")
    result = await agent.collect("what does note.txt say?", session)
    assert result.text == "The file says: remember the milk"


async def test_sync_tools_run_off_the_event_loop_thread(tmp_path: Path) -> None:
    seen: list[str] = []

    @tool
    def where() -> str:
        """Report the thread."""
        seen.append(threading.current_thread().name)
        return "ok"

    agent = make_agent(ScriptedModel([call("where"), "done"]), tmp_path, tools=[where])
    await agent.collect("go")
    assert seen
    assert seen[0] != threading.current_thread().name


async def test_prompt_none_needs_an_interrupted_session(tmp_path: Path) -> None:
    agent = make_agent(ScriptedModel(["done"]), tmp_path)
    session = agent.new_session()
    await agent.collect("hi", session)
    with pytest.raises(ValueError, match="nothing to do"):
        await agent.collect(None, session)


async def test_agent_set_prehook_applies_to_every_session(tmp_path: Path) -> None:
    seen: list[str] = []

    async def audit(input: dict[str, object]) -> None:
        seen.append(str(input["file_path"]))

    model = ScriptedModel([call("Write", file_path="a.txt", content="x"), "ok"] * 2)
    agent = make_agent(model, tmp_path, tools=[WriteTool])
    agent.set_prehook("Write", audit)
    await agent.collect("one")
    await agent.collect("two")
    assert len(seen) == 2
    # the prehook sees the validated, absolute path
    assert all(p.endswith("/a.txt") for p in seen)
    assert all(p.startswith(str(tmp_path)) for p in seen)


async def test_image_prompt_blocks_are_accepted(tmp_path: Path) -> None:
    from loopwright import ImageBlock, TextBlock

    model = ScriptedModel(["a red pixel"])
    agent = make_agent(model, tmp_path)
    result = await agent.collect([TextBlock("what is this?"), ImageBlock("aGVsbG8=", "image/png")])
    assert result.text == "a red pixel"
    assert isinstance(model.requests[0].messages[0].content[1], ImageBlock)


def test_bad_model_string_is_one_clear_sentence() -> None:
    with pytest.raises(ModelError, match="unknown model 'nope'"):
        Agent("nope")


async def test_repaired_history_is_valid_for_providers(tmp_path: Path) -> None:
    """Every tool_use in the history has exactly one tool_result right after it."""
    model = ScriptedModel(
        [[call("Write", file_path="a", content="1"), call("Read", file_path="a")], "ok"]
    )
    agent = make_agent(model, tmp_path, tools=[WriteTool, ReadTool])
    session = agent.new_session()
    await agent.collect("go", session)
    _assert_well_formed(session.messages)


def _assert_well_formed(messages: list[Message]) -> None:
    for index, message in enumerate(messages):
        if message.role == "assistant" and message.tool_uses:
            following = messages[index + 1]
            ids = [b.tool_use_id for b in following.content if isinstance(b, ToolResultBlock)]
            assert ids == [b.id for b in message.tool_uses]


def test_session_ids_are_validated(tmp_path: Path) -> None:
    for bad in ["../x", "a/b", "", ".hidden", "x" * 200, "a..b"]:
        with pytest.raises(ValueError, match="invalid session id"):
            Session.create(bad, root=tmp_path)
    assert Session.create("ok_id-1.2", root=tmp_path).workspace_dir == tmp_path / "ok_id-1.2"


async def test_a_retry_notice_from_the_model_becomes_a_retryable_error_event(
    tmp_path: Path,
) -> None:
    from collections.abc import AsyncIterator

    from loopwright.events import TextDelta, Usage
    from loopwright.models.base import Model, ModelEvent, ModelResponse, RetryNotice

    class FlakyModel(Model):
        name = "flaky"

        async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
            yield TextDelta("Hel")
            yield RetryNotice("connection lost; retrying in 0.1s", 1, 0.1, discard_partial=True)
            yield TextDelta("Hello!")
            yield ModelResponse(Message.assistant("Hello!"), "end_turn", Usage(output_tokens=2))

    agent = make_agent(FlakyModel(), tmp_path)
    session = agent.new_session()
    events = [e async for e in agent.run("hi", session)]
    assert types(events) == ["text_delta", "error", "text_delta", "usage", "done"]
    assert events[1].retryable
    assert events[1].retrying
    assert events[1].discard_partial
    assert events[-1].stop_reason == "end_turn"
    assert session.messages[-1].text == "Hello!"


async def test_a_toolset_is_bound_per_session_with_shared_state(tmp_path: Path) -> None:
    from loopwright import BaseTool, Toolset
    from loopwright.tools.base import ToolResult, ok

    class Counter(BaseTool):
        def __init__(self, workspace_dir: str, box: list[int], name: str) -> None:
            super().__init__(workspace_dir)
            self.box, self._name = box, name

        @property
        def name(self) -> str:
            return self._name

        @property
        def schema(self) -> dict[str, object]:
            return {"name": self._name, "description": "count", "input_schema": {"type": "object"}}

        async def execute(self, input: dict[str, object]) -> ToolResult:
            self.box.append(1)
            return ok(str(len(self.box)))

    class CounterSet(Toolset):
        def bind(self, workspace_dir: str, session_id: str | None = None) -> list[BaseTool]:
            box: list[int] = []
            return [Counter(workspace_dir, box, "Inc"), Counter(workspace_dir, box, "Inc2")]

    model = ScriptedModel([[call("Inc"), call("Inc2")], "ok"] * 2)
    agent = make_agent(model, tmp_path, tools=[CounterSet()])
    first = await agent.collect("a")
    second = await agent.collect("b")  # a new session: a new, separate counter
    assert sorted(e.content for e in of_type(first.events, "tool_result")) == ["1", "2"]
    assert sorted(e.content for e in of_type(second.events, "tool_result")) == ["1", "2"]


async def test_malformed_tool_json_is_reported_as_such(tmp_path: Path) -> None:
    bad = ScriptedTurn(tool_calls=[ScriptedToolCall("Write", partial_json='{"file_path": oops}')])
    model = ScriptedModel([bad, "giving up"])
    agent = make_agent(model, tmp_path, tools=[WriteTool])
    await agent.collect("go")
    told = model.requests[1].messages[-1].tool_results[0]
    assert "not valid JSON" in told.text


def test_response_format_and_tool_choice_reach_every_model_call(tmp_path: Path) -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}}
    model = ScriptedModel([call("Write", file_path="a", content="x"), '{"answer": "ok"}'])
    agent = make_agent(
        model, tmp_path, tools=[WriteTool], response_format=schema, tool_choice="auto"
    )
    agent.run_sync("go")
    assert [r.response_format for r in model.requests] == [schema, schema]
    assert [r.tool_choice for r in model.requests] == ["auto", "auto"]
    assert all(r.tools for r in model.requests)
