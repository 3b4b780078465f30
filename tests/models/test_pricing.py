"""The price table: lookups by model name, cost per call, overrides, unknown and local models."""

from __future__ import annotations

from pathlib import Path

import pytest

from loopwright import Agent, MemoryStore
from loopwright.events import Usage
from loopwright.models import pricing
from loopwright.models.base import Pricing
from loopwright.models.pricing import (
    DEFAULT_PRICES,
    TieredPricing,
    cost_of,
    model_family,
    price_for,
    register_price,
)
from loopwright.models.scripted import ScriptedModel, ScriptedTurn


@pytest.fixture(autouse=True)
def _no_registered_prices(monkeypatch: pytest.MonkeyPatch) -> None:
    """``register_price`` is process-wide: each test starts from the built-in table."""
    monkeypatch.setattr(pricing, "_registered", {})


#: Every model the issue names, and what a million of each kind of token costs (USD):
#: input, output, cache read, cache write.
EXPECTED = {
    "claude-opus-5-5": (4.0, 20.0, 0.2, 5.0),
    "claude-opus-5": (5.0, 25.0, 0.5, 6.25),
    "claude-sonnet-5-5": (2.0, 10.0, 0.1, 2.5),
    "claude-sonnet-5": (2.0, 10.0, 0.2, 2.5),
    "claude-haiku-5-5": (0.1, 0.5, 0.01, 0.125),
    "claude-fable-5-1": (10.0, 50.0, 0.25, 12.5),
    "claude-opus-4-1": (15.0, 75.0, 1.5, 18.75),
    "claude-opus-4-5": (5.0, 25.0, 0.5, 6.25),
    "claude-sonnet-4-5": (3.0, 15.0, 0.3, 3.75),
    "claude-sonnet-4": (3.0, 15.0, 0.3, 3.75),
    "claude-haiku-4-5": (1.0, 5.0, 0.1, 1.25),
    "claude-3-7-sonnet": (3.0, 15.0, 0.3, 3.75),
    "claude-3-5-haiku": (0.8, 4.0, 0.08, 1.0),
    "claude-3-haiku": (0.25, 1.25, 0.03, 0.3),
    "gpt-4.1": (2.0, 8.0, 0.5, 0.0),
    "gpt-4.1-mini": (0.4, 1.6, 0.1, 0.0),
    "gpt-4.1-nano": (0.1, 0.4, 0.025, 0.0),
    "gpt-4o": (2.5, 10.0, 1.25, 0.0),
    "gpt-4o-mini": (0.15, 0.6, 0.075, 0.0),
    "o3": (2.0, 8.0, 0.5, 0.0),
    "o4-mini": (1.1, 4.4, 0.275, 0.0),
    "gpt-5.5": (5.0, 30.0, 0.5, 0.0),
    "gpt-5.4": (2.5, 15.0, 0.25, 0.0),
    "gpt-5.4-mini": (0.75, 4.5, 0.075, 0.0),
    "gpt-5.2": (1.75, 14.0, 0.175, 0.0),
    "gpt-5": (1.25, 10.0, 0.125, 0.0),
    "gpt-5-mini": (0.25, 2.0, 0.025, 0.0),
    "gpt-5-nano": (0.05, 0.4, 0.005, 0.0),
}


@pytest.mark.parametrize(("model", "prices"), EXPECTED.items())
def test_current_models_have_their_published_prices(
    model: str, prices: tuple[float, float, float, float]
) -> None:
    found = price_for(model)
    assert found is not None
    got = (
        found.input_per_mtok,
        found.output_per_mtok,
        found.cache_read_per_mtok,
        found.cache_write_per_mtok,
    )
    assert got == pytest.approx(prices)


