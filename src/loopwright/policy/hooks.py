"""Hooks around tool calls, named after Claude Code's hook events.

- **PreToolUse** hooks run after the input is validated and before the permission check. A
  hook receives a :class:`PreToolUse` and may change ``event.input`` in place, or return
  ``None`` (no opinion), :class:`Allow`, :class:`Deny` or :class:`Ask` (the last three may carry
  ``updated_input``, which replaces the input). A :class:`Deny` stops the call; its reason goes
  back to the model as an ``is_error`` result. Hooks run in the order they were added, each
  seeing the input as the previous ones left it; the decision is the most restrictive one
  given (deny, then ask, then allow). An input a hook changed is validated again (schema and
  paths) before anything else looks at it, and the permission rules see the final input.
- **PostToolUse** hooks run after the tool ran (also when it reported ``is_error``; not when
  the call was refused before running). A hook receives a :class:`PostToolUse` and may return
  ``None`` (keep the result), a string (an annotation appended to the result for the model) or a
  result dict ``{"content": ..., "is_error": ...}`` that replaces it. Post-hooks see the raw
  result; sanitisation, redaction and truncation apply afterwards, to what they return too.
- **Stop** hooks run when the agent is about to end a run. Returning a string asks the agent
  to keep going, with that string as the next user message (the agent loop calls them).

A hook is any callable, sync or async; sync hooks run on the event loop, so keep them quick.
The matcher selects tools by name: an exact name (``Bash``), a glob (``mcp__*``), several
alternatives (``Write|Edit``) or ``*`` for every tool. A hook that raises fails closed: a
pre-hook's exception denies the call, a post-hook's exception withholds the tool's output.
"""

from __future__ import annotations

import fnmatch
import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias, TypeVar, overload

from loopwright.policy.kinds import ToolKind
from loopwright.policy.permissions import Behavior, Decision


@dataclass(slots=True)
class PreToolUse:
    """A tool call about to run, as a PreToolUse hook sees it (``input`` may be changed)."""

    tool_name: str
    input: dict[str, Any]
    kind: ToolKind
    tool_call_id: str | None = None
    session_id: str | None = None
    workspace_dir: str = ""


@dataclass(slots=True)
class PostToolUse:
    """A tool call that ran, with its result, as a PostToolUse hook sees it."""

    tool_name: str
    input: dict[str, Any]
    kind: ToolKind
    result: dict[str, Any]
    duration_ms: float
    tool_call_id: str | None = None
    session_id: str | None = None
    workspace_dir: str = ""


@dataclass(slots=True)
class Stop:
    """A run about to end, as a Stop hook sees it."""

    session_id: str
    stop_reason: str
    final_text: str = ""
    workspace_dir: str = ""


@dataclass(frozen=True, slots=True)
class Allow:
    """A pre-hook's "allow": skips the approval the mode would ask for (not a deny or ask rule)."""

    reason: str = ""
    updated_input: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Deny:
    """A pre-hook's "deny": the call does not run; ``reason`` is told to the model."""

    reason: str


@dataclass(frozen=True, slots=True)
class Ask:
    """A pre-hook's "ask": a person must approve the call first."""

    reason: str = ""
    updated_input: Mapping[str, Any] | None = None


PreHookResult: TypeAlias = Allow | Deny | Ask | None
PostHookResult: TypeAlias = str | dict[str, Any] | None
PreHook: TypeAlias = Callable[[PreToolUse], PreHookResult | Awaitable[PreHookResult]]
PostHook: TypeAlias = Callable[[PostToolUse], PostHookResult | Awaitable[PostHookResult]]
StopHook: TypeAlias = Callable[[Stop], Awaitable[str | None] | str | None]
F = TypeVar("F", bound=Callable[..., Any])

_STRICTNESS = {"allow": 0, "ask": 1, "deny": 2}


