"""Instruments: code that watches runs without being part of them (logs, traces, evaluations).

An :class:`Instrument` gets a call at each step of a run: the run starting and ending, each
model call, each tool call and each event. Every method has a do-nothing default, so an
instrument implements only what it needs. An instrument must never break a run: anything it
raises is logged (``loopwright.instrument`` logger) and the run goes on.

An agent's instruments are ``Agent(instruments=[...])``; when not given, they come from the
environment (:func:`default_instruments`: ``DEBUG=1``, ``LOOPWRIGHT_LOG=json``,
``OTEL_EXPORTER_OTLP_*`` / ``LANGFUSE_*``, ``EVALS_ENABLED=1``). With none, the loop does no
instrumentation work at all.

Runs nest: a sub-agent's :class:`~loopwright.run_context.RunContext` has ``parent`` (the
run whose tool call started it) and ``parent_call``, so a tracer can hang the child's spans
under the parent's tool span.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from loopwright.events import Done, Event
    from loopwright.messages import ToolUseBlock
    from loopwright.models.base import ModelRequest, ModelResponse
    from loopwright.run_context import RunContext

log = logging.getLogger("loopwright.instrument")


class Instrument:
    """Watches runs. Override the steps you need; the defaults do nothing."""

    def run_started(self, run: RunContext) -> None:
        """A run began. Its prompt is not in the session yet: the first model call's request
        ends with it."""

    def run_finished(self, run: RunContext, done: Done) -> None:
        """A run ended with ``done`` (also when cancelled: ``stop_reason == "cancelled"``)."""

    def model_call_started(self, run: RunContext, request: ModelRequest) -> None:
        """The loop is about to call the model."""

    def model_call_finished(
        self,
        run: RunContext,
        request: ModelRequest,
        response: ModelResponse | None,
        error: BaseException | None,
        duration_s: float,
    ) -> None:
        """A model call ended: ``response`` when it answered, else ``error``."""

    def tool_call_started(self, run: RunContext, call: ToolUseBlock) -> None:
        """A tool call is about to run (in the task that runs it)."""

    def tool_call_finished(
        self, run: RunContext, call: ToolUseBlock, result: dict[str, Any], duration_s: float
    ) -> None:
        """A tool call ended with ``result`` (``{"content", "is_error", ...}``)."""

    async def aclose(self) -> None:
        """Finish pending work (flush exports, wait for evaluations) when the agent closes."""

    def event(self, run: RunContext, event: Event) -> None:
        """The run yielded ``event`` to its consumer."""


def call_cancelled() -> bool:
    """Whether the tool call whose ``tool_call_finished`` hook runs now was stopped rather
    than ended: its task is being cancelled (the run was interrupted or its consumer went
    away). The hook then gets the stand-in result ``the call was cancelled``, which is no
    failure of the tool's."""
    import asyncio

    try:
        task = asyncio.current_task()
    except RuntimeError:  # no event loop: a hook called from plain code
        return False
    return task is not None and task.cancelling() > 0


_HOOKS = (
    "run_started",
    "run_finished",
    "model_call_started",
    "model_call_finished",
    "tool_call_started",
    "tool_call_finished",
    "event",
)


class Instruments:
    """Several instruments called as one; each call is guarded so none can break the run.

    Each hook is bound once, for the instruments whose class overrides it (the defaults do
    nothing), so a step pays only for the hooks that do something."""

    __slots__ = ("_hooks", "items")

    def __init__(self, items: Sequence[Instrument]) -> None:
        self.items = tuple(items)
        self._hooks: dict[str, tuple[tuple[Instrument, Callable[..., Any]], ...]] = {
            name: tuple(
                (item, getattr(item, name))
                for item in self.items
                if hasattr(item, name)
                and getattr(type(item), name, None) is not getattr(Instrument, name)
            )
            for name in _HOOKS
        }

    def __bool__(self) -> bool:
        return bool(self.items)

    def call(self, method: str, *args: Any) -> None:
        for item, hook in self._hooks[method]:
            try:
                hook(*args)
            except Exception:
                log.exception("instrument %s failed in %s", type(item).__name__, method)

    async def aclose(self) -> None:
        for item in self.items:
            try:
                await item.aclose()
            except Exception:
                log.exception("instrument %s failed to close", type(item).__name__)


#: Built-in instruments the environment can switch on: (variables that switch it on,
#: "module:factory"). The module is imported only when one of its variables is set, and its
#: factory returns the instrument (or ``None`` when the settings say off).
BUILTIN: list[tuple[tuple[str, ...], str]] = [
    (("EVALS_ENABLED",), "loopwright.evals.runner:instrument_from_env"),
    (("DEBUG", "LOOPWRIGHT_LOG"), "loopwright.observability.logs:instrument_from_env"),
    (("LOOPWRIGHT_STATS",), "loopwright.observability.stats:instrument_from_env"),
    (
        (
            "OTEL_EXPORTER_OTLP_ENDPOINT",
            "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
            "LANGFUSE_PUBLIC_KEY",
        ),
        "loopwright.observability.tracing:instrument_from_env",
    ),
]

#: More factories consulted by :func:`default_instruments` (yours: return ``None`` for off).
ENV_FACTORIES: list[Callable[[], Instrument | None]] = []


def default_instruments() -> list[Instrument]:
    """The instruments the environment asks for (none unless configured)."""
    import importlib
    import os

    found: list[Instrument] = []
    factories: list[Callable[[], Instrument | None]] = []
    for variables, target in BUILTIN:
        if any(os.environ.get(name) for name in variables):
            module, _, name = target.partition(":")
            factories.append(getattr(importlib.import_module(module), name))
    for factory in [*factories, *ENV_FACTORIES]:
        instrument = factory()
        if instrument is not None:
            found.append(instrument)
    return found
