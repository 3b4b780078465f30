"""The healthcare agent's sessions over time: the analyst who comes back the next day.

Sessions continued by a second process while the first still works in them, a chat left open
while another process takes a turn, sessions continued with no ``--rows``/``--database``
(on their own data, not on today's defaults) or on other data, ``sessions resume`` and the
plain ``chat``/``run`` commands on a healthcare session, and the summary of a long session
of a tiny local model. The CLI runs as a process with scripted models.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import httpx
import pytest

from cli_process import cli_env, run_cli
from loopwright import MemoryStore
from loopwright.healthcare.agent import healthcare_agent
from loopwright.healthcare.data import build_database
from loopwright.messages import ToolResultBlock
from loopwright.models.base import ModelRequest
from loopwright.models.scripted import ScriptedModel, ScriptedToolCall
from loopwright.sessions.session import Session
from loopwright.sessions.sqlite import SQLiteStore

ROWS = 1000  # the smallest generated database: built in a moment


def _script(tmp_path: Path, name: str, turns: list[Any]) -> str:
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(turns), encoding="utf-8")
    return f"scripted:{path}"


def _count_turns(dataset: str) -> list[Any]:
    """A turn that counts the rx claims into ``<dataset>.csv``, and its answer."""
    sql = "SELECT COUNT(*) AS n FROM rx_claims"
    query = {"sql": sql, "description": "count", "dataset_name": dataset}
    return [{"call": "SQL", "input": query}, f"Counted into {dataset}."]


def _lw(
    home: Path, cwd: Path, *args: str, input: str = "", timeout: float = 240
) -> subprocess.CompletedProcess[str]:
    return run_cli(list(args), env=cli_env(home), cwd=cwd, input=input, timeout=timeout)


def _ask(
    home: Path, cwd: Path, session: str, prompt: str, *flags: str, name: str, turns: list[Any]
) -> subprocess.CompletedProcess[str]:
    """``loopwright healthcare FLAGS -m scripted:<name>.json --session SESSION PROMPT``, the
    scripted model playing ``turns``."""
    script = _script(cwd, name, turns)
    return _lw(home, cwd, "healthcare", *flags, "-m", script, "--session", session, prompt)


def _store(home: Path) -> SQLiteStore:
    return SQLiteStore(home / "sessions.db")


def _load(home: Path, session_id: str) -> Session:
    store = _store(home)
    try:
        session = store.load(session_id)
    finally:
        store.close()
    assert session is not None
    return session


def _turn_over(home: Path, session_id: str, answer: str) -> bool:
    """Whether the session's history holds ``answer`` and no process leases the session."""
    if answer not in [m.text for m in _load(home, session_id).messages]:
        return False
    with contextlib.closing(sqlite3.connect(home / "sessions.db")) as db:
        held = db.execute("SELECT COUNT(*) FROM leases WHERE session_id=?", (session_id,))
        return bool(held.fetchone()[0] == 0)


def _user_texts(session: Session) -> list[str]:
    return [m.text for m in session.messages if m.role == "user" and m.text]


def _count(workspace: Path, dataset: str) -> int:
    lines = (workspace / f"{dataset}.csv").read_text(encoding="utf-8").split()
    return int(lines[1])


# --- two processes, one session ------------------------------------------------------------


def test_a_second_process_waits_for_the_turn_running_elsewhere(
    loopwright_home: Path, tmp_path: Path
) -> None:
    """While another process runs a turn in the session (it holds the session's lease in the
    store, as the server's turns do), a second ``healthcare --session`` refuses in one
    sentence and writes nothing: both writing the history at once interleaved their
    messages, each over the other's."""
    first = _ask(
        loopwright_home,
        tmp_path,
        "s1",
        "How many claims?",
        "--rows",
        str(ROWS),
        name="first",
        turns=_count_turns("day1"),
    )
    assert first.returncode == 0, first.stderr
    before = _load(loopwright_home, "s1")

    store = _store(loopwright_home)
    try:
        assert store.claim("s1", "another-process", 60)  # a turn running elsewhere
        busy = _ask(
            loopwright_home, tmp_path, "s1", "And today?", name="second", turns=_count_turns("day2")
        )
        assert busy.returncode == 1
        assert "session s1 is busy: another process is running a turn in it" in busy.stderr
        assert "Traceback" not in busy.stderr
        after = _load(loopwright_home, "s1")
        assert len(after.messages) == len(before.messages)
        assert after.updated_at == before.updated_at
        assert not (before.workspace_dir / "day2.csv").exists()
    finally:
        store.release("s1", "another-process")
        store.close()

    again = _ask(
        loopwright_home, tmp_path, "s1", "And today?", name="third", turns=_count_turns("day2")
    )
    assert again.returncode == 0, again.stderr
    assert _user_texts(_load(loopwright_home, "s1")) == ["How many claims?", "And today?"]


