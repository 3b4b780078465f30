"""Tools: the interface, the registry, ``@tool`` and the built-in tools.

The shell and Python tools (and the sandbox behind them) are imported on first use.
"""

from typing import TYPE_CHECKING

from loopwright.lazy import lazy_getattr
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

_LAZY = {
    "BashTool": "loopwright.tools.shell",
    "BashOutputTool": "loopwright.tools.shell",
    "KillShellTool": "loopwright.tools.shell",
    "ShellTools": "loopwright.tools.shell",
    "PythonTool": "loopwright.tools.python",
    "PythonTools": "loopwright.tools.python",
    "Delegate": "loopwright.tools.delegate",
    "SubAgent": "loopwright.tools.delegate",
    "HTTP": "loopwright.tools.http",
    "HTTPConfig": "loopwright.tools.http",
    "HTTPTool": "loopwright.tools.http",
    "TodoWriteTool": "loopwright.tools.todo",
    "load_todos": "loopwright.tools.todo",
    "render_todos": "loopwright.tools.todo",
    "Consult": "loopwright.tools.consult",
    "MCPServers": "loopwright.mcp.client",
    "MCPToolProxy": "loopwright.mcp.proxy",
    "MemoryTool": "loopwright.tools.memory",
    "MemoryTools": "loopwright.tools.memory",
    "SearchTool": "loopwright.tools.search",
    "SearchTools": "loopwright.tools.search",
    "SQL": "loopwright.tools.sql",
    "SQLTool": "loopwright.tools.sql",
    "ConsultTool": "loopwright.tools.consult",
}

__all__ = [
    "HTTP",
    "SQL",
    "BaseTool",
    "BashOutputTool",
    "BashTool",
    "Consult",
    "ConsultTool",
    "Delegate",
    "EditTool",
    "FunctionTool",
    "GlobTool",
    "GrepTool",
    "HTTPConfig",
    "HTTPTool",
    "KillShellTool",
    "MCPServers",
    "MCPToolProxy",
    "MemoryTool",
    "MemoryTools",
    "PythonTool",
    "PythonTools",
    "ReadTool",
    "SQLTool",
    "SearchTool",
    "SearchTools",
    "ShellTools",
    "SubAgent",
    "TodoWriteTool",
    "ToolContext",
    "ToolDefinition",
    "ToolRegistry",
    "ToolResult",
    "Toolset",
    "WriteTool",
    "error",
    "load_todos",
    "ok",
    "render_todos",
    "tool",
]

if TYPE_CHECKING:
    from loopwright.mcp.client import MCPServers
    from loopwright.mcp.proxy import MCPToolProxy
    from loopwright.tools.consult import Consult, ConsultTool
    from loopwright.tools.delegate import Delegate, SubAgent
    from loopwright.tools.http import HTTP, HTTPConfig, HTTPTool
    from loopwright.tools.memory import MemoryTool, MemoryTools
    from loopwright.tools.python import PythonTool, PythonTools
    from loopwright.tools.search import SearchTool, SearchTools
    from loopwright.tools.shell import BashOutputTool, BashTool, KillShellTool, ShellTools
    from loopwright.tools.sql import SQL, SQLTool
    from loopwright.tools.todo import TodoWriteTool, load_todos, render_todos


__getattr__ = lazy_getattr(__name__, _LAZY, globals())
