"""Running suites from Python: sessions per task, epochs, retries, resume, executors."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from loopwright import Agent, MemoryStore, ScriptedModel, call, tool
from loopwright.evals import LocalExecutor, StandardAgentFactory, SuiteRun, run_suite
from loopwright.evals.bench import TaskJob, TaskResult, TaskWorker, plan_jobs
from loopwright.evals.executor import Worker
from loopwright.evals.suite import Limits, Suite, SuiteError, Task, load_suite
from loopwright.models.base import ModelError
from loopwright.models.scripted import ScriptedTurn

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "evals" / "basic.yaml"


def small_suite(count: int = 4) -> Suite:
    return Suite(
        name="small",
        tasks=[
            Task.model_validate(
                {
                    "id": f"t{i}",
                    "prompt": f"Say {i}",
                    "script": [str(i)],
                    "checks": [{"type": "exact", "expected": str(i)}],
                }
            )
            for i in range(count)
        ],
    )


async def test_the_example_suite_passes_with_its_scripts(tmp_path: Path) -> None:
    factory = StandardAgentFactory("scripted", store=MemoryStore(), workspace_root=str(tmp_path))
    output = tmp_path / "results.json"

    run = await run_suite(EXAMPLE, factory, model="scripted", parallel=4, output=output)

    summary = run.summary()
    failures = [
        (r.task_id, r.error, [c.detail for c in r.checks]) for r in run.results if not r.passed
    ]
    assert failures == []
    assert summary.runs == summary.passed == len(load_suite(EXAMPLE).tasks)
    assert run.complete
    saved = json.loads(output.read_text())
    assert saved["complete"] is True
    assert saved["summary"]["pass_rate"] == 1.0
    assert len(saved["per_task"]) == summary.tasks
    # each task ran in its own session and workspace, with its fixtures and real tool effects
    workspaces = {r.workspace for r in run.results}
    assert len(workspaces) == len(run.results)
    by_id = {r.task_id: r for r in run.results}
    assert (Path(by_id["csv-total"].workspace) / "total.txt").read_text() == "15"
    assert not (Path(by_id["csv-total"].workspace) / "score.txt").exists()
    assert by_id["word-count"].answer == "words.txt has 9 words."
    assert by_id["stay-in-workspace"].tool_errors == 1


async def test_epochs_run_each_task_again_in_a_fresh_session(tmp_path: Path) -> None:
    factory = StandardAgentFactory("scripted", store=MemoryStore(), workspace_root=str(tmp_path))

    run = await run_suite(small_suite(2), factory, epochs=3, parallel=2)

    assert sorted((r.task_id, r.epoch) for r in run.results) == [
        (t, e) for t in ("t0", "t1") for e in (1, 2, 3)
    ]
    assert len({r.session_id for r in run.results}) == 6
    stats = run.per_task()
    assert [(s.task_id, s.runs, s.pass_rate) for s in stats] == [("t0", 3, 1.0), ("t1", 3, 1.0)]


class FlakyFactory:
    """Agents whose model fails with a retryable error the first ``failures`` times."""

    def __init__(self, failures: int, *, retryable: bool = True) -> None:
        self.failures = failures
        self.retryable = retryable
        self.calls = 0

    def __call__(self, job: TaskJob) -> Agent:
        self.calls += 1
        if self.calls <= self.failures:
            turn = ScriptedTurn(error=ModelError("503 overloaded", retryable=self.retryable))
            model = ScriptedModel([turn])
        else:
            model = job.task.scripted_model() or ScriptedModel(["?"])
        return Agent(model, store=MemoryStore())


async def test_infrastructure_failures_are_retried(tmp_path: Path) -> None:
    factory = FlakyFactory(failures=2)

    run = await run_suite(small_suite(1), factory, retries=2, retry_delay=0)

    (result,) = run.results
    assert result.status == "passed"
    assert result.attempts == 3
    assert factory.calls == 3
    assert len(result.infra_errors) == 2
    assert "503 overloaded" in result.infra_errors[0]
    assert run.summary().retries == 2


async def test_infrastructure_failures_beyond_the_retries_are_errors_not_failures() -> None:
    factory = FlakyFactory(failures=10)

    run = await run_suite(small_suite(1), factory, retries=1, retry_delay=0)

    (result,) = run.results
    assert result.status == "error"
    assert result.attempts == 2
    assert result.error is not None
    assert "infrastructure failure after 2 attempt(s)" in result.error
    assert run.summary().errors == 1


async def test_a_non_retryable_model_error_fails_the_task_without_retrying() -> None:
    factory = FlakyFactory(failures=1, retryable=False)

    run = await run_suite(small_suite(1), factory, retries=3, retry_delay=0)

    (result,) = run.results
    assert result.status == "failed"
    assert result.attempts == 1
    assert result.stop_reason == "error"
    assert result.error == "503 overloaded"


@tool
async def wait_forever(seconds: float) -> str:
    """Wait.

    Args:
        seconds: How long.
    """
    await asyncio.sleep(seconds)
    return "waited"


async def test_a_task_hitting_its_own_time_limit_fails_and_is_not_retried() -> None:
    suite = Suite(
        name="slow",
        tasks=[
            Task.model_validate(
                {"id": "slow", "prompt": "wait", "limits": {"timeout": 0.05, "max_turns": 3}}
            )
        ],
    )
    calls = 0

    def factory(job: TaskJob) -> Agent:
        nonlocal calls
        calls += 1
        model = ScriptedModel([call("wait_forever", seconds=60), "done"])
        return Agent(model, tools=[wait_forever], store=MemoryStore())

    run = await run_suite(suite, factory, retries=2, retry_delay=0)

    (result,) = run.results
    assert result.status == "failed"
    assert result.stop_reason == "timeout"
    assert calls == 1


async def test_an_interrupted_suite_resumes_where_it_stopped(tmp_path: Path) -> None:
    output = tmp_path / "results.json"
    suite = small_suite(6)
    ran: list[str] = []

    def factory(job: TaskJob) -> Agent:
        ran.append(job.task.id)
        model = job.task.scripted_model()
        assert model is not None
        return Agent(model, store=MemoryStore())

    three_done = asyncio.Event()

    def on_result(result: TaskResult) -> None:
        if sum(1 for _ in json.loads(output.read_text())["results"]) == 3:
            three_done.set()

    first = asyncio.create_task(
        run_suite(suite, factory, parallel=1, output=output, on_result=on_result)
    )
    await three_done.wait()
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first

    partial = SuiteRun.load(output)
    assert not partial.complete
    done_ids = {r.task_id for r in partial.results}
    assert 3 <= len(done_ids) < len(suite.tasks)
    ran.clear()

    resumed = await run_suite(suite, factory, parallel=2, output=output, resume=True)

    assert set(ran) == {t.id for t in suite.tasks} - done_ids  # only what was missing
    assert resumed.complete
    assert sorted(r.task_id for r in resumed.results) == [f"t{i}" for i in range(6)]
    assert SuiteRun.load(output).summary().passed == 6


async def test_resume_runs_errored_tasks_again_and_refuses_a_changed_suite(tmp_path: Path) -> None:
    output = tmp_path / "results.json"
    suite = small_suite(2)
    await run_suite(suite, FlakyFactory(failures=100), retries=0, output=output)
    assert SuiteRun.load(output).summary().errors == 2

    resumed = await run_suite(suite, FlakyFactory(failures=0), output=output, resume=True)

    assert resumed.summary().passed == 2
    assert resumed.summary().errors == 0

    changed_file = tmp_path / "suite.yaml"
    changed_file.write_text("name: small\ntasks:\n  - {id: t0, prompt: other}\n")
    previous = SuiteRun.load(output).model_copy(update={"suite_sha256": "0" * 64})
    previous.save(output)
    with pytest.raises(SuiteError, match="another version of suite 'small'"):
        await run_suite(changed_file, FlakyFactory(0), output=output, resume=True)


async def test_the_executor_is_pluggable() -> None:
    class Sequential:
        def __init__(self) -> None:
            self.seen: list[str] = []

        async def map(self, worker: Worker, jobs: Sequence[TaskJob]) -> AsyncIterator[TaskResult]:
            for job in jobs:
                self.seen.append(f"{job.task.id}@{job.epoch}")
                yield await worker(job)

    executor = Sequential()
    factory = FlakyFactory(failures=0)

    run = await run_suite(small_suite(2), factory, epochs=2, executor=executor)

    assert executor.seen == ["t0@1", "t1@1", "t0@2", "t1@2"]
    assert run.summary().passed == 4


def test_jobs_carry_resolved_settings_and_skip_what_is_done() -> None:
    suite = small_suite(2).model_copy(update={"tools": ["Read"], "system_prompt": "Be brief."})

    jobs = plan_jobs(suite, 2, {("t0", 1)})

    assert [(j.task.id, j.epoch) for j in jobs] == [("t1", 1), ("t0", 2), ("t1", 2)]
    assert jobs[0].tools == ("Read",)
    assert jobs[0].system_prompt == "Be brief."
    assert jobs[0].limits.max_turns == 20
    assert repr(LocalExecutor(3)) == "LocalExecutor(parallel=3)"


def test_the_standard_agent_has_the_cli_prompt_the_suite_tools_and_the_task_limits(
    tmp_path: Path,
) -> None:
    from loopwright.prompts import WORKSPACE_AGENT

    suite = load_suite(EXAMPLE)
    factory = StandardAgentFactory("scripted", store=MemoryStore(), workspace_root=str(tmp_path))
    job = next(j for j in plan_jobs(suite, 1) if j.task.id == "word-count")

    agent: Any = factory(job)

    assert agent.system_prompt == WORKSPACE_AGENT
    assert agent.model.name == "scripted:word-count"
    session = agent.new_session()
    assert sorted(agent.registry_for(session).tools) == ["Bash", "BashOutput", "KillShell"]


async def test_a_run_that_hangs_past_its_limit_is_an_infrastructure_failure() -> None:
    class HungAgent(Agent):
        async def collect(self, prompt: Any, session: Any = None) -> Any:
            await asyncio.Event().wait()  # never returns, whatever its own limits say

    agents: list[Agent] = []

    def factory(job: TaskJob) -> Agent:
        model = job.task.scripted_model()
        agent = (HungAgent if not agents else Agent)(model, store=MemoryStore())
        agents.append(agent)
        return agent

    suite = small_suite(1)
    (job,) = plan_jobs(suite.model_copy(update={"limits": Limits(timeout=0.01)}), 1)
    worker = TaskWorker(factory, retries=1, retry_delay=0, hang_grace=0.01)

    result = await worker(job)

    assert result.status == "passed"
    assert result.attempts == 2
    assert "did not stop within" in result.infra_errors[0]
    assert "something hung" in result.infra_errors[0]
