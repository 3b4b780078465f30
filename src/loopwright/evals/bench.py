"""Running a task suite: each task in its own session, checked, retried, recorded as it goes.

:func:`run_suite` runs every task of a :class:`~loopwright.evals.suite.Suite` ``epochs``
times. Each attempt gets a fresh agent from ``agent_factory`` (the CLI's standard agent by
default: :class:`StandardAgentFactory`), a new session with its own workspace (and, for the
shell and Python tools, its own sandbox), the task's fixture files and limits; then the
task's checks run against the answer and the workspace. A task passes when the run ended on
its own (``end_turn``) and every check passed.

Infrastructure failures are retried (``retries`` times, with a growing pause), not counted
as task failures: a model error marked retryable (rate limit, overload, lost connection), a
run that did not stop within its time limit plus a grace period (something hung), a session
that could not be created, a judge model that failed. What is left after the retries is an
``error`` result, which a resumed suite runs again.

Results go to ``output`` (JSON) after every task, written whole and renamed into place, so an
interrupted suite loses only the tasks that were running; ``resume=True`` keeps the passed and
failed results already in the file and runs the rest. ``executor`` decides where tasks run
(:class:`~loopwright.evals.executor.LocalExecutor` by default; see that module for others).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import sqlite3
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from loopwright.evals.checkers import CheckContext, CheckResult, InfraError, run_check
from loopwright.evals.executor import Executor, LocalExecutor
from loopwright.evals.suite import Limits, Suite, SuiteError, Task, load_suite, write_fixtures
from loopwright.events import warehouse_cost
from loopwright.models.base import Model, ModelError
from loopwright.summaries import error_line

if TYPE_CHECKING:
    from loopwright.agent import Agent, RunResult, ToolSpec
    from loopwright.events import Usage
    from loopwright.sessions.store import SessionStore

log = logging.getLogger("loopwright.evals")

RESULT_VERSION = 1
#: Seconds a run may go past its own time limit before it counts as hung (infrastructure).
HANG_GRACE_S = 30.0
SCRIPTED_SPECS = ("scripted", "scripted:demo", "demo")

Status: TypeAlias = Literal["passed", "failed", "error"]


@dataclass(frozen=True, slots=True)
class TaskJob:
    """One task to run once (an epoch), with the settings it resolved from its suite."""

    task: Task
    epoch: int
    suite_name: str
    suite_dir: Path
    limits: Limits
    tools: tuple[str, ...]
    system_prompt: str | None


AgentFactory: TypeAlias = "Callable[[TaskJob], Agent]"
"""Makes each attempt's agent. A factory may also have a ``check_extra`` mapping, handed to
every check as :attr:`CheckContext.extra <loopwright.evals.checkers.CheckContext.extra>`
(the healthcare agent's factory names its database there, for the ``golden`` check)."""


class TaskResult(BaseModel):
    """One attempt-checked run of one task in one epoch."""

    model_config = ConfigDict(extra="forbid")

    task_id: str
    epoch: int
    status: Status
    attempts: int = 1
    answer: str = ""
    stop_reason: str = ""
    checks: list[CheckResult] = Field(default_factory=list)
    error: str | None = None
    #: what went wrong in attempts that were retried
    infra_errors: list[str] = Field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    total_tokens: int = 0
    cost_usd: float = 0.0
    judge_tokens: int = 0
    judge_cost_usd: float = 0.0
    #: what a warehouse billed for the run's queries (BigQuery; 0 on DuckDB and PostgreSQL),
    #: and its estimated cost at the configured price per TiB: ``None`` when that setting is
    #: unusable (see ``warehouse_price_error``)
    bytes_billed: int = 0
    warehouse_cost_usd: float | None = 0.0
    warehouse_price_error: str | None = None
    model_calls: int = 0
    tool_calls: int = 0
    tool_errors: int = 0
    duration_s: float = 0.0
    session_id: str = ""
    workspace: str = ""
    started_at: float = 0.0
    finished_at: float = 0.0

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    @property
    def total_cost_usd(self) -> float:
        """What the run cost in all: the agent's model, the judge and the warehouse (the
        warehouse counted only when it could be priced)."""
        return self.cost_usd + self.judge_cost_usd + (self.warehouse_cost_usd or 0.0)


class TaskStats(BaseModel):
    """One task across its epochs (what the report's table and plots show)."""

    task_id: str
    runs: int
    passed: int
    errors: int
    pass_rate: float
    mean_tokens: float
    mean_cost_usd: float
    mean_duration_s: float
    failing_checks: list[str]


class Summary(BaseModel):
    """The whole suite at a glance."""

    tasks: int
    runs: int
    passed: int
    failed: int
    errors: int
    pass_rate: float
    total_tokens: int
    cost_usd: float
    judge_cost_usd: float
    #: bytes the warehouse billed over all runs, and their estimated cost (of the runs whose
    #: price could be worked out; ``warehouse_unpriced`` counts the others)
    bytes_billed: int = 0
    warehouse_cost_usd: float = 0.0
    warehouse_unpriced: int = 0
    mean_duration_s: float
    median_duration_s: float
    retries: int

    @property
    def total_cost_usd(self) -> float:
        """The agents' models, the judges and the warehouse (where it could be priced)."""
        return self.cost_usd + self.judge_cost_usd + self.warehouse_cost_usd


class SuiteRun(BaseModel):
    """The result file: settings, one :class:`TaskResult` per task and epoch, a summary."""

    model_config = ConfigDict(extra="ignore")

    version: int = RESULT_VERSION
    suite: str
    suite_path: str = ""
    suite_sha256: str = ""
    description: str = ""
    model: str = ""
    #: who did the tasks, when not the standard agent: the factory's ``label``
    agent: str = ""
    epochs: int = 1
    parallel: int = 1
    retries: int = 0
    task_ids: list[str] = Field(default_factory=list)
    started_at: float = Field(default_factory=time.time)
    finished_at: float | None = None
    complete: bool = False
    results: list[TaskResult] = Field(default_factory=list)

    def summary(self) -> Summary:
        """Totals over all results."""
        results = self.results
        durations = [r.duration_s for r in results if r.status != "error"]
        passed = sum(r.status == "passed" for r in results)
        return Summary(
            tasks=len({r.task_id for r in results}),
            runs=len(results),
            passed=passed,
            failed=sum(r.status == "failed" for r in results),
            errors=sum(r.status == "error" for r in results),
            pass_rate=passed / len(results) if results else 0.0,
            total_tokens=sum(r.total_tokens for r in results),
            cost_usd=sum(r.cost_usd for r in results),
            judge_cost_usd=sum(r.judge_cost_usd for r in results),
            bytes_billed=sum(r.bytes_billed for r in results),
            warehouse_cost_usd=sum(r.warehouse_cost_usd or 0.0 for r in results),
            warehouse_unpriced=sum(r.warehouse_cost_usd is None for r in results),
            mean_duration_s=statistics.fmean(durations) if durations else 0.0,
            median_duration_s=statistics.median(durations) if durations else 0.0,
            retries=sum(r.attempts - 1 for r in results),
        )

    def per_task(self) -> list[TaskStats]:
        """Statistics per task, in the suite's task order."""
        order = {task_id: i for i, task_id in enumerate(self.task_ids)}
        grouped: dict[str, list[TaskResult]] = {}
        for result in self.results:
            grouped.setdefault(result.task_id, []).append(result)
        stats: list[TaskStats] = []
        for task_id in sorted(grouped, key=lambda t: (order.get(t, len(order)), t)):
            runs = grouped[task_id]
            failing = sorted(
                {c.name for r in runs for c in r.checks if not c.passed}
                | {f"stop: {r.stop_reason}" for r in runs if r.stop_reason not in ("", "end_turn")}
            )
            stats.append(
                TaskStats(
                    task_id=task_id,
                    runs=len(runs),
                    passed=sum(r.passed for r in runs),
                    errors=sum(r.status == "error" for r in runs),
                    pass_rate=sum(r.passed for r in runs) / len(runs),
                    mean_tokens=statistics.fmean(r.total_tokens for r in runs),
                    mean_cost_usd=statistics.fmean(r.total_cost_usd for r in runs),
                    mean_duration_s=statistics.fmean(r.duration_s for r in runs),
                    failing_checks=failing,
                )
            )
        return stats

    def to_json(self) -> str:
        """The file form: everything, plus the summary and per-task statistics."""
        data = self.model_dump(mode="json")
        data["summary"] = self.summary().model_dump(mode="json")
        data["per_task"] = [s.model_dump(mode="json") for s in self.per_task()]
        return json.dumps(data, indent=2, ensure_ascii=False)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the file whole, then rename it into place (never half-written)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{uuid.uuid4().hex[:6]}.tmp")
        partial.write_text(self.to_json(), encoding="utf-8")
        os.replace(partial, target)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> SuiteRun:
        """Read a result file (:class:`SuiteError` if it is not one)."""
        file = Path(path)
        try:
            return cls.model_validate_json(file.read_bytes())
        except (OSError, ValidationError, ValueError) as exc:
            raise SuiteError(
                f"{file} is not a loopwright eval result file ({error_line(exc)}); give "
                "another --output, or delete it to start over"
            ) from None


# --- the standard agent ------------------------------------------------------------------


def is_scripted(spec: str | None) -> bool:
    """Whether a model string names the scripted model (tasks then play their scripts)."""
    return spec is not None and spec.strip().lower() in SCRIPTED_SPECS


def tool_specs(names: Sequence[str]) -> list[ToolSpec]:
    """The built-in tools for these names (the shell tools and the Python tool come as
    their toolsets, bound per session, each session with its own sandbox)."""
    from loopwright.tools.files import EditTool, GlobTool, ReadTool, WriteTool
    from loopwright.tools.grep import GrepTool

    simple: dict[str, ToolSpec] = {
        "Read": ReadTool,
        "Write": WriteTool,
        "Edit": EditTool,
        "Glob": GlobTool,
        "Grep": GrepTool,
    }
    specs: list[ToolSpec] = [simple[n] for n in dict.fromkeys(names) if n in simple]
    if {"Bash", "BashOutput", "KillShell"} & set(names):
        from loopwright.tools.shell import ShellTools

        specs.append(ShellTools())
    if "Python" in names:
        from loopwright.tools.python import PythonTools

        specs.append(PythonTools())
    return specs


class FactoryStore:
    """An agent factory's session store: the one given, else the SQLite store in the data
    directory (so ``loopwright sessions show ID`` shows any task's run), opened on first use
    and closed by :meth:`close`. Pickled without the store it opened (a remote worker opens
    its own)."""

    def __init__(self, store: SessionStore | None) -> None:
        self.store = store
        self._owns_store = store is None

    def session_store(self) -> SessionStore:
        """The store, opened now if it is the default one."""
        if self.store is None:
            from loopwright.sessions.sqlite import SQLiteStore

            self.store = SQLiteStore.default()
        return self.store

    def close(self) -> None:
        """Close the session store this factory opened."""
        if self._owns_store and self.store is not None:
            self.store.close()
            self.store = None

    def __getstate__(self) -> dict[str, Any]:  # picklable for remote executors
        state = dict(self.__dict__)
        if state.get("_owns_store"):
            state["store"] = None
        return state


class StandardAgentFactory(FactoryStore):
    """The agent ``loopwright run`` uses (its system prompt and built-in tools), per task:
    the suite's tool list, the task's system prompt if it has one, and with the ``scripted``
    model the task's own script.

    ``model`` is a model string (``None``: the default choice). Sessions go to ``store``
    (default: the SQLite store in the data directory).
    """

    def __init__(
        self,
        model: str | None = None,
        *,
        store: SessionStore | None = None,
        workspace_root: str | None = None,
    ) -> None:
        super().__init__(store)
        self.model = model
        self.workspace_root = workspace_root

    @property
    def scripted(self) -> bool:
        return is_scripted(self.model)

    def __call__(self, job: TaskJob) -> Agent:
        from loopwright.agent import Agent
        from loopwright.prompts import WORKSPACE_AGENT

        model: Model | str | None = self.model
        if self.scripted:
            model = job.task.scripted_model() or self.model
        return Agent(
            model,
            system_prompt=job.system_prompt or WORKSPACE_AGENT,
            tools=tool_specs(job.tools),
            name="loopwright",
            store=self.session_store(),
            workspace_root=self.workspace_root,
        )


# --- one task ----------------------------------------------------------------------------


class _Infra(Exception):
    """An attempt failed for a reason outside the task (retried)."""


class TaskWorker:
    """Runs one job to a :class:`TaskResult`, retrying infrastructure failures. Never raises
    for a task's sake (only cancellation propagates); picklable when its factory is."""

    def __init__(
        self,
        agent_factory: AgentFactory,
        *,
        judge: Model | str | None = None,
        retries: int = 2,
        retry_delay: float = 1.0,
        hang_grace: float = HANG_GRACE_S,
    ) -> None:
        self.agent_factory = agent_factory
        self.judge = judge
        self.retries = retries
        self.retry_delay = retry_delay
        self.hang_grace = hang_grace

    async def __call__(self, job: TaskJob) -> TaskResult:
        problems: list[str] = []
        started = time.time()
        for attempt in range(1, self.retries + 2):
            try:
                result = await self._attempt(job)
            except _Infra as exc:
                problems.append(f"attempt {attempt}: {exc}")
                log.info("task %s epoch %d: %s", job.task.id, job.epoch, exc)
                if attempt <= self.retries:
                    await asyncio.sleep(self.retry_delay * 2 ** (attempt - 1))
                continue
            except Exception as exc:  # a bug in a factory or a tool setup: not retried
                return TaskResult(
                    task_id=job.task.id,
                    epoch=job.epoch,
                    status="error",
                    attempts=attempt,
                    error=f"{type(exc).__name__}: {exc}",
                    infra_errors=problems,
                    started_at=started,
                    finished_at=time.time(),
                )
            result.attempts = attempt
            result.infra_errors = problems
            return result
        return TaskResult(
            task_id=job.task.id,
            epoch=job.epoch,
            status="error",
            attempts=self.retries + 1,
            error=f"infrastructure failure after {self.retries + 1} attempt(s): "
            + (problems[-1] if problems else "unknown"),
            infra_errors=problems,
            started_at=started,
            finished_at=time.time(),
        )

    async def _attempt(self, job: TaskJob) -> TaskResult:
        task, limits = job.task, job.limits
        try:
            agent = self.agent_factory(job)
        except ModelError as exc:
            if exc.retryable:
                raise _Infra(str(exc)) from exc
            raise
        try:
            _apply_limits(agent, limits)
            try:
                session = agent.new_session(
                    _session_id(job), suite=job.suite_name, task=task.id, epoch=job.epoch
                )
                write_fixtures(task, session.workspace_dir, job.suite_dir)
            except (OSError, sqlite3.Error) as exc:
                raise _Infra(f"could not set up the session: {exc}") from exc
            started_wall = time.time()
            started = time.perf_counter()
            hang_limit = limits.timeout + self.hang_grace if limits.timeout is not None else None
            try:
                run = await asyncio.wait_for(agent.collect(task.prompt, session), hang_limit)
            except TimeoutError:
                raise _Infra(
                    f"the run did not stop within {hang_limit:g}s (its {limits.timeout:g}s "
                    "limit plus a grace period); something hung"
                ) from None
            except ModelError as exc:
                if exc.retryable:
                    raise _Infra(str(exc)) from exc
                raise
            duration = time.perf_counter() - started
            failure = _retryable_error(run)
            if failure is not None:
                raise _Infra(f"model error: {failure}")
            context = CheckContext(
                prompt=task.prompt,
                answer=run.text,
                workspace=session.workspace_dir,
                result=run,
                suite_dir=job.suite_dir,
                judge=self.judge if self.judge is not None else agent.model,
                scripted=self.judge is None and _is_scripted_model(agent.model),
                extra=dict(getattr(self.agent_factory, "check_extra", None) or {}),
            )
            checks: list[CheckResult] = []
            for check in task.checks:
                try:
                    checks.append(await run_check(check, context))
                except InfraError as exc:
                    raise _Infra(str(exc)) from exc
            usage = run.usage
            passed = run.stop_reason == "end_turn" and all(c.passed for c in checks)
            return TaskResult(
                task_id=task.id,
                epoch=job.epoch,
                status="passed" if passed else "failed",
                answer=run.text,
                stop_reason=run.stop_reason,
                checks=checks,
                error=_run_error(run),
                input_tokens=usage.input_tokens,
                output_tokens=usage.output_tokens,
                cache_read_tokens=usage.cache_read_tokens,
                cache_write_tokens=usage.cache_write_tokens,
                total_tokens=usage.total_tokens,
                cost_usd=usage.cost_usd,
                judge_tokens=sum(c.tokens for c in checks),
                judge_cost_usd=sum(c.cost_usd for c in checks),
                **_warehouse_fields(usage),
                model_calls=usage.model_calls,
                tool_calls=usage.tool_calls,
                tool_errors=usage.tool_errors,
                duration_s=round(duration, 4),
                session_id=session.id,
                workspace=str(session.workspace_dir),
                started_at=started_wall,
                finished_at=time.time(),
            )
        finally:
            try:
                await agent.aclose()
            except Exception:
                log.exception("closing the agent of task %s failed", task.id)


def _warehouse_fields(usage: Usage) -> dict[str, Any]:
    """A run's warehouse bill for its :class:`TaskResult`: bytes billed and their estimated
    cost (``None``, with the reason, when the price setting is unusable)."""
    billed = usage.warehouse.bytes_billed if usage.warehouse is not None else 0
    if not billed:
        return {}
    cost = warehouse_cost(billed)
    return {
        "bytes_billed": billed,
        "warehouse_cost_usd": cost["cost_usd"],
        "warehouse_price_error": cost.get("price_error"),
    }


def _apply_limits(agent: Agent, limits: Limits) -> None:
    agent.max_turns = limits.max_turns
    agent.timeout = limits.timeout
    agent.max_cost_usd = limits.max_cost_usd
    agent.max_tokens_budget = limits.max_tokens_budget


def _session_id(job: TaskJob) -> str:
    suite = re.sub(r"[^A-Za-z0-9_.-]+", "-", job.suite_name).strip("-.") or "suite"
    return f"eval-{suite[:40]}-{job.task.id[:60]}-e{job.epoch}-{uuid.uuid4().hex[:8]}"


def _retryable_error(run: RunResult) -> str | None:
    if run.stop_reason != "error":
        return None
    for event in reversed(run.events):
        if event.type == "error" and not event.get("retrying"):
            return str(event["message"]) if event.get("retryable") else None
    return None


def _run_error(run: RunResult) -> str | None:
    if run.stop_reason == "end_turn":
        return None
    errors = [e for e in run.events if e.type == "error" and not e.get("retrying")]
    if errors:
        return str(errors[-1]["message"])
    done = run.events[-1] if run.events else None
    if done is not None and done.type == "done" and done.get("detail"):
        return f"{run.stop_reason}: {done['detail']}"
    return f"the run stopped: {run.stop_reason}"


def _is_scripted_model(model: Model) -> bool:
    from loopwright.evals.base import unwrap_model
    from loopwright.models.scripted import ScriptedModel

    return isinstance(unwrap_model(model), ScriptedModel)


# --- the suite ---------------------------------------------------------------------------


def plan_jobs(suite: Suite, epochs: int, done: set[tuple[str, int]] | None = None) -> list[TaskJob]:
    """The jobs still to run: every task in every epoch (epoch by epoch), less ``done``."""
    done = done or set()
    directory = suite.directory
    return [
        TaskJob(
            task=task,
            epoch=epoch,
            suite_name=suite.name,
            suite_dir=directory,
            limits=suite.limits_for(task),
            tools=tuple(suite.tools_for(task)),
            system_prompt=task.system_prompt or suite.system_prompt,
        )
        for epoch in range(1, epochs + 1)
        for task in suite.tasks
        if (task.id, epoch) not in done
    ]


async def run_suite(
    suite: Suite | str | os.PathLike[str],
    agent_factory: AgentFactory | None = None,
    *,
    model: str | None = None,
    judge: Model | str | None = None,
    epochs: int = 1,
    parallel: int = 4,
    retries: int = 2,
    retry_delay: float = 1.0,
    output: str | os.PathLike[str] | None = None,
    resume: bool = False,
    executor: Executor | None = None,
    tasks: Sequence[str] | None = None,
    on_result: Callable[[TaskResult], None] | None = None,
) -> SuiteRun:
    """Run a suite and return its results (also written to ``output`` as they come).

    ``agent_factory(job)`` returns a new agent for each attempt (closed after it; the
    task's limits are set on it); default :class:`StandardAgentFactory(model)`. ``model`` is
    also the label in the results. ``judge`` is the model of LLM-judge checks (default: the
    suite's ``judge``, else ``EVALS_MODEL``, else each task's own model). ``tasks`` runs only
    the tasks with these ids. ``on_result`` is called with each result as it is recorded.
    """
    if epochs < 1:
        raise ValueError(f"epochs must be at least 1, got {epochs}")
    if retries < 0:
        raise ValueError(f"retries must not be negative, got {retries}")
    loaded = suite if isinstance(suite, Suite) else load_suite(suite)
    if tasks:
        loaded = loaded.select(tasks)
    factory = agent_factory if agent_factory is not None else StandardAgentFactory(model)
    label = model or getattr(factory, "model", None) or "custom agent"
    agent = str(getattr(factory, "label", "") or "")
    record = _start_record(loaded, output, resume, label, agent, epochs, parallel, retries)
    done = {(r.task_id, r.epoch) for r in record.results}
    jobs = plan_jobs(loaded, epochs, done)
    judge_model = judge or loaded.judge or os.environ.get("EVALS_MODEL", "").strip() or None
    if judge_model is None and model is not None and not is_scripted(model):
        judge_model = model
    worker = TaskWorker(factory, judge=judge_model, retries=retries, retry_delay=retry_delay)
    runner = executor if executor is not None else LocalExecutor(parallel)
    try:
        async for result in runner.map(worker, jobs):
            record.results.append(result)
            if output is not None:
                record.save(output)
            if on_result is not None:
                on_result(result)
        record.complete = True
        record.finished_at = time.time()
        if output is not None:
            record.save(output)
    finally:
        if agent_factory is None and isinstance(factory, StandardAgentFactory):
            factory.close()
    return record


def _start_record(
    suite: Suite,
    output: str | os.PathLike[str] | None,
    resume: bool,
    model: str,
    agent: str,
    epochs: int,
    parallel: int,
    retries: int,
) -> SuiteRun:
    fresh = SuiteRun(
        suite=suite.name,
        suite_path=str(suite.path or ""),
        suite_sha256=suite.sha256,
        description=suite.description,
        model=model,
        agent=agent,
        epochs=epochs,
        parallel=parallel,
        retries=retries,
        task_ids=[t.id for t in suite.tasks],
    )
    if not resume or output is None or not Path(output).exists():
        return fresh
    previous = SuiteRun.load(output)
    if previous.suite != suite.name or (
        previous.suite_sha256 and suite.sha256 and previous.suite_sha256 != suite.sha256
    ):
        raise SuiteError(
            f"{output} holds results of another version of suite {previous.suite!r} (the "
            "suite file changed); run without --resume, or give a new --output, to start over"
        )
    # keep every finished result (also of tasks not selected this time); errors run again
    kept = [r for r in previous.results if r.status != "error"]
    if kept and previous.model and previous.model != model:
        # the rest would run on another model, and the file would credit its label with all
        raise SuiteError(
            f"{output} holds results of model {previous.model!r}, not {model!r}; resume with "
            f"--model {previous.model}, or give a new --output to start over"
        )
    if kept and previous.agent != agent:
        # e.g. the healthcare agent on another database: its answers are graded differently
        raise SuiteError(
            f"{output} holds results of {previous.agent or 'the standard agent'}, not "
            f"{agent or 'the standard agent'}; resume with the same agent and database, or "
            "give a new --output to start over"
        )
    fresh.results = kept
    fresh.task_ids = list(dict.fromkeys([*previous.task_ids, *fresh.task_ids]))
    fresh.started_at = previous.started_at
    return fresh


def default_output(suite_path: str | os.PathLike[str]) -> Path:
    """Where results go when no path is given: ``<suite stem>.results.json`` here."""
    return Path(f"{Path(suite_path).stem}.results.json")


__all__ = [
    "HANG_GRACE_S",
    "AgentFactory",
    "FactoryStore",
    "StandardAgentFactory",
    "SuiteRun",
    "Summary",
    "TaskJob",
    "TaskResult",
    "TaskStats",
    "TaskWorker",
    "default_output",
    "is_scripted",
    "plan_jobs",
    "run_suite",
    "tool_specs",
]
