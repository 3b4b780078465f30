"""``loopwright chat``: a read-eval-print loop over one session.

Lines come from the terminal (with line editing when ``readline`` is available) or from a
pipe, read until end of input. Ctrl-C during an answer stops that turn only; ``/exit``,
Ctrl-D or the end of piped input quits.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys

from rich.console import Console
from rich.text import Text

from loopwright.cli.render import EventPrinter, make_console
from loopwright.cli.run import close_agent, drive, resume_hint
from loopwright.cli.runtime import Setup, setup

PROMPT = "you> "

HELP = """\
Type a message and press Enter; the agent answers, using its tools as needed.
Commands:
  /help      this help
  /session   the session id and its workspace
  /exit      quit (also /quit, Ctrl-D, or the end of piped input)
Ctrl-C while the agent works stops that turn; the conversation is kept."""


def _enable_line_editing() -> None:
    with contextlib.suppress(ImportError):
        import readline  # noqa: F401  (importing it is what enables editing in input())


def _read_line(interactive: bool) -> str | None:
    """The next line, or ``None`` at the end of input."""
    try:
        line = input(PROMPT)
    except EOFError:
        print()  # end the prompt's line
        return None
    if not interactive:
        print(line)  # echo piped input so the transcript reads like a conversation
    return line


def chat(*, model: str, session_id: str | None, permission_mode: str | None = None) -> int:
    """Run the chat loop until the user quits; return the exit status."""
    ready = setup(model, session_id, permission_mode=permission_mode)
    agent = ready.agent
    console = make_console()
    interactive = sys.stdin.isatty()
    if interactive:
        _enable_line_editing()
    if ready.existing is None:
        state = "new session"
    else:
        state = f"resumed, {len(ready.existing.messages)} messages"
    console.print(
        Text(
            f"loopwright chat · model {agent.model.name} · session {ready.session_id} ({state}) · "
            "/help for commands, /exit to quit",
            style="dim",
        )
    )
    printer = EventPrinter(console)
    with asyncio.Runner() as runner:
        try:
            while True:
                try:
                    line = _read_line(interactive)
                except KeyboardInterrupt:
                    console.print("\n(press Ctrl-D or type /exit to quit)", style="dim")
                    continue
                if line is None:
                    break
                text = line.strip()
                if not text:
                    continue
                if text.startswith("/"):
                    if not _command(console, text, ready):
                        break
                    continue
                printer.restart()
                try:
                    runner.run(drive(agent, ready.session(), line, printer.handle))
                    console.print()
                except KeyboardInterrupt:
                    printer.end_line()
                    console.print(
                        "(interrupted: the turn stopped; the conversation so far is kept)",
                        style="yellow",
                    )
        finally:
            close_agent(runner, agent)
    if ready.existing is not None:
        console.print(resume_hint(ready.session_id), style="dim")
    return 0


def _command(console: Console, text: str, ready: Setup) -> bool:
    """Handle a ``/command``; False means quit."""
    name = text.split()[0].lower()
    if name in ("/exit", "/quit"):
        return False
    if name == "/help":
        console.print(Text(HELP))
    elif name == "/session":
        if ready.existing is None:
            note = "(new: it is saved, with its workspace, when you send the first message)"
            console.print(Text(f"session {ready.session_id} {note}"))
        else:
            workspace = ready.existing.workspace_dir
            console.print(Text(f"session {ready.session_id}\nworkspace {workspace}"))
    else:
        console.print(Text(f"unknown command {name}; type /help for the list", style="yellow"))
    return True
