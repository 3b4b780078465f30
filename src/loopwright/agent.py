"""The agentic loop.

``Agent.run(prompt, session)`` appends the prompt to the session, then repeats: call the model
with the conversation and the tool schemas, stream its text, run the tool calls it asked for
(concurrently, except ``sequential`` tools), append the results, until the model answers
without tool calls or a limit stops the run. Every step is persisted to the session store
before the next one starts, so a crash loses nothing and a resumed run re-runs nothing.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import time
import weakref
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Sequence
from contextlib import aclosing, suppress
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeAlias

from loopwright import summaries
from loopwright.events import (
    ApprovalRequest,
    Done,
    Error,
    Event,
    Notice,
    TextDelta,
    ToolCall,
    ToolResult,
    Usage,
    UsageUpdate,
    warehouse_bill,
    warehouse_cost,
)
from loopwright.instrument import Instrument, Instruments, default_instruments
from loopwright.messages import (
    ContentBlock,
    ImageBlock,
    Message,
    TextBlock,
    ToolResultBlock,
    ToolUseBlock,
)
from loopwright.models.base import Model, ModelError, ModelRequest, ModelResponse, RetryNotice
from loopwright.run_context import (
    CANCELLED_CALL_METADATA,
    RunContext,
    current_call,
    enter_call,
    exit_call,
)
from loopwright.sessions.session import INTERRUPTED, Session
from loopwright.sessions.store import SessionStore
from loopwright.tools.base import BaseTool, ToolDefinition, Toolset
from loopwright.tools.registry import DEFAULT_MAX_OUTPUT_CHARS, DEFAULT_TIMEOUT_S, ToolRegistry

if TYPE_CHECKING:
    from loopwright.policy import Policy
    from loopwright.policy.approvals import Approver

ToolSpec: TypeAlias = BaseTool | ToolDefinition | type[BaseTool] | Toolset
Prompt: TypeAlias = str | Sequence[ContentBlock]

CUT_TOOL_CALL = (
    "Your previous reply was cut off (the output token limit, or it kept repeating itself) "
    "while you were still writing the input of the {name} tool call, so it was not run. Call "
    "it again with a smaller input (for example, write a long file in several parts)."
)
BAD_TOOL_JSON = (
    "The input you wrote for the {name} tool call was not valid JSON, so it was not run. Call "
    "it again with its arguments as one valid JSON object."
)
CUT_TEXT = (
    "(Your previous reply was cut off by the output token limit. Continue exactly where it "
    "stopped.)"
)
#: The ``code`` of the notice sent when the model could not summarise older turns.
SUMMARY_FAILED = "summary_failed"
#: The ``code`` of the notice sent when ``max_cost_usd`` cannot hold (the model has no price).
COST_UNPRICED = "cost_unpriced"
REPEAT_NOTE = (
    "\n\n[Note from the agent loop: you have now made exactly this call, with the same input, "
    "{count} times in a row. Repeating it will not change the result; try a different "
    "approach or answer with what you have.]"
)
SUMMARY_SYSTEM = (
    "You condense agent conversations. Write a faithful summary of the transcript you are "
    "given: the user's goals and instructions, what was done (tools called and what they "
    "found), files created or changed, decisions, open questions and what remains to do. Keep "
    "names, numbers, paths and identifiers exact. Plain text, no preamble."
)
SUMMARY_PROMPT = "Summarise this conversation transcript:\n\n"
#: The heading of the list of tool calls the agent adds to a summary (made from the log).
CALLS_HEADING = "Tool calls made in the summarised part, oldest first:"
#: The most tokens a summary may take (less in a small window).
SUMMARY_MAX_TOKENS = 2048
#: The most summary requests one compaction makes: a longer transcript is cut harder.
MAX_SUMMARY_CALLS = 6
#: The fewest characters of transcript a summary request holds, however small the window.
MIN_SUMMARY_ROOM = 2_000
#: The most characters of the list of tool calls shown after a summary.
MAX_CALLS_CHARS = 8_000
#: The fewest characters a tool result is cut to, however small the window.
MIN_TOOL_OUTPUT_CHARS = 1_000
#: Metadata key under which a session keeps what its model's token counts taught the
#: context estimate (:class:`_TokenRatio`), so a resumed session starts calibrated.
TOKEN_RATIO_KEY = "token_ratio"

log = logging.getLogger("loopwright.agent")


@dataclass(slots=True)
class RunResult:
    """What ``run_sync`` returns: the final answer, every event, and how the run ended."""

    text: str
    stop_reason: str
    usage: Usage
    session: Session
    events: list[Event] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when the model finished on its own (not a limit, error or cancellation)."""
        return self.stop_reason == "end_turn"


class _StopRun(Exception):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(detail or reason)
        self.reason = reason
        self.detail = detail


@dataclass(slots=True)
class _TokenRatio:
    """How many tokens the model makes of the characters the context estimate counts, as
    the model's own counts taught it: real prompt tokens / (characters / 4).

    The estimate takes 4 characters a token; a tokenizer spending a token on every digit
    makes about 1.4 characters a token of claims data (NPIs, NDC codes, dates), so the
    prompt went over the window before trimming started. 1.0 (the plain estimate) until the
    model reports a prompt's size; then each report moves it toward what was measured, up
    quickly (an undercount sends a prompt over the window) and down slowly (an overcount
    only trims a little early), within ``MIN``..``MAX`` (a wrong report cannot make the
    agent blind to its context, or summarise at every turn).

    One per session (the ratio depends on the tokenizer and on what the session holds: codes
    and digits, prose, another language), kept in the session's metadata for a resumed
    session (every one-shot CLI question is a new process); a new session starts from the
    latest ratio the agent learned for the same model, until its own first response."""

    MIN = 0.5
    MAX = 6.0
    UP = 0.7
    DOWN = 0.25
    #: a prompt estimated under this many tokens is not measured (per-message overheads of a
    #: chat template are most of a tiny prompt)
    SMALLEST = 32

    model: str
    value: float = 1.0
    samples: int = 0
    #: the per-result cut last given to the session's registry (for ``value``); ``None``
    #: before the agent set one
    output_limit: int | None = None

    def tokens(self, chars: int) -> int:
        return int(chars * self.value / 4)

    def chars(self, tokens: int) -> int:
        return int(tokens * 4 / self.value)

    def observe(self, chars: int, real: int) -> bool:
        """Learn from a prompt of ``chars`` characters that the model counted as ``real``
        tokens; whether the ratio changed."""
        estimated = chars / 4
        if real <= 0 or estimated < self.SMALLEST:
            return False
        measured = min(self.MAX, max(self.MIN, real / estimated))
        if self.samples:
            weight = self.UP if measured > self.value else self.DOWN
            measured = self.value + weight * (measured - self.value)
        self.samples += 1
        changed = measured != self.value
        self.value = measured
        return changed


