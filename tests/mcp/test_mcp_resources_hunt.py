"""loopwright's MCP resources in the corners: file names that hold patient ids (the listing,
``run_agent``'s ``files``), a link swapped between the policy's check and the read, the
listing's change when a file is deleted, compressed files' types. Driven by the official
``mcp`` client over streamable HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import base64
import csv
import gzip
import shutil
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

from loopwright import Agent, MemoryStore, ReadTool, ScriptedModel, ShellTools, WriteTool, call
from loopwright.healthcare import healthcare_agent
from loopwright.mcp import RUN_AGENT, AgentMCPServer
from loopwright.policy import Policy, PostToolUse, PreToolUse

ROWS = "SELECT PATIENT_ID, PRIMARY_HCP, ICD10_CD FROM MED_CLAIMS ORDER BY CLAIM_ID LIMIT 40"

#: names a file after the first patient id of rows.csv (and a folder after the second)
NAME_FILES = """
import csv, os
rows = list(csv.DictReader(open("rows.csv")))
open(f"note-{rows[0]['PATIENT_ID']}.txt", "w").write("see the chart")
os.makedirs(rows[1]["PATIENT_ID"], exist_ok=True)
open(os.path.join(rows[1]["PATIENT_ID"], "history.txt"), "w").write("visits")
"""
#: what run_agent's model runs: a file named after the third patient, and a summary
RUN_NAMES = """
import csv
rows = list(csv.DictReader(open("rows.csv")))
open(f"run-{rows[2]['PATIENT_ID']}.txt", "w").write("x")
open("summary.txt", "w").write("40 claims")
"""


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


@asynccontextmanager
async def connected(server: AgentMCPServer, **options: Any) -> AsyncIterator[ClientSession]:
    async with (
        serving(server.streamable_http_app()) as base,
        streamable_http_client(f"{base}/mcp") as (read, write),
        ClientSession(read, write, **options) as client,
    ):
        await client.initialize()
        yield client


async def test_file_names_holding_patient_ids_are_neither_listed_nor_in_run_agents_files(
    claims: Path, tmp_path: Path
) -> None:
    """The mask hid the id in the name of a file Python wrote (its text, its
    ``files_written``), but ``resources/list`` showed that name and its URI, and
    ``run_agent``'s ``files`` the URI of a file the run named after a patient: a client puts
    both into its model's context. Those files are left out; the others are listed."""

    def model(request: Any) -> Any:
        if request.messages[-1].tool_results:
            return "Done."
        return call("Python", code=RUN_NAMES)

    agent = healthcare_agent(
        ScriptedModel(model),
        database=claims,
        store=MemoryStore(),
        workspace_root=str(tmp_path / "workspaces"),
    )
    server = AgentMCPServer(agent, session="named")
    workspace = server.session.workspace_dir
    try:
        async with connected(server) as client:
            sql = await client.call_tool(
                "SQL", {"sql": ROWS, "dataset_name": "rows", "description": "claims"}
            )
            named = await client.call_tool("Python", {"code": NAME_FILES})
            ran = await client.call_tool(RUN_AGENT, {"prompt": "name a file"})
            listed = (await client.list_resources()).resources
    finally:
        await server.aclose()
        await agent.aclose()
    assert not sql.is_error, text_of(sql)
    assert not named.is_error, text_of(named)
    assert not ran.is_error, text_of(ran)
    rows = list(csv.DictReader((workspace / "rows.csv").read_text().splitlines()))
    ids = [row["PATIENT_ID"] for row in rows[:3]]
    assert (workspace / f"note-{ids[0]}.txt").is_file()
    assert (workspace / ids[1] / "history.txt").is_file()
    assert (workspace / f"run-{ids[2]}.txt").is_file()

    shown = [(r.name, r.uri) for r in listed]
    assert not [patient for patient in ids if patient in str(shown)], shown
    assert {name for name, _ in shown} >= {"rows.csv", "summary.txt"}
    assert ran.structured_content is not None
    files = ran.structured_content["files"]
    assert not [patient for patient in ids if patient in str(files)], files
    assert files == [uri("named", "summary.txt")]


