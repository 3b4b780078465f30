"""Checks that decide whether a suite task passed.

Each check is a ``{type: ..., ...}`` entry in a task's ``checks`` list:

- ``exact``: the answer (or the file at ``path``) equals ``expected`` (``strip``, default
  true; ``ignore_case``, default false).
- ``contains``: it contains every string of ``text`` and none of ``not_text``.
- ``regex``: ``pattern`` is found in it (Python ``re.search``; ``ignore_case``,
  ``multiline``).
- ``file_exists``: the workspace file ``path`` exists (``exists: false``: it must not).
- ``file_contents``: the file at ``path`` ``equals`` / ``contains`` / ``not_contains`` /
  matches ``regex`` / holds the JSON value ``json``.
- ``python``: ``function`` is ``module:function`` (importable, or ``module.py`` next to the
  suite) or ``path/to/file.py:function`` (relative to the suite). It is called with
  ``(answer, workspace, result)`` — the answer text, the workspace :class:`~pathlib.Path`
  and the agent's :class:`~loopwright.agent.RunResult` — plus ``args`` as keyword arguments,
  and may be async. It returns ``True``/``False``, ``(passed, detail)``, a dict with
  ``passed`` (and ``detail``, ``score``), or nothing after ``assert`` statements (a failed
  one fails the check with its message).
- ``judge``: an LLM judge grades the work against ``rubric`` (passes at ``threshold``,
  default 70). It sees the task, the answer and the workspace files (``files``: the paths to
  show; default all small text files). ``script`` is the judge's reply when the model is
  ``scripted`` (ignored otherwise).
- ``golden``: the answer to one of the healthcare agent's golden research questions
  (``question``: its id, see :mod:`loopwright.healthcare.golden`) states the reference's key
  facts, and the CSV its last successful ``SQL`` call saved reproduces the reference rows
  (``csv: false`` checks the answer alone). The reference is computed from ``database`` (a
  DuckDB file, relative to the suite), by default the database the agent itself queried
  (``loopwright eval --agent healthcare``). The score is the checker's, 0 to 100.

Every check may have a ``name`` shown in reports.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from pydantic import BaseModel, ConfigDict, Field

from loopwright.models.base import Model, ModelError

if TYPE_CHECKING:
    from loopwright.agent import RunResult

CHECK_TYPES = (
    "exact",
    "contains",
    "regex",
    "file_exists",
    "file_contents",
    "python",
    "judge",
    "golden",
)
#: Workspace text shown to a judge, in characters.
MAX_FILES_CHARS = 30_000


class InfraError(Exception):
    """A check could not run for a reason outside the task (a judge model's outage): the
    attempt is retried instead of failing the task."""


class CheckResult(BaseModel):
    """The outcome of one check."""

    model_config = ConfigDict(extra="forbid")

    type: str
    name: str = ""
    passed: bool
    detail: str = ""
    score: int | None = None
    #: tokens and cost of an LLM judge, if the check used one
    tokens: int = 0
    cost_usd: float = 0.0


@dataclass(slots=True)
class CheckContext:
    """What a check can look at: the task's prompt, the agent's answer and run, the
    workspace, the suite's directory, and the judge to use for LLM-judge checks."""

    prompt: str
    answer: str
    workspace: Path
    result: RunResult | None
    suite_dir: Path
    judge: Model | str | None = None
    #: the model is the scripted one: judge checks use their ``script`` reply
    scripted: bool = False
    extra: dict[str, Any] = field(default_factory=dict)


class _Check(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = ""

    def problem(self, suite_dir: Path) -> str | None:
        """What is wrong with this check before anything runs (``None``: nothing)."""
        return None

    def label(self) -> str:
        return self.name or str(getattr(self, "type", "check"))

    def _result(self, passed: bool, detail: str = "", **extra: Any) -> CheckResult:
        return CheckResult(
            type=str(getattr(self, "type", "check")),
            name=self.label(),
            passed=passed,
            detail=detail,
            **extra,
        )


class _TextCheck(_Check):
    """A check of the answer, or of a workspace file when ``path`` is given."""

    path: str | None = None

    def text(self, ctx: CheckContext) -> tuple[str | None, str]:
        """The text checked and what it is, or ``None`` and why it is missing."""
        if self.path is None:
            return ctx.answer, "the answer"
        file = _inside(ctx.workspace, self.path)
        if file is None or not file.is_file():
            return None, f"{self.path} does not exist"
        return file.read_text(encoding="utf-8", errors="replace"), self.path


class ExactCheck(_TextCheck):
    type: Literal["exact"]
    expected: str
    strip: bool = True
    ignore_case: bool = False

    async def run(self, ctx: CheckContext) -> CheckResult:
        text, what = self.text(ctx)
        if text is None:
            return self._result(False, what)
        got, want = text, self.expected
        if self.strip:
            got, want = got.strip(), want.strip()
        if self.ignore_case:
            got, want = got.casefold(), want.casefold()
        if got == want:
            return self._result(True, f"{what} is {self.expected!r}")
        return self._result(False, f"{what} is {_short(text)!r}, expected {self.expected!r}")


class ContainsCheck(_TextCheck):
    type: Literal["contains"]
    text_: str | list[str] = Field(default_factory=list, alias="text")
    not_text: str | list[str] = Field(default_factory=list)
    ignore_case: bool = False

    async def run(self, ctx: CheckContext) -> CheckResult:
        text, what = self.text(ctx)
        if text is None:
            return self._result(False, what)
        return self._result(*_contains(text, what, self.text_, self.not_text, self.ignore_case))


class RegexCheck(_TextCheck):
    type: Literal["regex"]
    pattern: str
    ignore_case: bool = False
    multiline: bool = False

    def problem(self, suite_dir: Path) -> str | None:
        try:
            re.compile(self.pattern)
        except re.error as exc:
            return f"regex check: the pattern {self.pattern!r} is not valid ({exc})"
        return None

    async def run(self, ctx: CheckContext) -> CheckResult:
        text, what = self.text(ctx)
        if text is None:
            return self._result(False, what)
        flags = (re.IGNORECASE if self.ignore_case else 0) | (re.MULTILINE if self.multiline else 0)
        match = re.search(self.pattern, text, flags)
        if match:
            return self._result(True, f"{what} matches /{self.pattern}/ ({match.group(0)!r})")
        return self._result(False, f"{what} does not match /{self.pattern}/: {_short(text)!r}")


class FileExistsCheck(_Check):
    type: Literal["file_exists"]
    path: str
    exists: bool = True

    async def run(self, ctx: CheckContext) -> CheckResult:
        file = _inside(ctx.workspace, self.path)
        found = file is not None and file.exists()
        if found == self.exists:
            return self._result(True, f"{self.path} {'exists' if found else 'is absent'}")
        return self._result(False, f"{self.path} {'exists' if found else 'does not exist'}")


class FileContentsCheck(_Check):
    type: Literal["file_contents"]
    path: str
    equals: str | None = None
    contains: str | list[str] = Field(default_factory=list)
    not_contains: str | list[str] = Field(default_factory=list)
    regex: str | None = None
    json_: Any = Field(default=None, alias="json")
    strip: bool = True
    ignore_case: bool = False

    def problem(self, suite_dir: Path) -> str | None:
        if self.regex is not None:
            try:
                re.compile(self.regex)
            except re.error as exc:
                return f"file_contents check: the regex {self.regex!r} is not valid ({exc})"
        return None

    async def run(self, ctx: CheckContext) -> CheckResult:
        file = _inside(ctx.workspace, self.path)
        if file is None or not file.is_file():
            return self._result(False, f"{self.path} does not exist")
        text = file.read_text(encoding="utf-8", errors="replace")
        if self.equals is not None:
            got, want = text, self.equals
            if self.strip:
                got, want = got.strip(), want.strip()
            if self.ignore_case:
                got, want = got.casefold(), want.casefold()
            if got != want:
                return self._result(
                    False, f"{self.path} holds {_short(text)!r}, expected {self.equals!r}"
                )
        passed, detail = _contains(
            text, self.path, self.contains, self.not_contains, self.ignore_case
        )
        if not passed:
            return self._result(False, detail)
        if self.regex is not None and not re.search(self.regex, text):
            return self._result(False, f"{self.path} does not match /{self.regex}/")
        if self.json_ is not None:
            try:
                value = json.loads(text)
            except json.JSONDecodeError as exc:
                return self._result(False, f"{self.path} is not valid JSON ({exc.msg})")
            if value != self.json_:
                return self._result(
                    False, f"{self.path} holds {_short(json.dumps(value))}, expected {self.json_}"
                )
        return self._result(True, f"{self.path} is as expected")


class PythonCheck(_Check):
    type: Literal["python"]
    function: str
    args: dict[str, Any] = Field(default_factory=dict)

    def problem(self, suite_dir: Path) -> str | None:
        module, _, name = self.function.rpartition(":")
        if not module or not name:
            return (
                f"python check: function {self.function!r} must be 'module:function' or "
                "'file.py:function'"
            )
        if module.endswith(".py") and not (suite_dir / module).is_file():
            return f"python check: no file {module!r} next to the suite"
        return None

    def load(self, suite_dir: Path) -> Any:
        """The check function (a file next to the suite is loaded fresh each time)."""
        module_name, _, name = self.function.rpartition(":")
        path = suite_dir / module_name if module_name.endswith(".py") else None
        if path is None and (suite_dir / f"{module_name.replace('.', '/')}.py").is_file():
            path = suite_dir / f"{module_name.replace('.', '/')}.py"
        if path is not None:
            spec = importlib.util.spec_from_file_location(f"_loopwright_check_{path.stem}", path)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot load {path}")
            module = importlib.util.module_from_spec(spec)
            spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
        function = getattr(module, name, None)
        if not callable(function):
            raise AttributeError(f"{module_name} has no function {name!r}")
        return function

    async def run(self, ctx: CheckContext) -> CheckResult:
        try:
            function = self.load(ctx.suite_dir)
        except Exception as exc:
            return self._result(False, f"cannot load {self.function}: {type(exc).__name__}: {exc}")
        try:
            outcome = function(ctx.answer, ctx.workspace, ctx.result, **self.args)
            if inspect.isawaitable(outcome):
                outcome = await outcome
        except AssertionError as exc:
            return self._result(False, str(exc) or f"{self.function} failed an assertion")
        except Exception as exc:
            return self._result(False, f"{self.function} raised {type(exc).__name__}: {exc}")
        return self._from_outcome(outcome)

    def _from_outcome(self, outcome: Any) -> CheckResult:
        if isinstance(outcome, CheckResult):
            return outcome
        if outcome is None:  # a check written with asserts: none failed
            return self._result(True, f"{self.function} found no problem")
        if isinstance(outcome, bool):
            return self._result(outcome, f"{self.function} returned {outcome}")
        if isinstance(outcome, tuple) and len(outcome) == 2 and isinstance(outcome[0], bool):
            return self._result(outcome[0], str(outcome[1]))
        if isinstance(outcome, dict) and isinstance(outcome.get("passed"), bool):
            score = outcome.get("score")
            return self._result(
                outcome["passed"],
                str(outcome.get("detail", "")),
                score=int(score) if isinstance(score, int | float) else None,
            )
        return self._result(
            False,
            f"{self.function} returned {outcome!r}; return True/False, (passed, detail) or "
            "{'passed': ..., 'detail': ...}",
        )


class JudgeCheck(_Check):
    type: Literal["judge"]
    rubric: str = Field(min_length=1)
    threshold: int = Field(default=70, ge=0, le=100)
    files: list[str] | None = None
    script: str | None = None
    model: str | None = None

    async def run(self, ctx: CheckContext) -> CheckResult:
        from loopwright.evals.builtin import RubricEvaluator
        from loopwright.models.scripted import ScriptedModel

        judge: Model | str | None = self.model or ctx.judge
        if ctx.scripted and self.model is None:
            if self.script is None:
                return self._result(
                    False,
                    "no judge: the model is scripted and this check has no 'script' reply; "
                    "add one, or run with --judge-model",
                )
            judge = ScriptedModel([self.script, self.script], name="scripted:judge")
        if judge is None:
            return self._result(False, "no judge model; set --judge-model or EVALS_MODEL")
        evaluator = RubricEvaluator(pass_threshold=self.threshold)
        data = {
            "task": ctx.prompt,
            "rubric": self.rubric,
            "answer": ctx.answer,
            "files": workspace_snapshot(ctx.workspace, self.files),
        }
        try:
            result = await evaluator.evaluate(data, judge)
        except ModelError as exc:
            if exc.retryable:
                raise InfraError(f"the judge model failed: {exc}") from exc
            return self._result(False, f"the judge model failed: {exc}")
        finally:
            await evaluator.aclose()
        spent = {"tokens": int(result.usage.get("total_tokens", 0)), "cost_usd": result.cost_usd}
        if result.error is not None:
            return self._result(False, result.error, **spent)
        passed = result.passed and result.score >= self.threshold
        detail = f"score {result.score}: {result.reasoning}"
        if result.issues:
            detail += " Issues: " + "; ".join(result.issues)
        return self._result(passed, detail, score=result.score, **spent)


class GoldenCheck(_Check):
    type: Literal["golden"]
    question: str = Field(min_length=1)
    database: str | None = None
    csv: bool = True

    def problem(self, suite_dir: Path) -> str | None:
        try:
            from loopwright.healthcare.golden import GOLDEN_QUESTIONS
        except ImportError as exc:
            return (
                f"golden check: the healthcare checker needs DuckDB ({exc}); install it with "
                "`pip install 'loopwright[sql]'`"
            )
        known = sorted(question.id for question in GOLDEN_QUESTIONS)
        if self.question not in known:
            return (
                f"golden check: no golden question {self.question!r}; the questions are: "
                f"{', '.join(known)}"
            )
        if self.database is not None:
            database = self._database(suite_dir)
            if not database.is_file():
                return f"golden check: no database file {self.database!r} (relative to the suite)"
            return _golden_database_problem(self.question, self.database, database)
        return None

    def _database(self, suite_dir: Path) -> Path:
        assert self.database is not None
        return suite_dir / Path(self.database).expanduser()

    async def run(self, ctx: CheckContext) -> CheckResult:
        import asyncio

        from loopwright.healthcare.suite import saved_csv, verdict_detail

        if self.database is not None:
            database: object = self._database(ctx.suite_dir)
        else:
            database = ctx.extra.get("database")
        if not isinstance(database, str | Path):
            why = ctx.extra.get("database_problem") or (
                "the agent has no DuckDB database to compute it from"
            )
            return self._result(
                False,
                f"no reference for golden question {self.question!r}: {why}; run the suite "
                "with --agent healthcare on the generated claims database, or give the check "
                "a database: file",
            )
        csv = saved_csv(ctx.result.events, ctx.workspace) if self.csv and ctx.result else None
        verdict = await asyncio.to_thread(self._verdict, ctx.answer, database, csv)
        detail = verdict_detail(verdict, csv, csv_wanted=self.csv)
        return self._result(verdict.passed, detail, score=round(verdict.score * 100))

    def _verdict(self, answer: str, database: str | Path, csv: Path | None) -> Any:
        from loopwright.healthcare.check import check_golden
        from loopwright.healthcare.golden import get_question

        return check_golden(get_question(self.question), answer, database, csv=csv)


def _golden_database_problem(question: str, given: str, database: Path) -> str | None:
    """Why the golden check's own ``database:`` cannot give the question's reference."""
    import duckdb

    from loopwright.healthcare.suite import unanswerable_questions
    from loopwright.summaries import error_line

    try:
        problems = unanswerable_questions([question], database)
    except duckdb.Error as exc:
        return f"golden check: cannot open the database {given!r} ({error_line(exc)})"
    if question in problems:
        return (
            f"golden check: the database {given!r} cannot answer golden question "
            f"{question!r} ({problems[question]}); give it a generated claims database"
        )
    return None


CheckSpec: TypeAlias = (
    ExactCheck
    | ContainsCheck
    | RegexCheck
    | FileExistsCheck
    | FileContentsCheck
    | PythonCheck
    | JudgeCheck
    | GoldenCheck
)


async def run_check(check: CheckSpec, ctx: CheckContext) -> CheckResult:
    """Run one check; an unexpected exception fails the check (with its message), an
    :class:`InfraError` propagates (the attempt is retried)."""
    try:
        return await check.run(ctx)
    except InfraError:
        raise
    except Exception as exc:
        return CheckResult(
            type=check.type,
            name=check.label(),
            passed=False,
            detail=f"the check raised {type(exc).__name__}: {exc}",
        )


def workspace_snapshot(
    workspace: Path, paths: list[str] | None = None, limit: int = MAX_FILES_CHARS
) -> str:
    """The workspace's text files and their contents (``paths`` only, when given), cut at
    ``limit`` characters; what a judge needs to see the agent's work."""
    if paths is not None:
        files = [f for f in (_inside(workspace, p) for p in paths) if f is not None]
    else:
        files = sorted(
            p
            for p in workspace.rglob("*")
            if p.is_file()
            and not any(part.startswith(".") for part in p.relative_to(workspace).parts)
        )
    parts: list[str] = []
    used = 0
    for file in files:
        relative = (
            file.relative_to(workspace).as_posix() if file.is_relative_to(workspace) else str(file)
        )
        if not file.is_file():
            parts.append(f"--- {relative} (missing)")
            continue
        data = file.read_bytes()[: limit + 1]
        if b"\0" in data[:1024]:
            parts.append(f"--- {relative} (binary, {file.stat().st_size} bytes)")
            continue
        text = data.decode("utf-8", errors="replace")
        room = max(0, limit - used)
        if room == 0:
            parts.append(f"--- {relative} (not shown: the listing is full)")
            continue
        shown = text[:room]
        used += len(shown)
        cut = "\n[... cut]" if len(text) > len(shown) else ""
        parts.append(f"--- {relative}\n{shown}{cut}")
    return "\n".join(parts) if parts else "(the workspace is empty)"


def _inside(workspace: Path, relative: str) -> Path | None:
    """``workspace / relative`` if it stays inside the workspace, else ``None``."""
    candidate = (workspace / relative).resolve()
    root = workspace.resolve()
    return candidate if candidate == root or candidate.is_relative_to(root) else None


def _strings(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def _contains(
    text: str,
    what: str,
    wanted: str | list[str],
    unwanted: str | list[str],
    ignore_case: bool,
) -> tuple[bool, str]:
    haystack = text.casefold() if ignore_case else text
    for needle in _strings(wanted):
        if (needle.casefold() if ignore_case else needle) not in haystack:
            return False, f"{what} does not contain {needle!r}: {_short(text)!r}"
    for needle in _strings(unwanted):
        if (needle.casefold() if ignore_case else needle) in haystack:
            return False, f"{what} contains {needle!r}, which it must not"
    return True, f"{what} contains what it should"


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


__all__ = [
    "CHECK_TYPES",
    "CheckContext",
    "CheckResult",
    "CheckSpec",
    "ContainsCheck",
    "ExactCheck",
    "FileContentsCheck",
    "FileExistsCheck",
    "GoldenCheck",
    "InfraError",
    "JudgeCheck",
    "PythonCheck",
    "RegexCheck",
    "run_check",
    "workspace_snapshot",
]
