"""The sandbox interface on the ``process`` backend: real child processes, real kills.

What every backend shares (output capture, timeouts that kill the whole tree, cleanup of
what a command leaves behind, the scrubbed environment, cancellation) is tested here on the
backend that runs everywhere; bubblewrap's isolation is in test_bubblewrap.py.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from pathlib import Path

import pytest

from loopwright.sandbox import (
    BubblewrapSandbox,
    OutputBuffer,
    ProcessSandbox,
    ResourceLimits,
    SandboxConfig,
    SandboxError,
    SandboxUnavailable,
    create_sandbox,
)
from loopwright.sandbox.base import DEFAULT_ENV_PASSTHROUGH


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws.resolve()


VENV_BIN = os.path.dirname(os.path.abspath(sys.executable))


def live(marker: str) -> list[int]:
    """Pids of live (not zombie) processes whose command line contains ``marker``."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{entry}/stat") as handle:
                state = handle.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmdline and state != "Z":
            found.append(int(entry))
    return found


async def started(marker: str, count: int) -> None:
    """Wait until ``count`` processes carry the marker (bounded by pytest's timeout)."""
    while True:
        if len(live(marker)) >= count:
            return
        await asyncio.sleep(0.01)


def kill_marked(marker: str) -> None:
    for pid in live(marker):
        os.kill(pid, 9)


# --- output ------------------------------------------------------------------------------


def test_output_buffer_keeps_head_and_tail_and_counts_the_rest() -> None:
    buffer = OutputBuffer(10)
    buffer.feed(b"0123456789abcdefghij")
    assert buffer.total == 20
    assert buffer.dropped == 10
    text, cut = buffer.take()
    assert text == "01234\n[... 10 bytes cut here ...]\nfghij"
    assert cut == 10
    assert buffer.take() == ("", 0)  # taken: empty again


def test_output_buffer_does_not_split_a_character_when_nothing_is_cut() -> None:
    buffer = OutputBuffer(10)
    for byte in "héllo".encode():
        buffer.feed(bytes([byte]))
    assert buffer.text() == "héllo"


async def test_runs_in_the_workspace_and_captures_both_streams(workspace: Path) -> None:
    async with ProcessSandbox().open(workspace) as session:
        outcome = await session.run(["bash", "-c", "pwd; echo oops >&2; exit 3"], time_limit=30)
    assert outcome.stdout == f"{workspace}\n"
    assert outcome.stderr == "oops\n"
    assert outcome.exit_code == 3
    assert not outcome.ok


async def test_huge_output_is_capped_in_memory(workspace: Path) -> None:
    async with ProcessSandbox().open(workspace) as session:
        outcome = await session.run(
            ["bash", "-c", "head -c 50000000 /dev/zero | tr '\\0' x"],
            time_limit=60,
            max_output_bytes=1000,
        )
    assert outcome.stdout_bytes == 50_000_000
    assert outcome.stdout_cut == 50_000_000 - 1000
    assert len(outcome.stdout) < 1100


# --- environment -------------------------------------------------------------------------


