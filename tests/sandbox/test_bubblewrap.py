"""The bubblewrap backend: what a command can see, touch and reach. Real bwrap, real files."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

import pytest

from loopwright.sandbox import BubblewrapSandbox, ResourceLimits, SandboxConfig
from loopwright.sandbox.base import RunOutcome
from loopwright.sandbox.bubblewrap import ETC_SECRETS, etc_masks, python_roots
from loopwright.sandbox.limits import MIB

REASON = BubblewrapSandbox.unavailable_reason()
pytestmark = pytest.mark.skipif(REASON is not None, reason=f"bubblewrap: {REASON}")


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws.resolve()


async def sh(workspace: Path, command: str, **config: object) -> RunOutcome:
    box = BubblewrapSandbox(SandboxConfig(**config))  # type: ignore[arg-type]
    async with box.open(workspace) as session:
        return await session.run(["bash", "-c", command], time_limit=60)


HOME = os.path.expanduser("~")
BASE_PREFIX = os.path.realpath(sys.base_prefix)


def exists(path: str) -> bool:
    return os.path.exists(path)


def host_home_entries() -> list[str]:
    try:
        return sorted(os.listdir(HOME))
    except OSError:
        return []


# --- the filesystem ----------------------------------------------------------------------


async def test_workspace_is_writable_at_its_real_path(workspace: Path) -> None:
    outcome = await sh(workspace, "pwd; echo made > made.txt && mkdir -p sub/dir && echo ok")
    assert outcome.stdout == f"{workspace}\nok\n"
    assert (workspace / "made.txt").read_text() == "made\n"


async def test_system_directories_are_read_only(workspace: Path) -> None:
    outcome = await sh(
        workspace,
        "for p in /usr/x /etc/x /bin/x /usr/local/bin/x; do touch $p 2>&1; done; ls /bin/sh",
    )
    assert outcome.stdout.count("Read-only file system") == 4
    assert "/bin/sh" in outcome.stdout
    assert not exists("/etc/x")
    assert not exists("/usr/local/bin/x")


async def test_etc_secrets_are_masked(workspace: Path) -> None:
    outcome = await sh(workspace, "cat /etc/shadow /etc/gshadow; head -c 100 /etc/passwd")
    assert outcome.stderr.count("Permission denied") == 2
    assert outcome.stdout.startswith("root:x:0:0")  # ordinary /etc files stay readable
    assert len(outcome.stdout) == 100  # nothing of the two masked files came out


def test_etc_masks_cover_what_the_host_keeps_from_other_users() -> None:
    masked = {path for path, _ in etc_masks()}
    for path in ("/etc/shadow", "/etc/gshadow"):
        if os.path.exists(path):
            assert path in masked
    for directory, _, files in os.walk("/etc"):
        for name in files:
            path = os.path.join(directory, name)
            mode = os.lstat(path).st_mode
            if not (mode & 0o004) and not os.path.islink(path):
                assert any(path == m or path.startswith(m + "/") for m in masked), path
    assert "/etc/shadow" in ETC_SECRETS


async def test_host_home_is_hidden_except_the_interpreter(workspace: Path) -> None:
    home = HOME
    outcome = await sh(workspace, f"ls -A {home} 2>&1; echo; ls -A / ")
    visible = outcome.stdout.split("\n\n")[0].split()
    needed = {
        root[len(home) + 1 :].split("/")[0]
        for root in python_roots(sys.executable)
        if root.startswith(home + "/")
    }
    assert set(visible) <= needed  # at most the directory the interpreter lives in
    hidden = [entry for entry in host_home_entries() if entry not in needed]
    assert hidden, "the host home has nothing but the interpreter: nothing to check"
    for entry in hidden:
        assert entry not in visible


async def test_only_the_interpreter_prefixes_are_visible(workspace: Path) -> None:
    roots = python_roots(sys.executable)
    assert roots  # here: the virtualenv and the pyenv installation
    base = BASE_PREFIX
    outcome = await sh(workspace, f"ls {base}/lib >/dev/null && echo base-ok; ls -A {base}/..")
    assert outcome.stdout.startswith("base-ok\n")
    siblings = outcome.stdout.split()[1:]
    assert siblings == [os.path.basename(base)]  # not the other versions next to it


async def test_python_from_the_virtualenv_imports_installed_libraries(workspace: Path) -> None:
    outcome = await sh(workspace, "python -c 'import fastjsonschema, sys; print(sys.prefix)'")
    assert outcome.exit_code == 0, outcome.stderr
    assert outcome.stdout.strip() == sys.prefix


async def test_other_workspaces_and_the_data_dir_are_invisible(
    tmp_path: Path, loopwright_home: Path
) -> None:
    root = loopwright_home / "workspaces"
    mine, other = root / "mine", root / "other"
    mine.mkdir(parents=True)
    other.mkdir()
    (other / "secret.txt").write_text("other session's data")
    (loopwright_home / "sessions.db").write_text("all sessions")
    outcome = await sh(
        mine.resolve(),
        f"cat {other}/secret.txt; cat {loopwright_home}/sessions.db; ls -A {root}",
    )
    assert "other session" not in outcome.stdout
    assert "all sessions" not in outcome.stdout
    assert outcome.stdout.split() == ["mine"]


async def test_a_workspace_inside_a_visible_directory_hides_its_siblings(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    ws = shared / "ws"
    ws.mkdir(parents=True)
    (shared / "neighbour.txt").write_text("private")
    outcome = await sh(
        ws.resolve(),
        f"ls -A {shared.resolve()}; echo hi > ok.txt",
        read_only_paths=(str(shared),),
    )
    assert outcome.stdout.split() == ["ws"]
    assert (ws / "ok.txt").read_text() == "hi\n"


async def test_tmp_is_private_and_size_limited(workspace: Path, tmp_path: Path) -> None:
    (tmp_path / "host-file").write_text("host")
    outcome = await sh(
        workspace,
        f"ls -A /tmp; cat {tmp_path}/host-file; head -c 3M /dev/zero > /tmp/fill; "
        "ls -l /tmp/fill | cut -d' ' -f5; head -c 3M /dev/zero > /dev/shm/fill; echo x > /dev/x",
        limits=ResourceLimits(tmp_bytes=MIB),
    )
    lines = outcome.stdout.split()
    assert "host-file" not in outcome.stdout
    assert "No such file or directory" in outcome.stderr
    assert lines[-1] == str(MIB)  # the tmpfs is full at its size
    assert outcome.stderr.count("No space left on device") == 2
    assert "/dev/x: Read-only file system" in outcome.stderr
    assert not (tmp_path / "fill").exists()


async def test_kernel_settings_are_read_only(workspace: Path) -> None:
    # uid 0 inside is uid 0 outside when the host runs as root: /proc/sys must not be
    # writable, or a sandbox could change global kernel settings
    outcome = await sh(
        workspace,
        "for f in /proc/sys/vm/overcommit_ratio /proc/sys/kernel/pid_max; do "
        "test -w $f && echo writable $f; done; cat /proc/sys/kernel/hostname; "
        "test -e /proc/kcore && head -c 1 /proc/kcore | wc -c",
    )
    assert "writable" not in outcome.stdout
    assert outcome.stdout.split()[0] == "sandbox"  # still the sandbox's own view
    assert outcome.stdout.split()[1:] in ([], ["0"])


# --- processes ---------------------------------------------------------------------------


async def test_only_its_own_processes_are_visible(workspace: Path) -> None:
    outcome = await sh(workspace, "ls /proc | grep -c '^[0-9]'; echo $$")
    count, own_pid = outcome.stdout.split()
    assert int(count) <= 5  # bwrap's init, bash, ls, grep (and a possible straggler)
    assert int(own_pid) <= 3
    assert str(os.getpid()) not in outcome.stdout


async def test_no_capabilities_and_no_nested_user_namespaces(workspace: Path) -> None:
    outcome = await sh(workspace, "grep CapEff /proc/self/status; unshare -Ur true; echo rc=$?")
    assert "CapEff:\t0000000000000000" in outcome.stdout
    assert "rc=1" in outcome.stdout


async def test_the_whole_namespace_dies_with_the_command(workspace: Path) -> None:
    marker = "987.701"
    outcome = await sh(workspace, f"setsid nohup sleep {marker} >/dev/null 2>&1 & echo ok")
    assert outcome.stdout == "ok\n"
    await asyncio.sleep(0)  # nothing to wait for: the namespace is gone with its init
    assert not any(marker in _cmdline(pid) for pid in os.listdir("/proc") if pid.isdigit())


def _cmdline(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as handle:
            return handle.read().decode(errors="replace")
    except OSError:
        return ""


# --- network -----------------------------------------------------------------------------


async def test_no_network_by_default(workspace: Path) -> None:
    connections: list[str] = []

    def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append("connected")
        writer.close()

    server = await asyncio.start_server(accepted, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    async with server:
        outcome = await sh(
            workspace,
            f"(echo hi > /dev/tcp/127.0.0.1/{port}) 2>&1; ip -o link 2>/dev/null | wc -l",
        )
    assert "Connection refused" in outcome.stdout
    assert connections == []


def test_command_line_has_the_isolation_flags(workspace: Path) -> None:
    prepared = BubblewrapSandbox().prepare(["true"], str(workspace), {}, None)
    argv = prepared.argv
    for flag in ("--unshare-all", "--die-with-parent", "--new-session", "--cap-drop"):
        assert flag in argv
    assert "--share-net" not in argv
    assert argv[argv.index("--bind") + 1 : argv.index("--bind") + 3] == [
        str(workspace),
        str(workspace),
    ]
    assert argv[-2:] == ["--", "true"]
    assert prepared.env["HOME"] == str(workspace / ".loopwright" / "home")
    assert prepared.env["TMPDIR"] == "/tmp"
    assert os.path.expanduser("~") not in [
        argv[i + 1] for i, a in enumerate(argv) if a == "--ro-bind"
    ]


async def test_read_only_paths_under_tmp_stay_visible_over_the_private_tmp(
    workspace: Path, tmp_path: Path
) -> None:
    """A checkout (and its virtualenv) in a temporary directory, as in CI, must still be
    reachable inside, although the sandbox mounts a private /tmp."""
    shared = tmp_path / "checkout" / ".venv"
    shared.mkdir(parents=True)
    (shared / "marker.txt").write_text("visible")
    assert str(shared).startswith("/tmp/")
    outcome = await sh(
        workspace, f"cat {shared}/marker.txt; touch {shared}/x 2>&1", read_only_paths=(str(shared),)
    )
    assert outcome.stdout.startswith("visible")
    assert "Read-only file system" in outcome.stdout
    assert not (shared / "x").exists()
