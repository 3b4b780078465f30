"""A session's transcript: ``conversation.json`` and a self-contained HTML viewer.

``conversation.json`` (written into the workspace by :func:`write_conversation`, by the stats
recorder after each top-level run, and by ``loopwright sessions export ID --json``) holds the
session's messages in their usual JSON form, its usage, and what the stats recorded: each
assistant message gets ``model_call`` (model, duration, tokens, cost), each tool result
``duration_ms`` (and, for a query a warehouse billed, ``bytes_billed`` and ``cache_hit``), and
``warehouse`` sums up what the session's queries billed (``null`` when nothing was).
:class:`~loopwright.messages.Message.from_dict` reads the messages back unchanged (it ignores
the added keys).

:func:`render_html` (``loopwright sessions export ID --html``) makes one HTML file with no
outside resources: a summary (tokens, cost, calls, errors, time), the report tables, and the
conversation with each tool call's input and output in a collapsible block, images inline as
data URIs. What a warehouse (BigQuery) billed for the queries is shown apart from the model's
cost: bytes billed, an estimated cost and the total, and the bytes each query billed.
Everything taken from the session is HTML-escaped, and the page carries a
Content-Security-Policy that allows no script at all, so a tool output holding markup (a web
page, ``<script>``) shows as text and cannot run.

A transcript is made to be shared, and the session holds what was typed and run as it was:
a key pasted into a prompt, a token in a ``curl`` command, a database URL with its password.
:func:`redact_session` (and :func:`redact_records` for the stats) give a copy with every
secret a :class:`~loopwright.policy.redaction.Redactor` recognises replaced by its
``[REDACTED:…]`` marker; ``sessions export`` uses them unless told ``--no-redact``.
"""

from __future__ import annotations

import html
import json
import os
import re
import tempfile
import time
from contextlib import suppress
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from string import Template
from typing import TYPE_CHECKING, Any

from loopwright.messages import (
    ImageBlock,
    TextBlock,
    ThinkingBlock,
    ToolResultBlock,
    ToolUseBlock,
)
from loopwright.observability.logs import summarise_input
from loopwright.observability.reports import (
    Latency,
    SessionReport,
    build_report,
    format_bytes,
    format_ms,
    format_usd,
    session_title,
)
from loopwright.observability.stats import WarehouseUsage

if TYPE_CHECKING:
    from loopwright.messages import ContentBlock, Message
    from loopwright.policy.redaction import Redactor
    from loopwright.sessions.session import Session
    from loopwright.sessions.store import SessionStore

#: The file name in the workspace.
CONVERSATION_FILE = "conversation.json"
FORMAT = "loopwright.conversation"
FORMAT_VERSION = 1

#: Image types shown inline; anything else is named, not embedded.
_IMAGE_TYPES = frozenset({"image/png", "image/jpeg", "image/gif", "image/webp"})
_BASE64 = re.compile(r"[A-Za-z0-9+/=\s]*")
_ID_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


def _timings(
    session: Session, records: list[dict[str, Any]]
) -> tuple[dict[int, dict[str, Any]], dict[str, dict[str, Any]]]:
    """The session's model calls by message index and tool calls by call id."""
    models: dict[int, dict[str, Any]] = {}
    tools: dict[str, dict[str, Any]] = {}
    for record in records:
        if record.get("session") != session.id:
            continue
        if record.get("kind") == "model" and isinstance(record.get("message_index"), int):
            models[record["message_index"]] = record
        elif record.get("kind") == "tool" and record.get("id") is not None:
            tools[str(record["id"])] = record
    return models, tools


def _model_call(record: dict[str, Any]) -> dict[str, Any]:
    keys = (
        "model",
        "duration_ms",
        "stop_reason",
        "input_tokens",
        "output_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "cost_usd",
    )
    return {k: record[k] for k in keys if k in record}


