"""The healthcare claims generator's speed, and the SQL tool against DuckDB used directly.

Two measurements:

- **Generator**: ``loopwright.healthcare.data.build_database`` into a fresh file at 1 million
  rx claims (``--full`` adds 10 million; ``--quick`` uses 100,000). Reported as rx claims per
  second of the whole build (all four tables, written and checkpointed), and all rows per
  second. Target: 1 million rx claims in under 15 s.
- **SQL tool vs DuckDB directly**, on the database just built, for two queries: the design
  guide's "top 10 HUMIRA prescribers in California" (a full scan, ten rows out) and a
  row-level extract of California's claims (about 12% of the table written out, which is what
  stresses the result files). The tool's time is ``await SQLTool.execute(...)`` end to end:
  checks, query, ``<dataset>.csv`` and ``.parquet`` written, preview rendered. The direct time
  is the same query through DuckDB's own ``COPY (query) TO 'file.csv'`` on a plain read-only
  connection. Target: the tool within 1.2x of DuckDB, CSV written included. A second row per
  query compares the tool with Parquet switched off (``parquet=False``, CSV only); the direct
  CSV + Parquet time (query materialised once, then two COPYs) is shown for reference.

The two sides run in alternating blocks (warm-up, then ``--runs`` timed runs each), never at the
same time: DuckDB shares one instance per file within a process and the tool opens its file
with locked-down settings. The medians are reported.

Run ``python benchmarks/sql.py`` (``--quick`` for a CI smoke run of a few seconds, ``--full``
for 10 million rows too, ``--json`` for machine-readable output). It only prints: it never fails
on timings. It needs the ``sql`` extra (duckdb, pyarrow, polars, sqlglot).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import duckdb

from loopwright.healthcare.data import DEFAULT_SEED, Sizes, build_database

TARGET_GENERATOR_S_1M = 15.0
TARGET_TOOL_RATIO = 1.2

QUERIES: dict[str, str] = {
    "top 10 HUMIRA prescribers, CA": """
        SELECT PRESCRIBER_NPI_NBR, COUNT(*) AS rx_count
        FROM RX_CLAIMS
        WHERE NDC_DRUG_NM = 'HUMIRA' AND PRESCRIBER_NPI_STATE_CD = 'CA'
        GROUP BY PRESCRIBER_NPI_NBR
        ORDER BY rx_count DESC
        LIMIT 10""",
    "CA claims extract (row level)": """
        SELECT CLAIM_ID, PRESCRIBER_NPI_NBR, NDC_DRUG_NM, SERVICE_DATE_DD,
               DISPENSED_QUANTITY_VAL, DAYS_SUPPLY_CNT, PAID_AMT
        FROM RX_CLAIMS
        WHERE PRESCRIBER_NPI_STATE_CD = 'CA'""",
}


# --- the generator -------------------------------------------------------------------------


@dataclass(slots=True)
class GeneratorResult:
    rx_claims: int
    all_rows: int
    seconds: float
    file_bytes: int

    @property
    def rx_per_s(self) -> float:
        return self.rx_claims / self.seconds

    @property
    def rows_per_s(self) -> float:
        return self.all_rows / self.seconds


def measure_generator(rx_claims: int, data_dir: Path, seed: int) -> tuple[GeneratorResult, Path]:
    path = data_dir / f"claims-{rx_claims}-{seed}.duckdb"
    path.unlink(missing_ok=True)
    started = time.perf_counter()
    build_database(path, rx_claims=rx_claims, seed=seed)
    seconds = time.perf_counter() - started
    sizes = Sizes.for_rx_claims(rx_claims)
    total = sizes.rx_claims + sizes.med_claims + sizes.payments + sizes.providers
    return GeneratorResult(rx_claims, total, seconds, path.stat().st_size), path


# --- the SQL tool and DuckDB directly ------------------------------------------------------


@dataclass(slots=True)
class QueryTiming:
    rx_claims: int
    query: str
    rows_out: int
    direct_csv_s: float
    direct_csv_parquet_s: float
    tool_s: float
    tool_csv_only_s: float


def _copy_csv(con: duckdb.DuckDBPyConnection, sql: str, out: Path) -> None:
    con.execute(f"COPY ({sql}) TO '{out / 'direct.csv'}' (HEADER, DELIMITER ',')")


def _copy_csv_parquet(con: duckdb.DuckDBPyConnection, sql: str, out: Path) -> None:
    con.execute(f"CREATE OR REPLACE TEMP TABLE bench_result AS {sql}")
    con.execute(f"COPY bench_result TO '{out / 'direct.csv'}' (HEADER, DELIMITER ',')")
    con.execute(f"COPY bench_result TO '{out / 'direct.parquet'}' (FORMAT PARQUET)")


def direct_times(path: Path, sql: str, out: Path, runs: int, parquet: bool) -> list[float]:
    """Seconds per run of the query written by DuckDB itself (a plain read-only connection)."""
    con = duckdb.connect(str(path), read_only=True)
    try:
        con.execute("SET enable_progress_bar = false")
        run = _copy_csv_parquet if parquet else _copy_csv
        run(con, sql, out)  # warm-up: file pages, plan caches
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            run(con, sql, out)
            times.append(time.perf_counter() - started)
        return times
    finally:
        con.close()


async def tool_times(
    path: Path, sql: str, workspace: Path, runs: int, parquet: bool
) -> tuple[list[float], int]:
    """Seconds per ``SQLTool.execute`` call, and the rows it saved."""
    from loopwright.tools.sql import SQLTool

    tool = SQLTool(workspace, backend=f"duckdb://{path}", max_rows=100_000_000, parquet=parquet)
    request = {"sql": sql, "dataset_name": "bench", "description": "benchmark query"}
    try:
        warm = await tool.execute(request)
        if warm["is_error"]:
            raise RuntimeError(f"the SQL tool failed: {warm['content']}")
        times = []
        for _ in range(runs):
            started = time.perf_counter()
            result = await tool.execute(request)
            times.append(time.perf_counter() - started)
            if result["is_error"]:
                raise RuntimeError(f"the SQL tool failed: {result['content']}")
        rows = int(result.get("metadata", {}).get("row_count", -1)) if runs else -1
        return times, rows
    finally:
        await tool.aclose()


def _lines(path: Path) -> int:
    with open(path, "rb") as handle:
        return sum(1 for _ in handle)


def measure_queries(path: Path, rx_claims: int, runs: int, rounds: int) -> list[QueryTiming]:
    results = []
    with tempfile.TemporaryDirectory(prefix="loopwright-sql-bench-") as tmp:
        out = Path(tmp) / "direct"
        workspace = Path(tmp) / "workspace"
        out.mkdir()
        workspace.mkdir()
        for label, sql in QUERIES.items():
            samples: dict[str, list[float]] = {"csv": [], "both": [], "tool": [], "tool_csv": []}
            rows = -1
            for _ in range(rounds):  # alternate blocks so both sides see the same machine
                samples["csv"] += direct_times(path, sql, out, runs, parquet=False)
                tool, rows = asyncio.run(tool_times(path, sql, workspace, runs, parquet=True))
                samples["tool"] += tool
                samples["both"] += direct_times(path, sql, out, runs, parquet=True)
                tool_csv, _ = asyncio.run(tool_times(path, sql, workspace, runs, parquet=False))
                samples["tool_csv"] += tool_csv
            direct_rows = _lines(out / "direct.csv") - 1
            if rows != direct_rows or _lines(workspace / "bench.csv") - 1 != direct_rows:
                raise RuntimeError(
                    f"{label}: the tool saved {rows} rows, DuckDB wrote {direct_rows}"
                )
            results.append(
                QueryTiming(
                    rx_claims,
                    label,
                    rows,
                    statistics.median(samples["csv"]),
                    statistics.median(samples["both"]),
                    statistics.median(samples["tool"]),
                    statistics.median(samples["tool_csv"]),
                )
            )
    return results


# --- the report ----------------------------------------------------------------------------


@dataclass(slots=True)
class Row:
    scenario: str
    value: str
    reference: str
    ratio: float | None
    target: str
    passed: bool | None


def _size(rx_claims: int) -> str:
    if rx_claims >= 1_000_000 and rx_claims % 1_000_000 == 0:
        return f"{rx_claims // 1_000_000}M"
    return f"{rx_claims // 1000}k" if rx_claims % 1000 == 0 else f"{rx_claims:,}"


def _seconds(value: float) -> str:
    return f"{value * 1000:,.1f} ms" if value < 1 else f"{value:,.2f} s"


def build_rows(generators: list[GeneratorResult], queries: list[QueryTiming]) -> list[Row]:
    rows: list[Row] = []
    for g in generators:
        at_1m = g.rx_claims == 1_000_000
        rows.append(
            Row(
                f"generator, {_size(g.rx_claims)} rx claims (all 4 tables)",
                f"{_seconds(g.seconds)}, {g.rx_per_s:,.0f} rx/s",
                f"{g.rows_per_s:,.0f} rows/s, {g.file_bytes / 2**20:,.0f} MiB",
                None,
                f"< {TARGET_GENERATOR_S_1M:g} s" if at_1m else "",
                g.seconds < TARGET_GENERATOR_S_1M if at_1m else None,
            )
        )
    for q in queries:
        scope = f"{q.query}, {_size(q.rx_claims)} ({q.rows_out:,} rows out)"
        ratio = q.tool_s / q.direct_csv_s
        rows.append(
            Row(
                f"SQL tool CSV+Parquet vs DuckDB CSV: {scope}",
                _seconds(q.tool_s),
                _seconds(q.direct_csv_s),
                ratio,
                f"<= {TARGET_TOOL_RATIO:g}x",
                ratio <= TARGET_TOOL_RATIO,
            )
        )
        ratio_csv = q.tool_csv_only_s / q.direct_csv_s
        rows.append(
            Row(
                f"SQL tool CSV only vs DuckDB CSV: {scope}",
                _seconds(q.tool_csv_only_s),
                _seconds(q.direct_csv_s),
                ratio_csv,
                f"<= {TARGET_TOOL_RATIO:g}x",
                ratio_csv <= TARGET_TOOL_RATIO,
            )
        )
        rows.append(
            Row(
                f"(ref.) SQL tool vs DuckDB CSV+Parquet: {scope}",
                _seconds(q.tool_s),
                _seconds(q.direct_csv_parquet_s),
                q.tool_s / q.direct_csv_parquet_s,
                "",
                None,
            )
        )
    return rows


def render(rows: list[Row]) -> str:
    header = ("scenario", "loopwright", "reference", "ratio", "target", "result")
    table = [header]
    for row in rows:
        table.append(
            (
                row.scenario,
                row.value,
                row.reference,
                f"{row.ratio:.2f}x" if row.ratio is not None else "-",
                row.target or "-",
                "-" if row.passed is None else ("PASS" if row.passed else "FAIL"),
            )
        )
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = []
    for index, line in enumerate(table):
        cells = [
            line[i].ljust(widths[i]) if i in (0, 4) else line[i].rjust(widths[i])
            for i in range(len(header))
        ]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def _tool_available() -> str | None:
    """Why the SQL tool half cannot run here, or None."""
    try:
        from loopwright.tools.sql import SQLTool  # noqa: F401
    except ImportError as error:
        return f"the SQL tool is not importable ({error})"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--quick", action="store_true", help="100k rx claims (CI smoke run)")
    mode.add_argument("--full", action="store_true", help="1M and 10M rx claims")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--runs", type=int, help="timed runs per block (default 5; 3 at 10M)")
    parser.add_argument("--rounds", type=int, default=2, help="alternating blocks per side")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--data-dir", help="where to build the databases (default: a temp dir)")
    parser.add_argument("--no-sql", action="store_true", help="measure the generator only")
    args = parser.parse_args(argv)

    sizes = [100_000] if args.quick else [1_000_000, 10_000_000] if args.full else [1_000_000]
    skip_sql = "--no-sql given" if args.no_sql else _tool_available()
    data_dir = Path(args.data_dir) if args.data_dir else Path(tempfile.mkdtemp(prefix="lw-hc-"))
    data_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    generators: list[GeneratorResult] = []
    queries: list[QueryTiming] = []
    try:
        for rx_claims in sizes:
            result, path = measure_generator(rx_claims, data_dir, args.seed)
            generators.append(result)
            if skip_sql is None:
                runs = args.runs or (3 if rx_claims >= 10_000_000 else 5)
                queries += measure_queries(path, rx_claims, runs, args.rounds)
            if not args.data_dir:
                path.unlink(missing_ok=True)
    finally:
        if not args.data_dir:
            shutil.rmtree(data_dir, ignore_errors=True)
    rows = build_rows(generators, queries)
    elapsed = time.perf_counter() - started

    if args.json:
        report: dict[str, Any] = {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "duckdb": duckdb.__version__,
            "cpus": os.cpu_count(),
            "sizes": sizes,
            "generator": [{**asdict(g), "rx_per_s": g.rx_per_s} for g in generators],
            "queries": [asdict(q) for q in queries],
            "sql_skipped": skip_sql,
            "rows": [asdict(r) for r in rows],
            "elapsed_s": elapsed,
        }
        print(json.dumps(report, indent=2))
        return 0

    print(
        f"healthcare claims generator and SQL tool - Python {platform.python_version()}, "
        f"DuckDB {duckdb.__version__}, {platform.machine()}, {os.cpu_count()} CPUs"
    )
    print()
    print(render(rows))
    if skip_sql is not None:
        print(f"\nSQL tool comparison skipped: {skip_sql}.")
    print(f"\n(total {elapsed:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
