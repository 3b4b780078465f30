"""Compare an agent's plain-English answer (and optionally its CSV) with a reference result.

An analyst's answer is judged on its key facts, not its wording: "the leading prescriber (NPI
1234567890) wrote 245 prescriptions" and "NPI 1234567890 tops the list with 245 fills" carry the
same facts. A ``Fact`` is a number or an entity (NPI, drug, state, specialty, month, ...) with
the spellings that count as naming it. The checker finds numbers however they are written
(``1,543``, ``1543``, ``20 000``, ``1.5k``, ``$1.2 million``, ``$5.02MM``, ``12.5%``, ``62/94``,
"nineteen"), accepting the rounding the writer stated (``1.5k`` may stand for 1,543; ``1,500``
may not, unless hedged: "about 1,500", "over 1,500" but not "under 1,500") within a cap, and a
small relative tolerance; it finds entities by normalised word match, possessives included
("Pfizer's"), but not inside a longer name of the same kind ("Virginia" in "West Virginia").

Only numbers an answer *states* count: dates, phone numbers, list and rank markers ("1.", "#1",
a table's rank column), a ranking's size ("the top 10"), the digits of words ("COVID-19"),
numbers denied ("not 245") or offered as alternatives ("245 or 312"), the M of a count by sex
("11 M, 9 F") and words that only look like numbers ("the one with the most", "the top ten")
are not values. A zero in words must name what it counts ("no HUMIRA prescriptions", not "no
prescriber was left out"). When every row of the reference ties, "they all tie" names the top
entity. An answer that lists numbers wholesale (a long run like 1, 2, 3, ... or far more
distinct numbers than the reference holds) is guessing, and none of its numbers is credited.

A value of one row of the reference (the top prescriber's count, the peak month's fills) must
be stated with that row's entity: "NPI A wrote 230 and NPI B 245" does not state A's 245 (see
``Fact.of_entity`` and ``_Owners``). Totals are nobody's and may stand anywhere.

Golden questions (``golden.py``) derive their facts from the reference query's result at check
time; ``check_golden`` runs the whole comparison for one question.
"""

from __future__ import annotations

import bisect
import csv as csv_module
import io
import itertools
import math
import os
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from loopwright.healthcare.numbers import (
    MONTHS,
    SMALL_NUMBERS,
    FoundNumber,
    digit_numbers,
    find_numbers,
    spelled_numbers,
)
from loopwright.healthcare.zeros import zero_statement

if TYPE_CHECKING:
    import duckdb

    from loopwright.healthcare.golden import GoldenQuestion

FactKind = Literal["number", "entity"]

#: default cap on the rounding a number may claim: "1k" does not stand for 1,450
MAX_ROUNDING = 0.05
#: share of reference rows an agent's CSV must reproduce to pass
CSV_PASS = 0.9
#: fewest adjacent numbers in equal steps (1, 2, 3, ...) that make a list of candidates
LONG_RUN = 10
#: distinct numbers an answer may hold when no reference result says how many are plausible
NUMBER_BUDGET = 50


# --- facts and references ------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Fact:
    """One fact an answer must state.

    ``values`` are the accepted values: numbers for a number fact (several when the reference
    has ties), spellings for an entity (the first is the canonical one). A ``percent`` number is
    in percent units (12.5 means 12.5%) and also matches a fraction (0.125).

    ``others`` (entities only) are longer names of *other* entities of the same kind that
    contain one of the spellings: "West Virginia" for Virginia. A spelling found only inside one
    of them names that other entity, so it does not count.

    ``tied_rows`` (entities only): when all the reference's rows (two or more) tie on the value
    the entity is ranked by, how many they are; then an answer saying that they all tie ("they
    all tie at 2", "all three are tied") states it without naming one (see
    ``_all_tie_statement``). ``check_golden`` sets it.

    ``rivals`` (entities only): the spellings of the other entities of its kind (the reference's
    other rows, the domain's list), all of them: what tells whose value a number is.

    ``of_entity`` (numbers only): the label of the entity fact naming the reference row this
    value belongs to ("the top prescriber's prescriptions" is the top prescriber's). The answer
    must state the number *with* that entity, not with another row's (see ``_Owners``).
    """

    label: str
    kind: FactKind
    values: tuple[float | str, ...]
    percent: bool = False
    rel_tol: float = 0.005
    required: bool = True
    others: tuple[str, ...] = ()
    tied_rows: int = 0
    rivals: tuple[str, ...] = ()
    of_entity: str | None = None

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
    of_entity: str | None = None,
) -> Fact:
    """A number the answer must state. Whole numbers (counts) get no relative tolerance.

    ``of_entity``: the label of the entity fact whose row the value belongs to; the answer must
    then state it with that entity (see ``Fact``)."""
    raw = list(value) if isinstance(value, Sequence) else [value]
    values = tuple(float(v) for v in raw)
    if not values:
        raise ValueError(f"the fact {label!r} needs at least one value")
    if not all(math.isfinite(v) for v in values):
        raise ValueError(
            f"the fact {label!r} needs finite numbers, got {raw!r} (did the reference query "
            "divide by zero? guard it with NULLIF and leave the fact out when it is NULL)"
        )
    if rel_tol is None:
        rel_tol = 0.0 if all(v == int(v) for v in values) and not percent else 0.005
    return Fact(
        label,
        "number",
        values,
        percent=percent,
        rel_tol=rel_tol,
        required=required,
        of_entity=of_entity,
    )


