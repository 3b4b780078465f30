"""Where patient-level values go when the healthcare agent runs a query that returns them.

The SQL tool's preview (the first rows) is what the model reads, so it goes to the model's
provider, and from the session into traces (with contents on), the audit log's result preview,
stored sessions, HTML transcripts and the web UI. The preview showed ``PATIENT_ID`` values as
they are (also renamed, inside a whole row, as SUMMARIZE's minimum and maximum): the prompt
asked the model not to repeat them, but the values had already left. Now the healthcare agent
masks direct identifiers in what the model sees (saying what and why), while the workspace
files keep every value for the analyst; aggregates and provider NPIs are shown as they are.
The real agent on the generated claims database, driven by scripted models; the CLI as a
process.
"""

from __future__ import annotations

import asyncio
import csv
import json
from pathlib import Path
from typing import Any

import duckdb
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from cli_process import cli_env, run_cli
from loopwright import MemoryStore
from loopwright.healthcare.agent import healthcare_agent
from loopwright.models.scripted import ScriptedModel, call
from loopwright.observability.tracing import TracingInstrument
from loopwright.policy import Policy
from loopwright.tools.sql import SQLTool

#: The rows the queries below read: the first claims of MED_CLAIMS, by claim id.
FIRST = "ORDER BY CLAIM_ID LIMIT 5"


