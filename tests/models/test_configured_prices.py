"""``LOOPWRIGHT_PRICES``: model prices set without code.

A model the built-in table lacks (``openai:llama-3.3-70b-versatile@https://api.groq.com/...``)
cost $0.0000 in every footer and report, and an agent's ``max_cost_usd`` never stopped it;
a model behind a local proxy (LiteLLM forwarding to a paid API) was taken for a free local
model. Only Python's ``register_price`` could fix either. The setting prices both, from the
environment or ``loopwright.toml``, and a mistyped entry is refused naming it.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest

from cli_process import cli_env, run_cli
from loopwright import Agent, ScriptedModel, tool
from loopwright.events import Usage
from loopwright.models.base import ModelError, Pricing
from loopwright.models.openai import OpenAIModel
from loopwright.models.pricing import configured_prices, cost_of, price_for
from models.openai_server import OpenAIServer, ToolCall, Turn


@tool
def ping() -> str:
    """Answer pong."""
    return "pong"


GROQ = "openai:llama-3.3-70b-versatile@https://api.groq.com/openai/v1"


def test_entries_price_models_by_family(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(
        "LOOPWRIGHT_PRICES",
        " llama-3.3-70b-versatile=0.59/0.79 ;\nopenai:GPT-4.1-2025-04-14=1/3/0.25/0 ;",
    )
    assert price_for(GROQ) == Pricing(0.59, 0.79)
    # the built-in table's gpt-4.1 is overridden, for dated names too
    assert price_for("gpt-4.1-2025-04-14") == Pricing(1.0, 3.0, 0.25, 0.0)
    assert price_for("openai:gpt-4.1") == Pricing(1.0, 3.0, 0.25, 0.0)
    usage = Usage(input_tokens=1_000_000, output_tokens=500_000)
    assert cost_of(GROQ, usage).usd == pytest.approx(0.59 + 0.395)
    assert cost_of(GROQ, usage).priced
    # models it does not name keep the table's prices
    assert price_for("gpt-4o") == price_for("gpt-4o", {})
    assert price_for("openai:some-new-model@https://example.invalid/v1") is None


def test_an_entry_prices_a_model_behind_a_local_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    proxied = "openai:claude-sonnet-4-5@http://127.0.0.1:4000/v1"
    assert price_for(proxied) == Pricing(0.0, 0.0)  # on this machine: free, unless named
    monkeypatch.setenv("LOOPWRIGHT_PRICES", "claude-sonnet-4-5=3/15/0.3/3.75")
    assert price_for(proxied) == Pricing(3.0, 15.0, 0.3, 3.75)
    assert price_for("local:gemma3-270m") == Pricing(0.0, 0.0)  # the others stay free


def test_a_scoped_table_still_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LOOPWRIGHT_PRICES", "gpt-4.1=1/2")
    assert price_for("gpt-4.1", {"gpt-4.1": Pricing(9.0, 9.0)}) == Pricing(9.0, 9.0)


@pytest.mark.parametrize(
    "raw",
    [
        "llama=0.59",  # one price
        "llama=1/2/3/4/5",  # five
        "llama=cheap/2",
        "llama=-1/2",
        "llama=nan/2",
        "llama=inf/2",
        "=1/2",
        "llama 1/2",
        "llama=1/2; mistral=",
    ],
)
def test_an_unusable_entry_is_refused_naming_it(raw: str) -> None:
    with pytest.raises(ModelError) as caught:
        configured_prices(raw)
    message = str(caught.value)
    assert message.startswith("LOOPWRIGHT_PRICES: ")
    assert "MODEL=INPUT/OUTPUT" in message
    bad = [e.strip() for e in raw.split(";") if e.strip()][-1 if raw.endswith("=") else 0]
    assert repr(bad) in message


def test_an_unusable_setting_stops_the_model_not_the_reports(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("LOOPWRIGHT_PRICES", "llama=0.59")
    with pytest.raises(ModelError, match=r"'llama=0\.59' is not a price"):
        OpenAIModel("llama", base_url="https://example.invalid/v1", api_key="k")
    # a report pricing past calls says "unpriced" rather than failing
    assert cost_of("gpt-4.1", Usage(input_tokens=10)).priced is False


def _footer_cost(stdout: str) -> str:
    found = re.findall(r"\$\d+\.\d{4}", stdout)
    assert found, stdout
    return found[-1]


@pytest.mark.parametrize("where", ["environment", "loopwright.toml"])
def test_the_cli_footer_shows_the_configured_price(
    loopwright_home: Path, tmp_path: Path, where: str
) -> None:
    """A run through ``loopwright run`` on a model behind a loopback server (free, before):
    42 prompt tokens and 5 completion tokens at 100/1,000 USD per million."""
    env = cli_env(loopwright_home)
    if where == "environment":
        env["LOOPWRIGHT_PRICES"] = "proxied-model=100/1000"
    else:
        (tmp_path / "loopwright.toml").write_text(
            'prices = "proxied-model=100/1000"\n', encoding="utf-8"
        )
    with OpenAIServer([Turn(text="Hello there.", completion_tokens=5)]) as server:
        ran = run_cli(
            ["run", "-m", f"openai:proxied-model@{server.base_url}", "Say hello."],
            env=env, cwd=tmp_path, timeout=120,
        )  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "Hello there." in ran.stdout
    expected = (42 * 100 + 5 * 1000) / 1_000_000
    assert _footer_cost(ran.stdout + ran.stderr) == f"${expected:.4f}"


def test_the_cli_refuses_an_unusable_setting_before_the_run(
    loopwright_home: Path, tmp_path: Path
) -> None:
    env = {**cli_env(loopwright_home), "LOOPWRIGHT_PRICES": "proxied-model=1,2"}
    with OpenAIServer(["unused"]) as server:
        ran = run_cli(
            ["run", "-m", f"openai:proxied-model@{server.base_url}", "Say hello."],
            env=env, cwd=tmp_path, timeout=120,
        )  # fmt: skip
    assert ran.returncode == 2, ran.stdout + ran.stderr
    assert "LOOPWRIGHT_PRICES: 'proxied-model=1,2' is not a price" in ran.stderr
    assert server.chat_bodies == []  # nothing was sent


# --- the cost budget ------------------------------------------------------------------------


async def test_the_cost_budget_stops_a_model_priced_by_the_setting(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Before the setting, this model behind a proxy cost $0 a call and ran to its
    max_turns; priced at 1,000/2,000 USD per million, its first call (42 + 50 tokens, $0.142)
    passes a $0.10 budget, and the run stops there."""
    monkeypatch.setenv("LOOPWRIGHT_PRICES", "proxied-model=1000/2000")
    calls = [Turn(tool_calls=[ToolCall("ping", {})], completion_tokens=50)] * 4
    with OpenAIServer([*calls, "done"]) as server:
        model = OpenAIModel("proxied-model", base_url=server.base_url)
        agent = Agent(model, tools=[ping], workspace_root=str(tmp_path), max_cost_usd=0.10)
        result = await agent.collect("Ping.")
    assert result.stop_reason == "cost_budget"
    assert result.usage.model_calls == 1
    assert result.usage.cost_usd == pytest.approx((42 * 1000 + 50 * 2000) / 1e6)


