"""A zero stated in words: "received no HUMIRA-related payments", "Payments: none".

A number fact whose value is zero is stated by words as well as by "0", but only when the zero
word reaches what the fact counts: "no prescriber was left out" is not "no payments". The golden
checker (``check.py``) asks :func:`zero_statement` for a zero fact no number states.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from loopwright.healthcare.numbers import MONTHS, SMALL_NUMBERS, TENS

_TOKEN = re.compile(
    r"(?P<word>[A-Za-z]+(?:['\u2019][A-Za-z]+)*)|(?P<number>\d[\d,]*(?:\.\d+)?)"
    r"|(?P<stop>[.;!?\n])|(?P<pause>[,:()\u2014])"
)
_ZERO_WORDS = frozenset({"zero", "none", "nothing", "nil"})
_NOT_WORDS = frozenset({"not", "never", "without"})
#: "no" starting an idiom is not a quantity: "no doubt", "no longer", "no more than 5"
_NO_IDIOMS = frozenset(
    {"doubt", "longer", "matter", "way", "question", "wonder", "surprise", "means", "less",
     "more", "fewer", "sooner", "one", "exception", "problem", "issue", "issues"}
)  # fmt: skip
_LABEL_STOPWORDS = frozenset(
    {"the", "their", "its", "his", "her", "of", "in", "on", "a", "an", "and", "or", "with",
     "without", "to", "for", "by", "from", "that", "this", "these", "those", "all", "total",
     "number", "average", "share", "related", "per", "each", "who", "which", "they", "them"}
    | {month.lower() for month in MONTHS}
)  # fmt: skip
_QUANTITY_SYNONYMS: dict[str, tuple[str, ...]] = {
    "payments": ("paid", "money", "dollars", "compensation", "funds"),
    "prescriptions": ("prescribed", "fills", "scripts", "rx"),
    "fills": ("filled", "prescriptions"),
    "prescribers": ("providers", "doctors", "physicians"),
}
#: how many words away a zero word may be from the quantity it counts, looking ahead ("none of
#: the payments") and back ("payments, they did not receive any"); the label's other words
#: ("none of its prescribers were paid") are not counted
_ZERO_AFTER = 4
_ZERO_BEFORE = 5
#: words of a label that end its head and start words narrowing where the quantity is counted
#: ("payments to its prescribers", "prescriptions in California") ...
_SCOPE_WORDS = frozenset(
    {"to", "of", "in", "on", "at", "for", "by", "from", "among", "per", "across", "during",
     "over", "under", "between", ","}
)  # fmt: skip
#: ... or defining what is counted ("prescribers with payments", "patients who filled HUMIRA",
#: and "oncologists prescribing KEYTRUDA": a participle)
_DEFINING_WORDS = frozenset({"with", "without", "who", "that", "which", "whose", "having"})
#: words that end the phrase a zero word is in: "no HUMIRA patients and the payments were..."
_CLAUSE_BREAKS = frozenset({"and", "but", "while", "whereas", "although", "though", "yet"})
#: what may follow "none of" before the quantity: "none of the 45 prescribers"
_PARTITIVE = frozenset({"the", "its", "their", "these", "those", "all"})
_NUMBER_WORDS = frozenset({*SMALL_NUMBERS, *TENS, "hundred"})


def _stem(word: str) -> str:
    """A crude stem for matching a label's words: "payments", "payment" -> "payment";
    "prescribing", "prescribed", "prescribes" -> "prescrib"; "filled", "fills" -> "fill"."""
    word = word.lower().replace("\u2019", "'").removesuffix("'s")
    for suffix in ("ing", "ed", "es", "s", "e"):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


_SYNONYMS: dict[str, frozenset[str]] = {
    _stem(word): frozenset(_stem(s) for s in synonyms)
    for word, synonyms in _QUANTITY_SYNONYMS.items()
}


@dataclass(frozen=True, slots=True)
class _Quantity:
    """What a number fact's label counts, as stems, for reading a zero stated in words.

    ``head`` names the counted thing: "payments" in "total JARDIANCE payments to its
    prescribers", "prescribers" in "ELIQUIS prescribers without ELIQUIS payments". ``scope``
    holds the label's other words: they may stand between a zero word and the head ("none
    of its prescribers were paid") but state no zero of it themselves ("no prescriber was left
    out" is not "no payments"). ``defining``: for a head narrowed by "with", "who", a
    participle..., word sets of which a zero statement must hold one each ("no OZEMPIC
    prescriber received OZEMPIC payments" for "OZEMPIC prescribers with OZEMPIC payments");
    ``negated``: the label counts those *without* something, so the statement must say
    "without" too ("no prescriber received payments" says the opposite).
    """

    head: frozenset[str]
    scope: frozenset[str]
    defining: tuple[frozenset[str], ...]
    negated: bool


def _quantity(label: str) -> _Quantity:
    """Read a label: its head is the last content word before the first scope or defining
    word ("their HUMIRA-related payments" -> payments; "ELIQUIS prescribers in total" ->
    prescribers), or the first content word after it when there is none before ("number of
    payments"). Product names and codes (HUMIRA, NPI) say what, not how many: they are skipped.
    """
    segments: list[tuple[str, list[str]]] = [("", [])]
    for raw in re.findall(r"[A-Za-z]+|,", label):
        word = raw.lower()
        participle = word.endswith("ing") and len(word) > 5 and word not in _SCOPE_WORDS
        if word in _SCOPE_WORDS or word in _DEFINING_WORDS or participle:
            segments.append((word, [word] if participle else []))
        elif not ((raw.isupper() and len(raw) > 1) or len(word) < 3 or word in _LABEL_STOPWORDS):
            segments[-1][1].append(word)
    first = next((i for i, (_, words) in enumerate(segments) if words), None)
    if first is None:
        return _Quantity(frozenset(), frozenset(), (), negated=False)
    head_word = segments[first][1][-1]

    def forms(words: Iterable[str]) -> frozenset[str]:
        stems = {_stem(word) for word in words}
        return frozenset(stems.union(*(_SYNONYMS.get(stem, frozenset()) for stem in stems)))

    head = forms([head_word])
    rest = [word for _, words in segments[first:] for word in words if word != head_word]
    narrowing = segments[first + 1 :]
    defining = tuple(
        forms(words)
        for relation, words in narrowing
        if words and (relation in _DEFINING_WORDS or relation.endswith("ing"))
    )
    negated = any(relation == "without" for relation, _ in narrowing)
    return _Quantity(head, forms(rest) - head, defining, negated)


def zero_statement(text: str, label: str) -> str | None:
    """The words stating that the fact's quantity is zero, or None.

    "no", "none", "zero", "nothing", "not ... any", "not a single" state a zero only next to
    the head of the quantity they count (see ``_Quantity``), within a phrase: "received no
    HUMIRA-related payments", "Payments: none", "did not receive any payments", "were paid
    nothing", "none of the 45 prescribers were paid". Otherwise they are about something
    else: "there is no doubt", "none of the data was missing; payments were $5,000", "nothing
    unusual: payments totaled $5,000", and for "total JARDIANCE payments to its prescribers",
    "no prescriber was left out: the total was $27,388" (no prescriber, not no payments).
    """
    quantity = _quantity(label)
    if not quantity.head:
        return None
    tokens = list(_TOKEN.finditer(text))
    words = [t.group().lower().replace("\u2019", "'") if t["word"] else "" for t in tokens]
    stems = [_stem(word) if word else "" for word in words]
    for i, word in enumerate(words):
        following = next((w for w in words[i + 1 : i + 2] if w), "")
        if word in _ZERO_WORDS:
            if word == "zero" and following == "in":
                continue  # "zero in on"
            backward = True
        elif word == "no" or (word == "single" and words[max(0, i - 2) : i] == ["not", "a"]):
            if following in _NO_IDIOMS:
                continue
            backward = False  # "payments: no" is not how a zero is written
        elif word in {"any", "anything"} and any(
            w in _NOT_WORDS or w.endswith("n't") for w in words[max(0, i - 4) : i]
        ):
            backward = True
        else:
            continue
        head = _head_after(quantity, tokens, words, stems, i)
        if head is None and backward:
            head = _head_before(quantity, tokens, words, stems, i)
        if head is None:
            continue
        if word == "single":
            i -= 2  # "not a single payment"
        span = _defining_phrase(quantity, tokens, words, stems, min(i, head), max(i, head))
        if span is not None:
            return text[tokens[span[0]].start() : tokens[span[1]].end()]
    return None


def _head_after(
    quantity: _Quantity, tokens: list[re.Match[str]], words: list[str], stems: list[str], i: int
) -> int | None:
    """Where the quantity's head follows the zero word at ``i`` in the same phrase ("no ...
    payments"), or None. A partitive ("none of the 45") and the label's other words are free."""
    j = i + 1
    if j < len(tokens) and words[j] == "of":
        j += 1
        while j < len(tokens) and (
            words[j] in _PARTITIVE or tokens[j]["number"] or words[j] in _NUMBER_WORDS
        ):
            j += 1
    counted = 0
    while j < len(tokens) and counted < _ZERO_AFTER:
        if not tokens[j]["word"] or words[j] in _CLAUSE_BREAKS:
            return None
        if stems[j] in quantity.head:
            return j
        counted += stems[j] not in quantity.scope
        j += 1
    return None


def _head_before(
    quantity: _Quantity, tokens: list[re.Match[str]], words: list[str], stems: list[str], i: int
) -> int | None:
    """Where the quantity's head comes first in the same clause ("payments: none"), or None."""
    seen = 0
    for j in range(i - 1, -1, -1):
        if tokens[j]["number"] or tokens[j]["stop"] or words[j] in _CLAUSE_BREAKS:
            return None
        if tokens[j]["pause"]:
            continue
        if stems[j] in quantity.head:
            return j
        seen += stems[j] not in quantity.scope
        if seen >= _ZERO_BEFORE:
            return None
    return None


def _defining_phrase(
    quantity: _Quantity,
    tokens: list[re.Match[str]],
    words: list[str],
    stems: list[str],
    first: int,
    last: int,
) -> tuple[int, int] | None:
    """The tokens stating the zero, ``first`` to ``last``, or None when they do not say what
    the label's defining words say.

    A label with defining words needs them in the phrase around the zero (out to the nearest
    pause, stop or clause break), and then that whole phrase is the statement: "no OZEMPIC
    prescriber received OZEMPIC payments" for "OZEMPIC prescribers with OZEMPIC payments";
    "without" too for a label counting those without something.
    """
    if not quantity.defining and not quantity.negated:
        return first, last
    while first > 0 and tokens[first - 1]["word"] and words[first - 1] not in _CLAUSE_BREAKS:
        first -= 1
    while (
        last + 1 < len(tokens)
        and tokens[last + 1]["word"]
        and words[last + 1] not in _CLAUSE_BREAKS
    ):
        last += 1
    phrase = set(stems[first : last + 1])
    if quantity.negated and "without" not in words[first : last + 1]:
        return None
    if not all(phrase & group for group in quantity.defining):
        return None
    return first, last
