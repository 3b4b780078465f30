"""OpenTelemetry traces of agent runs, following the GenAI semantic conventions.

Each run is an ``invoke_agent {agent}`` span; each model call inside it a ``chat {model}``
span (model, provider, token usage including cache reads and writes, cost, finish reason,
``max_tokens`` and ``temperature``); each tool call an ``execute_tool {tool}`` span (tool name,
call id, error status). A sub-agent started by a tool call is an ``invoke_agent`` span under
that call's ``execute_tool`` span, so a whole tree of agents is one trace. The session id is
``gen_ai.conversation.id`` (and ``session.id``, which Langfuse and Phoenix group sessions by).

Parents are always passed explicitly (``run.parent`` / ``run.parent_call``, then the spans
kept in ``run.data``); no context is attached across the loop's async generators, where a
token attached in one step could be detached in another task.

Prompts, completions, tool arguments and tool results are recorded only when asked
(``record_content=True``, or ``LOOPWRIGHT_TRACE_CONTENT=1`` for the environment switch), as
the conventions' ``gen_ai.input.messages``, ``gen_ai.output.messages``,
``gen_ai.system_instructions``, ``gen_ai.tool.call.arguments`` and ``gen_ai.tool.call.result``
attributes (JSON strings). Recorded contents go through the agent's policy as the audit log
does: redacted when the policy redacts (``Policy(redact=...)``), and every string in them cut
at ``max_content_chars`` (default :data:`MAX_CONTENT_CHARS`), with a note of how much was cut,
so a huge SQL text or tool output does not make spans bigger than a collector accepts (the
JSON stays valid).

Calls of the ``SQL`` and ``DefineCohort`` tools also carry what they returned, from the
result's metadata: ``db.system.name`` (``duckdb``, ``postgresql``, ``gcp.bigquery``),
``db.response.returned_rows``, ``loopwright.sql.truncated`` (cut at the row cap),
``loopwright.sql.bytes_scanned`` (BigQuery), ``loopwright.cohort.patients`` and
``loopwright.cohort.claims``; with contents recorded, the query as ``db.query.text``. A tool
call stopped with its run is ``loopwright.cancelled``, not an error.

Errors, retries and approval requests are span events (``loopwright.error``,
``loopwright.retry``, ``loopwright.approval_request``); so is a notice, on its run's
``invoke_agent`` span: ``loopwright.notice`` with its ``code`` and ``message``.

Token counts follow the conventions: ``gen_ai.usage.input_tokens`` counts every input token,
cached ones included; ``gen_ai.usage.cache_read.input_tokens`` and
``gen_ai.usage.cache_creation.input_tokens`` say how many of them were read from or written to
the provider's cache. Cost (US dollars) is ``loopwright.usage.cost_usd``.

Cost per step: the hooks run on every model and tool call, so they do the least the SDK
allows. What is the same for a whole run (provider, model, session, the ``chat`` span's name
and opening attributes) is worked out once in :meth:`TracingInstrument.run_started`, and what
is the same for every call of a tool (its span name and attributes) once per tool name.
Attributes known when a span starts are passed to ``start_span`` (one validation pass in the
SDK, and samplers see them); the run's parent context is made once. Contents are serialised
only when recorded. A span the sampler dropped gets none of the attributes that are worked out
when its call ends, and a run whose tracer is a no-op (no SDK installed) keeps no state, so
its hooks return at once. ``benchmarks/tracing.py`` shows what is left beside the SDK's own
cost.

Exporting: nothing is exported unless configured. The environment switch
(:func:`instrument_from_env`) reads the standard ``OTEL_EXPORTER_OTLP_ENDPOINT`` /
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` (with ``OTEL_EXPORTER_OTLP_HEADERS`` and the other
``OTEL_EXPORTER_OTLP_*`` settings) and sends spans over OTLP/HTTP with a batching processor,
so Langfuse, Arize Phoenix, Jaeger or any OTLP collector receives them. ``LANGFUSE_PUBLIC_KEY``
with ``LANGFUSE_SECRET_KEY`` (and ``LANGFUSE_HOST``, default Langfuse Cloud) sends them to
Langfuse's OTLP endpoint ``<host>/api/public/otel`` with Basic authentication. In code, give
:class:`TracingInstrument` your own ``TracerProvider`` (or none: the global one).
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from typing import TYPE_CHECKING, Any

try:
    from opentelemetry import trace
    from opentelemetry.semconv._incubating.attributes import gen_ai_attributes as gen_ai
    from opentelemetry.semconv.attributes.error_attributes import ERROR_TYPE
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        "OpenTelemetry tracing needs the tracing extra; install it with "
        "pip install 'loopwright[tracing]'"
    ) from exc

from loopwright.events import ApprovalRequest, Error, Notice, TextDelta
from loopwright.instrument import Instrument, call_cancelled
from loopwright.messages import (
    ImageBlock,
    Message,
    TextBlock,
    ThinkingBlock,
    ToolResultBlock,
    ToolUseBlock,
)
from loopwright.policy.audit import cut_strings
from loopwright.settings import switch

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
    from opentelemetry.trace import Span, SpanContext, Tracer, TracerProvider

    from loopwright.events import Done, Event, Usage
    from loopwright.models.base import Model, ModelRequest, ModelResponse
    from loopwright.policy.redaction import Redactor
    from loopwright.run_context import RunContext

log = logging.getLogger("loopwright.observability")

#: Our own attributes (the conventions have none for these).
COST_USD = "loopwright.usage.cost_usd"
AGENT_PATH = "loopwright.agent.path"
RUN_ID = "loopwright.run.id"
STOP_REASON = "loopwright.stop_reason"
OUTPUT_CHARS = "loopwright.tool.output_chars"
CANCELLED = "loopwright.cancelled"
SESSION_ID = "session.id"  # what Langfuse and Phoenix group sessions by
SQL_TRUNCATED = "loopwright.sql.truncated"
SQL_BYTES_SCANNED = "loopwright.sql.bytes_scanned"
SQL_DATASET = "loopwright.sql.dataset"
COHORT_PATIENTS = "loopwright.cohort.patients"
COHORT_CLAIMS = "loopwright.cohort.claims"

#: Characters kept of each string in recorded contents (a prompt, a tool argument, a result):
#: more than a tool's output may hold (30,000 by default) and a long system prompt, far less
#: than the megabytes of a runaway query or an input file pasted into a prompt.
MAX_CONTENT_CHARS = 32_000

# The conventions' names, read once (the hooks run on every call).
_OPERATION = gen_ai.GEN_AI_OPERATION_NAME
_PROVIDER = gen_ai.GEN_AI_PROVIDER_NAME
_SYSTEM = gen_ai.GEN_AI_SYSTEM
_REQUEST_MODEL = gen_ai.GEN_AI_REQUEST_MODEL
_CONVERSATION = gen_ai.GEN_AI_CONVERSATION_ID
_MAX_TOKENS = gen_ai.GEN_AI_REQUEST_MAX_TOKENS
_TEMPERATURE = gen_ai.GEN_AI_REQUEST_TEMPERATURE
_STOP_SEQUENCES = gen_ai.GEN_AI_REQUEST_STOP_SEQUENCES
_OUTPUT_TYPE = gen_ai.GEN_AI_OUTPUT_TYPE
_FINISH_REASONS = gen_ai.GEN_AI_RESPONSE_FINISH_REASONS
_FIRST_CHUNK = gen_ai.GEN_AI_RESPONSE_TIME_TO_FIRST_CHUNK
_INPUT_TOKENS = gen_ai.GEN_AI_USAGE_INPUT_TOKENS
_OUTPUT_TOKENS = gen_ai.GEN_AI_USAGE_OUTPUT_TOKENS
_CACHE_READ = gen_ai.GEN_AI_USAGE_CACHE_READ_INPUT_TOKENS
_CACHE_WRITE = gen_ai.GEN_AI_USAGE_CACHE_CREATION_INPUT_TOKENS
_TOOL_NAME = gen_ai.GEN_AI_TOOL_NAME
_TOOL_CALL_ID = gen_ai.GEN_AI_TOOL_CALL_ID
_TOOL_TYPE = gen_ai.GEN_AI_TOOL_TYPE
_INPUT_MESSAGES = gen_ai.GEN_AI_INPUT_MESSAGES
_OUTPUT_MESSAGES = gen_ai.GEN_AI_OUTPUT_MESSAGES
_DB_SYSTEM = "db.system.name"
_DB_ROWS = "db.response.returned_rows"
_DB_QUERY = "db.query.text"
#: ``db.system.name`` of a SQL backend's dialect (the conventions' names where they have one).
_DB_SYSTEMS = {"postgres": "postgresql", "bigquery": "gcp.bigquery", "tsql": "microsoft.sql_server"}
_CLIENT = SpanKind.CLIENT
_INTERNAL = SpanKind.INTERNAL

#: Providers whose model-string prefix differs from the conventions' provider name.
_PROVIDERS = {"local": "llama_cpp"}
#: Tool names whose span name and attributes are kept (past it, the table starts over).
_TOOL_CACHE_SIZE = 1024


@dataclass(slots=True, eq=False)
class _RunSpans:
    """The open spans of one run (kept in ``run.data``), and what its chat spans start with."""

    span: Span
    context: Context  # the run's span as a parent: made once, passed to every child span
    chat_name: str  # "chat {model}"
    chat_attributes: dict[str, Any]  # operation, provider, model, conversation: never mutated
    chat: Span | None = None
    chat_started_ns: int = 0
    first_chunk: bool = False
    error_type: str | None = None
    prompt_recorded: bool = False
    tools: dict[str, Span] = field(default_factory=dict)
    redactor: Redactor | None = None  # the agent policy's, for recorded contents


class TracingInstrument(Instrument):
    """Turns runs into OpenTelemetry spans (see the module docstring for what is recorded).

    ``tracer_provider``: where spans go; ``None`` uses the global provider (what
    ``opentelemetry.trace.set_tracer_provider`` installed, else a no-op). ``record_content``
    adds prompts, completions and tool inputs/outputs to the spans, each string in them cut at
    ``max_content_chars`` characters (and redacted when the agent's policy redacts).
    ``shutdown_on_close``: shut the provider down in :meth:`aclose` (for a provider made for
    this instrument alone); otherwise :meth:`aclose` only flushes it.
    """

    def __init__(
        self,
        tracer_provider: TracerProvider | None = None,
        record_content: bool = False,
        *,
        shutdown_on_close: bool = False,
        max_content_chars: int = MAX_CONTENT_CHARS,
    ) -> None:
        from loopwright import __version__

        self.provider: TracerProvider = tracer_provider or trace.get_tracer_provider()
        self.tracer: Tracer = self.provider.get_tracer("loopwright", __version__)
        self.record_content = record_content
        self.shutdown_on_close = shutdown_on_close
        if max_content_chars < 1:
            raise ValueError(f"max_content_chars must be at least 1, got {max_content_chars!r}")
        self.max_content_chars = max_content_chars
        #: tool name -> (span name, the attributes every call of it starts with)
        self._tools: dict[str, tuple[str, dict[str, Any]]] = {}

    # --- runs ---------------------------------------------------------------------------

    def run_started(self, run: RunContext) -> None:
        agent = run.agent
        provider, model = provider_and_model(agent.model)
        session_id = run.session.id
        span = self.tracer.start_span(
            f"invoke_agent {agent.name}",
            context=self._parent_context(run),
            kind=_INTERNAL,
            attributes={
                _OPERATION: "invoke_agent",
                gen_ai.GEN_AI_AGENT_NAME: agent.name,
                _PROVIDER: provider,
                _SYSTEM: provider,
                _REQUEST_MODEL: model,
                _CONVERSATION: session_id,
                SESSION_ID: session_id,
                AGENT_PATH: run.path,
                RUN_ID: run.id,
            },
        )
        if not span.get_span_context().is_valid:
            return  # a no-op tracer (no SDK): nothing this run does can be recorded
        chat_attributes = {
            _OPERATION: "chat",
            _PROVIDER: provider,
            _SYSTEM: provider,
            _REQUEST_MODEL: model,
            _CONVERSATION: session_id,
        }
        state = _RunSpans(span, trace.set_span_in_context(span), f"chat {model}", chat_attributes)
        if self.record_content:
            redactor = getattr(getattr(agent, "policy", None), "redactor", None)
            state.redactor = redactor if hasattr(redactor, "redact_value") else None
        run.data[self] = state

    def _content(self, state: _RunSpans, value: Any) -> Any:
        """A recorded content as the policy would log it: redacted (when the policy redacts),
        then every string in it cut at :attr:`max_content_chars`."""
        if state.redactor is not None:
            value = state.redactor.redact_value(value)
        return cut_strings(value, self.max_content_chars)

    def _parent_context(self, run: RunContext) -> Context | None:
        """The parent's ``execute_tool`` span for a sub-agent, else the caller's context."""
        parent = run.parent
        if parent is None:
            return None  # the current context: a span the application opened, if any
        state = _spans_of(parent, self)
        if state is None:
            return None
        call = run.parent_call
        tool_span = state.tools.get(call.id) if call is not None else None
        return trace.set_span_in_context(tool_span) if tool_span is not None else state.context

    def run_finished(self, run: RunContext, done: Done) -> None:
        state: _RunSpans | None = run.data.get(self)
        if state is None:
            return
        if state.chat is not None:  # the run was stopped during a model call
            state.chat.set_attribute(CANCELLED, True)
            state.chat.end()
            state.chat = None
        for tool_span in state.tools.values():
            tool_span.set_attribute(CANCELLED, True)
            tool_span.end()
        state.tools.clear()
        span = state.span
        if not span.is_recording():  # sampled out: nothing to add
            span.end()
            return
        usage = done.usage
        attributes = _usage_attributes(usage, usage.cost_usd)
        attributes[STOP_REASON] = done.stop_reason
        attributes["loopwright.usage.model_calls"] = usage.model_calls
        attributes["loopwright.usage.tool_calls"] = usage.tool_calls
        attributes["loopwright.usage.tool_errors"] = usage.tool_errors
        if self.record_content:
            messages = run.session.messages
            if messages and messages[-1].role == "assistant":
                attributes[_OUTPUT_MESSAGES] = _json(
                    self._content(
                        state, [_message_json(messages[-1], finish_reason=done.stop_reason)]
                    )
                )
        if done.stop_reason == "error":
            attributes[ERROR_TYPE] = state.error_type or "_OTHER"
            span.set_status(Status(StatusCode.ERROR, done.detail or "the run failed"))
        span.set_attributes(attributes)
        span.end()

    # --- model calls --------------------------------------------------------------------

    def model_call_started(self, run: RunContext, request: ModelRequest) -> None:
        state: _RunSpans | None = run.data.get(self)
        if state is None:
            return
        attributes = {
            **state.chat_attributes,
            _MAX_TOKENS: request.max_tokens,
            _TEMPERATURE: request.temperature,
        }
        if request.stop:
            attributes[_STOP_SEQUENCES] = list(request.stop)
        if request.response_format is not None:
            attributes[_OUTPUT_TYPE] = "json"
        if self.record_content:
            self._record_prompt(state, request, attributes)
        # our own clock reading is the span's start, so time to first chunk needs no lookup
        started = time.time_ns()
        state.chat = self.tracer.start_span(
            state.chat_name,
            context=state.context,
            kind=_CLIENT,
            attributes=attributes,
            start_time=started,
        )
        state.chat_started_ns = started
        state.first_chunk = False

    def _record_prompt(
        self, state: _RunSpans, request: ModelRequest, attributes: dict[str, Any]
    ) -> None:
        """Contents of a chat span (``record_content``): system prompt and input messages;
        the run's prompt also goes on the run's span, at its first model call."""
        if not state.prompt_recorded:
            # the run's prompt reaches the session after run_started: record it here
            state.prompt_recorded = True
            last = request.messages[-1] if request.messages else None
            if last is not None and last.role == "user":
                state.span.set_attribute(
                    _INPUT_MESSAGES, _json(self._content(state, [_message_json(last)]))
                )
        if request.system:
            attributes[gen_ai.GEN_AI_SYSTEM_INSTRUCTIONS] = _json(
                self._content(state, [{"type": "text", "content": request.system}])
            )
        attributes[_INPUT_MESSAGES] = _json(self._content(state, _messages_json(request.messages)))

    def model_call_finished(
        self,
        run: RunContext,
        request: ModelRequest,
        response: ModelResponse | None,
        error: BaseException | None,
        duration_s: float,
    ) -> None:
        state: _RunSpans | None = run.data.get(self)
        if state is None:
            return
        span = state.chat
        if span is None:
            return
        state.chat = None
        if not span.is_recording():  # sampled out: nothing to add
            if isinstance(error, Exception):
                state.error_type = type(error).__name__  # the run's span may be recorded
            span.end()
            return
        if response is not None:
            usage = response.usage
            cost = usage.cost_usd
            if cost == 0.0:
                pricing = run.agent.model.pricing
                if pricing is not None:
                    cost = pricing.cost(usage)  # the loop prices the call just after this hook
            attributes = _usage_attributes(usage, cost)
            attributes[_FINISH_REASONS] = (response.stop_reason,)
            if self.record_content:
                attributes[_OUTPUT_MESSAGES] = _json(
                    self._content(
                        state,
                        [_message_json(response.message, finish_reason=response.stop_reason)],
                    )
                )
            span.set_attributes(attributes)
        elif isinstance(error, Exception):
            kind = type(error).__name__
            state.error_type = kind
            span.set_attribute(ERROR_TYPE, kind)
            span.record_exception(error)
            span.set_status(Status(StatusCode.ERROR, str(error) or kind))
        else:  # cancelled, or the consumer stopped reading
            span.set_attribute(CANCELLED, True)
        span.end()

    # --- tool calls ---------------------------------------------------------------------

    def tool_call_started(self, run: RunContext, call: ToolUseBlock) -> None:
        state: _RunSpans | None = run.data.get(self)
        if state is None:
            return
        name = call.name
        known = self._tools.get(name)
        if known is None:
            known = self._tool_start(name)
        span_name, base = known
        attributes = {**base, _TOOL_CALL_ID: call.id}
        if self.record_content:
            attributes[gen_ai.GEN_AI_TOOL_CALL_ARGUMENTS] = _json(self._content(state, call.input))
        state.tools[call.id] = self.tracer.start_span(
            span_name, context=state.context, kind=_INTERNAL, attributes=attributes
        )

    def _tool_start(self, name: str) -> tuple[str, dict[str, Any]]:
        """The span name and opening attributes of every call of tool ``name``."""
        if len(self._tools) >= _TOOL_CACHE_SIZE:
            self._tools.clear()
        known = (
            f"execute_tool {name}",
            {
                _OPERATION: "execute_tool",
                _TOOL_NAME: name,
                _TOOL_TYPE: "extension" if name.startswith("mcp__") else "function",
            },
        )
        self._tools[name] = known
        return known

    def tool_call_finished(
        self, run: RunContext, call: ToolUseBlock, result: dict[str, Any], duration_s: float
    ) -> None:
        state: _RunSpans | None = run.data.get(self)
        if state is None:
            return
        span = state.tools.pop(call.id, None)
        if span is None:
            return
        if not span.is_recording():  # sampled out: nothing to add
            span.end()
            return
        if call_cancelled():  # stopped with its run: no result, and no failure of the tool's
            span.set_attribute(CANCELLED, True)
            span.end()
            return
        text = _result_text(result.get("content", ""))
        attributes: dict[str, Any] = {OUTPUT_CHARS: len(text)}
        if self.record_content:
            attributes[gen_ai.GEN_AI_TOOL_CALL_RESULT] = self._content(state, text)
        metadata = result.get("metadata")
        if type(metadata) is dict and ("row_count" in metadata or "patients" in metadata):
            self._query_attributes(run, state, call, metadata, attributes)
        span.set_attributes(attributes)
        if result.get("is_error"):
            span.set_attribute(ERROR_TYPE, "ToolError")
            span.set_status(Status(StatusCode.ERROR, _first_line(text)))
        span.end()

    def _query_attributes(
        self,
        run: RunContext,
        state: _RunSpans,
        call: ToolUseBlock,
        metadata: dict[str, Any],
        attributes: dict[str, Any],
    ) -> None:
        """What a query tool's call returned (``SQL``: rows, the row cap, bytes scanned;
        ``DefineCohort``: patients and claims), and the database it ran on."""
        system = _database_system(run, call.name)
        if system is not None:
            attributes[_DB_SYSTEM] = system
        rows = metadata.get("row_count")
        if rows is None:
            rows = metadata.get("patients")  # a cohort's members: one row per patient
            claims = metadata.get("claims")
            if isinstance(rows, int):
                attributes[COHORT_PATIENTS] = rows
            if isinstance(claims, int):
                attributes[COHORT_CLAIMS] = claims
            query = metadata.get("sql")
        else:
            attributes[SQL_TRUNCATED] = bool(metadata.get("truncated"))
            scanned = metadata.get("bytes_scanned")
            if isinstance(scanned, int):
                attributes[SQL_BYTES_SCANNED] = scanned
            dataset = metadata.get("dataset_name")
            if isinstance(dataset, str):
                attributes[SQL_DATASET] = dataset
            query = call.input.get("sql")
        if isinstance(rows, int):
            attributes[_DB_ROWS] = rows
        if self.record_content and isinstance(query, str):
            attributes[_DB_QUERY] = self._content(state, query)

    # --- events -------------------------------------------------------------------------

    def event(self, run: RunContext, event: Event) -> None:
        # most events (tool calls and results, usage updates) concern no span: the exact
        # type is enough to tell (events are final dataclasses), and cheaper than isinstance
        if type(event) is TextDelta:
            self._text_delta(run, event)
        elif type(event) is Error:
            self._error(run, event)
        elif type(event) is ApprovalRequest:
            self._approval_request(run, event)
        elif type(event) is Notice:
            self._notice(run, event)

    def _text_delta(self, run: RunContext, event: TextDelta) -> None:
        """The first chunk of a model call's answer: its time to first chunk."""
        state: _RunSpans | None = run.data.get(self)
        if state is None or state.chat is None or state.first_chunk or event.agent is not None:
            return
        state.first_chunk = True
        now = time.time_ns()
        if state.chat_started_ns and now > state.chat_started_ns:
            state.chat.set_attribute(_FIRST_CHUNK, (now - state.chat_started_ns) / 1e9)

    def _error(self, run: RunContext, event: Error) -> None:
        state: _RunSpans | None = run.data.get(self)
        if state is None:
            return
        target = state.chat if state.chat is not None else state.span
        target.add_event(
            "loopwright.retry" if event.retrying else "loopwright.error",
            {"message": event.message, "retryable": event.retryable},
        )

    def _approval_request(self, run: RunContext, event: ApprovalRequest) -> None:
        state: _RunSpans | None = run.data.get(self)
        if state is None:
            return
        tool_span = state.tools.get(event.tool_call_id)
        (tool_span or state.span).add_event(
            "loopwright.approval_request",
            {"gen_ai.tool.name": event.name, "reason": event.reason},
        )

    def _notice(self, run: RunContext, event: Notice) -> None:
        state: _RunSpans | None = run.data.get(self)
        if state is None or event.agent is not None:  # a sub-agent's: on its own run's span
            return
        state.span.add_event("loopwright.notice", {"code": event.code, "message": event.message})

    # --- shutdown -----------------------------------------------------------------------

    async def aclose(self) -> None:
        """Flush pending spans (in a thread: an export may wait on the network)."""
        provider = self.provider
        if self.shutdown_on_close:
            shutdown = getattr(provider, "shutdown", None)
            if shutdown is not None:
                await asyncio.to_thread(shutdown)
            return
        flush = getattr(provider, "force_flush", None)
        if flush is not None:
            await asyncio.to_thread(flush)


