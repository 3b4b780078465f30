"""What a sub-agent spent counts in its parent's run once, however the sub-agent's run ends.

A sub-agent stopped before its end (the parent run is cancelled or times out, the Delegate
call times out) never reaches its ``done``: what it spent until then (tokens, cost, a
warehouse's bills) still counts in the parent run's usage, the parent session's usage and
the parent's limits. Real agents on the scripted model; the sub-agent's second tool call
blocks until it is stopped.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from loopwright import Agent, Instrument, MemoryStore, Usage, call, tool
from loopwright.events import Done, Event
from loopwright.models.base import ModelError, Pricing
from loopwright.models.scripted import ScriptedModel, ScriptedTurn
from loopwright.observability.stats import WAREHOUSE_PRICE_ENV
from loopwright.run_context import RunContext
from loopwright.sessions.sqlite import SQLiteStore
from loopwright.sessions.store import SessionStore
from loopwright.tools.base import ToolResult, ok
from loopwright.tools.delegate import Delegate, SubAgent

TIB = 1024**4
#: $3 / $15 per million tokens: a turn of 10k tokens in and 1k out costs $0.045
PRICE = Pricing(3.0, 15.0)
TURN = Usage(input_tokens=10_000, output_tokens=1_000)


def turn(spec: Any) -> ScriptedTurn:
    """A priced scripted turn: a tool call or an answer, 10k tokens in and 1k out."""
    if isinstance(spec, str):
        return ScriptedTurn(text=spec, usage=TURN.copy())
    return ScriptedTurn(tool_calls=[spec], usage=TURN.copy())


class Blocker:
    """A ``bill`` tool (a query BigQuery billed a TiB for) and a ``block`` tool that never
    returns: it says when it started and when it was cancelled."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.cancelled = False

    def tools(self) -> list[Any]:
        @tool
        async def bill() -> ToolResult:
            """Run a query the warehouse bills."""
            return ok("42 rows", metadata={"database": "BigQuery", "bytes_billed": TIB})

        @tool
        async def block() -> str:
            """Wait forever."""
            self.started.set()
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:
                self.cancelled = True
                raise
            return "unreachable"

        return [bill, block]


class Finished(Instrument):
    """The ``done`` each run ended with (also a cancelled run's), by agent path."""

    def __init__(self) -> None:
        self.done: dict[str, Done] = {}

    def run_finished(self, run: RunContext, done: Done) -> None:
        self.done[run.path] = done


def agents(
    tmp_path: Path,
    blocker: Blocker,
    parent_turns: list[Any],
    *,
    store: SessionStore | None = None,
    **limits: Any,
) -> tuple[Agent, Finished]:
    child_model = ScriptedModel(
        [turn(call("bill")), turn(call("block")), turn("never reached")], pricing=PRICE
    )
    worker = SubAgent("worker", "Works.", tools=blocker.tools(), model=child_model)
    finished = Finished()
    agent = Agent(
        ScriptedModel([turn(t) for t in parent_turns], pricing=PRICE),
        tools=[Delegate([worker])],
        store=store or MemoryStore(),
        workspace_root=str(tmp_path / "ws"),
        instruments=[finished],
        **limits,
    )
    return agent, finished


def assert_counts_the_child(usage: Usage, parent_turns: int) -> None:
    """``usage`` holds the parent's turns and the child's two turns and its billed query."""
    assert usage.model_calls == parent_turns + 2
    assert usage.cost_usd == pytest.approx(0.045 * (parent_turns + 2))
    assert usage.warehouse is not None
    assert usage.warehouse.bytes_billed == TIB
    assert usage.warehouse.queries == 1


async def test_a_sub_agent_cancelled_with_its_parent_still_counts(tmp_path: Path) -> None:
    blocker = Blocker()
    store_path = tmp_path / "sessions.db"
    agent, finished = agents(
        tmp_path,
        blocker,
        [call("Delegate", agent="worker", task="query")],
        store=SQLiteStore(store_path),
    )
    session = agent.new_session("lead")
    seen: list[Event] = []

    async def consume() -> None:
        async for event in agent.run("go", session):
            seen.append(event)

    task = asyncio.create_task(consume())
    await asyncio.wait_for(blocker.started.wait(), 30)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert blocker.cancelled
    assert not any(isinstance(e, Done) for e in seen)
    # the parent's run ended "cancelled" with the child's spending in its usage
    assert finished.done["agent"].stop_reason == "cancelled"
    assert finished.done["agent/worker"].stop_reason == "cancelled"
    assert_counts_the_child(finished.done["agent"].usage, 1)
    # and the parent's session kept it (read back from the database)
    saved = SQLiteStore(store_path).load("lead")
    assert saved is not None
    assert_counts_the_child(saved.usage, 1)
    child = SQLiteStore(store_path).load("lead.worker-1")
    assert child is not None
    assert child.usage.model_calls == 2
    assert session.pending_tool_uses() == []


