"""Cost and usage reports of a session: tokens by kind, cost, latency, tool calls and errors.

A report is built from two sources. The session itself, always there: its usage totals
(tokens by kind, cost, model and tool calls, errors) and its messages (which tool was called
how often and which calls failed, and the runs, one per prompt). And, when recorded, the
stats of :mod:`loopwright.observability.stats`: model and tool latency (p50 and max), a
breakdown per model and per run (usage, cost, duration, how the run ended), and the work of
the sub-agents the session's runs started. :attr:`SessionReport.timings_recorded` says which
the report had.

A tool call stopped with its run (Ctrl-C, a closed stream) is counted as ``interrupted``, not
as a call that ran or failed, as in the session's usage: the report's tool calls and errors are
then the session's own figures.

What the warehouse billed (BigQuery queries of the SQL tool, from the recorded stats) is a
cost of its own, apart from the model's: :attr:`SessionReport.warehouse` (queries, bytes
billed, cache hits, and the cost estimated at on-demand pricing, see
:func:`~loopwright.observability.stats.warehouse_price`), per run too, and
:attr:`SessionReport.total_cost_usd` adds the two. Sessions whose queries billed nothing
(DuckDB, PostgreSQL) have no warehouse figures at all.

:func:`print_report` renders it as tables in a terminal; :meth:`SessionReport.to_dict` gives
the same figures as JSON.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from loopwright.events import Usage
from loopwright.messages import TextBlock, ToolResultBlock, ToolUseBlock
from loopwright.observability.stats import WarehouseUsage, warehouse_price

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from loopwright.sessions.session import Session
    from loopwright.sessions.store import SessionStore

#: How the loop's note for a tool call stopped with its run begins (see ``Session.repair``).
_INTERRUPTED_PREFIX = "Tool call interrupted:"

#: What to do to get timings for sessions that have none.
NO_TIMINGS_HINT = (
    "Timings, per-model and per-run figures were not recorded for this session; set "
    "LOOPWRIGHT_STATS=1 (or give the agent StatsRecorder() as an instrument) to record them."
)


@dataclass(slots=True)
class Latency:
    """Durations of a kind of call, in milliseconds."""

    count: int
    p50_ms: float
    max_ms: float
    total_ms: float

    @classmethod
    def of(cls, durations: Iterable[float]) -> Latency | None:
        values = [float(d) for d in durations]
        if not values:
            return None
        return cls(len(values), statistics.median(values), max(values), sum(values))

    def to_dict(self) -> dict[str, Any]:
        return {
            "count": self.count,
            "p50_ms": round(self.p50_ms, 3),
            "max_ms": round(self.max_ms, 3),
            "total_ms": round(self.total_ms, 3),
        }


@dataclass(slots=True)
class ToolBreakdown:
    """One tool's calls: how many, how many failed, and how long they took."""

    name: str
    calls: int = 0
    errors: int = 0
    latency: Latency | None = None
    #: calls stopped with their run before they ended (not in ``calls`` or ``errors``)
    interrupted: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "calls": self.calls,
            "errors": self.errors,
            "interrupted": self.interrupted,
            "latency": self.latency.to_dict() if self.latency else None,
        }


@dataclass(slots=True)
class ModelBreakdown:
    """One model's calls: usage, cost, failures and latency."""

    model: str
    calls: int = 0
    errors: int = 0
    usage: Usage = field(default_factory=Usage)
    latency: Latency | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "calls": self.calls,
            "errors": self.errors,
            "usage": self.usage.to_dict(),
            "latency": self.latency.to_dict() if self.latency else None,
        }


@dataclass(slots=True)
class RunReport:
    """One run: who ran it, what it used, how long it took and how it ended.

    Without recorded stats a run is one prompt of the history: ``usage`` then has only its
    model, tool and error counts, and ``stop_reason``, ``duration_ms`` are unknown (None).
    """

    index: int
    path: str
    session_id: str
    prompt: str = ""
    started_at: float | None = None
    duration_ms: float | None = None
    stop_reason: str | None = None
    usage: Usage = field(default_factory=Usage)
    model_latency: Latency | None = None
    tool_latency: Latency | None = None
    run_id: str | None = None
    parent_run: str | None = None
    #: what the run's queries billed (``None``: nothing, or not recorded)
    warehouse: WarehouseUsage | None = None
    usd_per_tib: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "run_id": self.run_id,
            "parent_run": self.parent_run,
            "path": self.path,
            "session_id": self.session_id,
            "prompt": self.prompt,
            "started_at": self.started_at,
            "duration_ms": None if self.duration_ms is None else round(self.duration_ms, 3),
            "stop_reason": self.stop_reason,
            "usage": self.usage.to_dict(),
            "model_latency": self.model_latency.to_dict() if self.model_latency else None,
            "tool_latency": self.tool_latency.to_dict() if self.tool_latency else None,
            "warehouse": self.warehouse.to_dict(self.usd_per_tib) if self.warehouse else None,
        }


