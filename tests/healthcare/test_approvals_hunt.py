"""The healthcare agent run with approvals on, from the side of the team lead who approves its
calls and reads the audit log afterwards: what an approval shows of the SQL, cohort and code
about to run, how permission rules apply to the SQL and DefineCohort tools, and what the audit
log keeps of each call (the whole query, the rows and bytes it read, the cohort's definition).
The real agent on the small claims database (and a local BigQuery emulator), driven by scripted
models; approvals answered as a person would, through ``agent.approve``."""

from __future__ import annotations

import asyncio
import json
import threading
from pathlib import Path
from typing import Any

from loopwright import MemoryStore
from loopwright.events import ApprovalRequest
from loopwright.healthcare.agent import healthcare_agent
from loopwright.models.base import ModelRequest
from loopwright.models.scripted import ScriptedModel, ScriptedTurn, call
from loopwright.policy import Policy

#: A long query (over the 2,000 characters the audit log keeps of other strings) over several
#: lines, with non-ASCII comments, whose decisive part comes last.
DRUGS = ", ".join(f"'DRUG NUMBER {i}'" for i in range(150))
LONG_SQL = (
    "-- Prescribers of the café list ✓ (résumé: 2024)\n"
    "SELECT PRESCRIBER_NPI_NBR, COUNT(*) AS fills\n"
    "FROM RX_CLAIMS\n"
    f"WHERE NDC_DRUG_NM NOT IN ({DRUGS})\n"
    "GROUP BY 1\n"
    "ORDER BY fills DESC, 1\n"
    "LIMIT 7 -- the last line"
)
#: Code whose harmful line comes after a page of harmless ones.
LONG_CODE = "".join(f"total_{i} = {i}\n" for i in range(200)) + "open('gone.txt', 'w').write('x')\n"


def _audit(workspace: Path) -> list[dict[str, Any]]:
    path = workspace / ".loopwright" / "audit.jsonl"
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _run(
    agent: Any, prompt: str, answer: Any = None
) -> tuple[list[Any], list[ApprovalRequest], Any]:
    """Run one turn; each approval request is answered by ``answer(request)`` (a bool, or
    ``(allow, reason)``) as a person answering in the web UI would, by ``alice``."""
    requests: list[ApprovalRequest] = []
    events: list[Any] = []

    async def main() -> Any:
        session = agent.new_session()
        try:
            async for event in agent.run(prompt, session):
                events.append(event)
                if isinstance(event, ApprovalRequest):
                    requests.append(event)
                    decided = answer(event)
                    allow, reason = decided if isinstance(decided, tuple) else (decided, "")
                    agent.approve(event.id, allow=allow, reason=reason, by="alice")
        finally:
            await agent.aclose()
        return session

    session = asyncio.run(main())
    return events, requests, session


def _results(events: list[Any]) -> dict[str, Any]:
    return {event.name: event for event in events if event.type == "tool_result"}


# --- the audit log ---------------------------------------------------------------------------


def test_the_audit_log_keeps_the_whole_query_and_code_that_ran(
    claims_db: Path, tmp_path: Path
) -> None:
    """The audit log cut every input string at 2,000 characters, the SQL and the code too:
    a long query was logged without its WHERE, GROUP BY and LIMIT, and code without the line
    that wrote a file, so the log could not say what had run. The SQL, code or command of a
    call is now kept whole (other long strings are still cut), with its line breaks and
    non-ASCII text exact."""
    script = [
        call("SQL", sql=LONG_SQL, dataset_name="top_prescribers", description="Top prescribers"),
        call("Python", code=LONG_CODE),
        call("Write", file_path="notes.md", content="x" * 5000),
        "Done.",
    ]
    agent = healthcare_agent(
        ScriptedModel(script),
        database=claims_db,
        store=MemoryStore(),
        workspace_root=str(tmp_path),
        policy=Policy(mode="ask", audit=True),
    )
    events, requests, session = _run(agent, "Who prescribes most?", lambda request: True)
    results = _results(events)
    assert not results["SQL"].is_error, results["SQL"].content
    assert not results["Python"].is_error, results["Python"].content
    assert [request.name for request in requests] == ["Python", "Write"]  # SQL is a read

    sql, python, write = _audit(session.workspace_dir)
    assert len(LONG_SQL) > 2000
    assert sql["input"]["sql"] == LONG_SQL
    assert sql["decision"] == "allow"
    assert sql["decided_by"] == "mode:ask"
    assert python["input"]["code"] == LONG_CODE
    assert python["approved_by"] == "alice"
    assert python["decided_by"] == "approval:alice"
    # what is not the call's code is still cut
    assert write["input"]["content"].endswith("[3,000 more characters]")
    assert write["input"]["file_path"] == "notes.md"


