"""The calendar arithmetic behind dates Python has none for, checked against Python's own
calendar where it has one, and against DuckDB's text where it has not."""

from __future__ import annotations

import datetime as dt
import random

import duckdb
import pyarrow as pa

from loopwright.sql.temporal import civil_date, days_from_civil, duckdb_text

EPOCH = dt.date(1970, 1, 1)


def test_days_and_dates_agree_with_pythons_calendar_where_it_has_one() -> None:
    picks = random.Random(7)
    for days in [0, -1, -719_162, 2_932_896] + [
        picks.randint(-719_162, 2_932_896) for _ in range(2_000)
    ]:
        date = EPOCH + dt.timedelta(days=days)
        assert civil_date(days) == (date.year, date.month, date.day)
        assert days_from_civil(date.year, date.month, date.day) == days


def test_both_ways_round_trip_far_past_and_future() -> None:
    picks = random.Random(11)
    for days in [picks.randint(-(2**31) + 2, 2**31 - 2) for _ in range(2_000)]:
        assert days_from_civil(*civil_date(days)) == days
    assert civil_date(-719_528) == (0, 1, 1)  # 1 BC is year 0
    assert duckdb_text(-719_528, pa.date32()) == "0001-01-01 (BC)"


def test_duckdb_text_is_what_duckdb_writes() -> None:
    picks = random.Random(3)
    days = [picks.randint(-5_000_000, 100_000_000) for _ in range(300)]
    with duckdb.connect() as connection:
        written = connection.execute(
            "SELECT CAST(DATE '1970-01-01' + CAST(d AS INTEGER) AS VARCHAR) FROM unnest(?) t(d)",
            [days],
        ).fetchall()
    assert [duckdb_text(d, pa.date32()) for d in days] == [row[0] for row in written]