@dataclass(slots=True)
class SessionReport:
    """Everything :func:`build_report` found out about a session."""

    session_id: str
    title: str
    workspace: str
    created_at: float
    updated_at: float
    messages: int
    usage: Usage
    tools: list[ToolBreakdown]
    models: list[ModelBreakdown]
    runs: list[RunReport]
    model_latency: Latency | None
    tool_latency: Latency | None
    timings_recorded: bool
    #: sessions of the sub-agents this session's runs started
    sub_sessions: list[str] = field(default_factory=list)
    #: what the warehouse billed for the session's queries, its sub-agents' included
    #: (``None``: nothing billed, or no stats recorded)
    warehouse: WarehouseUsage | None = None
    #: the USD per TiB billed the warehouse cost is estimated at
    usd_per_tib: float = field(default_factory=warehouse_price)

    @property
    def warehouse_cost_usd(self) -> float:
        """The estimated warehouse cost (0 when nothing was billed)."""
        return self.warehouse.cost_usd(self.usd_per_tib) if self.warehouse else 0.0

    @property
    def total_cost_usd(self) -> float:
        """The model's cost and the warehouse's estimated cost together."""
        return self.usage.cost_usd + self.warehouse_cost_usd

    @property
    def tool_calls(self) -> int:
        return sum(t.calls for t in self.tools)

    @property
    def tool_errors(self) -> int:
        return sum(t.errors for t in self.tools)

    @property
    def tool_interrupted(self) -> int:
        return sum(t.interrupted for t in self.tools)

    def to_dict(self) -> dict[str, Any]:
        return {
            "session_id": self.session_id,
            "title": self.title,
            "workspace": self.workspace,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "messages": self.messages,
            "usage": self.usage.to_dict(),
            "tool_calls": self.tool_calls,
            "tool_errors": self.tool_errors,
            "tool_interrupted": self.tool_interrupted,
            "model_latency": self.model_latency.to_dict() if self.model_latency else None,
            "tool_latency": self.tool_latency.to_dict() if self.tool_latency else None,
            "tools": [t.to_dict() for t in self.tools],
            "models": [m.to_dict() for m in self.models],
            "runs": [r.to_dict() for r in self.runs],
            "sub_sessions": self.sub_sessions,
            "timings_recorded": self.timings_recorded,
            # apart from usage.cost_usd (the model's): the warehouse's, and both together
            "warehouse": self.warehouse.to_dict(self.usd_per_tib) if self.warehouse else None,
            "total_cost_usd": round(self.total_cost_usd, 12),
        }


# --- building -----------------------------------------------------------------------------


