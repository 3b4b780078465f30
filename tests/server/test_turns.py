"""Turns over HTTP: the SSE stream, one turn at a time, cancel, reconnect, resume."""

from __future__ import annotations

import time
from pathlib import Path

import duckdb
import httpx

from loopwright import Agent, MemoryStore, ScriptedModel, call
from loopwright.events import event_from_dict
from loopwright.models.scripted import ScriptedTurn
from loopwright.tools.sql import SQL

from .conftest import StartServer
from .live import SSE, iter_sse, stream_turn

TOKENS = {"tok-alice": "alice"}


def new_session(client: httpx.Client) -> str:
    response = client.post("/api/sessions")
    assert response.status_code == 201, response.text
    return str(response.json()["id"])


def wait_for(client: httpx.Client, path: str, kind: str, after: int = 0) -> list[SSE]:
    """Follow a run's stream until an event of ``kind`` arrives (then disconnect)."""
    seen: list[SSE] = []
    with client.stream("GET", path, headers={"Last-Event-ID": str(after)}) as response:
        assert response.status_code == 200, response.read()
        for event in iter_sse(response):
            seen.append(event)
            if event.event == kind:
                return seen
    raise AssertionError(f"the stream ended without a {kind} event: {seen}")


def test_a_turn_streams_every_event_as_sse(live: StartServer) -> None:
    server = live(tokens=TOKENS)
    with server.client("tok-alice") as client:
        session_id = new_session(client)
        response, events = stream_turn(client, session_id, "write notes.txt hello world")

        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-run-id"].startswith("run_")
        # ids number the run's events; the SSE event name is the event's type
        assert [e.id for e in events] == list(range(1, len(events) + 1))
        assert all(e.event == e.data["type"] for e in events)
        # the same wire shapes as everywhere: each data is an event's to_dict()
        assert all(event_from_dict(e.data).to_dict() == e.data for e in events)
        types = [e.event for e in events]
        assert types[-1] == "done"
        assert types.index("tool_call") < types.index("tool_result")
        call = events[types.index("tool_call")].data
        assert call["name"] == "Write"
        assert call["input"] == {"file_path": "notes.txt", "content": "hello world"}
        result = events[types.index("tool_result")].data
        assert result["id"] == call["id"]
        assert not result["is_error"]
        assert result["duration_ms"] >= 0
        text = "".join(e.data["text"] for e in events if e.event == "text_delta")
        assert text == "Writing it.\nI wrote notes.txt."
        done = events[-1].data
        assert done["stop_reason"] == "end_turn"
        assert done["session_id"] == session_id

        history = client.get(f"/api/sessions/{session_id}/messages").json()
        assert [m["role"] for m in history["messages"]] == ["user", "assistant"] * 2
        assert history["messages"][0]["content"] == [
            {"type": "text", "text": "write notes.txt hello world"}
        ]
        usage = client.get(f"/api/sessions/{session_id}/usage").json()
        assert usage["usage"] == done["usage"]
        assert usage["usage"]["tool_calls"] == 1
        assert usage["running_turn"] is None
        session = client.get(f"/api/sessions/{session_id}").json()
        assert session["message_count"] == 4
        assert session["title"] == "write notes.txt hello world"
        assert session["running"] is False
        assert session["run"]["stop_reason"] == "end_turn"
        assert session["run"]["last_event_id"] == len(events)
        listed = client.get("/api/sessions").json()["sessions"]
        assert [s["id"] for s in listed] == [session_id]


