"""``loopwright healthcare`` from a user's side: permission modes for the Python and Bash
tools, options that must not be ignored, the timings of its sessions, and Ctrl-C at an
approval prompt (of ``run``, ``chat`` and ``healthcare``) in a real terminal."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pexpect
import pytest

from loopwright.healthcare.data import build_database

from .conftest import CliRunner

QUESTION = "Which drugs are filled most?"
SQL_CALL = {
    "call": "SQL",
    "input": {
        "sql": "SELECT NDC_DRUG_NM, COUNT(*) AS fills FROM RX_CLAIMS GROUP BY 1 "
        "ORDER BY 2 DESC LIMIT 5",
        "dataset_name": "top_drugs",
        "description": "The most filled drugs",
    },
}
PYTHON_CALL = {
    "call": "Python",
    "input": {"code": "open('from_python.txt', 'w').write('ran')\nprint('python ran')"},
}
BASH_CALL = {"call": "Bash", "input": {"command": "echo ran > from_bash.txt"}}


@pytest.fixture(scope="module")
def claims_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small claims database of this module's own (the subprocesses open it read-only)."""
    path = tmp_path_factory.mktemp("hc-cli") / "claims.duckdb"
    return build_database(path, rx_claims=2_000, seed=11)


def _script(tmp_path: Path, *turns: Any) -> Path:
    path = tmp_path / "turns.json"
    path.write_text(json.dumps(list(turns)))
    return path


def _healthcare(cli: CliRunner, claims: Path, script: Path, *args: str, input: str = "") -> Any:
    return cli(
        "healthcare", "--database", str(claims), "-m", f"scripted:{script}", *args, input=input
    )


def _tool_results(stdout: str) -> dict[str, dict[str, Any]]:
    events = [json.loads(line) for line in stdout.splitlines()]
    return {e["name"]: e for e in events if e["type"] == "tool_result"}


# --- permission modes ----------------------------------------------------------------------


def test_read_only_refuses_the_python_and_bash_tools(
    cli: CliRunner,
    cli_env: dict[str, str],
    claims_file: Path,
    tmp_path: Path,
    loopwright_home: Path,
) -> None:
    """There was no --permission-mode, and LOOPWRIGHT_PERMISSION_MODE (loopwright.toml's
    permission_mode) was ignored: code and commands ran whatever the setting said."""
    script = _script(tmp_path, SQL_CALL, PYTHON_CALL, BASH_CALL, "Done.")
    for how in ("flag", "environment"):
        if how == "flag":
            args = ["-p", "read-only", "--session", "ro-flag"]
        else:
            cli_env["LOOPWRIGHT_PERMISSION_MODE"] = "read-only"
            args = ["--session", "ro-env"]
        result = _healthcare(cli, claims_file, script, "--json", *args, QUESTION)
        assert result.returncode == 0, result.stderr
        results = _tool_results(result.stdout)
        assert not results["SQL"]["is_error"], results["SQL"]  # queries are reads
        for tool in ("Python", "Bash"):  # not offered at all in read-only mode
            assert results[tool]["is_error"], (how, results[tool])
            assert f"Unknown tool: '{tool}'" in results[tool]["content"]
        workspace = loopwright_home / "workspaces" / args[-1]
        assert (workspace / "top_drugs.csv").is_file()
        assert not (workspace / "from_python.txt").exists()
        assert not (workspace / "from_bash.txt").exists()


def test_ask_mode_takes_the_answers_from_the_prompt(
    cli: CliRunner, claims_file: Path, tmp_path: Path, loopwright_home: Path
) -> None:
    script = _script(tmp_path, PYTHON_CALL, BASH_CALL, "Done.")
    args = ["--permission-mode", "ask", "--session", "asked", "--json", QUESTION]
    result = _healthcare(cli, claims_file, script, *args, input="y\nn not on my machine\n")
    assert result.returncode == 0, result.stderr
    assert "approve Python(code=" in result.stderr
    assert "approve Bash(command='echo ran > from_bash.txt')" in result.stderr
    results = _tool_results(result.stdout)
    assert not results["Python"]["is_error"], results["Python"]
    assert results["Bash"]["is_error"]
    assert "not on my machine" in results["Bash"]["content"]  # the reason reaches the model
    workspace = loopwright_home / "workspaces" / "asked"
    assert (workspace / "from_python.txt").read_text() == "ran"
    assert not (workspace / "from_bash.txt").exists()


def test_an_unknown_permission_mode_is_refused_before_anything_runs(
    cli: CliRunner, loopwright_home: Path
) -> None:
    result = cli("healthcare", "--rows", "1000", "-m", "scripted", "-p", "yolo", QUESTION)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: unknown permission mode 'yolo'")
    assert not (loopwright_home / "data").exists()  # refused before the database build


