"""The PostgreSQL backend (psycopg 3): read-only transactions, rows streamed by a cursor.

Every connection is opened with ``default_transaction_read_only=on`` and marked read-only
in psycopg, so each query runs in a ``BEGIN READ ONLY`` transaction that is rolled back
afterwards: a write the parser check missed is refused by the server itself. For real
deployments, connect as a role that can only ``SELECT`` as well.

The result is read through a server-side cursor a batch of rows at a time and turned into
Arrow record batches with types taken from the result's column types, so a large result
never sits in memory. The query's ``statement_timeout`` is set to the tool's timeout, and
on a timeout the running statement is cancelled with a cancel request.

Intervals keep their months and days (psycopg's ``timedelta`` would make a month 30 days):
they are read as (months, days, nanoseconds), written as ISO 8601 durations as DuckDB's
are. ``numeric`` is read as the server's text, so no digit is lost: with a precision and
scale it is an Arrow decimal of those (wider than 38 digits, which Polars cannot read, its
exact digits as text); unconstrained (what ``SUM`` and ``AVG`` return) a ``decimal(38, s)``,
``s`` the most digits after the point in the first batch of rows, and the model is told so
(``numeric, saved as decimal(38,2)``). A later value that does not fit (more digits after the
point, ``NaN``) is a clear error saying to round it or cast it; in the first batch, ``NaN``,
``Infinity`` or more than 38 digits make the column the server's text. ``money`` is a
``decimal(19, d)``, ``d`` the digits ``lc_monetary`` puts after the point, read from its text
(``-$1,234.56``) in any locale. ``json``, ``jsonb``, records and ranges keep the server's
own text (a JSON ``null`` is not a missing value; JSON arrays are JSON).

Dates, timestamps and times Python has no value for (``'infinity'`` and ``'-infinity'``,
years past 9999 or BC, a time of ``24:00:00``) become the Arrow values DuckDB gives the same
ones (``infinity`` is date32's or int64's largest value, ``-infinity`` minus it; other dates
count days or microseconds from 1970), so both files hold what DuckDB's would: the Parquet
file those values, the CSV DuckDB's text, not PostgreSQL's (``0044-03-15 (BC)``, where
PostgreSQL writes ``0044-03-15 BC``; see :mod:`loopwright.sql.output`). Their text is read
in the ISO ``DateStyle`` (the default; ``infinity`` in any). A value Arrow cannot hold (a
timestamp past 294247-01-10, or a year past 9999 in another ``DateStyle``) or a
multi-dimensional array is a clear error saying which column to cast to text.

Connections are kept in a small pool of idle ones (``pool_size``), opened on demand; a
connection whose session may have been changed or broken is closed rather than reused, and
one the server dropped while it sat idle (a restart, ``idle_session_timeout``) is replaced
when the first statement sent on it finds it dead, so the caller never sees it.

The schema lists what the role can really read (schemas it may use, columns it may select;
partitions only as their partitioned table), and :meth:`PostgresBackend.catalog` adds the
names as SQL must write them (``claims."RX_CLAIMS"``: PostgreSQL folds unquoted names to
lower case) and the tables' and columns' comments, for the agent's prompt.
"""

from __future__ import annotations

import contextlib
import functools
import json
import re
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import psycopg
import psycopg.adapt
import psycopg.errors
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
from psycopg import sql as pgsql
from psycopg.conninfo import conninfo_to_dict
from psycopg.pq import Format, TransactionStatus
from psycopg.types import TypeInfo
from psycopg.types.array import register_array
from psycopg.types.multirange import MultirangeInfo
from psycopg.types.range import RangeInfo
from psycopg.types.string import TextLoader

from loopwright.sql.base import (
    DEFAULT_TIMEOUT_S,
    ArrowStream,
    Interrupter,
    QueryRefused,
    QueryTimeout,
    ResultFileError,
    SQLBackend,
    SQLError,
    UnknownTable,
    UnparsableQuery,
    accepted_elsewhere,
    repeated_until,
    run_in_worker,
)
from loopwright.sql.temporal import DATE_INFINITY, TIMESTAMP_INFINITY, days_from_civil
from loopwright.sql.urls import redact
from loopwright.summaries import error_line

if TYPE_CHECKING:
    from psycopg import Column

Convert = Callable[[Any], Any]

#: Every table and view the role can read, column by column: in a schema it may use, the
#: columns it may select (a table can be granted column by column), partitions left out (the
#: partitioned table holds their rows). Names also come quoted as SQL must write them.
_CATALOG_SQL = """
SELECT n.nspname, c.relname, a.attname, format_type(a.atttypid, a.atttypmod),
       pg_catalog.pg_table_is_visible(c.oid), c.relkind IN ('v', 'm'),
       quote_ident(n.nspname), quote_ident(c.relname), quote_ident(a.attname),
       obj_description(c.oid, 'pg_class'), col_description(c.oid, a.attnum)
FROM pg_catalog.pg_attribute a
JOIN pg_catalog.pg_class c ON c.oid = a.attrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'v', 'm', 'p', 'f') AND NOT c.relispartition
  AND a.attnum > 0 AND NOT a.attisdropped
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp%'
  AND has_schema_privilege(n.oid, 'USAGE')
  AND has_column_privilege(c.oid, a.attnum, 'SELECT')
ORDER BY n.nspname, c.relname, a.attnum
"""