def test_line_separators_in_the_data_stay_inside_one_sse_data_line(
    live: StartServer, tmp_path: Path
) -> None:
    """A text field of the database holding a line separator (U+2028), a paragraph separator
    (U+2029) or a NEL (U+0085), quoted back in the answer: a client that reads the stream
    line by line as Python does (httpx's and requests' iter_lines) still gets each event's
    JSON whole."""
    note = "first\u2028second\x85third\u2029fourth"
    database = tmp_path / "notes.duckdb"
    with duckdb.connect(str(database)) as connection:
        connection.execute("CREATE TABLE notes AS SELECT ? AS note", [note])
    query = call("SQL", sql="SELECT note FROM notes", dataset_name="notes", description="notes")
    agent = Agent(
        ScriptedModel([ScriptedTurn("Reading the notes.\n", [query]), f"The note: {note}"]),
        tools=[SQL(f"duckdb://{database}")],
        store=MemoryStore(),
        workspace_root=str(tmp_path / "workspaces"),
    )
    server = live(agent)
    with server.client() as client:
        session_id = new_session(client)
        response, events = stream_turn(client, session_id, "What does the note say?")

    assert response.status_code == 200
    assert [e.id for e in events] == list(range(1, len(events) + 1))
    assert events[-1].data["stop_reason"] == "end_turn"
    result = next(e.data for e in events if e.event == "tool_result")
    assert not result["is_error"], result["content"]
    assert note in result["content"]
    text = "".join(e.data["text"] for e in events if e.event == "text_delta")
    assert text == f"Reading the notes.\nThe note: {note}"


def test_a_second_turn_while_one_runs_is_refused_with_409(live: StartServer) -> None:
    server = live(tokens=TOKENS)
    with server.client("tok-alice") as client:
        session_id = new_session(client)
        started = client.post(
            f"/api/sessions/{session_id}/messages",
            params={"stream": "false"},
            json={"content": "sleep 30"},
        )
        assert started.status_code == 202
        run = started.json()
        assert started.headers["location"] == run["events_url"]
        assert run["running"] is True

        again = client.post(f"/api/sessions/{session_id}/messages", json={"content": "hi"})
        assert again.status_code == 409
        assert again.json()["run_id"] == run["id"]
        assert "already running" in again.json()["detail"]
        # another session of the same user is free
        other = new_session(client)
        _, events = stream_turn(client, other, "hello")
        assert events[-1].data["stop_reason"] == "end_turn"

        assert client.post(f"/api/sessions/{session_id}/cancel").status_code == 200
        nothing = client.post(f"/api/sessions/{session_id}/cancel")
        assert nothing.status_code == 409
        assert "no turn is running" in nothing.json()["detail"]


def test_cancel_stops_the_turn_keeps_a_valid_history_and_resume_continues(
    live: StartServer,
) -> None:
    server = live(tokens=TOKENS)
    with server.client("tok-alice") as client:
        session_id = new_session(client)
        run = client.post(
            f"/api/sessions/{session_id}/messages",
            params={"stream": "false"},
            json={"content": "sleep 30"},
        ).json()
        wait_for(client, run["events_url"], "tool_call")

        started = time.monotonic()
        cancelled = client.post(f"/api/sessions/{session_id}/cancel")
        assert cancelled.status_code == 200
        assert cancelled.json()["stop_reason"] == "cancelled"
        assert cancelled.json()["running"] is False
        assert time.monotonic() - started < 10  # not the 30 s the tool would take

        with client.stream("GET", run["events_url"]) as response:
            events = list(iter_sse(response))
        assert events[-1].data["type"] == "done"
        assert events[-1].data["stop_reason"] == "cancelled"
        assert events[-1].data["detail"] == "cancelled by the user"
        # every tool_call streamed gets its tool_result, even the one cut short
        call = next(e.data for e in events if e.event == "tool_call")
        cut = events[-2].data
        assert cut["type"] == "tool_result"
        assert cut["id"] == call["id"]
        assert cut["is_error"]
        assert "interrupted" in cut["content"]

        # the unfinished call is answered as interrupted, so the history is valid
        messages = client.get(f"/api/sessions/{session_id}/messages").json()["messages"]
        last = messages[-1]["content"][0]
        assert last["type"] == "tool_result"
        assert last.get("is_error")
        assert "interrupted" in last["content"]

        # and the turn can be resumed: the model sees the interrupted result and goes on
        with client.stream("POST", f"/api/sessions/{session_id}/resume") as response:
            assert response.status_code == 200
            resumed = list(iter_sse(response))
        assert resumed[-1].data["stop_reason"] == "end_turn"
        assert "".join(e.data["text"] for e in resumed if e.event == "text_delta") == "I slept."
        nothing = client.post(f"/api/sessions/{session_id}/resume")
        assert nothing.status_code == 409
        assert "nothing to resume" in nothing.json()["detail"]


