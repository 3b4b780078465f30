"""``Policy``: hooks, permissions, approvals, rate limit, redaction, audit and sanitisation,
configured once and applied by the tool registry to every call.

A :class:`Policy` is configuration, shared by every session of an agent. The registry binds
it to its session (:meth:`Policy.bind`), which gives the per-session state: the rate-limit
bucket and the audit log file. One call goes through these steps (``ToolRegistry.execute``):

1. rate limit (a call over the limit is refused or waits);
2. the tool exists and the input matches its schema; path parameters are resolved and must
   stay inside the workspace;
3. PreToolUse hooks (may change the input, deny, ask or allow); a changed input is validated
   again;
4. the permission decision (see :mod:`loopwright.policy.permissions` for the order); ``ask``
   waits for an approver's answer, bounded by ``approval_timeout``;
5. the tool's own prehook, then the tool runs (with its timeout);
6. PostToolUse hooks (may annotate or replace the result);
7. the output is sanitised (control sequences), redacted (secrets), truncated, and, for the
   kinds listed in ``delimit``, wrapped as data;
8. one line is appended to the audit log.

``Policy()`` with no arguments changes nothing but step 7's sanitisation of program output
(``execute``, ``network`` and ``other`` tools), which is on by default because it is free and
safe; everything else is opt-in. A registry without a policy behaves as with ``Policy()``.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from loopwright.events import ApprovalRequest
from loopwright.policy.approvals import (
    ApprovalBroker,
    ApprovalDecision,
    Approver,
    ask_approver,
    new_request_id,
)
from loopwright.policy.audit import (
    DEFAULT_AUDIT_PATH,
    AuditLog,
    cut_input,
    cut_strings,
    result_summary,
    timestamp,
    without_credentials,
)
from loopwright.policy.hooks import Hooks, PostToolUse, PreHookOutcome, PreToolUse
from loopwright.policy.kinds import SANITIZED_KINDS, TOOL_KINDS, ToolKind
from loopwright.policy.permissions import Decision, Permissions, Rule
from loopwright.policy.ratelimit import RateLimit, TokenBucket
from loopwright.policy.redaction import Redactor
from loopwright.policy.sanitize import sanitize_content, wrap_as_data
from loopwright.tools.base import error

if TYPE_CHECKING:
    from loopwright.tools.base import BaseTool, ToolResult

DEFAULT_APPROVAL_TIMEOUT_S = 300.0


class Policy:
    """What may run, what must be approved, and what is done to every call and its output.

    Permissions (see :mod:`loopwright.policy.permissions`): ``mode`` is ``"auto"`` (default),
    ``"ask"`` or ``"read-only"``; ``allow``, ``ask`` and ``deny`` are rules such as
    ``"Bash(git *)"`` or ``"Write(*.env)"``; ``kinds`` classifies tools (``{"mcp__github__*":
    "write"}``); ``primary_arguments`` names the argument rules match for your own tools.

    ``hooks``: PreToolUse/PostToolUse/Stop hooks (:class:`Hooks`; one is created if not given,
    so ``policy.hooks.pre_tool_use(...)`` always works).

    ``approver`` answers ``ask`` decisions when the caller of ``execute`` gives none (the
    agent gives its own, which streams an ``approval_request`` event and waits for
    ``policy.approvals.answer``); ``approval_timeout`` bounds every wait, in seconds, after
    which the call is denied.

    ``redact``: ``True`` for the default :class:`Redactor` (known key formats and this
    process's secret environment values, read now), or a ``Redactor`` of your own.
    ``audit``: ``True`` for ``<workspace>/.loopwright/audit.jsonl``, or a path (relative to the
    workspace; ``{session_id}`` is replaced by the session's id; give an absolute path outside
    the workspace to keep the log out of the agent's reach).

    ``rate_limit``: a :class:`RateLimit`. ``sanitize`` strips terminal control sequences from
    the output of these tool kinds (default ``True``: ``execute``, ``network`` and ``other``;
    file contents are left exact so they can be quoted back to ``Edit``). ``delimit``: wrap
    the output of these tool kinds (``True``: all) in ``<tool_output>`` tags, as data.
    """

    def __init__(
        self,
        *,
        mode: str = "auto",
        allow: Iterable[str | Rule] = (),
        ask: Iterable[str | Rule] = (),
        deny: Iterable[str | Rule] = (),
        kinds: Mapping[str, str] | None = None,
        primary_arguments: Mapping[str, str] | None = None,
        hooks: Hooks | None = None,
        approver: Approver | None = None,
        approval_timeout: float = DEFAULT_APPROVAL_TIMEOUT_S,
        redact: bool | Redactor = False,
        audit: bool | str | os.PathLike[str] = False,
        rate_limit: RateLimit | None = None,
        sanitize: bool | Iterable[str] = True,
        delimit: bool | Iterable[str] = False,
    ) -> None:
        self.permissions = Permissions(
            mode,
            allow=allow,
            ask=ask,
            deny=deny,
            kinds=kinds,
            primary_arguments=primary_arguments,
        )
        self.hooks = hooks if hooks is not None else Hooks()
        if not approval_timeout > 0:
            raise ValueError(
                f"approval_timeout must be a positive number of seconds, got {approval_timeout!r}"
            )
        self.approver = approver
        self.approval_timeout = float(approval_timeout)
        #: where answers to pending approval requests go (``approvals.answer(id, allow=...)``)
        self.approvals = approver if isinstance(approver, ApprovalBroker) else ApprovalBroker()
        if redact is True:
            self.redactor: Redactor | None = Redactor()
        elif isinstance(redact, Redactor):
            self.redactor = redact
        elif redact is False or redact is None:
            self.redactor = None
        else:
            raise TypeError(f"redact must be a bool or a Redactor, got {type(redact).__name__}")
        if audit is True:
            self.audit_path: str | None = DEFAULT_AUDIT_PATH
        elif audit is False or audit is None:
            self.audit_path = None
        else:
            self.audit_path = os.fspath(audit)
        if rate_limit is not None and not isinstance(rate_limit, RateLimit):
            raise TypeError(
                f"rate_limit must be a RateLimit (e.g. RateLimit(60, per=60)), got {rate_limit!r}"
            )
        self.rate_limit = rate_limit
        self.sanitize: frozenset[ToolKind] = _kinds(sanitize, SANITIZED_KINDS, "sanitize")
        self.delimit: frozenset[ToolKind] = _kinds(delimit, frozenset(TOOL_KINDS), "delimit")

    @property
    def mode(self) -> str:
        """The permission mode: ``auto``, ``ask`` or ``read-only``."""
        return self.permissions.mode

    def bind(
        self, workspace_dir: str | os.PathLike[str], session_id: str | None = None
    ) -> SessionPolicy:
        """The policy applied to one session's registry (its own rate-limit bucket and log)."""
        return SessionPolicy(self, os.fspath(workspace_dir), session_id)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Policy:
        """A policy from plain data, such as a TOML table of your own application's
        configuration (``loopwright.toml`` has no ``[policy]`` table: the CLI and the server
        take only ``permission_mode``)::

        mode = "ask"
        allow = ["Bash(git *)", "Read"]
        deny = ["Write(*.env)"]
        kinds = { "mcp__github__*" = "write" }
        redact = true
        audit = true                      # or a path
        rate_limit = { calls = 60, per = 60, on_limit = "error" }
        delimit = ["network", "other"]
        approval_timeout = 300
        """
        known = {
            "mode",
            "allow",
            "ask",
            "deny",
            "kinds",
            "primary_arguments",
            "approval_timeout",
            "redact",
            "audit",
            "rate_limit",
            "sanitize",
            "delimit",
        }
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"Unknown policy setting(s) {', '.join(map(repr, unknown))}; known settings: "
                f"{', '.join(sorted(known))}."
            )
        options = dict(data)
        limit = options.pop("rate_limit", None)
        if isinstance(limit, Mapping):
            options["rate_limit"] = RateLimit(**limit)
        elif limit is not None:
            raise ValueError(
                f"rate_limit must be a table such as {{ calls = 60, per = 60 }}, got {limit!r}"
            )
        return cls(**options)

    def __repr__(self) -> str:
        parts = [f"mode={self.mode!r}"]
        permissions = self.permissions
        for name in ("allow", "ask", "deny"):
            rules = getattr(permissions, name)
            if rules:
                parts.append(f"{name}={[str(rule) for rule in rules]}")
        if self.redactor is not None:
            parts.append("redact=True")
        if self.audit_path is not None:
            parts.append(f"audit={self.audit_path!r}")
        if self.rate_limit is not None:
            parts.append(f"rate_limit={self.rate_limit!r}")
        if self.sanitize != SANITIZED_KINDS:
            parts.append(f"sanitize={sorted(self.sanitize)}")
        if self.delimit:
            parts.append(f"delimit={sorted(self.delimit)}")
        return f"Policy({', '.join(parts)})"


def _kinds(
    value: bool | Iterable[str], default: frozenset[ToolKind], setting: str
) -> frozenset[ToolKind]:
    """A ``sanitize``/``delimit`` setting as a set of kinds (``True``: the default set)."""
    if value is True:
        return default
    if value is False or value is None:
        return frozenset()
    if isinstance(value, str):
        value = [value]
    kinds = frozenset(value)
    unknown = sorted(kinds - set(TOOL_KINDS))
    if unknown:
        raise ValueError(
            f"Unknown tool kind(s) {', '.join(map(repr, unknown))} in {setting}: use "
            f"{', '.join(TOOL_KINDS)}, or True for the default."
        )
    return kinds  # type: ignore[return-value]


@dataclass(slots=True)
class CallRecord:
    """One call's path through the policy, for the audit log and the hooks."""

    tool_name: str
    tool_call_id: str | None
    input: Any
    started: float
    kind: ToolKind | None = None
    decision: Decision | None = None
    asked: bool = False
    approved_by: str | None = None
    #: the approval asked for: its request id (the ``approval_request`` event's), when it
    #: was asked and answered (UTC, ISO 8601), for the audit log
    approval: dict[str, Any] | None = None
    executed: bool = False
    effective_input: dict[str, Any] | None = None


class SessionPolicy:
    """A :class:`Policy` bound to one session: what the registry calls during ``execute``."""

    __slots__ = ("_real_workspace", "audit", "bucket", "policy", "session_id", "workspace_dir")

    def __init__(self, policy: Policy, workspace_dir: str, session_id: str | None) -> None:
        self.policy = policy
        self.workspace_dir = workspace_dir
        self._real_workspace = os.path.realpath(workspace_dir)
        self.session_id = session_id
        self.bucket: TokenBucket | None = (
            policy.rate_limit.bucket() if policy.rate_limit is not None else None
        )
        path = policy.audit_path
        if path is not None:
            path = path.replace("{session_id}", session_id or "no-session")
            path = os.path.join(workspace_dir, os.path.expanduser(path))
            self.audit: AuditLog | None = AuditLog(path)
        else:
            self.audit = None

    @property
    def inert(self) -> bool:
        """True when the policy does nothing to a call but sanitise its output."""
        policy = self.policy
        return (
            self.bucket is None
            and self.audit is None
            and policy.redactor is None
            and not policy.delimit
            and not policy.hooks.around_calls
            and policy.permissions.trivial
        )

    # --- before the call -----------------------------------------------------------------

    def begin(self, tool_name: str, input: Any, tool_call_id: str | None) -> CallRecord:
        """Start the record of one call."""
        return CallRecord(tool_name, tool_call_id, input, time.perf_counter())

    async def admit(self, call: CallRecord) -> ToolResult | None:
        """The rate limit: ``None`` when the call may go on, else the refusal."""
        if self.bucket is None:
            return None
        refusal = await self.bucket.acquire()
        if refusal is None:
            return None
        call.decision = Decision("deny", refusal, "rate_limit")
        return error(refusal)

    def kind(self, tool: BaseTool, call: CallRecord) -> ToolKind:
        """The call's tool kind (computed once per call)."""
        if call.kind is None:
            call.kind = self.policy.permissions.kind_of(tool.name, tool)
        return call.kind

    async def run_pre_hooks(
        self, tool: BaseTool, input: dict[str, Any], call: CallRecord
    ) -> PreHookOutcome | None:
        """Run the PreToolUse hooks that match the tool; ``None`` when there are none."""
        hooks = self.policy.hooks
        if not hooks.has_pre(tool.name):
            return None
        event = PreToolUse(
            tool.name,
            input,
            self.kind(tool, call),
            call.tool_call_id,
            self.session_id,
            self.workspace_dir,
        )
        return await hooks.run_pre(event)

    async def authorize(
        self,
        tool: BaseTool,
        input: dict[str, Any],
        call: CallRecord,
        hook: Decision | None,
        approver: Approver | None,
    ) -> ToolResult | None:
        """The permission decision, and the approval when it is ``ask``: ``None`` to go on,
        else the refusal for the model."""
        policy = self.policy
        permissions = policy.permissions
        if hook is None and permissions.trivial:
            call.decision = Decision("allow", "", "mode:auto")
            return None
        info = permissions.call_info(tool.name, input, self._real_workspace, tool)
        call.kind = info.kind
        decision = permissions.evaluate(info, hook)
        call.decision = decision
        if decision.behavior == "allow":
            return None
        if decision.behavior == "deny":
            return error(f"Permission denied: {_sentence(decision.reason)}")
        return await self._ask(tool, input, call, decision, approver or policy.approver)

    async def _ask(
        self,
        tool: BaseTool,
        input: dict[str, Any],
        call: CallRecord,
        decision: Decision,
        approver: Approver | None,
    ) -> ToolResult | None:
        call.asked = True
        reason = decision.reason or f"{tool.name} needs approval"
        if approver is None:
            call.decision = Decision("deny", reason, "no_approver")
            return error(
                f"Permission denied: this call needs a person's approval ({reason}), but no "
                "approver is configured, so it was not run. Ask the user to approve it or to "
                "change the permission policy."
            )
        policy = self.policy
        shown = policy.redactor.redact_value(input) if policy.redactor is not None else input
        request = ApprovalRequest(
            new_request_id(), call.tool_call_id or "", tool.name, shown, reason
        )
        timeout = policy.approval_timeout
        call.approval = {"id": request.id, "asked_at": timestamp()}
        waited = time.perf_counter()
        try:
            async with asyncio.timeout(timeout):
                answer = await ask_approver(approver, request)
        except TimeoutError:
            answer = ApprovalDecision(False, f"nobody answered within {timeout:g}s", "timeout")
        except Exception as exc:
            answer = ApprovalDecision(False, f"the approver failed ({_describe(exc)})", "error")
        call.approval["answered_at"] = timestamp()
        call.approval["waited_ms"] = round((time.perf_counter() - waited) * 1000, 3)
        call.approved_by = answer.by
        call.decision = Decision(
            "allow" if answer.allow else "deny", answer.reason, f"approval:{answer.by}"
        )
        if answer.allow:
            return None
        why = f": {_sentence(answer.reason)}" if answer.reason else "."
        return error(
            f"Permission denied: this {tool.name} call was not approved (asked because "
            f"{reason}; answered by {answer.by}){why} Do not repeat it unchanged; try another "
            "way or ask the user."
        )

    # --- after the call ------------------------------------------------------------------

    async def run_post_hooks(
        self, tool: BaseTool, input: dict[str, Any], call: CallRecord, result: ToolResult
    ) -> ToolResult:
        """Run the PostToolUse hooks that match the tool; returns the result to keep."""
        hooks = self.policy.hooks
        if not hooks.has_post(tool.name):
            return result
        event = PostToolUse(
            tool.name,
            input,
            self.kind(tool, call),
            dict(result),
            round((time.perf_counter() - call.started) * 1000, 3),
            call.tool_call_id,
            self.session_id,
            self.workspace_dir,
        )
        return await hooks.run_post(event)  # type: ignore[return-value]

    def clean(self, tool: BaseTool | None, call: CallRecord, result: ToolResult) -> ToolResult:
        """Sanitise and redact the result's content (before truncation, so a secret cut in
        two by the truncation is still found)."""
        policy = self.policy
        content: Any = result["content"]
        if tool is not None and policy.sanitize and self.kind(tool, call) in policy.sanitize:
            content = sanitize_content(content)
        if policy.redactor is not None:
            content = policy.redactor.redact_content(content)
        result["content"] = content
        return result

    def deliver(self, tool: BaseTool | None, call: CallRecord, result: ToolResult) -> ToolResult:
        """Wrap the (truncated) output as data when its tool kind is delimited."""
        delimit = self.policy.delimit
        if delimit and tool is not None and call.executed and self.kind(tool, call) in delimit:
            result["content"] = wrap_as_data(result["content"], tool.name)
        return result

    def finish(
        self,
        call: CallRecord,
        result: ToolResult | None,
        tool: BaseTool | None = None,
        *,
        cancelled: bool = False,
    ) -> None:
        """Append the call's line to the audit log (when there is one)."""
        audit = self.audit
        if audit is None:
            return
        if tool is not None:
            self.kind(tool, call)
        redactor = self.policy.redactor
        decision = call.decision

        def redacted(value: Any) -> Any:
            return redactor.redact_value(value) if redactor is not None else value

        def logged_input(value: Any) -> Any:
            primary = (
                self.policy.permissions.primary_argument(call.tool_name, value)
                if isinstance(value, dict)
                else None
            )
            return cut_input(redacted(value), primary)

        summary: dict[str, Any] | None = None
        if result is not None:
            summary = result_summary(result["content"])
            metadata = result.get("metadata")
            if isinstance(metadata, dict) and metadata:
                summary["metadata"] = cut_strings(redacted(without_credentials(metadata)))

        record: dict[str, Any] = {
            "time": timestamp(),
            "session_id": self.session_id,
            "tool_call_id": call.tool_call_id,
            "tool": call.tool_name,
            "kind": call.kind,
            "input": logged_input(call.input),
            "decision": decision.behavior if decision is not None else None,
            "decided_by": decision.source if decision is not None else None,
            "reason": decision.reason if decision is not None else "",
            "asked": call.asked,
            "approved_by": call.approved_by,
            "executed": call.executed,
            "is_error": bool(result["is_error"]) if result is not None else True,
            "duration_ms": round((time.perf_counter() - call.started) * 1000, 3),
            "result": summary,
        }
        if call.effective_input is not None:
            record["effective_input"] = logged_input(call.effective_input)
        if call.approval is not None:  # when it was asked and answered, not only the end
            record["approval"] = call.approval
        if cancelled:
            record["cancelled"] = True
        audit.write(record)


def _sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?")) else text + "."


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
