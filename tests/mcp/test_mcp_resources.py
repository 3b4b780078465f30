"""The files loopwright's MCP server's tools write, as MCP resources, and the tools' metadata as
``structuredContent``: driven by the official ``mcp`` client over stdio (``loopwright mcp
serve --agent healthcare``, a real subprocess) and streamable HTTP on 127.0.0.1, and by
loopwright's own MCP client."""

from __future__ import annotations

import asyncio
import base64
import csv
import json
import os
import sys
from pathlib import Path
from typing import Any

import mcp_types as types
import pytest
from mcp.client.client import Client
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_helpers import serving, wait_until

from loopwright import Agent, MemoryStore, ReadTool, ScriptedModel, WriteTool
from loopwright.mcp import RUN_AGENT, AgentMCPServer, MCPServers
from loopwright.mcp import server as server_module
from loopwright.mcp.results import STRUCTURED_IS_METADATA
from loopwright.tools import ToolRegistry

TOP_CA = (
    "SELECT PRESCRIBER_NPI_NBR, COUNT(*) AS rx_count FROM RX_CLAIMS "
    "WHERE NDC_DRUG_NM = 'HUMIRA' AND PRESCRIBER_NPI_STATE_CD = 'CA' "
    "GROUP BY 1 ORDER BY rx_count DESC, 1 LIMIT 10"
)
SERVE = ["-m", "loopwright.cli.app", "mcp", "serve", "--agent", "healthcare"]

#: a 1x1 PNG, written by the Python tool as a chart would be
DRAW_PNG = """
import struct, zlib
def chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))
header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
pixels = zlib.compress(b"\\x00\\xff\\x00\\x00")
png = b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels)
png += chunk(b"IEND", b"")
with open("chart.png", "wb") as handle:
    handle.write(png)
print("drew chart.png")
"""


@pytest.fixture
def env(loopwright_home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    # the files as saved: with the patient-id mask on, the Parquet is not served (see
    # test_mcp_resource_policy.py)
    env.update(LOOPWRIGHT_HOME=str(loopwright_home), NO_COLOR="1", LOOPWRIGHT_MASK_IDENTIFIERS="0")
    for name in ("LOOPWRIGHT_MODEL", "LOOPWRIGHT_WORKSPACES", "LOOPWRIGHT_STORE"):
        env.pop(name, None)
    return env


def text_of(result: types.CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, types.TextContent))


def uri(session_id: str, path: str) -> str:
    return f"loopwright://sessions/{session_id}/files/{path}"


def healthcare_server(
    env: dict[str, str], claims: Path, tmp_path: Path, session_id: str
) -> StdioServerParameters:
    """``loopwright mcp serve --agent healthcare`` whose run_agent saves ``agent_top``."""
    script = tmp_path / "script.json"
    query = {"sql": TOP_CA, "dataset_name": "agent_top", "description": "top prescribers"}
    script.write_text(json.dumps([{"call": "SQL", "input": query}, "Done: agent_top.csv."]))
    return StdioServerParameters(
        command=sys.executable,
        args=[*SERVE, "--database", str(claims), "-m", f"scripted:{script}", "-s", session_id],
        env=env,
    )


async def refused(client: ClientSession, address: str) -> str:
    """The error message of a resource read that must fail."""
    with pytest.raises(MCPError) as caught:
        await client.read_resource(address)
    assert caught.value.code == types.INVALID_PARAMS
    return caught.value.message