def test_a_run_outlives_its_client_and_reconnects_with_last_event_id(
    live: StartServer,
) -> None:
    server = live(tokens=TOKENS)
    with server.client("tok-alice") as client:
        session_id = new_session(client)
        first: list[SSE] = []
        with client.stream(
            "POST", f"/api/sessions/{session_id}/messages", json={"content": "steps 6 0.05"}
        ) as response:
            run_id = response.headers["x-run-id"]
            for event in iter_sse(response):
                first.append(event)
                if len(first) == 2:
                    break  # the client goes away mid-turn
        assert [e.id for e in first] == [1, 2]

        # reconnect to the session's current turn from the last event seen
        with client.stream(
            "GET", f"/api/sessions/{session_id}/events", headers={"Last-Event-ID": "2"}
        ) as response:
            assert response.headers["x-run-id"] == run_id
            rest = list(iter_sse(response))
        assert [e.id for e in rest] == list(range(3, 3 + len(rest)))
        done = rest[-1].data
        # the run went on without a client and did all its steps
        assert done["stop_reason"] == "end_turn"
        assert done["usage"]["tool_calls"] == 6

        # a finished run replays from any point, identically
        with client.stream(
            "GET",
            f"/api/sessions/{session_id}/runs/{run_id}/events",
            headers={"Last-Event-ID": "0"},
        ) as response:
            replay = list(iter_sse(response))
        assert replay == first + rest
        with client.stream(
            "GET", f"/api/sessions/{session_id}/runs/{run_id}/events", params={"after": 5}
        ) as response:
            assert [e.id for e in iter_sse(response)] == [e.id for e in replay[5:]]

        bad = client.get(
            f"/api/sessions/{session_id}/events", headers={"Last-Event-ID": "yesterday"}
        )
        assert bad.status_code == 400
        assert "Last-Event-ID" in bad.json()["detail"]
        unknown = client.get(f"/api/sessions/{session_id}/runs/run_nope/events")
        assert unknown.status_code == 404
        state = client.get(f"/api/sessions/{session_id}/runs/{run_id}").json()
        assert state["last_event_id"] == len(replay)


def test_two_clients_follow_one_turn_live(live: StartServer) -> None:
    server = live(tokens=TOKENS)
    with server.client("tok-alice") as client, server.client("tok-alice") as watcher:
        session_id = new_session(client)
        run = client.post(
            f"/api/sessions/{session_id}/messages",
            params={"stream": "false"},
            json={"content": "steps 3 0.05"},
        ).json()
        with watcher.stream("GET", run["events_url"]) as response:
            watched = list(iter_sse(response))
        with client.stream("GET", run["events_url"]) as response:
            replayed = list(iter_sse(response))
        assert watched == replayed
        assert watched[-1].data["stop_reason"] == "end_turn"


def test_bad_messages_get_a_clear_422(live: StartServer) -> None:
    server = live(tokens=TOKENS)
    with server.client("tok-alice") as client:
        session_id = new_session(client)
        for body in ({}, {"content": ""}, {"content": "   "}, {"content": 3}):
            response = client.post(f"/api/sessions/{session_id}/messages", json=body)
            assert response.status_code == 422, body
            assert response.json()["detail"].startswith("invalid request (content:")
        blank = client.post(f"/api/sessions/{session_id}/messages", json={"content": "  "})
        assert "blank" in blank.json()["detail"]
        # nothing was started or saved
        assert client.get(f"/api/sessions/{session_id}").json()["message_count"] == 0


