"""The tool registry: the one place a tool call goes through before and after it runs.

``execute(name, input)`` never raises for a tool's sake: an unknown tool, input that does not
match the schema, a path outside the workspace, a prehook that refuses, a policy that denies,
an exception, a timeout: each comes back as ``{"content": <what went wrong>, "is_error": True}``
so the model can read it and adapt. Only cancellation propagates.

One call: rate limit -> validate (schema, paths) -> PreToolUse hooks -> permissions (and
approval) -> the tool's prehook -> ``Tool.execute`` -> PostToolUse hooks -> sanitise, redact,
truncate, delimit -> audit. Without a :class:`~loopwright.policy.Policy` only validation,
the prehook, truncation and the sanitisation of program output (terminal control sequences
stripped from ``execute``, ``network`` and ``other`` tools) apply, as with ``Policy()``.
"""

from __future__ import annotations

import asyncio
import copy
import functools
import json
import os
import re
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, cast

from loopwright.messages import TextBlock
from loopwright.policy.kinds import SANITIZED_KINDS, declared_kind
from loopwright.policy.sanitize import has_controls, sanitize_content
from loopwright.sandbox.paths import SecurityError
from loopwright.tools.base import (
    BaseTool,
    Prehook,
    ToolDefinition,
    ToolResult,
    Toolset,
    call_timeout,
    error,
)

if TYPE_CHECKING:
    from loopwright.policy.approvals import Approver
    from loopwright.policy.policy import CallRecord, Policy, SessionPolicy

DEFAULT_TIMEOUT_S = 120.0
DEFAULT_MAX_OUTPUT_CHARS = 30_000
OUTPUT_DIR = os.path.join(".loopwright", "tool-outputs")


@functools.lru_cache(maxsize=512)
def _compiled_validator(schema_json: str) -> Callable[[Any], Any]:
    import fastjsonschema  # imported on first use: keeps `import loopwright` light

    validator: Callable[[Any], Any] = fastjsonschema.compile(_for_draft7(json.loads(schema_json)))
    return validator


