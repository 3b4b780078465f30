"""The ``notice`` event: what the loop used to only log (a summary the model could not write,
a cost budget that cannot hold) reaches the person running the agent, on every consumer:
the Python API, the CLI's printer (stderr), tracing and the server's SSE stream."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from loopwright import Agent, MemoryStore, ReadTool, call, tool
from loopwright.agent import SUMMARY_SYSTEM
from loopwright.cli.render import EventPrinter, make_console
from loopwright.events import Notice, TextDelta, event_from_dict
from loopwright.models.base import ModelError, ModelRequest
from loopwright.models.scripted import ScriptedModel, ScriptedTurn
from loopwright.observability.tracing import TracingInstrument
from loopwright.server import create_app
from loopwright.tools.delegate import Delegate, SubAgent
from server.live import iter_sse, start_live

#: a model no price table knows: its calls count as $0
UNPRICED = "openai:mystery-model"


def unpriced_agent(tmp_path: Path, script: list[str], **kwargs: object) -> Agent:
    return Agent(
        ScriptedModel(script, name=UNPRICED),
        store=MemoryStore(),
        workspace_root=str(tmp_path / "ws"),
        max_cost_usd=0.5,
        **kwargs,  # type: ignore[arg-type]
    )


# --- the wire form ----------------------------------------------------------------------


def test_a_notice_has_its_own_wire_type_and_round_trips() -> None:
    notice = Notice("the model could not summarise", "summary_failed")
    wire = notice.to_dict()
    assert wire == {
        "type": "notice",
        "message": "the model could not summarise",
        "code": "summary_failed",
    }
    assert notice["code"] == "summary_failed"
    assert event_from_dict(json.loads(notice.to_json())) == notice
    tagged = Notice("m", "cost_unpriced", agent="agent/researcher")
    assert tagged.to_dict()["agent"] == "agent/researcher"
    assert event_from_dict(tagged.to_dict()) == tagged


def test_a_notice_without_its_code_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="malformed notice event"):
        event_from_dict({"type": "notice", "message": "m"})


# --- the agent loop ---------------------------------------------------------------------


@tool
async def report(n: int) -> str:
    """A long report, numbered ``n``."""
    return f"report {n} saved to report_{n}.csv\n" + "r" * 2_000


def failing_summaries() -> ScriptedModel:
    """A model whose summary calls fail (an overloaded provider), in a small window."""

    async def script(request: ModelRequest) -> object:
        if request.system == SUMMARY_SYSTEM:
            return ScriptedTurn(error=ModelError("overloaded (529)", retryable=True))
        if request.messages[-1].tool_results:
            return f"Report {len(request.messages)} is done. " + "a" * 2_000
        return call("report", n=len(request.messages))

    return ScriptedModel(script, context_window=6_000)


async def test_a_failed_summary_is_a_notice_and_still_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model = failing_summaries()
    agent = Agent(model, tools=[report], store=MemoryStore(), workspace_root=str(tmp_path / "ws"))
    session = agent.new_session()
    notices: list[Notice] = []
    with caplog.at_level(logging.WARNING, logger="loopwright.agent"):
        for i in range(8):
            result = await agent.collect(f"question {i}: make a report", session)
            assert result.stop_reason == "end_turn", result.events[-1]
            notices += [e for e in result.events if isinstance(e, Notice)]
            if notices:
                break
    assert session.context_start > 0  # the older turns were compacted
    assert notices, "no notice said the summary failed"
    (notice,) = notices
    assert notice.code == "summary_failed"
    assert "overloaded (529)" in notice.message
    assert "outline" in notice.message
    assert notice.agent is None
    # sent before the model call that the outline was made for: the answer follows it
    events = result.events
    assert any(isinstance(e, TextDelta) for e in events[events.index(notice) :])
    assert any("could not summarise" in r.getMessage() for r in caplog.records)


async def test_a_cost_budget_that_cannot_hold_is_one_notice_a_run(tmp_path: Path) -> None:
    agent = unpriced_agent(tmp_path, ["one", "two"])
    session = agent.new_session()
    for prompt in ("First.", "Second."):
        result = await agent.collect(prompt, session)
        assert result.stop_reason == "end_turn"
        notices = [e for e in result.events if e.type == "notice"]
        assert [n.code for n in notices] == ["cost_unpriced"]
        assert f"{UNPRICED} has no known price" in notices[0].message
        assert "LOOPWRIGHT_PRICES (e.g. 'mystery-model=INPUT/OUTPUT'" in notices[0].message
        assert result.events[-1].type == "done"
    # none where the cost is known or no budget is set
    priced = Agent(
        ScriptedModel(["a"], name="gpt-4.1"), workspace_root=str(tmp_path), max_cost_usd=0.5
    )
    unbudgeted = Agent(ScriptedModel(["a"], name=UNPRICED), workspace_root=str(tmp_path))
    for agent in (priced, unbudgeted):
        result = await agent.collect("Hi.")
        assert [e for e in result.events if e.type == "notice"] == []


async def test_a_sub_agents_notice_reaches_the_parent_tagged_with_its_path(
    tmp_path: Path,
) -> None:
    child = SubAgent(
        "researcher",
        "Reads files.",
        tools=["Read"],
        model=ScriptedModel(["Nothing to read."], name=UNPRICED),
        max_cost_usd=0.5,
    )
    parent = Agent(
        ScriptedModel([[call("Delegate", agent="researcher", task="Look.")], "Done."]),
        tools=[ReadTool, Delegate([child])],
        store=MemoryStore(),
        workspace_root=str(tmp_path / "ws"),
    )
    result = await parent.collect("Go.")
    assert result.stop_reason == "end_turn"
    notices = [e for e in result.events if isinstance(e, Notice)]
    assert [(n.code, n.agent) for n in notices] == [("cost_unpriced", "agent/researcher")]


async def test_an_unpriced_sub_agent_under_a_parents_budget_says_it_cannot_hold(
    tmp_path: Path,
) -> None:
    """The sub-agent has no budget of its own, but its spending counts against the parent's
    $0.50: at $0 a call it would never reach it, and the notice says so (with the parent's
    budget)."""
    child = SubAgent(
        "researcher",
        "Reads files.",
        tools=["Read"],
        model=ScriptedModel(["Nothing to read."], name=UNPRICED),
    )
    parent = Agent(
        ScriptedModel([[call("Delegate", agent="researcher", task="Look.")], "Done."]),
        tools=[ReadTool, Delegate([child])],
        store=MemoryStore(),
        workspace_root=str(tmp_path / "ws"),
        max_cost_usd=0.5,
    )
    result = await parent.collect("Go.")
    notices = [e for e in result.events if isinstance(e, Notice)]
    assert [(n.code, n.agent) for n in notices] == [("cost_unpriced", "agent/researcher")]
    assert notices[0].message.startswith("max_cost_usd=0.5 cannot stop this run")


# --- the CLI printer --------------------------------------------------------------------


def test_the_cli_prints_a_notice_on_stderr_not_in_the_answer(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FORCE_COLOR", raising=False)
    out = io.StringIO()
    printer = EventPrinter(make_console(out))
    printer.handle(TextDelta("The answer"))
    printer.handle(Notice("max_cost_usd=0.5 cannot stop this run", "cost_unpriced"))
    printer.handle(Notice("the summary failed", "summary_failed", agent="agent/researcher"))
    printer.handle(TextDelta(" goes on."))
    assert out.getvalue() == "The answer goes on."  # piped: the answer as the model wrote it
    err = capsys.readouterr().err
    assert err.splitlines() == [
        "notice: max_cost_usd=0.5 cannot stop this run",
        "  [agent/researcher] notice: the summary failed",
    ]


@pytest.mark.parametrize("no_color", [False, True])
def test_the_cli_notice_is_yellow_on_a_terminal_unless_no_color(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, no_color: bool
) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")  # a terminal, for rich
    if no_color:
        monkeypatch.setenv("NO_COLOR", "1")
    else:
        monkeypatch.delenv("NO_COLOR", raising=False)
    printer = EventPrinter(make_console(io.StringIO()), rich=False)
    printer.handle(Notice("a budget cannot hold", "cost_unpriced"))
    err = capsys.readouterr().err
    assert "notice: a budget cannot hold" in err
    yellow = "\x1b[2;33m"  # dim yellow
    assert (yellow not in err) if no_color else (yellow in err), repr(err)


# --- tracing ----------------------------------------------------------------------------


async def test_a_notice_is_a_span_event_of_its_run(tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        agent = unpriced_agent(tmp_path, ["Hi."], instruments=[TracingInstrument(provider)])
        await agent.collect("Hello.")
    finally:
        provider.shutdown()
    (run,) = [s for s in exporter.get_finished_spans() if s.name.startswith("invoke_agent")]
    events = [e for e in run.events if e.name == "loopwright.notice"]
    assert len(events) == 1
    attributes = dict(events[0].attributes or {})
    assert attributes["code"] == "cost_unpriced"
    assert f"{UNPRICED} has no known price" in str(attributes["message"])


# --- the server -------------------------------------------------------------------------


def test_the_sse_stream_carries_the_notice(tmp_path: Path) -> None:
    live = start_live(create_app(unpriced_agent(tmp_path, ["Hi."]), tokens={"t": "alice"}))
    try:
        with live.client("t") as client:
            session = client.post("/api/sessions", json={}).json()["id"]
            with client.stream(
                "POST", f"/api/sessions/{session}/messages", json={"content": "Hello."}
            ) as response:
                assert response.status_code == 200
                frames = list(iter_sse(response))
    finally:
        live.stop()
    notices = [f for f in frames if f.event == "notice"]
    assert len(notices) == 1
    assert notices[0].data["type"] == "notice"
    assert notices[0].data["code"] == "cost_unpriced"
    assert frames[-1].event == "done"
    assert frames[-1].data["stop_reason"] == "end_turn"
