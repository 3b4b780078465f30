"""``loopwright eval --agent healthcare`` as a user drives it: Ctrl-C and the command that
resumes the run, a resume with another model, databases the golden questions cannot be
answered from, and what a ``golden`` check with ``csv: false`` reports."""

from __future__ import annotations

import asyncio
import itertools
import json
import shlex
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml

from cli_process import cli_env, interrupt_after
from loopwright.evals.bench import SuiteRun, run_suite
from loopwright.evals.report import write_html
from loopwright.evals.suite import SuiteError, load_suite
from loopwright.healthcare.data import build_database
from loopwright.healthcare.suite import HealthcareAgentFactory

from .conftest import Cli

ELIQUIS_SQL = (
    "SELECT PRESCRIBER_NPI_STATE_CD AS state, COUNT(*) AS fills FROM RX_CLAIMS "
    "WHERE NDC_DRUG_NM = 'ELIQUIS' GROUP BY state ORDER BY fills DESC LIMIT 1"
)


def _eliquis_task(task_id: str, *, before: list[Any] | None = None, **extra: Any) -> dict[str, Any]:
    """A task that answers the ELIQUIS question with the SQL tool's own result (saving
    ``eliquis.csv``), after the turns of ``before``."""
    sql = {"sql": ELIQUIS_SQL, "dataset_name": "eliquis", "description": "the top state"}
    return {
        "id": task_id,
        "prompt": "Which state has the most ELIQUIS prescriptions, and how many?",
        "script": [*(before or []), {"call": "SQL", "input": sql}, "{{result}}"],
        "checks": [{"type": "golden", "question": "eliquis_top_state"}],
        **extra,
    }


def _write_suite(path: Path, tasks: list[dict[str, Any]]) -> Path:
    path.write_text(yaml.safe_dump({"name": path.stem, "tasks": tasks}), encoding="utf-8")
    return path


def _results(path: Path) -> dict[tuple[str, int], dict[str, Any]]:
    data = json.loads(path.read_text(encoding="utf-8"))
    return {(r["task_id"], r["epoch"]): r for r in data["results"]}


def test_ctrl_c_prints_the_command_that_finishes_the_same_run(
    cli: Cli, tmp_path: Path, loopwright_home: Path, claims_db: Path
) -> None:
    """The printed command keeps the model, epochs and tasks of the interrupted run: without
    them a resume runs the rest on the default model, one epoch, every task."""
    sleep = {"call": "Bash", "input": {"command": "sleep 2"}}
    suite = _write_suite(
        tmp_path / "hc.yaml",
        [_eliquis_task("quick"), _eliquis_task("slow", before=[sleep]), _eliquis_task("other")],
    )
    args = ["eval", str(suite), "--agent", "healthcare", "-m", "scripted", "-d", str(claims_db)]
    args += ["-k", "2", "-n", "1", "-t", "quick", "-t", "slow"]
    # Ctrl-C while the slow task sleeps
    status, rest = interrupt_after(
        args, line="✓ quick [epoch 1]", env=cli_env(loopwright_home), cwd=tmp_path
    )
    assert status == 130, rest
    assert "interrupted after 1 of 4 run(s)" in rest
    again = shlex.split(rest.split("Go on with: ", 1)[1].strip())
    assert again[:3] == ["loopwright", "eval", str(suite)]
    pairs = list(itertools.pairwise(again))
    for pair in [
        ("--agent", "healthcare"),
        ("--model", "scripted"),
        ("--database", str(claims_db)),
        ("--epochs", "2"),
        ("--parallel", "1"),
        ("--task", "quick"),
        ("--task", "slow"),
    ]:
        assert pair in pairs, (pair, again)
    assert "--resume" in again

    resumed = cli(*again[1:])  # the command as printed

    assert resumed.returncode == 0, resumed.stderr
    assert "3 run(s) to go (1 already recorded)" in resumed.stderr
    final = SuiteRun.load(tmp_path / "hc.results.json")
    assert final.complete
    assert final.model == "scripted"
    assert sorted((r.task_id, r.epoch) for r in final.results) == [
        ("quick", 1),
        ("quick", 2),
        ("slow", 1),
        ("slow", 2),
    ]
    assert all(r.passed for r in final.results)


