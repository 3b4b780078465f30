"""Small results written by Python must be byte for byte what Polars writes."""

from __future__ import annotations

import datetime as dt
import io
import math
import random
from decimal import Decimal
from pathlib import Path
from typing import Any

import polars as pl
import pyarrow as pa
import pytest

from loopwright.sql.base import Interrupter
from loopwright.sql.csvtext import SMALL_CELLS, small_csv
from loopwright.sql.output import write_result

SEED = 20261124


def polars_csv(table: pa.Table, *, header: bool = True) -> bytes:
    frame = pl.from_arrow(table, rechunk=False)
    assert isinstance(frame, pl.DataFrame)
    out = io.BytesIO()
    frame.write_csv(out, include_header=header)
    return out.getvalue()


def assert_same_as_polars(table: pa.Table) -> None:
    for header in (True, False):
        ours = small_csv(table, header=header)
        assert ours is not None, table.schema
        expected = polars_csv(table, header=header)
        if ours != expected:  # show the first differing line, not two walls of bytes
            pairs = zip(ours.decode().split("\n"), expected.decode().split("\n"), strict=False)
            diff = next((a, b) for a, b in pairs if a != b)
            pytest.fail(f"ours {diff[0]!r} != Polars {diff[1]!r}")


TEXT_EDGES = [
    "",
    " ",
    "plain",
    " padded ",
    "a,b",
    'say "hi"',
    '"',
    "line\nbreak",
    "carriage\rreturn",
    "crlf\r\n",
    "#comment",
    "tab\there",
    "semi;colon",
    "'single'",
    "ünïcødé ✓ 日本",
    "emoji 🩺",
    "NULL",
    "null",
    "\\backslash\\",
    "trailing,",
    ",",
    '""',
]


def random_text(rng: random.Random) -> str:
    alphabet = "ab ,\"\n\r\t'é🩺\\;#0"
    return "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 8)))


def float_edges() -> list[float]:
    values = [0.0, -0.0, 0.1, 0.3, 1.0, -1.5, 1 / 3, 2.0**53, 2.0**63, 1e15, 1e16, 1e21, 1e22]
    values += [9999999999999998.0, 123456789012345.6, 1e-4, 1e-5, 1.5e-5, 1e-6, 1e-7]
    values += [5e-324, 2.2250738585072014e-308, 1.7976931348623157e308, -2.5e-10, 12345.678]
    return [*values, math.inf, -math.inf, math.nan]


def random_float(rng: random.Random) -> float:
    if rng.random() < 0.5:  # any bit pattern: every exponent, subnormals, NaN payloads
        return float.fromhex(
            f"{rng.choice('+-')}0x1.{rng.getrandbits(52):013x}p{rng.randint(-1074, 1023)}"
        )
    return round(rng.uniform(-1e6, 1e6), rng.randint(0, 6))


def test_text_quoted_exactly_where_polars_quotes() -> None:
    rng = random.Random(SEED)
    values: list[str | None] = [*TEXT_EDGES, None] + [random_text(rng) for _ in range(2000)]
    assert_same_as_polars(pa.table({"s": values}))
    assert_same_as_polars(pa.table({"s": pa.array(values, pa.large_string())}))


def test_floats_laid_out_as_polars_lays_them_out() -> None:
    rng = random.Random(SEED)
    values: list[float | None] = [*float_edges(), None]
    values += [random_float(rng) for _ in range(20_000)]
    values += [float(f"{rng.randint(1, 99)}e{exp}") for exp in range(-330, 309)]
    assert_same_as_polars(pa.table({"f": values}))


@pytest.mark.parametrize(
    "kind", [pa.int8(), pa.int16(), pa.int32(), pa.int64(), pa.uint8(), pa.uint32(), pa.uint64()]
)
def test_integers_at_their_extremes(kind: pa.DataType) -> None:
    bits = kind.bit_width
    low, high = (
        (0, 2**bits - 1)
        if pa.types.is_unsigned_integer(kind)
        else (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)
    )
    rng = random.Random(SEED)
    values = [low, high, 0, 1, None] + [rng.randint(low, high) for _ in range(500)]
    assert_same_as_polars(pa.table({"i": pa.array(values, kind)}))


