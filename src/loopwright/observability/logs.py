"""Progress logs of agent runs through the standard :mod:`logging` module.

Two formats, both switched on by the environment (and both off by default, when no
instrument exists and the loop does no logging work at all):

- ``DEBUG=1`` (or ``LOOPWRIGHT_LOG=text``): readable lines on stderr, coloured when stderr is
  a terminal (``NO_COLOR`` turns colour off, ``FORCE_COLOR`` on), one per step and tagged with
  the session id and the agent's path::

      12:34:56.789 [3f2a9c01b2] agent ▶ run started (model openai:gpt-5)
      12:34:57.912 [3f2a9c01b2] agent ◆ openai:gpt-5 1,204 in / 88 out, $0.0049, 1123 ms → tool_use
      12:34:57.913 [3f2a9c01b2] agent → Bash ls data/
      12:34:57.950 [3f2a9c01b2] agent ✓ Bash 37 ms, 120 chars: patients.csv (+2 more lines)
      12:34:59.004 [3f2a9c01b2] agent ■ done end_turn · 2 model calls · 1 tool call · 2,410
      tokens · $0.0101 · 2.2 s

- ``LOOPWRIGHT_LOG=json``: one JSON object per line for production log pipelines, with
  ``ts``, ``level``, ``event``, ``session_id``, ``run_id``, ``agent`` (the path), ``model``,
  ``tool_name``, ``duration_ms``, ``success``, token counts, ``cost_usd`` and ``stop_reason``.
  Prompts, tool inputs and outputs are left out (they may hold private data); a failed tool
  call carries the first line of its error. A query tool's call also carries what it returned:
  ``rows`` (``SQL``: the rows saved, with ``truncated`` when cut at the row cap and
  ``bytes_scanned`` on BigQuery; ``DefineCohort``: the cohort's patients, with ``claims``).

The readable lines show each tool call's key input (a path, a command, the SQL): redacted
when the agent's policy redacts (``Policy(redact=...)``), as in the audit log. A tool call
stopped with its run is logged as stopped, not as a failure.

Records go to the ``loopwright.run`` logger. The environment switch attaches one handler to
the ``loopwright`` logger (once per process, however many agents are built) and stops
propagation to the root logger so lines are not printed twice; every other ``loopwright.*``
logger (warnings of the sandbox, the audit log...) then prints through it too. An application
with its own logging set-up uses ``LogInstrument(configure=False)`` and its own handlers.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import IO, TYPE_CHECKING, Any, Literal, TypeAlias

from loopwright.events import ApprovalRequest, Error
from loopwright.instrument import Instrument, call_cancelled
from loopwright.settings import switch
from loopwright.summaries import KEY_INPUTS, first_line, key_input, shorten

if TYPE_CHECKING:
    from loopwright.events import Done, Event
    from loopwright.messages import ToolUseBlock
    from loopwright.models.base import ModelRequest, ModelResponse
    from loopwright.policy.redaction import Redactor
    from loopwright.run_context import RunContext

LogFormat: TypeAlias = Literal["text", "json"]

#: The root of loopwright's loggers; the environment switch attaches its handler here.
ROOT_LOGGER = "loopwright"
#: The logger run records are written to.
RUN_LOGGER = "loopwright.run"

#: One encoder for every line (``json.dumps`` with options builds a new one per call).
_ENCODER = json.JSONEncoder(ensure_ascii=False, default=str)
#: Tool input keys that best say what a call is about: the terminal's, and a sub-agent's task.
_KEY_INPUTS = (*KEY_INPUTS[:-2], "task", *KEY_INPUTS[-2:])  # "task" before description, prompt

_RESET = "\033[0m"
_STYLES = {
    "dim": "\033[2m",
    "ok": "\033[32m",
    "error": "\033[31m",
    "warning": "\033[33m",
    "bold": "\033[1m",
    "tag": "\033[36m",
}


def summarise_input(tool_input: dict[str, Any], limit: int = 80) -> str:
    """The input that best identifies a tool call (a path, a command...), on one line."""
    return key_input(tool_input, limit, _KEY_INPUTS)


def result_text(result: dict[str, Any]) -> str:
    """The textual content of a tool result (text blocks joined; images left out)."""
    content = result.get("content", "")
    if isinstance(content, str):
        return content
    parts: list[str] = []
    for block in content or ():
        text = getattr(block, "text", None)
        if text is None and isinstance(block, dict):
            text = block.get("text")
        if isinstance(text, str):
            parts.append(text)
    return "\n".join(parts)


# --- formatting ---------------------------------------------------------------------------


class ReadableFormatter(logging.Formatter):
    """``HH:MM:SS.mmm [session] agent message``, coloured by outcome when ``color``."""

    def __init__(self, color: bool = False) -> None:
        super().__init__()
        self.color = color

    def format(self, record: logging.LogRecord) -> str:
        stamp = time.strftime("%H:%M:%S", time.localtime(record.created))
        stamp = f"{stamp}.{int(record.msecs):03d}"
        fields: dict[str, Any] | None = getattr(record, "lw", None)
        message = record.getMessage()
        if record.exc_info:
            message = f"{message}\n{self.formatException(record.exc_info)}"
        if fields is None:
            head = f"{stamp} {record.levelname} {record.name}:"
            style = "error" if record.levelno >= logging.ERROR else "warning"
            if record.levelno < logging.WARNING:
                style = "dim"
            return f"{self._paint(head, 'dim')} {self._paint(message, style)}"
        tag = f"[{fields.get('session_id', '-')}] {fields.get('agent', '')}"
        style = str(fields.get("style") or _style_for(record))
        return (
            f"{self._paint(stamp, 'dim')} {self._paint(tag, 'tag')} {self._paint(message, style)}"
        )

    def _paint(self, text: str, style: str) -> str:
        if not self.color or style not in _STYLES:
            return text
        return f"{_STYLES[style]}{text}{_RESET}"


def _style_for(record: logging.LogRecord) -> str:
    if record.levelno >= logging.ERROR:
        return "error"
    if record.levelno >= logging.WARNING:
        return "warning"
    if record.levelno < logging.INFO:
        return "dim"
    return ""


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``ts``, ``level``, ``logger``, the record's fields, and
    ``message``; records of other loggers get ``event: "log"``."""

    def format(self, record: logging.LogRecord) -> str:
        stamp = datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")
        data: dict[str, Any] = {
            "ts": stamp.replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
        }
        fields: dict[str, Any] | None = getattr(record, "lw", None)
        if fields is None:
            data["event"] = "log"
        else:
            data.update((k, v) for k, v in fields.items() if v is not None and k != "style")
        data["message"] = record.getMessage()
        if record.exc_info:
            data["exception"] = self.formatException(record.exc_info)
        return _ENCODER.encode(data)


class LoopwrightHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler the environment switch attaches: writes to ``stream``, or to whatever
    ``sys.stderr`` is when a record is written (tests and wrappers replace it)."""

    def __init__(self, stream: IO[str] | None = None) -> None:
        logging.Handler.__init__(self)
        self._fixed: IO[str] | None = stream
        self._color_for: tuple[int, bool] | None = None

    @property
    def stream(self) -> IO[str]:
        return self._fixed if self._fixed is not None else sys.stderr

    @stream.setter
    def stream(self, value: IO[str] | None) -> None:
        self._fixed = value

    def format(self, record: logging.LogRecord) -> str:
        formatter = self.formatter
        if isinstance(formatter, ReadableFormatter):
            formatter.color = self._use_color()
        return super().format(record)

    def _use_color(self) -> bool:
        stream = self.stream
        cached = self._color_for
        if cached is not None and cached[0] == id(stream):
            return cached[1]
        if os.environ.get("NO_COLOR"):
            color = False
        elif os.environ.get("FORCE_COLOR"):
            color = True
        else:
            try:
                color = stream.isatty()
            except (AttributeError, ValueError):
                color = False
        self._color_for = (id(stream), color)
        return color


def configure_logging(
    log_format: LogFormat = "text", *, stream: IO[str] | None = None, verbose: bool = True
) -> LoopwrightHandler:
    """Attach loopwright's handler to the ``loopwright`` logger, once per process.

    Called again (another agent, another format), it reuses the handler and switches its
    format. ``verbose`` also shows debug records (model calls as they start...).
    """
    root = logging.getLogger(ROOT_LOGGER)
    handler = next((h for h in root.handlers if isinstance(h, LoopwrightHandler)), None)
    if handler is None:
        handler = LoopwrightHandler(stream)
        root.addHandler(handler)
    elif stream is not None:
        handler.stream = stream
    formatter = JsonFormatter() if log_format == "json" else ReadableFormatter()
    handler.setFormatter(formatter)
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    root.propagate = False
    return handler


def reset_logging() -> None:
    """Remove loopwright's handler and give the ``loopwright`` logger back its defaults."""
    root = logging.getLogger(ROOT_LOGGER)
    for handler in [h for h in root.handlers if isinstance(h, LoopwrightHandler)]:
        root.removeHandler(handler)
    root.setLevel(logging.NOTSET)
    root.propagate = True


