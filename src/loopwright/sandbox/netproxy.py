"""A filtering HTTP(S) proxy: how a sandbox with no network reaches allowed domains only.

The sandboxed command runs in a network namespace with nothing but loopback. The proxy runs
in the host process and listens on a unix socket that is bind-mounted into the sandbox; a
tiny forwarder inside the sandbox (:data:`FORWARDER`) listens on ``127.0.0.1:<port>`` and
relays each connection to that socket, and ``HTTP_PROXY``/``HTTPS_PROXY`` point programs at
it. So ``pip install`` from an allowed index works and everything else is refused:

- ``CONNECT host:port`` (HTTPS, any TLS) is tunnelled only to an allowed host;
- plain HTTP is forwarded only when the URL's host (and the ``Host`` header, which must
  agree) is allowed;
- names are resolved by the proxy, and an allowed name that resolves to a loopback,
  private or link-local address is refused (no reaching the host's own services or a cloud
  metadata endpoint through DNS), unless ``allow_private_addresses`` is set or the name is
  pinned with ``resolve`` (used by tests to stand a local listener in for a domain).

Allowed domains are exact names (``pypi.org``) or wildcards for subdomains
(``*.pythonhosted.org``); matching ignores case and a trailing dot.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import os
import socket
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final
from urllib.parse import urlsplit

MAX_HEAD_BYTES: Final = 64 * 1024
HEAD_TIMEOUT_S: Final = 30.0
CONNECT_TIMEOUT_S: Final = 15.0
_HOP_BY_HOP: Final = frozenset(
    {"connection", "proxy-connection", "keep-alive", "proxy-authorization", "proxy-authenticate"}
)


@dataclass(frozen=True, slots=True)
class ProxyDecision:
    """One request the proxy saw: where it wanted to go and whether it was let through."""

    host: str
    port: int
    method: str
    allowed: bool
    reason: str = ""


def normalise_host(host: str) -> str:
    """Lower case, no trailing dot, no IPv6 brackets."""
    return host.strip().strip("[]").rstrip(".").lower()


class DomainAllowlist:
    """Which hosts may be reached: exact names and ``*.`` wildcards (subdomains only)."""

    def __init__(self, domains: Iterable[str]) -> None:
        self.exact: set[str] = set()
        self.suffixes: list[str] = []
        for domain in domains:
            name = normalise_host(domain)
            if not name:
                continue
            if name.startswith("*."):
                self.suffixes.append(name[1:])  # ".example.com"
            else:
                self.exact.add(name)

    def allows(self, host: str) -> bool:
        """Whether ``host`` is on the list."""
        name = normalise_host(host)
        return name in self.exact or any(name.endswith(suffix) for suffix in self.suffixes)

    def __bool__(self) -> bool:
        return bool(self.exact or self.suffixes)


class ProxyRefused(Exception):
    """A request the proxy will not forward; the message is sent back to the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class NetworkProxy:
    """The filtering proxy. ``await start(unix_path=...)`` (or ``host``/``port`` for TCP on
    loopback), ``await aclose()`` when done; :attr:`decisions` keeps the latest requests."""

    def __init__(
        self,
        allowed_domains: Iterable[str],
        *,
        resolve: Mapping[str, str] | None = None,
        allow_private_addresses: bool = False,
        connect_timeout: float = CONNECT_TIMEOUT_S,
        history: int = 1000,
    ) -> None:
        self.allowlist = DomainAllowlist(allowed_domains)
        self.resolve_overrides = {normalise_host(k): v for k, v in (resolve or {}).items()}
        self.allow_private_addresses = allow_private_addresses
        self.connect_timeout = connect_timeout
        self.decisions: deque[ProxyDecision] = deque(maxlen=history)
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[asyncio.Task[None]] = set()
        self.unix_path: str | None = None
        self.tcp_address: tuple[str, int] | None = None

    async def start(
        self, *, unix_path: str | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        """Listen on a unix socket (``unix_path``) or on TCP ``host:port``."""
        if unix_path is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(unix_path)
            self._server = await asyncio.start_unix_server(
                self._serve, path=unix_path, limit=MAX_HEAD_BYTES
            )
            os.chmod(unix_path, 0o600)
            self.unix_path = unix_path
        else:
            self._server = await asyncio.start_server(
                self._serve, host=host, port=port, limit=MAX_HEAD_BYTES
            )
            address = self._server.sockets[0].getsockname()
            self.tcp_address = (address[0], address[1])

    async def aclose(self) -> None:
        """Stop listening and drop every open tunnel."""
        if self._server is not None:
            self._server.close()
            self._server = None
        for task in list(self._connections):
            task.cancel()
        if self._connections:
            await asyncio.gather(*self._connections, return_exceptions=True)
        if self.unix_path is not None:
            with contextlib.suppress(OSError):
                os.unlink(self.unix_path)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(task)
        try:
            await self._handle(reader, writer)
        except (ConnectionError, asyncio.IncompleteReadError, TimeoutError):
            pass
        finally:
            self._connections.discard(task)
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            async with asyncio.timeout(HEAD_TIMEOUT_S):
                head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.LimitOverrunError:
            await _respond(writer, 431, "The request head is too large.")
            return
        method = "?"
        try:
            method, host, port, forwarded = self._parse(head)
            address = await self._destination(host, port, method)
        except ProxyRefused as refused:
            await _respond(writer, refused.status, str(refused))
            return
        try:
            async with asyncio.timeout(self.connect_timeout):
                upstream_reader, upstream_writer = await asyncio.open_connection(address, port)
        except (OSError, TimeoutError) as exc:
            self.decisions.append(ProxyDecision(host, port, method, True, f"unreachable: {exc}"))
            await _respond(writer, 502, f"The sandbox proxy could not reach {host}:{port}.")
            return
        self.decisions.append(ProxyDecision(host, port, method, True))
        try:
            if forwarded is None:
                writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                await writer.drain()
            else:
                upstream_writer.write(forwarded)
                await upstream_writer.drain()
            await _pipe_both(reader, writer, upstream_reader, upstream_writer)
        finally:
            upstream_writer.close()
            with contextlib.suppress(Exception):
                await upstream_writer.wait_closed()

    def _parse(self, head: bytes) -> tuple[str, str, int, bytes | None]:
        """``(method, host, port, request to forward or None for a tunnel)``."""
        try:
            text = head.decode("latin-1")
            request_line, *header_lines = text[:-4].split("\r\n")
            method, target, version = request_line.split(" ")
        except ValueError:
            raise ProxyRefused(400, "Malformed request.") from None
        headers = [line.split(":", 1) for line in header_lines if ":" in line]
        host_header = next((v.strip() for k, v in headers if k.strip().lower() == "host"), None)
        if method.upper() == "CONNECT":
            host, port = _split_host_port(target, None)
            self._check(host, port, method)
            return method, host, port, None
        if target.startswith("http://"):
            url = urlsplit(target)
            if not url.hostname:
                raise ProxyRefused(400, "The request URL has no host.")
            host, port = normalise_host(url.hostname), url.port or 80
            path = url.path or "/"
            if url.query:
                path += "?" + url.query
            if host_header is not None:
                header_host, _ = _split_host_port(host_header, 80)
                if header_host != host:
                    self._record(host, port, method, False, "Host header disagrees with the URL")
                    raise ProxyRefused(
                        403, "The Host header names a different host than the request URL."
                    )
        elif target.startswith("/") and host_header is not None:
            host, port = _split_host_port(host_header, 80)
            path = target
        else:
            raise ProxyRefused(
                400, "The sandbox proxy takes CONNECT for HTTPS and http:// URLs for HTTP."
            )
        self._check(host, port, method)
        lines = [f"{method} {path} {version}"]
        lines += [f"{k}:{v}" for k, v in headers if k.strip().lower() not in _HOP_BY_HOP]
        lines.append("Connection: close")
        return method, host, port, ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")

    def _check(self, host: str, port: int, method: str) -> None:
        if not self.allowlist.allows(host):
            self._record(host, port, method, False, "not on the allowlist")
            raise ProxyRefused(
                403,
                f"Network access to {host} is not allowed from the sandbox; allowed domains: "
                f"{self._allowed_text()}.",
            )

    def _allowed_text(self) -> str:
        names = sorted(self.allowlist.exact) + sorted("*" + s for s in self.allowlist.suffixes)
        return ", ".join(names) or "none"

    def _record(self, host: str, port: int, method: str, allowed: bool, reason: str) -> None:
        self.decisions.append(ProxyDecision(host, port, method, allowed, reason))

    async def _destination(self, host: str, port: int, method: str) -> str:
        """The address to connect to: a pinned one, or a public address the name resolves to."""
        pinned = self.resolve_overrides.get(host)
        if pinned is not None:
            return pinned
        try:
            literal = ipaddress.ip_address(host)
        except ValueError:
            literal = None
        if literal is not None:
            candidates = [literal]
        else:
            try:
                infos = await asyncio.get_running_loop().getaddrinfo(
                    host, port, type=socket.SOCK_STREAM
                )
            except OSError:
                self._record(host, port, method, False, "does not resolve")
                raise ProxyRefused(502, f"The name {host} does not resolve.") from None
            candidates = [ipaddress.ip_address(info[4][0]) for info in infos]
        for candidate in candidates:
            if self.allow_private_addresses or candidate.is_global:
                return str(candidate)
        self._record(host, port, method, False, "resolves to a private address")
        raise ProxyRefused(
            403, f"{host} resolves to a private or local address, which the sandbox may not reach."
        )


def _split_host_port(value: str, default_port: int | None) -> tuple[str, int]:
    value = value.strip()
    if value.startswith("["):  # [::1]:443
        host, _, rest = value[1:].partition("]")
        port_text = rest[1:] if rest.startswith(":") else ""
    else:
        host, sep, port_text = value.rpartition(":")
        if not sep or not port_text.isdigit():
            host, port_text = value, ""
    if not port_text:
        if default_port is None:
            raise ProxyRefused(400, "CONNECT needs host:port.")
        return normalise_host(host), default_port
    port = int(port_text)
    if not 0 < port < 65536:
        raise ProxyRefused(400, f"Invalid port {port}.")
    return normalise_host(host), port


async def _respond(writer: asyncio.StreamWriter, status: int, message: str) -> None:
    reasons = {
        400: "Bad Request",
        403: "Forbidden",
        431: "Request Header Fields Too Large",
        502: "Bad Gateway",
    }
    body = (message + "\n").encode()
    writer.write(
        f"HTTP/1.1 {status} {reasons.get(status, 'Error')}\r\n"
        f"Content-Type: text/plain; charset=utf-8\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n".encode()
        + body
    )
    with contextlib.suppress(ConnectionError):
        await writer.drain()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
        if writer.can_write_eof():
            writer.write_eof()
    except ConnectionError:
        pass


async def _pipe_both(
    client_reader: asyncio.StreamReader,
    client_writer: asyncio.StreamWriter,
    upstream_reader: asyncio.StreamReader,
    upstream_writer: asyncio.StreamWriter,
) -> None:
    await asyncio.gather(
        _pipe(client_reader, upstream_writer),
        _pipe(upstream_reader, client_writer),
    )


#: The forwarder run inside the sandbox: ``python -c FORWARDER <socket> <port> <argv...>``.
#: It binds ``127.0.0.1:<port>`` (bringing loopback up in a fresh namespace), leaves a
#: detached grandchild relaying every connection to the proxy's unix socket, then execs the
#: command, so the command's exit code and pid are its own. Standard library only.
FORWARDER: Final = r"""
import os, socket, struct, sys, threading
path, port, argv = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
try:
    import fcntl
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    request = struct.pack("16sH", b"lo", 0)
    flags = struct.unpack("16sH", fcntl.ioctl(probe, 0x8913, request))[1]
    if not flags & 1:
        fcntl.ioctl(probe, 0x8914, struct.pack("16sH", b"lo", flags | 1))
    probe.close()
except OSError:
    pass
server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
server.bind(("127.0.0.1", port))
server.listen(128)
def pump(src, dst):
    try:
        while True:
            data = src.recv(65536)
            if not data:
                break
            dst.sendall(data)
        dst.shutdown(socket.SHUT_WR)
    except OSError:
        pass
def relay(client):
    upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        upstream.connect(path)
    except OSError:
        client.close()
        return
    threading.Thread(target=pump, args=(client, upstream), daemon=True).start()
    pump(upstream, client)
if os.fork() == 0:
    if os.fork() == 0:
        null = os.open(os.devnull, os.O_RDWR)
        for fd in (0, 1, 2):
            os.dup2(null, fd)
        while True:
            client, _ = server.accept()
            threading.Thread(target=relay, args=(client,), daemon=True).start()
    os._exit(0)
os.wait()
server.close()
os.execvp(argv[0], argv)
"""

__all__ = [
    "FORWARDER",
    "DomainAllowlist",
    "NetworkProxy",
    "ProxyDecision",
    "ProxyRefused",
    "normalise_host",
]