async def test_healthcare_results_are_resources_and_carry_their_metadata(
    env: dict[str, str], claims: Path, loopwright_home: Path, tmp_path: Path
) -> None:
    workspace = loopwright_home / "workspaces" / "mcp-res"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("TOP SECRET")
    notified: list[str] = []

    async def on_message(message: Any) -> None:
        notified.append(str(getattr(message, "method", message)))

    params = healthcare_server(env, claims, tmp_path, "mcp-res")
    async with (
        stdio_client(params) as (read, write),
        ClientSession(read, write, message_handler=on_message) as client,
    ):
        init = await client.initialize()
        sql = await client.call_tool(
            "SQL", {"sql": TOP_CA, "dataset_name": "top_ca", "description": "HUMIRA in CA"}
        )
        after_sql = list(notified)
        failed = await client.call_tool(
            "SQL", {"sql": "DROP TABLE RX_CLAIMS", "dataset_name": "x", "description": "no"}
        )
        drew = await client.call_tool("Python", {"code": DRAW_PNG})
        listed = {r.uri: r for r in (await client.list_resources()).resources}
        templates = (await client.list_resource_templates()).resource_templates
        csv_read = await client.read_resource(uri("mcp-res", "top_ca.csv"))
        parquet = await client.read_resource(uri("mcp-res", "top_ca.parquet"))
        chart = await client.read_resource(uri("mcp-res", "chart.png"))

        (workspace / "escape").symlink_to(outside)
        (workspace / "secret-link.txt").symlink_to(outside / "secret.txt")
        tricks = [
            uri("mcp-res", "../../../../../../etc/passwd"),
            uri("mcp-res", "%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd"),
            uri("mcp-res", "..%2F..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd"),
            uri("mcp-res", "/etc/passwd"),
            uri("mcp-res", "%2Fetc%2Fpasswd"),
            uri("mcp-res", f"..{outside}/secret.txt"),
            uri("mcp-res", "escape/secret.txt"),
            uri("mcp-res", "secret-link.txt"),
        ]
        refusals = [await refused(client, trick) for trick in tricks]
        missing = await refused(client, uri("mcp-res", "nothing.csv"))
        (workspace / "charts").mkdir()
        directory = await refused(client, uri("mcp-res", "charts"))
        stranger = await refused(client, uri("someone-else", "top_ca.csv"))
        foreign = await refused(client, "file:///etc/passwd")

        ran = await client.call_tool(RUN_AGENT, {"prompt": "Top?", "session_id": "hc-run"})
        run_files = ran.structured_content["files"] if ran.structured_content else []
        agent_csv = await client.read_resource(uri("hc-run", "agent_top.csv"))
        listed_after_run = {r.uri for r in (await client.list_resources()).resources}

    # the capability is advertised, and a call that saved files told the client so
    assert init.capabilities.resources is not None
    assert init.capabilities.resources.list_changed is True
    assert "notifications/resources/list_changed" in after_sql

    # the SQL tool's metadata is structuredContent; the text is what it was
    assert not sql.is_error, text_of(sql)
    rows = list(csv.reader((workspace / "top_ca.csv").read_text(encoding="utf-8").splitlines()))
    metadata = sql.structured_content
    assert metadata is not None
    assert metadata["row_count"] == len(rows) - 1 > 0
    assert metadata["dataset_name"] == "top_ca"
    assert [name for name, _ in metadata["columns"]] == rows[0]
    assert metadata["csv_path"] == str(workspace / "top_ca.csv")
    assert "bytes_billed" in metadata
    assert sql.meta == {STRUCTURED_IS_METADATA: True}
    assert [type(block) for block in sql.content] == [types.TextContent]
    assert "Saved" in text_of(sql)
    assert '"row_count"' not in text_of(sql)
    assert failed.is_error
    assert failed.structured_content is None  # DuckDB billed nothing: no metadata
    assert not drew.is_error, text_of(drew)
    assert drew.structured_content is not None
    assert drew.structured_content["exit_code"] == 0
    assert drew.structured_content["files_written"] == ["chart.png"]

    # the files are listed, with their types and sizes
    csv_uri, parquet_uri = uri("mcp-res", "top_ca.csv"), uri("mcp-res", "top_ca.parquet")
    assert listed[csv_uri].mime_type == "text/csv"
    assert listed[csv_uri].size == (workspace / "top_ca.csv").stat().st_size
    assert listed[csv_uri].name == "top_ca.csv"
    assert listed[parquet_uri].mime_type == "application/vnd.apache.parquet"
    assert listed[uri("mcp-res", "chart.png")].mime_type == "image/png"
    assert [t.uri_template for t in templates] == [
        "loopwright://sessions/{session_id}/files/{+path}"
    ]

    # text as text, binary as base64 with its type
    (text,) = csv_read.contents
    assert isinstance(text, types.TextResourceContents)
    assert text.mime_type == "text/csv"
    assert text.text == (workspace / "top_ca.csv").read_text(encoding="utf-8")
    (table,) = parquet.contents
    assert isinstance(table, types.BlobResourceContents)
    assert table.mime_type == "application/vnd.apache.parquet"
    assert base64.b64decode(table.blob) == (workspace / "top_ca.parquet").read_bytes()
    (picture,) = chart.contents
    assert isinstance(picture, types.BlobResourceContents)
    assert picture.mime_type == "image/png"
    assert base64.b64decode(picture.blob) == (workspace / "chart.png").read_bytes()
    assert base64.b64decode(picture.blob).startswith(b"\x89PNG")

    # nothing outside the workspace is read, however the URI is written
    for trick, message in zip(tricks, refusals, strict=True):
        assert "TOP SECRET" not in message
        assert "root:" not in message
        assert "outside the workspace" in message or "absolute path" in message, (trick, message)
    assert "absolute path '/etc/passwd'" in refusals[3]
    assert "no file 'nothing.csv'" in missing
    assert "is a directory" in directory
    assert "session 'someone-else' is not served here" in stranger
    assert "a file's URI looks like loopwright://sessions/SESSION/files/" in foreign

    # run_agent: the files its run saved, as resources of its session
    assert not ran.is_error, text_of(ran)
    assert ran.structured_content is not None
    assert ran.structured_content["session_id"] == "hc-run"
    assert ran.structured_content["text"] == "Done: agent_top.csv."
    assert ran.structured_content["usage"]["tool_calls"] == 1
    saved = [uri("hc-run", "agent_top.csv"), uri("hc-run", "agent_top.parquet")]
    assert set(saved) <= set(run_files)  # beside the transcript, conversation.json
    assert all(file.startswith(uri("hc-run", "")) for file in run_files)
    assert text_of(ran).startswith("Done: agent_top.csv.")  # the text is as before
    (agent_text,) = agent_csv.contents
    assert isinstance(agent_text, types.TextResourceContents)
    assert list(csv.reader(agent_text.text.splitlines())) == rows
    assert set(run_files) <= listed_after_run
    assert csv_uri in listed_after_run


