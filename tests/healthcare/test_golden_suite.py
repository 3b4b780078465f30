"""The golden questions as an eval suite: ``loopwright eval --agent healthcare``, the ``golden``
check, and the healthcare agent's factory, run for real through the CLI."""

from __future__ import annotations

import json
import pickle
import re
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml

from loopwright.evals.checkers import CheckContext, GoldenCheck, run_check
from loopwright.evals.suite import SuiteError
from loopwright.events import ToolCall, ToolResult
from loopwright.healthcare.golden import GOLDEN_QUESTIONS, get_question
from loopwright.healthcare.suite import HealthcareAgentFactory, golden_suite, saved_csv

from .conftest import Cli

TOP10 = get_question("humira_ca_top10").sql


def _top10(claims_con: duckdb.DuckDBPyConnection) -> tuple[str, int, int]:
    """The top HUMIRA prescriber in California, their count, and the top 10's total, worked
    out here with DuckDB (not with the checker's own reference code)."""
    rows = claims_con.execute(TOP10).fetchall()
    assert rows[0][1] > rows[1][1], "the test needs a single top prescriber"
    return str(rows[0][0]), int(rows[0][1]), sum(int(n) for _, n in rows)


def _sql(sql: str, name: str = "top10") -> dict[str, Any]:
    return {"call": "SQL", "input": {"sql": sql, "dataset_name": name, "description": "q"}}


