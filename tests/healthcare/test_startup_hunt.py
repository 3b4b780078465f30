"""``loopwright healthcare`` starting up, and continuing a saved session: what the user sees
before the first model call when the session is busy elsewhere, its record is damaged, or
its database is locked by another program; and how often the session is read meanwhile.

The CLI runs as a process with scripted models, or in this process where a test counts the
store's reads or makes the default database small.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loopwright.cli import healthcare as healthcare_cli
from loopwright.healthcare.data import build_database, ensure_database
from loopwright.messages import Message
from loopwright.sessions.session import Session
from loopwright.sessions.sqlite import SQLiteStore

from .test_sessions_hunt import ROWS, _load, _lw, _script, _store


def _saved(home: Path, tmp_path: Path, session_id: str, metadata: dict[str, Any]) -> Session:
    """A saved session with one question in its history and ``metadata``, as an earlier
    ``loopwright healthcare`` left it (no database built for it in this home)."""
    home.mkdir(parents=True, exist_ok=True)
    store = _store(home)
    try:
        session = Session.create(
            session_id, root=tmp_path / "workspaces", store=store, metadata=metadata
        )
        session.messages.append(Message.user("yesterday's question"))
        session.messages.append(Message.assistant("yesterday's answer"))
        session.save()
    finally:
        store.close()
    return session


def _texts(session: Session) -> list[str]:
    return [m.text for m in session.messages if m.text]


def _one_line(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture
def in_process(loopwright_home: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The healthcare command run in this process, in ``loopwright_home``, with nothing from
    the environment choosing its store, model or limits."""
    for name in ("LOOPWRIGHT_STORE", "LOOPWRIGHT_MODEL", "LOOPWRIGHT_MAX_TURNS"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LOOPWRIGHT_STATS", "off")
    return loopwright_home


# --- a busy session ------------------------------------------------------------------------


def test_a_busy_session_is_refused_before_its_database_is_built(
    loopwright_home: Path, tmp_path: Path
) -> None:
    """A question in a session another process is running a turn in was refused only after
    the session's database was built (minutes, for a big one); it is refused at once, with
    nothing built and nothing written. A chat still opens on it (its turns wait)."""
    before = _saved(loopwright_home, tmp_path, "busy", {"agent": "healthcare", "rows": ROWS})
    store = _store(loopwright_home)
    try:
        assert store.claim("busy", "another-process", 60)  # a turn running elsewhere
        script = _script(tmp_path, "busy", ["Answer."])
        busy = _lw(
            loopwright_home, tmp_path, "healthcare", "-m", script, "--session", "busy", "Go on"
        )
        assert busy.returncode == 1, busy.stderr
        assert _one_line(busy.stderr) == (
            "error: session busy is busy: another process is running a turn in it; try again "
            "when that turn has ended (a process that was killed holds it for up to a minute)"
        )
        assert not (loopwright_home / "data").exists()  # no database built
        after = _load(loopwright_home, "busy")
        assert _texts(after) == _texts(before)
        assert after.updated_at == before.updated_at
        # the other process's lease is untouched: it still holds the session
        assert not store.claim("busy", "a-third-process", 60)

        chat = _lw(
            loopwright_home,
            tmp_path,
            "healthcare",
            "-m",
            script,
            "--session",
            "busy",
            input="/exit\n",
        )
        assert chat.returncode == 0, chat.stderr
        assert "session busy (resumed, 2 messages)" in chat.stdout
    finally:
        store.release("busy", "another-process")
        store.close()

    again = _lw(loopwright_home, tmp_path, "healthcare", "-m", script, "--session", "busy", "Go on")
    assert again.returncode == 0, again.stderr
    assert _texts(_load(loopwright_home, "busy"))[-2:] == ["Go on", "Answer."]


# --- reading the session -------------------------------------------------------------------


def test_the_session_is_read_once_at_start_up(
    in_process: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Continuing a session read it from the store three times before the first model call
    (for its data, for the session, and for the turn): twice at start-up. It is read once at
    start-up, and once more under the turn's lease (another process may have taken a turn
    during the database build)."""
    _saved(in_process, tmp_path, "reads", {"agent": "healthcare", "rows": ROWS})
    loads: list[str] = []
    load = SQLiteStore.load

    def counted(self: SQLiteStore, session_id: str) -> Session | None:
        loads.append(session_id)
        return load(self, session_id)

    monkeypatch.setattr(SQLiteStore, "load", counted)
    ready = healthcare_cli.prepare(
        _script(tmp_path, "reads", ["Answer."]),
        rows=None,
        database=None,
        session_id="reads",
        max_turns=None,
        timeout=None,
        permission_mode=None,
    )
    assert loads == ["reads"]
    assert ready.existing is not None
    assert _texts(ready.existing) == ["yesterday's question", "yesterday's answer"]
    assert healthcare_cli.ask(ready, "Go on") == 0
    assert loads == ["reads", "reads"]
    assert _texts(_load(in_process, "reads"))[-2:] == ["Go on", "Answer."]


# --- a damaged record ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("metadata", "said"),
    [
        (
            {"rows": -5},
            "records its generated database as -5 rx claims, which is not a size it can have "
            "(1,000 to 100,000,000)",
        ),
        (
            {"rows": 500},
            "records its generated database as 500 rx claims, which is not a size it can have "
            "(1,000 to 100,000,000)",
        ),
        (
            {"rows": 10**12},
            "records its generated database as 1,000,000,000,000 rx claims, which is not a "
            "size it can have (1,000 to 100,000,000)",
        ),
        (
            {"rows": "1000"},
            'records its generated database\'s size as "1000", which is not a whole number',
        ),
        (
            {"rows": True},
            "records its generated database's size as true, which is not a whole number",
        ),
        ({"database": 42}, "records its database as 42, which is not a database URL or file"),
        ({"database": ""}, 'records its database as "", which is not a database URL or file'),
    ],
)
def test_unusable_recorded_data_is_said_before_the_default_is_used(
    in_process: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    metadata: dict[str, Any],
    said: str,
) -> None:
    """A session whose recorded data is out of range or of the wrong type goes on with the
    default database, and its history; the note said it had worked on "the generated claims
    database (-5 rx claims)" or on "an unrecorded database" (a "1000" in quotes, an empty
    path), and nothing of what was wrong or what to give. It now says what is recorded, why
    it cannot be used, what it goes on with, and the command to choose."""
    monkeypatch.setattr(healthcare_cli, "DEFAULT_ROWS", ROWS)  # the default, built fast
    _saved(in_process, tmp_path, "odd", {"agent": "healthcare", **metadata})
    status = healthcare_cli.healthcare(
        "Go on", model=_script(tmp_path, "odd", ["Answer."]), session_id="odd"
    )
    err = _one_line(capsys.readouterr().err)
    assert status == 0, err
    assert (
        f"note: session odd {said}; it continues on the generated claims database "
        f"({ROWS:,} rx claims), and its earlier results may come from other data; to choose "
        "its data, run: loopwright healthcare --session odd --rows N (or --database URL)"
    ) in err
    assert err.count("note:") == 1
    assert "unrecorded" not in err
    session = _load(in_process, "odd")
    assert _texts(session) == [
        "yesterday's question",
        "yesterday's answer",
        "Go on",
        "Answer.",
    ]
    assert session.metadata == {"agent": "healthcare", "rows": ROWS}


def test_metadata_that_is_not_a_mapping_is_set_aside_and_the_history_kept(
    in_process: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A session record whose metadata is a JSON list (a damaged record) stopped the command
    with a traceback ("'list' object has no attribute 'get'"); it goes on with its history,
    with a note."""
    monkeypatch.setattr(healthcare_cli, "DEFAULT_ROWS", ROWS)
    _saved(in_process, tmp_path, "listed", {"agent": "healthcare", "rows": ROWS})
    with contextlib.closing(sqlite3.connect(in_process / "sessions.db")) as db, db:
        db.execute("UPDATE sessions SET metadata=? WHERE id='listed'", (json.dumps(["x"]),))
    status = healthcare_cli.healthcare(
        "Go on", model=_script(tmp_path, "listed", ["Answer."]), session_id="listed"
    )
    err = _one_line(capsys.readouterr().err)
    assert status == 0, err
    assert (
        "note: session listed has damaged metadata in the store (not a mapping of names to "
        "values), so what it recorded (its agent, its data) is not known; it continues with "
        "its history, and its next turn records new metadata"
    ) in err
    session = _load(in_process, "listed")
    assert _texts(session)[:2] == ["yesterday's question", "yesterday's answer"]
    assert _texts(session)[-2:] == ["Go on", "Answer."]
    assert session.metadata == {"agent": "healthcare", "rows": ROWS}


