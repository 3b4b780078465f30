"""Task suites: the file format of ``loopwright eval SUITE``, and loading it.

A suite is a YAML file (a mapping with ``tasks:``, or just a list of tasks) or a JSONL file
(one task per line; blank lines and ``#`` lines skipped). A task::

    - id: fix-config                      # letters, digits, '_', '-', '.'; unique
      prompt: "In config.ini change 'debug = no' to 'debug = yes'"
      files:                              # the workspace before the run
        config.ini: "debug = no\\n"         #   inline contents
        data.csv: {source: fixtures/data.csv}   # or a file/directory next to the suite
      checks:                             # all must pass (and the run must end on its own)
        - {type: file_contents, path: config.ini, contains: "debug = yes"}
        - {type: regex, pattern: "(?i)done"}
      limits: {max_turns: 10, timeout: 120, max_cost_usd: 0.5}
      tools: [Read, Edit]                 # default: the suite's list, else all built-ins
      script:                             # only used when the model is `scripted`
        - {call: Edit, input: {file_path: config.ini, old_string: "no", new_string: "yes"}}
        - "Done: debug is now yes ({{result}})."

Suite-level keys (YAML): ``name``, ``description``, ``system_prompt``, ``tools``, ``limits``
(defaults for every task) and ``judge`` (the model string of LLM-judge checks). The check
types are in :mod:`loopwright.evals.checkers`.

``script`` makes a suite runnable without an LLM: with the ``scripted`` model each task plays
its own script through the real tools, so the checks test real effects deterministically.
A turn is a string (the answer), or a mapping with ``text`` and one ``call`` + ``input`` or
several ``calls: [{name, input}]``. ``{{result}}`` in a turn's text is replaced by the last
tool result (so an answer can quote what a tool really returned). With a real model the
script is ignored.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from loopwright.evals.checkers import CheckSpec
from loopwright.messages import Message
from loopwright.models.base import ModelError, ModelRequest
from loopwright.models.scripted import ScriptedModel, ScriptedToolCall, ScriptedTurn
from loopwright.summaries import error_line

#: The built-in tools a suite may list, by name.
BUILTIN_TOOL_NAMES = (
    "Read",
    "Write",
    "Edit",
    "Glob",
    "Grep",
    "Bash",
    "BashOutput",
    "KillShell",
    "Python",
)
_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,79}")
RESULT_PLACEHOLDER = "{{result}}"


class SuiteError(ValueError):
    """A suite file that cannot be used; the message says where and what to fix."""


class Limits(BaseModel):
    """Per-task limits (``None``: no limit). ``timeout`` is the agent's wall-clock limit per
    attempt, in seconds."""

    model_config = ConfigDict(extra="forbid")

    max_turns: int | None = Field(default=None, ge=1)
    timeout: float | None = Field(default=None, gt=0)
    max_cost_usd: float | None = Field(default=None, gt=0)
    max_tokens_budget: int | None = Field(default=None, ge=1)

    def over(self, defaults: Limits) -> Limits:
        """These limits, with unset ones taken from ``defaults``."""
        merged = defaults.model_dump()
        merged.update({k: v for k, v in self.model_dump().items() if v is not None})
        return Limits(**merged)


DEFAULT_LIMITS = Limits(max_turns=20, timeout=300.0)


class FileSource(BaseModel):
    """A fixture copied from a file or directory next to the suite."""

    model_config = ConfigDict(extra="forbid")

    source: str


class ScriptCall(BaseModel):
    """One tool call of a scripted turn."""

    model_config = ConfigDict(extra="forbid")

    name: str
    input: dict[str, Any] = Field(default_factory=dict)


class ScriptStep(BaseModel):
    """One scripted model turn: text, then tool calls."""

    model_config = ConfigDict(extra="forbid")

    text: str = ""
    call: str | None = None
    input: dict[str, Any] = Field(default_factory=dict)
    calls: list[ScriptCall] = Field(default_factory=list)

    def tool_calls(self) -> list[ScriptCall]:
        single = [ScriptCall(name=self.call, input=self.input)] if self.call else []
        return [*single, *self.calls]


class Task(BaseModel):
    """One task of a suite (see the module docs for the fields)."""

    model_config = ConfigDict(extra="forbid")

    id: str
    prompt: str = Field(min_length=1)
    files: dict[str, str | FileSource] = Field(default_factory=dict)
    checks: list[Annotated[CheckSpec, Field(discriminator="type")]] = Field(default_factory=list)
    limits: Limits = Field(default_factory=Limits)
    tools: list[str] | None = None
    system_prompt: str | None = None
    script: list[str | ScriptStep] | None = None
    tags: list[str] = Field(default_factory=list)

    @field_validator("id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        if not _ID.fullmatch(value):
            raise ValueError(
                "a task id is 1-80 letters, digits, '_', '-' or '.', starting with a letter "
                "or digit"
            )
        return value

    @field_validator("files")
    @classmethod
    def _relative_paths(cls, value: dict[str, str | FileSource]) -> dict[str, str | FileSource]:
        for name in value:
            _check_relative(name, "a fixture path")
        return value

    @field_validator("tools")
    @classmethod
    def _known_tools(cls, value: list[str] | None) -> list[str] | None:
        unknown = [t for t in value or [] if t not in BUILTIN_TOOL_NAMES]
        if unknown:
            raise ValueError(
                f"unknown tool(s) {', '.join(unknown)}; use built-in tool names: "
                f"{', '.join(BUILTIN_TOOL_NAMES)}"
            )
        return value

    def scripted_model(self) -> ScriptedModel | None:
        """The task's script as a model (``None`` when the task has no script).

        The turn to play is found from the request (the assistant turns since the task's
        prompt), so a retried attempt starts the script again from the top.
        """
        if self.script is None:
            return None
        steps = [s if isinstance(s, ScriptStep) else ScriptStep(text=s) for s in self.script]
        task_id = self.id

        def turn(request: ModelRequest) -> ScriptedTurn:
            index = _turns_since_prompt(request.messages)
            if index >= len(steps):
                raise ModelError(
                    f"the script of task {task_id!r} has {len(steps)} turn(s) and the agent "
                    f"asked for turn {index + 1}; add turns to the script"
                )
            step = steps[index]
            text = step.text
            if RESULT_PLACEHOLDER in text:
                text = text.replace(RESULT_PLACEHOLDER, _last_result(request.messages).strip())
            calls = [ScriptedToolCall(c.name, dict(c.input)) for c in step.tool_calls()]
            return ScriptedTurn(text=text, tool_calls=calls)

        return ScriptedModel(turn, name=f"scripted:{task_id}")


class Suite(BaseModel):
    """A loaded suite: its tasks and the defaults they share."""

    model_config = ConfigDict(extra="forbid")

    name: str = ""
    description: str = ""
    system_prompt: str | None = None
    tools: list[str] | None = None
    limits: Limits = Field(default_factory=Limits)
    judge: str | None = None
    tasks: list[Task] = Field(min_length=1)
    #: the file the suite came from (fixture sources and Python checks are relative to it)
    path: Path | None = None
    #: SHA-256 of the file's bytes (a resume checks it is still the same suite)
    sha256: str = ""

    @model_validator(mode="after")
    def _unique_ids(self) -> Suite:
        seen: set[str] = set()
        for task in self.tasks:
            if task.id in seen:
                raise ValueError(f"task id {task.id!r} is used twice; give each task its own id")
            seen.add(task.id)
        if self.tools is not None:
            Task._known_tools(self.tools)
        return self

    @property
    def directory(self) -> Path:
        """Where relative fixture sources and check files are looked up."""
        return self.path.parent if self.path is not None else Path.cwd()

    def limits_for(self, task: Task) -> Limits:
        """The task's limits over the suite's, over :data:`DEFAULT_LIMITS`."""
        return task.limits.over(self.limits.over(DEFAULT_LIMITS))

    def tools_for(self, task: Task) -> list[str]:
        """The tool names the task's agent gets."""
        for names in (task.tools, self.tools):
            if names is not None:
                return list(names)
        return list(BUILTIN_TOOL_NAMES)

    def select(self, ids: Sequence[str]) -> Suite:
        """The suite with only the tasks named (an unknown id is a :class:`SuiteError`)."""
        known = {t.id for t in self.tasks}
        unknown = [i for i in ids if i not in known]
        if unknown:
            raise SuiteError(
                f"no task {', '.join(repr(u) for u in unknown)} in suite {self.name!r}; "
                f"its tasks are: {', '.join(sorted(known))}"
            )
        return self.model_copy(update={"tasks": [t for t in self.tasks if t.id in ids]})