def span_context_of(run: RunContext) -> SpanContext | None:
    """The ``invoke_agent`` span of ``run`` (for linking later work, such as an evaluation
    that finishes after the run, to its trace); ``None`` when the run is not traced."""
    state = _spans_of(run, None)
    return state.span.get_span_context() if state is not None else None


def _spans_of(run: RunContext, instrument: TracingInstrument | None) -> _RunSpans | None:
    if instrument is not None:
        state = run.data.get(instrument)
        if isinstance(state, _RunSpans):
            return state
    for value in run.data.values():  # traced by another TracingInstrument
        if isinstance(value, _RunSpans):
            return value
    return None


# --- attributes ---------------------------------------------------------------------------


def provider_and_model(model: Model) -> tuple[str, str]:
    """The conventions' provider name and the model name for ``model``: ``anthropic`` and
    ``claude-sonnet-4-5`` for ``anthropic:claude-sonnet-4-5``; ``openai`` for an
    OpenAI-compatible server (``openai:NAME@URL``)."""
    return _parse_model_name(model.name, type(model).__name__)


@lru_cache(maxsize=256)
def _parse_model_name(full_name: str, type_name: str) -> tuple[str, str]:
    """:func:`provider_and_model` for a model string, parsed once per name."""
    name = full_name.split(" > ", 1)[0]  # a fallback chain: its first model
    prefix, sep, rest = name.partition(":")
    if not sep:
        return name or type_name.lower(), name
    return _PROVIDERS.get(prefix, prefix), rest.split("@", 1)[0] or name


