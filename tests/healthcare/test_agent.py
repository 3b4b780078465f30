"""The healthcare research agent: its prompt, its tools, the guide's example run end to end,
the compact mode for tiny models, and ``loopwright healthcare`` on the command line."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import resource
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import duckdb
import pytest

from loopwright import MemoryStore, ScriptedModel, call
from loopwright.healthcare.agent import TOOL_NAMES, database_url, healthcare_agent
from loopwright.healthcare.check import check_golden
from loopwright.healthcare.data import database_schema
from loopwright.healthcare.golden import get_question
from loopwright.healthcare.prompt import FewShotModel, HealthcarePrompt
from loopwright.models.base import ModelRequest
from loopwright.models.scripted import ScriptedTurn
from postgres_server import PostgresServer, postgres_server  # noqa: F401

HUMIRA_CA = (
    "SELECT PRESCRIBER_NPI_NBR, COUNT(*) AS rx_count FROM RX_CLAIMS "
    "WHERE NDC_DRUG_NM = 'HUMIRA' AND PRESCRIBER_NPI_STATE_CD = 'CA' "
    "GROUP BY PRESCRIBER_NPI_NBR ORDER BY rx_count DESC, PRESCRIBER_NPI_NBR LIMIT 10"
)

CHART_CODE = """\
import matplotlib
import matplotlib.pyplot as plt
import polars as pl

