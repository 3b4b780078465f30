"""One-line summaries of tool calls and their output, shared by the terminal renderer, the
logs and the transcripts (no rich import: the logs use it too)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

#: Input keys that best say what a tool call is about, most telling first.
KEY_INPUTS = (
    "file_path",
    "path",
    "command",
    "pattern",
    "query",
    "sql",
    "url",
    "code",
    "description",
    "prompt",
)


def shorten(text: str, limit: int) -> str:
    """``text`` on one line, cut to ``limit`` characters with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: max(0, limit - 1)] + "…"


def key_input(tool_input: dict[str, Any], limit: int = 60, keys: Sequence[str] = KEY_INPUTS) -> str:
    """The input that best identifies a tool call (a path, a command...), shortened: the
    first of ``keys`` present, else the first string value, else the input as JSON."""
    for key in keys:
        value = tool_input.get(key)
        if isinstance(value, str) and value:
            return shorten(value, limit)
    for value in tool_input.values():
        if isinstance(value, str) and value:
            return shorten(value, limit)
    if not tool_input:
        return ""
    return shorten(json.dumps(tool_input, ensure_ascii=False, default=str), limit)


def first_line(text: str, limit: int = 80, *, count: bool = True) -> str:
    """The first non-empty line of ``text``, shortened, with a count of the others (unless
    ``count`` is false)."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return "(no output)"
    line = shorten(lines[0], limit)
    if count and len(lines) > 1:
        line += f" (+{len(lines) - 1} more lines)"
    return line


def error_line(exc: BaseException) -> str:
    """An exception's message in one line: its first non-empty line, or its class name."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__