def entity_fact(
    label: str,
    *spellings: str,
    required: bool = True,
    others: Iterable[str] = (),
    tied_rows: int = 0,
) -> Fact:
    """An entity the answer must name; any of ``spellings`` counts.

    ``others`` are names of other entities of the same kind (every state, every school...);
    only those that contain a spelling as whole words are kept (see ``Fact``), and all of them
    as its ``rivals``. ``tied_rows``: that many reference rows all tie, so "they all tie" names
    the entity too.
    """
    cleaned = tuple(dict.fromkeys(s.strip() for s in spellings if s and s.strip()))
    if not cleaned:
        raise ValueError(f"the fact {label!r} needs at least one spelling")
    own = {normalize(s) for s in cleaned}
    cores = [normalize(s) for s in cleaned if not _is_code(s)]
    rivals = tuple(dict.fromkeys(o.strip() for o in others if o and normalize(o) not in own))
    longer = tuple(o for o in rivals if any(c in normalize(o) for c in cores))
    return Fact(
        label,
        "entity",
        cleaned,
        required=required,
        others=longer,
        tied_rows=tied_rows,
        rivals=rivals,
    )


def month_spellings(year_month: str) -> tuple[str, ...]:
    """Ways to write a month given as ``YYYY-MM``: "March 2024", "Mar 2024", "2024-03", ..."""
    year, month = (int(part) for part in year_month.split("-")[:2])
    name = MONTHS[month - 1]
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


# --- numbers stated wholesale ----------------------------------------------------------


def _listed_wholesale(numbers: list[FoundNumber], reference: Reference | None) -> str | None:
    """Why the answer's numbers look listed rather than stated, or None.

    An analyst states the values of the result, perhaps with totals, shares and differences:
    at most a few numbers per value of the reference result. An answer that holds far more
    distinct numbers than that (or, with no reference, more than ``NUMBER_BUDGET``) or a long
    arithmetic progression (1, 2, 3, ..., or 0%, 1%, 2%, ...: candidates, not results) would
    "state" almost any value by chance, so none of its numbers is credited.
    """
    distinct = {(round(n.value, 9), n.percent) for n in numbers}
    if reference is not None:
        cells = len(reference.rows) * len(reference.columns)
        budget = 20 + 3 * cells
        source = f"the reference result holds {cells} values"
    else:
        budget = NUMBER_BUDGET
        source = f"an answer needs at most about {NUMBER_BUDGET}"
    if len(distinct) > budget:
        return (
            f"the answer lists {len(distinct)} different numbers ({source}); numbers listed "
            "wholesale are not credited"
        )
    run = longest = 1
    step = 0.0
    for previous, number in itertools.pairwise(numbers):
        gap = number.value - previous.value
        if number.percent != previous.percent or not gap:
            run = 1
        elif run > 1 and math.isclose(gap, step, rel_tol=1e-6, abs_tol=1e-9):
            run += 1
        else:
            run = 2
        step = gap
        longest = max(longest, run)
    if longest >= LONG_RUN:
        return (
            f"the answer lists {longest} numbers in a row that count up or down in equal steps; "
            "a list of candidates is not a result, so its numbers are not credited"
        )
    return None


