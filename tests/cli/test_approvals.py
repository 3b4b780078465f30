"""--permission-mode: write and execute calls wait for an answer at the prompt."""

from __future__ import annotations

import json
from pathlib import Path

from .conftest import CliRunner


def _events(stdout: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def _workspace(home: Path) -> Path:
    (workspace,) = (home / "workspaces").iterdir()
    return workspace


def test_an_approved_write_runs(cli: CliRunner, loopwright_home: Path) -> None:
    done = cli("run", "--json", "--permission-mode", "ask", "plan a picnic", input="y\n")
    assert done.returncode == 0, done.stderr
    events = _events(done.stdout)
    kinds = [e["type"] for e in events]
    assert kinds.count("approval_request") == 1  # Write asks; Read does not
    request = next(e for e in events if e["type"] == "approval_request")
    assert request["name"] == "Write"
    assert "approve Write(" in done.stderr
    results = [e for e in events if e["type"] == "tool_result"]
    assert [r["is_error"] for r in results] == [False, False]
    assert "plan a picnic" in (_workspace(loopwright_home) / "task.md").read_text()


def test_a_denial_with_a_reason_reaches_the_model(cli: CliRunner, loopwright_home: Path) -> None:
    done = cli("run", "--json", "-p", "ask", "plan a picnic", input="n keep the disk clean\n")
    events = _events(done.stdout)
    write = next(e for e in events if e["type"] == "tool_result" and e["name"] == "Write")
    assert write["is_error"]
    assert "keep the disk clean" in str(write["content"])
    assert not (_workspace(loopwright_home) / "task.md").exists()


def test_no_answer_denies(cli: CliRunner, loopwright_home: Path) -> None:
    done = cli("run", "--json", "-p", "ask", "plan a picnic", input="")
    assert "(no answer: denied)" in done.stderr
    write = next(
        e for e in _events(done.stdout) if e["type"] == "tool_result" and e["name"] == "Write"
    )
    assert write["is_error"]
    assert not (_workspace(loopwright_home) / "task.md").exists()


def test_read_only_refuses_without_asking(cli: CliRunner, loopwright_home: Path) -> None:
    done = cli("run", "--json", "-p", "read-only", "plan a picnic")
    events = _events(done.stdout)
    assert "approval_request" not in [e["type"] for e in events]
    write = next(e for e in events if e["type"] == "tool_result" and e["name"] == "Write")
    assert write["is_error"]


def test_chat_answers_approvals_from_the_same_input(cli: CliRunner, loopwright_home: Path) -> None:
    done = cli("chat", "-p", "ask", input="plan a picnic\ny\n/exit\n")
    assert done.returncode == 0, done.stderr
    assert "approve Write(" in done.stderr
    assert "plan a picnic" in (_workspace(loopwright_home) / "task.md").read_text()


def test_an_unknown_mode_is_one_sentence(cli: CliRunner) -> None:
    done = cli("run", "-p", "sometimes", "x")
    assert done.returncode == 2
    assert "unknown permission mode 'sometimes'" in done.stderr
    assert "Traceback" not in done.stderr
