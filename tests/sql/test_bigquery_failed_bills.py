"""A BigQuery job that ran was billed, even when the SQL call then failed or was cancelled.

BigQuery bills a finished job whatever becomes of its result, and may bill a cancelled one for
what it processed (jobs.cancel's reference: "Cancelled jobs may still incur costs"); a query
that failed with an error, or that ``maximum_bytes_billed`` refused, is not billed. The SQL
tool's error result carries the bill in its metadata as a result does, so the agent counts it
in ``Usage.warehouse``; a call cancelled with its run counts it in the run's usage. The
figures are the stand-in's own, from its jobs (:mod:`.bigquery_server`), through the real
``google.cloud.bigquery`` client.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from google.api_core.client_options import ClientOptions
from google.auth.credentials import AnonymousCredentials
from google.cloud import bigquery

from loopwright import Agent, MemoryStore, ScriptedModel, call
from loopwright.events import Done, ToolResult, warehouse_bill
from loopwright.sql import BigQueryBackend, Interrupter, QueryTimeout
from loopwright.tools.sql import SQL, SQLTool

from .bigquery_server import BigQueryServer

MB = 1024 * 1024
COUNT = "SELECT COUNT(*) AS n FROM rx_claims"
ROWS = "SELECT claim_id, ndc_drug_nm FROM rx_claims ORDER BY claim_id"


@pytest.fixture
async def backend(bigquery_server: BigQueryServer) -> AsyncIterator[BigQueryBackend]:
    client = bigquery.Client(
        project="test-project",
        credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        client_options=ClientOptions(api_endpoint=bigquery_server.base_url),
    )
    backend = BigQueryBackend("test-project", "claims", client=client, page_rows=100)
    yield backend
    await backend.aclose()
    client.close()  # type: ignore[no-untyped-call]


async def run(tool: SQLTool, sql: str, name: str = "result") -> dict[str, Any]:
    return dict(await tool.execute({"sql": sql, "dataset_name": name, "description": "test"}))


def job_bill(server: BigQueryServer) -> int:
    """What the stand-in billed for the one query job it ran."""
    (job,) = server.jobs.values()
    return job.bytes_billed


# --- the SQL tool's error results -------------------------------------------------------------


async def test_a_timed_out_job_is_cancelled_and_its_bill_carried(
    backend: BigQueryBackend, bigquery_server: BigQueryServer, workspace: Path
) -> None:
    """The query outlives the tool's timeout: its job is cancelled on the server (one
    jobs.cancel), and the error carries what the cancelled job reports it billed."""
    bigquery_server.hold_jobs = True  # runs until cancelled
    result = await run(SQLTool(workspace, backend=backend, timeout=0.5), COUNT)
    assert result["is_error"] is True
    assert "stopped after 0.5 s" in str(result["content"])
    (job_id,) = bigquery_server.jobs
    assert bigquery_server.cancelled == [job_id]
    assert bigquery_server.jobs[job_id].error is not None  # stopped, not finished
    metadata = result["metadata"]
    assert metadata["bytes_billed"] == job_bill(bigquery_server) == 10 * MB
    assert metadata["cache_hit"] is False
    assert metadata["bytes_scanned"] == bigquery_server.jobs[job_id].bytes_processed > 0
    assert warehouse_bill(metadata) == {
        "database": "BigQuery",
        "bytes_billed": 10 * MB,
        "bytes_scanned": metadata["bytes_scanned"],
        "cache_hit": False,
    }


async def test_a_job_stopped_as_it_starts_is_cancelled_and_its_bill_told(
    backend: BigQueryBackend, bigquery_server: BigQueryServer
) -> None:
    """The stop comes while jobs.insert is being answered, the job running on the server
    already: it is cancelled as soon as its id is known, and what it billed is told."""
    from loopwright.sql.base import Bill

    bigquery_server.hold_jobs = True
    bigquery_server.insert_gate.clear()
    bills: list[Bill] = []
    stop = Interrupter(on_bill=bills.append)
    starting = asyncio.create_task(asyncio.to_thread(backend.start, COUNT, stop, 30.0))
    for _ in range(1000):  # until the job exists (its insert is held), 10 s at most
        if bigquery_server.jobs:
            break
        await asyncio.sleep(0.01)
    stop.stop()
    bigquery_server.insert_gate.set()
    with pytest.raises(QueryTimeout):
        await starting
    (job_id,) = bigquery_server.jobs
    assert bigquery_server.cancelled == [job_id]
    processed = bigquery_server.jobs[job_id].bytes_processed
    assert bills == [Bill(job_bill(bigquery_server), processed, False)]
    assert bills[0].bytes_billed == 10 * MB


async def test_a_timeout_while_the_result_is_read_carries_the_finished_jobs_bill(
    backend: BigQueryBackend, bigquery_server: BigQueryServer, workspace: Path
) -> None:
    """The job finished (and was billed) but its 20 pages come slowly: the timeout strikes
    while they are read, and the error carries the finished job's bill."""
    bigquery_server.page_delay = 0.1
    result = await run(SQLTool(workspace, backend=backend, timeout=0.5), ROWS)
    assert result["is_error"] is True
    assert "stopped after 0.5 s" in str(result["content"])
    (job,) = bigquery_server.jobs.values()
    assert job.error is None  # it finished: nothing was cancelled
    assert bigquery_server.cancelled == []
    assert result["metadata"]["bytes_billed"] == job_bill(bigquery_server) == 10 * MB
    assert not (workspace / "result.csv").exists()


