"""The ``bubblewrap`` sandbox (Linux): every command in its own namespaces.

What a command sees:

- the system read-only: ``/usr`` (and ``/bin``, ``/lib*``, ``/sbin`` as on the host),
  ``/etc`` without its secrets (``shadow``, ``gshadow``, ``sudoers``, SSH host keys,
  ``ssl/private`` and every other entry the host keeps from other users);
- the Python interpreter it needs, read-only: the configured one's prefix and base prefix
  (a virtualenv and the installation it was made from) and its user site-packages directory
  when it imports from one (``pip install --user``), and nothing else of the home directory
  they may live in;
- the workspace, read-write, at its real path (so paths agree with the file tools), with
  ``HOME`` inside it; nothing of the host's home, ``/root``, other workspaces or the
  framework's data directory;
- a private ``/tmp`` and ``/dev/shm`` (size-limited tmpfs), a fresh ``/proc`` showing only
  its own processes, with ``/proc/sys`` and friends read-only and kernel internals
  (``kcore``, ``keys``...) hidden, a minimal read-only ``/dev``;
- new user, PID, IPC, UTS, cgroup and network namespaces: no network but loopback unless
  the policy allows (the filtering proxy's socket is bind-mounted in for an allowlist), no
  nested user namespaces (where bwrap supports ``--disable-userns``), no capabilities, a
  new session (no terminal injection), and death with its parent.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from typing import Final

from loopwright.config import loopwright_home
from loopwright.sandbox.base import SANDBOX_PROXY_SOCKET, PreparedCommand, Sandbox

#: Top-level system directories bound read-only (or recreated as symlinks, as on the host).
SYSTEM_DIRS: Final = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
#: Secrets masked in ``/etc`` even when the host lets everyone read them.
ETC_SECRETS: Final = (
    "/etc/shadow",
    "/etc/shadow-",
    "/etc/gshadow",
    "/etc/gshadow-",
    "/etc/sudoers",
    "/etc/sudoers.d",
    "/etc/ssh",
    "/etc/ssl/private",
    "/etc/security/opasswd",
    "/etc/krb5.keytab",
    "/etc/machine-id",
)


@functools.cache
def _bwrap_path() -> str | None:
    return shutil.which("bwrap")


@functools.cache
def _supports(bwrap: str, flag: str) -> bool:
    """Whether this bwrap knows an option (older versions lack some)."""
    try:
        result = subprocess.run(
            [bwrap, "--help"], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return flag in result.stdout + result.stderr


@functools.cache
def etc_masks() -> tuple[tuple[str, bool], ...]:
    """``(path, is_dir)`` of the ``/etc`` entries to hide: the known secrets, and every
    entry other users may not read on the host (the host's own idea of a secret)."""
    masks: dict[str, bool] = {}
    for path in ETC_SECRETS:
        if os.path.lexists(path) and not os.path.islink(path):
            masks[path] = os.path.isdir(path)
    for directory, subdirs, files in os.walk("/etc", onerror=lambda _: None):
        for name in list(subdirs):
            path = os.path.join(directory, name)
            if not _world_readable(path, directory=True):
                masks[path] = True
                subdirs.remove(name)  # hidden whole: no need to look inside
            elif path in masks:
                subdirs.remove(name)
        for name in files:
            path = os.path.join(directory, name)
            if not _world_readable(path, directory=False):
                masks[path] = False
    # a masked directory covers what is inside it
    dirs = [p for p, is_dir in masks.items() if is_dir]
    return tuple(
        sorted(
            (path, is_dir)
            for path, is_dir in masks.items()
            if not any(path != d and path.startswith(d + "/") for d in dirs)
        )
    )


def _world_readable(path: str, *, directory: bool) -> bool:
    try:
        mode = os.lstat(path).st_mode
    except OSError:
        return False
    if (mode & 0o170000) == 0o120000:  # a symlink: its target is judged where it lives
        return True
    needed = 0o005 if directory else 0o004
    return (mode & needed) == needed


@functools.cache
def python_roots(executable: str) -> tuple[str, ...]:
    """The directories an interpreter needs: its prefixes (virtualenv and base install)."""
    if os.path.realpath(executable) == os.path.realpath(sys.executable):
        prefixes = [sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix]
    else:
        code = "import sys; print(sys.prefix, sys.base_prefix, sys.exec_prefix, sep='\\n')"
        try:
            out = subprocess.run(
                [executable, "-S", "-c", code],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            ).stdout
        except (OSError, subprocess.SubprocessError) as exc:
            raise ValueError(f"cannot run the Python interpreter {executable!r}: {exc}") from exc
        prefixes = out.split("\n")
    # and the directory of the real executable, when it lives outside its prefixes
    roots = [os.path.realpath(p) for p in prefixes if p]
    roots.append(os.path.dirname(os.path.realpath(executable)))
    return _outermost(root for root in roots if not _inside_any(root, SYSTEM_DIRS) and root != "/")


def _inside_any(path: str, roots: Iterable[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def _outermost(paths: Iterable[str]) -> tuple[str, ...]:
    unique = sorted(set(paths))
    kept: list[str] = []
    for path in unique:
        if not _inside_any(path, kept):
            kept.append(path)
    return tuple(kept)


@functools.cache
def _self_test(bwrap: str) -> str | None:
    """Run ``true`` in a real sandbox once; the error if that fails."""
    sandbox = BubblewrapSandbox()
    with tempfile.TemporaryDirectory(prefix="loopwright-bwrap-test-") as workspace:
        prepared = sandbox.prepare(["true"], os.path.realpath(workspace), {}, None)
        try:
            result = subprocess.run(
                prepared.argv,
                env=prepared.env,
                cwd=prepared.cwd,
                capture_output=True,
                text=True,
                timeout=30,
                stdin=subprocess.DEVNULL,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            return f"{bwrap} could not run: {exc}"
    if result.returncode != 0:
        detail = result.stderr.strip().splitlines()[-1:] or [f"exit code {result.returncode}"]
        return f"its self-test failed ({detail[0]})"
    return None


class BubblewrapSandbox(Sandbox):
    """Commands run under ``bwrap`` with the filesystem, process and network isolation
    described in :mod:`loopwright.sandbox.bubblewrap`."""

    name = "bubblewrap"
    adopts_orphans = True

    @classmethod
    def unavailable_reason(cls) -> str | None:
        if not sys.platform.startswith("linux"):
            return "bubblewrap runs on Linux only"
        bwrap = _bwrap_path()
        if bwrap is None:
            return "the bwrap program is not installed"
        return _self_test(bwrap)

    def prepare(
        self,
        argv: list[str],
        workspace: str,
        env: dict[str, str],
        proxy_socket: str | None,
    ) -> PreparedCommand:
        bwrap = _bwrap_path()
        if bwrap is None:
            from loopwright.sandbox.base import SandboxUnavailable

            raise SandboxUnavailable(
                "The bubblewrap sandbox needs the bwrap program; install bubblewrap "
                "(apt-get install bubblewrap) or use the process sandbox."
            )
        home = self.home_dir(workspace)
        os.makedirs(home, exist_ok=True)
        network = self.config.network
        limits = self.config.limits
        args = [bwrap, "--unshare-all"]
        if not network.isolated:
            args.append("--share-net")
        if _supports(bwrap, "--disable-userns"):
            # no nested user namespaces: less kernel surface to attack from inside
            args += ["--unshare-user", "--disable-userns"]
        args += ["--die-with-parent", "--new-session", "--cap-drop", "ALL"]
        args += ["--hostname", "sandbox"]
        ro_roots = self._read_only_roots()
        args += self._system_args()
        if not network.isolated:
            args += self._resolver_args()
        args += ["--proc", "/proc", *_proc_cover_args(), "--dev", "/dev"]
        args += [*_size(limits.tmp_bytes), "--tmpfs", "/dev/shm", "--remount-ro", "/dev"]
        args += [*_size(limits.tmp_bytes), "--tmpfs", "/tmp"]
        args += ["--dir", "/var", "--symlink", "../tmp", "/var/tmp"]
        # the interpreter's directories after the private /tmp, which would otherwise hide
        # a virtualenv that lives under /tmp (a checkout in a temporary directory, as in CI)
        for root in ro_roots:
            args += ["--ro-bind", root, root]
        # hide what a read-only root would otherwise show around the workspace (the
        # tmpfs is made read-only after the workspace's mount point was created in it)
        hidden = self._hidden_paths(workspace, ro_roots)
        for path in hidden:
            args += ["--tmpfs", path]
        args += ["--bind", workspace, workspace, "--chdir", workspace]
        for path in hidden:
            args += ["--remount-ro", path]
        if proxy_socket is not None:
            args += ["--ro-bind", proxy_socket, SANDBOX_PROXY_SOCKET]
            argv = self.forwarded(argv, SANDBOX_PROXY_SOCKET)
        environment = self.environment(
            workspace, tmpdir="/tmp", extra=env, proxy=proxy_socket is not None
        )
        return PreparedCommand([*args, "--", *argv], environment, workspace)

    def _read_only_roots(self) -> tuple[str, ...]:
        roots = list(python_roots(self.python))
        user_site = self.python_user_site()
        if user_site is not None:
            roots.append(user_site[1])  # the directory alone: not the rest of ~/.local
        for path in self.config.read_only_paths:
            real = os.path.realpath(path)
            if os.path.exists(real):
                roots.append(real)
        return _outermost(root for root in roots if not _inside_any(root, SYSTEM_DIRS))

    def _system_args(self) -> list[str]:
        return list(_system_args_cached())

    def _resolver_args(self) -> list[str]:
        """With the host network shared, DNS must work: bind the resolver config's target
        when ``/etc/resolv.conf`` is a symlink out of ``/etc`` (systemd-resolved)."""
        target = os.path.realpath("/etc/resolv.conf")
        if target.startswith("/etc/") or not os.path.exists(target):
            return []
        directory = os.path.dirname(target)
        return ["--ro-bind", directory, directory]

    def _hidden_paths(self, workspace: str, ro_roots: tuple[str, ...]) -> list[str]:
        visible = (*SYSTEM_DIRS, "/etc", *ro_roots)
        hidden = []
        for path in (os.path.dirname(workspace), os.path.realpath(str(loopwright_home()))):
            if _inside_any(path, visible) and not _inside_any(path, SYSTEM_DIRS):
                hidden.append(path)
        return [p for p in _outermost(hidden) if p not in ("/", workspace)]


@functools.cache
def _system_args_cached() -> tuple[str, ...]:
    args: list[str] = []
    for path in SYSTEM_DIRS:
        if os.path.islink(path):
            args += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            args += ["--ro-bind", path, path]
    args += ["--ro-bind", "/etc", "/etc"]
    for path, is_dir in etc_masks():
        if is_dir:
            args += ["--tmpfs", path, "--remount-ro", path]
        else:
            args += ["--ro-bind", "/dev/null", path]
    return tuple(args)


#: ``/proc`` entries made read-only: bubblewrap covers ``irq`` and ``bus`` itself but not
#: these, and a sandbox run by root (uid 0 inside maps to uid 0 outside) could otherwise
#: write global kernel settings in ``/proc/sys``.
PROC_READ_ONLY: Final = ("/proc/sys", "/proc/fs", "/proc/sysrq-trigger")
#: ``/proc`` entries hidden (as Docker does): kernel memory, keys, scheduler internals.
PROC_MASKED: Final = (
    "/proc/kcore",
    "/proc/keys",
    "/proc/timer_list",
    "/proc/sched_debug",
    "/proc/latency_stats",
)


@functools.cache
def _proc_cover_args() -> tuple[str, ...]:
    args: list[str] = []
    for path in PROC_READ_ONLY:
        if os.path.exists(path):  # a bind over a missing /proc entry would fail
            args += ["--ro-bind", path, path]
    for path in PROC_MASKED:
        if os.path.exists(path):
            args += ["--ro-bind", "/dev/null", path]
    return tuple(args)


def _size(value: int | None) -> list[str]:
    return ["--size", str(value)] if value is not None else []


__all__ = [
    "ETC_SECRETS",
    "PROC_MASKED",
    "PROC_READ_ONLY",
    "SYSTEM_DIRS",
    "BubblewrapSandbox",
    "etc_masks",
    "python_roots",
]
