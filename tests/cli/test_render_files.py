"""The terminal shows which files a call saved and which file each chart in the answer is:
a "files written" line was folded into "(+1 more lines)", and Rich drew an image as its
description alone (``🌆 Top 10``), leaving the reader to guess the file."""

from __future__ import annotations

import io

from rich.console import Console

from loopwright.cli.render import EventPrinter
from loopwright.events import TextDelta, ToolCall, ToolResult

WRITTEN = (
    "Top prescriber: 1234567890\n[Files written in the workspace: charts/top 10.png "
    "(21.3 KiB), humira.csv (812 bytes)]"
)
ANSWER = (
    "The chart: ![Top 10 HUMIRA prescribers in CA](charts/top10.png), and the table "
    "![](<charts/top 10.png>)."
)


def _printed(rich: bool) -> str:
    out = io.StringIO()
    console = Console(file=out, width=120, force_terminal=rich, color_system=None)
    printer = EventPrinter(console, rich=rich)
    printer.handle(ToolCall("c1", "Python", {"code": "plot()"}))
    printer.handle(ToolResult("c1", "Python", WRITTEN, False, 1200.0))
    printer.handle(TextDelta(ANSWER))
    printer.stop()
    return out.getvalue()


def test_a_rich_terminal_names_the_saved_files_and_each_charts_path() -> None:
    printed = _printed(rich=True)
    assert "Top prescriber: 1234567890" in printed
    assert "more lines" not in printed
    assert "saved: charts/top 10.png (21.3 KiB), humira.csv (812 bytes)" in printed
    assert "🌆 Top 10 HUMIRA prescribers in CA (charts/top10.png)" in printed
    assert "🌆 charts/top 10.png" in printed


def test_plain_output_names_the_saved_files() -> None:
    printed = _printed(rich=False)
    assert "✓ Python · 1.2 s · Top prescriber: 1234567890\n" in printed
    assert "    saved: charts/top 10.png (21.3 KiB), humira.csv (812 bytes)" in printed
    assert ANSWER in printed  # plain text is printed as the model wrote it


def test_the_usage_line_adds_up_when_tokens_were_cached() -> None:
    """ "2,260 tokens (1,000 in / 60 out)": the total counted the 1,200 cached tokens that
    the split left out."""
    from loopwright.cli.render import format_usage
    from loopwright.events import Usage

    cached = Usage(input_tokens=1_000, output_tokens=60, cache_read_tokens=1_200)
    assert format_usage(cached).startswith("2,260 tokens (1,000 in / 60 out / 1,200 cached)")
    written = Usage(input_tokens=10, output_tokens=5, cache_write_tokens=300)
    assert format_usage(written).startswith(
        "315 tokens (10 in / 5 out / 0 cached / 300 cache writes)"
    )
    plain = Usage(input_tokens=10, output_tokens=5)
    assert format_usage(plain).startswith("15 tokens (10 in / 5 out) · $")
