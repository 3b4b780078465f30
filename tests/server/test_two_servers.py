"""Two ``loopwright serve`` processes, one PostgreSQL: a session started on one server
continues on the other (workspaces on storage both see, as on shared volumes)."""

from __future__ import annotations

import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from postgres_server import PostgresServer, postgres_server  # noqa: F401

from .live import iter_sse
from .test_cli_serve import free_port, serve_command, serve_env  # noqa: F401


@pytest.fixture
def two_servers(
    serve_env: dict[str, str],  # noqa: F811
    postgres_server: PostgresServer,  # noqa: F811
    tmp_path: Path,
) -> Iterator[list[str]]:
    env = dict(serve_env)
    env["LOOPWRIGHT_STORE"] = postgres_server.create_database("two_servers")
    env["LOOPWRIGHT_WORKSPACES"] = str(tmp_path / "shared-workspaces")
    ports = [free_port(), free_port()]
    processes = [
        subprocess.Popen(
            serve_command("--port", str(port), "--log-level", "warning"),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for port in ports
    ]
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    try:
        deadline = time.monotonic() + 60
        for base, process in zip(bases, processes, strict=True):
            while True:
                try:
                    if httpx.get(f"{base}/readyz", timeout=1).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert process.poll() is None, process.communicate()
                assert time.monotonic() < deadline, f"{base} did not come up"
                time.sleep(0.1)
        yield bases
    finally:
        for process in processes:
            process.send_signal(signal.SIGTERM)
        for process in processes:
            try:
                process.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()


def turn(client: httpx.Client, session_id: str, content: str) -> list[str]:
    with client.stream(
        "POST", f"/api/sessions/{session_id}/messages", json={"content": content}
    ) as response:
        assert response.status_code == 200
        events = list(iter_sse(response))
    assert events[-1].data["stop_reason"] == "end_turn", events[-1].data
    return [e.event for e in events]


def test_a_session_started_on_one_server_continues_on_the_other(two_servers: list[str]) -> None:
    headers = {"Authorization": "Bearer cli-token"}
    one, two = (httpx.Client(base_url=b, headers=headers, timeout=60) for b in two_servers)
    with one, two:
        session_id = one.post("/api/sessions").json()["id"]
        turn(one, session_id, "first task")
        # the other process finds the session, its history and its files
        assert two.get(f"/api/sessions/{session_id}").status_code == 200
        assert "task.md" in [
            f["path"] for f in two.get(f"/api/sessions/{session_id}/files").json()["files"]
        ]
        turn(two, session_id, "second task")
        for client in (one, two):
            messages = client.get(f"/api/sessions/{session_id}/messages").json()["messages"]
            prompts = [
                m["content"][0]["text"]
                for m in messages
                if m["role"] == "user" and m["content"][0]["type"] == "text"
            ]
            assert prompts == ["first task", "second task"]
            listed = [s["id"] for s in client.get("/api/sessions").json()["sessions"]]
            assert session_id in listed
        assert "second task" in two.get(f"/api/sessions/{session_id}/files/task.md").text
        usage = one.get(f"/api/sessions/{session_id}/usage").json()
        assert usage["usage"]["model_calls"] == 6
