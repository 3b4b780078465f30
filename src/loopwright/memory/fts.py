"""Full-text search helpers shared by the memory store and the workspace search index.

User text never reaches FTS5's query language as it is: ``fts_query`` splits it into words
and quotes each one, so quotes, ``AND``/``NOT``/``NEAR``, ``*``, ``:``, parentheses and
column names in a question are just words. Words are OR-ed (a memory that shares some of
the question's words is a candidate; bm25 ranks the ones that share the rarest words
first), and each word of three letters or more is also tried as a prefix, so ``postgres``
finds ``PostgreSQL``; a document matching the word itself scores both phrases and so
outranks one that only matches the prefix. Stemming is the tokenizer's: :data:`TOKENIZER`
is FTS5's porter stemmer over ``unicode61`` with diacritics folded, so ``running``, ``runs``
and ``run`` meet.

:func:`reciprocal_rank_fusion` merges rankings from different retrievers (bm25 and vector
distance, whose scores cannot be compared) by rank alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

#: The FTS5 tokenizer of every loopwright full-text table.
TOKENIZER = "porter unicode61 remove_diacritics 2"

#: Words that say little about what a question is after; dropped from queries unless the
#: query has nothing else (so "Who am I?" still finds something).
STOPWORDS = frozenset(
    """
    a about after again all also am an and any are as at be been before being both but by
    can could did do does doing done during each else for from further get got had has
    have having he her here hers herself him himself his how i if in into is it its itself
    just let me mine more most my myself nor now of off on once only or other our ours
    ourselves out over own please same shall she should so some such than that the their
    theirs them themselves then there these they this those through to too under until up
    us very was we were what when where which while who whom whose why will with would you
    your yours yourself yourselves tell know remember recall find show give anything
    something
    """.split()  # noqa: SIM905  # a word list reads better as text
)

#: At most this many words of a query are used (a pasted page stays a bounded query).
MAX_QUERY_TERMS = 32
MIN_PREFIX_CHARS = 3

# Letters and digits, as unicode61 sees them ("_" and punctuation separate words).
_WORD = re.compile(r"[^\W_]+")


def words(text: str) -> list[str]:
    """The lower-cased words of ``text``, in order, with repeats."""
    return [word.casefold() for word in _WORD.findall(text)]


def query_terms(text: str, *, keep_stopwords: bool = False) -> list[str]:
    """The distinct words of a query worth searching for, in order, at most
    :data:`MAX_QUERY_TERMS`; stopwords and single letters (the ``s`` of ``Ada's``) only
    when the query has nothing else."""
    unique = list(dict.fromkeys(words(text)))
    if not keep_stopwords:
        content = [
            word for word in unique if word not in STOPWORDS and (len(word) > 1 or word.isdigit())
        ]
        if content:
            unique = content
    return unique[:MAX_QUERY_TERMS]


def fts_query(text: str, *, prefix: bool = True, keep_stopwords: bool = False) -> str | None:
    """A safe FTS5 ``MATCH`` expression for free text, or ``None`` when it has no words.

    >>> fts_query('what is Ada\\'s "colour"? NOT red*')
    '"ada" OR "ada"* OR "colour" OR "colour"* OR "not" OR "not"* OR "red" OR "red"*'
    """
    terms = query_terms(text, keep_stopwords=keep_stopwords)
    if not terms:
        return None
    phrases: list[str] = []
    for term in terms:
        phrases.append(f'"{term}"')  # the word regex admits no quote; quoting is complete
        if prefix and len(term) >= MIN_PREFIX_CHARS:
            phrases.append(f'"{term}"*')
    return " OR ".join(phrases)


def reciprocal_rank_fusion(
    rankings: Iterable[Sequence[int]], *, k: int = 60
) -> list[tuple[int, float]]:
    """Merge rankings (ids, best first) into one: ``score(id) = sum(1 / (k + rank))``.

    ``k = 60`` is the constant of Cormack et al. (2009); it keeps one retriever's top hit
    from drowning what both agree on. Ties keep the order of first appearance.
    """
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda pair: pair[1], reverse=True)