def load_suite(path: str | os.PathLike[str]) -> Suite:
    """Read and check a suite file (``.yaml``/``.yml`` or ``.jsonl``/``.json``).

    Raises :class:`SuiteError` with the file, the task and what to fix.
    """
    file = Path(path)
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raise SuiteError(
            f"no suite file at {file}; give the path of a .yaml or .jsonl suite"
        ) from None
    except OSError as exc:
        raise SuiteError(f"cannot read the suite {file} ({exc.strerror})") from None
    text = raw.decode("utf-8", errors="replace")
    data: Any
    if file.suffix.lower() in (".jsonl", ".ndjson"):
        data = {"tasks": _jsonl_tasks(file, text)}
    else:
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise SuiteError(
                f"{file} is not valid YAML ({error_line(exc)}); fix the file"
            ) from None
    if isinstance(data, list):
        data = {"tasks": data}
    if not isinstance(data, dict) or "tasks" not in data:
        raise SuiteError(
            f"{file} has no tasks; write a list of tasks, or a mapping with a 'tasks:' list"
        )
    data.setdefault("name", file.stem)
    try:
        suite = Suite.model_validate({**data, "path": file.resolve(), "sha256": _sha(raw)})
    except ValidationError as exc:
        raise SuiteError(_describe(file, data, exc)) from None
    _check_sources(suite)
    return suite


