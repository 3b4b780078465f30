"""What BigQuery billed, where the model's usage and cost already show: the events of a run
(each query's ``tool_result``, the run's ``usage`` and ``done``), the CLI's ``--json`` lines,
the HTTP API (a run, a session, the session list, its usage) and the web UI.

The healthcare agent runs against the BigQuery stand-in (:mod:`sql.bigquery_server`), each
claims table far under 10 MB, so every table a query reads bills BigQuery's 10 MB minimum and
a result from BigQuery's cache bills nothing. On DuckDB nothing is billed per query, and the
wire shapes stay exactly what they were (no ``warehouse`` key anywhere).

Real runs: the ``loopwright`` CLI as a process, a real server on 127.0.0.1, headless Chromium.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli_process import cli_env, run_cli
from loopwright import Agent, MemoryStore, ScriptedModel, call
from loopwright.events import Done, Usage, event_from_dict
from loopwright.healthcare.agent import healthcare_agent
from loopwright.healthcare.data import build_database, connect_read_only
from loopwright.observability.stats import DEFAULT_BIGQUERY_USD_PER_TIB, WAREHOUSE_PRICE_ENV
from loopwright.server import create_app
from loopwright.tools.delegate import Delegate, SubAgent
from server.live import LiveServer, iter_sse, sleep, start_live, stream_turn
from sql.bigquery_server import BigQueryServer

MB = 1024 * 1024
TIB = 1024**4
COUNT_RX = "SELECT COUNT(*) AS n FROM RX_CLAIMS"
JOINED = (
    "SELECT p.state, COUNT(*) AS n FROM RX_CLAIMS r JOIN PROVIDERS_BIO p "
    "ON r.PRESCRIBER_NPI_NBR = p.npi_number GROUP BY 1"
)


def _cost(billed: int, usd_per_tib: float = DEFAULT_BIGQUERY_USD_PER_TIB) -> float:
    return billed / TIB * usd_per_tib


@pytest.fixture(scope="module")
def claims_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_database(tmp_path_factory.mktemp("claims") / "claims.duckdb", rx_claims=2_000)


@pytest.fixture
def bigquery(claims_db: Path) -> Iterator[BigQueryServer]:
    con = connect_read_only(claims_db)
    try:
        with BigQueryServer(project="test-project") as server:
            server.load_from("claims", con)
            server.query_cache = True
            yield server
    finally:
        con.close()


def _url(server: BigQueryServer) -> str:
    return f"bigquery://test-project/claims?api_endpoint={server.base_url}"


def _query(sql: str, name: str) -> dict[str, Any]:
    return {"call": "SQL", "input": {"sql": sql, "dataset_name": name, "description": name}}


def _sql(sql: str, name: str) -> Any:
    return call("SQL", sql=sql, dataset_name=name, description=name)


# --- the CLI's --json lines -------------------------------------------------------------------


def _json_run(
    home: Path, cwd: Path, database: str, turns: list[Any], session: str, **env: str
) -> list[dict[str, Any]]:
    script = cwd / f"{session}-{len(list(cwd.glob('*.json')))}.json"
    script.write_text(json.dumps(turns), encoding="utf-8")
    ran = run_cli(
        ["healthcare", "--database", database, "-m", f"scripted:{script}",
         "--session", session, "--json", "How many claims?"],
        env={**cli_env(home), **env},
        cwd=cwd,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    return [json.loads(line) for line in ran.stdout.splitlines() if line.strip()]


def test_json_events_carry_what_bigquery_billed(
    bigquery: BigQueryServer, loopwright_home: Path, tmp_path: Path
) -> None:
    """``--json``: each query's ``tool_result`` says what BigQuery billed for it; the run's
    ``usage`` and ``done`` events carry the run's bill (bytes, queries, cache hits, the cost
    at on-demand pricing) apart from the model's ``cost_usd``; a client rebuilds it with
    ``event_from_dict``. A result from BigQuery's cache bills 0 and says so."""
    turns = [_query(COUNT_RX, "rx_count"), _query(JOINED, "by_state"), "Counted."]
    events = _json_run(loopwright_home, tmp_path, _url(bigquery), turns, "wj")
    results = [e for e in events if e["type"] == "tool_result"]
    assert [r["warehouse"]["bytes_billed"] for r in results] == [10 * MB, 20 * MB]
    assert [r["warehouse"]["cache_hit"] for r in results] == [False, False]
    assert all(r["warehouse"]["database"] == "BigQuery" for r in results)
    assert results[1]["warehouse"]["cost_usd"] == pytest.approx(_cost(20 * MB))

    done = events[-1]
    assert done["type"] == "done"
    assert done["stop_reason"] == "end_turn"
    warehouse = done["usage"]["warehouse"]
    assert warehouse["database"] == "BigQuery"
    assert warehouse["queries"] == 2
    assert warehouse["cache_hits"] == 0
    assert warehouse["bytes_billed"] == 30 * MB
    assert warehouse["bytes_processed"] > 0
    assert warehouse["usd_per_tib"] == DEFAULT_BIGQUERY_USD_PER_TIB
    assert warehouse["cost_usd"] == pytest.approx(_cost(30 * MB))
    assert done["usage"]["cost_usd"] == 0.0  # the model's cost stays the model's
    # the usage event after the queries (the answer's model call) has the run's bill so far
    last_usage = [e for e in events if e["type"] == "usage"][-1]
    assert last_usage["run"]["warehouse"]["bytes_billed"] == 30 * MB
    rebuilt = event_from_dict(done)
    assert isinstance(rebuilt, Done)
    assert rebuilt.usage.warehouse is not None
    assert rebuilt.usage.warehouse.bytes_billed == 30 * MB
    assert rebuilt.usage.to_dict() == done["usage"]

    # the same query again: BigQuery's cache answers, billing nothing
    again = _json_run(
        loopwright_home, tmp_path, _url(bigquery), [_query(COUNT_RX, "again"), "Same."], "wj"
    )
    (result,) = [e for e in again if e["type"] == "tool_result"]
    assert result["warehouse"]["cache_hit"] is True
    assert result["warehouse"]["bytes_billed"] == 0
    billed = again[-1]["usage"]["warehouse"]
    assert (billed["queries"], billed["cache_hits"], billed["bytes_billed"]) == (1, 1, 0)


