"""``loopwright mcp serve --agent healthcare --compact``: a tiny model behind an
OpenAI-compatible server gets the compact agent over MCP too: the SQL tool alone (and
run_agent) for the client, and the compact prompt, tool list and worked examples in the
requests that server receives; the flags go with the healthcare agent only."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import mcp_types as types
import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from loopwright.mcp import RUN_AGENT
from models.openai_server import OpenAIServer, ToolCall

pytest.importorskip("openai")  # the CLI's client of the loopback server

QUESTION = "How many pharmacy claims are there?"
COUNT = {
    "sql": "SELECT COUNT(*) AS claims FROM RX_CLAIMS",
    "dataset_name": "claim_count",
    "description": "All pharmacy claims",
}
SERVE = ["-m", "loopwright.cli.app", "mcp", "serve"]


@pytest.fixture
def env(loopwright_home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update(LOOPWRIGHT_HOME=str(loopwright_home), NO_COLOR="1")
    for name in ("LOOPWRIGHT_MODEL", "LOOPWRIGHT_WORKSPACES", "LOOPWRIGHT_STORE"):
        env.pop(name, None)
    env["LOOPWRIGHT_COMPACT"] = "0"  # --compact wins over the setting
    return env


def text_of(result: types.CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, types.TextContent))


async def test_compact_over_mcp_gives_a_tiny_model_the_compact_agent(
    env: dict[str, str], claims: Path
) -> None:
    script = [ToolCall("SQL", COUNT), "There are 2,000 pharmacy claims."]
    with OpenAIServer(script, model="qwen2.5:0.5b") as server:
        model = f"openai:qwen2.5:0.5b@{server.base_url}"
        args = [*SERVE, "--agent", "healthcare", "--database", str(claims), "-m", model]
        params = StdioServerParameters(command=sys.executable, args=[*args, "--compact"], env=env)
        async with stdio_client(params) as (read, write), ClientSession(read, write) as client:
            await client.initialize()
            listed = {tool.name for tool in (await client.list_tools()).tools}
            ran = await client.call_tool(RUN_AGENT, {"prompt": QUESTION})

    assert listed == {"SQL", RUN_AGENT}
    assert not ran.is_error, text_of(ran)
    assert "There are 2,000 pharmacy claims." in text_of(ran)
    first = server.chat_bodies[0]
    assert first["messages"][0]["content"].startswith(
        "You answer questions about healthcare claims data with the SQL tool"
    )
    assert [tool["function"]["name"] for tool in first["tools"]] == ["SQL"]
    roles = [m["role"] for m in first["messages"]]
    assert roles[:5] == ["system", "user", "assistant", "tool", "assistant"]  # an example
    assert first["messages"][-1] == {"role": "user", "content": QUESTION}


def test_compact_and_full_go_with_the_healthcare_agent(env: dict[str, str]) -> None:
    for flag in ("--compact", "--full"):
        done = subprocess.run(
            [sys.executable, *SERVE, flag],
            env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        )  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert f"error: {flag} goes with --agent healthcare" in done.stderr