def test_the_audit_log_records_what_each_query_and_cohort_read(
    claims_db: Path, tmp_path: Path
) -> None:
    """The audit log kept 300 characters of each result's text and dropped what the tools
    report beside it: a query's row count, whether it was cut at the row cap, the cohort's
    SQL, parameters and counts, a command's exit status. Reviewing "what data did the agent
    read" meant parsing prose previews, and a cohort's criteria were lost. They are now the
    record's ``result.metadata``."""
    query = "SELECT PATIENT_ID FROM RX_CLAIMS ORDER BY 1"
    script = [
        call("SQL", sql=query, dataset_name="patients", description="Every patient"),
        call("DefineCohort", name="humira_pts", drugs=["HUMIRA"], description="On Humira"),
        call("Bash", command="ls patients.csv; exit 3"),
        "Done.",
    ]
    agent = healthcare_agent(
        ScriptedModel(script),
        database=claims_db,
        store=MemoryStore(),
        workspace_root=str(tmp_path),
        max_rows=50,
        policy=Policy(mode="ask", audit=True, ask=["DefineCohort"]),
    )
    events, requests, session = _run(agent, "Who is on Humira?", lambda request: True)
    results = _results(events)
    assert not results["DefineCohort"].is_error, results["DefineCohort"].content
    assert [request.name for request in requests] == ["DefineCohort", "Bash"]

    sql, cohort, bash = _audit(session.workspace_dir)
    read = sql["result"]["metadata"]
    assert read["dataset_name"] == "patients"
    assert read["row_count"] == 50
    assert read["truncated"] is True
    assert read["columns"] == [["PATIENT_ID", "VARCHAR"]]
    assert "bytes_scanned" in read  # None on DuckDB; BigQuery's below

    defined = cohort["result"]["metadata"]
    assert cohort["input"]["drugs"] == ["HUMIRA"]
    assert cohort["approved_by"] == "alice"
    assert defined["cohort"] == "humira_pts"
    assert defined["patients"] > 0
    assert "RX_CLAIMS" in defined["sql"]
    assert "HUMIRA" in json.dumps(defined["parameters"]).upper()
    members = (Path(session.workspace_dir) / "cohorts" / "humira_pts.csv").read_text()
    assert len(members.splitlines()) == defined["patients"] + 1

    assert bash["result"]["metadata"]["exit_code"] == 3
    assert bash["is_error"] is True


def test_the_audit_log_records_the_bytes_a_bigquery_query_scanned(tmp_path: Path) -> None:
    """On BigQuery, what a query cost to scan (what a team lead is billed for) is in the
    audit log, not only in the text the model read."""
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
            workspace_root=str(tmp_path),
            policy=Policy(audit=True),
        )
        events, _, session = _run(agent, "Which drugs?")
    assert not _results(events)["SQL"].is_error
    (record,) = _audit(session.workspace_dir)
    assert record["input"]["sql"] == query
    read = record["result"]["metadata"]
    assert read["row_count"] == 1
    assert isinstance(read["bytes_scanned"], int)
    assert read["bytes_scanned"] > 0
    assert f"Scanned {read['bytes_scanned']} bytes." in record["result"]["preview"]