#: The names of types psycopg does not know (enums, domains' arrays, extensions' types),
#: and for an array of enums, its enum's OID.
_TYPE_NAMES_SQL = """
SELECT t.oid, format_type(t.oid, NULL), CASE WHEN e.typtype = 'e' THEN e.oid END
FROM pg_catalog.pg_type t
LEFT JOIN pg_catalog.pg_type e ON e.oid = t.typelem AND t.typcategory = 'A'
WHERE t.oid = ANY(%s::oid[])
"""


@dataclass(frozen=True, slots=True)
class CatalogColumn:
    """A column of a :class:`CatalogTable`."""

    name: str
    type: str
    sql: str
    """The name as SQL must write it: quoted where PostgreSQL would fold or misread it
    (``"NDC_DRUG_NM"``, ``"user"``), else as it is."""
    comment: str | None = None


@dataclass(frozen=True, slots=True)
class CatalogTable:
    """A table or view the role can read, as :meth:`PostgresBackend.catalog` reads it."""

    name: str
    """Its key in :meth:`PostgresBackend.schema`: ``table``, or ``schema.table`` outside the
    search path."""
    sql: str
    """Its name as SQL must write it (``claims."RX_CLAIMS"``)."""
    columns: tuple[CatalogColumn, ...]
    comment: str | None = None
    view: bool = False


#: The name of the server-side cursor each query runs in. One name: a query has its own
#: transaction on a connection of its own (the rollback after it closes the cursor), and a
#: numbered name grew with the process's queries, which pushed the user's SQL out of the
#: ``LINE 1:`` excerpt of an error, which quotes a fixed width of the statement sent.
CURSOR_NAME = "loopwright_q"