def test_booleans_dates_timestamps_and_decimals() -> None:
    rng = random.Random(SEED)
    dates = [dt.date(1, 1, 1), dt.date(999, 12, 31), dt.date(1970, 1, 1), dt.date(9999, 12, 31)]
    dates += [dt.date(1900, 1, 1) + dt.timedelta(days=rng.randint(0, 60_000)) for _ in range(300)]
    stamps = [dt.datetime(1, 1, 1), dt.datetime(2024, 2, 29, 23, 59, 59, 999_999)]
    stamps += [
        dt.datetime(1950, 1, 1) + dt.timedelta(microseconds=rng.randint(0, 3 * 10**15))
        for _ in range(300)
    ]
    stamps += [dt.datetime(2024, 1, 5, 3, 4, 5)]  # no fraction: still six digits
    amounts = [Decimal("0.00"), Decimal("-0.01"), Decimal("12.50"), Decimal("99999999.99")]
    amounts += [Decimal(rng.randint(-(10**12), 10**12)).scaleb(-2) for _ in range(300)]
    n = len(amounts)

    def column(values: list[Any], kind: pa.DataType) -> pa.Array:
        return pa.array([*(values * 2)[: n - 1], None], kind)  # n values, the last a null

    fine = [Decimal("0.0000000001"), Decimal("-123.4567890123")]
    table = pa.table(
        {
            "b": column([rng.random() < 0.5 for _ in range(n)], pa.bool_()),
            "d": column(dates, pa.date32()),
            "t": column(stamps, pa.timestamp("us")),
            "m": column(amounts, pa.decimal128(38, 2)),
            "whole": column([Decimal(i) for i in range(n)], pa.decimal128(18, 0)),
            "fine": column(fine * n, pa.decimal128(20, 10)),
        }
    )
    assert_same_as_polars(table)


def test_header_names_are_quoted_like_values() -> None:
    names = ["plain", "with,comma", 'a "quote"', "line\nbreak", "ünï", "#"]
    assert_same_as_polars(pa.table({name: [i] for i, name in enumerate(names)}))


def test_empty_tables_and_all_null_columns() -> None:
    assert_same_as_polars(pa.table({"a": pa.array([], pa.int64()), "b": pa.array([], pa.string())}))
    assert_same_as_polars(pa.table({"a": pa.array([None, None], pa.int64())}))


@pytest.mark.parametrize(
    "column",
    [
        pa.array([0.1], pa.float32()),  # Polars prints float32's own shortest digits
        pa.array([1], pa.timestamp("ns")),
        pa.array([1], pa.timestamp("us", tz="UTC")),
        pa.array([dt.time(1, 2, 3)]),
        pa.array([[1, 2]]),
        pa.array([b"x"]),
        pa.array(["a"]).dictionary_encode(),
        pa.array([None], pa.null()),
    ],
    ids=["float32", "ns", "tz", "time", "list", "binary", "dictionary", "null"],
)
def test_other_types_are_left_to_polars(column: pa.Array) -> None:
    assert small_csv(pa.table({"x": column}), header=True) is None


def write(table: pa.Table, path: Path) -> bytes:
    write_result(
        table.schema,
        iter(table.to_batches()),
        str(path),
        None,
        max_rows=10**9,
        preview_rows=5,
        stop=Interrupter(),
    )
    return path.read_bytes()


def test_empty_column_names_get_a_name_in_either_writer(tmp_path: Path) -> None:
    # Polars would call the first column_1 itself (and then find two): both writers agree
    small = pa.table({"": [1], "column_1": [2], "x": [3]})
    assert write(small, tmp_path / "small.csv").split(b"\n")[0] == b"column_1,column_1_2,x"
    large = pa.table({name: [1] * SMALL_CELLS for name in small.column_names})
    assert write(large, tmp_path / "large.csv").split(b"\n")[0] == b"column_1,column_1_2,x"


def test_result_files_look_the_same_whatever_their_size(tmp_path: Path) -> None:
    """A result small enough for Python and a larger one written by Polars: the same text."""
    rng = random.Random(SEED)
    rows = 2 * SMALL_CELLS
    values: dict[str, list[Any]] = {
        "name": [rng.choice([*TEXT_EDGES, None]) for _ in range(rows)],
        "amount": [rng.choice([*float_edges(), None]) for _ in range(rows)],
        "day": [dt.date(2020, 1, 1) + dt.timedelta(days=i % 900) for i in range(rows)],
    }
    table = pa.table(values)
    large = write(table, tmp_path / "large.csv")
    assert large == polars_csv(table)
    small = table.slice(0, SMALL_CELLS // 3)
    assert small.num_rows * small.num_columns <= SMALL_CELLS
    assert write(small, tmp_path / "small.csv") == polars_csv(small)
    assert large.startswith(write(small, tmp_path / "small.csv"))