top = pl.read_parquet("humira_ca_top10.parquet")  # its types as the database has them
fig, ax = plt.subplots(figsize=(8, 4))
ax.barh(top["PRESCRIBER_NPI_NBR"].to_list()[::-1], top["rx_count"].to_list()[::-1])
ax.set_xlabel("HUMIRA prescriptions")
ax.set_title("Top 10 HUMIRA prescribers in California")
fig.savefig("humira_ca_top10.png", dpi=100, bbox_inches="tight")
print(f"backend={matplotlib.get_backend()}")
print(f"top_npi={top['PRESCRIBER_NPI_NBR'][0]}")
print(f"top_count={top['rx_count'][0]}")
print(f"total={top['rx_count'].sum()}")
"""


def _tool_results(request: ModelRequest) -> list[str]:
    return [r.text for m in request.messages for r in m.tool_results]


def analyst(request: ModelRequest) -> ScriptedTurn:
    """Plays the model through the guide's interaction: query, chart, then an answer whose
    numbers are the ones the Python tool read from the saved CSV."""
    done = [b.name for m in request.messages for b in m.tool_uses]
    if "SQL" not in done:
        return ScriptedTurn(
            "I'll query the rx_claims table for this analysis.\n",
            [
                call(
                    "SQL",
                    sql=HUMIRA_CA,
                    dataset_name="humira_ca_top10",
                    description="Top HUMIRA prescribers in California",
                )
            ],
        )
    if "Python" not in done:
        return ScriptedTurn("Now a chart of the ten.\n", [call("Python", code=CHART_CODE)])
    printed = dict(re.findall(r"^(\w+)=(\S+)$", _tool_results(request)[-1], re.MULTILINE))
    return ScriptedTurn(
        f"The top 10 HUMIRA prescribers in California account for {int(printed['total']):,} "
        f"prescriptions. The leading prescriber (NPI {printed['top_npi']}) wrote "
        f"{printed['top_count']} of them.\n\nFiles: humira_ca_top10.csv (the ten prescribers), "
        "humira_ca_top10.png (a bar chart).\n\nWould you like me to:\n1. Join with provider "
        "data to see their specialties?\n2. Analyze prescription trends over time?\n3. Compare "
        "with other states?"
    )


def test_the_system_prompt_holds_the_real_schema_and_todays_date(
    claims_db: Path, claims_con: duckdb.DuckDBPyConnection
) -> None:
    agent = healthcare_agent(ScriptedModel(["ok"]), database=claims_db, store=MemoryStore())
    prompt = agent.system_prompt(agent.new_session())

    assert f"Current date: {dt.date.today().isoformat()}" in prompt
    for table, columns in database_schema(claims_db).items():
        (rows,) = claims_con.execute(f"SELECT COUNT(*) FROM {table}").fetchone()
        assert f"{table} ({rows:,} rows)" in prompt
        for column, kind in columns:
            assert f"- {column} {kind}" in prompt
    drugs = [
        d for (d,) in claims_con.execute("SELECT DISTINCT NDC_DRUG_NM FROM RX_CLAIMS").fetchall()
    ]
    line = next(x for x in prompt.splitlines() if "- NDC_DRUG_NM" in x)
    assert all(drug in line for drug in drugs)  # every drug name, spelt as stored
    (first, last) = claims_con.execute(
        "SELECT MIN(SERVICE_DATE_DD), MAX(SERVICE_DATE_DD) FROM RX_CLAIMS"
    ).fetchone()
    dates = next(x for x in prompt.splitlines() if "- SERVICE_DATE_DD" in x)
    assert f"from {first.isoformat()} to {last.isoformat()}" in dates
    for tool in TOOL_NAMES:
        assert f"- {tool}:" in prompt
    assert "Suggest two or three follow-up analyses" in prompt
    assert "PNG" in prompt
    assert "patient-level identifiers" in prompt


def test_the_date_is_filled_in_on_every_call(claims_db: Path) -> None:
    agent = healthcare_agent(ScriptedModel(["ok"]), database=claims_db, store=MemoryStore())
    prompt = agent.system_prompt
    assert isinstance(prompt, HealthcarePrompt)
    days = iter([dt.date(2031, 1, 2), dt.date(2031, 1, 3)])
    dated = HealthcarePrompt(prompt.profile, today=lambda: next(days))
    assert "Current date: 2031-01-02" in dated.render()
    assert "Current date: 2031-01-03" in dated.render()


def test_the_guides_example_runs_end_to_end_and_matches_the_reference(claims_db: Path) -> None:
    model = ScriptedModel(analyst)
    agent = healthcare_agent(model, database=claims_db, store=MemoryStore())
    result = agent.run_sync("Find the top 10 prescribers of HUMIRA in California")

    assert result.stop_reason == "end_turn", result.events[-1]
    workspace = Path(result.session.workspace_dir)
    assert set(agent.registry_for(result.session).names) >= set(TOOL_NAMES)
    results = [e for e in result.events if e["type"] == "tool_result"]
    assert [r["name"] for r in results] == ["SQL", "Python"]
    assert not any(r["is_error"] for r in results), results
    assert "backend=agg" in results[1]["content"].lower()  # no display in the sandbox

    csv = workspace / "humira_ca_top10.csv"
    chart = workspace / "humira_ca_top10.png"
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert chart.stat().st_size > 5_000

    verdict = check_golden(get_question("humira_ca_top10"), result.text, claims_db, csv=csv)
    assert verdict.passed, verdict.to_dict()
    assert verdict.csv is not None
    assert verdict.csv.match == 1.0
    assert "humira_ca_top10.png" in result.text  # the chart is listed in the answer
    # the model saw the real schema in its system prompt
    assert "PRESCRIBER_NPI_STATE_CD VARCHAR" in model.requests[0].system


HUMIRA_CA_NDC = (
    "SELECT PRESCRIBER_NPI_NBR, MIN(NDC_CD) AS first_ndc, COUNT(*) AS rx_count FROM RX_CLAIMS "
    "WHERE NDC_DRUG_NM = 'HUMIRA' AND PRESCRIBER_NPI_STATE_CD = 'CA' "
    "GROUP BY PRESCRIBER_NPI_NBR ORDER BY rx_count DESC, PRESCRIBER_NPI_NBR LIMIT 10"
)

PARQUET_CHART = """\
import matplotlib.pyplot as plt
import polars as pl

