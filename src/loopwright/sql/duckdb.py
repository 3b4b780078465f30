"""The DuckDB backend: an embedded database file, opened read-only.

The file is opened with ``read_only=True`` and external access switched off
(``enable_external_access=false``, extension auto-install/auto-load off, configuration
locked), so even a statement the parser check misjudged can neither write the database nor
read or write files, install extensions or reach the network. One connection serves every
query; each query gets its own cursor, so concurrent queries run side by side and a timeout
interrupts only its own. Results come out as a stream of Arrow record batches (DuckDB's
streaming result), never materialised whole.

A few DuckDB types come out of its Arrow export wrong or not at all: ``UHUGEINT`` values of
2^127 and more (as ``-1``...), ``BIT`` (its internal bytes), ``TIME WITH TIME ZONE`` (the
offset dropped) and ``BIGNUM``/``VARINT`` (an opaque extension type no writer takes). Columns
of those types are read as DuckDB's own text (``10101``, ``12:00:00+02``, every digit), and
nested columns holding them as JSON (``to_json``); the column keeps its DuckDB type in the
report. Other queries run exactly as written.

Integers wider than 64 bits are exact in both files: a ``HUGEINT`` or ``UHUGEINT`` column
(``SUM`` of integers is one) is a ``DECIMAL(38,0)`` where its first batch's values all fit
one, else their digits as text (DuckDB's Arrow export makes a ``HUGEINT`` of 39 digits a
decimal(38, 0) all the same, which a Parquet file must not hold); a later value of 39
digits is a clear error saying to cast the column to ``VARCHAR``.

``:memory:`` opens an empty in-memory database, writable because DuckDB cannot open one
read-only; it is for trying the tool out, and the parser check is its only lock.
"""

from __future__ import annotations

import contextlib
import os
import stat
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import duckdb
from duckdb.sqltypes import DuckDBPyType

from loopwright.sql.base import (
    DEFAULT_TIMEOUT_S,
    ArrowStream,
    Interrupter,
    QueryRefused,
    ResultFileError,
    SQLBackend,
    SQLError,
    UnknownTable,
    UnparsableQuery,
    accepted_elsewhere,
    repeated_until,
    run_in_worker,
)

if TYPE_CHECKING:
    import pyarrow as pa  # type: ignore[import-untyped]

#: Settings that make the connection unable to touch anything but its own database file.
READ_ONLY_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    "enable_external_access": False,
    "autoinstall_known_extensions": False,
    "autoload_known_extensions": False,
    "lock_configuration": True,
}


def open_read_only(database: str | os.PathLike[str]) -> duckdb.DuckDBPyConnection:
    """A direct DuckDB connection to ``database`` with the SQL tool's read-only settings.

    Within one process DuckDB shares one instance per database file, and refuses a second
    connection with other settings; code that queries the same file next to the tool (a
    benchmark, a prompt builder) opens it with this. Its queries cannot touch files either.
    """
    return duckdb.connect(os.fspath(database), read_only=True, config=dict(READ_ONLY_CONFIG))


#: The first bytes of a SQLite database file.
_SQLITE_MAGIC = b"SQLite format 3\x00"


def file_problem(path: str) -> str | None:
    """Why ``path`` cannot be opened as a DuckDB database file, as the end of a sentence
    that starts with the path (``None`` when it may be one: DuckDB has the last word).

    Missing files, directories and other non-files are named as such; a SQLite database is
    recognised by its header (DuckDB would try to load its SQLite extension for it, which
    the tool's locked-down connection refuses with a message about extensions).
    """
    try:
        info = os.stat(path)
    except FileNotFoundError:
        return "does not exist"
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if stat.S_ISDIR(info.st_mode):
        return "is a directory, not a DuckDB database file"
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file, so not a DuckDB database file"
    try:
        with open(path, "rb") as handle:
            head = handle.read(len(_SQLITE_MAGIC))
    except OSError as exc:
        return f"cannot be read ({exc.strerror or exc})"
    if head == _SQLITE_MAGIC:
        return (
            "is a SQLite database, not DuckDB: the SQL tool reads DuckDB files, PostgreSQL "
            "and BigQuery; copy its tables into a DuckDB file first (DuckDB's sqlite "
            "extension reads SQLite files)"
        )
    return None


