"""Compare an agent's plain-English answer (and optionally its CSV) with a reference result.

An analyst's answer is judged on its key facts, not its wording: "the leading prescriber (NPI
1234567890) wrote 245 prescriptions" and "NPI 1234567890 tops the list with 245 fills" carry the
same facts. A ``Fact`` is a number or an entity (NPI, drug, state, specialty, month, ...) with
the spellings that count as naming it. The checker finds numbers however they are written
(``1,543``, ``1543``, ``1.5k``, ``$1.2 million``, ``12.5%``), accepting the rounding the writer
stated (``1.5k`` may stand for 1,543; ``1,500`` may not, unless hedged: "about 1,500") within a
cap, and a small relative tolerance; it finds entities by normalised word match.

Golden questions (``golden.py``) derive their facts from the reference query's result at check
time; ``check_golden`` runs the whole comparison for one question.
"""

from __future__ import annotations

import csv as csv_module
import io
import math
import os
import re
import unicodedata
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import duckdb

    from loopwright.healthcare.golden import GoldenQuestion

FactKind = Literal["number", "entity"]

#: default cap on the rounding a number may claim: "1k" does not stand for 1,450
MAX_ROUNDING = 0.05
#: share of reference rows an agent's CSV must reproduce to pass
CSV_PASS = 0.9


# --- facts and references ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fact:
    """One fact an answer must state.

    ``values`` are the accepted values: numbers for a number fact (several when the reference
    has ties), spellings for an entity (the first is the canonical one). A ``percent`` number is
    in percent units (12.5 means 12.5%) and also matches a fraction (0.125).
    """

    label: str
    kind: FactKind
    values: tuple[float | str, ...]
    percent: bool = False
    rel_tol: float = 0.005
    required: bool = True

    @property
    def expected(self) -> str:
        """The canonical value, as a person would read it."""
        value = self.values[0]
        if isinstance(value, str):
            return value
        text = f"{value:,.2f}".rstrip("0").rstrip(".") if value % 1 else f"{value:,.0f}"
        return text + ("%" if self.percent else "")


def number_fact(
    label: str,
    value: float | Decimal | int | Sequence[float | Decimal | int],
    *,
    percent: bool = False,
    rel_tol: float | None = None,
    required: bool = True,
) -> Fact:
    """A number the answer must state. Whole numbers (counts) get no relative tolerance."""
    raw = list(value) if isinstance(value, Sequence) else [value]
    values = tuple(float(v) for v in raw)
    if not values:
        raise ValueError(f"the fact {label!r} needs at least one value")
    if rel_tol is None:
        rel_tol = 0.0 if all(v == int(v) for v in values) and not percent else 0.005
    return Fact(label, "number", values, percent=percent, rel_tol=rel_tol, required=required)


def entity_fact(label: str, *spellings: str, required: bool = True) -> Fact:
    """An entity the answer must name; any of ``spellings`` counts."""
    cleaned = tuple(dict.fromkeys(s.strip() for s in spellings if s and s.strip()))
    if not cleaned:
        raise ValueError(f"the fact {label!r} needs at least one spelling")
    return Fact(label, "entity", cleaned, required=required)


_MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)  # fmt: skip


def month_spellings(year_month: str) -> tuple[str, ...]:
    """Ways to write a month given as ``YYYY-MM``: "March 2024", "Mar 2024", "2024-03", ..."""
    year, month = (int(part) for part in year_month.split("-")[:2])
    name = _MONTHS[month - 1]
    return (
        f"{year:04d}-{month:02d}",
        f"{name} {year}",
        f"{name[:3]} {year}",
        f"{name} of {year}",
        f"{month:02d}/{year}",
        f"{month}/{year}",
        f"{year}/{month:02d}",
        *((f"Sept {year}",) if month == 9 else ()),
    )


def quarter_spellings(year: int, quarter: int) -> tuple[str, ...]:
    """Ways to write a calendar quarter: "Q4 2024", "2024 Q4", "fourth quarter of 2024", ..."""
    ordinal = ("first", "second", "third", "fourth")[quarter - 1]
    short = ("1st", "2nd", "3rd", "4th")[quarter - 1]
    return (
        f"Q{quarter} {year}",
        f"{year} Q{quarter}",
        f"{year}-Q{quarter}",
        f"Q{quarter}",
        f"{ordinal} quarter",
        f"{short} quarter",
    )


