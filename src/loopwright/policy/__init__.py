"""The policy layer: hooks, permission modes and rules, human approval, rate limits,
redaction of secrets, an audit log and output sanitisation, applied by the tool registry to
every tool call.

    from loopwright.policy import Policy, RateLimit

    policy = Policy(
        mode="ask",
        allow=["Bash(git *)"],
        deny=["Write(*.env)"],
        redact=True,
        audit=True,
        rate_limit=RateLimit(60, per=60),
    )

The names are imported lazily, so importing one module of the package stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loopwright.lazy import lazy_dir, lazy_getattr

_EXPORTS = {
    "Policy": "loopwright.policy.policy",
    "SessionPolicy": "loopwright.policy.policy",
    "CallRecord": "loopwright.policy.policy",
    "Hooks": "loopwright.policy.hooks",
    "Matcher": "loopwright.policy.hooks",
    "PreToolUse": "loopwright.policy.hooks",
    "PostToolUse": "loopwright.policy.hooks",
    "Stop": "loopwright.policy.hooks",
    "Allow": "loopwright.policy.hooks",
    "Deny": "loopwright.policy.hooks",
    "Ask": "loopwright.policy.hooks",
    "Permissions": "loopwright.policy.permissions",
    "Rule": "loopwright.policy.permissions",
    "Decision": "loopwright.policy.permissions",
    "InvalidRuleError": "loopwright.policy.permissions",
    "ToolKind": "loopwright.policy.kinds",
    "PermissionMode": "loopwright.policy.permissions",
    "ApprovalBroker": "loopwright.policy.approvals",
    "ApprovalDecision": "loopwright.policy.approvals",
    "Approver": "loopwright.policy.approvals",
    "Redactor": "loopwright.policy.redaction",
    "SecretPattern": "loopwright.policy.redaction",
    "AuditLog": "loopwright.policy.audit",
    "RateLimit": "loopwright.policy.ratelimit",
    "strip_controls": "loopwright.policy.sanitize",
    "wrap_as_data": "loopwright.policy.sanitize",
    "DATA_INSTRUCTIONS": "loopwright.policy.sanitize",
}

__all__ = [
    "DATA_INSTRUCTIONS",
    "Allow",
    "ApprovalBroker",
    "ApprovalDecision",
    "Approver",
    "Ask",
    "AuditLog",
    "CallRecord",
    "Decision",
    "Deny",
    "Hooks",
    "InvalidRuleError",
    "Matcher",
    "PermissionMode",
    "Permissions",
    "Policy",
    "PostToolUse",
    "PreToolUse",
    "RateLimit",
    "Redactor",
    "Rule",
    "SecretPattern",
    "SessionPolicy",
    "Stop",
    "ToolKind",
    "strip_controls",
    "wrap_as_data",
]

if TYPE_CHECKING:
    from loopwright.policy.approvals import ApprovalBroker, ApprovalDecision, Approver
    from loopwright.policy.audit import AuditLog
    from loopwright.policy.hooks import (
        Allow,
        Ask,
        Deny,
        Hooks,
        Matcher,
        PostToolUse,
        PreToolUse,
        Stop,
    )
    from loopwright.policy.kinds import ToolKind
    from loopwright.policy.permissions import (
        Decision,
        InvalidRuleError,
        PermissionMode,
        Permissions,
        Rule,
    )
    from loopwright.policy.policy import CallRecord, Policy, SessionPolicy
    from loopwright.policy.ratelimit import RateLimit
    from loopwright.policy.redaction import Redactor, SecretPattern
    from loopwright.policy.sanitize import DATA_INSTRUCTIONS, strip_controls, wrap_as_data


__getattr__ = lazy_getattr(__name__, _EXPORTS, globals())

__dir__ = lazy_dir(_EXPORTS, globals())
