"""Context management under pressure: results bigger than a small window, several big
results in one turn, a summary call that fails or hangs, summaries of long transcripts, and
what a summary call counts for. Scripted models, real tools, the real store."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest

from loopwright import call, tool
from loopwright.agent import CALLS_HEADING, SUMMARY_SYSTEM
from loopwright.messages import TextBlock
from loopwright.models.base import ModelError, ModelRequest
from loopwright.models.scripted import ScriptedModel, ScriptedToolCall, ScriptedTurn

from .helpers import make_agent


@tool
async def report(n: int, size: int) -> str:
    """A report of ``size`` characters, numbered ``n``."""
    return f"report {n} saved to report_{n}.csv\n" + "r" * size


def prompt_tokens(request: ModelRequest) -> int:
    """The request's size as the agent estimates it (about 4 characters a token)."""
    chars = len(request.system) + sum(len(json.dumps(t)) for t in request.tools)
    return (chars + sum(m.char_size() for m in request.messages)) // 4


def checked(script: object, window: int) -> ScriptedModel:
    """A scripted model that fails, as a provider does, on a prompt over its window."""

    def play(request: ModelRequest) -> object:
        size = prompt_tokens(request)
        if size + (0 if request.tools else request.max_tokens) > window:
            raise ModelError(f"prompt of {size:,} tokens is over the {window:,}-token window")
        return script(request)  # type: ignore[operator]

    return ScriptedModel(play, context_window=window)


def test_one_result_is_cut_to_what_the_window_holds(tmp_path: Path) -> None:
    """A 30,000-character result (the registry's default cut) is 7,500 tokens: over a
    4,096-token window on its own. The run failed, and so did every later run of the session
    (the result stays among the recent ones, which are never trimmed)."""

    def script(request: ModelRequest) -> object:
        last = request.messages[-1]
        if last.tool_results:
            return "The report is saved."
        return call("report", n=len(request.messages), size=40_000)

    model = checked(script, 4096)
    agent = make_agent(model, tmp_path, tools=[report])
    session = agent.new_session()
    for question in ("first report", "second report"):
        result = agent.run_sync(question, session)
        assert result.stop_reason == "end_turn", result.events[-1]
    seen = [r for m in model.requests[1].messages for r in m.tool_results][-1].text
    assert len(seen) < 4096 * 0.8 * 4 / 3
    assert "output truncated" in seen
    saved = seen.split("is saved in ", 1)[1].split(";", 1)[0]
    whole = (session.workspace_dir / saved).read_text(encoding="utf-8")
    assert whole.startswith("report 1 saved to report_1.csv")
    assert len(whole) > 40_000
    # a window wide enough keeps the configured cut
    wide = make_agent(ScriptedModel(["x"], context_window=200_000), tmp_path)
    assert wide.registry_for(wide.new_session()).max_output_chars == 30_000


def test_big_results_of_the_newest_turn_are_trimmed_when_over_the_window(tmp_path: Path) -> None:
    """Six results of one turn, each under the cut, are over the window together: trimming
    old turns and summarising cannot shrink the newest turn, so the prompt went over."""

    def script(request: ModelRequest) -> object:
        if not request.tools:
            return "Summary."
        if request.messages[-1].tool_results:
            return "Six reports."
        return [ScriptedToolCall("report", {"n": n, "size": 3_000}) for n in range(6)]

    model = checked(script, 4096)
    agent = make_agent(model, tmp_path, tools=[report])
    session = agent.new_session()
    result = agent.run_sync("six reports", session)
    assert result.stop_reason == "end_turn", result.events[-1]
    seen = [r.text for m in model.requests[-1].messages for r in m.tool_results]
    kept = [t for t in seen if t.startswith("report")]
    assert kept
    assert kept[-1].startswith("report 5")
    assert len(kept) < 6
    # the log keeps every output
    assert len([r for m in session.messages for r in m.tool_results if "rrrr" in r.text]) == 6


def _long_session_script(fail: str) -> tuple[ScriptedModel, list[ModelRequest]]:
    summaries: list[ModelRequest] = []

    async def script(request: ModelRequest) -> object:
        if request.system == SUMMARY_SYSTEM:
            summaries.append(request)
            if fail == "error":
                return ScriptedTurn(error=ModelError("overloaded (529)", retryable=True))
            if fail == "empty":
                return "   "
            return "The user asked for reports."
        last = request.messages[-1]
        if last.tool_results:
            n = len(request.messages)
            return f"Report {n} holds {n * 7} rows. " + "a" * 2_000
        return call("report", n=len(request.messages), size=2_000)

    return ScriptedModel(script, context_window=6_000), summaries


