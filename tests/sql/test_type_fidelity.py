"""Values the result files must keep exactly: PostgreSQL's ``numeric`` and ``money``, DuckDB's
``HUGEINT`` and ``UHUGEINT``, read back from the saved CSV and Parquet files."""

from __future__ import annotations

import csv as csvlib
from collections.abc import AsyncIterator
from decimal import Decimal
from pathlib import Path

import psycopg
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from loopwright.sql import DuckDBBackend, PostgresBackend, ResultFileError, SQLBackend
from loopwright.sql.base import QueryResult
from loopwright.tools.sql import SQLTool
from postgres_server import PostgresServer

SETUP = """
CREATE TYPE payer AS ENUM ('medicare', 'medicaid', 'commercial');
CREATE TABLE claims (
    claim_id integer PRIMARY KEY,
    payer payer NOT NULL,
    amount numeric,
    fee money
);
INSERT INTO claims VALUES
    (1, 'medicare', 12345678901234567.89, '1234.56'),
    (2, 'medicaid', 0.01, '-5'),
    (3, 'commercial', 0.1, '-92233720368547758.08'),
    (4, 'medicare', 0.2, NULL),
    (5, 'medicaid', NULL, '92233720368547758.07');
"""

#: 2^128 - 1: 39 digits, past what a 128-bit decimal holds (Arrow's cast made it -1).
WRAPS = "340282366920938463463374607431768211455"
#: 2^127 - 1, DuckDB's largest HUGEINT: 39 digits.
HUGE = "170141183460469231731687303715884105727"
#: The largest integer a DECIMAL(38,0) holds.
NINES = "9" * 38


@pytest.fixture(scope="module")
def dsn(postgres_server: PostgresServer) -> str:
    dsn = postgres_server.create_database("fidelity")
    with psycopg.connect(dsn, autocommit=True) as connection:
        connection.execute(SETUP.encode())
    return dsn


@pytest.fixture
async def postgres(dsn: str) -> AsyncIterator[PostgresBackend]:
    backend = PostgresBackend(dsn)
    yield backend
    await backend.aclose()


@pytest.fixture
async def small_batches(dsn: str) -> AsyncIterator[PostgresBackend]:
    """Two rows a round trip: the first batch sets an unconstrained numeric's scale."""
    backend = PostgresBackend(dsn, batch_rows=2)
    yield backend
    await backend.aclose()


async def save(backend: SQLBackend, sql: str, where: Path) -> QueryResult:
    return await backend.query(sql, where / "r.csv", where / "r.parquet")


def csv_rows(where: Path) -> list[list[str]]:
    return list(csvlib.reader((where / "r.csv").read_text().splitlines()))


def parquet(where: Path) -> pa.Table:
    table = pq.read_table(where / "r.parquet")
    table.validate(full=True)  # each decimal within its precision
    return table


# --- PostgreSQL: numeric -------------------------------------------------------------------


async def test_unconstrained_numeric_is_an_exact_decimal(
    postgres: PostgresBackend, workspace: Path
) -> None:
    """SUM over an unconstrained numeric, 1.1 * 3 and a value of 30 digits were floats
    (1.2345678901234568e+16 for the sum); they are decimal(38, s) now, s the scale the
    values need, and the model is told so."""
    sql = """
    SELECT sum(amount) AS total, 1.1::numeric * 3 AS product,
           123456789012345678901234567.891::numeric AS thirty_digits,
           avg(amount) FILTER (WHERE claim_id IN (3, 4)) AS mean
    FROM claims
    """
    result = await save(postgres, sql, workspace)
    assert result.columns == [
        ("total", "numeric, saved as decimal(38,2)"),
        ("product", "numeric, saved as decimal(38,1)"),
        ("thirty_digits", "numeric, saved as decimal(38,3)"),
        ("mean", "numeric, saved as decimal(38,20)"),
    ]
    expected = [
        Decimal("12345678901234568.20"),
        Decimal("3.3"),
        Decimal("123456789012345678901234567.891"),
        Decimal("0.15000000000000000000"),
    ]
    assert list(result.preview[0]) == expected
    table = parquet(workspace)
    assert table.schema.types == [
        pa.decimal128(38, 2),
        pa.decimal128(38, 1),
        pa.decimal128(38, 3),
        pa.decimal128(38, 20),
    ]
    assert list(table.to_pylist()[0].values()) == expected
    assert csv_rows(workspace)[1] == [
        "12345678901234568.20",
        "3.3",
        "123456789012345678901234567.891",
        "0.15000000000000000000",
    ]