def number_matches(fact: Fact, number: FoundNumber, max_rounding: float = MAX_ROUNDING) -> bool:
    """Whether ``number`` states one of the fact's values (sign-insensitive: "fell 5%").

    A directional hedge bounds the value on one side: "over 1,500" states 1,500 to 1,600 (one
    unit of the rounding its zeros imply, capped), so it matches 1,543 and "under 1,500" does
    not. On the wrong side only the fact's own tolerance applies ("nearly $18.3M" may stand
    for $18.34M, as "$18.3M" may; "under 29%" may not stand for 29.4%).
    """
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
            slack = 1e-9 * max(1.0, expected)
            if number.direction:
                ahead = max(fact.rel_tol * expected, min(2 * half_unit, max_rounding * expected))
                back = fact.rel_tol * expected
                beyond = (expected - value) * number.direction  # > 0 on the stated side
                if -back - slack <= beyond <= ahead + slack:
                    return True
                continue
            allowed = max(fact.rel_tol * expected, min(half_unit, max_rounding * expected))
            if math.isclose(value, expected, rel_tol=1e-9, abs_tol=1e-9) or (
                abs(value - expected) <= allowed + slack
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


#: a possessive ending, straight or curly: "Pfizer's" (not the inner apostrophe of "O'Sullivan")
_POSSESSIVE = re.compile(r"(?<=[^\W\d_])['\u2019`]s(?![^\W_])")


def _without_possessives(text: str) -> str:
    """``normalize`` after dropping possessive endings: "Pfizer's fees" -> " pfizer fees "."""
    return normalize(_POSSESSIVE.sub("", text))


def entity_matches(fact: Fact, text: str, normalized: str | None = None) -> str | None:
    """The spelling of the fact found in ``text``, or None.

    An occurrence inside one of ``fact.others`` (a longer name of another entity of the same
    kind) does not count: "Virginia" in "West Virginia", "Duke University" in "Duke University
    School of Nursing".

    A possessive names its entity: "Pfizer's payments", "California's providers". As
    ``normalize`` drops apostrophes ("Crohn's" is "crohns", as people also write it), "Pfizer's"
    would be "pfizers"; so a text with a possessive is also read with its possessive endings
    dropped, and the spellings and longer names likewise ("Crohn's disease's costs" names
    Crohn's disease). Only a final "'s" is a possessive: "O'Brien" keeps its apostrophe, and
    the "s'" of "Texas'" needs nothing, its apostrophe being dropped anyway.
    """
    normalized = normalized if normalized is not None else normalize(text)
    readings: list[tuple[str, Callable[[str], str]]] = [(normalized, normalize)]
    if _POSSESSIVE.search(text):
        readings.append((_without_possessives(text), _without_possessives))
    longer = [[_spans(form, norm(other)) for other in fact.others] for form, norm in readings]
    for spelling in fact.values:
        spelling = str(spelling)
        if _is_code(spelling):
            if re.search(rf"(?<![A-Za-z]){re.escape(spelling)}(?![A-Za-z])", text):
                return spelling
            continue
        for (form, norm), others in zip(readings, longer, strict=True):
            for start, end in _spans(form, norm(spelling)):
                if not any(s <= start and end <= e for spans in others for s, e in spans):
                    return spelling
    return None


def _spans(normalized: str, padded: str) -> list[tuple[int, int]]:
    """Where a normalised (space-padded) phrase occurs in a normalised text, words only."""
    spans: list[tuple[int, int]] = []
    index = normalized.find(padded)
    while index >= 0 and padded.strip():
        spans.append((index + 1, index + len(padded) - 1))
        index = normalized.find(padded, index + 1)
    return spans


# --- whose number it is ----------------------------------------------------------------------

#: where a sentence, a table row or a list item ends ("4.7" and "$1,543.20" go on)
_UNIT_END = re.compile(r"[.!?;]+(?=\s|$)|\n")
_BLANK_LINE = re.compile(r"\n[ \t]*\n")
#: what joins two names of one entity: "California (CA)", "**NPI 1234**"
_ALIAS_GAP = re.compile(r"[\s*_()\[\]]*")
#: what joins the entities of a list: "CA, TX and NY", "NPI 1 and NPI 2", "A / B", a table's
#: header laid out sideways ("| NPI | 1 | 2 |", its values across the next row)
_ENTITY_LIST_GAP = re.compile(
    r"(?:[\s*_()\[\],/&|]|\b(?:and|or|then|vs|versus|npis?|dr|the)\b\.?)*", re.IGNORECASE
)
#: what joins the numbers of a list: "245 and 230", "245, 230"
_NUMBER_LIST_GAP = re.compile(r"(?:[\s*_,/&]|\b(?:and|or)\b)*", re.IGNORECASE)
#: a number stated before the entity it belongs to: "245 claims by NPI 1", "230 in Texas",
#: "$445 per office visit", "$7,278 paid to NPI 1" (not "compared to NPI 2")
_LINKED_AHEAD = re.compile(
    r"[^\d,;:()|\n]{0,60}?\b(?:by|for|from|in|at|per|(?:paid|went|goes|going)\s+to)\b"
    r"(?:[\s*_#]+(?:the|an?|npi|dr\.?|state\s+of)\b)*[\s*_#]*",
    re.IGNORECASE,
)


@dataclass(frozen=True, slots=True)
class _Mention:
    """Where the answer names an entity of a fact's kind: the fact's own (``own``) or a rival."""

    start: int
    end: int
    own: bool


def _normalized_offsets(text: str, possessives: bool = False) -> tuple[str, list[int]]:
    """``normalize(text)`` (``_without_possessives`` with ``possessives``) and, for each of its
    characters, the offset in ``text`` it comes from."""
    dropped = (
        {i for m in _POSSESSIVE.finditer(text) for i in range(*m.span())} if possessives else set()
    )
    chars, where = [" "], [0]
    for index, char in enumerate(text):
        if index in dropped:
            continue
        for part in unicodedata.normalize("NFKD", char):
            if unicodedata.combining(part) or part in "'\u2019`":
                continue
            for lower in part.lower():
                if lower.isascii() and lower.isalnum():
                    chars.append(lower)
                    where.append(index)
                elif chars[-1] != " ":
                    chars.append(" ")
                    where.append(index)
    if chars[-1] != " ":
        chars.append(" ")
        where.append(len(text))
    return "".join(chars), where


def _mentions(fact: Fact, text: str) -> list[_Mention]:
    """Where ``text`` names the entity of ``fact`` or one of its ``rivals``, in text order.

    The longest name wins where names overlap: "West Virginia" names West Virginia, not
    Virginia. Codes are matched case-sensitively, and possessives name their entity, as in
    ``entity_matches``.
    """
    found: set[_Mention] = set()
    readings = (False, True) if _POSSESSIVE.search(text) else (False,)
    for possessives in readings:
        norm = _without_possessives if possessives else normalize
        form, where = _normalized_offsets(text, possessives)
        for own, spellings in ((True, fact.values), (False, fact.rivals)):
            for spelling in map(str, spellings):
                if not _is_code(spelling):
                    spans = _spans(form, norm(spelling))
                    found |= {_Mention(where[s], where[e - 1] + 1, own) for s, e in spans}
                elif not possessives:
                    code = rf"(?<![A-Za-z]){re.escape(spelling)}(?![A-Za-z])"
                    found |= {_Mention(*m.span(), own) for m in re.finditer(code, text)}
    kept: list[_Mention] = []
    for mention in sorted(found, key=lambda m: (m.start - m.end, not m.own, m.start)):
        if not any(k.start < mention.end and mention.start < k.end for k in kept):
            kept.append(mention)
    return sorted(kept, key=lambda m: m.start)


def _anyones(offset: int, length: int, percent: bool) -> bool:
    """A number of no entity in particular (a total, a share of all) is stated anywhere."""
    return True


class _Owners:
    """Whose value each number of an answer is, among the entities of one entity fact's kind.

    A number belongs to an entity it is stated with, in the same sentence, table row or list
    item ("unit"):

    - after it: "NPI 1234 wrote 245", "| 1234 | 245 |", "NPI 1234 (245 claims) leads, followed
      by NPI 5678 (230)"; a number before any entity of its unit belongs to the first one
      ("With 245 claims, NPI 1234 leads");
    - before it, joined by "by", "for", "from", "in" or "at": "245 claims by NPI 1234", "230
      in Texas";
    - a list of entities and a list of numbers pair in order, per kind of number (counts,
      percentages), with or without "respectively": "A and B wrote 245 and 230 claims" gives
      A 245; numbers beyond the last full round ("... out of 2,000") may be any of them;
    - in a unit naming no entity of the kind, the entities of the last unit before it in the
      same paragraph that names one: "NPI 1234 leads. It wrote 245 claims." When that unit
      names several, not as one list ("NPI 1234 leads, ahead of NPI 5678. It wrote 245"),
      the number may be any one's (each list's, in order).

    A number with no entity of the kind in its unit or paragraph is nobody's in particular: it
    counts ("They all tie at 2", or an answer naming no prescriber).
    """

    def __init__(self, entity: Fact, text: str, numbers: Sequence[tuple[int, FoundNumber]]) -> None:
        self._text = text
        mentions = _mentions(entity, text)
        self._mentions: list[_Mention] = []
        for mention in mentions:  # "California (CA)" is one mention
            last = self._mentions[-1] if self._mentions else None
            if (
                last is not None
                and last.own == mention.own
                and _ALIAS_GAP.fullmatch(text, last.end, mention.start)
            ):
                self._mentions[-1] = _Mention(last.start, mention.end, last.own)
            else:
                self._mentions.append(mention)
        self._numbers = [
            (offset, offset + len(number.text), number.percent)
            for offset, number in numbers
            if not any(m.start < offset + len(number.text) and offset < m.end for m in mentions)
        ]
        breaks = [m.end() for m in _BLANK_LINE.finditer(text)]
        self._units: list[tuple[int, int, int]] = []
        start = 0
        for match in [*_UNIT_END.finditer(text), None]:
            end = match.end() if match is not None else len(text)
            if text[start:end].strip():
                self._units.append((start, end, bisect.bisect_right(breaks, start)))
            start = end

    def states(self, offset: int, length: int, percent: bool) -> bool:
        """Whether the number at ``offset`` (``length`` characters) is the entity's, or nobody's
        in particular; not when it is only another entity's."""
        target = (offset, offset + length, percent)
        if not self._mentions:
            return True
        if any(m.start < target[1] and target[0] < m.end for m in self._mentions):
            return False  # part of a name ("Route 245 Clinic"), not a value
        index = next(
            (i for i, (_, end, _) in enumerate(self._units) if offset < end), len(self._units) - 1
        )
        start, end, paragraph = self._units[index]
        numbers = sorted({*(n for n in self._numbers if start <= n[0] < end), target})
        mentions = [m for m in self._mentions if start <= m.start < end]
        if not mentions:
            before = next(
                (
                    [m for m in self._mentions if s <= m.start < e]
                    for s, e, p in reversed(self._units[:index])
                    if p == paragraph and any(s <= m.start < e for m in self._mentions)
                ),
                None,
            )
            if before is None:
                return True
            # "NPI 1 leads, ahead of NPI 2. It wrote 245": which one "it" is, is not for
            # the checker to guess; each list of them may be the one meant
            return any(self._paired(target, numbers, run) for run in self._runs(before))
        return self._paired(target, *self._assigned(target, numbers, mentions))

    def _runs(self, mentions: list[_Mention]) -> list[list[_Mention]]:
        """The mentions joined into lists ("CA, TX and NY"), with no number between them."""
        runs: list[list[_Mention]] = []
        for mention in mentions:
            previous = runs[-1][-1] if runs else None
            if previous is not None and _ENTITY_LIST_GAP.fullmatch(
                self._text, previous.end, mention.start
            ):
                runs[-1].append(mention)
            else:
                runs.append([mention])
        return runs

    def _assigned(
        self,
        target: tuple[int, int, bool],
        numbers: list[tuple[int, int, bool]],
        mentions: list[_Mention],
    ) -> tuple[list[tuple[int, int, bool]], list[_Mention]]:
        """The numbers read together with ``target`` and the list of entities they belong to."""
        runs = self._runs(mentions)
        ahead = next((run for run in runs if run[0].start >= target[1]), None)
        behind = next((run for run in reversed(runs) if run[-1].end <= target[0]), None)
        low = behind[-1].end if behind is not None else -1
        high = ahead[0].start if ahead is not None else len(self._text) + 1
        group = [n for n in numbers if low <= n[0] and n[1] <= high]  # between two lists
        if ahead is not None and _LINKED_AHEAD.fullmatch(self._text, group[-1][1], high):
            linked = [group[-1]]
            for previous in reversed(group[:-1]):
                if not _NUMBER_LIST_GAP.fullmatch(self._text, previous[1], linked[0][0]):
                    break
                linked.insert(0, previous)
            if target in linked:
                return linked, ahead
            group = group[: len(group) - len(linked)]
        if behind is not None:
            return group, behind
        assert ahead is not None  # the unit names an entity, on one side or the other
        return group, ahead

    @staticmethod
    def _paired(
        target: tuple[int, int, bool], numbers: list[tuple[int, int, bool]], run: list[_Mention]
    ) -> bool:
        """Whether ``target``, read in order with ``numbers`` of its kind against the list of
        entities ``run``, is the own entity's (see the class docstring)."""
        same = [n for n in numbers if n[2] == target[2]]
        position, rounds = same.index(target), len(same) // len(run)
        if position < rounds * len(run):
            return run[position % len(run)].own
        return any(mention.own for mention in run)


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
class Ranking:
    """How a reference result ranks its rows, for comparing an agent's CSV with it.

    ``column`` holds the value the rows are ranked by, highest first. ``cut``: the reference
    stops at a ``LIMIT``, so rows tying with its last row may go on past it, and which of them
    a query keeps depends only on how it breaks ties. ``top``: the question asks for the top
    of the ranking, so a CSV may hold only its leading rows (``ORDER BY n DESC LIMIT 1``).
    """

    column: str
    cut: bool = False
    top: bool = False


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
    csv_ranking: Ranking | None = None,
    max_rounding: float = MAX_ROUNDING,
) -> Verdict:
    """Judge ``answer`` against ``facts`` (and, given ``csv`` and ``reference``, the CSV).

    ``csv`` is a path (``Path`` or a string naming an existing file) or CSV text. The answer
    passes when every required fact is stated and, if a CSV is given, it reproduces at least
    90% of the reference rows (on ``csv_columns``, default all; ties and leading rows of a
    ranked reference as ``csv_ranking`` says, see ``compare_csv``). An answer that lists
    numbers wholesale, in digits or in words, gets no number fact (see ``_listed_wholesale``;
    ``reference``, when given, sets how many numbers are plausible). Numbers in words
    ("nineteen prescribers") state a fact only when no number in digits does.
    """
    facts = list(facts)
    if not facts:
        raise ValueError("check_answer needs at least one fact to check")
    digits, words = digit_numbers(answer), spelled_numbers(answer)
    normalized = normalize(answer)
    located = sorted(digits + words, key=lambda item: item[0])
    in_order = [number for _, number in located]
    wholesale = _listed_wholesale(in_order, reference)
    entities = {fact.label: fact for fact in facts if fact.kind == "entity"}
    owners: dict[str, _Owners] = {}
    results: list[FactResult] = []
    for fact in facts:
        if fact.kind == "entity":
            spelling = entity_matches(fact, answer, normalized)
            if spelling is None and fact.tied_rows > 1:
                spelling = _all_tie_statement(answer, fact.tied_rows)
            results.append(FactResult(fact, spelling is not None, spelling))
            continue
        if wholesale is not None:
            results.append(FactResult(fact, False, hint="the answer lists numbers wholesale"))
            continue
        paired = _anyones
        if fact.of_entity is not None:
            if fact.of_entity not in entities:
                raise ValueError(
                    f"the fact {fact.label!r} belongs to the entity fact {fact.of_entity!r}, "
                    f"which is not among the facts checked ({', '.join(entities) or 'none'}): "
                    "pass that entity fact too, or leave of_entity unset"
                )
            if fact.of_entity not in owners:
                owners[fact.of_entity] = _Owners(entities[fact.of_entity], answer, located)
            paired = owners[fact.of_entity].states
        matching = [(o, n) for o, n in digits if number_matches(fact, n, max_rounding)]
        if not matching:  # digits first: a number in words is the weaker evidence
            matching = [(o, n) for o, n in words if number_matches(fact, n, max_rounding)]
        hit = next((n for o, n in matching if paired(o, len(n.text), n.percent)), None)
        if hit is None and any(float(v) == 0 for v in fact.values):
            zero = zero_statement(answer, fact.label)
            if zero and paired(answer.find(zero), len(zero), False):
                results.append(FactResult(fact, True, zero))
                continue
        if hit is not None:
            results.append(FactResult(fact, True, hit.text))
        elif matching:
            entity = entities[str(fact.of_entity)].expected
            hint = f"the answer states {matching[0][1].text} only with another entity than {entity}"
            results.append(FactResult(fact, False, hint=hint))
        else:
            results.append(FactResult(fact, False, hint=_closest_hint(fact, in_order)))

    found = tuple(r for r in results if r.found)
    missing = tuple(r for r in results if not r.found)
    reasons = [wholesale] if wholesale is not None else []
    reasons += [f"missing {r.describe()}" for r in missing if r.fact.required]
    reasons += [f"missing (optional) {r.describe()}" for r in missing if not r.fact.required]
    weights = [1.0 if r.fact.required else 0.5 for r in results]
    score = sum(w for w, r in zip(weights, results, strict=True) if r.found) / sum(weights)
    passed = all(r.found for r in results if r.fact.required)

    csv_result: CSVResult | None = None
    if csv is not None:
        if reference is None:
            raise ValueError("checking a CSV needs the reference result (pass reference=...)")
        csv_result = compare_csv(csv, reference, csv_columns, ranking=csv_ranking)
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
    facts = question.key_facts(reference)
    tied = _tied_entity_labels(question, reference, facts)
    count = len(reference.rows)
    facts = [replace(fact, tied_rows=count) if fact.label in tied else fact for fact in facts]
    return check_answer(
        answer,
        facts,
        csv=csv,
        reference=reference,
        csv_columns=question.csv_columns,
        csv_ranking=_csv_ranking(question, reference, facts) if csv is not None else None,
    )


