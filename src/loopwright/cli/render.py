"""Turning a run's events into text a person reads in a terminal.

The answer streams as it arrives; each tool call gets a line with its name and key input,
and its result a line with the outcome, duration and the first line of output; the run
ends with a footer (stop reason, tokens, the model's cost, and, when the run's queries were
billed by a warehouse such as BigQuery, the bytes billed and their estimated cost apart).

On a terminal it is richer: a spinner while the model thinks or a tool runs, the answer
rendered as Markdown as it streams, and a panel per finished tool call. Piped output stays
plain text, line by line.
"""

from __future__ import annotations

import re
import sys
import time
from typing import IO, TYPE_CHECKING

from rich.console import Console, Group
from rich.live import Live
from rich.markdown import Markdown
from rich.markup import escape
from rich.panel import Panel
from rich.status import Status
from rich.text import Text

from loopwright.events import (
    ApprovalRequest,
    Done,
    Error,
    Event,
    Notice,
    TextDelta,
    ToolCall,
    ToolResult,
    Usage,
)
from loopwright.summaries import first_line
from loopwright.summaries import key_input as key_input
from loopwright.summaries import shorten as shorten

if TYPE_CHECKING:
    from loopwright.observability.stats import WarehouseUsage


def make_console(file: IO[str] | None = None) -> Console:
    """A console for human output; plain text (no colour) when not a terminal."""
    return Console(file=file or sys.stdout, soft_wrap=True, highlight=False)


def summarise_result(content: str, limit: int = 80) -> str:
    """The first non-empty line of a tool's output, shortened, with a count of the rest."""
    return first_line(content, limit)


#: The closing line of a ``Python`` or ``Bash`` result naming the files it wrote.
_WRITTEN = re.compile(r"\n?\[(?:Files|Images) written in the workspace: (.*)\]\s*\Z")
#: A Markdown image: ``![alt](path)``, ``![alt](<path with spaces> "title")``.
_IMAGE = re.compile(r"!\[([^\]]*)\]\(\s*(<[^>\n]*>|[^)\s]+)(?:\s+\"[^\"\n]*\")?\s*\)")


def split_written(content: str) -> tuple[str, str | None]:
    """A tool's output without its closing "files written" line, and what that line lists
    (``None``: it has none), so the files a call saved are shown, not folded into "(+1 more
    lines)"."""
    found = _WRITTEN.search(content)
    if found is None:
        return content, None
    return content[: found.start()], found.group(1)


def images_as_paths(markdown: str) -> str:
    """``markdown`` with each image written as its description and path (``🌆 Top 10
    (`top10.png`)``): a terminal cannot draw it, and Rich would show the description alone,
    so the reader could not tell which file to open."""

    def written(found: re.Match[str]) -> str:
        alt, path = found.group(1).strip(), found.group(2).strip("<>")
        return f"🌆 {alt} (`{path}`)" if alt else f"🌆 `{path}`"

    return _IMAGE.sub(written, markdown)


def format_duration(ms: float) -> str:
    """``12 ms`` under a second, ``1.5 s`` above."""
    return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.1f} s"


def format_usage(usage: Usage, warehouse: WarehouseUsage | None = None) -> str:
    """Tokens, cost and calls on one line; with ``warehouse`` (queries a warehouse billed),
    what it billed and its estimated cost, apart from the model's."""
    split = f"{usage.input_tokens:,} in / {usage.output_tokens:,} out"
    if usage.cache_read_tokens or usage.cache_write_tokens:  # the total counts them too
        split += f" / {usage.cache_read_tokens:,} cached"
        if usage.cache_write_tokens:
            split += f" / {usage.cache_write_tokens:,} cache writes"
    parts = [
        f"{usage.total_tokens:,} tokens ({split})",
        f"${usage.cost_usd:.4f}",
        f"{usage.model_calls} model call{'s' if usage.model_calls != 1 else ''}",
        f"{usage.tool_calls} tool call{'s' if usage.tool_calls != 1 else ''}",
    ]
    if usage.tool_errors:
        parts.append(f"{usage.tool_errors} failed")
    if warehouse is not None and warehouse.queries:
        parts[1] += " model"  # two costs now: say which is which
        parts += _warehouse_parts(warehouse, usage.cost_usd)
    return " · ".join(parts)


