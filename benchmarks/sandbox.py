"""Per-command start-up cost of the sandbox: ``true`` under bubblewrap vs a plain subprocess.

Every figure is the median wall time of N runs of the same trivial command (``true``),
started and waited for from an asyncio program, in the order:

- **plain subprocess**: ``asyncio.create_subprocess_exec("true")``, the floor;
- **bwrap, raw**: the exact bubblewrap command line loopwright builds, started the same way
  (what bubblewrap itself costs: namespaces, mounts);
- **process sandbox**: ``SandboxSession.run(["true"])`` on the process backend (rlimits,
  pids cgroup, watchdog, output capture, leftover cleanup);
- **bubblewrap sandbox**: ``SandboxSession.run(["true"])`` on the bubblewrap backend, what
  every ``Bash``/``Python`` call pays before the command's own work;
- **Bash tool**: a ``Bash`` call of ``true`` through a ``ToolRegistry`` (adds ``bash -c``).

The target is the bubblewrap sandbox at most 15 ms above the plain subprocess. The kinds
are measured in rotating blocks of consecutive runs (five rounds), so drift on a busy
machine hits them alike while each run follows one of its own kind, as commands of an agent
follow each other.

Run ``python benchmarks/sandbox.py`` (``--quick`` for a CI smoke run, ``--json`` for
machine-readable output). It only prints: it never fails on timings. Other benchmarks use
:func:`measure_sandbox_startup`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass

from loopwright.sandbox import BubblewrapSandbox, ProcessSandbox
from loopwright.tools import ToolRegistry
from loopwright.tools.shell import ShellTools

TARGET_ADDED_MS = 15.0


@dataclass(slots=True)
class SandboxStartup:
    """Median start-up figures in milliseconds (``None``: not measurable here)."""

    runs: int
    plain_ms: float
    bwrap_raw_ms: float | None
    process_sandbox_ms: float
    bubblewrap_sandbox_ms: float | None
    bash_tool_ms: float
    bash_tool_backend: str
    note: str = ""

    @property
    def added_ms(self) -> float | None:
        """What the bubblewrap sandbox adds to a plain subprocess, per command."""
        if self.bubblewrap_sandbox_ms is None:
            return None
        return self.bubblewrap_sandbox_ms - self.plain_ms

    @property
    def passed(self) -> bool | None:
        added = self.added_ms
        return None if added is None else added <= TARGET_ADDED_MS


async def _time(action: Callable[[], Awaitable[object]]) -> float:
    started = time.perf_counter()
    await action()
    return (time.perf_counter() - started) * 1000


async def _measure(runs: int, workspace: str) -> SandboxStartup:
    bwrap_reason = BubblewrapSandbox.unavailable_reason()
    process_session = ProcessSandbox().open(workspace)
    bwrap = BubblewrapSandbox() if bwrap_reason is None else None
    bwrap_session = bwrap.open(workspace) if bwrap is not None else None
    raw_argv = bwrap.prepare(["true"], workspace, {}, None) if bwrap is not None else None
    registry = ToolRegistry(workspace)
    registry.register_all([ShellTools()])

    async def plain() -> None:
        process = await asyncio.create_subprocess_exec("true")
        await process.wait()

    async def raw() -> None:
        assert raw_argv is not None
        process = await asyncio.create_subprocess_exec(
            *raw_argv.argv, env=raw_argv.env, cwd=raw_argv.cwd
        )
        await process.wait()

    async def in_process_sandbox() -> None:
        await process_session.run(["true"], time_limit=60)

    async def in_bubblewrap() -> None:
        assert bwrap_session is not None
        await bwrap_session.run(["true"], time_limit=60)

    async def bash_tool() -> None:
        result = await registry.execute("Bash", {"command": "true"})
        assert not result["is_error"], result

    kinds: dict[str, Callable[[], Awaitable[object]]] = {
        "plain": plain,
        "process": in_process_sandbox,
        "bash": bash_tool,
    }
    if bwrap is not None:
        kinds["raw"] = raw
        kinds["bubblewrap"] = in_bubblewrap
    samples: dict[str, list[float]] = {kind: [] for kind in kinds}
    rounds = 5
    block = max(runs // rounds, 1)
    try:
        for action in kinds.values():  # warm-up: caches, self-tests, imports
            await action()
        for _ in range(rounds):
            for kind, action in kinds.items():
                await action()  # settle after the previous kind
                for _ in range(block):
                    samples[kind].append(await _time(action))
    finally:
        await registry.aclose()
        await process_session.aclose()
        if bwrap_session is not None:
            await bwrap_session.aclose()

    def median(kind: str) -> float | None:
        return statistics.median(samples[kind]) if kind in samples else None

    tool = registry.get("Bash")
    backend = tool.shells.sandbox.name if tool is not None else "?"  # type: ignore[attr-defined]
    return SandboxStartup(
        runs=rounds * block,
        plain_ms=statistics.median(samples["plain"]),
        bwrap_raw_ms=median("raw"),
        process_sandbox_ms=statistics.median(samples["process"]),
        bubblewrap_sandbox_ms=median("bubblewrap"),
        bash_tool_ms=statistics.median(samples["bash"]),
        bash_tool_backend=backend,
        note="" if bwrap_reason is None else f"bubblewrap unavailable: {bwrap_reason}",
    )


def measure_sandbox_startup(runs: int = 50) -> SandboxStartup:
    """Median per-command start-up figures over about ``runs`` runs of ``true`` per kind
    (call it from synchronous code; it runs its own event loop)."""
    with tempfile.TemporaryDirectory(prefix="loopwright-bench-") as tmp:
        return asyncio.run(_measure(runs, os.path.realpath(tmp)))


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def table(figures: SandboxStartup) -> str:
    """The figures as a text table."""
    added = figures.added_ms
    verdict = {None: "-", True: "PASS", False: "FAIL"}[figures.passed]
    rows = [
        ("measure", "median ms", "note"),
        ("plain subprocess (true)", _ms(figures.plain_ms), "floor"),
        ("bwrap, raw command line", _ms(figures.bwrap_raw_ms), "bubblewrap alone"),
        ("process sandbox", _ms(figures.process_sandbox_ms), "limits, cgroup, watchdog"),
        ("bubblewrap sandbox", _ms(figures.bubblewrap_sandbox_ms), "what Bash/Python pay"),
        (
            "added by bubblewrap sandbox",
            _ms(added),
            f"target <= {TARGET_ADDED_MS:g} ms: {verdict}",
        ),
        (
            "Bash tool (bash -c true)",
            _ms(figures.bash_tool_ms),
            f"through the registry, {figures.bash_tool_backend}",
        ),
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    lines = []
    for index, row in enumerate(rows):
        lines.append(
            "  ".join(
                [row[0].ljust(widths[0]), row[1].rjust(widths[1]), row[2].ljust(widths[2])]
            ).rstrip()
        )
        if index == 0:
            lines.append("  ".join("-" * width for width in widths))
    if figures.note:
        lines.append(figures.note)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Per-command start-up cost of the sandbox.")
    parser.add_argument("--quick", action="store_true", help="fewer runs (CI smoke run)")
    parser.add_argument("--runs", type=int, default=None, help="runs per measure")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    runs = args.runs or (10 if args.quick else 50)
    figures = measure_sandbox_startup(runs)
    if args.json:
        report = {
            "python": platform.python_version(),
            "runs": runs,
            **asdict(figures),
            "added_ms": figures.added_ms,
            "target_added_ms": TARGET_ADDED_MS,
            "passed": figures.passed,
        }
        print(json.dumps(report, indent=2))
    else:
        version = platform.python_version()
        print(f"sandbox start-up, median of {figures.runs} runs (python {version})")
        print(table(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
