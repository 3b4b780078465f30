"""The filtering proxy: real sockets on 127.0.0.1, and the sandbox routed through it.

Local listeners stand in for domains: the proxy's ``resolve`` pins ``allowed.test`` and
``denied.test`` to 127.0.0.1, so no traffic ever leaves this machine.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from loopwright.sandbox import (
    BubblewrapSandbox,
    NetworkPolicy,
    NetworkProxy,
    ProcessSandbox,
    Sandbox,
    SandboxConfig,
)
from loopwright.sandbox.netproxy import DomainAllowlist

PINNED = {"allowed.test": "127.0.0.1", "denied.test": "127.0.0.1"}


@dataclass
class Listener:
    """An HTTP/1.0 server on 127.0.0.1 that records every request it gets."""

    port: int = 0
    requests: list[bytes] = field(default_factory=list)


@pytest.fixture
async def listener() -> AsyncIterator[Listener]:
    seen = Listener()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError):
            head = b""
        seen.requests.append(head)
        writer.write(b"HTTP/1.0 200 OK\r\nContent-Length: 5\r\n\r\nhello")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    seen.port = server.sockets[0].getsockname()[1]
    async with server:
        yield seen


@pytest.fixture
async def proxy() -> AsyncIterator[NetworkProxy]:
    proxy = NetworkProxy(["allowed.test", "*.wild.test", "localhost"], resolve=PINNED)
    await proxy.start(host="127.0.0.1", port=0)
    yield proxy
    await proxy.aclose()


async def exchange(proxy: NetworkProxy, *messages: bytes) -> bytes:
    """Send ``messages`` to the proxy one after the other; return all it answered."""
    assert proxy.tcp_address is not None
    reader, writer = await asyncio.open_connection(*proxy.tcp_address)
    received = b""
    for message in messages:
        writer.write(message)
        await writer.drain()
        if message.startswith(b"CONNECT"):
            received += await reader.readuntil(b"\r\n\r\n")
    received += await reader.read()
    writer.close()
    return received


# --- the allowlist -----------------------------------------------------------------------


def test_allowlist_matches_exact_names_and_wildcard_subdomains() -> None:
    allowlist = DomainAllowlist(["PyPI.org.", "*.pythonhosted.org"])
    assert allowlist.allows("pypi.org")
    assert allowlist.allows("PYPI.ORG.")
    assert allowlist.allows("files.pythonhosted.org")
    assert not allowlist.allows("pythonhosted.org")  # the wildcard is for subdomains
    assert not allowlist.allows("evilpypi.org")
    assert not allowlist.allows("pypi.org.evil.com")
    assert not allowlist.allows("notpythonhosted.org")
    assert not DomainAllowlist([])


# --- the proxy on its own ----------------------------------------------------------------


async def test_connect_to_an_allowed_host_is_tunnelled(
    proxy: NetworkProxy, listener: Listener
) -> None:
    answer = await exchange(
        proxy,
        f"CONNECT allowed.test:{listener.port} HTTP/1.1\r\nHost: allowed.test\r\n\r\n".encode(),
        b"GET /through-the-tunnel HTTP/1.0\r\n\r\n",
    )
    assert answer.startswith(b"HTTP/1.1 200 Connection established\r\n\r\nHTTP/1.0 200 OK")
    assert answer.endswith(b"hello")
    assert listener.requests == [b"GET /through-the-tunnel HTTP/1.0\r\n\r\n"]


async def test_connect_to_a_denied_host_is_refused(proxy: NetworkProxy, listener: Listener) -> None:
    answer = await exchange(proxy, f"CONNECT denied.test:{listener.port} HTTP/1.1\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 403 Forbidden")
    assert b"Network access to denied.test is not allowed" in answer
    assert b"allowed domains: allowed.test, localhost, *.wild.test" in answer
    assert listener.requests == []
    decision = proxy.decisions[-1]
    assert (decision.host, decision.allowed, decision.method) == ("denied.test", False, "CONNECT")


async def test_plain_http_is_forwarded_only_to_allowed_hosts(
    proxy: NetworkProxy, listener: Listener
) -> None:
    allowed = await exchange(
        proxy,
        f"GET http://allowed.test:{listener.port}/page?q=1 HTTP/1.1\r\n"
        f"Host: allowed.test:{listener.port}\r\nProxy-Connection: keep-alive\r\n\r\n".encode(),
    )
    denied = await exchange(
        proxy, f"GET http://denied.test:{listener.port}/ HTTP/1.1\r\n\r\n".encode()
    )
    assert allowed.endswith(b"hello")
    assert denied.startswith(b"HTTP/1.1 403")
    assert len(listener.requests) == 1
    forwarded = listener.requests[0]
    assert forwarded.startswith(b"GET /page?q=1 HTTP/1.1\r\n")  # origin form upstream
    assert b"Proxy-Connection" not in forwarded
    assert b"Connection: close" in forwarded


async def test_a_host_header_naming_another_host_is_refused(
    proxy: NetworkProxy, listener: Listener
) -> None:
    answer = await exchange(
        proxy,
        f"GET http://allowed.test:{listener.port}/ HTTP/1.1\r\nHost: denied.test\r\n\r\n".encode(),
    )
    assert answer.startswith(b"HTTP/1.1 403")
    assert listener.requests == []


async def test_origin_form_requests_are_checked_by_their_host_header(
    proxy: NetworkProxy, listener: Listener
) -> None:
    denied = await exchange(
        proxy, f"GET / HTTP/1.1\r\nHost: denied.test:{listener.port}\r\n\r\n".encode()
    )
    allowed = await exchange(
        proxy, f"GET / HTTP/1.1\r\nHost: allowed.test:{listener.port}\r\n\r\n".encode()
    )
    assert denied.startswith(b"HTTP/1.1 403")
    assert allowed.endswith(b"hello")
    assert len(listener.requests) == 1


async def test_an_allowed_name_resolving_to_a_local_address_is_refused(
    proxy: NetworkProxy, listener: Listener
) -> None:
    # "localhost" is on the list but not pinned: it resolves to loopback, which a sandbox
    # must not reach through the proxy (the host's own services, metadata endpoints)
    answer = await exchange(proxy, f"CONNECT localhost:{listener.port} HTTP/1.1\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 403")
    assert b"private or local address" in answer
    assert listener.requests == []


async def test_ip_literals_are_not_on_the_list(proxy: NetworkProxy, listener: Listener) -> None:
    answer = await exchange(proxy, f"CONNECT 127.0.0.1:{listener.port} HTTP/1.1\r\n\r\n".encode())
    assert answer.startswith(b"HTTP/1.1 403")
    assert listener.requests == []


async def test_malformed_requests_get_a_clear_error(proxy: NetworkProxy) -> None:
    assert (await exchange(proxy, b"nonsense\r\n\r\n")).startswith(b"HTTP/1.1 400")
    assert (await exchange(proxy, b"CONNECT allowed.test HTTP/1.1\r\n\r\n")).startswith(
        b"HTTP/1.1 400"
    )
    assert (await exchange(proxy, b"GET https://allowed.test/ HTTP/1.1\r\n\r\n")).startswith(
        b"HTTP/1.1 400"
    )


async def test_an_unreachable_allowed_host_is_a_bad_gateway(listener: Listener) -> None:
    proxy = NetworkProxy(["allowed.test"], resolve=PINNED)
    await proxy.start(host="127.0.0.1", port=0)
    try:
        answer = await exchange(proxy, b"CONNECT allowed.test:1 HTTP/1.1\r\n\r\n")
    finally:
        await proxy.aclose()
    assert answer.startswith(b"HTTP/1.1 502")


async def test_unix_socket_listener(tmp_path: Path, listener: Listener) -> None:
    proxy = NetworkProxy(["allowed.test"], resolve=PINNED)
    path = str(tmp_path / "proxy.sock")
    await proxy.start(unix_path=path)
    try:
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(f"GET http://allowed.test:{listener.port}/ HTTP/1.1\r\n\r\n".encode())
        await writer.drain()
        answer = await reader.read()
        writer.close()
    finally:
        await proxy.aclose()
    assert answer.endswith(b"hello")
    assert not (tmp_path / "proxy.sock").exists()  # removed on close


# --- a sandbox routed through it ---------------------------------------------------------

_NO_BWRAP = BubblewrapSandbox.unavailable_reason()
BACKENDS = [
    pytest.param(
        BubblewrapSandbox,
        id="bubblewrap",
        marks=pytest.mark.skipif(_NO_BWRAP is not None, reason=f"bubblewrap: {_NO_BWRAP}"),
    ),
    pytest.param(ProcessSandbox, id="process"),
]


@pytest.mark.parametrize("backend", BACKENDS)
async def test_sandbox_reaches_allowed_domains_only(
    backend: type[Sandbox], tmp_path: Path, listener: Listener
) -> None:
    if backend is ProcessSandbox:
        from loopwright.sandbox.process import _network_isolation_works

        if not _network_isolation_works():
            pytest.skip("no network namespaces for the process backend here")
    workspace = tmp_path / "ws"
    workspace.mkdir()
    policy = NetworkPolicy(allowed_domains=("allowed.test",), resolve=PINNED)
    port = listener.port
    command = (
        f"curl -s -S --max-time 10 http://allowed.test:{port}/plain; echo; "
        f"curl -s -S --max-time 10 -o /dev/null -w '%{{http_code}}' http://denied.test:{port}/; "
        f"echo; curl -s -S --max-time 10 --noproxy '*' http://127.0.0.1:{port}/direct; "
        'echo; python -c "import urllib.request as u; '
        f"print(u.urlopen('http://allowed.test:{port}/py', timeout=10).read().decode())\""
    )
    async with backend(SandboxConfig(network=policy)).open(workspace) as session:
        outcome = await session.run(["bash", "-c", command], time_limit=60)
        assert session.proxy is not None
        decisions = [(d.host, d.allowed) for d in session.proxy.decisions]
    lines = outcome.stdout.splitlines()
    assert lines[0] == "hello"  # allowed, through the proxy
    assert lines[1] == "403"  # denied by the proxy
    assert "Failed to connect" in outcome.stderr  # no direct route out of the namespace
    assert lines[-1] == "hello"  # Python's urllib honours the proxy variables too
    paths = [request.split(b" ")[1] for request in listener.requests]
    assert paths == [b"/plain", b"/py"]
    assert ("denied.test", False) in decisions
    assert session.proxy is None  # stopped with the session
