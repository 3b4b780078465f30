"""The healthcare agent over MCP, in the corners: output holding bytes that are not UTF-8
(on both sides of the wire), sessions ``run_agent`` continues by id (their tools and what
they record), driven by the official client over stdio and streamable HTTP on 127.0.0.1."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp_helpers import alive, serving, wait_until
from test_mcp_healthcare import text_of

from loopwright import Agent, MemoryStore, ScriptedModel, call
from loopwright.healthcare import healthcare_agent
from loopwright.mcp import RUN_AGENT, AgentMCPServer, MCPServers
from loopwright.mcp import server as mcp_server
from loopwright.models.base import ModelRequest
from loopwright.sessions.sqlite import SQLiteStore

SERVE = ["-m", "loopwright.cli.app", "mcp", "serve", "--agent", "healthcare"]
#: a file name that is not UTF-8: Python lists it with the lone surrogate ``\udcff``
BAD_NAME = b"claims_\xff.csv".decode("utf-8", "surrogateescape")
#: a guard against a hang (the old server never answered), not a time limit under test
HANG_GUARD_S = 60.0


@pytest.fixture
def env(loopwright_home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update(LOOPWRIGHT_HOME=str(loopwright_home), NO_COLOR="1", LOOPWRIGHT_MODEL="scripted")
    for name in ("LOOPWRIGHT_WORKSPACES", "LOOPWRIGHT_STORE"):
        env.pop(name, None)
    return env


def sql(query: str, name: str) -> dict[str, str]:
    return {"sql": query, "dataset_name": name, "description": "a check"}


async def test_a_result_naming_a_file_that_is_not_utf8_is_sent_and_the_server_lives(
    env: dict[str, str], claims: Path, tmp_path: Path
) -> None:
    """Glob in a workspace holding a file whose name is not UTF-8: the result held a lone
    surrogate, which JSON cannot encode; the stdio server died writing it (the client
    waited for ever), and every later call failed."""
    project = tmp_path / "project"
    project.mkdir()
    (project / BAD_NAME).write_bytes(b"id\n1\n")
    params = StdioServerParameters(
        command=sys.executable,
        args=[*SERVE, "--database", str(claims), "--workspace", str(project)],
        env=env,
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as client:
        await client.initialize()
        listed = await client.call_tool(
            "Glob", {"pattern": "*.csv"}, read_timeout_seconds=HANG_GUARD_S
        )
        after = await client.call_tool(
            "SQL", sql("SELECT 42 AS answer", "answer"), read_timeout_seconds=HANG_GUARD_S
        )
    assert not listed.is_error, text_of(listed)
    assert "claims_\ufffd.csv" in text_of(listed)  # the byte shown as the terminal shows it
    assert not after.is_error, text_of(after)
    assert "Saved 1 row × 1 column to answer.csv" in text_of(after)
    assert (project / "answer.csv").read_text().splitlines() == ["answer", "42"]


def healthcare_script(request: ModelRequest) -> Any:
    """A model that runs what the user's last message asks for, then says it is done."""
    last = request.messages[-1]
    if last.tool_results:  # the answer quotes what the tool said
        return f"Done: {last.tool_results[0].content}"
    if last.role != "user" or not last.text:
        return "Done."
    if last.text == "start the export":
        return call("Bash", command="sleep 4321 # the export", background=True)
    if last.text == "how is the export?":
        return call("BashOutput", shell_id="bash_1")
    if last.text == "list the files":
        return call("Glob", pattern="*.csv")
    return call("SQL", sql("SELECT 1 AS one", "one"))


