"""``loopwright sessions export`` and ``loopwright sessions report``.

``export ID`` writes a session's transcript: a self-contained HTML page (``--html``, the
default) or ``conversation.json`` (``--json``), into the session's workspace unless ``-o``
names another path (``-o -`` prints it). ``report ID`` prints the session's cost and usage
report (``--json`` for the same figures as JSON): the model's tokens and cost and, apart, what
a warehouse billed for the session's queries (BigQuery), estimated at ``--usd-per-tib`` (or
``LOOPWRIGHT_BIGQUERY_USD_PER_TIB``, else the on-demand list price).

Only typer is imported at start-up; the commands load the store and renderers when they run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from loopwright.cli.guard import guarded

if TYPE_CHECKING:
    from loopwright.sessions.session import Session
    from loopwright.sessions.store import SessionStore

SessionArgument = Annotated[str, typer.Argument(metavar="ID", help="The session's id.")]


def register(app: typer.Typer) -> None:
    """Add ``export`` and ``report`` to the ``sessions`` command group."""
    sessions = _sessions_group(app)

    @sessions.command("export")
    def sessions_export(
        session_id: SessionArgument,
        html: Annotated[
            bool, typer.Option("--html", help="An HTML transcript viewer (the default).")
        ] = False,
        as_json: Annotated[
            bool,
            typer.Option("--json", help="conversation.json: messages, usage and timings."),
        ] = False,
        output: Annotated[
            str | None,
            typer.Option(
                "--output",
                "-o",
                metavar="PATH",
                help=(
                    "Where to write it ('-' prints it). Default: conversation.html or "
                    "conversation.json in the session's workspace."
                ),
            ),
        ] = None,
        redact: Annotated[
            bool,
            typer.Option(
                "--redact/--no-redact",
                help=(
                    "Replace secrets (API keys and tokens of known formats, passwords in "
                    "URLs, this machine's secret environment values) with [REDACTED:...] "
                    "markers (the default); --no-redact copies the session as stored."
                ),
            ),
        ] = True,
    ) -> None:
        """Export a session's transcript as an HTML page or as conversation.json."""

        def action() -> int:
            return export_session(
                session_id, as_json=as_json, html=html, output=output, redact=redact
            )

        raise typer.Exit(guarded(action))

    @sessions.command("report")
    def sessions_report(
        session_id: SessionArgument,
        as_json: Annotated[bool, typer.Option("--json", help="Print the report as JSON.")] = False,
        usd_per_tib: Annotated[
            float | None,
            typer.Option(
                "--usd-per-tib",
                metavar="USD",
                help=(
                    "The warehouse price per TiB billed that BigQuery costs are estimated at "
                    "(default: LOOPWRIGHT_BIGQUERY_USD_PER_TIB, else the on-demand list price)."
                ),
            ),
        ] = None,
    ) -> None:
        """Show a session's cost and usage: tokens, cost, latency, tools, models and runs, and
        what a warehouse (BigQuery) billed for its queries."""

        def action() -> int:
            return report_session(session_id, as_json=as_json, usd_per_tib=usd_per_tib)

        raise typer.Exit(guarded(action))


def _sessions_group(app: typer.Typer) -> typer.Typer:
    for group in app.registered_groups:
        if group.name == "sessions" and group.typer_instance is not None:
            return group.typer_instance
    raise RuntimeError("the loopwright app has no 'sessions' command group to extend")


def _load(store: SessionStore, session_id: str) -> Session:
    from loopwright.cli.history import load_saved
    from loopwright.cli.runtime import mend_metadata

    session = load_saved(store, session_id)
    mend_metadata(session)  # damaged (not a mapping): read as none, the history still shown
    return session


def export_session(
    session_id: str, *, as_json: bool, html: bool, output: str | None, redact: bool = True
) -> int:
    """``sessions export``: write the transcript and say where (with secrets redacted
    unless ``redact`` is false)."""
    import sys
    from pathlib import Path

    from loopwright.cli.runtime import EXIT_USAGE, CliError, open_store
    from loopwright.observability.stats import records_for_session
    from loopwright.observability.transcript import (
        CONVERSATION_FILE,
        conversation_record,
        redact_records,
        redact_session,
        render_html,
        write_atomically,
    )

    if as_json and html:
        raise CliError("choose one format: --html or --json", EXIT_USAGE)
    store = open_store()
    try:
        session = _load(store, session_id)
        records = records_for_session(session, store)
    finally:
        store.close()
    if redact:
        from loopwright.policy.redaction import Redactor

        redactor = Redactor()
        session, records = redact_session(session, redactor), redact_records(records, redactor)
    try:
        if as_json:
            import json

            text = json.dumps(
                conversation_record(session, records), ensure_ascii=False, indent=2, default=str
            )
            text += "\n"
            default = Path(session.workspace_dir) / CONVERSATION_FILE
        else:
            text = render_html(session, records)
            default = Path(session.workspace_dir) / "conversation.html"
    except ValueError as exc:  # a warehouse price that is not a number
        raise CliError(str(exc), EXIT_USAGE) from None
    if output == "-":
        sys.stdout.write(text)
        sys.stdout.flush()
        return 0
    target = Path(output).expanduser() if output else default
    if target.is_dir():
        target = target / default.name
    try:
        write_atomically(target, text)
    except OSError as exc:
        raise CliError(
            f"cannot write {target} ({exc.strerror or exc}); choose another path with -o PATH"
        ) from None
    typer.echo(f"Wrote {target}")
    return 0


def report_session(session_id: str, *, as_json: bool, usd_per_tib: float | None = None) -> int:
    """``sessions report``: the usage report as tables, or as JSON; warehouse costs at
    ``usd_per_tib`` USD per TiB billed (default: the environment's, else the list price)."""
    from loopwright.cli.runtime import EXIT_USAGE, CliError, open_store
    from loopwright.observability.reports import build_report
    from loopwright.observability.stats import warehouse_price

    try:  # a bad price is refused before the store is opened
        price = warehouse_price(usd_per_tib)
    except ValueError as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    store = open_store()
    try:
        session = _load(store, session_id)
        report = build_report(session, store=store, usd_per_tib=price)
    finally:
        store.close()
    if as_json:
        import json

        typer.echo(json.dumps(report.to_dict(), indent=2))
        return 0
    from loopwright.cli.render import make_console
    from loopwright.observability.reports import print_report

    print_report(make_console(), report)
    return 0
