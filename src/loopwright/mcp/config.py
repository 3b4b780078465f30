"""MCP server configuration: in code, or in the widely used ``mcp.json`` shape.

::

    {"mcpServers": {
        "time": {"command": "uvx", "args": ["mcp-server-time"], "env": {"TZ": "UTC"}},
        "docs": {"url": "http://127.0.0.1:8000/mcp", "headers": {"X-Token": "${TOKEN}"}}
    }}

A server is either started as a subprocess and spoken to over stdio (``command``, ``args``,
``env``, ``cwd``) or reached over HTTP (``url``, ``headers``; ``transport`` ``"http"`` for
streamable HTTP, the default, or ``"sse"`` for older servers, assumed when the URL ends in
``/sse``). Claude Code's ``type`` key is accepted for ``transport``, VS Code's ``servers`` for
``mcpServers``, and keys other clients use (``disabled``, ``autoApprove``...) are ignored,
except ``disabled: true``, which leaves the server out. loopwright's own keys: ``timeout``
(seconds a tool call may go without an answer or progress), ``connect_timeout``, ``tools``
(only these tools are offered to the model) and ``max_restarts`` (how often a crashed server
is restarted; default 1).

``${VAR}`` and ``${VAR:-default}`` in any string are replaced from the environment, so secrets
stay out of the file. A mistake is reported as :class:`MCPConfigError` naming the server and
the field. This module does not import the MCP SDK.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeAlias
from urllib.parse import urlsplit

Transport: TypeAlias = Literal["stdio", "http", "sse"]

_TRANSPORTS: dict[str, Transport] = {
    "stdio": "stdio",
    "http": "http",
    "streamable-http": "http",
    "streamable_http": "http",
    "streamablehttp": "http",
    "sse": "sse",
}
_VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")

DEFAULT_CONNECT_TIMEOUT_S = 30.0


class MCPConfigError(ValueError):
    """The MCP configuration is wrong; the message names the server and field to fix."""


@dataclass(frozen=True, slots=True)
class MCPServerConfig:
    """How to reach one MCP server.

    Give ``command`` (stdio) or ``url`` (HTTP). ``env`` is added to a minimal inherited
    environment (``PATH``, ``HOME``...), not to this process's whole environment, so API keys
    of other services do not leak into the server. ``timeout`` bounds how long each tool
    call may go without an answer or a progress notification (``None``: the agent's
    ``tool_timeout``); ``tools`` restricts which of the server's tools
    are offered; a stdio server that crashes is restarted up to ``max_restarts`` times.
    """

    name: str
    command: str | None = None
    args: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    transport: Transport = "stdio"
    timeout: float | None = None
    connect_timeout: float = DEFAULT_CONNECT_TIMEOUT_S
    tools: tuple[str, ...] | None = None
    max_restarts: int = 1

    def __post_init__(self) -> None:
        where = f"MCP server {self.name!r}"
        if not isinstance(self.name, str) or not self.name.strip():
            raise MCPConfigError("an MCP server needs a non-empty name")
        if self.command is not None and self.url is not None:
            raise MCPConfigError(
                f"{where} has both 'command' and 'url'; give 'command' to start a local "
                "server, or 'url' to reach a running one, not both"
            )
        if self.command is None and self.url is None:
            raise MCPConfigError(
                f"{where} needs 'command' (a program to start, talking over stdio) or 'url' "
                "(a running server over HTTP)"
            )
        if self.command is not None:
            if not self.command.strip():
                raise MCPConfigError(f"{where}: field 'command' is empty; name the program")
            if self.transport != "stdio":
                raise MCPConfigError(
                    f"{where} has a 'command' but transport {self.transport!r}; a started "
                    "server speaks stdio, so drop the transport or use 'url' instead"
                )
        if self.url is not None:
            parts = urlsplit(self.url)
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise MCPConfigError(
                    f"{where}: field 'url' must be an http:// or https:// URL, got {self.url!r}"
                )
            if self.transport == "stdio":
                guessed: Transport = "sse" if parts.path.rstrip("/").endswith("/sse") else "http"
                object.__setattr__(self, "transport", guessed)
        if self.timeout is not None and not self.timeout > 0:
            raise MCPConfigError(
                f"{where}: field 'timeout' must be a positive number of seconds, "
                f"got {self.timeout!r}"
            )
        if not self.connect_timeout > 0:
            raise MCPConfigError(
                f"{where}: field 'connect_timeout' must be a positive number of seconds, "
                f"got {self.connect_timeout!r}"
            )
        if self.max_restarts < 0:
            raise MCPConfigError(
                f"{where}: field 'max_restarts' must be 0 or more, got {self.max_restarts!r}"
            )

    @classmethod
    def from_dict(
        cls,
        name: str,
        data: Mapping[str, Any],
        *,
        base_dir: str | os.PathLike[str] | None = None,
        environ: Mapping[str, str] | None = None,
        source: str = "",
    ) -> MCPServerConfig:
        """A server from its ``mcp.json`` entry; ``${VAR}`` is expanded from ``environ``
        (default: ``os.environ``) and a relative ``cwd`` is taken from ``base_dir``."""
        reader = _Reader(name, data, os.environ if environ is None else environ, source)
        transport = reader.transport()
        cwd = reader.string("cwd")
        if cwd is not None and base_dir is not None:
            cwd = os.path.join(os.fspath(base_dir), os.path.expanduser(cwd))
        tools = reader.strings("tools")
        connect_timeout = reader.number("connect_timeout")
        values: dict[str, Any] = {
            "command": reader.string("command"),
            "args": tuple(reader.strings("args") or ()),
            "env": reader.mapping("env"),
            "cwd": cwd,
            "url": reader.string("url"),
            "headers": reader.mapping("headers"),
            "transport": transport,
            "timeout": reader.number("timeout"),
            "connect_timeout": (
                DEFAULT_CONNECT_TIMEOUT_S if connect_timeout is None else connect_timeout
            ),
            "tools": tuple(tools) if tools is not None else None,
            "max_restarts": reader.integer("max_restarts", 1),
        }
        try:
            return cls(name=name, **values)
        except MCPConfigError as exc:
            raise MCPConfigError(f"{source}{exc}") from None


def parse_config(
    data: Any,
    *,
    base_dir: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    source: str = "",
) -> list[MCPServerConfig]:
    """The servers of an ``mcp.json`` document (``{"mcpServers": {name: {...}}}``).

    Also accepted: VS Code's ``{"servers": {...}}`` and a bare ``{name: {...}}`` mapping.
    Servers marked ``"disabled": true`` are left out.
    """
    if not isinstance(data, Mapping):
        raise MCPConfigError(
            f'{source}the MCP config must be a JSON object like {{"mcpServers": {{...}}}}, '
            f"not {type(data).__name__}"
        )
    servers = data.get("mcpServers", data.get("servers", data))
    if not isinstance(servers, Mapping):
        raise MCPConfigError(
            f"{source}'mcpServers' must be an object mapping server names to their settings, "
            f"not {type(servers).__name__}"
        )
    configs: list[MCPServerConfig] = []
    for name, entry in servers.items():
        if not isinstance(entry, Mapping):
            raise MCPConfigError(
                f"{source}MCP server {name!r} must be an object with 'command' or 'url', "
                f"not {type(entry).__name__}"
            )
        if entry.get("disabled") is True:
            continue
        configs.append(
            MCPServerConfig.from_dict(
                str(name), entry, base_dir=base_dir, environ=environ, source=source
            )
        )
    return configs


def load_config(
    path: str | os.PathLike[str], *, environ: Mapping[str, str] | None = None
) -> list[MCPServerConfig]:
    """The servers configured in an ``mcp.json`` file (relative ``cwd`` values are taken
    from the file's directory)."""
    file = Path(path).expanduser()
    source = f"{file}: "
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MCPConfigError(
            f'no MCP config at {file}; create it with {{"mcpServers": {{"name": {{"command": '
            "...}}}} or give the servers in code"
        ) from None
    except OSError as exc:
        raise MCPConfigError(f"cannot read the MCP config {file} ({exc})") from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MCPConfigError(
            f"{file} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); "
            "fix the syntax and try again"
        ) from None
    return parse_config(data, base_dir=file.parent, environ=environ, source=source)


def expand_variables(text: str, environ: Mapping[str, str], where: str) -> str:
    """``text`` with ``${VAR}`` and ``${VAR:-default}`` replaced from ``environ``."""

    def replace(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(2)
        value = environ.get(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                raise MCPConfigError(
                    f"{where} uses ${{{name}}}, but the environment variable {name} is not set; "
                    f"set it, or give a default with ${{{name}:-value}}"
                )
            return default
        return value

    return _VARIABLE.sub(replace, text)


class _Reader:
    """Reads one server entry, naming the server and field in every complaint."""

    def __init__(
        self, name: str, data: Mapping[str, Any], environ: Mapping[str, str], source: str
    ) -> None:
        self.name = name
        self.data = data
        self.environ = environ
        self.source = source

    def _where(self, key: str) -> str:
        return f"{self.source}MCP server {self.name!r}: field {key!r}"

    def _fail(self, key: str, problem: str) -> MCPConfigError:
        return MCPConfigError(f"{self._where(key)} {problem}")

    def _expand(self, text: str, key: str) -> str:
        return expand_variables(text, self.environ, self._where(key))

    def string(self, key: str) -> str | None:
        value = self.data.get(key)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self._fail(key, f"must be a string, got {type(value).__name__} {value!r}")
        return self._expand(value, key)

    def strings(self, key: str) -> list[str] | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, str) or not isinstance(value, list):
            raise self._fail(
                key, f'must be a list of strings like ["a", "b"], got {type(value).__name__}'
            )
        items: list[str] = []
        for index, item in enumerate(value):
            if isinstance(item, bool) or not isinstance(item, str | int | float):
                raise self._fail(
                    f"{key}[{index}]", f"must be a string, got {type(item).__name__} {item!r}"
                )
            items.append(self._expand(str(item), f"{key}[{index}]"))
        return items

    def mapping(self, key: str) -> dict[str, str]:
        value = self.data.get(key)
        if value is None:
            return {}
        if not isinstance(value, Mapping):
            raise self._fail(
                key,
                f'must be an object of strings like {{"NAME": "value"}}, got '
                f"{type(value).__name__}",
            )
        result: dict[str, str] = {}
        for item_key, item in value.items():
            where = f"{key}.{item_key}"
            if isinstance(item, bool) or not isinstance(item, str | int | float):
                raise self._fail(where, f"must be a string, got {type(item).__name__} {item!r}")
            result[str(item_key)] = self._expand(str(item), where)
        return result

    def number(self, key: str) -> float | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._fail(key, f"must be a number of seconds, got {value!r}")
        return float(value)

    def integer(self, key: str, default: int) -> int:
        value = self.data.get(key)
        if value is None:
            return default
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(key, f"must be a whole number, got {value!r}")
        return value

    def transport(self) -> Transport:
        key = "transport" if "transport" in self.data else "type"
        value = self.data.get(key)
        if value is None:
            return "stdio"  # refined from 'url' by MCPServerConfig
        if not isinstance(value, str) or value.lower() not in _TRANSPORTS:
            raise self._fail(
                key, f"must be one of 'stdio', 'http' (streamable HTTP) or 'sse', got {value!r}"
            )
        transport = _TRANSPORTS[value.lower()]
        if transport == "stdio" and "url" in self.data:
            raise self._fail(key, "is 'stdio' but the server has a 'url'; use 'http' or 'sse'")
        if transport != "stdio" and "command" in self.data:
            raise self._fail(key, f"is {value!r} but the server has a 'command'; use 'stdio'")
        return transport


__all__ = [
    "MCPConfigError",
    "MCPServerConfig",
    "Transport",
    "expand_variables",
    "load_config",
    "parse_config",
]