def _tied_entity_labels(
    question: GoldenQuestion, reference: Reference, facts: Sequence[Fact]
) -> set[str]:
    """Labels of the entity facts that "they all tie" states: every row of the reference ties.

    The rows tie when they hold two or more entities (``csv_columns[0]``) and one value of the
    column they are ranked by (``csv_columns[1]``, see ``_csv_ranking``). A fact names the tied
    entity when it accepts the entity of each row alone (its facts on that one row) and its
    values follow the entity column: with only the entity changed, the one-row fact changes.
    That leaves out facts about the tied rows' other columns ("their specialty", which
    "they all tie" does not state) and facts ranked by another value ("largest category by
    amount" when the counts tie).
    """
    columns = question.csv_columns
    if columns is None or len(columns) < 2 or len(reference.rows) < 2:
        return set()
    entity, value = reference._index(columns[0]), reference._index(columns[1])
    ranked = {row[value] for row in reference.rows}
    if len(ranked) != 1 or not all(_is_number(v) for v in ranked):
        return set()
    first = reference.rows[0]
    other = next((row[entity] for row in reference.rows if row[entity] != first[entity]), None)
    if other is None:
        return set()
    moved = tuple(other if index == entity else cell for index, cell in enumerate(first))
    try:
        alone = [question.key_facts(Reference(reference.columns, (row,))) for row in reference.rows]
        changed = question.key_facts(Reference(reference.columns, (moved,)))
    except (ValueError, KeyError, IndexError, TypeError, ArithmeticError):
        return set()  # the facts need more than one row

    def accepted(found: list[Fact], label: str) -> set[float | str] | None:
        return next((set(f.values) for f in found if f.label == label), None)

    tied: set[str] = set()
    for fact in facts:
        per_row = [accepted(row, fact.label) for row in alone]
        if fact.kind != "entity" or any(v is None or not v <= set(fact.values) for v in per_row):
            continue
        if accepted(changed, fact.label) != per_row[0]:
            tied.add(fact.label)
    return tied