class Matcher:
    """Selects tools by name: exact, glob (``mcp__*``), alternatives (``Write|Edit``), ``*``."""

    __slots__ = ("_everything", "_exact", "_globs", "text")

    def __init__(self, text: str = "*") -> None:
        if not isinstance(text, str) or not text.strip():
            raise ValueError(
                f"Invalid hook matcher {text!r}: give a tool name, a glob such as 'mcp__*', "
                "alternatives such as 'Write|Edit', or '*' for every tool."
            )
        self.text = text
        alternatives = [part.strip() for part in text.split("|") if part.strip()]
        self._everything = "*" in alternatives
        self._exact = frozenset(a for a in alternatives if not any(c in a for c in "*?["))
        self._globs = tuple(a for a in alternatives if any(c in a for c in "*?["))

    def __call__(self, tool_name: str) -> bool:
        return (
            self._everything
            or tool_name in self._exact
            or any(fnmatch.fnmatchcase(tool_name, glob) for glob in self._globs)
        )

    def __repr__(self) -> str:
        return f"Matcher({self.text!r})"


@dataclass(frozen=True, slots=True)
class _Registered:
    matcher: Matcher
    function: Callable[..., Any]
    name: str


@dataclass(slots=True)
class PreHookOutcome:
    """What the pre-hooks made of a call: their decision (if any) and whether they ran."""

    decision: Decision | None
    input: dict[str, Any]
    ran: bool