def conversation_record(
    session: Session,
    records: list[dict[str, Any]] | None = None,
    *,
    store: SessionStore | None = None,
) -> dict[str, Any]:
    """The ``conversation.json`` content of ``session`` (see the module docstring)."""
    if records is None:
        from loopwright.observability.stats import records_for_session

        records = records_for_session(session, store)
    models, tools = _timings(session, records)
    messages: list[dict[str, Any]] = []
    for index, message in enumerate(session.messages):
        data = message.to_dict()
        data["index"] = index
        if message.role == "assistant" and index in models:
            data["model_call"] = _model_call(models[index])
        for block, block_data in zip(message.content, data["content"], strict=True):
            if isinstance(block, ToolResultBlock) and block.tool_use_id in tools:
                timing = tools[block.tool_use_id]
                block_data["duration_ms"] = timing.get("duration_ms")
                for key in ("bytes_billed", "cache_hit"):
                    if key in timing:
                        block_data[key] = timing[key]
        messages.append(data)
    runs = [
        {
            k: r.get(k)
            for k in (
                "run",
                "parent_run",
                "session",
                "path",
                "ts",
                "duration_ms",
                "stop_reason",
                "detail",
                "usage",
            )
        }
        for r in records
        if r.get("kind") == "run"
    ]
    return {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "session_id": session.id,
        "title": session_title(session),
        "workspace": str(session.workspace_dir),
        "created_at": _iso(session.created_at),
        "updated_at": _iso(session.updated_at),
        "metadata": session.metadata,
        "usage": session.usage.to_dict(),
        "summary": session.summary,
        "context_start": session.context_start,
        "timings_recorded": bool(records),
        "warehouse": _warehouse_record(records),
        "runs": runs,
        "messages": messages,
    }


def _warehouse_record(records: list[dict[str, Any]]) -> dict[str, Any] | None:
    """What the warehouse billed for the session's queries, or ``None``. A price per TiB
    that cannot be used leaves the cost out (``null``, and why) rather than the file."""
    warehouse = WarehouseUsage.of(r for r in records if r.get("kind") == "tool")
    if warehouse is None:
        return None
    try:
        return warehouse.to_dict()
    except ValueError as exc:
        found = warehouse.to_dict(0.0)
        found.update(usd_per_tib=None, cost_usd=None, price_error=str(exc))
        return found


def redact_session(session: Session, redactor: Redactor) -> Session:
    """A copy of ``session`` for a transcript, with secrets replaced by ``[REDACTED:…]``
    markers: every text, thinking, tool input and text tool result of its messages, the
    summary and the metadata (a database URL's password). Images are kept as they are. The
    copy has no store (it cannot be saved over the session); ``session`` is not changed."""
    from loopwright.sessions.session import Session as _Session

    return _Session(
        session.id,
        session.workspace_dir,
        messages=[_redact_message(message, redactor) for message in session.messages],
        usage=session.usage,
        metadata=redactor.redact_value(session.metadata),
        created_at=session.created_at,
        updated_at=session.updated_at,
        summary=redactor.redact(session.summary),
        context_start=session.context_start,
        trimmed=set(session.trimmed),
    )


def redact_records(records: list[dict[str, Any]], redactor: Redactor) -> list[dict[str, Any]]:
    """The stats ``records`` with secrets redacted in every string (an error's detail)."""
    return [redactor.redact_value(record) for record in records]


def _redact_message(message: Message, redactor: Redactor) -> Message:
    from loopwright.messages import Message as _Message

    return _Message(message.role, [_redact_block(block, redactor) for block in message.content])


def _redact_block(block: ContentBlock, redactor: Redactor) -> ContentBlock:
    if isinstance(block, TextBlock):
        return TextBlock(redactor.redact(block.text))
    if isinstance(block, ThinkingBlock):
        return ThinkingBlock(redactor.redact(block.thinking), block.signature)
    if isinstance(block, ToolUseBlock):
        return ToolUseBlock(block.id, block.name, redactor.redact_value(block.input))
    if isinstance(block, ToolResultBlock):
        return ToolResultBlock(
            block.tool_use_id, redactor.redact_content(block.content), block.is_error
        )
    return block  # an image


def write_conversation(
    session: Session,
    path: str | os.PathLike[str] | None = None,
    *,
    records: list[dict[str, Any]] | None = None,
    store: SessionStore | None = None,
) -> Path:
    """Write ``conversation.json`` (into the workspace unless ``path`` says otherwise),
    replacing the previous one whole (a reader never sees half a file)."""
    target = Path(path) if path is not None else Path(session.workspace_dir) / CONVERSATION_FILE
    data = conversation_record(session, records, store=store)
    text = json.dumps(data, ensure_ascii=False, indent=2, default=str) + "\n"
    write_atomically(target, text)
    return target


def write_atomically(target: Path, text: str) -> None:
    """Write ``text`` to ``target`` through a temporary file, so readers never see half."""
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temporary, target)
    except BaseException:
        with suppress(OSError):
            os.unlink(temporary)
        raise