def _results(path: Path) -> dict[str, dict[str, Any]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return {r["task_id"]: r for r in data["results"]}


def test_the_golden_suite_asks_every_question_once() -> None:
    suite = golden_suite()

    assert [t.id for t in suite.tasks] == [q.id for q in GOLDEN_QUESTIONS]
    for task, question in zip(suite.tasks, GOLDEN_QUESTIONS, strict=True):
        assert task.prompt == question.question
        assert task.tags == list(question.tags)
        [check] = task.checks
        assert isinstance(check, GoldenCheck)
        assert check.question == question.id
        assert check.problem(Path.cwd()) is None
    assert suite.sha256 == golden_suite().sha256  # --resume can trust it
    assert [t.id for t in golden_suite(["top_humira_prescriber"]).tasks] == [
        "top_humira_prescriber"
    ]
    with pytest.raises(SuiteError, match=r"no task 'nope'.*humira_ca_top10"):
        golden_suite(["nope"])


def test_a_suite_on_the_healthcare_agent_is_graded_against_the_reference(
    cli: Cli, tmp_path: Path, claims_db: Path, claims_con: duckdb.DuckDBPyConnection
) -> None:
    npi, count, total = _top10(claims_con)
    right = f"The top prescriber is NPI {npi} with {count} fills; the top 10 wrote {total}."
    wrong = f"The top prescriber is NPI {npi} with {count + 5} fills; the top 10 wrote {total}."
    texas = TOP10.replace("'CA'", "'TX'")
    golden = [{"type": "golden", "question": "humira_ca_top10"}]
    tasks = [
        {"id": "right", "script": [_sql(TOP10), right]},
        {"id": "wrong-count", "script": [_sql(TOP10), wrong]},
        # the CSV checked is the last one saved: a failed call after it does not count...
        {"id": "failed-call-after", "script": [_sql(TOP10), _sql("SELEC 1", "oops"), right]},
        # ...and a CSV of another state's prescribers fails, however right the answer
        {"id": "other-csv", "script": [_sql(texas, "texas"), right]},
        {"id": "answer-only", "script": [right], "checks": [{**golden[0], "csv": False}]},
    ]
    for task in tasks:
        task.setdefault("checks", golden)
        task["prompt"] = "Find the top 10 prescribers of HUMIRA in California."
    suite = tmp_path / "hc.yaml"
    suite.write_text(yaml.safe_dump({"name": "hc", "tasks": tasks}), encoding="utf-8")

    result = cli(
        "eval", str(suite), "--agent", "healthcare", "-m", "scripted", "-d", str(claims_db)
    )

    assert result.returncode == 1, result.stderr  # some tasks fail
    results = _results(tmp_path / "hc.results.json")
    status = {task: r["status"] for task, r in results.items()}
    assert status == {
        "right": "passed",
        "wrong-count": "failed",
        "failed-call-after": "passed",
        "other-csv": "failed",
        "answer-only": "passed",
    }
    passed = results["right"]["checks"][0]
    assert passed["type"] == "golden"
    assert passed["score"] == 100
    saved = r"top10\.csv: (\d+) of \1 reference rows \(\1 rows saved\)"
    assert re.search(saved, passed["detail"])
    missing = results["wrong-count"]["checks"][0]["detail"]
    assert f"missing top prescriber's prescriptions: expected {count}" in missing
    assert f"closest number in the answer: {count + 5}" in missing
    assert "top10.csv" in results["failed-call-after"]["checks"][0]["detail"]
    other = results["other-csv"]["checks"][0]["detail"]
    assert re.search(r"the CSV reproduces 0 of \d+ reference rows", other)
    assert "no CSV checked" in results["answer-only"]["checks"][0]["detail"]


def test_the_golden_questions_run_on_the_embedded_model(
    cli: Cli, tmp_path: Path, claims_db: Path
) -> None:
    """No suite file: the golden suite itself, one question, the bundled Gemma 3 model."""
    result = cli(
        "eval",
        "--agent",
        "healthcare",
        "-m",
        "local:gemma3-270m",
        "-d",
        str(claims_db),
        "-t",
        "humira_ca_top10",
    )

    assert result.returncode in (0, 1), result.stderr  # passed or failed, never an error
    assert "suite healthcare-golden: 1 task(s)" in result.stderr
    [run] = _results(tmp_path / "healthcare-golden.results.json").values()
    assert run["status"] in ("passed", "failed"), run
    assert run["model_calls"] <= 6  # the embedded models' turn limit, as the agent's own
    [check] = run["checks"]
    assert check["type"] == "golden"
    assert "top prescriber NPI" in check["detail"]
    assert 0 <= check["score"] <= 100
    assert (tmp_path / "healthcare-golden.results.html").is_file()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "error: give the suite file to run (or --agent healthcare"),
        (["--agent", "healthcare", "-m", "scripted"], "the golden questions have no scripts"),
        (["s.yaml", "--database", "x.duckdb"], "--database and --rows go with --agent healthcare"),
        (["--agent", "robot"], "unknown agent 'robot'; use one of: standard, healthcare"),
        (
            ["--agent", "healthcare", "-d", "x.duckdb", "--rows", "5000"],
            "--rows sizes the generated database, which --database replaces",
        ),
        (["--agent", "healthcare", "-t", "nope"], "no task 'nope' in suite 'healthcare-golden'"),
        (
            ["--agent", "healthcare", "-m", "local:gemma3-270m", "-d", "missing.duckdb"],
            "missing.duckdb",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_status_2(cli: Cli, args: list[str], message: str) -> None:
    result = cli("eval", *args)

    assert result.returncode == 2, result.stderr
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_an_unknown_golden_question_is_refused_when_the_suite_loads(
    cli: Cli, tmp_path: Path
) -> None:
    suite = tmp_path / "s.yaml"
    suite.write_text(
        "tasks:\n  - {id: a, prompt: x, script: [ok], checks: [{type: golden, question: nope}]}\n"
    )

    result = cli("eval", str(suite), "-m", "scripted")

    assert result.returncode == 2
    assert "no golden question 'nope'; the questions are:" in result.stderr
    assert "humira_ca_top10" in result.stderr


async def test_without_a_duckdb_database_the_check_says_why(tmp_path: Path) -> None:
    check = GoldenCheck(type="golden", question="humira_ca_top10")

    def context(extra: dict[str, Any]) -> CheckContext:
        return CheckContext("q", "NPI 1 wrote 2", tmp_path, None, tmp_path, extra=extra)

    standard = await run_check(check, context({}))
    postgres = HealthcareAgentFactory("scripted", database="postgresql://u@127.0.0.1/claims")
    on_postgres = await run_check(check, context(postgres.check_extra))

    assert not standard.passed
    assert "the agent has no DuckDB database to compute it from" in standard.detail
    assert not on_postgres.passed
    assert "the agent's database is a postgresql one" in on_postgres.detail
    assert "give the check a database: file" in on_postgres.detail


async def test_a_check_may_name_its_own_database(
    tmp_path: Path, claims_db: Path, claims_con: duckdb.DuckDBPyConnection
) -> None:
    npi, count, total = _top10(claims_con)
    check = GoldenCheck(
        type="golden", question="humira_ca_top10", database=str(claims_db), csv=False
    )
    answer = f"NPI {npi} wrote {count}; the top 10 wrote {total} in all."

    result = await run_check(check, CheckContext("q", answer, tmp_path, None, tmp_path))

    assert result.passed, result.detail
    assert GoldenCheck(type="golden", question="humira_ca_top10", database="no.duckdb").problem(
        tmp_path
    ) == ("golden check: no database file 'no.duckdb' (relative to the suite)")


def test_the_factory_names_its_duckdb_file_and_pickles_without_its_store(
    claims_db: Path,
) -> None:
    from loopwright.sessions.store import MemoryStore

    by_path = HealthcareAgentFactory("scripted", database=claims_db, store=MemoryStore())
    by_url = HealthcareAgentFactory("scripted", database=f"duckdb://{claims_db}")
    copy = pickle.loads(pickle.dumps(HealthcareAgentFactory("scripted", database=claims_db)))

    assert by_path.check_extra == {"database": str(claims_db)}
    assert by_url.check_extra == {"database": str(claims_db)}
    assert copy.database == str(claims_db)
    assert copy.store is None
    assert pickle.loads(pickle.dumps(by_path)).store is not None  # a store it was given


def test_saved_csv_is_the_last_successful_sql_call_of_the_agent_itself(tmp_path: Path) -> None:
    for name in ("first", "second", "sub"):
        (tmp_path / f"{name}.csv").write_text("a\n1\n")

    def call(id: str, name: str, ok: bool = True, agent: str | None = None) -> list[object]:
        sql = ToolCall(id, "SQL", {"sql": "SELECT 1", "dataset_name": name}, agent=agent)
        return [sql, ToolResult(id, "SQL", "Saved", not ok, 1.0, agent=agent)]

    events = [*call("1", "first"), *call("2", "second"), *call("3", "gone", ok=False)]
    events += call("4", "sub", agent="helper")  # a sub-agent's file is not the answer's
    events += call("5", "../escape")  # not a dataset name the tool would have taken

    assert saved_csv(events, tmp_path) == tmp_path / "second.csv"
    assert saved_csv(call("6", "missing"), tmp_path) is None
    assert saved_csv([], tmp_path) is None
