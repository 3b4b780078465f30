"""A resource read is judged by the agent's policy as a ``Read`` call of the file: the
permission rules refuse it, and its PostToolUse hooks (the healthcare agent's patient-identifier
mask) filter its text; a binary file they could not filter is refused. Driven by the official
``mcp`` client: ``loopwright mcp serve --agent healthcare`` over stdio (a real subprocess, a
scripted model) and an in-process server over streamable HTTP on 127.0.0.1."""

from __future__ import annotations

import base64
import csv
import os
import re
import sys
from pathlib import Path

import mcp_types as types
import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp_helpers import serving

from loopwright import Agent, MemoryStore, ReadTool, ScriptedModel
from loopwright.mcp import AgentMCPServer
from loopwright.policy import Deny, Policy, PostToolUse

ROWS = "SELECT PATIENT_ID, PRIMARY_HCP, ICD10_CD FROM MED_CLAIMS ORDER BY CLAIM_ID LIMIT 40"
SERVE = ["-m", "loopwright.cli.app", "mcp", "serve", "--agent", "healthcare"]

#: names a file after the first patient id of rows.csv, and draws a 1x1 PNG chart
NAME_A_FILE = """
import csv, struct, zlib
first = next(csv.DictReader(open("rows.csv")))["PATIENT_ID"]
open(f"note-{first}.txt", "w").write("see the chart")
def chunk(kind, data):
    body = kind + data
    return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))
png = b"\\x89PNG\\r\\n\\x1a\\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0))
png += chunk(b"IDAT", zlib.compress(b"\\x00\\xff\\x00\\x00")) + chunk(b"IEND", b"")
open("chart.png", "wb").write(png)
"""