def test_a_resume_on_another_model_is_refused(
    tmp_path: Path, claims_db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Results of two models in one file, under the second one's name, would credit it with
    the first one's answers."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    suite = load_suite(_write_suite(tmp_path / "hc.yaml", [_eliquis_task("a"), _eliquis_task("b")]))
    output = tmp_path / "hc.results.json"

    async def run(model: str, **options: Any) -> SuiteRun:
        factory = HealthcareAgentFactory(model, database=claims_db)
        try:
            return await run_suite(suite, factory, model=model, output=output, **options)
        finally:
            factory.close()

    first = asyncio.run(run("scripted", tasks=["a"]))
    assert [r.status for r in first.results] == ["passed"]
    saved = output.read_text(encoding="utf-8")

    with pytest.raises(SuiteError, match=r"holds results of model 'scripted', not 'openai:"):
        asyncio.run(run("openai:gpt-4o-mini", resume=True))

    assert output.read_text(encoding="utf-8") == saved
    resumed = asyncio.run(run("scripted", resume=True))  # the same model goes on
    assert sorted(r.task_id for r in resumed.results) == ["a", "b"]
    assert resumed.complete


def test_a_resume_on_another_database_is_refused(tmp_path: Path, claims_db: Path) -> None:
    """The same question has another reference on another database: results of two
    databases in one file would be graded against two different answers."""
    suite = load_suite(_write_suite(tmp_path / "hc.yaml", [_eliquis_task("a"), _eliquis_task("b")]))
    output = tmp_path / "hc.results.json"
    other = build_database(tmp_path / "other.duckdb", rx_claims=1_000, seed=5)

    async def run(database: Path, **options: Any) -> SuiteRun:
        factory = HealthcareAgentFactory("scripted", database=database)
        try:
            return await run_suite(suite, factory, model="scripted", output=output, **options)
        finally:
            factory.close()

    first = asyncio.run(run(claims_db, tasks=["a"]))
    assert first.agent == f"the healthcare agent on {claims_db}"
    write_html(first, tmp_path / "hc.html")
    assert (
        f"<b>scripted</b>, the healthcare agent on {claims_db}"
        in (tmp_path / "hc.html").read_text()
    )
    saved = output.read_text(encoding="utf-8")

    with pytest.raises(SuiteError, match=r"holds results of the healthcare agent on .*, not the"):
        asyncio.run(run(other, resume=True))

    assert output.read_text(encoding="utf-8") == saved
    resumed = asyncio.run(run(claims_db, resume=True))  # the same database goes on
    assert sorted(r.task_id for r in resumed.results) == ["a", "b"]
    assert SuiteRun.load(output).agent == first.agent


@pytest.fixture
def without_payments(tmp_path: Path) -> Path:
    """A small generated claims database with no PROVIDER_PAYMENTS table (a database of
    one's own with only some of the claims tables)."""
    path = build_database(tmp_path / "no_payments.duckdb", rx_claims=1_000, seed=3)
    con = duckdb.connect(str(path))  # this test's own file, not the shared one
    try:
        con.execute("DROP TABLE PROVIDER_PAYMENTS")
    finally:
        con.close()
    return path


def test_golden_questions_the_database_cannot_answer_are_refused_before_any_task_runs(
    cli: Cli, tmp_path: Path, without_payments: Path
) -> None:
    payments = {
        "id": "pay",
        "prompt": "Which specialty received the most industry payments?",
        "script": ["Internal Medicine"],
        "checks": [{"type": "golden", "question": "payments_by_specialty"}],
    }
    suite = _write_suite(tmp_path / "mine.yaml", [_eliquis_task("state"), payments])
    args = ["--agent", "healthcare", "-m", "scripted", "-d", str(without_payments)]

    refused = cli("eval", str(suite), *args)

    assert refused.returncode == 2, refused.stderr
    assert "Traceback" not in refused.stderr
    assert "cannot answer golden question(s) payments_by_specialty (task(s) pay)" in (
        refused.stderr
    )
    assert "PROVIDER_PAYMENTS" in refused.stderr
    assert "--task" in refused.stderr
    assert not (tmp_path / "mine.results.json").exists()  # nothing ran, nothing was blamed
    # the golden suite itself, with a question that needs the missing table
    golden = cli(
        "eval", "--agent", "healthcare", "-m", "local:gemma3-270m", "-d", str(without_payments),
        "-t", "payments_by_specialty", "-t", "providers_by_state",
    )  # fmt: skip
    assert golden.returncode == 2, golden.stderr
    assert "cannot answer golden question(s) payments_by_specialty:" in golden.stderr
    assert not (tmp_path / "healthcare-golden.results.json").exists()

    answerable = cli("eval", str(suite), *args, "-t", "state")

    assert answerable.returncode == 0, answerable.stderr
    assert _results(tmp_path / "mine.results.json")[("state", 1)]["status"] == "passed"


def test_a_golden_check_whose_own_database_cannot_answer_it_is_refused_when_the_suite_loads(
    tmp_path: Path, without_payments: Path
) -> None:
    (tmp_path / "notes.duckdb").write_text("not a database\n")
    task = {"id": "t", "prompt": "q", "script": ["x"]}
    check = {"type": "golden", "question": "payment_natures", "database": without_payments.name}
    suite = _write_suite(tmp_path / "own.yaml", [{**task, "checks": [check]}])

    with pytest.raises(SuiteError) as refused:
        load_suite(suite)

    message = str(refused.value)
    assert "task t: golden check: the database 'no_payments.duckdb' cannot answer" in message
    assert "golden question 'payment_natures'" in message
    assert "PROVIDER_PAYMENTS" in message
    check["database"] = "notes.duckdb"
    _write_suite(suite, [{**task, "checks": [check]}])
    with pytest.raises(SuiteError, match=r"golden check: cannot open the database 'notes.duckdb'"):
        load_suite(suite)
    # a question the same database can answer loads
    check.update(question="eliquis_top_state", database=without_payments.name)
    _write_suite(suite, [{**task, "checks": [check]}])
    assert load_suite(suite).tasks[0].checks[0].problem(tmp_path) is None


def test_a_golden_check_with_csv_false_says_so_rather_than_that_no_csv_was_saved(
    cli: Cli, tmp_path: Path, claims_db: Path
) -> None:
    task = _eliquis_task("both")
    task["checks"] = [
        {"type": "golden", "question": "eliquis_top_state", "name": "with-csv"},
        {"type": "golden", "question": "eliquis_top_state", "name": "answer", "csv": False},
    ]
    suite = _write_suite(tmp_path / "csv.yaml", [task])

    result = cli(
        "eval", str(suite), "--agent", "healthcare", "-m", "scripted", "-d", str(claims_db)
    )

    assert result.returncode == 0, result.stderr
    with_csv, answer_only = _results(tmp_path / "csv.results.json")[("both", 1)]["checks"]
    assert "eliquis.csv: 1 of 1 reference rows" in with_csv["detail"]
    assert "no CSV checked (the check has csv: false)" in answer_only["detail"]
    assert "no SQL call saved one" not in answer_only["detail"]  # one did: eliquis.csv


def test_golden_checks_on_a_database_with_no_file_to_grade_from_are_refused(
    cli: Cli, tmp_path: Path
) -> None:
    """An in-memory DuckDB database (as a PostgreSQL one) gives the checks no references:
    every task would fail, whatever the agent answered."""
    suite = _write_suite(tmp_path / "mem.yaml", [_eliquis_task("state")])

    result = cli(
        "eval", str(suite), "--agent", "healthcare", "-m", "scripted", "-d", "duckdb://:memory:"
    )

    assert result.returncode == 2, result.stderr
    assert "the golden checks of task(s) state cannot be graded" in result.stderr
    assert "the agent's DuckDB database is in memory" in result.stderr
    assert "database: file" in result.stderr
    assert not (tmp_path / "mem.results.json").exists()


def test_own_suites_give_the_embedded_models_the_healthcare_agents_six_turns(
    tmp_path: Path,
) -> None:
    """The runner's default of 20 turns replaced the compact agent's six for an own suite."""
    pytest.importorskip("llama_cpp", reason="needs the `local` extra")
    from loopwright.cli.eval import healthcare_limits
    from loopwright.healthcare.agent import COMPACT_MAX_TURNS
    from loopwright.models import resolve_model

    small = resolve_model("local:smollm2-135m")  # not loaded: nothing runs
    big = resolve_model("scripted")
    tasks = [_eliquis_task("a"), _eliquis_task("b", limits={"max_turns": 3})]
    own = load_suite(_write_suite(tmp_path / "own.yaml", tasks))

    fitted = healthcare_limits(own, small)
    assert [fitted.limits_for(t).max_turns for t in fitted.tasks] == [COMPACT_MAX_TURNS, 3]
    assert fitted.limits_for(fitted.tasks[0]).timeout == 300  # the other limits stay
    assert healthcare_limits(own, big).limits_for(own.tasks[0]).max_turns == 20
    data = {"name": "set", "limits": {"max_turns": 9, "timeout": 60}, "tasks": tasks}
    (tmp_path / "set.yaml").write_text(yaml.safe_dump(data), encoding="utf-8")
    chosen = load_suite(tmp_path / "set.yaml")
    kept = healthcare_limits(chosen, small)
    assert [kept.limits_for(t).max_turns for t in kept.tasks] == [9, 3]
    assert kept.limits_for(kept.tasks[0]).timeout == 60