@dataclass(frozen=True, slots=True)
class Reference:
    """A reference query's result: column names and rows (decimals as floats, dates as ISO)."""

    columns: tuple[str, ...]
    rows: tuple[tuple[Any, ...], ...]

    @classmethod
    def from_query(cls, con: duckdb.DuckDBPyConnection, sql: str) -> Reference:
        cursor = con.execute(sql)
        columns = tuple(str(d[0]) for d in cursor.description or ())
        rows = tuple(tuple(_plain(value) for value in row) for row in cursor.fetchall())
        return cls(columns, rows)

    def column(self, name: str) -> list[Any]:
        """All values of one column (case-insensitive name)."""
        index = self._index(name)
        return [row[index] for row in self.rows]

    def value(self, name: str, row: int = 0) -> Any:
        """One cell."""
        return self.rows[row][self._index(name)]

    def _index(self, name: str) -> int:
        lowered = [c.lower() for c in self.columns]
        try:
            return lowered.index(name.lower())
        except ValueError:
            raise KeyError(f"no column {name!r} in {self.columns}") from None

    def __len__(self) -> int:
        return len(self.rows)


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, datetime):
        return value.isoformat(sep=" ")
    if isinstance(value, date):
        return value.isoformat()
    return value


# --- finding numbers -------------------------------------------------------------------------

