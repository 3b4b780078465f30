"""The golden research questions as an eval suite, run on the healthcare agent.

``loopwright eval --agent healthcare`` asks the healthcare agent every golden question
(:mod:`loopwright.healthcare.golden`), each in its own session and workspace, and grades each
answer with the golden checker against the reference computed from the same database: the
``golden`` check of :mod:`loopwright.evals.checkers`. The eval runner supplies the rest:
parallel tasks, epochs, retries, ``--resume``, the JSON results and the HTML report.

- :func:`golden_suite` is the suite: one task per question (its id, the question as the
  prompt, its tags), no fixtures, one ``golden`` check.
- :class:`HealthcareAgentFactory` makes the healthcare agent for each task, on one database
  (any the agent takes; the ``golden`` check needs the generated DuckDB one, or a
  ``database:`` of its own). It tells the checks which DuckDB file that is.
- :func:`saved_csv` finds the CSV an answer rests on: that of the run's last successful
  ``SQL`` call.

A suite file of one's own can use the same agent and check::

    tasks:
      - id: humira-ca
        prompt: Find the top 10 prescribers of HUMIRA in California.
        checks: [{type: golden, question: humira_ca_top10}]
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopwright.evals.bench import FactoryStore, is_scripted
from loopwright.healthcare.golden import GOLDEN_QUESTIONS
from loopwright.tools.sql import dataset_name_problem

if TYPE_CHECKING:
    from loopwright.agent import Agent
    from loopwright.evals.bench import TaskJob
    from loopwright.evals.suite import Limits, Suite
    from loopwright.healthcare.check import Verdict
    from loopwright.sessions.store import SessionStore

#: The suite's name: its results go to ``healthcare-golden.results.json`` by default.
SUITE_NAME = "healthcare-golden"


def golden_suite(ids: Sequence[str] | None = None, *, limits: Limits | None = None) -> Suite:
    """The golden questions as a suite (only those in ``ids``, when given; an unknown id is a
    :class:`~loopwright.evals.suite.SuiteError` listing the known ones).

    The suite's hash covers every question's id, text and reference SQL, so ``--resume``
    refuses results recorded against other questions.
    """
    from loopwright.evals.checkers import GoldenCheck
    from loopwright.evals.suite import Limits, Suite, Task

    tasks = [
        Task(
            id=question.id,
            prompt=question.question,
            checks=[GoldenCheck(type="golden", question=question.id)],
            tags=list(question.tags),
        )
        for question in GOLDEN_QUESTIONS
    ]
    defining = [[q.id, q.question, q.sql] for q in GOLDEN_QUESTIONS]
    suite = Suite(
        name=SUITE_NAME,
        description=(
            "The healthcare agent's golden research questions, each answer checked against "
            "the reference computed from the database."
        ),
        tasks=tasks,
        limits=limits or Limits(),
        sha256=hashlib.sha256(json.dumps(defining).encode()).hexdigest(),
    )
    return suite.select(ids) if ids else suite


class HealthcareAgentFactory(FactoryStore):
    """The healthcare agent for each task of a suite, all on one ``database`` (a database
    URL or the path of a DuckDB file; see :func:`~loopwright.healthcare.healthcare_agent`).

    ``model`` is a model string; with the ``scripted`` model each task plays its own script.
    The suite's ``tools`` and ``system_prompt`` do not apply: the agent has its own.
    Sessions go to ``store`` (default: the SQLite store in the data directory).
    ``agent_options`` go to :func:`~loopwright.healthcare.healthcare_agent`.
    """

    def __init__(
        self,
        model: str | None,
        *,
        database: str | os.PathLike[str],
        store: SessionStore | None = None,
        workspace_root: str | None = None,
        **agent_options: Any,
    ) -> None:
        super().__init__(store)
        self.model = model
        self.database = os.fspath(database)
        self.workspace_root = workspace_root
        self.options = agent_options
        self.check_extra = _reference_database(self.database)
        """What the ``golden`` check reads: ``database``, the DuckDB file the agent queries,
        or ``database_problem``, why there is none."""

    @property
    def scripted(self) -> bool:
        return is_scripted(self.model)

    def __call__(self, job: TaskJob) -> Agent:
        from loopwright.healthcare.agent import healthcare_agent
        from loopwright.models.base import Model

        model: Model | str | None = self.model
        if self.scripted:
            script = job.task.scripted_model()
            if script is None:
                raise ValueError(
                    f"task {job.task.id!r} has no script for the scripted model; give it a "
                    "script, or run with a real model (e.g. --model local:gemma3-270m)"
                )
            model = script
        return healthcare_agent(
            model,
            database=self.database,
            store=self.session_store(),
            workspace_root=self.workspace_root,
            **self.options,
        )


def _reference_database(database: str) -> dict[str, str]:
    """The DuckDB file behind ``database`` (a URL or a path), for the ``golden`` check."""
    from loopwright.healthcare.agent import database_url
    from loopwright.sql import connect
    from loopwright.sql.duckdb import DuckDBBackend

    url = database_url(database)
    if not url.lower().startswith("duckdb://"):
        scheme = url.partition("://")[0]
        return {
            "database_problem": f"the agent's database is a {scheme} one, and the golden "
            "references are computed with DuckDB from the generated claims database"
        }
    backend = connect(url)  # opens nothing
    if not isinstance(backend, DuckDBBackend) or backend.in_memory:
        return {"database_problem": "the agent's DuckDB database is in memory"}
    return {"database": backend.database}


def saved_csv(events: Iterable[object], workspace: str | os.PathLike[str]) -> Path | None:
    """The CSV of the last ``SQL`` call that succeeded in these run events (the agent's own,
    not a sub-agent's), if it is in ``workspace``; ``None`` when there is none."""
    from loopwright.events import ToolCall, ToolResult

    names: dict[str, str] = {}
    last: str | None = None
    for event in events:
        if getattr(event, "agent", None) is not None:
            continue
        if isinstance(event, ToolCall) and event.name == "SQL":
            name = event.input.get("dataset_name")
            if isinstance(name, str) and dataset_name_problem(name) is None:
                names[event.id] = name
        elif isinstance(event, ToolResult) and event.id in names and not event.is_error:
            last = names[event.id]
    if last is None:
        return None
    path = Path(workspace) / f"{last}.csv"
    return path if path.is_file() else None


def verdict_detail(verdict: Verdict, csv: Path | None) -> str:
    """The golden checker's verdict in one line, for a check result."""
    parts = list(verdict.reasons)
    if verdict.found:
        parts.append("found " + ", ".join(r.describe() for r in verdict.found))
    if csv is None:
        parts.append("no CSV checked (no SQL call saved one)")
    elif verdict.csv is not None:
        shown = verdict.csv
        parts.append(
            f"{csv.name}: {shown.matched_rows} of {shown.checked_rows} reference rows "
            f"({shown.rows} rows saved)"
        )
    return "; ".join(parts)


__all__ = [
    "SUITE_NAME",
    "HealthcareAgentFactory",
    "golden_suite",
    "saved_csv",
    "verdict_detail",
]
