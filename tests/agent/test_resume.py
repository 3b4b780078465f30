"""Crash and resume: kill the process mid-run, resume, nothing recorded runs twice."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from loopwright import Agent, ScriptedModel, Session, SQLiteStore

CHILD = textwrap.dedent(
    """
    import asyncio, sys
    from pathlib import Path
    from loopwright import Agent, SQLiteStore, ScriptedModel, call, tool

    work = Path(sys.argv[1])

    @tool
    async def step(name: str, seconds: float) -> str:
        \"\"\"Record that the step ran, then take a while.\"\"\"
        with open(work / "executions.log", "a") as log:
            log.write(name + "\\n")
        if seconds:
            (work / f"{name}.started").write_text("yes")
            await asyncio.sleep(seconds)
        return f"{name} ok"

    model = ScriptedModel([
        call("step", name="one", seconds=0),
        [call("step", name="two", seconds=0), call("step", name="three", seconds=60)],
        "never reached",
    ])
    agent = Agent(model, tools=[step], store=SQLiteStore(work / "sessions.db"),
                  workspace_root=str(work / "ws"))
    asyncio.run(agent.collect("do the three steps", "crashy"))
    """
)


def _wait_for(predicate, timeout: float = 20.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError("condition not reached in time")


def _two_is_recorded(db: Path) -> bool:
    if not db.exists():
        return False
    store = SQLiteStore(db)
    try:
        session = store.load("crashy")
    finally:
        store.close()
    if session is None:
        return False
    return any(r.text == "two ok" for m in session.messages for r in m.tool_results)


def test_killed_run_resumes_without_rerunning_recorded_tool_calls(tmp_path: Path) -> None:
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    child = subprocess.Popen([sys.executable, str(script), str(tmp_path)])
    try:
        _wait_for(lambda: (tmp_path / "three.started").exists())
        _wait_for(lambda: _two_is_recorded(tmp_path / "sessions.db"))
        os.kill(child.pid, signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
    assert child.returncode == -signal.SIGKILL

    store = SQLiteStore(tmp_path / "sessions.db")
    session = Session.resume("crashy", store=store)
    roles = [m.role for m in session.messages]
    assert roles == ["user", "assistant", "user", "assistant", "user"]
    results = {r.tool_use_id: r for r in session.messages[-1].tool_results}
    calls = session.messages[-2].tool_uses
    two, three = calls
    assert results[two.id].text == "two ok"
    assert not results[two.id].is_error
    assert results[three.id].is_error
    assert "interrupted" in results[three.id].text
    assert session.pending_tool_uses() == []

    # resume the run: the model continues from the repaired history
    model = ScriptedModel(["Step three was interrupted; steps one and two are done."])
    agent = Agent(model, store=store, workspace_root=str(tmp_path / "ws"))
    result = agent.run_sync(None, session)
    assert result.stop_reason == "end_turn"
    sent = model.requests[0].messages
    assert sent[-1].tool_results[1].is_error
    # nothing that was recorded ran again
    log = (tmp_path / "executions.log").read_text().split()
    assert log == ["one", "two", "three"]
    reloaded = SQLiteStore(tmp_path / "sessions.db").load("crashy")
    assert reloaded is not None
    assert reloaded.messages[-1].text.startswith("Step three was interrupted")
    assert reloaded.usage.model_calls == 3  # two before the crash, one after
