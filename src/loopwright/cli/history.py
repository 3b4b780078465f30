"""Printing saved sessions: the ``sessions list`` table and the ``sessions show`` history."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table
from rich.text import Text

from loopwright.cli.render import format_usage, key_input, shorten, summarise_result
from loopwright.messages import (
    ImageBlock,
    TextBlock,
    ThinkingBlock,
    ToolResultBlock,
    ToolUseBlock,
)
from loopwright.sessions.session import Session
from loopwright.sessions.store import (
    SessionDamaged,
    SessionInfo,
    SessionStore,
    listed_workspace,
)

if TYPE_CHECKING:
    from rich.console import JustifyMethod

    from loopwright.observability.stats import WarehouseUsage


def format_time(timestamp: float) -> str:
    """A local date and time to the minute."""
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(timestamp))


#: the narrowest title column the session list shows (narrower: no titles)
TITLE_MIN_WIDTH = 12


def print_session_list(console: Console, sessions: Sequence[SessionInfo], where: str) -> None:
    """The saved sessions, most recently updated first."""
    if not sessions:
        console.print(f"No saved sessions in {where}.")
        return
    rows = [
        (
            info.id,
            format_time(info.updated_at),
            str(info.message_count),
            f"{info.usage.total_tokens:,}",
            f"${info.usage.cost_usd:.4f}",
        )
        for info in sessions
    ]
    headers: list[tuple[str, JustifyMethod]] = [("ID", "left"), ("UPDATED", "left")]
    headers += [("MSGS", "right"), ("TOKENS", "right"), ("COST", "right")]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, (h, _) in enumerate(headers)]
    # every column but the title keeps its whole width (an ID cut short cannot be resumed);
    # the title gets what is left of the line, and is left out when that is too little
    room = console.width - sum(widths) - 2 * len(widths)
    table = Table(box=None, header_style="bold", pad_edge=False)
    for (header, justify), width in zip(headers, widths, strict=True):
        table.add_column(
            header,
            justify=justify,
            no_wrap=True,
            min_width=width,
            style="cyan" if header == "ID" else None,
        )
    titled = room >= TITLE_MIN_WIDTH
    if titled:
        table.add_column("TITLE", overflow="ellipsis", no_wrap=True, max_width=min(room, 60))
    for info, row in zip(sessions, rows, strict=True):
        table.add_row(*row, *([Text(shorten(info.title, 60))] if titled else []))
    console.print(table)


def print_session(console: Console, session: Session) -> None:
    """A session's history (text in full, tool calls and results abbreviated) and usage."""
    console.print(Text(f"session {session.id}", style="bold"))
    console.print(f"workspace  {session.workspace_dir}")
    console.print(
        f"created    {format_time(session.created_at)}   "
        f"updated {format_time(session.updated_at)}   messages {len(session.messages)}"
    )
    if session.summary:
        console.print()
        console.print(Text("summary (earlier turns were condensed)", style="dim"))
        console.print(Text(session.summary))
    for index, message in enumerate(session.messages):
        if index == session.context_start and session.context_start:
            console.print(Text("── context starts here (earlier messages are summarised)", "dim"))
        blocks = message.content
        only_results = bool(blocks) and all(isinstance(b, ToolResultBlock) for b in blocks)
        if only_results:
            # tool results belong visually to the calls above them
            for block in blocks:
                assert isinstance(block, ToolResultBlock)
                _print_result(console, block)
            continue
        console.print()
        console.print(
            Text(f"{message.role}:", style="bold green" if message.role == "user" else "bold blue")
        )
        for block in blocks:
            if isinstance(block, TextBlock):
                console.print(Text(block.text.rstrip("\n")))
            elif isinstance(block, ToolUseBlock):
                line = Text("  ▸ ", style="cyan")
                line.append(block.name, style="bold cyan")
                detail = key_input(block.input) if block.complete else "(input cut off)"
                if detail:
                    line.append(f" {detail}")
                console.print(line)
            elif isinstance(block, ToolResultBlock):
                _print_result(console, block)
            elif isinstance(block, ThinkingBlock):
                console.print(Text(f"  (thinking) {shorten(block.thinking, 100)}", style="dim"))
            elif isinstance(block, ImageBlock):
                console.print(Text(f"  [image {block.media_type}]", style="dim"))
    console.print()
    console.print(Text(f"usage      {format_usage(session.usage, session_warehouse(session))}"))
    if session.metadata:
        console.print(Text(f"metadata   {shorten(json.dumps(session.metadata, default=str), 200)}"))