def test_a_chat_left_open_keeps_the_turns_taken_elsewhere_meanwhile(
    loopwright_home: Path, tmp_path: Path
) -> None:
    """An analyst leaves a healthcare chat open, asks a one-shot question in the same session
    from another terminal, then goes on in the chat: the chat's next turn starts from the
    session as it is now, rather than writing its old copy over the other turn."""
    made = _ask(
        loopwright_home, tmp_path, "s2", "Start", "--rows", str(ROWS), name="made", turns=["Hello."]
    )
    assert made.returncode == 0, made.stderr
    chat_script = _script(tmp_path, "chat", [*_count_turns("chat1"), *_count_turns("chat2")])
    args = ["healthcare", "-m", chat_script, "--session", "s2"]
    chat = subprocess.Popen(
        [sys.executable, "-m", "loopwright.cli.app", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        encoding="utf-8",
        env=cli_env(loopwright_home),
        cwd=tmp_path,
    )
    try:
        assert chat.stdin is not None
        chat.stdin.write("chat question 1\n")
        chat.stdin.flush()
        deadline = time.monotonic() + 120
        while not _turn_over(loopwright_home, "s2", "Counted into chat1."):
            assert chat.poll() is None, chat.communicate()
            assert time.monotonic() < deadline, "the chat's first turn did not finish"
            time.sleep(0.1)

        elsewhere = _ask(
            loopwright_home,
            tmp_path,
            "s2",
            "one-shot question",
            name="elsewhere",
            turns=_count_turns("other"),
        )
        assert elsewhere.returncode == 0, elsewhere.stderr

        _, err = chat.communicate("chat question 2\n", timeout=120)
    finally:
        if chat.poll() is None:
            chat.kill()
            chat.wait()
    assert chat.returncode == 0, err
    session = _load(loopwright_home, "s2")
    assert _user_texts(session) == [
        "Start",
        "chat question 1",
        "one-shot question",
        "chat question 2",
    ]
    answers = [m.text for m in session.messages if m.role == "assistant" and m.text]
    assert answers == [
        "Hello.",
        "Counted into chat1.",
        "Counted into other.",
        "Counted into chat2.",
    ]
    calls = {b.id for m in session.messages for b in m.tool_uses}
    results = {b.tool_use_id for m in session.messages for b in m.tool_results}
    assert calls == results
    assert len(calls) == 3


# --- the session's data --------------------------------------------------------------------


def test_a_session_continues_on_its_own_generated_database(
    loopwright_home: Path, tmp_path: Path
) -> None:
    """``continue with: loopwright healthcare --session ID`` (the hint, as printed) goes on
    with the database the session worked on, not with the default 200,000-claim one, which
    was built for it and its numbers mixed with yesterday's."""
    day1 = _ask(
        loopwright_home,
        tmp_path,
        "s3",
        "How many claims?",
        "--rows",
        str(ROWS),
        name="day1",
        turns=_count_turns("day1"),
    )
    assert day1.returncode == 0, day1.stderr
    assert "continue with: loopwright healthcare --session s3" in day1.stdout
    day2 = _ask(
        loopwright_home, tmp_path, "s3", "How many now?", name="day2", turns=_count_turns("day2")
    )
    assert day2.returncode == 0, day2.stderr
    assert "note:" not in day2.stderr
    workspace = _load(loopwright_home, "s3").workspace_dir
    assert _count(workspace, "day2") == _count(workspace, "day1") == ROWS
    built = sorted(p.name for p in (loopwright_home / "data" / "healthcare").glob("*.duckdb"))
    assert built == [f"claims-v2-{ROWS}-42.duckdb"]


def test_other_data_on_resume_is_said_and_then_kept(loopwright_home: Path, tmp_path: Path) -> None:
    """Continuing on other data on purpose works, with a note that the earlier results come
    from other data; the session then goes on with the data it was last used with."""
    for name, args in (("a", ["--rows", str(ROWS)]), ("b", ["--rows", "2000"]), ("c", [])):
        result = _ask(
            loopwright_home,
            tmp_path,
            "s4",
            f"count {name}",
            *args,
            name=name,
            turns=_count_turns(name),
        )
        assert result.returncode == 0, result.stderr
        if name == "b":
            assert (
                "note: session s4 worked on the generated claims database (1,000 rx claims); it "
                "continues on the generated claims database (2,000 rx claims), so its earlier "
                "results and files come from other data"
            ) in " ".join(result.stderr.split())
        else:
            assert "note:" not in result.stderr
    workspace = _load(loopwright_home, "s4").workspace_dir
    assert [_count(workspace, n) for n in "abc"] == [ROWS, 2000, 2000]


def test_a_session_on_a_database_file_continues_on_it_until_it_is_gone(
    loopwright_home: Path, tmp_path: Path, claims_db: Path
) -> None:
    """A session made with ``--database FILE`` goes on with that file when continued from
    another directory without the flag; once the file is moved, the continuation is refused
    in one sentence saying what to give (no 200,000-claim build)."""
    mine = tmp_path / "mine.duckdb"
    shutil.copy(claims_db, mine)
    with duckdb.connect(str(mine), read_only=True) as con:
        row = con.execute("SELECT COUNT(*) FROM rx_claims").fetchone()
    assert row is not None
    rx_claims = int(row[0])
    day1 = _ask(
        loopwright_home,
        tmp_path,
        "s5",
        "How many claims?",
        "--database",
        "mine.duckdb",  # relative to the directory of day 1
        name="day1",
        turns=_count_turns("day1"),
    )
    assert day1.returncode == 0, day1.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    day2 = _ask(
        loopwright_home, elsewhere, "s5", "How many now?", name="day2", turns=_count_turns("day2")
    )
    assert day2.returncode == 0, day2.stderr
    workspace = _load(loopwright_home, "s5").workspace_dir
    assert _count(workspace, "day2") == _count(workspace, "day1") == rx_claims

    mine.rename(tmp_path / "moved.duckdb")
    gone = _ask(
        loopwright_home, elsewhere, "s5", "And now?", name="day3", turns=_count_turns("day3")
    )
    assert gone.returncode == 2
    message = " ".join(gone.stderr.split())
    assert f"session s5 worked on the database file {mine.resolve()}, which is not there" in message
    assert "--database URL (or --rows N for the generated data)" in message
    assert not (loopwright_home / "data").exists()


def test_a_database_password_is_never_kept_and_is_asked_for_again(
    loopwright_home: Path, tmp_path: Path
) -> None:
    """What a session records about a database URL has its password starred out; continuing
    such a session without ``--database`` says to give it again."""
    from loopwright.cli.healthcare import data_metadata

    recorded = data_metadata(None, "postgresql://ana:s3cret@db.example/claims")
    assert recorded == {"agent": "healthcare", "database": "postgresql://ana:***@db.example/claims"}
    store = _store(loopwright_home)
    try:
        Session.create("s6", root=tmp_path / "ws", store=store, metadata=recorded)
    finally:
        store.close()
    result = _ask(loopwright_home, tmp_path, "s6", "Go on", name="s6", turns=["Hi."])
    assert result.returncode == 2
    assert (
        "session s6 works on postgresql://ana:***@db.example/claims, whose password is not kept"
        in " ".join(result.stderr.split())
    )


# --- the agent that continues it -----------------------------------------------------------


def test_sessions_resume_continues_a_healthcare_session_with_its_agent_and_data(
    loopwright_home: Path, tmp_path: Path
) -> None:
    """``loopwright sessions resume ID`` of a healthcare session opens the healthcare chat on
    the session's data; it opened the general chat, whose agent has no SQL tool ("Unknown
    tool: 'SQL'") and whose hint pointed at ``loopwright chat``."""
    day1 = _ask(
        loopwright_home,
        tmp_path,
        "s7",
        "How many claims?",
        "--rows",
        str(ROWS),
        name="day1",
        turns=_count_turns("day1"),
    )
    assert day1.returncode == 0, day1.stderr
    resumed = _lw(
        loopwright_home,
        tmp_path,
        "sessions",
        "resume",
        "s7",
        "-m",
        _script(tmp_path, "day2", _count_turns("day2")),
        input="How many now?\n",
    )
    assert resumed.returncode == 0, resumed.stderr
    assert "loopwright healthcare" in resumed.stdout
    assert "Unknown tool" not in resumed.stdout
    assert "continue with: loopwright healthcare --session s7" in resumed.stdout
    session = _load(loopwright_home, "s7")
    results = [b for m in session.messages for b in m.content if isinstance(b, ToolResultBlock)]
    assert [r.is_error for r in results] == [False, False]
    assert _count(session.workspace_dir, "day2") == ROWS


@pytest.mark.parametrize("command", ["run", "chat"])
def test_the_general_commands_say_a_healthcare_session_lacks_its_tools(
    loopwright_home: Path, tmp_path: Path, command: str
) -> None:
    """``loopwright run/chat --session ID`` of a healthcare session still run (the user asked
    for them), but say on stderr that its tools are missing and how to continue it."""
    day1 = _ask(
        loopwright_home, tmp_path, "s8", "Hi", "--rows", str(ROWS), name="day1", turns=["Hello."]
    )
    assert day1.returncode == 0, day1.stderr
    script = _script(tmp_path, "plain", ["Plain answer."])
    if command == "run":
        result = _lw(loopwright_home, tmp_path, "run", "-m", script, "--session", "s8", "Go on")
    else:
        result = _lw(
            loopwright_home, tmp_path, "chat", "-m", script, "--session", "s8", input="Go on\n"
        )
    assert result.returncode == 0, result.stderr
    assert (
        "note: session s8 is a healthcare research session; this command continues it with "
        "the general agent, which has none of its tools (SQL, DefineCohort); continue it with: "
        "loopwright healthcare --session s8"
    ) in " ".join(result.stderr.split())


# --- a long session of a tiny model --------------------------------------------------------


def test_the_summary_of_a_long_compact_session_gets_no_sql_examples_or_line_stop(
    claims_db: Path,
) -> None:
    """A tiny local model's session that outgrows its context window is summarised by the
    model: that request must reach it as the agent wrote it. The few-shot wrapper put its
    SQL examples (tool calls, with no tools offered) in front of it and stopped it at the
    first newline, so a summary's first line ("Here is the summary:") became all that was
    kept of the earlier turns."""
    summaries: list[ModelRequest] = []

    def script(request: ModelRequest) -> Any:
        if not request.tools:
            summaries.append(request)
            return "Summary: the user asked about HUMIRA.\nCounts were 1, 2, 3."
        if request.messages[-1].tool_results:
            return "The answer, at length. " * 120
        sql = "SELECT 1 AS x"
        return ScriptedToolCall("SQL", {"sql": sql, "description": "one", "dataset_name": "x"})

    model = ScriptedModel(script, name="local:tiny", context_window=4096)
    agent = healthcare_agent(model, database=claims_db, store=MemoryStore())
    assert type(agent.model).__name__ == "FewShotModel"  # the compact agent's wrapper
    session = agent.new_session()
    for turn in range(12):
        result = agent.run_sync(f"How many HUMIRA claims, take {turn}?", session)
        assert result.stop_reason == "end_turn"
        if summaries:
            break
    assert summaries, "the session was never summarised"
    request = summaries[0]
    assert not request.stop
    assert len(request.messages) == 1
    assert request.messages[0].text.startswith("Summarise this conversation transcript")
    assert session.summary == "Summary: the user asked about HUMIRA.\nCounts were 1, 2, 3."


def test_a_session_on_a_relative_duckdb_url_continues_on_it_from_elsewhere(
    loopwright_home: Path, tmp_path: Path
) -> None:
    """``--database duckdb://mine.duckdb`` is the current directory's file, as a bare
    ``mine.duckdb`` is; the session recorded the URL as given, so continuing it from
    another directory looked for a file of that name there (exit 2: not there)."""
    build_database(tmp_path / "mine.duckdb", rx_claims=ROWS)
    with duckdb.connect(str(tmp_path / "mine.duckdb"), read_only=True) as con:
        row = con.execute("SELECT COUNT(*) FROM rx_claims").fetchone()
    assert row is not None
    day1 = _ask(
        loopwright_home,
        tmp_path,
        "rel",
        "How many claims?",
        "--database",
        "duckdb://mine.duckdb",
        name="day1",
        turns=_count_turns("day1"),
    )
    assert day1.returncode == 0, day1.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    day2 = _ask(
        loopwright_home, elsewhere, "rel", "How many now?", name="day2", turns=_count_turns("day2")
    )
    assert day2.returncode == 0, day2.stderr
    workspace = _load(loopwright_home, "rel").workspace_dir
    counted = (workspace / "day2.csv").read_text(encoding="utf-8").split()
    assert int(counted[1]) == row[0]
    assert not (elsewhere / "mine.duckdb").exists()
    recorded = _load(loopwright_home, "rel").metadata["database"]
    assert recorded == f"duckdb://{(tmp_path / 'mine.duckdb').resolve()}"


def test_mcp_serve_healthcare_in_a_workspace_records_its_data(
    loopwright_home: Path, tmp_path: Path
) -> None:
    """``mcp serve --agent healthcare --workspace DIR`` made its new session without the
    metadata the healthcare command records: ``sessions resume`` then opened the general
    chat, and ``healthcare --session`` built the default 200,000-claim database."""
    workspace = tmp_path / "project"
    workspace.mkdir()
    served = _lw(
        loopwright_home,
        tmp_path,
        "mcp",
        "serve",
        "--agent",
        "healthcare",
        "--rows",
        str(ROWS),
        "--workspace",
        str(workspace),
        "--session",
        "mcpws",
        "-m",
        "scripted",
    )
    assert served.returncode == 0, served.stderr
    session = _load(loopwright_home, "mcpws")
    assert session.workspace_dir == workspace.resolve()
    assert session.metadata == {"agent": "healthcare", "rows": ROWS}


def test_a_session_begun_in_the_web_ui_continues_on_the_servers_data(
    loopwright_home: Path, tmp_path: Path
) -> None:
    """A session made by ``serve --agent healthcare --rows N`` (the web UI's "new session")
    recorded no data, so ``loopwright healthcare --session ID`` continued it on the default
    200,000-claim database, built for it, its numbers mixed with the web UI's."""
    from local_servers import free_port, server_process

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "loopwright.cli.app", "serve", "--agent", "healthcare"]
    command += ["--rows", str(ROWS), "--port", str(port), "-m", "scripted"]
    with server_process(
        command,
        name="loopwright serve --agent healthcare",
        ready_url=f"{base}/healthz",
        log_path=tmp_path / "serve.log",
        timeout=120,
        env=cli_env(loopwright_home),
        stop_timeout=30,
    ):
        made = httpx.post(f"{base}/api/sessions", timeout=30)
    assert made.status_code == 201, made.text
    session_id = made.json()["id"]
    assert _load(loopwright_home, session_id).metadata == {
        "owner": "local",
        "agent": "healthcare",
        "rows": ROWS,
    }
    later = _ask(
        loopwright_home, tmp_path, session_id, "How many?", name="cli", turns=_count_turns("n")
    )
    assert later.returncode == 0, later.stderr
    assert "note:" not in later.stderr
    assert _count(_load(loopwright_home, session_id).workspace_dir, "n") == ROWS
    built = sorted(p.name for p in (loopwright_home / "data" / "healthcare").glob("*.duckdb"))
    assert built == [f"claims-v2-{ROWS}-42.duckdb"]


