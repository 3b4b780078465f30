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
from loopwright.tools.files import EditTool, GlobTool, ReadTool, WriteTool
from loopwright.tools.grep import GrepTool
from loopwright.tools.registry import ToolRegistry

__all__ = [
    "BaseTool",
    "EditTool",
    "FunctionTool",
    "GlobTool",
    "GrepTool",
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
