"""What an analyst (or their operations team) sees of the healthcare agent's work: the
OpenTelemetry spans of its SQL, DefineCohort and Python calls, the ``DEBUG=1`` and JSON log
lines, the usage report of a session whose run was interrupted, and how the redaction policy
applies to what traces and logs record. The real agent on the small claims database, driven
by scripted models; the CLI as a process where the user runs it.
"""

from __future__ import annotations

import asyncio
import io
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from cli_process import cli_env, run_cli
from loopwright import MemoryStore
from loopwright.events import ToolCall
from loopwright.healthcare.agent import healthcare_agent
from loopwright.models.scripted import ScriptedModel, call
from loopwright.observability.logs import LogInstrument, reset_logging
from loopwright.observability.reports import build_report
from loopwright.observability.stats import StatsRecorder, read_records
from loopwright.observability.tracing import TracingInstrument
from loopwright.policy import Policy

#: A secret-looking value the redaction policy knows (an Anthropic key's format).
SECRET = "sk-ant-" + "a1B2c3D4e5" * 4
COUNT = {"sql": "SELECT COUNT(*) AS n FROM RX_CLAIMS", "dataset_name": "n", "description": "n"}


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    found = InMemorySpanExporter()
    yield found
    found.clear()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> Iterator[TracerProvider]:
    made = TracerProvider()
    made.add_span_processor(SimpleSpanProcessor(exporter))
    yield made
    made.shutdown()


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    yield stream
    reset_logging()


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


def _tool_spans(exporter: InMemorySpanExporter) -> dict[str, ReadableSpan]:
    """The ``execute_tool`` spans by their call id."""
    return {
        str(_attrs(s)["gen_ai.tool.call.id"]): s
        for s in exporter.get_finished_spans()
        if s.name.startswith("execute_tool ")
    }


def _call_ids(messages: list[Any]) -> list[str]:
    return [use.id for message in messages for use in message.tool_uses]


# --- spans ----------------------------------------------------------------------------------