async def test_a_sub_agent_stopped_by_the_parents_timeout_counts_in_its_done(
    tmp_path: Path,
) -> None:
    blocker = Blocker()
    agent, finished = agents(
        tmp_path, blocker, [call("Delegate", agent="worker", task="query")], timeout=1.0
    )
    session = agent.new_session("lead")
    result = await agent.collect("go", session)
    assert blocker.started.is_set()
    assert blocker.cancelled
    assert result.stop_reason == "timeout"
    assert finished.done["agent/worker"].stop_reason == "cancelled"
    assert_counts_the_child(result.usage, 1)
    assert_counts_the_child(session.usage, 1)
    assert session.pending_tool_uses() == []


async def test_a_timed_out_delegate_call_counts_against_the_parents_cost_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the child's query billed a TiB ($6.25 at the default price): $6.34 spent with the
    # parent's turn and the child's first, under the $6.35 budget, so the child goes on;
    # its second turn ($0.045) is not counted until the Delegate call times out, and the
    # parent's next step is over the budget and stops
    monkeypatch.delenv(WAREHOUSE_PRICE_ENV, raising=False)
    blocker = Blocker()
    agent, _ = agents(
        tmp_path,
        blocker,
        [call("Delegate", agent="worker", task="query"), "answered anyway"],
        max_cost_usd=6.35,
    )
    session = agent.new_session("lead")
    agent.registry_for(session).tools["Delegate"].timeout = 1.0
    result = await agent.collect("go", session)
    assert blocker.started.is_set()
    assert blocker.cancelled
    delegate_result = next(e for e in result.events if e.type == "tool_result" and not e.agent)
    assert delegate_result.is_error
    assert result.stop_reason == "cost_budget"
    assert result.usage.model_calls == 3  # the parent's answering turn never ran
    assert_counts_the_child(result.usage, 1)
    assert result.events[-1].detail.endswith("(model $0.1350, warehouse $6.2500)")


async def test_a_sub_agent_that_fails_counts_once(tmp_path: Path) -> None:
    # the child spends a turn and a query, then its model fails: its run ends with a done
    # ("error"), which must not be counted on top of what it had spent
    child_model = ScriptedModel(
        [turn(call("bill")), ScriptedTurn(error=ModelError("overloaded", retryable=False))],
        pricing=PRICE,
    )
    worker = SubAgent("worker", "Works.", tools=Blocker().tools(), model=child_model)
    agent = Agent(
        ScriptedModel(
            [turn(call("Delegate", agent="worker", task="query")), turn("done")], pricing=PRICE
        ),
        tools=[Delegate([worker])],
        store=MemoryStore(),
        workspace_root=str(tmp_path / "ws"),
    )
    session = agent.new_session("lead")
    result = await agent.collect("go", session)
    assert result.stop_reason == "end_turn"
    delegate_result = next(e for e in result.events if e.type == "tool_result" and not e.agent)
    assert delegate_result.is_error
    assert "stopped: error" in delegate_result.content
    for usage in (result.usage, session.usage):
        assert usage.model_calls == 3
        assert usage.cost_usd == pytest.approx(0.045 * 3)
        assert usage.tool_calls == 2  # the parent's Delegate, the child's query
        assert usage.warehouse is not None
        assert usage.warehouse.bytes_billed == TIB


async def footer_of_a_billed_sub_agent(tmp_path: Path) -> str:
    """The Delegate result of a sub-agent that ran one query BigQuery billed a TiB for."""
    child_model = ScriptedModel([turn(call("bill")), turn("42 rows.")], pricing=PRICE)
    worker = SubAgent("worker", "Works.", tools=Blocker().tools(), model=child_model)
    agent = Agent(
        ScriptedModel(
            [turn(call("Delegate", agent="worker", task="query")), turn("done")], pricing=PRICE
        ),
        tools=[Delegate([worker])],
        store=MemoryStore(),
        workspace_root=str(tmp_path / "ws"),
    )
    result = await agent.collect("go", agent.new_session("lead"))
    return str(next(e for e in result.events if e.type == "tool_result" and not e.agent).content)


async def test_the_result_footer_names_what_the_warehouse_billed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the footer's $ is the model's cost; a sub-agent's TiB scan must not hide behind it
    monkeypatch.delenv(WAREHOUSE_PRICE_ENV, raising=False)
    footer = await footer_of_a_billed_sub_agent(tmp_path)
    assert "$0.0900, BigQuery 1 TB billed (1 query) ≈ $6.2500, stopped: end_turn" in footer
    # a price setting that is not a number: what was billed, without a cost
    monkeypatch.setenv(WAREHOUSE_PRICE_ENV, "cheap")
    footer = await footer_of_a_billed_sub_agent(tmp_path)
    assert f"$0.0900, BigQuery {TIB:,} bytes billed, stopped: end_turn" in footer
