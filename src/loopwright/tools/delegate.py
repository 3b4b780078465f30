"""``Delegate``: hand a self-contained task to a sub-agent.

A sub-agent is a child :class:`~loopwright.agent.Agent` with its own system prompt, tool
subset, model and turn budget. It works in the parent's workspace (``workspace="shared"``) or
in a directory of its own inside it (``"child"``: ``subagents/<name>-<n>/``), so the parent
can read what it wrote either way. While it runs, its events stream into the parent's stream
tagged with its agent path (``agent/researcher``); its usage and cost (a warehouse's bills
too) are added to the parent run's when it ends, even when it is stopped before its end.
Until then, what it has spent so far counts against the token and cost budgets of the runs
above it, with what the sub-agents running beside it have spent: it stops at them. Its
approval requests reach the same consumer and are answered with the parent agent's
``approve()`` (they share the policy).

Example::

    agent = Agent(model, tools=[ReadTool, WriteTool, GrepTool, Delegate([
        SubAgent("researcher", "Finds facts in the workspace files and reports them.",
                 system_prompt="You research. Cite file paths.", tools=["Read", "Grep"]),
    ])])
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from contextlib import aclosing
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from loopwright.events import Done, Usage
from loopwright.run_context import current_run
from loopwright.sessions.session import Session
from loopwright.tools.base import BaseTool, ToolResult, Toolset, error, ok

if TYPE_CHECKING:
    from loopwright.agent import Agent, ToolSpec
    from loopwright.models.base import Model
    from loopwright.run_context import RunContext

_NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-")


@dataclass(frozen=True)
class SubAgent:
    """A sub-agent the model may delegate to.

    ``tools``: names of the parent's tools it may use, or tool specs of its own; ``None``
    gives it all of the parent's tools except ``Delegate`` itself. ``model``: a Model or
    model string (``None``: the parent's model).
    """

    name: str
    description: str
    system_prompt: str = ""
    tools: Sequence[str] | Sequence[ToolSpec] | None = None
    model: Model | str | None = None
    max_turns: int = 20
    max_cost_usd: float | None = None
    timeout: float | None = None
    workspace: Literal["shared", "child"] = "shared"
    #: tokens the sub-agent may use in one Delegate call (its ``max_tokens_budget``)
    max_tokens_budget: int | None = None

    def __post_init__(self) -> None:
        if not self.name or not set(self.name) <= _NAME_CHARS or len(self.name) > 64:
            raise ValueError(
                f"invalid sub-agent name {self.name!r}: use 1-64 letters, digits, '_' or '-'"
            )
        if self.workspace not in ("shared", "child"):
            raise ValueError(
                f"invalid workspace {self.workspace!r} for sub-agent {self.name!r}: "
                "use 'shared' (the parent's workspace) or 'child' (a directory inside it)"
            )
        if self.max_turns < 1:
            raise ValueError(f"sub-agent {self.name!r}: max_turns must be at least 1")
        from loopwright.agent import check_cost_budget

        check_cost_budget(self.max_cost_usd, f"sub-agent {self.name!r}: max_cost_usd")
        budget = self.max_tokens_budget
        if budget is not None and (
            isinstance(budget, bool) or not isinstance(budget, int) or budget < 1
        ):
            raise ValueError(
                f"sub-agent {self.name!r}: max_tokens_budget must be a whole number of tokens, "
                f"1 or more (or None for no budget), got {budget!r}"
            )


class Delegate(Toolset):
    """The ``Delegate`` tool, configured with the sub-agents it may start.

    ``allow_custom=True`` also lets the model describe a one-off sub-agent itself (its system
    prompt, a subset of the parent's tools and a turn budget). ``max_depth`` bounds nesting
    (a sub-agent whose tools include ``Delegate`` can delegate further, up to that depth).
    """

    def __init__(
        self,
        agents: Sequence[SubAgent] = (),
        *,
        allow_custom: bool = False,
        max_depth: int = 2,
        custom_max_turns: int = 20,
    ) -> None:
        if not agents and not allow_custom:
            raise ValueError(
                "Delegate needs at least one SubAgent, or allow_custom=True to let the model "
                "describe its own sub-agents"
            )
        names = [a.name for a in agents]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"two sub-agents share the name {duplicates[0]!r}; rename one")
        self.agents = {a.name: a for a in agents}
        self.allow_custom = allow_custom
        self.max_depth = max_depth
        self.custom_max_turns = custom_max_turns
        self._counter = itertools.count(1)

    def bind(self, workspace_dir: str, session_id: str | None = None) -> list[BaseTool]:
        return [DelegateTool(workspace_dir, self)]


class DelegateTool(BaseTool):
    """One session's ``Delegate`` tool (made by :class:`Delegate`)."""

    streams_events = True
    #: a sub-agent's run is bounded by its own limits, not the per-call tool timeout
    timeout = 24 * 3600.0

    def __init__(self, workspace_dir: str, config: Delegate) -> None:
        super().__init__(workspace_dir)
        self.config = config

    @property
    def name(self) -> str:
        return "Delegate"

    @property
    def schema(self) -> dict[str, Any]:
        config = self.config
        properties: dict[str, Any] = {
            "task": {
                "type": "string",
                "description": "The complete, self-contained task: the sub-agent sees nothing "
                "of this conversation but what you write here and in context.",
            },
            "context": {
                "type": "string",
                "description": "Facts, file paths and constraints the sub-agent needs.",
            },
        }
        required = ["task"]
        lines = [
            "Hand a self-contained task to a sub-agent, which works on it with its own tools "
            "and returns its final answer. Use it for separable work (research, a review, a "
            "side task) to keep this conversation focused."
        ]
        if config.agents:
            properties["agent"] = {
                "type": "string",
                "enum": sorted(config.agents),
                "description": "Which sub-agent to use.",
            }
            lines.append("Sub-agents:")
            lines += [f"- {a.name}: {a.description}" for a in config.agents.values()]
            if not config.allow_custom:
                required.insert(0, "agent")
        if config.allow_custom:
            properties["system_prompt"] = {
                "type": "string",
                "description": "For a one-off sub-agent (no 'agent'): its role and rules.",
            }
            properties["tools"] = {
                "type": "array",
                "items": {"type": "string"},
                "description": "For a one-off sub-agent: names of your tools it may use "
                "(default: all but Delegate).",
            }
            properties["max_turns"] = {
                "type": "integer",
                "minimum": 1,
                "maximum": config.custom_max_turns,
                "description": "For a one-off sub-agent: its budget of model turns.",
            }
        return {
            "name": self.name,
            "description": "\n".join(lines),
            "input_schema": {
                "type": "object",
                "properties": properties,
                "required": required,
                "additionalProperties": False,
            },
        }

    async def execute(self, input: dict[str, Any]) -> ToolResult:
        run = current_run()
        if run is None:
            return error("Delegate runs only inside an agent run (it starts a child agent)")
        if run.depth + 1 > self.config.max_depth:
            return error(
                f"sub-agents may nest {self.config.max_depth} deep and this one is at depth "
                f"{run.depth}; do this task yourself"
            )
        try:
            spec = self._spec(input)
            child, session = self._child(run, spec)
        except ValueError as exc:
            return error(str(exc))
        task = input["task"]
        if input.get("context"):
            task += f"\n\nContext from the agent that delegated this task:\n{input['context']}"
        path = f"{run.path}/{spec.name}"
        done: Done | None = None
        first_new = len(session.messages)
        child_run, child_events = child._start_run(task, session)
        run.start_child(child_run)
        try:
            async with aclosing(child_events) as events:
                async for event in events:
                    if isinstance(event, Done):
                        done = event
                        continue
                    if event.agent is None:
                        event.agent = path
                    run.emit(event)
        finally:
            # what the child spent, once, however its run ended: at its done, or where it
            # was stopped (cancelled with the parent, the call timed out) or raised
            run.end_child(child_run)
            await child.close_session(session)
        assert done is not None
        answer = next(
            (
                m.text
                for m in reversed(session.messages[first_new:])
                if m.role == "assistant" and m.text
            ),
            "",
        )
        usage = done.usage
        footer = (
            f"[sub-agent {path}: {usage.model_calls} model calls, {usage.tool_calls} tool "
            f"calls, ${usage.cost_usd:.4f}{_billed(usage)}, stopped: {done.stop_reason}"
            + (f" ({done.detail})" if done.detail else "")
            + f"; session {session.id}]"
        )
        text = f"{answer or '(the sub-agent gave no answer)'}\n\n{footer}"
        metadata = {"session_id": session.id, "stop_reason": done.stop_reason}
        if done.stop_reason == "error":
            return error(text, metadata=metadata)
        return ok(text, metadata=metadata)

    def _spec(self, input: dict[str, Any]) -> SubAgent:
        config = self.config
        name = input.get("agent")
        if name is not None:
            spec = config.agents.get(name)
            if spec is None:
                raise ValueError(
                    f"no sub-agent named {name!r}; choose one of {', '.join(sorted(config.agents))}"
                )
            return spec
        if not config.allow_custom:
            raise ValueError(f"say which sub-agent: one of {', '.join(sorted(config.agents))}")
        tools = input.get("tools")
        return SubAgent(
            "custom",
            "a one-off sub-agent",
            system_prompt=input.get("system_prompt", ""),
            tools=list(tools) if tools is not None else None,
            max_turns=int(input.get("max_turns", config.custom_max_turns)),
        )

    def _child(self, run: RunContext, spec: SubAgent) -> tuple[Agent, Session]:
        from loopwright.agent import Agent

        parent: Agent = run.agent
        own = [t for t in parent.tools if t is not self.config]
        allowed: list[str] | None = None
        tools: Sequence[ToolSpec]
        if spec.tools is None:
            tools = own
        elif all(isinstance(t, str) for t in spec.tools):
            tools, allowed = own, [str(t) for t in spec.tools]
            if "Delegate" in allowed:
                tools = list(parent.tools)
        else:
            tools = spec.tools  # type: ignore[assignment]
        number = next(self.config._counter)
        workspace = Path(run.session.workspace_dir)
        if spec.workspace == "child":
            workspace = workspace / "subagents" / f"{spec.name}-{number}"
            workspace.mkdir(parents=True, exist_ok=True)
        child = Agent(
            spec.model if spec.model is not None else parent.model,
            system_prompt=spec.system_prompt,
            tools=tools,
            allowed_tools=allowed,
            name=spec.name,
            max_turns=spec.max_turns,
            max_cost_usd=spec.max_cost_usd,
            max_tokens_budget=spec.max_tokens_budget,
            timeout=spec.timeout,
            max_output_tokens=parent.max_output_tokens,
            temperature=parent.temperature,
            tool_timeout=parent.tool_timeout,
            store=parent.store,
            policy=parent.policy,
            instruments=parent.instruments.items,
        )
        store = parent.store
        session_id = f"{run.session.id}.{spec.name}-{number}"
        while store.exists(session_id):
            session_id = f"{run.session.id}.{spec.name}-{next(self.config._counter)}"
        session = Session(
            session_id,
            workspace,
            store=store,
            metadata={"parent_session": run.session.id, "agent": f"{run.path}/{spec.name}"},
        )
        child.registry_for(session)  # raises ValueError for unknown tool names, before running
        session.save()
        return child, session


def _billed(usage: Usage) -> str:
    """``, BigQuery 1 TiB billed (1 query) ≈ $6.2500`` when a warehouse billed the sub-agent's
    queries (its cost is apart from the model's, before it); empty otherwise."""
    warehouse = usage.warehouse
    if warehouse is None or not warehouse.queries:
        return ""
    from loopwright.observability.reports import warehouse_summary

    try:
        return f", {warehouse_summary(warehouse)}"
    except ValueError:  # an unusable price setting: say what was billed, without a cost
        return f", {warehouse.database} {warehouse.bytes_billed:,} bytes billed"
