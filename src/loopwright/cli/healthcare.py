"""``loopwright healthcare``: the healthcare research agent, one question or a chat.

``loopwright healthcare "Find the top 10 prescribers of HUMIRA in California"`` answers one
question and exits; ``loopwright healthcare`` opens a chat. The first use builds the
synthetic claims database (a progress bar on stderr); ``--database URL`` uses a real one
instead (``postgresql://...``, ``bigquery://project/dataset``, a ``.duckdb`` file).

Only typer is imported at start-up; the agent, the data generator and rich are imported when
the command runs. Exit statuses are ``loopwright run``'s: 0 answered, 1 error, 2 a limit or a
usage error, 130 interrupted.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING, Annotated, Any, TypeGuard

import typer

from loopwright.cli.options import (
    CompactOption,
    DatabaseOption,
    JsonOption,
    PermissionOption,
    SessionOption,
    TimeoutOption,
)

if TYPE_CHECKING:
    from rich.progress import Progress

    from loopwright.agent import Agent
    from loopwright.cli.runtime import Setup
    from loopwright.models import ModelChoice
    from loopwright.sessions.session import Session
    from loopwright.sessions.store import SessionStore

DEFAULT_ROWS = 200_000
MIN_ROWS = 1_000
MAX_ROWS = 100_000_000  # healthcare.data.MAX_RX_CLAIMS (not imported: --help stays fast)


def _rows_option(claims: str) -> Any:
    """``--rows N`` within the generator's bounds (``None``: not given); ``claims`` opens its
    help."""
    return typer.Option(
        "--rows",
        min=MIN_ROWS,
        max=MAX_ROWS,
        metavar="N",
        help=f"{claims} in the generated database (built on first use) [default: {DEFAULT_ROWS}].",
        show_default=False,
    )


#: ``--rows`` of ``loopwright healthcare``.
RowsOption = Annotated[int | None, _rows_option("Pharmacy claims")]
#: ``--rows`` of the commands that run the healthcare agent with ``--agent healthcare``.
AgentRowsOption = Annotated[int | None, _rows_option("With --agent healthcare: pharmacy claims")]


def register(app: typer.Typer) -> None:
    """Add the ``healthcare`` command to the ``loopwright`` app."""
    app.command("healthcare")(healthcare_command)


def healthcare_command(
    question: Annotated[
        str | None,
        typer.Argument(
            metavar="QUESTION",
            help="A research question to answer and exit ('-' reads stdin); none opens a chat.",
        ),
    ] = None,
    model: Annotated[
        str,
        typer.Option(
            "--model",
            "-m",
            metavar="MODEL",
            help=(
                "Model string, as for `loopwright run` ('auto': LOOPWRIGHT_MODEL, else by the "
                "API keys set, else the embedded model; local:gemma3-270m is the better of "
                "the embedded ones here)."
            ),
        ),
    ] = "auto",
    rows: RowsOption = None,
    database: DatabaseOption = None,
    session: SessionOption = None,
    json_lines: JsonOption = False,
    max_turns: Annotated[
        int | None,
        typer.Option(
            "--max-turns",
            min=1,
            metavar="N",
            help=(
                "Stop after this many model calls [default: LOOPWRIGHT_MAX_TURNS, else 50; "
                "6 in compact mode]."
            ),
        ),
    ] = None,
    timeout: TimeoutOption = None,
    permission_mode: PermissionOption = None,
    compact: CompactOption = None,
) -> None:
    """Ask the healthcare research agent about claims data (synthetic by default).

    With a QUESTION it answers and exits; without one it opens a chat.
    """

    def action() -> int:
        return healthcare(
            question,
            model=model,
            rows=rows,
            database=database,
            session_id=session,
            as_json=json_lines,
            max_turns=max_turns,
            timeout=timeout,
            permission_mode=permission_mode,
            compact=compact,
        )

    from loopwright.cli.guard import guarded

    raise typer.Exit(guarded(action))


def healthcare(
    question: str | None,
    *,
    model: str,
    rows: int | None = None,
    database: str | None = None,
    session_id: str | None = None,
    as_json: bool = False,
    max_turns: int | None = None,
    timeout: float | None = None,
    permission_mode: str | None = None,
    compact: bool | None = None,
) -> int:
    """Answer ``question`` (or chat when it is ``None``); return the exit status.

    ``compact`` is ``--compact``/``--full`` (``None``: neither; see :func:`compact_mode`).
    ``permission_mode`` (default ``LOOPWRIGHT_PERMISSION_MODE``, else ``auto``) is as for
    ``loopwright run``: ``ask`` makes the Python, Bash, Write and Edit calls wait for an
    answer at the prompt, ``read-only`` refuses them; SQL and DefineCohort only read the
    database, so they run in every mode and save their result files."""
    from loopwright.cli.run import read_task

    check_data_options(rows, database)
    example = 'loopwright healthcare "Find the top 10 prescribers of HUMIRA in California"'
    prompt = read_task(question, example=example) if question is not None else None
    ready = prepare(
        model,
        rows=rows,
        database=database,
        session_id=session_id,
        max_turns=max_turns,
        timeout=timeout,
        permission_mode=permission_mode,
        compact=compact,
        refuse_busy=prompt is not None,  # a chat waits for its turn; a question cannot
    )
    if prompt is None:
        return chat(ready, as_json=as_json)
    return ask(ready, prompt, as_json=as_json)


def check_data_options(rows: int | None, database: str | None) -> None:
    """A :class:`CliError` for ``--rows`` beside ``--database`` (as serve and eval: not
    ignored)."""
    from loopwright.cli.runtime import EXIT_USAGE, CliError

    if database is not None and rows is not None:
        from loopwright.cli.serve import ROWS_WITH_DATABASE

        raise CliError(ROWS_WITH_DATABASE, EXIT_USAGE)


def prepare(
    model: str,
    *,
    rows: int | None,
    database: str | None,
    session_id: str | None,
    max_turns: int | None,
    timeout: float | None,
    permission_mode: str | None,
    compact: bool | None = None,
    refuse_busy: bool = False,
) -> Setup:
    """The healthcare agent on its data and the session it works in, as ``loopwright
    healthcare`` (and ``loopwright mcp serve --agent healthcare``) make them: the model
    chosen (and announced), a saved session continued on the data it recorded unless
    ``rows``/``database`` say otherwise (with a note), the database built if need be.

    The session is read once, before the build; ``refuse_busy`` makes a session another
    process is running a turn in a :class:`SessionBusy` before the build too (a command
    about to run a turn; the turn reads the session again, under its lease)."""
    from loopwright.cli.runtime import (
        Setup,
        announce_model,
        checked_session_id,
        choose_model,
        load_session,
        open_store,
        permission_policy,
        settings_limits,
        warn_continuation,
    )
    from loopwright.cli.runtime import refuse_busy as refuse_if_busy
    from loopwright.sessions.session import new_session_id

    check_data_options(rows, database)
    options = limit_options(max_turns, timeout)
    *_, permission_mode = settings_limits(max_turns, timeout, permission_mode)
    policy = permission_policy(permission_mode)
    choice = embedded_choice(choose_model(model))
    if session_id is not None:  # before a database build that may take minutes
        checked_session_id(session_id)
    store = open_store()
    existing: Session | None = None
    noted = False
    if session_id is not None:
        if refuse_busy:
            refuse_if_busy(store, session_id)
        existing = load_session(store, session_id)
        if existing is not None and database is None and rows is None:
            # a session continues on its own data, not on whatever the defaults are today
            rows, database, note = recorded_data(existing)
            if note is not None:  # said before the build of the default database
                print(f"note: {note}", file=sys.stderr, flush=True)
                noted = True
    agent = build_agent(
        choice.spec,
        store=store,
        rows=DEFAULT_ROWS if rows is None else rows,
        database=database,
        policy=policy,
        compact=compact,
        **options,
    )
    metadata = data_metadata(rows, database)
    ready = Setup(agent, session_id or new_session_id(), existing, metadata)
    announce_model(choice, agent.model.name)
    if not noted:  # the note said what the session recorded, and what it goes on with
        warn_continuation(ready)
    return ready


def data_metadata(rows: int | None, database: str | None) -> dict[str, Any]:
    """What a healthcare session records about its data (see ``runtime.AGENT_KEY``): the
    generated database's size, or the database given (a URL with its password starred out,
    a file's absolute path)."""
    from loopwright.cli.runtime import AGENT_KEY, DATABASE_KEY, HEALTHCARE, ROWS_KEY
    from loopwright.sql.urls import absolute, redact

    if database is None:
        return {AGENT_KEY: HEALTHCARE, ROWS_KEY: DEFAULT_ROWS if rows is None else rows}
    # a relative file is the current directory's: recorded absolute, the session continues
    # on it from anywhere
    database = absolute(database)
    return {
        AGENT_KEY: HEALTHCARE,
        DATABASE_KEY: redact(database) if "://" in database else database,
    }


