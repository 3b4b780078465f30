"""``DefineCohort``: a patient cohort from structured criteria, as a parameterised query.

Analysts define populations all the time ("patients on HUMIRA in California with
rheumatoid arthritis, 2024, at least two fills, never on ENBREL"). Letting a model paste
such values into SQL invites quoting bugs and injection; this tool takes the criteria as
structured input instead and builds the query itself:

- every value (drug names, ICD-10 codes, states, dates, ages...) is bound as a query
  parameter, never written into the SQL text, so ``HUMIRA' OR '1'='1`` is just a drug name
  that matches nothing;
- every identifier (table, column) comes from an allowlist: the design guide's claims
  columns, looked up in the database's real schema (case-insensitively, so a PostgreSQL copy
  with lower-case names works), and quoted;
- the query runs read-only: for the embedded DuckDB file, on a second connection with the
  SQL tool's read-only settings (the SQL backends take no parameters); for PostgreSQL, on a
  ``read_only`` psycopg connection to the same server; for BigQuery, which has no read-only
  connection, behind the SQL tool's locks (a dry run whose statement type must be
  ``SELECT``, the bytes cap, the job timeout).

The tool saves the definition as ``cohorts/<name>.json`` (criteria, the SQL with its
placeholders, the parameter values, when, counts) and the members (one row per patient,
with their qualifying claim counts) as ``cohorts/<name>.csv`` and ``cohorts/<name>.parquet``
(which keeps the column types, also when the cohort is empty), and answers with the patient
and claim counts and the SQL. Values that match nothing in the data are pointed out, so a
misspelt drug does not silently shrink the cohort; a sex that matches nothing comes with the
codes the column holds. Defining a cohort under a name already used replaces the earlier
one, and the answer says so (with its patient count).

Semantics, for the definition's readers: the inclusion criteria are ANDed. ``drugs``: at
least ``min_claims`` pharmacy claims for any of them; ``conditions`` (ICD-10 codes, matched
as prefixes with or without the dot, so ``E11.9`` and ``E119`` find the same claims whichever
way the database writes them, or condition labels): at least ``min_claims`` medical claims
for any of them.
``states``, ``specialties`` (of the prescriber or treating provider), the date range, age (at
the claim, from the birth year) and sex filter those qualifying claims. Without drugs or
conditions the cohort is built from pharmacy claims alone. ``exclude_drugs`` and
``exclude_conditions`` remove patients who ever had such a claim in the data. Claims without
a patient id count for nobody. The member list is in code point order of the patient ids,
whatever the database's collation, so the same data gives the same file on every backend.

Text values (drugs, condition labels, specialties, states) match case-insensitively as the
database sees it: its own ``lower()`` (``upper()`` for states) on both sides of the
comparison, since no two databases lower-case alike beyond ASCII; two values of a list are
one only when they differ in ASCII letters' case (``Straße`` and ``STRASSE`` are two). A
claim's day is its date column as it is; for a ``TIMESTAMP WITH TIME ZONE`` (BigQuery's
``TIMESTAMP``), the day it falls on in UTC, whatever the session's time zone; for text or
numbers, the day they write. A day outside the years 1 to 9999 (``infinity``) is no day: the
claim counts as one without a date, which no date window or age criterion keeps. The saved
definition names each parameter's type as the database does (``parameter_types``), so its SQL
can be run again with the parameters it was run with.
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import datetime as dt
import io
import json
import os
import re
import secrets
import stat
from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any, BinaryIO, ClassVar, Literal

from loopwright.healthcare.prompt import MAX_LISTED_QUASI
from loopwright.sandbox.paths import SecurityError
from loopwright.tools.base import BaseTool, ToolResult, Toolset, error, ok

if TYPE_CHECKING:
    import duckdb
    import psycopg
    import pyarrow as pa  # type: ignore[import-untyped]

    from loopwright.sql.base import Bill, Interrupter, SQLBackend

#: Where cohorts are saved, relative to the workspace.
COHORT_DIR = "cohorts"
MAX_VALUES = 100
MAX_VALUE_CHARS = 200
DEFAULT_TIMEOUT_S = 60.0
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]{0,99}")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
#: An ICD-10(-CM) code or code prefix: a letter, two characters, optional decimals, after a
#: dot or not (databases store ``E11.9`` or ``E119``; see :func:`code_spellings`).
_ICD10 = re.compile(r"[A-Z][0-9][0-9A-Z](\.?[0-9A-Z]{0,4})?", re.IGNORECASE)
_SEXES = {"f": "F", "female": "F", "woman": "F", "m": "M", "male": "M", "man": "M"}
#: Codes of a column listed when the sex asked for matches none of them: as many as the
#: prompt lists of a patient quasi-identifier (a code list like F, M, U names no one).
MAX_LISTED_CODES = MAX_LISTED_QUASI


class CohortError(ValueError):
    """Criteria the tool cannot turn into a query; the message says what to change."""


# --- the criteria --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Criteria:
    """Inclusion and exclusion criteria of a cohort, validated and normalised."""

    drugs: tuple[str, ...] = ()
    conditions: tuple[str, ...] = ()
    states: tuple[str, ...] = ()
    specialties: tuple[str, ...] = ()
    start_date: dt.date | None = None
    end_date: dt.date | None = None
    min_age: int | None = None
    max_age: int | None = None
    sex: Literal["F", "M"] | None = None
    min_claims: int = 1
    exclude_drugs: tuple[str, ...] = ()
    exclude_conditions: tuple[str, ...] = ()

    @classmethod
    def from_input(cls, data: Mapping[str, Any]) -> Criteria:
        """Criteria from the tool's input; :class:`CohortError` saying what is wrong."""
        start = _date(data.get("start_date"), "start_date")
        end = _date(data.get("end_date"), "end_date")
        if start is not None and end is not None and start > end:
            raise CohortError(f"start_date {start} is after end_date {end}; swap them or fix one.")
        min_age = _int(data.get("min_age"), "min_age", 0, 130)
        max_age = _int(data.get("max_age"), "max_age", 0, 130)
        if min_age is not None and max_age is not None and min_age > max_age:
            raise CohortError(f"min_age {min_age} is above max_age {max_age}; fix one of them.")
        sex_value = data.get("sex")
        sex: Literal["F", "M"] | None = None
        if sex_value is not None and sex_value != "":
            normalised = _SEXES.get(str(sex_value).strip().lower())
            if normalised is None:
                raise CohortError(f"sex {sex_value!r} is not understood; use 'F' or 'M'.")
            sex = "F" if normalised == "F" else "M"
        min_claims = _int(data.get("min_claims"), "min_claims", 1, 1_000_000)
        criteria = cls(
            drugs=_values(data.get("drugs"), "drugs"),
            conditions=_values(data.get("conditions"), "conditions"),
            # "ca" and "California" are one state: once in the query and the description
            states=tuple(dict.fromkeys(_state(s) for s in _values(data.get("states"), "states"))),
            specialties=_values(data.get("specialties"), "specialties"),
            start_date=start,
            end_date=end,
            min_age=min_age,
            max_age=max_age,
            sex=sex,
            min_claims=1 if min_claims is None else min_claims,
            exclude_drugs=_values(data.get("exclude_drugs"), "exclude_drugs"),
            exclude_conditions=_values(data.get("exclude_conditions"), "exclude_conditions"),
        )
        if criteria == cls(min_claims=criteria.min_claims):
            raise CohortError(
                "No criteria given; name at least one of drugs, conditions, states, "
                "specialties, start_date/end_date, min_age/max_age or sex."
            )
        _check_not_excluded(criteria.drugs, criteria.exclude_drugs, "drugs")
        _check_not_excluded(criteria.conditions, criteria.exclude_conditions, "conditions")
        return criteria

    def to_dict(self) -> dict[str, Any]:
        """The criteria as saved in the definition: ``{"include": ..., "exclude": ...}``."""
        include: dict[str, Any] = {}
        for key in ("drugs", "conditions", "states", "specialties"):
            if getattr(self, key):
                include[key] = list(getattr(self, key))
        for key in ("start_date", "end_date"):
            value = getattr(self, key)
            if value is not None:
                include[key] = value.isoformat()
        for key in ("min_age", "max_age", "sex"):
            if getattr(self, key) is not None:
                include[key] = getattr(self, key)
        include["min_claims"] = self.min_claims
        exclude: dict[str, Any] = {}
        if self.exclude_drugs:
            exclude["drugs"] = list(self.exclude_drugs)
        if self.exclude_conditions:
            exclude["conditions"] = list(self.exclude_conditions)
        return {"include": include, "exclude": exclude}

    def describe(self) -> str:
        """The criteria in one line of plain English."""
        parts = []
        if self.drugs:
            parts.append(f"drugs {_listing(self.drugs)}")
        if self.conditions:
            parts.append(f"conditions {_listing(self.conditions)}")
        if self.states:
            parts.append(f"states {_listing(self.states)}")
        if self.specialties:
            parts.append(f"specialties {_listing(self.specialties)}")
        if self.start_date or self.end_date:
            parts.append(
                f"claims from {self.start_date or 'the start'} to {self.end_date or 'the end'}"
            )
        if self.min_age is not None or self.max_age is not None:
            parts.append(
                f"age {self.min_age or 0} to {self.max_age if self.max_age is not None else 'any'}"
            )
        if self.sex:
            parts.append(f"sex {self.sex}")
        parts.append(
            f"at least {self.min_claims} qualifying claim{'s' if self.min_claims > 1 else ''}"
        )
        text = "include " + "; ".join(parts)
        excluded = [
            f"drugs {_listing(self.exclude_drugs)}" if self.exclude_drugs else "",
            f"conditions {_listing(self.exclude_conditions)}" if self.exclude_conditions else "",
        ]
        if any(excluded):
            text += ". Exclude patients ever on " + "; ".join(p for p in excluded if p)
        return text + "."


#: What makes a list of values written one after another ambiguous, held in a value: the
#: separators of :meth:`Criteria.describe` (``, `` between values, ``; `` between criteria)
#: and quotes.
_SEPARATORS = re.compile(r"[,;'\"]")


def _listing(values: Sequence[str]) -> str:
    """``values`` for a sentence: as they are (``HUMIRA, ENBREL``) when none holds a
    separator, else each quoted (``'Diabetes, type 2', 'Obesity'``: two values, not three)."""
    if any(_SEPARATORS.search(value) for value in values):
        return ", ".join(repr(value) for value in values)
    return ", ".join(values)