def build_report(
    session: Session,
    records: list[dict[str, Any]] | None = None,
    *,
    store: SessionStore | None = None,
    usd_per_tib: float | None = None,
) -> SessionReport:
    """The report of ``session``; ``records`` are its stats (read from its workspace, with
    ``store`` to find a sub-agent's parent session, when not given). Warehouse costs are
    estimated at ``usd_per_tib`` (default :func:`~loopwright.observability.stats.
    warehouse_price`: ``LOOPWRIGHT_BIGQUERY_USD_PER_TIB``, else BigQuery's on-demand price);
    ``ValueError`` for a price that is not a number of 0 or more."""
    price = warehouse_price(usd_per_tib)
    if records is None:
        from loopwright.observability.stats import records_for_session

        records = records_for_session(session, store)
    own = session.id
    models = [r for r in records if r.get("kind") == "model"]
    tool_records = [r for r in records if r.get("kind") == "tool"]
    run_records = [r for r in records if r.get("kind") == "run"]

    stopped = interrupted_calls(session)
    tools = _tool_breakdown(session, tool_records, stopped)
    tool_records = [  # the calls that ended, for latencies
        r for r in tool_records if not r.get("cancelled") and str(r.get("id")) not in stopped
    ]
    breakdown = _model_breakdown(models)
    # every billed query, the sub-agents' included, however its run ended
    warehouse = WarehouseUsage.of(r for r in records if r.get("kind") == "tool")
    runs = _runs_from_records(run_records, models, tool_records) if run_records else []
    if warehouse is not None:
        by_run: dict[str, WarehouseUsage] = {}
        for record in records:
            if record.get("kind") == "tool":
                by_run.setdefault(str(record.get("run")), WarehouseUsage()).add_record(record)
        for run in runs:
            billed = by_run.get(str(run.run_id))
            if billed is not None and billed.queries:
                run.warehouse, run.usd_per_tib = billed, price
    if not runs:
        runs = _runs_from_messages(session, stopped)
    sub_sessions = sorted(
        {str(r["session"]) for r in records if r.get("session") not in (None, own)}
    )
    return SessionReport(
        session_id=own,
        title=session_title(session),
        workspace=str(session.workspace_dir),
        created_at=session.created_at,
        updated_at=session.updated_at,
        messages=len(session.messages),
        usage=session.usage.copy(),
        tools=tools,
        models=breakdown,
        runs=runs,
        model_latency=Latency.of(_durations(models)),
        tool_latency=Latency.of(_durations(tool_records)),
        timings_recorded=bool(records),
        sub_sessions=sub_sessions,
        warehouse=warehouse,
        usd_per_tib=price,
    )


def session_title(session: Session, limit: int = 80) -> str:
    """The first user prompt, on one line."""
    for message in session.messages:
        if message.role == "user" and message.text.strip():
            flat = " ".join(message.text.split())
            return flat if len(flat) <= limit else flat[: limit - 1] + "…"
    return ""


def _durations(records: Iterable[dict[str, Any]]) -> list[float]:
    return [
        float(r["duration_ms"]) for r in records if isinstance(r.get("duration_ms"), int | float)
    ]


def interrupted_calls(session: Session) -> set[str]:
    """The ids of the session's tool calls that were stopped with their run: their results
    are the loop's "Tool call interrupted" notes, not outputs of the tools."""
    return {
        block.tool_use_id
        for message in session.messages
        if message.role == "user"
        for block in message.content
        if isinstance(block, ToolResultBlock)
        and block.is_error
        and block.text.startswith(_INTERRUPTED_PREFIX)
    }


def _tool_breakdown(
    session: Session, records: list[dict[str, Any]], stopped: set[str] | None = None
) -> list[ToolBreakdown]:
    """Calls and errors per tool: the session's own calls from its messages (always there),
    the sub-agents' from the records; durations from the records. The calls in ``stopped``
    and the records of cancelled calls are counted as interrupted."""
    stopped = interrupted_calls(session) if stopped is None else stopped
    own = session.id
    failed: set[str] = set()
    answered: set[str] = set()
    calls: list[tuple[str, str]] = []
    for message in session.messages:
        for block in message.content:
            if isinstance(block, ToolUseBlock):
                calls.append((block.id, block.name))
            elif isinstance(block, ToolResultBlock):
                answered.add(block.tool_use_id)
                if block.is_error:
                    failed.add(block.tool_use_id)
    durations: dict[str, float] = {}
    for record in records:
        if record.get("session") == own and isinstance(record.get("duration_ms"), int | float):
            durations[str(record.get("id"))] = float(record["duration_ms"])
    by_name: dict[str, ToolBreakdown] = {}
    timings: dict[str, list[float]] = {}
    for call_id, name in calls:
        if call_id not in answered:
            continue  # still running, or never run: not a call that happened (yet)
        entry = by_name.setdefault(name, ToolBreakdown(name))
        if call_id in stopped:
            entry.interrupted += 1
            continue
        entry.calls += 1
        entry.errors += call_id in failed
        if call_id in durations:
            timings.setdefault(name, []).append(durations[call_id])
    for record in records:  # the sub-agents' calls
        if record.get("session") == own:
            continue
        name = str(record.get("name", "?"))
        entry = by_name.setdefault(name, ToolBreakdown(name))
        if record.get("cancelled"):
            entry.interrupted += 1
            continue
        entry.calls += 1
        entry.errors += bool(record.get("is_error"))
        if isinstance(record.get("duration_ms"), int | float):
            timings.setdefault(name, []).append(float(record["duration_ms"]))
    for name, entry in by_name.items():
        entry.latency = Latency.of(timings.get(name, ()))
    return sorted(by_name.values(), key=lambda t: (-t.calls, t.name))


