"""``make demo`` (examples/healthcare/demo.py): its core with a scripted model, and the script
itself once with the real embedded model."""

from __future__ import annotations

import functools
import importlib.util
import io
import os
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from rich.console import Console

from loopwright import MemoryStore, ScriptedModel, call
from loopwright.models.base import ModelError, ModelRequest
from loopwright.models.scripted import ScriptedTurn

ROOT = Path(__file__).resolve().parents[2]
DEMO = ROOT / "examples" / "healthcare" / "demo.py"


@functools.cache
def _demo_module() -> ModuleType:
    """The demo script as a module (it is a script in examples/, not a package)."""
    spec = importlib.util.spec_from_file_location("healthcare_demo", DEMO)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def reader(request: ModelRequest) -> ScriptedTurn:
    """Plays the model: query, then answer from the rows the SQL tool showed."""
    results = [r.text for m in request.messages for r in m.tool_results]
    if not results:
        query = call(
            "SQL",
            sql="SELECT PRESCRIBER_NPI_NBR, COUNT(*) AS rx_count FROM RX_CLAIMS "
            "WHERE NDC_DRUG_NM = 'HUMIRA' AND PRESCRIBER_NPI_STATE_CD = 'CA' "
            "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT 10",
            dataset_name="humira_ca_top10",
            description="Top HUMIRA prescribers in California",
        )
        return ScriptedTurn("", [query])
    rows = re.findall(r"^\| (\d{10}) \| (\d+) \|$", results[-1], re.MULTILINE)
    total = sum(int(count) for _, count in rows)
    return ScriptedTurn(
        f"NPI {rows[0][0]} leads with {rows[0][1]} prescriptions; the top 10 wrote {total}."
    )


async def test_the_demo_reports_sql_csv_answer_and_the_golden_verdict(claims_db: Path) -> None:
    demo = _demo_module()
    out = io.StringIO()
    console = Console(file=out, width=120, no_color=True, soft_wrap=True)
    report = await demo.run_demo(
        ScriptedModel(reader), database=claims_db, console=console, store=MemoryStore()
    )

    assert report.stop_reason == "end_turn"
    assert len(report.queries) == 1
    assert not report.queries[0]["is_error"]
    assert "NDC_DRUG_NM = 'HUMIRA'" in report.queries[0]["input"]["sql"]
    assert report.checked_csv == report.workspace / "humira_ca_top10.csv"
    assert report.csv_files == [report.checked_csv]
    assert report.verdict is not None
    assert report.verdict.passed, report.verdict.to_dict()

    demo.print_summary(report, console)
    text = out.getvalue()
    assert "you> Find the top 10 prescribers of HUMIRA in California." in text
    assert "▸ SQL SELECT PRESCRIBER_NPI_NBR" in text  # the events, as the CLI prints them
    assert "SQL #1    [ok] SELECT PRESCRIBER_NPI_NBR" in text
    rows = len(report.checked_csv.read_text().splitlines()) - 1
    assert f"CSV       {report.checked_csv} ({rows} rows)" in text
    assert f"answer    {report.answer}" in text
    assert "golden check (humira_ca_top10, reference computed from the database): PASSED" in text
    assert f"✓ humira_ca_top10.csv holds {rows} of {rows} reference rows" in text


async def test_a_wrong_answer_is_reported_as_not_passed(claims_db: Path) -> None:
    demo = _demo_module()
    model = ScriptedModel(
        [call("SQL", sql="SELECT 1 AS x", dataset_name="nothing", description="x"), "It is 42."]
    )
    out = io.StringIO()
    console = Console(file=out, width=120, no_color=True, soft_wrap=True)
    report = await demo.run_demo(model, database=claims_db, console=console, store=MemoryStore())
    demo.print_summary(report, console)
    assert report.verdict is not None
    assert not report.verdict.passed
    assert "NOT PASSED" in out.getvalue()
    assert "✗ top prescriber NPI" in out.getvalue()


def test_the_demo_script_runs_with_the_embedded_model(tmp_path: Path) -> None:
    """The one slow test here: the real script, the real bundled model, a small database."""
    env = dict(os.environ)
    env["LOOPWRIGHT_HOME"] = str(tmp_path / "home")
    env["NO_COLOR"] = "1"
    env["PYTHONIOENCODING"] = "utf-8"
    for name in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "LOOPWRIGHT_MODEL"):
        env.pop(name, None)
    result = subprocess.run(
        [sys.executable, str(DEMO), "--rows", "5000", "--max-turns", "2", "--timeout", "150"],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=env,
        timeout=300,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "you> Find the top 10 prescribers of HUMIRA in California." in out
    assert "model     local:gemma-3-270m" in out
    assert "(embedded, offline)" in out
    assert "── " in out  # the run's footer: it ended, within its limits
    assert re.search(r"^run: (end_turn|max_turns) in [\d.]+ s", out, re.MULTILINE), out
    assert "golden check" in out  # a verdict, whatever the tiny model answered
    assert (tmp_path / "home" / "data" / "healthcare" / "claims-v2-5000-42.duckdb").is_file()
    assert "Traceback" not in result.stderr


def test_the_demo_refuses_a_model_it_cannot_make_before_building_the_database(
    loopwright_home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``demo.py --model anthropic`` without a key: the error, and no database built first
    (as ``loopwright healthcare -m anthropic`` does it)."""
    import asyncio

    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    demo = _demo_module()
    with pytest.raises(ModelError):
        asyncio.run(demo.run_demo("anthropic", rows=1_000))
    assert not list((loopwright_home / "data" / "healthcare").glob("*.duckdb"))
