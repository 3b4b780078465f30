"""TodoWrite: the list in the workspace, its rules, and its survival across a resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from loopwright import Agent, ScriptedModel, Session, call
from loopwright.sessions.sqlite import SQLiteStore
from loopwright.tools import ToolRegistry
from loopwright.tools.todo import (
    TODOS_PATH,
    Todo,
    TodoWriteTool,
    load_todos,
    render_todos,
)

PLAN: list[dict[str, Any]] = [
    {"content": "Read the data", "status": "completed", "activeForm": "Reading the data"},
    {"content": "Fit the model", "status": "in_progress", "activeForm": "Fitting the model"},
    {"content": "Write the report", "status": "pending", "activeForm": "Writing the report"},
]


def tools(workspace: Path) -> ToolRegistry:
    registry = ToolRegistry(workspace)
    registry.register(TodoWriteTool)
    return registry


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


async def test_the_list_is_written_to_the_workspace_and_rendered(tmp_path: Path) -> None:
    result = await tools(tmp_path).execute("TodoWrite", {"todos": PLAN})
    assert result["is_error"] is False
    lines = str(result["content"]).splitlines()
    assert lines[:4] == [
        "Todo list (3 items: 1 completed, 1 in progress, 1 pending):",
        "[x] Read the data",
        "[>] Fitting the model",
        "[ ] Write the report",
    ]
    stored = json.loads((tmp_path / TODOS_PATH).read_text())
    assert stored == {"todos": PLAN}
    assert _names(tmp_path / ".loopwright") == ["todos.json"]  # no temp file left behind
    assert load_todos(tmp_path) == [Todo.from_dict(item) for item in PLAN]


async def test_each_call_replaces_the_whole_list(tmp_path: Path) -> None:
    registry = tools(tmp_path)
    await registry.execute("TodoWrite", {"todos": PLAN})
    done = [dict(item, status="completed") for item in PLAN]
    await registry.execute("TodoWrite", {"todos": done[:2]})
    assert [t.content for t in load_todos(tmp_path)] == ["Read the data", "Fit the model"]
    assert {t.status for t in load_todos(tmp_path)} == {"completed"}
    cleared = await registry.execute("TodoWrite", {"todos": []})
    assert cleared["content"].startswith("The todo list is empty.")
    assert load_todos(tmp_path) == []


async def test_two_items_in_progress_are_refused_and_the_list_is_kept(tmp_path: Path) -> None:
    registry = tools(tmp_path)
    await registry.execute("TodoWrite", {"todos": PLAN})
    busy = [dict(item, status="in_progress") for item in PLAN]
    result = await registry.execute("TodoWrite", {"todos": busy})
    assert result["is_error"] is True
    message = str(result["content"])
    assert "3 items are in_progress ('Read the data'; 'Fit the model'; 'Write the report')" in (
        message
    )
    assert "mark only the one you are working on now as in_progress" in message
    assert load_todos(tmp_path) == [Todo.from_dict(item) for item in PLAN]  # nothing lost


async def test_bad_items_are_refused_by_the_schema(tmp_path: Path) -> None:
    registry = tools(tmp_path)
    wrong_status = [{"content": "x", "status": "doing", "activeForm": "Xing"}]
    result = await registry.execute("TodoWrite", {"todos": wrong_status})
    assert result["is_error"] is True
    assert "Invalid input for tool 'TodoWrite'" in str(result["content"])
    no_content = await registry.execute("TodoWrite", {"todos": [{"status": "pending"}]})
    assert no_content["is_error"] is True
    assert not (tmp_path / TODOS_PATH).exists()


async def test_calling_without_todos_changes_nothing_and_says_what_to_send(
    tmp_path: Path,
) -> None:
    """todos is required (a small model wrote ``{}`` again and again when it was not)."""
    registry = tools(tmp_path)
    await registry.execute("TodoWrite", {"todos": PLAN})
    missing = await registry.execute("TodoWrite", {})
    assert missing["is_error"] is True
    assert "todos" in str(missing["content"])
    assert load_todos(tmp_path) == [Todo.from_dict(item) for item in PLAN]


async def test_a_corrupt_file_is_reported_with_its_path(tmp_path: Path) -> None:
    path = tmp_path / TODOS_PATH
    path.parent.mkdir()
    path.write_text('{"todos": [{"content": "x", "status": "later"}]}')
    with pytest.raises(ValueError, match=r"todos\.json is not valid: .*status 'later'"):
        load_todos(tmp_path)
    fixed = await tools(tmp_path).execute("TodoWrite", {"todos": PLAN})
    assert fixed["is_error"] is False


async def test_a_todo_file_outside_the_workspace_is_refused(tmp_path: Path) -> None:
    workspace, outside = tmp_path / "ws", tmp_path / "outside"
    workspace.mkdir()
    outside.mkdir()
    (workspace / ".loopwright").symlink_to(outside)
    result = await tools(workspace).execute("TodoWrite", {"todos": PLAN})
    assert result["is_error"] is True
    assert "Access denied" in str(result["content"])
    assert _names(outside) == []


def test_render_todos_for_people() -> None:
    todos = [Todo("Plan", "completed", "Planning"), Todo("Build", "in_progress", "Building")]
    assert render_todos(todos, counts=False) == "[x] Plan\n[>] Building"
    assert render_todos([]) == "The todo list is empty."
    assert render_todos([Todo("Ship", "in_progress")], counts=False) == "[>] Ship"


def test_a_todo_list_survives_a_session_resume(tmp_path: Path) -> None:
    """Written in one process's agent, read by a new agent after Session.resume (SQLite)."""
    db = tmp_path / "sessions.db"
    first = Agent(
        ScriptedModel([call("TodoWrite", todos=PLAN), "Planned."]),
        tools=[TodoWriteTool],
        store=SQLiteStore(db),
        workspace_root=str(tmp_path / "ws"),
    )
    session = first.new_session("todo-demo")
    assert first.run_sync("Analyse the data", session).text == "Planned."
    first.store.close()

    store = SQLiteStore(db)  # as a new process would open it
    resumed = Session.resume("todo-demo", store=store)
    model = ScriptedModel([call("TodoWrite", todos=PLAN), "Still fitting the model."])
    second = Agent(
        model,
        tools=[TodoWriteTool],
        store=store,
        system_prompt=lambda s: "Your todo list:\n" + render_todos(load_todos(s.workspace_dir)),
        workspace_root=str(tmp_path / "ws"),
    )
    result = second.run_sync("Where are we?", resumed)
    assert result.text == "Still fitting the model."
    assert "[>] Fitting the model" in model.requests[0].system
    [tool_result] = [e for e in result.events if e.type == "tool_result"]
    assert tool_result["content"].startswith(render_todos([Todo.from_dict(item) for item in PLAN]))
    assert load_todos(resumed.workspace_dir) == [Todo.from_dict(item) for item in PLAN]
    store.close()
