"""Resource limits, enforced on real processes in both host-side backends.

Every runaway here is bounded twice: by the limit under test (small values) and by the
command's time limit. Spawners that test the process limit start a fixed number of
processes (never an unbounded fork bomb: that one is in tests/security, behind a cgroup).
"""

from __future__ import annotations

import os
import resource
import signal
from pathlib import Path

import pytest

from loopwright.sandbox import (
    BubblewrapSandbox,
    ProcessSandbox,
    ResourceLimits,
    Sandbox,
    SandboxConfig,
)
from loopwright.sandbox.limits import (
    MIB,
    PidsCgroup,
    descendants,
    describe_signal,
    process_backstop,
    signal_of,
)

_NO_BWRAP = BubblewrapSandbox.unavailable_reason()
BACKENDS = [
    pytest.param(
        BubblewrapSandbox,
        id="bubblewrap",
        marks=pytest.mark.skipif(_NO_BWRAP is not None, reason=f"bubblewrap: {_NO_BWRAP}"),
    ),
    pytest.param(ProcessSandbox, id="process"),
]


@pytest.fixture
def workspace(tmp_path: Path) -> Path:
    ws = tmp_path / "ws"
    ws.mkdir()
    return ws


def sandbox(backend: type[Sandbox], *, cgroups: bool = True, **limits: object) -> Sandbox:
    box = backend(SandboxConfig(limits=ResourceLimits(**limits)))  # type: ignore[arg-type]
    if not cgroups:
        box._cgroups_usable = False
    return box


def size_of(directory: Path, pattern: str) -> int:
    return sum(path.stat().st_size for path in directory.glob(pattern))


def live(marker: str) -> list[int]:
    """Pids of live (not zombie) processes whose command line contains ``marker``.

    Markers are odd numbers (``sleep 986.701``) that no other process on the machine has in
    its command line: ``sleep 30`` also matched someone's ``sleep 300``.
    """
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as handle:
                cmdline = handle.read().replace(b"\0", b" ").decode(errors="replace")
            with open(f"/proc/{entry}/stat") as handle:
                state = handle.read().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker in cmdline and state != "Z" and int(entry) != os.getpid():
            found.append(int(entry))
    return found


# --- the settings ------------------------------------------------------------------------


def test_rlimits_are_computed_in_the_parent_and_never_above_the_hard_limit() -> None:
    limits = ResourceLimits(cpu_seconds=5, memory_bytes=256 * MIB, file_size_bytes=MIB)
    settings = {which: (soft, hard) for which, soft, hard in limits.rlimits()}
    assert settings[resource.RLIMIT_CPU] == (5, 6)  # SIGXCPU first, SIGKILL a second later
    assert settings[resource.RLIMIT_AS] == (256 * MIB, 256 * MIB)
    assert settings[resource.RLIMIT_FSIZE] == (MIB, MIB)
    assert settings[resource.RLIMIT_CORE] == (0, 0)
    for which, (soft, hard) in settings.items():
        _, current_hard = resource.getrlimit(which)
        if current_hard != resource.RLIM_INFINITY:
            assert hard <= current_hard
        assert soft <= hard


def test_a_limit_set_to_none_is_not_applied() -> None:
    limits = ResourceLimits(cpu_seconds=None, memory_bytes=None)
    kinds = {which for which, _, _ in limits.rlimits()}
    assert resource.RLIMIT_CPU not in kinds
    assert resource.RLIMIT_AS not in kinds


def test_default_memory_limit_leaves_half_the_machine_free() -> None:
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    memory = ResourceLimits().memory_bytes
    assert memory is not None
    assert memory <= physical // 2 or memory == 256 * MIB


def test_signal_names_say_which_limit_was_hit() -> None:
    assert signal_of(152) == signal.SIGXCPU
    assert signal_of(-9) == signal.SIGKILL
    assert signal_of(1) is None
    assert signal_of(None) is None
    assert "CPU time limit" in describe_signal(signal.SIGXCPU)
    assert "file size limit" in describe_signal(signal.SIGXFSZ)


# --- on real processes -------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
async def test_cpu_limit_stops_a_busy_loop(backend: type[Sandbox], workspace: Path) -> None:
    async with sandbox(backend, cpu_seconds=1).open(workspace) as session:
        outcome = await session.run(["bash", "-c", "while :; do :; done"], time_limit=60)
    assert not outcome.timed_out
    assert outcome.signal == signal.SIGXCPU


@pytest.mark.parametrize("backend", BACKENDS)
async def test_file_size_limit_stops_a_big_write(backend: type[Sandbox], workspace: Path) -> None:
    async with sandbox(backend, file_size_bytes=MIB).open(workspace) as session:
        outcome = await session.run(
            ["bash", "-c", "head -c 20M /dev/zero > big; echo rc=$?"], time_limit=60
        )
    assert (workspace / "big").stat().st_size == MIB
    assert "File size limit exceeded" in outcome.stderr
    assert "rc=153" in outcome.stdout  # 128 + SIGXFSZ


@pytest.mark.parametrize("backend", BACKENDS)
async def test_address_space_limit_makes_a_big_allocation_fail(
    backend: type[Sandbox], workspace: Path
) -> None:
    async with sandbox(backend, memory_bytes=256 * MIB).open(workspace) as session:
        outcome = await session.run(
            ["python", "-c", "x = bytearray(1024 * 1024 * 1024)"], time_limit=60
        )
    assert outcome.exit_code == 1
    assert "MemoryError" in outcome.stderr