async def test_a_numeric_past_128_bits_is_its_exact_text(
    postgres: PostgresBackend, workspace: Path
) -> None:
    """Arrow's cast of text to a decimal wraps 2^128 - 1 around to -1: such a number, NaN and
    Infinity make the column the server's text (it was a float: 3.402823669209385e+38)."""
    sql = f"""
    SELECT {WRAPS}::numeric AS wraps, 'NaN'::numeric AS nan,
           '-Infinity'::numeric AS minus_infinity, 'NaN'::numeric(10, 2) AS declared_nan
    """
    result = await save(postgres, sql, workspace)
    assert [kind for _, kind in result.columns] == [
        "numeric, saved as text",
        "numeric, saved as text",
        "numeric, saved as text",
        "numeric(10,2), saved as text",
    ]
    texts = [WRAPS, "NaN", "-Infinity", "NaN"]
    assert list(result.preview[0]) == texts
    assert list(parquet(workspace).to_pylist()[0].values()) == texts
    assert csv_rows(workspace)[1] == texts


async def test_numeric_arrays_are_lists_of_exact_decimals(
    postgres: PostgresBackend, workspace: Path
) -> None:
    sql = "SELECT array_agg(amount ORDER BY claim_id) AS amounts FROM claims"
    result = await save(postgres, sql, workspace)
    assert result.columns == [("amounts", "numeric[], saved as decimal(38,2)[]")]
    table = parquet(workspace)
    assert table.schema.types == [pa.list_(pa.decimal128(38, 2))]
    expected = ["12345678901234567.89", "0.01", "0.10", "0.20", None]
    assert table.column(0).to_pylist() == [[v and Decimal(v) for v in expected]]
    # JSON in the CSV: a number where a float is the decimal's value, else its digits
    assert csv_rows(workspace)[1] == ['["12345678901234567.89", 0.01, 0.1, 0.2, null]']


async def test_a_later_batch_that_needs_more_scale_is_a_clear_error(
    small_batches: PostgresBackend, workspace: Path
) -> None:
    """The first batch sets the decimal's scale; a later value it would round is refused
    with what to do, and no file is left."""
    sql = "SELECT x FROM (VALUES (1.5::numeric), (2.5), (3.125)) AS t(x)"
    with pytest.raises(ResultFileError) as caught:
        await save(small_batches, sql, workspace)
    message = str(caught.value)
    assert "column x (numeric, saved as decimal(38,1))" in message
    assert "it holds 3.125, with 3 digits after the point" in message
    assert "round(x, 1)" in message
    assert "x::numeric(38, 3)" in message
    assert not (workspace / "r.csv").exists()


async def test_a_later_nan_is_a_clear_error(
    small_batches: PostgresBackend, workspace: Path
) -> None:
    sql = "SELECT x FROM (VALUES (1.5::numeric), (2.5), ('NaN')) AS t(x)"
    with pytest.raises(ResultFileError) as caught:
        await save(small_batches, sql, workspace)
    assert "it holds NaN" in str(caught.value)
    assert "NULLIF(x, 'NaN')" in str(caught.value)


async def test_whole_batches_of_one_scale_stream_exactly(
    small_batches: PostgresBackend, workspace: Path
) -> None:
    sql = "SELECT g * 0.01 AS cents FROM generate_series(1, 7) AS g"
    result = await save(small_batches, sql, workspace)
    assert result.row_count == 7
    expected = [Decimal(g) / 100 for g in range(1, 8)]
    assert parquet(workspace).column(0).to_pylist() == expected
    assert [row[0] for row in csv_rows(workspace)[1:]] == [f"0.0{g}" for g in range(1, 8)]