def _usage_attributes(usage: Usage, cost: float) -> dict[str, Any]:
    cache_read = usage.cache_read_tokens
    cache_write = usage.cache_write_tokens
    attributes: dict[str, Any] = {
        _INPUT_TOKENS: usage.input_tokens + cache_read + cache_write,
        _OUTPUT_TOKENS: usage.output_tokens,
        COST_USD: cost,
    }
    if cache_read:
        attributes[_CACHE_READ] = cache_read
    if cache_write:
        attributes[_CACHE_WRITE] = cache_write
    return attributes


def _json(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, default=str)


def _messages_json(messages: Sequence[Message]) -> list[dict[str, Any]]:
    """Messages in the conventions' shape: tool results become ``tool`` role messages."""
    return [_message_json(message) for message in messages]


def _message_json(message: Message, finish_reason: str | None = None) -> dict[str, Any]:
    """One message as ``{"role", "parts": [...]}`` (the conventions' message schema)."""
    parts: list[dict[str, Any]] = []
    role: str = message.role
    for block in message.content:
        if isinstance(block, TextBlock):
            parts.append({"type": "text", "content": block.text})
        elif isinstance(block, ThinkingBlock):
            parts.append({"type": "reasoning", "content": block.thinking})
        elif isinstance(block, ToolUseBlock):
            parts.append(
                {"type": "tool_call", "id": block.id, "name": block.name, "arguments": block.input}
            )
        elif isinstance(block, ToolResultBlock):
            role = "tool"
            parts.append(
                {
                    "type": "tool_call_response",
                    "id": block.tool_use_id,
                    "response": block.text,
                }
            )
        elif isinstance(block, ImageBlock):
            # the picture itself is left out: megabytes of base64 in every span
            parts.append({"type": "blob", "modality": "image", "mime_type": block.media_type})
    data: dict[str, Any] = {"role": role, "parts": parts}
    if finish_reason is not None:
        data["finish_reason"] = finish_reason
    return data


