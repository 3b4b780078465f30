"""``loopwright chat`` in a real pseudo-terminal: a turn, slash commands, an approval, Ctrl-C.

pexpect gives the chat a terminal, so the terminal-only features (spinner, Markdown, tool
panels, line editing with a saved input history) are the ones exercised.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pexpect
import pytest

PROMPT = "you> "


def spawn(cli_env: dict[str, str], *args: str) -> pexpect.spawn:
    env = dict(cli_env)
    env.pop("NO_COLOR", None)
    env["TERM"] = "xterm-256color"
    env["COLUMNS"] = "120"
    child = pexpect.spawn(
        sys.executable,
        ["-m", "loopwright.cli.app", "chat", *args],
        env=env,
        encoding="utf-8",
        timeout=20,
        dimensions=(40, 120),
    )
    child.expect_exact(PROMPT)
    return child


def finish(child: pexpect.spawn) -> None:
    child.sendline("/exit")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0


def test_a_chat_turn_with_tool_panels_and_slash_commands(
    cli_env: dict[str, str], loopwright_home: Path
) -> None:
    child = spawn(cli_env)
    child.sendline("remember to water the plants")
    child.expect_exact("Write")  # the tool panel's title
    child.expect_exact("task.md")
    child.expect_exact("end_turn")  # the footer
    child.expect_exact(PROMPT)
    child.sendline("/cost")
    child.expect(r"tokens \([\d,]+ in / [\d,]+ out\)")
    child.expect_exact(PROMPT)
    child.sendline("/files")
    child.expect_exact("task.md")
    child.expect_exact(PROMPT)
    child.sendline("/todos")
    child.expect_exact("no task list yet")
    child.expect_exact(PROMPT)
    child.sendline("/bogus")
    child.expect_exact("unknown command /bogus")
    child.expect_exact(PROMPT)
    finish(child)
    # the input history is kept for the next chat
    history = (loopwright_home / "chat_history").read_text()
    assert "remember to water the plants" in history


def test_clear_and_resume_switch_sessions(cli_env: dict[str, str]) -> None:
    child = spawn(cli_env, "--session", "first")
    child.sendline("one")
    child.expect_exact("end_turn")
    child.expect_exact(PROMPT)
    child.sendline("/clear")
    child.expect(r"new session (\w+); the previous one \(first\) is saved")
    child.expect_exact(PROMPT)
    child.sendline("/resume")
    child.expect_exact("first")
    child.expect_exact(PROMPT)
    child.sendline("/resume first")
    child.expect_exact("resumed session first")
    child.expect_exact(PROMPT)
    child.sendline("/session")
    child.expect_exact("session first")
    child.expect_exact(PROMPT)
    finish(child)


def test_an_approval_is_answered_at_the_prompt(cli_env: dict[str, str]) -> None:
    child = spawn(cli_env, "--permission-mode", "ask")
    child.sendline("note this")
    child.expect(r"approve Write\(.*\)\? \[y/N\]")
    child.sendline("y")
    child.expect_exact("✓ Write")
    child.expect(r"approve|end_turn")  # Read needs no approval in ask mode
    child.expect_exact(PROMPT)
    child.sendline("again")
    child.expect(r"approve Write\(.*\)\? \[y/N\]")
    child.sendline("n not now")
    child.expect_exact("✗ Write")
    child.expect_exact(PROMPT)
    finish(child)


def test_ctrl_c_stops_the_turn_not_the_chat(cli_env: dict[str, str], tmp_path: Path) -> None:
    script = tmp_path / "slow.json"
    script.write_text(
        json.dumps(
            [
                {"text": "Waiting.", "call": "Bash", "input": {"command": "sleep 60"}},
                "second answer",
            ]
        )
    )
    child = spawn(cli_env, "--model", f"scripted:{script}")
    child.sendline("wait for it")
    child.expect_exact("running Bash")  # the spinner says what runs
    child.sendcontrol("c")
    child.expect_exact("interrupted")
    child.expect_exact(PROMPT)
    child.sendline("and now?")
    child.expect_exact("second answer")
    child.expect_exact(PROMPT)
    finish(child)


@pytest.mark.parametrize("command", ["/help"])
def test_help_lists_the_commands(cli_env: dict[str, str], command: str) -> None:
    child = spawn(cli_env)
    child.sendline(command)
    for name in ("/cost", "/todos", "/files", "/resume", "/clear", "/exit"):
        child.expect_exact(name)
    child.expect_exact(PROMPT)
    finish(child)


def test_sessions_resume_continues_in_the_chat(cli_env: dict[str, str]) -> None:
    first = spawn(cli_env, "--session", "kept")
    first.sendline("one")
    first.expect_exact("end_turn")
    first.expect_exact(PROMPT)
    finish(first)
    env = dict(cli_env, TERM="xterm-256color")
    child = pexpect.spawn(
        sys.executable,
        ["-m", "loopwright.cli.app", "sessions", "resume", "kept"],
        env=env,
        encoding="utf-8",
        timeout=20,
    )
    child.expect_exact("session kept (resumed, 6 messages)")
    child.expect_exact(PROMPT)
    finish(child)
    missing = pexpect.spawn(
        sys.executable,
        ["-m", "loopwright.cli.app", "sessions", "resume", "nope"],
        env=env,
        encoding="utf-8",
        timeout=20,
    )
    missing.expect_exact("nope")
    missing.expect(pexpect.EOF)
    missing.close()
    assert missing.exitstatus != 0
