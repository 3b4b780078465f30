"""The ``loopwright`` command: ``run``, ``chat``, ``sessions`` and ``--version``.

Only typer is imported at start-up; each command imports the agent, the session store and
rich when it runs, so ``loopwright --help`` stays fast.
"""

from __future__ import annotations

from typing import Annotated, NoReturn

import typer

from loopwright.cli.guard import guarded
from loopwright.cli.options import (
    COMPACT_FLAGS,
    CompactOption,
    JsonOption,
    MaxTurnsOption,
    ModelOption,
    PermissionOption,
    SessionOption,
    TimeoutOption,
)

app = typer.Typer(
    name="loopwright",
    help="Build and run autonomous agents: an LLM in a loop with tools.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
    pretty_exceptions_show_locals=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)
sessions_app = typer.Typer(
    help="List, show and remove saved sessions.",
    no_args_is_help=True,
)
app.add_typer(sessions_app, name="sessions")


def _fail(message: str, code: int) -> NoReturn:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    raise typer.Exit(code)


def _version(value: bool) -> None:
    if value:
        from loopwright import __version__

        typer.echo(f"loopwright {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version",
            "-V",
            callback=_version,
            is_eager=True,
            help="Print the version and exit.",
        ),
    ] = False,
) -> None:
    """Build and run autonomous agents: an LLM in a loop with tools."""
    from loopwright.settings import apply_config

    try:
        apply_config()  # loopwright.toml fills in what flags and the environment leave unset
    except ValueError as exc:
        _fail(str(exc), 2)


@app.command()
def run(
    task: Annotated[
        str, typer.Argument(metavar="TASK", help="What the agent should do ('-' reads stdin).")
    ],
    model: ModelOption = "auto",
    session: SessionOption = None,
    max_turns: MaxTurnsOption = None,
    timeout: TimeoutOption = None,
    json_lines: JsonOption = False,
    permission_mode: PermissionOption = None,
) -> None:
    """Run one task to the end, printing what the agent does.

    Exit status: 0 when the agent finished, 1 on an error, 2 when a limit stopped it
    (turns, budget, time, a stuck loop), 130 when interrupted.
    """

    def action() -> int:
        from loopwright.cli.run import run_task

        return run_task(
            task,
            model=model,
            session_id=session,
            max_turns=max_turns,
            timeout=timeout,
            as_json=json_lines,
            permission_mode=permission_mode,
        )

    raise typer.Exit(guarded(action))


@app.command()
def chat(
    model: ModelOption = "auto",
    session: SessionOption = None,
    permission_mode: PermissionOption = None,
) -> None:
    """Talk with the agent; one session across turns."""

    def action() -> int:
        from loopwright.cli.chat import chat as chat_loop

        return chat_loop(model=model, session_id=session, permission_mode=permission_mode)

    raise typer.Exit(guarded(action))


@app.command("config")
def config_show() -> None:
    """Show every setting, its value and where it comes from (flags > env > loopwright.toml)."""

    def action() -> int:
        from loopwright.cli.render import make_console
        from loopwright.cli.settings_view import show_settings

        return show_settings(make_console())

    raise typer.Exit(guarded(action))


@sessions_app.command("list")
def sessions_list() -> None:
    """List saved sessions, most recently updated first."""

    def action() -> int:
        from loopwright.cli.history import list_sessions
        from loopwright.cli.render import make_console

        return list_sessions(make_console())

    raise typer.Exit(guarded(action))


@sessions_app.command("show")
def sessions_show(session_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Show a session's history and usage."""

    def action() -> int:
        from loopwright.cli.history import show_session
        from loopwright.cli.render import make_console

        return show_session(make_console(), session_id)

    raise typer.Exit(guarded(action))


@sessions_app.command("resume")
def sessions_resume(
    session_id: Annotated[str, typer.Argument(metavar="ID")],
    model: ModelOption = "auto",
    permission_mode: PermissionOption = None,
    compact: CompactOption = None,
) -> None:
    """Continue a saved session in the chat (a healthcare session with the healthcare agent,
    on its data; --compact/--full choose its mode, as for loopwright healthcare)."""

    def action() -> int:
        from loopwright.cli.chat import chat as chat_loop
        from loopwright.cli.history import require_session
        from loopwright.cli.runtime import EXIT_USAGE, HEALTHCARE, CliError

        if require_session(session_id) == HEALTHCARE:
            from loopwright.cli.healthcare import healthcare

            return healthcare(
                None,
                model=model,
                session_id=session_id,
                permission_mode=permission_mode,
                compact=compact,
            )
        if compact is not None:
            raise CliError(
                f"{COMPACT_FLAGS[compact]} is for healthcare sessions; {session_id} is not one",
                EXIT_USAGE,
            )
        return chat_loop(model=model, session_id=session_id, permission_mode=permission_mode)

    raise typer.Exit(guarded(action))


@sessions_app.command("rm")
def sessions_rm(
    session_id: Annotated[str, typer.Argument(metavar="ID")],
    keep_workspace: Annotated[
        bool, typer.Option("--keep-workspace", help="Keep the session's workspace files.")
    ] = False,
) -> None:
    """Remove a saved session and its workspace directory."""

    def action() -> int:
        from loopwright.cli.history import remove_session
        from loopwright.cli.render import make_console

        return remove_session(make_console(), session_id, keep_workspace=keep_workspace)

    raise typer.Exit(guarded(action))


# Commands that live in their own modules: each module has ``register(app)``, which adds its
# command or sub-app (importing only typer at start-up, so ``--help`` stays fast).
_COMMAND_MODULES: tuple[str, ...] = (
    "loopwright.cli.serve",
    "loopwright.cli.mcp",
    "loopwright.cli.eval",
    "loopwright.cli.observe",
    "loopwright.cli.healthcare",
)


def _register_commands() -> None:
    import importlib

    for module in _COMMAND_MODULES:
        importlib.import_module(module).register(app)


_register_commands()


def main() -> None:
    """Entry point of the ``loopwright`` command."""
    try:
        app()
    except BrokenPipeError:  # the reader went away (``loopwright ... | head``)
        import os
        import sys

        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        raise SystemExit(1) from None


if __name__ == "__main__":
    main()