def test_an_unreadable_session_record_is_named_as_damaged(
    loopwright_home: Path, tmp_path: Path
) -> None:
    """Metadata that is not JSON at all was reported as "error: Expecting value: line 1
    column 1 (char 0)", a usage error (exit 2): no word of the session, nor of what is
    wrong. It is an error reading the session (exit 1), before anything is built."""
    _saved(loopwright_home, tmp_path, "garbled", {"agent": "healthcare", "rows": ROWS})
    with contextlib.closing(sqlite3.connect(loopwright_home / "sessions.db")) as db, db:
        db.execute("UPDATE sessions SET metadata='{not json' WHERE id='garbled'")
    script = _script(tmp_path, "garbled", ["Answer."])
    result = _lw(
        loopwright_home, tmp_path, "healthcare", "-m", script, "--session", "garbled", "Go on"
    )
    assert result.returncode == 1, result.stderr
    message = _one_line(result.stderr)
    assert message.startswith(
        f"error: cannot read session garbled: its record in the session store "
        f"{loopwright_home / 'sessions.db'} is damaged ("
    )
    assert message.endswith(
        "); start a new session instead (`loopwright sessions rm garbled` removes this one)"
    )
    assert "Traceback" not in result.stderr
    assert not (loopwright_home / "data").exists()