def test_json_events_with_an_unusable_price_still_carry_the_bytes(
    bigquery: BigQueryServer, loopwright_home: Path, tmp_path: Path
) -> None:
    """A price per TiB that is not a number: the run's events still say the bytes billed,
    with no estimate and why (never a crashed event stream)."""
    events = _json_run(
        loopwright_home, tmp_path, _url(bigquery), [_query(COUNT_RX, "n"), "Counted."], "wp",
        **{WAREHOUSE_PRICE_ENV: "six"},
    )  # fmt: skip
    warehouse = events[-1]["usage"]["warehouse"]
    assert warehouse["bytes_billed"] == 10 * MB
    assert warehouse["cost_usd"] is None
    assert WAREHOUSE_PRICE_ENV in warehouse["price_error"]
    (result,) = [e for e in events if e["type"] == "tool_result"]
    assert result["warehouse"]["bytes_billed"] == 10 * MB
    assert result["warehouse"]["cost_usd"] is None


def test_duckdb_events_keep_their_old_shape(
    claims_db: Path, loopwright_home: Path, tmp_path: Path
) -> None:
    """DuckDB bills nothing per query: no ``warehouse`` key in any event (the wire shapes
    are exactly the old ones)."""
    events = _json_run(
        loopwright_home, tmp_path, str(claims_db), [_query(COUNT_RX, "n"), "Counted."], "wd"
    )
    assert any(e["type"] == "tool_result" for e in events)
    assert "warehouse" not in json.dumps(events)
    assert set(events[-1]["usage"]) == set(Usage().to_dict())