def _usage_of(record: dict[str, Any]) -> Usage:
    return Usage(
        input_tokens=int(record.get("input_tokens") or 0),
        output_tokens=int(record.get("output_tokens") or 0),
        cache_read_tokens=int(record.get("cache_read_tokens") or 0),
        cache_write_tokens=int(record.get("cache_write_tokens") or 0),
        cost_usd=float(record.get("cost_usd") or 0.0),
        model_calls=1,
    )


def _model_breakdown(records: list[dict[str, Any]]) -> list[ModelBreakdown]:
    by_model: dict[str, ModelBreakdown] = {}
    timings: dict[str, list[float]] = {}
    for record in records:
        name = str(record.get("model", "?"))
        entry = by_model.setdefault(name, ModelBreakdown(name))
        entry.calls += 1
        if record.get("error"):
            entry.errors += 1
        else:
            entry.usage.add(_usage_of(record))
        if isinstance(record.get("duration_ms"), int | float):
            timings.setdefault(name, []).append(float(record["duration_ms"]))
    for name, entry in by_model.items():
        entry.latency = Latency.of(timings.get(name, ()))
    return sorted(by_model.values(), key=lambda m: (-m.usage.cost_usd, -m.calls, m.model))


def _runs_from_records(
    runs: list[dict[str, Any]], models: list[dict[str, Any]], tools: list[dict[str, Any]]
) -> list[RunReport]:
    model_ms: dict[str, list[float]] = {}
    tool_ms: dict[str, list[float]] = {}
    for record in models:
        model_ms.setdefault(str(record.get("run")), []).extend(_durations([record]))
    for record in tools:
        tool_ms.setdefault(str(record.get("run")), []).extend(_durations([record]))
    reports: list[RunReport] = []
    for index, record in enumerate(sorted(runs, key=lambda r: float(r.get("ts") or 0)), 1):
        key = str(record.get("run"))
        usage = record.get("usage")
        duration = record.get("duration_ms")
        reports.append(
            RunReport(
                index=index,
                path=str(record.get("path", "")),
                session_id=str(record.get("session", "")),
                started_at=float(record["ts"])
                if isinstance(record.get("ts"), int | float)
                else None,
                duration_ms=float(duration) if isinstance(duration, int | float) else None,
                stop_reason=str(record.get("stop_reason") or "") or None,
                usage=Usage.from_dict(usage) if isinstance(usage, dict) else Usage(),
                model_latency=Latency.of(model_ms.get(key, ())),
                tool_latency=Latency.of(tool_ms.get(key, ())),
                run_id=key,
                parent_run=record.get("parent_run"),
            )
        )
    return reports


def _runs_from_messages(session: Session, stopped: set[str] | None = None) -> list[RunReport]:
    """Runs as the history shows them: each user prompt starts one (counts only; a call
    stopped with its run is neither a call nor an error, as in the session's usage)."""
    stopped = interrupted_calls(session) if stopped is None else stopped
    reports: list[RunReport] = []
    current: RunReport | None = None
    failed: set[str] = set()
    for message in session.messages:
        for block in message.content:
            if isinstance(block, ToolResultBlock) and block.is_error:
                failed.add(block.tool_use_id)
    for message in session.messages:
        if (
            message.role == "user"
            and any(isinstance(b, TextBlock) for b in message.content)
            and not message.tool_results
            and _is_prompt(message.text)
        ):
            current = RunReport(len(reports) + 1, "", session.id, prompt=message.text)
            reports.append(current)
            continue
        if current is None:
            continue
        if message.role == "assistant":
            current.usage.model_calls += 1
            for use in message.tool_uses:
                if use.id in stopped:
                    continue
                current.usage.tool_calls += 1
                current.usage.tool_errors += use.id in failed
    for report in reports:
        report.prompt = " ".join(report.prompt.split())[:200]
    return reports


