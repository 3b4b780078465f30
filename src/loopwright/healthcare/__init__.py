"""The healthcare research example: synthetic claims data, golden questions and checkers.

Submodules are imported on first use, so ``import loopwright.healthcare`` stays cheap:
``data`` (the generator), ``golden`` (research questions with reference SQL), ``check``
(compares an answer with the reference) and ``sqlcheck`` (static checks of a query); and
the research agent itself: ``agent`` (``healthcare_agent()``), ``prompt`` (its system prompt,
read from the database) and ``cohort`` (the ``DefineCohort`` tool); ``suite`` runs the golden
questions on the agent as an eval suite (``loopwright eval --agent healthcare``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loopwright.lazy import lazy_getattr

_EXPORTS = {
    "ensure_database": "loopwright.healthcare.data",
    "build_database": "loopwright.healthcare.data",
    "database_schema": "loopwright.healthcare.data",
    "SCHEMA": "loopwright.healthcare.data",
    "GOLDEN_QUESTIONS": "loopwright.healthcare.golden",
    "GoldenQuestion": "loopwright.healthcare.golden",
    "check_answer": "loopwright.healthcare.check",
    "check_golden": "loopwright.healthcare.check",
    "Verdict": "loopwright.healthcare.check",
    "check_sql": "loopwright.healthcare.sqlcheck",
    "SQLIssue": "loopwright.healthcare.sqlcheck",
    "healthcare_agent": "loopwright.healthcare.agent",
    "DatabaseUnreadable": "loopwright.healthcare.agent",
    "HealthcarePrompt": "loopwright.healthcare.prompt",
    "system_prompt": "loopwright.healthcare.prompt",
    "DefineCohort": "loopwright.healthcare.cohort",
    "DefineCohortTool": "loopwright.healthcare.cohort",
    "Criteria": "loopwright.healthcare.cohort",
    "CohortError": "loopwright.healthcare.cohort",
    "golden_suite": "loopwright.healthcare.suite",
    "HealthcareAgentFactory": "loopwright.healthcare.suite",
}

__all__ = [
    "GOLDEN_QUESTIONS",
    "SCHEMA",
    "CohortError",
    "Criteria",
    "DatabaseUnreadable",
    "DefineCohort",
    "DefineCohortTool",
    "GoldenQuestion",
    "HealthcareAgentFactory",
    "HealthcarePrompt",
    "SQLIssue",
    "Verdict",
    "build_database",
    "check_answer",
    "check_golden",
    "check_sql",
    "database_schema",
    "ensure_database",
    "golden_suite",
    "healthcare_agent",
    "system_prompt",
]

if TYPE_CHECKING:
    from loopwright.healthcare.agent import DatabaseUnreadable, healthcare_agent
    from loopwright.healthcare.check import Verdict, check_answer, check_golden
    from loopwright.healthcare.cohort import (
        CohortError,
        Criteria,
        DefineCohort,
        DefineCohortTool,
    )
    from loopwright.healthcare.data import SCHEMA, build_database, database_schema, ensure_database
    from loopwright.healthcare.golden import GOLDEN_QUESTIONS, GoldenQuestion
    from loopwright.healthcare.prompt import HealthcarePrompt, system_prompt
    from loopwright.healthcare.sqlcheck import SQLIssue, check_sql
    from loopwright.healthcare.suite import HealthcareAgentFactory, golden_suite


__getattr__ = lazy_getattr(__name__, _EXPORTS, globals())
