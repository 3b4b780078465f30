"""The HTTP tool against real HTTP(S) servers on 127.0.0.1, allowed explicitly by each test.

Nothing here leaves the machine: the servers listen on loopback, other names are pinned to
loopback addresses by an injected resolver (no DNS query is sent), and every refused target
is a loopback address too, so a check that failed would show up as a request the local
server received, never as traffic elsewhere. Private, link-local and other ranges are
covered by the address classification tests, which send nothing.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import json
import socket
import ssl
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from loopwright import Agent, MemoryStore, ScriptedModel, call
from loopwright.tools import ToolRegistry
from loopwright.tools.http import (
    HTTP,
    HTTPConfig,
    HTTPTool,
    ip_literal,
    non_public_reason,
)
from loopwright.tools.http import HTTPRefused as Refused

PNG = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 4


@dataclass
class Seen:
    """A request the local server received."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class LocalWeb:
    """A threaded HTTP(S) server on 127.0.0.1 and what it saw."""

    server: ThreadingHTTPServer
    scheme: str = "http"
    requests: list[Seen] = field(default_factory=list)
    sni: list[str | None] = field(default_factory=list)
    release: threading.Event = field(default_factory=threading.Event)
    big_finished: threading.Event = field(default_factory=threading.Event)
    big_outcome: list[str] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"{self.scheme}://{host}:{self.port}{path}"


