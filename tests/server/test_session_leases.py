"""Servers sharing a PostgreSQL session store never run one session at the same time: a turn
leases its session in the store, renews the lease while it runs and gives it back before its
``done`` event goes out."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from loopwright.server import server_context
from loopwright.sessions.postgres import PostgresStore
from postgres_server import PostgresServer, postgres_server  # noqa: F401

from .conftest import StartServer
from .live import LiveServer, make_agent, stream_turn


@pytest.fixture
def two(
    live: StartServer,
    postgres_server: PostgresServer,  # noqa: F811
    tmp_path: Path,
) -> list[LiveServer]:
    """Two servers, each with its own connection to one database and one workspace root."""
    dsn = postgres_server.create_database("leases")
    return [live(make_agent(tmp_path, store=PostgresStore(dsn))) for _ in range(2)]


def new_session(client: httpx.Client) -> str:
    response = client.post("/api/sessions")
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def start_turn(client: httpx.Client, session_id: str, content: str) -> httpx.Response:
    return client.post(
        f"/api/sessions/{session_id}/messages",
        params={"stream": "false"},
        json={"content": content},
    )


def wait_finished(client: httpx.Client, session_id: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while client.get(f"/api/sessions/{session_id}/usage").json()["running_turn"] is not None:
        assert time.monotonic() < deadline, "the turn did not finish"
        time.sleep(0.05)


def test_a_session_running_on_one_server_is_refused_on_the_other(two: list[LiveServer]) -> None:
    with two[0].client() as one, two[1].client() as other:
        session_id = new_session(one)
        assert start_turn(one, session_id, "sleep 30").status_code == 202

        refused = other.post(f"/api/sessions/{session_id}/messages", json={"content": "hi"})
        assert refused.status_code == 409
        assert "another process sharing the session store" in refused.json()["detail"]
        assert refused.headers["retry-after"] == "5"
        # other sessions are not held up
        free = new_session(other)
        _, events = stream_turn(other, free, "hello")
        assert events[-1].data["stop_reason"] == "end_turn"

        assert one.post(f"/api/sessions/{session_id}/cancel").status_code == 200
        wait_finished(one, session_id)
        # the lease was given back with the done event: the other server goes on at once
        _, events = stream_turn(other, session_id, "hello again")
        assert events[-1].data["stop_reason"] == "end_turn"
        # and the first server may take the session back for its next turn
        _, events = stream_turn(one, session_id, "and back")
        assert events[-1].data["stop_reason"] == "end_turn"


def test_a_finished_turn_hands_the_session_over_without_delay(two: list[LiveServer]) -> None:
    """Turns alternating between the servers, each posted the moment the last one ended."""
    clients = [server.client() for server in two]
    try:
        session_id = new_session(clients[0])
        for n in range(6):
            response, events = stream_turn(clients[n % 2], session_id, f"turn {n}")
            assert response.status_code == 200, response.text
            assert events[-1].data["stop_reason"] == "end_turn"
    finally:
        for client in clients:
            client.close()


def test_a_long_turn_renews_its_lease(two: list[LiveServer]) -> None:
    for server in two:
        server_context(server.app).runs.lease_ttl = 0.6  # renewed every 0.2 s
    with two[0].client() as one, two[1].client() as other:
        session_id = new_session(one)
        assert start_turn(one, session_id, "sleep 2").status_code == 202
        deadline = time.monotonic() + 1.5  # well past the lease's first 0.6 s
        while time.monotonic() < deadline:
            refused = other.post(f"/api/sessions/{session_id}/messages", json={"content": "hi"})
            assert refused.status_code == 409
            time.sleep(0.1)
        wait_finished(one, session_id)
        _, events = stream_turn(other, session_id, "now")
        assert events[-1].data["stop_reason"] == "end_turn"


def test_a_dead_servers_lease_runs_out(two: list[LiveServer]) -> None:
    with two[0].client() as one:
        session_id = new_session(one)
    store = server_context(two[1].app).store
    assert store.claim(session_id, "a-server-that-crashed", ttl=1.0)
    with two[1].client() as other:
        refused = other.post(f"/api/sessions/{session_id}/messages", json={"content": "hi"})
        assert refused.status_code == 409
        time.sleep(1.1)
        _, events = stream_turn(other, session_id, "taken over")
        assert events[-1].data["stop_reason"] == "end_turn"
