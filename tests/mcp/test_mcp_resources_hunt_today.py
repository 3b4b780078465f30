"""A tampered ``resources/list`` cursor is refused as invalid params, however it is made.

A cursor whose JSON nests deeply (``lw1.`` and the base64 of ``[[[[...``) raised
``RecursionError`` out of the JSON decoder, past the check that turns any other bad cursor into
INVALID_PARAMS: the client got an internal error. Driven by the official ``mcp`` client over
streamable HTTP on 127.0.0.1."""

from __future__ import annotations

import base64
from pathlib import Path

import mcp_types as types
import pytest
from test_mcp_resources_paging import connected, cursor_error, page, writer

from loopwright.mcp import AgentMCPServer
from loopwright.mcp.resources import ResourceError, parse_cursor


def cursor_of(data: bytes) -> str:
    return "lw1." + base64.urlsafe_b64encode(data).decode("ascii")


@pytest.mark.parametrize("depth", [2_000, 200_000])
def test_a_deeply_nested_cursor_is_invalid(depth: int) -> None:
    with pytest.raises(ResourceError, match="invalid cursor"):
        parse_cursor(cursor_of(b"[" * depth + b"]" * depth))


async def test_the_server_refuses_a_deeply_nested_cursor_as_invalid_params(
    tmp_path: Path,
) -> None:
    project = tmp_path / "project"
    project.mkdir()
    (project / "a.txt").write_text("a")
    server = AgentMCPServer(writer(workspace_root=str(tmp_path / "ws")), workspace=project)
    async with connected(server) as client:
        error = await cursor_error(client, cursor_of(b"[" * 100_000))
        assert error is not None
        assert error.code == types.INVALID_PARAMS
        assert "invalid cursor" in error.message
        # the server still answers, from the start
        listed = await page(client, None)
        assert [resource.name for resource in listed.resources] == ["a.txt"]