# --- helpers -----------------------------------------------------------------------------


def _jsonl_tasks(file: Path, text: str) -> list[Any]:
    tasks: list[Any] = []
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        try:
            tasks.append(json.loads(stripped))
        except json.JSONDecodeError as exc:
            raise SuiteError(
                f"{file} line {number} is not valid JSON ({exc.msg}); each line must be one "
                "task object"
            ) from None
    return tasks


def _sha(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()


def _describe(file: Path, data: dict[str, Any], exc: ValidationError) -> str:
    """The first validation error as one sentence: where (task id, field) and what."""
    error = exc.errors()[0]
    loc = list(error["loc"])
    where = ""
    tasks = data.get("tasks")
    if len(loc) >= 2 and loc[0] == "tasks" and isinstance(loc[1], int):
        index = loc[1]
        task_id = None
        if isinstance(tasks, list) and index < len(tasks) and isinstance(tasks[index], dict):
            task_id = tasks[index].get("id")
        where = f"task {index + 1}" + (f" ({task_id})" if task_id else "")
        loc = loc[2:]
    field = ".".join(str(part) for part in loc if not _is_union_tag(part))
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "missing":
        message = "this field is required"
    elif error["type"] == "extra_forbidden":
        message = "unknown field (check its spelling)"
    elif error["type"] == "union_tag_invalid":
        from loopwright.evals.checkers import CHECK_TYPES

        message = f"unknown check type; use one of: {', '.join(CHECK_TYPES)}"
    elif error["type"] == "union_tag_not_found":
        message = "a check needs a 'type'"
    parts = [str(file), where, field]
    return f"{': '.join(p for p in parts if p)}: {message}; fix the suite file"


def _is_union_tag(part: object) -> bool:
    from loopwright.evals.checkers import CHECK_TYPES

    return isinstance(part, str) and (part in CHECK_TYPES or part in ("str", "FileSource"))


def _check_relative(name: str, what: str) -> None:
    pure = Path(name)
    if not name or pure.is_absolute() or ".." in pure.parts:
        raise ValueError(f"{what} must be relative and stay inside the workspace, got {name!r}")


def _check_sources(suite: Suite) -> None:
    base = suite.directory
    for task in suite.tasks:
        for target, spec in task.files.items():
            if isinstance(spec, FileSource) and not (base / spec.source).exists():
                raise SuiteError(
                    f"{suite.path}: task {task.id}: fixture {target!r} comes from "
                    f"{spec.source!r}, which does not exist next to the suite; fix the path"
                )
        for check in task.checks:
            problem = check.problem(base)
            if problem:
                raise SuiteError(f"{suite.path}: task {task.id}: {problem}; fix the suite file")


def _turns_since_prompt(messages: Sequence[Message]) -> int:
    count = 0
    for message in reversed(messages):
        if message.role == "user" and message.text.strip() and not message.tool_results:
            break
        if message.role == "assistant":
            count += 1
    return count


def _last_result(messages: Sequence[Message]) -> str:
    for message in reversed(messages):
        results = message.tool_results
        if results:
            return results[-1].text
    return ""


def write_fixtures(task: Task, workspace: Path, suite_dir: Path) -> None:
    """Put the task's fixture files in its workspace."""
    import shutil

    for target, spec in task.files.items():
        destination = workspace / target
        destination.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(spec, FileSource):
            source = suite_dir / spec.source
            if source.is_dir():
                shutil.copytree(source, destination, dirs_exist_ok=True)
            else:
                shutil.copyfile(source, destination)
        else:
            destination.write_text(spec, encoding="utf-8")


__all__ = [
    "BUILTIN_TOOL_NAMES",
    "DEFAULT_LIMITS",
    "FileSource",
    "Limits",
    "ScriptCall",
    "ScriptStep",
    "Suite",
    "SuiteError",
    "Task",
    "load_suite",
    "write_fixtures",
]
