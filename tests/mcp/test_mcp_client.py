"""The MCP client against real servers: mcp-server-time and mcp-server-git from PyPI over
stdio, the tests' own SDK server over stdio, SSE and streamable HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from mcp_helpers import (
    DEMO_SERVER,
    alive,
    child_pids,
    demo_server,
    git_server,
    make_git_repo,
    serving,
    time_server,
    wait_until,
)

from loopwright import Agent, ImageBlock, MemoryStore, ScriptedModel, call
from loopwright.events import ToolResult
from loopwright.mcp import MCPConnectionError, MCPServers, MCPToolProxy
from loopwright.policy import Policy
from loopwright.tools import ToolRegistry


def results(events: list[Any]) -> list[ToolResult]:
    """The tool results of a run, in the order the model made the calls."""
    calls = [event.id for event in events if event["type"] == "tool_call"]
    found = [event for event in events if isinstance(event, ToolResult)]
    return sorted(found, key=lambda result: calls.index(result.id))


def agent_with(servers: MCPServers, script: list[Any], **options: Any) -> Agent:
    return Agent(ScriptedModel(script), tools=[servers], store=MemoryStore(), **options)


async def test_agent_calls_the_time_server_and_gets_its_real_answer() -> None:
    async with MCPServers({"time": time_server()}) as servers:
        agent = agent_with(
            servers,
            [call("mcp__time__get_current_time", timezone="Asia/Tokyo"), "It is evening there."],
        )
        before = datetime.now(UTC).replace(microsecond=0)
        run = await agent.collect("What time is it in Tokyo?")
        after = datetime.now(UTC)
        await agent.aclose()

    (result,) = results(run.events)
    assert not result.is_error, result.content
    answer = json.loads(result.content)
    assert answer["timezone"] == "Asia/Tokyo"
    moment = datetime.fromisoformat(answer["datetime"])
    assert moment.utcoffset() == timedelta(hours=9)
    assert before <= moment <= after
    # the model was offered the server's own schema, verbatim
    offered = {tool["name"]: tool for tool in agent.model.requests[0].tools}  # type: ignore[attr-defined]
    listed = {tool.name: tool for tool in servers.tools["time"]}
    assert offered["mcp__time__get_current_time"]["input_schema"] == (
        listed["get_current_time"].input_schema
    )
    assert offered["mcp__time__convert_time"]["description"] == listed["convert_time"].description


async def test_agent_reads_a_real_git_repository_through_the_git_server(tmp_path: Path) -> None:
    repo = make_git_repo(tmp_path / "repo")
    (repo / "notes.txt").write_text("untracked\n")
    async with MCPServers({"git": git_server(repo)}) as servers:
        agent = agent_with(
            servers,
            [
                [
                    call("mcp__git__git_log", repo_path=str(repo)),
                    call("mcp__git__git_status", repo_path=str(repo)),
                ],
                "One commit; notes.txt is untracked.",
            ],
        )
        run = await agent.collect("Summarise the repository")
        await agent.aclose()
    log, status = results(run.events)
    assert not log.is_error
    assert not status.is_error
    assert "Add the README" in log.content
    assert "Author: Ada" in log.content
    assert "On branch main" in status.content
    assert "notes.txt" in status.content


async def test_policy_hooks_validation_and_audit_apply_to_mcp_tools(tmp_path: Path) -> None:
    policy = Policy(deny=["mcp__time__*"], audit=True)
    seen: list[str] = []
    policy.hooks.pre_tool_use("mcp__*", lambda event: seen.append(event.tool_name))
    servers = MCPServers({"time": time_server(), "demo": demo_server()})
    async with servers:
        agent = agent_with(
            servers,
            [
                [
                    call("mcp__time__get_current_time", timezone="UTC"),
                    call("mcp__demo__echo", text=5),  # wrong type: refused before the server
                    call("mcp__demo__calls"),
                ],
                "done",
            ],
            policy=policy,
        )
        run = await agent.collect("go")
        await agent.aclose()
    denied, invalid, calls = results(run.events)
    assert denied.is_error
    assert "Permission denied" in denied.content
    assert invalid.is_error
    assert "Invalid input for tool 'mcp__demo__echo'" in invalid.content
    assert calls.content == "none"  # the server never received the invalid echo
    assert seen == ["mcp__time__get_current_time", "mcp__demo__calls"]  # hooks ran on both
    log = run.session.workspace_dir / ".loopwright" / "audit.jsonl"
    entries = [json.loads(line) for line in log.read_text().splitlines()]
    by_tool = {entry["tool"]: entry for entry in entries}
    assert by_tool["mcp__time__get_current_time"]["decision"] == "deny"
    assert by_tool["mcp__time__get_current_time"]["executed"] is False
    assert by_tool["mcp__demo__calls"]["executed"] is True


async def test_results_map_images_resources_structured_content_and_errors(
    tmp_path: Path,
) -> None:
    async with MCPServers({"demo": demo_server()}) as servers:
        registry = ToolRegistry(tmp_path)
        registry.register_all([servers])
        picture = await registry.execute("mcp__demo__picture", {})
        document = await registry.execute("mcp__demo__document", {})
        forecast = await registry.execute("mcp__demo__forecast", {"city": "Oslo"})
        echo = await registry.execute("mcp__demo__echo", {"text": "plain"})
        failed = await registry.execute("mcp__demo__fail", {"reason": "no luck"})
        await registry.aclose()

    caption, image = picture["content"]
    assert isinstance(image, ImageBlock)
    assert image.media_type == "image/png"
    assert caption.text == "a single transparent pixel"  # type: ignore[union-attr]
    assert document["content"] == (
        "[resource file:///notes/todo.txt]\nbuy milk\n"
        "[resource link: file:///notes/done.txt (done.txt)]"
    )
    text, _, data = str(forecast["content"]).partition("\n")
    assert text == "Forecast for Oslo attached."
    assert json.loads(data) == {"city": "Oslo", "sky": "clear", "high_c": 21}
    assert forecast["metadata"]["structured_content"]["sky"] == "clear"
    assert echo["content"] == "plain"  # {"result": "plain"} adds nothing the text lacks
    assert failed["is_error"]
    assert "failed on purpose: no luck" in str(failed["content"])


async def test_a_killed_server_is_restarted_once_then_reported_down() -> None:
    async with MCPServers({"time": time_server()}) as servers:
        agent = agent_with(servers, [])
        session = agent.new_session()
        registry = agent.registry_for(session)
        first = await registry.execute("mcp__time__get_current_time", {"timezone": "UTC"})
        assert not first["is_error"]

        (pid,) = child_pids("mcp_server_time")
        os.kill(pid, signal.SIGKILL)
        again = await registry.execute("mcp__time__get_current_time", {"timezone": "UTC"})
        assert not again["is_error"], again["content"]
        assert json.loads(str(again["content"]).split("\n\n[")[0])["timezone"] == "UTC"
        assert "had stopped" in str(again["content"])
        assert "was restarted" in str(again["content"])
        assert again["metadata"]["restarted"] is True

        (second_pid,) = child_pids("mcp_server_time")
        assert second_pid != pid
        os.kill(second_pid, signal.SIGKILL)
        down = await registry.execute("mcp__time__get_current_time", {"timezone": "UTC"})
        assert down["is_error"]
        assert "stopped again" in str(down["content"])
        assert "not restarted again" in str(down["content"])
        await agent.aclose()


async def test_a_crash_during_a_call_is_reported_and_the_server_restarted(
    tmp_path: Path,
) -> None:
    async with MCPServers({"demo": demo_server()}) as servers:
        registry = ToolRegistry(tmp_path)
        registry.register_all([servers])
        crashed = await registry.execute("mcp__demo__crash", {})
        assert crashed["is_error"]
        message = str(crashed["content"])
        assert "stopped while running 'crash'" in message
        assert "crashing on purpose" in message  # the server's own error output
        assert "was restarted" in message
        fresh = await registry.execute("mcp__demo__calls", {})
        assert fresh["content"] == "none"  # a new process
        second = await registry.execute("mcp__demo__crash", {})
        assert second["is_error"]
        assert "not restarted again" in str(second["content"])
        await registry.aclose()


async def test_a_call_past_its_timeout_is_stopped_and_the_server_stays_usable(
    tmp_path: Path,
) -> None:
    async with MCPServers({"demo": demo_server(timeout=0.5)}) as servers:
        registry = ToolRegistry(tmp_path)
        registry.register_all([servers])
        slow = await registry.execute("mcp__demo__slow", {"seconds": 30})
        assert slow["is_error"]
        assert "timed out after 0.5s" in str(slow["content"])
        echo = await registry.execute("mcp__demo__echo", {"text": "still here"})
        assert echo["content"] == "still here"
        assert "restarted" not in str(echo["content"])
        await registry.aclose()


async def test_closing_the_agent_ends_its_server_processes(tmp_path: Path) -> None:
    repo = make_git_repo(tmp_path / "repo")
    servers = MCPServers({"time": time_server(), "git": git_server(repo)})
    await servers.connect()
    agent = agent_with(servers, [call("mcp__git__git_status", repo_path=str(repo)), "clean"])
    run = await agent.collect("status?")
    assert "working tree clean" in results(run.events)[0].content
    pids = child_pids("mcp_server_time") + child_pids("mcp_server_git")
    assert len(pids) == 2
    await agent.aclose()
    await wait_until(lambda: not any(alive(pid) for pid in pids), "the servers to exit")
    await servers.aclose()


async def test_each_session_has_its_own_server_process(tmp_path: Path) -> None:
    async with MCPServers({"demo": demo_server()}) as servers:
        agent = agent_with(servers, [])
        one, two = agent.new_session("one"), agent.new_session("two")
        first = agent.registry_for(one)
        second = agent.registry_for(two)
        await first.execute("mcp__demo__echo", {"text": "a"})
        assert (await first.execute("mcp__demo__calls", {}))["content"] == "echo"
        # the second session connects on its first calls: two at once start one server
        b, c = await asyncio.gather(
            second.execute("mcp__demo__echo", {"text": "b"}),
            second.execute("mcp__demo__echo", {"text": "c"}),
        )
        assert (b["content"], c["content"]) == ("b", "c")
        assert (await second.execute("mcp__demo__calls", {}))["content"] == "echo,echo"
        assert len(child_pids(str(demo_server()["args"][0]))) == 2
        await agent.close_session(one)
        assert len(child_pids(str(demo_server()["args"][0]))) == 1
        assert (await second.execute("mcp__demo__echo", {"text": "d"}))["content"] == "d"
        await agent.aclose()


async def test_streamable_http_and_sse_servers(tmp_path: Path) -> None:
    from mcp_demo_server import build

    http_app = build().streamable_http_app()
    sse_app = build().sse_app()
    async with serving(http_app) as http_url, serving(sse_app) as sse_url:
        servers = MCPServers(
            {
                "web": {"url": f"{http_url}/mcp", "headers": {"X-Test": "1"}},
                "old": {"url": f"{sse_url}/sse"},
            }
        )
        assert servers.configs["web"].transport == "http"
        assert servers.configs["old"].transport == "sse"
        async with servers:
            agent = agent_with(
                servers,
                [
                    [call("mcp__web__echo", text="over http"), call("mcp__old__echo", text="sse")],
                    "ok",
                ],
            )
            run = await agent.collect("echo twice")
            await agent.aclose()
    web, old = results(run.events)
    assert (web.content, web.is_error) == ("over http", False)
    assert (old.content, old.is_error) == ("sse", False)


async def test_servers_that_cannot_start_give_a_clear_error(tmp_path: Path) -> None:
    missing = MCPServers({"ghost": {"command": "no-such-mcp-server-here"}})
    with pytest.raises(MCPConnectionError) as caught:
        await missing.connect()
    assert "'ghost'" in str(caught.value)
    assert "command" in str(caught.value)

    dying = {"command": sys.executable, "args": ["-c", "import sys; sys.exit('bad token')"]}
    mixed = MCPServers({"dying": dying, "time": time_server()})
    await mixed.connect(strict=False)
    assert list(mixed.tools) == ["time"]
    assert "bad token" in mixed.errors["dying"]
    await mixed.aclose()

    with pytest.raises(RuntimeError, match=r"await servers\.connect\(\)"):
        MCPServers({"time": time_server()}).bind(str(tmp_path))


async def test_only_the_configured_tools_are_offered(tmp_path: Path) -> None:
    async with MCPServers({"time": {**time_server(), "tools": ["convert_time"]}}) as servers:
        registry = ToolRegistry(tmp_path)
        registry.register_all([servers])
        assert registry.names == ["mcp__time__convert_time"]
        proxy = registry.get("mcp__time__convert_time")
        assert isinstance(proxy, MCPToolProxy)
        assert not proxy.sequential
        converted = await registry.execute(
            "mcp__time__convert_time",
            {"source_timezone": "UTC", "time": "12:00", "target_timezone": "Asia/Kolkata"},
        )
        assert json.loads(str(converted["content"]))["target"]["datetime"].endswith("+05:30")
        await registry.aclose()


def test_run_sync_twice_reopens_the_connection_in_each_event_loop() -> None:
    servers = MCPServers({"demo": demo_server()})
    asyncio.run(servers.connect())  # this loop ends here, and its server with it
    agent = agent_with(
        servers,
        [call("mcp__demo__echo", text="one"), "first", call("mcp__demo__echo", text="two"), "2nd"],
    )
    first = agent.run_sync("echo one")
    second = agent.run_sync("echo two", first.session)
    assert [r.content for r in results(first.events) + results(second.events)] == ["one", "two"]
    asyncio.run(agent.aclose())
    assert child_pids(str(DEMO_SERVER)) == []


async def test_an_agent_connects_its_servers_itself_on_the_first_run(tmp_path: Path) -> None:
    """No explicit connect(): the agent prepares its toolsets before binding them."""
    config = tmp_path / "mcp.json"
    config.write_text(json.dumps({"mcpServers": {"time": time_server()}}))
    servers = MCPServers.from_config(config)
    agent = agent_with(servers, [call("mcp__time__get_current_time", timezone="UTC"), "Done."])
    run = await agent.collect("What time is it?")
    await agent.aclose()
    (result,) = results(run.events)
    assert not result.is_error, result.content
    assert json.loads(result.content)["timezone"] == "UTC"


async def test_a_server_that_cannot_start_ends_the_run_with_a_clear_error(
    tmp_path: Path,
) -> None:
    servers = MCPServers({"broken": {"command": str(tmp_path / "no-such-server")}})
    agent = agent_with(servers, ["never reached"])
    run = await agent.collect("hello")
    await agent.aclose()
    assert run.stop_reason == "error"
    assert "could not be set up" in run.events[-1].detail
    assert "broken" in run.events[-1].detail