# --- the HTTP API -----------------------------------------------------------------------------


def _bigquery_app(
    bigquery: BigQueryServer, tmp_path: Path, turns: list[Any], **options: Any
) -> Any:
    agent = healthcare_agent(
        ScriptedModel(turns),
        database=_url(bigquery),
        store=MemoryStore(),
        workspace_root=str(tmp_path / "workspaces"),
        **options,
    )
    return create_app(agent, shutdown_grace=0)


def test_the_api_says_what_bigquery_billed_per_run_and_per_session(
    bigquery: BigQueryServer, tmp_path: Path
) -> None:
    """The SSE stream carries each query's bill and the run's; a run's, a session's (its
    details, the list, ``/usage``) usage carries the warehouse figures, the session's adding
    up its turns."""
    turns = [
        [_sql(COUNT_RX, "rx_count"), _sql(JOINED, "by_state")],
        "Counted.",
        _sql(COUNT_RX, "again"),
        "Same.",
    ]
    live = start_live(_bigquery_app(bigquery, tmp_path, turns))
    try:
        with live.client() as client:
            session_id = client.post("/api/sessions").json()["id"]
            response, events = stream_turn(client, session_id, "How many claims, by state?")
            assert response.status_code == 200
            billed = sorted(
                e.data["warehouse"]["bytes_billed"] for e in events if e.event == "tool_result"
            )
            assert billed == [10 * MB, 20 * MB]
            done = events[-1].data
            assert done["type"] == "done"
            assert done["usage"]["warehouse"]["bytes_billed"] == 30 * MB
            assert done["usage"]["warehouse"]["cost_usd"] == pytest.approx(_cost(30 * MB))

            details = client.get(f"/api/sessions/{session_id}").json()
            assert details["run"]["usage"]["warehouse"]["bytes_billed"] == 30 * MB
            assert details["usage"]["warehouse"]["queries"] == 2

            response, events = stream_turn(client, session_id, "And again?")
            assert response.status_code == 200
            assert events[-1].data["usage"]["warehouse"]["cache_hits"] == 1

            details = client.get(f"/api/sessions/{session_id}").json()
            run = details["run"]["usage"]["warehouse"]
            assert (run["queries"], run["cache_hits"], run["bytes_billed"]) == (1, 1, 0)
            whole = details["usage"]["warehouse"]
            assert (whole["queries"], whole["cache_hits"]) == (3, 1)
            assert whole["bytes_billed"] == 30 * MB
            assert whole["cost_usd"] == pytest.approx(_cost(30 * MB))
            assert details["usage"]["cost_usd"] == 0.0  # the model's, apart
            usage = client.get(f"/api/sessions/{session_id}/usage").json()
            assert usage["usage"]["warehouse"] == whole
            (listed,) = client.get("/api/sessions").json()["sessions"]
            assert listed["usage"]["warehouse"]["bytes_billed"] == 30 * MB
    finally:
        live.stop()


def test_a_run_stopped_after_its_query_still_reports_the_bill(
    bigquery: BigQueryServer, tmp_path: Path
) -> None:
    """A turn stopped at its turn limit right after a query (no model call after it, so no
    usage event said it): the run's usage the API reports includes what the query billed."""
    live = start_live(
        _bigquery_app(bigquery, tmp_path, [_sql(JOINED, "by_state"), "unused"], max_turns=1)
    )
    try:
        with live.client() as client:
            session_id = client.post("/api/sessions").json()["id"]
            response, events = stream_turn(client, session_id, "By state?")
            assert response.status_code == 200
            assert events[-1].data["stop_reason"] == "max_turns"
            assert events[-1].data["usage"]["warehouse"]["bytes_billed"] == 20 * MB
            run = client.get(f"/api/sessions/{session_id}").json()["run"]
            assert run["stop_reason"] == "max_turns"
            assert run["usage"]["warehouse"]["bytes_billed"] == 20 * MB
    finally:
        live.stop()


