"""loopwright's own MCP server, driven by the official ``mcp`` client: ``loopwright mcp serve``
over stdio and streamable HTTP (real subprocesses on 127.0.0.1), and ``AgentMCPServer``."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_helpers import serving

from loopwright import Agent, MemoryStore, ReadTool, ScriptedModel, WriteTool, call
from loopwright.cli.runtime import build_agent
from loopwright.mcp import RUN_AGENT, AgentMCPServer
from loopwright.policy import Policy
from loopwright.sessions.sqlite import SQLiteStore

LOOPWRIGHT = Path(sys.executable).with_name("loopwright")


@pytest.fixture
def server_env(loopwright_home: Path) -> dict[str, str]:
    """The server's environment: its own data directory and the scripted demo model."""
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update(LOOPWRIGHT_HOME=str(loopwright_home), LOOPWRIGHT_MODEL="scripted", NO_COLOR="1")
    env.pop("LOOPWRIGHT_WORKSPACES", None)
    return env


def text_of(result: types.CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, types.TextContent))


async def exercise(client: ClientSession) -> dict[str, Any]:
    """List the tools, write and read a file, refuse a path outside, run the agent."""
    await client.initialize()
    listed = {tool.name: tool for tool in (await client.list_tools()).tools}
    wrote = await client.call_tool("Write", {"file_path": "notes.md", "content": "hello mcp"})
    read = await client.call_tool("Read", {"file_path": "notes.md"})
    outside = await client.call_tool("Read", {"file_path": "../../../etc/passwd"})
    invalid = await client.call_tool("Write", {"file_path": "x.txt"})
    progress: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done: float, total: float | None, message: str | None) -> None:
        progress.append((done, total, message))

    ran = await client.call_tool(
        RUN_AGENT, {"prompt": "Remember the milk"}, progress_callback=on_progress
    )
    return {"listed": listed, "wrote": wrote, "read": read, "outside": outside,
            "invalid": invalid, "ran": ran, "progress": progress}  # fmt: skip


def check(outcome: dict[str, Any]) -> str:
    """The checks both transports share; returns the run's session id."""
    listed = outcome["listed"]
    assert {"Read", "Write", "Edit", "Glob", "Grep", "Bash", RUN_AGENT} <= set(listed)
    assert listed["Read"].input_schema == ReadTool(".").schema["input_schema"]  # verbatim
    assert listed["Read"].annotations.read_only_hint is True
    assert listed[RUN_AGENT].input_schema["required"] == ["prompt"]
    assert not outcome["wrote"].is_error
    assert not outcome["read"].is_error
    assert "hello mcp" in text_of(outcome["read"])
    assert outcome["outside"].is_error
    assert "Access denied" in text_of(outcome["outside"])
    assert outcome["invalid"].is_error
    assert "'content'" in text_of(outcome["invalid"])
    ran = outcome["ran"]
    assert not ran.is_error, text_of(ran)
    assert "Remember the milk" in text_of(ran)  # the demo model read its task back
    assert ran.structured_content["stop_reason"] == "end_turn"
    # the run's tool calls arrived as progress notifications while it ran
    assert outcome["progress"] == [
        (1, None, "Write: task.md"),
        (2, None, "Write done"),
        (3, None, "Read: task.md"),
        (4, None, "Read done"),
    ]
    return str(ran.structured_content["session_id"])


async def test_stdio_server_started_by_the_official_client(
    server_env: dict[str, str], loopwright_home: Path
) -> None:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "loopwright.cli.app", "mcp", "serve"],
        env=server_env,
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as client:
        outcome = await exercise(client)
    session_id = check(outcome)
    workspace = loopwright_home / "workspaces" / session_id
    assert (workspace / "notes.md").read_text() == "hello mcp"  # the tools' workspace...
    assert "Remember the milk" in (workspace / "task.md").read_text()  # ...is the agent's


@asynccontextmanager
async def http_server(env: dict[str, str], *args: str) -> AsyncIterator[tuple[str, Any]]:
    """``loopwright mcp serve --transport http --port 0`` (the installed entry point)."""
    process = await asyncio.create_subprocess_exec(
        str(LOOPWRIGHT), "mcp", "serve", "--transport", "http", "--port", "0", *args,
        env=env, stderr=subprocess.PIPE,
    )  # fmt: skip
    assert process.stderr is not None
    try:
        seen = ""
        while True:
            line = (await asyncio.wait_for(process.stderr.readline(), 60)).decode()
            seen += line
            assert line, f"the server exited before listening: {seen}"
            found = re.search(r"listening on (http://\S+)", line)
            if found:
                break
        yield found.group(1), process
    finally:
        if process.returncode is None:
            process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(process.wait(), 30)