@pytest.mark.parametrize("backend", BACKENDS)
async def test_memory_of_all_processes_together_is_limited(
    backend: type[Sandbox], workspace: Path
) -> None:
    # four processes of 100 MiB each: every one is under the per-process limit, together
    # they are over it, which the watchdog sees
    hog = (
        "import time; a = bytearray(100 * 1024 * 1024); "
        "a[::4096] = b'x' * len(a[::4096]); time.sleep(986.704)"
    )
    command = f'for i in 1 2 3 4; do python -c "{hog}" & done; wait'
    async with sandbox(backend, memory_bytes=256 * MIB).open(workspace) as session:
        outcome = await session.run(["bash", "-c", command], time_limit=60)
    assert not outcome.timed_out
    assert "memory limit" in (outcome.violation or "")
    assert live("time.sleep(986.704)") == []


@pytest.mark.parametrize("backend", BACKENDS)
async def test_disk_write_limit_stops_a_filler_of_many_small_files(
    backend: type[Sandbox], workspace: Path
) -> None:
    filler = "for i in $(seq 200); do head -c 4M /dev/zero > f$i; done"
    async with sandbox(backend, file_size_bytes=8 * MIB, disk_write_bytes=16 * MIB).open(
        workspace
    ) as session:
        outcome = await session.run(["bash", "-c", filler], time_limit=60)
    assert "disk write limit" in (outcome.violation or "")
    assert size_of(workspace, "f*") < 200 * 4 * MIB  # stopped long before the end


@pytest.mark.parametrize("backend", BACKENDS)
async def test_process_limit_with_a_cgroup(backend: type[Sandbox], workspace: Path) -> None:
    box = sandbox(backend, max_processes=16)
    if not box.cgroups_usable():
        pytest.skip("no writable pids cgroup here")
    spawner = "for i in $(seq 40); do sleep 986.701 & done 2>/dev/null; wait"
    async with box.open(workspace) as session:
        outcome = await session.run(["bash", "-c", spawner], time_limit=60)
    assert "process limit" in (outcome.violation or "")
    assert live("sleep 986.701") == []


@pytest.mark.parametrize("backend", BACKENDS)
async def test_process_limit_without_a_cgroup_is_kept_by_the_watchdog(
    backend: type[Sandbox], workspace: Path
) -> None:
    spawner = "for i in $(seq 40); do sleep 986.702 & done; wait"
    async with sandbox(backend, cgroups=False, max_processes=16).open(workspace) as session:
        outcome = await session.run(["bash", "-c", spawner], time_limit=60)
    assert "process limit" in (outcome.violation or "")
    assert live("sleep 986.702") == []


@pytest.mark.parametrize("backend", BACKENDS)
async def test_wall_time_limit_applies_without_a_timeout(
    backend: type[Sandbox], workspace: Path
) -> None:
    async with sandbox(backend, wall_time_s=0.3).open(workspace) as session:
        outcome = await session.run(["sleep", "986.703"], time_limit=None)
    assert "wall time limit" in (outcome.violation or "")
    assert live("sleep 986.703") == []


@pytest.mark.parametrize("backend", BACKENDS)
async def test_limits_of_the_host_process_are_unchanged(
    backend: type[Sandbox], workspace: Path
) -> None:
    before = {kind: resource.getrlimit(kind) for kind in (resource.RLIMIT_AS, resource.RLIMIT_CPU)}
    async with sandbox(backend, cpu_seconds=3, memory_bytes=256 * MIB).open(workspace) as session:
        outcome = await session.run(["bash", "-c", "ulimit -t; ulimit -v"], time_limit=60)
    assert outcome.stdout.split() == ["3", str(256 * 1024)]
    assert {kind: resource.getrlimit(kind) for kind in before} == before


def test_pids_cgroup_is_created_limited_and_removed() -> None:
    group = PidsCgroup.create(7)
    if group is None:
        pytest.skip("no writable pids cgroup here")
    try:
        with open(os.path.join(group.path, "pids.max")) as handle:
            assert handle.read().strip() == "7"
        assert group.members() == {}
        assert group.refused_forks() == 0
    finally:
        assert group.remove()
    assert not os.path.exists(group.path)


def test_descendants_walks_only_the_tree() -> None:
    tree = descendants(os.getpid())
    assert os.getpid() in tree
    assert 1 not in tree
    assert len(descendants(os.getpid(), 0)) == 1  # stops once over the limit


def test_without_a_cgroup_non_root_users_get_a_process_count_backstop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # RLIMIT_NPROC counts every task of the user, so the backstop is the machine's current
    # task count plus the limit: loose, but a fork bomb cannot outrun it
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    backstop = process_backstop(64)
    assert backstop is not None
    which, soft, hard = backstop
    with open("/proc/loadavg") as handle:
        total = int(handle.read().split()[3].split("/")[1])
    assert which == resource.RLIMIT_NPROC
    assert soft == hard
    assert total - 50 <= soft - 64 <= total + 50
    box = ProcessSandbox(SandboxConfig(limits=ResourceLimits(max_processes=64)))
    kinds = [setting[0] for setting in box.rlimits(None)]
    assert resource.RLIMIT_NPROC in kinds
    assert resource.RLIMIT_NPROC not in [s[0] for s in box.rlimits(PidsCgroup("/x", 1))]


def test_root_gets_no_backstop_it_would_ignore(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert process_backstop(64) is None
