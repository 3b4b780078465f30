"""Permission rules with a pattern on tools that have no argument rules are matched against
(an MCP tool taking only a ``title``), and on SQL, which reads its words without regard to case
or line breaks."""

from __future__ import annotations

from pathlib import Path

from loopwright.policy import Permissions, Policy
from loopwright.policy.permissions import CallInfo

from .conftest import RegistryFactory, text


async def test_a_star_pattern_covers_a_tool_without_a_rule_argument(
    make_registry: RegistryFactory, workspace: Path
) -> None:
    """``deny = ["mcp__github__create_issue(*)"]`` let every issue be created: the tool has
    none of the arguments rules are matched against, and a rule with a pattern then never
    matched, so the deny rule failed open. ``Tool(*)`` now covers every call of the tool, as
    ``Tool`` does; a narrower pattern still does not match what it cannot see."""
    denied = make_registry(Policy(deny=["mcp__github__create_issue(*)"]))
    result = await denied.execute("mcp__github__create_issue", {"title": "leak"})
    assert result["is_error"]
    assert "the rule mcp__github__create_issue(*) forbids" in text(result)

    narrow = make_registry(Policy(deny=["mcp__github__create_issue(secret*)"]))
    result = await narrow.execute("mcp__github__create_issue", {"title": "fine"})
    assert not result["is_error"], result["content"]

    asked = make_registry(
        Policy(ask=["mcp__github__create_issue(*)"], approver=lambda request: False)
    )
    result = await asked.execute("mcp__github__create_issue", {"title": "t"})
    assert result["is_error"]
    assert "was not approved" in text(result)


def test_sql_patterns_ignore_case_and_whitespace_but_not_other_text(tmp_path: Path) -> None:
    permissions = Permissions(deny=["SQL(*FROM provider_payments*)"])

    def decide(sql: str) -> str:
        info = CallInfo("SQL", {"sql": sql}, "read", str(tmp_path), (), "sql")
        return permissions.evaluate(info).behavior

    assert decide("SELECT * FROM PROVIDER_PAYMENTS") == "deny"
    assert decide("select *\n  from\tProvider_Payments\n where 1 = 1") == "deny"
    assert decide("SELECT * FROM rx_claims") == "allow"
    assert decide("SELECT * FROM provider_payments_2024_view") == "deny"  # a glob, as before
    assert decide("SELECT * FROM providerpayments") == "allow"
    # the same rule on another tool is matched exactly, as before
    bash = Permissions(deny=["Bash(*FROM provider_payments*)"])
    info = CallInfo(
        "Bash", {"command": "echo FROM PROVIDER_PAYMENTS"}, "execute", ".", (), "command"
    )
    assert bash.evaluate(info).behavior == "allow"