def _check_not_excluded(included: Sequence[str], excluded: Sequence[str], key: str) -> None:
    """:class:`CohortError` when every value of an inclusion list is also excluded (an
    ICD-10 code inside an excluded code's prefix included, dot or no dot): each patient it
    brings in is removed again, so the cohort is empty by construction. Some of them is a
    real cohort ("on HUMIRA or ENBREL, never on HUMIRA": ENBREL without HUMIRA). Values are
    the same when they differ in the case of ASCII letters only, as every database's
    ``lower()`` has them (``Straße`` and ``STRASSE`` are two values there)."""

    def covered(value: str) -> bool:
        folded = _ascii_lower(value)
        return any(
            folded == _ascii_lower(other)
            or (
                _ICD10.fullmatch(value) is not None
                and _ICD10.fullmatch(other) is not None
                and _undotted(value).startswith(_undotted(other))
            )
            for other in excluded
        )

    if included and all(covered(value) for value in included):
        shown = ", ".join(repr(value) for value in included)
        raise CohortError(
            f"Every value of {key} ({shown}) is also excluded by exclude_{key}: each patient "
            "they bring in would be removed again, so the cohort would be empty. Take them "
            f"out of exclude_{key} or out of {key}."
        )


def _values(value: Any, key: str) -> tuple[str, ...]:
    if value is None or value == "":
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list | tuple):
        raise CohortError(f'{key} must be a list of strings, e.g. ["HUMIRA"].')
    if len(value) > 10 * MAX_VALUES:  # repeats are dropped below, but not this many
        raise CohortError(f"{key} has {len(value)} values; give at most {MAX_VALUES}.")
    cleaned: list[str] = []
    seen: set[str] = set()
    for item in value:
        if not isinstance(item, str) or not item.strip():
            raise CohortError(f"{key} must hold non-empty strings; got {item!r}.")
        text = " ".join(item.split())
        if len(text) > MAX_VALUE_CHARS:
            raise CohortError(
                f"a value of {key} is {len(text)} characters; use at most {MAX_VALUE_CHARS}."
            )
        checked_text(text, key)
        # one value when only ASCII letters' case differs (HUMIRA, humira): every database
        # lower-cases those alike; not Python's casefold, which makes Straße STRASSE
        if _ascii_lower(text) not in seen:
            seen.add(_ascii_lower(text))
            cleaned.append(text)
        if len(cleaned) > MAX_VALUES:
            raise CohortError(f"{key} has more than {MAX_VALUES} values; give at most that.")
    return tuple(cleaned)


#: Control characters (NUL included: PostgreSQL's text cannot hold it) and lone surrogates
#: (no UTF-8 for them): never in a name, a code or a description.
_UNWRITABLE = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f\ud800-\udfff]")


def checked_text(text: str, key: str) -> str:
    """``text`` if it holds no control character or lone surrogate, else a clear error."""
    found = _UNWRITABLE.search(text)
    if found is not None:
        raise CohortError(
            f"{key} holds the character U+{ord(found.group()):04X} at position "
            f"{found.start() + 1}, which no claims value has; remove it."
        )
    return text


def _state(value: str) -> str:
    """A state as its two-letter code: codes pass (upper-cased), full names are looked up."""
    from loopwright.healthcare.data import STATE_NAMES

    if len(value) == 2:
        return _ascii_upper(value)
    by_name = {_ascii_lower(name): code for code, name in STATE_NAMES.items()}
    return by_name.get(_ascii_lower(value), value)


def _date(value: Any, key: str) -> dt.date | None:
    if value is None or value == "":
        return None
    if isinstance(value, dt.datetime):  # a day, not a moment: 15:00 would drop that day's claims
        return value.date()
    if isinstance(value, dt.date):
        return value
    if str(value).strip().lower().lstrip("+-") == "infinity":  # PostgreSQL's, DuckDB's
        bound = "lower" if key.startswith("start") else "upper"
        raise CohortError(
            f"{key} {value!r} is no day: leave {key} out for no {bound} bound, or give a date "
            "as YYYY-MM-DD."
        )
    try:
        return dt.date.fromisoformat(str(value).strip())
    except ValueError as exc:
        # written right but no day of the calendar (2023-02-29): say so, not how to write it
        why = f" ({exc})" if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", str(value).strip()) else ""
        raise CohortError(f"{key} {value!r} is not a date{why}; write it as YYYY-MM-DD.") from None


def _int(value: Any, key: str, low: int, high: int) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, float) and value.is_integer():  # JSON's 40.0 is a whole number
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise CohortError(f"{key} must be a whole number between {low} and {high}.")
    try:
        number = int(value)
    except ValueError:
        raise CohortError(f"{key} must be a whole number between {low} and {high}.") from None
    if not low <= number <= high:
        raise CohortError(f"{key} {number} is out of range; use {low} to {high}.")
    return number


# --- the schema allowlist ------------------------------------------------------------------

#: The design guide's columns each criterion reads, by role. Only these can appear in SQL.
PHARMACY_COLUMNS: Mapping[str, str] = {
    "table": "RX_CLAIMS",
    "patient": "PATIENT_ID",
    "date": "SERVICE_DATE_DD",
    "drug": "NDC_DRUG_NM",
    "state": "PRESCRIBER_NPI_STATE_CD",
    "provider": "PRESCRIBER_NPI_NBR",
    "birth_year": "PATIENT_BIRTH_YEAR",
    "sex": "PATIENT_GENDER_CD",
}
MEDICAL_COLUMNS: Mapping[str, str] = {
    "table": "MED_CLAIMS",
    "patient": "PATIENT_ID",
    "date": "STATEMENT_FROM_DD",
    "label": "condition_label",
    "code": "ICD10_CD",
    "state": "SERVICE_STATE_CD",
    "provider": "PRIMARY_HCP",
    "birth_year": "PATIENT_BIRTH_YEAR",
    "sex": "PATIENT_GENDER_CD",
}
PROVIDER_COLUMNS: Mapping[str, str] = {
    "table": "PROVIDERS_BIO",
    "npi": "npi_number",
    "specialty": "specialty",
}


@dataclass(frozen=True, slots=True)
class Source:
    """A table of the allowlist as it is named in this database: ``{role: real name}``."""

    table: str
    columns: Mapping[str, str]
    types: Mapping[str, str] = field(default_factory=dict)
    """``{role: the column's type}``, as the database names it (upper-cased)."""
    dates: DateText | None = None
    """How the date column writes its dates when it is text or a number (read from its
    values by :func:`read_dates`); ``None``: not read, a cast reads them."""

    def has(self, role: str) -> bool:
        return role in self.columns

    def __getitem__(self, role: str) -> str:
        return self.columns[role]


@dataclass(frozen=True, slots=True)
class CohortSchema:
    """Which of the allowlisted tables and columns this database has, under their real names."""

    pharmacy: Source | None
    medical: Source | None
    providers: Source | None
    missing: Mapping[str, str] = field(default_factory=dict)
    """``{table: why}`` for an allowlisted table not resolved: what the database has instead
    (another table's columns, other tables), so the model can turn to the SQL tool."""

    @classmethod
    def from_schema(cls, schema: Mapping[str, Sequence[tuple[str, str]]]) -> CohortSchema:
        """Resolve the allowlist against ``{table: [(column, type)]}`` (case-insensitive;
        ``schema.table`` keys match by their last part)."""
        wanted: list[tuple[Mapping[str, str], tuple[str, ...], tuple[str, ...]]] = [
            (PHARMACY_COLUMNS, ("patient", "date", "drug"), ()),
            (MEDICAL_COLUMNS, ("patient", "date"), ("label", "code")),
            (PROVIDER_COLUMNS, ("npi", "specialty"), ()),
        ]
        sources = [_resolve(schema, *each) for each in wanted]
        missing = {
            each[0]["table"]: _unresolved(schema, *each)
            for each, source in zip(wanted, sources, strict=True)
            if source is None
        }
        pharmacy, medical, providers = sources
        return cls(pharmacy, medical, providers, missing)

    def check(self, criteria: Criteria) -> None:
        """:class:`CohortError` naming the first criterion this database cannot answer."""
        if (criteria.drugs or criteria.exclude_drugs) and self.pharmacy is None:
            raise CohortError(self._missing("drugs", PHARMACY_COLUMNS))
        if (criteria.conditions or criteria.exclude_conditions) and self.medical is None:
            raise CohortError(self._missing("conditions", MEDICAL_COLUMNS))
        anchors = self.anchors(criteria)
        if not anchors:
            raise CohortError(self._missing("a cohort", PHARMACY_COLUMNS))
        for role, criterion, wanted in (
            ("state", "states", bool(criteria.states)),
            (
                "birth_year",
                "min_age/max_age",
                criteria.min_age is not None or criteria.max_age is not None,
            ),
            ("sex", "sex", criteria.sex is not None),
            ("provider", "specialties", bool(criteria.specialties)),
        ):
            if wanted:
                for source in anchors:
                    if not source.has(role):
                        columns = PHARMACY_COLUMNS if source is self.pharmacy else MEDICAL_COLUMNS
                        raise CohortError(
                            f"This database's {source.table} has no column for {criterion} "
                            f"(DefineCohort reads {columns[role]}); drop {criterion} from the "
                            "criteria, or filter on the column it has with the SQL tool."
                        )
        if criteria.specialties and self.providers is None:
            raise CohortError(self._missing("specialties", PROVIDER_COLUMNS))
        self._check_codes_are_text(criteria, anchors)
        if criteria.min_age is not None or criteria.max_age is not None:
            for source in anchors:
                kind = source.types.get("birth_year", "")
                if kind.startswith(_NOT_YEAR_TYPES):  # the database refuses year - text
                    raise CohortError(
                        f"This database's {source.table}.{source['birth_year']} is {kind}, "
                        "not a year number, so DefineCohort cannot compute ages from it; drop "
                        "min_age/max_age, or compute ages with the SQL tool."
                    )
        for value in criteria.conditions + criteria.exclude_conditions:
            assert self.medical is not None
            if not self.medical.has("label") and not _is_code(value, self.medical):
                raise CohortError(
                    f"This database has only ICD-10 codes for conditions; give {value!r} as "
                    "an ICD-10 code (e.g. M06.9)."
                )

    def anchors(self, criteria: Criteria) -> list[Source]:
        """The claim tables the inclusion criteria select from."""
        chosen: list[Source] = []
        if criteria.drugs and self.pharmacy is not None:
            chosen.append(self.pharmacy)
        if criteria.conditions and self.medical is not None:
            chosen.append(self.medical)
        if not criteria.drugs and not criteria.conditions:
            fallback = self.pharmacy or self.medical
            if fallback is not None:
                chosen.append(fallback)
        return chosen

    def _check_codes_are_text(self, criteria: Criteria, anchors: Sequence[Source]) -> None:
        """:class:`CohortError` for a criterion matched as text (``upper(state)``) on a
        column of numbers: claims data often codes sex as 1/2 and states as numbers (SSA or
        FIPS codes), which no database upper-cases; the model is told to count with SQL."""
        wanted: list[tuple[Source | None, str, str, bool]] = [
            (self.pharmacy, "drug", "drugs", bool(criteria.drugs or criteria.exclude_drugs)),
            (self.providers, "specialty", "specialties", bool(criteria.specialties)),
        ]
        for anchor in anchors:
            wanted += [
                (anchor, "state", "states", bool(criteria.states)),
                (anchor, "sex", "sex", criteria.sex is not None),
            ]
        if self.medical is not None and (criteria.conditions or criteria.exclude_conditions):
            wanted += [(self.medical, role, "conditions", True) for role in ("label", "code")]
        for source, role, criterion, used in wanted:
            if not used or source is None or not source.has(role):
                continue
            kind = source.types.get(role, "")
            if _is_number_type(kind):
                raise CohortError(
                    f"This database's {source.table}.{source[role]} holds numbers ({kind}), "
                    f"not the codes or names DefineCohort matches for {criterion}; drop "
                    f"{criterion} from the criteria and filter on that column's codes with "
                    "the SQL tool."
                )

    def _missing(self, what: str, columns: Mapping[str, str]) -> str:
        why = self.missing.get(columns["table"])
        return (
            f"This database has no {columns['table']} table with the columns {what} needs, so "
            "DefineCohort cannot build it; query the data with the SQL tool instead."
            + (f" {why}" if why else "")
        )