class PostgresBackend(SQLBackend):
    """A PostgreSQL database, queried in read-only transactions.

    ``dsn`` is a libpq connection string or URL (``postgresql://user@host:5432/db``);
    ``pool_size`` idle connections are kept for reuse; ``batch_rows`` rows are fetched
    per round trip (fewer when the row cap needs fewer).
    """

    dialect = "postgres"
    name = "PostgreSQL"
    text_cast = "column::text"

    def __init__(self, dsn: str, *, pool_size: int = 4, batch_rows: int = 10_000) -> None:
        self.dsn = dsn
        self.pool_size = pool_size
        self.batch_rows = batch_rows
        self._idle: list[psycopg.Connection[Any]] = []
        self._lock = threading.Lock()
        self._closed = False
        #: ``sent``: what this thread last sent around the user's SQL (see _without_cursor)
        self._statement = threading.local()

    def __repr__(self) -> str:
        return f"PostgresBackend({_where(self.dsn)!r})"

    # --- connections ----------------------------------------------------------------------

    def _acquire(self) -> tuple[psycopg.Connection[Any], bool]:
        """An idle connection from the pool, else a new one; and whether it was pooled."""
        with self._lock:
            if self._closed:
                raise SQLError("This PostgreSQL backend is closed; create a new one.")
            if self._idle:
                return self._idle.pop(), True
        return self._connect(), False

    def _connect(self) -> psycopg.Connection[Any]:
        """A new connection, read-only, with this backend's loaders."""
        try:
            params: dict[str, Any] = dict(conninfo_to_dict(self.dsn))
        except psycopg.Error as exc:  # its message quotes the DSN, password and all
            raise SQLError(
                f"The PostgreSQL URL is not valid ({redact(error_line(exc), self.dsn)}); write "
                "it as postgresql://USER:PASSWORD@HOST:PORT/DATABASE."
            ) from None
        options = str(params.get("options") or "")
        params["options"] = f"{options} -c default_transaction_read_only=on".strip()
        params.setdefault("application_name", "loopwright")
        params.setdefault("connect_timeout", "10")
        try:
            connection = psycopg.connect(**params, autocommit=False)
        except psycopg.Error as exc:
            # libpq puts its hint on a line of its own; one line reads better in a CLI error
            said = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
            raise SQLError(
                f"Could not connect to PostgreSQL at {_where(self.dsn)}: {said}"
            ) from exc
        connection.read_only = True
        connection.adapters.register_loader("interval", _IntervalLoader)
        for name in (*_AS_TEXT, "numeric"):  # numeric's text: an exact decimal in Arrow
            connection.adapters.register_loader(name, TextLoader)
        return connection

    def _start(
        self, statement: str, params: Sequence[Any] | None = None, **options: Any
    ) -> tuple[psycopg.Connection[Any], psycopg.Cursor[Any]]:
        """A connection with ``statement`` run as the first of its transaction, and its cursor.

        A pooled connection may be dead by now (the server restarted, or ended idle
        sessions); that shows only when something is sent, so a connection that breaks on
        this first statement is closed and the next idle one, or a new one, tried instead:
        nothing ran there, so sending the statement again is safe. Errors of the statement
        itself, and any of a new connection, are raised (the connection released).
        """
        while True:
            connection, pooled = self._acquire()
            try:
                return connection, connection.execute(statement, params, **options)
            except BaseException as exc:
                dead = connection.broken
                if not dead:
                    with contextlib.suppress(psycopg.Error):
                        connection.rollback()
                self._release(connection, not dead)
                if pooled and dead and isinstance(exc, psycopg.OperationalError):
                    continue  # a pooled connection that had died: try the next one
                raise

    def _release(self, connection: psycopg.Connection[Any], reusable: bool) -> None:
        keep = (
            reusable
            and not connection.closed
            and connection.info.transaction_status == TransactionStatus.IDLE
        )
        if keep:
            with self._lock:
                if not self._closed and len(self._idle) < self.pool_size:
                    self._idle.append(connection)
                    return
        with contextlib.suppress(Exception):
            connection.close()

    # --- queries --------------------------------------------------------------------------

    @contextlib.contextmanager
    def _open(self, sql: str, stop: Interrupter, timeout: float) -> Iterator[ArrowStream]:
        milliseconds = max(1, int(timeout * 1000))
        connection, started = self._start(  # the interval loader reads the default style
            "SELECT set_config('statement_timeout', %s, true), "
            "set_config('intervalstyle', 'postgres', true), scale('0'::money::numeric)",
            (str(milliseconds),),
        )
        places = _first(started)[2]  # lc_monetary's digits after the point
        connection.adapters.register_loader("money", _money_loader(places))
        finished = threading.Event()  # also: a late stop() must not cancel the next query
        reusable = False
        try:
            stop.on_stop(repeated_until(finished, lambda: connection.cancel_safe(timeout=5)))
            cursor = connection.cursor(name=CURSOR_NAME)
            fetcher: _Fetcher | None = None
            self._statement.sent = (f'DECLARE "{cursor.name}" CURSOR FOR ', sql)
            try:
                cursor.execute(sql)
                description = cursor.description or []
                names, enum_arrays = _type_names(connection, description)
                fetcher = _Fetcher(cursor)
                # the first rows, before the types: unconstrained numeric's scale is theirs
                wanted = stop.wanted_rows
                asked = self._asked(wanted)
                rows = fetcher.fetch(asked) if asked else []
                fields, converters, saved = _arrow_fields(
                    description, connection, places, rows, enum_arrays, whole=len(rows) < asked
                )
                columns = [
                    (c.name, _shown(names.get(c.type_code, c.type_display), as_))
                    for c, as_ in zip(description, saved, strict=True)
                ]
                schema = pa.schema(fields)
                batches = self._batches(fetcher, rows, schema, converters, columns, wanted, asked)
                yield ArrowStream(columns, schema, batches)
            finally:
                if fetcher is not None:
                    fetcher.close()  # a client cursor: closing it sends nothing
                with contextlib.suppress(psycopg.Error):
                    cursor.close()
            reusable = True
        finally:
            finished.set()
            try:
                connection.rollback()
            except psycopg.Error:
                reusable = False
            # a cancel request may still be on its way: never hand this connection on
            self._release(connection, reusable and not stop.stopped)

    def _asked(self, wanted: int | None) -> int:
        """Rows to fetch in the next round trip: ``batch_rows``, never more than the
        ``wanted`` rows left (a row cap of 5 fetched 10,000 rows)."""
        return self.batch_rows if wanted is None else max(min(self.batch_rows, wanted), 0)

    def _batches(
        self,
        fetcher: _Fetcher,
        rows: list[tuple[Any, ...]],
        schema: pa.Schema,
        converters: list[Convert | None],
        columns: list[tuple[str, str]],
        wanted: int | None,
        asked: int,
    ) -> Iterator[pa.RecordBatch]:
        """The rows: ``rows`` (the first ``asked``, fetched already), then :meth:`_asked`
        per round trip; a batch short of what was asked for is the last (no round trip to be
        told there is nothing more)."""
        while rows:
            if wanted is not None:
                wanted -= len(rows)
            values = list(zip(*rows, strict=True))
            arrays = []
            for field, column, convert, described in zip(
                schema, values, converters, columns, strict=True
            ):
                try:
                    arrays.append(_array(column, field.type, convert))
                except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
                    raise _unsavable(described, column, exc, field.type) from exc
            yield pa.RecordBatch.from_arrays(arrays, schema=schema)
            if len(rows) < asked:  # the cursor is at its end
                return
            del rows, values, arrays
            asked = self._asked(wanted)
            rows = fetcher.fetch(asked) if asked else []

    def _syntax_error(self, sql: str, unparsable: UnparsableQuery) -> SQLError:
        """PostgreSQL's own parse of ``sql``: ``PREPARE`` parses and plans, never runs.

        Only called for SQL sqlglot could not parse, so nothing vouches that it is one
        statement: it is sent with the extended query protocol (``binary=True`` makes psycopg
        use it), which takes exactly one statement. The simple protocol would run whatever
        follows a ``;`` (``SELECT collation for ('a'); COMMIT; BEGIN READ WRITE; ...``).
        """
        self._statement.sent = (_PREPARE, sql)
        try:  # on an error, nothing was prepared (and the connection is released)
            connection, _ = self._start(_PREPARE + sql, prepare=False, binary=True)
        except psycopg.Error as exc:
            if isinstance(exc, psycopg.errors.SyntaxError) and "multiple commands" in str(exc):
                return QueryRefused(
                    "The SQL holds more than one statement; run one query per call (use "
                    "WITH ... for intermediate steps)."
                )
            return self._error(exc)
        reusable = True
        try:
            return accepted_elsewhere("PostgreSQL", sql, unparsable)
        finally:
            try:
                connection.rollback()  # a prepared statement outlives it: drop it too
                connection.execute("DEALLOCATE ALL")
                connection.rollback()
            except psycopg.Error:
                reusable = False
            self._release(connection, reusable)

    def _error(self, exc: Exception) -> SQLError:
        if isinstance(exc, psycopg.DataError) and exc.sqlstate is None:
            # psycopg could not turn a value the server sent into Python: not the query's fault
            return ResultFileError(
                f"The query ran, but PostgreSQL sent a value the result files cannot hold "
                f"({str(exc).strip()}). Cast that column to text in the query "
                "(e.g. column::text) and run it again."
            )
        sent = getattr(self._statement, "sent", None)
        message = f"PostgreSQL: {_without_cursor(str(exc).strip(), sent)}"
        if isinstance(exc, psycopg.errors.UndefinedTable) and "FROM-clause" not in message:
            return UnknownTable(message)  # not an alias the query forgot to define
        if isinstance(exc, psycopg.errors.QueryCanceled):
            return QueryTimeout(
                f"PostgreSQL stopped the query at its statement timeout ({message}). Make it "
                "cheaper: filter earlier, aggregate, or add a LIMIT."
            )
        if isinstance(exc, psycopg.errors.ReadOnlySqlTransaction):
            return QueryRefused(f"{message}. The SQL tool is read-only: run a SELECT query.")
        return SQLError(message)

    async def schema(self) -> dict[str, list[tuple[str, str]]]:
        return {
            table.name: [(column.name, column.type) for column in table.columns]
            for table in await self.catalog()
        }

    async def _schema_within(
        self,
        timeout: float,  # noqa: ASYNC109
    ) -> dict[str, list[tuple[str, str]]]:
        return {
            table.name: [(column.name, column.type) for column in table.columns]
            for table in await self.catalog(timeout)
        }

    async def tables(self, timeout: float | None = None) -> list[str]:  # noqa: ASYNC109
        """The tables and views, named as SQL must write them (``claims."RX_CLAIMS"``)."""
        catalog = await self.catalog(timeout)
        return [table.sql for table in sorted(catalog, key=lambda t: t.name)]

    async def catalog(
        self,
        timeout: float | None = None,  # noqa: ASYNC109 - cancels the statement itself
    ) -> list[CatalogTable]:
        """The tables and views the role can read (:meth:`schema`'s), with their names as
        SQL must write them, their comments, and whether they are views; read within
        ``timeout`` seconds (default :data:`DEFAULT_TIMEOUT_S`), the statement cancelled
        past it (``TimeoutError``)."""
        timeout = timeout or DEFAULT_TIMEOUT_S
        stop = Interrupter()
        milliseconds = str(max(1, int(timeout * 1000)))

        def read() -> list[CatalogTable]:
            try:  # the server's own limit too: a catalogue of many thousand tables is slow
                connection, _ = self._start(
                    "SELECT set_config('statement_timeout', %s, true)", (milliseconds,)
                )
            except psycopg.Error as exc:
                raise self._error(exc) from exc
            finished = threading.Event()
            reusable = False
            try:
                stop.on_stop(repeated_until(finished, lambda: connection.cancel_safe(timeout=5)))
                rows = connection.execute(_CATALOG_SQL).fetchall()
                reusable = True
            except psycopg.Error as exc:
                raise self._error(exc) from exc
            finally:
                finished.set()
                with contextlib.suppress(psycopg.Error):
                    connection.rollback()
                self._release(connection, reusable and not stop.stopped)
            tables: dict[str, CatalogTable] = {}
            columns: dict[str, list[CatalogColumn]] = {}
            for row in rows:
                schema, table, column, kind, visible, view, schema_sql, table_sql, *rest = row
                column_sql, table_comment, column_comment = rest
                key = table if visible else f"{schema}.{table}"
                if key not in tables:
                    reference = table_sql if visible else f"{schema_sql}.{table_sql}"
                    tables[key] = CatalogTable(key, reference, (), _comment(table_comment), view)
                described = CatalogColumn(column, kind, column_sql, _comment(column_comment))
                columns.setdefault(key, []).append(described)
            return [replace(t, columns=tuple(columns[key])) for key, t in tables.items()]

        return await run_in_worker(read, stop, timeout)

    async def aclose(self) -> None:
        with self._lock:
            self._closed = True
            idle, self._idle = self._idle, []
        for connection in idle:
            with contextlib.suppress(Exception):
                connection.close()


