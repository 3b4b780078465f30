"""Usage reports built from real scripted runs, with and without recorded stats."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from rich.console import Console

from loopwright import MemoryStore, ReadTool, ScriptedModel, ScriptedTurn, WriteTool, call
from loopwright.events import Usage
from loopwright.models.base import ModelError, Pricing
from loopwright.observability.reports import build_report, print_report
from loopwright.observability.stats import StatsRecorder, read_records, stats_path
from loopwright.tools.delegate import Delegate, SubAgent

from .conftest import make_agent

PRICING = Pricing(input_per_mtok=3, output_per_mtok=15, cache_read_per_mtok=0.3)


def first_run() -> list[object]:
    return [
        ["Writing.", call("Write", file_path="a.txt", content="alpha")],
        [call("Read", file_path="a.txt"), call("Read", file_path="missing.txt")],
        ScriptedTurn(
            text="Done.",
            usage=Usage(input_tokens=200, output_tokens=30, cache_read_tokens=1000),
        ),
    ]


async def test_a_report_from_recorded_runs(tmp_path: Path) -> None:
    store = MemoryStore()
    model = ScriptedModel(
        [*first_run(), call("Read", file_path="nope.txt"), "Still done."], pricing=PRICING
    )
    agent = make_agent(
        model, tmp_path, tools=[WriteTool, ReadTool], instruments=[StatsRecorder()], store=store
    )
    first = await agent.collect("write and read")
    session = first.session
    second = await agent.collect("read again", session)
    assert (first.stop_reason, second.stop_reason) == ("end_turn", "end_turn")

    records = read_records(session.workspace_dir)
    assert {r["kind"] for r in records} == {"model", "tool", "run"}
    report = build_report(session)
    assert report.timings_recorded

    # totals are the session's own accounting
    assert report.usage.total_tokens == session.usage.total_tokens
    assert report.usage.cost_usd == pytest.approx(session.usage.cost_usd)
    assert report.usage.cache_read_tokens == 1000
    assert report.tool_calls == session.usage.tool_calls == 4
    assert report.tool_errors == session.usage.tool_errors == 2

    tools = {t.name: t for t in report.tools}
    assert (tools["Read"].calls, tools["Read"].errors) == (3, 2)
    assert (tools["Write"].calls, tools["Write"].errors) == (1, 0)
    read_latency = tools["Read"].latency
    assert read_latency is not None
    assert read_latency.count == 3
    assert read_latency.max_ms >= read_latency.p50_ms >= 0

    (scripted,) = report.models
    assert scripted.model == "scripted"
    assert scripted.calls == 5 == session.usage.model_calls
    assert scripted.usage.cost_usd == pytest.approx(session.usage.cost_usd)
    assert report.model_latency is not None
    assert report.model_latency.count == 5

    assert [r.stop_reason for r in report.runs] == ["end_turn", "end_turn"]
    assert [r.usage.model_calls for r in report.runs] == [3, 2]
    assert [r.usage.tool_errors for r in report.runs] == [1, 1]
    assert sum(r.usage.cost_usd for r in report.runs) == pytest.approx(session.usage.cost_usd)
    assert all(r.duration_ms is not None and r.duration_ms >= 0 for r in report.runs)

    data = json.loads(json.dumps(report.to_dict()))
    assert data["tool_errors"] == 2
    assert data["models"][0]["usage"]["cache_read_tokens"] == 1000

    out = io.StringIO()
    print_report(Console(file=out, width=120), report)
    text = out.getvalue()
    for title in ("Tokens and cost", "Calls and latency", "Tools", "Models", "Runs"):
        assert title in text
    assert "not recorded" not in text


async def test_a_report_without_stats_comes_from_the_history(tmp_path: Path) -> None:
    model = ScriptedModel(first_run())
    agent = make_agent(model, tmp_path, tools=[WriteTool, ReadTool])
    result = await agent.collect("write and read")
    assert not stats_path(result.session.workspace_dir).exists()

    report = build_report(result.session)
    assert not report.timings_recorded
    tools = {t.name: (t.calls, t.errors, t.latency) for t in report.tools}
    assert tools == {"Read": (2, 1, None), "Write": (1, 0, None)}
    assert report.models == []
    (run,) = report.runs
    assert run.prompt == "write and read"
    assert (run.usage.model_calls, run.usage.tool_calls, run.usage.tool_errors) == (3, 3, 1)
    assert run.stop_reason is None
    assert run.duration_ms is None
    out = io.StringIO()
    print_report(Console(file=out, width=160), report)
    assert "LOOPWRIGHT_STATS=1" in out.getvalue()


async def test_failed_model_calls_and_sub_agents_are_counted(tmp_path: Path) -> None:
    store = MemoryStore()
    model = ScriptedModel(
        [
            call("Delegate", agent="reader", task="read b.txt"),
            call("Read", file_path="b.txt"),  # the sub-agent
            "b.txt does not exist.",
            ScriptedTurn(error=ModelError("overloaded")),  # the parent's next call fails
        ]
    )
    delegate = Delegate([SubAgent("reader", "Reads.", tools=["Read"], workspace="child")])
    agent = make_agent(
        model, tmp_path, tools=[ReadTool, delegate], instruments=[StatsRecorder()], store=store
    )
    result = await agent.collect("delegate the reading")
    assert result.stop_reason == "error"

    report = build_report(result.session, store=store)
    (child_session,) = report.sub_sessions
    assert child_session.startswith(f"{result.session.id}.reader-")
    paths = sorted((r.path, r.stop_reason) for r in report.runs)
    assert paths == [("agent", "error"), ("agent/reader", "end_turn")]
    tools = {t.name: (t.calls, t.errors) for t in report.tools}
    assert tools == {"Delegate": (1, 0), "Read": (1, 1)}
    (scripted,) = report.models
    assert (scripted.calls, scripted.errors) == (4, 1)

    # the sub-agent's own session finds its records in the top-level run's workspace
    child = store.load(child_session)
    assert child is not None
    assert Path(child.workspace_dir) != Path(result.session.workspace_dir)
    child_report = build_report(child, store=store)
    assert child_report.timings_recorded
    assert [r.path for r in child_report.runs] == ["agent/reader"]
    assert {t.name: t.calls for t in child_report.tools} == {"Read": 1}


async def test_a_torn_stats_line_is_skipped(tmp_path: Path) -> None:
    agent = make_agent(ScriptedModel(["hi"]), tmp_path, instruments=[StatsRecorder()])
    result = await agent.collect("hello")
    path = stats_path(result.session.workspace_dir)
    with path.open("a", encoding="utf-8") as handle:
        handle.write('{"kind": "model", "session": "x", "dur')  # a crash mid-write
    report = build_report(result.session)
    assert report.timings_recorded
    assert [r.stop_reason for r in report.runs] == ["end_turn"]