#: a statement that all the ranked entities tie: "they all tie", "they are all tied at 2",
#: "all three are tied", "all 4 states tie", "both are tied", "all of them tie"
_ALL_TIE = re.compile(
    rf"""
    \b(?:
        (?:they|these|those|the\s+(?!rest\b|others?\b|remaining\b)[a-z]+)
            \s+(?:are\s+|were\s+)?(?:all|(?P<both>both))
        |(?:all|(?P<both_first>both))(?:\s+of\s+(?:them|these|those|the\s+[a-z]+))?
            (?:\s+(?P<count>\d+|{"|".join(SMALL_NUMBERS)}))?
            (?:\s+(?!but\b|rest\b|others?\b|remaining\b|are\b|were\b)[a-z]+)?
            (?:\s+(?:are|were))?
    )
    \s+(?:tie|tied)\b
    (?=[ \t]*(?:[\n.,;:!?()\u2014-]|$)|\s+(?:at|with|for|on|in|by)\b)
    """,
    re.IGNORECASE | re.VERBOSE,
)
#: words that make "all tie" about some of the entities only: "the rest all tie", "behind
#: California, all tie", "they all tie but CA"
_TIE_SUBSET = re.compile(
    r"\b(?:rest|others|remaining|except|besides|behind|after|below|apart|otherwise|but)\b",
    re.IGNORECASE,
)
#: a single entity ahead of the others: "CA leads; they all tie at 2 after that"
_TIE_LEADER = re.compile(r"\b(?:leads?|leading|ahead|tops|outranks?)\b", re.IGNORECASE)
_NEGATED_BEFORE = re.compile(r"(?:\bnot|n't|\bnever)\s+(?:\w+\s+)?\Z", re.IGNORECASE)