# --- PostgreSQL types as Arrow types --------------------------------------------------------


def _type_names(
    connection: psycopg.Connection[Any], description: list[Column]
) -> tuple[dict[int, str], set[int]]:
    """The server's names of the result's types psycopg does not know (psycopg shows their
    OID): ``payer`` and ``payer[]`` for an enum, an extension's ``citext``; and the arrays of
    enums among them, which are read from then on as lists of their labels."""
    types = connection.adapters.types
    unknown = sorted({c.type_code for c in description if types.get(c.type_code) is None})
    if not unknown:
        return {}, set()
    rows = connection.execute(_TYPE_NAMES_SQL, (unknown,)).fetchall()
    enum_arrays = set()
    for oid, name, enum in rows:
        if enum is not None:  # for this connection's next fetches (the type keeps its OID)
            register_array(TypeInfo(str(name), int(enum), int(oid)), connection)
            enum_arrays.add(int(oid))
    return {int(oid): str(name) for oid, name, _ in rows}, enum_arrays


def _comment(value: str | None) -> str | None:
    return value.strip() or None if value is not None else None


def _json_text(value: Any) -> str:
    return json.dumps(value, default=str, ensure_ascii=False)


def _json_array(value: list[Any]) -> str:
    """An array of ``json``/``jsonb`` (each element the server's JSON text) as a JSON array."""
    items = ("null" if v is None else _json_array(v) if isinstance(v, list) else v for v in value)
    return "[" + ", ".join(items) + "]"


#: Types read as the server's text rather than psycopg's Python values, whose ``str`` is not
#: PostgreSQL's (``('1', 'a')`` for the record ``(1,a)``, ``[1, 5)`` for ``[1,5)``), or
#: loses what the text holds: a JSON ``null`` would be a missing value, ``json``'s repeated
#: keys and ``jsonb``'s digits past a float's would be dropped.
_AS_TEXT = (
    "json",
    "jsonb",
    "record",
    *(info.name for info in psycopg.postgres.types if isinstance(info, RangeInfo | MultirangeInfo)),
)