def test_a_run_cancelled_mid_query_reports_what_the_stopped_job_billed(
    bigquery: BigQueryServer, tmp_path: Path
) -> None:
    """Cancelled through the API while its query runs: the job is cancelled on BigQuery,
    which bills it for what it processed. The server built the done event from the usage
    events it had seen, which never heard of that bill; it now takes the run's own usage."""
    import time

    bigquery.hold_jobs = True  # the query runs until it is cancelled
    live = start_live(_bigquery_app(bigquery, tmp_path, [_sql(COUNT_RX, "held"), "unused"]))
    try:
        with live.client() as client:
            session_id = client.post("/api/sessions").json()["id"]
            run = client.post(
                f"/api/sessions/{session_id}/messages",
                params={"stream": "false"},
                json={"content": "How many claims?"},
            ).json()
            deadline = time.monotonic() + 30
            while not bigquery.jobs and time.monotonic() < deadline:  # the job is running
                time.sleep(0.05)
            assert bigquery.jobs
            assert client.post(f"/api/sessions/{session_id}/cancel").status_code == 200
            with client.stream("GET", run["events_url"]) as response:
                events = list(iter_sse(response))
            (job_id,) = bigquery.jobs
            assert bigquery.cancelled == [job_id]
            billed = bigquery.jobs[job_id].bytes_billed
            assert billed == 10 * MB
            done = events[-1].data
            assert done["stop_reason"] == "cancelled"
            assert done["usage"]["warehouse"]["bytes_billed"] == billed
            details = client.get(f"/api/sessions/{session_id}").json()
            assert details["run"]["usage"]["warehouse"]["bytes_billed"] == billed
            assert details["usage"]["warehouse"]["bytes_billed"] == billed
    finally:
        live.stop()


def test_duckdb_sessions_report_no_warehouse(claims_db: Path, tmp_path: Path) -> None:
    """On DuckDB, the API's events and usage have no ``warehouse`` at all."""
    agent = healthcare_agent(
        ScriptedModel([_sql(COUNT_RX, "n"), "Counted."]),
        database=claims_db,
        store=MemoryStore(),
        workspace_root=str(tmp_path / "workspaces"),
    )
    live = start_live(create_app(agent, shutdown_grace=0))
    try:
        with live.client() as client:
            session_id = client.post("/api/sessions").json()["id"]
            response, events = stream_turn(client, session_id, "How many?")
            assert response.status_code == 200
            assert any(e.event == "tool_result" for e in events)
            assert all("warehouse" not in json.dumps(e.data) for e in events)
            details = client.get(f"/api/sessions/{session_id}").json()
            assert "warehouse" not in details["usage"]
            assert "warehouse" not in details["run"]["usage"]
    finally:
        live.stop()


