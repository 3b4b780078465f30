"""The ``HTTP`` tool: web requests an agent may make, and only those.

An agent that can fetch URLs can be talked into fetching the wrong ones: a cloud metadata
endpoint, an admin page on localhost, a database on the private network (server-side request
forgery). So every request, and every redirect hop, passes the same checks before a byte is
sent:

- the scheme is ``http`` or ``https``;
- the host is on the agent's domain allowlist (exact names, ``*.example.com`` for subdomains,
  ``*`` for any host; empty by default, so nothing is reachable until you allow it);
- the address is public: loopback, private, link-local, multicast, reserved, unspecified and
  carrier-grade NAT addresses are refused, also when written as an IPv4-mapped or 6to4 IPv6
  address, and IP addresses in decimal, octal or hexadecimal forms (``2130706433``,
  ``0x7f.1``) are refused outright. A name is resolved once, every address it resolves to is
  checked, and the connection goes to the checked address (the ``Host`` header and the TLS
  server name stay the name), so a DNS answer that changes between check and connect
  ("rebinding") cannot redirect it. ``allow_private=True`` or ``allowed_networks`` lift the
  address rule where you mean it;
- the method is allowed (``GET`` and ``HEAD`` by default);
- headers cannot override ``Host`` or set hop-by-hop headers, and the body is size-capped.

Responses are read as a stream and cut at a size cap. JSON comes back pretty-printed,
text as text, binary bodies as a one-line summary (or saved into the workspace with
``save_as``), always after the status line and the headers that matter.

Configure the tool per agent with :class:`HTTP`, a :class:`~loopwright.tools.base.Toolset`::

    Agent(model, tools=[HTTP(allow_domains=["api.github.com"], methods=["GET", "POST"])])
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import json
import os
import re
import socket
import ssl
import tempfile
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final, TypeAlias

import httpx

from loopwright.sandbox.netproxy import DomainAllowlist, normalise_host
from loopwright.sandbox.paths import SecurityError
from loopwright.tools.base import BaseTool, ToolResult, Toolset, error, ok

IPAddress: TypeAlias = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork: TypeAlias = ipaddress.IPv4Network | ipaddress.IPv6Network
#: ``await resolver(host, port)`` -> the addresses ``host`` resolves to, as strings.
Resolver: TypeAlias = Callable[[str, int], Awaitable[Sequence[str]]]

DEFAULT_METHODS: Final = ("GET", "HEAD")
KNOWN_METHODS: Final = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
DEFAULT_MAX_RESPONSE_BYTES: Final = 1_000_000
DEFAULT_MAX_DOWNLOAD_BYTES: Final = 50_000_000
DEFAULT_MAX_REQUEST_BYTES: Final = 1_000_000
USER_AGENT: Final = "loopwright-http/1"

#: Headers a caller may not set: the host comes from the URL, the framing from the body, and
#: hop-by-hop headers concern one connection, which the tool owns.
FORBIDDEN_HEADERS: Final = frozenset(
    {
        "host",
        "content-length",
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
        "proxy-authenticate",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
#: Headers not carried to a redirect target on another origin.
_CREDENTIAL_HEADERS: Final = frozenset({"authorization", "cookie"})
#: Response headers worth the model's attention (besides ``x-ratelimit-*``).
KEY_HEADERS: Final = (
    "content-type",
    "content-length",
    "content-encoding",
    "content-disposition",
    "location",
    "retry-after",
    "www-authenticate",
    "last-modified",
    "etag",
)
_REDIRECTS: Final = frozenset({301, 302, 303, 307, 308})
_TEXT_TYPES: Final = (
    "application/json",
    "application/xml",
    "application/javascript",
    "application/ecmascript",
    "application/x-www-form-urlencoded",
    "application/yaml",
    "application/x-yaml",
    "application/toml",
    "application/graphql",
    "application/x-ndjson",
    "application/csv",
    "application/sql",
)
#: An IPv4 address in any form ``inet_aton`` accepts: 1-4 decimal, octal or hex parts.
_NUMERIC_HOST: Final = re.compile(r"(?:0x[0-9a-f]*|[0-9]+)(?:\.(?:0x[0-9a-f]*|[0-9]+)){0,3}")
_NAME_HOST: Final = re.compile(
    r"[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*"
)
_NAT64: Final = ipaddress.ip_network("64:ff9b::/96")


class HTTPRefused(Exception):
    """A request the HTTP tool will not send. ``rule`` names the check that refused it:
    ``url``, ``scheme``, ``domain``, ``address``, ``method``, ``header``, ``body``."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule


