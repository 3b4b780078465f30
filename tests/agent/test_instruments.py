"""Instruments watch every step of a run; tools see their run and can stream events into it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from loopwright import call
from loopwright.events import Done, Event, TextDelta, Usage
from loopwright.instrument import Instrument
from loopwright.messages import ToolUseBlock
from loopwright.models.base import ModelRequest, ModelResponse
from loopwright.models.scripted import ScriptedModel
from loopwright.run_context import RunContext, current_call, current_run
from loopwright.tools.base import BaseTool, ToolResult, ok

from .helpers import make_agent, of_type, types


class Recorder(Instrument):
    def __init__(self) -> None:
        self.steps: list[tuple[Any, ...]] = []

    def run_started(self, run: RunContext) -> None:
        self.steps.append(("run_started", run.path, run.depth))

    def run_finished(self, run: RunContext, done: Done) -> None:
        self.steps.append(("run_finished", run.path, done.stop_reason))

    def model_call_started(self, run: RunContext, request: ModelRequest) -> None:
        self.steps.append(("model_started", run.path, len(request.messages)))

    def model_call_finished(
        self,
        run: RunContext,
        request: ModelRequest,
        response: ModelResponse | None,
        error: BaseException | None,
        duration_s: float,
    ) -> None:
        assert duration_s >= 0
        stop = response.stop_reason if response is not None else type(error).__name__
        self.steps.append(("model_finished", run.path, stop))

    def tool_call_started(self, run: RunContext, call: ToolUseBlock) -> None:
        scope = current_call()
        assert scope is not None
        assert scope.call is call
        self.steps.append(("tool_started", run.path, call.name))

    def tool_call_finished(
        self, run: RunContext, call: ToolUseBlock, result: dict[str, Any], duration_s: float
    ) -> None:
        self.steps.append(("tool_finished", run.path, call.name, result["is_error"]))

    def event(self, run: RunContext, event: Event) -> None:
        self.steps.append(("event", event.type))


class Broken(Instrument):
    def run_started(self, run: RunContext) -> None:
        raise RuntimeError("instrument bug")

    def event(self, run: RunContext, event: Event) -> None:
        raise RuntimeError("instrument bug")


class Progress(BaseTool):
    """Reports progress into the run's stream while it works, and bills some usage to it."""

    streams_events = True

    @property
    def name(self) -> str:
        return "Progress"

    @property
    def schema(self) -> dict[str, Any]:
        return {
            "name": "Progress",
            "description": "Count to n, reporting each step.",
            "input_schema": {
                "type": "object",
                "properties": {"n": {"type": "integer"}},
                "required": ["n"],
            },
        }

    async def execute(self, input: dict[str, Any]) -> ToolResult:
        run = current_run()
        assert run is not None
        for i in range(input["n"]):
            run.emit(TextDelta(f"step {i}\n", agent=f"{run.path}/progress"))
            await asyncio.sleep(0)
        run.add_usage(Usage(input_tokens=100, output_tokens=10, cost_usd=0.5, model_calls=1))
        return ok(f"counted to {input['n']}")


async def test_instruments_see_each_step_in_order(tmp_path: Path) -> None:
    recorder = Recorder()
    model = ScriptedModel([[call("Progress", n=1)], "done"])
    agent = make_agent(model, tmp_path, tools=[Progress], instruments=[recorder])
    result = await agent.collect("count")
    assert result.stop_reason == "end_turn"
    steps = [s for s in recorder.steps if s[0] != "event"]
    assert steps == [
        ("run_started", "agent", 0),
        ("model_started", "agent", 1),
        ("model_finished", "agent", "tool_use"),
        ("tool_started", "agent", "Progress"),
        ("tool_finished", "agent", "Progress", False),
        ("model_started", "agent", 3),
        ("model_finished", "agent", "end_turn"),
        ("run_finished", "agent", "end_turn"),
    ]
    seen = [s[1] for s in recorder.steps if s[0] == "event"]
    assert seen == types(result.events)


async def test_a_failing_instrument_does_not_break_the_run(tmp_path: Path) -> None:
    agent = make_agent(ScriptedModel(["hello"]), tmp_path, instruments=[Broken()])
    result = await agent.collect("hi")
    assert result.stop_reason == "end_turn"
    assert result.text == "hello"


async def test_a_tool_streams_events_and_bills_usage_to_its_run(tmp_path: Path) -> None:
    model = ScriptedModel([[call("Progress", n=3)], "done"])
    agent = make_agent(model, tmp_path, tools=[Progress])
    result = await agent.collect("count")
    progress = [e for e in result.events if e.type == "text_delta" and e.agent]
    assert [e.text for e in progress] == ["step 0\n", "step 1\n", "step 2\n"]
    assert {e.agent for e in progress} == {"agent/progress"}
    # the tool's events come between its call and its result
    kinds = types(result.events)
    assert kinds.index("tool_call") < kinds.index("text_delta") < kinds.index("tool_result")
    # its usage counts in the run and the session, limits included
    assert result.usage.cost_usd >= 0.5
    assert result.usage.model_calls == 3
    assert result.session.usage.cost_usd >= 0.5


async def test_the_cost_a_tool_bills_counts_against_the_limit(tmp_path: Path) -> None:
    model = ScriptedModel([[call("Progress", n=1)], [call("Progress", n=1)], "done"])
    agent = make_agent(model, tmp_path, tools=[Progress], max_cost_usd=0.4)
    result = await agent.collect("count")
    assert result.stop_reason == "cost_budget"
    assert len(of_type(result.events, "tool_result")) == 1


async def test_a_run_started_inside_a_tool_call_knows_its_parent(tmp_path: Path) -> None:
    recorder = Recorder()
    child = make_agent(ScriptedModel(["child answer"]), tmp_path, name="child")
    child.instruments = type(child.instruments)([recorder])
    runs: list[RunContext] = []

    class Spawn(BaseTool):
        @property
        def name(self) -> str:
            return "Spawn"

        @property
        def schema(self) -> dict[str, Any]:
            return {
                "name": "Spawn",
                "description": "Run the child agent.",
                "input_schema": {"type": "object", "properties": {}},
            }

        async def execute(self, input: dict[str, Any]) -> ToolResult:
            parent = current_run()
            assert parent is not None
            runs.append(parent)
            answer = await child.collect("go")
            return ok(answer.text)

    parent = make_agent(ScriptedModel([[call("Spawn")], "ok"]), tmp_path, tools=[Spawn])
    result = await parent.collect("spawn")
    assert result.stop_reason == "end_turn"
    assert ("run_started", "agent/child", 1) in recorder.steps
    # outside any tool call there is no current run
    assert current_run() is None
    assert runs[0].path == "agent"


async def test_tools_that_cannot_be_set_up_end_the_run_with_an_error(tmp_path: Path) -> None:
    from loopwright.tools.base import Toolset

    class NoSandbox(Toolset):
        def bind(self, workspace_dir: str, session_id: str | None = None) -> list[BaseTool]:
            raise RuntimeError("bubblewrap cannot create a user namespace here")

    agent = make_agent(ScriptedModel(["never"]), tmp_path, tools=[NoSandbox()])
    result = await agent.collect("hi")
    assert result.stop_reason == "error"
    assert types(result.events) == ["error", "done"]
    assert "user namespace" in result.events[-1].detail