# --- the recorded database -----------------------------------------------------------------


def test_a_recorded_duckdb_url_whose_file_is_gone_says_what_to_give(
    loopwright_home: Path, tmp_path: Path
) -> None:
    """A session made with ``--database duckdb://FILE`` (recorded as a URL) whose file was
    moved was refused as if the user had typed the path ("check the path, or leave the
    database out", which is what they did), as a bare path's session is not: it says, as for
    a bare path, that the session's file is gone and what to give."""
    gone = tmp_path / "gone.duckdb"
    _saved(
        loopwright_home, tmp_path, "moved", {"agent": "healthcare", "database": f"duckdb://{gone}"}
    )
    script = _script(tmp_path, "moved", ["Answer."])
    result = _lw(
        loopwright_home, tmp_path, "healthcare", "-m", script, "--session", "moved", "Go on"
    )
    assert result.returncode == 2, result.stderr
    assert _one_line(result.stderr) == (
        f"error: session moved worked on the database file {gone}, which is not there any "
        "more; give it again: loopwright healthcare --session moved --database URL (or "
        "--rows N for the generated data)"
    )
    assert not (loopwright_home / "data").exists()

    gone.mkdir()  # now a directory where the file was
    result = _lw(
        loopwright_home, tmp_path, "healthcare", "-m", script, "--session", "moved", "Go on"
    )
    assert result.returncode == 2, result.stderr
    assert (
        f"error: session moved worked on the database file {gone}, which is a directory, not "
        "a DuckDB database file; give it again"
    ) in _one_line(result.stderr)


def _count_turns(dataset: str) -> list[Any]:
    """A turn that counts the rx claims into ``<dataset>.csv``, and its answer."""
    sql = "SELECT COUNT(*) AS n FROM rx_claims"
    query = {"sql": sql, "description": "count", "dataset_name": dataset}
    return [{"call": "SQL", "input": query}, f"Counted into {dataset}."]


