"""Human approval: answered allow or deny, by a function or through the broker; timeouts,
no approver, cancellation, answers from another thread."""

from __future__ import annotations

import asyncio
import functools
import threading
from pathlib import Path

import pytest

from loopwright.events import ApprovalRequest
from loopwright.policy import ApprovalBroker, ApprovalDecision, Policy, Redactor

from .conftest import RegistryFactory, text


async def test_no_approver_means_a_clear_deny_at_once(
    make_registry: RegistryFactory, workspace: Path
) -> None:
    registry = make_registry(Policy(mode="ask"))
    result = await registry.execute("Write", {"file_path": "a.txt", "content": "x"})
    assert result["is_error"] is True
    assert text(result) == (
        "Permission denied: this call needs a person's approval (Write changes files, and the "
        "session is in 'ask' mode), but no approver is configured, so it was not run. Ask the "
        "user to approve it or to change the permission policy."
    )
    assert not (workspace / "a.txt").exists()


async def test_reads_need_no_approval_in_ask_mode(
    make_registry: RegistryFactory, workspace: Path
) -> None:
    (workspace / "a.txt").write_text("x\n")
    result = await make_registry(Policy(mode="ask")).execute("Read", {"file_path": "a.txt"})
    assert result == {"content": "1\tx", "is_error": False}


async def test_a_function_approver_allows(make_registry: RegistryFactory, workspace: Path) -> None:
    requests: list[ApprovalRequest] = []

    def approve(request: ApprovalRequest) -> bool:
        requests.append(request)
        return True

    registry = make_registry(Policy(mode="ask", approver=approve))
    result = await registry.execute(
        "Write", {"file_path": "a.txt", "content": "x"}, call_id="toolu_7"
    )
    assert result["is_error"] is False
    assert (workspace / "a.txt").read_text() == "x"
    (request,) = requests
    assert request.id.startswith("apr_")
    assert request.tool_call_id == "toolu_7"
    assert request.name == "Write"
    assert request.input == {"file_path": str(workspace / "a.txt"), "content": "x"}
    assert request.reason == "Write changes files, and the session is in 'ask' mode"
    assert request.to_dict()["type"] == "approval_request"


async def test_an_async_approver_denies_with_a_reason(
    make_registry: RegistryFactory, workspace: Path
) -> None:
    async def reviewer(request: ApprovalRequest) -> ApprovalDecision:
        await asyncio.sleep(0)
        return ApprovalDecision(False, "write to drafts/ instead", by="alice")

    registry = make_registry(Policy(mode="ask", approver=reviewer))
    result = await registry.execute("Write", {"file_path": "a.txt", "content": "x"})
    assert result["is_error"] is True
    assert text(result) == (
        "Permission denied: this Write call was not approved (asked because Write changes "
        "files, and the session is in 'ask' mode; answered by alice): write to drafts/ instead. "
        "Do not repeat it unchanged; try another way or ask the user."
    )
    assert not (workspace / "a.txt").exists()


async def test_the_callers_approver_wins_over_the_policys(make_registry: RegistryFactory) -> None:
    registry = make_registry(Policy(mode="ask", approver=lambda request: False))
    result = await registry.execute("Bash", {"command": "ls"}, approver=lambda request: True)
    assert result == {"content": "ran: ls", "is_error": False}


async def test_broker_round_trip_allow_and_deny(make_registry: RegistryFactory) -> None:
    policy = Policy(mode="ask")
    registry = make_registry(policy)
    published: asyncio.Queue[ApprovalRequest] = asyncio.Queue()
    approver = functools.partial(policy.approvals.wait, notify=published.put_nowait)

    task = asyncio.create_task(
        registry.execute("Bash", {"command": "make deploy"}, call_id="c1", approver=approver)
    )
    request = await published.get()
    assert (request.name, request.tool_call_id, request.input) == (
        "Bash",
        "c1",
        {"command": "make deploy"},
    )
    assert policy.approvals.pending == [request]
    policy.approvals.answer(request.id, allow=True, by="bob")
    assert await task == {"content": "ran: make deploy", "is_error": False}
    assert policy.approvals.pending == []

    task = asyncio.create_task(
        registry.execute("Bash", {"command": "make clean"}, approver=approver)
    )
    request = await published.get()
    policy.approvals.answer(request.id, allow=False, reason="not now", by="bob")
    result = await task
    assert result["is_error"] is True
    assert "answered by bob): not now." in text(result)