async def test_a_first_batch_of_nulls_leaves_the_column_text(
    small_batches: PostgresBackend, workspace: Path
) -> None:
    """No value yet says the scale, and more rows are coming: the exact text, not a guess."""
    sql = "SELECT x FROM (VALUES (NULL::numeric), (NULL), (3.125)) AS t(x)"
    result = await save(small_batches, sql, workspace)
    assert result.columns == [("x", "numeric, saved as text")]
    assert parquet(workspace).column(0).to_pylist() == [None, None, "3.125"]


# --- PostgreSQL: money, enums --------------------------------------------------------------


async def test_money_is_a_decimal(postgres: PostgresBackend, workspace: Path) -> None:
    """money was lc_monetary's text ("$1,234.56", "-$5.00"): no number to sum."""
    sql = "SELECT fee, sum(fee) OVER () AS total, ARRAY[fee] AS fees FROM claims ORDER BY claim_id"
    result = await save(postgres, sql, workspace)
    assert result.columns == [("fee", "money"), ("total", "money"), ("fees", "money[]")]
    fees = ["1234.56", "-5.00", "-92233720368547758.08", None, "92233720368547758.07"]
    table = parquet(workspace)
    assert table.schema.types[:2] == [pa.decimal128(19, 2), pa.decimal128(19, 2)]
    assert table.column("fee").to_pylist() == [v and Decimal(v) for v in fees]
    assert table.column("total").to_pylist() == [Decimal("1229.55")] * 5
    assert table.column("fees").to_pylist()[0] == [Decimal("1234.56")]
    assert [row[0] for row in csv_rows(workspace)[1:]] == [v or "" for v in fees]
    assert result.preview[1][0] == Decimal("-5.00")


@pytest.mark.parametrize(
    ("text", "places", "number"),
    [
        (b"$1,234.56", 2, "1234.56"),
        (b"-$0.05", 2, "-0.05"),
        (b"-1.234,56 \xe2\x82\xac", 2, "-1234.56"),  # de_DE
        (b"($12.00)", 2, "-12.00"),  # a locale that puts negative amounts in parentheses
        (b"\xef\xbf\xa51,235", 0, "1235"),  # ja_JP: no digits after the point
        (b"KD 1,234.567", 3, "1234.567"),  # ar_KW: three
    ],
)
def test_money_is_read_in_any_locale(text: bytes, places: int, number: str) -> None:
    """Only the C locale is installed here, so other locales' money text is given as
    PostgreSQL writes it there: its digits are the amount, the last ``places`` after the
    point."""
    from loopwright.sql.postgres import _money_loader

    loader = _money_loader(places)(790)
    assert loader.load(text) == number


async def test_enums_are_their_labels_and_their_arrays_lists(
    postgres: PostgresBackend, workspace: Path
) -> None:
    """An array of enums was PostgreSQL's array text ({medicare,medicaid}), where text[]
    is a list; it is a list of the labels now, as JSON in the CSV."""
    sql = """
    SELECT payer, array_agg(payer ORDER BY claim_id) AS payers
    FROM claims WHERE claim_id <= 4 GROUP BY payer ORDER BY payer
    """
    for _ in range(2):  # the second time on the pooled connection
        result = await save(postgres, sql, workspace)
    assert result.columns == [("payer", "payer"), ("payers", "payer[]")]
    table = parquet(workspace)
    assert table.schema.types == [pa.string(), pa.list_(pa.string())]
    assert table.to_pylist() == [
        {"payer": "medicare", "payers": ["medicare", "medicare"]},
        {"payer": "medicaid", "payers": ["medicaid"]},
        {"payer": "commercial", "payers": ["commercial"]},
    ]
    assert csv_rows(workspace)[1:] == [
        ["medicare", '["medicare", "medicare"]'],
        ["medicaid", '["medicaid"]'],
        ["commercial", '["commercial"]'],
    ]


async def test_the_tool_tells_the_model_the_saved_type(dsn: str, workspace: Path) -> None:
    tool = SQLTool(workspace, backend=dsn, timeout=30)
    try:
        result = await tool.execute(
            {"sql": "SELECT sum(amount) AS paid FROM claims", "dataset_name": "paid"}
        )
    finally:
        await tool.aclose()
    assert result["is_error"] is False, result["content"]
    content = str(result["content"])
    assert "Columns: paid (numeric, saved as decimal(38,2))" in content
    assert "| 12345678901234568.20 |" in content


