"""DefineCohort's BigQuery jobs are on the bill, as the SQL tool's are.

A cohort runs several jobs (the cohort query, a probe per listed criterion, the values of a
text date column): BigQuery bills each, at least 10 MB per table read. The tool's metadata
carries their sum in the SQL tool's fields, so the agent counts it in ``Usage.warehouse``; a
cohort query stopped by its timeout carries what its cancelled job billed. The figures are
the stand-in's own, through the real ``google.cloud.bigquery`` client.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import pytest

from loopwright import Agent, MemoryStore, ScriptedModel, call
from loopwright.events import Done, warehouse_bill
from loopwright.healthcare.cohort import DefineCohort
from loopwright.sql import connect
from sql.bigquery_server import BigQueryServer

MB = 1024 * 1024
CRITERIA: dict[str, Any] = {
    "drugs": ["HUMIRA"],
    "states": ["CA"],
    "start_date": "2023-01-01",
    "end_date": "2024-12-31",
}


@pytest.fixture
def bigquery(claims_con: duckdb.DuckDBPyConnection) -> Iterator[BigQueryServer]:
    # from the session's open connection: a second one to the same file, with other
    # settings, is refused while that one is open
    with BigQueryServer(project="test-project") as server:
        server.load_from("claims", claims_con)
        yield server


def _url(server: BigQueryServer) -> str:
    return f"bigquery://test-project/claims?api_endpoint={server.base_url}"


def _cohort_jobs(server: BigQueryServer) -> list[Any]:
    return [job for job_id, job in server.jobs.items() if job_id.startswith("loopwright_cohort_")]


async def _define(server: BigQueryServer, workspace: Path, **options: Any) -> dict[str, Any]:
    os.makedirs(workspace, exist_ok=True)
    toolset = DefineCohort(connect(_url(server)), **options)
    (tool,) = toolset.bind(str(workspace))
    try:
        return dict(await tool.execute({"name": "humira_ca", **CRITERIA}))
    finally:
        await toolset.aclose()


async def test_a_cohorts_jobs_are_billed_in_its_metadata(
    bigquery: BigQueryServer, tmp_path: Path
) -> None:
    result = await _define(bigquery, tmp_path / "ws")
    assert result["is_error"] is False, result["content"]
    jobs = _cohort_jobs(bigquery)
    assert len(jobs) >= 2  # the cohort query and its drug probe, at least
    metadata = result["metadata"]
    assert metadata["bytes_billed"] == sum(job.bytes_billed for job in jobs) >= 20 * MB
    assert metadata["database"] == "BigQuery"
    assert metadata["cohort"] == "humira_ca"
    bill = warehouse_bill(metadata)
    assert bill is not None
    assert bill["bytes_billed"] == metadata["bytes_billed"]


async def test_a_timed_out_cohort_query_carries_its_cancelled_jobs_bill(
    bigquery: BigQueryServer, tmp_path: Path
) -> None:
    bigquery.hold_jobs = True  # each job runs until it is cancelled
    result = await _define(bigquery, tmp_path / "ws", query_timeout=0.5)
    assert result["is_error"] is True
    assert "ran past 0.5 s" in str(result["content"])
    (job_id,) = [k for k in bigquery.jobs if k.startswith("loopwright_cohort_")]
    assert bigquery.cancelled == [job_id]  # the timed-out job was stopped on the server
    assert result["metadata"]["bytes_billed"] == bigquery.jobs[job_id].bytes_billed == 10 * MB


async def test_the_agent_counts_a_cohorts_bill_in_its_usage(
    bigquery: BigQueryServer, tmp_path: Path
) -> None:
    model = ScriptedModel([call("DefineCohort", name="humira_ca", **CRITERIA), "Defined."])
    agent = Agent(
        model,
        tools=[DefineCohort(connect(_url(bigquery)))],
        store=MemoryStore(),
        workspace_root=str(tmp_path / "ws"),
    )
    try:
        result = await agent.collect("Define the cohort.", agent.new_session("c1"))
    finally:
        await agent.aclose()
    done = result.events[-1]
    assert isinstance(done, Done)
    assert done.stop_reason == "end_turn"
    warehouse = done.usage.warehouse
    assert warehouse is not None
    assert warehouse.bytes_billed == sum(job.bytes_billed for job in _cohort_jobs(bigquery))
    assert warehouse.queries == 1  # one billed call
