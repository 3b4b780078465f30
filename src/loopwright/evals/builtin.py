"""The built-in judges: hallucination, answer quality, code quality, SQL, objective completion,
and a rubric judge for task suites.

Each is a :class:`~loopwright.evals.base.BaseEvaluator` with a prompt template; the data
fields each one reads are listed in its docstring (a missing optional field reads
"(not given)"). :data:`EVALUATORS` maps names (and the design guide's short aliases:
``answer``, ``code``, ``objective``) to classes; :func:`make_evaluator` builds one by name.
"""

from __future__ import annotations

from typing import Any

from loopwright.evals.base import BaseEvaluator


class HallucinationEvaluator(BaseEvaluator):
    """Are the answer's claims supported by the data the agent had (its tool results)?

    Data: ``answer`` (required), ``data`` (the tool results or source data), ``question``.
    """

    name = "hallucination"
    required = ("answer",)
    prompt_template = """\
Check whether the agent's answer is supported by the data it had.

<question>
{question}
</question>

<answer>
{answer}
</answer>

<source_data>
{data}
</source_data>

Verify:
1. Every number, name, date and identifier in the answer appears in, or follows directly from,
   the source data.
2. No facts are invented or taken from outside the source data (general knowledge used only to
   explain is fine; new facts are not).
3. Nothing in the source data is misread, misattributed or contradicted.
4. Uncertainty is stated where the data is incomplete.

List each unsupported or wrong claim as one issue (quote the claim). Score 100 when every claim
is supported; lower the score for each unsupported claim; an answer built on invented data
scores below 30. passed is true only when there is no unsupported claim that matters."""


class AnswerEvaluator(BaseEvaluator):
    """Does the final answer address the question well?

    Data: ``question``, ``answer`` (required), ``context`` (what the agent did, optional).
    """

    name = "answer_quality"
    required = ("answer",)
    prompt_template = """\
Evaluate the quality of the agent's final answer to the user.

<question>
{question}
</question>

<answer>
{answer}
</answer>

<context>
{context}
</context>

Check:
1. Does the answer address what was asked (all parts of it)?
2. Is it complete, with the specific results the user needs (numbers, names, files)?
3. Is it clear, well structured and concise?
4. Are conclusions and next steps actionable, and are limitations stated honestly?

Score 90-100 for an answer that fully serves the user, 70-89 for a good answer with minor gaps,
below 70 when it misses part of the question or is hard to use."""


class CodeEvaluator(BaseEvaluator):
    """Is the generated code correct, safe and well written?

    Data: ``code`` (required), ``purpose`` (what it should do), ``language``, ``output``
    (what running it printed, if it ran).
    """

    name = "code_quality"
    required = ("code",)
    prompt_template = """\
Evaluate code an agent wrote.

<purpose>
{purpose}
</purpose>

<language>
{language}
</language>

<code>
{code}
</code>

<output_when_run>
{output}
</output_when_run>

Check:
1. Syntax correctness.
2. Logic: does it do what the purpose says, including edge cases (empty input, missing files,
   large data)?
3. Error handling and clear failure messages.
4. Security: injection, unsafe deserialisation, shell commands built from input, secrets in code.
5. Readability and idiomatic style.

Score below 50 for code that is wrong or unsafe; 70 or more only for code that works for its
purpose."""


class SQLEvaluator(BaseEvaluator):
    """Is the SQL query right for healthcare data (the design guide's domain judge)?

    Data: ``sql`` (required), ``context`` (the question it answers), ``schema`` (the tables
    and columns available, if known), ``dialect``, ``result`` (what it returned).
    """

    name = "sql"
    required = ("sql",)
    prompt_template = """\
Evaluate this SQL query written by a healthcare data research agent.

<query>
{sql}
</query>

<question_it_answers>
{context}
</question_it_answers>

<available_schema>
{schema}
</available_schema>

<dialect>
{dialect}
</dialect>

<result_returned>
{result}
</result_returned>

Check for:
1. Correct table and column names (against the schema when it is given; flag any name that is
   not in it).
2. Appropriate JOINs for healthcare data: join keys that really identify the same entity (NPI,
   patient id, claim id), no accidental fan-out that double-counts claims or prescriptions.
3. HIPAA / privacy: no PII or PHI in the output (patient names, addresses, SSNs, dates of birth,
   phone numbers, free-text notes); aggregates rather than row-level patient data, and small
   cells suppressed where appropriate.
4. Performance: filters on indexed or partition columns, no SELECT * on large tables, LIMIT for
   exploration, no needless cross joins or correlated subqueries.
5. Logic errors: wrong aggregation or grouping, filters that do not match the question, NULL
   handling, date ranges, distinct counts.

Each problem is one issue. A query that exposes PII fails whatever else it does right."""


class ObjectiveEvaluator(BaseEvaluator):
    """Did the agent achieve the user's objective (not just say it did)?

    Data: ``objective`` (required), ``answer`` (the final answer), ``transcript`` (the
    steps taken: tool calls and their results), ``files`` (the workspace afterwards).
    """

    name = "objective_completion"
    required = ("objective",)
    prompt_template = """\
Decide whether the agent completed the user's objective.

<objective>
{objective}
</objective>

<steps_taken>
{transcript}
</steps_taken>

<workspace_files>
{files}
</workspace_files>

<final_answer>
{answer}
</final_answer>

Check:
1. Was every part of the objective done, as shown by the steps and their results (not only
   claimed in the final answer)?
2. Did any step fail without being fixed or reported?
3. Were the required outputs (files, values, changes) produced?
4. Did the agent stay within what was asked (no harmful or unrequested side effects)?

passed is true only when the objective was fully completed."""


class RubricEvaluator(BaseEvaluator):
    """Judges a task's outcome against a rubric (the LLM-judge checker of task suites).

    Data: ``rubric`` (required), ``task`` (the prompt), ``answer``, ``files`` (workspace
    files and their contents).
    """

    name = "rubric"
    required = ("rubric",)
    prompt_template = """\
Grade an AI agent's work on a task against the rubric.

<task>
{task}
</task>

<rubric>
{rubric}
</rubric>

<final_answer>
{answer}
</final_answer>

<workspace_files>
{files}
</workspace_files>

Apply the rubric strictly: each criterion it states that is not met is one issue. Score how
fully the rubric is met (100: all of it)."""


#: Evaluators by name (including the design guide's short aliases).
EVALUATORS: dict[str, type[BaseEvaluator]] = {
    "hallucination": HallucinationEvaluator,
    "answer_quality": AnswerEvaluator,
    "answer": AnswerEvaluator,
    "code_quality": CodeEvaluator,
    "code": CodeEvaluator,
    "sql": SQLEvaluator,
    "objective_completion": ObjectiveEvaluator,
    "objective": ObjectiveEvaluator,
    "rubric": RubricEvaluator,
}


def make_evaluator(name: str, **options: Any) -> BaseEvaluator:
    """A built-in evaluator by name (``options`` go to its constructor)."""
    cls = EVALUATORS.get(name.strip().lower())
    if cls is None:
        raise ValueError(f"unknown evaluator {name!r}; use one of: {', '.join(sorted(EVALUATORS))}")
    return cls(**options)


__all__ = [
    "EVALUATORS",
    "AnswerEvaluator",
    "CodeEvaluator",
    "HallucinationEvaluator",
    "ObjectiveEvaluator",
    "RubricEvaluator",
    "SQLEvaluator",
    "make_evaluator",
]
