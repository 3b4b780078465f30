"""The numbers an answer states, however it writes them, and what only looks like one.

Digits in any common format (``1,543``, ``1543``, ``20 000``, ``1.203.456``, ``1.5k``,
``$1.2 million``, ``$5.02MM``, ``245 cents`` ($2.45), ``12.5%``, ``3.1 percentage points``,
``1.234567e+06``, ``62/94``) and numbers in words ("nineteen", "forty-two"), each with the
rounding its writer implied: "about 1,500" may stand for 1,543, "1,500" may not. Dates ("March
2024", "Q4 2024" too), phone numbers and hyphenated codes, list and rank markers ("1.", "#1", a
table's rank column), a ranking's size ("the top 10"), the digits of words ("COVID-19"), the M
of a count by sex ("11 M, 9 F") and words that only look like numbers ("the one with the most",
"the top ten") are not values; nor are numbers denied ("not 245"), offered as alternatives
("245 or 312", "two or three") or bounding a range ("between 200 and 250"). The golden checker
(``check.py``) matches what is found here against a question's facts.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

#: the months' names, for dates and the words that are not quantities
MONTHS = (
    "January", "February", "March", "April", "May", "June", "July", "August", "September",
    "October", "November", "December",
)  # fmt: skip

_NUMBER = re.compile(
    r"""
    (?<![^\W_])                          # not inside a word or a longer number ("Q4", "v2")
    (?<![^\W_]_)                         # nor an identifier ("fills_2023"); a lone "_" is
                                         # markdown emphasis ("_245_")
    (?<!\.)                              # nor a decimal's second part
    (?<![^\d\s]/)                        # nor what follows a word's slash ("n/5"); a count's
                                         # total is a number ("62/94")
    (?<![^\W\d_][-\u2010\u2011\u2013])     # nor a word's hyphenated digits ("COVID-19")
    (?P<sign>[-\u2212\u2013])?
    (?P<currency>[$\u20ac\u00a3]\s?)?
    (?P<int>\d{1,3}(?:,\d{3})+(?!,?\d)  # "1,543"; any other comma between digits
                                         # separates numbers ("15,13,10", a CSV row)
        |\d{1,3}(?:\.\d{3}){2,}(?![.,]\d)  # "1.203.456": thousands dots, two groups or
                                         # more ("1.203" is a decimal)
        |\d+)
    (?:\.(?P<dec>\d+))?
    (?:[eE](?P<exp>[-+]?\d{1,3})(?!\w|\.\d))?  # a float as Python prints it: "1.234567e+06"
    (?!\d)
    (?:\s?(?P<suffix>%|percent\b|per\s?cent\b|pct\b|percentage\s+points?\b|pp\b|[kK]\b
        |thousand\b|mn\b|mm\b|MM\b|[mM]\b|million\b|bn\b|[bB]\b|billion\b|cents?\b|\u00a2))?
    """,
    re.VERBOSE,
)
#: suffixes that make a number a percentage; a change in one is in "percentage points"
_PERCENT = frozenset({"%", "percent", "pct", "percentagepoint", "percentagepoints", "pp"})
_MULTIPLIERS = {
    "k": 1e3, "thousand": 1e3, "m": 1e6, "mn": 1e6, "mm": 1e6, "million": 1e6,
    "b": 1e9, "bn": 1e9, "billion": 1e9, "cent": 0.01, "cents": 0.01, "\u00a2": 0.01,
}  # fmt: skip
#: a money word after a number: what makes "5.02 MM" millions of dollars, not millimetres
_MONEY_AFTER = re.compile(r"\s*(?:USD|dollars?)\b", re.IGNORECASE)
#: counts by sex on a line ("Sex: 11 M, 9 F", "11M/9F"): there an "M" after a number is male
_SEX_COUNTS = re.compile(r"(?<![\w.])\d+\s?[Ff]\b|\b(?:sex|gender)\b", re.IGNORECASE)
#: spaces that only ever separate thousands: no-break, narrow no-break, thin and figure spaces
_THOUSANDS_SPACES = "\u00a0\u202f\u2009\u2007"
#: digit groups joined by single spaces: "20 000", "1 250 000" (see _join_spaced_thousands)
_SPACED_GROUPS = re.compile(
    rf"(?<![\w.,])\d{{1,3}}(?P<sep>[ {_THOUSANDS_SPACES}])\d{{3}}(?:(?P=sep)\d{{3}})*"
    rf"(?![\w]|[ {_THOUSANDS_SPACES}]\d)"
)
#: dates are not quantities: ISO (2024-03-01, 2024-03), US (03/01/2024, 3/1/24) and 11/2024
_DATES = re.compile(
    r"""
    (?<![\w/.-])
    (?:(?:19|20)\d{2}-(?:0?[1-9]|1[0-2])(?:-(?:0?[1-9]|[12]\d|3[01]))?
        (?:[T\s]\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?
      |(?:0?[1-9]|1[0-2])/(?:0?[1-9]|[12]\d|3[01])/(?:\d{4}|\d{2})
      |(?:0?[1-9]|1[0-2])/(?:19|20)\d{2}
      |(?:19|20)\d{2}/(?:0?[1-9]|1[0-2])(?:/(?:0?[1-9]|[12]\d|3[01]))?)
    (?![\w/-])
    """,
    re.VERBOSE,
)
_MONTH_NAME = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|June?|July?|Aug(?:ust)?"
    r"|Sept?(?:ember)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)"
)
#: dates and periods in words, whose digits are days and years: "March 2024", "March 5, 2024",
#: "5 March 2024", "Q4 2024", "2024 Q4"; and codes of digit groups joined by hyphens, a phone
#: number's or a product code's ("555-245-1234", "(555) 245-1234", "00074-4339-02")
_NAMED_DATES = re.compile(
    rf"""
    (?<![\w/.-])
    (?:{_MONTH_NAME}\.?\s+(?:\d{{1,2}}(?:st|nd|rd|th)?,?\s+)?(?:19|20)\d{{2}}
      |\d{{1,2}}\s+{_MONTH_NAME}\.?,?\s+(?:19|20)\d{{2}}
      |Q[1-4]\s*(?:19|20)\d{{2}}
      |(?:19|20)\d{{2}}[\s-]?Q[1-4]
      |\d+(?:[-\u2010\u2011]\d+){{2,}}
      |\(\d{{3}}\)\s?\d{{3}}[-\u2010\u2011]\d{{4}})
    (?![\w/-])
    """,
    re.VERBOSE,
)
#: words denying the number after them: "it is not 245", "isn't 245", "rather than 245"
_DENIED = re.compile(
    r"(?:(?<![A-Za-z])(?:not|never|rather\s+than|instead\s+of|as\s+opposed\s+to)|n't)"
    r"\s*[*_]*\s*$",
    re.IGNORECASE,
)
#: "the top 10", "the bottom 5": the question's framing, not a stated value
_RANK_BEFORE = re.compile(r"(?<![A-Za-z])(?:top|bottom)\s+$", re.IGNORECASE)
#: what joins numbers given as alternatives: "245 or 312", "240, 245 or 250"; a comma alone
#: joins a list, which names each of its numbers
_ALTERNATIVES = re.compile(r"[*_]*\s*(?:(?P<or>,?\s*(?:or|and/or))\s|,)\s*[*_]*", re.IGNORECASE)
#: a range: "between 200 and 250"; after a word of comparison it names two values ("the gap
#: between 245 and 230")
_RANGE_START = re.compile(r"(?:(?P<word>[A-Za-z]+)\s+)?between\s*[*_]*\s*$", re.IGNORECASE)
_RANGE_JOIN = re.compile(r"[*_]*\s*(?:and|&|to|-|\u2013)\s*[*_]*", re.IGNORECASE)
_COMPARISONS = frozenset({"difference", "gap", "spread", "ratio", "distance", "split", "change"})
#: hedges before a number, by what they say of the true value: near it, at least it, at most it
_HEDGES = re.compile(
    r"""(?<![A-Za-z])(?:
        (?P<below>no\s+more\s+than|not\s+more\s+than|under|less\s+than|fewer\s+than|below
            |at\s+most|up\s+to|nearly|almost|just\s+shy\s+of|<|≤)
        |(?P<above>no\s+less\s+than|no\s+fewer\s+than|not\s+less\s+than|over|more\s+than
            |above|at\s+least|exceeding|in\s+excess\s+of|upwards\s+of|>|≥)
        |(?P<near>about|around|approximately|approx\.?|roughly|some|close\s+to|circa|an\s+estimated
            |~|≈)
    )\s*$""",
    re.IGNORECASE | re.VERBOSE,
)
#: a numbered list's item marker at the start of a line: "1. ", "2) ", "- 3. "
_LIST_MARKER = re.compile(r"^[ \t>]*(?:[-*+][ \t]+)?(\d{1,3})[.)](?=[ \t])", re.MULTILINE)
#: "#1", and ordinals ("1st", "4th"): ranks, not values
_HASH_MARKER = re.compile(r"(?<![\w&])#(\d{1,4})(?!\d)")
_ORDINAL = re.compile(r"(?:st|nd|rd|th)\b", re.IGNORECASE)
#: headers of a table column that ranks or numbers its rows
_RANK_HEADERS = frozenset(
    {"", "#", "rank", "ranking", "no", "nr", "num", "pos", "position", "place"}
)
_SEPARATOR_CELL = re.compile(r"\s*:?-{2,}:?\s*")
_INTEGER_CELL = re.compile(r"\s*#?(\d{1,4})\.?\s*")


@dataclass(frozen=True, slots=True)
class FoundNumber:
    """A number written in the answer, with the precision its writer implied."""

    text: str
    value: float
    percent: bool
    half_unit: float  # half of the last stated digit's unit: "1.5k" -> 50
    #: what a hedge says of the true value: 0 near it, 1 at least it ("over"), -1 at most it
    direction: int = 0


def find_numbers(text: str, *, spelled: bool = False) -> list[FoundNumber]:
    """Every number ``text`` states in digits, however formatted (see the module docstring).

    Dates, list and rank markers, ordinals and the digits of words are left out: they are in
    the text, but they are not values the writer is stating. With ``spelled``, numbers in
    words ("nineteen", "forty-two", "one hundred") come too, in text order (see
    ``spelled_numbers`` for which words count).
    """
    found = digit_numbers(text) + (spelled_numbers(text) if spelled else [])
    return [number for _, number in sorted(found, key=lambda item: item[0])]


def digit_numbers(text: str) -> list[tuple[int, FoundNumber]]:
    """The numbers ``text`` states in digits, each with its offset in ``text``."""
    for dates in (_DATES, _NAMED_DATES):  # same length: offsets hold
        text = dates.sub(lambda m: " " * len(m.group(0)), text)
    markers = _marker_offsets(text)
    shown = text
    text = _join_spaced_thousands(text, markers)  # same length again
    found: list[tuple[int, int, FoundNumber]] = []
    for match in _NUMBER.finditer(text):
        if match.start("int") in markers or _ORDINAL.match(text, match.end()):
            continue
        if _is_rank_size(text, match):
            continue
        suffix, end = _suffix(text, match)
        number = _stated_number(
            text,
            match.start(),
            shown[match.start() : end].strip(),
            re.sub(r"[,.]", "", match.group("int")),
            match.group("dec") or "",
            suffix,
            negative=match.group("sign") is not None,
            exponent=int(match.group("exp") or 0),
        )
        found.append((match.start(), end, number))
    dropped = _alternatives(text, found) | _range_ends(text, found)
    return [
        (start, number)
        for index, (start, _, number) in enumerate(found)
        if index not in dropped and not _denied(text, start)
    ]


def _range_ends(text: str, found: list[tuple[int, int, FoundNumber]]) -> set[int]:
    """Indexes of the numbers bounding a range, not stated: "between 200 and 250" says the
    value is somewhere in it, neither 200 nor 250 (nor 245: a range states no value). After a
    word of comparison the two are values: "the difference between 245 and 230 is 15"."""
    ends: set[int] = set()
    for index in range(len(found) - 1):
        (start, end, _), (after, _, _) = found[index], found[index + 1]
        before = _RANGE_START.search(text, max(0, start - 32), start)
        if before is None or (before["word"] or "").lower() in _COMPARISONS:
            continue
        if _RANGE_JOIN.fullmatch(text, end, after):
            ends |= {index, index + 1}
    return ends


def _is_rank_size(text: str, match: re.Match[str]) -> bool:
    """Whether the number is a ranking's size, as in "the top 10": a small whole number after
    "top" or "bottom" ("the top 10 000 prescribers" counts them)."""
    small = re.fullmatch(r"\d{1,3}", match.group("int")) and not match.group("dec")
    before = _RANK_BEFORE.search(text, max(0, match.start() - 12), match.start())
    return bool(small and before and not match.group("suffix"))


def _denied(text: str, start: int) -> bool:
    """Whether the number at ``start`` is denied: "not 245", "isn't 245", "rather than 245"."""
    return _DENIED.search(text, max(0, start - 24), start) is not None


def _alternatives(text: str, found: list[tuple[int, int, FoundNumber]]) -> set[int]:
    """Indexes of the numbers given as alternatives, not stated: "245 or 312", "either 240,
    245 or 250". A run of numbers of one kind (counts or percentages) joined by commas and
    "or" offers them all when one join is an "or"; "245 fills, or 12.3%" restates one value."""
    offered: set[int] = set()
    run = [0] if found else []
    either = False
    for index in range(1, len(found) + 1):
        if index < len(found):
            (_, end, previous), (start, _, number) = found[index - 1], found[index]
            join = _ALTERNATIVES.fullmatch(text, end, start)
            if join is not None and previous.percent == number.percent:
                run.append(index)
                either = either or join["or"] is not None
                continue
        if either:
            offered.update(run)
        run, either = [index], False
    return offered


def _stated_number(
    text: str,
    start: int,
    shown: str,
    integer: str,
    decimals: str,
    suffix: str,
    *,
    negative: bool = False,
    exponent: int = 0,
) -> FoundNumber:
    """The number written at ``start`` (``shown``), with the precision its writer implied.

    ``suffix`` (lower case, no spaces) makes it a percentage or multiplies it ("k",
    "million"); ``exponent`` scales it by a power of ten ("1.2e6"). A hedge before it
    ("about", "over") makes its trailing zeros rounding and may bound the true value on one
    side (see ``number_matches``).
    """
    percent = suffix in _PERCENT
    multiplier = (1.0 if percent else _MULTIPLIERS.get(suffix, 1.0)) * 10.0**exponent
    value = float(f"{integer}.{decimals}" if decimals else integer) * multiplier
    hedge = _HEDGES.search(text, max(0, start - 24), start)
    direction = 0 if hedge is None else 1 if hedge["above"] else -1 if hedge["below"] else 0
    unit = 10.0 ** -len(decimals) if decimals else 1.0
    if hedge and not decimals and len(integer) > 1:
        zeros = len(integer) - len(integer.rstrip("0"))
        unit = 10.0 ** min(zeros, len(integer) - 1)  # "about 1,500": rounded to hundreds
    return FoundNumber(
        shown, -value if negative else value, percent, unit * multiplier / 2, direction
    )


def _suffix(text: str, match: re.Match[str]) -> tuple[str, int]:
    """The unit or multiplier after a number (lower case, no spaces), and where the number ends.

    Two suffixes say "million" only in context. "MM" is the financial shorthand ("$5.02MM")
    only for money, a currency sign before or "USD"/"dollars" after: "5 mm" is millimetres,
    and "MM" alone may be multiple myeloma. A bare "M" is a letter, not "million", on a line
    that counts by sex ("Sex: 11 M, 9 F", "11M/9F"), unless a currency sign makes it money
    ("$11M"); elsewhere it stays "million" ("11M claims", "3 M claims", "$11 M"). A suffix that
    is not a multiplier is dropped, and the number ends before it.
    """
    suffix = (match.group("suffix") or "").lower().replace(" ", "")
    money = match.group("currency") is not None
    letter = False
    if suffix == "mm":
        letter = not (money or _MONEY_AFTER.match(text, match.end()))
    elif suffix == "m" and not money:
        line_start = text.rfind("\n", 0, match.start()) + 1
        line_end = text.find("\n", match.end())
        line = text[line_start : line_end if line_end >= 0 else len(text)]
        letter = _SEX_COUNTS.search(line) is not None
    if letter:
        return "", max(match.end(part) for part in ("int", "dec", "exp"))
    return suffix, match.end()


def _join_spaced_thousands(text: str, markers: set[int]) -> str:
    """``text`` with spaces that separate thousands made commas: "20 000" -> "20,000".

    Groups join when a number of one to three digits is followed by groups of exactly three,
    each after the same single space, and no further group of digits follows ("2023 1 200"
    is not one number). No-break, narrow no-break, thin and figure spaces are typographic
    thousands separators, never a gap between two numbers, so they always join. A plain
    space does separate numbers ("the top 10 245 prescriptions", a printed table), so it
    joins only when a group after it starts with 0: nobody writes "000" or "050" as a number
    of its own, so "20 000", "top 10 000", "1 250 000" are single numbers, while "20 500" stays
    20 and 500. A list or row number (see ``_marker_offsets``) never starts a group.
    """

    def join(match: re.Match[str]) -> str:
        sep, start = match["sep"], match.start()
        groups = match.group(0).split(sep)
        longer_run = start >= 2 and text[start - 1] == sep and text[start - 2].isdigit()
        plain = sep == " " and not any(group.startswith("0") for group in groups[1:])
        if start in markers or longer_run or plain:
            return match.group(0)
        return ",".join(groups)

    return _SPACED_GROUPS.sub(join, text)


SMALL_NUMBERS = {
    word: value
    for value, word in enumerate(
        ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten",
         "eleven", "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen",
         "eighteen", "nineteen")
    )
}  # fmt: skip
TENS = {
    word: 10 * value
    for value, word in enumerate(
        ("twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"), 2
    )
}
_UNITS_ALTERNATION = "|".join(word for word, value in SMALL_NUMBERS.items() if 1 <= value <= 9)
_BELOW_HUNDRED = (
    rf"(?:(?:{'|'.join(TENS)})(?:[- ](?:{_UNITS_ALTERNATION}))?|(?:{'|'.join(SMALL_NUMBERS)}))"
)
#: a number in words, zero to nine hundred ninety-nine: "nineteen", "forty-two", "forty two",
#: "one hundred", "a hundred and five"; not the first part of a compound ("ninety-day",
#: "one-time", "twenty-one-year-old"): that names a kind of thing, not how many
_SPELLED = re.compile(
    rf"""
    (?<![\w-])
    (?:(?:a|{_UNITS_ALTERNATION})[- ]hundred(?:[- ](?:and[- ])?{_BELOW_HUNDRED})?|{_BELOW_HUNDRED})
    (?![\w-])
    (?:\s?(?P<suffix>%|percent\b|per\s?cent\b|percentage\s+points?\b|thousand\b|million\b
        |billion\b))?
    """,
    re.IGNORECASE | re.VERBOSE,
)
#: words before "one" that make it a pronoun ("the one with the most", "no one"), and after
#: it that make it one of something else ("one of the top ten", "one or two")
_ONE_BEFORE = frozenset(
    {"the", "this", "that", "which", "each", "every", "any", "no", "another", "a", "an", "some"}
)  # fmt: skip
_ONE_AFTER = frozenset(
    {"of", "another", "other", "or", "and", "by", "more", "less", "than", "to", "too", "but",
     "at", "in", "on", "for", "with", "is", "was", "are", "were", "has", "had", "have", "can",
     "could", "would", "should", "may", "might", "will", "that", "which", "who", "the", "a",
     "an", "as", "if", "so", "time", "day", "way", "point", "thing", "hand"}
)  # fmt: skip
#: "the top ten", "the bottom five": the question's framing, not a stated value
_RANK_WORDS = frozenset({"top", "bottom"})
_NEXT_WORD = re.compile(r"[ \t]+([A-Za-z]+)")


def spelled_numbers(text: str) -> list[tuple[int, FoundNumber]]:
    """The numbers ``text`` states in words ("Nineteen prescribers"), with their offsets.

    Words are more often something other than a value than digits are, so fewer of them count:
    "zero" never does here (a zero in words must name its quantity, see ``zero_statement``:
    "zero in on", "zero data were missing"), nor a number after "top" or "bottom" ("the top
    ten"), and "one" only as a count of a following noun ("one prescriber", "only one
    prescriber"), not as a pronoun ("the one with the most", "no one", "one of them", "one
    is..."). ``check_answer`` reads them only for a number fact no digits state, and counts
    them in ``_listed_wholesale``: "one, two, three, ..." is a list of candidates too.
    """
    found: list[tuple[int, int, FoundNumber]] = []
    for match in _SPELLED.finditer(text):
        words = re.split(r"[- ]+", match.group(0).lower())
        value = 0
        for word in words:
            if word == "hundred":
                value = max(value, 1) * 100
            else:
                value += SMALL_NUMBERS.get(word, TENS.get(word, 0))
        before = re.findall(r"[A-Za-z]+", text[max(0, match.start() - 20) : match.start()])
        previous = before[-1].lower() if before else ""
        if value == 0 or previous in _RANK_WORDS:
            continue
        if words == ["one"] and not match.group("suffix"):  # "one percent" is a value
            following = _NEXT_WORD.match(text, match.end())
            if previous in _ONE_BEFORE or following is None or following[1].lower() in _ONE_AFTER:
                continue
        if _denied(text, match.start()):
            continue
        suffix = (match.group("suffix") or "").lower().replace(" ", "")
        number = _stated_number(text, match.start(), match.group(0).strip(), str(value), "", suffix)
        found.append((match.start(), match.end(), number))
    alternatives = _alternatives(text, found)  # "two or three prescribers"
    return [
        (start, number)
        for index, (start, _, number) in enumerate(found)
        if index not in alternatives
    ]


def _marker_offsets(text: str) -> set[int]:
    """Where the numbers that mark list items or rank table rows start.

    "1. ", "2) " starting a line (a markdown list), "#3", a table column headed "Rank", "#",
    "No." or nothing (a printed index) holding row numbers, and lines of plain text numbered
    0, 1, 2... or 1, 2, 3... (a printed data frame). They say where a row is, not what it
    holds: in an honest top-10 list, the ranks 1 to 10 must not state a count of 4.
    """
    offsets = {m.start(1) for m in _LIST_MARKER.finditer(text)}
    offsets |= {m.start(1) for m in _HASH_MARKER.finditer(text)}
    lines: list[tuple[int, str]] = []
    position = 0
    for line in text.split("\n"):
        lines.append((position, line))
        position += len(line) + 1
    offsets |= _rank_column_offsets(lines)
    offsets |= _row_number_offsets(lines)
    return offsets


def _cells(line: str, sep: str) -> list[tuple[int, str]]:
    """A table row's cells with their offsets in the line (a pipe row's outer bars dropped)."""
    cells: list[tuple[int, str]] = []
    start = 0
    for part in line.split(sep):
        cells.append((start, part))
        start += len(part) + 1
    if sep == "|":
        if line.lstrip().startswith("|"):
            cells = cells[1:]
        if line.rstrip().endswith("|"):
            cells = cells[:-1]
    return cells


def _rank_column_offsets(lines: list[tuple[int, str]]) -> set[int]:
    """Row numbers in rank columns of markdown tables and CSV blocks (see _marker_offsets)."""
    blocks: list[tuple[str, list[tuple[int, str]]]] = []
    for offset, line in lines:
        stripped = line.strip()
        if stripped.startswith("|"):
            kind = "|"
        elif stripped.count(",") and ", " not in stripped:
            kind = f",{stripped.count(',')}"  # a CSV block: rows with as many commas
        else:
            kind = ""
        if kind and blocks and blocks[-1][0] == kind:
            blocks[-1][1].append((offset, line))
        elif kind:
            blocks.append((kind, [(offset, line)]))
        else:
            blocks.append(("", []))
    offsets: set[int] = set()
    for kind, rows in blocks:
        if len(rows) < 2:
            continue
        sep = "|" if kind == "|" else ","
        table = [(offset, _cells(line, sep)) for offset, line in rows]
        header = [cell.strip().strip(".:").lower() for _, cell in table[0][1]]
        body = [
            (offset, cells)
            for offset, cells in table[1:]
            if not all(_SEPARATOR_CELL.fullmatch(cell) for _, cell in cells)
        ]
        for column, name in enumerate(header):
            if name not in _RANK_HEADERS:
                continue
            numbers: list[tuple[int, int]] = []
            for offset, cells in body:
                integer = _INTEGER_CELL.fullmatch(cells[column][1]) if column < len(cells) else None
                if integer is None:
                    break
                numbers.append((offset + cells[column][0] + integer.start(1), int(integer[1])))
            else:
                values = [value for _, value in numbers]
                # a named rank column may hold ties (1, 2, 2, 4); a nameless one must count
                counting = bool(values) and values[0] in (0, 1)
                counting = counting and values == list(range(values[0], values[0] + len(values)))
                if values and (_looks_like_ranks(values) if name else counting):
                    offsets |= {start for start, _ in numbers}
    return offsets


def _looks_like_ranks(values: list[int]) -> bool:
    """Whether a column headed like a rank column ("#", "No.") holds ranks, not counts.

    Ranks count up from 0 or 1, by at most one row at a time (ties: 1, 2, 2, 4), or run on
    consecutively from further down a list (11, 12, 13) or up it (10, 9, 8). "| Specialty | # |"
    holding 255, 215 counts prescriptions: those numbers are stated values.
    """
    if values[0] not in (0, 1):
        steps = {b - a for a, b in itertools.pairwise(values)}
        return len(values) >= 3 and steps in ({1}, {-1})
    rising = all(a <= b for a, b in itertools.pairwise(values))
    return rising and all(value - values[0] <= i for i, value in enumerate(values))


def _row_number_offsets(lines: list[tuple[int, str]]) -> set[int]:
    """Numbers starting three or more consecutive lines and counting up from 0 or 1."""
    offsets: set[int] = set()
    run: list[tuple[int, int]] = []
    for offset, line in [*lines, (0, "")]:
        leading = re.match(r"[ \t]*(\d{1,4})[ \t]+\S", line)
        if leading and run and int(leading[1]) == run[-1][1] + 1:
            run.append((offset + leading.start(1), int(leading[1])))
            continue
        if len(run) >= 3 and run[0][1] in (0, 1):
            offsets |= {start for start, _ in run}
        run = [(offset + leading.start(1), int(leading[1]))] if leading else []
    return offsets
