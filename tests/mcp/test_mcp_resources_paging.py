"""The MCP server's resources as a client pages through them: a cursor that holds while files
come and go, every file of a big workspace, a bounded set of served sessions, ``run_agent``'s
``files`` without loopwright's bookkeeping, and a filtering policy that serves a file once
the tool call that wrote it has ended. Driven by the official ``mcp`` client over streamable
HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import csv
import json
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from mcp.client.session import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_helpers import serving, wait_until

from loopwright import Agent, MemoryStore, ReadTool, ScriptedModel, WriteTool, call
from loopwright.healthcare import healthcare_agent
from loopwright.mcp import RUN_AGENT, AgentMCPServer
from loopwright.mcp import server as server_module
from loopwright.observability.stats import StatsRecorder
from loopwright.policy import Policy, PostToolUse
from loopwright.tools.written import MAX_SCANNED

ROWS = "SELECT PATIENT_ID, PRIMARY_HCP, ICD10_CD FROM MED_CLAIMS ORDER BY CLAIM_ID LIMIT 40"
#: run_agent's second step: a copy of the result (its patient ids) in another file
COPY_ROWS = "open('copy.csv', 'w').write(open('rows.csv').read())"


def uri(session_id: str, path: str) -> str:
    return f"loopwright://sessions/{session_id}/files/{path}"


def text_of(result: types.CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, types.TextContent))


async def refused(client: ClientSession, address: str) -> str:
    """The error message of a resource read that must fail."""
    with pytest.raises(MCPError) as caught:
        await client.read_resource(address)
    assert caught.value.code == types.INVALID_PARAMS
    return caught.value.message


async def page(client: ClientSession, cursor: str | None) -> types.ListResourcesResult:
    return await client.list_resources(params=types.PaginatedRequestParams(cursor=cursor))


async def cursor_error(client: ClientSession, cursor: str) -> MCPError | None:
    """The error a listing from ``cursor`` fails with (``None``: it did not fail)."""
    try:
        await page(client, cursor)
    except MCPError as exc:
        return exc
    return None


async def every_page(client: ClientSession) -> list[list[str]]:
    """The names on each page of the listing, from the first to the last."""
    pages, cursor = [], None
    while True:
        listed = await page(client, cursor)
        pages.append([resource.name for resource in listed.resources])
        cursor = listed.next_cursor
        if cursor is None:
            return pages


@asynccontextmanager
async def connected(server: AgentMCPServer, **options: Any) -> AsyncIterator[ClientSession]:
    async with (
        serving(server.streamable_http_app()) as base,
        streamable_http_client(f"{base}/mcp") as (read, write),
        ClientSession(read, write, **options) as client,
    ):
        await client.initialize()
        yield client


def writer(**options: Any) -> Agent:
    """An agent whose every run writes ``out.txt`` and answers "Done."."""

    def model(request: Any) -> Any:
        if request.messages[-1].tool_results:
            return "Done."
        return call("Write", file_path="out.txt", content="written")

    return Agent(ScriptedModel(model), tools=[ReadTool, WriteTool], store=MemoryStore(), **options)


async def test_a_cursor_resumes_after_the_last_file_served_while_files_come_and_go(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The cursor was an offset: a file deleted from a page already served moved the next
    file onto it, so that file was never listed (and a file added before the cursor served
    one twice). It now names the last file served: the next page starts after it; a cursor
    not made by this server is refused as invalid params."""
    project = tmp_path / "project"
    (project / "sub").mkdir(parents=True)
    for name in ("a.txt", "b.txt", "c.txt", "d.txt", "e.txt", "sub/x.txt", "sub-y.txt"):
        (project / name).write_text(name)
    os.mkdir(project / "odd")
    (project / "odd").joinpath(os.fsdecode(b"\xff.txt")).write_text("not UTF-8")
    monkeypatch.setattr(server_module, "RESOURCES_PAGE", 2)
    agent = writer(workspace_root=str(tmp_path / "workspaces"))
    server = AgentMCPServer(agent, workspace=project)
    bad = {
        "x": "x",
        "an offset": "2",
        "not base64": "lw1.!!",
        "not JSON": "lw1." + base64.urlsafe_b64encode(b"{").decode(),
        "not a pair": "lw1." + base64.urlsafe_b64encode(b'{"after": 2}').decode(),
        "a bad session": "lw1." + base64.urlsafe_b64encode(b'["../up", "a.txt"]').decode(),
    }
    try:
        async with connected(server) as client:
            first = await page(client, None)
            (project / "a.txt").unlink()  # served on the first page
            second = await page(client, first.next_cursor)
            (project / "a0.txt").write_text("new, before the cursor")
            (project / "z.txt").write_text("new, after the cursor")
            rest = [second]
            while rest[-1].next_cursor is not None:
                rest.append(await page(client, rest[-1].next_cursor))
            errors = {what: await cursor_error(client, cursor) for what, cursor in bad.items()}
    finally:
        await server.aclose()
        await agent.aclose()

    assert [r.name for r in first.resources] == ["a.txt", "b.txt"]
    assert [r.name for r in second.resources] == ["c.txt", "d.txt"]
    # in the order of the paths' parts: a directory's files right after its name
    names = [r.name for listed in rest for r in listed.resources]
    assert names == ["c.txt", "d.txt", "e.txt", "odd/\ufffd.txt", "sub/x.txt", "sub-y.txt", "z.txt"]
    odd = next(r for listed in rest for r in listed.resources if r.name == "odd/\ufffd.txt")
    assert odd.uri == uri(server.session.id, "odd/%FF.txt")
    for what, error in errors.items():
        assert error is not None, what
        assert error.code == types.INVALID_PARAMS, what
        assert "invalid cursor" in error.message, what
        assert "nextCursor of the previous page" in error.message, what