def _is_prompt(text: str) -> bool:
    """Whether a user text is a prompt (not the loop's note asking to continue a cut reply)."""
    from loopwright.agent import CUT_TEXT

    return text != CUT_TEXT


# --- rendering ----------------------------------------------------------------------------


def format_ms(ms: float | None) -> str:
    """``12 ms`` under a second, ``1.5 s`` above; ``-`` when unknown."""
    if ms is None:
        return "-"
    if ms < 10:
        return f"{ms:.1f} ms"
    return f"{ms:.0f} ms" if ms < 1000 else f"{ms / 1000:.1f} s"


def format_bytes(n: int) -> str:
    """Bytes as BigQuery's console shows them (binary units): ``10 MB``, ``1.25 GB``."""
    size, unit = float(n), "B"
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if size < 1024 or unit == "PB":
            break
        size /= 1024
    if unit == "B":
        return f"{n:,} B"
    return f"{size:.2f}".rstrip("0").rstrip(".") + f" {unit}"


def format_usd(usd: float) -> str:
    """Dollars with 4 decimals, or fewer than $0.0001 said so rather than shown as $0.0000."""
    if 0 < usd < 0.00005:
        return "<$0.0001"
    return f"${usd:.4f}"


def warehouse_summary(warehouse: WarehouseUsage, usd_per_tib: float | None = None) -> str:
    """One line: ``BigQuery 30 MB billed (3 queries, 1 cached) ≈ $0.0002``."""
    queries = f"{warehouse.queries} quer{'y' if warehouse.queries == 1 else 'ies'}"
    if warehouse.cache_hits:
        queries += f", {warehouse.cache_hits} cached"
    cost = format_usd(warehouse.cost_usd(usd_per_tib))
    return (
        f"{warehouse.database} {format_bytes(warehouse.bytes_billed)} billed ({queries}) ≈ {cost}"
    )


def _latency_cells(latency: Latency | None) -> tuple[str, str]:
    if latency is None:
        return "-", "-"
    return format_ms(latency.p50_ms), format_ms(latency.max_ms)


def _table(title: str) -> Table:
    from rich import box
    from rich.table import Table

    return Table(
        title=title,
        title_justify="left",
        title_style="bold",
        header_style="bold",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
    )


