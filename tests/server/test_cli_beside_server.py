"""The server and the CLI on one SQLite session store (the default: both use
``$LOOPWRIGHT_HOME/sessions.db``): a turn taken with ``loopwright run --session`` between two
of the server's turns is kept, and neither runs a turn while the other does."""

from __future__ import annotations

import json
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from cli_process import cli_env, run_cli
from loopwright.sessions.sqlite import SQLiteStore

from .conftest import StartServer
from .live import make_agent, stream_turn


def cli_run(
    home: Path, tmp_path: Path, session_id: str, prompt: str
) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "cli-script.json"
    script.write_text(json.dumps(["From the CLI."]), encoding="utf-8")
    args = ["run", "--session", session_id, "-m", f"scripted:{script}", prompt]
    return run_cli(args, env=cli_env(home), cwd=tmp_path, timeout=120)


def texts(client: httpx.Client, session_id: str) -> list[str]:
    messages: list[dict[str, Any]] = client.get(f"/api/sessions/{session_id}/messages").json()[
        "messages"
    ]
    return [
        block["text"]
        for message in messages
        for block in message["content"]
        if block.get("type") == "text"
    ]


def test_a_turn_taken_in_the_cli_is_kept_by_the_servers_next_turn(
    live: StartServer, tmp_path: Path
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    server = live(make_agent(tmp_path, store=SQLiteStore(home / "sessions.db")))
    with server.client() as client:
        session_id = client.post("/api/sessions").json()["id"]
        _, events = stream_turn(client, session_id, "write a.txt one")
        assert events[-1].data["stop_reason"] == "end_turn"

        ran = cli_run(home, tmp_path, session_id, "CLI turn in between")
        assert ran.returncode == 0, ran.stderr

        _, events = stream_turn(client, session_id, "write b.txt two")
        assert events[-1].data["stop_reason"] == "end_turn"
        said = texts(client, session_id)
    assert "CLI turn in between" in said
    assert "From the CLI." in said
    assert said[-1] == "I wrote b.txt."


def test_the_cli_waits_for_a_turn_the_server_is_running(live: StartServer, tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    server = live(make_agent(tmp_path, store=SQLiteStore(home / "sessions.db")))
    with server.client() as client:
        session_id = client.post("/api/sessions").json()["id"]
        started = client.post(
            f"/api/sessions/{session_id}/messages",
            params={"stream": "false"},
            json={"content": "sleep 30"},
        )
        assert started.status_code == 202
        busy = cli_run(home, tmp_path, session_id, "while the server works")
        assert busy.returncode == 1, (busy.stdout, busy.stderr)
        assert f"session {session_id} is busy" in busy.stderr

        assert client.post(f"/api/sessions/{session_id}/cancel").status_code == 200
        deadline = time.monotonic() + 30
        while client.get(f"/api/sessions/{session_id}/usage").json()["running_turn"]:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        after = cli_run(home, tmp_path, session_id, "now it is free")
        assert after.returncode == 0, after.stderr
        assert "while the server works" not in texts(client, session_id)
        assert "now it is free" in texts(client, session_id)