def recorded_data(session: Session) -> tuple[int | None, str | None, str | None]:
    """The ``--rows``/``--database`` a saved healthcare session worked on (``None, None``
    for one of another agent, or one that recorded no data), and a note when what it
    recorded cannot be used (damaged: it goes on with the default); a recorded database it
    cannot reopen (its password was not kept, its file is gone) is a :class:`CliError`
    saying what to give."""
    import shlex

    from loopwright.cli.runtime import (
        AGENT_KEY,
        DATABASE_KEY,
        EXIT_USAGE,
        HEALTHCARE,
        ROWS_KEY,
        CliError,
    )

    metadata = session.metadata if isinstance(session.metadata, dict) else {}
    if metadata.get(AGENT_KEY) != HEALTHCARE:
        return None, None, None
    rows = metadata.get(ROWS_KEY)
    if _whole(rows) and MIN_ROWS <= rows <= MAX_ROWS:
        return rows, None, None
    database = metadata.get(DATABASE_KEY)
    quoted = shlex.quote(session.id)
    if not isinstance(database, str) or not database.strip():
        if ROWS_KEY not in metadata and DATABASE_KEY not in metadata:
            return None, None, None  # recorded nothing (made before sessions recorded it)
        return None, None, _unusable_record(session.id, metadata, quoted)
    again = (
        f"give it again: loopwright healthcare --session {quoted} "
        "--database URL (or --rows N for the generated data)"
    )
    if "://" in database and "***" in database:  # the password was starred out
        raise CliError(
            f"session {session.id} works on {database}, whose password is not kept; {again}",
            EXIT_USAGE,
        )
    path = _duckdb_file(database)
    if path is not None:
        from loopwright.sql.duckdb import file_problem

        problem = file_problem(path)
        if problem == "does not exist":
            problem = "is not there any more"
        if problem is not None:
            raise CliError(
                f"session {session.id} worked on the database file {path}, which {problem}; "
                f"{again}",
                EXIT_USAGE,
            )
    return None, database, None