class HTTPFailed(Exception):
    """The request was allowed but did not get an answer (connection refused, TLS...)."""


class _HopTimeout(HTTPFailed):
    """A connect or read timeout."""

    def __init__(self, target: _Target, exc: httpx.TimeoutException) -> None:
        kind = "connecting" if isinstance(exc, httpx.ConnectTimeout) else "waiting for data"
        super().__init__(
            f"Timed out {kind} from {target.host}:{target.port}; the server is slow or "
            "unreachable. Try again later, or raise HTTP(connect_timeout=..., "
            "read_timeout=...)."
        )


@dataclass(frozen=True)
class HTTPConfig:
    """What one agent's ``HTTP`` tool may do. Lists may be given as any iterable.

    - ``allow_domains``: hosts that may be reached: exact names (``api.github.com``), IP
      addresses (``127.0.0.1``), ``*.example.com`` for subdomains, ``*`` for any host.
      Empty (the default) allows nothing.
    - ``methods``: allowed HTTP methods (default ``GET`` and ``HEAD``).
    - ``allow_private``: let requests reach loopback, private, link-local and other
      non-public addresses (only for hosts on the allowlist).
    - ``allowed_networks``: CIDR networks reachable even though not public
      (``["10.20.0.0/16"]``), a narrower alternative to ``allow_private``.
    - ``connect_timeout``, ``read_timeout`` (between bytes), ``total_timeout`` (the whole
      request, redirects included), in seconds.
    - ``max_response_bytes``: the body shown is cut here (reading stops);
      ``max_download_bytes``: the cap for bodies saved with ``save_as``;
      ``max_request_bytes``: the largest body the model may send.
    - ``max_redirects``: redirect hops followed, each checked like the first request.
    - ``headers``: sent with every request (an API token, say); dropped with cookies and
      ``Authorization`` when a redirect leaves the origin.
    - ``resolver``: ``async (host, port) -> [address, ...]`` instead of the system's DNS
      (split-horizon DNS, tests).
    - ``verify``: TLS verification: ``True``, ``False`` or an ``ssl.SSLContext``.
    """

    allow_domains: Sequence[str] = ()
    methods: Sequence[str] = DEFAULT_METHODS
    allow_private: bool = False
    allowed_networks: Sequence[str] = ()
    connect_timeout: float = 10.0
    read_timeout: float = 30.0
    total_timeout: float = 60.0
    max_response_bytes: int = DEFAULT_MAX_RESPONSE_BYTES
    max_download_bytes: int = DEFAULT_MAX_DOWNLOAD_BYTES
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES
    max_redirects: int = 5
    headers: Mapping[str, str] = field(default_factory=dict)
    resolver: Resolver | None = None
    verify: bool | ssl.SSLContext = True

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        if isinstance(self.allow_domains, str) or isinstance(self.methods, str):
            raise ValueError("allow_domains and methods take a list, e.g. ['example.com']")
        set_(self, "allow_domains", tuple(str(d) for d in self.allow_domains))
        methods = tuple(str(m).strip().upper() for m in self.methods)
        unknown = [m for m in methods if m not in KNOWN_METHODS]
        if unknown:
            raise ValueError(
                f"unknown HTTP method(s) {', '.join(unknown)}; use some of "
                f"{', '.join(sorted(KNOWN_METHODS))}"
            )
        set_(self, "methods", methods)
        if isinstance(self.allowed_networks, str):
            raise ValueError("allowed_networks takes a list, e.g. ['10.0.0.0/8']")
        set_(self, "allowed_networks", tuple(str(n) for n in self.allowed_networks))
        parse_networks(self.allowed_networks)  # fail now, not on the first request
        for name in ("connect_timeout", "read_timeout", "total_timeout"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be a positive number of seconds")
        for name in ("max_response_bytes", "max_download_bytes", "max_request_bytes"):
            if not getattr(self, name) >= 1:
                raise ValueError(f"{name} must be at least 1")
        if self.max_redirects < 0:
            raise ValueError("max_redirects must be 0 or more")
        for key, value in self.headers.items():
            if key.strip().lower() in FORBIDDEN_HEADERS:
                raise ValueError(f"header {key!r} cannot be configured: the tool sets it")
            if not isinstance(value, str):
                raise ValueError(f"header {key!r} must have a string value")
        set_(self, "headers", dict(self.headers))


def parse_networks(networks: Iterable[str]) -> list[IPNetwork]:
    """CIDR strings as networks; ``ValueError`` with a clear message for a bad one."""
    parsed: list[IPNetwork] = []
    for text in networks:
        try:
            parsed.append(ipaddress.ip_network(text.strip(), strict=False))
        except ValueError:
            raise ValueError(
                f"allowed_networks entry {text!r} is not a network; write it in CIDR form, "
                "e.g. '10.0.0.0/8' or '127.0.0.1/32'"
            ) from None
    return parsed


def non_public_reason(address: IPAddress) -> str | None:
    """Why ``address`` is not a public internet address (``"loopback"``...), or ``None``.

    Addresses embedded in IPv6 ones (IPv4-mapped ``::ffff:a.b.c.d``, 6to4, Teredo, NAT64)
    are checked as well: ``::ffff:127.0.0.1`` is loopback.
    """
    for candidate in _with_embedded(address):
        reason = _own_reason(candidate)
        if reason is not None:
            return reason
    return None


def _with_embedded(address: IPAddress) -> list[IPAddress]:
    """The IPv4 addresses embedded in ``address`` (first: they name the real destination),
    then the address itself."""
    found: list[IPAddress] = []
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            found.append(address.ipv4_mapped)
        if address.sixtofour is not None:
            found.append(address.sixtofour)
        if address.teredo is not None:
            found.extend(address.teredo)
        if address in _NAT64:
            found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    found.append(address)
    return found


def _own_reason(address: IPAddress) -> str | None:
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address.is_private:
        return "private"
    if address.is_reserved:
        return "reserved"
    if not address.is_global:
        return "non-public"
    return None


def ip_literal(host: str) -> IPAddress | None:
    """The address a URL host names when it is an IP literal in standard form, else ``None``.

    Raises :class:`HTTPRefused` for a host that is an IPv4 address in a non-standard form
    (``2130706433``, ``0x7f.1``, ``0177.0.0.1``): such forms are how allowlists get dodged.
    """
    name = host.strip("[]").rstrip(".").lower()
    if ":" in name:
        try:
            return ipaddress.IPv6Address(name)
        except ValueError:
            raise HTTPRefused("url", f"{host!r} is not a valid IPv6 address.") from None
    if not _NUMERIC_HOST.fullmatch(name):
        return None
    try:
        return ipaddress.IPv4Address(name)
    except ValueError:
        pass
    try:
        meaning = socket.inet_ntoa(socket.inet_aton(name))
    except OSError:
        raise HTTPRefused("url", f"{host!r} is not a valid host name or IP address.") from None
    raise HTTPRefused(
        "url",
        f"The host {host!r} is an IP address written in a non-standard form (it means "
        f"{meaning}); write IP addresses in dotted decimal, e.g. http://{meaning}/.",
    )


async def system_resolver(host: str, port: int) -> list[str]:
    """The addresses the system's resolver gives for ``host``."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


@dataclass(slots=True)
class _Target:
    """One checked hop: the URL, its host and port, and the addresses it may connect to."""

    url: httpx.URL
    host: str
    port: int
    addresses: list[IPAddress]
    is_literal: bool


@dataclass(slots=True)
class _Body:
    data: bytes
    total: int
    truncated: bool


class HTTPTool(BaseTool):
    """Make an HTTP request within the rules of an :class:`HTTPConfig`."""

    kind: ClassVar[str] = "network"
    path_params = ("save_as",)

    def __init__(
        self, workspace_dir: str | os.PathLike[str], config: HTTPConfig | None = None
    ) -> None:
        super().__init__(workspace_dir)
        self.config = config or HTTPConfig()
        self.allowlist = DomainAllowlist(
            _idna(d) for d in self.config.allow_domains if d.strip() != "*"
        )
        self.any_host = any(d.strip() == "*" for d in self.config.allow_domains)
        self.networks = parse_networks(self.config.allowed_networks)
        self.resolver: Resolver = self.config.resolver or system_resolver
        # the registry's deadline must not cut the tool's own total timeout short
        self.timeout = self.config.total_timeout + 5.0
        self._ssl: ssl.SSLContext | bool | None = None

    @property
    def name(self) -> str:
        return "HTTP"

    @property
    def schema(self) -> dict[str, Any]:
        config = self.config
        if self.any_host:
            domains = "any public host"
        elif self.allowlist:
            domains = ", ".join(config.allow_domains)
        else:
            domains = "none (no domain is allowed yet)"
        return {
            "name": "HTTP",
            "description": (
                "Make an HTTP request and get the status, key headers and body. JSON is "
                "pretty-printed, text returned as text, binary bodies summarised (or saved "
                f"with save_as). Allowed methods: {', '.join(config.methods)}. Allowed hosts: "
                f"{domains}. Bodies longer than {config.max_response_bytes:,} bytes are cut."
            ),
            "input_schema": {
                "type": "object",
                "properties": {
                    "url": {"type": "string", "description": "http:// or https:// URL"},
                    "method": {
                        "type": "string",
                        "description": f"One of {', '.join(config.methods)} (default GET)",
                    },
                    "headers": {
                        "type": "object",
                        "additionalProperties": {"type": "string"},
                        "description": "Request headers (not Host or hop-by-hop headers)",
                    },
                    "body": {"type": "string", "description": "Raw request body"},
                    "json": {"description": "A JSON request body (instead of body)"},
                    "follow_redirects": {
                        "type": "boolean",
                        "description": "Follow redirects (default true), each hop checked",
                    },
                    "save_as": {
                        "type": "string",
                        "description": "Save the body to this workspace path instead of "
                        "showing it (for downloads and binary files)",
                    },
                },
                "required": ["url"],
                "additionalProperties": False,
            },
        }

    async def execute(self, input: dict[str, Any]) -> ToolResult:
        total = self.config.total_timeout
        try:
            async with asyncio.timeout(total):
                return await self._request(input)
        except HTTPRefused as refused:
            return error(f"HTTP refused: {refused}", metadata={"refused_by": refused.rule})
        except HTTPFailed as failed:
            return error(str(failed))
        except TimeoutError:
            return error(
                f"HTTP request to {input.get('url')} took longer than the total timeout of "
                f"{total:g}s and was stopped; try again later or raise "
                "HTTP(total_timeout=...)."
            )
        except SecurityError as exc:
            return error(str(exc))
        except httpx.TimeoutException:
            return error(
                f"Timed out waiting for data from {input.get('url')} while reading the body; "
                "the server is slow. Try again later, or raise HTTP(read_timeout=...)."
            )
        except httpx.HTTPError as exc:
            return error(f"HTTP request to {input.get('url')} failed: {_describe(exc)}")

    # --- the request --------------------------------------------------------------------

    async def _request(self, input: dict[str, Any]) -> ToolResult:
        config = self.config
        method = str(input.get("method") or "GET").strip().upper()
        self._check_method(method)
        headers = self._headers(input.get("headers") or {})
        content = self._body(input)
        if content is not None and "json" in input and "content-type" not in headers:
            headers["content-type"] = "application/json"
        save_as = input.get("save_as")
        save_path = (
            await asyncio.to_thread(self._save_path, save_as) if isinstance(save_as, str) else None
        )
        follow = input.get("follow_redirects", True) is not False
        url = self._parse_url(str(input["url"]))
        hops: list[str] = []
        while True:
            try:
                target = await self._check(url)
            except HTTPRefused as refused:
                if not hops:
                    raise
                raise HTTPRefused(
                    refused.rule,
                    f"the redirect to {url} ({hops[-1].split()[0]}) was not followed: {refused}",
                ) from None
            response, client = await self._send(target, method, headers, content)
            try:
                location = response.headers.get("location")
                if follow and response.status_code in _REDIRECTS and location:
                    if len(hops) >= config.max_redirects:
                        raise HTTPRefused(
                            "url",
                            f"{url} redirected more than {config.max_redirects} times; "
                            "follow fewer hops or raise HTTP(max_redirects=...).",
                        )
                    next_url = self._parse_url(str(url.join(location)))
                    hops.append(f"{response.status_code} {url} -> {next_url}")
                    method, content = _redirect_method(response.status_code, method, content)
                    if content is None:
                        headers.pop("content-type", None)
                    self._check_method(method, redirect=True)
                    if _origin(next_url) != _origin(url):
                        for name in _CREDENTIAL_HEADERS:
                            headers.pop(name, None)
                    url = next_url
                    continue
                if save_path is not None:
                    return await self._save(response, save_path, method, url, hops)
                body = await _read(response, config.max_response_bytes)
                return self._render(response, body, method, url, hops)
            finally:
                await response.aclose()
                await client.aclose()

    def _save_path(self, save_as: str) -> str:
        """The resolved ``save_as`` path (inside the workspace, not a directory)."""
        path = self.path_validator.validate(save_as, "HTTP save_as")
        if os.path.isdir(path):
            raise HTTPRefused("url", f"save_as {save_as!r} is a directory; give a file path.")
        return path

    def _check_method(self, method: str, *, redirect: bool = False) -> None:
        if method in self.config.methods:
            return
        why = "The redirect needs method" if redirect else "Method"
        raise HTTPRefused(
            "method",
            f"{why} {method}, which this agent's HTTP tool does not allow (allowed: "
            f"{', '.join(self.config.methods)}); to allow it, configure "
            f"HTTP(methods=[..., {method!r}]).",
        )

    def _headers(self, given: Any) -> dict[str, str]:
        if not isinstance(given, Mapping):
            raise HTTPRefused("header", "headers must be an object of header names to strings.")
        headers = {k.lower(): v for k, v in self.config.headers.items()}
        headers.setdefault("user-agent", USER_AGENT)
        for key, value in given.items():
            name = str(key).strip().lower()
            if name in FORBIDDEN_HEADERS:
                raise HTTPRefused(
                    "header",
                    f"The {key} header cannot be set: the tool sets it from the URL and the "
                    "body, and hop-by-hop headers belong to its connection; remove it.",
                )
            text = str(value)
            if not name or any(c in name + text for c in "\r\n\x00"):
                raise HTTPRefused(
                    "header", f"Header {key!r} has an empty name or a line break; fix it."
                )
            headers[name] = text
        return headers

    def _body(self, input: dict[str, Any]) -> bytes | None:
        if "body" in input and "json" in input:
            raise HTTPRefused("body", "Give the request body as body or as json, not both.")
        if "json" in input:
            data = json.dumps(input["json"], ensure_ascii=False).encode("utf-8")
        elif input.get("body") is not None:
            data = str(input["body"]).encode("utf-8")
        else:
            return None
        if len(data) > self.config.max_request_bytes:
            raise HTTPRefused(
                "body",
                f"The request body is {len(data):,} bytes, over this agent's cap of "
                f"{self.config.max_request_bytes:,}; send less, or raise "
                "HTTP(max_request_bytes=...).",
            )
        return data

    def _parse_url(self, text: str) -> httpx.URL:
        try:
            url = httpx.URL(text.strip())
        except (httpx.InvalidURL, ValueError, TypeError) as exc:
            raise HTTPRefused("url", f"{text!r} is not a valid URL ({exc}).") from None
        if url.scheme not in ("http", "https"):
            raise HTTPRefused(
                "scheme",
                f"{text!r} is not an http:// or https:// URL; the HTTP tool fetches web URLs only.",
            )
        if not url.raw_host:
            raise HTTPRefused("url", f"{text!r} has no host.")
        return url.copy_with(fragment=None)

    async def _check(self, url: httpx.URL) -> _Target:
        """The hop's allowlist and address checks; the addresses it may connect to."""
        host = url.raw_host.decode("ascii")
        port = url.port or (443 if url.scheme == "https" else 80)
        literal = ip_literal(host)
        name = normalise_host(host)
        if literal is None and not _NAME_HOST.fullmatch(name):
            raise HTTPRefused("url", f"{host!r} is not a valid host name.")
        if not (self.any_host or self.allowlist.allows(name)):
            raise HTTPRefused(
                "domain",
                f"{name} is not on this agent's domain allowlist (allowed: "
                f"{self._allowed_text()}); to allow it, add it to HTTP(allow_domains=[...]).",
            )
        if literal is not None:
            problem = self._address_problem(literal)
            if problem is not None:
                raise HTTPRefused("address", f"{name} is {problem}")
            return _Target(url, name, port, [literal], True)
        try:
            resolved = await self.resolver(name, port)
        except OSError as exc:
            raise HTTPRefused("url", f"The name {name} does not resolve ({exc}).") from None
        allowed: list[IPAddress] = []
        problems: list[str] = []
        for text in resolved:
            try:
                address = ipaddress.ip_address(str(text))
            except ValueError:
                continue
            problem = self._address_problem(address)
            if problem is None:
                allowed.append(address)
            else:
                problems.append(f"{address}, {problem}")
        if not allowed:
            if problems:
                raise HTTPRefused("address", f"{name} resolves to {problems[0]}")
            raise HTTPRefused("url", f"The name {name} does not resolve to an IP address.")
        return _Target(url, name, port, allowed, False)

    def _address_problem(self, address: IPAddress) -> str | None:
        """Why the address may not be reached, with how to allow it, or ``None``."""
        if self.config.allow_private:
            return None
        reason = non_public_reason(address)
        if reason is None:
            return None
        plain = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) else None
        for network in self.networks:
            if address in network or (plain is not None and plain in network):
                return None
        article = "an" if reason[0] in "aeiou" else "a"
        return (
            f"{article} {reason} address, which this agent's HTTP tool may not reach; "
            "to allow it, configure HTTP(allow_private=True) or "
            f"HTTP(allowed_networks=['{address}/{address.max_prefixlen}'])."
        )

    def _allowed_text(self) -> str:
        return ", ".join(self.config.allow_domains) or "none"

    async def _send(
        self, target: _Target, method: str, headers: dict[str, str], content: bytes | None
    ) -> tuple[httpx.Response, httpx.AsyncClient]:
        """Send one hop to a checked address; the response's body is not read yet.

        A fresh client per hop: a pooled connection is keyed by address, and one opened
        (and TLS-verified) for another name must not carry this request.
        """
        config = self.config
        timeout = httpx.Timeout(
            connect=config.connect_timeout,
            read=config.read_timeout,
            write=config.read_timeout,
            pool=config.connect_timeout,
        )
        request_headers = dict(headers)
        request_headers["host"] = target.url.netloc.decode("ascii")
        extensions: dict[str, Any] = {}
        if target.url.scheme == "https" and not target.is_literal:
            extensions["sni_hostname"] = target.host
        failure: Exception | None = None
        for address in target.addresses:
            client = httpx.AsyncClient(
                verify=self._ssl_context(),
                timeout=timeout,
                follow_redirects=False,
                trust_env=False,  # never through a proxy that would resolve the name again
            )
            pinned = target.url.copy_with(host=str(address))
            request = client.build_request(
                method, pinned, headers=request_headers, content=content, extensions=extensions
            )
            try:
                return await client.send(request, stream=True), client
            except httpx.ConnectError as exc:
                failure = exc
                await client.aclose()
            except httpx.TimeoutException as exc:
                await client.aclose()
                raise _HopTimeout(target, exc) from None
            except httpx.HTTPError as exc:
                await client.aclose()
                raise HTTPFailed(f"{method} {target.url} failed: {_describe(exc)}") from None
            except BaseException:
                await client.aclose()
                raise
        if failure is not None and "CERTIFICATE_VERIFY_FAILED" in str(failure):
            raise HTTPFailed(
                f"The TLS certificate of {target.host}:{target.port} could not be verified "
                f"({failure}); the server is not who it claims to be, or its certificate is "
                "broken. Do not work around it unless you trust the server."
            )
        raise HTTPFailed(
            f"Could not connect to {target.host}:{target.port} "
            f"({_describe(failure) if failure else 'no address'}); check the URL or try later."
        )

    def _ssl_context(self) -> ssl.SSLContext | bool:
        if self._ssl is None:
            verify = self.config.verify
            self._ssl = httpx.create_ssl_context() if verify is True else verify
        return self._ssl

    # --- the answer ---------------------------------------------------------------------

    def _head(
        self, response: httpx.Response, method: str, url: httpx.URL, hops: list[str]
    ) -> list[str]:
        lines = [f"HTTP {response.status_code} {response.reason_phrase}".rstrip()]
        lines.append(f"{method} {url}")
        lines += [f"Redirected: {hop}" for hop in hops]
        for name in KEY_HEADERS:
            value = response.headers.get(name)
            if value is not None:
                lines.append(f"{name}: {value}")
        lines += [
            f"{name}: {value}"
            for name, value in response.headers.items()
            if name.lower().startswith("x-ratelimit-")
        ]
        return lines

    def _render(
        self,
        response: httpx.Response,
        body: _Body,
        method: str,
        url: httpx.URL,
        hops: list[str],
    ) -> ToolResult:
        lines = self._head(response, method, url, hops)
        content_type = response.headers.get("content-type", "")
        metadata = _metadata(response, url, body.total, body.truncated)
        if not body.data:
            lines.append("" if method == "HEAD" else "\n(empty body)")
            return ok("\n".join(lines).rstrip(), metadata=metadata)
        text = _as_text(body.data, content_type, response.charset_encoding)
        if text is None:
            size = f"{body.total:,} bytes" + (" or more" if body.truncated else "")
            lines.append(
                f"\nBinary body ({content_type or 'unknown type'}, {size}) not shown; call "
                "again with save_as to store it in the workspace."
            )
            return ok("\n".join(lines), metadata=metadata)
        if _is_json(content_type) and not body.truncated:
            with contextlib.suppress(ValueError):
                text = json.dumps(json.loads(text), indent=1, ensure_ascii=False)
        lines.append("")
        lines.append(text)
        if body.truncated:
            lines.append(
                f"\n[Body truncated: only the first {len(body.data):,} bytes were read (the "
                f"cap is {self.config.max_response_bytes:,}). Use save_as to download it "
                "whole, or request less (a range, a page, a filter).]"
            )
        return ok("\n".join(lines), metadata=metadata)

    async def _save(
        self,
        response: httpx.Response,
        path: str,
        method: str,
        url: httpx.URL,
        hops: list[str],
    ) -> ToolResult:
        """Stream the body into ``path`` (atomically); nothing is written if over the cap."""
        cap = self.config.max_download_bytes
        descriptor, temp = await asyncio.to_thread(self._temp_beside, path)
        total = 0
        try:
            with os.fdopen(descriptor, "wb") as handle:
                async for chunk in response.aiter_bytes():
                    total += len(chunk)
                    if total > cap:
                        break
                    await asyncio.to_thread(handle.write, chunk)
            if total > cap:
                await asyncio.to_thread(os.unlink, temp)
            else:
                await asyncio.to_thread(os.replace, temp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp)
            raise
        lines = self._head(response, method, url, hops)
        metadata = _metadata(response, url, total, total > cap)
        if total > cap:
            lines.append(
                f"\nNot saved: the body is larger than the download cap of {cap:,} bytes; "
                "raise HTTP(max_download_bytes=...) to allow bigger downloads."
            )
            return error("\n".join(lines), metadata=metadata)
        content_type = response.headers.get("content-type", "unknown type")
        lines.append(f"\nSaved {total:,} bytes ({content_type}) to {self.relative(path)}.")
        return ok("\n".join(lines), metadata={**metadata, "saved_as": path})

    def _temp_beside(self, path: str) -> tuple[int, str]:
        """A temporary file in ``path``'s directory (created as needed), to rename over it."""
        directory = os.path.dirname(path)
        try:
            os.makedirs(directory, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise HTTPRefused(
                "url", f"Cannot save to {self.relative(path)}: part of its path is a file."
            ) from None
        return tempfile.mkstemp(prefix=".download-", dir=directory)


class HTTP(Toolset):
    """The ``HTTP`` tool configured for an agent: ``HTTP(allow_domains=[...], ...)``.

    Takes the fields of :class:`HTTPConfig` as keyword arguments (or a ready ``config``).
    """

    def __init__(self, config: HTTPConfig | None = None, **options: Any) -> None:
        if config is not None and options:
            raise ValueError("give either an HTTPConfig or keyword options, not both")
        self.config = config if config is not None else HTTPConfig(**options)

    def bind(self, workspace_dir: str, session_id: str | None = None) -> list[BaseTool]:
        return [HTTPTool(workspace_dir, self.config)]


def _redirect_method(status: int, method: str, content: bytes | None) -> tuple[str, bytes | None]:
    """The method and body of the request a redirect asks for (as browsers do)."""
    if status == 303 and method != "HEAD":
        return "GET", None
    if status in (301, 302) and method == "POST":
        return "GET", None
    return method, content


def _origin(url: httpx.URL) -> tuple[str, bytes, int | None]:
    return url.scheme, url.raw_host, url.port


async def _read(response: httpx.Response, cap: int) -> _Body:
    """Read the body up to ``cap`` bytes; stop there (the rest is never downloaded)."""
    parts: list[bytes] = []
    size = 0
    async for chunk in response.aiter_bytes():
        if size + len(chunk) > cap:
            parts.append(chunk[: cap - size])
            return _Body(b"".join(parts), size + len(chunk), True)
        parts.append(chunk)
        size += len(chunk)
    return _Body(b"".join(parts), size, False)


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def _is_json(content_type: str) -> bool:
    media = _media_type(content_type)
    return media == "application/json" or media.endswith("+json")


def _as_text(data: bytes, content_type: str, charset: str | None) -> str | None:
    """The body as text, or ``None`` when it is binary."""
    media = _media_type(content_type)
    declared_text = (
        media.startswith("text/") or media in _TEXT_TYPES or media.endswith(("+json", "+xml"))
    )
    if not declared_text:
        if media and media != "application/octet-stream":
            return None
        if b"\x00" in data[:4096]:
            return None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError:
            return None
    try:
        return data.decode(charset or "utf-8", errors="replace")
    except LookupError:
        return data.decode("utf-8", errors="replace")


def _metadata(
    response: httpx.Response, url: httpx.URL, size: int, truncated: bool
) -> dict[str, Any]:
    return {
        "status": response.status_code,
        "url": str(url),
        "headers": dict(response.headers),
        "bytes": size,
        "truncated": truncated,
    }


def _idna(domain: str) -> str:
    """An allowlist entry as the ASCII form URLs carry (``bücher.de`` -> ``xn--bcher-kva.de``)."""
    text = domain.strip()
    if text.isascii():
        return text
    prefix = "*." if text.startswith("*.") else ""
    return prefix + text.removeprefix(prefix).encode("idna").decode("ascii")


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


__all__ = [
    "DEFAULT_METHODS",
    "HTTP",
    "HTTPConfig",
    "HTTPFailed",
    "HTTPRefused",
    "HTTPTool",
    "Resolver",
    "ip_literal",
    "non_public_reason",
    "parse_networks",
    "system_resolver",
]
