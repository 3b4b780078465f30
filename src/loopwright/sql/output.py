"""Writing a query's result: Arrow record batches streamed into a CSV and a Parquet file.

Batches are gathered into pieces of about :data:`PIECE_ROWS` rows (fewer where the rows are
wide: at most about :data:`PIECE_BYTES`), each written as it fills and then dropped, so memory
stays at a few pieces whatever the result's size. The CSV is
written by Polars, the fastest CSV writer at hand (a piece of a few rows is written in
Polars' format by :mod:`loopwright.sql.csvtext`, which costs less for so few); the Parquet
file by pyarrow, in a second thread fed through a short queue, so the two files are written
side by side. A small result (at most :data:`INLINE_ROWS` rows, all there before the first
piece fills: the usual aggregate) is written in the calling thread instead, CSV then Parquet,
since handing a few rows to another thread costs more than writing them. Both files go to
temporary names in the target directory and are renamed into place only when complete
(:mod:`loopwright.sql.files`): a failed or interrupted query leaves no half-written file and
keeps any earlier file of the same name.

CSV has no nested or binary values, so those columns are written to the CSV as text: nested
values (lists, structs, maps) as JSON, binary as hex, and 256-bit decimals (BigQuery's
``BIGNUMERIC``; Polars takes 128-bit ones) as their digits. Parquet has no intervals and no
unions, at any depth: intervals are written as ISO 8601 durations to both files (inside
lists, structs and maps too, which keep their shape in Parquet), and unions, with whatever
holds them, as JSON to both. A value neither writer can hold is a :class:`ResultFileError`
that says to cast it to text.

Dates and times Polars cannot write (dates and timestamps outside the years 1 to 9999,
DuckDB's and PostgreSQL's ``infinity`` and ``-infinity``, a time of ``24:00:00``) are written
as DuckDB's own ``COPY ... TO`` writes them: the Parquet file keeps their stored values (a
date of ``infinity`` is date32's largest value, as in DuckDB's Arrow and Parquet), and the
CSV has DuckDB's text: ``infinity``, ``-infinity``, ``294247-01-10``, ``0044-03-15 (BC)``,
``0044-03-15 (BC) 12:34:56.5``, ``10000-01-01 00:00:00+00`` (a timestamp with a time zone,
in its column's zone), ``24:00:00``. Only those values: the rest of the column keeps Polars'
text (``2024-01-01T10:00:00.000000``). A piece holding none is written as any other (one
vectorised minimum and maximum per column says so); the preview shows the same text.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import errno
import functools
import json
import math
import os
import queue
import threading
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from typing import IO, TYPE_CHECKING, Any

import polars as pl
import pyarrow as pa  # type: ignore[import-untyped]
import pyarrow.compute as pc  # type: ignore[import-untyped]
import pyarrow.parquet as pq  # type: ignore[import-untyped]
from polars.exceptions import PanicException

from loopwright.sql.base import ResultFileError, SQLError, Written
from loopwright.sql.csvtext import SMALL_CELLS, small_csv
from loopwright.sql.files import open_beside, replace_together, sweep_later
from loopwright.sql.temporal import DATE_INFINITY, PER_SECOND, TIMESTAMP_INFINITY, duckdb_text
from loopwright.summaries import error_line

if TYPE_CHECKING:
    from loopwright.sql.base import Interrupter

#: Rows written at a time: drivers hand over small batches (DuckDB's can be 2,048 rows), and
#: each write has a fixed cost (and makes a Parquet row group), so batches are gathered into
#: pieces of about this many rows. Memory holds a few pieces at most.
PIECE_ROWS = 262_144
#: Bytes of Arrow data a piece holds at most (give or take a batch): wide rows (clinical
#: notes of a few KB) made pieces of 262,144 rows a gigabyte or more each, and 600,000 rows of
#: 2 KB peaked at 1.4 GB of memory. A usual row of a few columns (50 to 100 bytes) fills
#: :data:`PIECE_ROWS` well before this.
PIECE_BYTES = 32 * 1024 * 1024
#: Rows of a whole result small enough to write in the calling thread: below about this many
#: the Parquet thread's start and hand-over cost more than writing the two files one after
#: the other (measured: the crossover is between 1,000 and 5,000 rows of 7 columns).
INLINE_ROWS = 2_048
#: Pieces waiting for the Parquet writer; bounds memory when it falls behind.
_PARQUET_QUEUE = 2
#: Parquet compression: zstd files are a third of snappy's here, written about as fast.
_COMPRESSION = "zstd"
_DONE = object()

Converter = Callable[[Any], pa.Array]


def write_result(
    schema: pa.Schema,
    batches: Iterator[pa.RecordBatch],
    csv_path: str,
    parquet_path: str | None,
    *,
    max_rows: int,
    preview_rows: int,
    stop: Interrupter,
    piece_rows: int = PIECE_ROWS,
    piece_bytes: int = PIECE_BYTES,
    inline_rows: int = INLINE_ROWS,
    text_cast: str = "column::VARCHAR",
) -> Written:
    """Stream ``batches`` into the files; keep at most ``max_rows`` rows and a preview.

    ``text_cast`` shows, in the database's SQL, how to cast a column to text: the advice
    when a writer refuses a value.
    """
    if not schema.names:  # PostgreSQL's SELECT FROM t: rows without columns, lost as Arrow
        raise ResultFileError(
            "The query ran, but it returned no columns, so there is nothing to save: select "
            "at least one column and run it again."
        )
    names = unique_names(schema.names)
    renamed = names != schema.names
    named = (
        pa.schema([field.with_name(name) for field, name in zip(schema, names, strict=True)])
        if renamed
        else schema
    )
    csv_plan = {i: c for i, field in enumerate(schema) if (c := _csv_converter(field.type))}
    dated = {i: b for i, field in enumerate(schema) if (b := _bounds(field.type)) is not None}
    parquet_plan = {i: c for i, field in enumerate(schema) if (c := _parquet_converter(field.type))}
    parquet_schema = _converted_schema(named, parquet_plan)
    csv_temp: str | None = None
    parquet_temp: str | None = None
    # open (and so locked, see files.sweep) until the files are in place or removed
    held: list[IO[bytes]] = []
    parquet: _ParquetFile | _ParquetThread | None = None
    preview: list[tuple[Any, ...]] = []
    pending: list[pa.RecordBatch] = []
    beyond: set[int] = set()  # columns of the pending batches holding values Polars cannot write
    pending_rows = pending_bytes = written = 0
    truncated = False
    try:
        if parquet_path:
            parquet_temp, parquet_lock = open_beside(parquet_path)  # pyarrow writes it by name
            held.append(parquet_lock)
        csv_temp, csv_file = open_beside(csv_path)
        held.append(csv_file)
        # the CSV stays open (so locked) until it is in place; flushed before the rename

        def flush(*, last: bool) -> None:
            nonlocal parquet, pending, pending_rows, pending_bytes, beyond
            piece = pa.Table.from_batches(pending, schema=named)
            first = written == pending_rows
            if parquet_temp is not None and parquet is None:
                # the whole result, and small: no thread; otherwise one for the Parquet file
                if last and first and piece.num_rows <= inline_rows:
                    parquet = _ParquetFile(parquet_temp, parquet_schema)
                else:
                    parquet = _ParquetThread(parquet_temp, parquet_schema)
            if parquet is not None:
                parquet.put(_convert(piece, parquet_plan))
            plan = csv_plan | dict.fromkeys(beyond, _temporal_as_text) if beyond else csv_plan
            _write_csv(csv_file, piece, plan, header=first)
            pending, pending_rows, pending_bytes, beyond = [], 0, 0, set()

        for batch in _pulled(batches):
            stop.check()
            if batch.num_rows == 0:
                continue
            room = max_rows - written
            if room <= 0:
                truncated = True
                break
            if batch.num_rows > room:
                batch, truncated = batch.slice(0, room), True
            if renamed:
                batch = pa.RecordBatch.from_arrays(batch.columns, schema=named)
            outside = _outside(batch, dated) if dated else ()
            beyond.update(outside)
            if len(preview) < preview_rows:
                preview.extend(_rows(batch.slice(0, preview_rows - len(preview)), outside))
            pending.append(batch)
            pending_rows += batch.num_rows
            written += batch.num_rows
            if truncated:
                break
            # its buffers' sizes, a sum over a few buffers (nbytes walks the offsets: 50
            # times slower); the drivers' batches own their buffers
            pending_bytes += batch.get_total_buffer_size()
            if pending_rows >= piece_rows or pending_bytes >= piece_bytes:
                flush(last=False)
        stop.check()
        if pending or written == 0:  # the last piece; with no rows, the header alone
            flush(last=True)
        csv_file.flush()
        if parquet is not None:
            parquet.finish()
        moves = [(csv_temp, csv_path)]
        if parquet_temp is not None and parquet_path is not None:
            moves.append((parquet_temp, parquet_path))
        replace_together(moves)  # both files or neither, never two queries' files mixed
        csv_temp = parquet_temp = None
        _close(held)
        sweep_later(os.path.dirname(os.path.abspath(csv_path)))  # what killed writers left
    except BaseException as exc:
        if parquet is not None:
            parquet.abort()
        for temp in (csv_temp, parquet_temp):
            if temp is not None:
                with contextlib.suppress(OSError):
                    os.unlink(temp)
        _close(held)
        if isinstance(exc, _SourceFailed):
            raise exc.error from None  # the database's error, not ours
        if isinstance(exc, OSError):
            raise ResultFileError(
                f"The query ran, but its result could not be saved: {exc}. {_save_advice(exc)}"
            ) from exc
        if isinstance(exc, Exception | PanicException) and not isinstance(exc, SQLError):
            # a writer refused a value (a type CSV or Parquet cannot hold): not the database's
            raise ResultFileError(
                f"The query ran, but its result could not be saved as CSV and Parquet: "
                f"{error_line(exc).rstrip('.')}. Cast the columns of unusual types to text in "
                f"the query (e.g. {text_cast}) and run it again."
            ) from exc
        raise
    return Written(names=names, row_count=written, truncated=truncated, preview=preview)


def _close(handles: list[IO[bytes]]) -> None:
    """Close the temporary files' handles (their data is flushed already, or discarded)."""
    for handle in handles:
        with contextlib.suppress(OSError):
            handle.close()
    handles.clear()