def _whole(value: object) -> TypeGuard[int]:
    """Whether ``value`` is a whole number (``True`` is an int to Python, not a size)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _duckdb_file(database: str) -> str | None:
    """The DuckDB file a recorded database names (a bare path, or a ``duckdb://`` URL's);
    ``None`` for other databases and an in-memory one."""
    from urllib.parse import unquote

    scheme, sep, rest = database.partition("://")
    if not sep:
        return database
    if scheme.lower() != "duckdb":
        return None
    path = unquote(rest.partition("?")[0])
    return None if path in ("", ":memory:", "/:memory:") else path


def _unusable_record(session_id: str, metadata: dict[str, Any], quoted: str) -> str:
    """The note for a healthcare session whose recorded data cannot be used: what it
    records, that it goes on with the default, and how to choose."""
    import json

    from loopwright.cli.runtime import DATABASE_KEY, ROWS_KEY

    if ROWS_KEY in metadata:
        rows = metadata[ROWS_KEY]
        if _whole(rows):
            what = (
                f"its generated database as {rows:,} rx claims, which is not a size it can "
                f"have ({MIN_ROWS:,} to {MAX_ROWS:,})"
            )
        else:
            shown = json.dumps(rows, default=repr)[:60]
            what = f"its generated database's size as {shown}, which is not a whole number"
    else:
        shown = json.dumps(metadata[DATABASE_KEY], default=repr)[:60]
        what = f"its database as {shown}, which is not a database URL or file"
    return (
        f"session {session_id} records {what}; it continues on the generated claims database "
        f"({DEFAULT_ROWS:,} rx claims), and its earlier results may come from other data; to "
        f"choose its data, run: loopwright healthcare --session {quoted} --rows N (or "
        "--database URL)"
    )


def limit_options(max_turns: int | None, timeout: float | None) -> dict[str, Any]:
    """The agent's limits from ``--max-turns``/``--timeout``, then the environment. With no
    turn limit given anywhere the agent keeps its own default (fewer turns for tiny models)."""
    from loopwright.cli.runtime import settings_limits

    turns, seconds, _ = settings_limits(max_turns, timeout, "auto")
    options: dict[str, Any] = {"timeout": seconds}
    if max_turns is not None or os.environ.get("LOOPWRIGHT_MAX_TURNS", "").strip():
        options["max_turns"] = turns
    return options


def embedded_choice(choice: ModelChoice) -> ModelChoice:
    """When the default falls back to the embedded model, the bundled Gemma 3 270M if it is
    installed: it writes this agent's SQL far better than the default SmolLM2-135M."""
    from loopwright.models import ModelChoice

    if choice.spec != "local" or not choice.reason.startswith("default"):
        return choice
    try:
        from loopwright.models.local import bundled_models
    except ImportError:
        return choice
    if "gemma3-270m" not in bundled_models():
        return choice
    return ModelChoice("local:gemma3-270m", f"{choice.reason}; Gemma 3 writes SQL better")


def build_agent(
    model: str,
    *,
    store: SessionStore,
    rows: int = DEFAULT_ROWS,
    database: str | None = None,
    **options: Any,
) -> Agent:
    """The healthcare agent, building the claims database first when none is given (with a
    progress bar on stderr); user errors become a :class:`CliError`. The model is made
    first, so that a mistyped one is refused before a build that may take minutes. It has
    the CLI's instruments (the stats recorder of ``sessions show``/``report``...) unless
    ``options`` name others, and works in compact mode as ``options["compact"]`` (the
    ``--compact``/``--full`` given, or ``None``) and the environment say (:func:`compact_mode`)."""
    from loopwright.cli.runtime import cli_instruments
    from loopwright.healthcare.agent import healthcare_agent
    from loopwright.models import resolve_model

    if "instruments" not in options:
        options["instruments"] = cli_instruments()
    options.setdefault("mask_identifiers", mask_identifiers())
    options["compact"] = compact_mode(options.get("compact"))
    with agent_errors(database):
        resolved = resolve_model(model)
        source = database if database is not None else generated_database(rows)
        return healthcare_agent(resolved, database=source, store=store, **options)


def mask_identifiers() -> bool:
    """``LOOPWRIGHT_MASK_IDENTIFIERS``: whether the SQL preview the model sees masks direct
    patient identifiers (on unless ``0``, ``false``, ``off`` or ``no``); anything else is a
    :class:`CliError` naming the values."""
    from loopwright.cli.runtime import EXIT_USAGE, CliError
    from loopwright.settings import switch

    raw = os.environ.get("LOOPWRIGHT_MASK_IDENTIFIERS", "").strip().lower()
    on = switch(raw)
    if on is not None or not raw:
        return on is not False
    raise CliError(
        f"LOOPWRIGHT_MASK_IDENTIFIERS={raw!r}: use 1 (mask patient identifiers in what the "
        "model sees, the default) or 0 (show them: a de-identified extract, a local model)",
        EXIT_USAGE,
    )


def compact_mode(flag: bool | None) -> bool | None:
    """Whether the agent works in compact mode, for a tiny model (see ``healthcare_agent``):
    ``--compact``/``--full`` (``flag``) if given, else ``LOOPWRIGHT_COMPACT`` (``1``, ``0``,
    or ``auto``); ``None`` (auto, the default): for the tiny models, the embedded ``local:``
    ones and those whose name gives under 2B parameters (``openai:qwen2.5:0.5b@URL``,
    ``llama3.2:1b``; :func:`loopwright.healthcare.agent.is_small_model`). A value it does not
    know is a :class:`CliError` naming the values."""
    from loopwright.cli.runtime import EXIT_USAGE, CliError
    from loopwright.settings import switch

    if flag is not None:
        return flag
    raw = os.environ.get("LOOPWRIGHT_COMPACT", "").strip().lower()
    on = switch(raw)
    if on is not None or raw in ("", "auto"):
        return on
    raise CliError(
        f"LOOPWRIGHT_COMPACT={raw!r}: use 1 (compact mode, for a tiny model: a short prompt "
        "and the SQL tool alone), 0 (the full prompt and every tool) or auto (the default: "
        "compact for the embedded local: models and those named with under 2B parameters, "
        "such as qwen2.5:0.5b or llama3.2:1b)",
        EXIT_USAGE,
    )


def generated_database(rows: int) -> os.PathLike[str]:
    """The synthetic claims database of ``rows`` rx claims, built first if it is not there
    (with a progress bar on stderr); a failed or interrupted build is a :class:`CliError`."""
    from loopwright.cli.runtime import EXIT_INTERRUPTED, CliError
    from loopwright.healthcare.data import DatabaseBuildError, ensure_database

    bar = _ProgressBar(f"Building the synthetic claims database ({rows:,} rx claims)")
    try:
        with bar:
            return ensure_database(rx_claims=rows, progress=bar.update)
    except KeyboardInterrupt:
        if bar.step.startswith("waiting"):  # another process builds it: that build goes on
            raise CliError(
                "interrupted while another process was building the claims database; that "
                "build goes on, and the next run uses its file",
                EXIT_INTERRUPTED,
            ) from None
        raise CliError(
            "interrupted; the claims database was not built (nothing was kept)",
            EXIT_INTERRUPTED,
        ) from None
    except DatabaseBuildError as exc:
        raise CliError(f"cannot build the claims database: {exc}") from None


@contextlib.contextmanager
def agent_errors(database: str | None) -> Iterator[None]:
    """Turn what making the healthcare agent can raise into a :class:`CliError` saying what
    to do; ``database`` is the one the user gave (``None``: the generated one)."""
    import duckdb

    from loopwright.cli.runtime import EXIT_USAGE, CliError
    from loopwright.healthcare.prompt import DatabaseFileError
    from loopwright.models.base import ModelError
    from loopwright.sql import SQLError

    try:
        try:
            yield
        except (SQLError, OSError, ValueError, duckdb.Error) as exc:
            locked = locked_file(str(exc))
            if locked is None:
                raise
            # neither damaged (nothing to delete) nor the caller's mistake: in use elsewhere
            raise CliError(locked) from None
    except ModelError as exc:
        raise CliError(f"{exc} (or choose another model with --model)", EXIT_USAGE) from None
    except (SQLError, OSError) as exc:  # before ValueError: DatabaseUnreadable is both
        raise CliError(f"cannot use the database: {exc}") from None
    except DatabaseFileError as exc:
        if database is not None:  # the path the user gave
            raise CliError(str(exc), EXIT_USAGE) from None
        # the generated file, damaged (a disk error, an edit): building it again mends it
        said = str(exc).strip().rstrip("!.")
        raise CliError(
            f"cannot use the generated claims database: {said}; delete that file to have it "
            "built again"
        ) from None
    except (ValueError, ImportError) as exc:
        raise CliError(str(exc), EXIT_USAGE) from None
    except duckdb.Error as exc:
        hint = "" if database is not None else "; delete that file to have it built again"
        raise CliError(f"cannot use the database: {str(exc).strip()}{hint}") from None


def locked_file(message: str) -> str | None:
    """What to tell the user when ``message`` (DuckDB's, as any layer passed it on) says a
    database file is locked by another process that has it open for writing; ``None`` for
    other errors."""
    import re

    found = re.search(r'Could not set lock on file "(?P<file>[^"]+)"', message)
    if found is None:
        return None
    holder = re.search(
        r"Conflicting lock is held in (?P<program>.+?) \(PID (?P<pid>\d+)\)", message
    )
    who = (
        f"another program ({holder['program']}, PID {holder['pid']})"
        if holder is not None
        else "another program"
    )
    return (
        f"the database file {found['file']} is locked: {who} has it open for writing; close "
        "it there (or have that program open it read-only), then try again"
    )


def ask(ready: Setup, prompt: str, *, as_json: bool = False) -> int:
    """Run one question to the end with the ``run`` command's driver; the exit status."""
    from loopwright.cli.run import run_ready

    return run_ready(ready, prompt, as_json=as_json, hint=resume_hint, show_workspace=True)


def chat(ready: Setup, *, as_json: bool = False) -> int:
    """A chat with the agent over one session, with the chat command's slash commands;
    the end of input or ``/exit`` quits."""
    from loopwright.cli.chat import chat_ready

    return chat_ready(ready, title="loopwright healthcare", hint=resume_hint, as_json=as_json)


def resume_hint(session_id: str) -> str:
    """How to continue this session with the healthcare agent."""
    import shlex

    quoted = shlex.quote(session_id)
    return f'session {session_id} · continue with: loopwright healthcare --session {quoted} ["..."]'


class _ProgressBar:
    """A rich progress bar on stderr, shown only if the work reports progress (a database
    that already exists is not rebuilt, so nothing is shown)."""

    def __init__(self, title: str) -> None:
        self.title = title
        #: the latest step reported ("" before the first)
        self.step = ""
        self._progress: Progress | None = None
        self._task: Any = None

    def update(self, fraction: float, message: str) -> None:
        self.step = message
        if self._progress is None:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

            self._progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TextColumn("{task.fields[step]}", style="dim"),
                console=Console(stderr=True),
            )
            self._progress.start()
            self._task = self._progress.add_task(self.title, total=1.0, step="")
        self._progress.update(self._task, completed=fraction, step=message)

    def __enter__(self) -> _ProgressBar:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.stop()