async def test_a_link_swapped_after_the_policy_judged_the_read_serves_what_was_judged(
    tmp_path: Path,
) -> None:
    """The policy judged the file a link named, then the read resolved the name again: a
    tool re-pointing the link in between (here a PreToolUse hook on Read, at that very
    moment) got a file ``Read(secrets/*)`` denies served. A directory swapped for a link
    to outside the workspace in between is not followed either."""
    project = tmp_path / "project"
    outside = tmp_path / "outside"
    for folder in (project / "secrets", project / "reports", outside):
        folder.mkdir(parents=True)
    (project / "secrets" / "key.txt").write_text("TOP SECRET")
    (project / "ok.txt").write_text("fine")
    (project / "reports" / "q1.txt").write_text("a report")
    (outside / "q1.txt").write_text("OUTSIDE SECRET")
    (project / "link.txt").symlink_to(project / "ok.txt")
    policy = Policy(deny=["Read(secrets/*)"])

    def swap(event: PreToolUse) -> None:
        if event.input["file_path"] == str(project / "ok.txt"):
            (project / "link.txt").unlink()
            (project / "link.txt").symlink_to(project / "secrets" / "key.txt")
        elif event.input["file_path"] == str(project / "reports" / "q1.txt"):
            shutil.rmtree(project / "reports")
            (project / "reports").symlink_to(outside)

    policy.hooks.pre_tool_use("Read", swap)
    agent = Agent(
        ScriptedModel([]),
        tools=[ReadTool],
        workspace_root=str(tmp_path / "workspaces"),
        store=MemoryStore(),
        policy=policy,
    )
    server = AgentMCPServer(agent, workspace=project)
    sid = server.session.id
    async with connected(server) as client:
        linked: types.ReadResourceResult | str
        try:
            linked = await client.read_resource(uri(sid, "link.txt"))
        except MCPError as exc:
            linked = exc.message
        report = await refused(client, uri(sid, "reports/q1.txt"))
        direct = await refused(client, uri(sid, "link.txt"))  # now it names the secret
    await server.aclose()
    await agent.aclose()

    assert "TOP SECRET" not in str(linked)
    assert isinstance(linked, types.ReadResourceResult), linked
    (content,) = linked.contents
    assert isinstance(content, types.TextResourceContents)
    assert content.text == "fine"  # the file the policy judged
    assert "OUTSIDE SECRET" not in report
    assert "link" in report
    assert "the rule Read(secrets/*) forbids this Read call" in direct


async def test_a_call_that_deletes_a_file_tells_the_client_the_list_changed(
    tmp_path: Path,
) -> None:
    """A call that created or changed a file was followed by resources/list_changed, one
    that deleted a file was not: the client kept listing a resource it can no longer read."""
    project = tmp_path / "project"
    project.mkdir()
    (project / "old.txt").write_text("old")
    (project / "keep.txt").write_text("kept")
    agent = Agent(
        ScriptedModel([call("Bash", command="rm keep.txt"), "Removed keep.txt."]),
        tools=[ReadTool, WriteTool, ShellTools()],
        workspace_root=str(tmp_path / "workspaces"),
        store=MemoryStore(),
    )
    server = AgentMCPServer(agent, workspace=project)
    notified: list[str] = []

    async def on_message(message: Any) -> None:
        notified.append(str(getattr(message, "method", message)))

    try:
        async with connected(server, message_handler=on_message) as client:
            read = await client.call_tool("Read", {"file_path": "old.txt"})
            quiet = list(notified)
            removed = await client.call_tool("Bash", {"command": "rm old.txt"})
            await wait_until(lambda: len(notified) > len(quiet), "list_changed after rm")
            after_rm = list(notified)
            ran = await client.call_tool(RUN_AGENT, {"prompt": "remove keep.txt"})
            await wait_until(lambda: len(notified) > len(after_rm), "list_changed after run")
            listed = [r.name for r in (await client.list_resources()).resources]
    finally:
        await server.aclose()
        await agent.aclose()
    assert not read.is_error
    assert quiet == []  # reading changed nothing
    assert not removed.is_error, text_of(removed)
    assert notified == ["notifications/resources/list_changed"] * 2
    assert not ran.is_error, text_of(ran)
    assert ran.structured_content is not None
    assert ran.structured_content["files"] == []  # created or changed: none
    assert listed == []


