"""Speed of the workspace tools: Grep against ripgrep run directly, and the sandbox start-up.

Grep: a tree of files is generated deterministically (a seeded generator; 100,000 files of
about 1.5 KB in 1,000 directories, 5,000 files with ``--quick``), with a ``.gitignore``d
directory and a ``needle_<n>`` token in about 1% of the files. Each query runs

- through ripgrep directly: ``rg`` with the very command line Grep builds (same pattern,
  same flags, output captured through a pipe), so the difference is Grep's own cost
  (validation, the asyncio subprocess, parsing, sorting, rendering);
- through ``GrepTool`` with the ripgrep backend, via a ``ToolRegistry`` as the agent calls
  it (target: within 1.3x of ripgrep direct);
- through ``GrepTool`` with the pure-Python backend (no target; shown so the fallback's cost
  is known, and to check at scale that both backends give the same output).

Figures are medians of several runs after one untimed warm-up run (the page cache is warm;
the Python backend runs fewer times). The last section is the sandbox's per-command
start-up (bubblewrap against a plain subprocess; target under 15 ms added), measured by
``measure_sandbox_startup()`` from ``benchmarks/sandbox.py`` when that file exists.

Run ``python benchmarks/tools.py`` (``--quick`` for a CI smoke run of a few seconds,
``--json`` for machine-readable output, ``--tree DIR`` to keep the generated tree in DIR and
reuse it on the next run, ``--no-python`` to skip the Python backend). It only prints: it
never fails on timings.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import inspect
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from bench_table import render_table
from loopwright.tools import GrepTool, ToolRegistry
from loopwright.tools.grep import Backend, ripgrep_argv

TARGET_RATIO = 1.3
SANDBOX_TARGET = (
    "sandbox per-command start-up (bubblewrap vs plain subprocess; target under 15 ms added)"
)
SEED = 20240601
TREE_VERSION = 2
LINES_PER_FILE = 24
NEEDLE_EVERY = 100  # one file in this many has a needle


@dataclass(frozen=True, slots=True)
class TreeShape:
    directories: int  # top level
    subdirectories: int  # in each
    files: int  # in each subdirectory

    @property
    def total(self) -> int:
        return self.directories * self.subdirectories * self.files


FULL_TREE = TreeShape(100, 10, 100)
QUICK_TREE = TreeShape(10, 10, 50)


@dataclass(frozen=True, slots=True)
class Query:
    label: str
    input: dict[str, Any]


QUERIES = [
    Query("literal, files_with_matches", {"pattern": "needle"}),
    Query("regex, content", {"pattern": r"needle_\d*7\b", "output_mode": "content"}),
    Query("-i literal, count", {"pattern": "NEEDLE", "-i": True, "output_mode": "count"}),
    Query(
        "glob *.py, content -C 2",
        {"pattern": "needle", "glob": "*.py", "-C": 2, "output_mode": "content"},
    ),
    Query("no match", {"pattern": "zebra_quux_nowhere"}),
]


@dataclass(slots=True)
class Row:
    label: str
    rg_direct_ms: float
    grep_rg_ms: float
    grep_python_ms: float | None
    output_lines: int
    same_output: bool | None
    notes: list[str] = field(default_factory=list)

    @property
    def ratio(self) -> float:
        return self.grep_rg_ms / self.rg_direct_ms if self.rg_direct_ms else float("nan")

    @property
    def passed(self) -> bool:
        return self.ratio <= TARGET_RATIO


# --- the tree --------------------------------------------------------------------------


def generate_tree(root: Path, shape: TreeShape) -> None:
    """Write the tree (the same bytes for the same shape, on every machine)."""
    rng = random.Random(SEED)
    words = [
        "".join(rng.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9)))
        for _ in range(600)
    ]
    pool = [
        " " * (4 * rng.randint(0, 3)) + " ".join(rng.choices(words, k=rng.randint(3, 12)))
        for _ in range(4000)
    ]
    extensions = (".py", ".md", ".txt", ".js", ".rs")
    root.mkdir(parents=True, exist_ok=True)
    (root / ".gitignore").write_text("generated/\n*.tmp\n")
    number = 0
    for top in range(shape.directories):
        for sub in range(shape.subdirectories):
            # one subdirectory in 10 sits in a .gitignore'd directory
            parent = root / "generated" if sub == 9 else root
            directory = parent / f"pkg{top:03}" / f"mod{sub:02}"
            directory.mkdir(parents=True, exist_ok=True)
            for index in range(shape.files):
                lines = rng.choices(pool, k=LINES_PER_FILE)
                if number % NEEDLE_EVERY == 7:
                    lines[rng.randrange(LINES_PER_FILE)] += f" needle_{number}"
                name = f"f{index:03}{rng.choice(extensions)}"
                (directory / name).write_text(f"# file {number}\n" + "\n".join(lines) + "\n")
                number += 1
    (root / ".bench-tree").write_text(json.dumps(_marker(shape)))


def ensure_tree(root: Path, shape: TreeShape) -> float:
    """Generate the tree unless ``root`` already holds it; the seconds spent generating."""
    marker = root / ".bench-tree"
    if marker.exists() and json.loads(marker.read_text()) == _marker(shape):
        return 0.0
    if root.exists():
        shutil.rmtree(root)
    started = time.perf_counter()
    generate_tree(root, shape)
    return time.perf_counter() - started


def _marker(shape: TreeShape) -> dict[str, Any]:
    """What identifies a generated tree (bump the version when the generator changes)."""
    return {"version": TREE_VERSION, "seed": SEED, **asdict(shape)}


def tree_bytes(root: Path) -> int:
    total = 0
    for directory, _, files in os.walk(root):
        for name in files:
            total += os.path.getsize(os.path.join(directory, name))
    return total


# --- timing ----------------------------------------------------------------------------


def median_ms(samples: list[float]) -> float:
    return statistics.median(samples) * 1000


def run_rg_direct(argv: list[str], workspace: Path) -> float:
    """Seconds ripgrep takes run directly, its output captured through a pipe."""
    started = time.perf_counter()
    subprocess.run(argv, cwd=workspace, capture_output=True, check=False)
    return time.perf_counter() - started


async def run_grep(registry: ToolRegistry, input: dict[str, Any]) -> tuple[float, str]:
    """Seconds a Grep call takes through the registry, and its output."""
    started = time.perf_counter()
    result = await registry.execute("Grep", dict(input))
    elapsed = time.perf_counter() - started
    if result["is_error"]:
        raise RuntimeError(f"Grep failed on {input}: {result['content']}")
    content = result["content"]
    return elapsed, content if isinstance(content, str) else str(content)


def registry_for(workspace: Path, backend: Backend) -> ToolRegistry:
    # No timeout (the Python backend may take a while on the full tree) and no output cap:
    # the outputs of the two backends are compared whole, and nothing is written to the tree.
    registry = ToolRegistry(workspace, default_timeout=None, max_output_chars=10**9)
    registry.register(GrepTool(workspace, backend=backend))
    return registry


async def measure_grep(workspace: Path, rg: str, runs: int, python_runs: int) -> list[Row]:
    ripgrep = registry_for(workspace, "ripgrep")
    python = registry_for(workspace, "python")
    tool = ripgrep.get("Grep")
    assert isinstance(tool, GrepTool)
    rows = []
    for query in QUERIES:
        argv = ripgrep_argv(rg, tool.query_for(dict(query.input)), None)
        run_rg_direct(argv, workspace)  # warm-up, both sides
        await run_grep(ripgrep, query.input)
        direct: list[float] = []
        grep: list[float] = []
        output = ""
        for _ in range(runs):  # alternating, so a change of machine load hits both sides
            direct.append(run_rg_direct(argv, workspace))
            elapsed, output = await run_grep(ripgrep, query.input)
            grep.append(elapsed)
        python_ms = None
        same = None
        if python_runs:  # no warm-up: the page cache is already warm
            timed = [await run_grep(python, query.input) for _ in range(python_runs)]
            python_ms = median_ms([elapsed for elapsed, _ in timed])
            same = all(python_output == output for _, python_output in timed)
        lines = 0 if output == "No matches found" else len(output.split("\n"))
        rows.append(Row(query.label, median_ms(direct), median_ms(grep), python_ms, lines, same))
    return rows


# --- the sandbox section ---------------------------------------------------------------


def sandbox_startup(quick: bool) -> tuple[list[str], Any]:
    """Lines for the sandbox section and the raw result (``None`` when not available)."""
    path = Path(__file__).with_name("sandbox.py")
    if not path.exists():
        return ["n/a (not yet available)"], None
    try:
        spec = importlib.util.spec_from_file_location("loopwright_bench_sandbox", path)
        if spec is None or spec.loader is None:
            raise ImportError(f"cannot load {path}")
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up while defined
        spec.loader.exec_module(module)
        measure = module.measure_sandbox_startup
        parameters = inspect.signature(measure).parameters
        result = measure(quick=quick) if "quick" in parameters else measure()
    except Exception as exc:  # another engineer's file: report, never fail
        return [f"n/a (benchmarks/sandbox.py failed: {type(exc).__name__}: {exc})"], None
    if isinstance(result, str):
        return result.splitlines(), result
    if isinstance(result, Mapping):
        width = max((len(str(key)) for key in result), default=0)
        return [
            f"{str(key).ljust(width)}  {_format_value(value)}" for key, value in result.items()
        ], result
    if isinstance(result, list | tuple):
        return [_format_value(item) for item in result], result
    return [_format_value(result)], result


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, list | tuple):
        return "  ".join(_format_value(item) for item in value)
    return str(value)


# --- output ----------------------------------------------------------------------------


def render(rows: list[Row]) -> str:
    header = (
        "Grep query",
        "rg direct",
        "Grep (rg)",
        "ratio",
        "target",
        "result",
        "Grep (Python)",
        "Python/rg",
        "same output",
        "lines",
    )
    table = [header]
    for row in rows:
        python = "-" if row.grep_python_ms is None else f"{row.grep_python_ms:,.1f} ms"
        python_ratio = (
            "-" if row.grep_python_ms is None else f"{row.grep_python_ms / row.rg_direct_ms:.1f}x"
        )
        same = "-" if row.same_output is None else ("yes" if row.same_output else "NO")
        table.append(
            (
                row.label,
                f"{row.rg_direct_ms:,.1f} ms",
                f"{row.grep_rg_ms:,.1f} ms",
                f"{row.ratio:.2f}x",
                f"<= {TARGET_RATIO}x",
                "PASS" if row.passed else "FAIL",
                python,
                python_ratio,
                same,
                f"{row.output_lines:,}",
            )
        )
    numeric = {1, 2, 3, 6, 7, 9}
    return render_table(table[0], table[1:], left=set(range(len(header))) - numeric)


def rg_version(rg: str) -> str:
    result = subprocess.run([rg, "--version"], capture_output=True, text=True, check=False)
    return result.stdout.split("\n", 1)[0].strip() or "ripgrep (unknown version)"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Speed of Grep against ripgrep, and more.")
    parser.add_argument("--quick", action="store_true", help="small tree, few runs (CI)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--tree", type=Path, help="keep the generated tree here and reuse it")
    parser.add_argument("--no-python", action="store_true", help="skip the Python backend")
    args = parser.parse_args(argv)
    shape = QUICK_TREE if args.quick else FULL_TREE
    runs = 3 if args.quick else 7
    python_runs = 0 if args.no_python else (2 if args.quick else 1)
    rg = shutil.which("rg")
    with tempfile.TemporaryDirectory(prefix="loopwright-bench-") as scratch:
        root = (args.tree or Path(scratch) / "tree").resolve()
        generated_s = ensure_tree(root, shape)
        size = tree_bytes(root)
        rows: list[Row] = []
        grep_note = ""
        if rg is None:
            grep_note = "n/a: ripgrep (rg) is not installed, so there is nothing to compare with"
        else:
            rows = asyncio.run(measure_grep(root, rg, runs, python_runs))
    sandbox_lines, sandbox_raw = sandbox_startup(args.quick)
    if args.json:
        report = {
            "python": platform.python_version(),
            "ripgrep": rg_version(rg) if rg else None,
            "tree": {**asdict(shape), "files": shape.total, "bytes": size, "path": str(root)},
            "generated_s": generated_s,
            "runs": runs,
            "python_runs": python_runs,
            "target_ratio": TARGET_RATIO,
            "grep": [{**asdict(r), "ratio": r.ratio, "passed": r.passed} for r in rows],
            "grep_note": grep_note or None,
            "sandbox": {"title": SANDBOX_TARGET, "lines": sandbox_lines, "raw": sandbox_raw},
        }
        print(json.dumps(report, indent=2, default=str))
        return 0
    made = f"generated in {generated_s:.1f} s" if generated_s else "reused"
    print(
        f"loopwright tools - Python {platform.python_version()}, "
        f"{rg_version(rg) if rg else 'no ripgrep'}, {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f} at the start\n"
        f"tree: {shape.total:,} files, {size / 1e6:,.0f} MB, {made}\n"
        f"median of {runs} runs after a warm-up, ripgrep direct and Grep alternating "
        f"(Python backend: {python_runs} run{'s' if python_runs != 1 else ''})\n"
    )
    print(render(rows) if rows else grep_note)
    print()
    print(f"--- {SANDBOX_TARGET} ---")
    for line in sandbox_lines:
        print(f"  {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