def test_mcp_serve_on_other_data_records_it_at_once(loopwright_home: Path, tmp_path: Path) -> None:
    """``mcp serve --agent healthcare --rows N --session ID`` said the session moved to other
    data, but its record kept the old data until a ``run_agent`` turn: after a client's
    direct SQL calls, ``healthcare --session ID`` went back to the old data with no note. A
    session busy elsewhere keeps its record, and the server says so."""
    made = _ask(
        loopwright_home, tmp_path, "mv", "Hi", "--rows", str(ROWS), name="a", turns=["Hello."]
    )
    assert made.returncode == 0, made.stderr
    args = ["mcp", "serve", "--agent", "healthcare", "-m", "scripted", "--session", "mv"]
    served = _lw(loopwright_home, tmp_path, *args, "--rows", "2000")
    assert served.returncode == 0, served.stderr
    assert "it continues on the generated claims database (2,000 rx claims)" in served.stderr
    session = _load(loopwright_home, "mv")
    assert session.metadata == {"agent": "healthcare", "rows": 2000}
    assert _user_texts(session) == ["Hi"]  # the history is kept whole

    from loopwright.sessions.lease import TurnLease

    store = _store(loopwright_home)
    lease = TurnLease(store, "mv", "another-process")
    lease.acquire()
    try:
        busy = _lw(loopwright_home, tmp_path, *args, "--rows", str(ROWS))
    finally:
        lease.release_now()
        store.close()
    assert busy.returncode == 0, busy.stderr
    assert "session mv is busy" in busy.stderr
    assert "still records the data it worked on before" in busy.stderr
    assert _load(loopwright_home, "mv").metadata["rows"] == 2000