def _for_draft7(schema: Any) -> Any:
    """The schema with 2020-12's ``prefixItems`` (tuples) spelled the draft-7 way.

    The validator speaks draft 7, where ``prefixItems`` means nothing and a tuple's item
    types would go unchecked. The schema sent to the model is left as it is.
    """
    if isinstance(schema, list):
        return [_for_draft7(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted = {key: _for_draft7(value) for key, value in schema.items()}
    if "prefixItems" in converted:
        if "items" in converted:  # 2020-12: "items" next to "prefixItems" is for the rest
            converted["additionalItems"] = converted["items"]
        converted["items"] = converted.pop("prefixItems")
    return converted


#: The string rules a tool's ``checks_itself`` properties keep from the registry's validation.
_SELF_CHECKED_RULES = frozenset({"pattern", "format", "minLength", "maxLength"})


def _validated_schema(schema: dict[str, Any], checks_itself: tuple[str, ...]) -> dict[str, Any]:
    """``schema`` without the string rules of the properties a tool checks itself."""
    shown = schema.get("properties")
    if not checks_itself or not isinstance(shown, dict):
        return schema
    return {
        **schema,
        "properties": {
            key: (
                {k: v for k, v in rule.items() if k not in _SELF_CHECKED_RULES}
                if key in checks_itself and isinstance(rule, dict)
                else rule
            )
            for key, rule in shown.items()
        },
    }


def _validator_for(tool: BaseTool) -> Callable[[Any], Any]:
    validator = tool._input_validator
    if validator is None:
        schema = tool.schema.get("input_schema") or {"type": "object"}
        schema = _validated_schema(schema, tool.checks_itself)
        try:
            validator = _compiled_validator(json.dumps(schema, sort_keys=True))
        except Exception as exc:
            raise _BadToolSchema(
                f"Tool {tool.name!r} has an input schema that is not valid JSON Schema "
                f"({_describe(exc)}); this is a bug in the tool, not in the call."
            ) from exc
        tool._input_validator = validator
    return validator


class _BadToolSchema(Exception):
    """The tool's own schema cannot be compiled (the tool's fault, not the model's)."""


class ToolRegistry:
    """Holds a session's tools and runs their calls safely.

    ``policy`` (a :class:`~loopwright.policy.Policy`) adds hooks, permissions and approval,
    a rate limit, redaction, an audit log and delimiting of output; without one, program
    output is still stripped of terminal control sequences, as ``Policy()`` would do.
    """

    def __init__(
        self,
        workspace_dir: str | os.PathLike[str],
        *,
        default_timeout: float | None = DEFAULT_TIMEOUT_S,
        max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS,
        session_id: str | None = None,
        policy: Policy | None = None,
    ) -> None:
        self.workspace_dir = os.fspath(workspace_dir)
        self.default_timeout = default_timeout
        self.max_output_chars = max_output_chars
        self.session_id = session_id
        self.tools: dict[str, BaseTool] = {}
        #: tools this registry made (from classes, ``@tool`` functions and toolsets): closed
        #: with it; instances given ready-made may be shared and are closed by their owner
        self._owned: set[str] = set()
        self._schemas: list[dict[str, Any]] | None = None
        #: per tool name: whether its output is sanitised (decided once, from its kind)
        self._sanitized: dict[str, bool] = {}
        self.policy = policy
        self._policy: SessionPolicy | None = (
            policy.bind(self.workspace_dir, session_id) if policy is not None else None
        )

    def register(
        self, tool: BaseTool | ToolDefinition | type[BaseTool], *, replace: bool = False
    ) -> BaseTool:
        """Add a tool: an instance, a ``BaseTool`` subclass or a ``@tool`` function.

        Classes and ``@tool`` functions are bound to this registry's workspace. A second tool
        with a name already registered is refused unless ``replace=True``.
        """
        return self._add(
            self._instantiate(tool), owned=not isinstance(tool, BaseTool), replace=replace
        )

    def _add(self, instance: BaseTool, *, owned: bool, replace: bool = False) -> BaseTool:
        name = instance.name
        if name in self.tools and not replace:
            raise ValueError(
                f"a tool named {name!r} is already registered; pass replace=True to replace it"
            )
        self.tools[name] = instance
        if owned:
            self._owned.add(name)
        else:
            self._owned.discard(name)
        self._schemas = None
        self._sanitized.pop(name, None)
        return instance

    def register_all(
        self, tools: Iterable[BaseTool | ToolDefinition | type[BaseTool] | Toolset]
    ) -> None:
        """Register several tools; a :class:`Toolset` contributes all of its tools."""
        for item in tools:
            if isinstance(item, Toolset):
                for bound in item.bind(self.workspace_dir, self.session_id):
                    self._add(bound, owned=True)
            else:
                self.register(item)

    def _instantiate(self, tool: BaseTool | ToolDefinition | type[BaseTool]) -> BaseTool:
        if isinstance(tool, BaseTool):
            return tool
        if isinstance(tool, ToolDefinition):
            return tool.bind(self.workspace_dir, self.session_id)
        if isinstance(tool, type) and issubclass(tool, BaseTool):
            return tool(self.workspace_dir)
        raise TypeError(
            f"cannot register {tool!r}: give a BaseTool instance or subclass, or a function "
            "decorated with @tool"
        )

    def unregister(self, name: str) -> None:
        """Remove a tool by name."""
        del self.tools[name]
        self._owned.discard(name)
        self._schemas = None
        self._sanitized.pop(name, None)

    def set_prehook(self, tool_name: str, hook_fn: Prehook | None) -> None:
        """Run ``hook_fn(input)`` before every call of ``tool_name``; raising refuses the call."""
        if tool_name not in self.tools:
            raise KeyError(f"no tool named {tool_name!r} is registered; known: {self.names}")
        self.tools[tool_name]._prehook = hook_fn

    def get_schemas(self) -> list[dict[str, Any]]:
        """The schemas of all tools, in registration order, as sent to the model."""
        if self._schemas is None:
            self._schemas = [tool.schema for tool in self.tools.values()]
        return self._schemas

    @property
    def names(self) -> list[str]:
        return list(self.tools)

    def get(self, name: str) -> BaseTool | None:
        return self.tools.get(name)

    def __contains__(self, name: object) -> bool:
        return name in self.tools

    def __len__(self) -> int:
        return len(self.tools)

    def is_sequential(self, name: str) -> bool:
        """Whether calls of this tool must run alone and in order."""
        tool = self.tools.get(name)
        return tool is not None and tool.sequential

    async def execute(
        self,
        tool_name: str,
        input: dict[str, Any],
        *,
        call_id: str | None = None,
        approver: Approver | None = None,
    ) -> ToolResult:
        """Validate and run one call; failures come back as ``is_error`` results.

        ``call_id`` is the model's id for the call (in approval requests and the audit log);
        ``approver`` answers this call's approval request if the policy asks for one
        (instead of the policy's own approver).
        """
        policy = self._policy
        if policy is None or policy.inert:
            result = await self._run(tool_name, input, None, None, None)
            sanitized = self._sanitized.get(tool_name)
            if sanitized is None:
                sanitized = self._sanitized[tool_name] = self._is_sanitized(tool_name)
            content = result["content"]
            if sanitized and (not isinstance(content, str) or has_controls(content)):
                result["content"] = sanitize_content(content)
            return self._truncated(tool_name, result)
        call = policy.begin(tool_name, input, call_id)
        try:
            result = await self._run(tool_name, input, policy, call, approver)
        except asyncio.CancelledError:
            policy.finish(call, None, self.tools.get(tool_name), cancelled=True)
            raise
        tool = self.tools.get(tool_name)
        result = self._truncated(tool_name, policy.clean(tool, call, result))
        result = policy.deliver(tool, call, result)
        policy.finish(call, result, tool)
        return result

    def _is_sanitized(self, tool_name: str) -> bool:
        """Whether the tool's output is stripped of control sequences (by its kind)."""
        tool = self.tools.get(tool_name)
        if tool is None:
            return False
        if self._policy is None:
            return declared_kind(tool_name, tool) in SANITIZED_KINDS
        policy = self._policy.policy
        return policy.permissions.kind_of(tool_name, tool) in policy.sanitize

    async def _run(
        self,
        tool_name: str,
        input: dict[str, Any],
        policy: SessionPolicy | None,
        call: CallRecord | None,
        approver: Approver | None,
    ) -> ToolResult:
        """The call up to its (normalised, untruncated) result."""
        if policy is not None and call is not None:
            refusal = await policy.admit(call)
            if refusal is not None:
                return refusal
        tool = self.tools.get(tool_name)
        if tool is None:
            return error(
                f"Unknown tool: {tool_name!r}. Available tools: {', '.join(self.names) or 'none'}."
            )
        if not isinstance(input, dict):
            return error(f"Invalid input for tool {tool_name!r}: expected a JSON object.")
        # Validation fills schema defaults in and hooks normalise in place: work on a deep
        # copy so the model's original input (kept in the history) is never changed.
        input = _private_copy(input)
        problem = self._schema_problem(tool, input)
        if problem is not None:
            return error(problem)
        try:
            tool.validate_paths(input)  # hooks and the prehook see resolved paths...
            if policy is not None and call is not None:
                input, refusal = await self._apply_policy(tool, input, policy, call, approver)
                if refusal is not None:
                    return refusal
            await tool.prehook(input)
            tool.validate_paths(input)  # ...and cannot swap in one outside the workspace
        except SecurityError as exc:
            return error(str(exc))
        except Exception as exc:
            return error(f"{tool_name} refused: {_describe(exc)}")
        if call is not None:
            call.executed = True
        timeout = tool.timeout if tool.timeout is not None else self.default_timeout
        told = None
        if tool.times_itself:  # it bounds its calls itself, to the limit it is told
            told, timeout = call_timeout.set(timeout), None
        try:
            if timeout is None:
                raw = await tool.execute(input)
            else:
                deadline = asyncio.timeout(timeout)
                try:
                    async with deadline:
                        raw = await tool.execute(input)
                except TimeoutError:
                    if not deadline.expired():
                        raise  # the tool's own TimeoutError (a request of its own timed out)
                    return error(
                        f"{tool_name} timed out after {timeout:g}s and was stopped. Try a "
                        "smaller task or split it into steps."
                    )
        except SecurityError as exc:
            return error(str(exc))
        except Exception as exc:
            return error(f"{tool_name} failed: {_describe(exc)}")
        finally:
            if told is not None:
                call_timeout.reset(told)
        result = self._normalised(tool, raw)
        if policy is not None and call is not None:
            result = await policy.run_post_hooks(tool, input, call, result)
            result = self._normalised(tool, result)
        return result

    async def _apply_policy(
        self,
        tool: BaseTool,
        input: dict[str, Any],
        policy: SessionPolicy,
        call: CallRecord,
        approver: Approver | None,
    ) -> tuple[dict[str, Any], ToolResult | None]:
        """PreToolUse hooks, then the permission decision (and approval): the input to run
        with, and the refusal to give the model if the call may not run."""
        hook_decision = None
        if policy.policy.hooks.has_pre(tool.name):
            before = _private_copy(input)
            outcome = await policy.run_pre_hooks(tool, input, call)
            if outcome is not None:
                hook_decision = outcome.decision
                if hook_decision is not None and hook_decision.behavior == "deny":
                    call.decision = hook_decision
                    return input, error(f"Permission denied: {hook_decision.reason}")
                if outcome.input is not input:
                    input = _private_copy(outcome.input)
                if input != before:  # validate what the hooks made, as if the model sent it
                    problem = self._schema_problem(tool, input)
                    if problem is not None:
                        return input, error(
                            f"A PreToolUse hook changed the input into an invalid one. {problem}"
                        )
                    tool.validate_paths(input)
                    call.effective_input = input
        return input, await policy.authorize(tool, input, call, hook_decision, approver)

    def _schema_problem(self, tool: BaseTool, input: dict[str, Any]) -> str | None:
        try:
            validator = _validator_for(tool)
        except _BadToolSchema as exc:
            return str(exc)
        try:
            validator(input)
        except Exception as exc:
            message = str(getattr(exc, "message", exc)).replace("data", "input", 1)
            schema = json.dumps(tool.schema.get("input_schema", {}), ensure_ascii=False)
            if len(schema) > 1500:
                schema = schema[:1500] + "..."
            return (
                f"Invalid input for tool {tool.name!r}: {message}. "
                f"Call it again with input matching its schema: {schema}"
            )
        return None

    def _normalised(self, tool: BaseTool, result: Any) -> ToolResult:
        """The tool's answer as a ``{"content", "is_error"}`` dict, or an error blaming it."""
        if isinstance(result, str):
            result = {"content": result, "is_error": False}
        if not isinstance(result, dict) or "content" not in result:
            return error(
                f"{tool.name} returned {type(result).__name__}, not a dict with 'content' and "
                "'is_error'; this is a bug in the tool"
            )
        result.setdefault("is_error", False)
        content = result["content"]
        if not isinstance(content, str | list):
            result["content"] = str(content)
        return cast(ToolResult, result)

    def _truncated(self, tool_name: str, result: ToolResult) -> ToolResult:
        """Cut output over the tool's (or the registry's) limit; the whole is saved to a file."""
        tool = self.tools.get(tool_name)
        configured = tool.max_output_chars if tool is not None else None
        limit = max(configured or self.max_output_chars, 1)
        content = result["content"]
        if isinstance(content, str):
            if len(content) > limit:
                result["content"] = self._truncate(tool_name, content, limit)
        elif isinstance(content, list):
            result["content"] = [
                TextBlock(self._truncate(tool_name, block.text, limit))
                if isinstance(block, TextBlock) and len(block.text) > limit
                else block
                for block in content
            ]
        return result

    def _truncate(self, tool_name: str, content: str, limit: int) -> str:
        """Keep the head and tail of a huge output; the whole of it goes to a file."""
        head = content[: limit * 3 // 4]
        tail = content[len(content) - limit // 4 :]  # not [-n:]: that is everything for n=0
        cut = len(content) - len(head) - len(tail)
        safe_name = re.sub(r"[^A-Za-z0-9_.-]", "_", tool_name)
        relative = os.path.join(OUTPUT_DIR, f"{safe_name}-{uuid.uuid4().hex[:10]}.txt")
        try:
            path = os.path.join(self.workspace_dir, relative)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path, "w", encoding="utf-8", errors="surrogateescape") as handle:
                handle.write(content)
            where = (
                f"The full output ({len(content):,} characters) is saved in {relative}; "
                f"{self._how_to_read()}"
            )
        except (OSError, UnicodeError):
            where = "Re-run with a narrower request to see the rest."
        return (
            f"{head}\n\n[... output truncated: {cut:,} of {len(content):,} characters cut "
            f"here. {where}]\n\n{tail}"
        )

    def _how_to_read(self) -> str:
        """How the model can read a saved output with the tools it has (an agent with the
        SQL tool alone has neither Read nor Grep)."""
        ways = []
        if "Read" in self.tools:
            ways.append("read it in parts with Read (offset/limit)")
        if "Grep" in self.tools:
            ways.append("search it with Grep")
        if not ways and "Bash" in self.tools:
            ways.append("look at parts of it with Bash (head, tail, grep)")
        if not ways:
            return "ask for less at a time to see the rest (fewer rows or columns, a summary)."
        return " or ".join(ways) + "."

    async def aclose(self, *, given: bool = True) -> None:
        """Close every tool (kill their processes, close connections).

        ``given=False`` closes only the tools this registry made, leaving ready-made
        instances it was given (which an ``Agent`` shares between sessions) to their owner.
        """
        for name, tool in list(self.tools.items()):
            if not given and name not in self._owned:
                continue
            try:
                await tool.aclose()
            except Exception:  # closing must reach every tool
                continue


_SCALARS = (str, int, float, bool, type(None))


def _private_copy(input: dict[str, Any]) -> dict[str, Any]:
    """A copy the registry may change freely: shallow when every value is a scalar (the
    common case, and 10x cheaper), deep otherwise."""
    for value in input.values():
        if not isinstance(value, _SCALARS):
            return copy.deepcopy(input)
    return dict(input)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