def _patient_ids(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The patient ids of the first claims (what a leak would show), and the extremes that
    SUMMARIZE reports."""
    rows = con.execute(f"SELECT PATIENT_ID FROM MED_CLAIMS {FIRST}").fetchall()
    extremes = con.execute("SELECT MIN(PATIENT_ID), MAX(PATIENT_ID) FROM MED_CLAIMS").fetchone()
    assert extremes is not None
    low, high = extremes
    ids = [str(r[0]) for r in rows] + [str(low), str(high)]
    assert all(ids)
    assert len(set(ids)) >= 3
    return ids


def _sql(sql: str, name: str) -> dict[str, str]:
    return {"sql": sql, "dataset_name": name, "description": name}


def _results(messages: list[Any]) -> dict[str, str]:
    """Each tool result's text by the dataset_name of its call."""
    names = {
        use.id: str(use.input.get("dataset_name"))
        for message in messages
        for use in message.tool_uses
    }
    return {
        names[result.tool_use_id]: result.text
        for message in messages
        for result in message.tool_results
    }


def _leaked(text: str, ids: list[str]) -> list[str]:
    return [i for i in ids if i in text]


#: Queries that return patient ids, each in its own way.
LEAKING = {
    "plain": f"SELECT PATIENT_ID, ICD10_CD, CLAIM_PAID_AMT FROM MED_CLAIMS {FIRST}",
    "renamed": f"SELECT PATIENT_ID AS who, ICD10_CD FROM MED_CLAIMS {FIRST}",
    "star": f"SELECT * FROM MED_CLAIMS {FIRST}",
    "whole_row": f"SELECT m FROM MED_CLAIMS m {FIRST}",
    "as_json": f"SELECT CLAIM_ID, to_json(m) AS j FROM MED_CLAIMS m {FIRST}",
    "per_patient": (
        "SELECT PATIENT_ID, COUNT(*) AS claims FROM MED_CLAIMS "
        f"WHERE PATIENT_ID IN (SELECT PATIENT_ID FROM MED_CLAIMS {FIRST}) GROUP BY ALL"
    ),
    "cte": (
        "WITH p AS (SELECT CLAIM_ID, PATIENT_ID AS pid FROM MED_CLAIMS) "
        f"SELECT pid, upper(pid) AS shout FROM p {FIRST}"
    ),
    "summarize": "SUMMARIZE MED_CLAIMS",
}

#: Queries whose previews must stay as they are: aggregates and provider NPIs.
KEPT = {
    "top_npis": (
        "SELECT PRIMARY_HCP AS npi, COUNT(DISTINCT PATIENT_ID) AS patients FROM MED_CLAIMS "
        "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 5"
    ),
    "counted": (
        "SELECT ICD10_CD, COUNT(DISTINCT PATIENT_ID) AS patient_id_count FROM MED_CLAIMS "
        "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 3"
    ),
}


def test_the_model_never_sees_patient_ids_however_the_query_returns_them(
    claims_db: Path, claims_con: duckdb.DuckDBPyConnection
) -> None:
    """Each way of returning patient ids showed them to the model (and its provider); now
    each preview masks them and says so, the saved files keep them, and aggregates and NPIs
    (the golden questions' answers) are shown unchanged."""
    ids = _patient_ids(claims_con)
    calls = [call("SQL", _sql(sql, name)) for name, sql in {**LEAKING, **KEPT}.items()]
    model = ScriptedModel([calls, "Done."])
    agent = healthcare_agent(model, database=claims_db, store=MemoryStore())
    result = agent.run_sync("Show me some patients' claims")
    assert result.stop_reason == "end_turn"

    sent = json.dumps([m.to_dict() for r in model.requests for m in r.messages])
    assert _leaked(sent, ids) == []  # nothing reached the model's provider
    results = _results(result.session.messages)
    for name in LEAKING:
        text = results[name]
        assert "[masked #1]" in text, (name, text)
        assert "MED_CLAIMS.PATIENT_ID" in text, (name, text)
        assert "patient privacy" in text, (name, text)
    assert "Masked in this preview: PATIENT_ID (MED_CLAIMS.PATIENT_ID)" in results["plain"]
    assert "who (MED_CLAIMS.PATIENT_ID)" in results["renamed"]
    assert "the min, max, q25, q50, q75 of PATIENT_ID" in results["summarize"]
    # the other columns are shown: the model can still work with the rows
    plain_rows = claims_con.execute(f"SELECT ICD10_CD FROM MED_CLAIMS {FIRST}").fetchall()
    assert all(f"| {code} |" in results["plain"] for (code,) in plain_rows)
    # one patient's rows share one marker: the per-patient counts still line up
    assert results["per_patient"].count("[masked #") == 5

    # the analyst's files hold the real values
    workspace = Path(result.session.workspace_dir)
    with (workspace / "plain.csv").open(encoding="utf-8") as handle:
        saved = [row["PATIENT_ID"] for row in csv.DictReader(handle)]
    assert saved == ids[:5]

    # aggregates and provider NPIs: as an unmasked SQL tool shows them
    async def unmasked(sql: str) -> str:
        tool = SQLTool(workspace / "plain_tool", f"duckdb://{claims_db}")
        try:
            return str((await tool.execute(_sql(sql, "x")))["content"])
        finally:
            await tool.aclose()

    for name, sql in KEPT.items():
        expected = asyncio.run(unmasked(sql)).replace("x.csv and x.parquet", "")
        assert results[name].replace(f"{name}.csv and {name}.parquet", "") == expected
        assert "masked" not in results[name]
    top = claims_con.execute(
        "SELECT PRIMARY_HCP FROM MED_CLAIMS GROUP BY 1 "
        "ORDER BY COUNT(DISTINCT PATIENT_ID) DESC, 1 LIMIT 1"
    ).fetchone()
    assert top is not None
    (npi,) = top
    assert f"| {npi} |" in results["top_npis"]


def test_traces_audit_log_and_stored_session_hold_no_patient_ids(
    claims_db: Path, claims_con: duckdb.DuckDBPyConnection, tmp_path: Path
) -> None:
    """With trace contents recorded and the audit log on, the tool result went verbatim into
    the execute_tool span, every later chat span's input messages, the audit log's result
    preview and the stored session: all now hold the masked preview. The call's metadata (in
    the audit log) names the masked columns."""
    ids = _patient_ids(claims_con)
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    model = ScriptedModel([call("SQL", _sql(LEAKING["plain"], "rows")), "Done."])
    agent = healthcare_agent(
        model,
        database=claims_db,
        store=MemoryStore(),
        policy=Policy(audit=True),
        instruments=[TracingInstrument(provider, record_content=True)],
    )
    try:
        result = agent.run_sync("Which patients had claims?")
    finally:
        provider.shutdown()
    assert result.stop_reason == "end_turn"
    spans = exporter.get_finished_spans()
    recorded = json.dumps([dict(s.attributes or {}) for s in spans])
    assert "[masked #1]" in recorded  # contents were recorded: the masked preview
    assert _leaked(recorded, ids) == []
    audit = Path(result.session.workspace_dir) / ".loopwright" / "audit.jsonl"
    records = [json.loads(line) for line in audit.read_text(encoding="utf-8").splitlines()]
    assert _leaked(json.dumps(records), ids) == []
    (sql_record,) = [r for r in records if r.get("tool") == "SQL"]
    metadata = sql_record["result"]["metadata"]
    assert metadata["masked_columns"] == ["PATIENT_ID"]
    assert metadata["preview_withheld"] is False
    stored = json.dumps([m.to_dict() for m in result.session.messages])
    assert _leaked(stored, ids) == []


def test_rows_whose_identifier_columns_cannot_be_told_are_withheld(
    claims_db: Path, claims_con: duckdb.DuckDBPyConnection
) -> None:
    """A query the identifier check cannot follow (two unaliased FROM items: sqlglot's scopes
    give up) returned patient ids under an alias: no row is shown, and the model is told why
    and what to do; the file still holds them."""
    ids = _patient_ids(claims_con)
    sql = f"SELECT * FROM (SELECT PATIENT_ID AS x FROM MED_CLAIMS {FIRST}), range(1)"
    model = ScriptedModel([call("SQL", _sql(sql, "odd")), "Done."])
    result = healthcare_agent(model, database=claims_db, store=MemoryStore()).run_sync("ids?")
    text = _results(result.session.messages)["odd"]
    assert _leaked(text, ids) == []
    assert text.startswith("Saved 5 rows × 2 columns to odd.csv")
    assert "The preview rows were withheld (patient privacy)" in text
    assert "select named columns" in text
    assert "| x |" not in text  # no table at all
    saved = (Path(result.session.workspace_dir) / "odd.csv").read_text(encoding="utf-8")
    assert all(i in saved for i in ids[:5])


def test_masking_is_an_option_of_the_healthcare_agent(
    claims_db: Path, claims_con: duckdb.DuckDBPyConnection
) -> None:
    """``mask_identifiers=False`` (an analyst on a de-identified extract, a local model) shows
    the preview as it is."""
    ids = _patient_ids(claims_con)
    model = ScriptedModel([call("SQL", _sql(LEAKING["plain"], "rows")), "Done."])
    agent = healthcare_agent(model, database=claims_db, store=MemoryStore(), mask_identifiers=False)
    text = _results(agent.run_sync("ids?").session.messages)["rows"]
    assert all(i in text for i in ids[:5])
    assert "masked" not in text


def test_a_mask_that_fails_withholds_the_rows(tmp_path: Path, claims_db: Path) -> None:
    """The SQL tool's mask is there to protect the rows: when it raises, the call still
    succeeds (the files are saved) but no row is shown, and the model is told so."""

    def broken(sql: str, columns: Any, rows: Any) -> Any:
        raise RuntimeError("boom")

    async def run() -> dict[str, Any]:
        tool = SQLTool(tmp_path, f"duckdb://{claims_db}", mask=broken)
        try:
            return await tool.execute(_sql(LEAKING["plain"], "rows"))  # type: ignore[return-value]
        finally:
            await tool.aclose()

    result = asyncio.run(run())
    assert not result.get("is_error")
    text = result["content"]
    assert "The preview rows were withheld: checking them before showing them failed " in text
    assert "(RuntimeError)" in text
    assert "| PATIENT_ID |" not in text
    assert result["metadata"]["preview_withheld"] is True
    assert (tmp_path / "rows.csv").stat().st_size > 0


@pytest.mark.parametrize(
    ("schema", "sql", "columns"),
    [
        # an analyst's own warehouse: the identifier is recognised by its name
        (
            {"members": [("MBR_ID", "VARCHAR"), ("plan", "VARCHAR")]},
            "SELECT m.MBR_ID AS id, plan FROM members m",
            [("id", "VARCHAR"), ("plan", "VARCHAR")],
        ),
        # a view the schema does not list: judged by the result's column names
        (
            {"members": [("MBR_ID", "VARCHAR")]},
            "SELECT * FROM v_unknown",
            [("MBR_ID", "VARCHAR"), ("plan", "VARCHAR")],
        ),
    ],
)
def test_identifier_mask_on_other_schemas(
    schema: dict[str, list[tuple[str, str]]], sql: str, columns: list[tuple[str, str]]
) -> None:
    from loopwright.healthcare.sqlcheck import IdentifierMask  # new: imported here, so the
    # other tests fail on their own assertions where it does not exist

    mask = IdentifierMask(schema)
    masked = mask(sql, columns, [("M-0001", "gold"), ("M-0002", "gold"), ("M-0001", None)])
    assert masked is not None
    assert masked.rows == [
        ("[masked #1]", "gold"),
        ("[masked #2]", "gold"),
        ("[masked #1]", None),
    ]
    assert masked.columns == (columns[0][0],)


def test_the_cli_transcript_holds_no_patient_ids(
    loopwright_home: Path,
    tmp_path: Path,
    claims_db: Path,
    claims_con: duckdb.DuckDBPyConnection,
) -> None:
    """``loopwright healthcare`` as the analyst runs it, then ``sessions export --html``: the
    transcript one shares with a colleague showed the patient ids of the preview."""
    ids = _patient_ids(claims_con)
    script = tmp_path / "turns.json"
    turns = [{"call": "SQL", "input": _sql(LEAKING["renamed"], "who")}, "Five claims."]
    script.write_text(json.dumps(turns), encoding="utf-8")
    env = cli_env(loopwright_home)
    run = run_cli(
        [
            *("healthcare", "--database", str(claims_db), "-m", f"scripted:{script}"),
            *("--session", "p1", "Whose claims are first?"),
        ],
        env=env,
        cwd=tmp_path,
        timeout=240,
    )
    assert run.returncode == 0, run.stderr
    assert _leaked(run.stdout + run.stderr, ids) == []
    html = tmp_path / "t.html"
    export = run_cli(["sessions", "export", "p1", "--html", "-o", str(html)], env=env, cwd=tmp_path)
    assert export.returncode == 0, export.stderr
    page = html.read_text(encoding="utf-8")
    assert "[masked #1]" in page
    assert _leaked(page, ids) == []


async def test_mcp_clients_get_the_masked_preview(
    loopwright_home: Path,
    tmp_path: Path,
    claims_db: Path,
    claims_con: duckdb.DuckDBPyConnection,
) -> None:
    """``loopwright mcp serve --agent healthcare`` hands the SQL tool to an MCP client (an
    LLM host, another party): its result text held the patient ids of the preview."""
    import sys

    import mcp_types as types
    from mcp.client.session import ClientSession
    from mcp.client.stdio import StdioServerParameters, stdio_client

    ids = _patient_ids(claims_con)
    script = tmp_path / "turns.json"
    script.write_text(json.dumps(["unused"]), encoding="utf-8")
    params = StdioServerParameters(
        command=sys.executable,
        args=[
            *("-m", "loopwright.cli.app", "mcp", "serve", "--agent", "healthcare"),
            *("--database", str(claims_db), "-m", f"scripted:{script}", "-s", "mcp-p"),
        ],
        env=cli_env(loopwright_home),
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as client:
        await client.initialize()
        got = await client.call_tool("SQL", _sql(LEAKING["plain"], "rows"))
    assert not got.is_error
    text = "\n".join(b.text for b in got.content if isinstance(b, types.TextContent))
    text += json.dumps(got.structured_content or {})
    assert "[masked #1]" in text
    assert _leaked(text, ids) == []
    saved = (loopwright_home / "workspaces" / "mcp-p" / "rows.csv").read_text(encoding="utf-8")
    assert all(i in saved for i in ids[:5])


def test_database_errors_do_not_quote_patient_ids_to_the_model(
    claims_db: Path, claims_con: duckdb.DuckDBPyConnection
) -> None:
    """A model that takes patient ids for numbers (``WHERE PATIENT_ID = 12``) or casts one
    got DuckDB's conversion error, which quotes the id it failed on, word for word. Values
    it quotes from the data are masked now; values the query wrote itself, and every other
    error (an unknown column and its candidates), are told as they were."""
    distinct = claims_con.execute("SELECT DISTINCT PATIENT_ID FROM MED_CLAIMS").fetchall()
    every = {str(i) for (i,) in distinct}
    queries = {
        "compared": "SELECT COUNT(*) AS n FROM MED_CLAIMS WHERE PATIENT_ID = 12",
        "cast": "SELECT CAST(PATIENT_ID AS INTEGER) AS p FROM MED_CLAIMS",
        "as_date": "SELECT PATIENT_ID::DATE AS d FROM MED_CLAIMS",
        "own_value": "SELECT CAST('abc' AS INTEGER) AS x FROM MED_CLAIMS",
        "unknown": "SELECT PATIENT_IDX FROM MED_CLAIMS",
    }
    model = ScriptedModel([[call("SQL", _sql(q, n)) for n, q in queries.items()], "Done."])
    result = healthcare_agent(model, database=claims_db, store=MemoryStore()).run_sync("ids?")
    results = _results(result.session.messages)
    sent = json.dumps([m.to_dict() for r in model.requests for m in r.messages])
    assert [i for i in every if i in sent] == []
    for name in ("compared", "cast", "as_date"):
        assert "Conversion Error" in results[name], results[name]
        assert "[masked]" in results[name]
        assert "values are not shown to you" in results[name]
        assert "source column PATIENT_ID" in results[name]  # what failed is still told
    assert "Could not convert string 'abc' to INT32" in results["own_value"]
    assert "masked" not in results["own_value"]
    assert '"PATIENT_ID"' in results["unknown"]  # the candidate columns, unmasked
    assert "masked" not in results["unknown"]


def test_the_cli_masks_unless_told_not_to_and_refuses_a_bad_value(
    loopwright_home: Path,
    tmp_path: Path,
    claims_db: Path,
    claims_con: duckdb.DuckDBPyConnection,
) -> None:
    """``LOOPWRIGHT_MASK_IDENTIFIERS=0`` (a de-identified extract, a local model) shows the
    preview as it is, in the CLI and so in the server and MCP, which build the agent alike."""
    ids = _patient_ids(claims_con)
    script = tmp_path / "turns.json"
    turns = [{"call": "SQL", "input": _sql(LEAKING["plain"], "rows")}, "Done."]
    script.write_text(json.dumps(turns), encoding="utf-8")
    command = ["healthcare", "--database", str(claims_db), "-m", f"scripted:{script}", "ids?"]
    env = cli_env(loopwright_home)
    env["LOOPWRIGHT_MASK_IDENTIFIERS"] = "0"
    shown = run_cli([*command, "--json"], env=env, cwd=tmp_path, timeout=240)
    assert shown.returncode == 0, shown.stderr
    assert _leaked(shown.stdout, ids) != []  # the preview as it is
    env["LOOPWRIGHT_MASK_IDENTIFIERS"] = "maybe"
    refused = run_cli(command, env=env, cwd=tmp_path, timeout=240)
    assert refused.returncode == 2
    assert "LOOPWRIGHT_MASK_IDENTIFIERS='maybe'" in refused.stderr
