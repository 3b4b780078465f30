"""A server's tool call times out after no answer or progress: the edges.

- loopwright's own ``run_agent`` reports progress while its model thinks, not only per tool
  call, so a client with a short idle timeout does not cut off a long model turn;
- a registry used without an agent bounds a server's call by its own ``default_timeout``;
- a call that keeps reporting progress forever is stopped by the agent's run ``timeout``,
  and the server is told to cancel it.

Real servers: the tests' SDK server over stdio, and a loopwright agent over streamable HTTP on
127.0.0.1.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from mcp_helpers import demo_server, serving

from loopwright import Agent, MemoryStore, ScriptedModel, call
from loopwright.events import Done, ToolResult
from loopwright.mcp import MCPServers
from loopwright.mcp import server as mcp_server
from loopwright.mcp.server import AgentMCPServer
from loopwright.models.base import ModelRequest
from loopwright.tools import ToolRegistry


async def _thinks_long(request: ModelRequest) -> str:
    await asyncio.sleep(2.5)  # one model turn, no tool call: nothing else to report
    return "Thought it through."


async def test_run_agent_reports_progress_while_its_model_thinks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mcp_server, "HEARTBEAT_S", 0.2, raising=False)
    served = Agent(
        ScriptedModel(_thinks_long),
        store=MemoryStore(),
        workspace_root=str(tmp_path / "served"),
    )
    server = AgentMCPServer(served, session="main")
    async with serving(server.streamable_http_app()) as base:
        config = {"url": f"{base}/mcp", "timeout": 1.0}
        async with MCPServers({"lw": config}) as servers:
            registry = ToolRegistry(tmp_path / "client")
            registry.register_all([servers])
            answer = await registry.execute("mcp__lw__run_agent", {"prompt": "Think."})
            await registry.aclose()
    assert not answer["is_error"], answer["content"]
    assert "Thought it through." in str(answer["content"])


async def test_run_agent_called_in_process_reports_its_model_turn_as_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(mcp_server, "HEARTBEAT_S", 0.2, raising=False)
    served = Agent(
        ScriptedModel(_thinks_long),
        store=MemoryStore(),
        workspace_root=str(tmp_path / "served"),
    )
    server = AgentMCPServer(served, session="main")
    heard: list[tuple[float, str | None]] = []

    async def progress(done: float, total: float | None, message: str | None) -> None:
        heard.append((done, message))

    result = await server.run_agent({"prompt": "Think."}, progress)
    assert not result.is_error
    assert heard, "no progress while the model thought"
    steps = [done for done, _ in heard]
    assert steps == sorted(set(steps)), "progress must increase with each notification"
    assert all(message and "model" in message for _, message in heard)
    await served.aclose()


async def test_a_registry_without_an_agent_bounds_a_servers_call_by_its_default(
    tmp_path: Path,
) -> None:
    async with MCPServers({"demo": demo_server()}) as servers:
        registry = ToolRegistry(tmp_path, default_timeout=1.0)
        registry.register_all([servers])
        silent = await registry.execute("mcp__demo__slow", {"seconds": 30})
        assert silent["is_error"]
        assert "timed out after 1s" in str(silent["content"])
        worked = await registry.execute("mcp__demo__working", {"seconds": 2, "every": 0.25})
        assert worked["content"] == "worked 2s"  # progress still keeps a call going
        await registry.aclose()


async def test_a_call_reporting_progress_forever_is_stopped_by_the_runs_timeout(
    tmp_path: Path,
) -> None:
    async with MCPServers({"demo": demo_server(timeout=1.0)}) as servers:
        agent = Agent(
            ScriptedModel([call("mcp__demo__working", seconds=600, every=0.2), "never"]),
            tools=[servers],
            store=MemoryStore(),
            timeout=2.0,
        )
        run = await agent.collect("work")
        assert run.stop_reason == "timeout"
        assert len([event for event in run.events if isinstance(event, Done)]) == 1
        # the server was told to cancel the call: it answers the next one at once
        registry = ToolRegistry(tmp_path)
        registry.register_all([servers])
        echo = await registry.execute("mcp__demo__echo", {"text": "still here"})
        assert echo["content"] == "still here"
        await agent.aclose()
    assert not [event for event in run.events if isinstance(event, ToolResult)]


async def test_a_run_agent_waiting_for_its_sessions_earlier_run_reports_progress(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two run_agent calls on one session: the second waits for the first (2.5 s of model
    turn) before its own. It used to report nothing while it waited, so a client with a 1 s
    idle limit cut it off; it now says it is waiting, and both answer."""
    monkeypatch.setattr(mcp_server, "HEARTBEAT_S", 0.2, raising=False)
    served = Agent(
        ScriptedModel(_thinks_long),
        store=MemoryStore(),
        workspace_root=str(tmp_path / "served"),
    )
    server = AgentMCPServer(served, session="main")
    async with serving(server.streamable_http_app()) as base:
        config = {"url": f"{base}/mcp", "timeout": 1.0}
        async with MCPServers({"lw": config}) as servers:
            registry = ToolRegistry(tmp_path / "client")
            registry.register_all([servers])
            first = asyncio.create_task(
                registry.execute("mcp__lw__run_agent", {"prompt": "Think.", "session_id": "s"})
            )
            await asyncio.sleep(0.3)  # the first holds the session
            second = await registry.execute(
                "mcp__lw__run_agent", {"prompt": "Think again.", "session_id": "s"}
            )
            answered = await first
            await registry.aclose()
    for answer in (answered, second):
        assert not answer["is_error"], answer["content"]
        assert "Thought it through." in str(answer["content"])
