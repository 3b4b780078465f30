"""``loopwright mcp serve --agent healthcare``: the healthcare research agent's tools (SQL,
DefineCohort...) and the agent itself, for MCP clients, driven by the official client over
stdio; its session records its data, as ``loopwright healthcare`` does."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import mcp_types as types
import pytest
from mcp.client.session import ClientSession
from mcp.client.stdio import StdioServerParameters, stdio_client

from loopwright.mcp import RUN_AGENT
from loopwright.sessions.sqlite import SQLiteStore

TOP_CA = (
    "SELECT PRESCRIBER_NPI_NBR, COUNT(*) AS rx_count FROM RX_CLAIMS "
    "WHERE NDC_DRUG_NM = 'HUMIRA' AND PRESCRIBER_NPI_STATE_CD = 'CA' "
    "GROUP BY 1 ORDER BY rx_count DESC, 1 LIMIT 10"
)


SERVE = ["-m", "loopwright.cli.app", "mcp", "serve", "--agent", "healthcare"]


@pytest.fixture
def env(loopwright_home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    env.update(LOOPWRIGHT_HOME=str(loopwright_home), NO_COLOR="1")
    for name in ("LOOPWRIGHT_MODEL", "LOOPWRIGHT_WORKSPACES", "LOOPWRIGHT_STORE"):
        env.pop(name, None)
    return env


def text_of(result: types.CallToolResult) -> str:
    return "\n".join(block.text for block in result.content if isinstance(block, types.TextContent))


async def test_the_healthcare_agents_tools_and_the_agent_over_stdio(
    env: dict[str, str], claims: Path, loopwright_home: Path, tmp_path: Path
) -> None:
    script = tmp_path / "script.json"
    query = {"sql": TOP_CA, "dataset_name": "agent_top", "description": "top prescribers"}
    script.write_text(json.dumps([{"call": "SQL", "input": query}, "Done: agent_top.csv."]))
    params = StdioServerParameters(
        command=sys.executable,
        args=[*SERVE, "--database", str(claims), "-m", f"scripted:{script}", "-s", "mcp-hc"],
        env=env,
    )
    async with stdio_client(params) as (read, write), ClientSession(read, write) as client:
        init = await client.initialize()
        listed = {tool.name: tool for tool in (await client.list_tools()).tools}
        top = await client.call_tool(
            "SQL", {"sql": TOP_CA, "dataset_name": "top_ca", "description": "HUMIRA in CA"}
        )
        refused = await client.call_tool(
            "SQL", {"sql": "DROP TABLE RX_CLAIMS", "dataset_name": "x", "description": "no"}
        )
        cohort = await client.call_tool(
            "DefineCohort", {"name": "humira", "drugs": ["HUMIRA"], "states": ["CA"]}
        )
        ran = await client.call_tool(RUN_AGENT, {"prompt": "Top HUMIRA prescribers in CA?"})

    assert init.server_info.name == "loopwright-healthcare"
    assert {"SQL", "DefineCohort", "Python", "Read", RUN_AGENT} <= set(listed)
    assert listed["SQL"].input_schema["required"] == ["sql", "dataset_name", "description"]
    assert not top.is_error, text_of(top)
    assert "Saved" in text_of(top)
    assert refused.is_error
    assert "DROP" in text_of(refused)
    assert not cohort.is_error, text_of(cohort)
    assert not ran.is_error, text_of(ran)
    assert ran.structured_content is not None
    assert ran.structured_content["session_id"] == "mcp-hc"

    workspace = loopwright_home / "workspaces" / "mcp-hc"
    with (workspace / "top_ca.csv").open(encoding="utf-8") as handle:
        direct = list(csv.reader(handle))
    with (workspace / "agent_top.csv").open(encoding="utf-8") as handle:
        assert list(csv.reader(handle)) == direct  # the agent's own call: the same rows
    assert direct[0] == ["PRESCRIBER_NPI_NBR", "rx_count"]
    assert (workspace / "cohorts" / "humira.parquet").is_file()
    store = SQLiteStore(loopwright_home / "sessions.db")
    try:
        session = store.load("mcp-hc")
    finally:
        store.close()
    assert session is not None
    # recorded as loopwright healthcare records it: --session mcp-hc continues on this file
    assert session.metadata["agent"] == "healthcare"
    assert session.metadata["database"] == str(claims)  # absolute already


def test_the_healthcare_options_are_checked(env: dict[str, str], claims: Path) -> None:
    def serve(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "loopwright.cli.app", "mcp", "serve", *args],
            env=env, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    alone = serve("--rows", "2000")
    assert alone.returncode == 2
    assert "--database and --rows go with --agent healthcare" in alone.stderr
    both = serve("--agent", "healthcare", "--rows", "2000", "--database", str(claims))
    assert both.returncode == 2
    assert "--rows" in both.stderr
    unknown = serve("--agent", "radiology")
    assert unknown.returncode == 2
    assert "unknown agent 'radiology'; use one of: standard, healthcare" in unknown.stderr