# --- DuckDB: HUGEINT and UHUGEINT ---------------------------------------------------------


@pytest.fixture
async def duckdb_backend() -> AsyncIterator[DuckDBBackend]:
    backend = DuckDBBackend(":memory:")
    yield backend
    await backend.aclose()


async def test_hugeints_are_exact_decimals(duckdb_backend: DuckDBBackend, workspace: Path) -> None:
    sql = f"""
    SELECT sum(x::HUGEINT * 100000000000000000000::HUGEINT) AS total,
           count(*)::HUGEINT AS n, '{NINES}'::HUGEINT AS nines, -'{NINES}'::HUGEINT AS minus,
           7::UHUGEINT AS small_unsigned, '{NINES}'::UHUGEINT AS unsigned_nines
    FROM range(1000) AS t(x)
    """
    result = await save(duckdb_backend, sql, workspace)
    assert [kind for _, kind in result.columns] == ["HUGEINT"] * 4 + ["UHUGEINT"] * 2
    table = parquet(workspace)
    assert table.schema.types == [pa.decimal128(38, 0)] * 6
    texts = ["49950000000000000000000000", "1000", NINES, "-" + NINES, "7", NINES]
    assert list(table.to_pylist()[0].values()) == [Decimal(t) for t in texts]
    assert csv_rows(workspace)[1] == texts
    assert list(result.preview[0]) == [Decimal(t) for t in texts]


async def test_integers_past_38_digits_are_their_text(
    duckdb_backend: DuckDBBackend, workspace: Path
) -> None:
    """DuckDB's Arrow makes 2^127 - 1 a decimal(38, 0) all the same, which the Parquet file
    held out of its precision; 2^128 - 1 as a UHUGEINT was text (and a decimal cast of that
    text wraps to -1)."""
    sql = f"SELECT '{HUGE}'::HUGEINT AS huge, -'{HUGE}'::HUGEINT AS minus, '{WRAPS}'::UHUGEINT AS u"
    result = await save(duckdb_backend, sql, workspace)
    texts = [HUGE, "-" + HUGE, WRAPS]
    table = parquet(workspace)
    assert table.schema.types == [pa.string()] * 3
    assert list(table.to_pylist()[0].values()) == texts
    assert csv_rows(workspace)[1] == texts
    assert list(result.preview[0]) == texts


async def test_a_later_hugeint_past_38_digits_is_a_clear_error(workspace: Path) -> None:
    backend = DuckDBBackend(":memory:", batch_rows=2)
    sql = (
        f"SELECT CASE WHEN x < 3 THEN x::HUGEINT ELSE '{HUGE}'::HUGEINT END AS h FROM range(4) t(x)"
    )
    try:
        with pytest.raises(ResultFileError) as caught:
            await save(backend, sql, workspace)
    finally:
        await backend.aclose()
    assert "column h could not be saved" in str(caught.value)
    assert "CAST(h AS VARCHAR)" in str(caught.value)
    assert not (workspace / "r.csv").exists()


async def test_hugeints_in_many_batches_stay_decimals(workspace: Path) -> None:
    backend = DuckDBBackend(":memory:", batch_rows=3)
    sql = "SELECT x::HUGEINT * 10000000000000000000000::HUGEINT AS h FROM range(10) t(x)"
    try:
        result = await save(backend, sql, workspace)
    finally:
        await backend.aclose()
    assert result.row_count == 10
    expected = [x * 10**22 for x in range(10)]
    assert parquet(workspace).column(0).to_pylist() == [Decimal(v) for v in expected]
    assert [row[0] for row in csv_rows(workspace)[1:]] == [str(v) for v in expected]


async def test_a_timestamp_past_arrows_is_a_clear_error(
    postgres: PostgresBackend, workspace: Path
) -> None:
    """infinity, BC and years past 9999 are saved (tests/sql/test_extreme_dates.py); past
    294247, which Arrow's microseconds cannot count, the error says to cast to text."""
    with pytest.raises(ResultFileError) as caught:
        await save(postgres, "SELECT '294276-12-31 23:59:59'::timestamp AS late", workspace)
    assert "294276-12-31 23:59:59" in str(caught.value)
    assert "::text" in str(caught.value)
