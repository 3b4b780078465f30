"""The ``process`` sandbox: a plain child process with the sandbox's limits, no filesystem
isolation.

It is the fallback where bubblewrap cannot run. Commands get the same resource limits
(rlimits, pids cgroup or watchdog), the same scrubbed environment, their own session and
process group (killed as a whole), die with their parent, and start in the workspace. What
it cannot do: hide the rest of the filesystem (a command can read what the host user can
read, including ``/proc/<pid>/environ`` of the host's processes) or stop writes outside the
workspace. The network is cut off with a network namespace when this machine allows one
(as root, or with unprivileged user namespaces); otherwise a warning is logged once.
"""

from __future__ import annotations

import ctypes
import functools
import logging
import os
import signal
import subprocess
from collections.abc import Callable
from typing import Final

from loopwright.sandbox.base import PreparedCommand, Sandbox
from loopwright.sandbox.limits import PidsCgroup, apply_rlimits

logger = logging.getLogger("loopwright.sandbox")

_CLONE_NEWUSER: Final = 0x10000000
_CLONE_NEWNET: Final = 0x40000000
_PR_SET_PDEATHSIG: Final = 1


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _isolate_network(as_root: bool, uid: int, gid: int) -> None:
    """In the child: a new network namespace (only loopback, down until brought up)."""
    libc = _libc()
    flags = _CLONE_NEWNET if as_root else _CLONE_NEWUSER | _CLONE_NEWNET
    if libc.unshare(flags) != 0:
        raise OSError(ctypes.get_errno(), "unshare failed")
    if not as_root:
        for path, text in (
            ("/proc/self/setgroups", "deny"),
            ("/proc/self/uid_map", f"{uid} {uid} 1"),
            ("/proc/self/gid_map", f"{gid} {gid} 1"),
        ):
            fd = os.open(path, os.O_WRONLY)
            try:
                os.write(fd, text.encode())
            finally:
                os.close(fd)


@functools.cache
def _network_isolation_works() -> bool:
    """Whether this machine lets a child enter a network namespace of its own."""
    as_root, uid, gid = os.geteuid() == 0, os.getuid(), os.getgid()
    try:
        subprocess.run(
            ["true"],
            preexec_fn=lambda: _isolate_network(as_root, uid, gid),
            check=True,
            timeout=10,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
    except (OSError, subprocess.SubprocessError):
        logger.warning(
            "the process sandbox cannot give commands a network namespace here (no "
            "privileges and no unprivileged user namespaces): the network is NOT isolated. "
            "Use the bubblewrap sandbox where the network policy matters."
        )
        return False
    return True


class ProcessSandbox(Sandbox):
    """Commands run as child processes of the host with limits but no filesystem isolation."""

    name = "process"

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if os.name != "posix":
            return "it needs a POSIX system"
        return None

    def prepare(
        self,
        argv: list[str],
        workspace: str,
        env: dict[str, str],
        proxy_socket: str | None,
    ) -> PreparedCommand:
        tmpdir = os.path.join(workspace, ".loopwright", "tmp")
        os.makedirs(tmpdir, exist_ok=True)
        os.makedirs(self.home_dir(workspace), exist_ok=True)
        environment = self.environment(
            workspace, tmpdir=tmpdir, extra=env, proxy=proxy_socket is not None
        )
        if proxy_socket is not None:
            argv = self.forwarded(argv, proxy_socket)
        return PreparedCommand(argv, environment, workspace)

    def child_setup(self, cgroup: PidsCgroup | None) -> Callable[[], None]:
        rlimits = self.rlimits(cgroup)
        isolate = self.config.network.isolated and _network_isolation_works()
        as_root, uid, gid = os.geteuid() == 0, os.getuid(), os.getgid()
        libc = _libc()

        def setup() -> None:
            if cgroup is not None:
                cgroup.attach_self()
            # die with the host process (bubblewrap's --die-with-parent)
            libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
            if isolate:
                _isolate_network(as_root, uid, gid)
            apply_rlimits(rlimits)

        return setup


__all__ = ["ProcessSandbox"]
