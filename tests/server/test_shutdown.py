"""Graceful shutdown: running turns finish within the grace period, or are checkpointed
and resumed by the next server on the same store."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx

from loopwright import SQLiteStore
from loopwright.server import create_app

from .live import LiveServer, iter_sse, make_agent, start_live

TOKENS = {"tok-alice": "alice"}


def start_turn(client: httpx.Client, session_id: str, content: str) -> str:
    run = client.post(
        f"/api/sessions/{session_id}/messages",
        params={"stream": "false"},
        json={"content": content},
    )
    assert run.status_code == 202, run.text
    return str(run.json()["events_url"])


def stop_in_background(server: LiveServer) -> threading.Thread:
    stopper = threading.Thread(target=server.stop, daemon=True)
    stopper.start()
    return stopper


def wait_until_closing(client: httpx.Client) -> None:
    deadline = time.monotonic() + 10
    while client.get("/readyz").status_code != 503:
        assert time.monotonic() < deadline, "the server never started shutting down"
        time.sleep(0.02)


def test_a_running_turn_finishes_within_the_grace_period(tmp_path: Path) -> None:
    server = start_live(create_app(make_agent(tmp_path), tokens=TOKENS, shutdown_grace=20))
    with server.client("tok-alice") as client:
        session_id = client.post("/api/sessions").json()["id"]
        other = client.post("/api/sessions").json()["id"]
        events_url = start_turn(client, session_id, "steps 4 0.1")
        with client.stream("GET", events_url) as response:
            stopper = stop_in_background(server)
            wait_until_closing(client)
            # while it drains, the server starts no new turns but still answers
            refused = client.post(f"/api/sessions/{other}/messages", json={"content": "hi"})
            assert refused.status_code == 503
            assert refused.headers["retry-after"] == "5"
            assert "shutting down" in refused.json()["detail"]
            assert client.get(f"/api/sessions/{session_id}").status_code == 200
            events = list(iter_sse(response))
    stopper.join(20)
    assert not server.thread.is_alive()
    assert events[-1].data["stop_reason"] == "end_turn"
    assert events[-1].data["usage"]["tool_calls"] == 4


def test_a_turn_over_the_grace_period_is_checkpointed_and_resumed_elsewhere(
    tmp_path: Path,
) -> None:
    store_path = tmp_path / "sessions.db"
    first = start_live(
        create_app(
            make_agent(tmp_path, store=SQLiteStore(store_path)), tokens=TOKENS, shutdown_grace=0.3
        )
    )
    with first.client("tok-alice") as client:
        session_id = client.post("/api/sessions").json()["id"]
        events_url = start_turn(client, session_id, "sleep 60")
        with client.stream("GET", events_url) as response:
            for event in iter_sse(response):
                if event.event == "tool_call":
                    break
        started = time.monotonic()
        with client.stream("GET", events_url) as response:
            stopper = stop_in_background(first)
            events = list(iter_sse(response))
    stopper.join(20)
    assert not first.thread.is_alive()
    assert time.monotonic() - started < 15  # not the 60 s the tool wanted
    done = events[-1].data
    assert done["stop_reason"] == "cancelled"
    assert "server shut down" in done["detail"]

    # a new server on the same store picks the session up where it stopped
    second = start_live(
        create_app(make_agent(tmp_path, store=SQLiteStore(store_path)), tokens=TOKENS)
    )
    try:
        with second.client("tok-alice") as client:
            messages = client.get(f"/api/sessions/{session_id}/messages").json()["messages"]
            interrupted = messages[-1]["content"][0]
            assert interrupted["type"] == "tool_result"
            assert interrupted["is_error"]
            with client.stream("POST", f"/api/sessions/{session_id}/resume") as response:
                resumed = list(iter_sse(response))
            assert resumed[-1].data["stop_reason"] == "end_turn"
            text = "".join(e.data["text"] for e in resumed if e.event == "text_delta")
            assert text == "I slept."
            roles = [
                m["role"]
                for m in client.get(f"/api/sessions/{session_id}/messages").json()["messages"]
            ]
            assert roles == ["user", "assistant", "user", "assistant"]
    finally:
        second.stop()


def test_servers_sharing_a_store_take_turns_in_one_session(tmp_path: Path) -> None:
    store_path = tmp_path / "sessions.db"
    servers = [
        start_live(
            create_app(
                make_agent(tmp_path, store=SQLiteStore(store_path)),
                tokens=TOKENS,
                shared_store=True,
            )
        )
        for _ in range(2)
    ]
    try:
        first, second = (server.client("tok-alice") for server in servers)
        with first, second:
            session_id = first.post("/api/sessions").json()["id"]
            for client, content in (
                (first, "write one.txt 1"),
                (second, "write two.txt 2"),
                (first, "hello again"),
            ):
                with client.stream(
                    "POST", f"/api/sessions/{session_id}/messages", json={"content": content}
                ) as response:
                    assert list(iter_sse(response))[-1].data["stop_reason"] == "end_turn"
            # each server started its turn from the other's latest history: nothing lost
            for client in (first, second):
                messages = client.get(f"/api/sessions/{session_id}/messages").json()["messages"]
                prompts = [
                    m["content"][0]["text"]
                    for m in messages
                    if m["role"] == "user" and m["content"][0]["type"] == "text"
                ]
                assert prompts == ["write one.txt 1", "write two.txt 2", "hello again"]
                assert len(messages) == 10
                files = client.get(f"/api/sessions/{session_id}/files").json()["files"]
                assert [f["path"] for f in files] == ["one.txt", "two.txt"]
    finally:
        for server in servers:
            server.stop()
