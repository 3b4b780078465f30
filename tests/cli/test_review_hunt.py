"""Review hunt on the sessions that record their data and the SQL tool's placeholder hint:
a healthcare session made on a relative ``duckdb://`` URL continued from another directory,
``mcp serve --agent healthcare --workspace`` recording its data, DuckDB's slice ``[:n]``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import duckdb

from loopwright.healthcare.data import build_database
from loopwright.sessions.session import Session
from loopwright.sessions.sqlite import SQLiteStore
from loopwright.sql.readonly import placeholder_hint
from loopwright.tools.sql import SQLTool


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    for name in ("LOOPWRIGHT_MODEL", "LOOPWRIGHT_WORKSPACES", "LOOPWRIGHT_STORE"):
        env.pop(name, None)
    env.update(LOOPWRIGHT_HOME=str(home), NO_COLOR="1", PYTHONIOENCODING="utf-8")
    return env


def _lw(home: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "loopwright.cli.app", *args],
        input="",
        capture_output=True,
        text=True,
        encoding="utf-8",
        env=_env(home),
        cwd=cwd,
        timeout=240,
    )


def _load(home: Path, session_id: str) -> Session:
    store = SQLiteStore(home / "sessions.db")
    try:
        session = store.load(session_id)
    finally:
        store.close()
    assert session is not None
    return session


def _count_script(directory: Path, dataset: str) -> str:
    query = {
        "sql": "SELECT COUNT(*) AS n FROM rx_claims",
        "dataset_name": dataset,
        "description": "",
    }
    path = directory / f"{dataset}.json"
    path.write_text(json.dumps([{"call": "SQL", "input": query}, "Counted."]), encoding="utf-8")
    return f"scripted:{path}"


def test_a_session_on_a_relative_duckdb_url_continues_on_it_from_elsewhere(
    loopwright_home: Path, tmp_path: Path
) -> None:
    """``--database duckdb://mine.duckdb`` is the current directory's file, as a bare
    ``mine.duckdb`` is; the session recorded the URL as given, so continuing it from
    another directory looked for a file of that name there (exit 2: not there)."""
    build_database(tmp_path / "mine.duckdb", rx_claims=1_000)
    with duckdb.connect(str(tmp_path / "mine.duckdb"), read_only=True) as con:
        row = con.execute("SELECT COUNT(*) FROM rx_claims").fetchone()
    assert row is not None
    day1 = _lw(
        loopwright_home,
        tmp_path,
        "healthcare",
        "--database",
        "duckdb://mine.duckdb",
        "-m",
        _count_script(tmp_path, "day1"),
        "--session",
        "rel",
        "How many claims?",
    )
    assert day1.returncode == 0, day1.stderr
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    day2 = _lw(
        loopwright_home,
        elsewhere,
        "healthcare",
        "-m",
        _count_script(elsewhere, "day2"),
        "--session",
        "rel",
        "How many now?",
    )
    assert day2.returncode == 0, day2.stderr
    workspace = _load(loopwright_home, "rel").workspace_dir
    counted = (workspace / "day2.csv").read_text(encoding="utf-8").split()
    assert int(counted[1]) == row[0]
    assert not (elsewhere / "mine.duckdb").exists()
    recorded = _load(loopwright_home, "rel").metadata["database"]
    assert recorded == f"duckdb://{(tmp_path / 'mine.duckdb').resolve()}"


def test_mcp_serve_healthcare_in_a_workspace_records_its_data(
    loopwright_home: Path, tmp_path: Path
) -> None:
    """``mcp serve --agent healthcare --workspace DIR`` made its new session without the
    metadata the healthcare command records: ``sessions resume`` then opened the general
    chat, and ``healthcare --session`` built the default 200,000-claim database."""
    workspace = tmp_path / "project"
    workspace.mkdir()
    served = _lw(
        loopwright_home,
        tmp_path,
        "mcp",
        "serve",
        "--agent",
        "healthcare",
        "--rows",
        "1000",
        "--workspace",
        str(workspace),
        "--session",
        "mcpws",
        "-m",
        "scripted",
    )
    assert served.returncode == 0, served.stderr
    session = _load(loopwright_home, "mcpws")
    assert session.workspace_dir == workspace.resolve()
    assert session.metadata == {"agent": "healthcare", "rows": 1000}


async def test_a_duckdb_slice_to_a_column_is_no_placeholder(tmp_path: Path) -> None:
    """``list[:n]`` slices up to column ``n`` in DuckDB; sqlglot reads ``:n`` as a named
    placeholder, so a query with one that failed for another reason (here a missing table)
    was told it holds parameter placeholders, and to write literals instead."""
    for sql in ("SELECT [1, 2, 3][:n] FROM nosuch", "SELECT s[:n] FROM nosuch"):
        assert placeholder_hint(sql, "duckdb") == "", sql
    assert ":n" in placeholder_hint("SELECT * FROM t WHERE a = :n", "duckdb")
    workspace = tmp_path / "ws"
    workspace.mkdir()
    tool = SQLTool(workspace, backend="duckdb://:memory:")
    try:
        failed = await tool.execute(
            {"sql": "SELECT s[:n] FROM nosuch", "dataset_name": "x", "description": ""}
        )
    finally:
        await tool.aclose()
    assert failed["is_error"] is True
    assert "nosuch" in str(failed["content"])
    assert "placeholders" not in str(failed["content"])
