"""The SQL backend interface: one read-only query, its full result streamed to disk.

Every backend (DuckDB, PostgreSQL, BigQuery) answers the same three calls: ``schema()`` (the
tables and columns, read from the database), ``query()`` (run one read-only query and write
its result as CSV and Parquet, batch by batch, never the whole result in memory) and
``aclose()``. A backend only has to say how to open a query as a stream of Arrow record
batches and how to interrupt it; the shared part here runs that in a worker thread (database
drivers block), enforces the row cap and the timeout, and writes the files.

A timeout really stops the query: the event loop calls the backend's interrupt (DuckDB
``interrupt()``, a PostgreSQL cancel request, a BigQuery job cancel) and waits a little for
the worker to wind down. The worker is a daemon thread of its own, not one of the event
loop's pool, so a driver that ignores the interrupt can never starve other tools' threads.
A worker that has finished waits a while for the next query rather than exiting (see
:class:`Workers`): DuckDB runs a query measurably slower on a brand-new thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import queue
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    import pyarrow as pa  # type: ignore[import-untyped]

#: Rows kept in the result files when the caller gives no cap.
DEFAULT_MAX_ROWS = 1_000_000
#: Seconds a query may run (query and writing the files) when the caller gives no timeout.
DEFAULT_TIMEOUT_S = 60.0
#: Rows shown in the preview.
DEFAULT_PREVIEW_ROWS = 10
#: Seconds to wait, after an interrupt, for the worker to stop before giving up on it.
STOP_GRACE_S = 10.0
#: Seconds an idle worker thread waits for the next query before it exits.
WORKER_KEEP_ALIVE_S = 60.0
#: Names of the worker threads: running a query, and waiting for the next one.
BUSY_WORKER = "loopwright-sql"
IDLE_WORKER = "loopwright-sql-idle"

T = TypeVar("T")


class SQLError(Exception):
    """A query failed. The message (the database's own, or ours) is meant for the model."""


class QueryRefused(SQLError):
    """The statement is not a single read-only query, or breaks a configured limit."""


class UnparsableQuery(QueryRefused):
    """The parser check could not read the statement, so it cannot vouch that it only reads.

    ``detail`` is the parser's complaint (``Unexpected token at line 1, column 20``), where
    it had one; a backend whose database accepts the SQL says so with it.
    """

    def __init__(self, message: str, *, detail: str | None = None) -> None:
        super().__init__(message)
        self.detail = detail


class QueryTimeout(SQLError):
    """The query ran past its timeout and was interrupted."""


class UnknownTable(SQLError):
    """The database says a table (or view) the query names does not exist."""


class ResultFileError(SQLError):
    """The query ran but its result files could not be written (disk full, permissions)."""


@dataclass(frozen=True, slots=True)
class QueryResult:
    """What one query produced: the files, their shape, and the first rows."""

    columns: list[tuple[str, str]]
    """``(name, type)`` of each column, the type as the database names it."""
    row_count: int
    """Rows written to the files (at most the row cap)."""
    truncated: bool
    """Whether the query returned more rows than the cap (the files hold the first ones)."""
    preview: list[tuple[Any, ...]]
    """The first rows as Python values."""
    csv_path: str
    parquet_path: str | None
    elapsed_s: float
    bytes_scanned: int | None = None
    """Bytes the query read, where the database reports it (BigQuery)."""
    bytes_billed: int | None = None
    """Bytes the database billed for the query, where it bills per query (BigQuery on-demand:
    at least 10 MB per table read, 0 for a result served from its cache); ``None`` where
    queries are not billed (DuckDB, PostgreSQL) or the database did not say."""
    cache_hit: bool | None = None
    """Whether the result came from the database's result cache (BigQuery), else ``None``."""


@dataclass(frozen=True, slots=True)
class Bill:
    """What a database billed for one query's job (BigQuery on-demand), known as soon as the
    job has ended: a query stopped by its timeout or its run, or whose result could not be
    read or saved, was billed all the same (a query that failed with an error is not)."""

    bytes_billed: int
    bytes_scanned: int | None = None
    cache_hit: bool | None = None


def bill_fields(bills: Sequence[Bill], database: str) -> dict[str, Any]:
    """What ``bills`` (one query's job, or a cohort's several) add up to, in the fields of
    the SQL tool's metadata that :func:`~loopwright.events.warehouse_bill` reads; empty when
    nothing was billed. Bytes scanned and the cache hit are ``None`` when no job said."""
    if not bills:
        return {}
    scanned = [b.bytes_scanned for b in bills if b.bytes_scanned is not None]
    hits = [b.cache_hit for b in bills]
    return {
        "bytes_scanned": sum(scanned) if scanned else None,
        "bytes_billed": sum(b.bytes_billed for b in bills),
        "cache_hit": None if all(h is None for h in hits) else all(h is True for h in hits),
        "database": database,
    }


def count_cancelled_bill(metadata: Mapping[str, Any] | None) -> None:
    """Count what a tool call cancelled with its run (stopped, past its time limit) was
    billed (``metadata`` in the SQL tool's fields) in the run's usage: its job ran, and no
    result will say so. The call's stand-in result in the run's records (``sessions report``)
    carries it too (:data:`~loopwright.run_context.CANCELLED_CALL_METADATA`), when the agent
    has instruments to record it."""
    from loopwright.events import Usage, warehouse_bill
    from loopwright.run_context import CANCELLED_CALL_METADATA, current_call

    bill = warehouse_bill(metadata)
    scope = current_call()
    if bill is None or scope is None:
        return
    usage = Usage()
    usage.add_bill(bill)
    scope.run.add_usage(usage)
    if scope.run.agent.instruments:  # only their record reads it (agent._execute)
        scope.run.data[(CANCELLED_CALL_METADATA, scope.call.id)] = dict(metadata or {})


@dataclass(slots=True)
class ArrowStream:
    """An open query, as a backend hands it over: its columns and its record batches."""

    columns: list[tuple[str, str]]
    schema: pa.Schema
    batches: Iterator[pa.RecordBatch]
    bytes_scanned: int | None = None
    bytes_billed: int | None = None
    cache_hit: bool | None = None


def repeated_until(finished: threading.Event, stop: Callable[[], object]) -> Callable[[], None]:
    """A callback for :meth:`Interrupter.on_stop` that calls ``stop`` every 50 ms until
    ``finished`` is set: a driver forgets an interrupt (DuckDB) or a cancel request
    (PostgreSQL) that lands just before its statement starts, or between two statements."""

    def repeat() -> None:
        while not finished.is_set():
            stop()
            finished.wait(0.05)

    return repeat


class Interrupter:
    """Lets the event loop stop a query that is running in a worker thread.

    The worker registers how to interrupt its driver (``on_stop``) as soon as there is
    something to interrupt. Callbacks always run in threads of their own (an interrupt may be
    a network round trip, or may repeat until the worker notices), never in the worker: if
    the query was stopped before its callback was registered, ``on_stop`` starts the callback
    and raises :class:`QueryTimeout` so the worker goes no further.
    """

    def __init__(
        self, wanted_rows: int | None = None, on_bill: Callable[[Bill], object] | None = None
    ) -> None:
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], object]] = []
        self.stopped = False
        #: The most rows the result writer will read (the row cap and one more, which tells
        #: whether there were more): a driver that fetches in round trips asks for no more.
        #: ``None``: no limit known.
        self.wanted_rows = wanted_rows
        #: What the query's job billed, once the backend knows (:meth:`billed`).
        self.bill: Bill | None = None
        self._on_bill = on_bill

    def on_stop(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` (in another thread) when the query is stopped."""
        with self._lock:
            if not self.stopped:
                self._callbacks.append(callback)
                return
        _spawn(callback)
        raise QueryTimeout("The query was stopped.")

    def stop(self) -> None:
        """Interrupt the query; idempotent, never raises, never blocks."""
        with self._lock:
            if self.stopped:
                return
            self.stopped = True
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            _spawn(callback)

    def billed(self, bill: Bill) -> None:
        """Say what the query's job billed (worker side), once, as soon as it has ended:
        ``on_bill`` hears of it whatever becomes of the query afterwards."""
        if self.bill is not None:
            return
        self.bill = bill
        if self._on_bill is not None:
            self._on_bill(bill)

    def check(self) -> None:
        """Raise :class:`QueryTimeout` if the query has been stopped (worker side)."""
        if self.stopped:
            raise QueryTimeout("The query was stopped.")


def _spawn(callback: Callable[[], object]) -> None:
    def call() -> None:
        with contextlib.suppress(Exception):
            callback()

    threading.Thread(target=call, name="loopwright-sql-stop", daemon=True).start()


class SQLBackend(ABC):
    """A database the SQL tool can query: read-only, streamed, interruptible.

    Subclasses set ``dialect`` (a sqlglot dialect name) and ``name`` (for messages), and
    implement :meth:`schema`, :meth:`_open` and :meth:`aclose`. Queries may run
    concurrently; a backend shares its connection (or pool) between them.
    """

    dialect: str = ""
    """The sqlglot dialect the backend's SQL is parsed in (``duckdb``, ``postgres``...)."""
    name: str = ""
    """The database's name as users know it (``DuckDB``, ``PostgreSQL``, ``BigQuery``)."""
    text_cast: str = "column::VARCHAR"
    """A column cast to text in the database's SQL, for messages."""

    @abstractmethod
    async def schema(self) -> dict[str, list[tuple[str, str]]]:
        """Every table and view the query can read: ``{table: [(column, type), ...]}``.

        Read from the database each time (not cached), in column order; tables outside
        the default schema or dataset are named ``schema.table``.
        """

    async def tables(self, timeout: float | None = None) -> list[str]:  # noqa: ASYNC109
        """The tables and views, named as a query writes them (by default :meth:`schema`'s
        keys; PostgreSQL quotes the names it would otherwise fold to lower case), read
        within ``timeout`` seconds (default :data:`DEFAULT_TIMEOUT_S`; ``TimeoutError`` past
        it): a hint in an error message must not hold the tool up for long."""
        return sorted(await asyncio.wait_for(self.schema(), timeout or DEFAULT_TIMEOUT_S))

    async def columns(
        self,
        tables: list[str],
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> dict[str, list[tuple[str, str]]]:
        """The columns of ``tables`` (named as a query writes them: ``RX_CLAIMS``,
        ``claims.RX_CLAIMS``), for a hint in an error message: those found, read within
        ``timeout`` seconds (default :data:`DEFAULT_TIMEOUT_S`; ``TimeoutError`` past it).
        By default from :meth:`schema`; a backend with a cheaper way to read a few tables
        overrides it."""
        from loopwright.sql.hints import table_columns

        schema = await self._schema_within(timeout or DEFAULT_TIMEOUT_S)
        found: dict[str, list[tuple[str, str]]] = {}
        for table in tables:
            entry = table_columns(table, schema)
            if entry is not None:
                found[table] = list(entry[1])
        return found

    async def _schema_within(
        self,
        timeout: float,  # noqa: ASYNC109
    ) -> dict[str, list[tuple[str, str]]]:
        """:meth:`schema`, within ``timeout`` seconds."""
        return await asyncio.wait_for(self.schema(), timeout)

    def check(self, sql: str) -> None:
        """Refuse anything but a single read-only query; runs in the worker thread.

        The base check parses the statement with sqlglot in :attr:`dialect`; backends add
        their own database's verdict where it has one. When sqlglot cannot parse it, the
        database's own syntax error (:meth:`_syntax_error`) is the clearer message, and where
        the database accepts what sqlglot cannot read, the refusal says so.
        """
        from loopwright.sql.readonly import check_read_only

        try:
            check_read_only(sql, self.dialect)
        except UnparsableQuery as exc:
            raise self._syntax_error(sql, exc) from None

    def _syntax_error(self, sql: str, unparsable: UnparsableQuery) -> SQLError:
        """What to answer for ``sql``, which sqlglot could not parse: the database's own
        syntax error where it can parse without running (else ``unparsable`` itself), or
        :func:`accepted_elsewhere` where the database accepts it."""
        return unparsable

    @abstractmethod
    def _open(
        self, sql: str, stop: Interrupter, timeout: float
    ) -> AbstractContextManager[ArrowStream]:
        """Start ``sql`` (already checked) and stream its result; runs in the worker thread.

        The context manager releases the cursor or connection on exit, even when the
        batches were not read to the end (the row cap stops early). Register the driver's
        interrupt with ``stop.on_stop`` as soon as there is something to interrupt; use
        ``timeout`` for the database's own limit where it has one (a second line of defence).
        A driver that fetches rows in round trips fetches no more than ``stop.wanted_rows``.
        """

    def _error(self, exc: Exception) -> SQLError:
        """The driver's exception as an :class:`SQLError` with the database's message."""
        return SQLError(f"{self.name} error: {str(exc).strip()}")

    @abstractmethod
    async def aclose(self) -> None:
        """Close connections; the backend cannot be used afterwards."""

    async def query(
        self,
        sql: str,
        csv_path: str | os.PathLike[str],
        parquet_path: str | os.PathLike[str] | None = None,
        *,
        max_rows: int = DEFAULT_MAX_ROWS,
        timeout: float = DEFAULT_TIMEOUT_S,  # noqa: ASYNC109 - interrupts the query itself
        preview_rows: int = DEFAULT_PREVIEW_ROWS,
        on_bill: Callable[[Bill], object] | None = None,
    ) -> QueryResult:
        """Run one read-only query and write its result to ``csv_path`` (and Parquet).

        The files are written batch by batch to temporary names and renamed into place only
        when complete, so a failed query leaves any earlier file of that name as it was. At
        most ``max_rows`` rows are written (``truncated`` says whether there were more);
        ``timeout`` covers running the query and writing the files. Raises
        :class:`QueryRefused`, :class:`QueryTimeout`, :class:`UnknownTable` or
        :class:`SQLError`.

        ``on_bill`` is called (in the worker thread) with the :class:`Bill` of the query's
        job on a database that bills per query, as soon as the job has ended: also when the
        query then fails (stopped by the timeout, its result not saved) or is cancelled, so
        what it cost can be counted where no result says it.
        """
        from loopwright.sql.output import write_result

        sql = sql.removeprefix("\ufeff")  # an editor's byte-order mark is not SQL
        csv_file = os.fspath(csv_path)
        parquet_file = os.fspath(parquet_path) if parquet_path is not None else None
        if max_rows < 1:
            raise ValueError("max_rows must be at least 1")
        if timeout <= 0:
            raise ValueError("timeout must be positive")
        # one more row tells the cap was hit
        stop = Interrupter(wanted_rows=max_rows + 1, on_bill=on_bill)
        started = time.perf_counter()

        def work() -> QueryResult:
            self.check(sql)
            stop.check()
            with self._open(sql, stop, timeout) as stream:
                try:
                    written = write_result(
                        stream.schema,
                        stream.batches,
                        csv_file,
                        parquet_file,
                        max_rows=max_rows,
                        preview_rows=preview_rows,
                        stop=stop,
                        text_cast=self.text_cast,
                    )
                finally:  # the row cap may stop reading early: release the driver's stream
                    close = getattr(stream.batches, "close", None)
                    if close is not None:
                        close()
                return QueryResult(
                    columns=_unique_columns(stream.columns, written.names),
                    row_count=written.row_count,
                    truncated=written.truncated,
                    preview=written.preview,
                    csv_path=csv_file,
                    parquet_path=parquet_file,
                    elapsed_s=time.perf_counter() - started,
                    bytes_scanned=stream.bytes_scanned,
                    bytes_billed=stream.bytes_billed,
                    cache_hit=stream.cache_hit,
                )

        return await self._run(work, stop, timeout)

    async def _run(
        self,
        work: Callable[[], T],
        stop: Interrupter,
        timeout: float,  # noqa: ASYNC109 - interrupts the query itself
    ) -> T:
        """Run ``work`` in a worker thread; on timeout or cancellation, interrupt it."""
        try:
            return await run_in_worker(self._guarded(work, stop), stop, timeout)
        except TimeoutError:
            raise QueryTimeout(
                f"The query was stopped after {timeout:g} s (the SQL tool's timeout). Make it "
                "cheaper: filter earlier, aggregate, or add a LIMIT."
            ) from None

    def _guarded(self, work: Callable[[], T], stop: Interrupter) -> Callable[[], T]:
        def guarded() -> T:
            try:
                return work()
            except (QueryRefused, ResultFileError):
                raise
            except Exception as exc:
                if stop.stopped:  # the driver's own "interrupted" error, after our stop()
                    raise QueryTimeout("The query was stopped.") from exc
                if isinstance(exc, SQLError):
                    raise
                raise self._error(exc) from exc

        return guarded


class Workers:
    """Daemon threads that run one blocking call each at a time, kept a while when idle.

    A call gets an idle worker if there is one and a new thread otherwise: it never waits for
    a thread, and never borrows the event loop's pool, so a driver that ignores its interrupt
    holds up only its own thread. Keeping finished workers pays: on a new thread DuckDB ran
    the guide's top-10 query about 1.5 ms slower (5 ms otherwise) and a 120,000-row extract
    2 to 3 ms slower (10 ms otherwise), the thread's first allocations and page faults. A
    worker is named :data:`BUSY_WORKER` while it runs a call and :data:`IDLE_WORKER` while it
    waits (at most ``keep_alive`` seconds, then it exits).
    """

    def __init__(self, keep_alive: float = WORKER_KEEP_ALIVE_S) -> None:
        self.keep_alive = keep_alive
        self.forget()

    def forget(self) -> None:
        """Start over with no worker: in a forked child, whose threads did not come along."""
        self._lock = threading.Lock()
        self._calls: queue.SimpleQueue[Callable[[], Callable[[], object]]] = queue.SimpleQueue()
        self._idle = 0

    def run(self, call: Callable[[], Callable[[], object]]) -> None:
        """Run ``call`` in a worker, then what it returns once the worker is marked idle (so
        whoever it wakes sees no busy worker left). ``call`` must not raise."""
        with self._lock:
            if self._idle:
                self._idle -= 1
                self._calls.put(call)  # an idle worker takes it
                return
        # handed over in a box the worker empties: a Thread keeps its args while it runs
        box = [call]
        threading.Thread(target=self._serve, args=(box,), name=BUSY_WORKER, daemon=True).start()

    def _serve(self, box: list[Callable[[], Callable[[], object]]]) -> None:
        thread = threading.current_thread()
        call: Callable[[], Callable[[], object]] | None = box.pop()
        while call is not None:
            thread.name = BUSY_WORKER
            then = call()
            call = None  # hold no reference to the finished call while idle
            thread.name = IDLE_WORKER
            with self._lock:  # idle before waking anyone: the next call may come right away
                self._idle += 1
            with contextlib.suppress(Exception):  # the worker must outlive what it wakes
                then()
            del then  # nor keep the result (or an exception's frames) alive while idle
            try:
                call = self._calls.get(timeout=self.keep_alive)
            except queue.Empty:
                with self._lock:  # a call may have been handed over as the wait ran out
                    try:
                        call = self._calls.get_nowait()
                    except queue.Empty:
                        self._idle -= 1


_WORKERS = Workers()
os.register_at_fork(after_in_child=_WORKERS.forget)


def accepted_elsewhere(
    database: str, sql: str, unparsable: UnparsableQuery, dialect: str = "duckdb"
) -> UnparsableQuery:
    """The refusal of SQL that ``database`` (of sqlglot's ``dialect``) parses but the
    read-only check cannot.

    Still a refusal: only a parsed statement can be vouched for. It says the syntax is not
    wrong, so the model rewrites the query rather than hunting for a typo.
    """
    from loopwright.sql.hints import unparsed_function_hint
    from loopwright.sql.readonly import rewrite_hint

    if unparsable.detail is None:  # not a syntax question (nested too deeply...)
        return unparsable
    # another dialect's function (DATEDIFF(a, b)) is what the check trips on, and would
    # fail on the database too: say what to write instead
    hint = unparsed_function_hint(sql, dialect) or rewrite_hint(sql, dialect)
    return UnparsableQuery(
        f"{database} accepts this SQL, but the read-only check cannot parse it "
        f"({unparsable.detail}), so it cannot vouch that the query only reads. {hint}",
        detail=unparsable.detail,
    )


async def run_in_worker(
    work: Callable[[], T],
    stop: Interrupter,
    timeout: float | None,  # noqa: ASYNC109 - interrupts the work itself
) -> T:
    """Run blocking ``work`` in a worker thread, interrupting it on timeout or cancel.

    Raises ``TimeoutError`` once the worker has stopped (or :data:`STOP_GRACE_S` passed),
    unless the work finished meanwhile: then its result, which is complete (the timeout
    struck as a query's files were being renamed into place: they are there).
    """
    loop = asyncio.get_running_loop()
    done: asyncio.Future[T] = loop.create_future()

    def settle(value: T | None, exc: BaseException | None) -> None:
        if done.cancelled():
            return
        if exc is not None:
            done.set_exception(exc)
        else:
            done.set_result(value)  # type: ignore[arg-type]

    def post(value: T | None, exc: BaseException | None) -> None:
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            loop.call_soon_threadsafe(settle, value, exc)

    def call() -> Callable[[], object]:
        try:
            value = work()
        except BaseException as exc:
            return functools.partial(post, None, exc)
        return functools.partial(post, value, None)

    _WORKERS.run(call)
    try:
        return await asyncio.wait_for(asyncio.shield(done), timeout)
    except TimeoutError:
        stop.stop()
        await _wind_down(done)
        if done.done() and not done.cancelled() and done.exception() is None:
            # past the last check for a stop (writing the last piece, renaming the files
            # into place): the result is whole and its files have replaced any earlier
            # ones, so saying it was stopped would be false
            return done.result()
        raise
    except asyncio.CancelledError:
        stop.stop()
        await _wind_down(done)
        raise


async def _wind_down(done: asyncio.Future[Any]) -> None:
    """Wait (bounded) for an interrupted worker to finish, so it releases its files.

    A cancellation meanwhile (the run's timeout, Ctrl-C) ends the wait and is raised, never
    swallowed: after a timeout, swallowing it returned the timeout message as a result and
    the run went on. The worker's outcome is retrieved whenever it comes (no "exception was
    never retrieved" warning).
    """
    done.add_done_callback(_retrieve)
    with contextlib.suppress(Exception):  # the worker's own error, or the grace ran out
        await asyncio.wait_for(asyncio.shield(done), STOP_GRACE_S)


def _retrieve(done: asyncio.Future[Any]) -> None:
    if not done.cancelled():
        done.exception()


def _unique_columns(columns: list[tuple[str, str]], names: list[str]) -> list[tuple[str, str]]:
    """The columns under the names the files use (duplicates get a suffix there)."""
    if len(columns) != len(names):
        return [(name, "") for name in names]
    return [(name, kind) for name, (_, kind) in zip(names, columns, strict=True)]


@dataclass(slots=True)
class Written:
    """What the result writer reports back."""

    names: list[str]
    row_count: int
    truncated: bool
    preview: list[tuple[Any, ...]] = field(default_factory=list)