def _print_result(console: Console, block: ToolResultBlock) -> None:
    mark, style = ("✗", "red") if block.is_error else ("✓", "green")
    line = Text(f"    {mark} ", style=style)
    text = block.text
    if not isinstance(block.content, str) and any(isinstance(b, ImageBlock) for b in block.content):
        text += "\n[image]"
    line.append(summarise_result(text), style="red" if block.is_error else "")
    console.print(line)


def list_sessions(console: Console) -> int:
    """``sessions list``."""
    from loopwright.cli.runtime import open_store

    store = open_store()
    try:
        print_session_list(console, store.list(), store.describe())
    finally:
        store.close()
    return 0


def session_warehouse(session: Session) -> WarehouseUsage | None:
    """What warehouses billed ``session``'s queries (BigQuery), from its stats records;
    ``None`` when nothing was billed or nothing recorded (a damaged file is no bill)."""
    from loopwright.observability.stats import WarehouseUsage, records_for_session

    try:
        return WarehouseUsage.of(records_for_session(session))
    except (OSError, ValueError):
        return None


def show_session(console: Console, session_id: str) -> int:
    """``sessions show ID``; an unknown id is a :class:`CliError`."""
    from loopwright.cli.runtime import mend_metadata, open_store

    store = open_store()
    try:
        session = load_saved(store, session_id)
        if mend_metadata(session):
            console.print(Text("metadata   (damaged in the store: not a mapping; set aside)"))
        print_session(console, session)
        from loopwright.observability.reports import build_report, print_report

        console.print()
        print_report(console, build_report(session, store=store))
    finally:
        store.close()
    return 0


def require_session(session_id: str) -> str | None:
    """The agent that made the session, as its metadata records it (``healthcare``;
    ``None``: not recorded); a :class:`CliError` unless the session is saved."""
    from loopwright.cli.runtime import AGENT_KEY, open_store

    store = open_store()
    try:
        session = load_saved(store, session_id)
    finally:
        store.close()
    metadata = session.metadata if isinstance(session.metadata, dict) else {}
    agent = metadata.get(AGENT_KEY)
    return agent if isinstance(agent, str) else None


def remove_session(console: Console, session_id: str, *, keep_workspace: bool) -> int:
    """``sessions rm ID``: forget the session and delete its workspace (if loopwright made it)."""
    from pathlib import Path

    from loopwright.cli.runtime import hold_idle, open_store

    store = open_store()
    try:
        # a turn running in another process would save the session again after this, and
        # its workspace would be gone from under it: its lease is taken first (or the
        # removal refused), and the store's delete gives it up with the session
        lease = hold_idle(store, session_id)
        try:
            try:
                found = store.load(session_id)
                workspace_dir = None if found is None else str(found.workspace_dir)
            except SessionDamaged:  # removed all the same: its row still names its workspace
                workspace_dir = listed_workspace(store, session_id)
            if workspace_dir is None:
                raise _unknown(session_id)
            store.delete(session_id)
        finally:
            lease.release_now()  # an unknown id leaves no lease behind
    finally:
        store.close()
    workspace = Path(workspace_dir).resolve()
    removed = ""
    if not keep_workspace and Session.remove_workspace(workspace, None):
        removed = f" and its workspace {workspace}"
    elif workspace.exists():
        removed = f"; its workspace {workspace} was kept"
    console.print(Text(f"Removed session {session_id}{removed}."))
    return 0


def load_saved(store: SessionStore, session_id: str) -> Session:
    """The saved session; a :class:`CliError` for an unknown id, a damaged record, or an id
    the store refuses (a usage error)."""
    from loopwright.cli.runtime import EXIT_USAGE, CliError, damaged_message

    try:
        session = store.load(session_id)
    except SessionDamaged as exc:
        raise CliError(damaged_message(exc)) from None
    except ValueError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    if session is None:
        raise _unknown(session_id)
    return session


def _unknown(session_id: str) -> Exception:
    from loopwright.cli.runtime import CliError

    return CliError(
        f"no saved session {session_id!r}; list saved sessions with `loopwright sessions list`"
    )
