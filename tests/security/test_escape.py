"""The escape battery: attacks on the bubblewrap sandbox through the Bash and Python tools.

Each test makes one attempt, through one tool, the way a model would (a tool call through
the registry), then checks from the host that it failed and left the host unharmed: the
secret never appeared in the output, the file outside the workspace does not exist, the
listener saw no connection, no process of the sandbox is still alive. Every attempt is
counted; the run ends with "escape battery: N attempts, 0 escapes".

The bombs run under small limits (64 processes, 512 MiB, 64 MiB files, 256 MiB written) so
they stay harmless even on a busy machine; the fork bomb runs only where a pids cgroup gives
the process limit a hard bound.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from loopwright.sandbox import BubblewrapSandbox, ResourceLimits, SandboxConfig
from loopwright.sandbox.limits import MIB
from loopwright.tools import ToolRegistry, ToolResult
from loopwright.tools.python import PythonTools
from loopwright.tools.shell import ShellTools

from .conftest import Tally

REASON = BubblewrapSandbox.unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"bubblewrap: {REASON}")

LIMITS = ResourceLimits(
    cpu_seconds=60,
    memory_bytes=512 * MIB,
    file_size_bytes=64 * MIB,
    max_processes=64,
    disk_write_bytes=256 * MIB,
    tmp_bytes=64 * MIB,
    wall_time_s=120,
)
CANARY = "sk-ant-api03-CANARY-" + uuid.uuid4().hex
HOME = os.path.expanduser("~")


@dataclass
class Box:
    """One session's tools in the bubblewrap sandbox, and what the attacks aim at."""

    registry: ToolRegistry
    workspace: Path
    other_workspace: Path
    outside: Path
    connections: list[str] = field(default_factory=list)
    port: int = 0

    async def bash(self, command: str, timeout_ms: int = 30_000) -> str:
        return _text(
            await self.registry.execute("Bash", {"command": command, "timeout": timeout_ms})
        )

    async def python(self, code: str, timeout_ms: int = 30_000) -> str:
        return _text(await self.registry.execute("Python", {"code": code, "timeout": timeout_ms}))

    async def run(self, tool: str, bash: str, python: str, timeout_ms: int = 30_000) -> str:
        if tool == "Bash":
            return await self.bash(bash, timeout_ms)
        return await self.python(python, timeout_ms)


def _text(result: ToolResult) -> str:
    content = result["content"]
    assert isinstance(content, str)
    return content


