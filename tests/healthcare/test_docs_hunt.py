"""Following docs/healthcare.md and examples/healthcare/ literally: behaviour the docs promise
that the code does not deliver (each test fails on the code it was written against).

- ``--resume`` "refuses a result file of another model or another database (the file's
  ``agent`` names the database)": the ``agent`` label holds ``--database`` as typed, so a
  relative path names another file from another directory (accepted), and the same file
  spelled another way (``./claims.duckdb``) is refused.
- The demo makes its model only after building the database, unlike ``loopwright
  healthcare``/``eval``, which refuse a model they cannot make before a build that may take
  minutes.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
import yaml

from loopwright.healthcare.data import build_database
from loopwright.healthcare.suite import HealthcareAgentFactory
from loopwright.models.base import ModelError

from .conftest import cli_env

ROOT = Path(__file__).resolve().parents[2]

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
    return subprocess.run(
        [sys.executable, "-m", "loopwright.cli.app", "eval", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=cli_env(home),
        cwd=cwd,
        timeout=240,
    )


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
    monkeypatch.chdir(second)
    elsewhere = HealthcareAgentFactory("scripted", database="claims.duckdb").label

    assert plain == dotted == absolute
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


def _demo() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "healthcare_demo_docs_hunt", ROOT / "examples" / "healthcare" / "demo.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_the_demo_refuses_a_model_it_cannot_make_before_building_the_database(
    loopwright_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``demo.py --model anthropic`` without a key: the error, and no database built first
    (as ``loopwright healthcare -m anthropic`` does it)."""
    import asyncio

    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    demo = _demo()
    with pytest.raises(ModelError):
        asyncio.run(demo.run_demo("anthropic", rows=1_000))
    assert not list((loopwright_home / "data" / "healthcare").glob("*.duckdb"))
