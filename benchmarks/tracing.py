"""Per-step cost of observability: tracing off, on with an in-memory exporter, on with OTLP,
beside the OpenTelemetry SDK's own cost of the same spans.

The agent is the one of ``overhead.py``: a ``ScriptedModel`` built from a function asks for one
call of a trivial ``noop`` tool per turn until the run has done N steps (default 100), then
answers "done". One step is one model turn plus one tool call, so a traced step makes two
spans (``chat`` and ``execute_tool``) and each run one more (``invoke_agent``).

Configurations, each run alternately with the others so all see the same machine:

- ``off``: no instrument (what an agent built without ``DEBUG``/``OTEL_*``... gets);
- ``hooks``: an instrument whose hooks do nothing: what the loop itself spends calling
  instruments (``agent.py``/``instrument.py``, not tracing);
- ``sdk spans``: the floor of tracing: an instrument that starts and ends the same spans in
  the same hooks (each child under the run's span, passed explicitly) with no attributes, on a
  provider like ``in-memory``'s. No tracing code can make those spans for less;
- ``sdk +attrs``: the same spans carrying the same attributes as ``in-memory`` (taken from a
  traced run beforehand and checked to match), as ready-made dicts: what the SDK spends
  recording them. ``in-memory`` minus this is the cost of ``tracing.py`` itself;
- ``in-memory``: :class:`TracingInstrument` on an SDK ``TracerProvider`` with a
  ``SimpleSpanProcessor`` into an ``InMemorySpanExporter`` (span creation and recording);
- ``otlp``: the provider ``OTEL_EXPORTER_OTLP_ENDPOINT`` builds (``BatchSpanProcessor`` and
  the OTLP/HTTP exporter) sending to a small HTTP receiver on 127.0.0.1 that answers every
  ``POST /v1/traces`` with 200; the exporter's thread works while the loop runs; the spans are
  flushed after each run and counted, outside the clock;
- ``stats``: :class:`StatsRecorder` (``LOOPWRIGHT_STATS=1``), for reference;
- ``json logs``: :class:`LogInstrument` in JSON mode writing to ``/dev/null``, for reference.

Each configuration is measured with a zero-latency model (the loop's own cost: the harshest
ratio) and with a model that takes 1 ms per turn (still far faster than any hosted model).
The figure is the wall time of a whole run divided by its steps (median of several runs);
overhead is the difference to ``off`` at the same model latency. With the zero-latency model
the in-memory overhead is split into its parts (differences of the medians above): the loop's
hooks, the SDK's spans, the SDK's attributes, and ours. The SDK's cost of two bare spans in a
tight loop (no processor, caches warm) is printed too. The in-loop ``sdk spans`` figure is
well above it: the in-memory processor's export is in it, and (mostly, as far as we can tell)
the loop's own work between the hooks evicts the SDK's code and data from the CPU's caches;
a tight loop with unrelated work between its spans slows down the same way.
The target (under 10% at 100 steps) is shown as PASS/FAIL for a reader, never enforced.

Run ``python benchmarks/tracing.py`` (``--quick`` for a CI smoke run, ``--json`` for
machine-readable output, ``--steps N``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from bench_table import render_table
from loopwright import Agent, BaseTool, MemoryStore, ModelRequest, ScriptedModel, ToolResult, call
from loopwright.events import Done
from loopwright.instrument import Instrument
from loopwright.models.scripted import ScriptedToolCall
from loopwright.observability.logs import LogInstrument, reset_logging
from loopwright.observability.stats import StatsRecorder
from loopwright.observability.tracing import TracingInstrument, tracer_provider_from_env

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.trace import Span

    from loopwright.messages import ToolUseBlock
    from loopwright.models.base import ModelResponse
    from loopwright.run_context import RunContext

TARGET_OVERHEAD = 0.10
WARMUP_RUNS = 2
CONFIGS = ("off", "hooks", "sdk spans", "sdk +attrs", "in-memory", "otlp", "stats", "json logs")
#: Configurations that are yardsticks, not something a user runs: no PASS/FAIL.
REFERENCES = frozenset({"off", "hooks", "sdk spans", "sdk +attrs"})
#: Attributes that TracingInstrument adds when a call or run ends (the rest it passes to
#: ``start_span``); the floor adds them at the same moments. Time to first chunk is left out:
#: only the final answer streams text, once per run.
END_KEYS = frozenset(
    {
        "gen_ai.usage.input_tokens",
        "gen_ai.usage.output_tokens",
        "loopwright.usage.cost_usd",
        "gen_ai.response.finish_reasons",
        "loopwright.tool.output_chars",
        "loopwright.stop_reason",
        "loopwright.usage.model_calls",
        "loopwright.usage.tool_calls",
        "loopwright.usage.tool_errors",
    }
)
SKIPPED_KEYS = frozenset({"gen_ai.response.time_to_first_chunk"})


class NoopTool(BaseTool):
    """A tool that does nothing, so the figures are the framework's."""

    @property
    def name(self) -> str:
        return "noop"

    @property
    def schema(self) -> dict[str, Any]:
        return {
            "name": "noop",
            "description": "Do nothing.",
            "input_schema": {
                "type": "object",
                "properties": {"x": {"type": "integer"}},
                "required": ["x"],
            },
        }

    async def execute(self, input: dict[str, Any]) -> ToolResult:
        return {"content": "ok", "is_error": False}


