"""``loopwright serve`` as a real process: it serves the standard agent, refuses unsafe binds,
and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from local_servers import free_port, server_process

from .live import iter_sse


@pytest.fixture
def serve_env(loopwright_home: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["LOOPWRIGHT_HOME"] = str(loopwright_home)
    env["LOOPWRIGHT_MODEL"] = "scripted"
    for name in ("ANTHROPIC_API_KEY", "OPENAI_API_KEY", "LOOPWRIGHT_TOKENS_FILE"):
        env.pop(name, None)
    env["LOOPWRIGHT_TOKENS"] = "cli-token=carol"
    env["NO_COLOR"] = "1"
    return env


def serve_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "loopwright.cli.app", "serve", *args]


def test_serve_runs_the_standard_agent_and_stops_on_sigterm(
    serve_env: dict[str, str], tmp_path: Path
) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    with server_process(
        serve_command("--port", str(port), "--log-level", "warning"),
        name="loopwright serve",
        ready_url=f"{base}/healthz",
        log_path=log,
        timeout=30,
        env=serve_env,
        stop_timeout=30,  # SIGTERM: a clean stop
    ) as process:
        headers = {"Authorization": "Bearer cli-token"}
        with httpx.Client(base_url=base, headers=headers, timeout=30) as client:
            assert client.get("/api/me").json() == {"user": "carol", "auth": True}
            session_id = client.post("/api/sessions").json()["id"]
            with client.stream(
                "POST", f"/api/sessions/{session_id}/messages", json={"content": "Say hi"}
            ) as response:
                events = list(iter_sse(response))
            assert events[-1].data["stop_reason"] == "end_turn"
            assert any(e.event == "tool_call" for e in events)  # the demo uses real tools
            files = client.get(f"/api/sessions/{session_id}/files").json()["files"]
            assert "task.md" in [f["path"] for f in files]
            assert "Say hi" in client.get(f"/api/sessions/{session_id}/files/task.md").text
    output = log.read_text()
    assert process.returncode == 0, output
    assert f"serving the standard agent at http://127.0.0.1:{port}/" in output
    assert "auth: 1 token(s) for 1 user(s)" in output


def test_serve_refuses_to_listen_beyond_loopback_without_tokens(
    serve_env: dict[str, str],
) -> None:
    serve_env.pop("LOOPWRIGHT_TOKENS")
    done = subprocess.run(
        serve_command("--host", "0.0.0.0", "--port", str(free_port())),
        env=serve_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert "refusing to listen on 0.0.0.0 without authentication" in done.stderr
    assert "--insecure-no-auth" in done.stderr


def test_serve_reports_bad_settings_in_one_line(serve_env: dict[str, str], tmp_path: Path) -> None:
    bad = tmp_path / "tokens.json"
    bad.write_text("{broken")
    for args, message in (
        (("--tokens-file", str(bad)), "is not valid JSON"),
        (("--rate-limit", "lots"), "invalid rate limit 'lots'"),
        (("--permission-mode", "yolo"), "unknown permission mode"),
        (
            ("--agent", "healthcare", "--database", "x.duckdb", "--rows", "5000"),
            "--rows sizes the generated database, which --database replaces",
        ),
    ):
        done = subprocess.run(
            serve_command("--port", str(free_port()), *args),
            env=serve_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr
        assert "Traceback" not in done.stderr


def test_serve_refuses_more_rows_than_the_generator_makes_as_the_rows_option(
    serve_env: dict[str, str],
) -> None:
    """``--rows`` past the generator's largest database is refused as ``loopwright
    healthcare`` refuses it: by the option's name and range, before the model is loaded or
    anything is built."""
    done = subprocess.run(
        serve_command("--agent", "healthcare", "--port", str(free_port()), "--rows", "100000001"),
        env=serve_env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stderr
    assert "Invalid value for '--rows'" in done.stderr
    assert "less than or equal to 100000000" in done.stderr
    assert "Traceback" not in done.stderr
