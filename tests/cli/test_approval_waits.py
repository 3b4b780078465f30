"""The CLI's wait for an approval answer (``cli.run.drive``): it ends when the policy stops
waiting, whatever the approver's thread is doing, and a late answer is not a crash."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from loopwright import Agent, WriteTool, call
from loopwright.cli import run as cli_run
from loopwright.events import ApprovalRequest, Event
from loopwright.models.scripted import ScriptedModel
from loopwright.policy import Policy
from loopwright.sessions import MemoryStore


def _agent(tmp_path: Path, timeout: float) -> tuple[Agent, ScriptedModel]:
    model = ScriptedModel([call("Write", file_path="a.txt", content="hi"), "done"])
    policy = Policy(mode="ask", approval_timeout=timeout)
    agent = Agent(
        model,
        workspace_root=str(tmp_path / "ws"),
        store=MemoryStore(),
        tools=[WriteTool],
        policy=policy,
    )
    return agent, model


async def test_a_reader_blocked_for_good_does_not_hang_the_run(tmp_path: Path) -> None:
    """A pipe that stays open and silent (cron, ``docker -i``) blocks the answer's read for
    good; the run ends when the policy's approval timeout denies the call."""
    agent, model = _agent(tmp_path, timeout=0.3)
    session = agent.new_session()
    released = threading.Event()

    def blocked(request: ApprovalRequest, stop: threading.Event) -> tuple[bool, str]:
        released.wait(30)  # a read that nothing interrupts
        return True, ""

    events: list[Event] = []
    started = time.monotonic()
    try:
        done = await cli_run.drive(agent, session, "write it", events.append, blocked)
    finally:
        released.set()
    assert time.monotonic() - started < 20
    assert done.stop_reason == "end_turn"
    told = model.requests[1].messages[-1].tool_results[0]
    assert told.is_error
    assert not (session.workspace_dir / "a.txt").exists()


async def test_an_answer_after_the_timeout_is_told_too_late(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    agent, _ = _agent(tmp_path, timeout=0.2)
    session = agent.new_session()

    def slow(request: ApprovalRequest, stop: threading.Event) -> tuple[bool, str]:
        deadline = time.monotonic() + 10
        while any(r.id == request.id for r in agent.pending_approvals):
            assert time.monotonic() < deadline
            time.sleep(0.01)
        return True, ""  # typed just after the policy gave up

    cli_run.APPROVAL_CHECK_SECONDS, saved = 30.0, cli_run.APPROVAL_CHECK_SECONDS
    try:
        done = await cli_run.drive(agent, session, "write it", lambda e: None, slow)
    finally:
        cli_run.APPROVAL_CHECK_SECONDS = saved
    assert done.stop_reason == "end_turn"
    assert "too late: the call was already denied" in capsys.readouterr().err
    assert not (session.workspace_dir / "a.txt").exists()


def test_a_long_or_multi_line_call_is_shown_whole_before_the_question(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    code = "import os\n" + "x = 1\n" * 3 + "os.remove('important.csv')"
    request = ApprovalRequest("r1", "t1", "Python", {"code": code}, "")
    monkeypatch.setattr("sys.stdin", io.StringIO("n\n"))
    allow, _ = cli_run.ask_at_prompt(request)
    assert not allow
    err = capsys.readouterr().err
    assert "os.remove('important.csv')" in err
    assert err.index("os.remove('important.csv')") < err.index("approve Python(")
