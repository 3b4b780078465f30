"""Per-step cost of observability: tracing off, on with an in-memory exporter, on with OTLP.

The agent is the one of ``overhead.py``: a ``ScriptedModel`` built from a function asks for one
call of a trivial ``noop`` tool per turn until the run has done N steps (default 100), then
answers "done". One step is one model turn plus one tool call, so a traced step makes two
spans (``chat`` and ``execute_tool``) and each run one more (``invoke_agent``).

Configurations, each run alternately with the others so all see the same machine:

- ``off``: no instrument (what an agent built without ``DEBUG``/``OTEL_*``... gets);
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
overhead is the difference to ``off`` at the same model latency. The target (under 10% at
100 steps) is shown as PASS/FAIL for a reader, never enforced.

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
from dataclasses import asdict, dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from loopwright import Agent, BaseTool, MemoryStore, ModelRequest, ScriptedModel, ToolResult, call
from loopwright.events import Done
from loopwright.instrument import Instrument
from loopwright.models.scripted import ScriptedToolCall
from loopwright.observability.logs import LogInstrument, reset_logging
from loopwright.observability.stats import StatsRecorder
from loopwright.observability.tracing import TracingInstrument, tracer_provider_from_env

TARGET_OVERHEAD = 0.10
WARMUP_RUNS = 2
CONFIGS = ("off", "in-memory", "otlp", "stats", "json logs")


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


# --- measuring ----------------------------------------------------------------------------


@dataclass
class Setup:
    name: str
    instruments: list[Instrument]
    after_run: Callable[[], int] | None = None  # flushes, returns spans seen (outside clock)
    close: Callable[[], None] | None = None


def make_setups(receiver: Receiver) -> list[Setup]:
    memory = InMemorySpanExporter()
    in_memory = TracerProvider()
    in_memory.add_span_processor(SimpleSpanProcessor(memory))

    def drain_memory() -> int:
        count = len(memory.get_finished_spans())
        memory.clear()
        return count

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
        Setup("in-memory", [TracingInstrument(in_memory)], drain_memory, in_memory.shutdown),
        Setup("otlp", [TracingInstrument(otlp)], flush_otlp, otlp.shutdown),
        Setup("stats", [StatsRecorder(conversation=False)]),
        Setup("json logs", [logs], close=close_logs),
    ]


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
        return None if self.config == "off" else self.overhead < TARGET_OVERHEAD


async def measure(steps: int, runs: int, latency_ms: float, root: Path) -> list[Result]:
    with otlp_receiver() as receiver:
        setups = make_setups(receiver)
        agents = {
            s.name: Agent(
                ScriptedModel(script_for(steps, latency_ms / 1000), record_requests=False),
                tools=[NoopTool],
                store=MemoryStore(),
                workspace_root=str(root / s.name.replace(" ", "-")),
                max_turns=steps + 1,
                instruments=s.instruments,
            )
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
    """Microseconds to start and end two bare spans: the SDK's own cost of a traced step."""
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
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = []
    for index, row in enumerate(rows):
        cells = [
            row[i].ljust(widths[i]) if i in (1, 7) else row[i].rjust(widths[i])
            for i in range(len(header))
        ]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="fewer runs (CI smoke run)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--steps", type=int, default=100, help="steps per run (default 100)")
    args = parser.parse_args(argv)
    plan = {0.0: 5, 1.0: 2} if args.quick else {0.0: 30, 1.0: 6}
    started = time.perf_counter()
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="loopwright-tracing-bench-") as tmp:
        for latency_ms, runs in plan.items():
            results += asyncio.run(measure(args.steps, runs, latency_ms, Path(tmp)))
    floor = sdk_floor_us()
    elapsed = time.perf_counter() - started
    if args.json:
        report = {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "quick": args.quick,
            "steps": args.steps,
            "target_overhead": TARGET_OVERHEAD,
            "results": [{**asdict(r), "passed": r.passed} for r in results],
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
        "run; overhead compares medians (PASS/FAIL), best-of the fastest runs\n"
    )
    print(render(results))
    spans = {r.config: r.spans_seen for r in results if r.spans_seen is not None}
    print(
        f"\nlast run: the in-memory exporter held {spans.get('in-memory', 0)} spans "
        f"({2 * args.steps + 2} expected: a chat and an execute_tool span per step, the final "
        f"chat, the invoke_agent); the OTLP receiver had {spans.get('otlp', 0)} export "
        "requests in all"
    )
    print(
        f"OpenTelemetry SDK floor: starting and ending two bare spans (no attributes, no "
        f"processor) costs {floor:.1f} us, the least a traced step can add"
    )
    print(f"(took {elapsed:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
