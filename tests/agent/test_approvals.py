"""The policy through the loop: approval requests as events, answered with agent.approve."""

from __future__ import annotations

import json
from pathlib import Path

from loopwright import ReadTool, WriteTool, call
from loopwright.models.scripted import ScriptedModel
from loopwright.policy import Policy

from .helpers import make_agent, of_type, types


async def test_an_approved_write_runs_and_is_audited(tmp_path: Path) -> None:
    model = ScriptedModel([call("Write", file_path="a.txt", content="hi"), "done"])
    agent = make_agent(model, tmp_path, tools=[WriteTool], policy=Policy(mode="ask", audit=True))
    session = agent.new_session()
    events = []
    async for event in agent.run("write it", session):
        events.append(event)
        if event.type == "approval_request":
            assert [r.id for r in agent.pending_approvals] == [event.id]
            assert event.name == "Write"
            # the person approves exactly what will run: the resolved path
            assert event.input["file_path"] == str(session.workspace_dir / "a.txt")
            assert event.input["content"] == "hi"
            agent.approve(event.id, allow=True, by="tester")
    assert types(events)[:4] == ["usage", "tool_call", "approval_request", "tool_result"]
    assert not of_type(events, "tool_result")[0].is_error
    assert (session.workspace_dir / "a.txt").read_text() == "hi"
    assert agent.pending_approvals == []
    audit = [
        json.loads(line)
        for line in (session.workspace_dir / ".loopwright" / "audit.jsonl").read_text().splitlines()
    ]
    assert audit[0]["tool"] == "Write"
    assert audit[0]["approved_by"] == "tester"
    # when it was asked and answered, linked to the approval_request event
    approval = audit[0]["approval"]
    assert approval["id"] == of_type(events, "approval_request")[0].id
    assert approval["asked_at"] <= approval["answered_at"] <= audit[0]["time"]
    assert approval["waited_ms"] >= 0


async def test_a_denied_call_tells_the_model_why_and_the_run_goes_on(tmp_path: Path) -> None:
    model = ScriptedModel([call("Write", file_path="a.txt", content="hi"), "understood"])
    agent = make_agent(model, tmp_path, tools=[WriteTool], policy=Policy(mode="ask"))
    session = agent.new_session()
    async for event in agent.run("write it", session):
        if event.type == "approval_request":
            agent.approve(event.id, allow=False, reason="not in this folder")
    told = model.requests[1].messages[-1].tool_results[0]
    assert told.is_error
    assert "not in this folder" in told.text
    assert not (session.workspace_dir / "a.txt").exists()
    assert session.messages[-1].text == "understood"


async def test_reads_run_while_a_write_of_the_same_turn_waits(tmp_path: Path) -> None:
    model = ScriptedModel(
        [[call("Read", file_path="x.txt"), call("Write", file_path="x.txt", content="1")], "ok"]
    )
    agent = make_agent(model, tmp_path, tools=[ReadTool, WriteTool], policy=Policy(mode="ask"))
    order: list[str] = []
    async for event in agent.run("go"):
        order.append(f"{event.type}:{getattr(event, 'name', '')}")
        if event.type == "approval_request":
            agent.approve(event.id)
    # the Read ran (and failed: no file yet) before the Write was approved and ran
    assert order.index("tool_result:Read") < order.index("approval_request:Write")
    assert order.index("approval_request:Write") < order.index("tool_result:Write")


async def test_read_only_mode_denies_without_asking(tmp_path: Path) -> None:
    model = ScriptedModel([call("Write", file_path="a.txt", content="hi"), "ok"])
    agent = make_agent(model, tmp_path, tools=[WriteTool], policy=Policy(mode="read-only"))
    result = await agent.collect("write")
    assert "approval_request" not in types(result.events)
    assert of_type(result.events, "tool_result")[0].is_error


async def test_a_function_approver_answers_without_events(tmp_path: Path) -> None:
    asked: list[str] = []

    def approver(request: object) -> bool:
        asked.append(getattr(request, "name", ""))
        return True

    model = ScriptedModel([call("Write", file_path="a.txt", content="hi"), "ok"])
    policy = Policy(mode="ask", approver=approver)
    agent = make_agent(model, tmp_path, tools=[WriteTool], policy=policy)
    result = await agent.collect("write")
    assert asked == ["Write"]
    assert "approval_request" not in types(result.events)
    assert (result.session.workspace_dir / "a.txt").exists()


async def test_a_stop_hook_can_ask_for_more(tmp_path: Path) -> None:
    policy = Policy()
    seen: list[str] = []

    @policy.hooks.stop
    def once(event: object) -> str | None:
        seen.append(getattr(event, "final_text", ""))
        return "Also say goodbye." if len(seen) == 1 else None

    model = ScriptedModel(["first answer", "goodbye"])
    agent = make_agent(model, tmp_path, policy=policy)
    result = await agent.collect("hi")
    assert seen == ["first answer", "goodbye"]
    assert result.text == "goodbye"
    assert model.requests[1].messages[-1].text == "Also say goodbye."


def test_approve_without_a_policy_says_what_to_do(tmp_path: Path) -> None:
    import pytest

    agent = make_agent(ScriptedModel(["x"]), tmp_path)
    with pytest.raises(LookupError, match="Policy"):
        agent.approve("nope")
