"""Dates and times outside the years 1 to 9999 (``infinity``, ``294247-01-10``, BC) and
times of 24:00:00, from DuckDB and PostgreSQL: written as DuckDB's own ``COPY ... TO``
writes them, where they were refused with an error saying to cast them to text."""

from __future__ import annotations

import csv as csvlib
import datetime as dt
import io
import random
import zoneinfo
from pathlib import Path
from typing import Any

import duckdb
import polars as pl
import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from loopwright.sql import PostgresBackend, ResultFileError, connect
from loopwright.sql import output as output_module
from loopwright.sql.base import Interrupter
from loopwright.sql.output import INLINE_ROWS, write_result
from postgres_server import PostgresServer

#: One row of values Polars cannot write, in every date and time type DuckDB exports.
EXTREMES = {
    "d_inf": "'infinity'::DATE",
    "d_ninf": "'-infinity'::DATE",
    "d_big": "'294247-01-10'::DATE",
    "d_last": "'5881580-07-10'::DATE",
    "d_bc": "'0044-03-15 (BC)'::DATE",
    "d_year0": "'0001-01-01 (BC)'::DATE",
    "ts_ninf": "'-infinity'::TIMESTAMP",
    "ts_big": "'294247-01-10 04:00:54.775806'::TIMESTAMP",
    "ts_bc": "'0044-03-15 (BC) 12:34:56.5'::TIMESTAMP",
    "ts_first": "'290309-12-22 (BC) 00:00:00'::TIMESTAMP",
    "s_inf": "'infinity'::TIMESTAMP_S",
    "s_bc": "'0044-03-15 (BC) 12:34:56'::TIMESTAMP_S",
    "ms_ninf": "'-infinity'::TIMESTAMP_MS",
    "ms_big": "'10000-03-15 12:34:56.5'::TIMESTAMP_MS",
    "ns_inf": "'infinity'::TIMESTAMP_NS",
    "tz_inf": "'infinity'::TIMESTAMPTZ",
    "tz_big": "'10000-03-15 12:34:56.123456+00'::TIMESTAMPTZ",
    "tz_bc": "'0044-03-15 (BC) 12:34:56.5+00'::TIMESTAMPTZ",
    "t_end": "'24:00:00'::TIME",
}
#: The same columns' types, for a row of ordinary values.
TYPES = {name: value.rsplit("::", 1)[1] for name, value in EXTREMES.items()}
ORDINARY = {
    "DATE": "'2020-01-02'",
    "TIMESTAMP": "'2020-01-02 10:00:00.5'",
    "TIMESTAMP_S": "'2020-01-02 10:00:00'",
    "TIMESTAMP_MS": "'2020-01-02 10:00:00.25'",
    "TIMESTAMP_NS": "'2020-01-02 10:00:00.123456789'",
    "TIMESTAMPTZ": "'2020-01-02 10:00:00+00'",
    "TIME": "'10:00:00.5'",
}


def duckdb_sql(extreme: bool, copies: int = 1) -> str:
    values = EXTREMES if extreme else {n: f"{ORDINARY[t]}::{t}" for n, t in TYPES.items()}
    columns = ", ".join(f"{value} AS {name}" for name, value in values.items())
    return f"SELECT {columns}, range AS n FROM range({copies})"


def both_sql(copies: int) -> str:
    return (
        f"SELECT * FROM ({duckdb_sql(True, copies)} UNION ALL {duckdb_sql(False, copies)}) "
        "ORDER BY n, d_inf DESC"  # each extreme row (infinity) before its ordinary one
    )


def duckdbs_own_text(source: str) -> list[tuple[str, ...]]:
    """Every value of ``source`` (a query, or a Parquet file) as DuckDB's text."""
    with duckdb.connect() as connection:
        return connection.sql(f"SELECT COLUMNS(*)::VARCHAR FROM {source}").fetchall()


def stored(column: pa.ChunkedArray) -> list[int | None]:
    """A date, time or timestamp column's stored numbers."""
    if column.type.bit_width == 32:
        column = column.cast(pa.int32())
    return column.cast(pa.int64()).to_pylist()  # type: ignore[no-any-return]


