"""The Model Context Protocol: MCP servers' tools for loopwright agents, and loopwright
agents served to MCP clients, on the official ``mcp`` SDK.

- :class:`MCPServers` (a toolset): connect to servers over stdio, streamable HTTP or SSE,
  configured in code or in an ``mcp.json``; their tools become ``mcp__<server>__<tool>``.
- :class:`MCPToolProxy`: one MCP tool as a loopwright tool, from a server or wrapping an
  in-process function, as in the design guide.
- :class:`AgentMCPServer` / :func:`serve_agent`: an agent's tools and the agent itself
  (``run_agent``) over MCP; ``loopwright mcp serve`` on the command line.

Names are imported lazily: the SDK loads only when a connection or server is made.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loopwright.lazy import lazy_getattr

_EXPORTS = {
    "MCPConfigError": "loopwright.mcp.config",
    "MCPServerConfig": "loopwright.mcp.config",
    "load_config": "loopwright.mcp.config",
    "parse_config": "loopwright.mcp.config",
    "MCPToolProxy": "loopwright.mcp.proxy",
    "mcp_tool_name": "loopwright.mcp.proxy",
    "to_tool_result": "loopwright.mcp.results",
    "MCPServers": "loopwright.mcp.client",
    "MCPConnection": "loopwright.mcp.connection",
    "MCPConnectionError": "loopwright.mcp.connection",
    "MCPServerStopped": "loopwright.mcp.connection",
    "MCPCallError": "loopwright.mcp.connection",
    "MCPCallTimeout": "loopwright.mcp.connection",
    "AgentMCPServer": "loopwright.mcp.server",
    "serve_agent": "loopwright.mcp.server",
    "RUN_AGENT": "loopwright.mcp.server",
}

__all__ = [
    "RUN_AGENT",
    "AgentMCPServer",
    "MCPCallError",
    "MCPCallTimeout",
    "MCPConfigError",
    "MCPConnection",
    "MCPConnectionError",
    "MCPServerConfig",
    "MCPServerStopped",
    "MCPServers",
    "MCPToolProxy",
    "load_config",
    "mcp_tool_name",
    "parse_config",
    "serve_agent",
    "to_tool_result",
]

if TYPE_CHECKING:
    from loopwright.mcp.client import MCPServers
    from loopwright.mcp.config import MCPConfigError, MCPServerConfig, load_config, parse_config
    from loopwright.mcp.connection import (
        MCPCallError,
        MCPCallTimeout,
        MCPConnection,
        MCPConnectionError,
        MCPServerStopped,
    )
    from loopwright.mcp.proxy import MCPToolProxy, mcp_tool_name
    from loopwright.mcp.results import to_tool_result
    from loopwright.mcp.server import RUN_AGENT, AgentMCPServer, serve_agent


__getattr__ = lazy_getattr(__name__, _EXPORTS, globals())
