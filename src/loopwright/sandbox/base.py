"""The sandbox interface: one way to run a command for an agent, several backends.

- :class:`Sandbox` is a backend plus its configuration (:class:`SandboxConfig`: resource
  limits, network policy, environment allowlist, Python interpreter). It is stateless and
  may be shared by many sessions.
- :meth:`Sandbox.open` gives a :class:`SandboxSession` for one workspace: it starts
  processes (:meth:`SandboxSession.spawn`, :meth:`SandboxSession.run`), owns the session's
  network proxy, and kills every process it started when closed.
- :class:`SandboxedProcess` is one running command: its output streams, its exit code, and
  :meth:`~SandboxedProcess.kill`, which kills the whole tree (process group, PID namespace
  or cgroup), never just the top process.

Backends: ``bubblewrap`` (default on Linux when it works here), ``process`` (fallback: the
same limits and scrubbed environment, no filesystem isolation) and ``docker``.
:func:`create_sandbox` picks one.
"""

from __future__ import annotations

import asyncio
import contextlib
import fnmatch
import functools
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from loopwright.sandbox.limits import (
    PidsCgroup,
    ResourceLimits,
    Watchdog,
    apply_rlimits,
    descendants,
    kill_processes,
    process_backstop,
    session_members,
    signal_of,
)
from loopwright.sandbox.netproxy import FORWARDER, NetworkProxy

logger = logging.getLogger("loopwright.sandbox")

#: Host environment variables passed into the sandbox by default (patterns allowed).
DEFAULT_ENV_PASSTHROUGH: Final = ("LANG", "LANGUAGE", "LC_*", "TZ")
#: Where the proxy's forwarder listens inside a sandbox with an allowlist.
PROXY_PORT: Final = 3128
#: Where the proxy's unix socket appears inside the sandbox.
SANDBOX_PROXY_SOCKET: Final = "/run/loopwright/proxy.sock"
DEFAULT_MAX_OUTPUT_BYTES: Final = 64 * 1024
#: How long to keep reading output once the command and its tree are dead.
DRAIN_TIMEOUT_S: Final = 2.0
SYSTEM_PATH: Final = ("/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin")
_READ_CHUNK: Final = 64 * 1024


class SandboxError(RuntimeError):
    """A sandboxed command could not be started (the message says what to do)."""


class SandboxUnavailable(SandboxError):
    """The requested backend cannot run on this machine."""


@dataclass(frozen=True, slots=True)
class NetworkPolicy:
    """What a sandboxed command may reach on the network. Off by default.

    - ``allowed_domains``: reachable through the filtering proxy only (HTTP and HTTPS via
      ``HTTP_PROXY``/``HTTPS_PROXY``); exact names or ``*.example.com`` for subdomains.
    - ``allow_all``: the host's network, unfiltered (the proxy is not used).
    - ``resolve``: pin names to addresses in the proxy (tests, split-horizon DNS); pinned
      names may point at private addresses.
    - ``allow_private_addresses``: let allowed names resolve to loopback/private addresses.
    """

    allowed_domains: tuple[str, ...] = ()
    allow_all: bool = False
    resolve: Mapping[str, str] = field(default_factory=dict)
    allow_private_addresses: bool = False

    @property
    def uses_proxy(self) -> bool:
        """True when traffic goes through the filtering proxy."""
        return not self.allow_all and bool(self.allowed_domains)

    @property
    def isolated(self) -> bool:
        """True when the command gets its own network namespace."""
        return not self.allow_all


@dataclass(frozen=True, slots=True)
class SandboxConfig:
    """How every command in a sandbox runs.

    - ``limits``: :class:`ResourceLimits` (CPU, memory, files, processes, disk, time).
    - ``network``: :class:`NetworkPolicy` (off by default).
    - ``env_passthrough``: host variables copied in (names or ``fnmatch`` patterns); nothing
      else of the host's environment reaches a command: no API keys, no tokens.
    - ``env``: variables set explicitly (they win over everything else).
    - ``python``: the interpreter of the ``Python`` tool and first on ``PATH``; the running
      one (``sys.executable``) by default, so the project's installed libraries import.
    - ``read_only_paths``: more host paths visible read-only (bubblewrap, docker).
    """

    limits: ResourceLimits = field(default_factory=ResourceLimits)
    network: NetworkPolicy = field(default_factory=NetworkPolicy)
    env_passthrough: tuple[str, ...] = DEFAULT_ENV_PASSTHROUGH
    env: Mapping[str, str] = field(default_factory=dict)
    python: str | None = None
    read_only_paths: tuple[str, ...] = ()


