"""Limits that stop a run cleanly, stuck-loop detection, cancellation."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from pathlib import Path

import pytest

from loopwright import Pricing, ToolContext, Usage, WriteTool, call, tool
from loopwright.models.base import ModelRequest
from loopwright.models.scripted import ScriptedModel, ScriptedTurn

from .helpers import make_agent, of_type


def endless_tool_calls(request: ModelRequest) -> ScriptedTurn:
    step = len(request.messages)
    return ScriptedTurn(tool_calls=[call("noop", step=step)])


@tool
async def noop(step: int) -> str:
    """Do nothing."""
    return f"step {step}"


async def test_max_turns_stops_the_run(tmp_path: Path) -> None:
    agent = make_agent(ScriptedModel(endless_tool_calls), tmp_path, tools=[noop], max_turns=3)
    session = agent.new_session()
    events = [e async for e in agent.run("loop forever", session)]
    done = events[-1]
    assert done.type == "done"
    assert done.stop_reason == "max_turns"
    assert done.usage.model_calls == 3
    # the last turn's tool calls were answered: the history is consistent
    assert session.pending_tool_uses() == []
    assert len(of_type(events, "tool_result")) == 3


async def test_token_budget_stops_the_run(tmp_path: Path) -> None:
    def expensive(request: ModelRequest) -> ScriptedTurn:
        turn = endless_tool_calls(request)
        turn.usage = Usage(input_tokens=900, output_tokens=100)
        return turn

    agent = make_agent(ScriptedModel(expensive), tmp_path, tools=[noop], max_tokens_budget=2500)
    events = [e async for e in agent.run("go")]
    assert events[-1].stop_reason == "token_budget"
    assert events[-1].usage.total_tokens == 3000  # three calls: 1000, 2000, then over
    assert "2,500" in events[-1].detail


async def test_cost_budget_stops_the_run(tmp_path: Path) -> None:
    def priced(request: ModelRequest) -> ScriptedTurn:
        turn = endless_tool_calls(request)
        turn.usage = Usage(input_tokens=100_000, output_tokens=10_000)
        return turn

    # $3 / $15 per million tokens: each turn costs 0.30 + 0.15 = $0.45
    model = ScriptedModel(priced, pricing=Pricing(3.0, 15.0))
    agent = make_agent(model, tmp_path, tools=[noop], max_cost_usd=1.0)
    events = [e async for e in agent.run("go")]
    done = events[-1]
    assert done.stop_reason == "cost_budget"
    assert done.usage.cost_usd == pytest.approx(1.35)
    usage_events = of_type(events, "usage")
    assert usage_events[0].cost_usd == pytest.approx(0.45)
    assert usage_events[-1].run.cost_usd == pytest.approx(1.35)


async def test_timeout_stops_a_run_stuck_in_a_tool(tmp_path: Path) -> None:
    @tool
    async def hang() -> str:
        """Never returns."""
        await asyncio.sleep(60)
        return "unreachable"

    agent = make_agent(ScriptedModel([call("hang"), "never"]), tmp_path, tools=[hang], timeout=0.3)
    session = agent.new_session()
    loop = asyncio.get_running_loop()
    started = loop.time()
    events = [e async for e in agent.run("go", session)]
    assert loop.time() - started < 5
    assert events[-1].stop_reason == "timeout"
    # the unfinished call has an "interrupted" result; nothing is left dangling
    result = session.messages[-1].tool_results[0]
    assert result.is_error
    assert "interrupted" in result.text
    assert session.pending_tool_uses() == []


async def test_timeout_stops_a_slow_model(tmp_path: Path) -> None:
    model = ScriptedModel(["a slow answer " * 20], delay=0.1, chunk_size=4)
    agent = make_agent(model, tmp_path, timeout=0.3)
    events = [e async for e in agent.run("go")]
    assert events[-1].stop_reason == "timeout"


async def test_repeated_identical_calls_are_pointed_out_then_stopped(tmp_path: Path) -> None:
    same = call("noop", step=1)
    model = ScriptedModel([same] * 10)
    agent = make_agent(model, tmp_path, tools=[noop], repeat_warn_after=3, repeat_stop_after=5)
    session = agent.new_session()
    events = [e async for e in agent.run("go", session)]
    results = of_type(events, "tool_result")
    assert len(results) == 5
    assert "same input" not in results[1].content
    assert "same input, 3 times in a row." in results[2].content
    assert "same input" in results[2].content
    assert events[-1].stop_reason == "stuck_loop"
    assert "5 times" in events[-1].detail
    # the model saw the note in its history
    assert "same input" in model.requests[3].messages[-1].tool_results[0].text


async def test_different_calls_reset_the_repeat_counter(tmp_path: Path) -> None:
    model = ScriptedModel(
        [
            call("noop", step=1),
            call("noop", step=1),
            call("noop", step=2),
            call("noop", step=1),
            "done",
        ]
    )
    agent = make_agent(model, tmp_path, tools=[noop], repeat_warn_after=3)
    events = [e async for e in agent.run("go")]
    assert not any("same input" in r.content for r in of_type(events, "tool_result"))
    assert events[-1].stop_reason == "end_turn"


@tool
async def spawn_sleeper(pid_file: str, ctx: ToolContext) -> str:
    """Start a long-running child process and wait for it (killing it if cancelled)."""
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-c", "import time; time.sleep(60)", start_new_session=True
    )
    (ctx.workspace_dir / pid_file).write_text(str(process.pid))
    try:
        await process.wait()
    except asyncio.CancelledError:
        os.killpg(process.pid, signal.SIGKILL)
        await process.wait()
        raise
    return "finished"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie still answers signal 0; check its state
    with open(f"/proc/{pid}/stat") as handle:
        return handle.read().split()[2] != "Z"


async def test_cancelling_the_consumer_cancels_the_run_and_kills_processes(
    tmp_path: Path,
) -> None:
    model = ScriptedModel(
        [[call("spawn_sleeper", pid_file="a.pid"), call("spawn_sleeper", pid_file="b.pid")]]
    )
    agent = make_agent(model, tmp_path, tools=[spawn_sleeper])
    session = agent.new_session()
    seen: list[str] = []

    async def consume() -> None:
        async for event in agent.run("go", session):
            seen.append(event.type)

    task = asyncio.create_task(consume())
    pid_files = [session.workspace_dir / "a.pid", session.workspace_dir / "b.pid"]
    for _ in range(200):
        if all(p.exists() and p.read_text() for p in pid_files):
            break
        await asyncio.sleep(0.02)
    pids = [int(p.read_text()) for p in pid_files]
    assert all(_alive(pid) for pid in pids)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not any(_alive(pid) for pid in pids)
    assert "done" not in seen
    # consistent history: both calls answered as interrupted, and it is saved
    results = session.messages[-1].tool_results
    assert len(results) == 2
    assert all(r.is_error and "cancelled" in r.text for r in results)
    stored = agent.store.load(session.id)
    assert stored is not None
    assert stored.pending_tool_uses() == []


async def test_breaking_out_of_the_stream_leaves_a_consistent_history(tmp_path: Path) -> None:
    model = ScriptedModel(
        [
            [
                call("Write", file_path="a.txt", content="a"),
                call("Write", file_path="b.txt", content="b"),
            ],
            "done",
        ]
    )
    agent = make_agent(model, tmp_path, tools=[WriteTool])
    session = agent.new_session()
    stream = agent.run("go", session)
    async for event in stream:
        if event.type == "tool_result":
            break
    await stream.aclose()  # type: ignore[attr-defined]
    assert session.pending_tool_uses() == []
    results = session.messages[-1].tool_results
    assert [r.is_error for r in results] == [False, True]
    assert not (session.workspace_dir / "b.txt").exists()
    # the session can go on afterwards
    model2 = ScriptedModel(["continuing"])
    agent.model = model2
    result = await agent.collect("carry on", session)
    assert result.text == "continuing"