def cells(path: Path) -> list[list[str]]:
    return list(csvlib.reader(io.StringIO(path.read_text())))


def copy_to_csv(sql: str, path: Path) -> list[list[str]]:
    """DuckDB's own ``COPY (sql) TO 'path'`` as rows of cells."""
    with duckdb.connect() as connection:
        connection.execute(f"COPY ({sql}) TO '{path}' (HEADER)")
    return cells(path)


@pytest.mark.parametrize("copies", [1, INLINE_ROWS])  # a few rows; Polars and the thread
async def test_duckdbs_extreme_values_are_written_as_its_copy_writes_them(
    workspace: Path, tmp_path: Path, copies: int
) -> None:
    backend = connect("duckdb://:memory:")
    sql, plain = both_sql(copies), duckdb_sql(False)
    try:
        result = await backend.query(sql, workspace / "x.csv", workspace / "x.parquet")
        ordinary = await backend.query(plain, workspace / "o.csv", workspace / "o.parquet")
    finally:
        await backend.aclose()
    assert result.row_count == 2 * copies
    written = cells(workspace / "x.csv")
    own = copy_to_csv(sql, tmp_path / "own.csv")
    assert written[0] == own[0] == [*EXTREMES, "n"]
    for row in range(0, 2 * copies, 2):  # each extreme value as DuckDB's COPY writes it
        assert written[1 + row] == own[1 + row]
    # the ordinary values in the same columns as before: Polars' text, as without extremes
    assert written[2] == cells(workspace / "o.csv")[1]
    assert written[1][:16] == [
        "infinity",
        "-infinity",
        "294247-01-10",
        "5881580-07-10",
        "0044-03-15 (BC)",
        "0001-01-01 (BC)",
        "-infinity",
        "294247-01-10 04:00:54.775806",
        "0044-03-15 (BC) 12:34:56.5",
        "290309-12-22 (BC) 00:00:00",
        "infinity",
        "0044-03-15 (BC) 12:34:56",
        "-infinity",
        "10000-03-15 12:34:56.5",
        "infinity",
        "infinity",
    ]
    assert written[1][-2:] == ["24:00:00", "0"]
    assert written[2][:3] == ["2020-01-02", "2020-01-02", "2020-01-02"]
    assert written[2][6:11] == ["2020-01-02T10:00:00.500000"] * 4 + ["2020-01-02T10:00:00.000"]
    # the preview: the CSV's text for them, Python's values for the others
    assert list(result.preview[0]) == [*written[1][:-1], 0]
    assert result.preview[1] == ordinary.preview[0]
    assert result.preview[1][0] == dt.date(2020, 1, 2)
    # Parquet: the stored values, which DuckDB reads back as the same values
    assert duckdbs_own_text(f"'{workspace / 'x.parquet'}'") == duckdbs_own_text(f"({sql})")
    parquet = pq.read_table(workspace / "x.parquet").slice(0, 1)
    values = {name: stored(parquet[name])[0] for name in EXTREMES}
    assert values["d_inf"] == 2**31 - 1
    assert values["d_big"] == 106_751_991
    assert values["ts_ninf"] == -(2**63 - 1)
    assert values["t_end"] == 86_400_000_000
    assert values["s_inf"] == 2**63 - 1  # milliseconds in Parquet: infinity is still the largest
    assert parquet.schema.field("s_inf").type == pa.timestamp("ms")
    assert values["s_bc"] == -63_517_778_704 * 1_000
    assert stored(pq.read_table(workspace / "x.parquet")["s_bc"])[1] == 1_577_959_200_000