@dataclass(slots=True)
class PreparedCommand:
    """What a backend turns a command into: the host argv, its environment and cwd."""

    argv: list[str]
    env: dict[str, str]
    cwd: str
    #: run with rlimits, a cgroup and the watchdog on the host side (not docker)
    host_limits: bool = True
    #: container name to ``docker kill``
    container: str | None = None


class OutputBuffer:
    """Captured output of one stream, bounded: the first and the last ``limit / 2`` bytes
    are kept, the middle is counted and dropped. :meth:`take` empties it (what
    ``BashOutput`` uses to return only new output)."""

    def __init__(self, limit: int = DEFAULT_MAX_OUTPUT_BYTES) -> None:
        self.head_limit = max(limit // 2, 1)
        self.tail_limit = max(limit - self.head_limit, 1)
        self.head = bytearray()
        self.tail = bytearray()
        self.dropped = 0
        self.total = 0
        self._tailing = False

    def feed(self, data: bytes) -> None:
        """Add a chunk."""
        self.total += len(data)
        if not self._tailing:
            room = self.head_limit - len(self.head)
            if len(data) <= room:
                self.head += data
                return
            self.head += data[:room]
            data = data[room:]
            self._tailing = True
        self.tail += data
        excess = len(self.tail) - self.tail_limit
        if excess > 0:
            self.dropped += excess
            del self.tail[:excess]

    def __bool__(self) -> bool:
        return bool(self.head or self.tail)

    def text(self) -> str:
        """The kept output as text, with a note where bytes were cut."""
        if not self.dropped:
            return (bytes(self.head) + bytes(self.tail)).decode("utf-8", errors="replace")
        return (
            self.head.decode("utf-8", errors="replace")
            + f"\n[... {self.dropped:,} bytes cut here ...]\n"
            + self.tail.decode("utf-8", errors="replace")
        )

    def take(self) -> tuple[str, int]:
        """The kept output as text and how many bytes were cut; the buffer is emptied."""
        text, dropped = self.text(), self.dropped
        self.head, self.tail, self.dropped, self._tailing = bytearray(), bytearray(), 0, False
        return text, dropped


async def drain_into(stream: asyncio.StreamReader, buffer: OutputBuffer) -> None:
    """Read a stream to its end into a buffer."""
    while chunk := await stream.read(_READ_CHUNK):
        buffer.feed(chunk)


@dataclass(slots=True)
class RunOutcome:
    """How one command ended, with its captured output."""

    exit_code: int | None
    stdout: str
    stderr: str
    stdout_bytes: int
    stderr_bytes: int
    stdout_cut: int
    stderr_cut: int
    timed_out: bool
    violation: str | None
    duration_s: float

    @property
    def signal(self) -> int | None:
        """The signal that ended the command, if one did."""
        return signal_of(self.exit_code)

    @property
    def ok(self) -> bool:
        """Exit code 0, no timeout, no limit hit."""
        return self.exit_code == 0 and not self.timed_out and self.violation is None


class SandboxedProcess:
    """One running command and everything it started.

    Its exit is watched through a pidfd (not through its pipes: a background child that
    still holds stdout must not make the command look alive), and :meth:`wait` kills what
    it left running, so a finished command never leaves processes behind.
    """

    def __init__(
        self,
        popen: subprocess.Popen[bytes],
        session: SandboxSession,
        prepared: PreparedCommand,
        cgroup: PidsCgroup | None,
    ) -> None:
        self.popen = popen
        self.session = session
        self.prepared = prepared
        self.cgroup = cgroup
        self.pid = popen.pid
        self.started = time.monotonic()
        self.killed = False
        self.exit_code: int | None = None
        self.stdout = asyncio.StreamReader(limit=_READ_CHUNK)
        self.stderr = asyncio.StreamReader(limit=_READ_CHUNK)
        self._transports: list[asyncio.BaseTransport] = []
        self._loop = asyncio.get_running_loop()
        self._exited: asyncio.Future[int] = self._loop.create_future()
        self._finished: asyncio.Future[int] | None = None
        self._poller: asyncio.Future[None] | None = None
        self._looks = 0
        self._orphans_seen = False
        self.watchdog: Watchdog | None = None
        if prepared.host_limits:
            self.watchdog = Watchdog(
                session.sandbox.config.limits,
                self._tree,
                self.kill,
                disk_path=session.workspace,
                cgroup=cgroup,
            )

    async def _start(self) -> None:
        loop = self._loop
        for pipe, reader in ((self.popen.stdout, self.stdout), (self.popen.stderr, self.stderr)):
            assert pipe is not None
            transport, _ = await loop.connect_read_pipe(
                functools.partial(asyncio.StreamReaderProtocol, reader), pipe
            )
            self._transports.append(transport)
        self._watch_exit()
        if self.watchdog is not None:
            self.watchdog.start()

    def _watch_exit(self) -> None:
        try:
            pidfd = os.pidfd_open(self.pid)
        except (OSError, AttributeError):  # no pidfds here: poll
            self._poller = asyncio.ensure_future(self._poll_exit())
            return

        def ready() -> None:
            self._loop.remove_reader(pidfd)
            os.close(pidfd)
            self._reaped()

        self._loop.add_reader(pidfd, ready)

    async def _poll_exit(self) -> None:
        while True:  # only where pidfds do not exist
            if self.popen.poll() is not None:
                break
            await asyncio.sleep(0.02)
        self._reaped()

    def _reaped(self) -> None:
        code = self.popen.wait()  # it has exited: this only reaps it
        if not self._exited.done():
            self._exited.set_result(code)

    @property
    def returncode(self) -> int | None:
        """The exit code once the command itself exited (its tree may still be dying)."""
        return self._exited.result() if self._exited.done() else None

    @property
    def violation(self) -> str | None:
        """Which resource limit stopped the command, if one did."""
        return self.watchdog.violation if self.watchdog is not None else None

    @property
    def running(self) -> bool:
        """True until the command exited and what it left behind was killed."""
        return self.exit_code is None

    def _tree(self, limit: int | None = None) -> dict[int, int]:
        """Every live process of the command: its cgroup; else its descendants, plus (when
        the backend has no init process of its own to adopt orphans) its session."""
        if self.cgroup is not None:
            return self.cgroup.members()
        tree = descendants(self.pid, limit) if self.returncode is None else {}
        if self.session.sandbox.adopts_orphans or (limit is not None and len(tree) > limit):
            return tree
        # the process backend: orphans are found by scanning /proc for the session, every
        # time once some were seen, else every fifth look (a scan costs ~1 ms per 100
        # processes on the machine)
        self._looks += 1
        if self._orphans_seen or self._looks % 5 == 1 or self.returncode is not None:
            members = session_members(self.pid)
            self._orphans_seen = not members.keys() <= tree.keys()
            tree.update(members)
        return tree

    def kill(self) -> None:
        """Kill the command and every process it started, at once (SIGKILL)."""
        self.killed = True
        if self.returncode is None:
            # the direct children: for bubblewrap, the PID namespace's init, whose death
            # takes the whole namespace with it, atomically (it would also die with bwrap)
            children = descendants(self.pid, 1) if self.session.sandbox.adopts_orphans else {}
            # then the process group of our child; the pid cannot have been reused: it is
            # our child and not reaped yet
            with contextlib.suppress(OSError):
                os.killpg(self.pid, signal.SIGKILL)
            kill_processes(children)
        self._kill_rest()
        if self.prepared.container is not None:
            self.session.sandbox.kill_container(self.prepared.container)

    def _kill_rest(self) -> None:
        """Kill what is left of the tree besides the process group."""
        if self.cgroup is not None:
            self.cgroup.kill_all()
            return
        if self.session.sandbox.adopts_orphans:
            if self.returncode is not None:
                # the group outlived its leader only if something was left running
                with contextlib.suppress(OSError):
                    os.killpg(self.pid, signal.SIGKILL)
            return
        # process backend: the group, then whatever left the group but not the session
        with contextlib.suppress(OSError):
            os.killpg(self.pid, signal.SIGKILL)
        for _ in range(10):
            members = session_members(self.pid)
            if not members:
                break
            kill_processes(members)

    async def wait_exit(self) -> int:
        """Wait until the command itself exits (not its pipes, not its tree)."""
        return await asyncio.shield(self._exited)

    async def wait(self) -> int:
        """Wait for the command to exit; then kill whatever it left running and release
        its cgroup. Returns the exit code (negative: killed by that signal)."""
        if self._finished is None:
            self._finished = asyncio.ensure_future(self._finish())
        return await asyncio.shield(self._finished)

    async def _finish(self) -> int:
        code = await self._exited
        if self.watchdog is not None:
            self.watchdog.stop()
        self._kill_rest()
        if self.cgroup is not None and not self.cgroup.remove():
            # still busy with the dying tree (or a zombie its new parent has not reaped
            # yet): remove it in the background, the session waits for that on close
            self.session._cleanup(self.cgroup.remove_when_empty())
        self.exit_code = code
        self.session._forget(self)
        return code

    def close_pipes(self) -> None:
        """Stop reading the output (what was read stays in the readers)."""
        for transport in self._transports:
            transport.close()
        for reader in (self.stdout, self.stderr):
            if not reader.at_eof():
                reader.feed_eof()

    async def drain(self, stdout: OutputBuffer, stderr: OutputBuffer) -> None:
        """Read both streams into the buffers until the command is over: until they close
        once its tree is dead, or :data:`DRAIN_TIMEOUT_S` later if an escaped process still
        holds a pipe."""
        readers = [
            asyncio.ensure_future(drain_into(self.stdout, stdout)),
            asyncio.ensure_future(drain_into(self.stderr, stderr)),
        ]
        try:
            await self.wait()
            _, pending = await asyncio.wait(readers, timeout=DRAIN_TIMEOUT_S)
            if pending:
                self.close_pipes()
                await asyncio.wait(pending, timeout=DRAIN_TIMEOUT_S)
        finally:
            for reader in readers:
                reader.cancel()
            self.close_pipes()

    async def aclose(self, wait_s: float = 5.0) -> None:
        """Kill the tree and wait (at most ``wait_s`` seconds) until it is gone."""
        if self.exit_code is None:
            self.kill()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(wait_s):
                await self.wait()
        self.close_pipes()


class SandboxSession:
    """The sandbox of one workspace: starts commands, owns the network proxy, and kills
    every process it started when closed."""

    def __init__(self, sandbox: Sandbox, workspace: str | os.PathLike[str]) -> None:
        self.sandbox = sandbox
        self.workspace = os.path.realpath(os.fspath(workspace))
        self._processes: set[SandboxedProcess] = set()
        self._cleanups: set[asyncio.Future[None]] = set()
        self._proxy: NetworkProxy | None = None
        self._proxy_dir: str | None = None
        self._proxy_lock = asyncio.Lock()
        self.closed = False

    @property
    def proxy(self) -> NetworkProxy | None:
        """The session's filtering proxy, once a command needed it."""
        return self._proxy

    @property
    def processes(self) -> frozenset[SandboxedProcess]:
        """Commands still running."""
        return frozenset(self._processes)

    async def _ensure_proxy(self) -> str | None:
        policy = self.sandbox.config.network
        if not policy.uses_proxy:
            return None
        async with self._proxy_lock:
            if self._proxy is None:
                self._proxy_dir = tempfile.mkdtemp(prefix="loopwright-proxy-")
                proxy = NetworkProxy(
                    policy.allowed_domains,
                    resolve=policy.resolve,
                    allow_private_addresses=policy.allow_private_addresses,
                )
                await proxy.start(unix_path=os.path.join(self._proxy_dir, "proxy.sock"))
                self._proxy = proxy
        assert self._proxy.unix_path is not None
        return self._proxy.unix_path

    async def spawn(
        self, argv: Sequence[str], *, env: Mapping[str, str] | None = None
    ) -> SandboxedProcess:
        """Start ``argv`` in the sandbox, in the workspace, with stdin empty and stdout and
        stderr piped. ``env`` adds variables on top of the sandbox's environment."""
        if self.closed:
            raise SandboxError("This sandbox session is closed; open a new one to run commands.")
        if not argv:
            raise ValueError("argv is empty")
        self._check_workspace()
        proxy_socket = await self._ensure_proxy()
        sandbox = self.sandbox
        prepared = sandbox.prepare(list(argv), self.workspace, dict(env or {}), proxy_socket)
        limits = sandbox.config.limits
        cgroup: PidsCgroup | None = None
        preexec: Callable[[], None] | None = None
        if prepared.host_limits:
            if limits.max_processes is not None and sandbox.cgroups_usable():
                cgroup = PidsCgroup.create(limits.max_processes)
            preexec = sandbox.child_setup(cgroup)
        try:
            popen = _popen(prepared, preexec)
        except (OSError, subprocess.SubprocessError) as exc:
            if cgroup is not None:
                cgroup.remove()
            raise SandboxError(
                f"Could not start {argv[0]!r} in the {sandbox.name} sandbox: {exc}"
            ) from exc
        running = SandboxedProcess(popen, self, prepared, cgroup)
        self._processes.add(running)
        try:
            await running._start()
        except BaseException:
            running.kill()
            raise
        return running

    async def run(
        self,
        argv: Sequence[str],
        *,
        time_limit: float | None = None,
        env: Mapping[str, str] | None = None,
        max_output_bytes: int = DEFAULT_MAX_OUTPUT_BYTES,
    ) -> RunOutcome:
        """Run a command to the end (or ``time_limit`` seconds, then kill its whole tree) and
        capture its output. Cancelling the caller kills the tree before re-raising."""
        started = time.monotonic()
        process = await self.spawn(argv, env=env)
        stdout, stderr = OutputBuffer(max_output_bytes), OutputBuffer(max_output_bytes)
        output = asyncio.ensure_future(process.drain(stdout, stderr))
        timed_out = False
        try:
            try:
                async with asyncio.timeout(time_limit):
                    await process.wait_exit()
            except TimeoutError:
                timed_out = True
                process.kill()
            await asyncio.shield(output)
            code = await process.wait()
        except BaseException:
            process.kill()
            with contextlib.suppress(BaseException):
                async with asyncio.timeout(5):
                    await asyncio.shield(output)
            output.cancel()
            raise
        stdout_text, stdout_cut = stdout.take()
        stderr_text, stderr_cut = stderr.take()
        return RunOutcome(
            exit_code=code,
            stdout=stdout_text,
            stderr=stderr_text,
            stdout_bytes=stdout.total,
            stderr_bytes=stderr.total,
            stdout_cut=stdout_cut,
            stderr_cut=stderr_cut,
            timed_out=timed_out,
            violation=process.violation,
            duration_s=time.monotonic() - started,
        )

    def _check_workspace(self) -> None:
        if not os.path.isdir(self.workspace):
            raise SandboxError(
                f"The workspace {self.workspace} does not exist; create it before running "
                "commands in it."
            )

    def _forget(self, process: SandboxedProcess) -> None:
        self._processes.discard(process)

    def _cleanup(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.ensure_future(work)
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)

    def kill_all(self) -> None:
        """Kill every running command of the session (synchronous, immediate)."""
        for process in list(self._processes):
            process.kill()

    async def aclose(self) -> None:
        """Kill every process the session started and stop its proxy. Idempotent."""
        self.closed = True
        processes = list(self._processes)
        for process in processes:
            process.kill()
        if processes:
            await asyncio.gather(*(p.aclose() for p in processes), return_exceptions=True)
        if self._cleanups:
            await asyncio.wait(self._cleanups, timeout=10)
        if self._proxy is not None:
            await self._proxy.aclose()
            self._proxy = None
        if self._proxy_dir is not None:
            shutil.rmtree(self._proxy_dir, ignore_errors=True)
            self._proxy_dir = None

    async def __aenter__(self) -> SandboxSession:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class Sandbox(ABC):
    """A sandbox backend and its configuration; :meth:`open` one session per workspace."""

    #: the backend's name: ``"bubblewrap"``, ``"process"``, ``"docker"``
    name: ClassVar[str]
    #: True when the command's orphans stay in its process tree (a PID namespace's init
    #: adopts them); otherwise they are found through the command's session
    adopts_orphans: ClassVar[bool] = False

    def __init__(
        self,
        config: SandboxConfig | None = None,
        *,
        limits: ResourceLimits | None = None,
        network: NetworkPolicy | None = None,
    ) -> None:
        config = config or SandboxConfig()
        if limits is not None or network is not None:
            config = SandboxConfig(
                limits=limits or config.limits,
                network=network or config.network,
                env_passthrough=config.env_passthrough,
                env=config.env,
                python=config.python,
                read_only_paths=config.read_only_paths,
            )
        self.config = config
        self._cgroups_usable: bool | None = None

    @classmethod
    @abstractmethod
    def unavailable_reason(cls) -> str | None:
        """Why this backend cannot run here, or ``None`` if it can."""

    @abstractmethod
    def prepare(
        self,
        argv: list[str],
        workspace: str,
        env: dict[str, str],
        proxy_socket: str | None,
    ) -> PreparedCommand:
        """The host command line that runs ``argv`` inside this sandbox."""

    def open(self, workspace: str | os.PathLike[str]) -> SandboxSession:
        """A session of this sandbox for one workspace."""
        return SandboxSession(self, workspace)

    @property
    def python(self) -> str:
        """The Python interpreter commands use (``python`` on ``PATH``, the Python tool)."""
        return self.config.python or sys.executable

    def python_user_site(self) -> tuple[str, str] | None:
        """``(user base, user site-packages)`` of :attr:`python` on the host, when it
        imports from one (see :func:`python_user_site`)."""
        return python_user_site(self.python)

    # --- shared by the backends --------------------------------------------------------

    def home_dir(self, workspace: str) -> str:
        """``HOME`` of the sandboxed commands: a directory inside the workspace."""
        return os.path.join(workspace, ".loopwright", "home")

    def environment(
        self, workspace: str, *, tmpdir: str, extra: Mapping[str, str], proxy: bool
    ) -> dict[str, str]:
        """The command's whole environment: the allowlist, nothing else of the host's."""
        env: dict[str, str] = {}
        patterns = self.config.env_passthrough
        for name, value in os.environ.items():
            if any(fnmatch.fnmatchcase(name, pattern) for pattern in patterns):
                env[name] = value
        env.setdefault("LANG", "C.UTF-8")
        home = self.home_dir(workspace)
        python_bin = os.path.dirname(os.path.abspath(self.python))
        path = [python_bin, os.path.join(home, ".local", "bin"), *SYSTEM_PATH]
        env.update(
            {
                "PATH": os.pathsep.join(dict.fromkeys(path)),
                "HOME": home,
                "TMPDIR": tmpdir,
                "TERM": "dumb",
                "PAGER": "cat",
                "GIT_PAGER": "cat",
                "PYTHONUNBUFFERED": "1",
                "LOOPWRIGHT_SANDBOXED": self.name,  # a program may check where it runs
            }
        )
        user_site = self.python_user_site()
        if user_site is not None:
            # the libraries installed with pip --user: the same directory as on the host
            env["PYTHONUSERBASE"] = user_site[0]
        if proxy:
            url = f"http://127.0.0.1:{PROXY_PORT}"
            for name in ("HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy"):
                env[name] = url
            env["NO_PROXY"] = env["no_proxy"] = "localhost,127.0.0.1,::1"
        env.update(self.config.env)
        env.update(extra)
        return env

    def forwarded(self, argv: list[str], socket_path: str) -> list[str]:
        """``argv`` wrapped in the proxy forwarder (see :mod:`loopwright.sandbox.netproxy`)."""
        return [self.python, "-S", "-c", FORWARDER, socket_path, str(PROXY_PORT), *argv]

    def cgroups_usable(self) -> bool:
        """Whether a pids cgroup can be made here (checked once per sandbox)."""
        if self._cgroups_usable is None:
            PidsCgroup.remove_stale()
            probe = PidsCgroup.create(1)
            self._cgroups_usable = probe is not None
            if probe is not None:
                probe.remove()
        return self._cgroups_usable

    def child_setup(self, cgroup: PidsCgroup | None) -> Callable[[], None]:
        """What the forked child does before exec: join the cgroup, set the rlimits."""
        rlimits = self.rlimits(cgroup)

        def setup() -> None:
            if cgroup is not None:
                cgroup.attach_self()
            apply_rlimits(rlimits)

        return setup

    def rlimits(self, cgroup: PidsCgroup | None) -> list[tuple[int, int, int]]:
        """The rlimits of a command: the configured ones, and without a cgroup a loose
        process-count backstop (see :func:`~loopwright.sandbox.limits.process_backstop`)."""
        limits = self.config.limits
        settings = limits.rlimits()
        if cgroup is None and limits.max_processes is not None:
            backstop = process_backstop(limits.max_processes)
            if backstop is not None:
                settings.append(backstop)
        return settings

    def kill_container(self, name: str) -> None:
        """Stop a container (docker only)."""

    def describe(self) -> dict[str, Any]:
        """What this sandbox enforces, for logs and the audit trail."""
        limits = self.config.limits
        network = self.config.network
        return {
            "backend": self.name,
            "network": "all" if network.allow_all else list(network.allowed_domains) or "none",
            "limits": {
                name: getattr(limits, name)
                for name in limits.__dataclass_fields__
                if name != "watchdog_interval_s"
            },
        }


def python_user_site(executable: str) -> tuple[str, str] | None:
    """``(user base, user site-packages)`` when the interpreter ``executable`` imports from a
    user site-packages directory on this host (``pip install --user``, or pip's own fallback
    when site-packages is not writable: then polars, matplotlib and loopwright itself live
    there), else ``None``. A sandboxed command has another ``HOME``, so its interpreter finds
    that directory only through ``PYTHONUSERBASE``."""
    return _user_site(
        executable, os.environ.get("PYTHONUSERBASE"), os.environ.get("PYTHONNOUSERSITE")
    )


@functools.cache
def _user_site(executable: str, *env: str | None) -> tuple[str, str] | None:
    """:func:`python_user_site`, cached per interpreter and the variables that move it."""
    if executable == sys.executable:  # the same path: a virtualenv's is not its base's
        import site

        enabled = bool(site.ENABLE_USER_SITE)
        base, packages = site.getuserbase(), site.getusersitepackages()
    else:
        code = (
            "import site; print(bool(site.ENABLE_USER_SITE), site.getuserbase(), "
            "site.getusersitepackages(), sep='\\n')"
        )
        try:
            out = subprocess.run(
                [executable, "-c", code],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
                stdin=subprocess.DEVNULL,
            ).stdout
        except (OSError, subprocess.SubprocessError):
            return None  # an interpreter that does not run says so when it is used
        lines = out.splitlines()
        if len(lines) < 3:
            return None
        enabled, base, packages = lines[0] == "True", lines[1], lines[2]
    if not enabled or not os.path.isdir(packages):
        return None
    return base, os.path.realpath(packages)


def _popen(
    prepared: PreparedCommand, preexec: Callable[[], None] | None
) -> subprocess.Popen[bytes]:
    """Fork and exec (about a millisecond; asyncio's own subprocess start does the same)."""
    return subprocess.Popen(
        prepared.argv,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=prepared.env,
        cwd=prepared.cwd,
        start_new_session=True,
        preexec_fn=preexec,
    )


def create_sandbox(backend: str | None = None, config: SandboxConfig | None = None) -> Sandbox:
    """The sandbox to use: ``backend`` is ``"auto"`` (default; also read from the
    ``LOOPWRIGHT_SANDBOX`` environment variable), ``"bubblewrap"``, ``"process"`` or
    ``"docker"``. ``auto`` takes bubblewrap when it works here and otherwise falls back to
    ``process`` with a logged warning."""
    from loopwright.sandbox.bubblewrap import BubblewrapSandbox
    from loopwright.sandbox.docker import DockerSandbox
    from loopwright.sandbox.process import ProcessSandbox

    choice = (backend or os.environ.get("LOOPWRIGHT_SANDBOX") or "auto").strip().lower()
    backends: dict[str, type[Sandbox]] = {
        "bubblewrap": BubblewrapSandbox,
        "bwrap": BubblewrapSandbox,
        "process": ProcessSandbox,
        "docker": DockerSandbox,
    }
    if choice == "auto":
        reason = BubblewrapSandbox.unavailable_reason()
        if reason is None:
            return BubblewrapSandbox(config)
        logger.warning(
            "bubblewrap sandbox unavailable (%s); commands run in the process sandbox: same "
            "resource limits and scrubbed environment, but no filesystem isolation. Install "
            "bubblewrap (apt-get install bubblewrap) for isolation.",
            reason,
        )
        return ProcessSandbox(config)
    cls = backends.get(choice)
    if cls is None:
        raise ValueError(
            f"unknown sandbox backend {choice!r}; use one of auto, bubblewrap, process, docker"
        )
    reason = cls.unavailable_reason()
    if reason is not None:
        raise SandboxUnavailable(
            f"The {cls.name} sandbox cannot run here ({reason}); fix that, or choose "
            "another backend (auto picks the best one that works)."
        )
    return cls(config)


__all__ = [
    "DEFAULT_ENV_PASSTHROUGH",
    "DEFAULT_MAX_OUTPUT_BYTES",
    "NetworkPolicy",
    "OutputBuffer",
    "PreparedCommand",
    "RunOutcome",
    "Sandbox",
    "SandboxConfig",
    "SandboxError",
    "SandboxSession",
    "SandboxUnavailable",
    "SandboxedProcess",
    "create_sandbox",
    "drain_into",
    "python_user_site",
]
