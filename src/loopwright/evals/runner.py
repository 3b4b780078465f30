"""The EvalRunner: LLM judges that score an agent's work in the background while it runs.

Switch it on with ``EVALS_ENABLED=1`` (the judge is ``EVALS_MODEL``, a model string, else the
agent's own model) or in code::

    agent = Agent(model, tools=[...], instruments=[EvalRunner(judge="openai:gpt-4.1")])

As an :class:`~loopwright.instrument.Instrument` it watches every run:

- after a call of the ``SQL`` tool whose input has ``sql``: the :class:`SQLEvaluator`, with
  the run's question as context and the rows it returned;
- after a final answer (a run that ends with ``end_turn``, top-level runs only): the
  answer-quality and hallucination evaluators, with the tool results of the run as the data
  the claims are checked against.

Evaluations are fire-and-forget: :meth:`EvalRunner.submit` starts a background task and
returns at once, at most ``max_concurrency`` judges run at a time, and nothing they do (a
slow judge, an exception, a bad reply) can delay or break the run — failures are logged
(``loopwright.evals`` logger). Each result is saved as ``.evals/<type>_<unique id>.json`` in
the session's workspace and attached to the trace when there is one: a
``gen_ai.evaluation.result`` event on the run's OpenTelemetry span while it is open, else a
short span of that name under it (found as the current span, or as a span an instrument keeps
in ``RunContext.data``). :meth:`aclose` (called by ``Agent.aclose``) lets pending evaluations
finish within ``shutdown_timeout`` seconds and cancels the rest cleanly.

Evaluations are tasks of the running event loop: code that drives the agent with
``asyncio.run`` (``run_sync``) should ``await agent.aclose()`` (or use ``async with agent``)
before the loop ends, or unfinished evaluations are cancelled with the loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopwright.evals.base import BaseEvaluator, EvalResult, format_value
from loopwright.evals.builtin import make_evaluator
from loopwright.instrument import Instrument
from loopwright.models.base import Model
from loopwright.settings import switch

if TYPE_CHECKING:
    from loopwright.events import Done
    from loopwright.messages import ToolUseBlock
    from loopwright.run_context import RunContext

log = logging.getLogger("loopwright.evals")

EVALS_DIR = ".evals"
#: The tool whose calls get the SQL evaluator, and the input key holding the query.
SQL_TOOL = "SQL"
#: Tool results kept per run as the hallucination judge's data (characters, newest kept).
MAX_RUN_DATA_CHARS = 60_000


class _RunNotes:
    """What the runner remembers about one run: where it started and the tool results."""

    __slots__ = ("chars", "first_message", "tool_names", "tool_results")

    def __init__(self, first_message: int) -> None:
        self.first_message = first_message
        self.tool_results: list[str] = []
        self.tool_names: list[str] = []
        self.chars = 0


class EvalRunner(Instrument):
    """Runs LLM judges on an agent's work in the background (see the module docs).

    ``judge``: the judging model or model string (default ``EVALS_MODEL``, else the agent's
    own model). ``evaluators`` replaces or adds evaluators by type name (the types the loop
    submits are ``sql``, ``answer_quality`` and ``hallucination``). ``max_concurrency`` bounds
    the judges running at once; ``max_pending`` the evaluations waiting (more are dropped
    with a warning, so a runaway agent cannot pile up work). ``save=False`` keeps results in
    memory only (:attr:`results`). ``on_result`` is called with each result.
    ``tracer_provider`` makes the evaluation spans (default: OpenTelemetry's global provider).
    """

    def __init__(
        self,
        judge: Model | str | None = None,
        *,
        evaluators: Mapping[str, BaseEvaluator] | None = None,
        max_concurrency: int = 4,
        max_pending: int = 256,
        shutdown_timeout: float | None = 30.0,
        save: bool = True,
        on_result: Callable[[EvalResult], None] | None = None,
        answer_evaluators: Sequence[str] = ("answer_quality", "hallucination"),
        sql_evaluators: Sequence[str] = ("sql",),
        tracer_provider: Any = None,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError(f"max_concurrency must be at least 1, got {max_concurrency}")
        self.judge: Model | str | None = judge or os.environ.get("EVALS_MODEL", "").strip() or None
        self.evaluators: dict[str, BaseEvaluator] = dict(evaluators or {})
        self.max_concurrency = max_concurrency
        self.max_pending = max_pending
        self.shutdown_timeout = shutdown_timeout
        self.save = save
        self.on_result = on_result
        self.answer_evaluators = tuple(answer_evaluators)
        self.sql_evaluators = tuple(sql_evaluators)
        #: the OpenTelemetry tracer provider of evaluation spans (default: the global one)
        self.tracer_provider = tracer_provider
        #: finished evaluations, in the order they finished
        self.results: list[EvalResult] = []
        #: evaluations that failed (the judge model erred, or the evaluator raised)
        self.failures: list[tuple[str, BaseException]] = []
        self._tasks: set[asyncio.Task[EvalResult | None]] = set()
        self._semaphores: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}
        self._judge_model: Model | None = judge if isinstance(judge, Model) else None
        self._owns_judge = False

    # --- the public side ------------------------------------------------------------------

    @property
    def pending(self) -> int:
        """Evaluations submitted and not finished yet."""
        return sum(1 for task in self._tasks if not task.done())

    def evaluator(self, eval_type: str) -> BaseEvaluator:
        """The evaluator used for ``eval_type`` (a built-in one unless replaced)."""
        found = self.evaluators.get(eval_type)
        if found is None:
            found = self.evaluators[eval_type] = make_evaluator(eval_type)
        return found

    def submit(
        self,
        eval_type: str,
        data: Mapping[str, Any],
        *,
        workspace_dir: str | os.PathLike[str] | None = None,
        judge: Model | str | None = None,
        meta: Mapping[str, Any] | None = None,
        trace_parent: Any = None,
    ) -> asyncio.Task[EvalResult | None] | None:
        """Start an evaluation in the background and return its task at once (``None`` when
        it could not be started: no running event loop, or too many pending).

        The result is saved in ``<workspace_dir>/.evals/`` when a directory is given; the
        task's value is the :class:`EvalResult` (``None`` if the evaluation failed).
        """
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            log.warning("evaluation %s not started: no running event loop", eval_type)
            return None
        if self.pending >= self.max_pending:
            log.warning(
                "evaluation %s dropped: %d evaluations are already pending (max_pending)",
                eval_type,
                self.pending,
            )
            return None
        task = loop.create_task(
            self._evaluate(
                eval_type,
                dict(data),
                Path(workspace_dir) if workspace_dir is not None else None,
                judge,
                dict(meta or {}),
                trace_parent,
            ),
            name=f"loopwright-eval-{eval_type}",
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def wait(self, timeout: float | None = None) -> list[EvalResult]:  # noqa: ASYNC109
        """Wait for the pending evaluations of this event loop (up to ``timeout`` seconds)
        and return all results so far."""
        tasks = self._loop_tasks()
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
        return list(self.results)

    async def aclose(self) -> None:
        """Let pending evaluations finish (up to ``shutdown_timeout``), cancel the rest, and
        close a judge model this runner made from a model string."""
        tasks = self._loop_tasks()
        if tasks:
            _, unfinished = await asyncio.wait(tasks, timeout=self.shutdown_timeout)
            if unfinished:
                log.warning(
                    "cancelling %d evaluation(s) still running after %ss at shutdown",
                    len(unfinished),
                    self.shutdown_timeout,
                )
                for task in unfinished:
                    task.cancel()
                await asyncio.wait(unfinished)
        if self._owns_judge and self._judge_model is not None:
            model, self._judge_model, self._owns_judge = self._judge_model, None, False
            try:
                await model.aclose()
            except Exception:
                log.exception("closing the judge model failed")
        for evaluator in self.evaluators.values():
            await evaluator.aclose()

    # --- the loop's side (Instrument) -----------------------------------------------------

    def run_started(self, run: RunContext) -> None:
        run.data[self] = _RunNotes(len(run.session.messages))

    def tool_call_finished(
        self, run: RunContext, call: ToolUseBlock, result: dict[str, Any], duration_s: float
    ) -> None:
        notes = run.data.get(self)
        content = result.get("content", "")
        text = content if isinstance(content, str) else str(content)
        is_error = bool(result.get("is_error"))
        if isinstance(notes, _RunNotes):
            entry = (
                f"[{call.name} {json.dumps(call.input, default=str)[:1000]}]"
                f"{' (error)' if is_error else ''}\n{format_value(text, MAX_RUN_DATA_CHARS // 3)}"
            )
            notes.tool_results.append(entry)
            notes.tool_names.append(call.name)
            notes.chars += len(entry)
            while notes.chars > MAX_RUN_DATA_CHARS and len(notes.tool_results) > 1:
                notes.chars -= len(notes.tool_results.pop(0))
        if call.name == SQL_TOOL and isinstance(call.input.get("sql"), str):
            data = {
                "sql": call.input["sql"],
                "context": _question(run, notes),
                "result": ("(error) " if is_error else "") + text,
                "dialect": call.input.get("dialect") or call.input.get("database") or "",
            }
            for eval_type in self.sql_evaluators:
                self._submit_for_run(run, eval_type, data, tool_call_id=call.id)

    def run_finished(self, run: RunContext, done: Done) -> None:
        notes = run.data.get(self)
        if done.stop_reason != "end_turn" or run.depth > 0 or not self.answer_evaluators:
            return
        first = notes.first_message if isinstance(notes, _RunNotes) else 0
        answer = next(
            (
                m.text
                for m in reversed(run.session.messages[first:])
                if m.role == "assistant" and m.text.strip()
            ),
            "",
        )
        if not answer:
            return
        results = notes.tool_results if isinstance(notes, _RunNotes) else []
        names = notes.tool_names if isinstance(notes, _RunNotes) else []
        data = {
            "question": _question(run, notes),
            "answer": answer,
            "data": "\n\n".join(results) if results else "(the agent used no tools in this run)",
            "context": (
                f"the agent made {len(names)} tool call(s) in this run: {', '.join(names)}"
                if names
                else "the agent answered without calling tools"
            ),
        }
        for eval_type in self.answer_evaluators:
            self._submit_for_run(run, eval_type, data)

    # --- the work -------------------------------------------------------------------------

    def _submit_for_run(
        self, run: RunContext, eval_type: str, data: dict[str, Any], **meta: Any
    ) -> None:
        info = {"session_id": run.session.id, "run_id": run.id, "agent": run.path, **meta}
        self.submit(
            eval_type,
            data,
            workspace_dir=run.session.workspace_dir,
            judge=self._judge_for(run),
            meta=info,
            trace_parent=_find_span(run),
        )

    def _judge_for(self, run: RunContext) -> Model | str:
        if self._judge_model is not None:
            return self._judge_model
        if isinstance(self.judge, str):
            return self.judge  # resolved once, in the first evaluation
        return run.agent.model

    def _resolved(self, judge: Model | str | None) -> Model | str | None:
        if isinstance(judge, str) and judge == self.judge:
            if self._judge_model is None:
                from loopwright.models import resolve_model

                self._judge_model = resolve_model(judge)
                self._owns_judge = True
            return self._judge_model
        return judge

    def _semaphore(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        semaphore = self._semaphores.get(loop)
        if semaphore is None:
            for old in [lp for lp in self._semaphores if lp.is_closed()]:
                del self._semaphores[old]
            semaphore = self._semaphores[loop] = asyncio.Semaphore(self.max_concurrency)
        return semaphore

    def _loop_tasks(self) -> set[asyncio.Task[EvalResult | None]]:
        loop = asyncio.get_running_loop()
        return {t for t in self._tasks if not t.done() and t.get_loop() is loop}

    async def _evaluate(
        self,
        eval_type: str,
        data: dict[str, Any],
        workspace: Path | None,
        judge: Model | str | None,
        meta: dict[str, Any],
        trace_parent: Any,
    ) -> EvalResult | None:
        started_wall = time.time_ns()
        try:
            async with self._semaphore():
                evaluator = self.evaluator(eval_type)
                result = await evaluator.evaluate(data, self._resolved(judge))
        except asyncio.CancelledError:
            log.warning("evaluation %s cancelled before it finished", eval_type)
            raise
        except Exception as exc:
            log.warning("evaluation %s failed: %s: %s", eval_type, type(exc).__name__, exc)
            self.failures.append((eval_type, exc))
            return None
        self.results.append(result)
        if workspace is not None and self.save:
            try:
                path = save_result(workspace, eval_type, result, data, meta)
                log.debug("evaluation %s saved to %s", eval_type, path)
            except OSError as exc:
                log.warning("evaluation %s could not be saved: %s", eval_type, exc)
        _attach_to_trace(trace_parent, result, started_wall, meta, self.tracer_provider)
        if self.on_result is not None:
            try:
                self.on_result(result)
            except Exception:
                log.exception("on_result failed for evaluation %s", eval_type)
        return result


def save_result(
    workspace: Path,
    eval_type: str,
    result: EvalResult,
    data: Mapping[str, Any],
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``<workspace>/.evals/<type>_<unique id>.json`` (written whole, then renamed, so a
    reader never sees half a file) and return its path."""
    directory = workspace / EVALS_DIR
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{eval_type}_{result.id}.json"
    record = {
        "eval_type": eval_type,
        **dict(meta or {}),
        "timestamp": result.created_at,
        "data": {key: format_value(value, 20_000) for key, value in data.items()},
        "result": result.to_dict(),
    }
    partial = directory / f".{path.name}.{uuid.uuid4().hex[:6]}.tmp"
    partial.write_text(json.dumps(record, indent=2, ensure_ascii=False), encoding="utf-8")
    os.replace(partial, path)
    return path


def instrument_from_env() -> EvalRunner | None:
    """The EvalRunner ``EVALS_ENABLED=1`` asks for (``None`` when it is off); the judge is
    ``EVALS_MODEL`` if set, else each agent's own model."""
    if not switch(os.environ.get("EVALS_ENABLED")):
        return None
    return EvalRunner()


# --- helpers -----------------------------------------------------------------------------


def _question(run: RunContext, notes: object) -> str:
    messages = run.session.messages
    first = notes.first_message if isinstance(notes, _RunNotes) else 0
    for message in messages[first:]:
        if message.role == "user" and message.text.strip() and not message.tool_results:
            return message.text
    for message in reversed(messages[:first]):
        if message.role == "user" and message.text.strip() and not message.tool_results:
            return message.text
    return ""


def _is_span(value: Any) -> bool:
    return callable(getattr(value, "get_span_context", None)) and callable(
        getattr(value, "is_recording", None)
    )


def _find_span(run: RunContext) -> Any:
    """The run's OpenTelemetry span: the current one, else one kept in ``run.data`` by an
    instrument (directly, in a dict, or as a ``span`` attribute). ``None`` without tracing."""
    try:
        from opentelemetry import trace
    except ImportError:
        return None
    current = trace.get_current_span()
    if current.get_span_context().is_valid:
        return current
    for value in run.data.values():
        candidates = [value, getattr(value, "span", None)]
        if isinstance(value, Mapping):
            candidates.extend(value.values())
        for candidate in candidates:
            if _is_span(candidate) and candidate.get_span_context().is_valid:
                return candidate
    return None


def _attach_to_trace(
    span: Any,
    result: EvalResult,
    started_ns: int,
    meta: Mapping[str, Any],
    tracer_provider: Any = None,
) -> None:
    """Record the result as a ``gen_ai.evaluation.result`` event on the run's span, or (the
    span has ended) as a short span of that name under it."""
    if span is None:
        return
    try:
        from opentelemetry import trace

        attributes: dict[str, Any] = {
            "gen_ai.evaluation.name": result.evaluator,
            "gen_ai.evaluation.score.value": float(result.score),
            "gen_ai.evaluation.score.label": "pass" if result.passed else "fail",
            "gen_ai.evaluation.explanation": result.reasoning[:1000],
            "loopwright.evaluation.id": result.id,
            "loopwright.evaluation.judge": result.judge,
        }
        if result.error is not None:
            attributes["error.type"] = "invalid_judge_reply"
        if meta.get("tool_call_id"):
            attributes["gen_ai.tool.call.id"] = str(meta["tool_call_id"])
        if span.is_recording():
            span.add_event("gen_ai.evaluation.result", attributes)
            return
        tracer = trace.get_tracer("loopwright.evals", tracer_provider=tracer_provider)
        parent = trace.set_span_in_context(trace.NonRecordingSpan(span.get_span_context()))
        child = tracer.start_span("gen_ai.evaluation.result", context=parent, start_time=started_ns)
        child.set_attributes(attributes)
        child.end()
    except Exception:
        log.exception("attaching evaluation %s to the trace failed", result.id)


__all__ = [
    "EVALS_DIR",
    "SQL_TOOL",
    "EvalRunner",
    "instrument_from_env",
    "save_result",
]