def _all_tie_statement(answer: str, rows: int) -> str | None:
    """The words saying that all the ranked entities, ``rows`` of them, tie, or None.

    Only for a fact whose reference rows all tie (``Fact.tied_rows``): there "they all tie at
    2" is as right as naming one of them. Not when negated ("they don't all tie", "not all
    tie"), when it counts them wrong ("both" for three, "all four" for three), when its
    sentence makes it about some of them ("the rest all tie", "all tie behind CA"), or when the
    answer puts one entity ahead ("CA leads").
    """
    if _TIE_LEADER.search(answer):
        return None
    for match in _ALL_TIE.finditer(answer):
        if _NEGATED_BEFORE.search(answer, max(0, match.start() - 24), match.start()):
            continue
        count = match["count"] or ""
        stated = 2 if match["both"] or match["both_first"] else None
        stated = int(count) if count.isdigit() else SMALL_NUMBERS.get(count.lower(), stated)
        if stated is not None and stated != rows:
            continue
        start = max(answer.rfind(c, 0, match.start()) for c in ".;!?\n") + 1
        ends = [i for i in (answer.find(c, match.end()) for c in ".;!?\n") if i >= 0]
        if _TIE_SUBSET.search(answer, start, min(ends, default=len(answer))):
            continue
        return match.group(0).strip()
    return None


