"""Runs owned by the server: one background task per turn, its events buffered for replay.

A run is one ``agent.run(...)`` in a task the server owns, so it goes on when the client that
started it disconnects. Every event it yields is numbered (1, 2, ...) and kept, encoded once as
an SSE frame; any number of clients stream it, each from the number it last saw (the SSE
``Last-Event-ID``), then live. A session has at most one running turn.

When the server stops, running turns get a grace period to finish, then are cancelled; the
agent's cancellation leaves the history consistent (unfinished tool calls are answered as
"interrupted"), so the session can be resumed later, on this server or another.

Servers sharing a session store (several replicas on one PostgreSQL database) also take a
lease on the session in the store before a turn (:class:`~loopwright.sessions.lease.TurnLease`),
renewed while the turn runs and given back just before its ``done`` event, so no two of them
run one session at once; a server that dies mid-turn holds the session until the lease runs
out.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import aclosing, suppress

from loopwright.agent import Agent, Prompt
from loopwright.events import (
    ApprovalRequest,
    Done,
    Error,
    Event,
    ToolCall,
    ToolResult,
    Usage,
    UsageUpdate,
)
from loopwright.sessions.lease import LEASE_TTL_S, TurnLease, process_owner
from loopwright.sessions.session import Session
from loopwright.sessions.store import SessionStore

#: seconds between keep-alive comments on an idle stream (proxies drop silent connections)
KEEPALIVE_S = 15.0
#: at most this long a streaming turn waits for other turns to start (see RunManager._pause)
MAX_PAUSE_S = 0.05
KEEPALIVE_FRAME = b": keep-alive\n\n"


class SessionBusy(Exception):
    """The session already has a running turn."""

    def __init__(self, run: Run) -> None:
        super().__init__(run.id)
        self.run = run


class ServerClosing(Exception):
    """The server is shutting down and starts no new runs."""


#: characters that JSON leaves as they are but that many line readers take for a line break
#: (Python's ``str.splitlines``, so httpx's and requests' ``iter_lines``): escaped in a frame's
#: data (they can only be inside its strings), so the frame's one ``data:`` line stays one
_LINE_BREAKS = str.maketrans({"\x85": "\\u0085", "\u2028": "\\u2028", "\u2029": "\\u2029"})


def sse_frame(seq: int, kind: str, data: str) -> bytes:
    """An SSE frame: ``event:`` the type, ``id:`` the number, ``data:`` the JSON (one line,
    whatever line separators its strings hold)."""
    return f"event: {kind}\nid: {seq}\ndata: {data.translate(_LINE_BREAKS)}\n\n".encode()


class Run:
    """One turn of one session: its events so far, whether it is over, and its task."""

    def __init__(self, session_id: str, owner: str) -> None:
        self.id = "run_" + uuid.uuid4().hex[:16]
        self.session_id = session_id
        self.owner = owner
        self.started_at = time.time()
        self.finished_at: float | None = None
        #: the SSE frame of every event so far; event number n is ``frames[n - 1]``
        self.frames: list[bytes] = []
        self.stop_reason: str | None = None
        #: how many messages of the session's history came before this run (set when it
        #: starts): its prompt, if it has one, is the next; a client that (re)opens the
        #: session while the run goes on draws the history up to there, then replays every
        #: event of the run (the history lacks the answer streaming now, and calls waiting
        #: for approval)
        self.first_message = 0
        #: the run's usage so far (from its latest ``usage`` event and the queries a warehouse
        #: billed since; its ``done`` event's at the end)
        self.usage = Usage()
        #: ids of approval requests this run raised and that have no answer yet
        self.pending_approvals: dict[str, ApprovalRequest] = {}
        #: tool calls streamed without a result yet: id -> (name, when the call was streamed)
        self.open_calls: dict[str, tuple[str, float]] = {}
        self.task: asyncio.Task[None] | None = None
        self.cancel_detail = ""
        #: the run's lease on its session in a store other servers share
        self.lease: TurnLease | None = None
        self._changed = asyncio.Event()

    @property
    def finished(self) -> bool:
        return self.finished_at is not None

    @property
    def last_event_id(self) -> int:
        return len(self.frames)

    def append(self, event: Event) -> None:
        """Number the event, keep it, and wake the streams waiting for it."""
        if isinstance(event, UsageUpdate):
            # a sub-agent's usage events (``agent`` set) carry its own run's figures, not the
            # turn's: the turn counts them when the sub-agent ends
            if event.agent is None:
                self.usage = event.run
        elif isinstance(event, ToolCall):
            self.open_calls[event.id] = (event.name, time.perf_counter())
        elif isinstance(event, ApprovalRequest):
            self.pending_approvals[event.id] = event
        elif isinstance(event, ToolResult):
            self.open_calls.pop(event.id, None)
            for request_id, request in list(self.pending_approvals.items()):
                if request.tool_call_id == event.id:
                    del self.pending_approvals[request_id]
            if event.warehouse is not None and event.agent is None:
                # the turn's bill so far, before the next usage event says it again
                self.usage = self.usage.copy()
                self.usage.add_bill(event.warehouse)
        elif isinstance(event, Done):
            self.stop_reason = event.stop_reason
            self.usage = event.usage
        self.frames.append(sse_frame(len(self.frames) + 1, event.type, event.to_json()))
        self._wake()

    def finish(self) -> None:
        if self.finished_at is None:
            self.finished_at = time.time()
            self.pending_approvals.clear()
            self._wake()

    def _wake(self) -> None:
        changed, self._changed = self._changed, asyncio.Event()
        changed.set()

    async def stream(self, after: int = 0, keepalive: float = KEEPALIVE_S) -> AsyncIterator[bytes]:
        """SSE frames of the events numbered above ``after``, then live ones until the end
        (a keep-alive comment when nothing happened for ``keepalive`` seconds)."""
        index = max(0, after)
        frames = self.frames
        while True:
            changed = self._changed  # taken before looking, so no wake-up is missed
            end = len(frames)
            if index < end:  # everything buffered goes out as one write
                yield frames[index] if end - index == 1 else b"".join(frames[index:end])
                index = end
                continue
            if self.finished:
                return
            try:
                async with asyncio.timeout(keepalive):
                    await changed.wait()
            except TimeoutError:
                yield KEEPALIVE_FRAME


class RunManager:
    """Starts, tracks, cancels and retires the runs of one server process.

    The latest run of each session is kept (running or finished) so clients can reconnect
    to it; a finished run is forgotten ``retention`` seconds after it ended, or when the
    session starts its next run.
    """

    def __init__(
        self,
        agent: Agent,
        *,
        retention: float = 600.0,
        shared_store: SessionStore | None = None,
        lease_ttl: float = LEASE_TTL_S,
    ) -> None:
        self.agent = agent
        self.retention = retention
        self.closing = False
        #: the store other servers share, where turns lease their sessions (None: not shared)
        self.shared_store = shared_store
        self.lease_ttl = lease_ttl
        #: this process's name on its leases
        self.owner = process_owner()
        self._latest: dict[str, Run] = {}
        self._by_id: dict[str, Run] = {}
        #: reserved run id -> the session's run before it, until the reserved one starts
        self._replaced: dict[str, Run] = {}
        self._swept_at = 0.0
        #: ids of runs reserved that have not streamed their first event yet
        self._starting: set[str] = set()
        self._nothing_starting = asyncio.Event()
        self._nothing_starting.set()

    # --- looking up ------------------------------------------------------------------

    def latest(self, session_id: str) -> Run | None:
        """The session's current or most recent run (if still kept)."""
        self._sweep()
        return self._latest.get(session_id)

    def active(self, session_id: str) -> Run | None:
        """The session's running turn, if any."""
        run = self._latest.get(session_id)
        return run if run is not None and not run.finished else None

    def get(self, run_id: str) -> Run | None:
        self._sweep()
        return self._by_id.get(run_id)

    @property
    def running(self) -> list[Run]:
        return [run for run in self._latest.values() if not run.finished]

    # --- starting and stopping -------------------------------------------------------

    def reserve(self, session_id: str, owner: str) -> Run:
        """Claim the session for a new run (before loading it), or raise :class:`SessionBusy`.

        Synchronous on purpose: no other request can claim the session between the check
        and the claim. Call :meth:`start` or :meth:`release` next.
        """
        if self.closing:
            raise ServerClosing
        current = self.active(session_id)
        if current is not None:
            raise SessionBusy(current)
        lease = None
        if self.shared_store is not None:
            lease = TurnLease(self.shared_store, session_id, self.owner, self.lease_ttl)
            lease.acquire()  # or SessionLeased: another server runs a turn there
        run = Run(session_id, owner)
        run.lease = lease
        previous = self._latest.get(session_id)
        if previous is not None:  # kept until the new run starts (see release)
            self._replaced[run.id] = previous
        self._latest[session_id] = run
        self._by_id[run.id] = run
        self._starting.add(run.id)
        self._nothing_starting.clear()
        return run

    def release(self, run: Run) -> None:
        """Give up a reserved run that never started; the session's previous run (if any)
        is its latest again, its events still there for clients to read."""
        self._started(run)
        run.finish()
        previous = self._replaced.pop(run.id, None)
        if self._latest.get(run.session_id) is run:
            if previous is not None:
                self._latest[run.session_id] = previous
            else:
                del self._latest[run.session_id]
        self._by_id.pop(run.id, None)
        if run.lease is not None:
            run.lease.release_now()

    def forget(self, run: Run) -> None:
        """Give up ``run``, reserved to remove its session, and every run kept for that
        session: a removed session has no turns left to reconnect to."""
        self.release(run)
        kept = self._latest.pop(run.session_id, None)
        if kept is not None:
            self._by_id.pop(kept.id, None)

    def start(self, run: Run, session: Session, prompt: Prompt | None) -> None:
        """Run the turn in a background task owned by the server."""
        previous = self._replaced.pop(run.id, None)
        if previous is not None:  # the session's runs are now this one
            self._by_id.pop(previous.id, None)
        run.first_message = len(session.messages)
        run.task = asyncio.get_running_loop().create_task(
            self._drive(run, session, prompt), name=f"loopwright {run.id}"
        )

    async def _drive(self, run: Run, session: Session, prompt: Prompt | None) -> None:
        async def end_lease() -> None:
            # before the done event goes out: a client that gets it may post the next turn
            # to another server at once (the history is saved by then)
            if run.lease is not None:
                await run.lease.release()

        # the run's context: its usage is what it spent, also when it is cancelled (a query
        # billed as it was stopped, a sub-agent's spending) and no done event says so
        context, events = self.agent._start_run(prompt, session)
        try:
            # closing the stream on any exit runs the agent's clean-up now (unfinished calls
            # answered as interrupted, history saved), not whenever it is garbage-collected
            async with aclosing(events):
                async for event in events:
                    if isinstance(event, Done):
                        await end_lease()
                    run.append(event)
                    if run.id in self._starting:
                        self._started(run)
                    await self._pause()
        except asyncio.CancelledError:
            detail = run.cancel_detail or "cancelled"
            for result in interrupted_results(run, session):
                run.append(result)
            await end_lease()
            run.append(Done("cancelled", context.usage.copy(), session.id, detail))
        except Exception as exc:  # a bug below the loop: the stream still ends properly
            message = f"the run failed: {type(exc).__name__}: {exc}"
            run.append(Error(message))
            await end_lease()
            run.append(Done("error", run.usage.copy(), session.id, message))
        finally:
            self._started(run)
            run.finish()
            await end_lease()

    def _started(self, run: Run) -> None:
        """The run has streamed its first event (or never will)."""
        self._starting.discard(run.id)
        if not self._starting:
            self._nothing_starting.set()

    async def _pause(self) -> None:
        """Let other tasks go on between two events of a run.

        A model or tool that answers without waiting would otherwise hold the event loop for
        a whole turn. And while other turns are starting, a turn that is already streaming
        waits (up to :data:`MAX_PAUSE_S`) until they have streamed their first event: under
        load, starting a turn is not queued behind every step of every other turn.
        """
        if not self._starting:
            await asyncio.sleep(0)
            return
        with suppress(TimeoutError):
            async with asyncio.timeout(MAX_PAUSE_S):
                await self._nothing_starting.wait()

    async def cancel(self, run: Run, detail: str = "cancelled by the user") -> None:
        """Cancel a running turn and wait until its history is saved and its stream ended."""
        task = run.task
        if task is None or task.done():
            return
        run.cancel_detail = detail
        task.cancel()
        await asyncio.wait({task})

    async def shutdown(
        self, grace: float, *, give_up: Callable[[], bool] | None = None, poll: float = 0.1
    ) -> None:
        """Start no new runs; let running ones finish for ``grace`` seconds; cancel the rest.

        ``give_up()`` returning true (a second Ctrl-C) ends the grace period early.
        """
        self.closing = True
        deadline = time.monotonic() + max(0.0, grace)
        while True:
            tasks = {run.task for run in self.running if run.task is not None}
            remaining = deadline - time.monotonic()
            if not tasks or remaining <= 0 or (give_up is not None and give_up()):
                break
            await asyncio.wait(tasks, timeout=min(poll, remaining))
        left = [run for run in self.running if run.task is not None]
        await asyncio.gather(
            *(
                self.cancel(
                    run,
                    "the server shut down before the turn finished; resume the session to continue",
                )
                for run in left
            )
        )

    def _sweep(self) -> None:
        """Forget finished runs older than the retention period (at most once a second)."""
        now = time.time()
        if now - self._swept_at < 1.0:
            return
        self._swept_at = now
        cutoff = now - self.retention
        old = [
            run
            for run in self._by_id.values()
            if run.finished_at is not None and run.finished_at < cutoff
        ]
        for run in old:
            del self._by_id[run.id]
            if self._latest.get(run.session_id) is run:
                del self._latest[run.session_id]


def interrupted_results(run: Run, session: Session) -> list[ToolResult]:
    """``tool_result`` events for the calls a cancelled run left unanswered.

    The agent answers them in the history (as "interrupted") when it stops, without an
    event; these give stream readers the same answer, so every ``tool_call`` they saw has
    its ``tool_result``.
    """
    if not run.open_calls:
        return []
    recorded: dict[str, str] = {}
    for message in reversed(session.messages[-2:]):
        for block in message.tool_results:
            recorded.setdefault(block.tool_use_id, block.text)
    now = time.perf_counter()
    return [
        ToolResult(
            call_id,
            name,
            recorded.get(call_id, "Tool call interrupted: the run was cancelled."),
            True,
            round((now - started) * 1000, 3),
        )
        for call_id, (name, started) in run.open_calls.items()
    ]