#: PostgreSQL type name -> (Arrow type, conversion of each Python value or None).
_SCALARS: dict[str, tuple[pa.DataType, Convert | None]] = {
    "bool": (pa.bool_(), None),
    "int2": (pa.int16(), None),
    "int4": (pa.int32(), None),
    "int8": (pa.int64(), None),
    "oid": (pa.int64(), None),
    "float4": (pa.float32(), None),
    "float8": (pa.float64(), None),
    "text": (pa.string(), None),
    "varchar": (pa.string(), None),
    "bpchar": (pa.string(), None),
    "char": (pa.string(), None),
    "name": (pa.string(), None),
    "citext": (pa.string(), None),
    "bytea": (pa.binary(), bytes),
    "date": (pa.date32(), None),
    "time": (pa.time64("us"), None),
    "timestamp": (pa.timestamp("us"), None),
    "timestamptz": (pa.timestamp("us", tz="UTC"), None),
    "interval": (pa.month_day_nano_interval(), None),
    "uuid": (pa.string(), str),
    "json": (pa.string(), None),
    "jsonb": (pa.string(), None),
}


def _arrow_fields(
    description: list[Column],
    connection: psycopg.Connection[Any],
    places: int,
    rows: list[tuple[Any, ...]],
    enum_arrays: set[int],
    *,
    whole: bool,
) -> tuple[list[pa.Field], list[Convert | None], list[str | None]]:
    """The result's Arrow fields, their values' conversions, and what each column is saved
    as where its type does not say (``decimal(38,2)`` for unconstrained ``numeric``): from
    the column types, and for ``numeric``, ``rows``, the first (all of them if ``whole``).
    Arrays of enums (``enum_arrays``) are lists of their labels."""
    fields, converters, saved = [], [], []
    for i, column in enumerate(description):
        if column.type_code in enum_arrays:
            kind, convert = pa.list_(pa.string()), None
        else:
            kind, convert = _arrow_type(column, connection, places)
        as_ = None
        if _holds_decimal(kind):
            kind, as_ = _numeric_type(column, kind, [row[i] for row in rows], whole=whole)
        fields.append(pa.field(column.name, kind))
        converters.append(convert)
        saved.append(as_)
    return fields, converters, saved


def _arrow_type(
    column: Column, connection: psycopg.Connection[Any], places: int
) -> tuple[pa.DataType, Convert | None]:
    """A column's Arrow type from its PostgreSQL type; for ``numeric``, what its declared
    precision and scale hold (``None`` for unconstrained: the values say)."""
    info = connection.adapters.types.get(column.type_code)
    if info is None:
        return pa.string(), str
    is_array = column.type_code == info.array_oid and column.type_code != info.oid
    if info.name == "numeric":
        kind = _declared_decimal(column.precision, column.scale)
        return (pa.list_(kind) if is_array else kind), None
    if info.name == "money":  # its 64-bit count of lc_monetary's smallest unit
        kind = pa.decimal128(19, places)
        return (pa.list_(kind) if is_array else kind), None
    if is_array:
        if info.name in ("json", "jsonb"):
            return pa.string(), _json_array
        if info.name == "bytea":  # as DuckDB's lists of blobs: hex in the CSV's JSON
            return pa.list_(pa.binary()), None
        scalar = _SCALARS.get(info.name)
        if scalar is not None and scalar[1] is None:
            return pa.list_(scalar[0]), None
        return pa.string(), _json_text
    return _SCALARS.get(info.name) or (pa.string(), str)


#: Digits of Arrow's 128-bit decimal, the widest Polars reads; unconstrained ``numeric`` gets
#: them all, with the scale its first rows need.
_DECIMAL_DIGITS = 38
#: Placeholder for unconstrained ``numeric`` until its first rows give it a scale.
_UNCONSTRAINED = pa.decimal128(_DECIMAL_DIGITS, 0)


def _declared_decimal(precision: int | None, scale: int | None) -> pa.DataType:
    """The Arrow type of ``numeric(precision, scale)``: a decimal of those digits (saved as
    text when wider than Polars reads: see :func:`_numeric_type`); :data:`_UNCONSTRAINED`
    without them."""
    if precision is None or scale is None:
        return _UNCONSTRAINED
    # numeric(3, 5) holds 0.00123, numeric(2, -3) 12000: Arrow's digits count from the point
    digits = max(precision, scale) if scale >= 0 else precision - scale
    if digits <= _DECIMAL_DIGITS:
        return pa.decimal128(digits, max(scale, 0))
    return pa.decimal256(digits, max(scale, 0))


def _holds_decimal(kind: pa.DataType) -> bool:
    if pa.types.is_list(kind):
        return _holds_decimal(kind.value_type)
    return bool(pa.types.is_decimal(kind))


def _as_text(kind: pa.DataType) -> pa.DataType:
    """``kind`` with text for its decimals: numeric's and money's values come as text."""
    return pa.list_(pa.string()) if pa.types.is_list(kind) else pa.string()