@pytest.mark.parametrize("failing_row", [0, 550], ids=["first page", "a later page"])
async def test_a_result_that_cannot_be_read_carries_the_bill(
    backend: BigQueryBackend,
    bigquery_server: BigQueryServer,
    workspace: Path,
    failing_row: int,
) -> None:
    """Reading a finished job's rows fails (BigQuery's responseTooLarge), on the first page
    (as the job's result is fetched) or a later one (as the files are written): the job was
    billed all the same, and the error says so in its metadata."""
    bigquery_server.failing_row = failing_row
    result = await run(SQLTool(workspace, backend=backend), ROWS)
    assert result["is_error"] is True
    assert "Response too large to return" in str(result["content"])
    assert result["metadata"]["bytes_billed"] == job_bill(bigquery_server) == 10 * MB
    assert bigquery_server.cancelled == []  # a finished job is not cancelled


async def test_a_result_that_cannot_be_saved_carries_the_bill(
    backend: BigQueryBackend, bigquery_server: BigQueryServer, workspace: Path
) -> None:
    """The job ran and billed, then the CSV could not be put in place (a directory of that
    name is in the way): the error carries the bill."""
    (workspace / "result.csv").mkdir()
    result = await run(SQLTool(workspace, backend=backend), COUNT)
    assert result["is_error"] is True
    assert "could not be saved" in str(result["content"])
    assert result["metadata"]["bytes_billed"] == job_bill(bigquery_server) == 10 * MB


async def test_failed_and_refused_queries_carry_no_bill(
    bigquery_server: BigQueryServer, workspace: Path
) -> None:
    """BigQuery bills neither a query that fails with an error nor one ``maximum_bytes_billed``
    refuses: their errors carry no bill, and nothing is counted."""
    capped = BigQueryBackend(
        "test-project",
        "claims",
        api_endpoint=bigquery_server.base_url,
        maximum_bytes_billed=15 * MB,
    )
    try:
        tool = SQLTool(workspace, backend=capped)
        failed = await run(tool, "SELECT CAST(ndc_drug_nm AS INT64) AS n FROM rx_claims")
        refused = await run(
            tool,
            "SELECT COUNT(*) AS n FROM rx_claims JOIN providers_bio "
            "ON prescriber_npi_nbr = npi_number",
        )
    finally:
        await capped.aclose()
    for result in (failed, refused):
        assert result["is_error"] is True
        assert warehouse_bill(result.get("metadata")) is None
    assert "Could not convert" in str(failed["content"])
    assert "would bill at least" in str(refused["content"])


# --- counted in the run's usage ---------------------------------------------------------------


def _query_then_answer(sql: str) -> Any:
    def answer(request: Any) -> Any:
        done = any(
            getattr(block, "type", None) == "tool_result"
            for message in request.messages
            for block in getattr(message, "content", [])
        )
        if done:
            return "The query did not finish."
        return call("SQL", sql=sql, dataset_name="result", description="count")

    return answer


async def test_the_agent_counts_a_failed_calls_bill(
    backend: BigQueryBackend, bigquery_server: BigQueryServer, tmp_path: Path
) -> None:
    """A turn whose only query timed out: its tool result event carries the bill, and the
    run's usage (``Done.usage.warehouse``) and the session's count it."""
    bigquery_server.hold_jobs = True
    agent = Agent(
        ScriptedModel(_query_then_answer(COUNT)),
        tools=[SQL(backend, timeout=0.5)],
        store=MemoryStore(),
        workspace_root=str(tmp_path / "sessions"),
    )
    try:
        session = agent.new_session("timed-out")
        events = [e async for e in agent.run("How many claims?", session)]
    finally:
        await agent.aclose()
    (result,) = [e for e in events if isinstance(e, ToolResult)]
    assert result.is_error is True
    assert result.warehouse is not None
    assert result.warehouse["bytes_billed"] == 10 * MB
    done = events[-1]
    assert isinstance(done, Done)
    assert done.stop_reason == "end_turn"
    assert done.usage.warehouse is not None
    assert done.usage.warehouse.queries == 1
    assert done.usage.warehouse.bytes_billed == job_bill(bigquery_server) == 10 * MB
    assert session.usage.warehouse is not None
    assert session.usage.warehouse.bytes_billed == 10 * MB
    assert len(bigquery_server.cancelled) == 1


async def test_a_call_cancelled_with_its_run_is_counted_in_the_runs_usage(
    backend: BigQueryBackend, bigquery_server: BigQueryServer, tmp_path: Path
) -> None:
    """The run's time limit ends it while its query runs: the query's job is cancelled on the
    server, no result comes back, and ``Done.usage`` still counts what the job billed."""
    bigquery_server.hold_jobs = True
    agent = Agent(
        ScriptedModel(_query_then_answer(COUNT)),
        tools=[SQL(backend, timeout=60)],
        store=MemoryStore(),
        workspace_root=str(tmp_path / "sessions"),
        timeout=1.0,
    )
    try:
        session = agent.new_session("cancelled")
        events = [e async for e in agent.run("How many claims?", session)]
    finally:
        await agent.aclose()
    assert not [e for e in events if isinstance(e, ToolResult)]
    done = events[-1]
    assert isinstance(done, Done)
    assert done.stop_reason == "timeout"
    (job_id,) = bigquery_server.jobs
    assert bigquery_server.cancelled == [job_id]
    assert done.usage.warehouse is not None
    assert done.usage.warehouse.queries == 1
    assert done.usage.warehouse.bytes_billed == job_bill(bigquery_server) == 10 * MB
    assert session.usage.warehouse is not None
    assert session.usage.warehouse.bytes_billed == 10 * MB