#: a question asking for every row of its result, not only the top: "each month", "break
#: down", "the top 10"
_EVERY_ROW = re.compile(
    r"\b(?:each|every|break\s*down|breakdown|top\s+(?:\d+|three|five|ten|twenty))\b",
    re.IGNORECASE,
)
#: ``LIMIT n`` ending a reference query
_LIMIT = re.compile(r"\bLIMIT\s+(\d+)\s*;?\s*\Z", re.IGNORECASE)


def _csv_ranking(
    question: GoldenQuestion, reference: Reference, facts: Sequence[Fact]
) -> Ranking | None:
    """How the golden question's reference ranks its rows, read off the question's declaration.

    ``csv_columns`` name a row's entity (or period) first and its value second: ("state",
    "rx_count"), ("npi_number", "afib_patients", "eliquis_rx"), ("quarter", "claims"). The rows
    rank by that value, whatever the query's own order (quarters come in calendar order). The
    reference is cut when its query ends in ``LIMIT n`` and it holds n rows, the test the facts
    use for a tie at the top (``golden._tie_cut_off``).

    The question asks for the top of the ranking when its key facts are read off the top rows
    alone, as for "which state has the most ELIQUIS prescriptions, and how many?", and it does
    not ask for every row ("each month", "break down", "the top 10"). A total over all rows, a
    comparison of two named rows or a second ranking gives other facts on the top rows alone,
    so those questions want the whole result too.
    """
    columns = question.csv_columns
    if columns is None or len(columns) < 2 or not reference.rows:
        return None
    column = columns[1]
    values = reference.column(column)
    if not all(_is_number(value) for value in values):
        return None
    limit = _LIMIT.search(question.sql)
    cut = limit is not None and len(reference.rows) >= int(limit[1])
    top = False
    if not _EVERY_ROW.search(question.question):
        index, best = reference._index(column), max(values)
        leading = tuple(row for row in reference.rows if row[index] == best)
        try:
            top_facts = question.key_facts(Reference(reference.columns, leading))
        except (ValueError, KeyError, IndexError, TypeError, ArithmeticError):
            top_facts = []  # the facts need rows other than the top ones
        top = _fact_values(top_facts) == _fact_values(facts)
    return Ranking(column, cut=cut, top=top)


def _fact_values(facts: Iterable[Fact]) -> list[tuple[str, FactKind, tuple[float | str, ...]]]:
    """What facts ask for: their labels and values (not the names of other entities)."""
    return [(fact.label, fact.kind, fact.values) for fact in facts]


