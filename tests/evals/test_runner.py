"""The EvalRunner: judges wired into the loop, in the background, never in the way.

The agent and the judge are scripted models; the judge can be held back on an
``asyncio.Event`` to show that the run does not wait for it.
"""

from __future__ import annotations

import asyncio
import json
import logging
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from loopwright import Agent, MemoryStore, call, tool
from loopwright.evals import EvalRunner
from loopwright.evals.runner import instrument_from_env
from loopwright.events import Done
from loopwright.instrument import default_instruments
from loopwright.models.base import ModelError, ModelRequest
from loopwright.models.scripted import ScriptedModel, ScriptedTurn

QUESTION = "How many claims are there per state?"
ROWS = "state,claims\nCA,1204\nNY,877"
ANSWER = "California has 1,204 claims and New York 877."


@tool(name="SQL")
def sql_tool(sql: str) -> str:
    """Run a read-only SQL query.

    Args:
        sql: The query.
    """
    return ROWS


def verdict(score: int, passed: bool = True, issues: list[str] | None = None) -> str:
    return json.dumps(
        {"score": score, "passed": passed, "issues": issues or [], "reasoning": "checked"}
    )


def agent_model() -> ScriptedModel:
    return ScriptedModel(
        [call("SQL", sql="SELECT state, COUNT(*) AS claims FROM claims GROUP BY state"), ANSWER]
    )


def make_agent(tmp_path: Path, runner: EvalRunner) -> Agent:
    return Agent(
        agent_model(),
        tools=[sql_tool],
        store=MemoryStore(),
        workspace_root=str(tmp_path / "ws"),
        instruments=[runner],
    )


def eval_files(agent_workspace: Path) -> dict[str, dict[str, Any]]:
    files = sorted((agent_workspace / ".evals").glob("*.json"))
    return {path.name.rsplit("_", 1)[0]: json.loads(path.read_text()) for path in files}


async def test_sql_calls_and_final_answers_are_judged_and_saved(tmp_path: Path) -> None:
    judge = ScriptedModel(lambda request: verdict(90), name="scripted:judge")
    runner = EvalRunner(judge=judge)
    agent = make_agent(tmp_path, runner)

    result = await agent.collect(QUESTION)
    await agent.aclose()  # waits for the pending evaluations

    assert result.stop_reason == "end_turn"
    saved = eval_files(result.session.workspace_dir)
    assert set(saved) == {"sql", "answer_quality", "hallucination"}
    sql = saved["sql"]
    assert sql["eval_type"] == "sql"
    assert sql["session_id"] == result.session.id
    assert sql["data"]["sql"].startswith("SELECT state")
    assert sql["data"]["context"] == QUESTION
    assert sql["data"]["result"] == ROWS
    assert sql["result"]["score"] == 90
    assert sql["result"]["judge"] == "scripted:judge"
    assert saved["answer_quality"]["data"]["answer"] == ANSWER
    hallucination = saved["hallucination"]["data"]
    assert hallucination["question"] == QUESTION
    assert ROWS in hallucination["data"]  # the run's tool results are the source data
    assert {r.evaluator for r in runner.results} == {"sql", "answer_quality", "hallucination"}
    prompts = [r.messages[0].text for r in judge.requests]
    assert any("<query>\nSELECT state" in p for p in prompts)


async def test_a_slow_judge_does_not_delay_the_run(tmp_path: Path) -> None:
    release = asyncio.Event()

    async def slow_judge(request: ModelRequest) -> str:
        await release.wait()
        return verdict(75)

    runner = EvalRunner(judge=ScriptedModel(slow_judge))
    agent = make_agent(tmp_path, runner)

    events = [event async for event in agent.run(QUESTION)]

    # the run is over while every judge is still waiting
    assert isinstance(events[-1], Done)
    assert events[-1].stop_reason == "end_turn"
    assert runner.pending == 3
    assert runner.results == []
    release.set()
    results = await runner.wait()
    assert len(results) == 3
    assert runner.pending == 0
    await agent.aclose()


async def test_shutdown_waits_for_pending_judges(tmp_path: Path) -> None:
    release = asyncio.Event()

    async def slow_judge(request: ModelRequest) -> str:
        await release.wait()
        return verdict(70)

    runner = EvalRunner(judge=ScriptedModel(slow_judge), shutdown_timeout=60)
    agent = make_agent(tmp_path, runner)
    result = await agent.collect(QUESTION)

    closing = asyncio.create_task(agent.aclose())
    for _ in range(5):
        await asyncio.sleep(0)
    assert not closing.done()  # aclose is waiting for the three judges
    release.set()
    await closing

    assert runner.pending == 0
    assert len(eval_files(result.session.workspace_dir)) == 3


