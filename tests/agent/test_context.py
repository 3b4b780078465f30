"""Context management: trim old tool outputs first, then summarise older turns."""

from __future__ import annotations

from pathlib import Path

from loopwright import call, tool
from loopwright.agent import SUMMARY_SYSTEM
from loopwright.models.base import ModelRequest
from loopwright.models.scripted import ScriptedModel, ScriptedTurn

from .helpers import make_agent, of_type


@tool
async def dump(n: int) -> str:
    """Return a big blob of text."""
    return f"blob {n} " + "x" * 4000


def test_small_conversations_are_sent_whole(tmp_path: Path) -> None:
    model = ScriptedModel([call("dump", n=1), "done"], context_window=100_000)
    agent = make_agent(model, tmp_path, tools=[dump])
    agent.run_sync("go")
    assert "blob 1 xxx" in model.requests[1].messages[-1].tool_results[0].text


async def test_old_tool_outputs_are_trimmed_first(tmp_path: Path) -> None:
    # each tool output is ~1,000 tokens; the window is 8,000 tokens (threshold 80%)
    steps = 8
    model = ScriptedModel(
        [call("dump", n=i) for i in range(steps)] + ["done"], context_window=8_000
    )
    agent = make_agent(model, tmp_path, tools=[dump], keep_recent_tool_results=2)
    session = agent.new_session()
    result = await agent.collect("go", session)
    assert result.stop_reason == "end_turn"
    last = model.requests[-1]
    texts = [r.text for m in last.messages for r in m.tool_results]
    trimmed = [t for t in texts if "was trimmed to save context" in t]
    kept = [t for t in texts if t.startswith("blob")]
    assert trimmed, "old outputs should have been trimmed"
    # the note keeps the output's beginning: what the call gave, without running it again
    assert 'It began: "blob 0 xxx' in trimmed[0]
    assert "(4,007 characters)" in trimmed[0]
    assert [t.split()[1] for t in kept][-2:] == ["6", "7"]
    # the full outputs are still in the session's log (nothing lost)
    full = [r.text for m in session.messages for r in m.tool_results]
    assert all(t.startswith("blob") for t in full)
    assert last.estimated_input_tokens < 8_000
    # no summary was needed
    assert not any(r.system == SUMMARY_SYSTEM for r in model.requests)


async def test_older_turns_are_summarised_when_trimming_is_not_enough(tmp_path: Path) -> None:
    summaries: list[str] = []

    def script(request: ModelRequest) -> ScriptedTurn:
        if request.system == SUMMARY_SYSTEM:
            summaries.append(request.messages[0].text)
            return ScriptedTurn(text="The user chatted at length about topic 0 onwards.")
        return ScriptedTurn(text=f"reply {len(request.messages)} " + "y" * 3000)

    model = ScriptedModel(script, context_window=6_000)
    agent = make_agent(model, tmp_path)
    session = agent.new_session()
    usage_events = []
    for i in range(8):
        events = [e async for e in agent.run(f"topic {i} " + "z" * 3000, session)]
        usage_events += of_type(events, "usage")
    assert summaries, "a summary should have been requested"
    assert "topic 0" in summaries[0]
    assert session.summary == "The user chatted at length about topic 0 onwards."
    assert session.context_start > 0
    last = [r for r in model.requests if r.system != SUMMARY_SYSTEM][-1]
    first = last.messages[0]
    assert first.role == "user"
    assert "Summary of the earlier part" in first.text
    assert "topic 7" in last.messages[-1].text
    assert last.estimated_input_tokens < 6_000
    # every message is still in the log
    assert len(session.messages) == 16
    # usage events report the context window
    assert all(u.context_window == 6_000 for u in usage_events)
    assert all(u.context_tokens > 0 for u in usage_events)


async def test_summary_state_survives_a_reload(tmp_path: Path) -> None:
    from loopwright import Session, SQLiteStore

    def script(request: ModelRequest) -> ScriptedTurn:
        if request.system == SUMMARY_SYSTEM:
            return ScriptedTurn(text="short summary")
        return ScriptedTurn(text="r " + "y" * 3000)

    store = SQLiteStore(tmp_path / "s.db")
    agent = make_agent(ScriptedModel(script, context_window=5_000), tmp_path, store=store)
    session = agent.new_session("ctx")
    for i in range(6):
        await agent.collect(f"q{i} " + "z" * 3000, session)
    reloaded = Session.resume("ctx", store=SQLiteStore(tmp_path / "s.db"))
    assert reloaded.summary == "short summary"
    assert reloaded.context_start == session.context_start
    assert [m.to_dict() for m in reloaded.context_messages()] == [
        m.to_dict() for m in session.context_messages()
    ]
