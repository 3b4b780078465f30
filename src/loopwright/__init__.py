"""loopwright: build autonomous agents: an LLM in a loop with tools, sandboxed and observable.

The names below are imported lazily, so ``import loopwright`` stays fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loopwright.lazy import lazy_dir, lazy_getattr

__version__ = "0.1.0"

_EXPORTS = {
    "Agent": "loopwright.agent",
    "RunResult": "loopwright.agent",
    "Message": "loopwright.messages",
    "TextBlock": "loopwright.messages",
    "ImageBlock": "loopwright.messages",
    "ThinkingBlock": "loopwright.messages",
    "ToolUseBlock": "loopwright.messages",
    "ToolResultBlock": "loopwright.messages",
    "Usage": "loopwright.events",
    "Model": "loopwright.models.base",
    "ModelError": "loopwright.models.base",
    "ModelRequest": "loopwright.models.base",
    "ModelResponse": "loopwright.models.base",
    "Pricing": "loopwright.models.base",
    "ScriptedModel": "loopwright.models.scripted",
    "ScriptedTurn": "loopwright.models.scripted",
    "call": "loopwright.models.scripted",
    "resolve_model": "loopwright.models",
    "BaseTool": "loopwright.tools.base",
    "ToolContext": "loopwright.tools.base",
    "ToolResult": "loopwright.tools.base",
    "Toolset": "loopwright.tools.base",
    "tool": "loopwright.tools.base",
    "ToolRegistry": "loopwright.tools.registry",
    "ReadTool": "loopwright.tools.files",
    "EditTool": "loopwright.tools.files",
    "GlobTool": "loopwright.tools.files",
    "GrepTool": "loopwright.tools.grep",
    "ShellTools": "loopwright.tools.shell",
    "PythonTools": "loopwright.tools.python",
    "Delegate": "loopwright.tools.delegate",
    "MCPServers": "loopwright.mcp.client",
    "MemoryBank": "loopwright.memory.store",
    "MemoryTools": "loopwright.tools.memory",
    "SearchTools": "loopwright.tools.search",
    "MCPToolProxy": "loopwright.mcp.proxy",
    "HTTP": "loopwright.tools.http",
    "TodoWriteTool": "loopwright.tools.todo",
    "Consult": "loopwright.tools.consult",
    "SubAgent": "loopwright.tools.delegate",
    "Instrument": "loopwright.instrument",
    "RunContext": "loopwright.run_context",
    "current_run": "loopwright.run_context",
    "SandboxConfig": "loopwright.sandbox.base",
    "NetworkPolicy": "loopwright.sandbox.base",
    "create_sandbox": "loopwright.sandbox.base",
    "ResourceLimits": "loopwright.sandbox.limits",
    "Policy": "loopwright.policy.policy",
    "WriteTool": "loopwright.tools.files",
    "PathValidator": "loopwright.sandbox.paths",
    "SecurityError": "loopwright.sandbox.paths",
    "create_path_validation_prehook": "loopwright.sandbox.paths",
    "Session": "loopwright.sessions.session",
    "SessionStore": "loopwright.sessions.store",
    "MemoryStore": "loopwright.sessions.store",
    "SQLiteStore": "loopwright.sessions.sqlite",
}

__all__ = [
    "HTTP",
    "Agent",
    "BaseTool",
    "Consult",
    "Delegate",
    "EditTool",
    "GlobTool",
    "GrepTool",
    "ImageBlock",
    "Instrument",
    "MCPServers",
    "MCPToolProxy",
    "MemoryBank",
    "MemoryStore",
    "MemoryTools",
    "Message",
    "Model",
    "ModelError",
    "ModelRequest",
    "ModelResponse",
    "NetworkPolicy",
    "PathValidator",
    "Policy",
    "Pricing",
    "PythonTools",
    "ReadTool",
    "ResourceLimits",
    "RunContext",
    "RunResult",
    "SQLiteStore",
    "SandboxConfig",
    "ScriptedModel",
    "ScriptedTurn",
    "SearchTools",
    "SecurityError",
    "Session",
    "SessionStore",
    "ShellTools",
    "SubAgent",
    "TextBlock",
    "ThinkingBlock",
    "TodoWriteTool",
    "ToolContext",
    "ToolRegistry",
    "ToolResult",
    "ToolResultBlock",
    "ToolUseBlock",
    "Toolset",
    "Usage",
    "WriteTool",
    "call",
    "create_path_validation_prehook",
    "create_sandbox",
    "current_run",
    "resolve_model",
    "tool",
]

if TYPE_CHECKING:
    from loopwright.agent import Agent, RunResult
    from loopwright.events import Usage
    from loopwright.instrument import Instrument
    from loopwright.mcp.client import MCPServers
    from loopwright.mcp.proxy import MCPToolProxy
    from loopwright.memory.store import MemoryBank
    from loopwright.messages import (
        ImageBlock,
        Message,
        TextBlock,
        ThinkingBlock,
        ToolResultBlock,
        ToolUseBlock,
    )
    from loopwright.models import resolve_model
    from loopwright.models.base import (
        Model,
        ModelError,
        ModelRequest,
        ModelResponse,
        Pricing,
    )
    from loopwright.models.scripted import ScriptedModel, ScriptedTurn, call
    from loopwright.policy.policy import Policy
    from loopwright.run_context import RunContext, current_run
    from loopwright.sandbox.base import NetworkPolicy, SandboxConfig, create_sandbox
    from loopwright.sandbox.limits import ResourceLimits
    from loopwright.sandbox.paths import (
        PathValidator,
        SecurityError,
        create_path_validation_prehook,
    )
    from loopwright.sessions.session import Session
    from loopwright.sessions.sqlite import SQLiteStore
    from loopwright.sessions.store import MemoryStore, SessionStore
    from loopwright.tools.base import BaseTool, ToolContext, ToolResult, Toolset, tool
    from loopwright.tools.consult import Consult
    from loopwright.tools.delegate import Delegate, SubAgent
    from loopwright.tools.files import EditTool, GlobTool, ReadTool, WriteTool
    from loopwright.tools.grep import GrepTool
    from loopwright.tools.http import HTTP
    from loopwright.tools.memory import MemoryTools
    from loopwright.tools.python import PythonTools
    from loopwright.tools.registry import ToolRegistry
    from loopwright.tools.search import SearchTools
    from loopwright.tools.shell import ShellTools
    from loopwright.tools.todo import TodoWriteTool


__getattr__ = lazy_getattr(__name__, _EXPORTS, globals())

__dir__ = lazy_dir(_EXPORTS, globals())