# --- the instrument -----------------------------------------------------------------------


@dataclass(slots=True, eq=False)
class _RunLog:
    started: float
    prompted: bool = False
    #: error messages already logged in this run (a failure is said once, not thrice)
    said: set[str] = field(default_factory=set)


class LogInstrument(Instrument):
    """Logs each step of every run (see the module's docstring for the two formats).

    ``configure=False`` leaves handlers alone: records go to the ``loopwright.run`` logger
    and the application's logging set-up decides where they end up.
    """

    def __init__(
        self,
        log_format: LogFormat = "text",
        *,
        stream: IO[str] | None = None,
        configure: bool = True,
        verbose: bool | None = None,
    ) -> None:
        if log_format not in ("text", "json"):
            raise ValueError(f"unknown log format {log_format!r}; use 'text' or 'json'")
        self.log_format: LogFormat = log_format
        self.text = log_format == "text"
        if configure:
            configure_logging(
                log_format, stream=stream, verbose=self.text if verbose is None else verbose
            )
        self.logger = logging.getLogger(RUN_LOGGER)

    def _emit(self, level: int, run: RunContext, event: str, message: str, **fields: Any) -> None:
        logger = self.logger
        if not logger.isEnabledFor(level):
            return
        data: dict[str, Any] = {
            "event": event,
            "session_id": run.session.id,
            "run_id": run.id,
            "agent": run.path,
        }
        data.update(fields)
        logger.log(level, message, extra={"lw": data})

    def run_started(self, run: RunContext) -> None:
        run.data[self] = _RunLog(time.perf_counter())
        model = run.agent.model.name
        parent = run.parent.id if run.parent is not None else None
        self._emit(
            logging.INFO,
            run,
            "run_started",
            f"▶ run started (model {model})",
            model=model,
            parent_run_id=parent,
        )

    def model_call_started(self, run: RunContext, request: ModelRequest) -> None:
        state = run.data.get(self)
        if self.text and isinstance(state, _RunLog) and not state.prompted:
            # the prompt is in the session only once the run has begun: show it here
            state.prompted = True
            last = request.messages[-1] if request.messages else None
            if last is not None and last.role == "user" and last.text:
                text = last.text
                redactor = _redactor_of(run)
                if redactor is not None:
                    text = redactor.redact(text)
                self._emit(logging.INFO, run, "prompt", f'» prompt: "{shorten(text, 100)}"')
        model = run.agent.model.name
        self._emit(
            logging.DEBUG,
            run,
            "model_call_started",
            f"· calling {model}: {len(request.messages)} messages, "
            f"~{request.estimated_input_tokens:,} tokens",
            model=model,
        )

    def model_call_finished(
        self,
        run: RunContext,
        request: ModelRequest,
        response: ModelResponse | None,
        error: BaseException | None,
        duration_s: float,
    ) -> None:
        model = run.agent.model.name
        ms = round(duration_s * 1000, 1)
        if response is None:
            if error is not None and not isinstance(error, Exception):
                self._emit(
                    logging.INFO,
                    run,
                    "model_call",
                    f"· {model} call stopped after {ms:.0f} ms",
                    model=model,
                    duration_ms=ms,
                    success=False,
                    error="cancelled",
                )
                return
            why = f"{type(error).__name__}: {error}" if error is not None else "no response"
            state = run.data.get(self)
            if error is not None and isinstance(state, _RunLog):
                state.said.add(str(error))  # the run's error event and end say it again
            self._emit(
                logging.WARNING,
                run,
                "model_call",
                f"✗ {model} failed after {ms:.0f} ms: {shorten(why, 200)}",
                model=model,
                duration_ms=ms,
                success=False,
                error=shorten(why, 500),
            )
            return
        usage = response.usage
        cost = usage.cost_usd
        pricing = run.agent.model.pricing
        if cost == 0.0 and pricing is not None:
            cost = pricing.cost(usage)  # the loop prices the call just after this hook
        tokens = f"{usage.input_tokens:,} in / {usage.output_tokens:,} out"
        if usage.cache_read_tokens or usage.cache_write_tokens:
            tokens += (
                f" (cache {usage.cache_read_tokens:,} read / {usage.cache_write_tokens:,} written)"
            )
        self._emit(
            logging.INFO,
            run,
            "model_call",
            f"◆ {model} {tokens}, ${cost:.4f}, {ms:.0f} ms → {response.stop_reason}",
            model=model,
            duration_ms=ms,
            success=True,
            stop_reason=response.stop_reason,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            cost_usd=round(cost, 8),
        )

    def tool_call_started(self, run: RunContext, call: ToolUseBlock) -> None:
        level = logging.INFO if self.text else logging.DEBUG
        summary = ""
        if self.text and self.logger.isEnabledFor(level):
            tool_input = call.input
            redactor = _redactor_of(run)
            if redactor is not None:  # before shortening: a secret cut in two is still found
                tool_input = redactor.redact_value(tool_input)
            summary = summarise_input(tool_input)
        self._emit(
            level,
            run,
            "tool_call_started",
            f"→ {call.name} {summary}".rstrip(),
            tool_name=call.name,
            tool_call_id=call.id,
            style="",
        )

    def tool_call_finished(
        self, run: RunContext, call: ToolUseBlock, result: dict[str, Any], duration_s: float
    ) -> None:
        ms = round(duration_s * 1000, 1)
        if call_cancelled():  # stopped with its run: not a failure of the tool's
            self._emit(
                logging.INFO,
                run,
                "tool_call",
                f"· {call.name} stopped after {ms:.0f} ms",
                tool_name=call.name,
                tool_call_id=call.id,
                duration_ms=ms,
                success=False,
                error="cancelled",
            )
            return
        text = result_text(result)
        failed = bool(result.get("is_error"))
        fields: dict[str, Any] = {
            "tool_name": call.name,
            "tool_call_id": call.id,
            "duration_ms": ms,
            "success": not failed,
            "output_chars": len(text),
        }
        metadata = result.get("metadata")
        returned = ""
        if not failed and type(metadata) is dict:
            returned = _query_fields(metadata, fields)
        if failed:
            fields["error"] = first_line(text, 200)
            message = f"✗ {call.name} failed after {ms:.0f} ms: {first_line(text, 120)}"
            self._emit(logging.WARNING, run, "tool_call", message, style="error", **fields)
            return
        message = f"✓ {call.name} {ms:.0f} ms, {returned}{len(text):,} chars"
        if self.text:
            message += f": {first_line(text, 80)}"
        self._emit(logging.INFO, run, "tool_call", message, style="ok", **fields)

    def event(self, run: RunContext, event: Event) -> None:
        if isinstance(event, Error):
            state = run.data.get(self)
            said = state.said if isinstance(state, _RunLog) else None
            if not event.retrying and said is not None:
                if event.message in said:
                    return  # the failed model call's line said it
                said.add(event.message)
            if event.retrying:
                self._emit(
                    logging.WARNING,
                    run,
                    "retry",
                    f"↻ retrying: {shorten(event.message, 200)}",
                    error=shorten(event.message, 500),
                )
            else:
                self._emit(
                    logging.ERROR,
                    run,
                    "error",
                    f"✗ error: {shorten(event.message, 300)}",
                    error=shorten(event.message, 500),
                    retryable=event.retryable,
                )
        elif isinstance(event, ApprovalRequest):
            self._emit(
                logging.INFO,
                run,
                "approval_request",
                f"? {event.name} waits for approval",
                tool_name=event.name,
                tool_call_id=event.tool_call_id,
                style="warning",
            )

    def run_finished(self, run: RunContext, done: Done) -> None:
        state = run.data.pop(self, None)
        seconds = time.perf_counter() - state.started if isinstance(state, _RunLog) else 0.0
        usage = done.usage
        parts = [
            f"■ done {done.stop_reason}",
            _count(usage.model_calls, "model call"),
            _count(usage.tool_calls, "tool call")
            + (f" ({usage.tool_errors} failed)" if usage.tool_errors else ""),
            f"{usage.total_tokens:,} tokens",
            f"${usage.cost_usd:.4f}",
            f"{seconds:.1f} s",
        ]
        message = " · ".join(parts)
        said = state.said if isinstance(state, _RunLog) else set()
        if done.detail and not (self.text and done.detail in said):
            message += f": {shorten(done.detail, 200)}"
        level = logging.ERROR if done.stop_reason == "error" else logging.INFO
        style = "" if level == logging.ERROR else "bold"
        self._emit(
            level,
            run,
            "run_finished",
            message,
            style=style,
            stop_reason=done.stop_reason,
            duration_ms=round(seconds * 1000, 1),
            success=done.stop_reason == "end_turn",
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_read_tokens=usage.cache_read_tokens,
            cache_write_tokens=usage.cache_write_tokens,
            cost_usd=round(usage.cost_usd, 8),
            model_calls=usage.model_calls,
            tool_calls=usage.tool_calls,
            tool_errors=usage.tool_errors,
        )


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}{'' if n == 1 else 's'}"


