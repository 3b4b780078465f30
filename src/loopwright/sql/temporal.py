"""Dates and times as numbers, in any year, and as DuckDB writes them.

Arrow stores a date as days since 1970-01-01, a timestamp as seconds (or milli-, micro-,
nanoseconds) since then, a time of day as the same units since midnight, in any year the
numbers reach. Python's ``datetime`` stops at the years 1 to 9999, and so do Polars' CSV
writer and psycopg's loaders, so the values past those (DuckDB's and PostgreSQL's
``infinity`` and ``-infinity``, ``294247-01-10``, ``0044-03-15 BC``, a time of ``24:00:00``)
are converted here, with the proleptic Gregorian calendar's arithmetic (year 0 is 1 BC):
:func:`days_from_civil` and :func:`civil_date` both ways, and :func:`duckdb_text` for the
text DuckDB's own ``COPY ... TO`` writes. Used by :mod:`loopwright.sql.output` (the CSV and
the preview) and :mod:`loopwright.sql.postgres` (its loaders).
"""

from __future__ import annotations

import datetime as dt
import functools
import re
import zoneinfo

import pyarrow as pa  # type: ignore[import-untyped]

#: DuckDB's ``infinity`` as it stores it (``-infinity`` is minus this): the largest date32,
#: and the largest 64-bit value for a timestamp of any unit.
DATE_INFINITY, TIMESTAMP_INFINITY = 2**31 - 1, 2**63 - 1
PER_SECOND = {"s": 1, "ms": 1_000, "us": 1_000_000, "ns": 1_000_000_000}


def days_from_civil(year: int, month: int, day: int) -> int:
    """Days from 1970-01-01 to a date of the proleptic Gregorian calendar, in any year
    (year 0 is 1 BC): Howard Hinnant's ``days_from_civil``."""
    year -= month <= 2
    era, year_of_era = divmod(year, 400)
    day_of_year = (153 * (month + (-3 if month > 2 else 9)) + 2) // 5 + day - 1
    day_of_era = year_of_era * 365 + year_of_era // 4 - year_of_era // 100 + day_of_year
    return era * 146_097 + day_of_era - 719_468


def duckdb_text(value: int, kind: pa.DataType) -> str:
    """A stored date (days), time or timestamp (in ``kind``'s unit) as DuckDB writes it:
    ``infinity``, ``-infinity``, ``294247-01-10``, ``0044-03-15 (BC)``,
    ``0044-03-15 (BC) 12:34:56.5``, ``10000-01-01 05:30:00+05:30``, ``24:00:00``."""
    if pa.types.is_date32(kind):
        if abs(value) == DATE_INFINITY:
            return "infinity" if value > 0 else "-infinity"
        return _day_text(value)
    per_second = PER_SECOND[kind.unit]
    if pa.types.is_time(kind):
        return _clock_text(value, per_second)
    if abs(value) == TIMESTAMP_INFINITY:
        return "infinity" if value > 0 else "-infinity"
    offset = _utc_offset(kind.tz, value // per_second) if kind.tz else None
    day, clock = divmod(value + (offset or 0) * per_second, 86_400 * per_second)
    text = f"{_day_text(day)} {_clock_text(clock, per_second)}"
    return text if offset is None else text + _offset_text(offset)


def _day_text(days: int) -> str:
    """Days since 1970-01-01 as DuckDB's date: years padded to four digits, as many as
    needed past 9999, and ``(BC)`` before year 1 (year 0 is 1 BC)."""
    year, month, day = civil_date(days)
    if year <= 0:
        return f"{1 - year:04d}-{month:02d}-{day:02d} (BC)"
    return f"{year:04d}-{month:02d}-{day:02d}"


def civil_date(days: int) -> tuple[int, int, int]:
    """Days since 1970-01-01 as (year, month, day) of the proleptic Gregorian calendar,
    for any number of days (year 0 is 1 BC): Howard Hinnant's ``civil_from_days``."""
    shifted = days + 719_468  # from 0000-03-01
    era, day_of_era = divmod(shifted, 146_097)
    year_of_era = (
        day_of_era - day_of_era // 1_460 + day_of_era // 36_524 - day_of_era // 146_096
    ) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    month_from_march = (5 * day_of_year + 2) // 153
    day = day_of_year - (153 * month_from_march + 2) // 5 + 1
    month = month_from_march + 3 if month_from_march < 10 else month_from_march - 9
    return era * 400 + year_of_era + (month <= 2), month, day


def _clock_text(value: int, per_second: int) -> str:
    """A time of day as DuckDB writes it: ``24:00:00``, ``12:34:56.5`` (no trailing zeros)."""
    seconds, fraction = divmod(value, per_second)
    minutes, second = divmod(seconds, 60)
    hour, minute = divmod(minutes, 60)
    text = f"{hour:02d}:{minute:02d}:{second:02d}"
    if fraction:
        text += "." + str(fraction).rjust(len(str(per_second)) - 1, "0").rstrip("0")
    return text


def _offset_text(seconds: int) -> str:
    """A UTC offset as DuckDB writes it: ``+00``, ``+05:30``, ``-04:56`` (for -04:56:02:
    DuckDB leaves seconds out of the offset, though the local time has them)."""
    hours, rest = divmod(abs(seconds), 3_600)
    minutes = rest // 60
    return ("-" if seconds < 0 else "+") + f"{hours:02d}" + (f":{minutes:02d}" if minutes else "")


#: The Gregorian calendar repeats every 400 years, weekdays and all: 146,097 days.
_CYCLE_S = 146_097 * 86_400
#: 0401-01-01 and 2400-01-01 in seconds since 1970: times before the first are moved past
#: it, and times after the second back, whole cycles at a time, to find their UTC offset
#: where Python can (before any zone's first change; under each zone's rule for the future).
_YEAR_401_S, _YEAR_2400_S = -49_512_816_000, 13_569_465_600
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def _utc_offset(zone_name: str, seconds: int) -> int:
    """The UTC offset (seconds) in the time zone ``zone_name`` at ``seconds`` since 1970, in
    any year; 0 for a zone Python does not know (the time is then written in UTC, ``+00``)."""
    zone = _zone(zone_name)
    if zone is None:
        return 0
    if seconds >= _YEAR_2400_S:
        seconds = _YEAR_2400_S + (seconds - _YEAR_2400_S) % _CYCLE_S
    elif seconds < _YEAR_401_S:
        seconds = _YEAR_401_S + (seconds - _YEAR_401_S) % _CYCLE_S
    offset = (_EPOCH + dt.timedelta(seconds=seconds)).astimezone(zone).utcoffset()
    return 0 if offset is None else int(offset.total_seconds())


_FIXED_OFFSET = re.compile(r"([+-])(\d\d):?(\d\d)")


@functools.lru_cache(maxsize=64)
def _zone(name: str) -> dt.tzinfo | None:
    """Arrow's time zone ``name`` (IANA's ``Asia/Kolkata``, or ``+05:30``) for Python."""
    fixed = _FIXED_OFFSET.fullmatch(name)
    if fixed is not None:
        sign = -1 if fixed[1] == "-" else 1
        return dt.timezone(sign * dt.timedelta(hours=int(fixed[2]), minutes=int(fixed[3])))
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        return None