def test_bodies_that_are_not_json_get_a_422_that_says_how_to_send_json(
    live: StartServer,
) -> None:
    server = live(tokens=TOKENS)
    with server.client("tok-alice") as client:
        path = f"/api/sessions/{new_session(client)}/messages"
        as_form = client.post(  # what `curl -d '{"content": "hi"}'` sends
            path,
            content=b'{"content": "hi"}',
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert as_form.status_code == 422
        assert as_form.json()["detail"].startswith(
            "the request body must be JSON sent with 'Content-Type: application/json', not "
            "'application/x-www-form-urlencoded'"
        )
        broken = client.post(
            path, content=b'{"content": hi}', headers={"Content-Type": "application/json"}
        )
        assert broken.status_code == 422
        assert broken.json()["detail"].startswith(
            "the request body is not valid JSON (Expecting value at character 12)"
        )
        for body in (b"[]", b'"hi"'):
            not_object = client.post(
                path, content=body, headers={"Content-Type": "application/json"}
            )
            assert not_object.status_code == 422
            assert not_object.json()["detail"].startswith("the request body must be a JSON object")
        empty = client.post(path, headers={"Content-Type": "application/json"})
        assert empty.status_code == 422
        assert empty.json()["detail"].startswith("the request needs a JSON body")


def test_a_refused_resume_keeps_the_last_turn_and_its_events(live: StartServer) -> None:
    server = live(tokens=TOKENS)
    with server.client("tok-alice") as client:
        session_id = new_session(client)
        _, events = stream_turn(client, session_id, "hello")
        assert events[-1].data["stop_reason"] == "end_turn"
        run_id = client.get(f"/api/sessions/{session_id}").json()["run"]["id"]

        refused = client.post(f"/api/sessions/{session_id}/resume")
        assert refused.status_code == 409
        assert "nothing to resume" in refused.json()["detail"]

        # the finished turn is still the session's latest, its events still there
        session = client.get(f"/api/sessions/{session_id}").json()
        assert session["run"] is not None
        assert session["run"]["id"] == run_id
        with client.stream("GET", f"/api/sessions/{session_id}/events") as response:
            assert response.status_code == 200
            again = list(iter_sse(response))
        assert again == events
        by_id = client.get(f"/api/sessions/{session_id}/runs/{run_id}")
        assert by_id.status_code == 200
        assert by_id.json()["stop_reason"] == "end_turn"
        # and the next turn replaces it as before
        _, second = stream_turn(client, session_id, "again")
        assert second[-1].data["stop_reason"] == "end_turn"
        assert client.get(f"/api/sessions/{session_id}/runs/{run_id}").status_code == 404


def test_health_readiness_and_the_openapi_spec(live: StartServer) -> None:
    server = live(tokens=TOKENS)
    with server.client() as anonymous:
        assert anonymous.get("/healthz").json() == {"status": "ok"}
        ready = anonymous.get("/readyz")
        assert ready.status_code == 200
        assert ready.json()["status"] == "ready"
        for probe in ("/healthz", "/readyz"):  # as load balancers often probe
            head = anonymous.head(probe)
            assert (head.status_code, head.content) == (200, b"")
        spec = anonymous.get("/openapi.json").json()
        post = spec["paths"]["/api/sessions/{session_id}/messages"]["post"]
        assert "text/event-stream" in post["responses"]["200"]["content"]
        assert {"409", "404"} <= set(post["responses"])
        for path in (
            "/api/sessions",
            "/api/sessions/{session_id}/cancel",
            "/api/sessions/{session_id}/approvals/{request_id}",
            "/api/sessions/{session_id}/files",
            "/api/sessions/{session_id}/files/{path}",
            "/api/sessions/{session_id}/usage",
            "/api/sessions/{session_id}/runs/{run_id}/events",
        ):
            assert path in spec["paths"], path
        assert anonymous.get("/docs").status_code == 404  # no CDN-backed docs page