def _open_advice(message: str) -> str:
    """What to do about DuckDB's ``message`` on opening a database file ("" where DuckDB's
    own words say it)."""
    if "Could not set lock" in message or "Conflicting lock" in message:
        return (
            " Another process has it open for writing: close that connection first, or give "
            "the SQL tool a copy of the file."
        )
    if "not a valid DuckDB database file" in message or "Corrupt database file" in message:
        return " The file is damaged or not a DuckDB database: give the SQL tool one that is."
    return ""


_SCHEMA_SQL = """
SELECT table_schema, table_name, column_name, data_type, current_schema()
FROM information_schema.columns
WHERE table_catalog = current_database()
  AND table_schema NOT IN ('information_schema', 'pg_catalog')
ORDER BY table_schema, table_name, ordinal_position
"""


class DuckDBBackend(SQLBackend):
    """A DuckDB database file, queried read-only.

    ``database`` is the path of the file (it must exist: a read-only connection cannot
    create it) or ``":memory:"``. ``config`` adds DuckDB settings such as
    ``{"memory_limit": "2GB", "threads": 2}``; :data:`READ_ONLY_CONFIG` always wins.
    ``batch_rows`` is the most rows of the Arrow batches the result is streamed in; a result
    of wide rows (hundreds of columns, nested values) gets fewer a batch, about
    :data:`BATCH_BYTES` (see :func:`batch_rows_for`).
    """

    dialect = "duckdb"
    name = "DuckDB"

    def __init__(
        self,
        database: str | os.PathLike[str] = ":memory:",
        *,
        config: Mapping[str, str | bool | int | float] | None = None,
        batch_rows: int = 131_072,
    ) -> None:
        raw = os.fspath(database)
        self.in_memory = raw in ("", ":memory:")
        self.database = ":memory:" if self.in_memory else os.path.abspath(os.path.expanduser(raw))
        self.config = dict(config or {})
        for key in self.config:  # it would override read_only=True: the file could be written
            if key.lower() == "access_mode":
                raise ValueError(
                    f"DuckDB setting {key!r} cannot be given: the SQL tool opens databases "
                    "read-only, whatever the settings say."
                )
        self.batch_rows = batch_rows
        self._lock = threading.Lock()
        self._connection: duckdb.DuckDBPyConnection | None = None
        self._closed = False
        # the statement check() judged, per worker thread, for _open() to run as it is
        self._judged = threading.local()

    def __repr__(self) -> str:
        return f"DuckDBBackend({self.database!r})"

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        """A new cursor on the shared connection (opened on first use)."""
        with self._lock:
            if self._closed:
                raise SQLError("This DuckDB backend is closed; create a new one.")
            if self._connection is None:
                self._connection = self._connect()
            return self._connection.cursor()

    def _connect(self) -> duckdb.DuckDBPyConnection:
        problem = None if self.in_memory else file_problem(self.database)
        if problem == "does not exist":
            raise SQLError(
                f"The DuckDB database {self.database} does not exist; create it first "
                "(the SQL tool opens databases read-only, so it cannot create one)."
            )
        if problem is not None:
            raise SQLError(f"Cannot open {self.database}: it {problem}.")
        config: dict[str, str | bool | int | float | list[str]] = {
            **self.config,
            **READ_ONLY_CONFIG,
        }
        try:
            return duckdb.connect(self.database, read_only=not self.in_memory, config=config)
        except duckdb.ConnectionException as exc:
            if "different configuration" not in str(exc):
                raise SQLError(
                    f"Could not open the DuckDB database {self.database}: {exc}"
                ) from exc
            raise SQLError(
                f"The DuckDB database {self.database} is already open in this process with "
                "other settings (DuckDB shares one instance per file): close that connection "
                "first, or open it with loopwright.sql.duckdb.open_read_only()."
            ) from exc
        except duckdb.Error as exc:
            message = str(exc).strip().rstrip("!.")
            raise SQLError(
                f"Could not open the DuckDB database {self.database} read-only: {message}."
                f"{_open_advice(message)}"
            ) from exc

    def check(self, sql: str) -> None:
        """DuckDB's own parser first (its syntax errors are the clearest), then sqlglot,
        then DuckDB's verdict on the statement type: exactly one ``SELECT``.

        The statement DuckDB judged is kept for :meth:`_open` in the same thread, which runs
        that very statement: DuckDB parses the query once, and what runs is what was judged.
        """
        self._judged.query = None
        cursor = self._cursor()
        try:
            statements = cursor.extract_statements(sql)
        except duckdb.ParserException as exc:
            raise SQLError(f"DuckDB: {str(exc).strip()}") from None
        finally:
            cursor.close()
        super().check(sql)
        if len(statements) == 1 and statements[0].type == duckdb.StatementType.MULTI:
            raise QueryRefused(  # MULTI is DuckDB's PIVOT without an IN list
                "DuckDB runs a PIVOT without an IN list as several statements (it first "
                "reads the column's distinct values); list them: PIVOT t ON col IN ('a', "
                "'b') USING ..., or use GROUP BY with CASE (or FILTER) instead."
            )
        if len(statements) != 1 or statements[0].type != duckdb.StatementType.SELECT:
            kind = statements[0].type.name if statements else "empty"
            raise QueryRefused(
                f"DuckDB reads this as a {kind} statement, not a single query; the SQL tool "
                "runs one read-only query (SELECT, WITH ... SELECT, UNION, VALUES)."
            )
        self._judged.query = (sql, statements[0])

    def _syntax_error(self, sql: str, unparsable: UnparsableQuery) -> SQLError:
        # only reached from check(), after DuckDB's own parser has read the SQL
        return accepted_elsewhere("DuckDB", sql, unparsable)

    @contextlib.contextmanager
    def _open(self, sql: str, stop: Interrupter, timeout: float) -> Iterator[ArrowStream]:
        judged, self._judged.query = getattr(self._judged, "query", None), None
        statement: str | duckdb.Statement = sql
        if judged is not None and judged[0] is sql:
            statement = judged[1]
        cursor = self._cursor()
        finished = threading.Event()
        try:
            stop.on_stop(repeated_until(finished, cursor.interrupt))
            relation = cursor.sql(statement)
            if relation is None:  # not a query after all: refused before it could run
                raise QueryRefused("The statement returned no result; run a SELECT query.")
            types = relation.types
            columns = [(n, _type_name(t)) for n, t in zip(relation.columns, types, strict=True)]
            rows = batch_rows_for(types, self.batch_rows)
            reader = _as_text_where_lossy(relation).to_arrow_reader(rows)
            big = [i for i, kind in enumerate(types) if kind.id in _BIG_INTEGERS]
            if big:
                schema, batches = _big_integers_sized(reader, big)
                yield ArrowStream(columns, schema, batches)
            else:
                yield ArrowStream(columns, reader.schema, _batches(reader))
        finally:
            finished.set()
            cursor.close()

    def _error(self, exc: Exception) -> SQLError:
        message = f"DuckDB: {str(exc).strip()}"
        if isinstance(exc, duckdb.CatalogException) and "Table with name" in message:
            return UnknownTable(message)
        return SQLError(message)

    async def schema(self) -> dict[str, list[tuple[str, str]]]:
        return await self._schema(DEFAULT_TIMEOUT_S)

    async def tables(self, timeout: float | None = None) -> list[str]:  # noqa: ASYNC109
        return sorted(await self._schema(timeout or DEFAULT_TIMEOUT_S))

    async def _schema_within(
        self,
        timeout: float,  # noqa: ASYNC109
    ) -> dict[str, list[tuple[str, str]]]:
        return await self._schema(timeout)

    async def _schema(
        self,
        timeout: float,  # noqa: ASYNC109 - interrupts the read itself
    ) -> dict[str, list[tuple[str, str]]]:
        """:meth:`schema`, interrupted after ``timeout`` seconds (``TimeoutError``)."""
        stop = Interrupter()

        def read() -> dict[str, list[tuple[str, str]]]:
            cursor = self._cursor()
            finished = threading.Event()
            try:
                stop.on_stop(repeated_until(finished, cursor.interrupt))
                rows = cursor.execute(_SCHEMA_SQL).fetchall()
            finally:
                finished.set()
                cursor.close()
            tables: dict[str, list[tuple[str, str]]] = {}
            for schema, table, column, kind, default_schema in rows:
                key = table if schema == default_schema else f"{schema}.{table}"
                tables.setdefault(key, []).append((column, kind))
            return tables

        return await run_in_worker(read, stop, timeout)

    async def aclose(self) -> None:
        with self._lock:
            self._closed = True
            connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(duckdb.Error):  # a query still winding down
                connection.close()