def _redactor_of(run: RunContext) -> Redactor | None:
    """The redactor of the run's agent's policy (``None`` when it does not redact)."""
    redactor = getattr(getattr(run.agent, "policy", None), "redactor", None)
    return redactor if hasattr(redactor, "redact_value") else None


def _query_fields(metadata: dict[str, Any], fields: dict[str, Any]) -> str:
    """Add what a query tool's call returned (from its result's metadata) to ``fields``, and
    say it for the readable line (``"1,204 rows, "``; ``""`` for other tools)."""
    rows = metadata.get("row_count")
    if isinstance(rows, int):  # SQL
        fields["rows"] = rows
        said = f"{rows:,} row{'' if rows == 1 else 's'}"
        if metadata.get("truncated"):
            fields["truncated"] = True
            said += " (cut at the row cap)"
        scanned = metadata.get("bytes_scanned")
        if isinstance(scanned, int):
            fields["bytes_scanned"] = scanned
            said += f", {scanned:,} bytes scanned"
        return said + ", "
    patients = metadata.get("patients")
    if isinstance(patients, int):  # DefineCohort: its members, one row per patient
        fields["rows"] = patients
        claims = metadata.get("claims")
        if isinstance(claims, int):
            fields["claims"] = claims
        return f"{patients:,} patient{'' if patients == 1 else 's'}, "
    return ""


def instrument_from_env() -> LogInstrument | None:
    """``LOOPWRIGHT_LOG=json`` → JSON lines; ``DEBUG=1`` or ``LOOPWRIGHT_LOG=text`` →
    readable lines; otherwise ``None`` (off)."""
    choice = os.environ.get("LOOPWRIGHT_LOG", "").strip().lower()
    debug = switch(os.environ.get("DEBUG")) is True
    if choice == "json":
        return LogInstrument("json", verbose=debug)
    if choice in ("text", "debug", "1", "true", "on", "yes"):
        return LogInstrument("text")
    if choice not in ("", "0", "off", "false", "no", "none"):
        logging.getLogger("loopwright.observability").warning(
            "LOOPWRIGHT_LOG=%s is not a log format; set it to 'json' (JSON lines) or 'text' "
            "(readable lines), or unset it",
            choice,
        )
    return LogInstrument("text") if debug else None