_NUMBER = re.compile(
    r"""
    (?<![\w.,/])                         # not inside a word, decimal, code or date part
    (?P<sign>[-\u2212\u2013])?
    (?P<currency>[$\u20ac\u00a3]\s?)?
    (?P<int>\d{1,3}(?:,\d{3})+|\d+)
    (?:\.(?P<dec>\d+))?
    (?!\d)(?!,\d)
    (?:\s?(?P<suffix>%|percent\b|per\s?cent\b|pct\b|[kK]\b|thousand\b|mn\b|[mM]\b|million\b
        |bn\b|[bB]\b|billion\b))?
    """,
    re.VERBOSE,
)
_MULTIPLIERS = {
    "k": 1e3, "thousand": 1e3, "m": 1e6, "mn": 1e6, "million": 1e6,
    "b": 1e9, "bn": 1e9, "billion": 1e9,
}  # fmt: skip
_HEDGES = re.compile(
    r"(about|around|approximately|approx\.?|roughly|nearly|almost|some|over|under|more than|"
    r"less than|close to|~|≈)\s*$",
    re.IGNORECASE,
)
_ZERO_WORDS = re.compile(r"\b(no|none|zero|nothing|not receive|did not receive)\b", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class FoundNumber:
    """A number written in the answer, with the precision its writer implied."""

    text: str
    value: float
    percent: bool
    half_unit: float  # half of the last stated digit's unit: "1.5k" -> 50


def find_numbers(text: str) -> list[FoundNumber]:
    """Every number in ``text``, however formatted (see the module docstring)."""
    found: list[FoundNumber] = []
    for match in _NUMBER.finditer(text):
        integer = match.group("int").replace(",", "")
        decimals = match.group("dec") or ""
        suffix = (match.group("suffix") or "").lower().replace(" ", "")
        percent = suffix in {"%", "percent", "pct"}
        multiplier = 1.0 if percent else _MULTIPLIERS.get(suffix, 1.0)
        value = float(f"{integer}.{decimals}" if decimals else integer) * multiplier
        if match.group("sign"):
            value = -value
        if decimals:
            unit = 10.0 ** -len(decimals)
        else:
            unit = 1.0
            hedged = _HEDGES.search(text[max(0, match.start() - 20) : match.start()])
            if hedged and len(integer) > 1:
                zeros = len(integer) - len(integer.rstrip("0"))
                unit = 10.0 ** min(zeros, len(integer) - 1)
        found.append(FoundNumber(match.group(0).strip(), value, percent, unit * multiplier / 2))
    return found


def number_matches(fact: Fact, number: FoundNumber, max_rounding: float = MAX_ROUNDING) -> bool:
    """Whether ``number`` states one of the fact's values (sign-insensitive: "fell 5%")."""
    for raw in fact.values:
        expected = abs(float(raw))
        candidates: list[tuple[float, float]] = []
        if fact.percent:
            if number.percent:
                candidates.append((abs(number.value), number.half_unit))
            elif 0 < abs(number.value) <= 1:
                candidates.append((abs(number.value) * 100, number.half_unit * 100))
        elif not number.percent:
            candidates.append((abs(number.value), number.half_unit))
        for value, half_unit in candidates:
            allowed = max(fact.rel_tol * expected, min(half_unit, max_rounding * expected))
            if math.isclose(value, expected, rel_tol=1e-9, abs_tol=1e-9) or (
                abs(value - expected) <= allowed + 1e-9 * max(1.0, expected)
            ):
                return True
    return False


# --- finding entities ------------------------------------------------------------------------


def normalize(text: str) -> str:
    """Lower case, accents and apostrophes dropped, punctuation to spaces, padded with spaces."""
    decomposed = unicodedata.normalize("NFKD", text)
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    plain = re.sub(r"['\u2019`]", "", plain.lower())
    plain = re.sub(r"[^a-z0-9]+", " ", plain)
    return f" {plain.strip()} "


def _is_code(spelling: str) -> bool:
    """Short upper-case codes (CA, IN, OR) are matched case-sensitively: "in" is a word."""
    return len(spelling) <= 3 and spelling.isalpha() and spelling.isupper()


def entity_matches(fact: Fact, text: str, normalized: str | None = None) -> str | None:
    """The spelling of the fact found in ``text``, or None."""
    normalized = normalized if normalized is not None else normalize(text)
    for spelling in fact.values:
        spelling = str(spelling)
        if _is_code(spelling):
            if re.search(rf"(?<![A-Za-z]){re.escape(spelling)}(?![A-Za-z])", text):
                return spelling
        elif normalize(spelling) in normalized:
            return spelling
    return None


# --- the verdict -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class FactResult:
    """Whether one fact was found, and the text that stated it (or a hint when not)."""

    fact: Fact
    found: bool
    evidence: str | None = None
    hint: str | None = None

    def describe(self) -> str:
        if self.found:
            return f"{self.fact.label}: {self.fact.expected} (as {self.evidence!r})"
        text = f"{self.fact.label}: expected {self.fact.expected}"
        return f"{text}; {self.hint}" if self.hint else text


@dataclass(frozen=True, slots=True)
class CSVResult:
    """How much of the reference result an agent's CSV reproduces."""

    rows: int
    reference_rows: int
    matched_rows: int
    checked_rows: int
    columns: tuple[str, ...]

    @property
    def match(self) -> float:
        return self.matched_rows / self.checked_rows if self.checked_rows else 1.0


@dataclass(frozen=True, slots=True)
class Verdict:
    """The checker's judgement: passed, a 0-1 score, the facts found and missing, and why."""

    passed: bool
    score: float
    found: tuple[FactResult, ...]
    missing: tuple[FactResult, ...]
    reasons: tuple[str, ...]
    csv: CSVResult | None = None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready form (for eval reports)."""
        return {
            "passed": self.passed,
            "score": round(self.score, 4),
            "found": [r.describe() for r in self.found],
            "missing": [r.describe() for r in self.missing],
            "reasons": list(self.reasons),
            "csv": None
            if self.csv is None
            else {
                "rows": self.csv.rows,
                "reference_rows": self.csv.reference_rows,
                "matched_rows": self.csv.matched_rows,
                "checked_rows": self.csv.checked_rows,
                "match": round(self.csv.match, 4),
            },
        }


def check_answer(
    answer: str,
    facts: Iterable[Fact],
    *,
    csv: str | os.PathLike[str] | None = None,
    reference: Reference | None = None,
    csv_columns: Sequence[str] | None = None,
    max_rounding: float = MAX_ROUNDING,
) -> Verdict:
    """Judge ``answer`` against ``facts`` (and, given ``csv`` and ``reference``, the CSV).

    ``csv`` is a path (``Path`` or a string naming an existing file) or CSV text. The answer
    passes when every required fact is stated and, if a CSV is given, it reproduces at least
    90% of the reference rows (on ``csv_columns``, default all).
    """
    facts = list(facts)
    if not facts:
        raise ValueError("check_answer needs at least one fact to check")
    numbers = find_numbers(answer)
    normalized = normalize(answer)
    results: list[FactResult] = []
    for fact in facts:
        if fact.kind == "entity":
            spelling = entity_matches(fact, answer, normalized)
            results.append(FactResult(fact, spelling is not None, spelling))
            continue
        hit = next((n for n in numbers if number_matches(fact, n, max_rounding)), None)
        if hit is None and any(float(v) == 0 for v in fact.values):
            zero = _ZERO_WORDS.search(answer)
            if zero:
                results.append(FactResult(fact, True, zero.group(0)))
                continue
        if hit is not None:
            results.append(FactResult(fact, True, hit.text))
        else:
            results.append(FactResult(fact, False, hint=_closest_hint(fact, numbers)))

    found = tuple(r for r in results if r.found)
    missing = tuple(r for r in results if not r.found)
    reasons = [f"missing {r.describe()}" for r in missing if r.fact.required]
    reasons += [f"missing (optional) {r.describe()}" for r in missing if not r.fact.required]
    weights = [1.0 if r.fact.required else 0.5 for r in results]
    score = sum(w for w, r in zip(weights, results, strict=True) if r.found) / sum(weights)
    passed = all(r.found for r in results if r.fact.required)

    csv_result: CSVResult | None = None
    if csv is not None:
        if reference is None:
            raise ValueError("checking a CSV needs the reference result (pass reference=...)")
        csv_result = compare_csv(csv, reference, csv_columns)
        score = 0.8 * score + 0.2 * csv_result.match
        if csv_result.match < CSV_PASS:
            passed = False
            reasons.append(
                f"the CSV reproduces {csv_result.matched_rows} of {csv_result.checked_rows} "
                f"reference rows on {', '.join(csv_result.columns)}"
            )
    if passed and not reasons:
        reasons.append(f"all {len(results)} key facts stated")
    return Verdict(passed, score, found, missing, tuple(reasons), csv_result)


def _closest_hint(fact: Fact, numbers: list[FoundNumber]) -> str | None:
    usable = [n for n in numbers if n.percent == fact.percent or (fact.percent and n.value <= 1)]
    if not usable:
        return "the answer states no comparable number"
    target = abs(float(fact.values[0]))
    closest = min(usable, key=lambda n: abs(abs(n.value) - target))
    return f"closest number in the answer: {closest.text}"


def check_golden(
    question: GoldenQuestion,
    answer: str,
    database: str | os.PathLike[str] | duckdb.DuckDBPyConnection,
    *,
    csv: str | os.PathLike[str] | None = None,
) -> Verdict:
    """Judge an answer to a golden question against the reference computed from ``database``."""
    reference = question.reference(database)
    return check_answer(
        answer,
        question.key_facts(reference),
        csv=csv,
        reference=reference,
        csv_columns=question.csv_columns,
    )


# --- CSV comparison --------------------------------------------------------------------------


def _read_csv(csv: str | os.PathLike[str]) -> list[list[str]]:
    if isinstance(csv, os.PathLike) or (
        isinstance(csv, str) and "\n" not in csv and len(csv) < 4096 and Path(csv).is_file()
    ):
        text = Path(csv).read_text(encoding="utf-8", errors="replace")
    else:
        text = str(csv)
    return [row for row in csv_module.reader(io.StringIO(text)) if row]


def _cell_tokens(value: Any) -> tuple[set[str], list[FoundNumber]]:
    """What a cell can match: normalised text forms and, if numeric, the number."""
    text = "" if value is None else str(value).strip()
    texts = {normalize(text).strip()}
    date_match = re.fullmatch(r"(\d{4})-(\d{2})(?:-(\d{2}))?(?:[ T]00:00:00(?:\.0+)?)?", text)
    if date_match:
        year, month, day = date_match.groups()
        texts.add(f"{year} {month}")
        if day is not None:
            texts.add(f"{year} {month} {day}")
    numbers: list[FoundNumber] = []
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        numbers.append(FoundNumber(text, float(value), False, 0.0))
    elif not date_match and re.fullmatch(r"[-$\d,.\s%]+", text) and re.search(r"\d", text):
        numbers = find_numbers(text)[:1]
    return texts, numbers


def _cells_match(expected: Any, cell: str) -> bool:
    texts, numbers = _cell_tokens(expected)
    cell_texts, cell_numbers = _cell_tokens(cell)
    if numbers and cell_numbers:
        fact = number_fact("cell", numbers[0].value, rel_tol=1e-3)
        return number_matches(fact, cell_numbers[0])
    return bool(texts & cell_texts)


def compare_csv(
    csv: str | os.PathLike[str],
    reference: Reference,
    columns: Sequence[str] | None = None,
    max_rows: int = 200,
) -> CSVResult:
    """How many reference rows (the first ``max_rows``) appear in the CSV, on ``columns``.

    Column names and order are free: a reference row is matched when one CSV row holds all of
    its values (numbers within rounding, dates as ``YYYY-MM[-DD]``). A one-row reference may be
    spread over the CSV (a summary written as several rows).
    """
    table = _read_csv(csv)
    body = table[1:] if table else []
    wanted = [reference._index(c) for c in columns] if columns else range(len(reference.columns))
    names = tuple(reference.columns[i] for i in wanted)
    checked = reference.rows[:max_rows]
    matched = 0
    for row in checked:
        values = [row[i] for i in wanted]
        in_one_row = any(
            all(any(_cells_match(v, cell) for cell in line) for v in values) for line in body
        )
        spread = len(reference.rows) == 1 and all(
            any(_cells_match(v, cell) for line in body for cell in line) for v in values
        )
        matched += in_one_row or spread
    return CSVResult(len(body), len(reference.rows), matched, len(checked), names)


__all__ = [
    "CSVResult",
    "Fact",
    "FactResult",
    "FoundNumber",
    "Reference",
    "Verdict",
    "check_answer",
    "check_golden",
    "compare_csv",
    "entity_fact",
    "find_numbers",
    "month_spellings",
    "normalize",
    "number_fact",
    "number_matches",
    "quarter_spellings",
]
