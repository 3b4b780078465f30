"""What a run spent, where it is told and where it is capped: a BigQuery job billed for a
call that never returned (cancelled with its run) is in ``sessions report``'s figures as in
the run's usage; a sub-agent stops at its parent's ``max_cost_usd``; a budget that is not a
number of USD is refused.

Real agents on the scripted model, the real SQL tool and ``google.cloud.bigquery`` client,
against the BigQuery stand-in (:mod:`sql.bigquery_server`, on 127.0.0.1).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from loopwright import Agent, MemoryStore, ScriptedModel, call, tool
from loopwright.events import Done, ToolResult
from loopwright.observability.reports import build_report
from loopwright.observability.stats import WAREHOUSE_PRICE_ENV, StatsRecorder
from loopwright.sql import connect
from loopwright.tools.base import ok
from loopwright.tools.delegate import Delegate, SubAgent
from loopwright.tools.sql import SQL
from sql.bigquery_server import BigQueryServer

MB = 1024 * 1024
TIB = 1024**4
COUNT = "SELECT COUNT(*) AS n FROM RX_CLAIMS"


@pytest.fixture
def bigquery() -> Iterator[BigQueryServer]:
    with BigQueryServer(project="test-project") as server:
        server.setup(
            "CREATE SCHEMA claims; "
            "CREATE TABLE claims.RX_CLAIMS AS SELECT range AS CLAIM_ID FROM range(100)"
        )
        yield server


def _url(server: BigQueryServer) -> str:
    return f"bigquery://test-project/claims?api_endpoint={server.base_url}"


async def test_a_call_cancelled_with_its_run_is_in_the_sessions_report(
    bigquery: BigQueryServer, tmp_path: Path
) -> None:
    """The run's time limit stops it while its query runs: the job is cancelled on the
    server and billed 10 MB. The run's usage counted it; ``sessions report`` (built from the
    run's records) said the session's queries billed nothing."""
    bigquery.hold_jobs = True  # runs until cancelled
    agent = Agent(
        ScriptedModel([call("SQL", sql=COUNT, dataset_name="n", description="count"), "Done."]),
        tools=[SQL(connect(_url(bigquery)), timeout=60)],
        store=MemoryStore(),
        workspace_root=str(tmp_path / "ws"),
        timeout=1.0,
        instruments=[StatsRecorder(conversation=False)],
    )
    try:
        session = agent.new_session("cancelled")
        events = [e async for e in agent.run("How many claims?", session)]
    finally:
        await agent.aclose()
    done = events[-1]
    assert isinstance(done, Done)
    assert done.stop_reason == "timeout"
    (job_id,) = bigquery.jobs
    assert bigquery.cancelled == [job_id]
    assert bigquery.jobs[job_id].bytes_billed == 10 * MB
    assert done.usage.warehouse is not None
    assert done.usage.warehouse.bytes_billed == 10 * MB

    report = build_report(session)
    assert report.warehouse is not None
    assert report.warehouse.queries == 1
    assert report.warehouse.bytes_billed == 10 * MB
    (run,) = report.runs
    assert run.warehouse is not None
    assert run.warehouse.bytes_billed == 10 * MB


def _billing_tool() -> Any:
    @tool
    async def scan(step: int) -> ToolResult:
        """Run a query the warehouse bills a TiB for."""
        return ok(f"rows of scan {step}", metadata={"database": "BigQuery", "bytes_billed": TIB})

    return scan


async def test_a_sub_agent_stops_at_its_parents_cost_budget(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The parent's $1 budget: the sub-agent's first scan bills a TiB ($6.25 at the default
    price). The sub-agent stops there, not after its three scans ($18.75): its spending
    counts against its parent's limits while it runs, not only once it has ended."""
    monkeypatch.delenv(WAREHOUSE_PRICE_ENV, raising=False)
    child = ScriptedModel(
        [call("scan", step=1), call("scan", step=2), call("scan", step=3), "Scanned."]
    )
    worker = SubAgent("worker", "Scans.", tools=[_billing_tool()], model=child)
    agent = Agent(
        ScriptedModel([call("Delegate", agent="worker", task="scan"), "Answered."]),
        tools=[Delegate([worker])],
        store=MemoryStore(),
        workspace_root=str(tmp_path / "ws"),
        max_cost_usd=1.0,
    )
    try:
        result = await agent.collect("Scan.", agent.new_session("lead"))
    finally:
        await agent.aclose()
    scans = [e for e in result.events if isinstance(e, ToolResult) and e.agent]
    assert len(scans) == 1
    delegated = next(e for e in result.events if isinstance(e, ToolResult) and not e.agent)
    assert "stopped: cost_budget" in delegated.content
    assert "of agent's $1.0000 budget" in delegated.content
    assert result.stop_reason == "cost_budget"
    warehouse = result.usage.warehouse
    assert warehouse is not None
    assert (warehouse.queries, warehouse.bytes_billed) == (1, TIB)


@pytest.mark.parametrize("budget", [math.nan, -1.0, True, "1"])
def test_a_cost_budget_that_is_not_a_number_of_usd_is_refused(budget: Any, tmp_path: Path) -> None:
    """A NaN budget stopped nothing (every comparison with it is false) and a negative one
    stopped each run before its first model call ("spent $0.0000 of a $-1.0000 budget")."""
    with pytest.raises(ValueError, match=r"max_cost_usd must be a number of USD, 0 or more"):
        Agent(ScriptedModel(["Hi."]), store=MemoryStore(), max_cost_usd=budget)
    with pytest.raises(ValueError, match=r"sub-agent 'worker': max_cost_usd must be a number"):
        SubAgent("worker", "Works.", max_cost_usd=budget)


async def test_a_cost_budget_of_zero_or_more_is_taken(tmp_path: Path) -> None:
    for budget in (0, 0.5, math.inf):
        agent = Agent(
            ScriptedModel(["Hi."]),
            store=MemoryStore(),
            workspace_root=str(tmp_path / "ws"),
            max_cost_usd=budget,
        )
        result = await agent.collect("Hello.", agent.new_session())
        assert result.stop_reason == ("cost_budget" if budget == 0 else "end_turn")
        SubAgent("worker", "Works.", max_cost_usd=budget)
