"""The audit log: one parseable JSON line per call, with the fields a reviewer needs."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import stat
from datetime import datetime
from pathlib import Path

import pytest

from loopwright.policy import AuditLog, Policy, RateLimit, Redactor
from loopwright.policy.audit import DEFAULT_AUDIT_PATH

from .conftest import RegistryFactory

GITHUB = "ghp_" + "a1B2" * 9

FIELDS = {
    "time",
    "session_id",
    "tool_call_id",
    "tool",
    "kind",
    "input",
    "decision",
    "decided_by",
    "reason",
    "asked",
    "approved_by",
    "executed",
    "is_error",
    "duration_ms",
    "result",
}


def lines(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


async def test_every_call_is_one_line_with_the_right_fields(
    make_registry: RegistryFactory, workspace: Path
) -> None:
    registry = make_registry(
        Policy(audit=True, deny=["Write(*.env)"], mode="ask", approver=lambda r: True),
        session_id="sess-1",
    )
    await registry.execute("Write", {"file_path": "a.txt", "content": "hello"}, call_id="c1")
    await registry.execute("Write", {"file_path": ".env", "content": "K=1"}, call_id="c2")
    await registry.execute("Read", {"file_path": "missing.txt"}, call_id="c3")
    await registry.execute("Nope", {}, call_id="c4")

    path = workspace / DEFAULT_AUDIT_PATH
    written, denied, failed, unknown = lines(path)
    for record in (written, denied, failed, unknown):
        # an asked call also says when it was asked and answered
        assert set(record) == FIELDS | ({"approval"} if record["asked"] else set())
        assert record["session_id"] == "sess-1"
        datetime.fromisoformat(str(record["time"]))
        assert isinstance(record["duration_ms"], float)

    assert written["tool_call_id"] == "c1"
    assert written["tool"] == "Write"
    assert written["kind"] == "write"
    assert written["input"] == {"file_path": "a.txt", "content": "hello"}  # as the model sent it
    assert written["decision"] == "allow"
    assert written["decided_by"] == "approval:<lambda>"
    assert written["asked"] is True
    assert written["approved_by"] == "<lambda>"
    assert written["executed"] is True
    assert written["is_error"] is False
    result = written["result"]
    assert isinstance(result, dict)
    assert result["preview"].startswith("Created a.txt")
    assert result["chars"] == len(result["preview"])

    assert denied["decision"] == "deny"
    assert denied["decided_by"] == "rule:deny:Write(*.env)"
    assert denied["reason"] == "the rule Write(*.env) forbids this Write call"
    assert denied["executed"] is False
    assert denied["is_error"] is True
    assert denied["asked"] is False

    assert failed["decision"] == "allow"
    assert failed["decided_by"] == "mode:ask"
    assert failed["executed"] is True
    assert failed["is_error"] is True

    assert unknown["tool"] == "Nope"
    assert unknown["decision"] is None
    assert unknown["executed"] is False


async def test_inputs_and_results_are_redacted_and_long_strings_cut(
    make_registry: RegistryFactory, workspace: Path
) -> None:
    registry = make_registry(Policy(audit=True, redact=Redactor(environ={})))
    await registry.execute("echo", {"text": f"token {GITHUB} " + "x" * 5000})
    (record,) = lines(workspace / DEFAULT_AUDIT_PATH)
    logged = json.dumps(record)
    assert GITHUB not in logged
    assert "[REDACTED:github_token]" in logged
    logged_input = record["input"]
    assert isinstance(logged_input, dict)
    assert logged_input["text"].endswith("more characters]")
    assert len(logged_input["text"]) < 2100
    result = record["result"]
    assert isinstance(result, dict)
    assert len(result["preview"]) == 300


async def test_hook_changes_are_logged_as_the_effective_input(
    make_registry: RegistryFactory, workspace: Path
) -> None:
    policy = Policy(audit=True)
    policy.hooks.pre_tool_use("echo", lambda event: event.input.update(text="changed"))
    await make_registry(policy).execute("echo", {"text": "original"})
    (record,) = lines(workspace / DEFAULT_AUDIT_PATH)
    assert record["kind"] == "other"
    assert record["input"] == {"text": "original"}
    assert record["effective_input"] == {"text": "changed"}


async def test_rate_limited_and_hook_denied_calls_are_logged(
    make_registry: RegistryFactory, workspace: Path
) -> None:
    policy = Policy(audit=True, rate_limit=RateLimit(1, per=3600))
    policy.hooks.pre_tool_use("Bash", lambda event: None)
    registry = make_registry(policy)
    await registry.execute("echo", {"text": "a"})
    await registry.execute("echo", {"text": "b"})
    first, second = lines(workspace / DEFAULT_AUDIT_PATH)
    assert first["decision"] == "allow"
    assert second["kind"] == "other"
    assert second["decided_by"] == "rate_limit"
    assert second["executed"] is False


async def test_a_path_with_the_session_id(make_registry: RegistryFactory, tmp_path: Path) -> None:
    template = str(tmp_path / "audit" / "{session_id}.jsonl")
    registry = make_registry(Policy(audit=template), session_id="abc")
    await registry.execute("echo", {"text": "x"})
    assert len(lines(tmp_path / "audit" / "abc.jsonl")) == 1


async def test_the_log_is_private_and_appended_to(
    make_registry: RegistryFactory, workspace: Path
) -> None:
    path = workspace / DEFAULT_AUDIT_PATH
    policy = Policy(audit=True)
    await make_registry(policy).execute("echo", {"text": "1"})
    await make_registry(policy).execute("echo", {"text": "2"})  # a second registry appends
    assert [r["input"] for r in lines(path)] == [{"text": "1"}, {"text": "2"}]
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


async def test_concurrent_calls_write_whole_lines(
    make_registry: RegistryFactory, workspace: Path
) -> None:
    registry = make_registry(Policy(audit=True))
    await asyncio.gather(*(registry.execute("echo", {"text": str(i)}) for i in range(50)))
    records = lines(workspace / DEFAULT_AUDIT_PATH)
    assert sorted(int(str(r["result"]["preview"])) for r in records) == list(range(50))  # type: ignore[index]


async def test_an_unwritable_log_never_breaks_a_call_and_is_reported_once(
    make_registry: RegistryFactory, workspace: Path, caplog: pytest.LogCaptureFixture
) -> None:
    blocker = workspace / "not-a-dir"
    blocker.write_text("a file where the log's directory should be")
    registry = make_registry(Policy(audit=str(blocker / "audit.jsonl")))
    with caplog.at_level(logging.WARNING, logger="loopwright.policy.audit"):
        first = await registry.execute("echo", {"text": "still works"})
        second = await registry.execute("echo", {"text": "again"})
    assert first == {"content": "still works", "is_error": False}
    assert second == {"content": "again", "is_error": False}
    warnings = [r for r in caplog.records if "cannot be written" in r.getMessage()]
    assert len(warnings) == 1
    assert "tool calls go on without it" in warnings[0].getMessage()


def test_audit_log_read_back(tmp_path: Path) -> None:
    log = AuditLog(tmp_path / "deep" / "log.jsonl")
    assert log.read() == []
    assert log.write({"a": 1}) is True
    assert log.write({"b": "é"}) is True
    assert log.read() == [{"a": 1}, {"b": "é"}]
    assert log.error is None


async def test_a_cancelled_call_is_logged(make_registry: RegistryFactory, workspace: Path) -> None:
    waiting = asyncio.Event()

    async def never_answers(request: object) -> bool:
        waiting.set()
        await asyncio.Event().wait()
        return True

    policy = Policy(audit=True, mode="ask", approver=never_answers)
    task = asyncio.create_task(make_registry(policy).execute("Bash", {"command": "ls"}))
    await waiting.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    (record,) = lines(workspace / DEFAULT_AUDIT_PATH)
    assert record["cancelled"] is True
    assert record["executed"] is False