def _is_number(value: Any) -> bool:
    """A finite int or float, not a bool: a value rows can be ranked by."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


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
    """What a cell can match: normalised text forms and, if numeric, the number.

    A number-typed value (int, float, Decimal) is a number; a text-typed one from the reference
    (an NPI is VARCHAR) is read as a number only on the CSV side, where every cell is text.
    """
    text = "" if value is None else str(value).strip()
    texts = {normalize(text).strip()}
    date_match = re.fullmatch(r"(\d{4})-(\d{2})(?:-(\d{2}))?(?:[ T]00:00:00(?:\.0+)?)?", text)
    if date_match:
        year, month, day = date_match.groups()
        texts.add(f"{year} {month}")
        if day is not None:
            texts.add(f"{year} {month} {day}")
    numbers: list[FoundNumber] = []
    if isinstance(value, (int, float, Decimal)) and not isinstance(value, bool):
        numbers.append(FoundNumber(text, float(value), False, 0.0))
    elif not date_match and re.fullmatch(r"[-$\d,.\s%]+", text) and re.search(r"\d", text):
        numbers = find_numbers(text)[:1]
    return texts, numbers


def _cells_match(expected: Any, cell: str) -> bool:
    """Whether a CSV cell holds a reference value.

    Only number-typed reference values get a numeric tolerance. A text-typed one (an NPI, an
    id, a name, a month) must match as text: 1806542407 and 1808036572 are different
    providers, however close as numbers.
    """
    texts, numbers = _cell_tokens(expected)
    cell_texts, cell_numbers = _cell_tokens(cell)
    if isinstance(expected, str):
        return bool(texts & cell_texts)
    if numbers and cell_numbers:
        fact = number_fact("cell", numbers[0].value, rel_tol=1e-3)
        return number_matches(fact, cell_numbers[0])
    return bool(texts & cell_texts)


def compare_csv(
    csv: str | os.PathLike[str],
    reference: Reference,
    columns: Sequence[str] | None = None,
    max_rows: int = 200,
    *,
    ranking: Ranking | None = None,
) -> CSVResult:
    """How many reference rows (the first ``max_rows``) appear in the CSV, on ``columns``.

    Column names and order are free: a reference row is matched when one CSV row holds all of
    its values (numbers within rounding, dates as ``YYYY-MM[-DD]``). A one-row reference may be
    spread over the CSV (a summary written as several rows).

    A ``ranking`` honours ties, as the facts do. The rows tying on its column at the end of
    what is checked may be any of the tied rows: a reference ``cut`` at a ``LIMIT`` breaks the
    tie one way (by NPI, say), an equally correct query another, so a CSV row holding none of
    the reference's entities but the tied value stands for a missing tied row. For a ``top``
    question a CSV shorter than the reference is checked against the leading rows only, as
    many as it has, in rank order: "CA,62" answers "which state has the most?"; "IN,52" does
    not, nor does a top 5 with a wrong row.
    """
    table = _read_csv(csv)
    body = table[1:] if table else []
    wanted = [reference._index(c) for c in columns] if columns else range(len(reference.columns))
    names = tuple(reference.columns[i] for i in wanted)
    checked = reference.rows[:max_rows]

    def found(row: tuple[Any, ...]) -> bool:
        values = [row[i] for i in wanted]
        in_one_row = any(
            all(any(_cells_match(v, cell) for cell in line) for v in values) for line in body
        )
        spread = len(reference.rows) == 1 and all(
            any(_cells_match(v, cell) for line in body for cell in line) for v in values
        )
        return in_one_row or spread

    rank = reference._index(ranking.column) if ranking is not None else -1
    if ranking is None or not all(_is_number(row[rank]) for row in checked):
        matched = sum(found(row) for row in checked)
        return CSVResult(len(body), len(reference.rows), matched, len(checked), names)
    ranked = sorted(checked, key=lambda row: -float(row[rank]))  # stable: ties keep their order
    expected = len(body) if ranking.top and 0 < len(body) < len(ranked) else len(ranked)
    if not expected:
        return CSVResult(len(body), len(reference.rows), 0, 0, names)
    last = ranked[expected - 1][rank]
    above = [row for row in ranked if row[rank] > last]  # all within the first ``expected``
    tied = sum(found(row) for row in ranked if row[rank] == last)
    entity = next((i for i in wanted if i != rank), None)
    at_cut_off = ranking.cut and len(checked) == len(reference.rows) and ranked == list(checked)
    if at_cut_off and checked[-1][rank] == last and entity is not None:
        # rows past the cut-off: they hold the tied value and none of the reference's entities
        tied += sum(
            any(_cells_match(last, cell) for cell in line)
            and not any(_cells_match(row[entity], cell) for row in reference.rows for cell in line)
            for line in body
        )
    matched = sum(found(row) for row in above) + min(expected - len(above), tied)
    return CSVResult(len(body), len(reference.rows), matched, expected, names)


__all__ = [
    "CSVResult",
    "Fact",
    "FactResult",
    "FoundNumber",
    "Ranking",
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
