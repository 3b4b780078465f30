"""The shell tools: ``Bash``, ``BashOutput`` and ``KillShell``, sharing one session's shells.

Give ``ShellTools()`` to an ``Agent`` (or ``ToolRegistry.register_all``): each session gets
its own :class:`ShellSession` (its sandbox session, its background shells) and the three
tools bound to it. Every command runs in the sandbox (bubblewrap when it works here, see
:func:`loopwright.sandbox.create_sandbox`), in the workspace, with a scrubbed environment
and resource limits; a timeout, a ``KillShell``, the session's close or the run's
cancellation kills the command's whole process tree.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from typing import Any, Final

from loopwright.sandbox.base import (
    OutputBuffer,
    RunOutcome,
    Sandbox,
    SandboxConfig,
    SandboxedProcess,
    SandboxError,
    SandboxSession,
    create_sandbox,
)
from loopwright.sandbox.limits import describe_signal, signal_of
from loopwright.tools.base import BaseTool, ToolResult, Toolset, error, ok
from loopwright.tools.written import (
    Stamp,
    broken_images,
    broken_note,
    files_written,
    is_image,
    workspace_files,
    written_note,
)

DEFAULT_TIMEOUT_MS: Final = 120_000
MAX_TIMEOUT_MS: Final = 600_000
#: Output kept per stream of a command (its first and last halves): with the note, one
#: stream stays under the registry's default cut (30,000 characters), so the model sees
#: the tool's own note on what was cut and what to do.
DEFAULT_OUTPUT_BYTES: Final = 24_000
#: Background shells running at once in one session.
MAX_BACKGROUND_SHELLS: Final = 16
#: Unread output kept per stream of a background shell (first and last halves).
BACKGROUND_OUTPUT_BYTES: Final = 256 * 1024
#: The registry's own timeout for these tools: never shorter than the longest allowed one.
REGISTRY_TIMEOUT_S: Final = MAX_TIMEOUT_MS / 1000 + 30


#: What to do about a command that timed out, or printed too much: Bash's advice.
SHELL_ADVICE: Final = (
    "Run long jobs in the background (background: true) or give a longer timeout.",
    "Redirect it to a file (> out.txt) and read the file in parts, or filter it (grep, head, "
    "tail).",
)


def render_outcome(
    outcome: RunOutcome,
    *,
    timeout_s: float | None,
    what: str = "The command",
    advice: tuple[str, str] = SHELL_ADVICE,
) -> ToolResult:
    """A finished command as a tool result: stdout, stderr, notes; non-zero → ``is_error``.

    ``advice`` is what to do about a time-out and about output too long to show, in the
    terms of the calling tool (Bash's by default).
    """
    parts: list[str] = []
    if outcome.stdout:
        parts.append(outcome.stdout.removesuffix("\n"))
    if outcome.stderr:
        parts.append("[stderr]\n" + outcome.stderr.removesuffix("\n"))
    cut_note = _cut_note(
        outcome.stdout_bytes,
        outcome.stdout_cut,
        outcome.stderr_bytes,
        outcome.stderr_cut,
        advice[1],
    )
    if cut_note:
        parts.append(cut_note)
    code = outcome.exit_code
    if outcome.timed_out:
        limit = f"{timeout_s:g}s" if timeout_s is not None else "its time limit"
        parts.append(
            f"[{what} timed out after {limit} and was killed, with every process it started. "
            f"{advice[0]}]"
        )
    elif outcome.violation is not None:
        parts.append(f"[{what} was stopped because {outcome.violation}.]")
    elif code is not None and code != 0:
        parts.append(_exit_note(code))
    if not parts:
        parts.append("(no output)")
    metadata: dict[str, Any] = {
        "exit_code": code,
        "timed_out": outcome.timed_out,
        "violation": outcome.violation,
        "duration_ms": round(outcome.duration_s * 1000, 1),
        "stdout_bytes": outcome.stdout_bytes,
        "stderr_bytes": outcome.stderr_bytes,
    }
    content = "\n".join(parts)
    if outcome.ok:
        return ok(content, metadata=metadata)
    return error(content, metadata=metadata)


def _exit_note(code: int) -> str:
    number = signal_of(code)
    if code < 0 and number is not None:
        return f"[killed by {describe_signal(number)}]"
    if number is not None:
        return f"[exit code {code} (128+{number}, {describe_signal(number)})]"
    return f"[exit code {code}]"


def _cut_note(out_total: int, out_cut: int, err_total: int, err_cut: int, advice: str) -> str:
    cut = []
    if out_cut:
        cut.append(f"stdout {out_total:,} bytes ({out_cut:,} cut)")
    if err_cut:
        cut.append(f"stderr {err_total:,} bytes ({err_cut:,} cut)")
    if not cut:
        return ""
    return f"[output too long: {', '.join(cut)}; only its beginning and end are shown. {advice}]"


class BackgroundShell:
    """One command running in the background, and the output nobody has read yet."""

    def __init__(self, shell_id: str, command: str, process: SandboxedProcess) -> None:
        self.id = shell_id
        self.command = command
        self.process = process
        self.started = time.monotonic()
        self.ended: float | None = None
        self.stdout = OutputBuffer(BACKGROUND_OUTPUT_BYTES)
        self.stderr = OutputBuffer(BACKGROUND_OUTPUT_BYTES)
        self.exit_code: int | None = None
        self.killed_by_user = False
        self.timed_out = False
        self._task = asyncio.ensure_future(self._follow())
        self._timer: asyncio.TimerHandle | None = None

    def set_timeout(self, seconds: float) -> None:
        """Kill the shell's tree after ``seconds``."""
        self._timer = asyncio.get_running_loop().call_later(seconds, self._time_out)

    def _time_out(self) -> None:
        if self.running:
            self.timed_out = True
            self.process.kill()

    @property
    def running(self) -> bool:
        return self.ended is None

    async def _follow(self) -> None:
        try:
            await self.process.drain(self.stdout, self.stderr)
            self.exit_code = await self.process.wait()
        finally:
            if self._timer is not None:
                self._timer.cancel()
            self.ended = time.monotonic()

    def status(self) -> str:
        """``running``, ``completed (exit code 0)``, ``failed (exit code 2)``, ``killed``..."""
        if self.running:
            return "running"
        if self.killed_by_user:
            return "killed (by KillShell)"
        if self.timed_out:
            return "killed (timed out)"
        violation = self.process.violation
        if violation is not None:
            return f"stopped because {violation}"
        code = self.exit_code
        if code == 0:
            return "completed (exit code 0)"
        if code is not None and code < 0:
            return f"killed ({describe_signal(-code)})"
        return f"failed (exit code {code})"

    async def kill(self) -> None:
        """Kill the shell's whole tree and wait (bounded) until it is gone."""
        if self.running:
            self.killed_by_user = True
            self.process.kill()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await asyncio.shield(self._task)

    def cancel(self) -> None:
        self._task.cancel()
        if self._timer is not None:
            self._timer.cancel()


class ShellSession:
    """A session's shells: one sandbox session, the running commands, the background ones.

    Closing it kills every process it started; it reopens on the next command."""

    def __init__(
        self,
        sandbox: Sandbox,
        workspace_dir: str | os.PathLike[str],
        *,
        default_timeout_ms: int = DEFAULT_TIMEOUT_MS,
        max_output_bytes: int = DEFAULT_OUTPUT_BYTES,
        max_background: int = MAX_BACKGROUND_SHELLS,
    ) -> None:
        self.sandbox = sandbox
        self.workspace_dir = os.fspath(workspace_dir)
        self.default_timeout_ms = default_timeout_ms
        self.max_output_bytes = max_output_bytes
        self.max_background = max_background
        self.shells: dict[str, BackgroundShell] = {}
        self._session: SandboxSession | None = None
        self._counter = 0

    @property
    def sandbox_session(self) -> SandboxSession:
        """The sandbox session of this workspace (opened on first use)."""
        if self._session is None or self._session.closed:
            self._session = self.sandbox.open(self.workspace_dir)
        return self._session

    async def run(self, command: str, timeout_s: float) -> RunOutcome:
        """Run ``bash -c command`` to its end or its timeout."""
        return await self.sandbox_session.run(
            ["bash", "-c", command], time_limit=timeout_s, max_output_bytes=self.max_output_bytes
        )

    async def start(self, command: str, timeout_s: float | None) -> BackgroundShell:
        """Start ``bash -c command`` in the background and return its shell."""
        running = [s for s in self.shells.values() if s.running]
        if len(running) >= self.max_background:
            raise SandboxError(
                f"{len(running)} background shells are already running, the most a session "
                f"may have; stop one with KillShell ({', '.join(s.id for s in running)}) first."
            )
        process = await self.sandbox_session.spawn(["bash", "-c", command])
        self._counter += 1
        shell = BackgroundShell(f"bash_{self._counter}", command, process)
        if timeout_s is not None:
            shell.set_timeout(timeout_s)
        self.shells[shell.id] = shell
        return shell

    def get(self, shell_id: str) -> BackgroundShell | None:
        return self.shells.get(shell_id.strip())

    def unknown(self, shell_id: str) -> ToolResult:
        """The error for a shell id that does not exist."""
        known = ", ".join(self.shells) or "none (start one with Bash and background: true)"
        return error(f"No background shell has the id {shell_id!r}; the shells are: {known}.")

    async def aclose(self) -> None:
        """Kill every process of the session (foreground and background). Idempotent."""
        session, self._session = self._session, None
        if session is not None:
            await session.aclose()
        for shell in self.shells.values():
            if shell.running:
                with contextlib.suppress(Exception):
                    await shell.kill()
            shell.cancel()


def _timeout_ms(input: dict[str, Any], default: int) -> int:
    value = input.get("timeout")
    return int(value) if value is not None else default


_TIMEOUT_SCHEMA: Final = {
    "type": "integer",
    "minimum": 1,
    "maximum": MAX_TIMEOUT_MS,
    "description": (
        f"Milliseconds before the command is killed (default {DEFAULT_TIMEOUT_MS}, at most "
        f"{MAX_TIMEOUT_MS})"
    ),
}


class BashTool(BaseTool):
    """``Bash``: run a shell command in the sandbox, in the workspace."""

    sequential = True
    timeout = REGISTRY_TIMEOUT_S

    def __init__(
        self, workspace_dir: str | os.PathLike[str], shells: ShellSession | None = None
    ) -> None:
        super().__init__(workspace_dir)
        self.shells = shells or ShellSession(create_sandbox(), workspace_dir)

    @property
    def name(self) -> str:
        return "Bash"

    @property
    def schema(self) -> dict[str, Any]:
        return {
            "name": "Bash",
            "description": (
                "Run a bash command in the sandbox, in the workspace directory, as `bash -c "
                "<command>`: quoting, variables, pipes, redirections and heredocs work as in "
                "a terminal. Each call starts a fresh shell in the workspace (cd and "
                "variables do not carry over; chain steps with &&). stdin is empty; there "
                "is no network unless the sandbox allows it. The output shows stdout, then "
                "stderr after a [stderr] line, and the exit code when it is not 0. Processes "
                "left running when the command ends are stopped: for servers and long jobs "
                "use background: true, then BashOutput to read their output and KillShell "
                "to stop them."
            ),
            "input_schema": {
                "type": "object",
                "properties": {
                    "command": {"type": "string", "description": "The command to run"},
                    "timeout": _TIMEOUT_SCHEMA,
                    "background": {
                        "type": "boolean",
                        "description": (
                            "Run in the background and return a shell id at once (default "
                            "false); it runs until it exits, times out (only if a timeout is "
                            "given) or is killed"
                        ),
                    },
                },
                "required": ["command"],
                "additionalProperties": False,
            },
        }

    async def execute(self, input: dict[str, Any]) -> ToolResult:
        command = input["command"]
        if not command.strip():
            return error("The command is empty; give the shell command to run.")
        shells = self.shells
        try:
            if input.get("background"):
                timeout = input.get("timeout")
                shell = await shells.start(command, timeout / 1000 if timeout else None)
                return ok(
                    f"Started background shell {shell.id}. Read its output with BashOutput "
                    f'(shell_id "{shell.id}") and stop it with KillShell.',
                    metadata={"shell_id": shell.id},
                )
            timeout_s = _timeout_ms(input, shells.default_timeout_ms) / 1000
            workspace = os.fspath(self.workspace_dir)
            before = workspace_files(workspace)
            outcome = await shells.run(command, timeout_s)
        except SandboxError as exc:
            return error(str(exc))
        return with_images_written(render_outcome(outcome, timeout_s=timeout_s), workspace, before)

    async def aclose(self) -> None:
        await self.shells.aclose()


def with_images_written(
    result: ToolResult, workspace: str, before: dict[str, Stamp] | None
) -> ToolResult:
    """``result`` with the images a command wrote named (a chart drawn by a script it ran,
    ``python plot.py``), and those that will not open (empty, cut short) said to be so;
    other files are not listed (a build or an install writes thousands)."""
    images = [
        (name, size)
        for name, size in files_written(before, workspace_files(workspace))
        if is_image(name)
    ]
    if not images:
        return result
    broken = broken_images(workspace, [name for name, _ in images])
    notes = [broken_note(broken)] if broken else []
    notes.append(written_note(images, "Images"))
    result["content"] = "\n".join([str(result["content"]), *notes])
    metadata = result.setdefault("metadata", {})
    metadata["images_written"] = [name for name, _ in images]
    if broken:
        metadata["broken_images"] = [name for name, _ in broken]
    return result


class _BackgroundShellTool(BaseTool):
    """What ``BashOutput`` and ``KillShell`` share: the session's shells, looked up by id."""

    timeout = 30.0

    def __init__(
        self, workspace_dir: str | os.PathLike[str], shells: ShellSession | None = None
    ) -> None:
        super().__init__(workspace_dir)
        self.shells = shells or ShellSession(create_sandbox(), workspace_dir)

    async def aclose(self) -> None:
        await self.shells.aclose()


class BashOutputTool(_BackgroundShellTool):
    """``BashOutput``: the new output of a background shell, with its status."""

    @property
    def name(self) -> str:
        return "BashOutput"

    @property
    def schema(self) -> dict[str, Any]:
        return {
            "name": "BashOutput",
            "description": (
                "Read what a background shell (started with Bash and background: true) wrote "
                "since the last read, with its status (running, completed, failed, killed) "
                "and exit code."
            ),
            "input_schema": {
                "type": "object",
                "properties": {
                    "shell_id": {"type": "string", "description": "The id Bash returned"},
                    "filter": {
                        "type": "string",
                        "description": (
                            "Optional regular expression: only new lines matching it are "
                            "shown (the others are discarded)"
                        ),
                    },
                },
                "required": ["shell_id"],
                "additionalProperties": False,
            },
        }

    async def execute(self, input: dict[str, Any]) -> ToolResult:
        shell_id = input["shell_id"]
        shell = self.shells.get(shell_id)
        if shell is None:
            return self.shells.unknown(shell_id)
        pattern: re.Pattern[str] | None = None
        if input.get("filter"):
            try:
                pattern = re.compile(input["filter"])
            except re.error as exc:
                return error(f"The filter is not a valid regular expression: {exc}.")
        status = shell.status()  # before reading: output read after "completed" is all of it
        stdout, stdout_cut = shell.stdout.take()
        stderr, stderr_cut = shell.stderr.take()
        if pattern is not None:
            stdout, stderr = _only_matching(stdout, pattern), _only_matching(stderr, pattern)
        end = shell.ended if shell.ended is not None else time.monotonic()
        parts = [f"[shell {shell.id}: {status}, after {end - shell.started:.1f}s]"]
        if stdout:
            parts.append(stdout.removesuffix("\n"))
        if stderr:
            parts.append("[stderr]\n" + stderr.removesuffix("\n"))
        if stdout_cut or stderr_cut:
            parts.append(
                f"[{stdout_cut + stderr_cut:,} bytes of output were cut since the last read; "
                "read more often or redirect the output to a file.]"
            )
        if not stdout and not stderr:
            parts.append("(no new output)")
        return ok(
            "\n".join(parts),
            metadata={"shell_id": shell.id, "status": status, "exit_code": shell.exit_code},
        )


def _only_matching(text: str, pattern: re.Pattern[str]) -> str:
    return "".join(line for line in text.splitlines(keepends=True) if pattern.search(line))


class KillShellTool(_BackgroundShellTool):
    """``KillShell``: stop a background shell and everything it started."""

    @property
    def name(self) -> str:
        return "KillShell"

    @property
    def schema(self) -> dict[str, Any]:
        return {
            "name": "KillShell",
            "description": (
                "Stop a background shell and every process it started. Output it wrote "
                "before can still be read with BashOutput."
            ),
            "input_schema": {
                "type": "object",
                "properties": {
                    "shell_id": {"type": "string", "description": "The id Bash returned"},
                },
                "required": ["shell_id"],
                "additionalProperties": False,
            },
        }

    async def execute(self, input: dict[str, Any]) -> ToolResult:
        shell_id = input["shell_id"]
        shell = self.shells.get(shell_id)
        if shell is None:
            return self.shells.unknown(shell_id)
        if not shell.running:
            return ok(f"Shell {shell.id} had already ended: {shell.status()}.")
        await shell.kill()
        return ok(f"Killed shell {shell.id} and every process it started.")


class ShellTools(Toolset):
    """``Bash``, ``BashOutput`` and ``KillShell`` for each session, sharing its shells.

    ``sandbox`` is a :class:`~loopwright.sandbox.Sandbox`, a backend name (``"auto"``,
    ``"bubblewrap"``, ``"process"``, ``"docker"``) or ``None`` for the default
    (:func:`~loopwright.sandbox.create_sandbox`); ``config`` configures a sandbox made
    from a name.
    """

    def __init__(
        self,
        sandbox: Sandbox | str | None = None,
        *,
        config: SandboxConfig | None = None,
        default_timeout_ms: int = DEFAULT_TIMEOUT_MS,
        max_output_bytes: int = DEFAULT_OUTPUT_BYTES,
        max_background: int = MAX_BACKGROUND_SHELLS,
    ) -> None:
        if not 1 <= default_timeout_ms <= MAX_TIMEOUT_MS:
            raise ValueError(f"default_timeout_ms must be between 1 and {MAX_TIMEOUT_MS}")
        self._sandbox = sandbox
        self.config = config
        self.default_timeout_ms = default_timeout_ms
        self.max_output_bytes = max_output_bytes
        self.max_background = max_background

    @property
    def sandbox(self) -> Sandbox:
        """The sandbox every session's commands run in (chosen on first use)."""
        if not isinstance(self._sandbox, Sandbox):
            self._sandbox = create_sandbox(self._sandbox, self.config)
        return self._sandbox

    def bind(self, workspace_dir: str, session_id: str | None = None) -> list[BaseTool]:
        shells = ShellSession(
            self.sandbox,
            workspace_dir,
            default_timeout_ms=self.default_timeout_ms,
            max_output_bytes=self.max_output_bytes,
            max_background=self.max_background,
        )
        return [
            BashTool(workspace_dir, shells),
            BashOutputTool(workspace_dir, shells),
            KillShellTool(workspace_dir, shells),
        ]


__all__ = [
    "DEFAULT_TIMEOUT_MS",
    "MAX_TIMEOUT_MS",
    "BackgroundShell",
    "BashOutputTool",
    "BashTool",
    "KillShellTool",
    "ShellSession",
    "ShellTools",
    "render_outcome",
]