#: Column types (upper-cased, without their precision) of numbers: no database upper-cases
#: or lower-cases one, so a criterion matched as text cannot read such a column.
_NUMBER_TYPES = frozenset(
    {"TINYINT", "SMALLINT", "INTEGER", "INT", "BIGINT", "HUGEINT", "INT2", "INT4", "INT8"}
    | {"INT64", "UTINYINT", "USMALLINT", "UINTEGER", "UBIGINT", "UHUGEINT", "DECIMAL"}
    | {"NUMERIC", "BIGNUMERIC", "DOUBLE", "DOUBLE PRECISION", "FLOAT", "FLOAT4", "FLOAT8"}
    | {"FLOAT64", "REAL"}
)
#: Column types (upper-cased prefixes) a birth year cannot be subtracted from: text, dates.
_NOT_YEAR_TYPES = ("VARCHAR", "TEXT", "STRING", "CHAR", "DATE", "TIMESTAMP", "BLOB", "BYTES")


def _resolve(
    schema: Mapping[str, Sequence[tuple[str, str]]],
    wanted: Mapping[str, str],
    required: Sequence[str],
    any_of: Sequence[str] = (),
) -> Source | None:
    table = _table_named(schema, wanted["table"])
    if table is None:  # its schema's name may need quotes ("My Schema"): Dialect.quote
        return None
    real = {name.lower(): (name, str(kind)) for name, kind in schema[table]}
    columns: dict[str, str] = {}
    types: dict[str, str] = {}
    for role, name in wanted.items():
        if role == "table":
            continue
        found = real.get(name.lower())
        if found is not None and _IDENTIFIER.fullmatch(found[0]):
            columns[role], types[role] = found[0], found[1].strip().upper()
    if not all(role in columns for role in required):
        return None
    if any_of and not any(role in columns for role in any_of):
        return None
    return Source(table, columns, types)


def _table_named(schema: Mapping[str, object], name: str) -> str | None:
    """The schema's key for table ``name``: the one in the default schema (keys without a
    schema part) if there is one, else the only one in another schema."""
    found = [t for t in schema if t.rsplit(".", 1)[-1].lower() == name.lower()]
    unqualified = sorted((t for t in found if "." not in t), key=lambda t: t != name)
    if unqualified:
        return unqualified[0]
    if len(found) > 1:
        raise CohortError(
            f"There are {len(found)} {name} tables ({', '.join(sorted(found))}) and none in the "
            "default schema, so DefineCohort cannot tell which to use; query them with the "
            "SQL tool instead."
        )
    return found[0] if found else None


#: Names listed in a message saying what a database has instead of an allowlisted table.
MAX_NAMES_SHOWN = 20


def _unresolved(
    schema: Mapping[str, Sequence[tuple[str, str]]],
    wanted: Mapping[str, str],
    required: Sequence[str],
    any_of: Sequence[str] = (),
) -> str:
    """Why :func:`_resolve` found no ``wanted`` table, naming what the database has: the
    columns the table lacks and those it has, or the tables there are (a database of one's
    own names its claims otherwise: ``pharmacy_claims``, ``member_id``)."""
    name = wanted["table"]
    needed = [wanted[role] for role in required]
    if any_of:
        needed.append(" or ".join(wanted[role] for role in any_of))
    table = _table_named(schema, name)
    if table is None:
        tables = sorted(schema)
        shown = ", ".join(tables[:MAX_NAMES_SHOWN])
        more = f" and {len(tables) - MAX_NAMES_SHOWN} more" if len(tables) > MAX_NAMES_SHOWN else ""
        has = f"its tables are {shown}{more}" if tables else "it has no tables"
        return f"DefineCohort reads a table named {name} with {', '.join(needed)}; {has}."
    columns = [column for column, _ in schema[table]]
    shown = ", ".join(columns[:MAX_NAMES_SHOWN])
    if len(columns) > MAX_NAMES_SHOWN:
        shown += f" and {len(columns) - MAX_NAMES_SHOWN} more"
    return f"DefineCohort reads {', '.join(needed)} from {table}, whose columns are {shown}."


def _is_code(value: str, medical: Source) -> bool:
    return medical.has("code") and _ICD10.fullmatch(value) is not None


def code_spellings(code: str) -> tuple[str, ...]:
    """The prefixes an ICD-10 code (or code prefix) is matched by, upper-cased: with the dot
    after its first three characters and without, as databases store codes either way
    (``E11.9`` and ``E119``, whichever the criteria give). A category (``E11``) has one."""
    bare = _undotted(code)
    return (bare,) if len(bare) <= 3 else (f"{bare[:3]}.{bare[3:]}", bare)


def _undotted(code: str) -> str:
    return code.upper().replace(".", "")


# --- building the query --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Dialect:
    """How a database quotes identifiers and writes a named parameter."""

    name: str
    quote_char: str
    placeholder_format: str
    escape_char: str = ""
    """What escapes the quote character (and itself) inside a quoted identifier; empty:
    the quote character is doubled."""
    percent_doubled: bool = False
    """Whether a ``%`` in the SQL text must be written ``%%`` (psycopg's ``%(name)s``
    placeholders: a lone ``%`` in a schema's name would be read as one)."""

    def quote(self, identifier: str) -> str:
        """A quoted identifier; ``schema.table`` quoted part by part, split at its last dot
        (the backends name a table of another schema so, and only the schema's name, which
        may hold anything, a space, a dot, a quote, can have one)."""
        schema, dot, name = identifier.rpartition(".")
        return (self._quote_one(schema) + "." if dot else "") + self._quote_one(name)

    def _quote_one(self, part: str) -> str:
        q, e = self.quote_char, self.escape_char
        part = part.replace(e, e + e).replace(q, e + q) if e else part.replace(q, q + q)
        if self.percent_doubled:
            part = part.replace("%", "%%")
        return q + part + q

    def placeholder(self, name: str) -> str:
        return self.placeholder_format.format(name)


DUCKDB = Dialect("duckdb", '"', "${}")
POSTGRES = Dialect("postgres", '"', "%({})s", percent_doubled=True)
BIGQUERY = Dialect("bigquery", "`", "@{}", escape_char="\\")


@dataclass(frozen=True, slots=True)
class CohortQuery:
    """A cohort's SQL, with placeholders, and the values bound to them."""

    sql: str
    parameters: dict[str, Any]
    dialect: str
    columns: tuple[str, ...]
    """The member list's columns."""
    ids_as_text: bool = False
    """Whether the patient ids are selected as text (the tables keep them as different
    kinds of value: :func:`_patient_ids_sql`)."""


@dataclass(slots=True)
class _Parameters:
    dialect: Dialect
    values: dict[str, Any] = field(default_factory=dict)

    def add(self, prefix: str, value: Any) -> str:
        """The placeholder of a new parameter (the same value under the same prefix, as in
        both claim tables' filters, shares one)."""
        same = [key for key in self.values if key.rsplit("_", 1)[0] == prefix]
        for key in same:
            if self.values[key] == value and type(self.values[key]) is type(value):
                return self.dialect.placeholder(key)
        name = f"{prefix}_{len(same) + 1}"
        self.values[name] = value
        return self.dialect.placeholder(name)

    def many(self, prefix: str, values: Sequence[Any]) -> str:
        return ", ".join(self.add(prefix, value) for value in values)

    def folded(
        self, prefix: str, values: Sequence[str], function: Literal["lower", "upper"]
    ) -> str:
        """Placeholders of text values each passed through the database's ``lower()`` or
        ``upper()``, as the column they are compared with is (:func:`_text_in`)."""
        fold = _ascii_lower if function == "lower" else _ascii_upper
        return ", ".join(f"{function}({self.add(prefix, fold(value))})" for value in values)


def build_cohort_query(
    criteria: Criteria, schema: CohortSchema, dialect: Dialect = DUCKDB
) -> CohortQuery:
    """The member query of a cohort: one row per patient who meets the criteria.

    Values are bound as parameters; identifiers come from ``schema`` (the allowlist as
    resolved against the database) and are quoted. Raises :class:`CohortError` when the
    database lacks what a criterion needs.
    """
    schema.check(criteria)
    params = _Parameters(dialect)
    q = dialect.quote
    text = _patient_ids_as_text(criteria, schema, dialect)
    ids: Callable[[str], str] = (
        (lambda column: column) if text is None else (lambda column: f"CAST({column} AS {text})")
    )
    ctes: list[str] = []
    selected: list[tuple[str, Source]] = []
    for source in schema.anchors(criteria):
        alias = "pharmacy" if source is schema.pharmacy else "medical"
        anchor = _anchor_sql(criteria, source, schema, params, q, ids)
        ctes.append(f"{alias} AS (\n{anchor}\n)")
        selected.append((alias, source))
    exclusions = _exclusion_sql(criteria, schema, params, q, ids)
    if exclusions:
        # UNION ALL: BigQuery takes no bare UNION (and NOT EXISTS needs no distinct rows)
        ctes.append("excluded AS (\n" + "\n    UNION ALL\n".join(exclusions) + "\n)")

    first = selected[0][0]
    columns = [f"{first}.patient_id AS patient_id"]
    names = ["patient_id"]
    for alias, _ in selected:
        columns.append(f"{alias}.claims AS {alias}_claims")
        names.append(f"{alias}_claims")
    if len(selected) == 1:
        columns += [
            f"{first}.first_date AS first_claim_date",
            f"{first}.last_date AS last_claim_date",
        ]
    else:
        aliases = [alias for alias, _ in selected]
        columns.append(f"LEAST({_nulls_skipped(aliases, 'first_date')}) AS first_claim_date")
        columns.append(f"GREATEST({_nulls_skipped(aliases, 'last_date')}) AS last_claim_date")
    names += ["first_claim_date", "last_claim_date"]
    sql = "WITH " + ",\n".join(ctes) + "\nSELECT " + ",\n       ".join(columns)
    sql += f"\nFROM {first}"
    for alias, _ in selected[1:]:
        sql += f"\nJOIN {alias} ON {alias}.patient_id = {first}.patient_id"
    if exclusions:
        sql += (
            f"\nWHERE NOT EXISTS (SELECT 1 FROM excluded WHERE excluded.patient_id = "
            f"{first}.patient_id)"
        )
    sql += "\nORDER BY patient_id"
    return CohortQuery(sql, dict(params.values), dialect.name, tuple(names), text is not None)


