"""``make demo``: the healthcare research agent answers a question on the embedded model.

Everything runs offline on this machine: the synthetic claims database is generated on first
use (50,000 pharmacy claims, a second or two), the model is the small Gemma 3 (270M
parameters) bundled as a Python package and run by llama.cpp on the CPU, and the agent is
the real one (`loopwright.healthcare.healthcare_agent`) with its SQL tool, in the compact
mode meant for tiny models (a short prompt, worked examples, the SQL tool only).

The run's events are printed as `loopwright healthcare` prints them, then a summary: the SQL
the model wrote, the CSV it saved, its answer, and whether the answer matches the golden
reference computed from the database (`check_golden`). A 270M-parameter model usually gets
the query right and some of the numbers wrong; the check says which, honestly.

    make demo                                   # or: uv run python examples/healthcare/demo.py
    uv run python examples/healthcare/demo.py --model anthropic   # a capable model
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.text import Text

from loopwright.cli.render import EventPrinter, make_console
from loopwright.events import Done, Event, ToolCall, ToolResult
from loopwright.healthcare.agent import healthcare_agent
from loopwright.healthcare.check import Verdict, check_golden
from loopwright.healthcare.data import ensure_database
from loopwright.healthcare.golden import get_question
from loopwright.models import resolve_model
from loopwright.models.base import Model, ModelError

DEMO_MODEL = "local:gemma3-270m"
DEMO_ROWS = 50_000
DEMO_QUESTION = "humira_ca_top10"
MAX_TURNS = 4
TIMEOUT_S = 180.0


@dataclass
class DemoReport:
    """What the demo run did and how its answer compares with the reference."""

    question: str
    question_id: str
    model: str
    database: Path
    answer: str
    stop_reason: str
    workspace: Path
    session_id: str
    elapsed_s: float
    queries: list[dict[str, Any]] = field(default_factory=list)
    """Each SQL call: its input, whether it failed, and the first line of its result."""
    csv_files: list[Path] = field(default_factory=list)
    checked_csv: Path | None = None
    verdict: Verdict | None = None


async def run_demo(
    model: Model | str = DEMO_MODEL,
    *,
    rows: int = DEMO_ROWS,
    database: Path | None = None,
    question_id: str = DEMO_QUESTION,
    max_turns: int = MAX_TURNS,
    time_limit: float = TIMEOUT_S,
    console: Console | None = None,
    **agent_options: Any,
) -> DemoReport:
    """Build (or reuse) the database, run the agent on the golden question, check it.

    ``time_limit`` (seconds) and ``max_turns`` bound the run; ``agent_options`` go to
    :func:`healthcare_agent`.
    """
    console = console or make_console()
    golden = get_question(question_id)
    # the model first: one that cannot be made is refused before a build that takes minutes
    model = resolve_model(model) if isinstance(model, str) else model
    if database is None:
        database = ensure_database(rx_claims=rows, progress=_progress(console, rows))
    agent = healthcare_agent(
        model, database=database, max_turns=max_turns, timeout=time_limit, **agent_options
    )
    session = agent.new_session()
    console.print(
        Text(
            f"healthcare research agent · model {agent.model.name} · database {database.name} "
            f"· session {session.id}",
            style="dim",
        )
    )
    console.print(Text(f"you> {golden.question}", style="bold"))
    printer = EventPrinter(console)
    calls: dict[str, ToolCall] = {}
    queries: list[dict[str, Any]] = []
    done: Done | None = None
    started = time.perf_counter()
    try:
        async for event in agent.run(golden.question, session):
            printer.handle(event)
            _record(event, calls, queries)
            if isinstance(event, Done):
                done = event
    finally:
        await agent.aclose()
    elapsed = time.perf_counter() - started
    answer = next(
        (m.text for m in reversed(session.messages) if m.role == "assistant" and m.text), ""
    )
    return await asyncio.to_thread(
        _report,
        golden.question,
        question_id,
        agent.model.name,
        database,
        answer,
        done.stop_reason if done is not None else "cancelled",
        Path(session.workspace_dir),
        session.id,
        elapsed,
        queries,
    )


def _report(
    question: str,
    question_id: str,
    model: str,
    database: Path,
    answer: str,
    stop_reason: str,
    workspace: Path,
    session_id: str,
    elapsed: float,
    queries: list[dict[str, Any]],
) -> DemoReport:
    """The report, with the files found in the workspace and the golden check's verdict."""
    saved = [q for q in queries if not q["is_error"]]
    checked = workspace / f"{saved[-1]['input'].get('dataset_name')}.csv" if saved else None
    if checked is not None and not checked.is_file():
        checked = None
    verdict = None
    if answer:
        verdict = check_golden(get_question(question_id), answer, database, csv=checked)
    return DemoReport(
        question=question,
        question_id=question_id,
        model=model,
        database=database,
        answer=answer,
        stop_reason=stop_reason,
        workspace=workspace,
        session_id=session_id,
        elapsed_s=elapsed,
        queries=queries,
        csv_files=sorted(workspace.rglob("*.csv")),
        checked_csv=checked,
        verdict=verdict,
    )


