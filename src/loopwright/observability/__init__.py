"""Seeing what agents do: logs, OpenTelemetry traces, usage reports and session transcripts.

Everything here is an :class:`~loopwright.instrument.Instrument` or reads what one recorded, so
none of it is part of the loop: with nothing switched on, the loop does no observability work.

- :mod:`~loopwright.observability.logs`: ``DEBUG=1`` gives readable progress lines on stderr,
  ``LOOPWRIGHT_LOG=json`` one JSON object per line (:class:`LogInstrument`).
- :mod:`~loopwright.observability.tracing`: OpenTelemetry spans following the GenAI semantic
  conventions, exported over OTLP/HTTP when ``OTEL_EXPORTER_OTLP_*`` or ``LANGFUSE_*`` is set
  (:class:`TracingInstrument`).
- :mod:`~loopwright.observability.stats`: ``LOOPWRIGHT_STATS=1`` keeps timings and usage of
  every model and tool call in ``.loopwright/stats.jsonl`` in the workspace, and the
  conversation in ``conversation.json`` (:class:`StatsRecorder`).
- :mod:`~loopwright.observability.reports`: tokens, cost, latency and tool breakdowns per
  session and per run (:func:`build_report`).
- :mod:`~loopwright.observability.transcript`: ``conversation.json`` and a self-contained HTML
  transcript viewer (:func:`render_html`).

Names are imported lazily: ``import loopwright.observability`` does not load OpenTelemetry.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from loopwright.lazy import lazy_getattr

_EXPORTS = {
    "LogInstrument": "loopwright.observability.logs",
    "configure_logging": "loopwright.observability.logs",
    "reset_logging": "loopwright.observability.logs",
    "TracingInstrument": "loopwright.observability.tracing",
    "tracer_provider_from_env": "loopwright.observability.tracing",
    "span_context_of": "loopwright.observability.tracing",
    "StatsRecorder": "loopwright.observability.stats",
    "read_records": "loopwright.observability.stats",
    "records_for_session": "loopwright.observability.stats",
    "SessionReport": "loopwright.observability.reports",
    "build_report": "loopwright.observability.reports",
    "print_report": "loopwright.observability.reports",
    "conversation_record": "loopwright.observability.transcript",
    "write_conversation": "loopwright.observability.transcript",
    "render_html": "loopwright.observability.transcript",
}

__all__ = [
    "LogInstrument",
    "SessionReport",
    "StatsRecorder",
    "TracingInstrument",
    "build_report",
    "configure_logging",
    "conversation_record",
    "print_report",
    "read_records",
    "records_for_session",
    "render_html",
    "reset_logging",
    "span_context_of",
    "tracer_provider_from_env",
    "write_conversation",
]

if TYPE_CHECKING:
    from loopwright.observability.logs import LogInstrument, configure_logging, reset_logging
    from loopwright.observability.reports import SessionReport, build_report, print_report
    from loopwright.observability.stats import StatsRecorder, read_records, records_for_session
    from loopwright.observability.tracing import (
        TracingInstrument,
        span_context_of,
        tracer_provider_from_env,
    )
    from loopwright.observability.transcript import (
        conversation_record,
        render_html,
        write_conversation,
    )


__getattr__ = lazy_getattr(__name__, _EXPORTS, globals())