async def test_the_brief_example_is_duckdbs_copy_byte_for_byte(
    workspace: Path, tmp_path: Path
) -> None:
    sql = (
        "SELECT * FROM (VALUES ('infinity'::DATE, '-infinity'::TIMESTAMP, '24:00:00'::TIME, "
        "'294247-01-10'::DATE, 1)) v(d, ts, tm, big, x)"
    )
    backend = connect("duckdb://:memory:")
    try:
        result = await backend.query(sql, workspace / "x.csv", workspace / "x.parquet")
    finally:
        await backend.aclose()
    with duckdb.connect() as connection:
        connection.execute(f"COPY ({sql}) TO '{tmp_path / 'own.csv'}'")
        connection.execute(f"COPY ({sql}) TO '{tmp_path / 'own.parquet'}'")
    assert (workspace / "x.csv").read_text() == (tmp_path / "own.csv").read_text()
    assert (workspace / "x.csv").read_text() == (
        "d,ts,tm,big,x\ninfinity,-infinity,24:00:00,294247-01-10,1\n"
    )
    assert result.preview == [("infinity", "-infinity", "24:00:00", "294247-01-10", 1)]
    ours = pq.read_table(workspace / "x.parquet")
    theirs = pq.read_table(tmp_path / "own.parquet")
    for name in ("d", "ts", "tm", "big"):
        assert ours[name].type == theirs[name].type
        assert stored(ours[name]) == stored(theirs[name])


def write(table: pa.Table, where: Path, **options: Any) -> list[tuple[Any, ...]]:
    written = write_result(
        table.schema,
        iter(table.to_batches(max_chunksize=options.pop("batch", None))),
        str(where / "r.csv"),
        str(where / "r.parquet"),
        max_rows=options.pop("max_rows", 1_000_000),
        preview_rows=options.pop("preview_rows", 10),
        stop=Interrupter(),
        **options,
    )
    return written.preview


def test_only_pieces_holding_such_values_are_converted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A piece without such values is written as any other: its dates never become text."""
    converted: list[int] = []
    as_text = output_module._temporal_as_text

    def spy(column: pa.ChunkedArray) -> pa.Array:
        converted.append(len(column))
        return as_text(column)

    monkeypatch.setattr(output_module, "_temporal_as_text", spy)
    days = list(range(18_000, 18_300))
    write(pa.table({"d": pa.array(days, pa.date32())}), tmp_path, piece_rows=100, batch=50)
    assert converted == []
    expected = [f"{dt.date(1970, 1, 1) + dt.timedelta(days=d)},{i}" for i, d in enumerate(days)]
    days[150] = 2**31 - 1  # in the second piece of three
    preview = write(
        pa.table({"d": pa.array(days, pa.date32()), "n": range(300)}),
        tmp_path,
        piece_rows=100,
        batch=50,
        preview_rows=300,
    )
    assert converted == [100]
    lines = (tmp_path / "r.csv").read_text().splitlines()
    assert lines[151] == "infinity,150"
    expected[150] = "infinity,150"
    assert lines == ["d,n", *expected]
    assert preview[150] == ("infinity", 150)
    assert preview[149] == (dt.date(2019, 9, 10), 149)


KINDS = [
    pa.date32(),
    pa.timestamp("s"),
    pa.timestamp("ms"),
    pa.timestamp("us"),
    pa.timestamp("ns"),
    pa.timestamp("us", tz="UTC"),
    pa.timestamp("ms", tz="Asia/Kolkata"),
    pa.timestamp("us", tz="America/New_York"),
    pa.time32("s"),
    pa.time32("ms"),
    pa.time64("us"),
    pa.time64("ns"),
]


@pytest.mark.parametrize("rows", [20, 3_000])  # Python's few-row CSV, and Polars'
@pytest.mark.parametrize("kind", KINDS, ids=str)
def test_the_rest_of_such_a_column_is_written_as_polars_writes_it(
    tmp_path: Path, kind: pa.DataType, rows: int
) -> None:
    """Random values of each type in years 1 to 9999, and one Polars cannot write: those
    are Polars' text exactly, as in a column without it."""
    from loopwright.sql.output import duckdb_text

    rng = random.Random(rows)
    if pa.types.is_date32(kind):
        first, last, beyond = -719_162, 2_932_896, 2**31 - 1
    elif pa.types.is_time(kind):
        per_day = 86_400 * {"s": 1, "ms": 10**3, "us": 10**6, "ns": 10**9}[kind.unit]
        first, last, beyond = 0, per_day - 1, per_day
    elif kind.unit == "ns":
        first, last, beyond = -(2**63) + 2, 2**63 - 2, -(2**63 - 1)
    else:
        per_second = {"s": 1, "ms": 10**3, "us": 10**6}[kind.unit]
        first, last = -62_135_596_800 * per_second, 253_402_300_800 * per_second - 1
        beyond = last + 1
    values: list[int | None] = [rng.randint(first, last) for _ in range(rows)]
    values[3], values[rows - 1] = first, last
    values[5] = None
    values[7] = beyond
    column = pa.array(values, pa.int64()).cast(pa.int32() if kind.bit_width == 32 else pa.int64())
    write(pa.table({"v": column.cast(kind)}), tmp_path, preview_rows=0)
    without = pa.table({"v": pa.array([*values[:7], None, *values[8:]], column.type).cast(kind)})
    frame = pl.from_arrow(without)
    assert isinstance(frame, pl.DataFrame)
    expected = frame.write_csv().splitlines()
    expected[8] = duckdb_text(beyond, kind)
    assert (tmp_path / "r.csv").read_text().splitlines() == expected


