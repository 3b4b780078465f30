"""Turning a run's events into text a person reads in a terminal.

The answer streams as it arrives; each tool call gets a line with its name and key input,
and its result a line with the outcome, duration and the first line of output; the run
ends with a footer (stop reason, tokens, cost).
"""

from __future__ import annotations

import json
import sys
import time
from typing import IO, Any

from rich.console import Console
from rich.markup import escape
from rich.text import Text

from loopwright.events import Done, Error, Event, TextDelta, ToolCall, ToolResult, Usage

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


def make_console(file: IO[str] | None = None) -> Console:
    """A console for human output; plain text (no colour) when not a terminal."""
    return Console(file=file or sys.stdout, soft_wrap=True, highlight=False)


def shorten(text: str, limit: int) -> str:
    """``text`` on one line, cut to ``limit`` characters with an ellipsis."""
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: max(0, limit - 1)] + "…"


def key_input(tool_input: dict[str, Any], limit: int = 60) -> str:
    """The input that best identifies a tool call (a path, a command...), shortened."""
    for key in KEY_INPUTS:
        value = tool_input.get(key)
        if isinstance(value, str) and value:
            return shorten(value, limit)
    for value in tool_input.values():
        if isinstance(value, str) and value:
            return shorten(value, limit)
    if not tool_input:
        return ""
    return shorten(json.dumps(tool_input, ensure_ascii=False, default=str), limit)


def summarise_result(content: str, limit: int = 80) -> str:
    """The first non-empty line of a tool's output, shortened, with a count of the rest."""
    lines = [line for line in content.splitlines() if line.strip()]
    if not lines:
        return "(no output)"
    first = shorten(lines[0], limit)
    if len(lines) > 1:
        first += f" (+{len(lines) - 1} more lines)"
    return first


def format_duration(ms: float) -> str:
    """``12 ms`` under a second, ``1.5 s`` above."""
    return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.1f} s"


def format_usage(usage: Usage) -> str:
    """Tokens, cost and calls on one line."""
    parts = [
        f"{usage.total_tokens:,} tokens ({usage.input_tokens:,} in / {usage.output_tokens:,} out)",
        f"${usage.cost_usd:.4f}",
        f"{usage.model_calls} model call{'s' if usage.model_calls != 1 else ''}",
        f"{usage.tool_calls} tool call{'s' if usage.tool_calls != 1 else ''}",
    ]
    if usage.tool_errors:
        parts.append(f"{usage.tool_errors} failed")
    return " · ".join(parts)


class EventPrinter:
    """Prints one run's events for a person, as they arrive."""

    def __init__(self, console: Console) -> None:
        self.console = console
        self.started = time.perf_counter()
        self._at_line_start = True
        self._wrote_text = False

    def restart(self) -> None:
        """Start timing a new run (the chat reuses one printer)."""
        self.started = time.perf_counter()
        self._wrote_text = False

    def end_line(self) -> None:
        """Finish a line of streamed text, if one is open."""
        if not self._at_line_start:
            self.console.file.write("\n")
            self._at_line_start = True

    def _line(self, text: Text | str) -> None:
        self.end_line()
        self.console.print(text)
        self._at_line_start = True

    def handle(self, event: Event) -> None:
        """Print one event."""
        if isinstance(event, TextDelta):
            if not event.text:
                return
            out = self.console.file
            out.write(event.text)
            out.flush()
            self._at_line_start = event.text.endswith("\n")
            self._wrote_text = True
        elif isinstance(event, ToolCall):
            line = Text("▸ ", style="cyan")
            line.append(event.name, style="bold cyan")
            detail = key_input(event.input)
            if detail:
                line.append(f" {detail}")
            self._line(line)
        elif isinstance(event, ToolResult):
            mark, style = ("✗", "red") if event.is_error else ("✓", "green")
            line = Text("  ")
            line.append(f"{mark} {event.name}", style=style)
            line.append(f" · {format_duration(event.duration_ms)} · ", style="dim")
            line.append(summarise_result(event.content), style="red" if event.is_error else "")
            self._line(line)
        elif isinstance(event, Error) and event.retrying:
            void = " (the partial answer above is discarded)" if event.discard_partial else ""
            self._line(f"[bold yellow]retrying:[/] {escape(event.message)}{void}")
        elif isinstance(event, Error):
            retry = " (it may work if you try again later)" if event.retryable else ""
            self._line(f"[bold red]error:[/] {escape(event.message)}{retry}")
        elif isinstance(event, Done):
            self.footer(event)

    def footer(self, done: Done) -> None:
        """The closing line: how the run ended, what it used, how long it took."""
        elapsed_ms = (time.perf_counter() - self.started) * 1000
        style = (
            "green"
            if done.stop_reason == "end_turn"
            else ("red" if done.stop_reason == "error" else "yellow")
        )
        self.end_line()
        if self._wrote_text:
            self.console.print()
        line = Text("── ", style="dim")
        line.append(done.stop_reason, style=f"bold {style}")
        if done.detail and done.stop_reason != "error":
            line.append(f" ({done.detail})", style=style)
        line.append(f" · {format_usage(done.usage)} · {format_duration(elapsed_ms)}", style="dim")
        self.console.print(line)
        self._at_line_start = True
