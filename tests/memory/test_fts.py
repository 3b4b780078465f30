"""Query building is safe for any user text, and finds stems and prefixes, on real FTS5."""

from __future__ import annotations

import sqlite3

import pytest

from loopwright.memory.fts import (
    MAX_QUERY_TERMS,
    TOKENIZER,
    fts_query,
    query_terms,
    reciprocal_rank_fusion,
)

HOSTILE = [
    '"',
    "'",
    '""""',
    "AND",
    "OR NOT",
    "a AND NOT b",
    "NEAR(alpha beta, 2)",
    "text:secret",
    "{text tags}: secret",
    "tags:*",
    "a*",
    "*",
    "^start",
    "(",
    ")",
    "-minus +plus",
    "\\",
    "col:value OR col2:",
    "🙂 emoji",
    "ünïcödé ñ",
    "x" * 5000,
    "\x00nul",
    "%_;--",
    "DROP TABLE docs;",
    "' OR 1=1 --",
]


@pytest.fixture
def docs() -> sqlite3.Connection:
    db = sqlite3.connect(":memory:")
    db.execute(f"CREATE VIRTUAL TABLE docs USING fts5(text, tags, tokenize='{TOKENIZER}')")
    rows = [
        (1, "She runs marathons every spring.", ""),
        (2, "The staging server runs PostgreSQL 15.", "infra"),
        (3, "Ada's favourite colour is teal.", "ada"),
        (4, "Café opening hours: 8 to 17.", ""),
        (5, "The secret handshake is two taps.", "secret"),
    ]
    db.executemany("INSERT INTO docs (rowid, text, tags) VALUES (?, ?, ?)", rows)
    return db


def match(db: sqlite3.Connection, text: str) -> list[int]:
    query = fts_query(text)
    if query is None:
        return []
    rows = db.execute("SELECT rowid FROM docs WHERE docs MATCH ? ORDER BY rank", (query,))
    return [row[0] for row in rows]


@pytest.mark.parametrize("text", HOSTILE)
def test_no_user_text_breaks_the_query_syntax(docs: sqlite3.Connection, text: str) -> None:
    match(docs, text)  # raises sqlite3.OperationalError on a syntax error


def test_operators_and_column_filters_are_plain_words(docs: sqlite3.Connection) -> None:
    # unquoted, "text:secret" would search the word "secret" in the text column only, and
    # "tags:*" would be a syntax error; quoted, they are the words themselves
    assert match(docs, "tags:secret") == [5]
    assert match(docs, "NOT teal") == [3]


def test_stemming_and_prefixes(docs: sqlite3.Connection) -> None:
    assert set(match(docs, "running")) == {1, 2}  # runs, runs
    assert match(docs, "postgres") == [2]  # a prefix of PostgreSQL
    assert match(docs, "Ada's colours") == [3]
    assert match(docs, "cafe") == [4]  # diacritics folded


def test_stopwords_are_dropped_unless_nothing_else_is_left() -> None:
    assert query_terms("What is the name of Ada's cat?") == ["name", "ada", "cat"]
    assert query_terms("Who am I?") == ["who", "am", "i"]
    assert fts_query("  ?! ") is None
    assert len(query_terms(" ".join(f"w{i}" for i in range(100)))) == MAX_QUERY_TERMS


def test_reciprocal_rank_fusion_rewards_agreement() -> None:
    fused = reciprocal_rank_fusion([[1, 2, 3], [2, 3, 4]])
    order = [item for item, _ in fused]
    assert order == [2, 3, 1, 4]  # found by both beats first in one
    assert fused[0][1] == pytest.approx(1 / 62 + 1 / 61)