ZONES = ["Asia/Kolkata", "America/New_York", "Europe/London", "Australia/Lord_Howe"]
#: Microseconds since 1970 (UTC): BC, past 9999 in winter and summer, the last; an ordinary.
INSTANTS = [
    -63_517_778_703_500_000,
    253_402_387_200_000_000,
    253_418_112_000_000_001,
    9_223_372_036_854_775_806,
    -(2**63 - 1),
    1_593_561_600_000_000,
]


@pytest.mark.parametrize("zone", ZONES)
def test_timestamps_with_a_time_zone_are_written_in_it_as_duckdb_does(
    tmp_path: Path, zone: str
) -> None:
    """In the column's zone (DuckDB exports its session's), with DuckDB's offsets: a local
    mean time of +05:53:28 is written +05:53 (the time itself keeps its seconds)."""
    kind = pa.timestamp("us", tz=zone)
    table = pa.table({"moment": pa.array(INSTANTS, kind)})
    preview = write(table, tmp_path)
    with duckdb.connect() as connection:
        connection.execute(f"SET TimeZone = '{zone}'")
        own = [row[0] for row in connection.from_arrow(table).project("moment::VARCHAR").fetchall()]
    lines = (tmp_path / "r.csv").read_text().splitlines()
    assert lines[1:-1] == own[:-1]
    ordinary = dt.datetime(2020, 7, 1, tzinfo=dt.UTC).astimezone(zoneinfo.ZoneInfo(zone))
    assert lines[-1] == ordinary.strftime("%Y-%m-%dT%H:%M:%S.000000%z")
    assert [row[0] for row in preview[:-1]] == own[:-1]
    assert preview[-1][0] == ordinary
    saved = pq.read_table(tmp_path / "r.parquet")["moment"]
    assert saved.type == kind
    assert stored(saved) == INSTANTS


