"""In-process MCP-style tools: the design guide's ``MCPToolProxy(mcp_name, tool_name, tool_fn,
mcp_schema, workspace_dir)`` wrapping a plain async function."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import pytest

from loopwright import Agent, ImageBlock, MemoryStore, ScriptedModel, TextBlock, call
from loopwright.mcp import MCPToolProxy, mcp_tool_name, to_tool_result
from loopwright.policy import Policy
from loopwright.tools import ToolRegistry

QUERY_SCHEMA = {
    "description": "Run SQL on the claims data and save the rows to the workspace",
    "inputSchema": {
        "type": "object",
        "properties": {
            "sql": {"type": "string", "description": "SQL query to execute"},
            "dataset_name": {"type": "string", "description": "CSV file name, no extension"},
        },
        "required": ["sql", "dataset_name"],
    },
}


def make_query_tool(workspace_dir: str, received: list[dict[str, Any]]) -> MCPToolProxy:
    """The guide's BigQuery factory, with a small in-memory table instead of BigQuery."""
    rows = [("HUMIRA", 120), ("ENBREL", 80)]

    async def query_tool(args: dict[str, Any]) -> dict[str, Any]:
        received.append(args)
        path = Path(workspace_dir) / f"{args['dataset_name']}.csv"
        with path.open("w", newline="") as handle:
            csv.writer(handle).writerows([("drug", "claims"), *rows])
        return {"content": [{"type": "text", "text": f"Saved {len(rows)} rows to {path.name}"}]}

    return MCPToolProxy(
        mcp_name="bigquery",
        tool_name="bigquery_query",
        tool_fn=query_tool,
        mcp_schema=QUERY_SCHEMA,
        workspace_dir=workspace_dir,
    )


async def test_the_guides_in_process_tool_runs_in_an_agent(tmp_path: Path) -> None:
    received: list[dict[str, Any]] = []
    store = MemoryStore()
    session_dir = tmp_path / "ws" / "s1"
    session_dir.mkdir(parents=True)
    proxy = make_query_tool(str(session_dir), received)
    assert proxy.name == "mcp__bigquery__bigquery_query"
    assert proxy.schema == {
        "name": "mcp__bigquery__bigquery_query",
        "description": QUERY_SCHEMA["description"],
        "input_schema": QUERY_SCHEMA["inputSchema"],
    }
    model = ScriptedModel(
        [
            call("mcp__bigquery__bigquery_query", sql="SELECT 1"),  # missing dataset_name
            call("mcp__bigquery__bigquery_query", sql="SELECT drug", dataset_name="top"),
            "Saved the top drugs.",
        ]
    )
    agent = Agent(model, tools=[proxy], store=store, workspace_root=str(tmp_path / "ws"))
    run = await agent.collect("Top drugs?", agent.new_session("s1"))
    invalid, saved = [e for e in run.events if e["type"] == "tool_result"]
    assert invalid["is_error"]
    assert "'dataset_name'" in invalid["content"]
    assert received == [{"sql": "SELECT drug", "dataset_name": "top"}]  # only the valid call
    assert (saved["content"], saved["is_error"]) == ("Saved 2 rows to top.csv", False)
    assert (session_dir / "top.csv").read_text().splitlines()[1] == "HUMIRA,120"


async def test_a_policy_applies_to_in_process_mcp_tools(tmp_path: Path) -> None:
    received: list[dict[str, Any]] = []
    registry = ToolRegistry(tmp_path, policy=Policy(deny=["mcp__bigquery__*"]))
    registry.register(make_query_tool(str(tmp_path), received))
    result = await registry.execute(
        "mcp__bigquery__bigquery_query", {"sql": "SELECT 1", "dataset_name": "x"}
    )
    assert result["is_error"]
    assert "Permission denied" in str(result["content"])
    assert received == []


async def test_every_return_shape_of_a_tool_function(tmp_path: Path) -> None:
    pixel = "iVBORw0KGgo="

    def sync_upper(args: dict[str, Any]) -> str:
        return str(args["text"]).upper()

    async def blocks(args: dict[str, Any]) -> list[dict[str, Any]]:
        return [
            {"type": "text", "text": "chart:"},
            {"type": "image", "data": pixel, "mimeType": "image/png"},
        ]

    async def failing(args: dict[str, Any]) -> dict[str, Any]:
        return {"content": "the warehouse is offline", "isError": True}

    schema = {"description": "d", "inputSchema": {"type": "object", "properties": {}}}
    registry = ToolRegistry(tmp_path)
    for name, function in [("upper", sync_upper), ("chart", blocks), ("broken", failing)]:
        registry.register(MCPToolProxy("local", name, function, schema, tmp_path))

    assert (await registry.execute("mcp__local__upper", {"text": "hi"}))["content"] == "HI"
    chart = await registry.execute("mcp__local__chart", {})
    assert chart["content"] == [TextBlock("chart:"), ImageBlock(pixel, "image/png")]
    broken = await registry.execute("mcp__local__broken", {})
    assert (broken["content"], broken["is_error"]) == ("the warehouse is offline", True)


def test_structured_content_becomes_text_the_model_can_read() -> None:
    duplicated = to_tool_result(
        {"content": [{"type": "text", "text": '{"n": 1}'}], "structuredContent": {"n": 1}}
    )
    assert duplicated["content"] == '{"n": 1}'
    extra = to_tool_result(
        {"content": [{"type": "text", "text": "Done."}], "structuredContent": {"rows": 42}}
    )
    assert extra["content"] == 'Done.\n{\n  "rows": 42\n}'
    assert extra["metadata"] == {"structured_content": {"rows": 42}}
    alone = to_tool_result({"content": [], "structuredContent": {"ok": True}})
    assert json.loads(str(alone["content"])) == {"ok": True}
    empty_error = to_tool_result({"content": [], "isError": True})
    assert empty_error["is_error"]
    assert empty_error["content"]


def test_names_are_safe_for_every_provider() -> None:
    assert mcp_tool_name("my server", "get.thing/v2") == "mcp__my_server__get_thing_v2"
    long = mcp_tool_name("warehouse", "x" * 100)
    assert len(long) == 64
    assert long.startswith("mcp__warehouse__xxx")
    assert long != mcp_tool_name("warehouse", "x" * 101)


def test_a_proxy_needs_a_function_or_a_connection(tmp_path: Path) -> None:
    with pytest.raises(TypeError, match="exactly one of tool_fn"):
        MCPToolProxy("a", "b", None, {"inputSchema": {}}, tmp_path)
    with pytest.raises(TypeError, match="mcp_schema must be a dict"):
        MCPToolProxy("a", "b", lambda args: "x", "schema", tmp_path)  # type: ignore[arg-type]