async def test_a_broker_given_as_the_approver_notifies_and_is_the_policys_broker(
    make_registry: RegistryFactory,
) -> None:
    seen: asyncio.Queue[ApprovalRequest] = asyncio.Queue()
    broker = ApprovalBroker(notify=seen.put_nowait)
    policy = Policy(mode="ask", approver=broker)
    assert policy.approvals is broker
    task = asyncio.create_task(make_registry(policy).execute("echo", {"text": "hi"}))
    broker.answer((await seen.get()).id, allow=True)
    assert (await task)["content"] == "hi"


async def test_silence_ends_in_a_deny_after_the_timeout(make_registry: RegistryFactory) -> None:
    policy = Policy(mode="ask", approval_timeout=0.05)
    registry = make_registry(policy)
    requests: list[ApprovalRequest] = []
    approver = functools.partial(policy.approvals.wait, notify=requests.append)
    result = await registry.execute("Bash", {"command": "ls"}, approver=approver)
    assert result["is_error"] is True
    assert "answered by timeout): nobody answered within 0.05s." in text(result)
    assert policy.approvals.pending == []
    with pytest.raises(LookupError, match="answered, timed out or never existed"):
        policy.approvals.answer(requests[0].id, allow=True)


async def test_an_approver_that_fails_denies(make_registry: RegistryFactory) -> None:
    def broken(request: ApprovalRequest) -> bool:
        raise ConnectionError("prompt service down")

    result = await make_registry(Policy(mode="ask", approver=broken)).execute(
        "Bash", {"command": "ls"}
    )
    assert result["is_error"] is True
    assert "the approver failed (ConnectionError: prompt service down)" in text(result)


async def test_an_approver_answering_nonsense_denies(make_registry: RegistryFactory) -> None:
    policy = Policy(mode="ask", approver=lambda request: "yes")  # type: ignore[arg-type,return-value]
    result = await make_registry(policy).execute("Bash", {"command": "ls"})
    assert result["is_error"] is True
    assert "it must return an ApprovalDecision or a bool" in text(result)


async def test_an_answer_from_another_thread(make_registry: RegistryFactory) -> None:
    policy = Policy(mode="ask")
    registry = make_registry(policy)
    published: asyncio.Queue[ApprovalRequest] = asyncio.Queue()
    approver = functools.partial(policy.approvals.wait, notify=published.put_nowait)
    task = asyncio.create_task(registry.execute("Bash", {"command": "ls"}, approver=approver))
    request = await published.get()
    answering = threading.Thread(
        target=policy.approvals.answer, args=(request.id,), kwargs={"allow": True}
    )
    answering.start()
    result = await task
    answering.join()
    assert result == {"content": "ran: ls", "is_error": False}


async def test_cancelling_a_waiting_call_forgets_the_request(
    make_registry: RegistryFactory,
) -> None:
    policy = Policy(mode="ask")
    registry = make_registry(policy)
    published: asyncio.Queue[ApprovalRequest] = asyncio.Queue()
    approver = functools.partial(policy.approvals.wait, notify=published.put_nowait)
    task = asyncio.create_task(registry.execute("Bash", {"command": "ls"}, approver=approver))
    await published.get()
    assert len(policy.approvals.pending) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert policy.approvals.pending == []


async def test_deny_all_answers_every_waiting_request(make_registry: RegistryFactory) -> None:
    policy = Policy(mode="ask")
    registry = make_registry(policy)
    published: asyncio.Queue[ApprovalRequest] = asyncio.Queue()
    approver = functools.partial(policy.approvals.wait, notify=published.put_nowait)
    tasks = [
        asyncio.create_task(registry.execute("Bash", {"command": c}, approver=approver))
        for c in ("a", "b")
    ]
    await published.get()
    await published.get()
    assert policy.approvals.deny_all("the server is shutting down") == 2
    for result in await asyncio.gather(*tasks):
        assert "answered by system): the server is shutting down." in text(result)


async def test_the_request_shows_redacted_input(make_registry: RegistryFactory) -> None:
    requests: list[ApprovalRequest] = []

    def refuse(request: ApprovalRequest) -> bool:
        requests.append(request)
        return False

    policy = Policy(mode="ask", redact=Redactor(environ={}), approver=refuse)
    key = "sk-ant-api03-" + "a" * 40
    await make_registry(policy).execute("Bash", {"command": f"curl -H 'x-api-key: {key}' x"})
    assert requests[0].input == {"command": "curl -H 'x-api-key: [REDACTED:anthropic_key]' x"}


def test_answering_an_unknown_request_is_a_clear_error() -> None:
    with pytest.raises(LookupError, match=r"no approval request 'apr_nope' is waiting"):
        ApprovalBroker().answer("apr_nope", allow=True)


def test_approval_timeout_must_be_positive() -> None:
    with pytest.raises(ValueError, match="approval_timeout must be a positive number"):
        Policy(approval_timeout=0)
