"""Following docs/healthcare.md and examples/healthcare/ literally: behaviour the docs promise
that the code does not deliver (each test fails on the code it was written against).

- ``--resume`` "refuses a result file of another model or another database (the file's
  ``agent`` names the database)": the ``agent`` label holds ``--database`` as typed, so a
  relative path names another file from another directory (accepted), and the same file
  spelled another way (``./claims.duckdb``) is refused.

(The demo's model checked before its database is built: ``test_demo``.)
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from cli_process import cli_env, run_cli
from loopwright.healthcare.data import build_database
from loopwright.healthcare.suite import HealthcareAgentFactory

ELIQUIS_SQL = (
    "SELECT PRESCRIBER_NPI_STATE_CD AS state, COUNT(*) AS fills FROM RX_CLAIMS "
    "WHERE NDC_DRUG_NM = 'ELIQUIS' GROUP BY state ORDER BY fills DESC LIMIT 1"
)


def _suite(path: Path) -> Path:
    """A one-task suite the scripted model answers with the SQL tool's own result."""
    task = {
        "id": "eliquis-state",
        "prompt": "Which state has the most ELIQUIS prescriptions, and how many?",
        "script": [
            {
                "call": "SQL",
                "input": {"sql": ELIQUIS_SQL, "dataset_name": "eliquis", "description": "top"},
            },
            "{{result}}",
        ],
        "checks": [{"type": "golden", "question": "eliquis_top_state"}],
    }
    path.write_text(yaml.safe_dump({"name": "eliquis", "tasks": [task]}), encoding="utf-8")
    return path


def _eval(cwd: Path, home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(["eval", *args], env=cli_env(home), cwd=cwd)


def test_the_resume_label_names_the_database_file_not_how_it_was_typed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, claims_db: Path
) -> None:
    """One file has one label, however it is spelled; two files have two, even when the
    same relative path names them from two directories."""
    first, second = tmp_path / "first", tmp_path / "second"
    for directory in (first, second):
        directory.mkdir()
        shutil.copy(claims_db, directory / "claims.duckdb")

    monkeypatch.chdir(first)
    plain = HealthcareAgentFactory("scripted", database="claims.duckdb").label
    dotted = HealthcareAgentFactory("scripted", database="./claims.duckdb").label
    absolute = HealthcareAgentFactory("scripted", database=str(first / "claims.duckdb")).label
    url = HealthcareAgentFactory("scripted", database="duckdb://claims.duckdb?threads=1").label
    absolute_url = f"the healthcare agent on duckdb://{first / 'claims.duckdb'}?threads=1"
    monkeypatch.chdir(second)
    elsewhere = HealthcareAgentFactory("scripted", database="claims.duckdb").label

    assert plain == dotted == absolute
    assert url == absolute_url  # a relative duckdb:// URL too, its settings kept
    assert elsewhere != plain


def test_resume_refuses_results_of_another_database_behind_the_same_relative_path(
    tmp_path: Path, loopwright_home: Path, claims_db: Path
) -> None:
    """Results recorded on ``first/claims.duckdb`` are not results on ``second/claims.duckdb``
    (other rows: another seed), though both are ``--database claims.duckdb`` where they ran."""
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir()
    second.mkdir()
    shutil.copy(claims_db, first / "claims.duckdb")
    build_database(second / "claims.duckdb", rx_claims=1_000, seed=99)
    suite = _suite(tmp_path / "eliquis.yaml")
    output = tmp_path / "eliquis.results.json"
    common = ["--agent", "healthcare", "-m", "scripted", "-o", str(output)]

    ran = _eval(first, loopwright_home, str(suite), *common, "--database", "claims.duckdb")
    assert ran.returncode in (0, 1), ran.stderr
    resumed = _eval(
        second, loopwright_home, str(suite), *common, "--database", "claims.duckdb", "--resume"
    )

    assert resumed.returncode == 2, (resumed.stdout, resumed.stderr)
    assert "holds results of the healthcare agent on" in resumed.stderr
    assert json.loads(output.read_text(encoding="utf-8"))["results"]  # kept as it was


def test_resume_accepts_the_same_database_file_spelled_another_way(
    tmp_path: Path, loopwright_home: Path, claims_db: Path
) -> None:
    """``--database claims.duckdb`` then ``--database ./claims.duckdb`` is one database."""
    shutil.copy(claims_db, tmp_path / "claims.duckdb")
    suite = _suite(tmp_path / "eliquis.yaml")
    common = ["--agent", "healthcare", "-m", "scripted", "-o", "eliquis.results.json"]

    ran = _eval(tmp_path, loopwright_home, str(suite), *common, "--database", "claims.duckdb")
    assert ran.returncode in (0, 1), ran.stderr
    resumed = _eval(
        tmp_path, loopwright_home, str(suite), *common, "--database", "./claims.duckdb", "--resume"
    )

    assert resumed.returncode == ran.returncode, (resumed.stdout, resumed.stderr)
    assert "holds results of" not in resumed.stderr