class Hooks:
    """The PreToolUse, PostToolUse and Stop hooks of a policy.

    Register with a call (``hooks.pre_tool_use("Bash", check)``) or as a decorator
    (``@hooks.pre_tool_use("Bash")``); hooks added later apply to sessions already running.
    """

    def __init__(self) -> None:
        self._pre: list[_Registered] = []
        self._post: list[_Registered] = []
        self._stop: list[_Registered] = []
        self._pre_cache: dict[str, tuple[_Registered, ...]] = {}
        self._post_cache: dict[str, tuple[_Registered, ...]] = {}

    # --- registration --------------------------------------------------------------------

    @overload
    def pre_tool_use(self, matcher: str, hook: PreHook) -> PreHook: ...
    @overload
    def pre_tool_use(self, matcher: str = "*") -> Callable[[F], F]: ...
    def pre_tool_use(self, matcher: str = "*", hook: PreHook | None = None) -> Any:
        """Add a PreToolUse hook for the tools ``matcher`` selects."""
        return self._add(self._pre, matcher, hook)

    @overload
    def post_tool_use(self, matcher: str, hook: PostHook) -> PostHook: ...
    @overload
    def post_tool_use(self, matcher: str = "*") -> Callable[[F], F]: ...
    def post_tool_use(self, matcher: str = "*", hook: PostHook | None = None) -> Any:
        """Add a PostToolUse hook for the tools ``matcher`` selects."""
        return self._add(self._post, matcher, hook)

    def stop(self, hook: StopHook) -> StopHook:
        """Add a Stop hook (usable as a decorator)."""
        self._add(self._stop, "*", hook)
        return hook

    def _add(self, into: list[_Registered], matcher: str, hook: Callable[..., Any] | None) -> Any:
        compiled = Matcher(matcher)

        def register(function: F) -> F:
            if not callable(function):
                raise TypeError(f"a hook must be callable, got {type(function).__name__}")
            name = getattr(function, "__qualname__", None) or type(function).__name__
            into.append(_Registered(compiled, function, name))
            self._pre_cache.clear()
            self._post_cache.clear()
            return function

        return register if hook is None else register(hook)

    def clear(self) -> None:
        """Remove every hook."""
        for registered in (self._pre, self._post, self._stop):
            registered.clear()
        self._pre_cache.clear()
        self._post_cache.clear()

    def __bool__(self) -> bool:
        return bool(self._pre or self._post or self._stop)

    @property
    def stop_hooks(self) -> list[Callable[..., Any]]:
        """The Stop hooks, in the order they run."""
        return [registered.function for registered in self._stop]

    @property
    def around_calls(self) -> bool:
        """Whether any PreToolUse or PostToolUse hook is registered (Stop hooks do not
        touch tool calls)."""
        return bool(self._pre or self._post)

    def has_pre(self, tool_name: str) -> bool:
        """Whether any PreToolUse hook applies to ``tool_name``."""
        return bool(self._pre) and bool(self._for(tool_name, self._pre, self._pre_cache))

    def has_post(self, tool_name: str) -> bool:
        """Whether any PostToolUse hook applies to ``tool_name``."""
        return bool(self._post) and bool(self._for(tool_name, self._post, self._post_cache))

    @staticmethod
    def _for(
        tool_name: str, hooks: list[_Registered], cache: dict[str, tuple[_Registered, ...]]
    ) -> tuple[_Registered, ...]:
        found = cache.get(tool_name)
        if found is None:
            found = cache[tool_name] = tuple(h for h in hooks if h.matcher(tool_name))
        return found

    # --- running -------------------------------------------------------------------------

    async def run_pre(self, event: PreToolUse) -> PreHookOutcome:
        """Run the PreToolUse hooks for ``event``; a hook that raises denies the call."""
        decision: Decision | None = None
        hooks = self._for(event.tool_name, self._pre, self._pre_cache)
        for hook in hooks:
            try:
                answer = await _call(hook.function, event)
            except Exception as exc:
                reason = f"the PreToolUse hook {hook.name} failed ({_describe(exc)})"
                return PreHookOutcome(
                    Decision("deny", reason, f"hook:{hook.name}"), event.input, True
                )
            if answer is None:
                continue
            if not isinstance(answer, Allow | Deny | Ask):
                reason = (
                    f"the PreToolUse hook {hook.name} returned {type(answer).__name__}; a "
                    "pre-hook returns None, Allow, Deny or Ask"
                )
                return PreHookOutcome(
                    Decision("deny", reason, f"hook:{hook.name}"), event.input, True
                )
            source = f"hook:{hook.name}"
            if isinstance(answer, Deny):
                reason = answer.reason or f"the PreToolUse hook {hook.name} denied it"
                return PreHookOutcome(Decision("deny", reason, source), event.input, True)
            if answer.updated_input is not None:
                event.input = dict(answer.updated_input)
            behavior: Behavior = "ask" if isinstance(answer, Ask) else "allow"
            if decision is None or _STRICTNESS[behavior] > _STRICTNESS[decision.behavior]:
                decision = Decision(behavior, answer.reason, source)
        return PreHookOutcome(decision, event.input, bool(hooks))

    async def run_post(self, event: PostToolUse) -> dict[str, Any]:
        """Run the PostToolUse hooks for ``event``; returns the (possibly new) result."""
        for hook in self._for(event.tool_name, self._post, self._post_cache):
            try:
                answer = await _call(hook.function, event)
            except Exception as exc:
                return {
                    "content": (
                        f"{event.tool_name} ran, but the PostToolUse hook {hook.name} failed "
                        f"({_describe(exc)}), so its output is withheld."
                    ),
                    "is_error": True,
                }
            if answer is None:
                continue
            if isinstance(answer, str):
                event.result = _annotated(event.result, answer)
            elif isinstance(answer, dict) and "content" in answer:
                answer.setdefault("is_error", False)
                event.result = answer
            else:
                return {
                    "content": (
                        f"{event.tool_name} ran, but the PostToolUse hook {hook.name} returned "
                        f"{type(answer).__name__} (a post-hook returns None, a string or a result "
                        "dict), so its output is withheld."
                    ),
                    "is_error": True,
                }
        return event.result

    async def run_stop(self, event: Stop) -> str | None:
        """Run the Stop hooks; the first string returned is a reason to keep the run going."""
        for hook in self._stop:
            answer = await _call(hook.function, event)
            if isinstance(answer, str) and answer.strip():
                return answer
        return None


async def _call(function: Callable[..., Any], event: Any) -> Any:
    answer = function(event)
    if inspect.isawaitable(answer):
        answer = await answer
    return answer


def _annotated(result: dict[str, Any], note: str) -> dict[str, Any]:
    from loopwright.messages import TextBlock

    content = result.get("content", "")
    if isinstance(content, list):
        result["content"] = [*content, TextBlock(note)]
    else:
        result["content"] = f"{content}\n\n{note}" if content else note
    return result


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
