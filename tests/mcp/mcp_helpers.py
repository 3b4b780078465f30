"""Helpers for the MCP tests: real server commands, their processes, a git repository,
and an in-process HTTP server on 127.0.0.1."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import uvicorn

HERE = Path(__file__).parent
DEMO_SERVER = HERE / "mcp_demo_server.py"


def time_server() -> dict[str, Any]:
    """The PyPI ``mcp-server-time`` over stdio, in UTC."""
    return {"command": sys.executable, "args": ["-m", "mcp_server_time", "--local-timezone", "UTC"]}


def git_server(repository: Path) -> dict[str, Any]:
    """The PyPI ``mcp-server-git`` over stdio, on ``repository``."""
    return {
        "command": sys.executable,
        "args": ["-m", "mcp_server_git", "--repository", str(repository)],
    }


def demo_server(**extra: Any) -> dict[str, Any]:
    """The tests' own SDK server (``mcp_demo_server.py``) over stdio."""
    return {"command": sys.executable, "args": [str(DEMO_SERVER)], **extra}


def make_git_repo(path: Path) -> Path:
    """A git repository with one commit of ``README.md``."""
    path.mkdir(parents=True, exist_ok=True)
    git = ["git", "-c", "user.name=Ada", "-c", "user.email=ada@example.com", "-C", str(path)]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    (path / "README.md").write_text("# demo\n")
    subprocess.run([*git, "add", "README.md"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "Add the README"], check=True)
    return path


def child_pids(marker: str) -> list[int]:
    """This process's children whose command line contains ``marker`` (MCP servers are
    started in a session of their own, but stay our children)."""
    me = os.getpid()
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                fields = handle.read().rsplit(")", 1)[1].split()
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                command = handle.read().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        state, parent = fields[0], int(fields[1])
        if parent == me and marker in command and state != "Z":
            found.append(int(entry))
    return found


def alive(pid: int) -> bool:
    """Whether the process exists and is not a zombie."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


async def wait_until(condition: Any, what: str, limit: float = 15.0) -> None:
    """Poll ``condition()`` until it holds (the limit only guards against a hang)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


@asynccontextmanager
async def serving(app: Any) -> AsyncIterator[str]:
    """Serve an ASGI app on 127.0.0.1 (a free port) in this event loop; yields its base URL."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(64)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    server.capture_signals = _no_signals  # type: ignore[method-assign]
    task = asyncio.create_task(server.serve(sockets=[sock]))
    try:
        await wait_until(lambda: server.started or task.done(), "the HTTP server to start")
        if task.done():
            task.result()
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 15)
        sock.close()


class _NoSignals:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def _no_signals() -> _NoSignals:
    return _NoSignals()
