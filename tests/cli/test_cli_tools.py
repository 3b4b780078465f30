"""The CLI agent's tools: the built-ins, MCP servers from a config file, HTTP when allowed."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from .conftest import CliRunner


def script(tmp_path: Path, turns: list[object]) -> str:
    path = tmp_path / "script.json"
    path.write_text(json.dumps(turns))
    return f"scripted:{path}"


def test_the_mcp_servers_of_the_config_file_are_tools(
    cli: CliRunner, cli_env: dict[str, str], tmp_path: Path
) -> None:
    config = tmp_path / "mcp.json"
    server = {"command": sys.executable, "args": ["-m", "mcp_server_time"]}
    config.write_text(json.dumps({"mcpServers": {"time": server}}))
    cli_env["LOOPWRIGHT_MCP_CONFIG"] = str(config)
    model = script(
        tmp_path,
        [{"call": "mcp__time__get_current_time", "input": {"timezone": "Europe/Paris"}}, "ok"],
    )
    result = cli("run", "--json", "--model", model, "what time is it in Paris?")
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    (outcome,) = [e for e in events if e["type"] == "tool_result"]
    assert not outcome["is_error"], outcome["content"]
    assert json.loads(outcome["content"])["timezone"] == "Europe/Paris"


def test_a_missing_mcp_config_is_a_usage_error(cli: CliRunner, cli_env: dict[str, str]) -> None:
    cli_env["LOOPWRIGHT_MCP_CONFIG"] = "/nonexistent/mcp.json"
    result = cli("run", "hello")
    assert result.returncode == 2
    assert "LOOPWRIGHT_MCP_CONFIG names /nonexistent/mcp.json" in result.stderr


def test_todo_memory_and_search_are_built_in(cli: CliRunner, tmp_path: Path) -> None:
    model = script(
        tmp_path,
        [
            {
                "calls": [
                    {
                        "name": "TodoWrite",
                        "input": {
                            "todos": [
                                {"content": "a", "status": "in_progress", "activeForm": "A-ing"}
                            ]
                        },
                    },
                    {"name": "Memory", "input": {"action": "remember", "text": "likes tea"}},
                    {"name": "Search", "input": {"query": "anything"}},
                ]
            },
            "done",
        ],
    )
    result = cli("run", "--json", "--model", model, "go")
    assert result.returncode == 0, result.stderr
    outcomes = [json.loads(x) for x in result.stdout.splitlines()]
    outcomes = [e for e in outcomes if e["type"] == "tool_result"]
    assert {e["name"] for e in outcomes} == {"TodoWrite", "Memory", "Search"}
    assert not any(e["is_error"] for e in outcomes), outcomes
