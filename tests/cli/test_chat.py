"""``loopwright chat``: one session across turns, commands, piped input, Ctrl-C."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from loopwright.cli.chat import _read_line

from .conftest import CliRunner
from .test_run import raw_cli


def session_id_of(stdout: str) -> str:
    match = re.search(r"session (\S+) \((?:new session|resumed)", stdout)
    assert match, stdout
    return match.group(1)


def test_chat_keeps_one_session_across_piped_messages(
    cli: CliRunner, loopwright_home: Path
) -> None:
    result = cli("chat", input="first question\n/session\nsecond question\n")

    assert result.returncode == 0, result.stderr
    out = result.stdout
    session_id = session_id_of(out)
    assert out.count("you> ") == 4  # three lines, then the end of input
    assert out.count("Done. I saved your task") == 2
    assert f"session {session_id}\nworkspace " in out  # the /session command
    assert "Traceback" not in result.stderr

    listed = cli("sessions", "list")
    assert listed.stdout.count(session_id) == 1
    assert len([line for line in listed.stdout.splitlines()[1:] if line.strip()]) == 1
    shown = cli("sessions", "show", session_id)
    assert shown.returncode == 0
    assert "first question" in shown.stdout
    assert "second question" in shown.stdout
    assert shown.stdout.count("user:") >= 2
    task_file = loopwright_home / "workspaces" / session_id / "task.md"
    assert "second question" in task_file.read_text()


def test_chat_commands_and_exit(cli: CliRunner) -> None:
    result = cli("chat", input="/help\n/session\n/nonsense\n/exit\nnever sent\n")

    assert result.returncode == 0
    assert "/session" in result.stdout  # the help lists the commands
    assert "unknown command /nonsense" in result.stdout
    assert "never sent" not in result.stdout  # /exit quit before the last line
    assert "Done." not in result.stdout
    # no message was sent, so no empty session is left behind
    assert "No saved sessions" in cli("sessions", "list").stdout


def test_piped_chat_exits_with_the_last_turns_status(
    cli: CliRunner, cli_env: dict[str, str]
) -> None:
    """As a shell script's status is its last command's: a script piping messages in can
    tell that the conversation ended on a failed turn (the chat always exited 0)."""
    cli_env["LOOPWRIGHT_MAX_TURNS"] = "1"  # the demo model needs two calls per turn
    stopped = cli("chat", "--session", "limited", input="first question\n/cost\n")
    assert stopped.returncode == 2, stopped.stderr  # a limit stopped it, as `run` says
    assert "max_turns" in stopped.stdout
    del cli_env["LOOPWRIGHT_MAX_TURNS"]
    finished = cli("chat", "--session", "limited", input="second question\n")
    assert finished.returncode == 0, finished.stderr


def test_chat_resumes_a_session_given_by_id(cli: CliRunner) -> None:
    cli("chat", "--session", "talk", input="hello\n")
    result = cli("chat", "--session", "talk", input="again\n")

    assert result.returncode == 0
    assert "session talk (resumed" in result.stdout
    shown = cli("sessions", "show", "talk").stdout
    assert "hello" in shown
    assert "again" in shown


def read_until(process: subprocess.Popen[str], marker: str, failure: str, seen: str = "") -> str:
    """Read ``process``'s stdout until ``marker`` has been printed (after ``seen``, what was
    read before); the output so far. Its end first fails the test with ``failure``."""
    assert process.stdout is not None
    while marker not in seen:
        line = process.stdout.readline()
        assert line, f"{failure}: {seen}"
        seen += line
    return seen


def test_ctrl_c_interrupts_the_turn_not_the_chat(
    slow_cli: Callable[..., subprocess.Popen[str]], cli: CliRunner
) -> None:
    process = slow_cli(0.1, "chat", "--session", "chatty")
    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.write("first message\n")
    process.stdin.flush()
    seen = read_until(process, "▸ Read", "the turn ended before it could be interrupted")
    process.send_signal(signal.SIGINT)
    read_until(process, "(interrupted", "the chat ended instead of the turn", seen)
    rest, stderr = process.communicate("second message\n", timeout=60)

    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "Done. I saved your task" in rest  # the next turn ran to the end
    shown = cli("sessions", "show", "chatty").stdout
    assert "first message" in shown
    assert "second message" in shown


def test_ctrl_c_stops_a_slow_command_not_the_chat(
    slow_cli: Callable[..., subprocess.Popen[str]], cli_env: dict[str, str]
) -> None:
    """Ctrl-C during a slash command that takes its time (``/files`` of a big workspace)
    ended the whole chat, as if it were Ctrl-C at the prompt twice over."""
    cli_env["SLOW_CLI_FILES_DELAY"] = "60"
    process = slow_cli(0, "chat", "--session", "listing")
    assert process.stdin is not None
    assert process.stdout is not None
    process.stdin.write("first message\n/files\n")
    process.stdin.flush()
    read_until(process, "(listing the files)", "the chat ended before /files ran")
    process.send_signal(signal.SIGINT)
    rest, stderr = process.communicate("/session\nsecond message\n", timeout=60)

    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "(interrupted: /files stopped; the chat goes on)" in rest
    assert "session listing\nworkspace " in rest  # the commands after it ran
    assert "Done. I saved your task" in rest


def test_chat_with_stdin_closed_ends_as_at_the_end_of_input(
    cli_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    result = raw_cli(cli_env, "chat", close_stdin=True)

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert "loopwright chat" in result.stdout  # the header, then the end
    monkeypatch.setattr(sys, "stdin", None)
    for quiet in (False, True):  # quiet: the JSON chat of `loopwright healthcare --json`
        assert _read_line(False, quiet=quiet) is None


def test_chat_lines_that_are_not_utf8_are_decoded_with_replacement(
    cli_env: dict[str, str],
) -> None:
    result = raw_cli(cli_env, "chat", "--session", "lat1", input=b"caf\xe9 q\nnext\n")

    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.count("not valid UTF-8") == 1  # one warning, for the one bad line
    assert result.stdout.count("Done. I saved your task") == 2
    shown = raw_cli(cli_env, "sessions", "show", "lat1").stdout
    assert "caf\ufffd q" in shown
    assert "next" in shown