def _patient_ids_as_text(criteria: Criteria, schema: CohortSchema, dialect: Dialect) -> str | None:
    """The text type the patient ids are selected as when the tables the cohort reads keep
    them as different kinds of value (text in one, numbers in another), which the databases
    compare by casting the text to a number (``'A9'`` fails the query, ``'00123'`` is
    patient 123) or refuse to compare (PostgreSQL); ``None``: as they are."""
    sources = list(schema.anchors(criteria))
    if criteria.exclude_drugs and schema.pharmacy is not None:
        sources.append(schema.pharmacy)
    if criteria.exclude_conditions and schema.medical is not None:
        sources.append(schema.medical)
    kinds = {_value_kind(source.types.get("patient")) for source in sources}
    if len(kinds) <= 1:
        return None
    return {"postgres": "text", "bigquery": "STRING"}.get(dialect.name, "VARCHAR")


def _value_kind(kind: str | None) -> str:
    """``text``, ``number`` or the type itself (``None``: not known, as the guide's text)."""
    if kind is None or kind.startswith(_TEXT_TYPES):
        return "text"
    return "number" if _is_number_type(kind) else kind


def _nulls_skipped(aliases: Sequence[str], column: str) -> str:
    """LEAST/GREATEST arguments that skip missing dates on every backend: BigQuery's LEAST is
    NULL when any argument is, DuckDB's and PostgreSQL's ignore NULLs. Each argument falls
    back on the others, so it is NULL only when all are."""
    values = [f"{alias}.{column}" for alias in aliases]
    return ", ".join(
        f"COALESCE({', '.join([value, *(v for v in values if v != value)])})" for value in values
    )


def _anchor_sql(
    criteria: Criteria,
    source: Source,
    schema: CohortSchema,
    params: _Parameters,
    q: Callable[[str], str],
    ids: Callable[[str], str] = lambda column: column,
) -> str:
    def col(role: str) -> str:
        return f"c.{q(source[role])}"

    # a claim's day: a TIMESTAMP (or text) column compared with a date bound would leave
    # out the end date's claims after midnight (and BigQuery refuses TIMESTAMP >= DATE)
    day = _day_sql(source, col("date"), params)

    # a claim without a patient id belongs to nobody: never a member (nor a NULL "patient")
    where: list[str] = [f"{col('patient')} IS NOT NULL"]
    if source is schema.pharmacy and criteria.drugs:
        where.append(_text_in(col("drug"), criteria.drugs, params, "drug"))
    if source is schema.medical and criteria.conditions:
        where.append(_condition_match(criteria.conditions, source, params, q, "c", "condition"))
    if criteria.states:
        where.append(_text_in(col("state"), criteria.states, params, "state", "upper"))
    if criteria.start_date is not None:
        where.append(f"{day} >= {params.add('start_date', criteria.start_date)}")
    if criteria.end_date is not None:
        where.append(f"{day} <= {params.add('end_date', criteria.end_date)}")
    age = f"(EXTRACT(YEAR FROM {day}) - {col('birth_year')})" if source.has("birth_year") else ""
    if criteria.min_age is not None:
        where.append(f"{age} >= {params.add('min_age', criteria.min_age)}")
    if criteria.max_age is not None:
        where.append(f"{age} <= {params.add('max_age', criteria.max_age)}")
    if criteria.sex is not None:
        where.append(f"upper({col('sex')}) = {params.add('sex', criteria.sex)}")
    if criteria.specialties:
        providers = schema.providers
        assert providers is not None
        # EXISTS, not a JOIN: a provider listed more than once (two specialties, a repeated
        # row) must not count a claim twice
        specialty = _text_in(
            f"p.{q(providers['specialty'])}", criteria.specialties, params, "specialty"
        )
        where.append(
            f"EXISTS (SELECT 1 FROM {q(providers.table)} AS p\n"
            f"              WHERE p.{q(providers['npi'])} = {col('provider')}\n"
            f"                AND {specialty})"
        )
    lines = [
        f"    SELECT {ids(col('patient'))} AS patient_id, COUNT(*) AS claims,",
        f"           MIN({day}) AS first_date, MAX({day}) AS last_date",
        f"    FROM {q(source.table)} AS c",
    ]
    lines.append("    WHERE " + "\n      AND ".join(where))
    lines.append(f"    GROUP BY {col('patient')}")
    lines.append(f"    HAVING COUNT(*) >= {params.add('min_claims', criteria.min_claims)}")
    return "\n".join(lines)


def _condition_match(
    values: Sequence[str],
    source: Source,
    params: _Parameters,
    q: Callable[[str], str],
    alias: str,
    prefix: str,
) -> str:
    """Conditions as labels (case-insensitive) or ICD-10 codes (matched as prefixes, each
    in both spellings, :func:`code_spellings`: one ``starts_with`` more for a code past its
    category, none for a category like ``E11``; the column itself is not rewritten)."""
    codes = [v for v in values if _is_code(v, source)]
    labels = [v for v in values if not _is_code(v, source)]
    tests = []
    if labels:
        tests.append(_text_in(f"{alias}.{q(source['label'])}", labels, params, prefix + "_label"))
    spellings = dict.fromkeys(s for code in codes for s in code_spellings(code))
    for spelling in spellings:
        placeholder = params.add(prefix + "_code", spelling)
        tests.append(f"starts_with(upper({alias}.{q(source['code'])}), {placeholder})")
    return tests[0] if len(tests) == 1 else "(" + " OR ".join(tests) + ")"


def _exclusion_sql(
    criteria: Criteria,
    schema: CohortSchema,
    params: _Parameters,
    q: Callable[[str], str],
    ids: Callable[[str], str] = lambda column: column,
) -> list[str]:
    parts = []
    if criteria.exclude_drugs and schema.pharmacy is not None:
        rx = schema.pharmacy
        match = _text_in(f"x.{q(rx['drug'])}", criteria.exclude_drugs, params, "exclude_drug")
        parts.append(
            f"    SELECT {ids('x.' + q(rx['patient']))} AS patient_id FROM {q(rx.table)} AS x\n"
            f"    WHERE {match}"
        )
    if criteria.exclude_conditions and schema.medical is not None:
        med = schema.medical
        match = _condition_match(criteria.exclude_conditions, med, params, q, "x", "exclude")
        parts.append(
            f"    SELECT {ids('x.' + q(med['patient']))} AS patient_id FROM {q(med.table)} AS x\n"
            f"    WHERE {match}"
        )
    return parts


def _text_in(
    column: str,
    values: Sequence[str],
    params: _Parameters,
    prefix: str,
    function: Literal["lower", "upper"] = "lower",
) -> str:
    """``column`` matched case-insensitively against ``values``: the database's own
    ``lower()`` (or ``upper()``) on both sides, as no two agree on more than ASCII. DuckDB
    and a PostgreSQL database with a libc locale map character by character
    (``ΟΔΟΣ``: ``οδοσ``), one with an ICU locale in context (``οδος``; ``İ``: ``i̇``), and
    one with the C locale ASCII letters only (``CAFÉ``: ``cafÉ``); a value lower-cased in
    Python missed the claims it names as the database writes them. The values bound have
    their ASCII letters folded (``humira``), which changes nothing on any database."""
    return f"{function}({column}) IN ({params.folded(prefix, values, function)})"


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_ASCII_UPPER = str.maketrans("abcdefghijklmnopqrstuvwxyz", "ABCDEFGHIJKLMNOPQRSTUVWXYZ")


def _ascii_lower(text: str) -> str:
    """``text`` with its ASCII letters lower-cased, and nothing else changed: what every
    database's ``lower()`` does alike (Python's casefold makes ``ß`` ``ss``, SQL's does not)."""
    return text.translate(_ASCII_LOWER)


def _ascii_upper(text: str) -> str:
    return text.translate(_ASCII_UPPER)


def _is_date(kind: str | None) -> bool:
    """Whether a column of this type holds plain dates (``None``: not known, taken as one)."""
    return kind is None or kind == "DATE"


# --- dates written as text or numbers ------------------------------------------------------

#: Column types (upper-cased prefixes) of text.
_TEXT_TYPES = ("VARCHAR", "TEXT", "STRING", "CHAR", "BPCHAR", "NVARCHAR", "NCHAR")
#: Distinct values of a date column read to tell how it writes its dates (a claims table's
#: dates span some thousand days: all of them, as a rule).
MAX_DATE_VALUES = 10_000
_ISO_DAY = "[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}"
_ISO_DATE = re.compile(_ISO_DAY + "(?:[T ].*)?")
_COMPACT_DATE = re.compile(r"[0-9]{8}")
_NUMERIC_DATE = re.compile(r"([0-9]{1,2})([/.-])([0-9]{1,2})\2([0-9]{4})")
#: The formats read, for the message about one that is not.
_FORMATS_READ = "YYYY-MM-DD, MM/DD/YYYY, DD/MM/YYYY (with /, - or .) and YYYYMMDD"


@dataclass(frozen=True, slots=True)
class DateText:
    """How a date column of text or numbers writes its dates."""

    format: str
    """A ``strptime`` format (``%m/%d/%Y``, ``%Y%m%d``); empty: ISO text, which a cast reads."""
    blanks: bool = False
    """Whether some values are empty text (no date, as NULL is)."""
    timed: bool = False
    """Whether some ISO values go on past their day (``2024-03-15 10:00:00``,
    ``2024-03-15T23:30:00-05:00``): BigQuery casts only ``YYYY-[M]M-[D]D`` text to a DATE
    (the rest fails the query), so the day is read from the text first, as it is written."""


def reads_dates_from_values(kind: str | None) -> bool:
    """Whether a date column of this type is read by its values (text, numbers): a cast
    alone fails on ``03/15/2024``, ``20240315`` or the number 20240315."""
    return kind is not None and (kind.startswith(_TEXT_TYPES) or _is_number_type(kind))


