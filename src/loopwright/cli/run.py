"""``loopwright run``: one task, its events printed for a person or as JSON lines."""

from __future__ import annotations

import asyncio
import contextlib
import io
import re
import select
import shlex
import sys
import threading
from collections.abc import Callable
from typing import TextIO, cast

from loopwright.agent import Agent
from loopwright.cli.runtime import (
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    CliError,
    Setup,
    exit_code_for,
    setup,
)
from loopwright.events import ApprovalRequest, Done, Event
from loopwright.sessions.session import Session

#: The example in the empty-task error; other commands that take a task pass their own.
RUN_EXAMPLE = 'loopwright run "summarise notes.md"'

# Python hands over bytes that are not UTF-8 as lone surrogates (in command-line arguments
# always, on standard input once :func:`tolerant_stdin` has set it up). They cannot be
# encoded, so a session holding one fails to save; they are replaced before use.
_UNDECODABLE = re.compile("[\ud800-\udfff]")


def replace_undecodable(text: str) -> tuple[str, bool]:
    """``text`` with each byte that was not valid UTF-8 replaced by U+FFFD, and whether
    there were any."""
    cleaned, count = _UNDECODABLE.subn("\ufffd", text)
    return cleaned, count > 0


def warn_undecodable(what: str) -> None:
    """Say on stderr that ``what`` (``the task``...) had bytes replaced."""
    print(
        f"warning: {what} is not valid UTF-8; its undecodable bytes were replaced with U+FFFD",
        file=sys.stderr,
        flush=True,
    )


def user_text(text: str, what: str) -> str:
    """``text`` with the bytes that were not UTF-8 replaced, warning about ``what`` if any."""
    cleaned, replaced = replace_undecodable(text)
    if replaced:
        warn_undecodable(what)
    return cleaned


def tolerant_stdin() -> TextIO | None:
    """Standard input set to pass bytes that are not UTF-8 on as surrogates (for
    :func:`user_text` to replace) rather than fail with a ``UnicodeDecodeError`` mid-read;
    ``None`` when the process has no standard input (started with it closed)."""
    stdin = sys.stdin
    if isinstance(stdin, io.TextIOWrapper) and stdin.errors == "strict":
        # only the error handler changes, which TextIOWrapper allows even after reading
        with contextlib.suppress(ValueError, OSError):
            stdin.reconfigure(errors="surrogateescape")
    return stdin


def _clip(key: str, value: str, limit: int = 60) -> str:
    """A value shortened for the approval prompt: paths keep their end (the file name)."""
    if len(value) <= limit:
        return value
    if key in ("file_path", "path", "notebook_path", "save_as"):
        return "…" + value[-(limit - 1) :]
    return value[: limit - 1] + "…"


#: How often an approval prompt waiting at a terminal checks that its turn still waits.
ANSWER_POLL_SECONDS = 0.1


def _read_answer(stdin: TextIO, stop: threading.Event | None) -> str | None:
    """The next line of ``stdin``, or ``None`` when ``stop`` is set (the turn was
    interrupted) before one was typed.

    At a terminal the line is read only once it is there: a read that has begun cannot be
    stopped, so the prompt of an interrupted turn would stay blocked in it, taking the next
    line typed (the chat's next message, or ``/exit``) and keeping the program from exiting
    until Enter was pressed. Piped answers are there at once, and read as they come."""
    if stop is not None:
        try:
            fd = stdin.fileno() if stdin.isatty() else None
            while fd is not None:
                ready = select.select([fd], [], [], ANSWER_POLL_SECONDS)[0]
                if stop.is_set():  # also when ready: the line is the next reader's
                    return None
                if ready:
                    break
        except (OSError, ValueError):  # a closed stdin, or one select cannot watch
            pass
    return stdin.readline()