def test_the_audit_log_redacts_secrets_in_the_query_and_what_it_reported(
    claims_db: Path, tmp_path: Path
) -> None:
    """The metadata is redacted as the input and preview are: a key pasted into a query is
    not written to the log through the metadata's copy of the cohort SQL or the dataset's
    description."""
    secret = "sk-ant-" + "Q9w8E7r6T5" * 4
    query = f"SELECT '{secret}' AS k, COUNT(*) AS n FROM RX_CLAIMS"
    script = [call("SQL", sql=query, dataset_name="k", description=f"uses {secret}"), "Done."]
    agent = healthcare_agent(
        ScriptedModel(script),
        database=claims_db,
        store=MemoryStore(),
        workspace_root=str(tmp_path),
        policy=Policy(audit=True, redact=True),
    )
    events, _, session = _run(agent, "Count")
    assert not _results(events)["SQL"].is_error
    text = (Path(session.workspace_dir) / ".loopwright" / "audit.jsonl").read_text()
    assert secret not in text
    (record,) = _audit(session.workspace_dir)
    assert "[REDACTED:anthropic_key]" in record["input"]["sql"]
    assert record["result"]["metadata"]["description"] == "uses [REDACTED:anthropic_key]"
    assert record["result"]["metadata"]["row_count"] == 1


# --- permission rules on the healthcare tools --------------------------------------------------


def test_a_sql_deny_rule_holds_whatever_the_case_and_line_breaks(
    claims_db: Path, tmp_path: Path
) -> None:
    """``deny = ["SQL(*PROVIDER_PAYMENTS*)"]`` (keep the agent off the payments table) let
    ``select ... from provider_payments`` run, and a query naming the table after a line
    break: rule patterns were matched case by case and character by character, while SQL
    reads its words without regard to case or line breaks. The refused query saves nothing,
    the model hears which rule refused it, and the turn goes on to a query that may run."""
    sneaky = [
        "select count(*) as n from provider_payments",
        "SELECT COUNT(*) AS n\nFROM\n    PROVIDER_PAYMENTS",
        'SELECT COUNT(*) AS n FROM "Provider_Payments"',
    ]
    script = [
        *(
            call("SQL", sql=sql, dataset_name=f"pay{i}", description="p")
            for i, sql in enumerate(sneaky)
        ),
        call("SQL", sql="SELECT COUNT(*) AS n FROM RX_CLAIMS", dataset_name="rx", description="r"),
        "Done.",
    ]
    agent = healthcare_agent(
        ScriptedModel(script),
        database=claims_db,
        store=MemoryStore(),
        workspace_root=str(tmp_path),
        policy=Policy(audit=True, deny=["SQL(*PROVIDER_PAYMENTS*)"]),
    )
    events, requests, session = _run(agent, "How much was paid?")
    results = [event for event in events if event.type == "tool_result"]
    assert not requests
    workspace = Path(session.workspace_dir)
    for i, result in enumerate(results[:3]):
        assert result.is_error, (sneaky[i], result.content)
        assert "the rule SQL(*PROVIDER_PAYMENTS*) forbids this SQL call" in result.content
        assert not (workspace / f"pay{i}.csv").exists()
    assert not results[3].is_error
    assert (workspace / "rx.csv").is_file()
    assert [r["decided_by"] for r in _audit(workspace)] == [
        "rule:deny:SQL(*PROVIDER_PAYMENTS*)"
    ] * 3 + ["mode:auto"]


