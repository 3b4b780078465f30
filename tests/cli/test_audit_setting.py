"""``LOOPWRIGHT_AUDIT``: the CLI (and the server, through the same policy) keeps an audit
log of every tool call, redacted, outside the workspace by default."""

from __future__ import annotations

import getpass
import json
from pathlib import Path

from .conftest import CliRunner

KEY = "sk-ant-api03-" + "Q1w2E3r4T5y6U7i8O9p0" * 4


def _records(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_audit_1_logs_every_call_redacted_outside_the_workspace(
    cli: CliRunner, cli_env: dict[str, str], loopwright_home: Path
) -> None:
    cli_env["LOOPWRIGHT_AUDIT"] = "1"
    done = cli("run", "--session", "alpha", f"plan a picnic with key {KEY}")
    assert done.returncode == 0, done.stderr
    log = loopwright_home / "audit" / "alpha.jsonl"
    records = _records(log)
    assert [r["tool"] for r in records] == ["Write", "Read"]
    assert all(r["executed"] and r["decision"] == "allow" for r in records)
    assert KEY not in log.read_text()
    assert "[REDACTED:anthropic_key]" in str(records[0]["input"])
    # outside the workspace: the agent cannot read or change it, and it outlives the session
    assert not (loopwright_home / "workspaces" / "alpha" / ".loopwright" / "audit.jsonl").exists()
    assert cli("sessions", "rm", "alpha").returncode == 0
    assert log.exists()


def test_audit_path_with_the_session_id_and_ask_mode(
    cli: CliRunner, cli_env: dict[str, str], tmp_path: Path
) -> None:
    cli_env["LOOPWRIGHT_AUDIT"] = str(tmp_path / "logs" / "{session_id}.jsonl")
    done = cli("run", "--session", "beta", "-p", "ask", "plan a picnic", input="n not now\n")
    assert done.returncode == 0, done.stderr
    (write,) = [r for r in _records(tmp_path / "logs" / "beta.jsonl") if r["tool"] == "Write"]
    assert write["executed"] is False
    assert write["reason"] == "not now"
    assert write["approved_by"] == f"cli:{getpass.getuser()}"  # a person, not just "cli"


def test_audit_off_values_and_a_directory_are_told(
    cli: CliRunner, cli_env: dict[str, str], loopwright_home: Path, tmp_path: Path
) -> None:
    cli_env["LOOPWRIGHT_AUDIT"] = "0"
    assert cli("run", "--session", "gamma", "plan a picnic").returncode == 0
    assert not (loopwright_home / "audit").exists()

    cli_env["LOOPWRIGHT_AUDIT"] = str(tmp_path)
    refused = cli("run", "plan a picnic")
    assert refused.returncode == 2
    assert "LOOPWRIGHT_AUDIT=" in refused.stderr
    assert "is a directory" in refused.stderr
    assert "Traceback" not in refused.stderr