def _is_number_type(kind: str) -> bool:
    """Whether a column type (as the database names it, upper-cased) holds numbers:
    ``INTEGER``, ``NUMERIC(10, 2)``..."""
    return kind.partition("(")[0].strip() in _NUMBER_TYPES


def read_dates(where: str, kind: str, values: Sequence[Any]) -> DateText:
    """How the column ``where`` (``TABLE.COLUMN``, of type ``kind``) writes its dates, told
    from its distinct non-NULL ``values``; :class:`CohortError` when that is not one format
    read unambiguously (``03/04/2024`` with no day past the 12th to tell month from day)."""
    numeric = not kind.startswith(_TEXT_TYPES)
    texts: list[str] = []
    for value in values:
        if numeric:
            whole = _whole(value)
            if whole is None:
                raise CohortError(_dates_unread(where, f"numbers like {value}, not YYYYMMDD dates"))
            texts.append(str(whole))
        else:
            texts.append(str(value).strip())
    blanks = "" in texts
    written = [text for text in texts if text]
    if not written:  # nothing but NULLs and blanks: any reading reads them
        return DateText("%Y%m%d" if numeric else "", blanks)
    shapes: dict[str, str] = {}  # a shape: an example value
    for text in written:
        shapes.setdefault(_date_shape(text), text)
    if len(shapes) > 1:
        examples = " and ".join(repr(example) for example in shapes.values())
        raise CohortError(_dates_unread(where, f"dates written in more than one way ({examples})"))
    ((shape, example),) = shapes.items()
    if numeric and shape != "%Y%m%d":
        raise CohortError(_dates_unread(where, f"numbers like {example}, not YYYYMMDD dates"))
    if shape == "?":
        raise CohortError(
            _dates_unread(
                where,
                f"text dates like {example!r}, in none of the formats DefineCohort reads "
                f"({_FORMATS_READ})",
            )
        )
    if shape == "iso":
        return DateText("", blanks, any(re.fullmatch(_ISO_DAY, text) is None for text in written))
    form = shape
    if shape.startswith("DM"):  # day and month, in an order to tell from the values
        separator = shape[2]
        parts = [_NUMERIC_DATE.fullmatch(text) for text in written]
        firsts = {int(m.group(1)) for m in parts if m is not None}
        seconds = {int(m.group(3)) for m in parts if m is not None}
        day_first, month_first = max(firsts) > 12, max(seconds) > 12
        if day_first and month_first:
            raise CohortError(
                _dates_unread(
                    where,
                    f"dates like {example!r} with days first in some and months first in others",
                )
            )
        if (
            not day_first
            and not month_first
            and any(m is not None and int(m.group(1)) != int(m.group(3)) for m in parts)
        ):
            raise CohortError(
                _dates_unread(
                    where,
                    f"dates like {example!r} that read as month/day/year and "
                    "as day/month/year alike (no day is past the 12th)",
                )
            )
        order = ("%d", "%m") if day_first else ("%m", "%d")
        form = separator.join((*order, "%Y"))
    for text in written:
        try:
            dt.datetime.strptime(text, form)
        except ValueError:
            raise CohortError(
                _dates_unread(
                    where,
                    f"{text!r}, no date in the format {form} of its other values",
                )
            ) from None
    return DateText(form, blanks)


def _whole(value: Any) -> int | None:
    """``value`` as a whole number (``20240315.0`` is one), or ``None``."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        if isinstance(value, float | Decimal) and value == int(value):
            return int(value)
    except (ValueError, OverflowError):  # NaN, infinity
        pass
    return None


def _date_shape(text: str) -> str:
    """``iso``, ``%Y%m%d``, ``DM`` and the separator (day and month in an order not yet
    known), or ``?``."""
    if _ISO_DATE.fullmatch(text):
        return "iso"
    if _COMPACT_DATE.fullmatch(text):
        return "%Y%m%d"
    found = _NUMERIC_DATE.fullmatch(text)
    return "DM" + found.group(2) if found else "?"


def _dates_unread(where: str, what: str) -> str:
    return (
        f"This database's {where} holds {what}: DefineCohort cannot read those as dates, so "
        "define the cohort with the SQL tool and convert them there as the data writes them."
    )


#: The time zone whose calendar gives a ``TIMESTAMP WITH TIME ZONE`` claim its day.
DAY_TIME_ZONE = "UTC"


def _day_sql(source: Source, column: str, params: _Parameters) -> str:
    """A claim's day from its date column: as it is (DATE), cast (a timestamp, ISO text),
    parsed in the format its values have (:attr:`Source.dates`), or, for a timestamp with a
    time zone, its day in UTC (:func:`_zoned_day`). A day outside the years 1 to 9999
    (``infinity``) is no day: :func:`_on_the_calendar`."""
    return _on_the_calendar(_day_of(source, column, params), params.dialect)


def _day_of(source: Source, column: str, params: _Parameters) -> str:
    kind = source.types.get("date")
    if _is_date(kind):
        return column
    reading = source.dates
    name = params.dialect.name
    if kind is not None and _is_zoned(kind, name):
        return _zoned_day(column, params)
    if reading is None or kind is None:
        return f"CAST({column} AS DATE)"
    if kind.startswith(_TEXT_TYPES):
        text = f"trim({column})"
        if reading.blanks:
            text = f"NULLIF({text}, {params.add('blank', '')})"
    else:  # a number: its digits (20240315.0 is a whole number too)
        integer, string = {"postgres": ("bigint", "text"), "bigquery": ("INT64", "STRING")}.get(
            name, ("BIGINT", "VARCHAR")
        )
        text = f"CAST(CAST({column} AS {integer}) AS {string})"
    if not reading.format and reading.timed:  # its leading YYYY-MM-DD, on every backend alike
        part = params.add("date_part", "^" + _ISO_DAY)
        function = {"postgres": "substring", "bigquery": "REGEXP_EXTRACT"}.get(
            name, "regexp_extract"
        )
        return f"CAST({function}({text}, {part}) AS DATE)"
    if not reading.format:
        return f"CAST({text} AS DATE)"
    if name == "postgres":
        form = reading.format.replace("%Y", "YYYY").replace("%m", "MM").replace("%d", "DD")
        return f"to_date({text}, {params.add('date_format', form)})"
    placeholder = params.add("date_format", reading.format)
    if name == "bigquery":
        return f"PARSE_DATE({placeholder}, {text})"
    return f"CAST(strptime({text}, {placeholder}) AS DATE)"


def _is_zoned(kind: str, dialect: str) -> bool:
    """Whether a column of this type holds instants (a timestamp with a time zone):
    ``TIMESTAMP WITH TIME ZONE`` (DuckDB, PostgreSQL, with a precision or not), BigQuery's
    ``TIMESTAMP`` (its ``DATETIME`` has no time zone)."""
    if dialect == "bigquery":
        return kind.startswith("TIMESTAMP")
    return kind.endswith("WITH TIME ZONE") or kind.startswith("TIMESTAMPTZ")


def _zoned_day(column: str, params: _Parameters) -> str:
    """The UTC day of an instant. A cast would take the session's time zone: DuckDB's is the
    machine's, PostgreSQL's the server's or the database's, BigQuery's UTC; so one claim at
    23:30 UTC fell on two days, and a date window or an age gave three cohorts. The time
    zone is bound as a parameter, as the definition then says."""
    zone = params.add("time_zone", DAY_TIME_ZONE)
    name = params.dialect.name
    if name == "postgres":
        return f"CAST(({column} AT TIME ZONE {zone}) AS date)"
    if name == "bigquery":
        return f"DATE({column}, {zone})"
    return f"CAST(timezone({zone}, {column}) AS DATE)"


def _on_the_calendar(day: str, dialect: Dialect) -> str:
    """``day``, or NULL when it is outside the years 1 to 9999: PostgreSQL's and DuckDB's
    ``infinity`` and ``-infinity``, a year like 12000 or one BC. Such a day is no day a claim
    was made on (nor one Python, Parquet's writer or BigQuery holds: psycopg failed the whole
    cohort on it, DuckDB gave ``infinity`` as 9999-12-31 and 12000-01-01 as text), so the
    claim counts as one without a date: in no date window, of no age, with no first or last
    date. BigQuery's dates are all in that range."""
    if dialect.name == "bigquery":
        return day
    year = f"EXTRACT(YEAR FROM {day})"
    return f"CASE WHEN {year} > 0 AND {year} < 10000 THEN {day} END"


@dataclass(frozen=True, slots=True)
class Probe:
    """A query telling which of a criterion's values occur in the data: one row, a flag per
    value (1: some claim matches it, as the cohort query matches it; 0 or NULL: none)."""

    criterion: str
    values: tuple[str, ...]
    sql: str
    parameters: dict[str, Any]
    listing: str | None = None
    """A query listing the column's values (at most :data:`MAX_LISTED_CODES` and one), for
    a criterion whose values the model cannot respell (sex: F or M): what the data holds
    instead, asked only when a value matched nothing."""
    column: str = ""
    """``TABLE.COLUMN`` the probe reads, for messages."""


#: The SQL condition a probe's values are matched by: ``(parameters, values) -> SQL``.
Match = Callable[[_Parameters, Sequence[str]], str]


def build_probes(
    criteria: Criteria, schema: CohortSchema, dialect: Dialect = DUCKDB
) -> list[Probe]:
    """One small query per list criterion, to tell which values match nothing.

    Each value is tested by the very condition the cohort query uses, in the database: a
    value is matched or not as the database's ``lower()`` has it, never by Python's idea
    of the same text (see :func:`_text_in`)."""
    q = dialect.quote
    probes: list[Probe] = []

    def probe(criterion: str, values: Sequence[str], table: str, match: Match, **more: Any) -> None:
        params = _Parameters(dialect)
        found = ",\n       ".join(
            f"MAX(CASE WHEN {match(params, [value])} THEN 1 ELSE 0 END) AS found_{number}"
            for number, value in enumerate(values, 1)
        )
        sql = f"SELECT {found}\nFROM {q(table)} AS x\nWHERE {match(params, values)}"
        probes.append(Probe(criterion, tuple(values), sql, dict(params.values), **more))

    def text(
        criterion: str,
        values: Sequence[str],
        source: Source | None,
        role: str,
        function: Literal["lower", "upper"] = "lower",
        *,
        listed: bool = False,
    ) -> None:
        if not values or source is None or not source.has(role):
            return
        raw = f"x.{q(source[role])}"
        listing = (
            f"SELECT DISTINCT {raw} FROM {q(source.table)} AS x WHERE {raw} IS NOT NULL "
            f"LIMIT {MAX_LISTED_CODES + 1}"
            if listed
            else None
        )

        def match(params: _Parameters, some: Sequence[str]) -> str:
            return _text_in(raw, some, params, "value", function)

        where = f"{source.table}.{source[role]}"
        probe(criterion, values, source.table, match, listing=listing, column=where)

    text("drug", criteria.drugs, schema.pharmacy, "drug")
    text("excluded drug", criteria.exclude_drugs, schema.pharmacy, "drug")
    anchors = schema.anchors(criteria)
    for source in anchors[:1]:
        text("state", criteria.states, source, "state", "upper")
        sexes = (criteria.sex,) if criteria.sex is not None else ()
        text("sex", sexes, source, "sex", "upper", listed=True)
    text("specialty", criteria.specialties, schema.providers, "specialty")
    medical = schema.medical
    if medical is not None:
        source = medical

        def condition(params: _Parameters, some: Sequence[str]) -> str:
            return _condition_match(some, source, params, q, "x", "value")

        for criterion, values in (
            ("condition", criteria.conditions),
            ("excluded condition", criteria.exclude_conditions),
        ):
            if values:
                probe(criterion, values, medical.table, condition)
    return probes


