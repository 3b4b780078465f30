"""Start-up cost of loopwright: ``import loopwright`` and ``loopwright --help``.

Every figure comes from fresh subprocesses of the same interpreter (the median of several):

- ``-X importtime``: the cumulative time the interpreter reports for the ``loopwright``
  package, and the sum of the self times of every module the command imports beyond what a
  bare ``python -c pass`` imports (what loopwright costs, its dependencies included);
- wall time of ``python -c "import loopwright"`` (interpreter start-up included; a bare
  ``python -c pass`` is shown for reference) and of ``from loopwright import Agent``, which
  resolves the lazily imported names a program actually uses;
- wall time of ``loopwright --help`` when the CLI is installed (skipped otherwise).

Run ``python benchmarks/startup.py`` (``--quick`` for fewer runs, ``--json`` for
machine-readable output). It only prints: it never fails on timings.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from bench_table import render_table

TARGET_IMPORT_MS = 150.0
TARGET_HELP_MS = 300.0


@dataclass(slots=True)
class Row:
    measure: str
    value_ms: float | None
    target_ms: float | None
    note: str = ""

    @property
    def passed(self) -> bool | None:
        if self.value_ms is None or self.target_ms is None:
            return None
        return self.value_ms < self.target_ms


def wall_ms(command: list[str], runs: int) -> float:
    """Median wall time of ``command`` in milliseconds (after one untimed warm-up run)."""
    subprocess.run(command, capture_output=True, check=False)
    samples: list[float] = []
    for _ in range(runs):
        started = time.perf_counter()
        subprocess.run(command, capture_output=True, check=False)
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def importtime(code: str) -> dict[str, tuple[int, int]]:
    """``{module: (self_us, cumulative_us)}`` from ``python -X importtime -c code``."""
    done = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"python -c {code!r} failed:\n{done.stderr}")
    modules: dict[str, tuple[int, int]] = {}
    for line in done.stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        own, cumulative, name = line[len("import time:") :].split("|")
        modules[name.strip()] = (int(own), int(cumulative))
    return modules


@dataclass(slots=True)
class ImportCost:
    package_cumulative_ms: float
    added_self_ms: float
    added_modules: int


def import_cost(code: str, runs: int) -> ImportCost:
    """Median import figures of ``code`` over ``runs`` interpreters."""
    baseline = set(importtime("pass"))
    cumulative: list[float] = []
    added: list[float] = []
    count = 0
    for _ in range(runs):
        modules = importtime(code)
        extra = {name: times for name, times in modules.items() if name not in baseline}
        count = len(extra)
        added.append(sum(own for own, _ in extra.values()) / 1000)
        cumulative.append(modules.get("loopwright", (0, 0))[1] / 1000)
    return ImportCost(statistics.median(cumulative), statistics.median(added), count)


def cli_command() -> tuple[list[str] | None, str]:
    """How to run the CLI, or ``None`` and why it is not available."""
    script = Path(sys.executable).parent / ("loopwright.exe" if os.name == "nt" else "loopwright")
    probe = subprocess.run(
        [sys.executable, "-c", "import loopwright.cli.app"],
        capture_output=True,
        text=True,
        check=False,
    )
    if probe.returncode != 0:
        last = probe.stderr.strip().splitlines()[-1:] or ["unknown error"]
        return None, f"skipped: loopwright.cli.app does not import ({last[0]})"
    command = (
        [str(script), "--help"]
        if script.exists()
        else [sys.executable, "-m", "loopwright.cli.app", "--help"]
    )
    check = subprocess.run(command, capture_output=True, text=True, check=False)
    if check.returncode != 0:
        last = check.stderr.strip().splitlines()[-1:] or [f"exit code {check.returncode}"]
        return None, f"skipped: `{' '.join(command)}` failed ({last[0]})"
    return command, " ".join(Path(command[0]).name if i == 0 else c for i, c in enumerate(command))


def measure(runs: int) -> tuple[list[Row], dict[str, object]]:
    python = [sys.executable]
    bare = import_cost("import loopwright", runs)
    agent = import_cost("from loopwright import Agent", runs)
    rows = [
        Row(
            "import loopwright: -X importtime, cumulative",
            bare.package_cumulative_ms,
            TARGET_IMPORT_MS,
        ),
        Row(
            "import loopwright: -X importtime, all new modules (self)",
            bare.added_self_ms,
            TARGET_IMPORT_MS,
            f"{bare.added_modules} modules",
        ),
        Row(
            "from loopwright import Agent: -X importtime, all new modules",
            agent.added_self_ms,
            None,
            f"{agent.added_modules} modules",
        ),
        Row(
            "python -c pass: wall (interpreter start-up)",
            wall_ms([*python, "-c", "pass"], runs),
            None,
        ),
        Row(
            'python -c "import loopwright": wall',
            wall_ms([*python, "-c", "import loopwright"], runs),
            TARGET_IMPORT_MS,
        ),
        Row(
            'python -c "from loopwright import Agent": wall',
            wall_ms([*python, "-c", "from loopwright import Agent"], runs),
            None,
        ),
    ]
    command, described = cli_command()
    if command is None:
        rows.append(Row("loopwright --help: wall", None, TARGET_HELP_MS, described))
    else:
        rows.append(Row(f"{described}: wall", wall_ms(command, runs), TARGET_HELP_MS))
    details: dict[str, object] = {"import": asdict(bare), "import_agent": asdict(agent)}
    return rows, details


def render(rows: list[Row]) -> str:
    header = ("measure", "value", "target", "result", "note")
    table = [header]
    for row in rows:
        table.append(
            (
                row.measure,
                "-" if row.value_ms is None else f"{row.value_ms:.1f} ms",
                "-" if row.target_ms is None else f"< {row.target_ms:g} ms",
                "-" if row.passed is None else ("PASS" if row.passed else "FAIL"),
                row.note,
            )
        )
    return render_table(table[0], table[1:], left={0, 2, 3, 4})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Start-up cost of loopwright.")
    parser.add_argument("--quick", action="store_true", help="fewer runs (CI smoke run)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    runs = 5 if args.quick else 21
    rows, details = measure(runs)
    if args.json:
        report = {
            "python": platform.python_version(),
            "executable": sys.executable,
            "runs": runs,
            "rows": [{**asdict(r), "passed": r.passed} for r in rows],
            **details,
        }
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"loopwright start-up - Python {platform.python_version()} ({sys.executable}), "
        f"median of {runs} runs\n"
    )
    print(render(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