def test_a_sub_agents_usage_events_are_not_taken_for_the_turns(tmp_path: Path) -> None:
    """A sub-agent's ``usage`` events (tagged with its ``agent``) carry its own run's figures.
    The server took the latest of them for the turn's usage: while a sub-agent worked, the
    run's usage the API reported was the sub-agent's (its 2 model calls, not the turn's 1);
    the turn's own figures stay, and the sub-agent's are added when it ends."""
    child = ScriptedModel([call("sleep", seconds=0), call("sleep", seconds=2, step=2), "ok"])
    delegate = Delegate([SubAgent("worker", "Waits.", tools=["sleep"], model=child)])
    agent = Agent(
        ScriptedModel([call("Delegate", agent="worker", task="wait"), "Delegated."]),
        tools=[delegate, sleep],
        store=MemoryStore(),
        workspace_root=str(tmp_path / "workspaces"),
    )
    live = start_live(create_app(agent, shutdown_grace=0))
    try:
        with live.client() as client, live.client() as other:
            session_id = client.post("/api/sessions").json()["id"]
            seen: dict[str, Any] = {}
            with client.stream(
                "POST", f"/api/sessions/{session_id}/messages", json={"content": "go"}
            ) as response:
                assert response.status_code == 200
                for sse in iter_sse(response):
                    data = sse.data
                    if sse.event == "usage" and data.get("agent"):
                        seen["sub_agent_calls"] = data["run"]["model_calls"]
                    if sse.event == "tool_call" and data["input"].get("step") == 2:
                        run = other.get(f"/api/sessions/{session_id}").json()["run"]
                        seen["mid_run"] = run["usage"]["model_calls"]
                        seen["sub_agent_then"] = seen["sub_agent_calls"]
                    if sse.event == "done":
                        seen["done"] = data["usage"]["model_calls"]
        assert seen["sub_agent_then"] == 2  # the sub-agent's own run, so far
        assert seen["mid_run"] == 1  # the turn's: its one model call so far
        assert seen["done"] == 5  # the turn's two model calls and the sub-agent's three
    finally:
        live.stop()


# --- the web UI -------------------------------------------------------------------------------

CHROMIUM = "/usr/bin/chromium"


def _chromium() -> str | None:
    return CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")


@pytest.mark.skipif(_chromium() is None, reason="chromium is not installed")
def test_the_web_ui_shows_the_bill_next_to_the_model_cost(
    bigquery: BigQueryServer, claims_db: Path, tmp_path: Path
) -> None:
    """The page shows what BigQuery billed next to the model's cost, for the session, and
    each query's bill on its tool card; a DuckDB session shows no such thing."""
    sync_api = pytest.importorskip("playwright.sync_api")
    turns = [[_sql(COUNT_RX, "rx_count"), _sql(JOINED, "by_state")], "Counted."]
    live = start_live(_bigquery_app(bigquery, tmp_path, turns))
    duck = healthcare_agent(
        ScriptedModel([_sql(COUNT_RX, "n"), "Counted."]),
        database=claims_db,
        store=MemoryStore(),
        workspace_root=str(tmp_path / "duck"),
    )
    live_duck = start_live(create_app(duck, shutdown_grace=0))
    try:
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=_chromium(), args=["--headless", "--no-sandbox"]
            )
            try:
                page = _open(browser, live)
                page.fill("#prompt", "How many claims, by state?")
                page.keyboard.press("Enter")
                sync_api.expect(page.locator(".tool-card.ok")).to_have_count(2)
                states = page.locator(".tool-card .tool-state")
                sync_api.expect(states.nth(0)).to_contain_text("10 MB billed")
                sync_api.expect(states.nth(1)).to_contain_text("20 MB billed")
                sync_api.expect(page.locator("#send")).to_be_enabled()
                usage = page.locator("#usage")
                sync_api.expect(usage).to_contain_text(
                    "$0.0000 \u00b7 BigQuery 30 MB billed (2 queries) \u2248 $0.0002"
                )
                # opened again: the session's usage from the API says it too
                page.reload()
                sync_api.expect(usage).to_contain_text("BigQuery 30 MB billed (2 queries)")

                page = _open(browser, live_duck)
                page.fill("#prompt", "How many?")
                page.keyboard.press("Enter")
                sync_api.expect(page.locator(".tool-card.ok")).to_have_count(1)
                sync_api.expect(page.locator("#send")).to_be_enabled()
                sync_api.expect(usage := page.locator("#usage")).to_contain_text("1 tool calls")
                assert "billed" not in usage.inner_text()
                assert "billed" not in page.locator(".tool-card").inner_text()
            finally:
                browser.close()
    finally:
        live.stop()
        live_duck.stop()


def _open(browser: Any, live: LiveServer) -> Any:
    page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
    page.set_default_timeout(15_000)
    page.goto(live.base_url + "/")
    page.wait_for_function("document.querySelector('#session-select') !== null")
    return page
