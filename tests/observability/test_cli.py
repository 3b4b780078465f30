"""``loopwright sessions report`` and ``sessions export``, run as the real command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def cli(home: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    environment = dict(os.environ)
    for name in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "LOOPWRIGHT_WORKSPACES", "DEBUG"):
        environment.pop(name, None)
    environment.update(LOOPWRIGHT_HOME=str(home), LOOPWRIGHT_MODEL="scripted", NO_COLOR="1", **env)
    return subprocess.run(
        [sys.executable, "-m", "loopwright.cli.app", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=environment,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )


@pytest.fixture
def recorded(loopwright_home: Path) -> Path:
    """A session ``alpha`` made by ``loopwright run`` with stats on; its workspace."""
    done = cli(loopwright_home, "run", "--session", "alpha", "count the rows", LOOPWRIGHT_STATS="1")
    assert done.returncode == 0, done.stderr
    return loopwright_home / "workspaces" / "alpha"


def test_report_as_tables_and_json(loopwright_home: Path, recorded: Path) -> None:
    assert (recorded / "conversation.json").exists()  # written when the run ended
    shown = cli(loopwright_home, "sessions", "report", "alpha")
    assert shown.returncode == 0, shown.stderr
    for title in ("usage report · session alpha", "Tokens and cost", "Tools", "Models", "Runs"):
        assert title in shown.stdout
    assert "Write" in shown.stdout

    as_json = cli(loopwright_home, "sessions", "report", "alpha", "--json")
    data = json.loads(as_json.stdout)
    assert data["session_id"] == "alpha"
    assert data["timings_recorded"] is True
    assert data["tool_calls"] == data["usage"]["tool_calls"] == 2
    assert data["runs"][0]["stop_reason"] == "end_turn"
    assert data["model_latency"]["count"] == data["usage"]["model_calls"]


def test_export_html_and_json(loopwright_home: Path, recorded: Path) -> None:
    html = cli(loopwright_home, "sessions", "export", "alpha", "--html")
    assert html.returncode == 0, html.stderr
    page = recorded / "conversation.html"
    assert html.stdout.strip() == f"Wrote {page}"
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!doctype html>")
    assert "count the rows" in text
    assert 'class="tool ok"' in text

    printed = cli(loopwright_home, "sessions", "export", "alpha", "--json", "-o", "-")
    assert printed.returncode == 0, printed.stderr
    data = json.loads(printed.stdout)
    assert data["session_id"] == "alpha"
    assert data["messages"][0]["content"][0]["text"] == "count the rows"

    elsewhere = loopwright_home / "exports"
    elsewhere.mkdir()
    to_dir = cli(loopwright_home, "sessions", "export", "alpha", "--json", "-o", str(elsewhere))
    assert to_dir.returncode == 0
    assert json.loads((elsewhere / "conversation.json").read_text())["session_id"] == "alpha"


def test_bad_requests_get_one_clear_line(loopwright_home: Path, recorded: Path) -> None:
    unknown = cli(loopwright_home, "sessions", "export", "nope")
    assert unknown.returncode == 1
    assert unknown.stderr.strip() == (
        "error: no saved session 'nope'; list saved sessions with `loopwright sessions list`"
    )
    both = cli(loopwright_home, "sessions", "export", "alpha", "--html", "--json")
    assert both.returncode == 2
    assert "choose one format" in both.stderr
    blocked = loopwright_home / "file"
    blocked.write_text("not a directory")
    unwritable = cli(loopwright_home, "sessions", "export", "alpha", "-o", str(blocked / "x.html"))
    assert unwritable.returncode == 1
    assert "choose another path with -o PATH" in unwritable.stderr
    assert cli(loopwright_home, "sessions", "report", "nope").returncode == 1


def test_a_session_without_stats_still_has_a_report(loopwright_home: Path) -> None:
    run = cli(loopwright_home, "run", "--session", "plain", "plot the chart", LOOPWRIGHT_STATS="0")
    assert run.returncode == 0
    shown = cli(loopwright_home, "sessions", "report", "plain")
    assert shown.returncode == 0
    assert "LOOPWRIGHT_STATS=1" in shown.stdout
    assert "Tools" in shown.stdout


def test_the_cli_records_timings_by_default(loopwright_home: Path) -> None:
    assert cli(loopwright_home, "run", "--session", "timed", "plot it").returncode == 0
    assert (loopwright_home / "workspaces" / "timed" / ".loopwright" / "stats.jsonl").exists()
    shown = cli(loopwright_home, "sessions", "show", "timed")
    assert shown.returncode == 0, shown.stderr
    assert "LOOPWRIGHT_STATS=1" not in shown.stdout
    assert "Write" in shown.stdout