# --- HTML ---------------------------------------------------------------------------------


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _dom_id(prefix: str, value: str) -> str:
    return f"{prefix}-{_ID_UNSAFE.sub('_', value)[:80]}"


def _image(block: ImageBlock) -> str:
    media = block.media_type.strip().lower()
    if media not in _IMAGE_TYPES or not _BASE64.fullmatch(block.data):
        return f'<p class="note">[image of type {_e(block.media_type)} not shown]</p>'
    data = "".join(block.data.split())
    return f'<img class="inline" alt="image" src="data:{media};base64,{data}">'


def _text(text: str) -> str:
    return f'<div class="text">{_e(text)}</div>'


def _result_body(block: ToolResultBlock) -> str:
    if isinstance(block.content, str):
        return f"<pre>{_e(block.content) or '(no output)'}</pre>"
    parts: list[str] = []
    for item in block.content:
        if isinstance(item, TextBlock):
            parts.append(f"<pre>{_e(item.text)}</pre>")
        else:
            parts.append(_image(item))
    return "".join(parts) or "<pre>(no output)</pre>"


def _tool_call(
    block: ToolUseBlock, result: ToolResultBlock | None, timing: dict[str, Any] | None
) -> str:
    if result is None:
        state, mark = "pending", "…"
    elif result.is_error:
        state, mark = "error", "✗"
    else:
        state, mark = "ok", "✓"
    meta: list[str] = []
    if timing is not None and isinstance(timing.get("duration_ms"), int | float):
        meta.append(format_ms(float(timing["duration_ms"])))
    if timing is not None and isinstance(timing.get("bytes_billed"), int):
        billed = f"{format_bytes(int(timing['bytes_billed']))} billed"
        meta.append(billed + (" (cached)" if timing.get("cache_hit") is True else ""))
    if result is not None:
        meta.append(f"{len(result.text):,} chars")
        if result.is_error:
            meta.append("error")
    else:
        meta.append("no result")
    key = summarise_input(block.input) if block.complete else "(input cut off)"
    arguments = (
        json.dumps(block.input, ensure_ascii=False, indent=2, default=str)
        if block.complete
        else (block.partial_json or "")
    )
    output = _result_body(result) if result is not None else '<p class="note">no result</p>'
    return (
        f'<details class="tool {state}" id="{_e(_dom_id("call", block.id))}">'
        f'<summary><span class="mark">{mark}</span> <span class="name">{_e(block.name)}</span> '
        f'<span class="key">{_e(key)}</span><span class="meta">{_e(" · ".join(meta))}</span>'
        f"</summary>"
        f'<div class="io"><h4>call id</h4><code>{_e(block.id)}</code>'
        f"<h4>input</h4><pre>{_e(arguments)}</pre>"
        f"<h4>output</h4>{output}</div></details>"
    )


def _model_meta(record: dict[str, Any] | None) -> str:
    if record is None:
        return ""
    parts = [str(record.get("model", ""))]
    if "input_tokens" in record:
        cached = int(record.get("cache_read_tokens") or 0) + int(
            record.get("cache_write_tokens") or 0
        )
        tokens = (
            f"{int(record['input_tokens']):,} in / {int(record.get('output_tokens') or 0):,} out"
        )
        if cached:
            tokens += f" / {cached:,} cache"
        parts.append(tokens)
    if "cost_usd" in record:
        parts.append(f"${float(record['cost_usd'] or 0):.4f}")
    if isinstance(record.get("duration_ms"), int | float):
        parts.append(format_ms(float(record["duration_ms"])))
    if record.get("stop_reason"):
        parts.append(str(record["stop_reason"]))
    return f'<span class="meta">{_e(" · ".join(p for p in parts if p))}</span>'


