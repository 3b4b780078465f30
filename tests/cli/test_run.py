"""``loopwright run``: the event stream as JSON lines and for people, exit statuses, errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import loopwright
from loopwright.cli.run import read_task
from loopwright.cli.runtime import CliError, settings_limits

from .conftest import CliRunner

TASK = "Write a haiku about feedback loops"


def json_events(stdout: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stdout.splitlines()]


def raw_cli(
    env: dict[str, str],
    *args: str | bytes,
    input: bytes = b"",
    close_stdin: bool = False,
) -> subprocess.CompletedProcess[str]:
    """Run the CLI with raw bytes in and (when ``close_stdin``) no standard input at all,
    as ``<&-`` in a shell leaves it; the output is decoded for the asserts."""
    result = subprocess.run(
        [sys.executable, "-m", "loopwright.cli.app", *args],
        input=None if close_stdin else input,
        capture_output=not close_stdin,
        stdout=subprocess.PIPE if close_stdin else None,
        stderr=subprocess.PIPE if close_stdin else None,
        env=env,
        timeout=60,
        # fd 0 is closed in the child after the pipes are set up, before the CLI starts
        preexec_fn=(lambda: os.close(0)) if close_stdin else None,
    )
    return subprocess.CompletedProcess(
        result.args,
        result.returncode,
        result.stdout.decode("utf-8", "replace"),
        result.stderr.decode("utf-8", "replace"),
    )


def test_run_json_prints_only_the_event_stream_and_writes_the_workspace(
    cli: CliRunner, loopwright_home: Path
) -> None:
    result = cli("run", "--json", TASK)

    assert result.returncode == 0, result.stderr
    events = json_events(result.stdout)  # every stdout line is one JSON event
    kinds = [event["type"] for event in events]
    assert {"text_delta", "tool_call", "tool_result", "usage"} <= set(kinds)
    assert kinds.count("done") == 1
    done = events[-1]
    assert done["type"] == "done"
    assert done["stop_reason"] == "end_turn"
    assert done["usage"]["model_calls"] == 3
    assert done["usage"]["tool_calls"] == 2

    calls = [e for e in events if e["type"] == "tool_call"]
    results = {e["id"]: e for e in events if e["type"] == "tool_result"}
    assert [c["name"] for c in calls] == ["Write", "Read"]
    assert all(not results[c["id"]]["is_error"] for c in calls)
    assert TASK in results[calls[1]["id"]]["content"]
    answer = "".join(e["text"] for e in events if e["type"] == "text_delta")
    assert "saved your task to `task.md`" in answer

    session_id = done["session_id"]
    assert f"session {session_id}" in result.stderr
    task_file = loopwright_home / "workspaces" / session_id / "task.md"
    assert task_file.read_text() == f"# Task\n\n{TASK}\n"


def test_run_prints_the_answer_tool_lines_and_a_footer_for_people(cli: CliRunner) -> None:
    result = cli("run", TASK)

    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Done. I saved your task to `task.md`" in out
    assert f"3\t{TASK}" in out  # the file read back, inside the streamed answer
    assert "▸ Write task.md" in out
    assert "✓ Write" in out
    assert "Created task.md" in out
    assert "▸ Read task.md" in out
    assert "end_turn" in out
    assert "3 model calls" in out
    assert "2 tool calls" in out
    assert "tokens" in out
    assert "$0.0000" in out
    assert "loopwright chat --session " in out
    assert not out.lstrip().startswith("{")


def test_run_reads_the_task_from_stdin_with_a_dash(cli: CliRunner, loopwright_home: Path) -> None:
    result = cli("run", "--json", "-", input="task from a pipe\n")

    assert result.returncode == 0, result.stderr
    done = json_events(result.stdout)[-1]
    task_file = loopwright_home / "workspaces" / done["session_id"] / "task.md"
    assert "task from a pipe" in task_file.read_text()


def test_a_bad_model_is_one_sentence_and_exit_2(cli: CliRunner) -> None:
    for args in (["run", "--model", "gpt-nope", TASK], ["run", "--json", "-m", "gpt-nope", TASK]):
        result = cli(*args)

        assert result.returncode == 2
        assert result.stdout == ""
        assert "Traceback" not in result.stderr
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1
        assert "unknown model 'gpt-nope'" in lines[0]
        assert "scripted" in lines[0]  # says what would work


def test_chat_with_a_bad_model_fails_the_same_way(cli: CliRunner) -> None:
    result = cli("chat", "--model", "nope", input="hello\n")

    assert result.returncode == 2
    assert "unknown model 'nope'" in result.stderr
    assert "Traceback" not in result.stderr


def test_an_invalid_session_id_is_a_clear_error(cli: CliRunner) -> None:
    result = cli("run", "--session", "../escape", TASK)

    assert result.returncode == 2
    assert "invalid session id '../escape'" in result.stderr
    assert "Traceback" not in result.stderr


def test_run_continues_a_named_session(cli: CliRunner, loopwright_home: Path) -> None:
    first = cli("run", "--json", "--session", "notes", "first task")
    second = cli("run", "--json", "--session", "notes", "second task")

    assert first.returncode == 0
    assert second.returncode == 0
    assert json_events(second.stdout)[-1]["session_id"] == "notes"
    shown = cli("sessions", "show", "notes")
    assert "first task" in shown.stdout
    assert "second task" in shown.stdout
    task_file = loopwright_home / "workspaces" / "notes" / "task.md"
    assert "second task" in task_file.read_text()


def test_a_turn_limit_stops_the_run_with_exit_2(cli: CliRunner) -> None:
    result = cli("run", "--json", "--max-turns", "1", TASK)

    assert result.returncode == 2
    events = json_events(result.stdout)
    assert events[-1]["stop_reason"] == "max_turns"
    assert [e["name"] for e in events if e["type"] == "tool_call"] == ["Write"]
    assert "max_turns" in result.stderr


def test_a_timeout_stops_the_run_with_exit_2(
    slow_cli: Callable[..., subprocess.Popen[str]],
) -> None:
    process = slow_cli(0.2, "run", "--json", "--timeout", "0.5", TASK)
    stdout, stderr = process.communicate(timeout=60)

    assert process.returncode == 2, stderr
    done = json_events(stdout)[-1]
    assert done["stop_reason"] == "timeout"


def test_ctrl_c_stops_the_run_with_exit_130_and_keeps_the_history(
    slow_cli: Callable[..., subprocess.Popen[str]], cli: CliRunner
) -> None:
    process = slow_cli(0.1, "run", "--session", "stopped", TASK)
    assert process.stdout is not None
    seen = ""
    while "▸ Read" not in seen:  # interrupt while the final answer streams
        line = process.stdout.readline()
        assert line, f"the run ended before it could be interrupted: {seen}"
        seen += line
    process.send_signal(signal.SIGINT)
    rest, stderr = process.communicate(timeout=60)

    assert process.returncode == 130
    assert "interrupted" in stderr
    assert "Traceback" not in stderr
    assert "end_turn" not in rest
    shown = cli("sessions", "show", "stopped")
    assert shown.returncode == 0
    assert TASK in shown.stdout
    assert "Created task.md" in shown.stdout


def test_version(cli: CliRunner) -> None:
    for flag in ("--version", "-V"):
        result = cli(flag)
        assert result.returncode == 0
        assert result.stdout.strip() == f"loopwright {loopwright.__version__}"


def test_help_lists_the_commands(cli: CliRunner) -> None:
    result = cli("--help")

    assert result.returncode == 0
    for command in ("run", "chat", "sessions"):
        assert command in result.stdout


def test_a_dash_with_stdin_closed_is_a_usage_error(cli_env: dict[str, str]) -> None:
    result = raw_cli(cli_env, "run", "--session", "nostdin", "-", close_stdin=True)

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "no standard input" in result.stderr
    assert "nostdin" not in raw_cli(cli_env, "sessions", "list").stdout


def test_an_approval_prompt_with_stdin_closed_is_denied(cli_env: dict[str, str]) -> None:
    result = raw_cli(cli_env, "run", "--json", "--permission-mode", "ask", TASK, close_stdin=True)

    assert "Traceback" not in result.stderr
    assert "(no answer: denied)" in result.stderr
    results = [e for e in json_events(result.stdout) if e["type"] == "tool_result"]
    assert results
    assert results[0]["is_error"]


@pytest.mark.parametrize("stdin_errors", ["strict", "surrogateescape"])
def test_a_task_that_is_not_utf8_is_decoded_with_replacement(
    cli_env: dict[str, str], loopwright_home: Path, stdin_errors: str
) -> None:
    # Python reads stdin strictly or (in UTF-8 mode, a C locale) with surrogates: both
    cli_env["PYTHONIOENCODING"] = f"utf-8:{stdin_errors}"
    piped = raw_cli(cli_env, "run", "--session", "lat1", "-", input=b"caf\xe9 q\n")
    argument = raw_cli(cli_env, "run", "--session", "arg1", b"bad \xff arg")

    for result in (piped, argument):
        assert result.returncode == 0, result.stderr
        assert "Traceback" not in result.stderr
        assert "not valid UTF-8" in result.stderr
    assert "caf\ufffd q" in (loopwright_home / "workspaces" / "lat1" / "task.md").read_text()
    assert "bad \ufffd arg" in (loopwright_home / "workspaces" / "arg1" / "task.md").read_text()
    shown = raw_cli(cli_env, "sessions", "show", "lat1")
    assert "caf\ufffd q" in shown.stdout


def test_the_empty_task_error_gives_the_callers_example() -> None:
    with pytest.raises(CliError) as default:
        read_task("  ")
    with pytest.raises(CliError) as own:
        read_task("", example='loopwright healthcare "Top HUMIRA prescribers"')

    assert 'e.g. loopwright run "summarise notes.md"' in default.value.message
    assert 'e.g. loopwright healthcare "Top HUMIRA prescribers"' in own.value.message
    assert "loopwright run" not in own.value.message
    assert own.value.exit_code == 2


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("LOOPWRIGHT_TIMEOUT", "nan"),
        ("LOOPWRIGHT_TIMEOUT", "-inf"),
        ("LOOPWRIGHT_MAX_TURNS", "nan"),
        ("LOOPWRIGHT_MAX_TURNS", "inf"),
    ],
)
def test_a_limit_that_is_not_a_finite_number_is_rejected(
    cli: CliRunner, cli_env: dict[str, str], name: str, value: str
) -> None:
    cli_env[name] = value
    result = cli("run", TASK)

    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"{name}={value!r}" in result.stderr
    assert "Done." not in result.stdout


def test_an_infinite_timeout_means_no_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPWRIGHT_TIMEOUT", "inf")
    assert settings_limits(None, None, None)[1] is None
    monkeypatch.setenv("LOOPWRIGHT_TIMEOUT", "2.5")
    assert settings_limits(None, None, None)[1] == 2.5
    assert settings_limits(None, float("inf"), None)[1] is None  # --timeout inf
