"""``TodoWrite``: the agent's task list, kept in its workspace.

A long task goes better when the model writes down its plan and ticks steps off: it keeps
its place across many turns, and a person watching can see where it is. The list is the
Claude Code one: ``{"todos": [{"content", "status", "activeForm"}]}`` with ``status`` one of
``pending``, ``in_progress``, ``completed``, written whole on every call, with at most one
item in progress (the one being worked on now).

It lives in the workspace at ``.loopwright/todos.json`` (replaced atomically), so it belongs
to the session: a resumed session finds its list where it left it. :func:`load_todos` and
:func:`render_todos` are what the CLI's ``/todos`` and the web UI show.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Literal, TypeAlias, cast, get_args

from loopwright.sandbox.paths import SecurityError
from loopwright.tools.base import BaseTool, ToolResult, error, ok

TodoStatus: TypeAlias = Literal["pending", "in_progress", "completed"]
STATUSES: Final[tuple[str, ...]] = get_args(TodoStatus)
#: Where the list is kept, relative to the workspace.
TODOS_PATH: Final = os.path.join(".loopwright", "todos.json")
MAX_TODOS: Final = 200
_MARKS: Final = {"completed": "[x]", "in_progress": "[>]", "pending": "[ ]"}


@dataclass(frozen=True, slots=True)
class Todo:
    """One item: what to do (``content``), how to say it is being done (``active_form``,
    e.g. "Running the tests"), and its ``status``."""

    content: str
    status: TodoStatus = "pending"
    active_form: str = ""

    def to_dict(self) -> dict[str, str]:
        """The wire and file form (``activeForm``, as Claude Code spells it)."""
        return {"content": self.content, "status": self.status, "activeForm": self.active_form}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Todo:
        """An item from its wire form; ``ValueError`` saying what is wrong otherwise."""
        if not isinstance(data, Mapping):
            raise ValueError(f"a todo must be an object, got {type(data).__name__}")
        content = data.get("content")
        if not isinstance(content, str) or not content.strip():
            raise ValueError("every todo needs a non-empty 'content'")
        status = data.get("status", "pending")
        if status not in STATUSES:
            raise ValueError(
                f"todo {content.strip()!r} has status {status!r}; use one of {', '.join(STATUSES)}"
            )
        active = data.get("activeForm", data.get("active_form", ""))
        if not isinstance(active, str):
            raise ValueError(f"todo {content.strip()!r} has a non-string 'activeForm'")
        return cls(content.strip(), cast(TodoStatus, status), active.strip())


def todos_path(workspace_dir: str | os.PathLike[str]) -> str:
    """The file a workspace's todo list is kept in."""
    return os.path.join(os.fspath(workspace_dir), TODOS_PATH)


def load_todos(workspace_dir: str | os.PathLike[str]) -> list[Todo]:
    """The workspace's todo list (empty when there is none).

    Raises ``ValueError`` naming the file when it is not a valid todo list.
    """
    path = todos_path(workspace_dir)
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        return []
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"cannot read the todo list {path}: {exc}") from None
    try:
        if not isinstance(data, dict) or not isinstance(data.get("todos"), list):
            raise ValueError('expected {"todos": [...]}')
        return [Todo.from_dict(item) for item in data["todos"]]
    except ValueError as exc:
        raise ValueError(f"the todo list {path} is not valid: {exc}") from None