@dataclass(slots=True)
class _RunState:
    session: Session
    registry: ToolRegistry
    usage: Usage
    deadline: float | None
    run: RunContext
    #: events raised outside the loop's own steps (approval requests, events that tools
    #: emit through the run context), yielded between the steps
    side_events: asyncio.Queue[Event]
    turns: int = 0
    #: the previous turn's calls as (name, input) pairs, to spot a model repeating itself
    last_signature: list[tuple[str, dict[str, Any]]] | None = None
    repeats: int = 0
    text_continuations: int = 0
    #: tokens per character/4 as the model's counts taught it (see :class:`_TokenRatio`)
    ratio: _TokenRatio = field(default_factory=lambda: _TokenRatio(""))
    #: characters of the prompt last sent (system prompt and tool schemas included) and
    #: the tokens the request said it estimated, to compare with the model's count
    sent_chars: int = 0
    sent_estimate: int = 0
    #: characters of the system prompt and tool schemas (fixed during a run)
    fixed_chars: int = 0
    #: characters of the messages in context, counted up to ``counted_upto``
    context_chars: int = 0
    counted_upto: int = 0
    results_index: int | None = None
    #: the list of the summarised turns' tool calls, for the session's ``context_start``
    calls_note: tuple[int, str] | None = None
    #: whether approval requests wait in ``side_events`` for ``agent.approve()``
    asks: bool = False
    #: what answers this run's approval requests (None: the policy's own approver)
    approver: Approver | None = None
    #: USD per byte a warehouse bills, looked up once a run when ``max_cost_usd`` first meets
    #: a warehouse bill (see :meth:`Agent._check_cost`)
    usd_per_byte: float | None = None
    #: the runs above a sub-agent's with a token or cost budget, nearest first (looked up
    #: once a run: see :meth:`Agent._check_budgets_above`)
    above: tuple[RunContext, ...] = ()
    #: whether the run has said its model's calls cost nothing it knows (see
    #: :func:`_warn_unpriced`)
    unpriced: bool = False