def test_a_define_cohort_rule_with_a_pattern_applies(claims_db: Path, tmp_path: Path) -> None:
    """``DefineCohort`` had no argument rules were matched against, so a rule with a pattern
    never matched it: ``deny = ["DefineCohort(*)"]`` let every cohort be built and
    ``ask = ["DefineCohort(trial_*)"]`` never asked. Its rules now match the cohort's name;
    a refused cohort writes no files."""
    script = [
        call("DefineCohort", name="trial_ra", drugs=["HUMIRA"], description="d"),
        call("DefineCohort", name="everyone", drugs=["HUMIRA"], description="d"),
        "Done.",
    ]
    agent = healthcare_agent(
        ScriptedModel(script),
        database=claims_db,
        store=MemoryStore(),
        workspace_root=str(tmp_path),
        policy=Policy(ask=["DefineCohort(trial_*)"]),
    )
    events, requests, session = _run(
        agent, "Define the trial cohort", lambda request: (False, "not before the review")
    )
    assert [request.input["name"] for request in requests] == ["trial_ra"]
    first, second = (event for event in events if event.type == "tool_result")
    assert first.is_error
    assert "not before the review" in first.content
    assert not second.is_error, second.content
    cohorts = Path(session.workspace_dir) / "cohorts"
    assert sorted(path.name for path in cohorts.iterdir()) == [
        "everyone.csv",
        "everyone.json",
        "everyone.parquet",
    ]

    denied = healthcare_agent(
        ScriptedModel([call("DefineCohort", name="x", drugs=["HUMIRA"]), "Done."]),
        database=claims_db,
        store=MemoryStore(),
        workspace_root=str(tmp_path),
        policy=Policy(deny=["DefineCohort(*)"]),
    )
    events, _, session = _run(denied, "Define one")
    (result,) = (event for event in events if event.type == "tool_result")
    assert result.is_error
    assert "the rule DefineCohort(*) forbids this DefineCohort call" in result.content
    assert not (Path(session.workspace_dir) / "cohorts").exists()


# --- what an approval shows -----------------------------------------------------------------


def test_an_approval_shows_the_whole_code_and_nothing_the_terminal_would_hide(
    claims_db: Path, tmp_path: Path
) -> None:
    """The approval prompt showed each argument's first 60 characters on one line
    (``code='total_0 = 0\\ntotal_1 = 1\\n…'``): the line of the code that wrote a file, or the
    ``rm`` at the end of a command, was never on screen when the person said yes.
    ``approval_text`` shows the request whole, multi-line text as lines, and characters that
    would act on the terminal (an escape sequence that erases the line, a carriage return, a
    right-to-left override) as escapes rather than acting."""
    from loopwright.policy.approvals import approval_text

    hidden = "print('ok')\x1b[2K\rimport os; os.remove('claims.csv')  # \u202etxt.gpj"
    script = [
        call("Python", code=LONG_CODE),
        call("Bash", command=f"echo {'a' * 80} && {hidden}"),
        call("SQL", sql=LONG_SQL, dataset_name="top", description="Top prescribers"),
        "Done.",
    ]
    agent = healthcare_agent(
        ScriptedModel(script),
        database=claims_db,
        store=MemoryStore(),
        workspace_root=str(tmp_path),
        policy=Policy(mode="ask", ask=["SQL"]),
    )
    shown: list[str] = []

    def person(request: ApprovalRequest) -> bool:
        shown.append(approval_text(request))
        return False

    events, requests, session = _run(agent, "Look", person)
    assert [request.name for request in requests] == ["Python", "Bash", "SQL"]
    python, bash, sql = shown

    assert python.startswith("Python asks to run (Python runs commands or code, and the session")
    assert "  code:\n    │ total_0 = 0\n" in python
    assert "    │ open('gone.txt', 'w').write('x')" in python  # the last line, on screen
    assert python.count("│") == LONG_CODE.count("\n") + 1

    for acting in ("\x1b", "\r", "\u202e"):
        assert acting not in bash
    assert "print('ok')\\x1b[2K\\rimport os; os.remove('claims.csv')  # \\u202etxt.gpj" in bash
    assert "a" * 80 in bash

    assert "    │ -- Prescribers of the café list ✓ (résumé: 2024)" in sql  # unicode as is
    assert "    │ LIMIT 7 -- the last line" in sql
    assert "  dataset_name: top" in sql
    lines = [line.removeprefix("    │ ") for line in sql.splitlines() if "│" in line]
    assert "\n".join(lines) == LONG_SQL

    # every call was denied: nothing ran, nothing was saved
    workspace = Path(session.workspace_dir)
    assert not (workspace / "gone.txt").exists()
    assert not (workspace / "top.csv").exists()
    results = [event for event in events if event.type == "tool_result"]
    assert all(result.is_error for result in results)
    assert all("was not approved" in result.content for result in results)


# --- over the server -------------------------------------------------------------------------