def agent_for(tmp_path: Path, script: list[Any]) -> Agent:
    return Agent(
        ScriptedModel(script),
        tools=[ReadTool, WriteTool],
        workspace_root=str(tmp_path / "workspaces"),
        store=MemoryStore(),
    )


async def test_resources_over_streamable_http(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Names that need percent-encoding, the size limit, what is not a file, a notification
    when a call wrote, and the listing's pages."""
    project = tmp_path / "project"
    (project / "data dir").mkdir(parents=True)
    (project / "data dir" / "naïve #1.txt").write_text("café\n")
    (project / "big.txt").write_text("x" * 101)
    (project / ".hidden").mkdir()
    (project / ".hidden" / "key").write_text("hidden but inside")
    os.mkfifo(project / "pipe")
    agent = agent_for(tmp_path, [])
    server = AgentMCPServer(agent, workspace=project, max_resource_bytes=100)
    monkeypatch.setattr(server_module, "RESOURCES_PAGE", 2)
    sid = server.session.id
    notified: list[str] = []

    async def on_message(message: Any) -> None:
        notified.append(str(getattr(message, "method", message)))

    async with (
        serving(server.streamable_http_app()) as base,
        streamable_http_client(f"{base}/mcp") as (read, write),
        ClientSession(read, write, message_handler=on_message) as client,
    ):
        await client.initialize()
        listed = {r.name: r.uri for r in (await client.list_resources()).resources}
        odd = await client.read_resource(listed["data dir/naïve #1.txt"])
        hidden = await client.read_resource(uri(sid, ".hidden/key"))
        too_big = await refused(client, listed["big.txt"])
        pipe = await refused(client, uri(sid, "pipe"))
        read_only = await client.call_tool("Read", {"file_path": "big.txt"})
        quiet = list(notified)
        wrote = await client.call_tool("Write", {"file_path": "notes.md", "content": "# hi"})
        await wait_until(lambda: len(notified) > len(quiet), "the list_changed notification")
        notes = await client.read_resource(uri(sid, "notes.md"))
        first = await client.list_resources()
        second = await client.list_resources(
            params=types.PaginatedRequestParams(cursor=first.next_cursor)
        )
        with pytest.raises(MCPError, match="invalid cursor 'x'"):
            await client.list_resources(params=types.PaginatedRequestParams(cursor="x"))

    assert listed == {
        "big.txt": uri(sid, "big.txt"),
        "data dir/naïve #1.txt": uri(sid, "data%20dir/na%C3%AFve%20%231.txt"),
    }  # hidden files, directories and the pipe are not listed
    (content,) = odd.contents
    assert isinstance(content, types.TextResourceContents)
    assert content.text == "café\n"
    assert content.mime_type == "text/plain"
    (secret,) = hidden.contents
    assert isinstance(secret, types.TextResourceContents)
    assert secret.text == "hidden but inside"
    assert "101 bytes, over the 100-byte limit" in too_big
    assert "not a regular file" in pipe
    assert not read_only.is_error
    assert read_only.structured_content is None  # Read has no metadata
    assert read_only.meta is None
    assert quiet == []  # reading changed nothing
    assert not wrote.is_error
    assert notified == ["notifications/resources/list_changed"]
    (markdown,) = notes.contents
    assert isinstance(markdown, types.TextResourceContents)
    assert (markdown.mime_type, markdown.text) == ("text/markdown", "# hi")
    # pages of two (the limit made small here): the three files, in name order
    assert [r.name for r in first.resources] == ["big.txt", "data dir/naïve #1.txt"]
    assert [r.name for r in second.resources] == ["notes.md"]
    assert second.next_cursor is None
    await server.aclose()
    await agent.aclose()


async def test_a_loopwright_client_gets_the_text_and_keeps_the_metadata(
    env: dict[str, str], claims: Path, tmp_path: Path
) -> None:
    """loopwright's MCP client on loopwright's server: the model sees each result's text as
    the tool wrote it (not the structured metadata again as JSON); programs find the
    metadata in the result's ``metadata``."""
    params = healthcare_server(env, claims, tmp_path, "lw-client")
    config = {"command": params.command, "args": params.args, "env": env}
    async with MCPServers({"hc": config}) as servers:
        registry = ToolRegistry(tmp_path / "client")
        registry.register_all([servers])
        sql = await registry.execute(
            "mcp__hc__SQL", {"sql": TOP_CA, "dataset_name": "top_ca", "description": "CA"}
        )
        ran = await registry.execute(
            "mcp__hc__run_agent", {"prompt": "Top?", "session_id": "lw-run"}
        )
        await registry.aclose()

    assert not sql["is_error"], sql["content"]
    assert isinstance(sql["content"], str)
    assert "Saved" in sql["content"]
    assert '"row_count"' not in sql["content"]  # the metadata is not shown to the model
    structured = sql["metadata"]["structured_content"]
    assert structured["row_count"] > 0
    assert structured["dataset_name"] == "top_ca"

    assert not ran["is_error"], ran["content"]
    assert isinstance(ran["content"], str)
    assert ran["content"].startswith("Done: agent_top.csv.")
    assert ran["content"].count("Done: agent_top.csv.") == 1  # the answer once, no JSON
    assert '"usage"' not in ran["content"]
    run = ran["metadata"]["structured_content"]
    assert run["session_id"] == "lw-run"
    assert uri("lw-run", "agent_top.csv") in run["files"]


async def test_clients_of_the_2026_protocol_hear_of_new_files_by_listening(
    env: dict[str, str], tmp_path: Path
) -> None:
    """A client of the 2026-07-28 protocol (the SDK's ``Client``, which asks the server
    which protocol it speaks, over stdio) gets ``resources/list_changed`` on its
    ``subscriptions/listen`` stream, and reads resources as any other."""
    project = tmp_path / "project"
    project.mkdir()
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "loopwright.cli.app", "mcp", "serve", "-m", "scripted", "-s", "modern",
              "-w", str(project)],
        env=env,
    )  # fmt: skip
    async with Client(params) as client:
        version = client.protocol_version
        capabilities = client.server_capabilities
        async with client.listen(resources_list_changed=True) as subscription:
            wrote = await client.call_tool("Write", {"file_path": "a.txt", "content": "one"})
            event = await asyncio.wait_for(anext(aiter(subscription)), 30)
        read = await client.read_resource(uri("modern", "a.txt"))
    assert version == "2026-07-28"
    assert capabilities.resources is not None
    assert capabilities.resources.list_changed is True
    assert not wrote.is_error
    assert type(event).__name__ == "ResourcesListChanged"
    (content,) = read.contents
    assert isinstance(content, types.TextResourceContents)
    assert content.text == "one"
