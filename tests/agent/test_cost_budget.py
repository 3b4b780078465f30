"""``max_cost_usd`` counts the model's cost and what a warehouse billed for the run's queries.

A run on BigQuery pays for the bytes its queries bill, often more than for the tokens: the
cost limit stops the run on the sum, estimated at ``LOOPWRIGHT_BIGQUERY_USD_PER_TIB``, and
its message says how the spend splits.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from loopwright import Pricing, Usage, call, tool
from loopwright.models.base import ModelRequest
from loopwright.models.scripted import ScriptedModel, ScriptedTurn
from loopwright.observability.stats import WAREHOUSE_PRICE_ENV
from loopwright.sql.bigquery import BigQueryBackend
from loopwright.tools.base import ToolResult, ok
from loopwright.tools.sql import SQLTool
from sql.bigquery_server import BigQueryServer

from .helpers import make_agent, of_type

TIB = 1024**4
MB = 1024**2
#: $3 / $15 per million tokens: each scripted turn (10k in, 1k out) costs $0.045
PRICE = Pricing(3.0, 15.0)


def querying(request: ModelRequest) -> ScriptedTurn:
    """A model that runs one more query each turn (a different one: not a stuck loop)."""
    turn = ScriptedTurn(tool_calls=[call("query", step=len(request.messages))])
    turn.usage = Usage(input_tokens=10_000, output_tokens=1_000)
    return turn


def query_tool(bytes_billed: int, *, cache_hit: bool = False):  # type: ignore[no-untyped-def]
    @tool
    async def query(step: int) -> ToolResult:
        """Run a query on the warehouse."""
        metadata = {"database": "BigQuery", "bytes_billed": bytes_billed, "cache_hit": cache_hit}
        return ok(f"rows of query {step}", metadata=metadata)

    return query


async def test_what_the_warehouse_billed_counts_toward_the_cost_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # at the default $6.25 per TiB, an eighth of a TiB is $0.78125: the model's $0.045 a turn
    # alone would take 34 turns to reach $1.50, the queries take two
    monkeypatch.delenv(WAREHOUSE_PRICE_ENV, raising=False)
    model = ScriptedModel(querying, pricing=PRICE)
    agent = make_agent(
        model, tmp_path, tools=[query_tool(TIB // 8)], max_cost_usd=1.5, max_turns=10
    )
    events = [e async for e in agent.run("count the claims")]
    done = events[-1]
    assert done.stop_reason == "cost_budget"
    assert done.usage.model_calls == 2
    assert done.usage.cost_usd == pytest.approx(0.09)
    assert done.usage.warehouse is not None
    assert done.usage.warehouse.bytes_billed == TIB // 4
    assert done.detail.startswith("spent $1.65")
    assert done.detail.endswith(" of a $1.5000 budget (model $0.0900, warehouse $1.5625)")
    assert not of_type(events, "error")


async def test_the_warehouse_is_priced_at_the_configured_price(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(WAREHOUSE_PRICE_ENV, "12.5")  # the first query alone: $1.5625
    model = ScriptedModel(querying, pricing=PRICE)
    agent = make_agent(
        model, tmp_path, tools=[query_tool(TIB // 8)], max_cost_usd=1.5, max_turns=10
    )
    done = [e async for e in agent.run("count the claims")][-1]
    assert done.stop_reason == "cost_budget"
    assert done.usage.model_calls == 1
    assert done.detail == "spent $1.6075 of a $1.5000 budget (model $0.0450, warehouse $1.5625)"


async def test_without_a_warehouse_bill_the_budget_is_the_models_and_no_price_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # results from BigQuery's cache bill nothing: the price (unusable here) is never needed
    monkeypatch.setenv(WAREHOUSE_PRICE_ENV, "six dollars")
    model = ScriptedModel(querying, pricing=PRICE)
    agent = make_agent(
        model, tmp_path, tools=[query_tool(0, cache_hit=True)], max_cost_usd=0.1, max_turns=10
    )
    events = [e async for e in agent.run("count the claims")]
    done = events[-1]
    assert not of_type(events, "error")
    assert done.stop_reason == "cost_budget"
    assert done.usage.model_calls == 3
    assert done.usage.warehouse is not None
    assert done.usage.warehouse.cache_hits == 3
    assert done.detail == "spent $0.1350 of a $0.1000 budget"


async def test_an_unusable_warehouse_price_ends_a_run_with_a_cost_budget_in_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(WAREHOUSE_PRICE_ENV, "six dollars")
    model = ScriptedModel(querying, pricing=PRICE)
    agent = make_agent(
        model, tmp_path, tools=[query_tool(TIB // 8)], max_cost_usd=1.5, max_turns=10
    )
    events = [e async for e in agent.run("count the claims")]
    done = events[-1]
    assert done.stop_reason == "error"
    assert done.usage.model_calls == 1  # stopped at the first check after the first bill
    [error] = of_type(events, "error")
    assert "max_cost_usd counts what BigQuery billed" in error.message
    assert f"{WAREHOUSE_PRICE_ENV} must be a number of USD per TiB" in error.message
    assert "'six dollars'" in error.message


@pytest.fixture
def bigquery() -> Iterator[BigQueryServer]:
    with BigQueryServer(project="test-project") as server:
        server.setup(
            "CREATE SCHEMA claims; "
            "CREATE TABLE claims.rx_claims AS SELECT range AS claim_id FROM range(100)"
        )
        yield server


async def test_a_run_on_bigquery_stops_when_its_queries_cost_the_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, bigquery: BigQueryServer
) -> None:
    """The real SQL tool against the BigQuery stand-in (127.0.0.1): each query bills
    BigQuery's 10 MB minimum, at $6,250 per TiB about $0.06, and the model costs nothing."""
    monkeypatch.setenv(WAREHOUSE_PRICE_ENV, "6250")
    backend = BigQueryBackend("test-project", "claims", api_endpoint=bigquery.base_url)
    sql = SQLTool(tmp_path / "sql", backend=backend)

    def counting(request: ModelRequest) -> ScriptedTurn:
        step = len(request.messages)
        return ScriptedTurn(
            tool_calls=[
                call(
                    "SQL",
                    sql=f"SELECT COUNT(*) + {step} AS n FROM rx_claims",
                    dataset_name=f"count_{step}",
                    description="count the claims",
                )
            ]
        )

    agent = make_agent(ScriptedModel(counting), tmp_path, tools=[sql], max_cost_usd=0.1)
    try:
        events = [e async for e in agent.run("count the claims")]
    finally:
        await agent.aclose()
    done = events[-1]
    assert [e.is_error for e in of_type(events, "tool_result")] == [False, False]
    assert done.stop_reason == "cost_budget"
    assert done.usage.cost_usd == 0.0
    assert done.usage.warehouse is not None
    assert done.usage.warehouse.queries == 2
    assert done.usage.warehouse.bytes_billed == 20 * MB
    assert done.detail == "spent $0.1192 of a $0.1000 budget (model $0.0000, warehouse $0.1192)"
