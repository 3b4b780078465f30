"""What a tool call can know about the run it belongs to.

While a tool runs, :func:`current_run` returns the :class:`RunContext` of the agent run that
called it (and :func:`current_call` the call itself). Tools that need more than their input use
it: a sub-agent (``Delegate``) streams its events into the parent's stream with
:meth:`RunContext.emit` and is counted in the parent's spending from
:meth:`RunContext.start_child` to :meth:`RunContext.end_child`; ``Consult`` reads
the conversation; a nested run finds its parent for tracing.

A tool that emits events while it runs sets ``streams_events = True`` on its class, so the loop
forwards them as they come; events emitted by other tools are delivered when the call ends.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from loopwright.events import Event, Usage

#: Where a tool call cancelled with its run leaves, in ``RunContext.data`` under
#: ``(CANCELLED_CALL_METADATA, call id)``, the metadata of the stand-in result (``the call was
#: cancelled``) its agent's instruments get: what a warehouse billed for its query
#: (:func:`loopwright.sql.base.count_cancelled_bill`), for the run's records.
CANCELLED_CALL_METADATA = "cancelled_call_metadata"

if TYPE_CHECKING:
    from loopwright.agent import Agent
    from loopwright.messages import ToolUseBlock
    from loopwright.sessions.session import Session


@dataclass(slots=True, eq=False)
class RunContext:
    """One ``Agent.run``: its agent, session, usage so far and place in the agent tree.

    ``path`` names the agent within the tree of runs (``"agent"``, ``"agent/researcher"``);
    ``parent`` is the run whose tool call started this one (``parent_call`` is that call).
    ``data`` is scratch space for instruments (keyed by the instrument), e.g. open spans.
    """

    agent: Agent
    session: Session
    usage: Usage
    path: str
    parent: RunContext | None = None
    parent_call: ToolUseBlock | None = None
    #: unique across processes (logs of several workers meet in one pipeline)
    id: str = field(default_factory=lambda: f"run-{uuid.uuid4().hex[:12]}")
    data: dict[Any, Any] = field(default_factory=dict)
    #: runs of sub-agents this run's tool calls started, still going (:meth:`start_child`)
    children: list[RunContext] = field(default_factory=list)
    _sink: Callable[[Event], None] | None = None

    @property
    def depth(self) -> int:
        """0 for a top-level run, 1 for a sub-agent's run, and so on."""
        return 0 if self.parent is None else self.parent.depth + 1

    def emit(self, event: Event) -> None:
        """Put an event into this run's stream (between the events of its own steps)."""
        if self._sink is not None:
            self._sink(event)

    def add_usage(self, usage: Usage) -> None:
        """Count work done on this run's behalf (a sub-agent, a second model) in its usage,
        its session's usage and its limits."""
        self.usage.add(usage)
        self.session.usage.add(usage)

    def start_child(self, child: RunContext) -> None:
        """Count a sub-agent's run, which one of this run's tool calls starts, in what this
        run has :meth:`spent` while it runs, until :meth:`end_child`."""
        self.children.append(child)

    def end_child(self, child: RunContext) -> None:
        """Add what a sub-agent's run spent to this run's usage, however it ended: from now
        on it counts there instead of as a running child's (never both, never neither)."""
        self.children.remove(child)
        self.add_usage(child.usage)

    def spent(self) -> Usage:
        """This run's usage with what its running sub-agents (and theirs) have spent so far,
        which reaches it only when each ends: what counts against this run's budgets."""
        spent = self.usage.copy()
        for child in self.children:
            spent.add(child.spent())
        return spent


@dataclass(frozen=True, slots=True)
class CallScope:
    """The tool call running in the current task, and its run."""

    run: RunContext
    call: ToolUseBlock


_current: ContextVar[CallScope | None] = ContextVar("loopwright_tool_call", default=None)


def current_call() -> CallScope | None:
    """The tool call this code runs inside (``None`` outside tool execution)."""
    return _current.get()


def current_run() -> RunContext | None:
    """The run whose tool call this code runs inside (``None`` outside tool execution)."""
    scope = _current.get()
    return scope.run if scope is not None else None


def enter_call(run: RunContext, call: ToolUseBlock) -> object:
    """Mark the current task as running ``call`` (returns a token for :func:`exit_call`)."""
    return _current.set(CallScope(run, call))


def exit_call(token: object) -> None:
    _current.reset(token)  # type: ignore[arg-type]
