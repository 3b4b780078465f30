"""``loopwright chat``: a read-eval-print loop over one session.

Lines come from the terminal (with line editing and an input history kept across chats in
``<LOOPWRIGHT_HOME>/chat_history`` when ``readline`` is available) or from a pipe, read until
end of input. Ctrl-C during an answer stops that turn only; ``/exit``, Ctrl-D or the end of
piped input quits.
"""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from rich.console import Console
from rich.table import Table
from rich.text import Text

from loopwright.cli.render import EventPrinter, format_usage, make_console
from loopwright.cli.run import (
    close_agent,
    drive_turn,
    replace_undecodable,
    resume_hint,
    tolerant_stdin,
    warn_undecodable,
)
from loopwright.cli.runtime import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_OK,
    CliError,
    Setup,
    continuation_note,
    exit_code_for,
    setup,
)
from loopwright.events import Event
from loopwright.sessions.session import new_session_id

PROMPT = "you> "
HISTORY_LENGTH = 1000

HELP = """\
Type a message and press Enter; the agent answers, using its tools as needed.
Commands:
  /help         this help
  /cost         tokens and cost of this session
  /todos        the agent's task list
  /files        the files in the session's workspace
  /resume [ID]  continue another saved session (without ID: list recent ones)
  /clear        start a new, empty session
  /session      the session id and its workspace
  /exit         quit (also /quit, Ctrl-D, or the end of piped input)
Ctrl-C while the agent works stops that turn; the conversation is kept."""


def _history_file() -> Path:
    from loopwright.config import loopwright_home

    return loopwright_home() / "chat_history"


@contextlib.contextmanager
def _line_editing() -> Iterator[None]:
    """Line editing and a persistent input history, when readline is available."""
    try:
        import readline
    except ImportError:
        yield
        return
    path = _history_file()
    with contextlib.suppress(OSError):
        readline.read_history_file(path)
    readline.set_history_length(HISTORY_LENGTH)
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            readline.write_history_file(path)


def _read_line(interactive: bool, quiet: bool = False) -> str | None:
    """The next line, or ``None`` at the end of input (``quiet``: no prompt or echo on
    stdout, which then holds only JSON lines). A closed standard input is the end of input."""
    if sys.stdin is None:
        return None
    try:
        line = input("" if quiet else PROMPT)
    except EOFError:
        if not quiet:
            print()  # end the prompt's line
        return None
    line, replaced = replace_undecodable(line)
    if not interactive and not quiet:
        print(line)  # echo piped input so the transcript reads like a conversation
    if replaced:  # after the echo, so the warning gets a line of its own
        warn_undecodable("that line")
    return line


def chat(*, model: str, session_id: str | None, permission_mode: str | None = None) -> int:
    """Run the chat loop until the user quits; return the exit status."""
    return chat_ready(setup(model, session_id, permission_mode=permission_mode))


def chat_ready(
    ready: Setup,
    *,
    title: str = "loopwright chat",
    hint: Callable[[str], str] | None = None,
    as_json: bool = False,
) -> int:
    """The chat loop with a ready agent and session (any agent); ``hint`` says how to
    continue; ``as_json`` prints events as JSON lines on stdout (the chat's own lines go to
    stderr).

    The exit status is 0 at a terminal. With piped input it is that of the last turn, as
    for ``loopwright run`` (a shell script's status is its last command's), so a script can
    tell that the conversation ended on a failed turn.
    """
    hint = hint or resume_hint
    agent = ready.agent
    console = make_console(sys.stderr if as_json else None)
    stdin = tolerant_stdin()
    interactive = stdin is not None and stdin.isatty()
    editing: contextlib.AbstractContextManager[None] = (
        _line_editing() if interactive else contextlib.nullcontext()
    )
    if ready.existing is None:
        state = "new session"
    else:
        state = f"resumed, {len(ready.existing.messages)} messages"
    console.print(
        Text(
            f"{title} · model {agent.model.name} · session {ready.session_id} ({state}) · "
            "/help for commands, /exit to quit",
            style="dim",
        )
    )
    printer = None if as_json else EventPrinter(console)
    emit = printer.handle if printer is not None else _json_line
    chat_state = ChatState(ready)
    status = EXIT_OK  # the last turn's
    with asyncio.Runner() as runner, editing:
        try:
            while True:
                try:
                    line = _read_line(interactive, quiet=as_json)
                except KeyboardInterrupt:
                    console.print("\n(press Ctrl-D or type /exit to quit)", style="dim")
                    continue
                if line is None:
                    break
                text = line.strip()
                if not text:
                    continue
                if text.startswith("/"):
                    try:
                        if not chat_state.command(console, text):
                            break
                    except KeyboardInterrupt:  # a slow one (/files of a big workspace...)
                        console.print(
                            f"(interrupted: {text.split()[0]} stopped; the chat goes on)",
                            style="yellow",
                        )
                    continue
                if printer is not None:
                    printer.restart()
                try:
                    done = runner.run(drive_turn(chat_state.ready, line, emit))
                    status = exit_code_for(done.stop_reason)
                    if printer is not None:
                        console.print()
                except CliError as exc:  # the session is busy elsewhere: the chat goes on
                    status = EXIT_ERROR
                    if printer is not None:
                        printer.stop()
                    console.print(Text(exc.message, style="yellow"))
                except KeyboardInterrupt:
                    status = EXIT_INTERRUPTED
                    if printer is not None:
                        printer.stop()
                    console.print(
                        "(interrupted: the turn stopped; the conversation so far is kept)",
                        style="yellow",
                    )
        finally:
            if printer is not None:
                printer.stop()
            close_agent(runner, agent)
    if chat_state.ready.existing is not None:
        console.print(hint(chat_state.ready.session_id), style="dim")
    return EXIT_OK if interactive else status


