"""Record provider traffic against loopback servers, then replay it with the servers stopped.

The replay goes through the same SDK and provider code, byte for byte: same events, same
history, same usage, faults included.
"""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("anthropic")
pytest.importorskip("openai")
httpx2 = pytest.importorskip("httpx2")

from loopwright import Agent, MemoryStore, ReadTool, WriteTool  # noqa: E402
from loopwright.agent import RunResult  # noqa: E402
from loopwright.models.anthropic import AnthropicModel  # noqa: E402
from loopwright.models.base import Model  # noqa: E402
from loopwright.models.openai import OpenAIModel  # noqa: E402
from loopwright.models.recording import (  # noqa: E402
    RecordingTransport,
    ReplayTransport,
    recording_client,
    replay_client,
)
from loopwright.models.retry import RetryingModel  # noqa: E402

from .anthropic_server import AnthropicServer, Fault, text_turn, tool_turn  # noqa: E402
from .openai_server import Fault as OpenAIFault  # noqa: E402
from .openai_server import OpenAIServer, ToolCall, Turn, TurnSpec  # noqa: E402

SECRET = "sk-ant-test-secret-do-not-write"
HEADERS = {"x-api-key": SECRET, "anthropic-version": "2023-06-01"}
BODY = {"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}


def port_is_closed(url: str) -> bool:
    port = httpx2.URL(url).port
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


async def run_agent(model: Model, workspace: Path) -> RunResult:
    agent = Agent(
        model, tools=[WriteTool, ReadTool], store=MemoryStore(), workspace_root=str(workspace)
    )
    try:
        return await agent.collect("Write hello.txt, then read it back.")
    finally:
        await agent.aclose()


def summary(result: RunResult) -> list[Any]:
    """What a user sees of a run, without timings."""
    out: list[Any] = []
    for event in result.events:
        data = event.to_dict()
        data.pop("duration_ms", None)
        data.pop("session_id", None)
        out.append(data)
    return out


def fast(model: Model) -> RetryingModel:
    async def no_wait(delay: float) -> None:
        pass

    return RetryingModel(model, sleep=no_wait, jitter=0.0)


async def test_an_anthropic_run_replays_offline_identically(tmp_path: Path) -> None:
    cassette = tmp_path / "anthropic.jsonl"
    server = AnthropicServer(
        [
            tool_turn("Write", {"file_path": "hello.txt", "content": "Hello World"}, "Writing."),
            tool_turn("Read", {"file_path": "hello.txt"}, "Reading."),
            text_turn("hello.txt says Hello World."),
        ]
    )
    server.inject(Fault.overloaded())
    with server:
        url = server.url
        async with recording_client(cassette) as recorder:
            live_model = AnthropicModel(api_key=SECRET, base_url=url, http_client=recorder)
            recorded = await run_agent(fast(live_model), tmp_path / "live")
    assert port_is_closed(url)
    assert recorded.ok
    assert len(server.requests) == 4  # one 529, then three turns

    transport = ReplayTransport(cassette)
    async with httpx2.AsyncClient(transport=transport) as player:
        offline = AnthropicModel(api_key="any", base_url=url, http_client=player)
        replayed = await run_agent(fast(offline), tmp_path / "replay")

    assert summary(replayed) == summary(recorded)  # the 529 retry included
    assert replayed.session.messages == recorded.session.messages
    assert (tmp_path / "replay" / replayed.session.id / "hello.txt").read_text() == "Hello World"
    assert transport.remaining == 0
    assert transport.misses == []
    text = cassette.read_text()
    assert SECRET not in text  # the key never reaches the file
    assert "x-api-key" not in text.lower()


async def test_an_openai_run_replays_offline_identically(tmp_path: Path) -> None:
    cassette = tmp_path / "openai.jsonl"
    script: list[TurnSpec] = [
        Turn(
            text="Writing.",
            tool_calls=[
                ToolCall("Write", {"file_path": "hello.txt", "content": "Hello World"}, id="c1")
            ],
        ),
        Turn(tool_calls=[ToolCall("Read", {"file_path": "hello.txt"}, id="c2")]),
        "It says Hello World.",
    ]
    with OpenAIServer(script) as server:
        server.inject(OpenAIFault.rate_limit(retry_after=0), OpenAIFault.cut(after_chunks=2))
        url = server.base_url
        async with recording_client(cassette) as recorder:
            live = OpenAIModel("gpt-4.1", base_url=url, api_key=SECRET, http_client=recorder)
            recorded = await run_agent(fast(live), tmp_path / "live")
    assert port_is_closed(url)
    assert recorded.ok
    assert sum(e.type == "error" for e in recorded.events) == 2  # the 429 and the cut

    async with replay_client(cassette) as player:
        offline = OpenAIModel("gpt-4.1", base_url=url, api_key="any", http_client=player)
        replayed = await run_agent(fast(offline), tmp_path / "replay")
    assert summary(replayed) == summary(recorded)
    assert replayed.session.messages == recorded.session.messages
    assert SECRET not in cassette.read_text()


async def stream_raw(
    client: Any, url: str, body: dict[str, Any]
) -> tuple[int, list[tuple[str, str]], list[bytes]]:
    """Status, headers and the raw body chunks of a streamed POST."""
    async with client.stream("POST", f"{url}/v1/messages", json=body, headers=HEADERS) as r:
        chunks = [chunk async for chunk in r.aiter_raw()]
        return r.status_code, r.headers.multi_items(), chunks


async def test_the_replayed_bytes_and_chunks_are_the_recorded_ones(tmp_path: Path) -> None:
    cassette = tmp_path / "raw.jsonl"
    body = {**BODY, "max_tokens": 50, "stream": True}
    turn = text_turn("Héllo, wörld — ünïcode split across chunks", chunk_size=3)
    with AnthropicServer([turn]) as server:
        url = server.url
        async with recording_client(cassette) as client:
            live = await stream_raw(client, url, body)
    async with replay_client(cassette) as client:
        replayed = await stream_raw(client, url, body)
    assert replayed == live  # status, headers, and every chunk as it arrived
    assert b"".join(replayed[2]).count(b"event: content_block_delta") > 3

    entry = json.loads(cassette.read_text().splitlines()[0])
    assert entry["response"]["end"] == "complete"
    assert entry["request"]["body_sha256"]
    assert all(name.lower() != "x-api-key" for name, _ in entry["request"]["headers"])


async def test_a_request_that_was_not_recorded_is_a_clear_error(tmp_path: Path) -> None:
    cassette = tmp_path / "short.jsonl"
    with AnthropicServer([text_turn("first answer")]) as server:
        url = server.url
        async with recording_client(cassette) as recorder:
            live = AnthropicModel(api_key="k", base_url=url, http_client=recorder)
            agent = Agent(live, store=MemoryStore(), workspace_root=str(tmp_path / "live"))
            assert (await agent.collect("first question")).ok

    async with replay_client(cassette) as player:
        offline = fast(AnthropicModel(api_key="k", base_url=url, http_client=player))
        agent = Agent(offline, store=MemoryStore(), workspace_root=str(tmp_path / "replay"))
        result = await agent.collect("a different question")
    errors = [e for e in result.events if e.type == "error"]
    assert result.stop_reason == "error"
    assert len(errors) == 1  # not retried
    assert not errors[0]["retryable"]
    assert "no recorded response for POST" in errors[0]["message"]
    assert "record the run again" in errors[0]["message"]


async def test_a_recorded_connection_failure_replays_as_the_same_failure(tmp_path: Path) -> None:
    cassette = tmp_path / "down.jsonl"
    with socket.socket() as sock:  # a port with nothing listening
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    async with recording_client(cassette) as client:
        with pytest.raises(httpx2.ConnectError) as live:
            await client.post(f"{url}/v1/messages", content=b"{}")
    async with replay_client(cassette) as client:
        with pytest.raises(httpx2.ConnectError) as replayed:
            await client.post(f"{url}/v1/messages", content=b"{}")
    assert str(replayed.value) == str(live.value)


async def test_identical_requests_get_their_responses_in_recorded_order(tmp_path: Path) -> None:
    cassette = tmp_path / "order.jsonl"
    with AnthropicServer([text_turn("one"), text_turn("two")]) as server:
        url = server.url
        async with recording_client(cassette, headers=HEADERS) as client:
            live = [(await client.post(f"{url}/v1/messages", json=BODY)).json() for _ in range(2)]
    transport = ReplayTransport(cassette)
    async with httpx2.AsyncClient(transport=transport) as client:
        replayed = [(await client.post(f"{url}/v1/messages", json=BODY)).json() for _ in range(2)]
        third = await client.post(f"{url}/v1/messages", json=BODY)
    assert [r["content"][0]["text"] for r in replayed] == ["one", "two"]
    assert replayed == live
    assert third.status_code == 404
    assert "were all replayed already" in third.json()["error"]["message"]


def test_a_replay_can_ignore_the_host_and_rejects_files_it_did_not_write(tmp_path: Path) -> None:
    cassette = tmp_path / "c.jsonl"
    RecordingTransport(cassette)  # starts an empty recording
    assert cassette.read_text() == ""
    with pytest.raises(FileNotFoundError, match="record one first"):
        ReplayTransport(tmp_path / "missing.jsonl")
    cassette.write_text('{"not": "an exchange"}\n')
    with pytest.raises(ValueError, match=r"c.jsonl:1 is not a recorded exchange"):
        ReplayTransport(cassette)


async def test_ignore_host_replays_against_another_address(tmp_path: Path) -> None:
    cassette = tmp_path / "moved.jsonl"
    with AnthropicServer([text_turn("moved")]) as server:
        async with recording_client(cassette, headers=HEADERS) as client:
            await client.post(f"{server.url}/v1/messages", json=BODY)
    async with replay_client(cassette, ignore_host=True) as client:
        response = await client.post("http://127.0.0.1:9/v1/messages", json=BODY)
    assert response.json()["content"][0]["text"] == "moved"