def ask_at_prompt(
    request: ApprovalRequest, stop: threading.Event | None = None
) -> tuple[bool, str]:
    """Ask on stderr whether a tool call may run; read the answer from standard input.

    ``y``/``yes`` allows; anything else denies, and text after ``n`` (``n use a copy``)
    goes back to the model as the reason. At the end of input the call is denied. ``stop``
    set (the turn was interrupted) ends the wait at a terminal, leaving what is typed next
    to whoever reads next.
    """
    from loopwright.policy.approvals import approval_text

    detail = ", ".join(f"{k}={_clip(k, str(v))!r}" for k, v in request.input.items())
    why = f" ({request.reason})" if request.reason else ""
    if any(_clip(k, str(v)) != str(v) or "\n" in str(v) for k, v in request.input.items()):
        # something was cut or spans lines: show the call whole first (the whole SQL, code)
        print(approval_text(request), file=sys.stderr, flush=True)
    print(f"approve {request.name}({detail}){why}? [y/N] ", end="", file=sys.stderr, flush=True)
    stdin = tolerant_stdin()
    line = _read_answer(stdin, stop) if stdin is not None else ""  # no stdin: no answer
    if line is None:  # the turn was interrupted: no one waits for the answer
        return False, "the turn was interrupted"
    if not line:
        print("(no answer: denied)", file=sys.stderr, flush=True)
        return False, "no one answered the approval prompt"
    if stdin is not None and not stdin.isatty():
        print(line.rstrip("\n"), file=sys.stderr, flush=True)
    answer = user_text(line, "the answer").strip()  # a reason goes into the session
    if answer.lower() in ("y", "yes"):
        return True, ""
    reason = answer[1:].strip() if answer[:1].lower() == "n" else answer
    return False, reason or "the user denied it"


async def drive(
    agent: Agent,
    session: Session,
    prompt: str,
    emit: Callable[[Event], None],
    approve: Callable[[ApprovalRequest, threading.Event], tuple[bool, str]] = ask_at_prompt,
) -> Done:
    """Run one prompt in ``session``, handing every event to ``emit``; return the ``done``.

    An ``approval_request`` is answered with ``approve`` (by default at the prompt), run
    in a thread so the tools of the turn that need no approval go on meanwhile; the event
    it is given is set when the turn stops waiting for the answer (Ctrl-C), as a thread
    cannot be stopped from outside."""
    done: Done | None = None
    async for event in agent.run(prompt, session):
        emit(event)
        if isinstance(event, ApprovalRequest):
            stop = threading.Event()
            try:
                answer = await _answer(agent, approve, event, stop)
            finally:
                stop.set()
            if answer is None:
                print("(no answer in time: the call was denied)", file=sys.stderr, flush=True)
                continue
            allow, reason = answer
            try:
                agent.approve(event.id, allow=allow, reason=reason, by=approver())
            except LookupError:  # the policy's approval_timeout denied it meanwhile
                print(
                    "(too late: the call was already denied, as nobody answered in time)",
                    file=sys.stderr,
                    flush=True,
                )
        if isinstance(event, Done):
            done = event
    if done is None:  # the loop always ends with one; guard against a broken stream
        raise CliError("the run ended without a done event; this is a bug in loopwright")
    return done


def approver() -> str:
    """Who answers approvals at this terminal, for the audit log: ``cli:<login name>``."""
    import getpass

    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):  # no login name (a container's unnamed uid)
        import os

        return f"cli:uid {os.getuid()}" if hasattr(os, "getuid") else "cli"


async def _answer(
    agent: Agent,
    approve: Callable[[ApprovalRequest, threading.Event], tuple[bool, str]],
    request: ApprovalRequest,
    stop: threading.Event,
) -> tuple[bool, str] | None:
    """``approve(request, stop)``'s answer, asked in a thread of its own; ``None`` when the
    request stops waiting first (the policy's ``approval_timeout`` denied it).

    A read from a pipe that stays open and silent (cron, ``docker -i``) cannot be stopped:
    waiting for the thread would hang the run for good, after the call was denied. The
    thread is a daemon, so one still blocked in its read does not keep the program from
    exiting (a thread of asyncio's default executor would: they are joined at exit)."""
    loop = asyncio.get_running_loop()
    future: asyncio.Future[tuple[bool, str]] = loop.create_future()

    def settle(outcome: tuple[bool, str] | None, error: BaseException | None) -> None:
        if future.done():  # cancelled: the turn was interrupted
            return
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(cast("tuple[bool, str]", outcome))

    def ask() -> None:
        outcome: tuple[bool, str] | None = None
        error: BaseException | None = None
        try:
            outcome = approve(request, stop)
        except BaseException as exc:  # handed to the waiting turn
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(settle, outcome, error)

    threading.Thread(target=ask, name="loopwright-approval", daemon=True).start()
    try:
        while True:
            finished, _ = await asyncio.wait({future}, timeout=APPROVAL_CHECK_SECONDS)
            if finished:
                return future.result()
            if all(waiting.id != request.id for waiting in agent.pending_approvals):
                return None
    finally:
        future.cancel()  # an answer still to come is no one's (a no-op once done)


