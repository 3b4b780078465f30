"""``loopwright eval`` counts what the warehouse billed: a task run on BigQuery carries its
bytes billed and their estimated cost, the summary, the per-task means, the terminal table
and the HTML report include it, and an unusable price setting is said so, never taken for $0.

Real runs: ``loopwright eval --agent healthcare`` as a process with a scripted model, against
the BigQuery stand-in (:mod:`sql.bigquery_server`), whose jobs' figures are the reference.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from cli_process import cli_env, run_cli
from loopwright.evals.bench import SuiteRun, TaskResult
from sql.bigquery_server import BigQueryServer

from .test_warehouse_cost import (  # noqa: F401 - bigquery: the fixture
    JOINED,
    MB,
    TIB,
    _url,
    bigquery,
)

PRICE = 6.25
TASK = {
    "id": "by-state",
    "prompt": "Count the claims by state.",
    "script": [
        {"call": "SQL", "input": {"sql": JOINED, "dataset_name": "s", "description": "x"}},
        "Counted by state.",
    ],
    "checks": [{"type": "contains", "text": "by state"}],
}


def _eval(
    tmp_path: Path, home: Path, server: BigQueryServer, price: str
) -> tuple[dict[str, Any], str, str]:
    suite = tmp_path / "bq.yaml"
    suite.write_text(yaml.safe_dump({"name": "bq", "tasks": [TASK]}), encoding="utf-8")
    output, page = tmp_path / "out.json", tmp_path / "out.html"
    env = {**cli_env(home), "LOOPWRIGHT_BIGQUERY_USD_PER_TIB": price}
    ran = run_cli(
        ["eval", str(suite), "--agent", "healthcare", "-m", "scripted",
         "-d", _url(server), "-o", str(output), "--html", str(page)],
        env=env, cwd=tmp_path, timeout=240,
    )  # fmt: skip
    assert ran.returncode == 0, ran.stdout + ran.stderr
    return json.loads(output.read_text(encoding="utf-8")), ran.stdout, page.read_text()


def test_a_task_on_bigquery_carries_its_bill_into_the_results(
    bigquery: BigQueryServer,  # noqa: F811
    loopwright_home: Path,
    tmp_path: Path,
) -> None:
    """One query joining two tables bills BigQuery's 20 MB minimum; the scripted model costs
    nothing, so every dollar in the results is the warehouse's."""
    saved, stdout, page = _eval(tmp_path, loopwright_home, bigquery, str(PRICE))

    (billed,) = [job.bytes_billed for job in bigquery.jobs.values() if job.state == "DONE"]
    assert billed == 20 * MB  # the stand-in's own figure
    expected = billed / TIB * PRICE
    (result,) = saved["results"]
    assert result["status"] == "passed", result
    assert result["bytes_billed"] == billed
    assert result["warehouse_cost_usd"] == pytest.approx(expected)
    assert result["warehouse_price_error"] is None
    assert result["cost_usd"] == 0.0  # the model's alone, as before
    assert saved["summary"]["bytes_billed"] == billed
    assert saved["summary"]["warehouse_cost_usd"] == pytest.approx(expected)
    assert saved["per_task"][0]["mean_cost_usd"] == pytest.approx(expected)

    assert "warehouse 20 MB billed ≈ $0.0001" in stdout, stdout
    assert '<span class="muted">warehouse</span><b>20 MB billed ≈ $0.0001</b>' in page
    # the file reads back into the same figures
    run = SuiteRun.model_validate(saved)
    assert run.summary().total_cost_usd == pytest.approx(expected)


def test_an_unusable_price_is_said_not_counted_as_nothing(
    bigquery: BigQueryServer,  # noqa: F811
    loopwright_home: Path,
    tmp_path: Path,
) -> None:
    saved, stdout, _ = _eval(tmp_path, loopwright_home, bigquery, "six dollars")

    (result,) = saved["results"]
    assert result["bytes_billed"] == 20 * MB
    assert result["warehouse_cost_usd"] is None
    assert "LOOPWRIGHT_BIGQUERY_USD_PER_TIB" in result["warehouse_price_error"]
    assert saved["summary"]["warehouse_unpriced"] == 1
    assert "1 run unpriced" in stdout, stdout


def test_results_from_before_the_warehouse_fields_still_read() -> None:
    """A results file written before these fields (a ``--resume`` of an older run) reads
    with no bill."""
    old = TaskResult.model_validate(
        {"task_id": "t", "epoch": 1, "status": "passed", "cost_usd": 0.5, "judge_cost_usd": 0.25}
    )
    assert old.bytes_billed == 0
    assert old.total_cost_usd == 0.75
