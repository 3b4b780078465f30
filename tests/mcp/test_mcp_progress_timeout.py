"""An MCP server's tool call is stopped after its timeout *without an answer or progress*.

The SDK's read timeout counts from the request alone, so every call to a server's tool was cut
off at the agent's ``tool_timeout`` (120 s by default) or ``mcp.json``'s ``timeout``, however
busy the server was: a loopwright server's ``run_agent``, which reports each of its steps as
progress, could not run longer than that. The client now asks for progress and counts the
timeout from the latest notification; a server that says nothing is stopped as before.

Real servers: the tests' SDK server (``mcp_demo_server.py``) over stdio, and a loopwright
agent served over streamable HTTP on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from mcp_helpers import demo_server, serving

from loopwright import Agent, MemoryStore, ScriptedModel, call, tool
from loopwright.events import ToolResult
from loopwright.mcp import MCPServers
from loopwright.mcp.server import AgentMCPServer
from loopwright.tools import ToolRegistry


async def test_a_call_reporting_progress_runs_past_its_timeout(tmp_path: Path) -> None:
    async with MCPServers({"demo": demo_server(timeout=1.0)}) as servers:
        registry = ToolRegistry(tmp_path)
        registry.register_all([servers])
        worked = await registry.execute("mcp__demo__working", {"seconds": 3, "every": 0.25})
        assert not worked["is_error"], worked["content"]
        assert worked["content"] == "worked 3s"
        # a call that says nothing is still stopped at its timeout, and the server lives on
        silent = await registry.execute("mcp__demo__slow", {"seconds": 30})
        assert silent["is_error"]
        assert "timed out after 1s without an answer or progress" in str(silent["content"])
        echo = await registry.execute("mcp__demo__echo", {"text": "still here"})
        assert echo["content"] == "still here"
        await registry.aclose()


async def test_progress_further_apart_than_the_timeout_does_not_keep_a_call_going(
    tmp_path: Path,
) -> None:
    async with MCPServers({"demo": demo_server(timeout=0.5)}) as servers:
        registry = ToolRegistry(tmp_path)
        registry.register_all([servers])
        sparse = await registry.execute("mcp__demo__working", {"seconds": 4, "every": 2})
        assert sparse["is_error"]
        assert "timed out after 0.5s" in str(sparse["content"])
        await registry.aclose()


def _results(events: list[Any]) -> list[ToolResult]:
    return [event for event in events if isinstance(event, ToolResult)]


async def test_without_a_timeout_of_its_own_the_agents_tool_timeout_is_the_idle_limit(
    tmp_path: Path,
) -> None:
    """No ``timeout`` in the server's config: the agent's ``tool_timeout`` (1 s here) is how
    long a call may go without an answer or progress, not how long it may run."""
    async with MCPServers({"demo": demo_server()}) as servers:
        agent = Agent(
            ScriptedModel(
                [
                    [
                        call("mcp__demo__working", seconds=2.5, every=0.25),
                        call("mcp__demo__slow", seconds=30),
                    ],
                    "done",
                ]
            ),
            tools=[servers],
            store=MemoryStore(),
            tool_timeout=1.0,
        )
        run = await agent.collect("work")
        await agent.aclose()
    worked, silent = _results(run.events)
    assert not worked.is_error, worked.content
    assert worked.content == "worked 2.5s"
    assert silent.is_error
    assert "timed out after 1s without an answer or progress" in str(silent.content)


@tool
async def step(n: int) -> str:
    """One slow step of work."""
    await asyncio.sleep(0.4)
    return f"step {n} done"


async def test_a_loopwright_servers_run_agent_runs_past_the_clients_timeout(
    tmp_path: Path,
) -> None:
    """The agent served takes five 0.4 s steps (2 s, and more for its model turns); the client
    allows 1 s without progress, and the server reports each step."""
    served = Agent(
        ScriptedModel([*(call("step", n=n) for n in range(5)), "All five steps are done."]),
        tools=[step],
        store=MemoryStore(),
        workspace_root=str(tmp_path / "served"),
    )
    server = AgentMCPServer(served, session="main")
    async with serving(server.streamable_http_app()) as base:
        config = {"url": f"{base}/mcp", "timeout": 1.0}
        async with MCPServers({"lw": config}) as servers:
            registry = ToolRegistry(tmp_path / "client")
            registry.register_all([servers])
            answer = await registry.execute("mcp__lw__run_agent", {"prompt": "Do the steps."})
            await registry.aclose()
    assert not answer["is_error"], answer["content"]
    assert "All five steps are done." in str(answer["content"])
