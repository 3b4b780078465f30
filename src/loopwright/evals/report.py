"""Reports of a suite run: a self-contained HTML page with plots, and a terminal table.

The HTML report is one file with no scripts and nothing fetched from the network: the plots
(pass rate, cost, tokens and latency per task) are inline SVG drawn here, so the page opens
anywhere, offline, and can be attached to a CI run as it is.
"""

from __future__ import annotations

import datetime as dt
import html
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from loopwright.evals.bench import SuiteRun, Summary, TaskResult, TaskStats

if TYPE_CHECKING:
    from rich.console import Console

#: characters of each answer the HTML report shows (the JSON file keeps all of it)
ANSWER_SHOWN = 5000

_CSS = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;
  color:#1f2328;background:#f6f8fa}
main{max-width:1100px;margin:0 auto;padding:24px}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:28px 0 10px}
.muted{color:#656d76}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:16px 0}
.card{background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:10px 16px;min-width:120px}
.card b{display:block;font-size:20px}
.plots{display:grid;grid-template-columns:repeat(auto-fit,minmax(480px,1fr));gap:16px}
figure{margin:0;background:#fff;border:1px solid #d0d7de;border-radius:8px;padding:10px}
figcaption{font-weight:600;margin-bottom:6px}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #d0d7de}
th,td{text-align:left;padding:6px 10px;border-bottom:1px solid #eaeef2;vertical-align:top}
th{background:#f6f8fa;font-weight:600}td.num,th.num{text-align:right;white-space:nowrap}
.passed{color:#1a7f37;font-weight:600}.failed{color:#cf222e;font-weight:600}
.error{color:#9a6700;font-weight:600}
details{background:#fff;border:1px solid #d0d7de;border-radius:8px;margin:6px 0;padding:6px 12px}
summary{cursor:pointer}pre{white-space:pre-wrap;background:#f6f8fa;padding:8px;border-radius:6px;
  max-height:240px;overflow:auto}
ul.checks{margin:6px 0;padding-left:20px}
"""

_GREEN, _ORANGE, _RED, _BLUE = "#2da44e", "#d4a72c", "#cf222e", "#0969da"


def render_html(run: SuiteRun) -> str:
    """The report as one self-contained HTML page."""
    summary = run.summary()
    stats = run.per_task()
    title = f"loopwright eval: {run.suite}"
    started = _when(run.started_at)
    state = "complete" if run.complete else "incomplete (interrupted; resume with --resume)"
    cards = [
        ("pass rate", f"{summary.pass_rate:.0%}"),
        ("passed", f"{summary.passed} / {summary.runs}"),
        ("failed", str(summary.failed)),
        ("errors", str(summary.errors)),
        ("tokens", f"{summary.total_tokens:,}"),
        ("cost", _usd(summary.total_cost_usd)),
        ("median latency", f"{summary.median_duration_s:.2f}s"),
        ("retries", str(summary.retries)),
    ]
    if summary.bytes_billed:
        cards.insert(6, ("warehouse", _warehouse(summary)))
    plots = [
        _bar_chart(
            "Pass rate per task",
            stats,
            lambda s: s.pass_rate * 100,
            lambda v: f"{v:.0f}%",
            colour=lambda s: _GREEN if s.pass_rate >= 1 else _ORANGE if s.pass_rate > 0 else _RED,
            maximum=100.0,
        ),
        _bar_chart("Cost per task (mean, USD)", stats, lambda s: s.mean_cost_usd, _usd),
        _bar_chart("Tokens per task (mean)", stats, lambda s: s.mean_tokens, lambda v: f"{v:,.0f}"),
        _bar_chart(
            "Latency per task (mean, seconds)", stats, lambda s: s.mean_duration_s, _seconds
        ),
    ]
    agent = f", {run.agent}" if run.agent else ""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_e(title)}</title><style>{_CSS}</style></head><body><main>",
        f"<h1>{_e(title)}</h1>",
        f'<p class="muted">model <b>{_e(run.model)}</b>{_e(agent)} · {run.epochs} epoch(s) · '
        f"parallel {run.parallel} · started {_e(started)} · {_e(state)}</p>",
    ]
    if run.description:
        parts.append(f"<p>{_e(run.description)}</p>")
    parts.append('<section class="cards">')
    parts += [
        f'<div class="card"><span class="muted">{_e(k)}</span><b>{_e(v)}</b></div>'
        for k, v in cards
    ]
    parts.append("</section><h2>Plots</h2>")
    parts.append(f'<section class="plots">{"".join(plots)}</section>')
    parts.append("<h2>Tasks</h2>")
    parts.append(_task_table(stats))
    parts.append("<h2>Runs</h2>")
    parts += [_run_details(r) for r in _ordered(run)]
    parts.append("</main></body></html>")
    return "\n".join(parts)


def write_html(run: SuiteRun, path: str | os.PathLike[str]) -> Path:
    """Write the HTML report and return its path."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(render_html(run), encoding="utf-8")
    return target


def print_summary(run: SuiteRun, console: Console) -> None:
    """A table per task (pass rate, tokens, cost, latency, what failed) and the totals."""
    from rich.markup import escape
    from rich.table import Table

    summary = run.summary()
    table = Table(title=escape(f"{run.suite} · {run.model}"), title_justify="left")
    table.add_column("task")
    table.add_column("passed", justify="right")
    table.add_column("tokens", justify="right")
    table.add_column("cost", justify="right")
    table.add_column("latency", justify="right")
    table.add_column("failing")
    for stats in run.per_task():
        style = "green" if stats.pass_rate >= 1 else "yellow" if stats.pass_rate > 0 else "red"
        failing = ", ".join(stats.failing_checks) or ("errors" if stats.errors else "")
        table.add_row(
            escape(stats.task_id),
            f"[{style}]{stats.passed}/{stats.runs}[/{style}]",
            f"{stats.mean_tokens:,.0f}",
            _usd(stats.mean_cost_usd),
            _seconds(stats.mean_duration_s),
            escape(failing),
        )
    console.print(table)
    console.print(
        f"pass rate {summary.pass_rate:.0%} ({summary.passed}/{summary.runs} runs, "
        f"{summary.failed} failed, {summary.errors} errors, {summary.retries} retries) · "
        f"{summary.total_tokens:,} tokens · {_usd(summary.total_cost_usd)}"
        + (f" (warehouse {_warehouse(summary)})" if summary.bytes_billed else "")
        + f" · median {_seconds(summary.median_duration_s)}",
        highlight=False,
    )


# --- pieces ------------------------------------------------------------------------------


def _bar_chart(
    title: str,
    stats: Sequence[TaskStats],
    value: Callable[[TaskStats], float],
    label: Callable[[float], str],
    *,
    colour: Callable[[TaskStats], str] | None = None,
    maximum: float | None = None,
) -> str:
    """A horizontal bar chart, one bar per task, as inline SVG."""
    row, label_w, bar_w, value_w, top = 22, 170, 300, 90, 6
    height = top * 2 + row * max(1, len(stats))
    width = label_w + bar_w + value_w
    values = [max(0.0, value(s)) for s in stats]
    scale = maximum if maximum is not None else max(values, default=0.0)
    bars: list[str] = []
    for index, (item, amount) in enumerate(zip(stats, values, strict=True)):
        y = top + index * row
        length = 0.0 if scale <= 0 else bar_w * amount / scale
        fill = colour(item) if colour is not None else _BLUE
        name = item.task_id if len(item.task_id) <= 24 else item.task_id[:23] + "…"
        text = label(amount)
        bars.append(
            f'<g class="bar"><title>{_e(item.task_id)}: {_e(text)}</title>'
            f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end" font-size="12">'
            f"{_e(name)}</text>"
            f'<rect x="{label_w}" y="{y + 3}" width="{length:.1f}" height="{row - 6}" '
            f'rx="3" fill="{fill}"/>'
            f'<text x="{label_w + length + 6:.1f}" y="{y + 15}" font-size="12" '
            f'fill="#656d76">{_e(text)}</text></g>'
        )
    axis = (
        f'<line x1="{label_w}" y1="{top}" x2="{label_w}" y2="{height - top}" '
        'stroke="#8c959f" stroke-width="1"/>'
    )
    return (
        f"<figure><figcaption>{_e(title)}</figcaption>"
        f'<svg class="plot" role="img" aria-label="{_e(title)}" viewBox="0 0 {width} {height}" '
        f'width="100%" xmlns="http://www.w3.org/2000/svg">{axis}{"".join(bars)}</svg></figure>'
    )


def _task_table(stats: Sequence[TaskStats]) -> str:
    head = (
        "<thead><tr><th>task</th><th class=num>pass rate</th><th class=num>runs</th>"
        "<th class=num>errors</th><th class=num>tokens</th><th class=num>cost</th>"
        "<th class=num>latency</th><th>failing</th></tr></thead>"
    )
    rows = []
    for s in stats:
        css = "passed" if s.pass_rate >= 1 else "failed" if s.passed == 0 else "error"
        rows.append(
            f'<tr class="task-row"><td>{_e(s.task_id)}</td>'
            f'<td class="num {css}">{s.pass_rate:.0%}</td><td class=num>{s.runs}</td>'
            f"<td class=num>{s.errors}</td><td class=num>{s.mean_tokens:,.0f}</td>"
            f"<td class=num>{_e(_usd(s.mean_cost_usd))}</td>"
            f"<td class=num>{_e(_seconds(s.mean_duration_s))}</td>"
            f"<td>{_e(', '.join(s.failing_checks))}</td></tr>"
        )
    return f'<table id="tasks">{head}<tbody>{"".join(rows)}</tbody></table>'


def _run_details(result: TaskResult) -> str:
    checks = "".join(
        f'<li><span class="{"passed" if c.passed else "failed"}">'
        f"{'✓' if c.passed else '✗'}</span> <b>{_e(c.name)}</b> {_e(c.detail)}</li>"
        for c in result.checks
    )
    lines = [
        f'<details class="run"><summary><span class="{result.status}">{result.status}</span> '
        f"<b>{_e(result.task_id)}</b> · epoch {result.epoch} · attempt(s) {result.attempts} · "
        f"{_e(_seconds(result.duration_s))} · {result.total_tokens:,} tokens · "
        f"{_e(_usd(result.total_cost_usd))}</summary>",
        f'<p class="muted">session {_e(result.session_id or "-")} · stop reason '
        f"{_e(result.stop_reason or '-')}</p>",
    ]
    if result.error:
        lines.append(f'<p class="error">{_e(result.error)}</p>')
    if result.infra_errors:
        lines.append("<p>retried after: " + _e("; ".join(result.infra_errors)) + "</p>")
    if checks:
        lines.append(f'<ul class="checks">{checks}</ul>')
    if result.answer:
        shown = result.answer[:ANSWER_SHOWN]
        more = len(result.answer) - len(shown)
        if more:
            shown += f"\n… ({more:,} more characters: the whole answer is in the JSON file)"
        lines.append(f"<pre>{_e(shown)}</pre>")
    lines.append("</details>")
    return "".join(lines)


def _ordered(run: SuiteRun) -> list[TaskResult]:
    order = {task_id: i for i, task_id in enumerate(run.task_ids)}
    return sorted(run.results, key=lambda r: (order.get(r.task_id, len(order)), r.epoch))


def _e(text: str) -> str:
    return html.escape(str(text), quote=True)


def _warehouse(summary: Summary) -> str:
    """What the warehouse billed over the runs: ``1.5 GB billed ≈ $0.0092``, saying so when
    some runs' bills could not be priced (an unusable price setting)."""
    from loopwright.observability.reports import format_bytes

    text = f"{format_bytes(summary.bytes_billed)} billed ≈ {_usd(summary.warehouse_cost_usd)}"
    if summary.warehouse_unpriced:
        runs = "run" if summary.warehouse_unpriced == 1 else "runs"
        text += (
            f" ({summary.warehouse_unpriced} {runs} unpriced: set "
            "LOOPWRIGHT_BIGQUERY_USD_PER_TIB to a number of USD per TiB)"
        )
    return text


def _usd(value: float) -> str:
    if value == 0:
        return "$0"
    return f"${value:.4f}" if value < 1 else f"${value:,.2f}"


def _seconds(value: float) -> str:
    return f"{value * 1000:.0f}ms" if value < 1 else f"{value:.2f}s"


def _when(timestamp: float) -> str:
    return dt.datetime.fromtimestamp(timestamp).strftime("%Y-%m-%d %H:%M:%S")


__all__ = ["print_summary", "render_html", "write_html"]