def unmatched_values(probe: Probe, rows: Sequence[Sequence[Any]]) -> list[str]:
    """The probe's values that no claim matched (its one row's flags are 0 or NULL)."""
    found = rows[0] if rows else ()
    return [
        value for index, value in enumerate(probe.values) if index >= len(found) or not found[index]
    ]


# --- running it read-only ------------------------------------------------------------------


class CohortRunner(ABC):
    """Runs a cohort's parameterised queries read-only on the SQL tool's database."""

    dialect: Dialect
    engine: str

    def __init__(self, backend: Any) -> None:
        self.backend = backend

    async def schema(self) -> dict[str, list[tuple[str, str]]]:
        """The database's tables and columns (the SQL tool's backend reads them)."""
        result: dict[str, list[tuple[str, str]]] = await self.backend.schema()
        return result

    async def fetch(
        self,
        sql: str,
        parameters: Mapping[str, Any],
        timeout: float,  # noqa: ASYNC109 - interrupts the query itself
        on_bill: Callable[[Bill], object] | None = None,
    ) -> list[tuple[Any, ...]]:
        """All rows of ``sql`` with ``parameters`` bound, read in a worker thread; past
        ``timeout`` the query is interrupted and ``TimeoutError`` raised. ``on_bill`` hears
        what a database that bills per query (BigQuery) billed for it, also when it failed
        after its job had run (see :meth:`SQLBackend.query`)."""
        from loopwright.sql.base import Interrupter, run_in_worker

        stop = Interrupter(on_bill=on_bill)
        return await run_in_worker(
            lambda: self._rows(sql, parameters, timeout, stop), stop, timeout
        )

    @abstractmethod
    def _rows(
        self, sql: str, parameters: Mapping[str, Any], timeout: float, stop: Interrupter
    ) -> list[tuple[Any, ...]]:
        """Run the query (in the worker thread) and return its rows; register the driver's
        interrupt with ``stop.on_stop`` as soon as there is something to interrupt."""

    async def aclose(self) -> None:
        """Close connections."""


class DuckDBRunner(CohortRunner):
    """The embedded DuckDB file, through a connection of its own with the SQL tool's
    read-only settings (the SQL backends have no parameter API)."""

    dialect = DUCKDB
    engine = "DuckDB"

    def __init__(self, backend: Any) -> None:
        import threading

        super().__init__(backend)
        self._lock = threading.Lock()
        self._connection: duckdb.DuckDBPyConnection | None = None
        self._closed = False

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        from loopwright.healthcare.prompt import open_like

        with self._lock:
            if self._closed:
                raise CohortError("The cohort tool was closed; start a new session.")
            if self._connection is None:
                if not os.path.isfile(self.backend.database):
                    raise CohortError(
                        f"The DuckDB database {self.backend.database} does not exist; build "
                        "it first (loopwright.healthcare.data.ensure_database())."
                    )
                self._connection = open_like(self.backend)
            return self._connection.cursor()

    def _rows(
        self, sql: str, parameters: Mapping[str, Any], timeout: float, stop: Interrupter
    ) -> list[tuple[Any, ...]]:
        cursor = self._cursor()
        try:
            stop.on_stop(cursor.interrupt)
            return cursor.execute(sql, dict(parameters)).fetchall()
        finally:
            cursor.close()

    async def aclose(self) -> None:
        with self._lock:
            self._closed = True
            connection, self._connection = self._connection, None
        if connection is not None:
            with contextlib.suppress(Exception):
                connection.close()


class PostgresRunner(CohortRunner):
    """A PostgreSQL database, through a ``read_only`` psycopg connection per query (the
    server refuses any write), with the SQL tool's connection settings."""

    dialect = POSTGRES
    engine = "PostgreSQL"

    def _connect(self) -> psycopg.Connection[Any]:
        import psycopg
        from psycopg.conninfo import conninfo_to_dict

        params: dict[str, Any] = dict(conninfo_to_dict(self.backend.dsn))
        options = str(params.get("options") or "")
        params["options"] = f"{options} -c default_transaction_read_only=on".strip()
        params.setdefault("application_name", "loopwright-cohort")
        params.setdefault("connect_timeout", "10")
        connection = psycopg.connect(**params, autocommit=False)
        connection.read_only = True
        return connection

    def _rows(
        self, sql: str, parameters: Mapping[str, Any], timeout: float, stop: Interrupter
    ) -> list[tuple[Any, ...]]:
        with self._connect() as connection:
            stop.on_stop(connection.cancel_safe)
            with connection.cursor() as cursor:
                cursor.execute(f"SET LOCAL statement_timeout = {int(timeout * 1000)}")
                cursor.execute(sql, dict(parameters))
                rows = cursor.fetchall()
            connection.rollback()
            return [tuple(row) for row in rows]


class BigQueryRunner(CohortRunner):
    """BigQuery, through the SQL tool's client and its locks: the parser check, then a dry
    run with the parameters bound (BigQuery's own verdict must be ``SELECT``, and the bytes
    it would scan within ``maximum_bytes_billed``), then the job, with the backend's labels,
    bytes cap and a timeout that cancels it. Values are named parameters (``@name``), typed
    from their Python values."""

    dialect = BIGQUERY
    engine = "BigQuery"

    async def fetch(
        self,
        sql: str,
        parameters: Mapping[str, Any],
        timeout: float,  # noqa: ASYNC109 - interrupts the query itself
        on_bill: Callable[[Bill], object] | None = None,
    ) -> list[tuple[Any, ...]]:
        from google.api_core import exceptions as api_exceptions

        from loopwright.sql.base import SQLError

        try:
            return await super().fetch(sql, parameters, timeout, on_bill)
        except SQLError as exc:
            raise CohortError(f"The cohort query failed. {exc}") from exc
        except api_exceptions.GoogleAPICallError as exc:
            error = self.backend._error(exc)
            raise CohortError(f"The cohort query failed. {error}") from exc

    def _rows(
        self, sql: str, parameters: Mapping[str, Any], timeout: float, stop: Interrupter
    ) -> list[tuple[Any, ...]]:
        from loopwright.sql.bigquery import bill_ended_job, job_bill
        from loopwright.sql.readonly import check_read_only

        check_read_only(sql, "bigquery")
        _, job = self.backend.start(
            sql, stop, timeout, parameters, job_id_prefix="loopwright_cohort_"
        )
        try:
            rows = job.result(timeout=timeout + 5)
        except Exception:  # stopped (billed for what it processed), or failed (not billed)
            bill_ended_job(job, stop)
            raise
        bill = job_bill(job)
        if bill is not None:
            stop.billed(bill)
        return [tuple(row.values()) for row in rows]


def cohort_runner(backend: SQLBackend) -> CohortRunner:
    """The runner for the SQL tool's backend; :class:`CohortError` for one without
    parameter support here (an in-memory DuckDB, a backend of another kind)."""
    from loopwright.sql.duckdb import DuckDBBackend

    if isinstance(backend, DuckDBBackend):
        if backend.in_memory:
            raise CohortError(
                "DefineCohort needs a DuckDB database file; an in-memory database cannot be "
                "opened a second time read-only."
            )
        return DuckDBRunner(backend)
    if type(backend).__name__ == "PostgresBackend":
        return PostgresRunner(backend)
    if type(backend).__name__ == "BigQueryBackend":
        return BigQueryRunner(backend)
    raise CohortError(
        f"DefineCohort runs on DuckDB, PostgreSQL and BigQuery databases, not {backend.name}; "
        "define the cohort with the SQL tool instead."
    )


def supports(backend: SQLBackend) -> bool:
    """Whether DefineCohort can run on this backend."""
    try:
        cohort_runner(backend)
    except CohortError:
        return False
    return True


# --- the tool --------------------------------------------------------------------------------


INPUT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "name": {
            "type": "string",
            "minLength": 1,
            "maxLength": 100,
            "pattern": f"^{_NAME.pattern}$",
            "description": "Cohort name, used for the file names: letters, digits, _ and -, "
            "e.g. humira_ra_ca",
        },
        "description": {"type": "string", "description": "What the cohort is, in a sentence"},
        "drugs": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Include patients with pharmacy claims for any of these drugs",
        },
        "conditions": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Include patients with medical claims for any of these conditions: "
            "ICD-10 codes (prefixes match: E11 covers E11.9; with or without the dot, E11.9 "
            "or E119) or condition labels",
        },
        "states": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Only claims from these states (two-letter codes)",
        },
        "specialties": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Only claims by providers of these specialties",
        },
        "start_date": {
            "type": "string",
            "format": "date",
            "description": "Only claims on or after (YYYY-MM-DD)",
        },
        "end_date": {
            "type": "string",
            "format": "date",
            "description": "Only claims on or before (YYYY-MM-DD)",
        },
        "min_age": {"type": "integer", "minimum": 0, "maximum": 130},
        "max_age": {"type": "integer", "minimum": 0, "maximum": 130},
        "sex": {
            "type": "string",
            "enum": ["F", "M", "female", "male"],  # what Criteria takes, but "woman"/"man"
            "description": "Patient's sex: F (female) or M (male)",
        },
        "min_claims": {
            "type": "integer",
            "minimum": 1,
            "description": "Qualifying claims a patient needs (default 1)",
        },
        "exclude_drugs": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Exclude patients ever on any of these drugs",
        },
        "exclude_conditions": {
            "type": "array",
            "items": {"type": "string"},
            "description": "Exclude patients ever treated for any of these conditions",
        },
    },
    "required": ["name"],
    "additionalProperties": False,
}


@dataclass(frozen=True, slots=True)
class Listed:
    """What a column holds instead of a value that matched nothing (see :attr:`Probe.listing`)."""

    column: str
    values: tuple[str, ...] | None
    """Its distinct values, sorted; ``None``: more than :data:`MAX_LISTED_CODES`."""


