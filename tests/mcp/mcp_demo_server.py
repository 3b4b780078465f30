"""A small MCP server for the tests, built on the official SDK's ``MCPServer``.

Its tools return each kind of MCP content (text, an image, an embedded resource, a resource
link, structured content), report errors, take their time, or kill their own process, so the
client's handling of each can be checked against a real server. Run it over stdio
(``python demo_server.py``) or build its SSE / streamable HTTP app with :func:`build`.
"""

from __future__ import annotations

import base64
import os
import sys

import anyio
from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import (
    CallToolResult,
    EmbeddedResource,
    ImageContent,
    ResourceLink,
    TextContent,
    TextResourceContents,
    ToolAnnotations,
)

#: a 1x1 transparent PNG
PIXEL_PNG = base64.b64encode(
    bytes.fromhex(
        "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
        "1f15c4890000000d49444154789c6360000002000154a24f5d0000000049454e44ae426082"
    )
).decode()


def build() -> MCPServer:
    server = MCPServer("demo", version="1.0")
    received: list[str] = []

    @server.tool(annotations=ToolAnnotations(read_only_hint=True))
    def echo(text: str) -> str:
        """Return the text unchanged."""
        received.append("echo")
        return text

    @server.tool()
    def calls() -> str:
        """The tools called so far on this server process, in order."""
        return ",".join(received) or "none"

    @server.tool()
    def pid() -> str:
        """The server's process id."""
        return str(os.getpid())

    @server.tool()
    def picture() -> list[TextContent | ImageContent]:
        """A caption and a one-pixel image."""
        return [
            TextContent(text="a single transparent pixel"),
            ImageContent(data=PIXEL_PNG, mime_type="image/png"),
        ]

    @server.tool()
    def document() -> list[EmbeddedResource | ResourceLink]:
        """An embedded text resource and a link to another one."""
        return [
            EmbeddedResource(
                resource=TextResourceContents(
                    uri="file:///notes/todo.txt", mime_type="text/plain", text="buy milk"
                )
            ),
            ResourceLink(uri="file:///notes/done.txt", name="done.txt"),
        ]

    @server.tool()
    def forecast(city: str) -> CallToolResult:
        """Structured weather, with a short text that does not repeat it."""
        return CallToolResult(
            content=[TextContent(text=f"Forecast for {city} attached.")],
            structured_content={"city": city, "sky": "clear", "high_c": 21},
        )

    @server.tool()
    def fail(reason: str) -> str:
        """Always fails, with the reason given."""
        raise ToolError(f"failed on purpose: {reason}")

    @server.tool()
    async def slow(seconds: float) -> str:
        """Sleep, then answer."""
        await anyio.sleep(seconds)
        return f"slept {seconds}s"

    @server.tool()
    async def working(seconds: float, every: float, ctx: Context) -> str:
        """Work for ``seconds``, reporting progress every ``every`` seconds (when asked)."""
        steps = max(1, round(seconds / every))
        for step in range(1, steps + 1):
            await anyio.sleep(every)
            await ctx.report_progress(step, steps, f"step {step} of {steps}")
        return f"worked {seconds:g}s"

    @server.tool()
    def crash() -> str:
        """Kill this server process (to test restarts)."""
        print("demo server: crashing on purpose", file=sys.stderr, flush=True)
        os._exit(3)

    return server


if __name__ == "__main__":
    build().run("stdio")
