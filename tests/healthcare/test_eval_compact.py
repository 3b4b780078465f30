"""``loopwright eval --agent healthcare --compact/--full``: the suite's agent is the compact
one (the SQL tool alone, six turns) or the full one, as ``loopwright healthcare`` makes it,
whatever the model; ``LOOPWRIGHT_COMPACT`` sets the default. A task's script calls Python
first: the compact agent has no Python tool, so that call is an error the result counts."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from cli_process import cli_env, run_cli
from loopwright.cli.eval import _command_again, healthcare_limits
from loopwright.evals.suite import load_suite
from loopwright.healthcare.agent import COMPACT_MAX_TURNS
from loopwright.models import resolve_model

from .conftest import Cli

ELIQUIS_SQL = (
    "SELECT PRESCRIBER_NPI_STATE_CD AS state, COUNT(*) AS fills FROM RX_CLAIMS "
    "WHERE NDC_DRUG_NM = 'ELIQUIS' GROUP BY state ORDER BY fills DESC LIMIT 1"
)
TASK = {
    "id": "eliquis",
    "prompt": "Which state has the most ELIQUIS prescriptions, and how many?",
    "script": [
        {"call": "Python", "input": {"code": "print(1)"}},
        {"call": "SQL", "input": {"sql": ELIQUIS_SQL, "dataset_name": "e", "description": "x"}},
        "{{result}}",
    ],
    "checks": [{"type": "golden", "question": "eliquis_top_state"}],
}


def _suite(tmp_path: Path) -> Path:
    path = tmp_path / "compact.yaml"
    path.write_text(yaml.safe_dump({"name": "compact", "tasks": [TASK]}), encoding="utf-8")
    return path


def _tool_errors(output: Path) -> int:
    (result,) = json.loads(output.read_text(encoding="utf-8"))["results"]
    assert result["status"] == "passed", result
    return int(result["tool_errors"])


def test_compact_and_full_choose_the_agent_the_tasks_run_on(
    tmp_path: Path, loopwright_home: Path, claims_db: Path
) -> None:
    suite = _suite(tmp_path)
    base = ["eval", str(suite), "--agent", "healthcare", "-m", "scripted", "-d", str(claims_db)]
    env = cli_env(loopwright_home)
    runs = {
        "compact": (["--compact"], env),
        "full": (["--full"], {**env, "LOOPWRIGHT_COMPACT": "1"}),  # the flag wins
        "setting": ([], {**env, "LOOPWRIGHT_COMPACT": "1"}),
        "default": ([], env),  # the scripted model is no embedded one: the full agent
    }
    errors = {}
    for name, (flags, run_env) in runs.items():
        output = tmp_path / f"{name}.json"
        ran = run_cli([*base, *flags, "-o", str(output)], env=run_env, cwd=tmp_path, timeout=240)
        assert ran.returncode == 0, ran.stdout + ran.stderr
        errors[name] = _tool_errors(output)
    # the compact agent has no Python: the script's first call is an unknown tool
    assert errors == {"compact": 1, "full": 0, "setting": 1, "default": 0}


def test_compact_goes_with_the_healthcare_agent_and_a_known_setting(
    cli: Cli, tmp_path: Path
) -> None:
    refused = cli("eval", str(_suite(tmp_path)), "-m", "scripted", "--compact")
    assert refused.returncode == 2
    assert "--compact goes with --agent healthcare" in refused.stderr


def test_compact_mode_gets_its_six_turns_and_a_resume_keeps_the_flag(tmp_path: Path) -> None:
    suite = load_suite(_suite(tmp_path))
    big = resolve_model("scripted")
    assert healthcare_limits(suite, big, True).limits_for(suite.tasks[0]).max_turns == (
        COMPACT_MAX_TURNS
    )
    assert healthcare_limits(suite, big, None).limits_for(suite.tasks[0]).max_turns == 20
    again = _command_again(
        tmp_path / "compact.yaml", agent="healthcare", model="openai:qwen2.5:0.5b@http://h/v1",
        database=None, rows=None, output=None, html=None, compact=True, parallel=1, epochs=1,
        retries=0, retry_delay=1.0, judge_model=None, tasks=[], executor="local",
        ray_address=None,
    )  # fmt: skip
    assert "--compact" in again.split()


def test_a_resume_in_the_other_mode_is_refused(
    tmp_path: Path, loopwright_home: Path, claims_db: Path
) -> None:
    """The result file of a --compact run names the mode, so finishing it with --full (which
    would mix two agents' results in one file) is refused, as another database is."""
    suite = _suite(tmp_path)
    output = tmp_path / "mixed.json"
    base = ["eval", str(suite), "--agent", "healthcare", "-m", "scripted", "-d", str(claims_db)]
    env = cli_env(loopwright_home)
    first = run_cli([*base, "--compact", "-o", str(output)], env=env, cwd=tmp_path, timeout=240)
    assert first.returncode == 0, first.stdout + first.stderr
    assert json.loads(output.read_text(encoding="utf-8"))["agent"].endswith(" in compact mode")
    again = run_cli(
        [*base, "--full", "-o", str(output), "--resume"], env=env, cwd=tmp_path, timeout=240
    )
    assert again.returncode == 2, again.stdout + again.stderr
    assert "in compact mode" in again.stderr
