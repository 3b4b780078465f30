"""Python checks used by basic.yaml.

Each is called as ``check(answer, workspace, result, **args)``: the agent's final answer, the
task's workspace directory and the agent's ``RunResult``. Return ``True``/``False``, a
``(passed, detail)`` pair, or fail with an ``AssertionError`` whose message says why.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any


def fibonacci_file(answer: str, workspace: Path, result: Any, count: int = 10) -> tuple[bool, str]:
    """fib.txt holds the first ``count`` Fibonacci numbers, one per line."""
    path = workspace / "fib.txt"
    assert path.is_file(), "fib.txt was not written"
    numbers = [int(line) for line in path.read_text().split()]
    expected = [0, 1]
    while len(expected) < count:
        expected.append(expected[-1] + expected[-2])
    return numbers == expected[:count], f"fib.txt holds {numbers}"


def todo_count_matches(answer: str, workspace: Path, result: Any) -> tuple[bool, str]:
    """The number in the answer is the real number of TODO comments in the .py files."""
    real = sum(p.read_text().count("TODO") for p in workspace.rglob("*.py"))
    said = [int(n) for n in re.findall(r"\b\d+\b", answer)]
    return real in said, f"the .py files hold {real} TODOs; the answer says {said}"


def access_was_denied(answer: str, workspace: Path, result: Any) -> bool:
    """The agent tried to read outside the workspace and the tool refused."""
    refused = [
        event for event in result.events if event["type"] == "tool_result" and event["is_error"]
    ]
    assert refused, "no tool call was refused"
    return any("denied" in event["content"].lower() for event in refused)