def script_for(steps: int, latency_s: float) -> Callable[[ModelRequest], Any]:
    """Call ``noop`` until ``steps`` steps are done, then answer; ``latency_s`` per turn."""

    async def script(request: ModelRequest) -> ScriptedToolCall | str:
        if latency_s:
            await asyncio.sleep(latency_s)
        done = (len(request.messages) - 1) // 2
        return call("noop", x=done) if done < steps else "done"

    return script


# --- an OTLP/HTTP receiver on 127.0.0.1 -----------------------------------------------------


@dataclass
class Receiver:
    url: str
    requests: int = 0
    bytes: int = 0


@contextmanager
def otlp_receiver() -> Iterator[Receiver]:
    """Accept ``POST /v1/traces`` on a free port of 127.0.0.1 and answer 200 (an empty
    ``ExportTraceServiceResponse`` is zero bytes of protobuf)."""
    receiver = Receiver("")
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            size = int(self.headers.get("Content-Length", "0"))
            self.rfile.read(size)
            with lock:
                receiver.requests += 1
                receiver.bytes += size
            self.send_response(200)
            self.send_header("Content-Type", "application/x-protobuf")
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --- the SDK's floor: the same spans without loopwright's tracing code ----------------------


@dataclass(frozen=True)
class Shape:
    """One kind of span: its name, kind, and the attributes set when it starts and ends."""

    name: str
    kind: SpanKind
    start: dict[str, Any] = field(default_factory=dict)
    end: dict[str, Any] = field(default_factory=dict)

    def bare(self) -> Shape:
        return Shape(self.name, self.kind)


@dataclass(frozen=True)
class Shapes:
    run: Shape
    chat: Shape
    tool: Shape

    def bare(self) -> Shapes:
        return Shapes(self.run.bare(), self.chat.bare(), self.tool.bare())


def shape_of(span: ReadableSpan) -> Shape:
    attributes = {k: v for k, v in (span.attributes or {}).items() if k not in SKIPPED_KEYS}
    return Shape(
        span.name,
        span.kind,
        {k: v for k, v in attributes.items() if k not in END_KEYS},
        {k: v for k, v in attributes.items() if k in END_KEYS},
    )


def first_of(spans: tuple[ReadableSpan, ...], prefix: str) -> ReadableSpan:
    return next(s for s in spans if s.name.startswith(prefix))


def shapes_of(spans: tuple[ReadableSpan, ...]) -> Shapes:
    """The spans of one traced run, by kind (the first of each: a step's ``chat``)."""
    return Shapes(
        shape_of(first_of(spans, "invoke_agent ")),
        shape_of(first_of(spans, "chat ")),
        shape_of(first_of(spans, "execute_tool ")),
    )


class SdkFloor(Instrument):
    """Starts and ends the spans of ``shapes`` in the hooks TracingInstrument uses, with
    ready-made attribute dicts and nothing else (one run at a time): what the SDK alone
    spends on the spans of a traced step."""

    def __init__(self, provider: TracerProvider, shapes: Shapes) -> None:
        self.tracer = provider.get_tracer("floor")
        self.shapes = shapes
        self.root: Span | None = None
        self.context: Context | None = None
        self.chat: Span | None = None
        self.tool: Span | None = None

    def _start(self, shape: Shape, context: Context | None) -> Span:
        return self.tracer.start_span(
            shape.name, context=context, kind=shape.kind, attributes=shape.start or None
        )

    @staticmethod
    def _end(span: Span | None, shape: Shape) -> None:
        if span is not None:
            if shape.end:
                span.set_attributes(shape.end)
            span.end()

    def run_started(self, run: RunContext) -> None:
        self.root = self._start(self.shapes.run, None)
        self.context = trace.set_span_in_context(self.root)

    def run_finished(self, run: RunContext, done: Done) -> None:
        self._end(self.root, self.shapes.run)

    def model_call_started(self, run: RunContext, request: ModelRequest) -> None:
        self.chat = self._start(self.shapes.chat, self.context)

    def model_call_finished(
        self,
        run: RunContext,
        request: ModelRequest,
        response: ModelResponse | None,
        error: BaseException | None,
        duration_s: float,
    ) -> None:
        self._end(self.chat, self.shapes.chat)

    def tool_call_started(self, run: RunContext, call: ToolUseBlock) -> None:
        self.tool = self._start(self.shapes.tool, self.context)

    def tool_call_finished(
        self, run: RunContext, call: ToolUseBlock, result: dict[str, Any], duration_s: float
    ) -> None:
        self._end(self.tool, self.shapes.tool)


