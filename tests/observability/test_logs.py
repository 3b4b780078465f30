"""Progress logs of real runs: readable lines (DEBUG=1) and JSON lines (LOOPWRIGHT_LOG=json)."""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from loopwright import ReadTool, ScriptedModel, WriteTool, call
from loopwright.instrument import default_instruments
from loopwright.models.base import Pricing
from loopwright.observability.logs import (
    ROOT_LOGGER,
    LogInstrument,
    LoopwrightHandler,
    instrument_from_env,
)
from loopwright.tools.delegate import Delegate, SubAgent

from .conftest import make_agent

ANSI = "\033["


def script() -> ScriptedModel:
    return ScriptedModel(
        [
            call("Write", file_path="notes.md", content="# Notes\nline two"),
            call("Read", file_path="missing.txt"),
            "All done.",
        ],
        pricing=Pricing(input_per_mtok=3, output_per_mtok=15),
    )


def handlers() -> list[logging.Handler]:
    return [h for h in logging.getLogger(ROOT_LOGGER).handlers if isinstance(h, LoopwrightHandler)]


def test_logs_are_off_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    assert instrument_from_env() is None
    assert not any(isinstance(i, LogInstrument) for i in default_instruments())
    monkeypatch.setenv("DEBUG", "0")
    assert instrument_from_env() is None
    assert handlers() == []


async def test_debug_gives_readable_session_tagged_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DEBUG", "1")
    agent = make_agent(script(), tmp_path, tools=[WriteTool, ReadTool], instruments=None)
    assert any(isinstance(i, LogInstrument) for i in agent.instruments.items)
    result = await agent.collect("write my notes")
    session = result.session.id

    err = capsys.readouterr().err
    lines = err.splitlines()
    assert ANSI not in err  # stderr is not a terminal here
    assert all(f"[{session}] agent " in line for line in lines), err
    text = "\n".join(lines)
    assert "▶ run started (model scripted)" in text
    assert '» prompt: "write my notes"' in text
    assert "· calling scripted: 1 messages" in text
    assert "◆ scripted " in text
    assert "→ tool_use" in text
    assert "$0.00" in text
    assert "→ Write notes.md" in text
    assert "✓ Write " in text
    assert "chars: Created notes.md" in text
    assert "✗ Read failed after" in text
    assert "missing.txt" in text
    assert "■ done end_turn · 3 model calls · 2 tool calls (1 failed)" in text
    # in order
    order = [text.index(m) for m in ("▶", "→ Write", "✓ Write", "✗ Read", "■ done")]
    assert order == sorted(order)


async def test_colour_when_asked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("FORCE_COLOR", "1")
    agent = make_agent(
        script(), tmp_path, tools=[WriteTool, ReadTool], instruments=[LogInstrument()]
    )
    await agent.collect("go")
    err = capsys.readouterr().err
    assert "\033[31m✗ Read failed" in err  # errors in red
    assert "\033[32m✓ Write" in err  # successes in green


async def test_json_lines_for_production(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOOPWRIGHT_LOG", "json")
    agent = make_agent(script(), tmp_path, tools=[WriteTool, ReadTool], instruments=None)
    result = await agent.collect("write my secret notes")

    err = capsys.readouterr().err
    records = [json.loads(line) for line in err.splitlines()]
    assert records, "no JSON lines"
    assert {r["session_id"] for r in records} == {result.session.id}
    assert all(r["agent"] == "agent" and r["ts"].endswith("Z") for r in records)
    events = [r["event"] for r in records]
    assert events == [
        "run_started",
        "model_call",
        "tool_call",
        "model_call",
        "tool_call",
        "model_call",
        "run_finished",
    ]
    model = records[1]
    assert model["model"] == "scripted"
    assert model["input_tokens"] > 0
    assert model["output_tokens"] > 0
    assert model["cost_usd"] > 0
    assert model["success"] is True
    assert model["level"] == "info"
    write, read = (r for r in records if r["event"] == "tool_call")
    assert write["tool_name"] == "Write"
    assert write["success"] is True
    assert write["duration_ms"] >= 0
    assert read["tool_name"] == "Read"
    assert read["success"] is False
    assert read["level"] == "warning"
    assert "missing.txt" in read["error"]
    done = records[-1]
    assert done["stop_reason"] == "end_turn"
    assert done["tool_errors"] == 1
    assert done["cost_usd"] == pytest.approx(result.usage.cost_usd)
    # contents stay out of production logs
    assert "secret notes" not in err
    assert "# Notes" not in err


async def test_one_handler_however_many_agents(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("LOOPWRIGHT_LOG", "json")
    first = make_agent(ScriptedModel(["one"]), tmp_path, instruments=None)
    second = make_agent(ScriptedModel(["two"]), tmp_path, instruments=None)
    assert len(handlers()) == 1
    await first.collect("a")
    await second.collect("b")
    records = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [r["event"] for r in records].count("run_finished") == 2  # not duplicated


async def test_sub_agent_lines_carry_its_path(tmp_path: Path) -> None:
    stream = io.StringIO()
    model = ScriptedModel(
        [call("Delegate", agent="helper", task="say hi"), "hi from the helper", "it said hi"]
    )
    delegate = Delegate([SubAgent("helper", "Says hi.", tools=[])])
    agent = make_agent(
        model, tmp_path, tools=[delegate], instruments=[LogInstrument("json", stream=stream)]
    )
    result = await agent.collect("delegate")
    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    child = [r for r in records if r["agent"] == "agent/helper"]
    assert [r["event"] for r in child] == ["run_started", "model_call", "run_finished"]
    assert child[0]["session_id"] != result.session.id
    assert child[0]["parent_run_id"] == records[0]["run_id"]


def test_an_unknown_log_format_is_named(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("LOOPWRIGHT_LOG", "yaml")
    with caplog.at_level(logging.WARNING, logger="loopwright.observability"):
        assert instrument_from_env() is None
    assert "LOOPWRIGHT_LOG=yaml is not a log format" in caplog.text
    with pytest.raises(ValueError, match="'text' or 'json'"):
        LogInstrument("yaml")  # type: ignore[arg-type]