top = pl.read_parquet("humira_ca_ndc.parquet")
fig, ax = plt.subplots()
ax.barh(top["PRESCRIBER_NPI_NBR"], top["rx_count"])
fig.savefig("humira_ca_ndc.png")
print("ticks=" + ",".join(label.get_text() for label in ax.get_yticklabels()))
print("ndc=" + ",".join(top["first_ndc"]))
guessed = pl.read_csv("humira_ca_ndc.csv")
print("csv=" + ",".join(str(v) for v in guessed["first_ndc"]))
"""


async def test_the_python_tool_says_to_read_the_parquet_file_which_keeps_codes_and_npis(
    claims_db: Path, claims_con: duckdb.DuckDBPyConnection
) -> None:
    """``pl.read_csv`` guesses a saved result's types: NDC codes lose their leading zeros
    (00074... as 74...) and NPIs become integers, so a bar chart by NPI drew its bars at
    y = 9.5e9, an empty picture. The model was told to read the CSVs; the Python tool now
    says to read the Parquet file, which keeps them as the database does."""
    agent = healthcare_agent(ScriptedModel(["ok"]), database=claims_db, store=MemoryStore())
    session = agent.new_session()
    registry = agent.registry_for(session)
    try:
        tool = registry.get("Python")
        assert tool is not None
        description = tool.schema["description"]
        assert "read the .parquet (pl.read_parquet), which keeps its column types" in description
        saved = await registry.execute(
            "SQL", {"sql": HUMIRA_CA_NDC, "dataset_name": "humira_ca_ndc", "description": "x"}
        )
        assert not saved["is_error"], saved
        result = await registry.execute("Python", {"code": PARQUET_CHART})
    finally:
        await registry.aclose()
    assert not result["is_error"], result
    printed = dict(re.findall(r"^(\w+)=(.*)$", str(result["content"]), re.MULTILINE))
    rows = claims_con.execute(HUMIRA_CA_NDC).fetchall()
    assert printed["ticks"].split(",") == [npi for npi, _, _ in rows]  # one bar per NPI
    assert printed["ndc"].split(",") == [ndc for _, ndc, _ in rows]
    assert all(ndc.startswith("00074") for _, ndc, _ in rows)
    assert printed["csv"].split(",") == [str(int(ndc)) for _, ndc, _ in rows]  # what CSV gave
    chart = Path(session.workspace_dir) / "humira_ca_ndc.png"
    assert chart.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # the system prompt says the same (it said to read the CSVs)
    prompt = agent.system_prompt(session)
    assert isinstance(prompt, str)
    assert 'pl.read_parquet("<dataset>.parquet") keeps their column types' in prompt
    assert "reading the .parquet files" in prompt
    assert "read the CSVs" not in prompt


def test_an_answer_with_a_wrong_total_does_not_pass(claims_db: Path) -> None:
    """The check is not a rubber stamp: the same run with a total off by one fails."""

    def wrong(request: ModelRequest) -> ScriptedTurn:
        turn = analyst(request)
        match = re.search(r"account for ([\d,]+)", turn.text)
        if match and not turn.tool_calls:
            total = int(match.group(1).replace(",", ""))
            turn.text = turn.text.replace(match.group(1), f"{total + 1:,}")
        return turn

    agent = healthcare_agent(ScriptedModel(wrong), database=claims_db, store=MemoryStore())
    result = agent.run_sync("Find the top 10 prescribers of HUMIRA in California")
    verdict = check_golden(get_question("humira_ca_top10"), result.text, claims_db)
    assert not verdict.passed
    assert [m.fact.label for m in verdict.missing] == ["total prescriptions of the top 10"]


def test_a_tiny_local_model_gets_the_compact_prompt_and_worked_examples(
    claims_db: Path, claims_con: duckdb.DuckDBPyConnection
) -> None:
    model = ScriptedModel(["Hello."], name="local:tiny-test")
    agent = healthcare_agent(model, database=claims_db, store=MemoryStore())
    assert isinstance(agent.model, FewShotModel)
    assert agent.max_turns == 6
    session = agent.new_session()
    assert agent.registry_for(session).names == ["SQL"]
    prompt = agent.system_prompt(session)
    assert len(prompt) < 3_000
    assert "RX_CLAIMS: CLAIM_ID, PATIENT_ID" in prompt

    agent.run_sync("Find the top 10 prescribers of HUMIRA in California", session)
    request = model.requests[0]
    assert request.stop[-1] == "\n"
    # worked examples come first, as real earlier turns, with this database's real rows
    chosen = agent.model.choose("Find the top 10 prescribers of HUMIRA in California")
    assert [e.size for e in chosen] == [5, 10]  # the size the question asks for, last
    assert [m.text for m in request.messages[:5:4]] == [e.question for e in chosen]
    for example in chosen:
        assert "HUMIRA" not in example.sql  # never an example about the user's drug
        expected = claims_con.execute(example.sql).fetchall()
        assert [tuple(r) for r in expected] == list(example.rows)
        assert example.answer is not None
        assert f"who wrote {expected[0][1]:,} prescriptions" in example.answer
    assert agent.model.choose("Top 5 prescribers of ELIQUIS?")[-1].size == 5
    assert request.messages[-1].text == "Find the top 10 prescribers of HUMIRA in California"
    assert session.messages[0].text.startswith("Find the top 10")  # no examples in history


def test_database_arguments_are_checked_with_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="neither a database URL nor a DuckDB file"):
        database_url(tmp_path / "notes.txt")
    with pytest.raises(ValueError, match="does not exist"):
        healthcare_agent(ScriptedModel(["ok"]), database=tmp_path / "missing.duckdb")
    with pytest.raises(ValueError, match="Unknown database URL"):
        healthcare_agent(ScriptedModel(["ok"]), database="mysql://host/db")
    assert database_url("postgresql://u@h/db") == "postgresql://u@h/db"


@pytest.mark.parametrize("name", ["q?1.duckdb", "pct%41.duckdb", "a b#c.duckdb"])
def test_a_database_path_with_url_characters_opens_that_file(tmp_path: Path, name: str) -> None:
    """The path went into a duckdb:// URL unquoted: "?" started settings and "%41" was read
    as "A", so another file, or none, was opened."""
    from loopwright.sql import DuckDBBackend, connect

    path = tmp_path / name
    (tmp_path / "pctA.duckdb").touch()  # the file "%41" used to be read as
    backend = connect(database_url(path))
    assert isinstance(backend, DuckDBBackend)
    assert backend.database == str(path.resolve())


def test_on_postgresql_the_prompt_comes_from_the_backends_schema(
    postgres_server: PostgresServer,  # noqa: F811
) -> None:
    dsn = postgres_server.create_database("hc_agent")
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(
            "CREATE TABLE rx_claims (prescriber_npi_nbr text, ndc_drug_nm text, "
            "prescriber_npi_state_cd text, service_date_dd date)"
        )
    agent = healthcare_agent(ScriptedModel(["ok"]), database=dsn, store=MemoryStore())
    prompt = agent.system_prompt(agent.new_session())
    assert "claims database (PostgreSQL)" in prompt
    assert "- ndc_drug_nm text" in prompt
    assert "- service_date_dd date" in prompt
    assert "Row counts and column values of this PostgreSQL database are not listed" in prompt
    assert "- DefineCohort:" in prompt  # cohorts run on PostgreSQL too


# --- the command line ----------------------------------------------------------------------


def _cli_env(home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["LOOPWRIGHT_HOME"] = str(home)
    for name in ("LOOPWRIGHT_WORKSPACES", "LOOPWRIGHT_TOKENS", "LOOPWRIGHT_TOKENS_FILE"):
        env.pop(name, None)
    for name in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "LOOPWRIGHT_MODEL"):
        env.pop(name, None)
    env["NO_COLOR"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    return env


def _cli(
    args: list[str],
    home: Path,
    *,
    input: str = "",
    timeout: float = 120,
    file_size_limit: int | None = None,
) -> subprocess.CompletedProcess[str]:
    env = _cli_env(home)

    def limit_file_size() -> None:  # a disk that fills up, for the child only
        if file_size_limit is not None:
            resource.setrlimit(resource.RLIMIT_FSIZE, (file_size_limit, file_size_limit))

    return subprocess.run(
        [sys.executable, "-m", "loopwright.cli.app", "healthcare", *args],
        input=input,
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        timeout=timeout,
        preexec_fn=limit_file_size,
    )


def _script(tmp_path: Path, *turns: Any) -> Path:
    path = tmp_path / "script.json"
    path.write_text(json.dumps(list(turns)))
    return path


SQL_TURN = {
    "text": "I'll query the rx_claims table.",
    "call": "SQL",
    "input": {
        "sql": HUMIRA_CA,
        "dataset_name": "humira_ca_top10",
        "description": "Top HUMIRA prescribers in California",
    },
}


def test_cli_one_shot_answers_and_writes_the_csv(
    claims_db: Path, claims_con: duckdb.DuckDBPyConnection, tmp_path: Path, loopwright_home: Path
) -> None:
    script = _script(tmp_path, SQL_TURN, "Saved the ten prescribers to humira_ca_top10.csv.")
    result = _cli(
        ["--database", str(claims_db), "-m", f"scripted:{script}", "--json", "Top HUMIRA in CA?"],
        loopwright_home,
    )
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events[-1]["type"] == "done"
    assert events[-1]["stop_reason"] == "end_turn"
    (sql_result,) = [e for e in events if e["type"] == "tool_result"]
    assert not sql_result["is_error"], sql_result
    csv = loopwright_home / "workspaces" / events[-1]["session_id"] / "humira_ca_top10.csv"
    rows = csv.read_text().splitlines()
    assert rows[0] == "PRESCRIBER_NPI_NBR,rx_count"
    expected = claims_con.execute(HUMIRA_CA).fetchall()
    assert rows[1:] == [f"{npi},{count}" for npi, count in expected]


def test_cli_builds_the_database_on_first_use_with_a_progress_bar(
    tmp_path: Path, loopwright_home: Path
) -> None:
    script = _script(tmp_path, SQL_TURN, "Done.")
    result = _cli(["--rows", "2000", "-m", f"scripted:{script}", "Top HUMIRA?"], loopwright_home)
    assert result.returncode == 0, result.stderr
    assert "Building the synthetic claims database (2,000 rx claims)" in result.stderr
    assert (loopwright_home / "data" / "healthcare" / "claims-v2-2000-42.duckdb").is_file()
    assert "▸ SQL SELECT PRESCRIBER_NPI_NBR" in result.stdout
    assert "Done." in result.stdout
    assert "loopwright healthcare --session" in result.stdout


def test_cli_chat_keeps_one_session(claims_db: Path, tmp_path: Path, loopwright_home: Path) -> None:
    script = _script(tmp_path, SQL_TURN, "The list is in humira_ca_top10.csv.", "You're welcome.")
    result = _cli(
        ["--database", str(claims_db), "-m", f"scripted:{script}", "--session", "hc-chat"],
        loopwright_home,
        input="Top HUMIRA prescribers in CA?\n/files\nThanks!\n/exit\n",
    )
    assert result.returncode == 0, result.stderr
    assert "The list is in humira_ca_top10.csv." in result.stdout
    assert "You're welcome." in result.stdout
    assert "humira_ca_top10.csv" in result.stdout  # /files lists it
    assert (loopwright_home / "workspaces" / "hc-chat" / "humira_ca_top10.csv").is_file()


def test_cli_bad_database_is_one_clear_line(tmp_path: Path, loopwright_home: Path) -> None:
    result = _cli(["--database", "mysql://db/x", "-m", "scripted", "hi"], loopwright_home)
    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: Unknown database URL")
    assert "Traceback" not in result.stderr


def test_cli_rows_beyond_the_generators_range_are_refused(loopwright_home: Path) -> None:
    """A huge --rows overflowed DuckDB's INT64 with a traceback, or filled the disk."""
    for rows in ("99999999999999999999999", "100000001"):
        result = _cli(["--rows", rows, "-m", "scripted", "hi"], loopwright_home)
        assert result.returncode == 2, result.stderr
        assert "Traceback" not in result.stderr
        assert "100000000" in result.stderr
    assert not (loopwright_home / "data").exists()


