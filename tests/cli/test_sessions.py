"""``loopwright sessions list|show|rm`` against the default SQLite store."""

from __future__ import annotations

from pathlib import Path

from .conftest import CliRunner


def test_list_show_and_remove_a_session(cli: CliRunner, loopwright_home: Path) -> None:
    empty = cli("sessions", "list")
    assert empty.returncode == 0
    assert "No saved sessions" in empty.stdout

    assert cli("run", "--session", "alpha", "count the rows").returncode == 0
    assert cli("run", "--session", "beta", "plot the chart").returncode == 0

    listed = cli("sessions", "list")
    assert listed.returncode == 0
    rows = listed.stdout.splitlines()
    assert rows[0].split()[:3] == ["ID", "UPDATED", "MSGS"]
    assert rows[1].split()[0] == "beta"  # most recently updated first
    assert rows[2].split()[0] == "alpha"
    assert "count the rows" in rows[2]
    assert rows[2].split()[3] == "6"  # user, 2 x (call + result), answer

    shown = cli("sessions", "show", "alpha")
    assert shown.returncode == 0
    out = shown.stdout
    assert "session alpha" in out
    assert str(loopwright_home / "workspaces" / "alpha") in out
    assert "user:\ncount the rows" in out
    assert "assistant:" in out
    assert "▸ Write task.md" in out
    assert "✓ Created task.md" in out
    assert "3 model calls" in out
    assert "2 tool calls" in out
    assert "tokens" in out

    workspace = loopwright_home / "workspaces" / "alpha"
    assert (workspace / "task.md").exists()
    removed = cli("sessions", "rm", "alpha")
    assert removed.returncode == 0
    assert "Removed session alpha" in removed.stdout
    assert not workspace.exists()
    after = cli("sessions", "list").stdout
    assert "alpha" not in after
    assert "beta" in after
    gone = cli("sessions", "show", "alpha")
    assert gone.returncode == 1


def test_rm_can_keep_the_workspace(cli: CliRunner, loopwright_home: Path) -> None:
    cli("run", "--session", "keep", "a task")
    result = cli("sessions", "rm", "--keep-workspace", "keep")

    assert result.returncode == 0
    assert (loopwright_home / "workspaces" / "keep" / "task.md").exists()
    assert cli("sessions", "show", "keep").returncode == 1


def test_an_unknown_session_is_one_clear_sentence_and_exit_1(cli: CliRunner) -> None:
    for command in ("show", "rm"):
        result = cli("sessions", command, "no-such-session")

        assert result.returncode == 1
        assert result.stdout == ""
        lines = result.stderr.strip().splitlines()
        assert lines == [
            "error: no saved session 'no-such-session'; list saved sessions with "
            "`loopwright sessions list`"
        ]


def test_the_list_keeps_whole_ids_at_any_terminal_width() -> None:
    """An ID cut short ("81d46e3c7e…") cannot be given to /resume or sessions show."""
    import io
    import time
    import uuid

    from rich.console import Console

    from loopwright.cli.history import print_session_list
    from loopwright.events import Usage
    from loopwright.sessions import SessionInfo

    title = "Find the top 10 prescribers of HUMIRA in California and chart them by quarter"
    now = time.time()
    usage = Usage(input_tokens=123_456, output_tokens=7_890, cost_usd=1.25)
    ids = [uuid.uuid4().hex, uuid.uuid4().hex, "notes-1"]
    infos = [SessionInfo(i, "/w", now, now, 12, usage, title) for i in ids]
    for width, shows_title in ((60, False), (80, False), (100, True), (200, True)):
        out = io.StringIO()
        print_session_list(Console(file=out, width=width), infos, "here")
        lines = out.getvalue().splitlines()
        assert [line.split()[0] for line in lines] == ["ID", *ids]
        assert all(len(line) <= width for line in lines)
        if width >= 80:  # the numbers fit whole beside the whole ID
            assert lines[1].split()[3:6] == ["12", "131,346", "$1.2500"]
        assert ("TITLE" in lines[0]) is shows_title
        if width == 200:
            assert lines[1].endswith(
                "  Find the top 10 prescribers of HUMIRA in California and cha…"
            )


def test_rm_refuses_a_session_whose_turn_runs_in_another_process(
    cli: CliRunner, loopwright_home: Path
) -> None:
    """``rm`` deleted a session while another process ran a turn in it: the workspace went
    from under the running agent, and its next save wrote the session back. It is refused
    now, while the turn's lease is held, and works once the turn has ended."""
    from loopwright.sessions import SQLiteStore

    assert cli("run", "--session", "busy", "a task").returncode == 0
    store = SQLiteStore(loopwright_home / "sessions.db")
    try:
        assert store.claim("busy", "another-process", 60)  # a turn running elsewhere
        refused = cli("sessions", "rm", "busy")
        assert refused.returncode == 1
        assert "session busy is busy: another process is running a turn in it" in (refused.stderr)
        assert store.load("busy") is not None
        assert (loopwright_home / "workspaces" / "busy" / "task.md").exists()
        assert not store.claim("busy", "a-third-process", 60)  # still the turn's

        store.release("busy", "another-process")  # the turn ends
        assert cli("sessions", "rm", "busy").returncode == 0
        assert store.load("busy") is None
        assert store.claim("busy", "a-fourth-process", 60)  # no lease left behind
    finally:
        store.close()


def test_rm_of_an_unknown_session_leaves_no_lease_behind(
    cli: CliRunner, loopwright_home: Path
) -> None:
    from loopwright.sessions import SQLiteStore

    assert cli("sessions", "rm", "never-was").returncode == 1
    store = SQLiteStore(loopwright_home / "sessions.db")
    try:
        rows = store._db.execute("SELECT session_id FROM leases").fetchall()
    finally:
        store.close()
    assert rows == []
