"""``MCPServers``: the tools of MCP servers, as a :class:`~loopwright.tools.base.Toolset`.

::

    async with MCPServers.from_config("mcp.json") as servers:     # starts them, lists tools
        agent = Agent(model, tools=[ReadTool, servers])
        async for event in agent.run("What time is it in Tokyo?"):
            ...
        await agent.aclose()                                       # their processes end

Listing a server's tools needs a round trip, and ``Toolset.bind`` (called when a session's
tool registry is built) is synchronous, so the servers are connected first: ``await
servers.connect()`` or ``async with servers``. Each session then gets its own connections
(the first session takes over the ones opened to list the tools; later sessions connect on
their first call), so one session's server state never leaks into another's, and closing a
session (``agent.close_session``, ``agent.aclose``) closes its servers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
from collections.abc import Iterable, Mapping
from types import TracebackType
from typing import TYPE_CHECKING, Any

from loopwright.mcp.config import MCPConfigError, MCPServerConfig, load_config, parse_config
from loopwright.mcp.proxy import MCPToolProxy, mcp_tool_name
from loopwright.tools.base import BaseTool, Toolset

if TYPE_CHECKING:
    import mcp_types

    from loopwright.mcp.connection import MCPConnection

ServerSpec = Mapping[str, Any] | MCPServerConfig


class MCPServers(Toolset):
    """Several MCP servers whose tools become ``mcp__<server>__<tool>`` tools.

    ``servers`` maps names to ``mcp.json`` entries (``{"command", "args", "env", "cwd"}`` or
    ``{"url", "headers", "transport"}``) or :class:`MCPServerConfig` objects.
    """

    def __init__(
        self,
        servers: Mapping[str, ServerSpec] | Iterable[MCPServerConfig] = (),
        *,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        configs: list[MCPServerConfig] = []
        if isinstance(servers, Mapping) and ("mcpServers" in servers or "servers" in servers):
            configs = parse_config(servers, environ=environ)  # a whole mcp.json document
        elif isinstance(servers, Mapping):
            for name, spec in servers.items():
                if isinstance(spec, MCPServerConfig):
                    configs.append(dataclasses.replace(spec, name=str(name)))
                elif isinstance(spec, Mapping):
                    configs.extend(parse_config({str(name): spec}, environ=environ))
                else:
                    raise MCPConfigError(
                        f"MCP server {name!r} must be a dict with 'command' or 'url', or an "
                        f"MCPServerConfig, not {type(spec).__name__}"
                    )
        else:
            configs = list(servers)
        self.configs: dict[str, MCPServerConfig] = {}
        for config in configs:
            if config.name in self.configs:
                raise MCPConfigError(f"MCP server {config.name!r} is configured twice")
            self.configs[config.name] = config
        #: each connected server's tools, as it listed them (after the config's ``tools`` filter)
        self.tools: dict[str, list[mcp_types.Tool]] = {}
        #: why servers could not be connected (``connect(strict=False)``)
        self.errors: dict[str, str] = {}
        self._connected = False
        self._listing: dict[str, MCPConnection] = {}
        self._sessions: list[MCPConnection] = []

    @classmethod
    def from_config(
        cls,
        source: str | os.PathLike[str] | Mapping[str, Any],
        *,
        environ: Mapping[str, str] | None = None,
    ) -> MCPServers:
        """The servers of an ``mcp.json`` file, or of an already-parsed document."""
        if isinstance(source, Mapping):
            return cls(parse_config(source, environ=environ))
        return cls(load_config(source, environ=environ))

    @property
    def connected(self) -> bool:
        return self._connected

    async def connect(self, *, strict: bool = True) -> MCPServers:
        """Start (or reach) every server and list its tools, concurrently.

        With ``strict`` (default) a server that cannot be connected raises
        :class:`~loopwright.mcp.connection.MCPConnectionError` (the others are closed);
        otherwise it is left out and its reason kept in :attr:`errors`.
        """
        from loopwright.mcp.connection import MCPConnection, MCPConnectionError

        if self._connected:
            return self
        pending = {name: MCPConnection(config) for name, config in self.configs.items()}
        outcomes = await asyncio.gather(
            *(connection.start() for connection in pending.values()), return_exceptions=True
        )
        failures: dict[str, str] = {}
        for (name, connection), outcome in zip(pending.items(), outcomes, strict=True):
            if isinstance(outcome, MCPConnectionError):
                failures[name] = str(outcome)
            elif isinstance(outcome, BaseException):
                failures[name] = f"cannot connect to MCP server {name!r}: {outcome!r}"
            else:
                try:
                    self.tools[name] = _selected(connection.tools, self.configs[name])
                except MCPConfigError as exc:
                    failures[name] = str(exc)
                    await connection.aclose()
                    continue
                self._listing[name] = connection
        if failures and strict:
            await asyncio.gather(*(c.aclose() for c in self._listing.values()))
            self._listing.clear()
            self.tools.clear()
            raise MCPConnectionError(" ".join(failures.values()))
        self.errors = failures
        self._connected = True
        return self

    def bind(self, workspace_dir: str, session_id: str | None = None) -> list[BaseTool]:
        """The session's proxies, over connections of its own."""
        from loopwright.mcp.connection import MCPConnection

        if not self._connected:
            raise RuntimeError(
                "the MCP servers are not connected yet, so their tools are unknown: "
                "`await servers.connect()` (or use `async with servers:`) before the agent runs"
            )
        loop = _running_loop()
        self._sessions = [c for c in self._sessions if c.state != "closed"]
        proxies: list[BaseTool] = []
        taken: set[str] = set()
        for name, tools in self.tools.items():
            listing = self._listing.pop(name, None)
            if listing is not None and listing.running and loop is not None:
                connection = listing  # the first session takes over the open connection
            else:
                connection = MCPConnection(self.configs[name], tools)
            self._sessions.append(connection)
            for tool in tools:
                tool_name = _unique(mcp_tool_name(name, tool.name), taken)
                proxies.append(
                    MCPToolProxy.for_server_tool(connection, tool, workspace_dir, name=tool_name)
                )
        return proxies

    async def aclose(self) -> None:
        """Close every connection (the listing ones and every session's)."""
        connections = [*self._listing.values(), *self._sessions]
        self._listing.clear()
        self._sessions = []
        await asyncio.gather(*(c.aclose() for c in connections), return_exceptions=True)

    async def aprepare(self) -> None:
        """The async step before binding (connect and list the tools), for a caller that
        prepares toolsets before building a session's registry."""
        await self.connect()

    async def __aenter__(self) -> MCPServers:
        return await self.connect()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<MCPServers {', '.join(self.configs) or 'none'}>"


def _selected(tools: list[mcp_types.Tool], config: MCPServerConfig) -> list[mcp_types.Tool]:
    if config.tools is None:
        return list(tools)
    wanted = set(config.tools)
    missing = wanted - {tool.name for tool in tools}
    if missing:
        raise MCPConfigError(
            f"MCP server {config.name!r}: field 'tools' names {sorted(missing)}, which the "
            f"server does not have; it has {sorted(tool.name for tool in tools)}"
        )
    return [tool for tool in tools if tool.name in wanted]


def _unique(name: str, taken: set[str]) -> str:
    candidate, number = name, 2
    while candidate in taken:
        suffix = f"_{number}"
        candidate = name[: 64 - len(suffix)] + suffix
        number += 1
    taken.add(candidate)
    return candidate


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None


__all__ = ["MCPServers"]