def _conversation_html(session: Session, records: list[dict[str, Any]]) -> str:
    models, tools = _timings(session, records)
    results: dict[str, ToolResultBlock] = {}
    called: set[str] = set()
    for message in session.messages:
        for block in message.content:
            if isinstance(block, ToolResultBlock):
                results[block.tool_use_id] = block
            elif isinstance(block, ToolUseBlock):
                called.add(block.id)
    out: list[str] = []
    if session.summary:
        out.append(
            '<div class="summary-box"><div class="who">summary of the condensed turns</div>'
            f"{_text(session.summary)}</div>"
        )
    for index, message in enumerate(session.messages):
        if index == session.context_start and index:
            out.append('<div class="divider">context starts here (earlier turns summarised)</div>')
        blocks = message.content
        parts: list[str] = []
        for block in blocks:
            if isinstance(block, TextBlock):
                parts.append(_text(block.text))
            elif isinstance(block, ThinkingBlock):
                parts.append(
                    '<details class="thinking"><summary>thinking</summary>'
                    f"{_text(block.thinking)}</details>"
                )
            elif isinstance(block, ImageBlock):
                parts.append(_image(block))
            elif isinstance(block, ToolUseBlock):
                parts.append(_tool_call(block, results.get(block.id), tools.get(block.id)))
            elif isinstance(block, ToolResultBlock) and block.tool_use_id not in called:
                parts.append(
                    f'<details class="tool {"error" if block.is_error else "ok"}">'
                    f"<summary>result of call <code>{_e(block.tool_use_id)}</code></summary>"
                    f'<div class="io">{_result_body(block)}</div></details>'
                )
        if not parts:
            continue  # tool results only: shown with their calls
        kind = message.role
        only_results = all(isinstance(b, ToolResultBlock) for b in blocks)
        css = f"msg {kind}" + (" orphan" if only_results else "")
        meta = _model_meta(models.get(index)) if kind == "assistant" else ""
        out.append(
            f'<article class="{css}" id="m{index}"><div class="who">{_e(kind)} '
            f'<span class="idx">#{index}</span>{meta}</div>{"".join(parts)}</article>'
        )
    if not out:
        out.append('<p class="note">This session has no messages yet.</p>')
    return "\n".join(out)


def _card(label: str, value: str, sub: str = "") -> str:
    extra = f'<div class="sub">{_e(sub)}</div>' if sub else ""
    return (
        f'<div class="card"><div class="label">{_e(label)}</div>'
        f'<div class="value">{_e(value)}</div>{extra}</div>'
    )


def _latency(latency: Latency | None) -> tuple[str, str]:
    if latency is None:
        return "-", "-"
    return format_ms(latency.p50_ms), format_ms(latency.max_ms)