@pytest.fixture
def env(loopwright_home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update(LOOPWRIGHT_HOME=str(loopwright_home), NO_COLOR="1")
    for name in ("LOOPWRIGHT_MODEL", "LOOPWRIGHT_WORKSPACES", "LOOPWRIGHT_STORE"):
        env.pop(name, None)
    return env


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


async def serve_and_read(
    env: dict[str, str], claims: Path, session_id: str
) -> tuple[str, types.CallToolResult, list[str], types.ReadResourceResult | str, bytes | str]:
    """Over stdio: the SQL call's preview, the Python call naming a file after a patient,
    the text of rows.csv as a resource, rows.parquet (its bytes, or the refusal) and
    chart.png's bytes (or the refusal)."""
    params = StdioServerParameters(
        command=sys.executable,
        args=[*SERVE, "--database", str(claims), "-m", "scripted", "-s", session_id],
        env=env,
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as client:
        await client.initialize()
        sql = await client.call_tool(
            "SQL", {"sql": ROWS, "dataset_name": "rows", "description": "claims"}
        )
        named = await client.call_tool("Python", {"code": NAME_A_FILE})
        (rows,) = (await client.read_resource(uri(session_id, "rows.csv"))).contents
        assert isinstance(rows, types.TextResourceContents)
        try:
            parquet: types.ReadResourceResult | str = await client.read_resource(
                uri(session_id, "rows.parquet")
            )
        except MCPError as exc:
            parquet = exc.message
        (chart,) = (await client.read_resource(uri(session_id, "chart.png"))).contents
        assert isinstance(chart, types.BlobResourceContents)
        listed = [r.name for r in (await client.list_resources()).resources]
    assert not sql.is_error, text_of(sql)
    assert not named.is_error, text_of(named)
    assert "rows.parquet" in listed
    return text_of(sql), named, [rows.text], parquet, base64.b64decode(chart.blob)


async def test_a_result_csv_read_as_a_resource_is_masked_as_the_preview_is(
    env: dict[str, str], claims: Path, loopwright_home: Path
) -> None:
    """With the mask on (the default), the CSV comes back with the preview's [masked #n]
    (the same number for the same patient), none of the file's ids and the mask's note; the
    Parquet, which the mask cannot look inside, is refused, saying what to read instead;
    the chart is served as Read shows it; the Python call's ``files_written`` hides the id
    its text hides. With ``LOOPWRIGHT_MASK_IDENTIFIERS=0`` the raw files come back."""
    preview, named, (served,), parquet, chart = await serve_and_read(env, claims, "masked")
    workspace = loopwright_home / "workspaces" / "masked"
    on_disk = list(csv.reader((workspace / "rows.csv").read_text(encoding="utf-8").splitlines()))
    ids = {row[0] for row in on_disk[1:]}
    assert len(ids) > 5

    # the preview masks: its rows, marker by marker
    shown = re.findall(r"^\| (\[masked #\d+\]) \| (\d+) \| ([\w.]+) \|$", preview, re.M)
    assert len(shown) >= 5, preview
    # the resource: each row's id is the preview's marker for that row, NPIs and codes kept
    lines = list(csv.reader(served.split("\n\n(")[0].splitlines()))
    assert lines[0] == on_disk[0]
    assert [tuple(line) for line in lines[1 : len(shown) + 1]] == shown
    assert all(re.fullmatch(r"\[masked #\d+\]", line[0]) for line in lines[1:])
    assert len(lines) == len(on_disk)
    assert not [patient for patient in ids if patient in served]
    assert "patient privacy" in served
    # the same patient, the same number; another patient, another
    by_id: dict[str, set[str]] = {}
    for raw, masked in zip(on_disk[1:], lines[1:], strict=True):
        by_id.setdefault(raw[0], set()).add(masked[0])
    assert all(len(markers) == 1 for markers in by_id.values())
    assert len({next(iter(m)) for m in by_id.values()}) == len(ids)

    # the Parquet is refused, saying why and what to do
    assert isinstance(parquet, str)
    assert "binary file (application/vnd.apache.parquet)" in parquet
    assert "PostToolUse hooks" in parquet
    assert uri("masked", "rows.csv") in parquet
    assert "LOOPWRIGHT_MASK_IDENTIFIERS=0" in parquet
    # the chart: the image Read would show
    assert chart == (workspace / "chart.png").read_bytes()
    # the file Python named after a patient: its text and its metadata both hide the id
    first = on_disk[1][0]
    assert (workspace / f"note-{first}.txt").is_file()
    assert first not in text_of(named)
    metadata = named.structured_content
    assert metadata is not None
    assert "note-[masked #1].txt" in metadata["files_written"]
    assert first not in str(metadata)

    # the mask off: the raw files, as before
    env = {**env, "LOOPWRIGHT_MASK_IDENTIFIERS": "0"}
    preview, named, (served,), parquet, _ = await serve_and_read(env, claims, "raw")
    workspace = loopwright_home / "workspaces" / "raw"
    assert "[masked #" not in preview
    assert served == (workspace / "rows.csv").read_text(encoding="utf-8")
    assert isinstance(parquet, types.ReadResourceResult)
    (blob,) = parquet.contents
    assert isinstance(blob, types.BlobResourceContents)
    assert base64.b64decode(blob.blob) == (workspace / "rows.parquet").read_bytes()
    assert named.structured_content is not None
    assert f"note-{on_disk[1][0]}.txt" in named.structured_content["files_written"]


async def test_the_permission_rules_and_read_hooks_judge_resource_reads(tmp_path: Path) -> None:
    """An agent whose policy denies ``Read(secrets/*)``, asks for ``Read(drafts/*)`` and has a
    PreToolUse and a PostToolUse hook on Read: the denied and the asked-for files are refused
    (with the rule) and not listed, a Read call of them is refused the same way, the
    pre-hook's denial refuses a read, the post-hook's text is what a read returns, and a
    binary file is refused while it filters."""
    project = tmp_path / "project"
    for folder in ("secrets", "drafts"):
        (project / folder).mkdir(parents=True)
    (project / "secrets" / "key.txt").write_text("TOP SECRET")
    (project / "drafts" / "plan.md").write_text("a draft")
    (project / "notes.txt").write_text("call Alice")
    (project / "private.txt").write_text("Bob's file")
    (project / "blob.bin").write_bytes(b"\x00\x01Alice\x00")
    policy = Policy(deny=["Read(secrets/*)"], ask=["Read(drafts/*)"])
    seen: list[PostToolUse] = []

    def hide_names(event: PostToolUse) -> dict[str, object] | None:
        seen.append(event)
        content = event.result["content"]
        if isinstance(content, str):
            return {**event.result, "content": content.replace("Alice", "[name]")}
        return None

    policy.hooks.post_tool_use("Read", hide_names)
    policy.hooks.pre_tool_use(
        "Read",
        lambda event: (
            Deny("Bob's files stay private")
            if event.input["file_path"].endswith("private.txt")
            else None
        ),
    )
    agent = Agent(
        ScriptedModel([]),
        tools=[ReadTool],
        workspace_root=str(tmp_path / "workspaces"),
        store=MemoryStore(),
        policy=policy,
    )
    server = AgentMCPServer(agent, workspace=project)
    sid = server.session.id
    async with (
        serving(server.streamable_http_app()) as base,
        streamable_http_client(f"{base}/mcp") as (read, write),
        ClientSession(read, write) as client,
    ):
        await client.initialize()
        listed = sorted(r.name for r in (await client.list_resources()).resources)
        secret = await refused(client, uri(sid, "secrets/key.txt"))
        draft = await refused(client, uri(sid, "drafts/plan.md"))
        called = await client.call_tool("Read", {"file_path": "secrets/key.txt"})
        (notes,) = (await client.read_resource(uri(sid, "notes.txt"))).contents
        binary = await refused(client, uri(sid, "blob.bin"))
        private = await refused(client, uri(sid, "private.txt"))
    await server.aclose()
    await agent.aclose()

    assert listed == ["blob.bin", "notes.txt", "private.txt"]  # hooks judge it when read
    assert "Permission denied: the rule Read(secrets/*) forbids this Read call" in secret
    assert "TOP SECRET" not in secret
    assert called.is_error
    assert "the rule Read(secrets/*) forbids this Read call" in text_of(called)
    assert "needs a person's approval" in draft
    assert "the rule Read(drafts/*) asks for approval" in draft
    assert "no one to ask" in draft
    assert isinstance(notes, types.TextResourceContents)
    assert notes.text == "call [name]"
    # the hook saw the event a Read of the file builds
    event = seen[-1]
    assert (event.tool_name, event.input) == ("Read", {"file_path": str(project / "notes.txt")})
    assert (event.session_id, event.workspace_dir) == (sid, str(project))
    assert "binary file" in binary
    assert "Alice" not in binary
    assert "Permission denied: Bob's files stay private" in private


async def test_the_compact_agents_results_are_masked_as_resources_too(
    env: dict[str, str], claims: Path, loopwright_home: Path
) -> None:
    """``--compact`` offers the SQL tool alone, so no tool of its prints a file; its result
    files are still resources, and were served raw: the mask's guard is in its policy too."""
    params = StdioServerParameters(
        command=sys.executable,
        args=[*SERVE, "--compact", "--database", str(claims), "-m", "scripted", "-s", "tiny"],
        env=env,
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as client:
        await client.initialize()
        sql = await client.call_tool(
            "SQL", {"sql": ROWS, "dataset_name": "rows", "description": "claims"}
        )
        assert not sql.is_error, text_of(sql)
        (rows,) = (await client.read_resource(uri("tiny", "rows.csv"))).contents
        assert isinstance(rows, types.TextResourceContents)
    on_disk = (loopwright_home / "workspaces" / "tiny" / "rows.csv").read_text(encoding="utf-8")
    ids = {row[0] for row in list(csv.reader(on_disk.splitlines()))[1:]}
    assert len(ids) > 5
    assert not [patient for patient in ids if patient in rows.text]
    assert "[masked #1]" in rows.text