async def test_shutdown_cancels_judges_that_do_not_finish_in_time(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    never = asyncio.Event()

    async def stuck_judge(request: ModelRequest) -> str:
        await never.wait()
        return verdict(50)

    runner = EvalRunner(judge=ScriptedModel(stuck_judge), shutdown_timeout=0.01)
    agent = make_agent(tmp_path, runner)
    result = await agent.collect(QUESTION)
    tasks = set(runner._tasks)
    assert len(tasks) == 3

    with caplog.at_level(logging.WARNING, logger="loopwright.evals"):
        await agent.aclose()

    assert all(task.cancelled() for task in tasks)
    assert runner.pending == 0
    assert not (result.session.workspace_dir / ".evals").exists()
    assert "cancelling 3 evaluation(s)" in caplog.text


async def test_judge_failures_are_logged_and_never_reach_the_run(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    failing = ScriptedModel(
        lambda request: ScriptedTurn(error=ModelError("judge is down", retryable=True))
    )
    runner = EvalRunner(judge=failing)
    agent = make_agent(tmp_path, runner)

    with caplog.at_level(logging.WARNING, logger="loopwright.evals"):
        result = await agent.collect(QUESTION)
        await agent.aclose()

    assert result.stop_reason == "end_turn"
    assert result.text == ANSWER
    assert len(runner.failures) == 3
    assert "evaluation sql failed: ModelError: judge is down" in caplog.text
    assert not (result.session.workspace_dir / ".evals").exists()


async def test_a_judge_that_never_gives_a_verdict_is_saved_as_an_error(tmp_path: Path) -> None:
    runner = EvalRunner(judge=ScriptedModel(lambda request: "I cannot grade this."))
    agent = make_agent(tmp_path, runner)

    result = await agent.collect(QUESTION)
    await agent.aclose()

    saved = eval_files(result.session.workspace_dir)
    assert len(saved) == 3
    for record in saved.values():
        assert record["result"]["passed"] is False
        assert "not a valid verdict twice" in record["result"]["error"]


async def test_without_a_judge_the_agents_own_model_judges(tmp_path: Path) -> None:
    def model(request: ModelRequest) -> Any:
        if request.metadata.get("purpose") == "evaluation":
            return verdict(61, passed=False, issues=["vague"])
        if not any(m.tool_results for m in request.messages):
            return call("SQL", sql="SELECT 1")
        return ANSWER

    runner = EvalRunner(answer_evaluators=("answer_quality",), sql_evaluators=())
    agent = Agent(
        ScriptedModel(model, name="scripted:self"),
        tools=[sql_tool],
        store=MemoryStore(),
        workspace_root=str(tmp_path / "ws"),
        instruments=[runner],
    )

    await agent.collect(QUESTION)
    await agent.aclose()

    assert [(r.evaluator, r.score, r.issues) for r in runner.results] == [
        ("answer_quality", 61, ["vague"])
    ]
    assert runner.results[0].judge == "scripted:self"


async def test_runs_stopped_by_a_limit_are_not_judged_as_answers(tmp_path: Path) -> None:
    runner = EvalRunner(judge=ScriptedModel(lambda request: verdict(80)))
    agent = Agent(
        ScriptedModel(lambda request: call("SQL", sql="SELECT 1")),
        tools=[sql_tool],
        store=MemoryStore(),
        workspace_root=str(tmp_path / "ws"),
        instruments=[runner],
        max_turns=2,
    )

    result = await agent.collect(QUESTION)
    await agent.aclose()

    assert result.stop_reason == "max_turns"
    assert [r.evaluator for r in runner.results] == ["sql", "sql"]


def test_evals_enabled_switches_the_runner_on_with_evals_model(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("EVALS_ENABLED", raising=False)
    assert instrument_from_env() is None
    assert not any(isinstance(i, EvalRunner) for i in default_instruments())

    monkeypatch.setenv("EVALS_ENABLED", "1")
    monkeypatch.setenv("EVALS_MODEL", "openai:gpt-4.1")
    runners = [i for i in default_instruments() if isinstance(i, EvalRunner)]

    assert len(runners) == 1
    assert runners[0].judge == "openai:gpt-4.1"
    agent = Agent(ScriptedModel(["hi"]), store=MemoryStore())
    assert any(isinstance(i, EvalRunner) for i in agent.instruments.items)


async def test_results_are_attached_to_the_open_span_of_the_run(tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    runner = EvalRunner(
        judge=ScriptedModel(lambda request: verdict(83)),
        answer_evaluators=("answer_quality",),
        sql_evaluators=(),
        tracer_provider=provider,
    )
    agent = make_agent(tmp_path, runner)

    with tracer.start_as_current_span("invoke_agent"):
        await agent.collect(QUESTION)
        await runner.wait()  # the span is still open when the verdict arrives
    await agent.aclose()

    (span,) = exporter.get_finished_spans()
    (event,) = [e for e in span.events if e.name == "gen_ai.evaluation.result"]
    assert event.attributes is not None
    assert event.attributes["gen_ai.evaluation.name"] == "answer_quality"
    assert event.attributes["gen_ai.evaluation.score.value"] == 83.0
    assert event.attributes["gen_ai.evaluation.score.label"] == "pass"


async def test_results_after_the_span_ended_become_a_child_span(tmp_path: Path) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    release = asyncio.Event()

    async def judge(request: ModelRequest) -> str:
        await release.wait()
        return verdict(40, passed=False)

    runner = EvalRunner(
        judge=ScriptedModel(judge),
        answer_evaluators=("hallucination",),
        sql_evaluators=(),
        tracer_provider=provider,
    )
    agent = make_agent(tmp_path, runner)
    with tracer.start_as_current_span("invoke_agent") as run_span:
        await agent.collect(QUESTION)
    release.set()
    await agent.aclose()

    spans = {span.name: span for span in exporter.get_finished_spans()}
    child = spans["gen_ai.evaluation.result"]
    assert child.parent is not None
    assert child.parent.span_id == run_span.get_span_context().span_id
    assert child.attributes is not None
    assert child.attributes["gen_ai.evaluation.name"] == "hallucination"
    assert child.attributes["gen_ai.evaluation.score.label"] == "fail"