@pytest.mark.parametrize(
    ("name", "family"),
    [
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-opus-4-1-20250805", "claude-opus-4-1"),
        ("claude-opus-4-20250514", "claude-opus-4"),
        ("claude-3-5-sonnet-latest", "claude-3-5-sonnet"),
        ("anthropic:claude-haiku-4-5", "claude-haiku-4-5"),
        ("us.anthropic.claude-haiku-4-5-20251001-v1:0", "claude-haiku-4-5"),
        ("claude-sonnet-4-5@20250929", "claude-sonnet-4-5"),
        ("gpt-4.1-2025-04-14", "gpt-4.1"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("openai:o4-mini-2025-04-16", "o4-mini"),
        ("GPT-5-Mini", "gpt-5-mini"),
    ],
)
def test_dated_and_prefixed_names_resolve_to_their_family(name: str, family: str) -> None:
    assert model_family(name) == family
    assert price_for(name) is DEFAULT_PRICES[family]


def test_a_call_costs_each_kind_of_token_at_its_own_price() -> None:
    usage = Usage(
        input_tokens=10_000, output_tokens=2_000, cache_read_tokens=50_000, cache_write_tokens=4_000
    )
    # 0.01 M * $3 + 0.002 M * $15 + 0.05 M * $0.30 + 0.004 M * $3.75
    assert cost_of("claude-sonnet-4-5-20250929", usage).usd == pytest.approx(0.09)
    # OpenAI: cached input at $0.50, no cache-write price
    openai = cost_of(
        "gpt-4.1", Usage(input_tokens=10_000, output_tokens=2_000, cache_read_tokens=50_000)
    )
    assert openai.usd == pytest.approx(0.02 + 0.016 + 0.025)
    assert openai.priced


def test_long_prompts_on_sonnet_4_5_are_billed_at_long_context_prices() -> None:
    short = Usage(input_tokens=150_000, output_tokens=1_000, cache_read_tokens=50_000)
    long = Usage(input_tokens=150_000, output_tokens=1_000, cache_read_tokens=50_001)
    assert isinstance(price_for("claude-sonnet-4-5"), TieredPricing)
    assert cost_of("claude-sonnet-4-5", short).usd == pytest.approx(0.45 + 0.015 + 0.015)
    # over 200K prompt tokens, every token of the call costs the long-context price
    assert cost_of("claude-sonnet-4-5", long).usd == pytest.approx(
        0.9 + 0.0225 + 50_001 * 0.6 / 1e6
    )
    # Haiku 5.5 switches at 100K prompt tokens, GPT-5.4 at 272K; Haiku 4.5 has no tier
    assert cost_of("claude-haiku-5-5", Usage(input_tokens=100_001)).usd == pytest.approx(0.0500005)
    assert cost_of("claude-haiku-5-5", Usage(input_tokens=100_000)).usd == pytest.approx(0.01)
    assert cost_of("gpt-5.4", Usage(input_tokens=272_001)).usd == pytest.approx(272_001 * 5 / 1e6)
    assert cost_of("claude-haiku-4-5", long).usd == pytest.approx(0.15 + 0.005 + 50_001 * 0.1 / 1e6)


def test_an_unknown_model_costs_zero_and_is_flagged_not_a_crash() -> None:
    usage = Usage(input_tokens=1_000, output_tokens=1_000)
    assert price_for("mystery-model-9000") is None
    cost = cost_of("mystery-model-9000", usage)
    assert cost.usd == 0.0
    assert not cost.priced
    # a near miss is not guessed: an audio model is not priced as its text sibling
    assert price_for("gpt-4o-audio-preview") is None


@pytest.mark.parametrize(
    "name",
    [
        "local",
        "local:/models/smollm2.gguf",
        "local:gemma-3-270m-q4_k_m",
        "scripted:demo",
        "openai:llama3.2@http://127.0.0.1:11434/v1",
        "openai:gpt-4o@http://localhost:8080/v1",
        "openai:qwen@http://[::1]:8000/v1",
    ],
)
def test_models_on_this_machine_cost_nothing(name: str) -> None:
    cost = cost_of(name, Usage(input_tokens=1_000_000, output_tokens=1_000_000))
    assert cost.usd == 0.0
    assert cost.priced


def test_a_compatible_server_elsewhere_keeps_the_model_price() -> None:
    assert price_for("openai:gpt-4o@https://gateway.example.com/v1") is DEFAULT_PRICES["gpt-4o"]


def test_prices_can_be_overridden_per_call_and_registered_for_the_process() -> None:
    mine = Pricing(1.0, 2.0)
    usage = Usage(input_tokens=1_000_000, output_tokens=1_000_000)
    assert cost_of("gpt-4.1", usage, prices={"gpt-4.1": mine}).usd == pytest.approx(3.0)
    assert cost_of("my-finetune", usage, prices={"my-finetune": mine}).usd == pytest.approx(3.0)
    assert cost_of("gpt-4.1", usage).usd == pytest.approx(10.0)  # the table is untouched

    register_price("my-finetune-2025-01-01", Pricing(0.5, 0.5))
    assert cost_of("my-finetune", usage).usd == pytest.approx(1.0)
    assert cost_of("my-finetune-2025-06-30", usage).usd == pytest.approx(1.0)
    register_price("gpt-4.1", Pricing(0.0, 1.0))
    assert cost_of("gpt-4.1-2025-04-14", usage).usd == pytest.approx(1.0)
    # an explicit table still wins over registered prices
    assert cost_of("gpt-4.1", usage, prices={"gpt-4.1": mine}).usd == pytest.approx(3.0)
    with pytest.raises(ValueError, match="model name"):
        register_price("  ", mine)


def test_the_table_cannot_be_changed_by_accident() -> None:
    with pytest.raises(TypeError):
        DEFAULT_PRICES["gpt-4.1"] = Pricing(0, 0)  # type: ignore[index]


def test_the_agent_costs_each_call_and_the_cost_budget_stops_the_run(tmp_path: Path) -> None:
    usage = Usage(input_tokens=100_000, output_tokens=10_000)  # $0.45 at Sonnet 4.5 prices
    model = ScriptedModel(
        [ScriptedTurn(text="step", usage=usage, tool_calls=[]) for _ in range(5)],
        name="anthropic:claude-sonnet-4-5",
        pricing=price_for("claude-sonnet-4-5"),
    )
    store = MemoryStore()
    agent = Agent(model, store=store, workspace_root=str(tmp_path), max_cost_usd=1.0)
    session = agent.new_session()
    first = agent.run_sync("one", session)
    assert first.usage.cost_usd == pytest.approx(0.45)
    second = agent.run_sync("two", session)
    assert second.usage.cost_usd == pytest.approx(0.45)
    assert session.usage.cost_usd == pytest.approx(0.90)  # per session, across runs
    usage_events = [e for e in second.events if e.type == "usage"]
    assert usage_events[0]["cost_usd"] == pytest.approx(0.45)  # per call

    looping = ScriptedModel(
        lambda request: ScriptedTurn(text="again", usage=usage.copy(), stop_reason="max_tokens"),
        name="anthropic:claude-sonnet-4-5",
        pricing=price_for("claude-sonnet-4-5"),
    )
    budget = Agent(looping, store=store, workspace_root=str(tmp_path), max_cost_usd=1.0)
    stopped = budget.run_sync("keep going")
    assert stopped.stop_reason == "cost_budget"
    assert stopped.usage.cost_usd == pytest.approx(1.35)  # stops after the call that crossed $1