async def test_http_server_driven_by_the_official_client(
    server_env: dict[str, str], tmp_path: Path
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    async with http_server(server_env, "--workspace", str(project)) as (url, process):
        assert url.startswith("http://127.0.0.1:")
        assert url.endswith("/mcp")
        async with (
            streamable_http_client(url) as (read, write),
            ClientSession(read, write) as client,
        ):
            outcome = await exercise(client)
        process.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(process.wait(), 30) == 0  # a clean shutdown
    check(outcome)
    assert (project / "notes.md").read_text() == "hello mcp"


def agent_for(tmp_path: Path, script: list[Any], **options: Any) -> Agent:
    options.setdefault("store", MemoryStore())
    return Agent(
        ScriptedModel(script),
        tools=[ReadTool, WriteTool],
        workspace_root=str(tmp_path / "workspaces"),
        **options,
    )


async def test_tool_calls_go_through_the_agents_registry_and_policy(tmp_path: Path) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "data.txt").write_text("42\n")
    agent = agent_for(tmp_path, [], policy=Policy(mode="read-only"))
    server = AgentMCPServer(agent, workspace=project)
    assert server.session.workspace_dir == project
    read = await server.call("Read", {"file_path": "data.txt"})
    assert not read.is_error
    assert "42" in text_of(read)
    refused = await server.call("Write", {"file_path": "new.txt", "content": "x"})
    assert refused.is_error
    assert "read-only" in text_of(refused)
    assert not (project / "new.txt").exists()
    with pytest.raises(MCPError, match="Unknown tool: 'Bash'"):
        await server.call("Bash", {"command": "ls"})
    await server.aclose()


async def test_run_agent_continues_a_named_session(tmp_path: Path) -> None:
    agent = agent_for(
        tmp_path,
        [
            call("Write", file_path="plan.md", content="step 1"),
            "Wrote the plan.",
            "You asked me to write a plan.",
        ],
    )
    server = AgentMCPServer(agent, expose_tools=False)
    assert [tool.name for tool in server.tools()] == [RUN_AGENT]
    reported: list[str | None] = []

    async def client_gone(done: float, total: float | None, message: str | None) -> None:
        reported.append(message)
        raise ConnectionError("the client went away")

    first = await server.run_agent(
        {"prompt": "Write a plan", "session_id": "planning"}, progress=client_gone
    )
    assert not first.is_error  # progress that cannot be delivered does not stop the run
    assert reported == ["Write: plan.md", "Write done"]
    second = await server.run_agent({"prompt": "What did I ask?", "session_id": "planning"})
    assert first.structured_content["session_id"] == "planning"
    assert text_of(second).startswith("You asked me to write a plan.")
    seen = [m.text for m in agent.model.requests[-1].messages]  # type: ignore[attr-defined]
    assert seen[0] == "Write a plan"
    assert seen[-1] == "What did I ask?"
    history = agent.store.load("planning")
    assert history is not None
    assert (history.workspace_dir / "plan.md").read_text() == "step 1"
    empty = await server.run_agent({"prompt": "  "})
    assert empty.is_error
    assert "non-empty 'prompt'" in text_of(empty)
    bad = await server.run_agent({"prompt": "x", "session_id": "../etc"})
    assert bad.is_error
    await agent.aclose()


async def test_the_python_api_serves_streamable_http_in_process(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "sessions.db")
    agent = build_agent("scripted", store=store)
    server = AgentMCPServer(agent)
    async with (
        serving(server.streamable_http_app()) as base,
        streamable_http_client(f"{base}/mcp") as (read, write),
        ClientSession(read, write) as client,
    ):
        outcome = await exercise(client)
    check(outcome)
    await server.aclose()
    await agent.aclose()


def test_cli_refuses_bad_options(server_env: dict[str, str]) -> None:
    def serve(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "loopwright.cli.app", "mcp", "serve", *args],
            env=server_env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    wrong = serve("--transport", "carrier-pigeon")
    assert wrong.returncode == 2
    assert "use --transport stdio or --transport http" in wrong.stderr
    ask = serve("--permission-mode", "ask")
    assert ask.returncode == 2
    assert "use auto or read-only" in ask.stderr


async def test_run_agent_keeps_turns_taken_by_another_process_and_waits_for_them(
    tmp_path: Path,
) -> None:
    """``mcp serve --session X`` beside ``loopwright chat --session X`` on one SQLite file:
    a turn the other process took in between is kept (the server's older copy is not saved
    over it), and while the other process runs a turn, run_agent says the session is busy."""
    store = SQLiteStore(tmp_path / "sessions.db")
    agent = agent_for(tmp_path, ["First answer.", "Third answer."], store=store)
    server = AgentMCPServer(agent, session="shared")
    first = await server.run_agent({"prompt": "first"})
    assert not first.is_error, text_of(first)

    elsewhere_store = SQLiteStore(tmp_path / "sessions.db")  # the other process's connection
    elsewhere = agent_for(tmp_path, ["Second answer."], store=elsewhere_store)
    await elsewhere.collect("second, from the CLI", "shared")

    assert elsewhere_store.claim("shared", "the-cli", 60)  # a turn running there now
    busy = await server.run_agent({"prompt": "not now"})
    assert busy.is_error
    assert "session shared is busy" in text_of(busy)
    elsewhere_store.release("shared", "the-cli")

    third = await server.run_agent({"prompt": "third"})
    assert not third.is_error, text_of(third)
    history = store.load("shared")
    assert history is not None
    assert [m.text for m in history.messages] == [
        "first", "First answer.", "second, from the CLI", "Second answer.", "third",
        "Third answer.",
    ]  # fmt: skip
    assert store.claim("shared", "someone-else", 60)  # the lease was given back
    await server.aclose()
    await agent.aclose()
    await elsewhere.aclose()
