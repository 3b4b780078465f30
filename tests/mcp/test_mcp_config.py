"""MCP server configuration: the mcp.json shape, ${VAR} expansion, and clear errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from loopwright.mcp import MCPConfigError, MCPServerConfig, MCPServers, load_config, parse_config


def write_config(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data))
    return path


def test_a_typical_mcp_json_is_read(tmp_path: Path) -> None:
    config = write_config(
        tmp_path / "mcp.json",
        {
            "mcpServers": {
                "time": {
                    "command": "uvx",
                    "args": ["mcp-server-time", "--local-timezone", "${TZ_NAME:-UTC}"],
                    "env": {"API_KEY": "${KEY}", "LEVEL": 3},
                    "cwd": "servers",
                    "timeout": 20,
                },
                "docs": {
                    "url": "http://127.0.0.1:9000/mcp",
                    "headers": {"Authorization": "Bearer ${KEY}"},
                },
                "legacy": {"url": "http://127.0.0.1:9001/sse"},
                "typed": {"type": "streamable-http", "url": "http://127.0.0.1:9002/api"},
                "off": {"command": "never", "disabled": True},
            }
        },
    )
    servers = {c.name: c for c in load_config(config, environ={"KEY": "s3cret"})}
    assert list(servers) == ["time", "docs", "legacy", "typed"]
    time = servers["time"]
    assert time.command == "uvx"
    assert time.transport == "stdio"
    assert time.args == ("mcp-server-time", "--local-timezone", "UTC")
    assert dict(time.env) == {"API_KEY": "s3cret", "LEVEL": "3"}
    assert time.cwd == str(tmp_path / "servers")
    assert time.timeout == 20.0
    assert time.max_restarts == 1
    assert servers["docs"].transport == "http"
    assert dict(servers["docs"].headers) == {"Authorization": "Bearer s3cret"}
    assert servers["legacy"].transport == "sse"
    assert servers["typed"].transport == "http"


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"args": ["x"]}, "needs 'command'"),
        ({"command": "a", "url": "http://h/mcp"}, "both 'command' and 'url'"),
        ({"command": "a", "args": "--flag"}, "field 'args' must be a list of strings"),
        ({"command": "a", "args": ["ok", None]}, "field 'args[1]' must be a string"),
        ({"command": "a", "env": ["A=1"]}, "field 'env' must be an object"),
        ({"command": "a", "env": {"A": None}}, "field 'env.A' must be a string"),
        ({"command": "a", "env": {"A": "${NOT_SET_ANYWHERE}"}}, "NOT_SET_ANYWHERE is not set"),
        ({"url": "ftp://host/x"}, "field 'url' must be an http:// or https:// URL"),
        ({"url": "http://h/mcp", "transport": "websocket"}, "field 'transport' must be one of"),
        ({"command": "a", "type": "sse"}, "has a 'command'"),
        ({"command": "a", "timeout": -1}, "'timeout' must be a positive number"),
        ({"command": "a", "timeout": "10"}, "field 'timeout' must be a number of seconds"),
        ({"command": "a", "max_restarts": 1.5}, "field 'max_restarts' must be a whole number"),
    ],
)
def test_mistakes_name_the_server_and_the_field(entry: dict[str, Any], expected: str) -> None:
    with pytest.raises(MCPConfigError) as caught:
        parse_config({"mcpServers": {"broken": entry}}, environ={})
    assert "'broken'" in str(caught.value)
    assert expected in str(caught.value)


def test_file_problems_say_what_to_do(tmp_path: Path) -> None:
    with pytest.raises(MCPConfigError, match=r"no MCP config at .*create it"):
        load_config(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"mcpServers": {"a": {"command": "x",}}}')
    with pytest.raises(MCPConfigError, match=r"not valid JSON \(line 1, column"):
        load_config(bad)
    with pytest.raises(MCPConfigError, match="must be an object mapping server names"):
        parse_config({"mcpServers": ["a"]})


def test_servers_are_given_in_code_in_several_shapes(tmp_path: Path) -> None:
    document = {"mcpServers": {"time": {"command": "mcp-server-time"}}}
    assert list(MCPServers(document).configs) == ["time"]
    assert list(MCPServers.from_config(document).configs) == ["time"]
    path = write_config(tmp_path / "mcp.json", document)
    assert list(MCPServers.from_config(path).configs) == ["time"]
    made = MCPServers({"clock": MCPServerConfig("anything", command="mcp-server-time")})
    assert made.configs["clock"].name == "clock"
    listed = MCPServers([MCPServerConfig("a", command="x"), MCPServerConfig("b", url="http://h/")])
    assert [c.transport for c in listed.configs.values()] == ["stdio", "http"]
    with pytest.raises(MCPConfigError, match="configured twice"):
        MCPServers([MCPServerConfig("a", command="x"), MCPServerConfig("a", command="y")])
    with pytest.raises(MCPConfigError, match="'a' must be a dict"):
        MCPServers({"a": "mcp-server-time"})  # type: ignore[dict-item]