def test_duckdb_text_is_duckdbs_for_any_stored_value() -> None:
    """Random stored values of every date, time and timestamp type, against DuckDB's own
    text for them (BC, past 9999, the first and last it has)."""
    from loopwright.sql.output import duckdb_text

    rng = random.Random(20240101)
    limit = 2**63 - 2
    columns = {
        "d": pa.array(
            [rng.randint(-(2**31 - 2), 2**31 - 2) for _ in range(500)] + [2**31 - 1], pa.date32()
        ),
        "us": pa.array(
            [rng.randint(-limit, limit) for _ in range(500)] + [limit], pa.timestamp("us")
        ),
        "ms": pa.array(
            [rng.randint(-limit // 1000, limit // 1000) for _ in range(500)] + [-(2**63 - 1)],
            pa.timestamp("ms"),
        ),
        "s": pa.array(
            [rng.randint(-limit // 10**6, limit // 10**6) for _ in range(500)] + [2**63 - 1],
            pa.timestamp("s"),
        ),
        "ns": pa.array(
            [rng.randint(-limit, limit) for _ in range(500)] + [2**63 - 1], pa.timestamp("ns")
        ),
        "utc": pa.array(
            [rng.randint(-limit, limit) for _ in range(500)] + [limit], pa.timestamp("us", tz="UTC")
        ),
        "t": pa.array(
            [rng.randint(0, 86_400_000_000) for _ in range(500)] + [86_400_000_000], pa.time64("us")
        ),
    }
    table = pa.table(columns)
    with duckdb.connect() as connection:
        connection.execute("SET TimeZone = 'UTC'")
        own = connection.from_arrow(table).project("COLUMNS(*)::VARCHAR").fetchall()
    for i, name in enumerate(columns):
        kind = table.schema.field(name).type
        ours = [duckdb_text(v, kind) for v in stored(table[name])]
        assert ours == [row[i] for row in own], name


async def test_nested_dates_and_times_are_written_as_duckdb_writes_them(
    workspace: Path,
) -> None:
    """Inside lists, structs and maps: the CSV's JSON had pyarrow's "<value out of range:
    2147483647>" for infinity, and midnight for 24:00:00 (the preview too)."""
    sql = (
        "SELECT ['infinity'::DATE, DATE '2020-01-02', NULL] AS l, "
        "{'t': TIME '24:00:00', 'at': '-infinity'::TIMESTAMP} AS s, "
        "MAP {'end': TIME '24:00:00'} AS m, [TIME '10:00:00'] AS plain"
    )
    backend = connect("duckdb://:memory:")
    try:
        result = await backend.query(sql, workspace / "n.csv", workspace / "n.parquet")
    finally:
        await backend.aclose()
    assert cells(workspace / "n.csv")[1] == [
        '["infinity", "2020-01-02", null]',
        '{"t": "24:00:00", "at": "-infinity"}',
        '[["end", "24:00:00"]]',
        '["10:00:00"]',
    ]
    assert result.preview == [
        (
            ["infinity", "2020-01-02", None],
            {"t": "24:00:00", "at": "-infinity"},
            [("end", "24:00:00")],
            [dt.time(10)],
        )
    ]
    assert duckdbs_own_text(f"'{workspace / 'n.parquet'}'") == duckdbs_own_text(f"({sql})")


# --- PostgreSQL ----------------------------------------------------------------------------

PG_EXTREMES = """
SELECT 'infinity'::date AS d_inf, '-infinity'::date AS d_ninf, '294247-01-10'::date AS d_big,
       '5874897-12-31'::date AS d_last, '0044-03-15 BC'::date AS d_bc,
       '0001-01-01 BC'::date AS d_year0, '-infinity'::timestamp AS ts_ninf,
       '294247-01-10 04:00:54.775806'::timestamp AS ts_big,
       '0044-03-15 12:34:56.5 BC'::timestamp AS ts_bc,
       '4713-01-01 00:00:00 BC'::timestamp AS ts_first,
       'infinity'::timestamptz AS tz_inf, '10000-03-15 12:34:56.123456+00'::timestamptz AS tz_big,
       '0044-03-15 12:34:56.5+00 BC'::timestamptz AS tz_bc, '24:00:00'::time AS t_end,
       ARRAY['infinity'::date, '2020-01-02', NULL] AS l, 0 AS n
UNION ALL
SELECT '2020-01-02'::date, '2020-01-02'::date, '2020-01-02'::date, '2020-01-02'::date,
       '2020-01-02'::date, '2020-01-02'::date, '2020-01-02 10:00:00.5'::timestamp,
       '2020-01-02 10:00:00.5'::timestamp, '2020-01-02 10:00:00.5'::timestamp,
       '2020-01-02 10:00:00.5'::timestamp, '2020-01-02 10:00:00+00'::timestamptz,
       '2020-01-02 10:00:00+00'::timestamptz, '2020-01-02 10:00:00+00'::timestamptz,
       '10:00:00.5'::time, ARRAY['2020-01-02'::date], 1
"""
#: The same values in DuckDB's syntax.
DUCKDB_EXTREMES = (
    PG_EXTREMES.replace("'0044-03-15 BC'", "'0044-03-15 (BC)'")
    .replace("'0001-01-01 BC'", "'0001-01-01 (BC)'")
    .replace("'0044-03-15 12:34:56.5 BC'", "'0044-03-15 (BC) 12:34:56.5'")
    .replace("'4713-01-01 00:00:00 BC'", "'4713-01-01 (BC) 00:00:00'")
    .replace("'0044-03-15 12:34:56.5+00 BC'", "'0044-03-15 (BC) 12:34:56.5+00'")
    .replace("0 AS n", "0::INTEGER AS n")
)

PG_CSV = [
    "d_inf,d_ninf,d_big,d_last,d_bc,d_year0,ts_ninf,ts_big,ts_bc,ts_first,tz_inf,tz_big,tz_bc,"
    "t_end,l,n",
    "infinity,-infinity,294247-01-10,5874897-12-31,0044-03-15 (BC),0001-01-01 (BC),-infinity,"
    "294247-01-10 04:00:54.775806,0044-03-15 (BC) 12:34:56.5,4713-01-01 (BC) 00:00:00,infinity,"
    "10000-03-15 12:34:56.123456+00,0044-03-15 (BC) 12:34:56.5+00,24:00:00,"
    '"[""infinity"", ""2020-01-02"", null]",0',
    "2020-01-02,2020-01-02,2020-01-02,2020-01-02,2020-01-02,2020-01-02,"
    "2020-01-02T10:00:00.500000,2020-01-02T10:00:00.500000,2020-01-02T10:00:00.500000,"
    "2020-01-02T10:00:00.500000,2020-01-02T10:00:00.000000+0000,"
    "2020-01-02T10:00:00.000000+0000,2020-01-02T10:00:00.000000+0000,10:00:00.500000000,"
    '"[""2020-01-02""]",1',
]


async def test_postgresqls_infinity_and_far_dates_are_saved_as_duckdbs(
    postgres_server: PostgresServer, workspace: Path
) -> None:
    """psycopg refused them ("date too large (after year 10K): 'infinity'"), and so did the
    tool; they are the Arrow values DuckDB gives the same dates now, so the files hold what
    DuckDB's would: its text in the CSV (0044-03-15 (BC), where PostgreSQL says 0044-03-15
    BC), its stored values in Parquet."""
    dsn = postgres_server.create_database("extremes")
    backend, duckdb_backend = connect(dsn), connect("duckdb://:memory:")
    try:
        result = await backend.query(PG_EXTREMES, workspace / "pg.csv", workspace / "pg.parquet")
        await duckdb_backend.query(DUCKDB_EXTREMES, workspace / "dd.csv", workspace / "dd.parquet")
    finally:
        await backend.aclose()
        await duckdb_backend.aclose()
    assert (workspace / "pg.csv").read_text().splitlines() == PG_CSV
    # DuckDB's file of the same values, but for its time zone (its session's; PostgreSQL's UTC)
    pg, dd = cells(workspace / "pg.csv"), cells(workspace / "dd.csv")
    without_zones = [i for i, name in enumerate(pg[0]) if not name.startswith("tz_")]
    assert [[row[i] for i in without_zones] for row in pg] == [
        [row[i] for i in without_zones] for row in dd
    ]
    assert list(result.preview[0]) == [
        *PG_CSV[1].split(",")[:14],
        ["infinity", "2020-01-02", None],
        0,
    ]
    assert result.preview[1][:2] == (dt.date(2020, 1, 2), dt.date(2020, 1, 2))
    ours, theirs = pq.read_table(workspace / "pg.parquet"), pq.read_table(workspace / "dd.parquet")
    for name in pg[0][:-2]:
        assert stored(ours[name]) == stored(theirs[name]), name
    assert stored(ours["d_inf"]) == [2**31 - 1, 18_263]
    assert stored(ours["ts_ninf"])[0] == -(2**63 - 1)
    assert ours["l"].slice(1).to_pylist() == [[dt.date(2020, 1, 2)]]
    assert duckdbs_own_text(f"'{workspace / 'pg.parquet'}'") == duckdbs_own_text(
        f"'{workspace / 'dd.parquet'}'"
    )


async def test_postgresqls_far_timestamps_in_another_time_zone_keep_their_instant(
    postgres_server: PostgresServer, workspace: Path
) -> None:
    """The server writes timestamptz in the session's zone, BC ones with a local mean time's
    seconds (+05:53:28 BC): the stored instant is the same as in UTC."""
    dsn = postgres_server.create_database("zoned")
    name = dsn.rsplit("/", 1)[-1].split("?")[0]
    postgres_server.execute(f"ALTER DATABASE \"{name}\" SET timezone = 'Asia/Kolkata'")
    sql = (
        "SELECT '0044-03-15 12:34:56.5+00 BC'::timestamptz AS bc, "
        "'10000-03-15 12:34:56.123456+00'::timestamptz AS late, "
        "'2020-01-02 10:00+00'::timestamptz AS ordinary"
    )
    backend = connect(dsn)
    try:
        result = await backend.query(sql, workspace / "z.csv", workspace / "z.parquet")
    finally:
        await backend.aclose()
    assert (workspace / "z.csv").read_text().splitlines()[1] == (
        "0044-03-15 (BC) 12:34:56.5+00,10000-03-15 12:34:56.123456+00,"
        "2020-01-02T10:00:00.000000+0000"
    )
    saved = pq.read_table(workspace / "z.parquet")
    assert stored(saved["bc"]) == [-63_517_778_703_500_000]
    assert stored(saved["late"]) == [253_408_739_696_123_456]
    assert result.preview[0][2] == dt.datetime(2020, 1, 2, 10, tzinfo=dt.UTC)


async def test_postgresql_in_another_datestyle_still_reads_infinity(
    postgres_server: PostgresServer, workspace: Path
) -> None:
    """Outside the ISO DateStyle, ordinary dates are psycopg's as before and infinity is read;
    a year past 9999 is still a clear error saying to cast to text."""
    dsn = postgres_server.create_database("datestyle")
    name = dsn.rsplit("/", 1)[-1].split("?")[0]
    postgres_server.execute(f"ALTER DATABASE \"{name}\" SET datestyle = 'SQL, DMY'")
    backend = connect(dsn)
    try:
        await backend.query(
            "SELECT 'infinity'::date AS d, DATE '2020-01-02' AS o, '-infinity'::timestamp AS ts",
            workspace / "s.csv",
        )
        with pytest.raises(ResultFileError) as refused:
            await backend.query("SELECT '10000-01-01'::date AS late", workspace / "l.csv")
    finally:
        await backend.aclose()
    assert (workspace / "s.csv").read_text() == "d,o,ts\ninfinity,2020-01-02,-infinity\n"
    assert "::text" in str(refused.value)
    assert "date too large (after year 10K)" in str(refused.value)


@pytest.mark.parametrize(
    "until",
    [
        "CASE WHEN g = 3500 THEN 'infinity'::date ELSE DATE '2020-01-01' + g END",
        "CASE WHEN g % 2 = 1 THEN 'infinity'::date ELSE DATE '2020-01-01' + g END",
        "CASE WHEN g % 3 = 0 THEN '-infinity'::date WHEN g % 3 = 1 THEN '10000-01-01'::date "
        "ELSE DATE '2020-01-01' + g END",
    ],
    ids=["one in the fourth batch", "every other row", "two kinds in every batch"],
)
async def test_postgresqls_batches_keep_every_row_whatever_batch_holds_infinity(
    postgres_server: PostgresServer, workspace: Path, until: str
) -> None:
    """Batches are read with psycopg's own loaders until one refuses a value; that batch is
    read again, and the ones after it with the loaders that take such values: no row is
    lost, repeated or moved, past the preview and the first batches too."""
    dsn = postgres_server.create_database("late_infinity")
    sql = f"SELECT g AS n, {until} AS d FROM generate_series(1, 5000) AS g ORDER BY g"
    backend = PostgresBackend(dsn, batch_rows=1000)
    try:
        result = await backend.query(sql, workspace / "b.csv", workspace / "b.parquet")
    finally:
        await backend.aclose()
    with psycopg.connect(dsn) as connection:
        expected = connection.execute(
            f"SELECT g || ',' || CASE WHEN d = 'infinity' OR d = '-infinity' THEN d::text "
            f"WHEN d > '9999-12-31' THEN d::text ELSE to_char(d, 'YYYY-MM-DD') END "
            f"FROM ({sql}) AS t(g, d) ORDER BY g"
        ).fetchall()
    assert (workspace / "b.csv").read_text().splitlines() == ["n,d", *(row[0] for row in expected)]
    assert result.row_count == 5000
    assert len(result.preview) == 10
    days = stored(pq.read_table(workspace / "b.parquet")["d"])
    assert len(days) == 5000
    assert days.count(2**31 - 1) == sum(row[0].endswith(",infinity") for row in expected)