def test_cli_a_build_that_fails_is_one_clear_line_and_leaves_nothing(
    tmp_path: Path, loopwright_home: Path
) -> None:
    """A full disk (here: a file size limit) made DuckDB raise through the CLI's handlers."""
    script = _script(tmp_path, "Done.")
    result = _cli(
        ["--rows", "50000", "-m", f"scripted:{script}", "hi"],
        loopwright_home,
        file_size_limit=1 << 20,
    )
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert "error: cannot build the claims database: DuckDB could not build" in result.stderr
    assert "free disk space" in result.stderr
    data = loopwright_home / "data" / "healthcare"
    assert [p.name for p in data.iterdir() if not p.name.endswith(".lock")] == []


def test_cli_ctrl_c_during_the_build_exits_130_and_leaves_nothing(
    tmp_path: Path, loopwright_home: Path
) -> None:
    script = _script(tmp_path, "Done.")
    command = ["healthcare", "--rows", "20000000", "-m", f"scripted:{script}", "hi"]
    process = subprocess.Popen(
        [sys.executable, "-m", "loopwright.cli.app", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_cli_env(loopwright_home),
    )
    data = loopwright_home / "data" / "healthcare"
    deadline = time.monotonic() + 60
    while not list(data.glob(".claims-*.tmp")) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.5)  # well inside the build (20M rows take ~40 s)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr
    assert "interrupted; the claims database was not built" in stderr
    assert [p.name for p in data.iterdir() if not p.name.endswith(".lock")] == []