def _save_advice(exc: OSError) -> str:
    """What to do about an error saving the result files."""
    if exc.errno in (errno.EISDIR, errno.ENOTEMPTY):
        return "Something that is not a file is in the way: pick another dataset_name."
    if exc.errno == errno.ENOTDIR:  # a file where a directory should be: the workspace's path
        return (
            "A file stands where the workspace's directory (or one above it) should be: make "
            "the workspace a directory, then run it again."
        )
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return "Free some disk space, then run it again."
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return "Check the workspace's permissions, then run it again."
    return "Free some disk space or check the workspace's permissions, then run it again."


class _SourceFailed(Exception):
    """The driver's stream raised (told apart from errors writing the files)."""

    def __init__(self, error: Exception) -> None:
        super().__init__(str(error))
        self.error = error


def _pulled(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
    while True:
        try:
            batch = next(batches)
        except StopIteration:
            return
        except Exception as exc:
            raise _SourceFailed(exc) from exc
        yield batch


def unique_names(names: list[str]) -> list[str]:
    """Column names made unique (``a``, ``a_2``...) and never empty (``column_3`` for the
    third): CSV readers and Polars need that."""
    seen: set[str] = set()
    out: list[str] = []
    for position, given in enumerate(names, start=1):
        name = given or f"column_{position}"
        candidate, n = name, 1
        while candidate in seen:
            n += 1
            candidate = f"{name}_{n}"
        seen.add(candidate)
        out.append(candidate)
    return out


def _write_csv(
    handle: IO[bytes], piece: pa.Table, plan: dict[int, Converter], *, header: bool
) -> None:
    converted = _convert(piece, plan)
    if converted.num_rows * max(converted.num_columns, 1) <= SMALL_CELLS:
        text = small_csv(converted, header=header)  # Polars' format, without its fixed cost
        if text is not None:
            handle.write(text)
            return
    frame = pl.from_arrow(converted, rechunk=False)
    assert isinstance(frame, pl.DataFrame)
    frame.write_csv(handle, include_header=header)


def _convert(piece: pa.Table, plan: dict[int, Converter]) -> pa.Table:
    if not plan:
        return piece
    columns = [plan[i](c) if i in plan else c for i, c in enumerate(piece.columns)]
    # each field keeps its name and nullability (BigQuery's arrays are never null)
    fields = [f.with_type(c.type) for f, c in zip(piece.schema, columns, strict=True)]
    return pa.Table.from_arrays(columns, schema=pa.schema(fields))


def _converted_schema(schema: pa.Schema, plan: dict[int, Converter]) -> pa.Schema:
    """``schema`` with each converted column's type as its converter makes it: text, or
    the same shape with text for intervals."""

    def converted(field: pa.Field, converter: Converter) -> pa.Field:
        if converter is _nested_intervals_as_text:
            return field.with_type(_text_leaves(field.type))
        if converter is _seconds_as_milliseconds:
            return field.with_type(pa.timestamp("ms", field.type.tz))
        return field.with_type(pa.string())

    return pa.schema(
        [converted(field, plan[i]) if i in plan else field for i, field in enumerate(schema)]
    )


def _rows(batch: pa.RecordBatch, outside: Iterable[int] = ()) -> list[tuple[Any, ...]]:
    """The preview's rows; the columns in ``outside`` hold dates or times Python has none
    for, shown as the CSV's text."""
    beyond = set(outside)
    columns = [
        _temporal_values(column) if i in beyond else _python_values(column)
        for i, column in enumerate(batch.columns)
    ]
    return list(zip(*columns, strict=True)) if columns else []


def _python_values(column: pa.Array) -> list[Any]:
    if pa.types.is_interval(column.type):
        return _intervals_as_text(column).to_pylist()  # type: ignore[no-any-return]
    if pa.types.is_duration(column.type):
        return _durations_as_text(column).to_pylist()  # type: ignore[no-any-return]
    if pa.types.is_float32(column.type):  # its shortest digits, as the CSV: 0.1, not 0.100000001
        return _shortest_double(column).to_pylist()  # type: ignore[no-any-return]
    if _is_nested(column.type):
        column = _float32_widened(column)
    if _is_nested(column.type) and _holds(column.type, pa.types.is_interval):
        return [_iso_intervals(v) for v in column.to_pylist()]
    return _pylist(column)


def _pylist(column: pa.Array) -> list[Any]:
    """``column``'s values in Python; where Python cannot hold one (nanoseconds, a local
    time past the year 9999, DuckDB's ``infinity``), its dates and times, nested ones too, as
    pyarrow's text (those outside the years 1 to 9999 as DuckDB's: :func:`_leaf_text`).
    A nested time of 24:00:00 is one too: pyarrow makes it midnight."""
    try:
        if _nested_past_midnight(column):
            raise ValueError("a time of day Python has none for")
        return column.to_pylist()  # type: ignore[no-any-return]
    except (ValueError, OverflowError):
        as_text = _text_leaves(column.type, _is_temporal)
        if as_text is None:  # a shape not rebuilt here: the writers' error says what to do
            raise
        return _map_leaves(column, _is_temporal, _leaf_text).to_pylist()  # type: ignore[no-any-return]


def _nested_past_midnight(column: pa.Array) -> bool:
    kind = column.type
    if not (_is_nested(kind) and _holds(kind, pa.types.is_time)):
        return False
    return any(len(_beyond(leaf)[1]) for leaf in _leaves(column, pa.types.is_time))


def _is_temporal(kind: pa.DataType) -> bool:
    return bool(pa.types.is_temporal(kind))


# --- dates and times Polars cannot write: DuckDB's text ---------------------------------

#: Days from 1970-01-01 to 0001-01-01 and to 9999-12-31: the dates Polars and Python hold.
_FIRST_DAY, _LAST_DAY = -719_162, 2_932_896
#: Polars' CSV format for its timestamps by unit (seconds become milliseconds in Polars; a
#: time zone adds ``%z``), for dates and for times (always nanoseconds in Polars).
_POLARS_FORMAT = {unit: f"%Y-%m-%dT%H:%M:%S%.{n}f" for unit, n in (("ms", 3), ("us", 6), ("ns", 9))}
_POLARS_DATE, _POLARS_TIME = "%Y-%m-%d", "%H:%M:%S%.9f"


def _bounds(kind: pa.DataType) -> tuple[int, int] | None:
    """The first and last stored value of a date, time or timestamp type that Polars
    writes (``None``: not such a type). Outside the years 1 to 9999 its CSV writer panics
    (DuckDB's ``infinity`` is date32's largest value), and it writes a time of 24:00:00
    (DuckDB's and PostgreSQL's end of day) as an empty field. Nanosecond timestamps all fall
    in 1677 to 2262, but for DuckDB's ``infinity`` and ``-infinity``."""
    if pa.types.is_date32(kind):
        return _FIRST_DAY, _LAST_DAY
    if pa.types.is_timestamp(kind):
        if kind.unit == "ns":
            return -TIMESTAMP_INFINITY + 1, TIMESTAMP_INFINITY - 1
        per_day = 86_400 * PER_SECOND[kind.unit]
        return _FIRST_DAY * per_day, (_LAST_DAY + 1) * per_day - 1
    if pa.types.is_time(kind):
        return 0, 86_400 * PER_SECOND[kind.unit] - 1
    return None


def _stored(column: pa.Array | pa.ChunkedArray) -> pa.Array | pa.ChunkedArray:
    """A date, time or timestamp column's stored numbers."""
    return column.cast(pa.int32() if column.type.bit_width == 32 else pa.int64())


def _outside(batch: pa.RecordBatch, bounds: dict[int, tuple[int, int]]) -> list[int]:
    """The columns (by position, among ``bounds``') holding a value outside their bounds:
    one vectorised minimum and maximum each."""
    found = []
    for i, (first, last) in bounds.items():
        extremes = pc.min_max(_stored(batch.column(i)))
        low, high = extremes["min"].as_py(), extremes["max"].as_py()
        if low is not None and (low < first or high > last):
            found.append(i)
    return found


def _beyond(column: pa.Array) -> tuple[pa.Array, pa.Array]:
    """Where ``column`` (a date, time or timestamp) holds values Polars cannot write (a
    mask, false for nulls), and those values as DuckDB's text, in order."""
    first, last = _bounds(column.type) or (0, -1)
    stored = _stored(column)
    mask = pc.fill_null(pc.or_(pc.less(stored, first), pc.greater(stored, last)), False)
    return mask, _duckdb_texts(pc.filter(stored, mask), column.type)


def _duckdb_texts(stored: pa.Array, kind: pa.DataType) -> pa.Array:
    """Stored dates or times as DuckDB's text: ``infinity`` and ``-infinity`` at once (a
    column of open-ended validity dates may hold nothing else), the others one by one."""
    infinity = (
        DATE_INFINITY
        if pa.types.is_date32(kind)
        else TIMESTAMP_INFINITY
        if pa.types.is_timestamp(kind)
        else None
    )
    if infinity is None:
        return pa.array([duckdb_text(v, kind) for v in stored.to_pylist()], pa.string())
    texts = pc.if_else(
        pc.equal(stored, infinity),
        "infinity",
        pc.if_else(pc.equal(stored, -infinity), "-infinity", pa.scalar(None, pa.string())),
    )
    others = pc.is_null(texts)
    if not pc.any(others).as_py():
        return texts
    rest = [duckdb_text(v, kind) for v in pc.filter(stored, others).to_pylist()]
    return pc.replace_with_mask(texts, others, pa.array(rest, pa.string()))


def _with_duckdb_text(column: pa.Array, text: Callable[[pa.Array], pa.Array]) -> pa.Array:
    """``column`` as text: ``text`` of its values Polars writes, DuckDB's of the others."""
    mask, texts = _beyond(column)
    if not len(texts):
        return text(column)
    within = text(pc.if_else(mask, pa.scalar(None, column.type), column))
    return pc.replace_with_mask(within, mask, texts)


def _temporal_as_text(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """A date, time or timestamp column of the CSV as text: Polars' text of each value it
    writes, DuckDB's of the others (``infinity``, ``10000-01-01``, ``24:00:00``)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks()
    return _with_duckdb_text(column, _polars_text)


def _polars_text(column: pa.Array) -> pa.Array:
    """``column``'s dates or times as Polars' CSV writer writes them."""
    series = pl.Series(column)
    kind = series.dtype
    if isinstance(kind, pl.Datetime):
        pattern = _POLARS_FORMAT[kind.time_unit] + ("%z" if kind.time_zone else "")
    else:
        pattern = _POLARS_DATE if kind == pl.Date else _POLARS_TIME
    return series.dt.to_string(pattern).to_arrow().cast(pa.string())


def _leaf_text(column: pa.Array) -> pa.Array:
    """A date or time nested in a list or struct, as text: pyarrow's, or DuckDB's for a
    value Polars cannot write."""
    if _bounds(column.type) is None:
        return column.cast(pa.string())
    return _with_duckdb_text(column, lambda within: within.cast(pa.string()))


def _temporal_values(column: pa.Array) -> list[Any]:
    """A date, time or timestamp column's values in Python, and as DuckDB's text where
    Python has none (``infinity``, years past 9999): the CSV's text."""
    mask, texts = _beyond(column)
    values = _pylist(pc.if_else(mask, pa.scalar(None, column.type), column))
    positions = pc.indices_nonzero(mask).to_pylist()
    for position, text in zip(positions, texts.to_pylist(), strict=True):
        values[position] = text
    return values


def _leaves(
    column: pa.Array | pa.ChunkedArray, wanted: Callable[[pa.DataType], bool]
) -> Iterator[pa.Array]:
    """The arrays of a ``wanted`` type in ``column``, at any depth (a list's values whole,
    even those a slice or a null leaves out)."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    for chunk in chunks:
        kind = chunk.type
        if wanted(kind):
            yield chunk
        elif pa.types.is_struct(kind):
            for i in range(kind.num_fields):
                yield from _leaves(chunk.field(i), wanted)
        elif pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_map(kind):
            yield from _leaves(chunk.values, wanted)


def _map_leaves(
    column: pa.Array | pa.ChunkedArray,
    wanted: Callable[[pa.DataType], bool],
    convert: Callable[[pa.Array], pa.Array],
) -> pa.Array | pa.ChunkedArray:
    """``column`` with each array of a ``wanted`` type in it, at any depth, replaced by
    ``convert`` of it (in structs, lists and maps; a union is kept as it is)."""
    if isinstance(column, pa.ChunkedArray):
        chunks = [_map_leaves(chunk, wanted, convert) for chunk in column.chunks]
        if chunks:
            return pa.chunked_array(chunks)
        return pa.chunked_array([], type=_text_leaves(column.type, wanted))
    kind = column.type
    if wanted(kind):
        return convert(column)
    mask = column.is_null() if column.null_count else None
    if pa.types.is_struct(kind):
        children = [_map_leaves(column.field(i), wanted, convert) for i in range(kind.num_fields)]
        fields = [kind.field(i).with_type(c.type) for i, c in enumerate(children)]
        return pa.StructArray.from_arrays(children, fields=fields, mask=mask)
    if pa.types.is_fixed_size_list(kind):  # DuckDB's ARRAY: values ignore a slice's offset
        size = kind.list_size
        values = column.values.slice(column.offset * size, len(column) * size)
        values = _map_leaves(values, wanted, convert)
        array_type = pa.list_(kind.value_field.with_type(values.type), size)
        return pa.FixedSizeListArray.from_arrays(values, type=array_type, mask=mask)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind) or pa.types.is_map(kind):
        # all the values (a slice's offsets point into them), not flatten()'s: it leaves out
        # those behind a null list, and the offsets would not match
        values = _map_leaves(column.values, wanted, convert)
        offsets = column.offsets
        if pa.types.is_map(kind):
            return pa.MapArray.from_arrays(offsets, values.field(0), values.field(1), mask=mask)
        make = pa.ListArray if pa.types.is_list(kind) else pa.LargeListArray
        value_field = kind.value_field.with_type(values.type)
        list_type = pa.list_(value_field) if pa.types.is_list(kind) else pa.large_list(value_field)
        return make.from_arrays(offsets, values, type=list_type, mask=mask)
    return column


# --- columns CSV or Parquet cannot hold as they are ------------------------------------


def _is_nested(kind: pa.DataType) -> bool:
    return bool(
        pa.types.is_list(kind)
        or pa.types.is_large_list(kind)
        or pa.types.is_fixed_size_list(kind)
        or pa.types.is_list_view(kind)
        or pa.types.is_large_list_view(kind)
        or pa.types.is_struct(kind)
        or pa.types.is_map(kind)
        or pa.types.is_union(kind)
    )


def _csv_converter(kind: pa.DataType) -> Converter | None:
    if _is_nested(kind):
        return _nested_as_json
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return _binary_as_hex
    if pa.types.is_fixed_size_binary(kind) or pa.types.is_binary_view(kind):
        return _binary_as_hex
    if pa.types.is_interval(kind):
        return _intervals_as_text
    if pa.types.is_duration(kind):
        return _durations_as_text
    if pa.types.is_dictionary(kind):
        return _csv_converter(kind.value_type)
    if pa.types.is_decimal256(kind):  # BigQuery's BIGNUMERIC; Polars takes decimal128 only
        if kind.precision <= 38:
            return functools.partial(_cast, kind=pa.decimal128(kind.precision, kind.scale))
        return _decimals_as_text
    return None


def _parquet_converter(kind: pa.DataType) -> Converter | None:
    if pa.types.is_interval(kind):
        return _intervals_as_text
    if pa.types.is_timestamp(kind) and kind.unit == "s":
        return _seconds_as_milliseconds
    if _is_nested(kind) and _holds(kind, _not_in_parquet):  # unions too, at any depth
        return _nested_intervals_as_text if _text_leaves(kind) is not None else _nested_as_json
    return None


def _seconds_as_milliseconds(column: pa.Array) -> pa.Array:
    """Timestamps in seconds as milliseconds, as pyarrow's Parquet writer makes them itself
    (Parquet has no seconds), but for DuckDB's ``infinity`` and ``-infinity``, kept as they
    are (the largest value, in any unit): the writer's own multiplication overflows."""
    stored = column.cast(pa.int64())
    infinite = pc.equal(pc.abs(stored), TIMESTAMP_INFINITY)
    milliseconds = pc.multiply_checked(pc.if_else(infinite, 0, stored), 1_000)
    return pc.if_else(infinite, stored, milliseconds).cast(pa.timestamp("ms", column.type.tz))


def _not_in_parquet(kind: pa.DataType) -> bool:
    return bool(pa.types.is_interval(kind) or pa.types.is_union(kind))


def _holds(kind: pa.DataType, wanted: Callable[[pa.DataType], bool]) -> bool:
    """Whether ``kind``, or a type nested in it at any depth, is ``wanted``."""
    if wanted(kind):
        return True
    if pa.types.is_map(kind):
        return _holds(kind.key_type, wanted) or _holds(kind.item_type, wanted)
    children = [kind.value_type] if _is_nested(kind) and hasattr(kind, "value_type") else []
    if pa.types.is_struct(kind) or pa.types.is_union(kind):
        children = [kind.field(i).type for i in range(kind.num_fields)]
    return any(_holds(child, wanted) for child in children)


def _text_leaves(
    kind: pa.DataType, wanted: Callable[[pa.DataType], bool] = pa.types.is_interval
) -> pa.DataType | None:
    """``kind`` with each type in it that is ``wanted`` (intervals unless told) as a string
    (``None``: a shape not rebuilt here)."""
    if wanted(kind):
        return pa.string()
    if pa.types.is_struct(kind):
        fields = [kind.field(i) for i in range(kind.num_fields)]
        types = [_text_leaves(f.type, wanted) for f in fields]
        if any(t is None for t in types):
            return None
        return pa.struct([f.with_type(t) for f, t in zip(fields, types, strict=True)])
    if pa.types.is_map(kind):
        key, item = _text_leaves(kind.key_type, wanted), _text_leaves(kind.item_type, wanted)
        return None if key is None or item is None else pa.map_(key, item)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        item = _text_leaves(kind.value_type, wanted)
        if item is None:
            return None
        make = pa.list_ if pa.types.is_list(kind) else pa.large_list
        return make(kind.value_field.with_type(item))
    return None if _is_nested(kind) else kind


def _nested_intervals_as_text(column: pa.Array) -> pa.Array:
    """Nested values with intervals, their shape kept and each interval as ISO 8601."""
    return _map_leaves(column, pa.types.is_interval, _intervals_as_text)


def _nested_as_json(column: pa.Array) -> pa.Array:
    column = _float32_widened(column)
    if _holds(column.type, _needs_walking):
        return _each_as_text(column, nested_json)
    return _each_as_text(column, _json)


def _float32_widened(column: pa.Array) -> pa.Array:
    """``column`` with each ``FLOAT`` (float32) in it as the double of its shortest digits
    (``1.1``, which as a double is ``1.100000023841858``), as the CSV writes a ``FLOAT``
    column: JSON and the preview print doubles. ``column`` itself when it holds none."""
    if not _holds(column.type, pa.types.is_float32):
        return column
    return _map_leaves(column, pa.types.is_float32, _shortest_double)


def _shortest_double(column: pa.Array) -> pa.Array:
    return column.cast(pa.string()).cast(pa.float64())


def _needs_walking(kind: pa.DataType) -> bool:
    return bool(pa.types.is_interval(kind) or pa.types.is_decimal(kind))


def nested_json(value: Any) -> str:
    """A nested value (list, struct, map) as the CSV writes it: JSON, intervals as ISO 8601
    text, decimals as numbers where a float holds their value exactly (else their digits as
    text), dates and times ISO 8601, binary hex."""
    return _json(_map_nested(value, _json_leaf))


def _json(value: Any) -> str:
    return json.dumps(value, default=_json_default, ensure_ascii=False)


def _json_leaf(value: Any) -> Any:
    """A value inside a nested one, ready for JSON: an interval as its ISO 8601 text; a
    decimal as a float where the float's shortest digits are its value (``2.50`` is
    ``2.5``), as its digits otherwise (more than a float's 17)."""
    if isinstance(value, pa.MonthDayNano):
        return iso_duration(value)
    if isinstance(value, Decimal):
        number = float(value)
        exact = math.isfinite(number) and Decimal(repr(number)) == value
        return number if exact else format(value, "f")
    return value


def _iso_intervals(value: Any) -> Any:
    """A nested value with its intervals (``MonthDayNano`` tuples) as ISO 8601 text."""
    return _map_nested(value, lambda v: iso_duration(v) if isinstance(v, pa.MonthDayNano) else v)


def _map_nested(value: Any, leaf: Callable[[Any], Any]) -> Any:
    """A nested Python value (dicts, lists, a map's pairs) with ``leaf`` of each value in it
    that is none of those. An interval (a ``MonthDayNano``, a tuple) is a leaf."""
    if isinstance(value, pa.MonthDayNano):
        return leaf(value)
    if isinstance(value, dict):
        return {k: _map_nested(v, leaf) for k, v in value.items()}
    if isinstance(value, list):
        return [_map_nested(v, leaf) for v in value]
    if isinstance(value, tuple):  # a map's (key, value) pairs
        return tuple(_map_nested(v, leaf) for v in value)
    return leaf(value)


def _each_as_text(column: pa.Array, text: Callable[[Any], str]) -> pa.Array:
    """``column`` as a string column: ``text`` of each value, nulls kept."""
    return pa.array([None if v is None else text(v) for v in _pylist(column)], pa.string())


def _cast(column: pa.Array, kind: pa.DataType) -> pa.Array:
    return column.cast(kind)


def _decimals_as_text(column: pa.Array) -> pa.Array:
    return _each_as_text(column, lambda v: format(v, "f"))


#: Digits of Arrow's 128-bit decimal.
_DECIMAL128_DIGITS = 38


def decimals_from_text(texts: pa.Array, kind: pa.DataType) -> pa.Array:
    """``texts``, numbers as text (``-12.50``; lists of them for a list ``kind``), as the
    decimals of ``kind``, exactly, or ``pyarrow.ArrowInvalid``. Arrow's own cast wraps a
    number past 128 bits around (2^128 - 1 becomes -1): a text of more digits than a
    128-bit decimal holds is refused first, one vectorised maximum for the whole array."""
    values = texts.flatten() if pa.types.is_list(texts.type) else texts
    signs = pc.add(pc.count_substring(values, "-"), pc.count_substring(values, "."))
    most = pc.max(pc.subtract(pc.utf8_length(values), signs)).as_py()
    if most is not None and most > _DECIMAL128_DIGITS:
        raise pa.ArrowInvalid(f"a number of {most} digits does not fit in {kind}")
    return texts.cast(kind)


def _binary_as_hex(column: pa.Array) -> pa.Array:
    return _each_as_text(column, lambda v: "\\x" + v.hex())


def _intervals_as_text(column: pa.Array) -> pa.Array:
    return _each_as_text(column, iso_duration)


def _durations_as_text(column: pa.Array) -> pa.Array:
    nanoseconds = column.cast(pa.duration("ns")).cast(pa.int64())
    return _each_as_text(nanoseconds, lambda v: iso_duration((0, 0, v)))


def iso_duration(value: Any) -> str:
    """An interval (months, days, nanoseconds) as ISO 8601: ``P1M3D``, ``PT4.5S``; how
    every backend's intervals are written."""
    months, days, nanoseconds = value
    text = "P" + (f"{months}M" if months else "") + (f"{days}D" if days else "")
    if nanoseconds or text == "P":
        seconds = Decimal(nanoseconds) / Decimal(1_000_000_000)
        text += f"T{seconds.normalize():f}S"
    return text


def _json_default(value: Any) -> Any:
    if isinstance(value, dt.date | dt.time | dt.datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return str(value)


class _ParquetFile:
    """A ``ParquetWriter`` written in the calling thread: for a small result, given whole."""

    def __init__(self, path: str, schema: pa.Schema) -> None:
        self._writer = pq.ParquetWriter(path, schema, compression=_COMPRESSION)

    def put(self, piece: pa.Table) -> None:
        self._writer.write_table(piece)

    def finish(self) -> None:
        self._writer.close()

    def abort(self) -> None:
        with contextlib.suppress(Exception):  # the file is deleted next
            self._writer.close()


class _ParquetThread:
    """A ``ParquetWriter`` fed pieces through a short queue, in a thread of its own, so
    the CSV is written meanwhile."""

    def __init__(self, path: str, schema: pa.Schema) -> None:
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=_PARQUET_QUEUE)
        self._error: BaseException | None = None
        self._thread = threading.Thread(
            target=self._run, args=(path, schema), name="loopwright-parquet", daemon=True
        )
        self._thread.start()

    def _run(self, path: str, schema: pa.Schema) -> None:
        try:
            with pq.ParquetWriter(path, schema, compression=_COMPRESSION) as writer:
                while (item := self._queue.get()) is not _DONE:
                    writer.write_table(item)
        except BaseException as exc:
            self._error = exc
            while self._queue.get() is not _DONE:  # keep draining: put() must never block
                pass

    def put(self, piece: pa.Table) -> None:
        if self._error is not None:
            raise self._error
        self._queue.put(piece)

    def finish(self) -> None:
        self._queue.put(_DONE)
        self._thread.join()
        if self._error is not None:
            raise self._error

    def abort(self) -> None:
        if self._thread.is_alive():
            self._queue.put(_DONE)
            self._thread.join()