async def test_compressed_files_are_served_with_their_own_type(tmp_path: Path) -> None:
    """``rows.csv.gz`` was typed ``text/csv`` (the type of what is inside), listed and read
    so, though its bytes are gzip: a client decoding the blob as CSV got garbage."""
    project = tmp_path / "project"
    project.mkdir()
    packed = gzip.compress(b"id,n\n1,2\n")
    (project / "rows.csv.gz").write_bytes(packed)
    (project / "rows.csv").write_text("id,n\n1,2\n")
    agent = Agent(
        ScriptedModel([]),
        tools=[ReadTool],
        workspace_root=str(tmp_path / "workspaces"),
        store=MemoryStore(),
    )
    server = AgentMCPServer(agent, workspace=project)
    sid = server.session.id
    async with connected(server) as client:
        listed = {r.name: r.mime_type for r in (await client.list_resources()).resources}
        (gz,) = (await client.read_resource(uri(sid, "rows.csv.gz"))).contents
        (plain,) = (await client.read_resource(uri(sid, "rows.csv"))).contents
    await server.aclose()
    await agent.aclose()
    assert listed == {"rows.csv": "text/csv", "rows.csv.gz": "application/gzip"}
    assert isinstance(gz, types.BlobResourceContents)
    assert (gz.mime_type, base64.b64decode(gz.blob)) == ("application/gzip", packed)
    assert isinstance(plain, types.TextResourceContents)
    assert plain.mime_type == "text/csv"


async def test_a_result_read_while_its_sql_call_is_still_running_is_not_served_raw(
    claims: Path, tmp_path: Path
) -> None:
    """The mask learns a result's patient ids in the SQL call's PostToolUse hooks, after
    the CSV is saved: a second request reading the CSV in between (here held open by a hook
    before the mask's, as a big result's Parquet takes a while to read) got every raw id.
    Such a read is refused until the call has finished, then served masked."""
    started, release = asyncio.Event(), asyncio.Event()

    async def hold(event: PostToolUse) -> None:
        if event.tool_name == "SQL":
            started.set()
            await release.wait()

    policy = Policy()
    policy.hooks.post_tool_use("SQL", hold)
    agent = healthcare_agent(
        ScriptedModel([]),
        database=claims,
        store=MemoryStore(),
        workspace_root=str(tmp_path / "workspaces"),
        policy=policy,
    )
    server = AgentMCPServer(agent, session="racing")
    workspace = server.session.workspace_dir
    try:
        async with connected(server) as client:
            sql = asyncio.create_task(
                client.call_tool(
                    "SQL", {"sql": ROWS, "dataset_name": "rows", "description": "claims"}
                )
            )
            await asyncio.wait_for(started.wait(), 60)  # a guard against a hang
            during = await refused(client, uri("racing", "rows.csv"))
            release.set()
            assert not (await sql).is_error
            (after,) = (await client.read_resource(uri("racing", "rows.csv"))).contents
    finally:
        release.set()
        await server.aclose()
        await agent.aclose()
    ids = {row["PATIENT_ID"] for row in csv.DictReader((workspace / "rows.csv").open())}
    assert len(ids) > 5
    assert not [patient for patient in ids if patient in during]
    assert "still running" in during
    assert isinstance(after, types.TextResourceContents)
    assert not [patient for patient in ids if patient in after.text]
    assert "[masked #1]" in after.text
