"""Long-term memory and workspace search: latency as the stores grow.

Scenarios:

- ``MemoryBank`` in a SQLite file (temporary directory), filled with N distinct memories
  from templates (people, projects, tickets, invoices: the words of a query appear in many
  memories, as they do in real use), N = 1,000 / 10,000 / 100,000 (``--quick``: 1,000 and
  10,000). Shown: ``remember`` per call (the async API, a transaction per call), ``recall``
  full-text (bm25) per query, ``recall`` hybrid (full text and sqlite-vec vectors fused)
  per query, with a cheap 64-dimension hashing embedder so the figure is the store's cost,
  not a model's; and whether the memory a query was written for came first.
- ``DocumentIndex`` over a workspace of F text files (2,000; ``--quick``: 500): the first
  index, a refresh with nothing changed, a refresh after one file changed, and a search.

Each latency is the median (and 95th percentile) over the queries. Run
``python benchmarks/memory.py`` (``--quick`` for a CI smoke run, ``--json`` for raw figures).
It only prints: it never fails on timings.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import random
import statistics
import tempfile
import time
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path

from bench_table import render_table
from loopwright.memory import DocumentIndex, MemoryBank

SCOPE = "project:bench"


def _w(text: str) -> list[str]:
    return text.split()


FIRST_NAMES = _w("Ada Grace Linus Alan Barbara Ken Radia Hedy")
LAST_NAMES = _w("Byron Hopper Moore Kay Liskov Thompson Perlman Lamarr")
PEOPLE = [f"{first} {last}" for first in FIRST_NAMES for last in LAST_NAMES]
PROJECTS = _w("Falcon Heron Osprey Kestrel Magpie Puffin Condor Wren Raven Swift Egret Finch")
THINGS = (
    "database replica", "signing key", "build cache", "search index", "billing export",
    "login page", "nightly backup", "message queue", "feature flag", "load balancer",
)  # fmt: skip
VERBS = _w("broke fixed migrated rotated resized reviewed deprecated upgraded")
MONTHS = _w("January February March April May June July August September October")


def memory_text(rng: random.Random, n: int) -> str:
    """One distinct, realistic memory (``n`` makes it unique)."""
    person, project = rng.choice(PEOPLE), rng.choice(PROJECTS)
    thing, verb = rng.choice(THINGS), rng.choice(VERBS)
    kind = n % 4
    if kind == 0:
        return f"{person} {verb} the {thing} of {project} in ticket {project[:3].upper()}-{n}."
    if kind == 1:
        return f"The {thing} for {project} runs on host {project.lower()}-{n}.internal."
    if kind == 2:
        return f"Invoice INV-{n} for the {project} {thing} is due on {rng.choice(MONTHS)} 3."
    return f"{person} asked that {project} reports on the {thing} mention case {n}."


class HashingEmbedder:
    """A cheap bag-of-words embedder (64 dimensions): measures the store, not a model."""

    name = "bench:hashing-64"

    def __call__(self, texts: list[str]) -> list[list[float]]:
        vectors = []
        for text in texts:
            vector = [0.0] * 64
            for word in text.lower().split():
                vector[zlib.crc32(word.encode()) % 64] += 1.0
            norm = math.sqrt(sum(v * v for v in vector)) or 1.0
            vectors.append([v / norm for v in vector])
        return vectors


@dataclass
class Row:
    scenario: str
    size: int
    median_ms: float
    p95_ms: float
    note: str = ""


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]
    return statistics.median(ordered) * 1000, p95 * 1000


async def timed(coroutine_factory: Callable[[int], Awaitable[object]], count: int) -> list[float]:
    samples = []
    for i in range(count):
        started = time.perf_counter()
        await coroutine_factory(i)
        samples.append(time.perf_counter() - started)
    return samples


async def remember(bank: MemoryBank, texts: list[str], index: int) -> None:
    await bank.remember(texts[index], scope=SCOPE)


async def bench_memory(size: int, directory: Path, queries: int) -> list[Row]:
    rng = random.Random(size)
    texts = [memory_text(rng, n) for n in range(size)]
    rows: list[Row] = []
    for hybrid in (False, True):
        path = directory / f"memory-{size}-{'hybrid' if hybrid else 'fts'}.db"
        bank = MemoryBank(path, embedder=HashingEmbedder() if hybrid else None)
        write_samples = await timed(partial(remember, bank, texts), size)
        if not hybrid:
            median, p95 = percentiles(write_samples)
            rows.append(Row("remember (one call)", size, median, p95))
        targets = rng.sample(range(size), queries)
        hits_first = 0
        samples = []
        for index in targets:
            # what someone asking about this memory would say: its number and a few words
            words = [w for w in texts[index].rstrip(".").split() if str(index) not in w]
            query = " ".join([str(index), *rng.sample(words, 3)])
            started = time.perf_counter()
            hits = await bank.recall(query, scope=SCOPE, limit=5)
            samples.append(time.perf_counter() - started)
            hits_first += bool(hits) and hits[0].memory.text == texts[index]
        median, p95 = percentiles(samples)
        if hybrid:  # a hashing embedder says nothing of quality: latency only
            rows.append(Row("recall, hybrid (fts + vectors)", size, median, p95))
        else:
            note = f"target first in {hits_first}/{queries}"
            rows.append(Row("recall, full text (bm25)", size, median, p95, note))
        await bank.aclose()
    return rows


def make_workspace(root: Path, files: int) -> None:
    rng = random.Random(files)
    for n in range(files):
        lines = []
        for s in range(6):
            lines.append(f"## Section {s}")
            lines += [memory_text(rng, n * 100 + s * 10 + k) for k in range(6)]
            lines.append("")
        target = root / f"dir{n % 40}" / f"doc{n}.md"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("\n".join(lines))


async def bench_search(files: int, directory: Path, queries: int) -> list[Row]:
    root = directory / f"ws-{files}"
    make_workspace(root, files)
    for path in root.rglob("*.md"):  # files written seconds ago are checked by content
        os.utime(path, (1_600_000_000, 1_600_000_000))
    index = DocumentIndex(root)
    started = time.perf_counter()
    stats = await index.refresh()
    first = (time.perf_counter() - started) * 1000
    rows = [Row("search index: first build", files, first, first, f"{stats.passages:,} passages")]
    samples = await timed(lambda i: index.refresh(), 5)
    rows.append(Row("search index: refresh, no change", files, *percentiles(samples)))
    changed = root / "dir0" / "doc0.md"

    async def change_one(i: int) -> None:
        changed.write_text(changed.read_text() + f"\nappended line {i}\n")
        await index.refresh()

    rows.append(
        Row(
            "search index: refresh, 1 file changed", files, *percentiles(await timed(change_one, 5))
        )
    )
    rng = random.Random(1)
    words = " ".join(memory_text(rng, 1) for _ in range(50)).split()
    search_samples = await timed(
        lambda i: index.search(" ".join(rng.sample(words, 4)), refresh=False), queries
    )
    rows.append(Row("search: query (index current)", files, *percentiles(search_samples)))
    await index.aclose()
    return rows


def render(rows: list[Row]) -> str:
    header = ("scenario", "size", "median", "p95", "note")
    table = [header] + [
        (r.scenario, f"{r.size:,}", f"{r.median_ms:.2f} ms", f"{r.p95_ms:.2f} ms", r.note)
        for r in rows
    ]
    return render_table(table[0], table[1:], left={0, 4})


async def run(sizes: list[int], files: int, queries: int) -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="lw-bench-memory-") as temp:
        directory = Path(temp)
        for size in sizes:
            rows += await bench_memory(size, directory, queries)
        rows += await bench_search(files, directory, queries)
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller stores (CI smoke run)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    args = parser.parse_args(argv)
    sizes = [1_000, 10_000] if args.quick else [1_000, 10_000, 100_000]
    files = 500 if args.quick else 2_000
    queries = 50 if args.quick else 200
    started = time.perf_counter()
    rows = asyncio.run(run(sizes, files, queries))
    elapsed = time.perf_counter() - started
    if args.json:
        report = {
            "python": platform.python_version(),
            "quick": args.quick,
            "rows": [asdict(row) for row in rows],
            "elapsed_s": elapsed,
        }
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"loopwright memory and search - Python {platform.python_version()}, "
        f"{platform.machine()}, {'quick' if args.quick else 'full'} run; "
        f"{queries} queries per row\n"
    )
    print(render(rows))
    print(f"\n(took {elapsed:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