def _type_name(kind: DuckDBPyType) -> str:
    """How DuckDB names ``kind``: ``INTEGER``, ``VARCHAR[]``... and ``NULL`` for the type of a
    bare ``NULL``, which DuckDB spells ``"NULL"`` (quoted, as it is a keyword)."""
    name = str(kind)
    return "NULL" if name == '"NULL"' else name


#: DuckDB type ids whose Arrow export is wrong or unwritable (see the module's docstring).
_LOSSY_TYPES = frozenset({"bit", "uhugeint", "time with time zone", "bignum", "varint"})


def _holds_lossy(kind: DuckDBPyType) -> bool:
    """Whether ``kind`` is, or (nested) contains, a type in :data:`_LOSSY_TYPES`."""
    if kind.id in _LOSSY_TYPES:
        return True
    if kind.id not in ("list", "array", "struct", "map", "union"):
        return False
    return any(
        isinstance(child, DuckDBPyType) and _holds_lossy(child) for _, child in kind.children
    )


def _as_text_where_lossy(relation: duckdb.DuckDBPyRelation) -> duckdb.DuckDBPyRelation:
    """``relation`` with its lossy columns as text (by position: names may repeat), or
    ``relation`` itself when it has none."""
    kinds = relation.types
    if not any(map(_holds_lossy, kinds)):
        return relation
    items = []
    for position, (name, kind) in enumerate(zip(relation.columns, kinds, strict=True), 1):
        alias = '"' + name.replace('"', '""') + '"'
        if kind.id in _LOSSY_TYPES:
            items.append(f"CAST(#{position} AS VARCHAR) AS {alias}")
        elif _holds_lossy(kind):
            items.append(f"CAST(to_json(#{position}) AS VARCHAR) AS {alias}")
        else:
            items.append(f"#{position} AS {alias}")
    return relation.project(", ".join(items))