def _handler(web: LocalWeb) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _reply(self, status: int, body: bytes, content_type: str, **headers: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for name, value in headers.items():
                self.send_header(name.replace("_", "-"), value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length) if length else b""
            web.requests.append(
                Seen(self.command, self.path, {k.lower(): v for k, v in self.headers.items()}, body)
            )
            url = urlsplit(self.path)
            query = {k: v[0] for k, v in parse_qs(url.query).items()}
            route = url.path
            if route == "/json":
                data = {"name": "loopwright", "items": [1, 2, 3], "nested": {"ok": True}}
                self._reply(200, json.dumps(data).encode(), "application/json", ETag='"v1"')
            elif route == "/text":
                self._reply(200, "plain text, naïve café\n".encode(), "text/plain; charset=utf-8")
            elif route == "/latin1":
                self._reply(200, "café".encode("latin-1"), "text/plain; charset=iso-8859-1")
            elif route == "/binary":
                self._reply(200, PNG, "image/png")
            elif route == "/missing":
                self._reply(404, b'{"error": "no such thing"}', "application/json")
            elif route == "/echo":
                echo = {
                    "method": self.command,
                    "headers": {k.lower(): v for k, v in self.headers.items()},
                    "body": body.decode("utf-8", "replace"),
                }
                self._reply(200, json.dumps(echo).encode(), "application/json")
            elif route == "/redirect":
                code = int(query.get("code", "302"))
                self._reply(code, b"", "text/plain", Location=query["to"])
            elif route == "/big":
                self._big(int(query["n"]))
            elif route == "/slow":
                web.release.wait(10)
                with contextlib.suppress(ConnectionError):  # the client gave up: expected
                    self._reply(200, b"late", "text/plain")
            elif route == "/drip":
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", "100000")
                self.end_headers()
                try:
                    while not web.release.wait(0.05):
                        if query.get("stall"):
                            web.release.wait(10)
                        self.wfile.write(b"x")
                        self.wfile.flush()
                except OSError:
                    pass
            else:
                self._reply(404, b"not found", "text/plain")

        def _big(self, size: int) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            chunk = b"0123456789abcdef" * 4096
            sent = 0
            try:
                while sent < size:
                    piece = chunk[: size - sent]
                    self.wfile.write(piece)
                    sent += len(piece)
                self.wfile.flush()
                web.big_outcome.append("all sent")
            except OSError:
                web.big_outcome.append(f"stopped after {sent} bytes")
            finally:
                web.big_finished.set()

        do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = _handle

    return Handler


def _serve(tls: ssl.SSLContext | None = None) -> Iterator[LocalWeb]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    server.daemon_threads = True
    web = LocalWeb(server, scheme="https" if tls else "http")
    server.RequestHandlerClass = _handler(web)
    if tls is not None:
        tls.sni_callback = lambda sock, name, ctx: web.sni.append(name)
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield web
    finally:
        web.release.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def web() -> Iterator[LocalWeb]:
    yield from _serve()


def pinned(mapping: dict[str, list[str]], calls: list[str] | None = None) -> Any:
    """A resolver answering from ``mapping`` (and recording each lookup in ``calls``)."""

    async def resolve(host: str, port: int) -> Sequence[str]:
        if calls is not None:
            calls.append(host)
        if host not in mapping:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return mapping[host]

    return resolve


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def registry(tmp_path: Path, **options: Any) -> ToolRegistry:
    reg = ToolRegistry(tmp_path)
    reg.register_all([HTTP(**options)])
    return reg


LOCAL = {"allow_domains": ["127.0.0.1"], "allowed_networks": ["127.0.0.1/32"]}


# --- allowed requests -------------------------------------------------------------------


async def test_json_from_an_allowed_local_server_is_pretty_printed(
    web: LocalWeb, tmp_path: Path
) -> None:
    result = await registry(tmp_path, **LOCAL).execute("HTTP", {"url": web.url("/json")})
    assert result["is_error"] is False
    text = result["content"]
    assert isinstance(text, str)
    head, _, body = text.partition("\n\n")
    assert head.splitlines()[0] == "HTTP 200 OK"
    assert f"GET {web.url('/json')}" in head
    assert "content-type: application/json" in head
    assert 'etag: "v1"' in head
    assert json.loads(body) == {"name": "loopwright", "items": [1, 2, 3], "nested": {"ok": True}}
    assert '\n "items": [\n  1,' in body  # indented one space per level: readable, compact
    assert result["metadata"]["status"] == 200
    assert web.requests[0].headers["host"] == f"127.0.0.1:{web.port}"


async def test_text_is_returned_as_text_in_its_charset(web: LocalWeb, tmp_path: Path) -> None:
    tools = registry(tmp_path, **LOCAL)
    utf8 = await tools.execute("HTTP", {"url": web.url("/text")})
    assert str(utf8["content"]).endswith("\n\nplain text, naïve café\n")
    latin = await tools.execute("HTTP", {"url": web.url("/latin1")})
    assert str(latin["content"]).endswith("\n\ncafé")


async def test_error_statuses_are_answers_not_tool_failures(web: LocalWeb, tmp_path: Path) -> None:
    result = await registry(tmp_path, **LOCAL).execute("HTTP", {"url": web.url("/missing")})
    assert result["is_error"] is False
    assert str(result["content"]).startswith("HTTP 404 Not Found")
    assert '"error": "no such thing"' in str(result["content"])


async def test_the_same_request_without_the_allowance_is_refused(
    web: LocalWeb, tmp_path: Path
) -> None:
    url = web.url("/json")
    no_address = await registry(tmp_path, allow_domains=["127.0.0.1"]).execute("HTTP", {"url": url})
    assert no_address["is_error"] is True
    message = str(no_address["content"])
    assert "127.0.0.1 is a loopback address" in message
    assert "allow_private=True" in message
    assert "allowed_networks" in message
    assert no_address["metadata"]["refused_by"] == "address"

    no_domain = await registry(tmp_path, allow_private=True).execute("HTTP", {"url": url})
    assert no_domain["is_error"] is True
    assert "not on this agent's domain allowlist (allowed: none)" in str(no_domain["content"])
    assert "HTTP(allow_domains=[...])" in str(no_domain["content"])
    assert no_domain["metadata"]["refused_by"] == "domain"

    unconfigured = ToolRegistry(tmp_path)
    unconfigured.register(HTTPTool)  # the bare class: nothing allowed
    refused = await unconfigured.execute("HTTP", {"url": url})
    assert refused["is_error"] is True
    assert "allowlist" in str(refused["content"])
    assert web.requests == []  # nothing reached the server


async def test_localhost_resolves_to_loopback_and_is_refused_unless_allowed(
    web: LocalWeb, tmp_path: Path
) -> None:
    for host in ("localhost", "localhost.", "LOCALHOST"):
        refused = await registry(tmp_path, allow_domains=["localhost"]).execute(
            "HTTP", {"url": web.url("/text", host=host)}
        )
        assert refused["is_error"] is True, host
        assert "localhost resolves to" in str(refused["content"])
        assert "loopback address" in str(refused["content"])
    assert web.requests == []
    allowed = await registry(tmp_path, allow_domains=["localhost"], allow_private=True).execute(
        "HTTP", {"url": web.url("/text", host="localhost")}
    )
    assert allowed["is_error"] is False, allowed["content"]  # ::1 refused to connect: 127.0.0.1
    assert web.requests[0].headers["host"] == f"localhost:{web.port}"


@pytest.mark.parametrize(
    "host",
    [
        "2130706433",  # 127.0.0.1 as one decimal number
        "0x7f.1",  # hex and a short form
        "0x7f000001",
        "0177.0.0.1",  # octal
        "017700000001",
        "127.1",
        "[::ffff:127.0.0.1]",  # IPv4-mapped IPv6
        "[::ffff:7f00:1]",
        "[::1]",
        "0.0.0.0",
        "[::]",
        "127.0.0.1",
        "localhost.",
    ],
)
async def test_ip_literal_tricks_are_refused_without_an_allowance(
    web: LocalWeb, tmp_path: Path, host: str
) -> None:
    tools = registry(tmp_path, allow_domains=["*"])
    result = await tools.execute("HTTP", {"url": f"http://{host}:{web.port}/json"})
    assert result["is_error"] is True
    assert result["metadata"]["refused_by"] in ("url", "address")
    assert web.requests == []


def test_non_standard_ip_forms_say_what_they_mean() -> None:
    with pytest.raises(Refused, match=r"non-standard form \(it means 127\.0\.0\.1\)"):
        ip_literal("0x7f.1")
    with pytest.raises(Refused, match=r"means 127\.0\.0\.1"):
        ip_literal("2130706433")
    assert ip_literal("93.184.216.34") == ipaddress.ip_address("93.184.216.34")
    assert ip_literal("[2606:4700::1]") == ipaddress.ip_address("2606:4700::1")
    assert ip_literal("example.com") is None
    assert ip_literal("123.example.com") is None


@pytest.mark.parametrize(
    ("address", "reason"),
    [
        ("127.0.0.1", "loopback"),
        ("10.1.2.3", "private"),
        ("172.16.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),  # the cloud metadata endpoint
        ("100.64.0.1", "non-public"),  # carrier-grade NAT
        ("224.0.0.1", "multicast"),
        ("240.0.0.1", "private"),
        ("0.0.0.0", "unspecified"),
        ("::", "unspecified"),
        ("::1", "loopback"),
        ("fe80::1", "link-local"),
        ("fc00::1", "private"),
        ("ff02::1", "multicast"),
        ("::ffff:169.254.169.254", "link-local"),
        ("::ffff:10.0.0.1", "private"),
        ("2002:7f00:1::", "loopback"),  # 6to4 around 127.0.0.1
        ("64:ff9b::a00:1", "private"),  # NAT64 around 10.0.0.1
        ("64:ff9b::5db8:d822", "reserved"),  # NAT64 around a public address: still not direct
        ("93.184.216.34", None),
        ("2606:4700::1111", None),
    ],
)
def test_address_classification(address: str, reason: str | None) -> None:
    assert non_public_reason(ipaddress.ip_address(address)) == reason


# --- names, resolution and redirects ----------------------------------------------------


async def test_a_name_is_resolved_once_and_the_checked_address_is_used(
    web: LocalWeb, tmp_path: Path
) -> None:
    lookups: list[str] = []
    answers = iter([["127.0.0.1"], ["10.9.9.9"]])  # a rebinding DNS: private on the 2nd ask

    async def rebinding(host: str, port: int) -> Sequence[str]:
        lookups.append(host)
        return next(answers)

    tools = registry(
        tmp_path,
        allow_domains=["api.test"],
        allowed_networks=["127.0.0.1/32"],
        resolver=rebinding,
    )
    result = await tools.execute("HTTP", {"url": web.url("/echo", host="api.test")})
    assert result["is_error"] is False, result["content"]
    assert lookups == ["api.test"]
    echo = json.loads(str(result["content"]).partition("\n\n")[2])
    assert echo["headers"]["host"] == f"api.test:{web.port}"  # the name, not the address


async def test_wildcard_domains_match_subdomains_only(web: LocalWeb, tmp_path: Path) -> None:
    resolver = pinned({"a.api.test": ["127.0.0.1"], "api.test": ["127.0.0.1"]})
    tools = registry(
        tmp_path, allow_domains=["*.api.test"], allowed_networks=["127.0.0.0/8"], resolver=resolver
    )
    sub = await tools.execute("HTTP", {"url": web.url("/text", host="a.api.test")})
    assert sub["is_error"] is False
    apex = await tools.execute("HTTP", {"url": web.url("/text", host="api.test")})
    assert apex["is_error"] is True
    assert "allowlist" in str(apex["content"])


async def test_redirects_are_followed_and_reported(web: LocalWeb, tmp_path: Path) -> None:
    tools = registry(tmp_path, **LOCAL)
    result = await tools.execute("HTTP", {"url": web.url("/redirect?to=/json&code=301")})
    assert result["is_error"] is False
    text = str(result["content"])
    assert text.startswith("HTTP 200 OK")
    assert f"Redirected: 301 {web.url('/redirect?to=/json&code=301')} -> {web.url('/json')}" in text
    assert result["metadata"]["url"] == web.url("/json")

    unfollowed = await tools.execute(
        "HTTP", {"url": web.url("/redirect?to=/json"), "follow_redirects": False}
    )
    assert str(unfollowed["content"]).startswith("HTTP 302 Found")
    assert "location: /json" in str(unfollowed["content"])


async def test_a_redirect_to_a_host_off_the_allowlist_is_refused_at_the_hop(
    web: LocalWeb, tmp_path: Path
) -> None:
    lookups: list[str] = []
    resolver = pinned({"elsewhere.test": ["127.0.0.1"]}, lookups)  # never asked: refused first
    tools = registry(tmp_path, resolver=resolver, **LOCAL)
    result = await tools.execute(
        "HTTP", {"url": web.url("/redirect?to=http://elsewhere.test/secret")}
    )
    assert result["is_error"] is True
    message = str(result["content"])
    assert "the redirect to http://elsewhere.test/secret (302) was not followed" in message
    assert "elsewhere.test is not on this agent's domain allowlist" in message
    assert [r.path for r in web.requests] == ["/redirect?to=http://elsewhere.test/secret"]
    assert lookups == []


async def test_a_redirect_to_a_non_public_address_is_refused_at_the_hop(
    web: LocalWeb, tmp_path: Path
) -> None:
    # Only 127.0.0.1 is allowed; the redirect targets are other loopback addresses, so even
    # a broken check could not send anything off this machine.
    resolver = pinned({"api.test": ["127.0.0.1"], "internal.test": ["127.0.0.2"]})
    tools = registry(
        tmp_path,
        allow_domains=["api.test", "internal.test", "::ffff:127.0.0.2"],
        allowed_networks=["127.0.0.1/32"],
        resolver=resolver,
    )
    start = web.url(f"/redirect?to=http://internal.test:{web.port}/admin", host="api.test")
    by_name = await tools.execute("HTTP", {"url": start})
    assert by_name["is_error"] is True
    assert "internal.test resolves to 127.0.0.2, a loopback address" in str(by_name["content"])
    assert "allowed_networks=['127.0.0.2/32']" in str(by_name["content"])
    assert by_name["metadata"]["refused_by"] == "address"

    mapped = web.url(f"/redirect?to=http://[::ffff:127.0.0.2]:{web.port}/", host="api.test")
    by_literal = await tools.execute("HTTP", {"url": mapped})
    assert by_literal["is_error"] is True
    assert "::ffff:127.0.0.2 is a loopback address" in str(by_literal["content"])
    assert len(web.requests) == 2  # only the two redirecting requests reached anything


async def test_credentials_are_not_carried_to_another_origin(web: LocalWeb, tmp_path: Path) -> None:
    tools = registry(
        tmp_path,
        allow_domains=["127.0.0.1", "localhost"],
        allow_private=True,
        headers={"Authorization": "Bearer secret", "X-Client": "loopwright"},
    )
    same = await tools.execute("HTTP", {"url": web.url("/redirect?to=/echo")})
    assert json.loads(str(same["content"]).partition("\n\n")[2])["headers"]["authorization"]
    other = web.url("/echo", host="localhost")
    moved = await tools.execute("HTTP", {"url": web.url(f"/redirect?to={other}")})
    echo = json.loads(str(moved["content"]).partition("\n\n")[2])
    assert "authorization" not in echo["headers"]
    assert echo["headers"]["x-client"] == "loopwright"


async def test_too_many_redirects_stop(web: LocalWeb, tmp_path: Path) -> None:
    tools = registry(tmp_path, max_redirects=2, **LOCAL)
    loop = web.url("/redirect?to=/redirect%3Fto%3D/redirect%253Fto%253D/json")
    result = await tools.execute("HTTP", {"url": loop})
    assert result["is_error"] is True
    assert "redirected more than 2 times" in str(result["content"])


# --- methods, headers, bodies -----------------------------------------------------------


async def test_methods_outside_the_allowlist_are_refused(web: LocalWeb, tmp_path: Path) -> None:
    default = registry(tmp_path, **LOCAL)
    refused = await default.execute("HTTP", {"url": web.url("/echo"), "method": "POST"})
    assert refused["is_error"] is True
    assert "Method POST" in str(refused["content"])
    assert "allowed: GET, HEAD" in str(refused["content"])
    assert "HTTP(methods=[..., 'POST'])" in str(refused["content"])
    head = await default.execute("HTTP", {"url": web.url("/json"), "method": "head"})
    assert str(head["content"]).startswith("HTTP 200 OK\nHEAD ")
    assert [r.method for r in web.requests] == ["HEAD"]

    posting = registry(tmp_path, methods=["GET", "POST"], **LOCAL)
    sent = await posting.execute(
        "HTTP", {"url": web.url("/echo"), "method": "POST", "json": {"q": "naïve", "n": 1}}
    )
    echo = json.loads(str(sent["content"]).partition("\n\n")[2])
    assert echo["method"] == "POST"
    assert json.loads(echo["body"]) == {"q": "naïve", "n": 1}
    assert echo["headers"]["content-type"] == "application/json"


async def test_a_303_after_post_becomes_a_get(web: LocalWeb, tmp_path: Path) -> None:
    tools = registry(tmp_path, methods=["GET", "POST"], **LOCAL)
    result = await tools.execute(
        "HTTP",
        {"url": web.url("/redirect?to=/echo&code=303"), "method": "POST", "body": "payload"},
    )
    echo = json.loads(str(result["content"]).partition("\n\n")[2])
    assert echo["method"] == "GET"
    assert echo["body"] == ""
    assert [r.method for r in web.requests] == ["POST", "GET"]


@pytest.mark.parametrize("header", ["Host", "Transfer-Encoding", "Connection", "content-length"])
async def test_host_and_hop_by_hop_headers_are_refused(
    web: LocalWeb, tmp_path: Path, header: str
) -> None:
    tools = registry(tmp_path, **LOCAL)
    result = await tools.execute(
        "HTTP", {"url": web.url("/echo"), "headers": {header: "evil.example"}}
    )
    assert result["is_error"] is True
    assert f"The {header} header cannot be set" in str(result["content"])
    assert web.requests == []


async def test_custom_headers_are_sent(web: LocalWeb, tmp_path: Path) -> None:
    tools = registry(tmp_path, **LOCAL)
    result = await tools.execute(
        "HTTP", {"url": web.url("/echo"), "headers": {"Accept": "application/json", "X-A": "1"}}
    )
    headers = json.loads(str(result["content"]).partition("\n\n")[2])["headers"]
    assert headers["accept"] == "application/json"
    assert headers["x-a"] == "1"
    assert headers["user-agent"].startswith("loopwright")


async def test_request_bodies_over_the_cap_are_refused(web: LocalWeb, tmp_path: Path) -> None:
    tools = registry(tmp_path, methods=["POST"], max_request_bytes=10, **LOCAL)
    result = await tools.execute(
        "HTTP", {"url": web.url("/echo"), "method": "POST", "body": "x" * 11}
    )
    assert result["is_error"] is True
    assert "11 bytes, over this agent's cap of 10" in str(result["content"])
    assert web.requests == []


# --- size caps, timeouts, binary bodies -------------------------------------------------


async def test_the_body_is_cut_at_the_cap_and_reading_stops(web: LocalWeb, tmp_path: Path) -> None:
    tools = registry(tmp_path, max_response_bytes=1000, **LOCAL)
    size = 64 * 1024 * 1024  # far more than the socket buffers hold
    result = await tools.execute("HTTP", {"url": web.url(f"/big?n={size}")})
    assert result["is_error"] is False
    text = str(result["content"])
    body = text.partition("\n\n")[2].partition("\n\n[Body truncated")[0]
    assert body == ("0123456789abcdef" * 63)[:1000]
    assert "[Body truncated: only the first 1,000 bytes were read" in text
    assert result["metadata"]["truncated"] is True
    assert web.big_finished.wait(10)
    assert web.big_outcome[0].startswith("stopped after")  # the server could not send it all


async def test_a_slow_server_times_out(web: LocalWeb, tmp_path: Path) -> None:
    tools = registry(tmp_path, read_timeout=0.2, **LOCAL)
    result = await tools.execute("HTTP", {"url": web.url("/slow")})
    assert result["is_error"] is True
    assert "Timed out waiting for data" in str(result["content"])
    assert "read_timeout" in str(result["content"])
    trickle = await tools.execute("HTTP", {"url": web.url("/drip?stall=1")})  # mid-body
    assert trickle["is_error"] is True
    assert "Timed out waiting for data" in str(trickle["content"])


async def test_the_total_timeout_bounds_a_trickling_response(web: LocalWeb, tmp_path: Path) -> None:
    tools = registry(tmp_path, read_timeout=5, total_timeout=0.5, **LOCAL)
    result = await tools.execute("HTTP", {"url": web.url("/drip")})
    assert result["is_error"] is True
    assert "longer than the total timeout of 0.5s" in str(result["content"])


async def test_binary_bodies_are_summarised_and_can_be_saved(web: LocalWeb, tmp_path: Path) -> None:
    tools = registry(tmp_path, **LOCAL)
    shown = await tools.execute("HTTP", {"url": web.url("/binary")})
    assert f"Binary body (image/png, {len(PNG):,} bytes) not shown" in str(shown["content"])
    assert "\x00" not in str(shown["content"])

    saved = await tools.execute(
        "HTTP", {"url": web.url("/binary"), "save_as": "downloads/pixel.png"}
    )
    assert saved["is_error"] is False
    assert f"Saved {len(PNG):,} bytes (image/png) to downloads/pixel.png" in str(saved["content"])
    assert (tmp_path / "downloads" / "pixel.png").read_bytes() == PNG

    escape = await tools.execute("HTTP", {"url": web.url("/binary"), "save_as": "../out.png"})
    assert escape["is_error"] is True
    assert "Access denied" in str(escape["content"])
    assert not (tmp_path.parent / "out.png").exists()


async def test_downloads_over_the_cap_leave_nothing_behind(web: LocalWeb, tmp_path: Path) -> None:
    tools = registry(tmp_path, max_download_bytes=5000, **LOCAL)
    result = await tools.execute("HTTP", {"url": web.url("/big?n=20000"), "save_as": "big.txt"})
    assert result["is_error"] is True
    assert "larger than the download cap of 5,000 bytes" in str(result["content"])
    assert _files(tmp_path) == []


# --- TLS: the name is verified and sent as SNI while the checked address is dialled -----


@dataclass
class Certificates:
    ca_pem: bytes
    cert_file: Path
    key_file: Path


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    x509 = pytest.importorskip("cryptography.x509")
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "loopwright test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "api.test")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("api.test")]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return Certificates(ca.public_bytes(serialization.Encoding.PEM), cert_file, key_file)


@pytest.fixture
def tls_web(certificates: Certificates) -> Iterator[LocalWeb]:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificates.cert_file, certificates.key_file)
    yield from _serve(context)


async def test_https_verifies_the_name_and_sends_it_as_sni(
    tls_web: LocalWeb, certificates: Certificates, tmp_path: Path
) -> None:
    trust = ssl.create_default_context(cadata=certificates.ca_pem.decode())
    resolver = pinned({"api.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]})
    tools = registry(
        tmp_path,
        allow_domains=["api.test", "other.test"],
        allowed_networks=["127.0.0.1/32"],
        resolver=resolver,
        verify=trust,
    )
    good = await tools.execute("HTTP", {"url": tls_web.url("/json", host="api.test")})
    assert good["is_error"] is False, good["content"]
    assert tls_web.sni == ["api.test"]
    assert tls_web.requests[0].headers["host"] == f"api.test:{tls_web.port}"

    wrong = await tools.execute("HTTP", {"url": tls_web.url("/json", host="other.test")})
    assert wrong["is_error"] is True  # the certificate is for api.test, not other.test
    assert "TLS certificate of other.test" in str(wrong["content"])
    assert "CERTIFICATE_VERIFY_FAILED" in str(wrong["content"])
    assert len(tls_web.requests) == 1


# --- configuration and the agent ---------------------------------------------------------


def test_bad_configuration_fails_at_once_with_a_clear_message() -> None:
    with pytest.raises(ValueError, match="unknown HTTP method"):
        HTTPConfig(methods=["GET", "FETCH"])
    with pytest.raises(ValueError, match="CIDR form"):
        HTTP(allowed_networks=["intranet"])
    with pytest.raises(ValueError, match="take a list"):
        HTTP(allow_domains="example.com")
    with pytest.raises(ValueError, match="cannot be configured"):
        HTTP(headers={"Host": "x"})
    with pytest.raises(ValueError, match="positive"):
        HTTP(read_timeout=0)


def test_the_schema_tells_the_model_what_is_allowed(tmp_path: Path) -> None:
    tool = HTTP(allow_domains=["api.github.com"], methods=["GET", "POST"]).bind(str(tmp_path))[0]
    description = tool.schema["description"]
    assert "Allowed methods: GET, POST" in description
    assert "Allowed hosts: api.github.com" in description
    assert tool.schema["input_schema"]["required"] == ["url"]


async def test_an_agent_calls_the_http_tool(web: LocalWeb, tmp_path: Path) -> None:
    model = ScriptedModel([call("HTTP", url=web.url("/json")), "The name is loopwright."])
    agent = Agent(
        model, tools=[HTTP(**LOCAL)], store=MemoryStore(), workspace_root=str(tmp_path / "ws")
    )
    result = await agent.collect("What is the name?")
    assert result.text == "The name is loopwright."
    [tool_result] = [e for e in result.events if e.type == "tool_result"]
    assert tool_result["is_error"] is False
    assert '"name": "loopwright"' in tool_result["content"]
    sent_back = model.requests[1].messages[-1].tool_results[0].text
    assert sent_back.startswith("HTTP 200 OK")
    await agent.aclose()