def _record(event: Event, calls: dict[str, ToolCall], queries: list[dict[str, Any]]) -> None:
    if isinstance(event, ToolCall) and event.name == "SQL":
        calls[event.id] = event
    elif isinstance(event, ToolResult) and event.id in calls:
        first = next((line for line in event.content.splitlines() if line.strip()), "")
        queries.append(
            {"input": calls[event.id].input, "is_error": event.is_error, "result": first}
        )


def _progress(console: Console, rows: int) -> Any:
    """A progress bar for the first build of the database (nothing when it exists)."""
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn

    state: dict[str, Any] = {}

    def update(fraction: float, message: str) -> None:
        if "bar" not in state:
            bar = Progress(
                TextColumn(f"building the claims database ({rows:,} rx claims)"),
                BarColumn(),
                TaskProgressColumn(),
                TextColumn("{task.fields[step]}", style="dim"),
                console=console,
            )
            bar.start()
            state["bar"], state["task"] = bar, bar.add_task("build", total=1.0, step="")
        state["bar"].update(state["task"], completed=fraction, step=message)
        if fraction >= 1.0:
            state["bar"].stop()

    return update


def print_summary(report: DemoReport, console: Console) -> None:
    """The run in a few lines: SQL, CSV, answer, and the golden check's verdict."""
    console.print()
    console.rule("summary", style="dim")
    console.print(Text(f"question  {report.question}"))
    where = " (embedded, offline)" if report.model.startswith("local:") else ""
    console.print(Text(f"model     {report.model}{where}"))
    console.print(Text(f"database  {report.database}"))
    if not report.queries:
        console.print(Text("SQL       (the model ran no query)", style="yellow"))
    for number, query in enumerate(report.queries, 1):
        status = "failed" if query["is_error"] else "ok"
        console.print(Text(f"SQL #{number}    [{status}] {query['input'].get('sql', '')}"))
        console.print(Text(f"          → {query['result']}", style="dim"))
    for path in report.csv_files:
        console.print(Text(f"CSV       {path} ({_rows(path)} rows)"))
    console.print(Text(f"answer    {report.answer or '(no answer)'}"))
    verdict = report.verdict
    if verdict is None:
        console.print(Text("golden check: no answer to check", style="yellow"))
    else:
        label = "PASSED" if verdict.passed else "NOT PASSED"
        console.print(
            Text(
                f"golden check ({report.question_id}, reference computed from the database): "
                f"{label}, "
                f"score {verdict.score:.2f}",
                style="bold green" if verdict.passed else "bold yellow",
            )
        )
        for found in verdict.found:
            console.print(Text(f"  ✓ {found.describe()}", style="green"))
        for missing in verdict.missing:
            console.print(Text(f"  ✗ {missing.describe()}", style="yellow"))
        if verdict.csv is not None:
            mark = "✓" if verdict.csv.match >= 0.9 else "✗"
            console.print(
                Text(
                    f"  {mark} {report.checked_csv.name if report.checked_csv else 'the CSV'} "
                    f"holds {verdict.csv.matched_rows} of {verdict.csv.checked_rows} reference "
                    "rows",
                    style="green" if mark == "✓" else "yellow",
                )
            )
    console.print(
        Text(
            f"run: {report.stop_reason} in {report.elapsed_s:.1f} s · session {report.session_id}"
            f" · workspace {report.workspace}",
            style="dim",
        )
    )


def _rows(path: Path) -> int:
    with path.open(newline="", encoding="utf-8") as handle:
        return max(sum(1 for _ in csv.reader(handle)) - 1, 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--model", default=DEMO_MODEL, help=f"model string (default {DEMO_MODEL})")
    parser.add_argument("--rows", type=int, default=DEMO_ROWS, help="rx claims to generate")
    parser.add_argument(
        "--question",
        default=DEMO_QUESTION,
        metavar="ID",
        help="a golden question id (see questions.md; default humira_ca_top10)",
    )
    parser.add_argument("--max-turns", type=int, default=MAX_TURNS)
    parser.add_argument("--timeout", type=float, default=TIMEOUT_S, help="seconds for the run")
    args = parser.parse_args(argv)
    console = make_console()
    try:
        report = asyncio.run(
            run_demo(
                args.model,
                rows=args.rows,
                question_id=args.question,
                max_turns=args.max_turns,
                time_limit=args.timeout,
                console=console,
            )
        )
    except (ModelError, ValueError, KeyError) as exc:
        print(f"error: {exc.args[0] if exc.args else exc}", file=sys.stderr)
        return 1
    print_summary(report, console)
    return 0 if report.stop_reason not in ("error", "cancelled") else 1


if __name__ == "__main__":
    raise SystemExit(main())
