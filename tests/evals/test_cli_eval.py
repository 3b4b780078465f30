"""``loopwright eval``: the real command on the example suite, its files, and its HTML report
opened in headless Chromium."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from cli_process import interrupt_after

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "evals" / "basic.yaml"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

Cli = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def cli(loopwright_home: Path, tmp_path: Path) -> Cli:
    """Run ``python -m loopwright.cli.app ARGS`` in ``tmp_path`` with the scripted model as
    the default and no provider keys, so nothing reaches a real API."""
    env = dict(os.environ)
    env["LOOPWRIGHT_HOME"] = str(loopwright_home)
    for name in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "EVALS_ENABLED", "EVALS_MODEL"):
        env.pop(name, None)
    env["LOOPWRIGHT_MODEL"] = "scripted"
    env["NO_COLOR"] = "1"
    env["COLUMNS"] = "120"
    env["PYTHONIOENCODING"] = "utf-8"

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "loopwright.cli.app", *args],
            capture_output=True,
            text=True,
            encoding="utf-8",
            env=env,
            cwd=tmp_path,
            timeout=120,
        )

    return run


def test_eval_runs_the_example_suite_and_writes_json_and_html(cli: Cli, tmp_path: Path) -> None:
    result = cli("eval", str(EXAMPLE), "--parallel", "4")

    assert result.returncode == 0, result.stderr
    data = json.loads((tmp_path / "basic.results.json").read_text())
    assert data["complete"] is True
    assert data["model"] == "scripted"
    assert len(data["results"]) == len(data["task_ids"]) >= 10
    assert {r["status"] for r in data["results"]} == {"passed"}
    assert data["summary"]["pass_rate"] == 1.0
    assert (tmp_path / "basic.results.html").is_file()
    # the terminal: a progress line per task on stderr, the table and totals on stdout
    assert "model scripted [each task's script] (default: LOOPWRIGHT_MODEL is set)" in result.stderr
    assert result.stderr.count("✓ ") == len(data["results"])
    for task_id in data["task_ids"]:
        assert task_id in result.stdout
    assert f"pass rate 100% ({len(data['results'])}/{len(data['results'])} runs" in result.stdout
    assert "report:  basic.results.html" in result.stdout


def test_the_html_report_renders_in_a_browser(cli: Cli, tmp_path: Path) -> None:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip("needs Chromium at /usr/bin/chromium")
    output, report = tmp_path / "out" / "r.json", tmp_path / "out" / "r.html"
    result = cli("eval", str(EXAMPLE), "-o", str(output), "--html", str(report), "-k", "2")
    assert result.returncode == 0, result.stderr
    tasks = json.loads(output.read_text())["task_ids"]

    problems: list[str] = []
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page()
            page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: problems.append(str(e)))
            page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url}"))
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url))
            page.goto(report.as_uri())
            page.wait_for_load_state("load")

            title = page.title()
            rows = page.locator("#tasks tbody tr.task-row").all_inner_texts()
            plots = page.locator("svg.plot")
            plot_count = plots.count()
            bars_per_plot = [plots.nth(i).locator("g.bar").count() for i in range(plot_count)]
            first_bar = page.locator("svg.plot rect").first.bounding_box()
            runs = page.locator("details.run").count()
            cards = page.locator(".card").all_inner_texts()
        finally:
            browser.close()

    assert problems == []
    assert requests == [report.as_uri()]  # self-contained: nothing else is fetched
    assert title == "loopwright eval: basic"
    assert len(rows) == len(tasks)
    assert all("100%" in row for row in rows)
    assert [row.split("\t")[0] for row in rows] == tasks
    assert plot_count == 4  # pass rate, cost, tokens, latency
    assert bars_per_plot == [len(tasks)] * 4
    assert first_bar is not None
    assert first_bar["width"] > 0
    assert runs == 2 * len(tasks)
    assert any("pass rate" in card and "100%" in card for card in cards)


def test_resume_runs_only_what_is_missing(cli: Cli, tmp_path: Path) -> None:
    first = cli("eval", str(EXAMPLE), "-t", "capital", "-t", "hello-file", "-o", "r.json")
    assert first.returncode == 0, first.stderr
    assert first.stderr.count("✓ ") == 2

    second = cli("eval", str(EXAMPLE), "--resume", "-o", "r.json")

    assert second.returncode == 0, second.stderr
    data = json.loads((tmp_path / "r.json").read_text())
    assert second.stderr.count("✓ ") == len(data["task_ids"]) - 2
    assert "capital [" not in second.stderr
    assert sorted(r["task_id"] for r in data["results"]) == sorted(data["task_ids"])


def test_a_failing_task_gives_exit_status_1_and_says_what_failed(cli: Cli, tmp_path: Path) -> None:
    suite = tmp_path / "s.yaml"
    suite.write_text(
        "tasks:\n"
        "  - {id: right, prompt: x, script: ['4'], checks: [{type: exact, expected: '4'}]}\n"
        "  - {id: wrong, prompt: x, script: ['5'], checks: [{type: exact, expected: '4'}]}\n"
    )

    result = cli("eval", str(suite), "--model", "scripted")

    assert result.returncode == 1
    assert "✗ wrong [epoch 1] failed" in result.stderr
    data: dict[str, Any] = json.loads((tmp_path / "s.results.json").read_text())
    wrong = next(r for r in data["results"] if r["task_id"] == "wrong")
    assert wrong["checks"][0]["detail"] == "the answer is '5', expected '4'"
    assert "pass rate 50%" in result.stdout


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.yaml"], "error: no suite file at missing.yaml; give the path"),
        ([str(EXAMPLE), "--task", "nope"], "error: no task 'nope' in suite 'basic'"),
        ([str(EXAMPLE), "--model", "gpt-4o"], "did you mean 'openai:gpt-4o'?"),
    ],
)
def test_bad_input_is_one_line_and_exit_status_2(cli: Cli, args: list[str], message: str) -> None:
    result = cli("eval", *args)

    assert result.returncode == 2
    assert message in result.stderr
    assert "Traceback" not in result.stderr


def test_eval_is_listed_in_the_help(cli: Cli) -> None:
    result = cli("--help")

    assert result.returncode == 0
    assert "eval" in result.stdout


def test_ctrl_c_keeps_finished_results_and_resume_finishes_the_suite(
    cli: Cli, tmp_path: Path, loopwright_home: Path
) -> None:
    suite = tmp_path / "two.yaml"
    suite.write_text(
        "tasks:\n"
        "  - {id: quick, prompt: x, script: ['ok'], checks: [{type: exact, expected: ok}]}\n"
        "  - id: slow\n"
        "    prompt: y\n"
        "    tools: [Bash]\n"
        "    script: [{call: Bash, input: {command: 'sleep 2; echo slept'}}, 'done: {{result}}']\n"
        "    checks: [{type: exact, expected: 'done: slept'}]\n"
    )
    env = dict(os.environ, LOOPWRIGHT_HOME=str(loopwright_home), LOOPWRIGHT_MODEL="scripted")
    # Ctrl-C while the slow task sleeps
    status, rest = interrupt_after(
        ["eval", str(suite), "-n", "1"], line="✓ quick", env=env, cwd=tmp_path, timeout=30
    )
    assert status == 130
    assert "interrupted after 1 of 2 run(s)" in rest
    assert "--resume" in rest
    partial = json.loads((tmp_path / "two.results.json").read_text())
    assert partial["complete"] is False
    assert [r["task_id"] for r in partial["results"]] == ["quick"]

    resumed = cli("eval", str(suite), "--resume")

    assert resumed.returncode == 0, resumed.stderr
    assert "quick" not in resumed.stderr
    assert "✓ slow [epoch 1] passed" in resumed.stderr
    final = json.loads((tmp_path / "two.results.json").read_text())
    assert final["complete"] is True
    assert sorted(r["task_id"] for r in final["results"]) == ["quick", "slow"]


def test_ctrl_c_before_any_run_finished_does_not_point_at_a_missing_file(
    tmp_path: Path, loopwright_home: Path
) -> None:
    suite = tmp_path / "slow.yaml"
    suite.write_text(
        "tasks:\n"
        "  - id: slow\n"
        "    prompt: y\n"
        "    tools: [Bash]\n"
        "    script: [{call: Bash, input: {command: 'sleep 5; echo slept'}}, 'done']\n"
    )
    env = dict(os.environ, LOOPWRIGHT_HOME=str(loopwright_home), LOOPWRIGHT_MODEL="scripted")
    # the task is running (and a Ctrl-C before it started says the same)
    status, rest = interrupt_after(
        ["eval", str(suite)], line="suite slow", env=env, cwd=tmp_path, pause=1, timeout=30
    )
    assert status == 130
    assert not (tmp_path / "slow.results.json").exists()
    assert "interrupted after 0 of 1 run(s); no run had finished, so no result file" in rest
    assert "results so far" not in rest


def test_the_html_report_says_where_a_long_answer_goes_on(cli: Cli, tmp_path: Path) -> None:
    suite = tmp_path / "long.yaml"
    answer = "x" * 4990 + "0123456789" + "qjqj" * 250
    suite.write_text(f"tasks:\n  - {{id: long, prompt: p, script: ['{answer}']}}\n")

    result = cli("eval", str(suite))

    assert result.returncode == 0, result.stderr
    data = json.loads((tmp_path / "long.results.json").read_text())
    assert data["results"][0]["answer"] == answer
    page = (tmp_path / "long.results.html").read_text()
    assert "x" * 4990 + "0123456789\n… (1,000 more characters: the whole answer is in" in page
    assert "qjqj" not in page


def test_a_terminal_gets_a_progress_bar(tmp_path: Path) -> None:
    import os
    import sys

    import pexpect

    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update(LOOPWRIGHT_HOME=str(tmp_path / "home"), TERM="xterm-256color")
    child = pexpect.spawn(
        sys.executable,
        [
            "-m",
            "loopwright.cli.app",
            "eval",
            str(EXAMPLE),
            "--model",
            "scripted",
            "-o",
            str(tmp_path / "out.json"),
        ],
        env=env,
        encoding="utf-8",
        timeout=120,
        dimensions=(40, 120),
    )
    child.expect(r"suite \S+ .*\d+/13")  # the bar: description and M/N
    child.expect_exact("✓")
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0
