"""The HTTP server under load: 200 concurrent SSE sessions against one server process.

The agent is the one of ``overhead.py``: a zero-latency ``ScriptedModel`` that calls a
trivial ``noop`` tool once per step for N steps (default 10) of each turn, then answers. The
server (``create_app`` + ``make_server``: bearer-token auth on, rate limit off, SQLite store
in a temporary directory, like ``loopwright serve``) runs in its own process; this process is
the client: a small HTTP/1.1 client on asyncio and httptools, one keep-alive connection per
session, so sending a request costs microseconds and 200 requests leave together.

Scenarios (S sessions, default 200):

- **burst** (the target's scenario): S sessions each post their first message at the same
  instant and read their SSE stream of N steps to its ``done``.
- **steady** (a stress test, no target): S clients, each posting T turns (default 5) back to
  back in its own session, so S sessions are active all the time and the zero-latency model
  keeps the server's CPU saturated; TTFE over every turn but each client's first.
- **in-process floor** for both: the same agent, store and S concurrent runs in one process,
  no HTTP, each run consuming ``agent.run`` and yielding to the loop after every event as the
  server's run tasks do (burst: all started at once, TTFE from the start of the batch;
  steady: each client starts its next run as soon as the last one ends).
  TTFE is the time from sending the POST (from starting the run) to the first event; server
  TTFE minus floor TTFE, at p50 and p99, is the time **added by the server** (target: p99
  under 50 ms).
- **memory**: a fresh server; the model waits ``--hold-ms`` per step so all S turns are
  active together; the server's RSS (``/proc/PID/status``) is sampled while they run:
  (peak RSS - RSS before the batch) / most sessions active at once.

Errors: any non-2xx answer, a stream that does not end with ``done``/``end_turn`` after N
tool calls, event ids that are not 1..n. Requests per second counts every HTTP request
(session creation and posts; each post's response is the whole SSE stream of its turn).

Run ``python benchmarks/server.py`` (``--quick``: 50 sessions, 2 turns; ``--json``: machine-
readable output). It only prints: it never fails on timings.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httptools

from loopwright import Agent, ModelRequest, ScriptedModel, SQLiteStore, call
from loopwright.events import Done
from loopwright.models.scripted import ScriptedToolCall

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_table import render_table
from overhead import NoopTool

TOKEN = "bench-token"
TARGET_ADDED_P99_MS = 50.0
KIB = 1024
MIB = 1024 * 1024


# --- the server process -----------------------------------------------------------------


def turn_script(steps: int, hold_s: float) -> Callable[[ModelRequest], Any]:
    """Each turn: ``noop`` N times (a new input each step), then "done". With ``hold_s``,
    every model call first waits that long (keeps turns active for the memory scenario)."""

    def decide(request: ModelRequest) -> ScriptedToolCall | str:
        done = 0
        for message in reversed(request.messages):  # tool calls since the user's prompt
            if message.role == "user" and not message.tool_results:
                break
            done += len(message.tool_uses)
        return call("noop", x=done) if done < steps else "done"

    if not hold_s:
        return decide

    async def held(request: ModelRequest) -> ScriptedToolCall | str:
        await asyncio.sleep(hold_s)
        return decide(request)

    return held


def make_agent(steps: int, root: Path, hold_s: float = 0.0) -> Agent:
    model = ScriptedModel(turn_script(steps, hold_s), record_requests=False)
    return Agent(
        model,
        tools=[NoopTool],
        store=SQLiteStore(root / "sessions.db"),
        workspace_root=str(root / "workspaces"),
        max_turns=steps + 1,
    )


def serve_child(port: int, steps: int, hold_s: float) -> None:
    """The server process: serves until SIGTERM."""
    from loopwright.server import create_app, make_server

    with tempfile.TemporaryDirectory(prefix="loopwright-bench-server-") as tmp:
        agent = make_agent(steps, Path(tmp), hold_s)
        app = create_app(agent, tokens={TOKEN: "bench"}, rate_limit=None, shutdown_grace=1)
        make_server(app, port=port, log_level="warning", access_log=False).run()


class ServerProcess:
    """A server child process on a free port of 127.0.0.1."""

    def __init__(self, steps: int, hold_s: float = 0.0) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        command = [
            sys.executable,
            os.path.abspath(__file__),
            "--serve",
            str(self.port),
            "--steps",
            str(steps),
            "--hold-ms",
            str(hold_s * 1000),
        ]
        self.process = subprocess.Popen(command)
        self.base_url = f"http://127.0.0.1:{self.port}"
        deadline = time.monotonic() + 60
        while not self._answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.process.kill()
                raise RuntimeError("the server process did not start")
            time.sleep(0.05)

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                return sock.recv(64).startswith(b"HTTP/1.1 200")
        except OSError:
            return False

    def rss(self) -> int:
        with open(f"/proc/{self.process.pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * KIB
        raise RuntimeError("no VmRSS in /proc")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()


# --- the client -------------------------------------------------------------------------
#
# A small HTTP/1.1 client on asyncio and httptools' response parser (the C parser uvicorn
# uses): sending a request costs a few microseconds, so 200 requests leave at once and the
# client's own overhead does not pile onto the server's time to first event.


class Connection(asyncio.Protocol):
    """One keep-alive connection; :meth:`request` sends a request and collects the answer,
    splitting a ``text/event-stream`` body into events as it arrives."""

    def __init__(self, host: str) -> None:
        self.host = host
        self.transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)
        self._reset()

    def _reset(self) -> None:
        self.status = 0
        self.body = bytearray()
        self.events: list[tuple[int, bytes]] = []
        self.first_event_at = 0.0
        self._pending = b""
        self._done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self._parser.feed_data(data)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._done.done():
            self._done.set_exception(ConnectionError(f"the server closed the connection: {exc}"))

    # httptools callbacks
    def on_headers_complete(self) -> None:
        self.status = self._parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        if self.status != 200:
            self.body += body
            return
        self._pending += body
        while (end := self._pending.find(b"\n\n")) >= 0:
            frame, self._pending = self._pending[:end], self._pending[end + 2 :]
            if frame.startswith(b":"):
                continue
            if not self.events:
                self.first_event_at = time.perf_counter()
            seq, data = 0, b""
            for line in frame.split(b"\n"):
                if line.startswith(b"id: "):
                    seq = int(line[4:])
                elif line.startswith(b"data: "):
                    data = line[6:]
            self.events.append((seq, data))

    def on_message_complete(self) -> None:
        if not self._done.done():
            self._done.set_result(None)

    def send(self, method: str, path: str, body: bytes = b"") -> float:
        """Send a request now; returns when it was sent (``perf_counter``)."""
        self._reset()
        head = (
            f"{method} {path} HTTP/1.1\r\nHost: {self.host}\r\n"
            f"Authorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        assert self.transport is not None
        sent = time.perf_counter()
        self.transport.write(head + body)
        return sent

    async def wait(self) -> None:
        await self._done

    @property
    def finished(self) -> bool:
        return self._done.done()


async def connect(port: int, count: int) -> list[Connection]:
    loop = asyncio.get_running_loop()
    host = f"127.0.0.1:{port}"
    connections = []
    for _ in range(count):
        _, protocol = await loop.create_connection(lambda: Connection(host), "127.0.0.1", port)
        connections.append(protocol)
    return connections


async def create_sessions(connections: list[Connection]) -> list[str]:
    """One new session per connection, all at once."""
    for connection in connections:
        connection.send("POST", "/api/sessions")
    ids = []
    for connection in connections:
        await connection.wait()
        if connection.status != 201:
            raise RuntimeError(
                f"creating a session failed: {connection.status} {connection.body!r}"
            )
        ids.append(json.loads(connection.body)["id"])
    return ids


PROMPT = b'{"content": "go"}'


@dataclass(slots=True)
class Turn:
    sent_at: float
    ttfe_s: float = 0.0
    ended_at: float = 0.0
    events: int = 0
    error: str = ""


def check_turn(connection: Connection, sent_at: float, steps: int) -> Turn:
    turn = Turn(sent_at, ended_at=time.perf_counter(), events=len(connection.events))
    if connection.status != 200:
        turn.error = f"HTTP {connection.status}: {bytes(connection.body)[:200]!r}"
        return turn
    turn.ttfe_s = connection.first_event_at - sent_at
    ids = [seq for seq, _ in connection.events]
    last = json.loads(connection.events[-1][1]) if connection.events else {}
    if ids != list(range(1, len(ids) + 1)):
        turn.error = "event ids are not 1..n"
    elif last.get("type") != "done" or last.get("stop_reason") != "end_turn":
        turn.error = f"the stream did not end with done/end_turn: {last}"
    elif last["usage"]["tool_calls"] != steps:
        turn.error = f"expected {steps} tool calls, got {last['usage']['tool_calls']}"
    return turn


async def run_turns(
    connections: list[Connection], session_ids: list[str], steps: int
) -> list[Turn]:
    """Post one message per session, all at once; read every stream to its end."""
    sent = [
        c.send("POST", f"/api/sessions/{s}/messages", PROMPT)
        for c, s in zip(connections, session_ids, strict=True)
    ]
    turns = []
    for connection, sent_at in zip(connections, sent, strict=True):
        turns.append(await finish_turn(connection, sent_at, steps))
    return turns


async def finish_turn(connection: Connection, sent_at: float, steps: int) -> Turn:
    try:
        await connection.wait()
    except ConnectionError as exc:
        return Turn(sent_at, error=str(exc))
    return check_turn(connection, sent_at, steps)


async def client_loop(
    connection: Connection, session_id: str, steps: int, turns: int
) -> list[Turn]:
    """One client: ``turns`` turns back to back in its session."""
    done = []
    for _ in range(turns):
        sent_at = connection.send("POST", f"/api/sessions/{session_id}/messages", PROMPT)
        done.append(await finish_turn(connection, sent_at, steps))
    return done


@dataclass(slots=True)
class Phase:
    """What one scenario measured on the server."""

    turns: int
    errors: int
    first_error: str
    requests: int
    wall_s: float
    events: int
    ttfe_ms: list[float] = field(default_factory=list)


def close(connections: list[Connection]) -> None:
    for connection in connections:
        assert connection.transport is not None
        connection.transport.close()


async def warm_up(port: int, steps: int) -> None:
    """Imports, caches and the first SQLite pages, before anything is timed."""
    warm = await connect(port, 5)
    await run_turns(warm, await create_sessions(warm), steps)
    close(warm)


async def steady_phase(port: int, sessions: int, steps: int, turns: int) -> Phase:
    await warm_up(port, steps)
    connections = await connect(port, sessions)
    started = time.perf_counter()
    ids = await create_sessions(connections)
    results = await asyncio.gather(
        *(client_loop(c, s, steps, turns) for c, s in zip(connections, ids, strict=True))
    )
    wall = time.perf_counter() - started
    close(connections)
    every = [t for client in results for t in client]
    measured = [t for client in results for t in client[1:]] or every
    failed = [t for t in every if t.error]
    return Phase(
        len(every),
        len(failed),
        failed[0].error if failed else "",
        sessions + len(every),
        wall,
        sum(t.events for t in every),
        [t.ttfe_s * 1000 for t in measured if not t.error],
    )


async def burst_phase(port: int, sessions: int, steps: int) -> Phase:
    await warm_up(port, steps)
    connections = await connect(port, sessions)
    started = time.perf_counter()
    ids = await create_sessions(connections)
    turns = await run_turns(connections, ids, steps)
    wall = time.perf_counter() - started
    close(connections)
    failed = [t for t in turns if t.error]
    return Phase(
        len(turns),
        len(failed),
        failed[0].error if failed else "",
        2 * sessions,
        wall,
        sum(t.events for t in turns),
        [t.ttfe_s * 1000 for t in turns if not t.error],
    )


@dataclass(slots=True)
class Memory:
    sessions: int
    baseline_rss: int
    peak_rss: int
    most_active: int
    errors: int


async def memory_phase(server: ServerProcess, sessions: int, steps: int) -> Memory:
    await warm_up(server.port, steps)
    connections = await connect(server.port, sessions)
    ids = await create_sessions(connections)
    await asyncio.sleep(0.2)
    baseline = server.rss()
    peak, most_active = baseline, 0
    batch = asyncio.ensure_future(run_turns(connections, ids, steps))
    while not batch.done():
        await asyncio.sleep(0.01)
        peak = max(peak, server.rss())
        # active: its turn is running on the server (the stream has not ended)
        most_active = max(most_active, sum(1 for c in connections if not c.finished))
    turns = batch.result()
    close(connections)
    return Memory(sessions, baseline, peak, most_active, sum(1 for t in turns if t.error))


# --- the in-process floor ---------------------------------------------------------------


async def in_process(sessions: int, steps: int, turns: int) -> dict[str, list[float]]:
    """TTFE (ms) of the same agent in one process, no HTTP, for both scenarios: each run is
    a task that consumes ``agent.run`` and yields to the loop after every event, as the
    server's run tasks do."""
    with tempfile.TemporaryDirectory(prefix="loopwright-bench-inproc-") as tmp:
        agent = make_agent(steps, Path(tmp))

        async def run(session_id: str, started: float | None = None) -> float:
            started = time.perf_counter() if started is None else started
            first = 0.0
            last = None
            async for event in agent.run("go", session_id):
                if not first:
                    first = time.perf_counter()
                last = event
                await asyncio.sleep(0)
            if not isinstance(last, Done) or last.stop_reason != "end_turn":
                raise RuntimeError(f"the in-process run did not finish normally: {last!r}")
            if last.usage.tool_calls != steps:
                raise RuntimeError(f"expected {steps} tool calls, got {last.usage.tool_calls}")
            return (first - started) * 1000

        async def client(session_id: str) -> list[float]:
            return [await run(session_id) for _ in range(turns)]

        async def burst(ids: list[str]) -> list[float]:
            started = time.perf_counter()  # every run is asked for now
            return list(await asyncio.gather(*(run(s, started) for s in ids)))

        await burst([agent.new_session().id for _ in range(5)])
        burst_ms = await burst([agent.new_session().id for _ in range(sessions)])
        steady = await asyncio.gather(*(client(agent.new_session().id) for _ in range(sessions)))
        steady_ms = [ms for runs in steady for ms in runs[1:]] or [ms for r in steady for ms in r]
        return {"burst": burst_ms, "steady": steady_ms}