#: About how many bytes an Arrow batch of a result holds (:func:`batch_rows_for`): a batch of
#: 131,072 rows of 3,000 numbers was 3 GB, held at once while it was written.
BATCH_BYTES = 64 * 1024 * 1024
#: Bytes a value of each type takes in Arrow; other types (text, blobs, lists, structs...)
#: are counted at :data:`_OTHER_BYTES`, a guess: their sizes are known only once read.
_TYPE_BYTES = {
    "boolean": 1,
    "tinyint": 1,
    "utinyint": 1,
    "smallint": 2,
    "usmallint": 2,
    "integer": 4,
    "uinteger": 4,
    "float": 4,
    "date": 4,
    "bigint": 8,
    "ubigint": 8,
    "double": 8,
    "time": 8,
    "timestamp": 8,
    "timestamp with time zone": 8,
    "decimal": 16,
    "hugeint": 16,
    "uuid": 16,
    "interval": 16,
}
_OTHER_BYTES = 64
#: The fewest rows a batch is made of, however wide the rows.
_MIN_BATCH_ROWS = 1024


def batch_rows_for(types: Sequence[DuckDBPyType | str], most: int) -> int:
    """Rows an Arrow batch of a result whose columns have DuckDB's ``types`` (or their type
    ids) is made of: ``most``, or fewer for wide rows, so that a batch holds about
    :data:`BATCH_BYTES`."""
    width = sum(map(_value_bytes, types))
    if width * most <= BATCH_BYTES:
        return most
    return min(most, max(_MIN_BATCH_ROWS, BATCH_BYTES // width))


def _value_bytes(kind: DuckDBPyType | str) -> int:
    """About how many bytes a value of ``kind`` takes in Arrow: a fixed-size array its
    elements, a struct or a union its fields, a list or a map at least one element."""
    if isinstance(kind, str):
        return _TYPE_BYTES.get(kind, _OTHER_BYTES)
    if kind.id not in ("array", "struct", "union", "list", "map"):
        return _TYPE_BYTES.get(kind.id, _OTHER_BYTES)
    inside = 0
    count = 1  # an array's size
    for _, child in kind.children:
        if isinstance(child, DuckDBPyType):
            inside += _value_bytes(child)
        elif isinstance(child, int):
            count = child
    if kind.id in ("list", "map"):  # of any length
        return max(_OTHER_BYTES, inside)
    return count * inside


#: Integer types wider than 64 bits: ``HUGEINT`` (a decimal(38, 0) in DuckDB's Arrow, even
#: for its values of 39 digits) and ``UHUGEINT`` (read as text: see :data:`_LOSSY_TYPES`).
_BIG_INTEGERS = frozenset({"hugeint", "uhugeint"})
#: The first integer a ``DECIMAL(38,0)`` cannot hold.
_DECIMAL_LIMIT = 10**38


def _big_integers_sized(
    reader: pa.RecordBatchReader, columns: list[int]
) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """The result's schema and batches, with its ``HUGEINT`` and ``UHUGEINT`` columns (at
    ``columns``) each a ``DECIMAL(38,0)`` where its first batch's values all fit one, else
    their exact digits as text: DuckDB's Arrow export makes a ``HUGEINT`` of 39 digits (up to
    2^127) a decimal(38, 0) all the same, which a Parquet file must not hold. A later value
    that does not fit the decimal is a clear error. Vectorised, a batch at a time."""
    import pyarrow as pa

    try:
        first: pa.RecordBatch | None = reader.read_next_batch()
    except StopIteration:
        first = None
    decimal = pa.decimal128(38, 0)
    schema = reader.schema
    for i in columns:
        fits = first is None or _fits_decimal(first.column(i))
        schema = schema.set(i, schema.field(i).with_type(decimal if fits else pa.string()))

    def batches() -> Iterator[pa.RecordBatch]:
        try:
            for batch in [first] if first is not None else []:
                yield _sized(batch, schema, columns)
            for batch in reader:
                yield _sized(batch, schema, columns)
        finally:
            reader.close()

    return schema, batches()


def _fits_decimal(column: pa.Array) -> bool:
    """Whether each integer of ``column`` (decimal(38, 0) or text) fits a ``DECIMAL(38,0)``."""
    import pyarrow as pa
    import pyarrow.compute as pc  # type: ignore[import-untyped]

    from loopwright.sql.output import decimals_from_text

    if pa.types.is_string(column.type):
        try:
            decimals_from_text(column, pa.decimal128(38, 0))
        except pa.ArrowInvalid:
            return False
        return True
    extremes = pc.min_max(column)
    low, high = extremes["min"].as_py(), extremes["max"].as_py()
    return low is None or (low > -_DECIMAL_LIMIT and high < _DECIMAL_LIMIT)


def _sized(batch: pa.RecordBatch, schema: pa.Schema, columns: list[int]) -> pa.RecordBatch:
    """``batch`` with its big integer ``columns`` as ``schema`` has them; a value a
    ``DECIMAL(38,0)`` column cannot hold is a :class:`ResultFileError`."""
    import pyarrow as pa

    arrays: list[Any] = list(batch.columns)
    for i in columns:
        field = schema.field(i)
        if pa.types.is_decimal(field.type) and not _fits_decimal(arrays[i]):
            raise ResultFileError(
                f"The query ran, but column {field.name} could not be saved: it holds an "
                "integer of 39 digits, more than its type in the files, DECIMAL(38,0), set "
                f"by its first rows, has room for. Cast it to VARCHAR in the query (e.g. "
                f"CAST({field.name} AS VARCHAR)) and run it again."
            )
        arrays[i] = arrays[i].cast(field.type)
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def _batches(reader: pa.RecordBatchReader) -> Iterator[pa.RecordBatch]:
    try:
        yield from reader
    finally:
        reader.close()
