"""Compact mode chosen by ``LOOPWRIGHT_COMPACT`` rather than by a flag, as the commands that
repeat a run must repeat it.

Real ``loopwright`` processes on the scripted model and a small generated claims database.
"""

from __future__ import annotations

import shlex
from pathlib import Path

import pytest
import yaml

from cli_process import cli_env, interrupt_after
from loopwright.healthcare.data import build_database

#: A query DuckDB takes long over: the task is still running when Ctrl-C comes.
SLOW_SQL = "SELECT COUNT(*) AS n FROM range(100000000000) AS r(i) WHERE i % 7 = 3"


@pytest.fixture(scope="module")
def claims(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("compact-hunt") / "claims.duckdb"
    return build_database(path, rx_claims=2_000, seed=11)


def test_ctrl_c_in_an_eval_the_setting_made_compact_resumes_it_compact(
    tmp_path: Path, loopwright_home: Path, claims: Path
) -> None:
    """``LOOPWRIGHT_COMPACT=1`` made the suite's agent the compact one; the command printed
    to go on left the mode out, so run where the setting is not set (another shell, a CI
    job) it finished the suite on the full agent, in the same result file."""
    task = {
        "id": "slow",
        "prompt": "How many?",
        "script": [
            {"call": "SQL", "input": {"sql": SLOW_SQL, "dataset_name": "n", "description": "n"}},
            "{{result}}",
        ],
        "checks": [{"type": "contains", "text": ["n"]}],
    }
    suite = tmp_path / "slow.yaml"
    suite.write_text(yaml.safe_dump({"name": "slow", "tasks": [task]}), encoding="utf-8")
    args = ["eval", str(suite), "--agent", "healthcare", "-m", "scripted", "-d", str(claims)]
    env = {**cli_env(loopwright_home), "LOOPWRIGHT_COMPACT": "1"}
    status, rest = interrupt_after(
        args, line="suite slow:", env=env, cwd=tmp_path, pause=1.0, timeout=120
    )
    assert status == 130, rest
    again = shlex.split(rest.split("Go on with: ", 1)[1].strip())
    assert "--compact" in again, again
    assert "--full" not in again