def _numeric_type(
    column: Column, kind: pa.DataType, values: list[Any], *, whole: bool
) -> tuple[pa.DataType, str | None]:
    """The Arrow type of a ``numeric`` (or ``money``) column given its first ``values``
    (PostgreSQL's text; all of them if ``whole``), and what it is saved as where its
    PostgreSQL type does not say that.

    Unconstrained ``numeric`` (``SUM``'s, ``AVG``'s) is ``decimal(38, s)``, ``s`` the most
    digits after the point among the values: exact, and as Polars reads it. Where a value
    does not fit its decimal (``NaN``, ``Infinity``, more than 38 digits), the type is wider
    than Polars reads, or there are no values yet but more rows to come, the column is
    PostgreSQL's exact text."""
    texts = _flat_texts(values)
    if texts is None:  # a multi-dimensional array: refused with the first batch
        return kind, None
    listed = pa.types.is_list(kind)
    element: pa.DataType | None = kind.value_type if listed else kind
    chosen = element == _UNCONSTRAINED and column.precision is None
    if chosen:
        scale = pc.max(_scales(texts)).as_py()
        fits = (scale is not None or whole) and (scale or 0) <= _DECIMAL_DIGITS
        element = pa.decimal128(_DECIMAL_DIGITS, scale or 0) if fits else None
    if element is not None and pa.types.is_decimal256(element):
        element = None
    if element is not None:
        from loopwright.sql.output import decimals_from_text  # Polars' too: on first use

        try:
            decimals_from_text(texts, element)
        except pa.ArrowInvalid:
            element = None
    if element is None:
        return _as_text(kind), "text[]" if listed else "text"
    if not chosen:
        return kind, None
    shown = f"decimal({element.precision},{element.scale})"
    return (pa.list_(element), shown + "[]") if listed else (element, shown)


def _flat_texts(values: list[Any]) -> pa.Array | None:
    """``values`` (text, or one-dimensional arrays of text) as one Arrow string array."""
    try:
        if any(isinstance(v, list) for v in values):
            return pa.array(values, pa.list_(pa.string())).flatten()
        return pa.array(values, pa.string())
    except (pa.ArrowException, TypeError):
        return None


def _scales(texts: pa.Array) -> pa.Array:
    """Each number's digits after the point, from its text (``12.50``: 2)."""
    point = pc.find_substring(texts, ".")
    after = pc.subtract(pc.subtract(pc.utf8_length(texts), point), 1)
    return pc.if_else(pc.less(point, 0), 0, after)


def _shown(kind: str, saved: str | None) -> str:
    """A column's type as the model is told it: PostgreSQL's, and what the files hold where
    that does not say (``numeric, saved as decimal(38,2)``)."""
    return kind if saved is None else f"{kind}, saved as {saved}"


def _array(values: Sequence[Any], kind: pa.DataType, convert: Convert | None) -> pa.Array:
    """One column of a batch as Arrow ``kind``."""
    if convert is not None:
        values = [None if v is None else convert(v) for v in values]
    if _holds_decimal(kind):  # numeric's and money's text: each digit kept, or an error
        from loopwright.sql.output import decimals_from_text

        return decimals_from_text(pa.array(values, _as_text(kind)), kind)
    return pa.array(values, type=kind)


def _first(cursor: psycopg.Cursor[Any]) -> tuple[Any, ...]:
    row = cursor.fetchone()
    assert row is not None
    return tuple(row)


class _MoneyLoader(psycopg.adapt.Loader):
    """``money`` as the number it is, as text for an Arrow decimal (``-1234.56``).

    Its text is ``lc_monetary``'s (``-$1,234.56``, ``1.234,56 €``, ``(12.00)``), but holds
    every digit of the amount, the last :attr:`places` (that locale's, read for each query)
    after the point: its separators and symbols are dropped, a minus sign or parentheses
    make it negative."""

    places = 2

    def load(self, data: Any) -> str:
        text = bytes(data)
        digits = _NOT_DIGITS.sub(b"", text).decode()
        if not digits:
            raise psycopg.DataError(f"can't read money {text.decode(errors='replace')!r}")
        sign = "-" if b"-" in text or b"(" in text else ""
        if not self.places:
            return sign + digits
        digits = digits.rjust(self.places + 1, "0")
        return f"{sign}{digits[: -self.places]}.{digits[-self.places :]}"


_NOT_DIGITS = re.compile(rb"[^0-9]")


@functools.cache
def _money_loader(places: int) -> type[_MoneyLoader]:
    """A :class:`_MoneyLoader` for ``places`` digits after the point."""
    return type(f"_MoneyLoader{places}", (_MoneyLoader,), {"places": places})


def _unsavable(
    column: tuple[str, str], values: Sequence[Any], exc: Exception, kind: pa.DataType
) -> ResultFileError:
    """Why a column's values could not become an Arrow column, and what to do."""
    name, described = column
    advice = f"Cast it to text in the query (e.g. {name}::text) and run it again."
    if any(isinstance(v, list) and any(isinstance(x, list) for x in v) for v in values):
        reason = "it holds multi-dimensional arrays, and the files keep one-dimensional lists"
    elif _holds_decimal(kind) and (texts := _flat_texts(list(values))) is not None:
        reason, advice = _misfit(name, texts, kind.value_type if pa.types.is_list(kind) else kind)
    else:
        reason = error_line(exc).rstrip(".")
    return ResultFileError(
        f"The query ran, but column {name} ({described}) could not be saved: {reason}. {advice}"
    )