def _json_line(event: Event) -> None:
    sys.stdout.write(event.to_json() + "\n")
    sys.stdout.flush()


class ChatState:
    """The chat's current session, and the slash commands that look at or change it."""

    def __init__(self, ready: Setup) -> None:
        self.ready = ready
        self.commands: dict[str, Callable[[Console, str], None]] = {
            "/help": lambda console, _: console.print(Text(HELP)),
            "/cost": self._cost,
            "/todos": self._todos,
            "/files": self._files,
            "/resume": self._resume,
            "/clear": self._clear,
            "/session": self._session,
        }

    def command(self, console: Console, text: str) -> bool:
        """Handle a ``/command``; False means quit."""
        name, _, argument = text.partition(" ")
        name = name.lower()
        if name in ("/exit", "/quit"):
            return False
        handler = self.commands.get(name)
        if handler is None:
            console.print(Text(f"unknown command {name}; type /help for the list", style="yellow"))
            return True
        try:
            handler(console, argument.strip())
        except CliError as exc:
            console.print(Text(exc.message, style="yellow"))
        return True

    def _session(self, console: Console, _: str) -> None:
        ready = self.ready
        if ready.existing is None:
            note = "(new: it is saved, with its workspace, when you send the first message)"
            console.print(Text(f"session {ready.session_id} {note}"))
        else:
            workspace = ready.existing.workspace_dir
            console.print(Text(f"session {ready.session_id}\nworkspace {workspace}"))

    def _cost(self, console: Console, _: str) -> None:
        session = self.ready.existing
        if session is None:
            console.print("nothing used yet: this session has no messages")
            return
        from loopwright.cli.history import session_warehouse

        usage = format_usage(session.usage, session_warehouse(session))
        console.print(Text(f"session {session.id}: {usage}"))

    def _todos(self, console: Console, _: str) -> None:
        session = self.ready.existing
        if session is None:
            console.print("no task list yet")
            return
        from loopwright.tools.todo import load_todos, render_todos

        try:
            todos = load_todos(session.workspace_dir)
        except ValueError as exc:  # a damaged file: say which and why
            raise CliError(str(exc)) from None
        console.print(Text(render_todos(todos) if todos else "no task list yet"))

    def _files(self, console: Console, _: str) -> None:
        session = self.ready.existing
        if session is None:
            console.print("no files yet")
            return
        root = Path(session.workspace_dir)
        files = sorted(
            p
            for p in root.rglob("*")
            if p.is_file() and ".loopwright" not in p.relative_to(root).parts
        )
        if not files:
            console.print(f"no files yet in {root}")
            return
        table = Table(box=None, header_style="bold", pad_edge=False)
        table.add_column("file", style="cyan")
        table.add_column("size", justify="right")
        for path in files[:200]:
            table.add_row(str(path.relative_to(root)), f"{path.stat().st_size:,}")
        console.print(table)
        more = f" (showing 200 of {len(files)})" if len(files) > 200 else ""
        console.print(Text(f"in {root}{more}", style="dim"))

    def _resume(self, console: Console, argument: str) -> None:
        from loopwright.cli.history import print_session_list
        from loopwright.sessions.session import validate_session_id

        store = self.ready.agent.store
        if not argument:
            print_session_list(console, store.list()[:10], store.describe())
            console.print(Text("continue one with /resume ID", style="dim"))
            return
        try:
            validate_session_id(argument)
        except ValueError as exc:
            raise CliError(str(exc)) from None
        session = store.load(argument)  # repaired, if need be, by its next turn
        if session is None:
            raise CliError(f"no session {argument!r}; /resume without an id lists them")
        self.ready = Setup(self.ready.agent, argument, session, self.ready.metadata)
        console.print(Text(f"resumed session {argument} ({len(session.messages)} messages)"))
        note = continuation_note(self.ready)
        if note is not None:
            console.print(Text(f"note: {note}", style="yellow"))

    def _clear(self, console: Console, _: str) -> None:
        previous = self.ready.session_id
        self.ready = Setup(self.ready.agent, new_session_id(), None, self.ready.metadata)
        console.print(
            Text(
                f"new session {self.ready.session_id}; the previous one ({previous}) is saved: "
                f"/resume {previous}"
            )
        )
