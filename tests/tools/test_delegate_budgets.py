"""A parent's budgets hold while its sub-agents run.

What a sub-agent spends reaches its parent's usage when its Delegate call ends; until then
each of its steps counts it against the budgets of the runs above it: the token budget as the
cost budget, and with what the sub-agents running beside it (the model delegated twice in one
turn) and below it have spent so far. Real agents on the scripted model; each turn is 10k
tokens in and 1k out, $0.045.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from loopwright import Agent, Instrument, MemoryStore, Usage, call, tool
from loopwright.events import Done
from loopwright.models.base import ModelRequest
from loopwright.models.scripted import ScriptedModel, ScriptedTurn
from loopwright.run_context import RunContext
from loopwright.tools.delegate import Delegate, SubAgent

from .test_delegate_spending import PRICE, TURN, turn

TURN_TOKENS = 11_000


class Finished(Instrument):
    """The ``done`` each run ended with, by agent path; ``then`` is called with the path."""

    def __init__(self, then: Callable[[str], None] = lambda path: None) -> None:
        self.done: dict[str, Done] = {}
        self.then = then

    def run_finished(self, run: RunContext, done: Done) -> None:
        self.done[run.path] = done
        self.then(run.path)


@tool
async def work(step: int) -> str:
    """Do one step of work."""
    return f"step {step} done"


def working(request: ModelRequest) -> ScriptedTurn:
    """A sub-agent that works on, one different step a turn, until a limit stops it."""
    return turn(call("work", step=len(request.messages)))


def parent(
    tmp_path: Path, delegate: Delegate, turns: list[Any], finished: Finished, **limits: Any
) -> Agent:
    return Agent(
        ScriptedModel(
            [t if isinstance(t, ScriptedTurn) else turn(t) for t in turns], pricing=PRICE
        ),
        tools=[delegate],
        store=MemoryStore(),
        workspace_root=str(tmp_path / "ws"),
        instruments=[finished],
        **limits,
    )


def assert_sum(total: Usage, *parts: Usage) -> None:
    """``total`` is exactly the sum of ``parts``: nothing counted twice, nothing missed."""
    expected = Usage()
    for part in parts:
        expected.add(part)
    assert total.to_dict() == expected.to_dict()


async def test_a_sub_agent_stops_at_its_parents_token_budget(tmp_path: Path) -> None:
    # the parent's turn and the child's first two: 33,000 tokens, over the 30,000 budget
    # at the child's third step (it would work 20 turns, 231,000 tokens with the parent's)
    worker = SubAgent("worker", "Works.", tools=[work], model=ScriptedModel(working))
    finished = Finished()
    agent = parent(
        tmp_path,
        Delegate([worker]),
        [call("Delegate", agent="worker", task="work"), "answered"],
        finished,
        max_tokens_budget=30_000,
    )
    session = agent.new_session("lead")
    result = await agent.collect("go", session)
    child = finished.done["agent/worker"]
    assert child.stop_reason == "token_budget"
    assert child.detail == "used 33,000 tokens of agent's 30,000 budget"
    assert child.usage.model_calls == 2
    delegated = next(e for e in result.events if e.type == "tool_result" and not e.agent)
    assert "stopped: token_budget (used 33,000 tokens of agent's 30,000 budget)" in (
        delegated.content
    )
    assert result.stop_reason == "token_budget"
    assert result.events[-1].detail == "used 33,000 tokens of a 30,000 budget"
    assert result.usage.total_tokens == 3 * TURN_TOKENS
    assert_sum(result.usage, finished.done["agent"].usage)
    assert_sum(session.usage, result.usage)


@pytest.mark.parametrize(
    ("limit", "reason", "detail"),
    [
        (
            {"max_tokens_budget": 50_000},
            "token_budget",
            "used 55,000 tokens of agent's 50,000 budget",
        ),
        ({"max_cost_usd": 0.2}, "cost_budget", "spent $0.2250 of agent's $0.2000 budget"),
    ],
)
async def test_sub_agents_running_side_by_side_share_their_parents_budget(
    tmp_path: Path, limit: dict[str, Any], reason: str, detail: str
) -> None:
    """The model delegates twice in one turn. ``spender`` spends three turns (33,000 tokens,
    $0.135) and waits, still running, until ``second`` has ended; ``second`` starts working
    once ``spender`` waits. With the parent's turn, ``second``'s first turn takes the two
    over the budget: it stops there, and ``spender`` at its next step. Each counting only its
    own spending, ``second`` went on to 4 turns ($0.2250 with the parent's), and ``spender``
    with it, twice the parent's budget between them."""
    held, released = asyncio.Event(), asyncio.Event()

    @tool
    async def hold() -> str:
        """Wait for the other sub-agent."""
        held.set()
        await released.wait()
        return "the other one is done"

    async def after_held(request: ModelRequest) -> ScriptedTurn:
        await held.wait()
        return working(request)

    spender_model = ScriptedModel(
        [turn(call("work", step=1)), turn(call("work", step=2)), turn(call("hold"))]
        + [turn(call("work", step=n)) for n in range(3, 20)],
        pricing=PRICE,
    )
    spender = SubAgent("spender", "Spends.", tools=[work, hold], model=spender_model)
    second = SubAgent(
        "second", "Spends too.", tools=[work], model=ScriptedModel(after_held, pricing=PRICE)
    )
    finished = Finished(lambda path: released.set() if path == "agent/second" else None)
    agent = parent(
        tmp_path,
        Delegate([spender, second]),
        [
            ScriptedTurn(
                tool_calls=[
                    call("Delegate", agent="spender", task="spend"),
                    call("Delegate", agent="second", task="spend too"),
                ],
                usage=TURN.copy(),
            ),
            "answered",
        ],
        finished,
        **limit,
    )
    session = agent.new_session("lead")
    result = await agent.collect("go", session)
    for path, turns in (("agent/second", 1), ("agent/spender", 3)):
        done = finished.done[path]
        assert (done.stop_reason, done.detail) == (reason, detail)
        assert done.usage.model_calls == turns
    assert result.stop_reason == reason
    assert result.usage.model_calls == 5
    assert result.usage.cost_usd == pytest.approx(5 * 0.045)
    # each child's spending counted once in the parent's: at its end, never live as well
    own = Usage(input_tokens=10_000, output_tokens=1_000, cost_usd=0.045, model_calls=1)
    own.tool_calls = 2  # the two Delegate calls
    assert_sum(
        result.usage, own, finished.done["agent/spender"].usage, finished.done["agent/second"].usage
    )
    assert_sum(session.usage, result.usage)


async def test_a_sub_agent_that_ended_counts_once_for_the_one_still_running(
    tmp_path: Path,
) -> None:
    """``spender`` spends two turns and waits until ``second`` has ended after two turns of
    its own: 55,000 tokens with the parent's, under the 60,000 budget. ``second``'s spending
    is now in the parent's usage and no longer a running child's: ``spender`` works one more
    turn and stops at 66,000 (counted twice, ``second`` would have stopped it at once)."""
    held, released = asyncio.Event(), asyncio.Event()

    @tool
    async def hold() -> str:
        """Wait for the other sub-agent."""
        held.set()
        await released.wait()
        return "the other one is done"

    async def after_held(request: ModelRequest) -> ScriptedTurn:
        await held.wait()
        return working(request) if len(request.messages) == 1 else turn("worked")

    spender_model = ScriptedModel(
        [turn(call("work", step=1)), turn(call("hold"))]
        + [turn(call("work", step=n)) for n in range(2, 20)]
    )
    spender = SubAgent("spender", "Spends.", tools=[work, hold], model=spender_model)
    second = SubAgent("second", "Spends too.", tools=[work], model=ScriptedModel(after_held))
    finished = Finished(lambda path: released.set() if path == "agent/second" else None)
    both = ScriptedTurn(
        tool_calls=[
            call("Delegate", agent="spender", task="spend"),
            call("Delegate", agent="second", task="spend too"),
        ],
        usage=TURN.copy(),
    )
    agent = parent(
        tmp_path,
        Delegate([spender, second]),
        [both, "answered"],
        finished,
        max_tokens_budget=60_000,
    )
    result = await agent.collect("go", agent.new_session("lead"))
    second_done = finished.done["agent/second"]
    assert second_done.stop_reason == "end_turn"
    assert second_done.usage.model_calls == 2
    spender_done = finished.done["agent/spender"]
    assert spender_done.stop_reason == "token_budget"
    assert spender_done.detail == "used 66,000 tokens of agent's 60,000 budget"
    assert spender_done.usage.model_calls == 3
    assert result.stop_reason == "token_budget"
    assert result.usage.total_tokens == 6 * TURN_TOKENS


async def test_a_sub_agent_of_a_sub_agent_stops_at_the_top_runs_token_budget(
    tmp_path: Path,
) -> None:
    # the top's turn, the middle's and the leaf's first two: 44,000 tokens of 40,000 at the
    # leaf's third step; the middle, which has no budget of its own, stops at its next step
    leaf = SubAgent("leaf", "Works.", tools=[work], model=ScriptedModel(working))
    middle_model = ScriptedModel(
        [turn(call("Delegate", agent="leaf", task="work")), turn("the leaf is done")]
    )
    middle = SubAgent("middle", "Delegates.", tools=[Delegate([leaf])], model=middle_model)
    finished = Finished()
    agent = parent(
        tmp_path,
        Delegate([middle]),
        [call("Delegate", agent="middle", task="delegate"), "answered"],
        finished,
        max_tokens_budget=40_000,
    )
    result = await agent.collect("go", agent.new_session("lead"))
    leaf_done = finished.done["agent/middle/leaf"]
    assert leaf_done.stop_reason == "token_budget"
    assert leaf_done.detail == "used 44,000 tokens of agent's 40,000 budget"
    assert leaf_done.usage.model_calls == 2
    middle_done = finished.done["agent/middle"]
    assert (middle_done.stop_reason, middle_done.detail) == ("token_budget", leaf_done.detail)
    assert middle_done.usage.model_calls == 3
    assert result.stop_reason == "token_budget"
    assert result.usage.total_tokens == 4 * TURN_TOKENS


async def test_a_sub_agent_has_a_token_budget_of_its_own(tmp_path: Path) -> None:
    """``SubAgent(max_tokens_budget=)``: the child stops at its own budget (two turns of
    11,000 tokens against 15,000), and the parent goes on to answer."""
    worker = SubAgent(
        "worker", "Works.", tools=[work], model=ScriptedModel(working), max_tokens_budget=15_000
    )
    finished = Finished()
    agent = parent(
        tmp_path,
        Delegate([worker]),
        [call("Delegate", agent="worker", task="work"), "answered"],
        finished,
    )
    result = await agent.collect("go", agent.new_session("own"))
    child = finished.done["agent/worker"]
    assert child.stop_reason == "token_budget"
    assert child.detail == "used 22,000 tokens of a 15,000 budget"
    assert result.stop_reason == "end_turn"
    assert result.usage.total_tokens == 4 * TURN_TOKENS  # the parent's two turns, the child's


@pytest.mark.parametrize("budget", [0, -5, 1.5, True, "1000"])
def test_a_sub_agents_token_budget_must_be_a_number_of_tokens(budget: Any) -> None:
    with pytest.raises(ValueError, match="max_tokens_budget must be a whole number of tokens"):
        SubAgent("worker", "Works.", max_tokens_budget=budget)


async def test_an_agent_run_inside_a_plain_tool_stops_at_the_callers_cost_budget(
    tmp_path: Path,
) -> None:
    """A tool of the parent's that runs a helper agent itself (no Delegate registers it as a
    child): the helper's spending counts against the parent's $0.10 as it runs. Each turn is
    $0.045: the parent's and the helper's first two pass $0.10, so the helper stops at its
    third step, not at its own 20 turns."""
    helpers: list[Any] = []

    @tool
    async def consult_helper() -> str:
        """Ask a helper agent."""
        helper = Agent(
            ScriptedModel(working, pricing=PRICE), tools=[work], store=MemoryStore(), max_turns=20
        )
        result = await helper.collect("work on it")
        helpers.append(result)
        return f"helper: {result.stop_reason}"

    agent = Agent(
        ScriptedModel([turn(call("consult_helper")), turn("answered")], pricing=PRICE),
        tools=[consult_helper],
        store=MemoryStore(),
        workspace_root=str(tmp_path / "ws"),
        max_cost_usd=0.10,
    )
    await agent.collect("go")
    (helped,) = helpers
    assert helped.stop_reason == "cost_budget"
    assert helped.usage.model_calls == 2
    assert helped.events[-1].detail == "spent $0.1350 of agent's $0.1000 budget"