@pytest.mark.parametrize("fail", ["error", "empty"])
def test_a_failed_summary_leaves_an_outline_and_the_turn_completes(
    tmp_path: Path, fail: str
) -> None:
    """The summary call failing (a provider error) ended the question's run with an error
    before the model saw it; an empty summary left the prompt over the threshold."""
    model, summaries = _long_session_script(fail)
    agent = make_agent(model, tmp_path, tools=[report])
    session = agent.new_session()
    for i in range(8):
        result = agent.run_sync(f"question {i}: make a report", session)
        assert result.stop_reason == "end_turn", result.events[-1]
    assert summaries
    assert session.context_start > 0
    outline = session.summary
    assert "could not summarise" in outline
    assert ("overloaded (529)" if fail == "error" else "empty summary") in outline
    assert "question" in outline  # the user's requests, as they were asked
    last = [r for r in model.requests if r.system != SUMMARY_SYSTEM][-1]
    assert prompt_tokens(last) <= 6_000 * 0.8
    assert "could not summarise" in last.messages[0].text
    assert CALLS_HEADING in last.messages[0].text
    assert "report 1 saved to report_1.csv" in last.messages[0].text
    assert len([m for m in session.messages if m.role == "user" and m.text]) == 8


def test_the_summary_lists_the_calls_and_files_the_model_left_out(tmp_path: Path) -> None:
    model, _ = _long_session_script("")
    agent = make_agent(model, tmp_path, tools=[report])
    session = agent.new_session()
    for i in range(8):
        agent.run_sync(f"question {i}", session)
    assert session.summary == "The user asked for reports."
    last = [r for r in model.requests if r.system != SUMMARY_SYSTEM][-1]
    summary, listed = last.messages[0].content[:2]
    assert isinstance(summary, TextBlock)
    assert isinstance(listed, TextBlock)
    assert summary.text.endswith("The user asked for reports.")
    assert listed.text.startswith(CALLS_HEADING)
    lines = listed.text.splitlines()[1:]
    assert lines[0] == '- report {"n": 1, "size": 2000}: report 1 saved to report_1.csv'
    # every call of the summarised turns, once, oldest first
    called = [u.input["n"] for m in session.messages[: session.context_start] for u in m.tool_uses]
    assert [json.loads(line.split(" ", 2)[2].split("}:")[0] + "}")["n"] for line in lines] == called
    # what the model is sent is what the agent counts
    assert last.estimated_input_tokens == prompt_tokens(last)


def test_summary_requests_fit_the_window(tmp_path: Path) -> None:
    """The transcript of the summarised turns went whole into one request: with long turns
    (each tool result up to 2,000 characters, even those trimmed long ago) it was over the
    window of the model asked to summarise it, so the summary failed when most needed."""
    sizes: list[int] = []
    made = []

    def script(request: ModelRequest) -> object:
        if request.system == SUMMARY_SYSTEM:
            sizes.append(prompt_tokens(request) + request.max_tokens)
            return "Summary of the reports so far."
        if len(made) == 20:
            return "All reports made."
        made.append(1)
        return call("report", n=len(made), size=3_000)

    model = ScriptedModel(script, context_window=4_096)
    agent = make_agent(model, tmp_path, tools=[report], max_turns=30)
    result = agent.run_sync("make reports until there are twenty " + "please " * 900)
    assert result.stop_reason == "end_turn", result.events[-1]
    assert sizes
    assert max(sizes) <= 4_096


def test_a_summary_is_not_one_of_the_runs_model_turns(tmp_path: Path) -> None:
    """``max_turns`` counts the model's turns; the summary the loop asks for counted as one,
    so a run that needed compaction stopped a turn short of its answer."""

    def script(request: ModelRequest) -> object:
        if request.system == SUMMARY_SYSTEM:
            return "Summary."
        if request.messages[-1].tool_results:
            return "Answer."
        if request.messages[-1].text.startswith("old question"):
            return "Old answer."
        return call("report", n=1, size=100)

    model = ScriptedModel(script, context_window=3_000)
    agent = make_agent(model, tmp_path, tools=[report], max_turns=2)
    session = agent.new_session()
    agent.run_sync("old question " + "o" * 12_000, session)
    result = agent.run_sync("new question", session)
    assert any(r.system == SUMMARY_SYSTEM for r in model.requests)
    assert result.stop_reason == "end_turn", result.events[-1]
    assert result.text == "Answer."
    assert result.usage.model_calls == 3  # the summary's usage is still counted


def test_a_hanging_summary_call_is_bound_by_the_run_timeout(tmp_path: Path) -> None:
    """The summary call ran outside the run's deadline: a provider that hung kept the run
    going long past ``timeout``."""

    async def script(request: ModelRequest) -> object:
        if request.system == SUMMARY_SYSTEM:
            await asyncio.sleep(30)
            return "late"
        return "Answer."

    model = ScriptedModel(script, context_window=3_000)
    agent = make_agent(model, tmp_path)
    session = agent.new_session()
    agent.run_sync("old question " + "o" * 12_000, session)
    agent.timeout = 1.5
    started = time.monotonic()
    result = agent.run_sync("new question", session)
    assert time.monotonic() - started < 10
    assert result.stop_reason in ("timeout", "end_turn")
    # what the summary would have replaced is still all there, and an outline stands in
    assert session.messages[0].text.startswith("old question")
    assert "could not summarise" in session.summary
    assert "time limit" in session.summary
