"""The audit log's record of what a tool reported beside its text (``result.metadata``): kept,
but never the credentials a tool kept from the model (an HTTP response's cookies)."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from loopwright.policy import Policy
from loopwright.policy.audit import DEFAULT_AUDIT_PATH
from loopwright.tools import ToolRegistry
from loopwright.tools.http import HTTP

COOKIE = "session=Zx81kQ2pLm77Aa; HttpOnly"


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        body = b'{"ok": true}'
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Set-Cookie", COOKIE)
        self.send_header("X-Api-Key", "k-12345678")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server() -> Iterator[str]:
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}/data"
    httpd.shutdown()
    httpd.server_close()


@pytest.mark.parametrize("redact", [False, True])
async def test_an_http_calls_metadata_is_logged_without_its_credentials(
    tmp_path: Path, server: str, redact: bool
) -> None:
    """The log keeps the status, URL and size the HTTP tool reported, and (with or without
    redaction) not the cookie or key headers of the response, which the model never saw: the
    log sits in the workspace, where the agent's Read can reach it."""
    registry = ToolRegistry(tmp_path, policy=Policy(audit=True, redact=redact))
    registry.register_all([HTTP(allow_domains=["127.0.0.1"], allowed_networks=["127.0.0.1/32"])])
    result = await registry.execute("HTTP", {"url": server}, call_id="h1")
    assert not result["is_error"], result["content"]
    assert "Zx81kQ2pLm77Aa" not in str(result["content"])  # the model does not see it

    text = (tmp_path / DEFAULT_AUDIT_PATH).read_text(encoding="utf-8")
    assert "Zx81kQ2pLm77Aa" not in text
    assert "k-12345678" not in text
    (record,) = (json.loads(line) for line in text.splitlines())
    reported = record["result"]["metadata"]
    assert reported["status"] == 200
    assert reported["url"] == server
    assert reported["bytes"] == len(b'{"ok": true}')
    headers = {name.lower(): value for name, value in reported["headers"].items()}
    assert headers["content-type"] == "application/json"
    assert headers["set-cookie"] == "[REDACTED:set-cookie]"
    assert headers["x-api-key"] == "[REDACTED:x-api-key]"