def _misfit(name: str, texts: pa.Array, kind: pa.DataType) -> tuple[str, str]:
    """Why numbers of a later batch do not fit the decimal type the first rows chose, and
    what to do: (reason, advice)."""
    typed = f"its type in the files, decimal({kind.precision},{kind.scale}), set by its first rows"
    for text in texts.to_pylist():
        if text is None:
            continue
        if text in ("NaN", "Infinity", "-Infinity"):
            return (
                f"it holds {text}, which {typed}, cannot hold",
                f"Turn it into NULL (NULLIF({name}, '{text}')) or cast it to text "
                f"({name}::text) in the query, and run it again.",
            )
        scale = len(text.partition(".")[2])
        if scale > kind.scale:
            return (
                f"it holds {text}, with {scale} digits after the point, more than {typed}",
                f"Round it in the query (e.g. round({name}, {kind.scale})) or give it a scale "
                f"({name}::numeric({_DECIMAL_DIGITS}, {scale})), and run it again.",
            )
        if len(text.lstrip("-").partition(".")[0]) > kind.precision - kind.scale:
            return (
                f"it holds {text}, more digits than {typed}, has room for",
                f"Cast it to text in the query (e.g. {name}::text) and run it again.",
            )
    return "its values do not fit a decimal", f"Cast it to text ({name}::text) and run it again."


#: An interval in PostgreSQL's default output style: ``1 year -2 mons 3 days -04:05:06.789``.
_INTERVAL = re.compile(rb"(?:[+-]?\d+ (?:year|mon|day)s? ?)*(?:[+-]?\d+:\d+:\d+(?:\.\d{1,6})?)?")
#: One part of it: ``-1 years``, ``2 mons``...
_INTERVAL_PART = re.compile(rb"([+-]?\d+) (year|mon|day)s?")
#: Its time part: ``-04:05:06.789`` (hours may run past 24).
_INTERVAL_TIME = re.compile(rb"([+-]?)(\d+):(\d+):(\d+)(?:\.(\d{1,6}))?$")
_MONTHS = {b"year": 12, b"mon": 1}


class _IntervalLoader(psycopg.adapt.Loader):
    """``interval`` as (months, days, nanoseconds), from the ``postgres`` output style."""

    def load(self, data: Any) -> tuple[int, int, int]:
        text = bytes(data)
        if not text or _INTERVAL.fullmatch(text) is None:  # the style is set for each query
            raise psycopg.DataError(f"can't parse interval {text.decode(errors='replace')!r}")
        months = days = 0
        for number, unit in _INTERVAL_PART.findall(text):
            if unit == b"day":
                days += int(number)
            else:
                months += int(number) * _MONTHS[unit]
        microseconds = 0
        clock = _INTERVAL_TIME.search(text)
        if clock is not None:
            sign, hours, minutes, seconds, fraction = clock.groups()
            microseconds = (int(hours) * 60 + int(minutes)) * 60 + int(seconds)
            microseconds = microseconds * 1_000_000 + int((fraction or b"0").ljust(6, b"0"))
            if sign == b"-":
                microseconds = -microseconds
        return months, days, microseconds * 1000


# --- dates and times Python has none for ---------------------------------------------------

#: A date as PostgreSQL writes it in the ISO DateStyle, years past 9999 and BC too.
_DATE = re.compile(rb"(\d{4,})-(\d\d)-(\d\d)( BC)?")
#: A timestamp, its fraction, and (``timestamptz``) its UTC offset: ``+05:30``, ``-04:56:02``.
_TIMESTAMP = re.compile(
    rb"(\d{4,})-(\d\d)-(\d\d) (\d\d):(\d\d):(\d\d)(?:\.(\d{1,6}))?"
    rb"(?:([+-])(\d\d)(?::(\d\d))?(?::(\d\d))?)?( BC)?"
)
_DAY_US = 86_400_000_000


def _year(digits: bytes, bc: bytes | None) -> int:
    return 1 - int(digits) if bc else int(digits)  # 1 BC is year 0


class _BeyondPython(psycopg.adapt.Loader):
    """psycopg's own loader for a date or time type (its Python value), and where that
    value has no Python equivalent, the number Arrow stores for it, as DuckDB does: days or
    microseconds since 1970 for years past 9999 or BC, its largest value (or minus it) for
    ``infinity`` (``-infinity``). pyarrow takes the two mixed in one column.

    Results come as text (the server-side cursor is not binary). ``infinity`` is read
    first, in any DateStyle (a column of open-ended validity dates may hold little else, and
    psycopg's exception for each would cost); :meth:`beyond` reads the ISO DateStyle's text
    of the other values psycopg refuses. A value it cannot read, or one the Arrow type
    cannot hold (a timestamp past 294247-01-10: PostgreSQL's go to 294276), keeps psycopg's
    error, which says to cast the column to text.
    """

    #: ``infinity`` as Arrow stores it (``-infinity``: minus it); 0 for a type without one.
    infinity = 0

    def __init__(self, oid: int, context: psycopg.abc.AdaptContext | None = None) -> None:
        super().__init__(oid, context)
        own = psycopg.adapters.get_loader(oid, Format.TEXT)
        assert own is not None
        self._load = own(oid, context).load

    def load(self, data: Any) -> Any:
        if self.infinity and data[-8:] == b"infinity":
            return -self.infinity if data[:1] == b"-" else self.infinity
        try:
            return self._load(data)
        except psycopg.DataError:
            stored = self.beyond(bytes(data))
            if stored is None:
                raise
            return stored

    def beyond(self, text: bytes) -> int | None:
        raise NotImplementedError


class _DateLoader(_BeyondPython):
    infinity = DATE_INFINITY

    def beyond(self, text: bytes) -> int | None:
        match = _DATE.fullmatch(text)
        if match is None:
            return None
        year, month, day, bc = match.groups()
        days = days_from_civil(_year(year, bc), int(month), int(day))
        return days if abs(days) < DATE_INFINITY else None