def _analyst(request: ModelRequest) -> ScriptedTurn:
    """A model that, for the user's message ``<name>``, saves the long query as ``<name>``,
    then runs code writing ``<name>.txt``, then answers."""
    messages = list(request.messages)
    name = next(m.text for m in messages if m.role == "user" and m.text).strip()
    done = sum(len(m.tool_uses) for m in messages)
    if done == 0:
        return ScriptedTurn("", [call("SQL", sql=LONG_SQL, dataset_name=name, description=name)])
    if done == 1:
        code = f"{LONG_CODE}open({name + '.txt'!r}, 'w').write('ran')\n"
        return ScriptedTurn("", [call("Python", code=code)])
    return ScriptedTurn(f"Done for {name}.")


def test_server_sessions_approved_by_two_people_are_audited_in_one_log(
    claims_db: Path, tmp_path: Path
) -> None:
    """Two analysts' sessions on ``serve --agent healthcare`` in ask mode, at the same time,
    logging to one audit file outside the workspaces: the approval request each streams
    carries the whole code, each answer is logged under the person who gave it (alice allows,
    bob denies with a reason: his code never ran), and the log is whole JSON lines with the
    whole SQL and the rows it read."""
    from loopwright.server import create_app
    from server.live import iter_sse, start_live

    audit = tmp_path / "audit" / "all.jsonl"
    agent = healthcare_agent(
        ScriptedModel(_analyst),
        database=claims_db,
        store=MemoryStore(),
        workspace_root=str(tmp_path / "workspaces"),
        policy=Policy(mode="ask", audit=str(audit)),
    )
    server = start_live(create_app(agent, tokens={"tok-a": "alice", "tok-b": "bob"}))
    seen: dict[str, list[Any]] = {}
    sessions: dict[str, str] = {}
    failures: list[BaseException] = []

    def analyst(token: str, user: str, allow: bool) -> None:
        try:
            with server.client(token) as client:
                session_id = str(client.post("/api/sessions").json()["id"])
                sessions[user] = session_id
                body = {"content": user}
                path = f"/api/sessions/{session_id}/messages"
                with client.stream("POST", path, json=body, timeout=120) as response:
                    for event in iter_sse(response):
                        seen.setdefault(user, []).append(event)
                        if event.event == "approval_request":
                            answered = client.post(
                                f"/api/sessions/{session_id}/approvals/{event.data['id']}",
                                json={"allow": allow, "reason": "" if allow else "not today"},
                            )
                            assert answered.status_code == 200, answered.text
        except BaseException as exc:  # reported by the main thread
            failures.append(exc)

    threads = [
        threading.Thread(target=analyst, args=("tok-a", "alice", True)),
        threading.Thread(target=analyst, args=("tok-b", "bob", False)),
    ]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(120)
    finally:
        server.stop()
        asyncio.run(agent.aclose())
    assert not failures, failures

    records = [json.loads(line) for line in audit.read_text(encoding="utf-8").splitlines()]
    assert len(records) == 4
    for user in ("alice", "bob"):
        (request,) = (e.data for e in seen[user] if e.event == "approval_request")
        assert request["name"] == "Python"
        assert request["input"]["code"].startswith(LONG_CODE)  # the whole code, over SSE
        mine = [r for r in records if r["session_id"] == sessions[user]]
        python, sql = sorted(mine, key=lambda r: r["tool"])
        assert sql["input"]["sql"] == LONG_SQL
        assert sql["result"]["metadata"]["row_count"] == 7
        assert sql["result"]["metadata"]["dataset_name"] == user
        assert python["input"]["code"] == request["input"]["code"]
        assert python["approved_by"] == user
        workspace = tmp_path / "workspaces" / sessions[user]
        assert (workspace / f"{user}.csv").is_file()
        assert (workspace / f"{user}.txt").exists() is (user == "alice")
        if user == "bob":
            assert python["decision"] == "deny"
            assert python["reason"] == "not today"
            assert python["executed"] is False
        else:
            assert python["decision"] == "allow"
            assert python["executed"] is True