@dataclass(frozen=True, slots=True)
class Replaced:
    """The earlier cohort of the same name that a definition replaced, as far as its saved
    definition tells (``None``: not known, e.g. only a member file was there)."""

    patients: int | None = None
    created_at: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"patients": self.patients, "created_at": self.created_at}


@dataclass(frozen=True, slots=True)
class CohortResult:
    """What defining a cohort produced."""

    name: str
    patients: int
    claims: dict[str, int]
    query: CohortQuery
    definition_path: str
    members_path: str
    unmatched: dict[str, list[str]]
    parquet_path: str = ""
    listed: dict[str, Listed] = field(default_factory=dict)
    """For a criterion in :attr:`unmatched` whose probe lists its column: what it holds."""
    replaced: Replaced | None = None

    @property
    def total_claims(self) -> int:
        return sum(self.claims.values())


class DefineCohortTool(BaseTool):
    """``DefineCohort``: build, run and save a cohort from structured criteria."""

    kind: ClassVar[str] = "read"
    #: the name and the dates get the tool's own messages, not "must match pattern"
    checks_itself = ("name", "start_date", "end_date")

    def __init__(
        self,
        workspace_dir: str | os.PathLike[str],
        runner: CohortRunner,
        *,
        query_timeout: float = DEFAULT_TIMEOUT_S,
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        super().__init__(workspace_dir)
        self.runner = runner
        self.query_timeout = query_timeout
        self.timeout = query_timeout * 2 + 15  # the member query and the value probes
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))

    @property
    def name(self) -> str:
        return "DefineCohort"

    @property
    def schema(self) -> dict[str, Any]:
        return {
            "name": "DefineCohort",
            "description": (
                "Define a patient cohort from structured inclusion/exclusion criteria and "
                "count it. The criteria are ANDed; values are bound as query parameters. "
                "Saves the definition (criteria, SQL, parameters, counts) as "
                "cohorts/<name>.json and the members (one row per patient) as "
                "cohorts/<name>.csv and cohorts/<name>.parquet (with the column types), "
                "replacing a cohort of the same name, and returns the patient and claim "
                "counts and the SQL."
            ),
            "input_schema": INPUT_SCHEMA,
        }

    async def execute(self, input: dict[str, Any]) -> ToolResult:
        name = input.get("name")
        if not isinstance(name, str) or _NAME.fullmatch(name) is None:
            return error(
                f"name {name!r} is not a plain file name: use 1-100 letters, digits, _ and - "
                "(not starting with -), e.g. humira_ra_ca."
            )
        description = str(input.get("description") or "").strip()
        # what the cohort's queries billed (BigQuery): counted when the call fails, too
        bills: list[Bill] = []
        try:
            checked_text(description, "description")
            criteria = Criteria.from_input(input)
            result = await self.define(name, criteria, description, bills=bills)
        except CohortError as exc:
            return self._failed(str(exc), bills)
        except SecurityError as exc:
            return self._failed(str(exc), bills)
        except TimeoutError:
            return self._failed(
                f"The cohort query ran past {self.query_timeout:g} s and was stopped; narrow "
                "the criteria (a date range, fewer states).",
                bills,
            )
        except OSError as exc:
            return self._failed(f"Could not save the cohort in the workspace: {exc}.", bills)
        except asyncio.CancelledError:
            from loopwright.sql.base import count_cancelled_bill

            count_cancelled_bill(self._billed(bills))
            raise
        except Exception as exc:  # the database's own error, for the model to act on
            return self._failed(f"The cohort query failed: {type(exc).__name__}: {exc}", bills)
        metadata = self._metadata(result) | self._billed(bills)
        return ok(self._render(result, criteria), metadata=metadata)

    def _failed(self, text: str, bills: list[Bill]) -> ToolResult:
        """The error result ``text``, with what the cohort's queries were billed, if any."""
        billed = self._billed(bills)
        return error(text, metadata=billed) if billed else error(text)

    def _billed(self, bills: list[Bill]) -> dict[str, Any]:
        """What the cohort's queries were billed (BigQuery), in the SQL tool's fields."""
        from loopwright.sql.base import bill_fields

        return bill_fields(bills, self.runner.engine)

    async def define(
        self,
        name: str,
        criteria: Criteria,
        description: str = "",
        *,
        bills: list[Bill] | None = None,
    ) -> CohortResult:
        """Build and run the cohort query, save the definition and members, return counts.
        ``bills`` gathers what each query's job billed (BigQuery), as soon as it is known."""
        on_bill = None if bills is None else bills.append

        async def fetch(sql: str, parameters: Mapping[str, Any]) -> list[tuple[Any, ...]]:
            return await self.runner.fetch(sql, parameters, self.query_timeout, on_bill)

        schema = await self._with_dates(
            CohortSchema.from_schema(await self.runner.schema()), criteria, fetch
        )
        query = build_cohort_query(criteria, schema, self.runner.dialect)
        rows = _in_member_order(await fetch(query.sql, query.parameters))
        unmatched: dict[str, list[str]] = {}
        listed: dict[str, Listed] = {}
        for probe in build_probes(criteria, schema, self.runner.dialect):
            found = await fetch(probe.sql, probe.parameters)
            missing = unmatched_values(probe, found)
            if missing:
                unmatched[probe.criterion] = missing
                if probe.listing is not None:
                    held = await fetch(probe.listing, {})
                    values = sorted({str(row[0]) for row in held})
                    complete = len(held) <= MAX_LISTED_CODES
                    listed[probe.criterion] = Listed(
                        probe.column, tuple(values) if complete else None
                    )
        counts = {
            column.removesuffix("_claims"): sum(int(row[i] or 0) for row in rows)
            for i, column in enumerate(query.columns)
            if column.endswith("_claims")
        }
        patient_type = (
            None if query.ids_as_text else schema.anchors(criteria)[0].types.get("patient")
        )
        table = _member_table(query.columns, rows, patient_type)
        directory = self.path_validator.validate(COHORT_DIR, "DefineCohort cohorts directory")
        os.makedirs(directory, exist_ok=True)
        # joined, never resolved: the rename replaces a symlink of that name, not its target
        members = os.path.join(directory, f"{name}.csv")
        parquet = os.path.join(directory, f"{name}.parquet")
        definition_path = os.path.join(directory, f"{name}.json")
        replaced = _replaced(definition_path, (members, parquet))
        definition = {
            "name": name,
            "description": description,
            "created_at": self.clock().isoformat(timespec="seconds"),
            "database": {"engine": self.runner.engine, "dialect": query.dialect},
            "criteria": criteria.to_dict(),
            "sql": query.sql,
            "parameters": {k: _jsonable(v) for k, v in query.parameters.items()},
            "parameter_types": parameter_types(query.parameters, self.runner.dialect),
            "counts": {"patients": len(rows), "claims": sum(counts.values()), **counts},
            "members_file": self.relative(members),
            "members_parquet": self.relative(parquet),
            "unmatched_values": unmatched,
        }
        text = json.dumps(definition, indent=2, ensure_ascii=False).encode() + b"\n"
        # the definition last: it names member files that are already in place
        _write_together(
            (members, lambda handle: _write_csv(handle, query.columns, rows)),
            (parquet, lambda handle: _write_parquet(handle, table)),
            (definition_path, lambda handle: handle.write(text)),
        )
        return CohortResult(
            name,
            len(rows),
            counts,
            query,
            definition_path,
            members,
            unmatched,
            parquet_path=parquet,
            listed=listed,
            replaced=replaced,
        )

    async def _with_dates(
        self,
        schema: CohortSchema,
        criteria: Criteria,
        fetch: Callable[[str, Mapping[str, Any]], Awaitable[list[tuple[Any, ...]]]],
    ) -> CohortSchema:
        """``schema`` with :attr:`Source.dates` read for each claims table the cohort reads
        whose date column holds text or numbers (their distinct values tell the format)."""
        schema.check(criteria)  # a criterion the database cannot answer: before any query
        q = self.runner.dialect.quote
        read: dict[str, Source] = {}
        for source in schema.anchors(criteria):
            kind = source.types.get("date")
            if not reads_dates_from_values(kind):
                continue
            assert kind is not None
            column = f"x.{q(source['date'])}"
            sql = (
                f"SELECT DISTINCT {column} FROM {q(source.table)} AS x WHERE {column} IS NOT NULL "
                f"LIMIT {MAX_DATE_VALUES + 1}"
            )
            values = [row[0] for row in await fetch(sql, {})]
            where = f"{source.table}.{source['date']}"
            read[source.table] = replace(source, dates=read_dates(where, kind, values))
        if not read:
            return schema
        pharmacy, medical = (
            None if source is None else read.get(source.table, source)
            for source in (schema.pharmacy, schema.medical)
        )
        return replace(schema, pharmacy=pharmacy, medical=medical)

    def _render(self, result: CohortResult, criteria: Criteria) -> str:
        patients = f"{result.patients:,} patient{'' if result.patients == 1 else 's'}"
        if len(result.claims) == 1:
            ((kind, count),) = result.claims.items()
            claims = f"{count:,} qualifying {kind} claims"
        else:
            kinds = ", ".join(f"{n:,} {kind}" for kind, n in result.claims.items())
            claims = f"{result.total_claims:,} qualifying claims ({kinds})"
        lines = [
            f"Cohort {result.name}: {patients}, {claims}.",
            f"Criteria: {criteria.describe()}",
            f"Saved the definition to {self.relative(result.definition_path)} and the members "
            f"(one row per patient: {', '.join(result.query.columns)}) to "
            f"{self.relative(result.members_path)} and {self.relative(result.parquet_path)} "
            "(which keeps the column types: read it with pl.read_parquet). The member list is "
            "patient-level: report counts, not patient ids.",
        ]
        if result.replaced is not None:
            lines.append(_replaced_line(result.name, result.replaced))
        for criterion, values in result.unmatched.items():
            shown = ", ".join(repr(v) for v in values)
            listed = result.listed.get(criterion)
            if listed is not None:
                lines.append(f"No claims match {criterion} {shown}: {_listed_hint(listed)}")
                continue
            lines.append(
                f"No claims match {criterion} {shown}: check the spelling against the values "
                "the schema lists."
            )
        if result.patients == 0:
            lines.append("No patient meets all the criteria.")
        parameters = json.dumps(
            {k: _jsonable(v) for k, v in result.query.parameters.items()}, ensure_ascii=False
        )
        lines += [
            "",
            f"SQL ({self.runner.engine}; the values are bound as parameters):",
            result.query.sql,
            f"Parameters: {parameters}",
        ]
        return "\n".join(lines)

    def _metadata(self, result: CohortResult) -> dict[str, Any]:
        return {
            "cohort": result.name,
            "patients": result.patients,
            "claims": result.total_claims,
            "claims_by_kind": dict(result.claims),
            "definition_path": result.definition_path,
            "members_path": result.members_path,
            "parquet_path": result.parquet_path,
            "replaced": result.replaced.to_dict() if result.replaced is not None else None,
            "sql": result.query.sql,
            "parameters": {k: _jsonable(v) for k, v in result.query.parameters.items()},
        }


