"""Delegate: a child agent whose events and usage roll up into the parent's run."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from loopwright import Agent, MemoryStore, ReadTool, WriteTool, call
from loopwright.events import ApprovalRequest, Done, Event
from loopwright.models.base import Pricing
from loopwright.models.scripted import ScriptedModel
from loopwright.policy import Policy
from loopwright.tools.delegate import Delegate, SubAgent

PRICE = Pricing(input_per_mtok=1_000.0, output_per_mtok=2_000.0)


def parent_agent(tmp_path: Path, model: ScriptedModel, delegate: Delegate, **kw: object) -> Agent:
    return Agent(
        model,
        tools=[ReadTool, WriteTool, delegate],
        store=MemoryStore(),
        workspace_root=str(tmp_path / "ws"),
        **kw,  # type: ignore[arg-type]
    )


async def test_sub_agent_events_and_usage_roll_up_into_the_parent(tmp_path: Path) -> None:
    child_model = ScriptedModel(
        [[call("Read", file_path="notes.txt")], "The notes say: ship on Friday."], pricing=PRICE
    )
    researcher = SubAgent(
        "researcher", "Reads files and reports.", "You research.", tools=["Read"], model=child_model
    )
    parent_model = ScriptedModel(
        [
            [call("Delegate", agent="researcher", task="What do the notes say?")],
            "Shipping is on Friday.",
        ],
        pricing=PRICE,
    )
    agent = parent_agent(tmp_path, parent_model, Delegate([researcher]))
    session = agent.new_session("lead")
    (session.workspace_dir / "notes.txt").write_text("ship on Friday\n")

    result = await agent.collect("When do we ship?", session)

    assert result.stop_reason == "end_turn"
    assert result.text == "Shipping is on Friday."
    tagged = [e for e in result.events if e.agent == "agent/researcher"]
    kinds = [e.type for e in tagged]
    assert kinds.count("tool_call") == 1
    assert kinds.count("tool_result") == 1
    assert "text_delta" in kinds
    assert "usage" in kinds
    assert "done" not in kinds  # the child's end is the Delegate result, not a second done
    child_read = next(e for e in tagged if e.type == "tool_result")
    assert "ship on Friday" in child_read.content
    # the child's events come between the parent's Delegate call and its result
    order = [(e.type, e.agent) for e in result.events]
    start = order.index(("tool_call", None))
    end = order.index(("tool_result", None))
    assert all(start < order.index((e.type, e.agent)) < end for e in tagged[:1])
    delegate_result = next(e for e in result.events if e.type == "tool_result" and not e.agent)
    assert "The notes say: ship on Friday." in delegate_result.content
    # the child saw only its tool subset and its own system prompt
    assert [t["name"] for t in child_model.requests[0].tools] == ["Read"]
    assert child_model.requests[0].system == "You research."
    # usage: the parent's run counts both models' calls and costs
    child_usage = [e for e in tagged if e.type == "usage"][-1].run.cost_usd
    assert result.usage.model_calls == 4
    assert result.usage.tool_calls == 2  # the parent's Delegate + the child's Read
    parent_only = sum(e.cost_usd for e in result.events if e.type == "usage" and e.agent is None)
    assert result.usage.cost_usd == pytest.approx(parent_only + child_usage, rel=1e-9)
    assert child_usage > 0
    # the child's session is saved, linked to the parent's
    child = agent.store.load("lead.researcher-1")
    assert child is not None
    assert child.metadata["parent_session"] == "lead"
    assert child.workspace_dir == session.workspace_dir


async def test_a_child_directory_keeps_the_sub_agents_files_apart(tmp_path: Path) -> None:
    child_model = ScriptedModel(
        [[call("Write", file_path="draft.md", content="# Draft\n")], "Wrote draft.md."]
    )
    writer = SubAgent(
        "writer", "Writes drafts.", tools=["Write"], model=child_model, workspace="child"
    )
    parent_model = ScriptedModel(
        [[call("Delegate", agent="writer", task="Write a draft.")], "Done."]
    )
    agent = parent_agent(tmp_path, parent_model, Delegate([writer]))
    session = agent.new_session("lead")
    result = await agent.collect("Draft it.", session)
    assert result.stop_reason == "end_turn"
    assert (
        session.workspace_dir / "subagents" / "writer-1" / "draft.md"
    ).read_text() == "# Draft\n"
    assert not (session.workspace_dir / "draft.md").exists()


async def test_bad_delegation_comes_back_as_a_tool_error(tmp_path: Path) -> None:
    helper = SubAgent("helper", "Helps.", tools=["Nope"], model=ScriptedModel(["x"]))
    parent_model = ScriptedModel(
        [
            [call("Delegate", agent="helper", task="help")],
            [call("Delegate", agent="ghost", task="help")],
            "gave up",
        ]
    )
    agent = parent_agent(tmp_path, parent_model, Delegate([helper]))
    result = await agent.collect("try")
    errors = [e for e in result.events if e.type == "tool_result" and e.is_error]
    assert len(errors) == 2
    assert "Nope" in errors[0].content
    assert "ghost" in errors[1].content or "helper" in errors[1].content


async def test_custom_sub_agents_and_the_depth_limit(tmp_path: Path) -> None:
    # a one-off sub-agent that itself tries to delegate: depth 1 allowed, depth 2 refused
    script = ScriptedModel(
        [
            [
                call(
                    "Delegate",
                    task="level one",
                    system_prompt="You are level one.",
                    tools=["Read", "Delegate"],
                )
            ],
            [call("Delegate", task="level two", system_prompt="You are level two.")],
            "level one gave up delegating",
            "lead done",
        ]
    )
    agent = parent_agent(tmp_path, script, Delegate(allow_custom=True, max_depth=1))
    result = await agent.collect("go")
    assert result.stop_reason == "end_turn"
    refused = [e for e in result.events if e.type == "tool_result" and e.agent == "agent/custom"]
    assert refused
    assert refused[0].is_error
    assert "nest 1 deep" in refused[0].content


async def test_a_sub_agents_approval_request_is_answered_by_the_parent(tmp_path: Path) -> None:
    child_model = ScriptedModel(
        [[call("Write", file_path="out.txt", content="approved")], "Wrote it."]
    )
    writer = SubAgent("writer", "Writes.", tools=["Write"], model=child_model)
    parent_model = ScriptedModel([[call("Delegate", agent="writer", task="write")], "ok"])
    agent = parent_agent(tmp_path, parent_model, Delegate([writer]), policy=Policy(mode="ask"))
    session = agent.new_session("lead")
    seen: list[Event] = []
    async for event in agent.run("write it", session):
        seen.append(event)
        if isinstance(event, ApprovalRequest):
            agent.approve(event.id, allow=True)
    asked = [(e.name, e.agent) for e in seen if isinstance(e, ApprovalRequest)]
    assert ("Write", "agent/writer") in asked
    assert isinstance(seen[-1], Done)
    assert seen[-1].stop_reason == "end_turn"
    assert (session.workspace_dir / "out.txt").read_text() == "approved"


async def test_cancelling_the_parent_stops_the_sub_agent_cleanly(tmp_path: Path) -> None:
    child_model = ScriptedModel(["a slow answer " * 50], chunk_size=4, delay=0.01)
    slow = SubAgent("slow", "Takes its time.", tools=[], model=child_model)
    parent_model = ScriptedModel([[call("Delegate", agent="slow", task="take your time")], "x"])
    agent = parent_agent(tmp_path, parent_model, Delegate([slow]))
    session = agent.new_session("lead")

    seen: list[Event] = []

    async def consume() -> None:
        async for event in agent.run("go", session):
            seen.append(event)

    task = asyncio.create_task(consume())
    for _ in range(500):
        if any(e.agent == "agent/slow" for e in seen):
            break
        await asyncio.sleep(0.01)
    task.cancel()  # while the sub-agent is still streaming
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not any(isinstance(e, Done) for e in seen)
    # the parent's Delegate call is answered as cancelled, the child's history is closed too
    assert session.pending_tool_uses() == []
    assert "cancelled" in session.messages[-1].tool_results[0].text
    child = agent.store.load("lead.slow-1")
    assert child is not None
    assert child.messages[-1].role in ("user", "assistant")