class Agent:
    """An LLM in a loop with tools.

    An agent is a reusable definition (model, system prompt, tools, limits); each
    :class:`Session` gets its own tool registry bound to its workspace. Tools may be given as
    ``BaseTool`` subclasses or ``@tool`` functions (bound per session) or as ready instances
    (shared as they are).

    ``temperature`` is sent to providers that accept it (defaults to 0 for repeatable runs);
    ``response_format`` (a JSON schema for the final answer) and ``tool_choice`` are passed
    to every model call; tools stay available with structured output.

    Limits (``None`` = no limit): ``max_turns`` model calls per run, ``max_tokens_budget``
    tokens per run, ``max_cost_usd`` per run (the model's cost plus what a warehouse billed for
    the run's queries, estimated at ``LOOPWRIGHT_BIGQUERY_USD_PER_TIB``), ``timeout`` seconds of
    wall-clock per run. Each ends the run with a ``done`` event whose ``stop_reason`` names
    the limit. Sub-agents' tokens and cost count in both budgets, and a sub-agent stops when
    its spending and that of the sub-agents running beside it reach one (``done``'s detail
    names the run whose budget it was).
    """

    def __init__(
        self,
        model: Model | str | None = None,
        *,
        system_prompt: str | Callable[[Session], str] = "",
        tools: Iterable[ToolSpec] = (),
        allowed_tools: Iterable[str] | None = None,
        name: str = "agent",
        max_turns: int | None = 50,
        max_tokens_budget: int | None = None,
        max_cost_usd: float | None = None,
        timeout: float | None = None,
        max_output_tokens: int = 4096,
        temperature: float = 0.0,
        response_format: dict[str, Any] | None = None,
        tool_choice: str | dict[str, Any] | None = None,
        tool_timeout: float | None = DEFAULT_TIMEOUT_S,
        max_tool_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS,
        repeat_warn_after: int = 3,
        repeat_stop_after: int = 5,
        context_threshold: float = 0.8,
        keep_recent_tool_results: int = 6,
        store: SessionStore | None = None,
        workspace_root: str | None = None,
        policy: Policy | None = None,
        instruments: Sequence[Instrument] | None = None,
    ) -> None:
        from loopwright.models import resolve_model

        self.model: Model = resolve_model(model)
        self.system_prompt = system_prompt
        self.tools: list[ToolSpec] = list(tools)
        self.allowed_tools = frozenset(allowed_tools) if allowed_tools is not None else None
        self.name = name
        self.max_turns = max_turns
        self.max_tokens_budget = max_tokens_budget
        check_cost_budget(max_cost_usd)
        self.max_cost_usd = max_cost_usd
        self.timeout = timeout
        self.max_output_tokens = max_output_tokens
        self.temperature = temperature
        self.response_format = response_format
        self.tool_choice = tool_choice
        self.tool_timeout = tool_timeout
        self.max_tool_output_chars = max_tool_output_chars
        self.repeat_warn_after = repeat_warn_after
        self.repeat_stop_after = repeat_stop_after
        self.context_threshold = context_threshold
        self.keep_recent_tool_results = keep_recent_tool_results
        self.workspace_root = workspace_root
        self.policy = policy
        self.instruments = Instruments(
            default_instruments() if instruments is None else instruments
        )
        self._store = store
        self._prehooks: dict[str, Any] = {}
        self._registries: weakref.WeakKeyDictionary[Session, ToolRegistry] = (
            weakref.WeakKeyDictionary()
        )
        #: each session's token ratio, and the latest one learned per model name
        self._ratios: weakref.WeakKeyDictionary[Session, _TokenRatio] = weakref.WeakKeyDictionary()
        self._learned: dict[str, float] = {}

    # --- configuration ------------------------------------------------------------------

    @property
    def store(self) -> SessionStore:
        """Where sessions are saved: the one given, else ``LOOPWRIGHT_STORE``'s, else SQLite
        in the data directory."""
        if self._store is None:
            from loopwright.sessions.store import default_store

            self._store = default_store()
        return self._store

    def set_prehook(self, tool_name: str, hook_fn: Any) -> None:
        """Install a prehook on ``tool_name`` in every session's registry (now and later)."""
        self._prehooks[tool_name] = hook_fn
        for registry in self._registries.values():
            if tool_name in registry:
                registry.set_prehook(tool_name, hook_fn)

    def registry_for(self, session: Session) -> ToolRegistry:
        """The session's tool registry, built on first use."""
        registry = self._registries.get(session)
        if registry is None:
            ratio = self._token_ratio(session)
            ratio.output_limit = self._tool_output_limit(ratio.value)
            registry = ToolRegistry(
                session.workspace_dir,
                default_timeout=self.tool_timeout,
                max_output_chars=ratio.output_limit,
                session_id=session.id,
                policy=self.policy,
            )
            registry.register_all(self.tools)
            if self.allowed_tools is not None:
                unknown = self.allowed_tools - set(registry.names)
                if unknown:
                    raise ValueError(
                        f"allowed_tools names tools this agent does not have: "
                        f"{', '.join(sorted(unknown))}; its tools are {', '.join(registry.names)}"
                    )
                for tool_name in registry.names:
                    if tool_name not in self.allowed_tools:
                        registry.unregister(tool_name)
            for tool_name, hook in self._prehooks.items():
                if tool_name in registry:
                    registry.set_prehook(tool_name, hook)
            self._registries[session] = registry
        return registry

    def approve(
        self, request_id: str, *, allow: bool = True, reason: str = "", by: str = "user"
    ) -> None:
        """Answer an ``approval_request`` event: the waiting tool call runs or is denied.

        ``reason`` goes back to the model with a denial. Raises ``LookupError`` when no such
        request is waiting (answered already, timed out, or never asked).
        """
        if self.policy is None:
            raise LookupError(
                "this agent has no policy, so no tool call waits for approval; give the "
                "Agent a Policy(mode='ask', ...) to be asked"
            )
        self.policy.approvals.answer(request_id, allow=allow, reason=reason, by=by)

    @property
    def pending_approvals(self) -> list[ApprovalRequest]:
        """Approval requests waiting for an answer, oldest first."""
        return self.policy.approvals.pending if self.policy is not None else []

    def new_session(self, id: str | None = None, **metadata: Any) -> Session:
        """A new session in this agent's store and workspace root."""
        return Session.create(id, root=self.workspace_root, store=self.store, metadata=metadata)

    def _session(self, session: Session | str | None) -> Session:
        if isinstance(session, Session):
            if session.store is None:
                session.store = self.store
            return session
        if session is None:
            return self.new_session()
        if self.store.exists(session):
            return Session.resume(session, store=self.store)
        return self.new_session(session)

    async def _prepare_toolsets(self) -> None:
        """Let toolsets do their async set-up (connect to MCP servers, list their tools)
        before a session's registry binds them."""
        for spec in self.tools:
            if isinstance(spec, Toolset):
                await spec.aprepare()

    async def close_session(self, session: Session) -> None:
        """Close the session's tools: their processes are killed, connections closed."""
        registry = self._registries.pop(session, None)
        if registry is not None:
            await registry.aclose(given=False)  # shared instances close with the agent

    async def aclose(self) -> None:
        """Close every session's tools, the instruments (pending work finishes) and the model."""
        for session in list(self._registries):
            await self.close_session(session)
        for spec in self.tools:  # instances and toolsets given ready-made, shared by sessions
            if isinstance(spec, BaseTool | Toolset):
                with suppress(Exception):
                    await spec.aclose()
        await self.instruments.aclose()
        await self.model.aclose()

    async def __aenter__(self) -> Agent:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- running ------------------------------------------------------------------------

    def run_sync(self, prompt: Prompt | None, session: Session | str | None = None) -> RunResult:
        """Run to completion from synchronous code and return the result."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise RuntimeError(
                "run_sync() cannot be called from a running event loop; use "
                "`async for event in agent.run(...)` in async code"
            )
        return asyncio.run(self.collect(prompt, session))

    async def collect(
        self,
        prompt: Prompt | None,
        session: Session | str | None = None,
        *,
        on_event: Callable[[Event], Awaitable[None] | None] | None = None,
    ) -> RunResult:
        """Run to completion and return the result (the async twin of ``run_sync``).

        ``on_event`` (a function or a coroutine function) sees each event as it comes, for
        progress reporting; what it raises ends the run.
        """
        resolved = self._session(session)
        events: list[Event] = []
        done: Done | None = None
        first_new = len(resolved.messages)
        async with aclosing(self.run(prompt, resolved)) as run:  # closed at once on errors
            async for event in run:
                events.append(event)
                if on_event is not None:
                    reported = on_event(event)
                    if reported is not None:
                        await reported
                if isinstance(event, Done):
                    done = event
        new = resolved.messages[first_new:]
        final = next((m.text for m in reversed(new) if m.role == "assistant" and m.text), "")
        assert done is not None
        return RunResult(final, done.stop_reason, done.usage, resolved, events)

    def run(
        self, prompt: Prompt | None, session: Session | str | None = None
    ) -> AsyncGenerator[Event, None]:
        """Run the loop, yielding events; ends with exactly one ``done`` event.

        ``prompt=None`` continues a session whose last step was interrupted (after
        :meth:`Session.resume`). Breaking out of the loop or cancelling the consuming task
        stops the run: running tools are cancelled and the history is left consistent.

        Called from inside a tool call (a sub-agent), the run knows its parent run: see
        :mod:`loopwright.run_context`.
        """
        return self._start_run(prompt, session)[1]

    def _start_run(
        self, prompt: Prompt | None, session: Session | str | None
    ) -> tuple[RunContext, AsyncGenerator[Event, None]]:
        """:meth:`run`'s events and the run's context, whose ``usage`` is what the run has
        spent so far: a tool that starts a sub-agent counts it whether or not the run reaches
        its ``done`` (it is cancelled with its parent, or its call times out)."""
        resolved = self._session(session)
        scope = current_call()
        usage = Usage()
        if scope is None:
            run = RunContext(self, resolved, usage, self.name)
        else:
            parent = scope.run
            run = RunContext(
                self, resolved, usage, f"{parent.path}/{self.name}", parent, scope.call
            )
        events = self._run(prompt, run)
        return run, self._instrumented(events, run) if self.instruments else events

    async def _instrumented(
        self, events: AsyncGenerator[Event, None], run: RunContext
    ) -> AsyncGenerator[Event, None]:
        instruments = self.instruments
        instruments.call("run_started", run)
        done: Done | None = None
        try:
            async with aclosing(events):
                async for event in events:
                    instruments.call("event", run, event)
                    if isinstance(event, Done):
                        done = event
                    yield event
        finally:
            if done is None:
                done = Done("cancelled", run.usage.copy(), run.session.id, "the run was stopped")
            instruments.call("run_finished", run, done)

    async def _run(self, prompt: Prompt | None, run: RunContext) -> AsyncGenerator[Event, None]:
        session = run.session
        if session not in self._registries:
            try:
                await self._prepare_toolsets()
                self.registry_for(session)
            except Exception as exc:  # a server that will not start, no usable sandbox
                detail = f"the tools could not be set up: {type(exc).__name__}: {exc}"
                yield Error(detail, retryable=False)
                yield Done("error", run.usage.copy(), session.id, detail)
                return
        registry = self.registry_for(session)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout if self.timeout is not None else None
        side_events: asyncio.Queue[Event] = asyncio.Queue()
        run._sink = side_events.put_nowait
        state = _RunState(session, registry, run.usage, deadline, run, side_events)
        if run.parent is not None:
            state.above = _budgeted_above(run)
        state.ratio = self._token_ratio(session)
        self._apply_output_limit(registry, state.ratio)
        policy = self.policy
        if policy is not None and policy.approver is None:
            # approval requests become approval_request events; agent.approve() answers them
            state.asks = True
            state.approver = functools.partial(policy.approvals.wait, notify=side_events.put_nowait)
        stop_reason = "end_turn"
        detail = ""
        session.repair("the previous run was interrupted")
        if prompt is not None:
            session.append(_user_message(prompt))
        elif not session.messages or session.messages[-1].role == "assistant":
            raise ValueError(
                "nothing to do: give a prompt, or resume a session whose last step was interrupted"
            )
        session.save()
        state.fixed_chars = len(self._system_text(session)) + sum(
            len(json.dumps(schema)) for schema in registry.get_schemas()
        )
        self._recount_context(state)
        try:
            while True:
                self._check_limits(state)
                await self._manage_context(state)
                while not state.side_events.empty():  # notices of the context's compaction
                    yield state.side_events.get_nowait()
                response = None
                async with aclosing(self._model_turn(state)) as model_events:
                    async for model_event in model_events:
                        if isinstance(model_event, ModelResponse):
                            response = model_event
                        else:
                            yield model_event
                if response is None:
                    raise ModelError(f"model {self.model.name!r} ended its turn without a response")
                yield self._account(state, response)
                while not state.side_events.empty():  # notices of the call's accounting
                    yield state.side_events.get_nowait()
                calls = self._record_turn(state, response)
                if calls is None:
                    if response.stop_reason == "max_tokens" and state.text_continuations < 3:
                        state.text_continuations += 1
                        session.append(Message.user(CUT_TEXT))
                        session.save()
                        continue
                    if self.policy is not None:
                        from loopwright.policy.hooks import Stop

                        more = await self.policy.hooks.run_stop(
                            Stop(
                                session.id,
                                "end_turn",
                                response.message.text,
                                str(session.workspace_dir),
                            )
                        )
                        if more is not None:  # a Stop hook wants the run to go on
                            session.append(Message.user(more))
                            session.save()
                            continue
                    break
                async with aclosing(self._run_tools(state, calls)) as tool_events:
                    async for tool_event in tool_events:
                        yield tool_event
        except _StopRun as stop:
            stop_reason, detail = stop.reason, stop.detail
        except ModelError as exc:
            stop_reason, detail = "error", str(exc)
            yield Error(str(exc), retryable=exc.retryable)
        except Exception as exc:
            stop_reason, detail = "error", f"{type(exc).__name__}: {exc}"
            yield Error(detail, retryable=False)
        except BaseException:  # cancelled, closed by the consumer, or interrupted
            self._abandon(state, "cancelled")
            raise
        self._abandon(state, stop_reason)
        yield Done(stop_reason, state.usage.copy(), session.id, detail)

    # --- the steps ----------------------------------------------------------------------

    def _check_limits(self, state: _RunState) -> None:
        if self.max_turns is not None and state.turns >= self.max_turns:
            raise _StopRun("max_turns", f"stopped at the limit of {self.max_turns} model turns")
        usage = state.usage
        if self.max_tokens_budget is not None and usage.total_tokens >= self.max_tokens_budget:
            raise _StopRun(
                "token_budget",
                f"used {usage.total_tokens:,} tokens of a {self.max_tokens_budget:,} budget",
            )
        budget = self.max_cost_usd
        if budget is not None and (usage.cost_usd >= budget or usage.warehouse is not None):
            self._check_cost(state, budget, usage)
        if state.above:
            self._check_budgets_above(state)
        if state.deadline is not None and asyncio.get_running_loop().time() >= state.deadline:
            raise self._timeout()

    def _check_budgets_above(self, state: _RunState) -> None:
        """Stop a sub-agent's run at the token or cost budget of a run above it: what the
        sub-agent, the sub-agents running beside it and theirs spend counts there, but
        reaches that run's usage only as each ends (:meth:`RunContext.spent`). A run started
        in between by a tool of its own (an agent run inside a plain tool: no Delegate made it
        a child, :meth:`RunContext.start_child`) is not in that sum: its spending is added."""
        for run in state.above:
            spent = run.spent()
            for unlisted in _unlisted_between(state.run, run):
                spent.add(unlisted.spent())
            whose = f"{run.path}'s"
            tokens = run.agent.max_tokens_budget
            if tokens is not None and spent.total_tokens >= tokens:
                raise _StopRun(
                    "token_budget",
                    f"used {spent.total_tokens:,} tokens of {whose} {tokens:,} budget",
                )
            budget = run.agent.max_cost_usd
            if budget is not None:
                self._check_cost(state, budget, spent, whose)

    def _check_cost(self, state: _RunState, budget: float, usage: Usage, whose: str = "") -> None:
        """Stop at ``budget`` USD spent (``usage``): the model's cost, plus the estimated cost
        of what a warehouse billed for the queries (priced once a run, when it first billed).
        ``whose``: the run whose budget it is, when not this one's (``agent's``)."""
        model = usage.cost_usd
        warehouse = usage.warehouse
        of_budget = f"of {whose} ${budget:.4f} budget" if whose else f"of a ${budget:.4f} budget"
        if warehouse is None or not warehouse.bytes_billed:
            if model >= budget:
                raise _StopRun("cost_budget", f"spent ${model:.4f} {of_budget}")
            return
        if state.usd_per_byte is None:
            from loopwright.observability.stats import TIB, warehouse_price

            try:
                state.usd_per_byte = warehouse_price() / TIB
            except ValueError as exc:
                raise ValueError(
                    f"max_cost_usd counts what {warehouse.database} billed for the run's "
                    f"queries, but its price is not usable: {exc}"
                ) from None
        billed = warehouse.bytes_billed * state.usd_per_byte
        spent = model + billed
        if spent >= budget:
            raise _StopRun(
                "cost_budget",
                f"spent ${spent:.4f} {of_budget} (model ${model:.4f}, warehouse ${billed:.4f})",
            )

    def _timeout(self) -> _StopRun:
        return _StopRun("timeout", f"stopped after the {self.timeout:g}s time limit")

    def _request(self, state: _RunState, messages: Sequence[Message]) -> ModelRequest:
        estimate = self._context_tokens(state)
        state.sent_chars = state.fixed_chars + state.context_chars
        state.sent_estimate = estimate
        return ModelRequest(
            messages=messages,
            system=self._system_text(state.session),
            tools=state.registry.get_schemas(),
            max_tokens=self.max_output_tokens,
            temperature=self.temperature,
            estimated_input_tokens=estimate,
            tool_choice=self.tool_choice,
            response_format=self.response_format,
        )

    async def _model_turn(
        self, state: _RunState
    ) -> AsyncGenerator[TextDelta | Error | ModelResponse, None]:
        request = self._request(state, self._context_messages(state))
        instruments = self.instruments
        if instruments:
            instruments.call("model_call_started", state.run, request)
            started = time.perf_counter()
            response: ModelResponse | None = None
            failure: BaseException | None = None
        stream = self.model.stream(request).__aiter__()
        deadline = state.deadline
        try:
            while True:
                try:
                    if deadline is None:
                        event = await stream.__anext__()
                    else:
                        async with asyncio.timeout_at(deadline):
                            event = await stream.__anext__()
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    raise self._timeout() from None
                if isinstance(event, TextDelta | ModelResponse):
                    if instruments and isinstance(event, ModelResponse):
                        response = event
                    yield event
                elif isinstance(event, RetryNotice):
                    yield Error(
                        event.message,
                        retryable=True,
                        retrying=True,
                        discard_partial=event.discard_partial,
                    )
        except BaseException as exc:
            if instruments:
                failure = exc
            raise
        finally:
            aclose = getattr(stream, "aclose", None)
            if aclose is not None:
                await aclose()
            if instruments:
                instruments.call(
                    "model_call_finished",
                    state.run,
                    request,
                    response,
                    failure,
                    time.perf_counter() - started,
                )

    def _account(
        self, state: _RunState, response: ModelResponse, *, turn: bool = True
    ) -> UsageUpdate:
        """Add a call's usage to the run's and the session's; ``turn=False`` for a call that
        is not one of the run's model turns (a summary), which ``max_turns`` does not count."""
        if turn:
            state.turns += 1
        usage = response.usage
        if usage.model_calls == 0:
            usage.model_calls = 1
        if usage.cost_usd == 0.0:
            if self.model.pricing is not None:
                usage.cost_usd = self.model.pricing.cost(usage)
            elif usage.total_tokens and not state.unpriced:
                budget = _cost_budget(self, state)
                if budget is not None:
                    state.unpriced = _warn_unpriced(self.model.name, budget, usage)
                    if state.unpriced:
                        state.side_events.put_nowait(_unpriced_notice(self.model.name, budget))
        state.usage.add(usage)
        state.session.usage.add(usage)
        if turn:
            self._calibrate(
                state, state.sent_chars, state.sent_estimate, usage, response.prompt_tokens
            )
        context = (
            usage.input_tokens
            + usage.cache_read_tokens
            + usage.cache_write_tokens
            + usage.output_tokens
        )
        return UsageUpdate(
            usage.input_tokens,
            usage.output_tokens,
            usage.cache_read_tokens,
            usage.cache_write_tokens,
            usage.cost_usd,
            state.usage.copy(),
            context,
            self.model.context_window,
        )

    def _record_turn(self, state: _RunState, response: ModelResponse) -> list[ToolUseBlock] | None:
        """Append the model's message; answer cut-off calls at once; return the calls to run.

        ``None`` means the model asked for no tool call: the turn is its answer.
        """
        session = state.session
        message = response.message
        session.append(message)
        calls = message.tool_uses
        state.results_index = None
        if not calls:
            session.save()
            return None
        why = CUT_TOOL_CALL if response.stop_reason == "max_tokens" else BAD_TOOL_JSON
        cut: list[ContentBlock] = [
            ToolResultBlock(c.id, why.format(name=c.name), True) for c in calls if not c.complete
        ]
        if cut:
            session.append(Message("user", cut))
            state.results_index = len(session.messages) - 1
        session.save()
        return [c for c in calls if c.complete]

    async def _run_tools(
        self, state: _RunState, calls: list[ToolUseBlock]
    ) -> AsyncGenerator[Event, None]:
        signature = [(c.name, c.input) for c in calls]
        if signature == state.last_signature:
            state.repeats += 1
        else:
            state.last_signature, state.repeats = signature, 1
        registry = state.registry
        for group in _groups(calls, registry):
            for call in group:
                yield ToolCall(call.id, call.name, call.input)
            started = time.perf_counter()
            side_events = state.side_events
            if len(group) == 1 and not state.asks and not _streams_events(registry, group[0]):
                call = group[0]
                result = await self._execute(state, call)
                while not side_events.empty():  # emitted by the tool as it ran
                    yield side_events.get_nowait()
                yield self._record_result(state, call, result, started)
                continue
            tasks: dict[asyncio.Future[dict[str, Any]], ToolUseBlock] = {
                asyncio.ensure_future(self._execute(state, call)): call for call in group
            }
            pending: set[asyncio.Future[dict[str, Any]]] = set(tasks)
            asked: asyncio.Future[Event] | None = None
            try:
                while pending:
                    waiting: set[asyncio.Future[Any]] = set(pending)
                    if asked is None:
                        asked = asyncio.ensure_future(side_events.get())
                    waiting.add(asked)
                    done, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
                    if asked in done:
                        # an approval request (the call waits until agent.approve() answers)
                        # or an event a tool emitted
                        yield asked.result()
                        asked = None
                    while not side_events.empty():
                        yield side_events.get_nowait()
                    for task in pending & done:
                        pending.discard(task)
                        yield self._record_result(state, tasks[task], task.result(), started)
            finally:
                if asked is not None:
                    asked.cancel()
                if pending:
                    for task in pending:
                        task.cancel()
                    # let cancelled tools clean up (kill their processes) before we go on
                    await asyncio.wait(pending, timeout=10)
        if self._order_results(state, calls):
            state.session.save()
        state.results_index = None
        if self.repeat_stop_after and state.repeats >= self.repeat_stop_after:
            raise _StopRun(
                "stuck_loop",
                f"the model made the same tool call {state.repeats} times in a row",
            )

    async def _execute(self, state: _RunState, call: ToolUseBlock) -> dict[str, Any]:
        token = enter_call(state.run, call)
        instruments = self.instruments
        if not instruments:
            try:
                return await self._execute_call(state, call)
            finally:
                exit_call(token)
        instruments.call("tool_call_started", state.run, call)
        started = time.perf_counter()
        result: dict[str, Any] = {"content": "the call was cancelled", "is_error": True}
        try:
            result = await self._execute_call(state, call)
            return result
        finally:
            exit_call(token)
            # stopped after its query was billed: its record says so, as a result's does
            billed = state.run.data.pop((CANCELLED_CALL_METADATA, call.id), None)
            if billed is not None:
                result = {**result, "metadata": billed}
            instruments.call(
                "tool_call_finished", state.run, call, result, time.perf_counter() - started
            )

    async def _execute_call(self, state: _RunState, call: ToolUseBlock) -> dict[str, Any]:
        registry = state.registry
        if state.deadline is None:
            return dict(
                await registry.execute(
                    call.name, call.input, call_id=call.id, approver=state.approver
                )
            )
        try:
            async with asyncio.timeout_at(state.deadline):
                return dict(
                    await registry.execute(
                        call.name, call.input, call_id=call.id, approver=state.approver
                    )
                )
        except TimeoutError:
            raise self._timeout() from None

    def _record_result(
        self, state: _RunState, call: ToolUseBlock, result: dict[str, Any], started: float
    ) -> ToolResult:
        """Add one result to the session's tool-results message and persist it at once."""
        session = state.session
        content = result.get("content", "")
        is_error = bool(result.get("is_error"))
        if self.repeat_warn_after and state.repeats >= self.repeat_warn_after:
            note = REPEAT_NOTE.format(count=state.repeats)
            if isinstance(content, str):
                content = content + note
            else:
                content = [*content, TextBlock(note.strip())]
        block = ToolResultBlock(call.id, content, is_error)
        if state.results_index is None:
            session.append(Message("user", [block]))
            state.results_index = len(session.messages) - 1
        else:
            session.messages[state.results_index].content.append(block)
            session.touch(state.results_index)
        state.usage.tool_calls += 1
        session.usage.tool_calls += 1
        if is_error:
            state.usage.tool_errors += 1
            session.usage.tool_errors += 1
        # what a warehouse billed for the call (a BigQuery query), counted in the run's and
        # the session's usage: one lookup for a result that carries no bill
        metadata = result.get("metadata")
        bill = warehouse_bill(metadata) if metadata else None
        if bill is not None:
            state.usage.add_bill(bill)
            session.usage.add_bill(bill)
        session.save()
        text = content if isinstance(content, str) else block.text
        if not isinstance(content, str) and any(isinstance(b, ImageBlock) for b in content):
            text += "\n[image]"
        duration_ms = round((time.perf_counter() - started) * 1000, 3)
        event = ToolResult(call.id, call.name, text, is_error, duration_ms)
        if bill is not None:
            event.warehouse = {**bill, **warehouse_cost(bill["bytes_billed"])}
        return event

    def _order_results(self, state: _RunState, calls: list[ToolUseBlock]) -> bool:
        """Put the results in the order of the calls (they were stored as they finished)."""
        if state.results_index is None or len(calls) < 2:
            return False
        message = state.session.messages[state.results_index]
        position = {c.id: i for i, c in enumerate(calls)}
        before = [id(b) for b in message.content]
        message.content.sort(
            key=lambda b: position.get(b.tool_use_id, -1) if isinstance(b, ToolResultBlock) else -1
        )
        if before == [id(b) for b in message.content]:
            return False
        state.session.touch(state.results_index)
        return True

    def _abandon(self, state: _RunState, why: str) -> None:
        """Leave a consistent history however the run stops (synchronous on purpose, so it
        also runs when the consumer closes the stream or its task is cancelled)."""
        session = state.session
        if session.pending_tool_uses():
            session.repair(why)
        with suppress(Exception):  # saving must not mask the reason the run stopped
            session.save()

    # --- context management -------------------------------------------------------------

    def _system_text(self, session: Session) -> str:
        text = self.system_prompt(session) if callable(self.system_prompt) else self.system_prompt
        if self.policy is not None and self.policy.delimit:
            from loopwright.policy.sanitize import DATA_INSTRUCTIONS

            text = f"{text}\n\n{DATA_INSTRUCTIONS}" if text else DATA_INSTRUCTIONS
        return text

    def _token_ratio(self, session: Session) -> _TokenRatio:
        """The session's :class:`_TokenRatio` for the agent's model, made on first use: from
        the session's metadata (a resumed session), else the latest ratio the agent learned
        for the model, else 1.0."""
        model = self.model.name
        ratio = self._ratios.get(session)
        if ratio is not None and ratio.model == model:
            return ratio
        fresh = _TokenRatio(model, output_limit=ratio.output_limit if ratio else None)
        metadata = session.metadata if isinstance(session.metadata, dict) else {}
        saved = metadata.get(TOKEN_RATIO_KEY)
        value = saved.get("ratio") if isinstance(saved, dict) else None
        if (
            isinstance(saved, dict)
            and saved.get("model") == model
            and isinstance(value, int | float)
            and not isinstance(value, bool)
            and _TokenRatio.MIN <= value <= _TokenRatio.MAX
        ):
            fresh.value, fresh.samples = float(value), 1
        elif model in self._learned:
            fresh.value = self._learned[model]  # no sample: its first count replaces it
        self._ratios[session] = fresh
        return fresh

    def _calibrate(
        self, state: _RunState, chars: int, estimate: int, usage: Usage, prompt: int | None = None
    ) -> None:
        """Teach the session's token ratio what the model counted for a prompt of ``chars``
        characters that the request estimated at ``estimate`` tokens. The prompt's tokens are
        the uncached ones and those read from or written to a prompt cache (Anthropic's and
        OpenAI's ``input_tokens`` leave the cached part out). A model that reports none (0),
        or reports the request's own estimate (a server without usage), teaches nothing.
        ``prompt``: the model's count of the prompt as sent, when ``usage`` counts another
        (:attr:`ModelResponse.prompt_tokens`: a local model that left turns out to fit)."""
        real = usage.input_tokens + usage.cache_read_tokens + usage.cache_write_tokens
        if prompt is not None:
            real = prompt
        if real == estimate:
            return
        ratio = state.ratio
        if not ratio.observe(chars, real):
            return
        self._learned[ratio.model] = ratio.value
        session = state.session
        if isinstance(session.metadata, dict):  # saved with the session's next save
            session.metadata[TOKEN_RATIO_KEY] = {
                "model": ratio.model,
                "ratio": round(ratio.value, 4),
            }
        self._apply_output_limit(state.registry, ratio)

    def _apply_output_limit(self, registry: ToolRegistry, ratio: _TokenRatio) -> None:
        """Fit the registry's cut of one tool result to the ratio (unless it was changed
        since the agent set it)."""
        limit = self._tool_output_limit(ratio.value)
        if registry.max_output_chars == ratio.output_limit:
            registry.max_output_chars = limit
            ratio.output_limit = limit

    def _recount_context(self, state: _RunState) -> None:
        """Count the whole context again (at the start of a run and after compaction)."""
        state.context_chars = sum(m.char_size() for m in self._context_messages(state))
        state.counted_upto = len(state.session.messages)

    def _context_tokens(self, state: _RunState) -> int:
        """Estimated prompt size in tokens; only messages added since the last call are
        counted, so the cost per step does not grow with the conversation."""
        messages = state.session.messages
        for index in range(state.counted_upto, len(messages)):
            state.context_chars += messages[index].char_size()
        state.counted_upto = len(messages)
        return state.ratio.tokens(state.fixed_chars + state.context_chars)

    async def _manage_context(self, state: _RunState) -> None:
        """Keep the prompt under ``context_threshold`` of the window: trim old tool outputs,
        then summarise older turns, then trim recent outputs too if it is still over."""
        window = self.model.context_window
        if not window:
            return
        limit = int(window * self.context_threshold)
        if self._context_tokens(state) <= limit:
            return
        session = state.session
        self._trim_old_tool_results(session)
        self._recount_context(state)
        if self._context_tokens(state) > limit:
            await self._summarise(state, limit)
            self._recount_context(state)
        if self._context_tokens(state) > limit:
            # the newest turns alone are over (several big results in one turn, images):
            # their outputs stay in the log and the workspace; the prompt would not fit
            self._trim_to_fit(state, limit)
            self._recount_context(state)
        session.save()

    def _tool_output_limit(self, ratio: float = 1.0) -> int:
        """Characters one tool result may take: ``max_tool_output_chars``, and no more than a
        quarter of the prompt budget (about 4 characters a token, over the session's token
        ``ratio``), so that a single result (a wide SQL preview, a long Bash output) cannot
        fill a small model's window. The registry saves the whole of a longer output to a
        file and tells the model where."""
        limit = self.max_tool_output_chars
        window = self.model.context_window
        if window:
            # budget / 4 tokens, 4 / ratio characters each
            quarter = int(window * self.context_threshold / ratio)
            limit = min(limit, max(MIN_TOOL_OUTPUT_CHARS, quarter))
        return limit

    def _trim_old_tool_results(self, session: Session) -> None:
        results = [
            block.tool_use_id
            for message in session.messages[session.context_start :]
            for block in message.content
            if isinstance(block, ToolResultBlock) and block.tool_use_id not in session.trimmed
        ]
        keep = self.keep_recent_tool_results
        old = results[:-keep] if keep else results
        session.trimmed.update(old)

    def _trim_to_fit(self, state: _RunState, limit: int) -> None:
        """Trim the outputs kept so far, oldest first, until the prompt fits ``limit``. The
        newest results (what the model is about to read) only when the prompt would be over
        the window itself with them: it could not be sent at all."""
        session = state.session
        tokens = self._context_tokens(state)
        messages = session.messages
        newest = next(
            (i + 1 for i in range(len(messages) - 1, -1, -1) if messages[i].role == "assistant"),
            0,
        )
        for index in range(session.context_start, len(messages)):
            if index >= newest and tokens <= self.model.context_window:
                return
            for block in messages[index].tool_results:
                if tokens <= limit:
                    return
                if block.tool_use_id in session.trimmed:
                    continue
                session.trimmed.add(block.tool_use_id)
                tokens -= state.ratio.tokens(_size(block) - _TRIMMED_SIZE)

    def _summary_cut(self, session: Session, limit: int, ratio: _TokenRatio) -> int | None:
        """Where the summarised part ends: the kept turns start at an assistant message and
        fit in about a third of the budget. ``None`` when there is nothing to summarise."""
        messages = session.messages
        budget = limit // 3
        kept = 0
        cut = len(messages)
        for index in range(len(messages) - 1, session.context_start, -1):
            kept += ratio.tokens(_context_size(session, messages[index]))
            if kept > budget:
                break
            if messages[index].role == "assistant":
                cut = index
        if cut >= len(messages) or cut <= session.context_start:
            # the newest turn alone is too big: summarise everything before the last reply
            cut = next(
                (
                    i
                    for i in range(len(messages) - 1, session.context_start, -1)
                    if messages[i].role == "assistant"
                ),
                len(messages),
            )
        if cut >= len(messages) or cut <= session.context_start:
            return None
        return cut

    async def _summarise(self, state: _RunState, limit: int) -> None:
        """Replace the older turns with a summary the model writes (the model is then also
        shown the list of their tool calls: :meth:`_context_messages`). When the model cannot
        write one (an error, the run's time limit, an empty reply), an outline made from the
        log takes its place: the run goes on, and the log keeps every message."""
        session = state.session
        cut = self._summary_cut(session, limit, state.ratio)
        if cut is None:
            return
        span = session.messages[session.context_start : cut]
        narrative = session.summary
        budget = state.ratio.chars(self._summary_tokens(limit))
        try:
            summary = await self._condense(state, narrative, span, limit)
            problem = "" if summary else "it wrote an empty summary"
        except TimeoutError:
            summary, problem = "", "the run's time limit was reached"
        except Exception as exc:  # a provider error: the turn must go on
            summary, problem = "", summaries.error_line(exc)
        if not summary:
            log.warning("session %s: the model could not summarise: %s", session.id, problem)
            state.side_events.put_nowait(
                Notice(
                    f"the model could not summarise the older turns ({problem}): an outline "
                    "made from the session's log takes their place in its context",
                    SUMMARY_FAILED,
                )
            )
            summary = _outline(narrative, span, problem, budget)
        session.summary = summary
        session.context_start = cut

    def _context_messages(self, state: _RunState) -> list[Message]:
        """What the model is sent: the session's context (the summary, then the turns kept,
        old outputs trimmed), with the list of the tool calls of the summarised turns after
        the summary. The list is made from the log, so the datasets, charts and files those
        turns made stay known whatever the summary kept."""
        session = state.session
        messages = session.context_messages()
        start = session.context_start
        if not start or not messages:
            return messages
        if state.calls_note is None or state.calls_note[0] != start:
            window = self.model.context_window
            budget = state.ratio.chars(self._summary_tokens(int(window * self.context_threshold)))
            note = _calls_list(session.messages[:start], min(budget, MAX_CALLS_CHARS))
            state.calls_note = (start, note)
        note = state.calls_note[1]
        if not note:
            return messages
        first = messages[0]
        if first.role != "user":
            return [Message.user(note), *messages]
        at = 1 if session.summary else 0  # after the summary's note
        messages[0] = Message("user", [*first.content[:at], TextBlock(note), *first.content[at:]])
        return messages

    def _summary_tokens(self, limit: int) -> int:
        """The most tokens a summary may take: a quarter of the prompt budget at most."""
        return max(64, min(self.max_output_tokens, SUMMARY_MAX_TOKENS, limit // 4))

    async def _condense(
        self, state: _RunState, narrative: str, span: Sequence[Message], limit: int
    ) -> str:
        """The model's summary of ``span`` after ``narrative`` (the summary so far). A span
        whose transcript is over what one request may hold is summarised in parts, each
        part's request carrying the summary so far, so no request outgrows the window."""
        ratio = state.ratio
        out_tokens = self._summary_tokens(limit)
        room = max(
            MIN_SUMMARY_ROOM, ratio.chars(limit - out_tokens - ratio.tokens(len(SUMMARY_SYSTEM)))
        )
        cap = 2_000
        lines = _transcript_lines(span, state.session.trimmed, cap)
        while sum(len(line) + 1 for line in lines) > MAX_SUMMARY_CALLS * room and cap > 200:
            cap //= 2
            lines = _transcript_lines(span, state.session.trimmed, cap)
        summary = narrative
        index = 0
        while index < len(lines):
            head = SUMMARY_PROMPT
            if summary:
                head += f"Summary so far:\n{summary}\n\n"
            space = max(room - len(head), MIN_SUMMARY_ROOM // 2)
            part: list[str] = []
            used = 0
            while index < len(lines) and (not part or used + len(lines[index]) < space):
                line = lines[index][:space]
                part.append(line)
                used += len(line) + 1
                index += 1
            transcript = head + "\n".join(part)
            chars = len(transcript) + len(SUMMARY_SYSTEM)
            request = ModelRequest(
                messages=[Message.user(transcript)],
                system=SUMMARY_SYSTEM,
                max_tokens=out_tokens,
                temperature=0.0,
                estimated_input_tokens=ratio.tokens(chars),
            )
            if state.deadline is None:
                response = await self.model.complete(request)
            else:
                async with asyncio.timeout_at(state.deadline):
                    response = await self.model.complete(request)
            self._account(state, response, turn=False)
            self._calibrate(
                state, chars, request.estimated_input_tokens, response.usage, response.prompt_tokens
            )
            summary = response.message.text.strip()
            if not summary:
                return ""
        return summary


def check_cost_budget(budget: object, name: str = "max_cost_usd") -> None:
    """``ValueError`` for a cost budget that is not ``None`` (no limit) or a number of USD,
    0 or more: a NaN stopped nothing, a negative one stopped every run before it began."""
    if budget is None:
        return
    if isinstance(budget, bool) or not isinstance(budget, int | float) or not budget >= 0:
        raise ValueError(
            f"{name} must be a number of USD, 0 or more (None: no limit), not {budget!r}"
        )


def _warn_unpriced(model: str, budget: float, usage: Usage) -> bool:
    """Log, once a run, that ``max_cost_usd`` cannot hold because the model's calls come
    with no cost and no price is known for it; whether it did (a cached answer, a local
    model or a wrapper that prices its calls itself is not such a case)."""
    from loopwright.models.pricing import cost_of, model_family

    if cost_of(model, usage).priced:
        return False
    log.warning(
        "max_cost_usd=%s cannot stop this run: %s has no known price, so its calls count as "
        "$0; set LOOPWRIGHT_PRICES (e.g. '%s=INPUT/OUTPUT' in USD per million tokens) or "
        "register_price()",
        budget,
        model,
        model_family(model),
    )
    return True


def _cost_budget(agent: Agent, state: _RunState) -> float | None:
    """The ``max_cost_usd`` a run's spending counts against: its agent's, else the nearest
    of the runs above it (a sub-agent's spending counts in its parents' budgets)."""
    if agent.max_cost_usd is not None:
        return agent.max_cost_usd
    return next(
        (r.agent.max_cost_usd for r in state.above if r.agent.max_cost_usd is not None), None
    )


def _unpriced_notice(model: str, budget: float) -> Notice:
    """What :func:`_warn_unpriced` logs, for the person running the agent."""
    from loopwright.models.pricing import model_family

    return Notice(
        f"max_cost_usd={budget:g} cannot stop this run: {model} has no known price, so its "
        f"calls count as $0; set LOOPWRIGHT_PRICES (e.g. '{model_family(model)}=INPUT/OUTPUT' "
        "in USD per million tokens) or call register_price()",
        COST_UNPRICED,
    )


def _unlisted_between(run: RunContext, above: RunContext) -> list[RunContext]:
    """The runs from ``run`` up to (not including) ``above`` that their parent does not list
    among its running children: their spending is in no :meth:`RunContext.spent` above."""
    unlisted = []
    node = run
    while node is not above and node.parent is not None:
        if node not in node.parent.children:
            unlisted.append(node)
        node = node.parent
    return unlisted


def _budgeted_above(run: RunContext) -> tuple[RunContext, ...]:
    """The runs above ``run`` whose agent has a token or cost budget, nearest first."""
    above: list[RunContext] = []
    parent = run.parent
    while parent is not None:
        agent = parent.agent
        if agent.max_tokens_budget is not None or agent.max_cost_usd is not None:
            above.append(parent)
        parent = parent.parent
    return tuple(above)


def _size(block: ToolResultBlock) -> int:
    return Message("user", [block]).char_size()


#: Characters of the note a trimmed tool output is replaced by (about: it keeps the
#: output's first line, up to ``sessions.session.TRIMMED_FIRST_LINE`` characters).
_TRIMMED_SIZE = 300


def _context_size(session: Session, message: Message) -> int:
    """``message``'s size as the model sees it: trimmed tool outputs count as their note."""
    size = message.char_size()
    for block in message.tool_results:
        if block.tool_use_id in session.trimmed:
            size -= len(block.text) - _TRIMMED_SIZE
    return size


def _transcript_lines(messages: Sequence[Message], trimmed: set[str], cap: int) -> list[str]:
    """The lines of a summary request's transcript; tool inputs and outputs cut to ``cap``
    characters (a trimmed output, which the model no longer saw, to a quarter of it)."""
    lines: list[str] = []
    for message in messages:
        for block in message.content:
            if isinstance(block, TextBlock):
                lines.append(f"{message.role.upper()}: {block.text}")
            elif isinstance(block, ToolUseBlock):
                lines.append(f"TOOL CALL {block.name} {json.dumps(block.input)[:cap]}")
            elif isinstance(block, ToolResultBlock):
                flag = " (error)" if block.is_error else ""
                limit = cap // 4 if block.tool_use_id in trimmed else cap
                lines.append(f"TOOL RESULT{flag}: {block.text[:limit]}")
    return lines


def _calls_list(messages: Sequence[Message], budget: int) -> str:
    """The tool calls of ``messages`` that did not fail, one line each (what the call was
    about and the first line of its result: the file it saved, the rows, the cohort),
    newest kept when they are over ``budget`` characters. Made from the log, not by the
    model, so the datasets and files of the condensed turns stay known."""
    results: dict[str, ToolResultBlock] = {
        block.tool_use_id: block for message in messages for block in message.tool_results
    }
    lines: list[str] = []
    for message in messages:
        for use in message.tool_uses:
            result = results.get(use.id)
            if result is None or result.is_error:
                continue
            about = summaries.key_input(use.input, 100)
            outcome = summaries.first_line(result.text, 200, count=False)
            lines.append(
                f"- {use.name} {about}: {outcome}" if about else f"- {use.name}: {outcome}"
            )
    if not lines:
        return ""
    shown: list[str] = []
    used = len(CALLS_HEADING)
    for line in reversed(lines):
        if used + len(line) + 1 > budget:
            break
        shown.append(line)
        used += len(line) + 1
    shown.reverse()
    left = len(lines) - len(shown)
    head = CALLS_HEADING if not left else f"{CALLS_HEADING} ({left:,} earlier ones not listed)"
    return "\n".join([head, *shown])


def _outline(narrative: str, span: Sequence[Message], problem: str, budget: int) -> str:
    """What replaces the model's summary when it could not write one: the summary so far,
    then the user's requests and the answers of the condensed turns, newest kept."""
    lines = [
        f"{message.role.upper()}: {summaries.shorten(message.text, 300)}"
        for message in span
        if message.text.strip()
    ]
    shown: list[str] = []
    used = 0
    for line in reversed(lines):
        if used + len(line) + 1 > budget // 2:
            break
        shown.append(line)
        used += len(line) + 1
    shown.reverse()
    parts = [f"(The model could not summarise these turns ({problem}); this is an outline.)"]
    if narrative:
        half = budget // 2
        parts.append(narrative if len(narrative) <= half else narrative[: half - 1] + "…")
    if len(shown) < len(lines):
        parts.append(f"({len(lines) - len(shown):,} earlier messages not shown)")
    parts += shown
    return "\n".join(parts)


def _streams_events(registry: ToolRegistry, call: ToolUseBlock) -> bool:
    tool = registry.tools.get(call.name)
    return bool(getattr(tool, "streams_events", False))


def _groups(calls: list[ToolUseBlock], registry: ToolRegistry) -> list[list[ToolUseBlock]]:
    """Split calls into batches: runs of concurrent calls, each sequential call alone."""
    groups: list[list[ToolUseBlock]] = []
    current: list[ToolUseBlock] = []
    for call in calls:
        if registry.is_sequential(call.name):
            if current:
                groups.append(current)
                current = []
            groups.append([call])
        else:
            current.append(call)
    if current:
        groups.append(current)
    return groups


def _user_message(prompt: Prompt) -> Message:
    if isinstance(prompt, str):
        return Message.user(prompt)
    return Message("user", list(prompt))


__all__ = ["INTERRUPTED", "Agent", "RunResult"]