async def test_a_cost_budget_on_a_model_with_no_price_says_it_cannot_hold(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    """A model no table prices reports tokens at $0: the budget cannot stop it, and the run
    says so once, naming the setting that fixes it."""
    model = ScriptedModel(["one", "two"], name="openai:mystery-model@https://example.invalid/v1")
    agent = Agent(model, workspace_root=str(tmp_path), max_cost_usd=0.01)
    with caplog.at_level(logging.WARNING, logger="loopwright.agent"):
        session = agent.new_session()
        await agent.collect("First.", session)
        await agent.collect("Second.", session)
    warnings = [r.getMessage() for r in caplog.records if "cannot stop this run" in r.getMessage()]
    assert len(warnings) == 2  # once a run
    assert "openai:mystery-model@https://example.invalid/v1 has no known price" in warnings[0]
    assert "LOOPWRIGHT_PRICES (e.g. 'mystery-model=INPUT/OUTPUT'" in warnings[0]


async def test_no_warning_where_the_cost_is_known_or_no_budget_is_set(
    caplog: pytest.LogCaptureFixture, tmp_path: Path
) -> None:
    free = Agent(ScriptedModel(["a"], name="local:gemma3-270m"), workspace_root=str(tmp_path),
                 max_cost_usd=0.01)  # fmt: skip
    priced = Agent(ScriptedModel(["a"], name="gpt-4.1"), workspace_root=str(tmp_path),
                   max_cost_usd=0.01)  # fmt: skip
    unbudgeted = Agent(
        ScriptedModel(["a"], name="openai:mystery-model"), workspace_root=str(tmp_path)
    )
    with caplog.at_level(logging.WARNING, logger="loopwright.agent"):
        for agent in (free, priced, unbudgeted):
            await agent.collect("Hi.")
    assert not [r for r in caplog.records if "cannot stop this run" in r.getMessage()]