def test_cli_a_bad_session_id_is_refused_before_the_database_is_built(
    loopwright_home: Path,
) -> None:
    result = _cli(
        ["--rows", "1500", "--session", "../evil", "-m", "scripted", "hi"], loopwright_home
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: invalid session id")
    assert not (loopwright_home / "data" / "healthcare" / "claims-v2-1500-42.duckdb").exists()


def test_builds_abandoned_by_a_killed_process_are_removed(tmp_path: Path) -> None:
    """SIGTERM, SIGKILL or a closed terminal skip the build's own clean-up; the next build
    of that file removes what a dead process left (never a live build's files: a live
    process holding DuckDB's lock on its temporary database)."""
    from loopwright.healthcare.data import ensure_database

    target = tmp_path / "claims.duckdb"
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    abandoned = [tmp_path / f".claims.duckdb.{dead.stdout.strip()}.ab12cd34.tmp"]
    abandoned.append(abandoned[0].with_name(abandoned[0].name + ".wal"))
    for path in abandoned:
        path.write_bytes(b"x" * 100)
    holder = (
        "import duckdb, os, sys; "
        "path = sys.argv[1].replace('PID', str(os.getpid())); "
        "con = duckdb.connect(path); print(path, flush=True); sys.stdin.read()"
    )
    building = subprocess.Popen(
        [sys.executable, "-c", holder, str(tmp_path / ".claims.duckdb.PID.ef56ab78.tmp")],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert building.stdout is not None
        live = Path(building.stdout.readline().strip())
        assert live.exists()
        ensure_database(rx_claims=1000, path=target)
        assert target.is_file()
        assert [p.exists() for p in abandoned] == [False, False]
        assert live.exists()
    finally:
        building.communicate("", timeout=30)


def test_serve_puts_the_healthcare_agent_behind_the_http_api(
    claims_db: Path, claims_con: duckdb.DuckDBPyConnection, tmp_path: Path, loopwright_home: Path
) -> None:
    import httpx

    from local_servers import free_port, server_process
    from server.live import iter_sse

    answer = "| NPI | claims |\n|---|---:|\n| see | humira_ca_top10.csv |"
    script = _script(tmp_path, SQL_TURN, answer)
    env = _cli_env(loopwright_home)
    env["LOOPWRIGHT_TOKENS"] = "hc-token=dana"
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "loopwright.cli.app", "serve", "--agent", "healthcare"]
    command += ["--database", str(claims_db), "-m", f"scripted:{script}", "--port", str(port)]
    log = tmp_path / "serve.log"
    with server_process(
        command,
        name="loopwright serve",
        ready_url=f"{base}/healthz",
        log_path=log,
        timeout=60,
        env=env,
    ):
        headers = {"Authorization": "Bearer hc-token"}
        with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
            session_id = client.post("/api/sessions").json()["id"]
            question = {"content": "Find the top 10 prescribers of HUMIRA in California"}
            with client.stream(
                "POST", f"/api/sessions/{session_id}/messages", json=question
            ) as response:
                events = list(iter_sse(response))
            assert events[-1].data["stop_reason"] == "end_turn", events[-1].data
            (sql_call,) = [e.data for e in events if e.event == "tool_call"]
            assert sql_call["name"] == "SQL"
            (sql_result,) = [e.data for e in events if e.event == "tool_result"]
            assert not sql_result["is_error"], sql_result
            files = client.get(f"/api/sessions/{session_id}/files").json()["files"]
            paths = {f["path"] for f in files}
            assert {"humira_ca_top10.csv", "humira_ca_top10.parquet"} <= paths
            csv = client.get(f"/api/sessions/{session_id}/files/humira_ca_top10.csv").text
            expected = claims_con.execute(HUMIRA_CA).fetchall()
            assert csv.splitlines()[1:] == [f"{npi},{count}" for npi, count in expected]
            history = client.get(f"/api/sessions/{session_id}/messages").json()["messages"]
            assert history[-1]["content"][0]["text"] == answer
    served = log.read_text()
    assert f"serving the healthcare agent at {base}/" in served
    assert "Traceback" not in served


def test_serve_options_for_the_healthcare_agent_are_checked(loopwright_home: Path) -> None:
    env = _cli_env(loopwright_home)
    for args, message in (
        (["--agent", "finance"], "unknown agent 'finance'; use one of: standard, healthcare"),
        (["--database", "claims.duckdb"], "--database and --rows go with --agent healthcare"),
        (["--agent", "healthcare", "--database", "mysql://db/x"], "Unknown database URL"),
        (["--agent", "healthcare", "-p", "yolo", "--rows", "2000"], "unknown permission mode"),
    ):
        done = subprocess.run(
            [sys.executable, "-m", "loopwright.cli.app", "serve", "-m", "scripted", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr


def test_on_bigquery_the_prompt_comes_from_the_backend_with_every_tool() -> None:
    from sql.bigquery_server import BigQueryServer

    with BigQueryServer(project="test-project") as server:
        server.setup(
            "CREATE SCHEMA claims; CREATE TABLE claims.RX_CLAIMS (PRESCRIBER_NPI_NBR VARCHAR, "
            "NDC_DRUG_NM VARCHAR, PRESCRIBER_NPI_STATE_CD VARCHAR, SERVICE_DATE_DD DATE);"
        )
        url = f"bigquery://test-project/claims?api_endpoint={server.base_url}"
        agent = healthcare_agent(ScriptedModel(["ok"]), database=url, store=MemoryStore())
        session = agent.new_session()
        prompt = agent.system_prompt(session)
        names = agent.registry_for(session).names
    assert "claims database (BigQuery)" in prompt
    assert "- NDC_DRUG_NM STRING" in prompt
    assert "SQL" in names
    assert "DefineCohort" in names  # BigQuery's named parameters carry the values
    assert "- DefineCohort:" in prompt


def test_the_default_embedded_model_is_the_one_that_writes_sql_best() -> None:
    from loopwright.cli.healthcare import embedded_choice
    from loopwright.models import ModelChoice, describe_default

    defaulted = embedded_choice(describe_default({}))
    assert defaulted.spec == "local:gemma3-270m"
    assert defaulted.reason.startswith("default: the embedded model")
    chosen = ModelChoice("local", "from --model")
    assert embedded_choice(chosen) is chosen  # an explicit choice is kept
    keyed = describe_default({"ANTHROPIC_API_KEY": "k"})
    assert embedded_choice(keyed) is keyed
