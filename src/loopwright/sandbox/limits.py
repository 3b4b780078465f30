"""Resource limits for sandboxed processes, on every backend.

Three mechanisms work together, because no single one bounds everything:

- **rlimits** set in the child before it runs the command (``setrlimit`` in the forked
  child, inherited by everything it starts): CPU seconds, address space, file size, open
  files, no core dumps. They stop a single runaway process at once.
- a **pids cgroup** per process tree when this machine lets us create one (cgroup v1 pids
  hierarchy or a cgroup v2 subtree we may write to): a hard cap on processes and threads.
  ``RLIMIT_NPROC`` cannot do this job well: it counts all processes of a user, and root is
  exempt from it; without a cgroup it is only a loose backstop (:func:`process_backstop`).
- a **watchdog** polling the process tree (``/proc``): the process count when no cgroup is
  available, the memory of all processes together, the bytes written to disk, the free
  space left on the workspace's disk, and the wall time. On a breach it kills the whole tree
  and says which limit was hit.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import resource
import signal
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

KIB: Final = 1024
MIB: Final = 1024 * KIB
GIB: Final = 1024 * MIB


def _default_memory_bytes() -> int:
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        return 4 * GIB
    return max(256 * MIB, min(4 * GIB, physical // 2))


@dataclass(frozen=True, slots=True)
class ResourceLimits:
    """Limits applied to every sandboxed command (``None`` turns one off).

    - ``cpu_seconds``: CPU time of each process (``RLIMIT_CPU``; SIGXCPU, then SIGKILL).
    - ``memory_bytes``: address space of each process (``RLIMIT_AS``) and the memory of the
      whole tree together (proportional set size, checked by the watchdog). The default is
      4 GiB or half the machine's RAM, whichever is smaller.
    - ``file_size_bytes``: largest file a process may write (``RLIMIT_FSIZE``; SIGXFSZ).
    - ``max_processes``: processes and threads of the whole tree (pids cgroup, else the
      watchdog).
    - ``open_files``: file descriptors per process (``RLIMIT_NOFILE``).
    - ``disk_write_bytes``: bytes the tree may write to disk in total (watchdog).
    - ``min_free_disk_bytes``: the tree is stopped when it writes while the workspace's disk
      has less free space than this (watchdog), so the host's disk never fills up.
    - ``tmp_bytes``: size of the private ``/tmp`` and ``/dev/shm`` (bubblewrap, docker).
    - ``wall_time_s``: longest life of any sandboxed command, background ones included
      (a tool's own timeout is usually shorter).
    - ``cpus``: CPU share (docker only).
    - ``watchdog_interval_s``: how often the watchdog looks; a limit it enforces can be
      overshot by what the tree does in that time (a fast writer, a fast allocator).
    """

    cpu_seconds: int | None = 600
    memory_bytes: int | None = field(default_factory=_default_memory_bytes)
    file_size_bytes: int | None = 1 * GIB
    max_processes: int | None = 512
    open_files: int | None = 4096
    disk_write_bytes: int | None = 8 * GIB
    min_free_disk_bytes: int | None = 1 * GIB
    tmp_bytes: int | None = 512 * MIB
    wall_time_s: float | None = 3600.0
    cpus: float | None = None
    watchdog_interval_s: float = 0.1

    def rlimits(self) -> list[tuple[int, int, int]]:
        """The ``(resource, soft, hard)`` settings to apply in the child, computed in the
        parent (nothing is allocated in the child between fork and exec)."""
        wanted: list[tuple[int, int | None, int]] = [
            # one second between SIGXCPU (catchable, reported) and SIGKILL
            (resource.RLIMIT_CPU, self.cpu_seconds, 1),
            (resource.RLIMIT_AS, self.memory_bytes, 0),
            (resource.RLIMIT_FSIZE, self.file_size_bytes, 0),
            (resource.RLIMIT_NOFILE, self.open_files, 0),
            (resource.RLIMIT_CORE, 0, 0),
        ]
        settings: list[tuple[int, int, int]] = []
        for which, value, slack in wanted:
            if value is None:
                continue
            _, hard_now = resource.getrlimit(which)
            hard = value + slack
            if hard_now != resource.RLIM_INFINITY:
                hard = min(hard, hard_now)  # an unprivileged process cannot raise a hard limit
            settings.append((which, min(value, hard), hard))
        return settings


def process_backstop(max_processes: int) -> tuple[int, int, int] | None:
    """An ``RLIMIT_NPROC`` setting for when no pids cgroup is available: the tasks on the
    whole machine now plus ``max_processes``. It counts all of the user's tasks, so it is
    loose, but it is a hard bound a fork bomb cannot outrun; root is exempt from it (and has
    the cgroup). ``None`` for root."""
    if os.geteuid() == 0:
        return None
    loadavg = _read("/proc/loadavg") or ""
    try:
        total = int(loadavg.split()[3].split("/")[1])
    except (IndexError, ValueError):
        return None
    limit = total + max_processes
    _, hard = resource.getrlimit(resource.RLIMIT_NPROC)
    if hard != resource.RLIM_INFINITY:
        limit = min(limit, hard)
    return (resource.RLIMIT_NPROC, limit, limit)


def apply_rlimits(settings: list[tuple[int, int, int]]) -> None:
    """Set rlimits in the current process (called in the child between fork and exec)."""
    for which, soft, hard in settings:
        resource.setrlimit(which, (soft, hard))


# --- signals and exit codes --------------------------------------------------------------

_SIGNAL_HINTS: Final = {
    signal.SIGXCPU: "the CPU time limit was reached",
    signal.SIGXFSZ: "the file size limit was reached",
    signal.SIGKILL: "killed",
    signal.SIGSEGV: "segmentation fault",
    signal.SIGABRT: "aborted",
}


def describe_signal(number: int) -> str:
    """``"SIGXCPU: the CPU time limit was reached"`` for a signal number."""
    try:
        name = signal.Signals(number).name
    except ValueError:
        return f"signal {number}"
    hint = _SIGNAL_HINTS.get(signal.Signals(number))
    return f"{name}: {hint}" if hint else name


def signal_of(exit_code: int | None) -> int | None:
    """The signal that ended a process, from its exit code (negative, or 128+N from a shell
    or bubblewrap), or ``None``."""
    if exit_code is None:
        return None
    if exit_code < 0:
        return -exit_code
    if 128 < exit_code < 128 + 65:
        return exit_code - 128
    return None


# --- the process tree ---------------------------------------------------------------------


def _read(path: str) -> str | None:
    try:
        with open(path, encoding="ascii", errors="replace") as handle:
            return handle.read()
    except OSError:
        return None


def start_time(pid: int) -> int | None:
    """The start time of a process (clock ticks since boot), to tell it from a reused pid."""
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return None
    try:
        return int(stat[stat.rindex(")") + 2 :].split()[19])
    except (ValueError, IndexError):
        return None


def descendants(root: int, limit: int | None = None) -> dict[int, int]:
    """``{pid: start_time}`` of ``root`` and every process below it, found through
    ``/proc/<pid>/task/<tid>/children`` (only the tree is read, not all of ``/proc``).
    With ``limit``, the walk stops once more than ``limit`` processes were found."""
    found: dict[int, int] = {}
    frontier = [root]
    while frontier and (limit is None or len(found) <= limit):
        pid = frontier.pop()
        if pid in found:
            continue
        started = start_time(pid)
        if started is None:
            continue
        found[pid] = started
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            continue
        for tid in tids:
            children = _read(f"/proc/{pid}/task/{tid}/children")
            if children:
                frontier.extend(int(child) for child in children.split())
    return found


def session_members(session_id: int) -> dict[int, int]:
    """``{pid: start_time}`` of every process in a session (a scan of ``/proc``: how the
    process backend finds orphans whose parent already died)."""
    found: dict[int, int] = {}
    try:
        entries = os.listdir("/proc")
    except OSError:
        return found
    for entry in entries:
        if not entry.isdigit():
            continue
        stat = _read(f"/proc/{entry}/stat")
        if stat is None:
            continue
        try:
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[3]) == session_id:
                found[int(entry)] = int(fields[19])
        except (ValueError, IndexError):
            continue
    return found


def kill_processes(processes: dict[int, int]) -> None:
    """SIGKILL each ``pid`` whose start time still matches (never a reused pid)."""
    for pid, started in processes.items():
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            continue  # already gone
        try:
            if start_time(pid) == started:
                signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        except OSError:
            pass
        finally:
            os.close(pidfd)


@dataclass(slots=True)
class TreeUsage:
    """What a process tree uses right now."""

    tasks: int = 0
    memory_bytes: int = 0
    written_bytes: int = 0


_PAGE_SIZE: Final = os.sysconf("SC_PAGE_SIZE")


def _memory_of(pid: int) -> int:
    rollup = _read(f"/proc/{pid}/smaps_rollup")
    if rollup is not None:
        for line in rollup.splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * KIB
    statm = _read(f"/proc/{pid}/statm")
    if statm is None:
        return 0
    try:
        return int(statm.split()[1]) * _PAGE_SIZE
    except (ValueError, IndexError):
        return 0


def _threads_of(pid: int) -> int:
    stat = _read(f"/proc/{pid}/stat")
    if stat is None:
        return 0
    try:
        return int(stat[stat.rindex(")") + 2 :].split()[17])
    except (ValueError, IndexError):
        return 1


def _written_by(pid: int) -> int:
    io = _read(f"/proc/{pid}/io")
    if io is None:
        return 0
    for line in io.splitlines():
        if line.startswith("write_bytes:"):
            return int(line.split()[1])
    return 0


def tree_usage(pids: dict[int, int], *, memory: bool, disk: bool) -> TreeUsage:
    """Tasks, memory (PSS) and bytes written to disk by these processes. A process's
    ``write_bytes`` includes those of the children it reaped, so the tree's total is right
    as long as the tree reaps its own children (always true in a PID namespace)."""
    usage = TreeUsage()
    for pid in pids:
        usage.tasks += _threads_of(pid)
        if memory:
            usage.memory_bytes += _memory_of(pid)
        if disk:
            usage.written_bytes += _written_by(pid)
    return usage


# --- cgroups ------------------------------------------------------------------------------


class PidsCgroup:
    """A pids cgroup for one process tree: a hard cap on its processes and threads, and a
    way to find and kill every process of the tree, even orphans in another session.

    Created under this process's own cgroup, in the cgroup v1 pids hierarchy or a cgroup v2
    subtree, only where the current user may write; :meth:`create` returns ``None`` when
    neither exists (the watchdog then counts processes instead).
    """

    def __init__(self, path: str, version: int) -> None:
        self.path = path
        self.version = version
        self.procs_file = os.path.join(path, "cgroup.procs")

    @classmethod
    def create(cls, max_tasks: int) -> PidsCgroup | None:
        """A new cgroup limited to ``max_tasks`` tasks, or ``None`` if none can be made."""
        for base, version in _pids_bases():
            path = os.path.join(base, f"loopwright-{uuid.uuid4().hex[:12]}")
            try:
                os.mkdir(path)
            except OSError:
                continue
            group = cls(path, version)
            try:
                with open(os.path.join(path, "pids.max"), "w") as handle:
                    handle.write(str(max_tasks))
            except OSError:
                group.remove()
                continue
            return group
        return None

    def attach_self(self) -> None:
        """Move the calling process into the cgroup (done in the child before exec)."""
        fd = os.open(self.procs_file, os.O_WRONLY)
        try:
            os.write(fd, b"0")
        finally:
            os.close(fd)

    def members(self) -> dict[int, int]:
        """``{pid: start_time}`` of the processes in the cgroup."""
        text = _read(self.procs_file) or ""
        found: dict[int, int] = {}
        for line in text.split():
            pid = int(line)
            started = start_time(pid)
            if started is not None:
                found[pid] = started
        return found

    def refused_forks(self) -> int:
        """How many forks the limit has refused so far."""
        events = _read(os.path.join(self.path, "pids.events")) or ""
        for line in events.splitlines():
            key, _, value = line.partition(" ")
            if key == "max":
                return int(value)
        return 0

    def kill_all(self) -> None:
        """SIGKILL every process in the cgroup (new forks included)."""
        if self.version == 2:
            with contextlib.suppress(OSError):
                with open(os.path.join(self.path, "cgroup.kill"), "w") as handle:
                    handle.write("1")
                return
        for _ in range(50):  # bounded: with pids.max, a fork bomb cannot outrun this
            members = self.members()
            if not members:
                return
            kill_processes(members)

    async def remove_when_empty(self, patience_s: float = 30.0) -> None:
        """Kill what is left and delete the cgroup as soon as it is empty (a zombie stays
        in it until its parent reaps it); gives up after ``patience_s`` seconds, leaving
        it to :meth:`remove_stale`."""
        delay = 0.01
        loop = asyncio.get_running_loop()
        deadline = loop.time() + patience_s
        while not self.remove() and loop.time() < deadline:
            self.kill_all()
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)

    @classmethod
    def remove_stale(cls, older_than_s: float = 300.0) -> None:
        """Delete empty loopwright cgroups left behind by processes that died before they
        could (only old ones: a new one may be about to receive its process)."""
        now = time.time()
        for base, _ in _pids_bases():
            try:
                entries = os.listdir(base)
            except OSError:
                continue
            for name in entries:
                path = os.path.join(base, name)
                if not name.startswith("loopwright-"):
                    continue
                try:
                    if now - os.stat(path).st_mtime < older_than_s:
                        continue
                    os.rmdir(path)  # fails while processes are in it
                except OSError:
                    continue

    def remove(self) -> bool:
        """Delete the cgroup once it is empty; ``False`` if processes are still in it."""
        try:
            os.rmdir(self.path)
        except FileNotFoundError:
            return True
        except OSError as exc:
            # busy: processes are still in it; anything else: nothing better to do
            return exc.errno != errno.EBUSY
        return True


def _pids_bases() -> list[tuple[str, int]]:
    """Writable cgroup directories (this process's own cgroup) with the pids controller."""
    own = _read("/proc/self/cgroup") or ""
    mounts = _read("/proc/self/mountinfo") or ""
    bases: list[tuple[str, int]] = []
    v1_mount = v2_mount = None
    for line in mounts.splitlines():
        left, _, right = line.partition(" - ")
        parts, kinds = left.split(), right.split()
        if len(parts) < 5 or len(kinds) < 3:
            continue
        if kinds[0] == "cgroup" and "pids" in kinds[2].split(","):
            v1_mount = parts[4]
        elif kinds[0] == "cgroup2":
            v2_mount = parts[4]
    for line in own.splitlines():
        _, controllers, path = line.split(":", 2)
        if v1_mount and "pids" in controllers.split(","):
            bases.append((os.path.join(v1_mount, path.lstrip("/")), 1))
        elif v2_mount and controllers == "":
            base = os.path.join(v2_mount, path.lstrip("/"))
            subtree = _read(os.path.join(base, "cgroup.subtree_control")) or ""
            if "pids" in subtree.split():
                bases.append((base, 2))
    return [(base, version) for base, version in bases if os.access(base, os.W_OK)]


# --- the watchdog -------------------------------------------------------------------------

#: Forks refused by the pids cgroup before the watchdog stops the tree.
REFUSED_FORKS_TO_STOP: Final = 3


class Watchdog:
    """Polls one sandboxed process tree and kills it when it breaks a limit.

    ``list_tree(limit)`` returns the tree's ``{pid: start_time}`` (it may stop looking once
    it found more than ``limit``); ``kill`` kills all of it. ``violation`` says which limit
    was hit (``None`` while none was).

    With a pids cgroup the kernel refuses forks beyond the limit; a tree that keeps being
    refused (:data:`REFUSED_FORKS_TO_STOP` times: a fork bomb retrying) is stopped rather
    than left spinning until its timeout.
    """

    def __init__(
        self,
        limits: ResourceLimits,
        list_tree: Callable[[int | None], dict[int, int]],
        kill: Callable[[], None],
        *,
        disk_path: str | None = None,
        cgroup: PidsCgroup | None = None,
    ) -> None:
        self.limits = limits
        self.list_tree = list_tree
        self.kill = kill
        self.disk_path = disk_path
        self.cgroup = cgroup
        self.violation: str | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Begin watching (in the running event loop)."""
        self._task = asyncio.get_running_loop().create_task(self._run())

    def stop(self) -> None:
        """Stop watching."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        limits = self.limits
        loop = asyncio.get_running_loop()
        started = loop.time()
        counting = self.cgroup is None and limits.max_processes is not None
        while True:
            await asyncio.sleep(limits.watchdog_interval_s)
            if limits.wall_time_s is not None and loop.time() - started > limits.wall_time_s:
                self._breach(f"it ran longer than the wall time limit of {limits.wall_time_s:g}s")
                return
            tree = self.list_tree(limits.max_processes if counting else None)
            if not tree:
                continue
            if counting and limits.max_processes is not None and len(tree) > limits.max_processes:
                # checked before anything is read per process: a fork bomb is stopped at once
                self._breach(self._too_many())
                return
            usage = tree_usage(
                tree,
                memory=limits.memory_bytes is not None,
                disk=limits.disk_write_bytes is not None or limits.min_free_disk_bytes is not None,
            )
            problem = self._check(usage)
            if (
                problem is None
                and self.cgroup is not None
                and self.cgroup.refused_forks() >= REFUSED_FORKS_TO_STOP
            ):
                problem = (
                    f"it kept trying to start more than {limits.max_processes} processes and "
                    "threads (the process limit)"
                )
            if problem is not None:
                self._breach(problem)
                return

    def _too_many(self) -> str:
        return (
            f"it started more than {self.limits.max_processes} processes and threads "
            "(the process limit)"
        )

    def _check(self, usage: TreeUsage) -> str | None:
        limits = self.limits
        if (
            self.cgroup is None
            and limits.max_processes is not None
            and usage.tasks > limits.max_processes
        ):
            return self._too_many()
        if limits.memory_bytes is not None and usage.memory_bytes > limits.memory_bytes:
            return (
                f"its processes used more than {format_size(limits.memory_bytes)} of memory "
                "together (the memory limit)"
            )
        if limits.disk_write_bytes is not None and usage.written_bytes > limits.disk_write_bytes:
            return (
                f"it wrote more than {format_size(limits.disk_write_bytes)} to disk "
                "(the disk write limit)"
            )
        if (
            limits.min_free_disk_bytes is not None
            and usage.written_bytes > 0
            and self.disk_path is not None
        ):
            try:
                stats = os.statvfs(self.disk_path)
            except OSError:
                return None
            free = stats.f_bavail * stats.f_frsize
            if free < limits.min_free_disk_bytes:
                return (
                    f"the disk is almost full (less than {format_size(limits.min_free_disk_bytes)} "
                    "free) and it was writing to it"
                )
        return None

    def _breach(self, problem: str) -> None:
        self.violation = problem
        self.kill()


def format_size(value: int) -> str:
    """A number of bytes as people write it: ``4 GiB``, ``1.5 MiB``, ``512 bytes``."""
    for unit, size in (("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if value >= size:
            amount = value / size
            return f"{amount:g} {unit}" if amount == int(amount) else f"{amount:.1f} {unit}"
    return f"{value} bytes"


__all__ = [
    "GIB",
    "KIB",
    "MIB",
    "PidsCgroup",
    "ResourceLimits",
    "TreeUsage",
    "Watchdog",
    "apply_rlimits",
    "descendants",
    "describe_signal",
    "format_size",
    "kill_processes",
    "session_members",
    "signal_of",
    "start_time",
    "tree_usage",
]