def in_process_child(sessions: int, steps: int, turns: int) -> dict[str, list[float]]:
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--in-process",
        "--sessions",
        str(sessions),
        "--steps",
        str(steps),
        "--turns",
        str(turns),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the in-process child failed:\n{done.stderr}")
    values: dict[str, list[float]] = json.loads(done.stdout)
    return values


# --- the report -------------------------------------------------------------------------


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    index = min(len(ordered) - 1, max(0, round(fraction * (len(ordered) - 1))))
    return ordered[index]


def ttfe(values: list[float]) -> dict[str, float]:
    return {"p50": percentile(values, 0.5), "p99": percentile(values, 0.99)}


def render(rows: list[tuple[str, str, str, str]]) -> str:
    header = ("measure", "value", "target", "result")
    table = [header, *rows]
    return render_table(table[0], table[1:], left={0, 2, 3})


def run_server_phase(steps: int, phase: Callable[[int], Any]) -> Any:
    server = ServerProcess(steps)
    try:
        return asyncio.run(phase(server.port))
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="50 sessions, 2 turns (smoke run)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--sessions", type=int, default=None, help="concurrent sessions (200)")
    parser.add_argument("--steps", type=int, default=10, help="tool-calling steps per turn")
    parser.add_argument("--turns", type=int, default=None, help="turns per client, steady (5)")
    parser.add_argument(
        "--hold-ms", type=float, default=None, help="memory scenario: model wait per step (50)"
    )
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    parser.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    sessions = args.sessions or (50 if args.quick else 200)
    turns = args.turns or (2 if args.quick else 5)
    steps = args.steps

    if args.serve is not None:
        serve_child(args.serve, steps, (args.hold_ms or 0.0) / 1000)
        return 0
    if args.in_process:
        print(json.dumps(asyncio.run(in_process(sessions, steps, turns))))
        return 0

    hold_s = (args.hold_ms if args.hold_ms is not None else 50.0) / 1000
    started = time.perf_counter()
    steady: Phase = run_server_phase(steps, lambda port: steady_phase(port, sessions, steps, turns))
    burst: Phase = run_server_phase(steps, lambda port: burst_phase(port, sessions, steps))
    floor = in_process_child(sessions, steps, turns)
    memory_server = ServerProcess(steps, hold_s)
    try:
        memory = asyncio.run(memory_phase(memory_server, sessions, steps))
    finally:
        memory_server.stop()
    elapsed = time.perf_counter() - started

    server_steady, server_burst = ttfe(steady.ttfe_ms), ttfe(burst.ttfe_ms)
    floor_steady, floor_burst = ttfe(floor["steady"]), ttfe(floor["burst"])
    added_steady = {k: server_steady[k] - floor_steady[k] for k in ("p50", "p99")}
    added_burst = {k: server_burst[k] - floor_burst[k] for k in ("p50", "p99")}
    per_session_kib = (memory.peak_rss - memory.baseline_rss) / max(1, memory.most_active) / KIB
    errors = steady.errors + burst.errors + memory.errors
    result = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "sessions": sessions,
        "steps": steps,
        "turns_per_client": turns,
        "errors": errors,
        "first_error": steady.first_error or burst.first_error,
        "steady": {
            **{k: v for k, v in asdict(steady).items() if k != "ttfe_ms"},
            "requests_per_s": steady.requests / steady.wall_s,
            "turns_per_s": steady.turns / steady.wall_s,
            "ttfe_ms": server_steady,
            "in_process_ttfe_ms": floor_steady,
            "added_by_server_ms": added_steady,
        },
        "burst": {
            **{k: v for k, v in asdict(burst).items() if k != "ttfe_ms"},
            "requests_per_s": burst.requests / burst.wall_s,
            "turns_per_s": burst.turns / burst.wall_s,
            "ttfe_ms": server_burst,
            "in_process_ttfe_ms": floor_burst,
            "added_by_server_ms": added_burst,
        },
        "memory": {
            **asdict(memory),
            "per_active_session_kib": per_session_kib,
            "hold_ms": hold_s * 1000,
        },
        "elapsed_s": elapsed,
    }
    if args.json:
        print(json.dumps(result, indent=2))
        return 0

    def ms(value: float) -> str:
        return f"{value:,.1f} ms"

    def verdict(value: float) -> str:
        return "PASS" if value < TARGET_ADDED_P99_MS else "FAIL"

    target = f"< {TARGET_ADDED_P99_MS:g} ms"

    def pair(server: dict[str, float], floor: dict[str, float], key: str) -> str:
        return f"{ms(server[key])} / {ms(floor[key])}"

    rows = [
        ("errors (all scenarios)", f"{errors}", "0", "PASS" if errors == 0 else "FAIL"),
        (f"burst: {sessions} sessions x 1 turn, all at once", f"{burst.turns:,}", "-", "-"),
        ("burst: HTTP requests per second", f"{burst.requests / burst.wall_s:,.1f}", "-", "-"),
        ("burst: turns per second", f"{burst.turns / burst.wall_s:,.1f}", "-", "-"),
        ("burst: TTFE p50, server / in-process", pair(server_burst, floor_burst, "p50"), "-", "-"),
        ("burst: TTFE p99, server / in-process", pair(server_burst, floor_burst, "p99"), "-", "-"),
        ("burst: added by the server, p50", ms(added_burst["p50"]), "-", "-"),
        (
            "burst: added by the server, p99",
            ms(added_burst["p99"]),
            target,
            verdict(added_burst["p99"]),
        ),
        (f"steady: {sessions} clients x {turns} turns", f"{steady.turns:,}", "-", "-"),
        ("steady: HTTP requests per second", f"{steady.requests / steady.wall_s:,.1f}", "-", "-"),
        ("steady: turns per second", f"{steady.turns / steady.wall_s:,.1f}", "-", "-"),
        ("steady: SSE events per second", f"{steady.events / steady.wall_s:,.0f}", "-", "-"),
        (
            "steady: TTFE p50, server / in-process",
            pair(server_steady, floor_steady, "p50"),
            "-",
            "-",
        ),
        (
            "steady: TTFE p99, server / in-process",
            pair(server_steady, floor_steady, "p99"),
            "-",
            "-",
        ),
        ("steady: added by the server, p99", ms(added_steady["p99"]), "(no target)", "-"),
        (
            f"memory per active session ({memory.most_active} active at once)",
            f"{per_session_kib:,.1f} KiB",
            "-",
            "-",
        ),
        (
            "server RSS before / at peak",
            f"{memory.baseline_rss / MIB:,.1f} / {memory.peak_rss / MIB:,.1f} MiB",
            "-",
            "-",
        ),
    ]
    print(
        f"loopwright server under load - Python {platform.python_version()}, "
        f"{platform.machine()}, {os.cpu_count()} CPUs; {sessions} concurrent sessions, "
        f"{steps} steps per turn; SQLite store, auth on, server in its own process"
        f"{' (quick run)' if args.quick else ''}\n"
    )
    print(render(rows))
    if result["first_error"]:
        print(f"\nfirst error: {result['first_error']}")
    print(
        "\nTTFE: from sending the POST to receiving the first SSE event (steady: every turn "
        "but each client's first). The client shares the machine's CPUs with the server. "
        f"Memory: the model waits {hold_s * 1000:g} ms per step so the turns overlap; RSS "
        f"sampled every 10 ms.\n(took {elapsed:.1f} s)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