def print_report(console: Console, report: SessionReport) -> None:
    """The report as tables: usage, latency, tools, models, runs."""
    from rich.text import Text

    console.print(Text(f"usage report · session {report.session_id}", style="bold"))
    if report.title:
        console.print(Text(f"title      {report.title}"))
    created = time.strftime("%Y-%m-%d %H:%M", time.localtime(report.created_at))
    updated = time.strftime("%Y-%m-%d %H:%M", time.localtime(report.updated_at))
    console.print(f"created    {created}   updated {updated}   messages {report.messages}")

    usage = report.usage
    totals = _table("Tokens and cost")
    cost = "model cost" if report.warehouse is not None else "cost"  # the warehouse's below
    for name in ("input", "output", "cache read", "cache write", "total", cost):
        totals.add_column(name, justify="right")
    totals.add_row(
        f"{usage.input_tokens:,}",
        f"{usage.output_tokens:,}",
        f"{usage.cache_read_tokens:,}",
        f"{usage.cache_write_tokens:,}",
        f"{usage.total_tokens:,}",
        f"${usage.cost_usd:.4f}",
    )
    console.print(totals)
    if report.warehouse is not None:
        _print_warehouse(console, report)

    calls = _table("Calls and latency")
    for name in ("kind", "calls", "errors", "p50", "max", "total time"):
        calls.add_column(name, justify="left" if name == "kind" else "right")
    model_errors = sum(m.errors for m in report.models)
    p50, worst = _latency_cells(report.model_latency)
    total = format_ms(report.model_latency.total_ms) if report.model_latency else "-"
    calls.add_row("model", str(usage.model_calls), str(model_errors), p50, worst, total)
    p50, worst = _latency_cells(report.tool_latency)
    total = format_ms(report.tool_latency.total_ms) if report.tool_latency else "-"
    calls.add_row("tool", str(report.tool_calls), str(report.tool_errors), p50, worst, total)
    console.print(calls)
    if report.tool_interrupted:
        stopped = report.tool_interrupted
        console.print(
            Text(
                f"{stopped} tool call{'' if stopped == 1 else 's'} interrupted (stopped with "
                "the run), not counted above",
                style="dim",
            )
        )

    if report.tools:
        tools = _table("Tools")
        stopped = report.tool_interrupted > 0
        columns = ["tool", "calls", "errors", *(["interrupted"] if stopped else []), "p50", "max"]
        for name in columns:
            tools.add_column(name, justify="left" if name == "tool" else "right")
        for tool in report.tools:
            p50, worst = _latency_cells(tool.latency)
            errors = Text(str(tool.errors), style="red" if tool.errors else "")
            cells: list[Text | str] = [Text(tool.name, style="cyan"), str(tool.calls), errors]
            if stopped:
                cells.append(str(tool.interrupted))
            tools.add_row(*cells, p50, worst)
        console.print(tools)

    if report.models:
        models = _table("Models")
        for name in ("model", "calls", "errors", "input", "output", "cache r/w", "cost", "p50"):
            models.add_column(name, justify="left" if name == "model" else "right")
        for model in report.models:
            u = model.usage
            p50, _ = _latency_cells(model.latency)
            models.add_row(
                Text(model.model),
                str(model.calls),
                str(model.errors),
                f"{u.input_tokens:,}",
                f"{u.output_tokens:,}",
                f"{u.cache_read_tokens:,}/{u.cache_write_tokens:,}",
                f"${u.cost_usd:.4f}",
                p50,
            )
        console.print(models)

    if report.runs:
        runs = _table("Runs")
        recorded = report.timings_recorded
        billed = any(run.warehouse is not None for run in report.runs)
        columns = ["#", "agent", "ended", "models", "tools", "errors"]
        columns += ["tokens", "cost", *(["billed", "warehouse"] if billed else []), "time"]
        if not recorded:
            columns = [*columns[:6], "prompt"]
        for name in columns:
            runs.add_column(
                name,
                justify="left" if name in ("agent", "prompt", "ended") else "right",
                no_wrap=name != "prompt",
            )
        for run in report.runs:
            u = run.usage
            row = [
                str(run.index),
                run.path or "-",
                run.stop_reason or "-",
                str(u.model_calls),
                str(u.tool_calls),
                str(u.tool_errors),
            ]
            if recorded:
                row += [f"{u.total_tokens:,}", f"${u.cost_usd:.4f}"]
                if billed:
                    w = run.warehouse
                    row += (
                        [format_bytes(w.bytes_billed), format_usd(w.cost_usd(run.usd_per_tib))]
                        if w is not None
                        else ["-", "-"]
                    )
                row.append(format_ms(run.duration_ms))
            else:
                row.append(run.prompt[:60] + ("…" if len(run.prompt) > 60 else ""))
            runs.add_row(*row)
        console.print(runs)
    if report.sub_sessions:
        console.print(Text(f"sub-agent sessions  {', '.join(report.sub_sessions)}", style="dim"))
    if report.warehouse is not None:
        from loopwright.observability.stats import WAREHOUSE_PRICE_ENV

        console.print(
            Text(
                f"Warehouse costs are estimates at {report.usd_per_tib:g} USD per TiB billed "
                f"(on-demand list price; set {WAREHOUSE_PRICE_ENV} for yours), before any "
                "free tier or discount.",
                style="dim",
            )
        )
    if not report.timings_recorded:
        console.print(Text(NO_TIMINGS_HINT, style="dim"))


def _print_warehouse(console: Console, report: SessionReport) -> None:
    """The warehouse's table (what the queries billed, apart from the model) and the costs
    side by side."""
    from rich.text import Text

    warehouse = report.warehouse
    assert warehouse is not None
    table = _table(f"Warehouse ({warehouse.database})")
    for name in ("queries", "cached", "processed", "billed", "USD/TiB", "est. cost"):
        table.add_column(name, justify="right")
    table.add_row(
        str(warehouse.queries),
        str(warehouse.cache_hits),
        format_bytes(warehouse.bytes_processed),
        format_bytes(warehouse.bytes_billed),
        f"{report.usd_per_tib:g}",
        format_usd(report.warehouse_cost_usd),
    )
    console.print(table)
    console.print(
        Text(
            f"total cost  ${report.usage.cost_usd:.4f} model + "
            f"{format_usd(report.warehouse_cost_usd)} warehouse (est.) = "
            f"${report.total_cost_usd:.4f}",
            style="bold",
        )
    )
