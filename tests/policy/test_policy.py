"""The ``Policy`` bundle: defaults that change nothing, configuration from plain data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from loopwright.policy import Policy, RateLimit, Redactor
from loopwright.policy.audit import DEFAULT_AUDIT_PATH

from .conftest import RegistryFactory


async def test_policy_with_no_arguments_changes_nothing_a_user_sees(
    make_registry: RegistryFactory, workspace: Path
) -> None:
    (workspace / "f.txt").write_text("line\n")
    calls: list[tuple[str, dict[str, Any]]] = [
        ("Read", {"file_path": "f.txt"}),
        ("Write", {"file_path": "g.txt", "content": "x"}),
        ("Read", {"file_path": "../escape"}),
        ("Bash", {"command": "rm -rf /"}),
        ("echo", {"text": 5}),
        ("Nope", {}),
    ]
    without = [await make_registry().execute(name, dict(i)) for name, i in calls]
    (workspace / "g.txt").unlink()
    with_default = [await make_registry(Policy()).execute(name, dict(i)) for name, i in calls]
    assert with_default == without
    assert [r["is_error"] for r in without] == [False, False, True, False, True, True]
    assert not (workspace / DEFAULT_AUDIT_PATH).exists()


def test_defaults() -> None:
    policy = Policy()
    assert policy.mode == "auto"
    assert policy.permissions.trivial
    assert policy.redactor is None
    assert policy.audit_path is None
    assert policy.rate_limit is None
    assert policy.sanitize == {"execute", "network", "other"}
    assert policy.delimit == frozenset()
    assert policy.approver is None
    assert policy.bind("/tmp").inert
    assert repr(policy) == "Policy(mode='auto')"


def test_from_dict_reads_a_loopwright_toml_table() -> None:
    policy = Policy.from_dict(
        {
            "mode": "ask",
            "allow": ["Bash(git *)", "Read"],
            "deny": ["Write(*.env)"],
            "kinds": {"mcp__github__*": "write"},
            "redact": True,
            "audit": True,
            "rate_limit": {"calls": 60, "per": 60, "on_limit": "wait"},
            "delimit": ["network"],
            "approval_timeout": 120,
        }
    )
    assert policy.mode == "ask"
    assert [str(r) for r in policy.permissions.allow] == ["Bash(git *)", "Read"]
    assert policy.permissions.kind_of("mcp__github__x") == "write"
    assert isinstance(policy.redactor, Redactor)
    assert policy.audit_path == DEFAULT_AUDIT_PATH
    assert isinstance(policy.rate_limit, RateLimit)
    assert (policy.rate_limit.calls, policy.rate_limit.per) == (60, 60.0)
    assert policy.rate_limit.on_limit == "wait"
    assert policy.delimit == {"network"}
    assert policy.approval_timeout == 120.0
    assert not policy.bind("/tmp").inert
    assert "mode='ask'" in repr(policy)


def test_from_dict_refuses_unknown_settings() -> None:
    with pytest.raises(ValueError, match="Unknown policy setting\\(s\\) 'allowed'; known settings"):
        Policy.from_dict({"allowed": ["Read"]})


def test_from_dict_refuses_a_rate_limit_that_is_not_a_table() -> None:
    with pytest.raises(ValueError, match="rate_limit must be a table"):
        Policy.from_dict({"rate_limit": 60})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"redact": "yes"}, "redact must be a bool or a Redactor"),
        ({"rate_limit": 60}, "rate_limit must be a RateLimit"),
    ],
)
def test_wrong_types_are_clear_errors(kwargs: dict[str, object], message: str) -> None:
    with pytest.raises(TypeError, match=message):
        Policy(**kwargs)  # type: ignore[arg-type]


async def test_one_policy_serves_several_sessions(
    make_registry: RegistryFactory, tmp_path: Path
) -> None:
    policy = Policy(audit=str(tmp_path / "{session_id}.jsonl"))
    await make_registry(policy, session_id="a").execute("echo", {"text": "1"})
    await make_registry(policy, session_id="b").execute("echo", {"text": "2"})
    assert (tmp_path / "a.jsonl").exists()
    assert (tmp_path / "b.jsonl").exists()


def test_the_package_exports_what_the_docs_name() -> None:
    import loopwright.policy as package

    for name in package.__all__:
        assert getattr(package, name) is not None
    with pytest.raises(AttributeError, match="has no attribute 'Nope'"):
        package.Nope  # noqa: B018