class DefineCohort(Toolset):
    """``DefineCohort`` for each session of an agent, all sharing one read-only runner.

    ``backend`` is the SQL tool's :class:`~loopwright.sql.SQLBackend` (DuckDB file,
    PostgreSQL or BigQuery), or a database URL. The runner's connection closes with :meth:`aclose`.
    """

    def __init__(
        self, backend: str | SQLBackend, *, query_timeout: float = DEFAULT_TIMEOUT_S
    ) -> None:
        from loopwright.sql import connect

        self.backend = connect(backend) if isinstance(backend, str) else backend
        self._owns_backend = isinstance(backend, str)
        self.runner = cohort_runner(self.backend)
        self.query_timeout = query_timeout

    def bind(self, workspace_dir: str, session_id: str | None = None) -> list[BaseTool]:
        return [DefineCohortTool(workspace_dir, self.runner, query_timeout=self.query_timeout)]

    async def aclose(self) -> None:
        await self.runner.aclose()
        if self._owns_backend:
            await self.backend.aclose()


# --- files -----------------------------------------------------------------------------------


Writer = tuple[str, Callable[[BinaryIO], object]]


def _write_together(*files: Writer) -> None:
    """Write files side by side so that all of them change or none does.

    Each is written whole under a temporary name first; then they are renamed into place in
    order. If a rename fails, the files renamed before it get their earlier entries back
    (kept by a hard link, or a symlink to the same target), or are removed where there was
    none.
    """
    temps: list[str] = []
    kept: list[str | None] = []
    try:
        for path, write in files:
            temps.append(_written_beside(path, write))
        for index, ((path, _), temp) in enumerate(zip(files, temps, strict=True)):
            if index < len(files) - 1:  # the last one's failed rename leaves its entry as it was
                kept.append(_keep(path))
            try:
                os.replace(temp, path)
            except BaseException:
                _put_back([earlier for earlier, _ in files[:index]], kept[:index])
                raise
    finally:
        for leftover in (*temps, *kept):
            if leftover is not None:
                with contextlib.suppress(OSError):
                    os.unlink(leftover)


def _put_back(paths: Sequence[str], kept: Sequence[str | None]) -> None:
    """Give each of ``paths``, already replaced, its earlier entry back (last first): the
    copy in ``kept``, or none where ``kept`` has none (there was nothing to keep)."""
    for path, old in reversed(list(zip(paths, kept, strict=True))):
        with contextlib.suppress(OSError):
            if old is not None:
                os.replace(old, path)
            else:
                os.unlink(path)


def _written_beside(path: str, write: Callable[[BinaryIO], object]) -> str:
    """A complete new file next to ``path`` (same directory: renames are atomic): its name.

    Made as the SQL tool makes its files, with the process's usual permissions (``mkstemp``
    made them 0600: a cohort's members were unreadable to the group that could read every
    query result beside them)."""
    from loopwright.sql.files import open_beside

    temp, opened = open_beside(path, "cohort")
    try:
        with opened as handle:
            write(handle)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp)
        raise
    return temp


def _keep(path: str) -> str | None:
    """A copy of the entry at ``path`` to put back: a second hard link to a file, or a link
    to the same target (``None``: nothing there, or nothing that can be kept)."""
    from loopwright.sql.files import second_link

    try:
        if not stat.S_ISLNK(os.lstat(path).st_mode):
            return second_link(path, "kept")
    except FileNotFoundError:
        return None
    while True:
        directory, base = os.path.split(path)
        kept = os.path.join(directory, f".{base}.{secrets.token_hex(4)}.kept")  # as files
        try:
            os.symlink(os.readlink(path), kept)
        except FileExistsError:
            continue
        except OSError:
            return None
        return kept


def _in_member_order(rows: Sequence[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The member rows by patient id, in code point order (DuckDB's and BigQuery's): the
    SQL's ``ORDER BY`` follows PostgreSQL's collation there, which may be a language's
    (``en-US`` puts ``PT_1`` before ``pt-2`` before ``PT0``), and the member file must not
    depend on the server."""
    return sorted(rows, key=lambda row: (row[0] is None, "" if row[0] is None else row[0]))


def _write_csv(handle: BinaryIO, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    text = io.TextIOWrapper(handle, encoding="utf-8", newline="")
    writer = csv.writer(text)
    writer.writerow(columns)
    for row in rows:
        writer.writerow(_cell(value) for value in row)
    text.detach()  # flushed; the file stays open for its writer to close


#: Type names (upper-cased, as the databases spell them) of integer columns whose values fit
#: a 64-bit integer: patient ids of these types stay numbers in the Parquet file.
_INTEGER_TYPES = frozenset(
    {"TINYINT", "SMALLINT", "INTEGER", "INT", "BIGINT", "INT2", "INT4", "INT8", "INT64"}
    | {"UTINYINT", "USMALLINT", "UINTEGER"}
)


def _member_table(
    columns: Sequence[str], rows: Sequence[Sequence[Any]], patient_type: str | None
) -> pa.Table:
    """The member rows as Arrow, typed by what each column is rather than by the values (an
    empty cohort keeps its types too): patient ids as the database keeps them (whole numbers
    for an integer column, else text), claim counts as 64-bit integers, the dates as dates."""
    import pyarrow as pa

    arrays = []
    for index, column in enumerate(columns):
        values = [row[index] for row in rows]
        if index == 0:
            arrays.append(_patient_ids(values, patient_type))
        elif column.endswith("_claims"):
            arrays.append(pa.array(values, pa.int64()))
        else:
            days = [v.date() if isinstance(v, dt.datetime) else v for v in values]
            arrays.append(pa.array(days, pa.date32()))
    return pa.Table.from_arrays(arrays, names=list(columns))


def _patient_ids(values: Sequence[Any], kind: str | None) -> pa.Array:
    import pyarrow as pa

    if (kind or "").partition("(")[0].strip() in _INTEGER_TYPES and all(
        type(v) is int and -(1 << 63) <= v < 1 << 63 for v in values if v is not None
    ):
        return pa.array(values, pa.int64())
    return pa.array([None if v is None else str(_cell(v)) for v in values], pa.string())


def _write_parquet(handle: BinaryIO, table: pa.Table) -> None:
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    pq.write_table(table, handle, compression="zstd")  # as the SQL tool's Parquet files


#: Bytes of an earlier definition file read to tell what it defined (one is a few KB).
_MAX_DEFINITION_BYTES = 1 << 20


def _replaced(definition: str, members: Sequence[str]) -> Replaced | None:
    """The earlier cohort saved under this name, as its definition file tells it; ``None``
    when there is none. The file is read only if it is a regular file (not through a
    symlink); anything else there, or only a member file, is an earlier cohort of unknown
    size."""
    try:
        info = os.lstat(definition)
    except FileNotFoundError:
        return Replaced() if any(os.path.lexists(path) for path in members) else None
    except OSError:
        return Replaced()
    if not stat.S_ISREG(info.st_mode) or info.st_size > _MAX_DEFINITION_BYTES:
        return Replaced()
    try:
        fd = os.open(definition, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        with os.fdopen(fd, "rb") as handle:
            saved = json.loads(handle.read(_MAX_DEFINITION_BYTES))
    except (OSError, ValueError, RecursionError):
        return Replaced()
    if not isinstance(saved, dict):
        return Replaced()
    counts = saved.get("counts")
    patients = counts.get("patients") if isinstance(counts, dict) else None
    created = saved.get("created_at")
    if not isinstance(created, str) or not _is_timestamp(created):
        created = None  # a date, not whatever text the file holds
    whole = isinstance(patients, int) and not isinstance(patients, bool) and patients >= 0
    return Replaced(patients if whole else None, created)


def _is_timestamp(text: str) -> bool:
    try:
        dt.datetime.fromisoformat(text)
    except ValueError:
        return False
    return True


def _replaced_line(name: str, replaced: Replaced) -> str:
    known = []
    if replaced.patients is not None:
        known.append(f"{replaced.patients:,} patient{'' if replaced.patients == 1 else 's'}")
    if replaced.created_at is not None:
        known.append(f"defined {replaced.created_at}")
    details = f" ({', '.join(known)})" if known else ""
    return (
        f"This replaced the earlier cohort {name}{details}: its files now hold the new definition."
    )


def _listed_hint(listed: Listed) -> str:
    """What to do about a sex that matched nothing, from the codes its column holds."""
    if listed.values is None:
        return f"{listed.column} holds other codes; look at them with the SQL tool and count there."
    if not listed.values:
        return f"{listed.column} is empty on every claim, so this database has no sex to filter."
    codes = ", ".join(repr(v) for v in listed.values)
    return (
        f"{listed.column} holds only {codes}. The sex filter matches F or M (either case); for "
        "data coded otherwise, count with the SQL tool on these codes."
    )


def _cell(value: Any) -> Any:
    if value is None:
        return ""
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


#: Each dialect's names of the types of the values a cohort query binds.
_PARAMETER_TYPES: Mapping[str, Mapping[type, str]] = {
    "duckdb": {str: "VARCHAR", int: "BIGINT", dt.date: "DATE"},
    "postgres": {str: "text", int: "bigint", dt.date: "date"},
    "bigquery": {str: "STRING", int: "INT64", dt.date: "DATE"},
}


def parameter_types(parameters: Mapping[str, Any], dialect: Dialect) -> dict[str, str]:
    """``{name: type}`` of a cohort query's parameters as the database names the types, for
    the saved definition: its values are JSON (a date is text there), and the SQL run again
    with them as they read (BigQuery: a STRING parameter against a DATE) is not the query
    that was run. BigQuery's names are its query parameter types."""
    names = _PARAMETER_TYPES[dialect.name]
    return {name: names[type(value)] for name, value in parameters.items()}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


__all__ = [
    "BIGQUERY",
    "COHORT_DIR",
    "DUCKDB",
    "POSTGRES",
    "BigQueryRunner",
    "CohortError",
    "CohortQuery",
    "CohortResult",
    "CohortRunner",
    "CohortSchema",
    "Criteria",
    "DefineCohort",
    "DefineCohortTool",
    "Dialect",
    "DuckDBRunner",
    "PostgresRunner",
    "build_cohort_query",
    "build_probes",
    "cohort_runner",
    "parameter_types",
    "supports",
    "unmatched_values",
]
