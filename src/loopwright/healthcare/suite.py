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
        from loopwright.sql.urls import absolute

        # a relative file is made absolute now: the label a resume compares names one file
        # however it was typed, and from whichever directory
        self.database = absolute(os.fspath(database))
        self.workspace_root = workspace_root
        self.options = agent_options
        self.check_extra = _reference_database(self.database)
        """What the ``golden`` check reads: ``database``, the DuckDB file the agent queries,
        or ``database_problem``, why there is none."""

    @property
    def scripted(self) -> bool:
        return is_scripted(self.model)

    @property
    def label(self) -> str:
        """Who does the tasks, for the result file (a resume must be on the same database,
        and in the same mode: the mode is named when it is not the model's default)."""
        from loopwright.sql.urls import redact

        label = f"the healthcare agent on {redact(self.database, self.database)}"
        from loopwright.healthcare.agent import is_small_model

        compact = self.options.get("compact")
        small = self.model is not None and is_small_model(self.model)  # compact by default
        if compact is not None and compact != small:
            label += " in compact mode" if compact else " in full mode"
        return label

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


def verdict_detail(verdict: Verdict, csv: Path | None, *, csv_wanted: bool = True) -> str:
    """The golden checker's verdict in one line, for a check result (``csv_wanted=False``:
    the check was told not to look at a CSV)."""
    parts = list(verdict.reasons)
    if verdict.found:
        parts.append("found " + ", ".join(r.describe() for r in verdict.found))
    if csv is None and not csv_wanted:
        parts.append("no CSV checked (the check has csv: false)")
    elif csv is None:
        parts.append("no CSV checked (no SQL call saved one)")
    elif verdict.csv is not None:
        shown = verdict.csv
        parts.append(
            f"{csv.name}: {shown.matched_rows} of {shown.checked_rows} reference rows "
            f"({shown.rows} rows saved)"
        )
    return "; ".join(parts)


def unanswerable_questions(
    question_ids: Iterable[str], database: str | os.PathLike[str]
) -> dict[str, str]:
    """The golden questions (of ``question_ids``) whose reference cannot be computed from the
    DuckDB file ``database``, each with why: its reference SQL does not bind there (a table
    or column of the generated claims database is missing). Only binds the queries (DuckDB's
    ``EXPLAIN``), so it is quick on any size; an empty result is found when a check runs."""
    import duckdb

    from loopwright.healthcare.data import connect_read_only
    from loopwright.healthcare.golden import get_question
    from loopwright.summaries import error_line

    problems: dict[str, str] = {}
    con = connect_read_only(database)
    try:
        for question_id in dict.fromkeys(question_ids):
            try:
                con.execute("EXPLAIN " + get_question(question_id).sql.strip().rstrip(";"))
            except duckdb.Error as exc:
                problems[question_id] = error_line(exc)
    finally:
        con.close()
    return problems


def golden_database_problem(suite: Suite, check_extra: dict[str, str]) -> str | None:
    """Why the ``golden`` checks of ``suite`` that grade against the agent's database
    (those with no ``database:`` of their own) cannot get their references from it, in one
    sentence; ``None`` when they can (or there are none). ``check_extra`` is the factory's
    (:attr:`HealthcareAgentFactory.check_extra`)."""
    import duckdb

    from loopwright.evals.checkers import GoldenCheck
    from loopwright.summaries import error_line

    asked: dict[str, list[str]] = {}
    for task in suite.tasks:
        for check in task.checks:
            if isinstance(check, GoldenCheck) and check.database is None:
                asked.setdefault(check.question, []).append(task.id)
    database = check_extra.get("database")
    if not asked:
        return None
    if database is None:
        tasks = list(dict.fromkeys(t for ids in asked.values() for t in ids))
        why = check_extra.get("database_problem") or "the agent has no DuckDB database file"
        return (
            f"the golden checks of task(s) {_listing(tasks)} cannot be graded: {why}; run them "
            "on the generated claims database (leave out --database), or give each check a "
            "database: file of its own"
        )
    try:
        problems = unanswerable_questions(asked, database)
    except duckdb.Error as exc:
        return (
            f"cannot open the database {database} to compute the golden references "
            f"({error_line(exc)})"
        )
    if not problems:
        return None
    tasks = list(dict.fromkeys(t for question in problems for t in asked[question]))
    which = "" if tasks == list(problems) else f" (task(s) {_listing(tasks)})"
    why = next(iter(problems.values()))
    return (
        f"the database {database} cannot answer golden question(s) {_listing(problems)}"
        f"{which}: {why}; their answers cannot be graded. The golden questions need the "
        "tables and columns of the generated claims database: leave out --database, or leave "
        "those tasks out (--task)"
    )


def _listing(names: Iterable[str], shown: int = 5) -> str:
    """Names joined with commas, at most ``shown`` of them and how many more."""
    items = list(names)
    more = f" and {len(items) - shown} more" if len(items) > shown else ""
    return ", ".join(items[:shown]) + more


__all__ = [
    "SUITE_NAME",
    "HealthcareAgentFactory",
    "golden_database_problem",
    "golden_suite",
    "saved_csv",
    "unanswerable_questions",
    "verdict_detail",
]