def _database_system(run: RunContext, tool_name: str) -> str | None:
    """``db.system.name`` of the database a query tool of ``run`` reads (its backend's
    dialect), or ``None`` when the tool has no backend to tell."""
    try:
        tool = run.agent.registry_for(run.session).get(tool_name)
    except Exception:  # an agent of another kind: the attribute is left out
        return None
    backend = getattr(tool, "backend", None)
    if backend is None:  # DefineCohort: its runner holds the SQL tool's backend
        backend = getattr(getattr(tool, "runner", None), "backend", None)
    dialect = getattr(backend, "dialect", None)
    if not isinstance(dialect, str) or not dialect:
        return None
    return _DB_SYSTEMS.get(dialect, dialect)


def _result_text(content: Any) -> str:
    if isinstance(content, str):
        return content
    texts = [getattr(block, "text", None) for block in content or ()]
    return "\n".join(t for t in texts if isinstance(t, str))


def _first_line(text: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip()[:300]
    return "the tool call failed"


# --- configuration from the environment ---------------------------------------------------


class TracingConfigError(ValueError):
    """The tracing settings in the environment cannot work (the message says what to fix)."""


_env_lock = threading.Lock()
_env_providers: dict[tuple[tuple[str, str], ...], SdkTracerProvider] = {}

#: The variables that decide where spans go (a provider is made once per distinct setting).
_ENV_KEYS = (
    "OTEL_SDK_DISABLED",
    "OTEL_TRACES_EXPORTER",
    "OTEL_EXPORTER_OTLP_ENDPOINT",
    "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT",
    "OTEL_EXPORTER_OTLP_PROTOCOL",
    "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL",
    "OTEL_EXPORTER_OTLP_HEADERS",
    "OTEL_EXPORTER_OTLP_TRACES_HEADERS",
    "OTEL_SERVICE_NAME",
    "OTEL_RESOURCE_ATTRIBUTES",
    "LANGFUSE_PUBLIC_KEY",
    "LANGFUSE_SECRET_KEY",
    "LANGFUSE_HOST",
    "LANGFUSE_BASE_URL",
)


def langfuse_exporter_settings(environ: Mapping[str, str]) -> tuple[str, dict[str, str]] | None:
    """The OTLP/HTTP traces endpoint and headers for Langfuse, from ``LANGFUSE_*``."""
    public = environ.get("LANGFUSE_PUBLIC_KEY", "").strip()
    if not public:
        return None
    secret = environ.get("LANGFUSE_SECRET_KEY", "").strip()
    if not secret:
        raise TracingConfigError(
            "LANGFUSE_PUBLIC_KEY is set but LANGFUSE_SECRET_KEY is not; set both (from your "
            "Langfuse project's API keys) or unset LANGFUSE_PUBLIC_KEY"
        )
    host = (
        environ.get("LANGFUSE_HOST", "").strip()
        or environ.get("LANGFUSE_BASE_URL", "").strip()
        or "https://cloud.langfuse.com"
    )
    if not host.startswith(("http://", "https://")):
        raise TracingConfigError(
            f"LANGFUSE_HOST={host!r} is not a URL; set it to your Langfuse server's address, "
            "such as https://cloud.langfuse.com"
        )
    token = base64.b64encode(f"{public}:{secret}".encode()).decode("ascii")
    endpoint = f"{host.rstrip('/')}/api/public/otel/v1/traces"
    return endpoint, {"Authorization": f"Basic {token}"}


def tracer_provider_from_env(
    environ: Mapping[str, str] | None = None,
) -> SdkTracerProvider | None:
    """A tracer provider exporting where the environment says, or ``None`` when it says
    nowhere. Raises :class:`TracingConfigError` for settings that cannot work."""
    env = os.environ if environ is None else environ
    if env.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    if env.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "none":
        return None
    try:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import SERVICE_NAME, Resource
        from opentelemetry.sdk.trace import TracerProvider as SdkProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter
        from opentelemetry.util.re import parse_env_headers
    except ImportError as exc:  # pragma: no cover - depends on the installed extras
        raise TracingConfigError(
            "exporting traces needs the OpenTelemetry SDK and OTLP exporter; install them "
            "with pip install 'loopwright[tracing]'"
        ) from exc

    exporters: list[SpanExporter] = []
    endpoint = (
        env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
        or env.get("OTEL_EXPORTER_OTLP_ENDPOINT", "").strip()
    )
    if endpoint:
        protocol = (
            env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "").strip()
            or env.get("OTEL_EXPORTER_OTLP_PROTOCOL", "").strip()
            or "http/protobuf"
        )
        if protocol != "http/protobuf":
            raise TracingConfigError(
                f"OTEL_EXPORTER_OTLP_PROTOCOL={protocol!r} is not supported: loopwright "
                "exports OTLP over HTTP; set it to 'http/protobuf' (or unset it) and point "
                "the endpoint at the collector's HTTP port (usually 4318)"
            )
        if not endpoint.startswith(("http://", "https://")):
            raise TracingConfigError(
                f"the OTLP endpoint {endpoint!r} is not an http(s) URL; set "
                "OTEL_EXPORTER_OTLP_ENDPOINT to something like http://localhost:4318"
            )
        if not env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip():
            endpoint = f"{endpoint.rstrip('/')}/v1/traces"  # the base URL of all signals
        headers = parse_env_headers(
            env.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS", "")
            or env.get("OTEL_EXPORTER_OTLP_HEADERS", ""),
            liberal=True,
        )
        # timeout, compression and certificates come from the same standard variables
        exporters.append(OTLPSpanExporter(endpoint=endpoint, headers=dict(headers)))
    langfuse = langfuse_exporter_settings(env)
    if langfuse is not None:
        if env.get("OTEL_EXPORTER_OTLP_HEADERS") or env.get("OTEL_EXPORTER_OTLP_TRACES_HEADERS"):
            # the exporter would add them to Langfuse's requests too: another backend's keys
            raise TracingConfigError(
                "LANGFUSE_PUBLIC_KEY is set together with OTEL_EXPORTER_OTLP_HEADERS, whose "
                "headers would be sent to Langfuse as well; send traces to Langfuse with the "
                "LANGFUSE_* variables alone, or to your collector with the OTEL_* variables "
                "alone (a collector can forward them to Langfuse)"
            )
        exporters.append(OTLPSpanExporter(endpoint=langfuse[0], headers=langfuse[1]))
    if not exporters:
        return None
    resource = Resource.create()
    service = resource.attributes.get(SERVICE_NAME)
    if not service or str(service).startswith("unknown_service"):
        resource = resource.merge(Resource({SERVICE_NAME: "loopwright"}))
    provider = SdkProvider(resource=resource)
    for exporter in exporters:
        provider.add_span_processor(BatchSpanProcessor(exporter))
    return provider


def _shared_env_provider() -> SdkTracerProvider | None:
    """One provider per process for each distinct environment setting: agents built from the
    environment share its export queue and thread (the SDK flushes and shuts it down when the
    process exits; :meth:`TracingInstrument.aclose` flushes it before)."""
    key = tuple((name, os.environ.get(name, "")) for name in _ENV_KEYS)
    with _env_lock:
        provider = _env_providers.get(key)
        if provider is None:
            provider = tracer_provider_from_env()
            if provider is None:
                return None
            _env_providers[key] = provider
        return provider


def instrument_from_env() -> TracingInstrument | None:
    """A :class:`TracingInstrument` exporting where ``OTEL_EXPORTER_OTLP_*`` / ``LANGFUSE_*``
    say (``LOOPWRIGHT_TRACE_CONTENT=1`` records contents); ``None`` when they say nowhere or
    cannot work (then an error saying what to fix is logged, and runs go on untraced)."""
    try:
        provider = _shared_env_provider()
    except TracingConfigError as exc:
        log.error("Tracing is off: %s.", exc)
        return None
    if provider is None:
        return None
    content = switch(os.environ.get("LOOPWRIGHT_TRACE_CONTENT")) is True
    return TracingInstrument(provider, record_content=content)