async def test_every_file_of_a_workspace_past_the_scan_limit_is_listed_and_its_runs_say_so(
    tmp_path: Path,
) -> None:
    """Past ``MAX_SCANNED`` entries the workspace's listing was given up: ``resources/list``
    served no file of it, silently; ``run_agent``'s ``files`` was empty as if the run wrote
    nothing, and a call that wrote a file sent no ``list_changed``. Now the pages reach every
    file, ``files_note`` says why ``files`` is empty, and the client is told of the change."""
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    expected = {f"data/{n:05}.csv" for n in range(MAX_SCANNED + 50)}
    for name in expected:
        (project / name).write_text("x")
    agent = writer(workspace_root=str(tmp_path / "workspaces"))
    server = AgentMCPServer(agent, workspace=project)
    notified: list[str] = []

    async def on_message(message: Any) -> None:
        notified.append(str(getattr(message, "method", message)))

    try:
        async with connected(server, message_handler=on_message) as client:
            pages = await every_page(client)
            names = [name for listed in pages for name in listed]
            assert len(names) == len(set(names)) == len(expected)
            assert set(names) == expected
            wrote = await client.call_tool("Write", {"file_path": "notes.md", "content": "hi"})
            await wait_until(lambda: bool(notified), "the list_changed notification")
            after_write = list(notified)
            ran = await client.call_tool(RUN_AGENT, {"prompt": "write"})
    finally:
        await server.aclose()
        await agent.aclose()

    assert len(pages) > 1
    assert all(len(listed) <= server_module.RESOURCES_PAGE for listed in pages)
    assert not wrote.is_error, text_of(wrote)
    assert after_write == ["notifications/resources/list_changed"]
    assert not ran.is_error, text_of(ran)
    assert (project / "out.txt").read_text() == "written"
    structured = ran.structured_content
    assert structured is not None
    assert structured["files"] == []
    assert f"over {MAX_SCANNED:,} entries" in structured["files_note"]
    assert "resources/list" in structured["files_note"]


async def test_the_sessions_served_are_the_most_recently_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each ``session_id`` given to ``run_agent`` added a workspace served (listed on every
    ``resources/list``) for as long as the server ran. Past ``KEEP_SERVED`` the least
    recently used one (``run_agent`` or a read of its files) stops being served, saying how
    to serve it again; the server's own session always is."""
    monkeypatch.setattr(server_module, "KEEP_SERVED", 2, raising=False)
    monkeypatch.setattr(server_module, "KEEP_LIVE", 1)
    agent = writer(workspace_root=str(tmp_path / "workspaces"))
    server = AgentMCPServer(agent, session="home")
    (server.session.workspace_dir / "home.txt").write_text("home")

    async def run(client: ClientSession, session_id: str) -> None:
        ran = await client.call_tool(RUN_AGENT, {"prompt": "write", "session_id": session_id})
        assert not ran.is_error, text_of(ran)

    async def sessions(client: ClientSession) -> list[str]:
        listed = (await client.list_resources()).resources
        return [str(r.uri).split("/")[3] for r in listed]

    try:
        async with connected(server) as client:
            for session_id in ("s1", "s2", "s3"):
                await run(client, session_id)
            after_three = await sessions(client)
            dropped = await refused(client, uri("s1", "out.txt"))
            await client.read_resource(uri("s2", "out.txt"))  # s2 is used: s3 goes next
            await run(client, "s4")
            after_four = await sessions(client)
            await run(client, "s1")  # served again
            again = await client.read_resource(uri("s1", "out.txt"))
    finally:
        await server.aclose()
        await agent.aclose()

    assert after_three == ["home", "s2", "s3"]
    assert "session 's1' is not served here" in dropped
    assert f"call {RUN_AGENT} with its session_id" in dropped
    assert after_four == ["home", "s2", "s4"]
    (content,) = again.contents
    assert isinstance(content, types.TextResourceContents)
    assert content.text == "written"