def _table(headers: list[str], rows: list[list[str]], left: int = 1) -> str:
    head = "".join(
        f'<th class="{"left" if i < left else ""}">{_e(h)}</th>' for i, h in enumerate(headers)
    )
    body = "".join(
        "<tr>"
        + "".join(f'<td class="{"left" if i < left else ""}">{c}</td>' for i, c in enumerate(row))
        + "</tr>"
        for row in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _report_html(report: SessionReport) -> str:
    usage = report.usage
    runs_ms = [r.duration_ms for r in report.runs if r.duration_ms is not None]
    cards = [
        _card(
            "tokens",
            f"{usage.total_tokens:,}",
            f"{usage.input_tokens:,} in · {usage.output_tokens:,} out · "
            f"{usage.cache_read_tokens + usage.cache_write_tokens:,} cache",
        ),
        _card("cost", f"${usage.cost_usd:.4f}", "model" if report.warehouse else ""),
        *_warehouse_cards(report),
        _card(
            "model calls",
            str(usage.model_calls),
            f"p50 {_latency(report.model_latency)[0]}" if report.model_latency else "",
        ),
        _card(
            "tool calls",
            str(report.tool_calls),
            f"{report.tool_errors} failed" if report.tool_errors else "none failed",
        ),
        _card(
            "run time",
            format_ms(sum(runs_ms)) if runs_ms else "-",
            f"{len(report.runs)} run{'' if len(report.runs) == 1 else 's'}",
        ),
    ]
    out = [f'<div class="cards">{"".join(cards)}</div>']
    if report.tools:
        rows = []
        for tool in report.tools:
            p50, worst = _latency(tool.latency)
            errors = f'<span class="{"err" if tool.errors else ""}">{tool.errors}</span>'
            rows.append([_e(tool.name), str(tool.calls), errors, _e(p50), _e(worst)])
        out.append("<h2>Tools</h2>" + _table(["tool", "calls", "errors", "p50", "max"], rows))
    if report.models:
        rows = []
        for model in report.models:
            u = model.usage
            p50, worst = _latency(model.latency)
            rows.append(
                [
                    _e(model.model),
                    str(model.calls),
                    str(model.errors),
                    f"{u.input_tokens:,}",
                    f"{u.output_tokens:,}",
                    f"{u.cache_read_tokens:,} / {u.cache_write_tokens:,}",
                    f"${u.cost_usd:.4f}",
                    _e(p50),
                    _e(worst),
                ]
            )
        headers = ["model", "calls", "errors", "input", "output", "cache r/w", "cost", "p50", "max"]
        out.append("<h2>Models</h2>" + _table(headers, rows))
    if report.runs:
        rows = []
        billed = any(run.warehouse is not None for run in report.runs)
        for run in report.runs:
            u = run.usage
            row = [
                str(run.index),
                _e(run.path or "-"),
                _e(run.stop_reason or "-"),
                str(u.model_calls),
                str(u.tool_calls),
                str(u.tool_errors),
                f"{u.total_tokens:,}" if report.timings_recorded else "-",
                f"${u.cost_usd:.4f}" if report.timings_recorded else "-",
            ]
            if billed:
                w = run.warehouse
                row += (
                    [_e(format_bytes(w.bytes_billed)), _e(format_usd(w.cost_usd(run.usd_per_tib)))]
                    if w is not None
                    else ["-", "-"]
                )
            rows.append([*row, _e(format_ms(run.duration_ms))])
        headers = ["#", "agent", "ended", "model calls", "tool calls", "errors", "tokens", "cost"]
        headers += ["billed", "warehouse cost"] if billed else []
        out.append("<h2>Runs</h2>" + _table([*headers, "time"], rows, left=3))
    if not report.timings_recorded:
        from loopwright.observability.reports import NO_TIMINGS_HINT

        out.append(f'<p class="note">{_e(NO_TIMINGS_HINT)}</p>')
    return "\n".join(out)


def _warehouse_cards(report: SessionReport) -> list[str]:
    """What the warehouse billed and the costs together, when a query was billed."""
    warehouse = report.warehouse
    if warehouse is None:
        return []
    queries = f"{warehouse.queries} quer{'y' if warehouse.queries == 1 else 'ies'}"
    if warehouse.cache_hits:
        queries += f", {warehouse.cache_hits} cached"
    return [
        _card(
            f"{warehouse.database} billed",
            format_bytes(warehouse.bytes_billed),
            f"{queries} · ≈ {format_usd(report.warehouse_cost_usd)} at ${report.usd_per_tib:g}/TiB",
        ),
        _card(
            "total cost",
            f"${report.total_cost_usd:.4f}",
            "model + warehouse (est.)",
        ),
    ]


def _header_html(session: Session, report: SessionReport) -> str:
    facts = [
        ("workspace", str(session.workspace_dir)),
        ("created", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(session.created_at))),
        ("updated", time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(session.updated_at))),
        ("messages", str(len(session.messages))),
    ]
    if report.models:
        facts.append(("models", ", ".join(m.model for m in report.models)))
    if report.sub_sessions:
        facts.append(("sub-agent sessions", ", ".join(report.sub_sessions)))
    rows = "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in facts)
    title = f'<p class="session-title">{_e(report.title)}</p>' if report.title else ""
    return f'<h1>Session <code>{_e(session.id)}</code></h1>{title}<dl class="facts">{rows}</dl>'


def render_html(
    session: Session,
    records: list[dict[str, Any]] | None = None,
    *,
    store: SessionStore | None = None,
    usd_per_tib: float | None = None,
) -> str:
    """The HTML transcript of ``session`` (one self-contained page; see the module
    docstring). ``records`` are its stats (read from the workspace when not given); warehouse
    costs are estimated at ``usd_per_tib`` (see :func:`~loopwright.observability.reports.
    build_report`)."""
    from loopwright import __version__

    if records is None:
        from loopwright.observability.stats import records_for_session

        records = records_for_session(session, store)
    report = build_report(session, records, usd_per_tib=usd_per_tib)
    template = Template(
        resources.files("loopwright.observability").joinpath("transcript.html").read_text("utf-8")
    )
    return template.substitute(
        title=_e(
            f"loopwright session {session.id}" + (f" · {report.title}" if report.title else "")
        ),
        version=_e(__version__),
        generated=_e(time.strftime("%Y-%m-%d %H:%M:%S")),
        header=_header_html(session, report),
        report=_report_html(report),
        conversation=_conversation_html(session, records),
    )


def write_html(
    session: Session,
    path: str | os.PathLike[str],
    *,
    records: list[dict[str, Any]] | None = None,
    store: SessionStore | None = None,
) -> Path:
    """Write the HTML transcript of ``session`` to ``path``."""
    target = Path(path)
    write_atomically(target, render_html(session, records, store=store))
    return target


__all__ = [
    "CONVERSATION_FILE",
    "conversation_record",
    "redact_records",
    "redact_session",
    "render_html",
    "write_conversation",
    "write_html",
]