def sleepers() -> list[int]:
    """Live processes running the test's background command."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                command = handle.read().replace(b"\0", b" ")
        except OSError:
            continue
        if command.startswith(b"sleep 4321") and alive(int(entry)):
            found.append(int(entry))
    return found


async def test_run_agent_keeps_a_named_sessions_tools_between_calls_over_http(
    claims: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """run_agent with a session_id built the session's tools afresh at each call (a new
    copy of the session from the store each time): a background job the agent started in
    one call was gone from the next ("No background shell has the id"), though still
    running until the server closed."""
    store = SQLiteStore(tmp_path / "sessions.db")
    agent = healthcare_agent(
        ScriptedModel(healthcare_script),
        database=claims,
        store=store,
        workspace_root=str(tmp_path / "workspaces"),
    )
    monkeypatch.setattr(mcp_server, "KEEP_LIVE", 1, raising=False)
    server = AgentMCPServer(agent, session="main")
    try:
        async with (
            serving(server.streamable_http_app()) as base,
            streamable_http_client(f"{base}/mcp") as (read, write),
            ClientSession(read, write) as client,
        ):
            await client.initialize()

            async def run(prompt: str, session_id: str) -> types.CallToolResult:
                return await client.call_tool(
                    RUN_AGENT,
                    {"prompt": prompt, "session_id": session_id},
                    read_timeout_seconds=HANG_GUARD_S,
                )

            started = await run("start the export", "export")
            assert not started.is_error, text_of(started)
            # the sandbox may not have exec'd the command yet when the call returns
            await wait_until(lambda: len(sleepers()) == 1, "the background sleep to start")
            checked = await run("how is the export?", "export")
            assert not checked.is_error, text_of(checked)
            history = store.load("export")
            assert history is not None
            (result,) = history.messages[-2].tool_results
            assert not result.is_error, result.content  # the same shell, still running
            assert "running" in str(result.content)

            other = await run("count something", "other")  # a second named session...
            assert not other.is_error, text_of(other)
            # ...past KEEP_LIVE (1 here): the idle one's tools were closed, its job ended
            assert sleepers() == []
    finally:
        await server.aclose()
        await agent.aclose()
        store.close()


async def test_an_answer_quoting_a_file_name_that_is_not_utf8_is_sent_over_http(
    claims: Path, tmp_path: Path
) -> None:
    """The agent's answer quoted a file name that is not UTF-8 (a lone surrogate): the
    HTTP response could not be encoded and the client got "SSE stream ended without a
    response" instead of the answer."""
    agent = healthcare_agent(
        ScriptedModel(healthcare_script),
        database=claims,
        store=MemoryStore(),  # SQLite cannot save a lone surrogate: not this test's concern
        workspace_root=str(tmp_path / "workspaces"),
    )
    server = AgentMCPServer(agent, session="files")
    (server.session.workspace_dir / BAD_NAME).write_bytes(b"x\n")
    try:
        async with (
            serving(server.streamable_http_app()) as base,
            streamable_http_client(f"{base}/mcp") as (read, write),
            ClientSession(read, write) as client,
        ):
            await client.initialize()
            listed = await client.call_tool(
                RUN_AGENT, {"prompt": "list the files"}, read_timeout_seconds=HANG_GUARD_S
            )
    finally:
        await server.aclose()
        await agent.aclose()
    assert not listed.is_error, text_of(listed)
    assert listed.structured_content is not None
    assert "claims_\ufffd.csv" in listed.structured_content["text"]
    assert "claims_\ufffd.csv" in text_of(listed)


async def test_a_session_run_agent_creates_records_the_healthcare_data(
    env: dict[str, str], claims: Path, loopwright_home: Path
) -> None:
    """``mcp serve --agent healthcare --database X`` recorded X in its own session only: a
    session run_agent created for a session_id recorded nothing, so ``loopwright
    healthcare --session ID`` continued it on the generated data instead."""
    params = StdioServerParameters(
        command=sys.executable,
        args=[*SERVE, "--database", str(claims), "-s", "served"],
        env=env,
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as client:
        await client.initialize()
        ran = await client.call_tool(
            RUN_AGENT,
            {"prompt": "Count the claims", "session_id": "by-id"},
            read_timeout_seconds=HANG_GUARD_S,
        )
    assert not ran.is_error, text_of(ran)
    assert ran.structured_content is not None
    assert ran.structured_content["session_id"] == "by-id"
    store = SQLiteStore(loopwright_home / "sessions.db")
    try:
        made = store.load("by-id")
        served = store.load("served")
    finally:
        store.close()
    assert made is not None
    assert served is not None
    assert made.metadata["agent"] == "healthcare"
    assert made.metadata["database"] == str(claims)
    assert made.metadata == served.metadata


async def test_arguments_that_cannot_be_sent_are_refused_and_the_connection_lives(
    env: dict[str, str], claims: Path, tmp_path: Path
) -> None:
    """An agent using the healthcare server as its tool source passes a lone surrogate
    (from a file name that is not UTF-8) to its SQL tool: the client's writer died on it,
    which looked like a crash of the server; the read-only call was sent again to the
    restarted server, killed that connection too, and the server's tools were gone for the
    rest of the session."""
    spec = {
        "command": sys.executable,
        "args": [*SERVE, "--database", str(claims), "-s", "source"],
        "env": env,
    }
    async with MCPServers({"claims": spec}) as servers:
        tools = {tool.name: tool for tool in servers.tools["claims"]}
        assert tools["SQL"].input_schema["required"] == ["sql", "dataset_name", "description"]
        client_agent = Agent(ScriptedModel([]), tools=[servers], store=MemoryStore())
        registry = client_agent.registry_for(client_agent.new_session())
        refused = await registry.execute(
            "mcp__claims__SQL", sql(f"SELECT '{BAD_NAME}' AS name", "names")
        )
        assert refused["is_error"]
        message = str(refused["content"])
        assert "The input of 'SQL' holds '\\udcff' in 'sql'" in message
        assert "nothing was sent" in message
        after = await registry.execute("mcp__claims__SQL", sql("SELECT 7 AS seven", "seven"))
        assert not after["is_error"], after["content"]
        assert "Saved 1 row" in str(after["content"])
        assert after["metadata"]["restarted"] is False  # the same server process
        await client_agent.aclose()
