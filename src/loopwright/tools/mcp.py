"""MCP tools for agents: ``MCPToolProxy`` and ``MCPServers`` (see :mod:`loopwright.mcp`).

``MCPToolProxy(mcp_name, tool_name, tool_fn, mcp_schema, workspace_dir)`` wraps an
in-process function as the design guide shows; ``MCPServers`` gives an agent the tools of MCP
servers (stdio, streamable HTTP, SSE) as ``mcp__<server>__<tool>``. The client names load the
MCP SDK on first use only.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from loopwright.mcp.config import MCPConfigError, MCPServerConfig
from loopwright.mcp.proxy import MCPToolProxy, mcp_tool_name

_LAZY = {
    "MCPServers": "loopwright.mcp.client",
    "MCPConnection": "loopwright.mcp.connection",
    "MCPConnectionError": "loopwright.mcp.connection",
}

__all__ = [
    "MCPConfigError",
    "MCPConnection",
    "MCPConnectionError",
    "MCPServerConfig",
    "MCPServers",
    "MCPToolProxy",
    "mcp_tool_name",
]

if TYPE_CHECKING:
    from loopwright.mcp.client import MCPServers
    from loopwright.mcp.connection import MCPConnection, MCPConnectionError


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'loopwright.tools.mcp' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
