"""``loopwright serve --agent healthcare --compact``: a tiny model behind an OpenAI-compatible
server gets the compact agent in the web UI and the API too, as the requests that server
receives show; the flags go with the healthcare agent only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from local_servers import free_port, server_process
from loopwright.healthcare.data import build_database
from models.openai_server import OpenAIServer, ToolCall

from .live import stream_turn

pytest.importorskip("openai")  # the CLI's client of the loopback server

QUESTION = "How many pharmacy claims are there?"
COUNT = {
    "sql": "SELECT COUNT(*) AS claims FROM RX_CLAIMS",
    "dataset_name": "claim_count",
    "description": "All pharmacy claims",
}


@pytest.fixture
def serve_env(loopwright_home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    for name in ("LOOPWRIGHT_MODEL", "LOOPWRIGHT_TOKENS_FILE", "LOOPWRIGHT_COMPACT"):
        env.pop(name, None)
    env.update(LOOPWRIGHT_HOME=str(loopwright_home), LOOPWRIGHT_TOKENS="t=carol", NO_COLOR="1")
    return env


def serve_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "loopwright.cli.app", "serve", *args]


def served_turn(
    env: dict[str, str], tmp_path: Path, flags: tuple[str, ...]
) -> tuple[list[dict[str, Any]], str]:
    """One question through ``serve --agent healthcare FLAGS`` over a small model behind a
    loopback OpenAI server: the chat requests that server received, and the answer."""
    claims = build_database(tmp_path / "claims.duckdb", rx_claims=2_000, seed=11)
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    script = [ToolCall("SQL", COUNT), "There are 2,000 pharmacy claims."]
    with OpenAIServer(script, model="qwen2.5:0.5b") as model_server:
        args = ["--agent", "healthcare", "--database", str(claims), *flags]
        model = f"openai:qwen2.5:0.5b@{model_server.base_url}"
        with (
            server_process(
                serve_command("--port", str(port), "--log-level", "warning", "-m", model, *args),
                name="loopwright serve",
                ready_url=f"{base}/healthz",
                log_path=tmp_path / "serve.log",
                timeout=60,
                env=env,
                stop_timeout=30,
            ),
            httpx.Client(base_url=base, headers={"Authorization": "Bearer t"}, timeout=60) as web,
        ):
            session_id = web.post("/api/sessions").json()["id"]
            _, events = stream_turn(web, session_id, QUESTION)
    assert events[-1].data["stop_reason"] == "end_turn", events[-1].data
    answer = "".join(e.data.get("text", "") for e in events if e.event == "text_delta")
    return model_server.chat_bodies, answer


def test_serve_compact_gives_a_tiny_model_behind_a_server_the_compact_agent(
    serve_env: dict[str, str], tmp_path: Path
) -> None:
    bodies, answer = served_turn(serve_env, tmp_path, ("--compact",))
    assert answer == "There are 2,000 pharmacy claims."
    first = bodies[0]
    assert first["messages"][0]["content"].startswith(
        "You answer questions about healthcare claims data with the SQL tool"
    )
    assert [tool["function"]["name"] for tool in first["tools"]] == ["SQL"]
    roles = [m["role"] for m in first["messages"]]
    assert roles[:5] == ["system", "user", "assistant", "tool", "assistant"]  # an example
    assert first["messages"][-1] == {"role": "user", "content": QUESTION}
    assert first["max_tokens"] == 512


def test_serve_full_overrides_loopwright_compact(serve_env: dict[str, str], tmp_path: Path) -> None:
    serve_env["LOOPWRIGHT_COMPACT"] = "1"
    bodies, _ = served_turn(serve_env, tmp_path, ("--full",))
    first = bodies[0]
    assert first["messages"][0]["content"].startswith("You are a healthcare data research")
    assert {"SQL", "DefineCohort", "Python"} <= {t["function"]["name"] for t in first["tools"]}
    assert first["messages"][1:] == [{"role": "user", "content": QUESTION}]


def test_serve_refuses_compact_without_the_healthcare_agent(serve_env: dict[str, str]) -> None:
    for flag in ("--compact", "--full"):
        done = subprocess.run(
            serve_command("--port", str(free_port()), flag),
            env=serve_env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 2, done.stderr
        assert f"error: {flag} goes with --agent healthcare" in done.stderr