@pytest.fixture
async def box(
    loopwright_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[Box]:
    monkeypatch.setenv("ANTHROPIC_API_KEY", CANARY)
    monkeypatch.setenv("LOOPWRIGHT_TEST_SECRET", CANARY)
    workspaces = loopwright_home / "workspaces"
    workspace = (workspaces / "session-a").resolve()
    other = (workspaces / "session-b").resolve()
    workspace.mkdir(parents=True)
    other.mkdir(parents=True)
    (other / "secret.txt").write_text("other session's secret " + CANARY)
    (loopwright_home / "sessions.db").write_text("every session's history " + CANARY)
    sandbox = BubblewrapSandbox(SandboxConfig(limits=LIMITS))
    registry = ToolRegistry(workspace)
    registry.register_all([ShellTools(sandbox), PythonTools(sandbox)])
    connections: list[str] = []

    def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append("connected")
        writer.close()

    server = await asyncio.start_server(accepted, "0.0.0.0", 0)
    state = Box(registry, workspace, other, tmp_path / "outside.txt", connections)
    state.port = server.sockets[0].getsockname()[1]
    async with server:
        yield state
        await registry.aclose()
    assert sandbox_processes(workspace) == [], "a sandboxed process outlived its session"


def sandbox_processes(workspace: Path, marker: str | None = None) -> list[int]:
    """Live (not zombie) processes working in the workspace or carrying the marker."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/stat") as handle:
                if handle.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
            cwd = os.readlink(f"/proc/{entry}/cwd")
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                cmdline = handle.read().decode(errors="replace")
        except OSError:
            continue
        if cwd.startswith(str(workspace)) or (marker is not None and marker in cmdline):
            found.append(int(entry))
    return found


def read_line(path: str) -> str:
    with open(path) as handle:
        return handle.readline().strip()


def write_text(path: str, text: str) -> None:
    with open(path, "w") as handle:
        handle.write(text)


def existing(paths: list[str]) -> list[str]:
    return [path for path in paths if os.path.lexists(path)]


def start_host_process(argv: list[str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(argv)


def host_addresses() -> list[str]:
    """This machine's own IPv4 addresses (loopback first); never anything remote."""
    addresses = ["127.0.0.1"]
    try:
        out = subprocess.run(
            ["hostname", "-I"], capture_output=True, text=True, timeout=5, check=False
        ).stdout
    except OSError:
        return addresses
    return addresses + [a for a in out.split() if "." in a]


def first_host_home_file() -> tuple[str, str] | None:
    """A readable file of the host's home and a piece of its content."""
    try:
        names = sorted(os.listdir(HOME))
    except OSError:
        return None
    for name in names:
        path = os.path.join(HOME, name)
        try:
            if os.path.isfile(path) and not os.path.islink(path):
                with open(path, errors="replace") as handle:
                    content = handle.read(200).strip()
                if len(content) >= 8:
                    return path, content[:40]
        except OSError:
            continue
    return None


TOOLS = ["Bash", "Python"]


# --- reading what is not ours ------------------------------------------------------------


@pytest.mark.parametrize("tool", TOOLS)
async def test_read_etc_shadow(box: Box, tally: Tally, tool: str) -> None:
    real = read_line("/etc/shadow")  # the test runs as a user who can read it
    output = await box.run(
        tool,
        "cat /etc/shadow; cat /etc/gshadow; cp /etc/shadow copy && cat copy",
        "for p in ('/etc/shadow', '/etc/gshadow'):\n"
        "    try:\n        print(open(p).read())\n"
        "    except OSError as e:\n        print(e)",
    )
    escaped = real in output
    tally.record(f"read /etc/shadow via {tool}", escaped)
    assert not escaped
    assert "Permission denied" in output


@pytest.mark.parametrize("tool", TOOLS)
async def test_read_the_host_home(box: Box, tally: Tally, tool: str) -> None:
    target = first_host_home_file()
    if target is None:
        pytest.skip("the host home has no readable file to try")
    path, content = target
    output = await box.run(
        tool,
        f"cat {path}; ls -A {HOME}; ls -A /root /home 2>&1",
        f"import os\ntry:\n    print(open({path!r}).read())\nexcept OSError as e:\n    print(e)\n"
        f"print(os.listdir({HOME!r}))",
    )
    host_entries = set(os.listdir(HOME))
    needed = {p[len(HOME) + 1 :].split("/")[0] for p in (sys.prefix, sys.base_prefix)}
    shown = {
        entry
        for entry in host_entries - needed
        if f"'{entry}'" in output or f"\n{entry}\n" in output
    }
    escaped = content in output or bool(shown)
    tally.record(f"read the host home via {tool}", escaped)
    assert not escaped, shown


@pytest.mark.parametrize("tool", TOOLS)
async def test_read_another_sessions_workspace(box: Box, tally: Tally, tool: str) -> None:
    secret = box.other_workspace / "secret.txt"
    sessions_db = box.workspace.parent.parent / "sessions.db"
    os.symlink(secret, box.workspace / "link-to-other")
    output = await box.run(
        tool,
        f"cat {secret} {sessions_db} link-to-other; echo LISTING: $(ls -A {box.workspace.parent})",
        f"import os\nfor p in ({str(secret)!r}, {str(sessions_db)!r}, 'link-to-other'):\n"
        "    try:\n        print(open(p).read())\n    except OSError as e:\n        print(e)\n"
        f"print('LISTING:', *os.listdir({str(box.workspace.parent)!r}))",
    )
    listing = next(line for line in output.splitlines() if line.startswith("LISTING:"))
    escaped = CANARY in output or listing.split()[1:] != ["session-a"]
    tally.record(f"read another session's workspace via {tool}", escaped)
    assert not escaped


@pytest.mark.parametrize("tool", TOOLS)
async def test_read_the_parents_environment(box: Box, tally: Tally, tool: str) -> None:
    output = await box.run(
        tool,
        f"env; echo $ANTHROPIC_API_KEY; cat /proc/$PPID/environ /proc/1/environ "
        f"/proc/{os.getpid()}/environ; for f in /proc/[0-9]*/environ; do cat $f; done",
        "import glob, os\nprint(dict(os.environ))\n"
        f"for p in glob.glob('/proc/[0-9]*/environ') + ['/proc/{os.getpid()}/environ']:\n"
        "    try:\n        print(open(p, 'rb').read())\n    except OSError as e:\n        print(e)",
    )
    escaped = CANARY in output or "LOOPWRIGHT_TEST_SECRET" in output
    tally.record(f"read the parent's environment secrets via {tool}", escaped)
    assert not escaped


# --- changing what is not ours -----------------------------------------------------------


@pytest.mark.parametrize("tool", TOOLS)
async def test_write_outside_the_workspace(box: Box, tally: Tally, tool: str) -> None:
    name = f"escape-{uuid.uuid4().hex[:8]}"
    targets = [
        str(box.outside),
        f"/etc/{name}",
        f"/usr/local/bin/{name}",
        os.path.join(sys.prefix, name),
        str(box.other_workspace / name),
        str(box.workspace.parent / name),
        os.path.join(HOME, name),
    ]
    await box.run(
        tool,
        "; ".join(f"echo pwned > {t}; mkdir -p {t}.d" for t in targets),
        f"for t in {targets!r}:\n"
        "    try:\n        open(t, 'w').write('pwned')\n    except OSError as e:\n        print(e)",
    )
    created = existing([*targets, *(t + ".d" for t in targets)])
    tally.record(f"write outside the workspace via {tool}", bool(created))
    assert created == []


async def test_kill_a_host_process(box: Box, tally: Tally) -> None:
    victim = start_host_process(["sleep", "300"])
    try:
        output = await box.bash(
            f"kill -9 {victim.pid}; kill -9 -1; pkill -9 sleep; echo done", timeout_ms=10_000
        )
        alive = victim.poll() is None
    finally:
        victim.kill()
        victim.wait()
    tally.record("kill a host process via Bash", not alive)
    assert alive
    assert "done" in output


async def test_change_a_kernel_setting(box: Box, tally: Tally) -> None:
    setting = "/proc/sys/vm/overcommit_ratio"
    before = read_line(setting)
    wanted = str(int(before) + 1)
    output = await box.python(
        f"try:\n    open({setting!r}, 'w').write({wanted!r})\nexcept OSError as e:\n    print(e)"
    )
    after = read_line(setting)
    escaped = after != before
    if escaped:  # put it back at once
        write_text(setting, before)
    tally.record("change a kernel setting via Python", escaped)
    assert not escaped
    assert "Read-only file system" in output or "Permission denied" in output


# --- reaching the network ----------------------------------------------------------------


@pytest.mark.parametrize("tool", TOOLS)
async def test_connect_to_a_listener_on_the_host(box: Box, tally: Tally, tool: str) -> None:
    addresses = host_addresses()
    bash = "; ".join(
        f"curl -s --max-time 3 http://{a}:{box.port}/; (echo hi > /dev/tcp/{a}/{box.port})"
        for a in addresses
    )
    python = (
        "import socket\n"
        f"for a in {addresses!r}:\n"
        "    try:\n"
        f"        socket.create_connection((a, {box.port}), timeout=3)\n"
        "        print('connected', a)\n"
        "    except OSError as e:\n"
        "        print(a, e)"
    )
    output = await box.run(tool, bash, python)
    await asyncio.sleep(0)  # let the listener run its callbacks
    escaped = bool(box.connections) or "connected" in output
    tally.record(f"open a connection to 127.0.0.1 via {tool}", escaped)
    assert not escaped


# --- exhausting the host ------------------------------------------------------------------


@pytest.mark.parametrize("tool", TOOLS)
async def test_fork_bomb(box: Box, tally: Tally, tool: str) -> None:
    sandbox = BubblewrapSandbox(SandboxConfig(limits=LIMITS))
    if not sandbox.cgroups_usable():
        pytest.skip(
            "no writable pids cgroup here: without one only the watchdog bounds a fork bomb, "
            "not hard enough to run one on a shared machine"
        )
    marker = f"bomb{uuid.uuid4().hex[:6]}"
    output = await box.run(
        tool,
        f"{marker}(){{ {marker} | {marker} & }}; {marker}; sleep 30",
        f"import os, time  # {marker}\n"
        "for _ in range(100000):\n"
        "    try:\n        os.fork()\n    except OSError:\n        time.sleep(0.001)",
        timeout_ms=30_000,
    )
    leftovers = sandbox_processes(box.workspace, marker)
    stopped = "process limit" in output
    tally.record(f"fork bomb via {tool}", not stopped or bool(leftovers))
    assert stopped, output[-500:]
    assert leftovers == []


@pytest.mark.parametrize("tool", TOOLS)
async def test_memory_bomb(box: Box, tally: Tally, tool: str) -> None:
    hog = (
        "import time; a = bytearray(200 * 1024 * 1024); "
        "a[::4096] = b'x' * len(a[::4096]); time.sleep(30)"
    )
    output = await box.run(
        tool,
        # one process asking for everything, then many asking for a bit each
        "python -c 'a = bytearray(64 * 1024 ** 3)'; "
        f'for i in $(seq 8); do python -c "{hog}" & done; wait',
        "chunks = []\nwhile True:\n    chunks.append(bytearray(50 * 1024 * 1024))",
    )
    stopped = "MemoryError" in output or "memory limit" in output
    tally.record(f"memory bomb via {tool}", not stopped)
    assert stopped, output[-500:]
    assert sandbox_processes(box.workspace) == []


@pytest.mark.parametrize("tool", TOOLS)
async def test_disk_filler(box: Box, tally: Tally, tool: str) -> None:
    before = os.statvfs(box.workspace)
    output = await box.run(
        tool,
        "yes > one-big-file; for i in $(seq 100); do head -c 60M /dev/zero > f$i; done; "
        "head -c 1G /dev/zero > /tmp/fill; head -c 1G /dev/zero > /dev/shm/fill",
        "i = 0\nwhile True:\n    i += 1\n    with open(f'f{i}', 'wb') as f:\n"
        "        f.write(b'\\0' * (60 * 1024 * 1024))",
    )
    written = sum(p.stat().st_size for p in box.workspace.iterdir() if p.is_file())
    after = os.statvfs(box.workspace)
    used = (before.f_bavail - after.f_bavail) * after.f_frsize
    # the limit is checked every 0.1 s: a fast writer overshoots by what it writes meanwhile
    escaped = written > LIMITS.disk_write_bytes + 512 * MIB  # type: ignore[operator]
    tally.record(f"disk filler via {tool}", escaped)
    assert not escaped, (written, output[-300:])
    assert "disk write limit" in output
    assert used < 2 * 1024 * MIB  # the host's disk lost little (other writers share it)


@pytest.mark.parametrize("tool", TOOLS)
async def test_a_process_that_outlives_its_timeout(box: Box, tally: Tally, tool: str) -> None:
    marker = f"98{uuid.uuid4().int % 10**6}.5"
    output = await box.run(
        tool,
        f"(sleep {marker}; touch escaped) & setsid nohup sleep {marker} >/dev/null 2>&1 & "
        f"nohup sleep {marker} >/dev/null 2>&1 & disown; echo started; sleep {marker}",
        "import subprocess, time\n"
        f"subprocess.Popen(['sleep', '{marker}'], start_new_session=True)\n"
        f"subprocess.Popen(['setsid', 'sleep', '{marker}'])\n"
        "print('started', flush=True)\ntime.sleep(60)",
        timeout_ms=1000,
    )
    leftovers = sandbox_processes(box.workspace, marker)
    tally.record(f"outlive the timeout via {tool}", bool(leftovers))
    assert "timed out after 1s" in output
    assert leftovers == []


async def test_background_daemon_outliving_the_session(box: Box, tally: Tally) -> None:
    marker = f"97{uuid.uuid4().int % 10**6}.5"
    result = await box.registry.execute(
        "Bash",
        {
            "command": f"setsid nohup sleep {marker} >/dev/null 2>&1 & sleep {marker}",
            "background": True,
        },
    )
    assert not result["is_error"]
    while True:
        if sandbox_processes(box.workspace, marker):
            break
        await asyncio.sleep(0.01)
    await box.registry.aclose()  # the session closes
    leftovers = sandbox_processes(box.workspace, marker)
    tally.record("outlive the session via a background shell", bool(leftovers))
    assert leftovers == []