#: How often a turn waiting for an answer checks that the request still waits.
APPROVAL_CHECK_SECONDS = 0.5


async def drive_turn(
    ready: Setup,
    prompt: str,
    emit: Callable[[Event], None],
    approve: Callable[[ApprovalRequest, threading.Event], tuple[bool, str]] = ask_at_prompt,
) -> Done:
    """:func:`drive` one prompt in the ready session, leased for the turn and as the store
    has it now (see :meth:`Setup.turn`)."""
    async with ready.turn() as session:
        return await drive(ready.agent, session, prompt, emit, approve)


def close_agent(runner: asyncio.Runner, agent: Agent) -> None:
    """Close the agent's tools and model; a second Ctrl-C while closing is ignored."""
    with contextlib.suppress(KeyboardInterrupt, Exception):
        runner.run(agent.aclose())


def resume_hint(session_id: str) -> str:
    """How to continue this session."""
    quoted = shlex.quote(session_id)
    return (
        f"session {session_id} · continue with: loopwright chat --session {quoted}  "
        f'or  loopwright run --session {quoted} "..."'
    )


def read_task(task: str, example: str = RUN_EXAMPLE) -> str:
    """The task text; ``-`` reads it from standard input. Bytes that are not UTF-8 become
    U+FFFD (with a warning); ``example`` is the command shown when the task is empty."""
    what = "the task"
    if task == "-":
        stdin = tolerant_stdin()
        if stdin is None:
            raise CliError(
                "there is no standard input to read the task from ('-' was given but stdin is "
                f"closed); pipe the task in or give it as an argument, e.g. {example}",
                EXIT_USAGE,
            )
        try:
            task = stdin.read()
        except (OSError, UnicodeDecodeError) as exc:  # an I/O error, or a stdin not reconfigured
            raise CliError(
                f"cannot read the task from standard input ({exc})", EXIT_USAGE
            ) from None
        what = "the task read from standard input"
    task = user_text(task, what)
    if not task.strip():
        raise CliError(f"the task is empty; give it as an argument, e.g. {example}", EXIT_USAGE)
    return task


def run_task(
    task: str,
    *,
    model: str,
    session_id: str | None,
    max_turns: int | None,
    timeout: float | None,
    as_json: bool,
    permission_mode: str | None = None,
) -> int:
    """Run ``task`` to the end and return the exit status."""
    prompt = read_task(task)
    ready = setup(
        model, session_id, max_turns=max_turns, timeout=timeout, permission_mode=permission_mode
    )
    return run_ready(ready, prompt, as_json=as_json)


def run_ready(
    ready: Setup,
    prompt: str,
    *,
    as_json: bool,
    hint: Callable[[str], str] | None = None,
    show_workspace: bool = False,
) -> int:
    """Run ``prompt`` with a ready agent and session (any agent: the standard one, the
    healthcare one...) and return the exit status; ``hint`` says how to continue."""
    hint = hint or resume_hint
    agent, session_id = ready.agent, ready.session_id
    emit: Callable[[Event], None]
    if as_json:
        print(f"session {session_id}", file=sys.stderr, flush=True)

        def emit(event: Event) -> None:
            sys.stdout.write(event.to_json() + "\n")
            sys.stdout.flush()

        printer = None
    else:
        from loopwright.cli.render import EventPrinter, make_console

        printer = EventPrinter(make_console())
        emit = printer.handle

    with asyncio.Runner() as runner:
        try:
            done = runner.run(drive_turn(ready, prompt, emit))
        except KeyboardInterrupt:
            if printer is not None:
                printer.stop()
            print(
                f"interrupted; the history so far is saved. {hint(session_id)}",
                file=sys.stderr,
                flush=True,
            )
            return EXIT_INTERRUPTED
        finally:
            close_agent(runner, agent)

    if printer is not None:
        if show_workspace:
            printer.console.print(f"workspace {ready.session().workspace_dir}", style="dim")
        printer.console.print(hint(session_id), style="dim")
    elif done.stop_reason != "end_turn":
        print(f"stopped: {done.stop_reason} {done.detail}".rstrip(), file=sys.stderr)
    return exit_code_for(done.stop_reason)
