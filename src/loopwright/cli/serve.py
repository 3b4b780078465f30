"""``loopwright serve``: an agent over HTTP (JSON API, SSE streams) and the web UI.

The standard agent by default; ``--agent healthcare`` serves the healthcare research agent
(its claims database built on first use, or ``--database URL``), so analysts can ask it
questions in the browser.

Only typer is imported here at start-up; the server, the agent and uvicorn are imported when
the command runs, so ``loopwright --help`` stays fast.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import typer

from loopwright.cli.healthcare import DEFAULT_ROWS, AgentRowsOption
from loopwright.cli.options import (
    COMPACT_FLAGS,
    AgentCompactOption,
    DatabaseOption,
    ServedAgentOption,
)

if TYPE_CHECKING:
    from loopwright.agent import Agent
    from loopwright.models import ModelChoice
    from loopwright.sessions.store import SessionStore

#: What ``--agent`` accepts.
AGENTS = ("standard", "healthcare")
ROWS_WITH_DATABASE = (
    "--rows sizes the generated database, which --database replaces: give one or the other"
)


def register(app: typer.Typer) -> None:
    """Add the ``serve`` command to the ``loopwright`` app."""
    app.command(name="serve")(serve)


def serve(
    host: Annotated[
        str, typer.Option("--host", metavar="HOST", help="Address to listen on.")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=1, max=65535, metavar="PORT", help="Port to listen on.")
    ] = 8000,
    model: Annotated[
        str,
        typer.Option(
            "--model",
            "-m",
            metavar="MODEL",
            help="Model string, as for `loopwright run` ('auto': LOOPWRIGHT_MODEL, else by "
            "which API key is set, else the embedded local model).",
        ),
    ] = "auto",
    permission_mode: Annotated[
        str | None,
        typer.Option(
            "--permission-mode",
            "-p",
            metavar="MODE",
            help="auto: every tool may run (in the sandbox); ask: write and execute calls wait "
            "for an answer from the API or web UI; read-only: they are refused.",
        ),
    ] = None,
    tokens_file: Annotated[
        str | None,
        typer.Option(
            "--tokens-file",
            metavar="PATH",
            help="TOML or JSON file mapping bearer tokens to users ([tokens] TOKEN = "
            '"alice"); also LOOPWRIGHT_TOKENS="token1=alice,token2=bob" and '
            "LOOPWRIGHT_TOKENS_FILE.",
        ),
    ] = None,
    insecure_no_auth: Annotated[
        bool,
        typer.Option(
            "--insecure-no-auth",
            help="Allow listening beyond 127.0.0.1 with no tokens configured (anyone who "
            "can reach the port can run the agent).",
        ),
    ] = False,
    rate_limit: Annotated[
        str,
        typer.Option(
            "--rate-limit",
            metavar="N/SECONDS",
            help="Requests allowed per token (token bucket); 'off' for none.",
        ),
    ] = "120/60",
    max_body_bytes: Annotated[
        int,
        typer.Option(
            "--max-body-bytes", min=1, metavar="BYTES", help="Larger request bodies get 413."
        ),
    ] = 1_000_000,
    grace: Annotated[
        float,
        typer.Option(
            "--grace",
            min=0,
            metavar="SECONDS",
            help="On shutdown, how long running turns may go on before they are cancelled "
            "(their history is saved; resume them later).",
        ),
    ] = 30.0,
    max_turns: Annotated[
        int | None,
        typer.Option(
            "--max-turns",
            min=1,
            metavar="N",
            help="Model calls per turn, at most [default: LOOPWRIGHT_MAX_TURNS or 50].",
        ),
    ] = None,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", min=0.001, metavar="SECONDS", help="Time limit per turn."),
    ] = None,
    log_level: Annotated[
        str,
        typer.Option("--log-level", metavar="LEVEL", help="uvicorn's log level."),
    ] = "info",
    agent: ServedAgentOption = "standard",
    database: DatabaseOption = None,
    rows: AgentRowsOption = None,
    compact: AgentCompactOption = None,
) -> None:
    """Serve the agent over HTTP: a JSON API with SSE event streams, and a web UI at /."""
    from loopwright.cli.guard import guarded

    def action() -> int:
        return _serve(
            host=host,
            port=port,
            model=model,
            permission_mode=permission_mode,
            tokens_file=tokens_file,
            insecure_no_auth=insecure_no_auth,
            rate_limit=rate_limit,
            max_body_bytes=max_body_bytes,
            grace=grace,
            max_turns=max_turns,
            timeout=timeout,
            log_level=log_level,
            agent=agent,
            database=database,
            rows=rows,
            compact=compact,
        )

    raise typer.Exit(guarded(action))


def _serve(
    *,
    host: str,
    port: int,
    model: str,
    permission_mode: str | None,
    tokens_file: str | None,
    insecure_no_auth: bool,
    rate_limit: str,
    max_body_bytes: int,
    grace: float,
    max_turns: int | None,
    timeout: float | None,
    log_level: str,
    agent: str = "standard",
    database: str | None = None,
    rows: int | None = None,
    compact: bool | None = None,
) -> int:
    from loopwright.cli.runtime import EXIT_USAGE, CliError, announce_model, settings_limits

    if agent not in AGENTS:
        raise CliError(f"unknown agent {agent!r}; use one of: {', '.join(AGENTS)}", EXIT_USAGE)
    if agent != "healthcare" and (database is not None or rows is not None):
        raise CliError("--database and --rows go with --agent healthcare", EXIT_USAGE)
    if agent != "healthcare" and compact is not None:
        raise CliError(f"{COMPACT_FLAGS[compact]} goes with --agent healthcare", EXIT_USAGE)
    if database is not None and rows is not None:
        raise CliError(ROWS_WITH_DATABASE, EXIT_USAGE)
    given = (max_turns, timeout)  # the healthcare agent tells "no limit given" apart
    max_turns, timeout, permission_mode = settings_limits(max_turns, timeout, permission_mode)

    try:
        from loopwright.server import (
            InsecureBindError,
            RequestRate,
            TokenConfigError,
            TokenMap,
            create_app,
            make_server,
        )
    except ImportError as exc:
        raise CliError(
            f"the server needs FastAPI and uvicorn ({exc}); install them with "
            "`pip install 'loopwright[server]'`"
        ) from None

    try:
        tokens = TokenMap.from_sources(file=tokens_file)
    except TokenConfigError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    rate: RequestRate | None = None
    if rate_limit.strip().lower() not in ("off", "none", "0"):
        try:
            rate = RequestRate.parse(rate_limit)
        except ValueError as exc:
            raise CliError(str(exc), EXIT_USAGE) from None
    levels = ("critical", "error", "warning", "info", "debug", "trace")
    if log_level.lower() not in levels:
        raise CliError(f"unknown log level {log_level!r}; use one of: {', '.join(levels)}")

    session_metadata: dict[str, Any] | None = None
    if agent == "healthcare":
        from loopwright.cli.healthcare import data_metadata

        choice, store, served = _healthcare_agent(
            model, *given, permission_mode, database, rows, compact
        )
        # sessions begun in the web UI record their data, as the CLI's do
        session_metadata = data_metadata(rows, database)
    else:
        from loopwright.cli.runtime import cli_agent

        choice, store, served = cli_agent(
            model, max_turns=max_turns, timeout=timeout, permission_mode=permission_mode
        )
    app = create_app(
        served,
        store=store,
        tokens=tokens,
        rate_limit=rate,
        max_body_bytes=max_body_bytes,
        shutdown_grace=grace,
        session_metadata=session_metadata,
    )
    try:
        server = make_server(
            app,
            host=host,
            port=port,
            insecure_no_auth=insecure_no_auth,
            log_level=log_level.lower(),
        )
    except InsecureBindError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    announce_model(choice, served.model.name)
    shown = f"[{host}]" if ":" in host else host
    if tokens.enabled:
        auth = f"{len(tokens)} token(s) for {len(tokens.users)} user(s)"
    else:
        auth = "off (no tokens configured)"
    print(
        f"loopwright serving the {agent} agent at http://{shown}:{port}/ (web UI at /, API "
        "spec at /openapi.json); "
        f"auth: {auth}; store: {store.describe()}",
        file=sys.stderr,
        flush=True,
    )
    import asyncio

    try:
        server.run()
    finally:
        with asyncio.Runner() as runner:
            try:
                runner.run(served.aclose())
            except Exception as exc:  # closing must not hide how the server ended
                print(f"warning: closing the agent failed: {exc}", file=sys.stderr)
        store.close()
    if not server.started:
        return 1  # uvicorn said why (e.g. the port is in use)
    return 0


def _healthcare_agent(
    model: str,
    max_turns: int | None,
    timeout: float | None,
    permission_mode: str,
    database: str | None,
    rows: int | None,
    compact: bool | None = None,
) -> tuple[ModelChoice, SessionStore, Agent]:
    """The healthcare agent as ``loopwright healthcare`` makes it (the same model choice,
    database, limits and compact mode, from the flags as given), with ``--permission-mode``'s
    policy."""
    from loopwright.cli import healthcare
    from loopwright.cli.runtime import choose_model, open_store, permission_policy

    options = healthcare.limit_options(max_turns, timeout)
    policy = permission_policy(permission_mode)
    choice = healthcare.embedded_choice(choose_model(model))
    store = open_store()
    served = healthcare.build_agent(
        choice.spec,
        store=store,
        rows=DEFAULT_ROWS if rows is None else rows,
        database=database,
        policy=policy,
        compact=compact,
        **options,
    )
    return choice, store, served