def _count(workspace: Path, dataset: str) -> int:
    lines = (workspace / f"{dataset}.csv").read_text(encoding="utf-8").split()
    return int(lines[1])


@pytest.mark.parametrize("order", ["generated first", "file first"])
def test_a_session_moved_to_other_data_stays_on_it(
    loopwright_home: Path, tmp_path: Path, order: str
) -> None:
    """A session moved from the generated data to a database file kept both in its record
    (``rows`` and ``database``): continued without flags it went back to the generated data,
    and every continuation noted that it "worked on the generated claims database (1,000 rx
    claims); it continues on the generated claims database (1,000 rx claims), so its earlier
    results and files come from other data". The record now holds the data last used, and
    only it."""
    mine = build_database(tmp_path / "mine.duckdb", rx_claims=2 * ROWS)
    generated, given = ["--rows", str(ROWS)], ["--database", str(mine)]
    steps = [generated, given] if order == "generated first" else [given, generated]
    for name, flags in (("a", steps[0]), ("b", steps[1]), ("c", []), ("d", [])):
        script = _script(tmp_path, name, _count_turns(name))
        result = _lw(
            loopwright_home, tmp_path, "healthcare", *flags, "-m", script, "--session", "mv", name
        )
        assert result.returncode == 0, result.stderr
        assert ("note:" in result.stderr) == (name == "b"), result.stderr
    session = _load(loopwright_home, "mv")
    counts = [_count(session.workspace_dir, name) for name in "abcd"]
    if order == "generated first":
        assert counts == [ROWS, 2 * ROWS, 2 * ROWS, 2 * ROWS]
        assert session.metadata == {"agent": "healthcare", "database": str(mine.resolve())}
    else:
        assert counts == [2 * ROWS, ROWS, ROWS, ROWS]
        assert session.metadata == {"agent": "healthcare", "rows": ROWS}


# --- a locked database file ----------------------------------------------------------------


@contextlib.contextmanager
def _held_for_writing(path: Path) -> Iterator[int]:
    """Another process with ``path`` open for writing (DuckDB locks the file); its pid."""
    code = (
        "import sys, duckdb\n"
        f"con = duckdb.connect({str(path)!r})\n"
        "print('open', flush=True)\n"
        "sys.stdin.read()\n"
    )
    holder = subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "open"
        yield holder.pid
    finally:
        holder.communicate("", timeout=60)


def test_a_locked_database_file_is_one_sentence_saying_which_and_what_to_do(
    loopwright_home: Path, tmp_path: Path
) -> None:
    """A DuckDB file another program has open for writing was refused as a usage error
    (exit 2) with DuckDB's message wrapped in ours; the generated database, locked, was
    said to be damaged: "delete that file to have it built again". It is a runtime error
    (exit 1, as for a database that fails), naming the file, the program holding it, and
    what to do."""
    mine = build_database(tmp_path / "mine.duckdb", rx_claims=ROWS)
    generated = ensure_database(rx_claims=ROWS)  # the one `--rows 1000` uses
    assert generated.is_relative_to(loopwright_home)
    script = _script(tmp_path, "locked", ["Answer."])
    for path, flags in ((mine, ["--database", str(mine)]), (generated, ["--rows", str(ROWS)])):
        with _held_for_writing(path) as pid:
            result = _lw(loopwright_home, tmp_path, "healthcare", "-m", script, *flags, "Hi")
        assert result.returncode == 1, result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1, result.stderr
        assert lines[0].startswith(f"error: the database file {path} is locked: another program (")
        assert lines[0].endswith(
            f", PID {pid}) has it open for writing; close it there (or have that program open "
            "it read-only), then try again"
        )
        assert "delete that file" not in result.stderr
    # once the other program is done, the same commands work
    result = _lw(loopwright_home, tmp_path, "healthcare", "-m", script, "--rows", str(ROWS), "Hi")
    assert result.returncode == 0, result.stderr
