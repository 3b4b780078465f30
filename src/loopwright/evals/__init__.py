"""Evaluations: LLM judges, the background EvalRunner, and task suites.

- :mod:`~loopwright.evals.base`: :class:`BaseEvaluator` (prompt template, judge model,
  robust parsing, one retry) and its strict :class:`EvalResult`.
- :mod:`~loopwright.evals.builtin`: hallucination, answer quality, code quality, SQL,
  objective completion and rubric judges.
- :mod:`~loopwright.evals.runner`: :class:`EvalRunner`, the instrument that scores runs in
  the background (``EVALS_ENABLED=1``).
- :mod:`~loopwright.evals.suite`, :mod:`~loopwright.evals.checkers`,
  :mod:`~loopwright.evals.bench`, :mod:`~loopwright.evals.executor`,
  :mod:`~loopwright.evals.report`: task suites (``loopwright eval SUITE``) and their reports.

Names are imported lazily: ``import loopwright.evals`` loads nothing heavy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loopwright.lazy import lazy_getattr

_EXPORTS = {
    "BaseEvaluator": "loopwright.evals.base",
    "EvalResult": "loopwright.evals.base",
    "Verdict": "loopwright.evals.parse",
    "JudgeReplyError": "loopwright.evals.parse",
    "parse_verdict": "loopwright.evals.parse",
    "HallucinationEvaluator": "loopwright.evals.builtin",
    "AnswerEvaluator": "loopwright.evals.builtin",
    "CodeEvaluator": "loopwright.evals.builtin",
    "SQLEvaluator": "loopwright.evals.builtin",
    "ObjectiveEvaluator": "loopwright.evals.builtin",
    "RubricEvaluator": "loopwright.evals.builtin",
    "EVALUATORS": "loopwright.evals.builtin",
    "make_evaluator": "loopwright.evals.builtin",
    "EvalRunner": "loopwright.evals.runner",
    "Suite": "loopwright.evals.suite",
    "Task": "loopwright.evals.suite",
    "SuiteError": "loopwright.evals.suite",
    "load_suite": "loopwright.evals.suite",
    "CheckContext": "loopwright.evals.checkers",
    "CheckResult": "loopwright.evals.checkers",
    "Executor": "loopwright.evals.executor",
    "LocalExecutor": "loopwright.evals.executor",
    "StandardAgentFactory": "loopwright.evals.bench",
    "SuiteRun": "loopwright.evals.bench",
    "TaskJob": "loopwright.evals.bench",
    "TaskResult": "loopwright.evals.bench",
    "run_suite": "loopwright.evals.bench",
    "render_html": "loopwright.evals.report",
    "write_html": "loopwright.evals.report",
    "print_summary": "loopwright.evals.report",
}

__all__ = [
    "EVALUATORS",
    "AnswerEvaluator",
    "BaseEvaluator",
    "CheckContext",
    "CheckResult",
    "CodeEvaluator",
    "EvalResult",
    "EvalRunner",
    "Executor",
    "HallucinationEvaluator",
    "JudgeReplyError",
    "LocalExecutor",
    "ObjectiveEvaluator",
    "RubricEvaluator",
    "SQLEvaluator",
    "StandardAgentFactory",
    "Suite",
    "SuiteError",
    "SuiteRun",
    "Task",
    "TaskJob",
    "TaskResult",
    "Verdict",
    "load_suite",
    "make_evaluator",
    "parse_verdict",
    "print_summary",
    "render_html",
    "run_suite",
    "write_html",
]

if TYPE_CHECKING:
    from loopwright.evals.base import BaseEvaluator, EvalResult
    from loopwright.evals.bench import (
        StandardAgentFactory,
        SuiteRun,
        TaskJob,
        TaskResult,
        run_suite,
    )
    from loopwright.evals.builtin import (
        EVALUATORS,
        AnswerEvaluator,
        CodeEvaluator,
        HallucinationEvaluator,
        ObjectiveEvaluator,
        RubricEvaluator,
        SQLEvaluator,
        make_evaluator,
    )
    from loopwright.evals.checkers import CheckContext, CheckResult
    from loopwright.evals.executor import Executor, LocalExecutor
    from loopwright.evals.parse import JudgeReplyError, Verdict, parse_verdict
    from loopwright.evals.report import print_summary, render_html, write_html
    from loopwright.evals.runner import EvalRunner
    from loopwright.evals.suite import Suite, SuiteError, Task, load_suite


__getattr__ = lazy_getattr(__name__, _EXPORTS, globals())