# --- measuring ----------------------------------------------------------------------------


def make_agent(steps: int, latency_ms: float, root: Path, instruments: list[Instrument]) -> Agent:
    return Agent(
        ScriptedModel(script_for(steps, latency_ms / 1000), record_requests=False),
        tools=[NoopTool],
        store=MemoryStore(),
        workspace_root=str(root),
        max_turns=steps + 1,
        instruments=instruments,
    )


def in_memory_provider() -> tuple[TracerProvider, InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider, exporter


async def traced_shapes(steps: int, root: Path) -> Shapes:
    """The spans TracingInstrument makes for the benchmark's agent (one run, not timed)."""
    provider, exporter = in_memory_provider()
    try:
        await one_run(make_agent(steps, 0.0, root, [TracingInstrument(provider)]), steps)
        return shapes_of(exporter.get_finished_spans())
    finally:
        provider.shutdown()


@dataclass
class Setup:
    name: str
    instruments: list[Instrument]
    after_run: Callable[[], int] | None = None  # flushes, returns spans seen (outside clock)
    close: Callable[[], None] | None = None
    exporter: InMemorySpanExporter | None = None  # spans of in-memory setups
    last_spans: tuple[ReadableSpan, ...] = ()  # the last run's spans (in-memory setups)


def make_setups(receiver: Receiver, shapes: Shapes) -> list[Setup]:
    def in_memory(name: str, instrument: Callable[[TracerProvider], Instrument]) -> Setup:
        provider, exporter = in_memory_provider()

        def drain() -> int:
            count = len(exporter.get_finished_spans())
            if count:
                setup.last_spans = exporter.get_finished_spans()
            exporter.clear()
            return count

        setup = Setup(name, [instrument(provider)], drain, provider.shutdown, exporter)
        return setup

    otlp = tracer_provider_from_env({"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url})
    assert otlp is not None

    def flush_otlp() -> int:
        otlp.force_flush()
        return receiver.requests

    devnull = open(os.devnull, "w")  # noqa: SIM115 - closed by the setup's close()
    logs = LogInstrument("json", stream=devnull)

    def close_logs() -> None:
        reset_logging()
        devnull.close()

    return [
        Setup("off", []),
        Setup("hooks", [Instrument()]),
        in_memory("sdk spans", lambda p: SdkFloor(p, shapes.bare())),
        in_memory("sdk +attrs", lambda p: SdkFloor(p, shapes)),
        in_memory("in-memory", TracingInstrument),
        Setup("otlp", [TracingInstrument(otlp)], flush_otlp, otlp.shutdown),
        Setup("stats", [StatsRecorder(conversation=False)]),
        Setup("json logs", [logs], close=close_logs),
    ]


def check_floor(setups: list[Setup]) -> None:
    """The floor made the same spans, with the same attribute names, as TracingInstrument
    (so that ``in-memory`` minus ``sdk +attrs`` is the cost of our code and nothing else)."""
    spans = {s.name: s.last_spans for s in setups if s.exporter is not None}

    def names(found: tuple[ReadableSpan, ...], attributes: bool) -> list[tuple[str, ...]]:
        return sorted(
            (
                s.name,
                *(sorted(set(s.attributes or {}) - SKIPPED_KEYS) if attributes else ()),
            )
            for s in found
        )

    traced = spans["in-memory"]
    if not traced or names(spans["sdk +attrs"], True) != names(traced, True):
        raise RuntimeError("the 'sdk +attrs' floor no longer makes the spans tracing makes")
    if names(spans["sdk spans"], False) != names(traced, False):
        raise RuntimeError("the 'sdk spans' floor no longer makes the spans tracing makes")


async def one_run(agent: Agent, steps: int) -> float:
    session = agent.new_session()
    started = time.perf_counter()
    last = None
    async for event in agent.run("go", session):
        last = event
    elapsed = time.perf_counter() - started
    if not isinstance(last, Done) or last.usage.tool_calls != steps:
        raise RuntimeError(f"the benchmark run did not finish normally: {last!r}")
    agent.store.delete(session.id)
    return elapsed


@dataclass
class Result:
    config: str
    latency_ms: float
    steps: int
    runs: int
    us_per_step: float
    best_us_per_step: float
    overhead_us: float = 0.0
    overhead: float = 0.0
    best_overhead: float = 0.0
    spans_seen: int | None = None

    @property
    def passed(self) -> bool | None:
        return None if self.config in REFERENCES else self.overhead < TARGET_OVERHEAD


@dataclass
class Split:
    """Where the in-memory tracing overhead per step goes (differences, us)."""

    hooks_us: float  # the loop calling instruments: hooks - off
    sdk_spans_us: float  # starting, ending and exporting the spans: sdk spans - hooks
    sdk_attributes_us: float  # the SDK recording the attributes: sdk +attrs - sdk spans
    ours_us: float  # tracing.py: in-memory - sdk +attrs
    total_us: float  # in-memory - off
    total: float  # the same, as a fraction of off

    @classmethod
    def of(cls, us: dict[str, float]) -> Split:
        return cls(
            us["hooks"] - us["off"],
            us["sdk spans"] - us["hooks"],
            us["sdk +attrs"] - us["sdk spans"],
            us["in-memory"] - us["sdk +attrs"],
            us["in-memory"] - us["off"],
            (us["in-memory"] - us["off"]) / us["off"],
        )


@dataclass
class Breakdown:
    """The split of the medians, and of the fastest runs (which a busy machine, whose bursts
    of other work land on some runs and not others, disturbs least)."""

    latency_ms: float
    median: Split
    best: Split

    @classmethod
    def of(cls, results: list[Result]) -> Breakdown:
        return cls(
            results[0].latency_ms,
            Split.of({r.config: r.us_per_step for r in results}),
            Split.of({r.config: r.best_us_per_step for r in results}),
        )


async def measure(
    steps: int, runs: int, latency_ms: float, root: Path, shapes: Shapes
) -> list[Result]:
    with otlp_receiver() as receiver:
        setups = make_setups(receiver, shapes)
        agents = {
            s.name: make_agent(steps, latency_ms, root / s.name.replace(" ", "-"), s.instruments)
            for s in setups
        }
        timings: dict[str, list[float]] = {s.name: [] for s in setups}
        seen: dict[str, int] = {}
        try:
            for index in range(WARMUP_RUNS + runs):
                for setup in setups:
                    elapsed = await one_run(agents[setup.name], steps)
                    if setup.after_run is not None:
                        seen[setup.name] = setup.after_run()
                    if index >= WARMUP_RUNS:
                        timings[setup.name].append(elapsed / steps * 1e6)
            check_floor(setups)
        finally:
            for setup in setups:
                if setup.close is not None:
                    setup.close()
    base = statistics.median(timings["off"])
    best_base = min(timings["off"])
    results: list[Result] = []
    for setup in setups:
        us = statistics.median(timings[setup.name])
        best = min(timings[setup.name])
        results.append(
            Result(
                setup.name,
                latency_ms,
                steps,
                runs,
                us,
                best,
                us - base,
                (us - base) / base,
                (best - best_base) / best_base,
                seen.get(setup.name),
            )
        )
    return results


def sdk_floor_us(count: int = 20_000) -> float:
    """Microseconds to start and end two bare spans in a tight loop (no processor, caches
    warm): the SDK's own cost of a traced step, at its cheapest."""
    tracer = TracerProvider().get_tracer("floor")
    best = float("inf")
    for _ in range(5):
        started = time.perf_counter()
        for _ in range(count):
            tracer.start_span("chat").end()
            tracer.start_span("execute_tool").end()
        best = min(best, (time.perf_counter() - started) / count * 1e6)
    return best


def render(results: list[Result]) -> str:
    header = (
        "model latency",
        "config",
        "us/step",
        "best",
        "overhead/step",
        "overhead",
        "best-of",
        "target",
    )
    rows = [header]
    for r in results:
        off = r.config == "off"
        rows.append(
            (
                f"{r.latency_ms:g} ms",
                r.config,
                f"{r.us_per_step:,.1f}",
                f"{r.best_us_per_step:,.1f}",
                "-" if off else f"{r.overhead_us:+,.1f} us",
                "-" if off else f"{r.overhead * 100:+.1f}%",
                "-" if off else f"{r.best_overhead * 100:+.1f}%",
                "-"
                if r.passed is None
                else f"{'PASS' if r.passed else 'FAIL'} (< {TARGET_OVERHEAD:.0%})",
            )
        )
    return render_table(rows[0], rows[1:], left={1, 7})


def render_breakdown(parts: Breakdown, floor_us: float) -> str:
    rows = [
        ("the loop calling its instruments (agent.py: 'hooks')", "hooks_us"),
        ("SDK: starting, ending, exporting the spans ('sdk spans')", "sdk_spans_us"),
        ("SDK: recording their attributes ('sdk +attrs')", "sdk_attributes_us"),
        ("loopwright's tracing code (tracing.py: 'in-memory')", "ours_us"),
        ("in all", "total_us"),
    ]
    width = max(len(label) for label, _ in rows)
    median, best = parts.median, parts.best
    lines = [
        f"where in-memory tracing's overhead goes with a {parts.latency_ms:g} ms model "
        "(differences of the medians and of the fastest runs; a full run on a quiet machine "
        "gets each to about a microsecond):",
        f"  {''.ljust(width)}  {'median':>9}  {'best':>9}",
    ]
    lines += [
        f"  {label.ljust(width)}  {getattr(median, key):+6.1f} us  {getattr(best, key):+6.1f} us"
        for label, key in rows
    ]
    lines.append(f"  {''.ljust(width)}  {median.total * 100:+7.1f}%  {best.total * 100:+7.1f}%")
    lines.append(
        f"  (the SDK's two bare spans in a tight loop, no processor, caches warm: "
        f"{floor_us:.1f} us)"
    )
    return "\n".join(lines)


#: A median this far above its fastest run says other work shared the machine.
BUSY_SPREAD = 1.15


def busy_note(results: list[Result]) -> str:
    """A warning when the machine was busy during the zero-latency runs ("" when quiet)."""
    spreads = {r.config: r.us_per_step / r.best_us_per_step for r in results if r.latency_ms == 0.0}
    config, spread = max(spreads.items(), key=lambda item: item[1])
    if spread <= BUSY_SPREAD:
        return ""
    return (
        f"note: the machine was busy during this run ('{config}' ran {spread - 1:.0%} slower in "
        "its median run than in its fastest): the medians are inflated and their differences "
        "unreliable; trust the 'best' column, or run again on a quiet machine"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer runs (CI smoke run)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--steps", type=int, default=100, help="steps per run (default 100)")
    args = parser.parse_args(argv)
    plan = {0.0: 5, 1.0: 2} if args.quick else {0.0: 40, 1.0: 8}
    started = time.perf_counter()
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="loopwright-tracing-bench-") as tmp:
        shapes = asyncio.run(traced_shapes(args.steps, Path(tmp) / "shapes"))
        for latency_ms, runs in plan.items():
            results += asyncio.run(measure(args.steps, runs, latency_ms, Path(tmp), shapes))
    floor = sdk_floor_us()
    parts = Breakdown.of([r for r in results if r.latency_ms == 0.0])
    elapsed = time.perf_counter() - started
    if args.json:
        report = {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "quick": args.quick,
            "steps": args.steps,
            "target_overhead": TARGET_OVERHEAD,
            "results": [{**asdict(r), "passed": r.passed} for r in results],
            "breakdown": asdict(parts),
            "busy": busy_note(results) or None,
            "sdk_floor_us_per_step": floor,
            "elapsed_s": elapsed,
        }
        print(json.dumps(report, indent=2))
        return 0
    print(
        f"loopwright observability overhead - Python {platform.python_version()}, "
        f"{platform.machine()}, {args.steps} steps per run, "
        f"{'quick' if args.quick else 'full'} run"
    )
    print(
        "per step: median of "
        + ", ".join(f"{runs} runs at {lat:g} ms model latency" for lat, runs in plan.items())
        + "; configurations alternate run by run. us/step is the median, best the fastest "
        "run; overhead compares medians (PASS/FAIL), best-of the fastest runs. hooks, sdk "
        "spans and sdk +attrs are yardsticks (see the docstring), not configurations\n"
    )
    print(render(results))
    print()
    print(render_breakdown(parts, floor))
    busy = busy_note(results)
    if busy:
        print(busy)
    spans = {r.config: r.spans_seen for r in results if r.spans_seen is not None}
    print(
        f"\nlast run: the in-memory exporter held {spans.get('in-memory', 0)} spans "
        f"({2 * args.steps + 2} expected: a chat and an execute_tool span per step, the final "
        f"chat, the invoke_agent); the OTLP receiver had {spans.get('otlp', 0)} export "
        "requests in all"
    )
    print(f"(took {elapsed:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