async def test_environment_is_scrubbed_to_the_allowlist(
    workspace: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-canary-process-123")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "aws-canary-456")
    monkeypatch.setenv("LC_TIME", "C.UTF-8")
    async with ProcessSandbox().open(workspace) as session:
        outcome = await session.run(["env"], time_limit=30)
    env = dict(line.split("=", 1) for line in outcome.stdout.splitlines())
    assert "canary" not in outcome.stdout
    assert env["HOME"] == str(workspace / ".loopwright" / "home")
    assert env["TMPDIR"].startswith(str(workspace))
    assert env["TERM"] == "dumb"
    assert env["LC_TIME"] == "C.UTF-8"  # an allowlisted pattern (LC_*)
    assert env["PATH"].split(":")[0] == VENV_BIN
    allowed = {
        "PATH", "HOME", "TMPDIR", "TERM", "PAGER", "GIT_PAGER", "PYTHONUNBUFFERED", "PWD",
        "SHLVL", "_", "LOOPWRIGHT_SANDBOXED", "LANG", "LANGUAGE", "TZ",
    }  # fmt: skip
    assert {name for name in env if not name.startswith("LC_")} <= allowed
    assert DEFAULT_ENV_PASSTHROUGH == ("LANG", "LANGUAGE", "LC_*", "TZ")


async def test_explicit_variables_are_passed(workspace: Path) -> None:
    box = ProcessSandbox(SandboxConfig(env={"DATA_DIR": "/data"}))
    async with box.open(workspace) as session:
        outcome = await session.run(
            ["bash", "-c", "echo $DATA_DIR $EXTRA"], env={"EXTRA": "yes"}, time_limit=30
        )
    assert outcome.stdout == "/data yes\n"


# --- killing the whole tree ----------------------------------------------------------------


async def test_timeout_kills_grandchildren_that_would_outlive_it(workspace: Path) -> None:
    marker = "987.601"
    command = f"(sleep {marker}; touch escaped) & sleep {marker}"
    async with ProcessSandbox().open(workspace) as session:
        outcome = await session.run(["bash", "-c", command], time_limit=0.5)
    assert outcome.timed_out
    assert live(marker) == []


async def test_background_children_left_by_a_finished_command_are_killed(
    workspace: Path,
) -> None:
    marker = "987.602"
    async with ProcessSandbox().open(workspace) as session:
        outcome = await session.run(["bash", "-c", f"sleep {marker} & echo started"], time_limit=30)
    assert outcome.stdout == "started\n"  # returned at once: the child did not hold it
    assert outcome.exit_code == 0
    assert live(marker) == []


async def test_a_child_in_its_own_process_group_is_killed_too(workspace: Path) -> None:
    marker = "987.603"
    command = f"set -m; sleep {marker} & echo $!"  # job control: the child's own group
    async with ProcessSandbox().open(workspace) as session:
        await session.run(["bash", "-c", command], time_limit=30)
    assert live(marker) == []


async def test_a_child_in_its_own_session_is_caught_by_the_cgroup(workspace: Path) -> None:
    box = ProcessSandbox()
    if not box.cgroups_usable():
        pytest.skip("no writable pids cgroup: the process backend cannot follow setsid")
    marker = "987.604"
    async with box.open(workspace) as session:
        await session.run(["bash", "-c", f"setsid sleep {marker} & echo ok"], time_limit=30)
    assert live(marker) == []


async def test_an_escaped_process_holding_the_pipe_does_not_hang_the_call(
    workspace: Path,
) -> None:
    # without a cgroup the process backend cannot find a child that called setsid; the call
    # must still return (the pipe is closed after a short drain)
    box = ProcessSandbox()
    box._cgroups_usable = False
    marker = "987.605"
    try:
        async with box.open(workspace) as session:
            outcome = await session.run(
                ["bash", "-c", f"setsid sleep {marker} & echo ok"], time_limit=30
            )
        assert outcome.stdout == "ok\n"
    finally:
        kill_marked(marker)


async def test_cancelling_the_caller_kills_the_tree(workspace: Path) -> None:
    marker = "987.606"
    async with ProcessSandbox().open(workspace) as session:
        task = asyncio.ensure_future(
            session.run(["bash", "-c", f"sleep {marker} & sleep {marker}"], time_limit=60)
        )
        await started(marker, 3)  # bash and its two sleeps
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert live(marker) == []


async def test_closing_the_session_kills_what_runs(workspace: Path) -> None:
    marker = "987.607"
    session = ProcessSandbox().open(workspace)
    process = await session.spawn(["bash", "-c", f"sleep {marker} & sleep {marker}"])
    await started(marker, 3)
    assert process in session.processes
    await session.aclose()
    assert live(marker) == []
    assert process.killed
    with pytest.raises(SandboxError, match="closed"):
        await session.spawn(["true"])


# --- errors and selection ----------------------------------------------------------------


async def test_missing_workspace_is_a_clear_error(tmp_path: Path) -> None:
    session = ProcessSandbox().open(tmp_path / "nope")
    with pytest.raises(SandboxError, match="does not exist; create it"):
        await session.spawn(["true"])


async def test_missing_program_is_a_clear_error(workspace: Path) -> None:
    async with ProcessSandbox().open(workspace) as session:
        with pytest.raises(SandboxError, match="Could not start 'no-such-program-x'"):
            await session.spawn(["no-such-program-x"])


async def test_network_is_cut_off_when_the_machine_allows_it(workspace: Path) -> None:
    from loopwright.sandbox.process import _network_isolation_works

    if not _network_isolation_works():
        pytest.skip("no network namespaces for the process backend here")
    connections: list[str] = []

    def accepted(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append("connected")
        writer.close()

    server = await asyncio.start_server(accepted, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    code = f"import socket; socket.create_connection(('127.0.0.1', {port}), timeout=5)"
    async with server, ProcessSandbox().open(workspace) as session:
        outcome = await session.run(["python", "-c", code], time_limit=30)
    assert outcome.exit_code == 1
    assert "ConnectionRefusedError" in outcome.stderr or "unreachable" in outcome.stderr
    assert connections == []


def test_create_sandbox_picks_a_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    assert isinstance(create_sandbox("process"), ProcessSandbox)
    monkeypatch.setenv("LOOPWRIGHT_SANDBOX", "process")
    assert isinstance(create_sandbox(), ProcessSandbox)
    monkeypatch.delenv("LOOPWRIGHT_SANDBOX")
    expected = (
        BubblewrapSandbox if BubblewrapSandbox.unavailable_reason() is None else ProcessSandbox
    )
    assert type(create_sandbox()) is expected
    with pytest.raises(ValueError, match="unknown sandbox backend 'chroot'"):
        create_sandbox("chroot")


def test_auto_falls_back_to_process_with_a_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setattr(BubblewrapSandbox, "unavailable_reason", classmethod(lambda cls: "gone"))
    with caplog.at_level(logging.WARNING, logger="loopwright.sandbox"):
        box = create_sandbox("auto")
    assert isinstance(box, ProcessSandbox)
    assert "bubblewrap sandbox unavailable (gone)" in caplog.text
    with pytest.raises(
        SandboxUnavailable, match=r"The bubblewrap sandbox cannot run here \(gone\); fix"
    ):
        create_sandbox("bubblewrap")


def test_keyword_overrides_build_the_config() -> None:
    limits = ResourceLimits(cpu_seconds=7)
    box = ProcessSandbox(SandboxConfig(env={"A": "1"}), limits=limits)
    assert box.config.limits.cpu_seconds == 7
    assert box.config.env == {"A": "1"}
    assert box.describe()["backend"] == "process"
    assert box.describe()["network"] == "none"