def save_todos(workspace_dir: str | os.PathLike[str], todos: Iterable[Todo]) -> str:
    """Replace the workspace's todo list in one step (a reader never sees half a file);
    returns the file's path."""
    path = todos_path(workspace_dir)
    directory = os.path.dirname(path)
    os.makedirs(directory, exist_ok=True)
    data = json.dumps({"todos": [t.to_dict() for t in todos]}, ensure_ascii=False, indent=1)
    descriptor, temp = tempfile.mkstemp(prefix=".todos-", suffix=".json", dir=directory)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(data + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    return path


def check_todos(todos: list[Todo]) -> None:
    """Raise ``ValueError`` (with what to do) if the list breaks a rule: at most one item
    in progress, at most :data:`MAX_TODOS` items."""
    if len(todos) > MAX_TODOS:
        raise ValueError(
            f"the list has {len(todos)} items, more than {MAX_TODOS}; merge small steps"
        )
    active = [t.content for t in todos if t.status == "in_progress"]
    if len(active) > 1:
        shown = "; ".join(repr(c) for c in active)
        raise ValueError(
            f"{len(active)} items are in_progress ({shown}); mark only the one you are "
            "working on now as in_progress, and the others pending or completed"
        )


def render_todos(todos: Iterable[Todo], *, counts: bool = True) -> str:
    """The list as plain text, one line per item: ``[x]`` done, ``[>]`` in progress (shown
    by its active form), ``[ ]`` pending; with a count line first unless ``counts=False``."""
    items = list(todos)
    if not items:
        return "The todo list is empty."
    lines: list[str] = []
    if counts:
        done = sum(t.status == "completed" for t in items)
        active = sum(t.status == "in_progress" for t in items)
        lines.append(
            f"Todo list ({len(items)} items: {done} completed, {active} in progress, "
            f"{len(items) - done - active} pending):"
        )
    for todo in items:
        text = todo.active_form if todo.status == "in_progress" and todo.active_form else None
        lines.append(f"{_MARKS[todo.status]} {text or todo.content}")
    return "\n".join(lines)


class TodoWriteTool(BaseTool):
    """Write the agent's whole todo list; answers with the list as the model should see it."""

    sequential = True
    kind: ClassVar[str] = "internal"

    @property
    def name(self) -> str:
        return "TodoWrite"

    @property
    def schema(self) -> dict[str, Any]:
        return {
            "name": "TodoWrite",
            "description": (
                "Keep a todo list for the current task: plan multi-step work, then update it "
                "as you go. Send the whole list every time (it replaces the previous one). "
                "Mark exactly one item in_progress while you work on it and mark it completed "
                "as soon as it is done; add items you discover. An empty list clears it."
            ),
            "input_schema": {
                "type": "object",
                "properties": {
                    "todos": {
                        "type": "array",
                        "description": "The complete, updated todo list",
                        "maxItems": MAX_TODOS,
                        "items": {
                            "type": "object",
                            "properties": {
                                "content": {
                                    "type": "string",
                                    "minLength": 1,
                                    "description": "What to do, imperative: 'Run the tests'",
                                },
                                "status": {"type": "string", "enum": list(STATUSES)},
                                "activeForm": {
                                    "type": "string",
                                    "minLength": 1,
                                    "description": "Shown while in progress: 'Running the tests'",
                                },
                            },
                            "required": ["content", "status", "activeForm"],
                        },
                    }
                },
                # without it `{}` was a valid call, which a small model wrote again and again
                "required": ["todos"],
                "additionalProperties": False,
            },
        }

    async def execute(self, input: dict[str, Any]) -> ToolResult:
        return await asyncio.to_thread(self._write, input.get("todos"))

    def _write(self, raw: Any) -> ToolResult:
        try:  # a `.loopwright` symlinked out of the workspace must not take the list along
            self.path_validator.validate(todos_path(self.workspace_dir), "TodoWrite")
        except SecurityError as exc:
            return error(str(exc))
        if raw is None:  # the schema requires todos; a call that skips validation
            try:
                current = render_todos(load_todos(self.workspace_dir))
            except ValueError as exc:
                current = f"{exc}; write the whole list again."
            return error(
                'todos is missing: send the whole list, {"todos": [{"content": ..., "status": '
                '"pending", "activeForm": ...}, ...]} ([] clears it). Nothing was changed. '
                f"The current list: {current}"
            )
        if not isinstance(raw, list):
            return error("todos must be a list of {content, status, activeForm} objects.")
        try:
            todos = [Todo.from_dict(item) for item in raw]
            check_todos(todos)
        except ValueError as exc:
            return error(f"Todo list not saved: {exc}. Send the whole corrected list.")
        save_todos(self.workspace_dir, todos)
        return ok(
            render_todos(todos) + "\n\nKeep the list current: one item in_progress at a time, "
            "completed as soon as it is done.",
            metadata={"todos": [t.to_dict() for t in todos]},
        )


__all__ = [
    "MAX_TODOS",
    "STATUSES",
    "TODOS_PATH",
    "Todo",
    "TodoStatus",
    "TodoWriteTool",
    "check_todos",
    "load_todos",
    "render_todos",
    "save_todos",
    "todos_path",
]