async def test_run_agents_files_are_its_work_not_the_transcript(tmp_path: Path) -> None:
    """With the stats recorder on (``LOOPWRIGHT_STATS``, the CLI's default), ``run_agent``'s
    ``files`` named ``conversation.json``, the transcript it writes after each run, as if
    the agent had written it. Only the run's work is named; the transcript stays a resource,
    and a ``conversation.json`` the agent writes with the recorder off is its work."""

    def model(request: Any) -> Any:
        if request.messages[-1].tool_results:
            return "Done."
        prompt = request.messages[-1].text
        return call("Write", file_path=prompt, content="the agent's own")

    def agent(*instruments: StatsRecorder) -> Agent:
        return Agent(
            ScriptedModel(model),
            tools=[WriteTool],
            store=MemoryStore(),
            workspace_root=str(tmp_path / "workspaces"),
            instruments=list(instruments),
        )

    recorded, plain = agent(StatsRecorder()), agent()
    servers = [AgentMCPServer(recorded, session="stats"), AgentMCPServer(plain, session="bare")]
    try:
        async with connected(servers[0]) as client:
            first = await client.call_tool(RUN_AGENT, {"prompt": "report.md"})
            second = await client.call_tool(RUN_AGENT, {"prompt": "summary.md"})
            listed = [r.name for r in (await client.list_resources()).resources]
        async with connected(servers[1]) as client:
            own = await client.call_tool(RUN_AGENT, {"prompt": "conversation.json"})
    finally:
        for server in servers:
            await server.aclose()
        await recorded.aclose()
        await plain.aclose()

    transcript = servers[0].session.workspace_dir / "conversation.json"
    assert json.loads(transcript.read_text())["format"] == "loopwright.conversation"
    assert first.structured_content is not None
    assert first.structured_content["files"] == [uri("stats", "report.md")]
    assert second.structured_content is not None
    assert second.structured_content["files"] == [uri("stats", "summary.md")]
    assert "files_note" not in second.structured_content
    assert listed == ["conversation.json", "report.md", "summary.md"]
    assert own.structured_content is not None
    assert own.structured_content["files"] == [uri("bare", "conversation.json")]


async def test_a_run_agent_file_is_served_masked_once_the_call_that_wrote_it_has_ended(
    claims: Path, tmp_path: Path
) -> None:
    """With the healthcare agent's mask, a file new or changed during ``run_agent`` was
    refused until the whole run ended. The SQL call's result (its ids learned by the mask
    when the call ended) is now served, masked, while the run goes on; the copy a Python call
    still running wrote (its PostToolUse hooks held here) is refused until that call ends."""
    holding, release = asyncio.Event(), asyncio.Event()

    async def hold(event: PostToolUse) -> None:
        holding.set()
        await release.wait()

    policy = Policy()
    policy.hooks.post_tool_use("Python", hold)
    agent = healthcare_agent(
        ScriptedModel(
            [
                call("SQL", sql=ROWS, dataset_name="rows", description="claims"),
                call("Python", code=COPY_ROWS),
                "Copied.",
            ]
        ),
        database=claims,
        store=MemoryStore(),
        workspace_root=str(tmp_path / "workspaces"),
        policy=policy,
    )
    server = AgentMCPServer(agent, session="long")
    workspace = server.session.workspace_dir
    try:
        async with connected(server) as client:
            ran = asyncio.create_task(client.call_tool(RUN_AGENT, {"prompt": "copy"}))
            try:
                await asyncio.wait_for(holding.wait(), 60)  # a guard against a hang
                (rows,) = (await client.read_resource(uri("long", "rows.csv"))).contents
                copy_during = await refused(client, uri("long", "copy.csv"))
            finally:
                release.set()
                result = await ran
            (copy,) = (await client.read_resource(uri("long", "copy.csv"))).contents
    finally:
        release.set()
        await server.aclose()
        await agent.aclose()

    assert not result.is_error, text_of(result)
    ids = {row["PATIENT_ID"] for row in csv.DictReader((workspace / "rows.csv").open())}
    assert len(ids) > 5
    assert (workspace / "copy.csv").read_text() == (workspace / "rows.csv").read_text()
    assert isinstance(rows, types.TextResourceContents)
    assert not [patient for patient in ids if patient in rows.text]
    assert "[masked #1]" in rows.text
    assert "still running" in copy_during
    assert not [patient for patient in ids if patient in copy_during]
    assert isinstance(copy, types.TextResourceContents)
    assert not [patient for patient in ids if patient in copy.text]
    assert "[masked #1]" in copy.text
