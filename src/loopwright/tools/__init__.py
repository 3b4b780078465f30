"""Tools: the interface, the registry, ``@tool`` and the built-in tools."""

from loopwright.tools.base import (
    BaseTool,
    FunctionTool,
    ToolContext,
    ToolDefinition,
    ToolResult,
    Toolset,
    error,
    ok,
    tool,
)
from loopwright.tools.files import ReadTool, WriteTool
from loopwright.tools.registry import ToolRegistry

__all__ = [
    "BaseTool",
    "FunctionTool",
    "ReadTool",
    "ToolContext",
    "ToolDefinition",
    "ToolRegistry",
    "ToolResult",
    "Toolset",
    "WriteTool",
    "error",
    "ok",
    "tool",
]
