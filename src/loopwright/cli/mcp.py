"""``loopwright mcp serve``: the CLI's agent as an MCP server (stdio or streamable HTTP).

Only typer is imported at start-up; the agent, the SDK and uvicorn load when the command runs.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from loopwright.cli.healthcare import AgentRowsOption
from loopwright.cli.options import AgentCompactOption, DatabaseOption, ServedAgentOption

if TYPE_CHECKING:
    from loopwright.cli.runtime import Setup
    from loopwright.sessions.session import Session

TRANSPORTS = ("stdio", "http")


def register(app: typer.Typer) -> None:
    """Add the ``mcp`` sub-app (``mcp serve``) to the ``loopwright`` command."""
    mcp_app = typer.Typer(
        help="Serve an agent over the Model Context Protocol.", no_args_is_help=True
    )
    app.add_typer(mcp_app, name="mcp")

    @mcp_app.command("serve")
    def serve(
        transport: Annotated[
            str,
            typer.Option(
                "--transport",
                "-t",
                metavar="stdio|http",
                help="stdio (for clients that start the server) or http (streamable HTTP).",
            ),
        ] = "stdio",
        host: Annotated[
            str, typer.Option("--host", metavar="HOST", help="Address to listen on (http).")
        ] = "127.0.0.1",
        port: Annotated[
            int,
            typer.Option(
                "--port", min=0, max=65535, metavar="N", help="Port (http); 0 picks a free one."
            ),
        ] = 8000,
        path: Annotated[
            str, typer.Option("--path", metavar="PATH", help="URL path of the endpoint (http).")
        ] = "/mcp",
        model: Annotated[
            str,
            typer.Option(
                "--model",
                "-m",
                metavar="MODEL",
                help="Model for run_agent, as for 'loopwright run' (default: auto).",
            ),
        ] = "auto",
        session: Annotated[
            str | None,
            typer.Option(
                "--session",
                "-s",
                metavar="ID",
                help="Work in this session (continued, or created with this id).",
            ),
        ] = None,
        workspace: Annotated[
            Path | None,
            typer.Option(
                "--workspace",
                "-w",
                metavar="DIR",
                help="Let the tools work in this existing directory (default: a new "
                "session workspace).",
            ),
        ] = None,
        max_turns: Annotated[
            int | None,
            typer.Option(
                "--max-turns",
                min=1,
                metavar="N",
                help="Model calls per run_agent [default: LOOPWRIGHT_MAX_TURNS or 50].",
            ),
        ] = None,
        permission_mode: Annotated[
            str | None,
            typer.Option(
                "--permission-mode",
                "-p",
                metavar="MODE",
                help="auto: every tool may run (in the sandbox); read-only: write and "
                "execute calls are refused. [default: LOOPWRIGHT_PERMISSION_MODE or auto]",
            ),
        ] = None,
        agent: ServedAgentOption = "standard",
        database: DatabaseOption = None,
        rows: AgentRowsOption = None,
        compact: AgentCompactOption = None,
    ) -> None:
        """Serve the agent's tools and the agent itself (run_agent) to MCP clients.

        Example client config: {"mcpServers": {"loopwright": {"command": "loopwright",
        "args": ["mcp", "serve"]}}}
        """
        from loopwright.cli.guard import guarded

        def action() -> int:
            return serve_command(
                transport=transport,
                host=host,
                port=port,
                path=path,
                model=model,
                session_id=session,
                workspace=workspace,
                max_turns=max_turns,
                permission_mode=permission_mode,
                agent=agent,
                database=database,
                rows=rows,
                compact=compact,
            )

        raise typer.Exit(guarded(action))


def serve_command(
    *,
    transport: str,
    host: str,
    port: int,
    path: str,
    model: str,
    session_id: str | None,
    workspace: Path | None,
    max_turns: int | None,
    permission_mode: str | None,
    agent: str = "standard",
    database: str | None = None,
    rows: int | None = None,
    compact: bool | None = None,
) -> int:
    """Build the CLI's agent (or the healthcare agent) and serve it until the client or a
    signal ends it."""
    import asyncio
    import contextlib
    import signal

    from loopwright.cli.options import COMPACT_FLAGS
    from loopwright.cli.runtime import (
        EXIT_INTERRUPTED,
        EXIT_USAGE,
        CliError,
        settings_limits,
        setup,
    )
    from loopwright.cli.serve import AGENTS

    given_turns = max_turns  # the healthcare agent tells "no limit given" apart
    max_turns, _, permission_mode = settings_limits(max_turns, None, permission_mode)

    if agent not in AGENTS:
        raise CliError(f"unknown agent {agent!r}; use one of: {', '.join(AGENTS)}", EXIT_USAGE)
    if agent != "healthcare" and (database is not None or rows is not None):
        raise CliError("--database and --rows go with --agent healthcare", EXIT_USAGE)
    if agent != "healthcare" and compact is not None:
        raise CliError(f"{COMPACT_FLAGS[compact]} goes with --agent healthcare", EXIT_USAGE)
    if transport not in TRANSPORTS:
        raise CliError(
            f"unknown transport {transport!r}; use --transport stdio or --transport http",
            EXIT_USAGE,
        )
    if permission_mode == "ask":
        raise CliError(
            "--permission-mode ask needs a person at a prompt, which an MCP server does not "
            "have; use auto or read-only",
            EXIT_USAGE,
        )
    if not path.startswith("/"):
        raise CliError(f"--path must start with '/', got {path!r}", EXIT_USAGE)
    if agent == "healthcare":
        from loopwright.cli import healthcare

        ready = healthcare.prepare(
            model,
            rows=rows,
            database=database,
            session_id=session_id,
            max_turns=given_turns,
            timeout=None,
            permission_mode=permission_mode,
            compact=compact,
        )
    else:
        ready = setup(model, session_id, max_turns=max_turns, permission_mode=permission_mode)
    served = ready.agent
    session = _recorded(ready, _session(ready, workspace))
    print(f"session {session.id} · workspace {session.workspace_dir}", file=sys.stderr, flush=True)

    def announce(url: str) -> None:
        print(f"loopwright MCP server listening on {url}", file=sys.stderr, flush=True)

    async def main() -> None:
        from loopwright.mcp.server import serve_agent

        if transport == "stdio":  # SIGTERM ends the server cleanly (http: uvicorn does it)
            task = asyncio.current_task()
            if task is not None:
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        try:
            await serve_agent(
                served,
                "http" if transport == "http" else "stdio",
                host=host,
                port=port,
                path=path,
                session=session,
                on_ready=announce,
                metadata=ready.metadata,  # a session run_agent makes records the data too
            )
        finally:
            await served.aclose()

    try:
        asyncio.run(main())
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    except asyncio.CancelledError:
        return 0  # stopped by SIGTERM
    except OSError as exc:
        raise CliError(str(exc)) from None
    return 0


def _recorded(ready: Setup, session: Session) -> Session:
    """``session`` with what ``ready`` records about its agent (the healthcare agent's data)
    saved now, under the turn lease, when it recorded something else: the client's queries
    run on this data from the first call, so ``loopwright healthcare --session ID`` should
    continue on it later, even if no ``run_agent`` turn saves the session meanwhile. A
    session busy in another process keeps its record, with a note."""
    import asyncio

    from loopwright.cli.runtime import SessionBusy

    if all(session.metadata.get(key) == value for key, value in ready.metadata.items()):
        return session

    async def save() -> Session:
        async with ready.turn() as current:  # the store's copy, the metadata applied
            current.save()
            return current

    try:
        return asyncio.run(save())
    except SessionBusy as exc:
        print(
            f"note: {exc.message}; so it still records the data it worked on before, which "
            f"`loopwright healthcare --session {session.id}` continues on",
            file=sys.stderr,
            flush=True,
        )
        return session


def _session(ready: Setup, workspace: Path | None) -> Session:
    """The session to serve: the one ``setup`` resolved, or a new one in ``workspace``."""
    from loopwright.cli.runtime import EXIT_USAGE, CliError
    from loopwright.sessions.session import Session

    if workspace is None:
        return ready.session()
    directory = workspace.expanduser().resolve()
    if not directory.is_dir():
        raise CliError(
            f"the workspace {directory} is not a directory; create it or choose another",
            EXIT_USAGE,
        )
    existing = ready.existing
    if existing is not None:
        if existing.workspace_dir.resolve() != directory:
            raise CliError(
                f"session {existing.id} already works in {existing.workspace_dir}; drop "
                "--workspace or give a new --session id",
                EXIT_USAGE,
            )
        return existing
    session = Session(
        ready.session_id, directory, metadata=dict(ready.metadata), store=ready.agent.store
    )
    session.save()
    ready.existing = session
    return session
