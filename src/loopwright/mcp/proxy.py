"""``MCPToolProxy``: an MCP tool as a loopwright tool named ``mcp__<server>__<tool>``.

One class for both ways MCP tools reach an agent:

- **in process**, as in the design guide: ``MCPToolProxy(mcp_name, tool_name, tool_fn,
  mcp_schema, workspace_dir)`` wraps a plain (async) function that takes the input dict and
  returns a string, a list of MCP content blocks (``[{"type": "text", "text": ...}]``) or a
  dict with ``content`` and ``is_error``;
- **from a server**: :class:`~loopwright.mcp.client.MCPServers` creates one per tool a server
  lists, calling the server through its :class:`~loopwright.mcp.connection.MCPConnection`.

Either way the schema is ``{"name", "description", "input_schema"}`` with the MCP tool's
``inputSchema`` as it is, and the tool is an ordinary ``BaseTool``: the registry validates its
input against that schema before anything is sent, and hooks, permissions, rate limits,
redaction and the audit log apply as to any built-in tool. MCP tools are of kind ``other``
(classify them with ``Policy(kinds={"mcp__github__*": "write"})``).
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import os
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from loopwright.mcp.results import to_tool_result
from loopwright.messages import TextBlock
from loopwright.tools.base import BaseTool, ToolResult, call_timeout, error

if TYPE_CHECKING:
    import mcp_types

    from loopwright.mcp.connection import MCPConnection

#: an in-process MCP-style tool: takes the input dict, returns text, blocks or a result dict
ToolFunction = Callable[[dict[str, Any]], Any]

_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9_-]")
#: providers accept tool names of at most 64 characters from ``[A-Za-z0-9_-]``
MAX_TOOL_NAME = 64


def mcp_tool_name(server: str, tool: str) -> str:
    """The model-facing name ``mcp__<server>__<tool>``, made safe for every provider (other
    characters become ``_``; an over-long name is shortened with a hash to stay unique)."""
    name = f"mcp__{_NOT_ALLOWED.sub('_', server)}__{_NOT_ALLOWED.sub('_', tool)}"
    if len(name) > MAX_TOOL_NAME:
        digest = hashlib.sha1(name.encode()).hexdigest()[:8]
        name = f"{name[: MAX_TOOL_NAME - 9]}_{digest}"
    return name


class MCPToolProxy(BaseTool):
    """A tool of an MCP server (or an in-process MCP-style function) as a loopwright tool.

    ``mcp_schema`` is the MCP tool definition: ``{"description": ..., "inputSchema": {...}}``.
    ``timeout`` bounds each call (seconds; ``None``: the registry's default, the agent's
    ``tool_timeout``). A server's tool is stopped after that long *without an answer or a
    progress notification* (it is asked for progress), so a long call that reports its
    progress, such as a loopwright server's ``run_agent``, goes on. A server's tools that do
    not declare themselves read-only run one at a time (``sequential``).
    """

    kind: ClassVar[str] = "other"

    def __init__(
        self,
        mcp_name: str,
        tool_name: str,
        tool_fn: ToolFunction | None,
        mcp_schema: Mapping[str, Any],
        workspace_dir: str | os.PathLike[str],
        *,
        connection: MCPConnection | None = None,
        timeout: float | None = None,
        sequential: bool | None = None,
        retry_safe: bool = False,
        name: str | None = None,
    ) -> None:
        super().__init__(workspace_dir)
        if (tool_fn is None) == (connection is None):
            raise TypeError(
                "MCPToolProxy needs exactly one of tool_fn (an in-process function) and "
                "connection (a server's tool); use MCPServers to get the tools of a server"
            )
        if tool_fn is not None and not callable(tool_fn):
            raise TypeError(f"tool_fn must be a function, got {type(tool_fn).__name__}")
        if not isinstance(mcp_schema, Mapping):
            raise TypeError(
                'mcp_schema must be a dict like {"description": ..., "inputSchema": {...}}, '
                f"got {type(mcp_schema).__name__}"
            )
        self.mcp_name = mcp_name
        self.tool_name = tool_name
        self.tool_fn = tool_fn
        self.mcp_schema: dict[str, Any] = dict(mcp_schema)
        self.connection = connection
        self.timeout = timeout
        self.times_itself = connection is not None  # no answer and no progress for ``timeout``
        #: whether a call cut off by a server crash may be sent again after the restart
        self.retry_safe = retry_safe
        if sequential is not None:
            self.sequential = sequential
        self._name = name or mcp_tool_name(mcp_name, tool_name)
        input_schema = self.mcp_schema.get("inputSchema", self.mcp_schema.get("input_schema"))
        self._schema: dict[str, Any] = {
            "name": self._name,
            "description": str(self.mcp_schema.get("description") or ""),
            "input_schema": (
                input_schema if input_schema is not None else {"type": "object", "properties": {}}
            ),
        }

    @classmethod
    def for_server_tool(
        cls,
        connection: MCPConnection,
        tool: mcp_types.Tool,
        workspace_dir: str | os.PathLike[str],
        *,
        name: str | None = None,
    ) -> MCPToolProxy:
        """The proxy of one tool a server listed (its description and input schema as
        given). Read-only tools may run concurrently; read-only and idempotent ones are
        called again after a crash cut a call off."""
        hints = tool.annotations
        read_only = hints is not None and hints.read_only_hint is True
        idempotent = hints is not None and hints.idempotent_hint is True
        return cls(
            connection.name,
            tool.name,
            None,
            {"description": tool.description or tool.title or "", "inputSchema": tool.input_schema},
            workspace_dir,
            connection=connection,
            timeout=connection.config.timeout,
            sequential=not read_only,
            retry_safe=read_only or idempotent,
            name=name,
        )

    @property
    def name(self) -> str:
        return self._name

    @property
    def schema(self) -> dict[str, Any]:
        return self._schema

    async def execute(self, input: dict[str, Any]) -> ToolResult:
        if self.tool_fn is not None:
            return to_tool_result(await _call_function(self.tool_fn, input))
        return await self._call_server(input)

    async def _call_server(self, input: dict[str, Any]) -> ToolResult:
        from loopwright.mcp.connection import MCPCallError, MCPCallTimeout, MCPConnectionError

        assert self.connection is not None
        server, tool = self.mcp_name, self.tool_name
        idle = self._idle_limit()
        try:
            result, note = await self.connection.call_tool(
                tool, input, timeout=idle, retry_safe=self.retry_safe
            )
        except MCPCallTimeout:
            return error(
                f"{self.name} timed out after {idle or 0:g}s without an answer or progress: the "
                f"MCP server {server!r} did not answer in time, so the call was cancelled. Try "
                "a smaller request."
            )
        except MCPCallError as exc:
            return error(f"The MCP server {server!r} refused the call to {tool!r}: {exc}")
        except MCPConnectionError as exc:
            return error(str(exc))
        except ValueError as exc:  # arguments that cannot be sent (nothing was)
            return error(f"{exc}.")
        converted = to_tool_result(result)
        metadata = converted.setdefault("metadata", {})
        metadata.update({"mcp_server": server, "mcp_tool": tool, "restarted": note is not None})
        if note is not None:
            content = converted["content"]
            if isinstance(content, str):
                converted["content"] = f"{content}\n\n[{note}]" if content else f"[{note}]"
            else:
                converted["content"] = [*content, TextBlock(f"[{note}]")]
        return converted

    def _idle_limit(self) -> float | None:
        """Seconds a server's call may go without an answer or progress: ``timeout``, else
        the limit of the registry running the call (its ``default_timeout``, an agent's
        ``tool_timeout``), else, called outside a registry, the registries' default."""
        if self.timeout is not None:
            return self.timeout
        from loopwright.tools.registry import DEFAULT_TIMEOUT_S

        return call_timeout.get(DEFAULT_TIMEOUT_S)

    async def aclose(self) -> None:
        """Close the server connection this tool uses (its session is closing)."""
        if self.connection is not None:
            await self.connection.aclose()

    def __repr__(self) -> str:
        return f"<MCPToolProxy {self.name}>"


async def _call_function(function: ToolFunction, input: dict[str, Any]) -> Any:
    """Call an in-process MCP-style function; a sync one runs in a worker thread."""
    if inspect.iscoroutinefunction(function):
        return await function(input)
    value = await asyncio.to_thread(function, input)
    if inspect.isawaitable(value):
        value = await value
    return value


__all__ = ["MCPToolProxy", "ToolFunction", "mcp_tool_name"]