# --- options -------------------------------------------------------------------------------


def test_rows_beside_database_is_refused_not_ignored(
    cli: CliRunner, claims_file: Path, tmp_path: Path, loopwright_home: Path
) -> None:
    """--rows sizes the generated database, which --database replaces: the pair ran on the
    given file as if --rows had not been typed (serve and eval refuse it)."""
    script = _script(tmp_path, "Done.")
    result = _healthcare(cli, claims_file, script, "--rows", "5000", QUESTION)
    assert result.returncode == 2, result.stdout
    assert "--rows sizes the generated database, which --database replaces" in result.stderr
    assert "Traceback" not in result.stderr
    assert not (loopwright_home / "workspaces").exists()  # nothing ran
    # each alone still works
    assert _healthcare(cli, claims_file, script, QUESTION).returncode == 0
    alone = cli("healthcare", "--rows", "1000", "-m", f"scripted:{script}", QUESTION)
    assert alone.returncode == 0, alone.stderr


def test_healthcare_sessions_record_their_timings(
    cli: CliRunner, claims_file: Path, tmp_path: Path, loopwright_home: Path
) -> None:
    """`sessions show`/`report` had no latencies for healthcare sessions (it said to set
    LOOPWRIGHT_STATS=1): the command did not record them as the other commands do."""
    script = _script(tmp_path, SQL_CALL, "Done.")
    result = _healthcare(cli, claims_file, script, "--session", "timed", QUESTION)
    assert result.returncode == 0, result.stderr
    assert (loopwright_home / "workspaces" / "timed" / ".loopwright" / "stats.jsonl").is_file()
    report = cli("sessions", "report", "timed", "--json")
    assert report.returncode == 0, report.stderr
    data = json.loads(report.stdout)
    assert data["timings_recorded"] is True, data
    (sql,) = data["tools"]
    assert sql["name"] == "SQL"
    assert sql["latency"]["count"] == 1
    assert sql["latency"]["p50_ms"] > 0


# --- Ctrl-C at an approval prompt, in a terminal -------------------------------------------


def _spawn(cli_env: dict[str, str], *args: str) -> pexpect.spawn:
    env = dict(cli_env)
    env.pop("NO_COLOR", None)
    env["TERM"] = "xterm-256color"
    env["COLUMNS"] = "200"
    return pexpect.spawn(
        sys.executable,
        ["-m", "loopwright.cli.app", *args],
        env=env,
        encoding="utf-8",
        timeout=30,
        dimensions=(40, 200),
    )


def _interrupt_the_approval(child: pexpect.spawn, tool: str) -> None:
    child.expect(rf"approve {tool}\(.*\)\? \[y/N\]")
    time.sleep(0.3)  # the prompt is waiting for the answer
    child.sendcontrol("c")


def test_ctrl_c_at_an_approval_prompt_ends_a_one_shot_run(cli_env: dict[str, str]) -> None:
    """The run said "interrupted" and then hung until Enter was pressed (a second Ctrl-C
    did not help): the prompt's thread was still reading, and the exit waited for it."""
    child = _spawn(cli_env, "run", "-m", "scripted", "-p", "ask", "note this")
    _interrupt_the_approval(child, "Write")
    child.expect_exact("interrupted; the history so far is saved")
    child.expect(pexpect.EOF, timeout=10)
    child.close()
    assert child.exitstatus == 130


@pytest.mark.parametrize("command", ["chat", "healthcare"])
def test_after_ctrl_c_at_an_approval_prompt_the_next_line_goes_to_the_chat(
    cli_env: dict[str, str], claims_file: Path, tmp_path: Path, command: str
) -> None:
    """The line typed after the interrupted prompt (a message, or /exit) was swallowed by
    the prompt's thread, still reading: nothing happened, and /exit did not quit."""
    if command == "chat":
        args, tool, answer = ["chat", "-m", "scripted", "-p", "ask"], "Write", "I'll record"
    else:
        script = _script(tmp_path, PYTHON_CALL, "Second answer.")
        args = ["healthcare", "-d", str(claims_file), "-m", f"scripted:{script}", "-p", "ask"]
        tool, answer = "Python", "Second answer."
    child = _spawn(cli_env, *args)
    child.expect_exact("you> ")
    child.sendline("first message")
    _interrupt_the_approval(child, tool)
    child.expect_exact("interrupted")
    child.expect_exact("you> ")
    child.sendline("second message")
    child.expect_exact(answer, timeout=10)
    if command == "chat":  # the demo writes its note again: deny it this time
        child.expect(r"approve Write\(.*\)\? \[y/N\]")
        child.sendline("n")
    child.expect_exact("you> ")
    child.sendline("/exit")
    child.expect(pexpect.EOF, timeout=10)
    child.close()
    assert child.exitstatus == 0