class _TimestampLoader(_BeyondPython):
    """``timestamp`` and ``timestamptz`` (its offset subtracted: Arrow's are UTC)."""

    infinity = TIMESTAMP_INFINITY

    def beyond(self, text: bytes) -> int | None:
        match = _TIMESTAMP.fullmatch(text)
        if match is None:
            return None
        year, month, day, hour, minute, second, fraction, sign, *offset, bc = match.groups()
        seconds = (int(hour) * 60 + int(minute)) * 60 + int(second)
        if sign is not None:
            hours, minutes, rest = (int(part or 0) for part in offset)
            seconds -= (1 if sign == b"+" else -1) * ((hours * 60 + minutes) * 60 + rest)
        microseconds = days_from_civil(_year(year, bc), int(month), int(day)) * _DAY_US
        microseconds += seconds * 1_000_000 + int((fraction or b"0").ljust(6, b"0"))
        return microseconds if abs(microseconds) < TIMESTAMP_INFINITY else None


class _TimeLoader(_BeyondPython):
    def beyond(self, text: bytes) -> int | None:
        return _DAY_US if text == b"24:00:00" else None  # PostgreSQL's end of day


#: The loaders of the types whose values can be beyond Python's (see :class:`_BeyondPython`).
_BEYOND_PYTHON: dict[str, type[_BeyondPython]] = {
    "date": _DateLoader,
    "timestamp": _TimestampLoader,
    "timestamptz": _TimestampLoader,
    "time": _TimeLoader,
}


class _Fetcher:
    """A server-side cursor's rows, a batch at a time, as its ``fetchmany`` gives them, but
    for dates and times Python has none for.

    Each batch is fetched (``FETCH FORWARD``, text, as the cursor itself would) by a client
    cursor with psycopg's own loaders, its C ones: a loader written in Python costs a call
    per value (measured: a fifth more time for a result of dates and timestamps). When a
    batch holds a value those refuse (``infinity``, a year past 9999), the batch the server
    sent is loaded again with the :class:`_BeyondPython` loaders, and so is every batch after
    it (a column of open-ended validity dates is ``infinity`` throughout).
    """

    def __init__(self, cursor: psycopg.ServerCursor[Any]) -> None:
        self._name = pgsql.Identifier(cursor.name)
        self._client = cursor.connection.cursor()
        self._beyond = False

    def fetch(self, rows: int) -> list[tuple[Any, ...]]:
        # a new query object each time: psycopg keeps a cursor's loaders for the same one, and
        # after a refusal the next FETCH must take the loaders registered since
        query = pgsql.SQL("FETCH FORWARD {} FROM {}").format(pgsql.Literal(rows), self._name)
        self._client.execute(query, prepare=False)
        if not self._beyond:
            try:
                return self._client.fetchall()
            except psycopg.DataError as exc:
                if exc.sqlstate is not None:  # the server's error, not a loader's
                    raise
            self._beyond = True
            for name, loader in _BEYOND_PYTHON.items():  # for the next batches' FETCH
                self._client.adapters.register_loader(name, loader)
            result = self._client.pgresult  # this batch's, already here: loaded again
            assert result is not None
            transformer = psycopg.adapt.Transformer(self._client)
            transformer.set_pgresult(result)
            return transformer.load_rows(0, result.ntuples, tuple)
        return self._client.fetchall()

    def close(self) -> None:
        self._client.close()


_PREPARE = "PREPARE loopwright_check AS "
_DECLARE = re.compile(rf'DECLARE "{CURSOR_NAME}" CURSOR FOR |PREPARE loopwright_check AS ')
_EXCERPT = re.compile(r"(LINE 1: )(\.\.\.)?(.*?)(\.\.\.)?$")


def _without_cursor(message: str, sent: tuple[str, str] | None = None) -> str:
    """The server's message with our ``DECLARE ... CURSOR FOR`` (or ``PREPARE ... AS``) taken
    out of the quoted statement (and its caret moved back), so it points into the user's own
    SQL. ``sent`` is (what went before the SQL, the SQL): a long first line is quoted cut
    (``...RE loopwright_check AS SELECT ...``), and only the statement says where it starts."""
    lines = message.splitlines()
    for i, line in enumerate(lines):
        match = _DECLARE.search(line)
        if match is not None:
            start, end = match.start(), match.end()
        elif sent is not None and (cut := _cut_wrapper(line, sent)) is not None:
            start, end = cut
        else:
            continue
        lines[i] = line[:start] + line[end:]
        if i + 1 < len(lines) and lines[i + 1].lstrip().startswith("^"):
            caret = lines[i + 1]
            lines[i + 1] = caret[:start] + caret[end:]
    return "\n".join(lines)


def _cut_wrapper(line: str, sent: tuple[str, str]) -> tuple[int, int] | None:
    """Where, in a ``LINE 1: ...`` excerpt cut at its start, the tail of our wrapper is:
    (start, end) in ``line``, the ``...`` included (the user's SQL starts right there)."""
    match = _EXCERPT.match(line)
    if match is None or match.group(2) is None:
        return None
    prefix, sql = sent
    quoted = match.group(3)
    found = (prefix + sql).split("\n", 1)[0].find(quoted)
    if found < 0 or found >= len(prefix):
        return None
    return match.start(2), match.start(3) + len(prefix) - found


def _where(dsn: str) -> str:
    """Host, port and database of a DSN, without credentials (for messages)."""
    try:
        params = conninfo_to_dict(dsn)
    except psycopg.Error:
        try:
            return urlsplit(dsn).hostname or "the configured server"
        except ValueError:  # not even a URL's shape ("[bad" is an unclosed IPv6 address)
            return "the configured server"
    host = params.get("host") or "localhost"
    port = params.get("port") or "5432"
    database = params.get("dbname") or params.get("user") or ""
    return f"{host}:{port}/{database}"