def test_sql_and_cohort_spans_say_rows_database_and_refusals(
    claims_db: Path, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """A trace backend shows what each query returned and where it ran: the rows (and
    whether the row cap cut them), the database system, the cohort's size; a refused DML
    statement is an error span saying why. Only the tool name, call id and output size were
    there: the rows were nowhere in the trace."""
    turns = [
        [
            call("SQL", COUNT),
            call("SQL", sql="DELETE FROM RX_CLAIMS", dataset_name="d", description="d"),
            call(
                "SQL",
                sql="SELECT CLAIM_ID FROM RX_CLAIMS ORDER BY 1",
                dataset_name="ids",
                description="all ids",
            ),
            call("DefineCohort", name="ra", drugs=["HUMIRA"]),
        ],
        "Done.",
    ]
    agent = healthcare_agent(
        ScriptedModel(turns),
        database=claims_db,
        store=MemoryStore(),
        max_rows=5,
        instruments=[TracingInstrument(provider)],
    )
    result = agent.run_sync("How many claims?")
    assert result.stop_reason == "end_turn"
    count_id, delete_id, ids_id, cohort_id = _call_ids(result.session.messages)
    spans = _tool_spans(exporter)

    count = _attrs(spans[count_id])
    assert count["gen_ai.tool.name"] == "SQL"
    assert count["db.system.name"] == "duckdb"
    assert count["db.response.returned_rows"] == 1
    assert count["loopwright.sql.truncated"] is False
    assert count["loopwright.sql.dataset"] == "n"
    assert spans[count_id].status.status_code == StatusCode.UNSET

    capped = _attrs(spans[ids_id])
    assert capped["db.response.returned_rows"] == 5
    assert capped["loopwright.sql.truncated"] is True

    cohort = _attrs(spans[cohort_id])
    assert cohort["db.system.name"] == "duckdb"
    patients = cohort["loopwright.cohort.patients"]
    assert isinstance(patients, int)
    assert patients > 0
    assert cohort["db.response.returned_rows"] == patients
    assert cohort["loopwright.cohort.claims"] >= patients

    refused = spans[delete_id]
    assert refused.status.status_code == StatusCode.ERROR
    assert "DELETE statements are not allowed" in (refused.status.description or "")
    assert _attrs(refused)["error.type"] == "ToolError"
    assert "db.response.returned_rows" not in _attrs(refused)
    # privacy by default: no query text without record_content
    assert all("db.query.text" not in _attrs(s) for s in spans.values())


def test_bigquery_sql_spans_carry_the_bytes_scanned(
    provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """On BigQuery, what a query cost to scan is on its span (as the model is told)."""
    from sql.bigquery_server import BigQueryServer

    with BigQueryServer(project="test-project") as server:
        server.setup(
            "CREATE SCHEMA claims; CREATE TABLE claims.RX_CLAIMS (PRESCRIBER_NPI_NBR VARCHAR, "
            "NDC_DRUG_NM VARCHAR, PRESCRIBER_NPI_STATE_CD VARCHAR, SERVICE_DATE_DD DATE); "
            "INSERT INTO claims.RX_CLAIMS VALUES ('1', 'HUMIRA', 'CA', '2024-01-01'), "
            "('2', 'HUMIRA', 'NY', '2024-02-01');"
        )
        url = f"bigquery://test-project/claims?api_endpoint={server.base_url}"
        query = "SELECT NDC_DRUG_NM, COUNT(*) AS n FROM RX_CLAIMS GROUP BY 1"
        agent = healthcare_agent(
            ScriptedModel([call("SQL", sql=query, dataset_name="d", description="d"), "ok"]),
            database=url,
            store=MemoryStore(),
            instruments=[TracingInstrument(provider)],
        )
        result = agent.run_sync("Which drugs?")
    assert result.stop_reason == "end_turn"
    (span,) = _tool_spans(exporter).values()
    found = _attrs(span)
    assert found["db.system.name"] == "gcp.bigquery"
    assert found["db.response.returned_rows"] == 1
    scanned = found["loopwright.sql.bytes_scanned"]
    assert isinstance(scanned, int)
    assert scanned > 0
    (answer,) = result.session.messages[2].tool_results
    assert f"Scanned {scanned} bytes." in answer.text


def test_recorded_contents_follow_the_redaction_policy_and_are_cut(
    claims_db: Path, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """With contents recorded, a trace holds what the audit log holds: the SQL and Python
    code redacted by the agent's policy, and no string so long that the span outgrows what a
    collector accepts. The secret went to the trace backend verbatim (while the audit log
    redacted it), and a 200,000-character query was copied whole into its span and into every
    later chat span's input messages."""
    huge = f"SELECT '{SECRET}' AS k, 1 AS x -- " + "x" * 200_000
    turns = [
        [call("SQL", sql=huge, dataset_name="k", description="k")],
        call("Python", code=f"print('{SECRET}'[:3])"),
        "Done.",
    ]
    agent = healthcare_agent(
        ScriptedModel(turns),
        database=claims_db,
        store=MemoryStore(),
        policy=Policy(redact=True, audit=True),
        instruments=[TracingInstrument(provider, record_content=True)],
    )
    result = agent.run_sync(f"Use the key {SECRET}")
    assert result.stop_reason == "end_turn"

    spans = exporter.get_finished_spans()
    limit = 32_000 + 1000  # a string cut at 32,000 characters, its note and the JSON around it
    for span in spans:
        for key, value in _attrs(span).items():
            text = str(value)
            assert SECRET not in text, (span.name, key)
            assert len(text) < limit or key == "gen_ai.input.messages", (span.name, key)
            if key in ("gen_ai.tool.call.arguments", "gen_ai.input.messages"):
                json.loads(text)  # still JSON for the backend to show
    sql_id, python_id = _call_ids(result.session.messages)
    tools = _tool_spans(exporter)
    arguments = json.loads(str(_attrs(tools[sql_id])["gen_ai.tool.call.arguments"]))
    assert arguments["sql"].startswith("SELECT '[REDACTED:anthropic_key]' AS k")
    assert re.search(r"\.\.\. \[[\d,]+ more characters\]$", arguments["sql"])
    assert str(_attrs(tools[sql_id])["db.query.text"]).startswith("SELECT '[REDACTED:")
    code = json.loads(str(_attrs(tools[python_id])["gen_ai.tool.call.arguments"]))["code"]
    assert code == "print('[REDACTED:anthropic_key]'[:3])"
    last_chat = [s for s in spans if s.name.startswith("chat ")][-1]
    assert len(str(_attrs(last_chat)["gen_ai.input.messages"])) < 4 * limit

    # the audit log, the reference: the same redaction
    audit = Path(result.session.workspace_dir) / ".loopwright" / "audit.jsonl"
    assert SECRET not in audit.read_text(encoding="utf-8")


# --- logs -----------------------------------------------------------------------------------


def test_log_lines_say_the_rows_of_each_query_and_redact_the_sql(
    claims_db: Path, log_stream: io.StringIO
) -> None:
    """One line per SQL call with its duration and rows (DEBUG=1), ``rows`` in the JSON
    lines; the SQL shown on the ``→`` line is redacted as the audit log's. The lines said
    only the output's size in characters, and printed the secret in the query."""
    turns = [
        [
            call("SQL", COUNT),
            call("SQL", sql=f"SELECT '{SECRET}' AS k", dataset_name="k", description="k"),
            call("DefineCohort", name="ra", drugs=["HUMIRA"]),
        ],
        "Done.",
    ]
    agent = healthcare_agent(
        ScriptedModel(turns),
        database=claims_db,
        store=MemoryStore(),
        policy=Policy(redact=True),
        instruments=[LogInstrument("text", stream=log_stream)],
    )
    assert agent.run_sync("How many?").stop_reason == "end_turn"
    lines = log_stream.getvalue().splitlines()
    assert not any(SECRET in line for line in lines)
    assert any("→ SQL SELECT '[REDACTED:anthropic_key]' AS k" in line for line in lines)
    sql_lines = [line for line in lines if "✓ SQL" in line]
    assert len(sql_lines) == 2
    assert all(re.search(r"✓ SQL \d+ ms, 1 row, ", line) for line in sql_lines)
    (cohort,) = [line for line in lines if "✓ DefineCohort" in line]
    assert re.search(r"✓ DefineCohort \d+ ms, [\d,]+ patients, ", cohort)

    reset_logging()
    json_stream = io.StringIO()
    agent = healthcare_agent(
        ScriptedModel([call("SQL", COUNT), "Done."]),
        database=claims_db,
        store=MemoryStore(),
        max_rows=5,
        instruments=[LogInstrument("json", stream=json_stream)],
    )
    assert agent.run_sync("How many?").stop_reason == "end_turn"
    records = [json.loads(line) for line in json_stream.getvalue().splitlines()]
    (sql,) = [r for r in records if r["event"] == "tool_call"]
    assert (sql["tool_name"], sql["rows"], sql["success"]) == ("SQL", 1, True)
    assert isinstance(sql["duration_ms"], float)
    assert "truncated" not in sql


def test_debug_says_a_model_failure_once_without_a_traceback(
    claims_db: Path, loopwright_home: Path, tmp_path: Path
) -> None:
    """``DEBUG=1 loopwright healthcare`` whose model fails: the failure is one log line, not
    the failed call's line, then an error line, then the run's end line, all saying it."""
    script = tmp_path / "short.json"
    script.write_text(json.dumps([{"call": "SQL", "input": COUNT}]), encoding="utf-8")
    env = cli_env(loopwright_home)
    env["DEBUG"] = "1"
    done = run_cli(
        ["healthcare", "--database", str(claims_db), "-m", f"scripted:{script}", "How many?"],
        env=env,
        cwd=tmp_path,
    )
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    said = [line for line in done.stderr.splitlines() if "ran out of turns" in line]
    assert len(said) == 1, said
    assert "✗ scripted:short.json failed after" in said[0]
    assert re.search(r"✓ SQL \d+ ms, 1 row, ", done.stderr)
    assert "■ done error · 1 model call · 1 tool call" in done.stderr


# --- an interrupted run ---------------------------------------------------------------------


def test_a_call_stopped_with_its_run_is_not_reported_as_a_failure(
    claims_db: Path, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    """Ctrl-C while the Python tool runs: the logs say the call was stopped (not "✗ Python
    failed"), its span is cancelled (not an error), the audit log has it once, and the
    session's report agrees with the session's usage (the stopped call counted apart). The
    report said 2 tool calls and 1 error where the session's usage said 1 and 0."""
    stream = io.StringIO()
    flag = "python-started.txt"
    code = f"import time\nopen({flag!r}, 'w').close()\ntime.sleep(60)"
    turns = [[call("SQL", COUNT), call("Python", code=code)], "never reached"]
    agent = healthcare_agent(
        ScriptedModel(turns),
        database=claims_db,
        store=MemoryStore(),
        policy=Policy(audit=True),
        instruments=[
            TracingInstrument(provider),
            LogInstrument("json", stream=stream),
            StatsRecorder(),
        ],
    )
    session = agent.new_session()
    workspace = Path(session.workspace_dir)

    async def interrupted() -> None:
        async def consume() -> None:
            async for event in agent.run("Count, then analyse", session):
                if isinstance(event, ToolCall) and event.name == "Python":
                    started.set()

        started = asyncio.Event()
        task = asyncio.create_task(consume())
        await started.wait()
        for _ in range(1200):  # until the sandboxed Python runs (a minute at most)
            if (workspace / flag).exists():
                break
            await asyncio.sleep(0.05)
        assert (workspace / flag).exists()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await agent.aclose()

    try:
        asyncio.run(interrupted())
    finally:
        reset_logging()
    sql_id, python_id = _call_ids(session.messages)

    records = [json.loads(line) for line in stream.getvalue().splitlines()]
    (python,) = [r for r in records if r.get("tool_call_id") == python_id]
    assert python["level"] == "info"
    assert python["error"] == "cancelled"
    assert python["message"].startswith("· Python stopped after")
    (done,) = [r for r in records if r["event"] == "run_finished"]
    assert done["stop_reason"] == "cancelled"

    span = _tool_spans(exporter)[python_id]
    assert span.status.status_code == StatusCode.UNSET
    assert _attrs(span)["loopwright.cancelled"] is True

    audit = [
        json.loads(line)
        for line in (workspace / ".loopwright" / "audit.jsonl").read_text().splitlines()
    ]
    assert sorted(r["tool_call_id"] for r in audit) == sorted([sql_id, python_id])
    assert {r["session_id"] for r in audit} == {session.id}
    assert [r.get("cancelled") for r in audit if r["tool_call_id"] == python_id] == [True]

    stats = [r for r in read_records(workspace) if r.get("id") == python_id]
    assert [r.get("cancelled") for r in stats] == [True]
    report = build_report(session)
    assert (report.tool_calls, report.tool_errors) == (
        session.usage.tool_calls,
        session.usage.tool_errors,
    )
    assert (report.tool_calls, report.tool_errors, report.tool_interrupted) == (1, 0, 1)
    tools = {t.name: t for t in report.tools}
    assert (tools["Python"].calls, tools["Python"].interrupted) == (0, 1)
    assert report.to_dict()["tool_interrupted"] == 1