def _warehouse_parts(warehouse: WarehouseUsage, model_usd: float) -> list[str]:
    """``BigQuery 30 MB billed (3 queries) ≈ $0.0002`` and the total with the model's cost;
    with a price that cannot be used, the bytes and why there is no estimate (the run is
    over: never an error here)."""
    from loopwright.observability.reports import format_bytes, warehouse_summary

    try:
        summary = warehouse_summary(warehouse)
        total = model_usd + warehouse.cost_usd()
    except ValueError as exc:
        return [f"{warehouse.database} {format_bytes(warehouse.bytes_billed)} billed ({exc})"]
    return [summary, f"≈ ${total:.4f} in all"]


class EventPrinter:
    """Prints one run's events for a person, as they arrive.

    ``rich`` (default: whether the console is a terminal) turns on the spinner, Markdown
    rendering of the answer and tool panels. Notices go to ``notices`` (default: a console
    on stderr), so they never mix with the answer when stdout is piped.
    """

    def __init__(
        self, console: Console, *, rich: bool | None = None, notices: Console | None = None
    ) -> None:
        self.console = console
        self.notices = notices if notices is not None else make_console(sys.stderr)
        self.rich = console.is_terminal if rich is None else rich
        self.started = time.perf_counter()
        self._at_line_start = True
        self._wrote_text = False
        self._status: Status | None = None
        self._live: Live | None = None
        self._markdown = ""
        self._calls: dict[str, ToolCall] = {}

    def restart(self) -> None:
        """Start timing a new run (the chat reuses one printer)."""
        self.started = time.perf_counter()
        self._wrote_text = False
        self._calls.clear()
        self.thinking()

    def thinking(self, what: str = "thinking…") -> None:
        """Show a spinner until the next output (terminal only)."""
        if not self.rich:
            return
        self._end_markdown()
        if self._status is None:
            self._status = self.console.status(what, spinner="dots")
            self._status.start()
        else:
            self._status.update(what)

    def stop(self) -> None:
        """Stop the spinner and finish the streamed answer (before prompting the user)."""
        self._stop_status()
        self._end_markdown()
        self.end_line()

    def _stop_status(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None

    def _end_markdown(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None
            self._markdown = ""

    def end_line(self) -> None:
        """Finish a line of streamed text, if one is open."""
        if not self._at_line_start:
            self.console.file.write("\n")
            self._at_line_start = True

    def _line(self, text: Text | str | Panel) -> None:
        self._stop_status()
        self._end_markdown()
        self.end_line()
        self.console.print(text)
        self._at_line_start = True

    def _text(self, text: str) -> None:
        self._wrote_text = True
        if self.rich:
            self._stop_status()
            self._markdown += text
            if self._live is None:
                self._live = Live(
                    Markdown(images_as_paths(self._markdown)),
                    console=self.console,
                    refresh_per_second=10,
                    vertical_overflow="visible",
                )
                self._live.start()
            else:
                self._live.update(Markdown(images_as_paths(self._markdown)))
            return
        out = self.console.file
        out.write(text)
        out.flush()
        self._at_line_start = text.endswith("\n")

    def handle(self, event: Event) -> None:
        """Print one event."""
        if event.agent is not None and not isinstance(event, ApprovalRequest):
            self._sub_agent(event)
            return
        if isinstance(event, TextDelta):
            if event.text:
                self._text(event.text)
        elif isinstance(event, ToolCall):
            self._calls[event.id] = event
            detail = key_input(event.input)
            if self.rich:
                self._end_markdown()
                self.thinking(f"running {event.name}{': ' + detail if detail else ''}…")
                return
            line = Text("▸ ", style="cyan")
            line.append(event.name, style="bold cyan")
            if detail:
                line.append(f" {detail}")
            self._line(line)
        elif isinstance(event, ApprovalRequest):
            self.stop()
        elif isinstance(event, ToolResult) and self.rich:
            self._line(self._panel(event))
            self.thinking()
        elif isinstance(event, ToolResult):
            mark, style = ("✗", "red") if event.is_error else ("✓", "green")
            line = Text("  ")
            line.append(f"{mark} {event.name}", style=style)
            line.append(f" · {format_duration(event.duration_ms)} · ", style="dim")
            content, written = split_written(event.content)
            line.append(summarise_result(content), style="red" if event.is_error else "")
            if written is not None:
                line.append(f"\n    saved: {written}", style="dim")
            self._line(line)
        elif isinstance(event, Error) and event.retrying:
            void = " (the partial answer above is discarded)" if event.discard_partial else ""
            self._line(f"[bold yellow]retrying:[/] {escape(event.message)}{void}")
        elif isinstance(event, Error):
            retry = " (it may work if you try again later)" if event.retryable else ""
            self._line(f"[bold red]error:[/] {escape(event.message)}{retry}")
        elif isinstance(event, Notice):
            self._notice(Text(f"notice: {event.message}", style="dim yellow"))
        elif isinstance(event, Done):
            self.footer(event)

    def _panel(self, result: ToolResult) -> Panel:
        """A finished tool call: what it was asked, what came back, how long it took."""
        call = self._calls.pop(result.id, None)
        detail = key_input(call.input, 90) if call is not None else ""
        style = "red" if result.is_error else "green"
        content, written = split_written(result.content)
        body = Text(summarise_result(content, 110), style="red" if result.is_error else "")
        parts: list[Text] = [Text(detail, style="bold")] if detail else []
        saved = [Text(f"saved: {written}", style="cyan")] if written is not None else []
        return Panel(
            Group(*parts, body, *saved),
            title=Text(f"{'✗' if result.is_error else '✓'} {result.name}", style=f"bold {style}"),
            title_align="left",
            subtitle=Text(format_duration(result.duration_ms), style="dim"),
            subtitle_align="right",
            border_style=style,
            expand=False,
        )

    def _sub_agent(self, event: Event) -> None:
        """A sub-agent's events: one dim line per tool call and result (its text is not
        streamed; its answer comes back as the Delegate result)."""
        if isinstance(event, ToolCall):
            detail = key_input(event.input)
            self._line(Text(f"  [{event.agent}] ▸ {event.name} {detail}".rstrip(), style="dim"))
        elif isinstance(event, ToolResult):
            mark = "✗" if event.is_error else "✓"
            line = f"  [{event.agent}] {mark} {event.name} · {format_duration(event.duration_ms)}"
            self._line(Text(line, style="dim red" if event.is_error else "dim"))
        elif isinstance(event, Error) and not event.retrying:
            self._line(Text(f"  [{event.agent}] error: {event.message}", style="red"))
        elif isinstance(event, Notice):
            self._notice(Text(f"  [{event.agent}] notice: {event.message}", style="dim yellow"))

    def _notice(self, line: Text) -> None:
        """One line on the notices' console. On a terminal, which both consoles may share,
        it goes between the lines of the answer (the spinner paused while it is written);
        piped, the answer is left as it is."""
        spinning = self._status is not None
        self._stop_status()
        self._end_markdown()
        if self.console.is_terminal:
            self.end_line()
        self.notices.print(line)
        if spinning:
            self.thinking()

    def footer(self, done: Done) -> None:
        """The closing line: how the run ended, what it used, how long it took."""
        elapsed_ms = (time.perf_counter() - self.started) * 1000
        style = (
            "green"
            if done.stop_reason == "end_turn"
            else ("red" if done.stop_reason == "error" else "yellow")
        )
        self._stop_status()
        self._end_markdown()
        self.end_line()
        if self._wrote_text and not self.rich:
            self.console.print()
        line = Text("── ", style="dim")
        line.append(done.stop_reason, style=f"bold {style}")
        if done.detail and done.stop_reason != "error":
            line.append(f" ({done.detail})", style=style)
        usage = format_usage(done.usage, done.usage.warehouse)
        line.append(f" · {usage} · {format_duration(elapsed_ms)}", style="dim")
        self.console.print(line)
        self._at_line_start = True
