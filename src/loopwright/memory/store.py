"""Long-term memory: short facts an agent keeps across sessions, in one SQLite file.

A :class:`MemoryBank` stores memories (a sentence or a paragraph each, with a kind, tags,
dates and the session that said it) under a *scope*: a user (``"user:ada"``), a project
(``"project:falcon"``) or anything else a string can name. Every read and write names its
scope, and nothing crosses scopes: recall, listing, dedupe and forget only ever see the
memories of the scope they are given.

Recall ranks with SQLite's FTS5 full-text index (bm25, porter stemming, prefix matches; the
question is quoted word by word, so no user text can break the query; see
:mod:`loopwright.memory.fts`). With an embedding function, memories also get vectors in a
sqlite-vec table and recall fuses the full-text and the vector rankings (reciprocal-rank
fusion), so a question phrased in other words still finds its memory.

Remembering something already known does not add a copy: a near-identical text (the same
words in the same order, ignoring case, spacing, punctuation, accents, articles and forms of
"to be": "The user's timezone is CET." and "user timezone was CET") updates the existing
memory, the newer wording winning. The rule is strict on purpose: texts that differ in a
name, a number or a negation are different facts, and merging them would lose one.

Forgetting deletes the memory's row, its full-text entry and its vector in one transaction;
no query, listing or vocabulary sees it afterwards. SQLite's ``secure_delete`` is on, so the
deleted rows are overwritten in the file, and so is FTS5's ``secure-delete`` where SQLite has
it (3.42 and later), so the words leave the full-text index at once; with older SQLite
versions they stay in its older segments, unreachable, until FTS5 merges them.

The file is in WAL mode, so several processes can share it. One bank is safe to use from
several threads and tasks; its async methods run SQLite in a worker thread, so a busy disk
or a writer in another process never stalls the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
import unicodedata
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from loopwright.memory.embeddings import EmbeddingError, EmbeddingFunction, embed, embedder_name
from loopwright.memory.fts import TOKENIZER, fts_query, reciprocal_rank_fusion, words
from loopwright.memory.vectors import VectorTable, connect
from loopwright.sqlite_tx import write_transaction

log = logging.getLogger("loopwright.memory")

DEFAULT_SCOPE = "default"
DEFAULT_KIND = "note"
MAX_TEXT_CHARS = 4000
MAX_SCOPE_CHARS = 200
MAX_KIND_CHARS = 40
MAX_TAGS = 16
MAX_TAG_CHARS = 48
MAX_LIMIT = 100
#: How many memories without a vector are embedded, at most, on each remember/recall.
BACKFILL_BATCH = 256

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS memories (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    scope TEXT NOT NULL,
    text TEXT NOT NULL,
    kind TEXT NOT NULL,
    tags TEXT NOT NULL,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    session_id TEXT,
    fingerprint TEXT NOT NULL,
    embedded INTEGER NOT NULL DEFAULT 0
);
CREATE UNIQUE INDEX IF NOT EXISTS memories_by_text ON memories (scope, fingerprint);
CREATE INDEX IF NOT EXISTS memories_by_date ON memories (scope, updated_at);
CREATE INDEX IF NOT EXISTS memories_unembedded ON memories (id) WHERE embedded = 0;
CREATE VIRTUAL TABLE IF NOT EXISTS memories_fts USING fts5(text, tags, tokenize='{TOKENIZER}');
"""
_COLUMNS = "id, scope, text, kind, tags, created_at, updated_at, session_id"
#: bm25 weights of the full-text columns: text, tags
_BM25 = "bm25(memories_fts, 1.0, 0.5)"

T = TypeVar("T")


def default_memory_path() -> Path:
    """``<LOOPWRIGHT_HOME>/memory.db``: the memory shared by every session of this user."""
    from loopwright.config import memory_db_path

    return memory_db_path()


@dataclass(frozen=True, slots=True)
class Memory:
    """One remembered fact."""

    id: int
    scope: str
    text: str
    kind: str
    tags: tuple[str, ...]
    created_at: float
    updated_at: float
    #: the session that last stated it (``None`` when stored outside a session)
    session_id: str | None


@dataclass(frozen=True, slots=True)
class RecallHit:
    """A recalled memory and its score (higher is more relevant: bm25's, negated, or the
    reciprocal-rank-fusion score when vectors take part)."""

    memory: Memory
    score: float


@dataclass(frozen=True, slots=True)
class Remembered:
    """What :meth:`MemoryBank.remember` did."""

    memory: Memory
    #: False when an existing memory (the same, or near-identical) was updated instead
    created: bool
    #: the text a near-identical memory had before this one replaced it
    previous_text: str | None = None
    #: why the memory has no vector yet (it is embedded later; full-text recall works now)
    vector_error: str | None = None


class MemoryBank:
    """Long-term memory in a SQLite file (see the module docs).

    ``path`` defaults to :func:`default_memory_path`; ``":memory:"`` keeps it in the
    process. ``embedder`` (see :mod:`loopwright.memory.embeddings`) turns on vector search
    with hybrid ranking. ``dedupe=False`` stores every remembered text as a new memory.
    """

    def __init__(
        self,
        path: str | os.PathLike[str] | None = None,
        *,
        embedder: EmbeddingFunction | None = None,
        dedupe: bool = True,
        max_text_chars: int = MAX_TEXT_CHARS,
    ) -> None:
        self.path = Path(path) if path is not None else default_memory_path()
        self.embedder = embedder
        self.dedupe = dedupe
        self.max_text_chars = max_text_chars
        self._vectors = VectorTable("memory_vectors", partitioned=True)
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = self._open()

    def _open(self) -> sqlite3.Connection:
        in_process = str(self.path) == ":memory:"
        target = ":memory:" if in_process else self.path
        db = self._prepared(target, in_process and self.embedder is not None)
        if not in_process and (self.embedder is not None or self._vectors.exists(db)):
            # vectors need sqlite-vec; stored ones need it too, so forget can delete them
            db.close()
            db = self._prepared(target, True)
        return db

    def _prepared(self, target: str | Path, vectors: bool) -> sqlite3.Connection:
        db: sqlite3.Connection | None = None
        try:
            db = connect(target, vectors=vectors)
            db.execute("PRAGMA secure_delete=ON")
            db.executescript(_SCHEMA)
            with contextlib.suppress(sqlite3.OperationalError):  # SQLite 3.42 and later
                db.execute(
                    "INSERT INTO memories_fts (memories_fts, rank) VALUES ('secure-delete', 1)"
                )
        except sqlite3.DatabaseError as exc:
            if db is not None:
                db.close()
            raise sqlite3.DatabaseError(
                f"{self.path} is not a usable memory database ({exc}); move it away or give "
                "MemoryBank another path."
            ) from exc
        return db

    def __repr__(self) -> str:
        vectors = f", embedder={embedder_name(self.embedder)}" if self.embedder else ""
        return f"MemoryBank({str(self.path)!r}{vectors})"

    # --- the public API (async) -----------------------------------------------------------

    async def remember(
        self,
        text: str,
        *,
        scope: str = DEFAULT_SCOPE,
        kind: str | None = None,
        tags: Iterable[str] = (),
        session_id: str | None = None,
    ) -> Remembered:
        """Store a memory (or refresh the one it duplicates) and say which."""
        text = self._checked_text(text)
        scope = checked_scope(scope)
        kind = checked_kind(kind) if kind is not None else None
        tag_list = checked_tags(tags)
        vector: list[float] | None = None
        vector_error: str | None = None
        if self.embedder is not None:
            try:
                [vector] = await embed(self.embedder, [text])
            except EmbeddingError as exc:
                vector_error = str(exc)
                log.warning("memory stored without a vector: %s", exc)
        if vector is not None:
            await self._ready_vectors(len(vector))
        remembered = await self._in_thread(
            self._remember, scope, text, kind, tag_list, session_id, vector
        )
        if vector_error is not None:
            remembered = Remembered(
                remembered.memory, remembered.created, remembered.previous_text, vector_error
            )
        elif vector is not None:
            await self._backfill(BACKFILL_BATCH)
        return remembered

    async def recall(
        self,
        query: str,
        *,
        scope: str = DEFAULT_SCOPE,
        limit: int = 5,
        kind: str | None = None,
        tags: Iterable[str] = (),
    ) -> list[RecallHit]:
        """The memories of ``scope`` most relevant to ``query``, best first.

        ``kind`` and ``tags`` (any of them) narrow the search.
        """
        scope = checked_scope(scope)
        limit = checked_limit(limit)
        kind = checked_kind(kind) if kind is not None else None
        tag_list = checked_tags(tags)
        vector: list[float] | None = None
        if self.embedder is not None and query.strip():
            try:
                [vector] = await embed(self.embedder, [query])
            except EmbeddingError as exc:
                log.warning("recall falls back to full-text search: %s", exc)
            else:
                await self._ready_vectors(len(vector))
                await self._backfill(BACKFILL_BATCH)
        return await self._in_thread(self._recall, query, scope, limit, kind, tag_list, vector)

    async def forget(self, ids: Iterable[int], *, scope: str = DEFAULT_SCOPE) -> list[int]:
        """Delete memories of ``scope`` by id (row, full-text entry and vector); returns the
        ids that were deleted (ids of other scopes, or unknown, are left alone)."""
        scope = checked_scope(scope)
        wanted = list(dict.fromkeys(int(i) for i in ids))
        return await self._in_thread(self._forget, scope, wanted)

    async def clear(self, *, scope: str) -> int:
        """Forget every memory of ``scope``; returns how many there were."""
        scope = checked_scope(scope)
        return await self._in_thread(self._clear, scope)

    async def get(self, memory_id: int, *, scope: str = DEFAULT_SCOPE) -> Memory | None:
        """One memory of ``scope`` by id, or ``None``."""
        scope = checked_scope(scope)
        return await self._in_thread(self._get, scope, int(memory_id))

    async def recent(
        self,
        *,
        scope: str = DEFAULT_SCOPE,
        limit: int = 20,
        offset: int = 0,
        kind: str | None = None,
    ) -> list[Memory]:
        """The memories of ``scope``, most recently updated first."""
        scope = checked_scope(scope)
        limit = checked_limit(limit)
        kind = checked_kind(kind) if kind is not None else None
        return await self._in_thread(self._recent, scope, limit, max(0, offset), kind)

    async def count(self, *, scope: str | None = None) -> int:
        """How many memories ``scope`` has (all scopes when ``None``)."""
        checked = checked_scope(scope) if scope is not None else None
        return await self._in_thread(self._count, checked)

    async def scopes(self) -> list[str]:
        """The scopes that have memories."""
        return await self._in_thread(self._scopes)

    async def embed_pending(self) -> int:
        """Give a vector to every memory that lacks one (stored while the embedding function
        failed, or before it was set or changed); returns how many got one."""
        if self.embedder is None:
            return 0
        [probe] = await embed(self.embedder, ["which model made these vectors?"])
        await self._ready_vectors(len(probe))
        total = 0
        while True:
            done = await self._backfill(BACKFILL_BATCH, raise_errors=True)
            total += done
            if done < BACKFILL_BATCH:
                return total

    def close(self) -> None:
        """Close the database (waits for a call in progress)."""
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    def __enter__(self) -> MemoryBank:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    async def __aenter__(self) -> MemoryBank:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- the work (sync, in a worker thread, under the lock) ------------------------------

    async def _in_thread(self, function: Callable[..., T], *args: Any) -> T:
        return await asyncio.to_thread(self._locked, function, *args)

    def _locked(self, function: Callable[..., T], *args: Any) -> T:
        with self._lock:
            return function(*args)

    @property
    def db(self) -> sqlite3.Connection:
        """The open connection (callers hold the lock)."""
        if self._db is None:
            raise RuntimeError(f"{self!r} is closed; open a new MemoryBank.")
        return self._db

    def _remember(
        self,
        scope: str,
        text: str,
        kind: str | None,
        tags: list[str],
        session_id: str | None,
        vector: list[float] | None,
    ) -> Remembered:
        now = time.time()
        fingerprint = _fingerprint(text) if self.dedupe else uuid.uuid4().hex
        with write_transaction(self.db) as db:
            if vector is not None:
                self._match_vectors(db, len(vector))
            row = db.execute(
                f"SELECT {_COLUMNS} FROM memories WHERE scope = ? AND fingerprint = ?",
                (scope, fingerprint),
            ).fetchone()
            previous: Memory | None = _memory(row) if row is not None else None
            if previous is None:
                cursor = db.execute(
                    "INSERT INTO memories (scope, text, kind, tags, created_at, updated_at,"
                    " session_id, fingerprint) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        scope,
                        text,
                        kind or DEFAULT_KIND,
                        json.dumps(tags),
                        now,
                        now,
                        session_id,
                        fingerprint,
                    ),
                )
                memory_id = int(cursor.lastrowid or 0)
                db.execute(
                    "INSERT INTO memories_fts (rowid, text, tags) VALUES (?, ?, ?)",
                    (memory_id, text, " ".join(tags)),
                )
                if vector is not None:
                    self._store_vector(db, memory_id, vector, scope)
                memory = Memory(
                    memory_id, scope, text, kind or DEFAULT_KIND, tuple(tags), now, now, session_id
                )
                return Remembered(memory, created=True)
            merged = list(dict.fromkeys([*previous.tags, *tags]))[:MAX_TAGS]
            new_kind = kind or previous.kind
            # reworded: the newer wording wins; the same words again: the text stays as it was
            reworded = _normalised(previous.text) != _normalised(text)
            new_text = text if reworded else previous.text
            db.execute(
                "UPDATE memories SET text = ?, kind = ?, tags = ?, updated_at = ?,"
                " session_id = coalesce(?, session_id) WHERE id = ?",
                (new_text, new_kind, json.dumps(merged), now, session_id, previous.id),
            )
            db.execute("DELETE FROM memories_fts WHERE rowid = ?", (previous.id,))
            db.execute(
                "INSERT INTO memories_fts (rowid, text, tags) VALUES (?, ?, ?)",
                (previous.id, new_text, " ".join(merged)),
            )
            if vector is not None and reworded:
                self._store_vector(db, previous.id, vector, scope)
            elif reworded:  # the old vector no longer says what the text does
                self._drop_vector(db, previous.id)
            memory = Memory(
                previous.id,
                scope,
                new_text,
                new_kind,
                tuple(merged),
                previous.created_at,
                now,
                session_id or previous.session_id,
            )
            return Remembered(
                memory, created=False, previous_text=previous.text if reworded else None
            )

    def _recall(
        self,
        query: str,
        scope: str,
        limit: int,
        kind: str | None,
        tags: list[str],
        vector: list[float] | None,
    ) -> list[RecallHit]:
        db = self.db
        pool = max(limit * 5, 50)
        filters, params = _filters(kind, tags)
        ranked: list[tuple[int, float]] = []
        match = fts_query(query)
        if match is not None:
            rows = db.execute(
                f"SELECT m.id, {_BM25} AS score FROM memories_fts"
                " JOIN memories AS m ON m.id = memories_fts.rowid"
                f" WHERE memories_fts MATCH ? AND m.scope = ?{filters}"
                " ORDER BY score, m.updated_at DESC LIMIT ?",
                (match, scope, *params, pool),
            ).fetchall()
            ranked = [(int(memory_id), -float(score)) for memory_id, score in rows]
        if vector is not None and self._vectors.usable(db, len(vector)):
            nearest = self._vectors.nearest(db, vector, pool, partition=scope)
            near_ids = [memory_id for memory_id, _ in nearest]
            if filters and near_ids:
                allowed = {
                    int(r[0])
                    for r in db.execute(
                        "SELECT m.id FROM memories AS m WHERE m.id IN"
                        f" (SELECT value FROM json_each(?)){filters}",
                        (json.dumps(near_ids), *params),
                    )
                }
                near_ids = [i for i in near_ids if i in allowed]
            ranked = reciprocal_rank_fusion([[i for i, _ in ranked], near_ids])
        top = ranked[:limit]
        memories = self._by_ids(db, [memory_id for memory_id, _ in top])
        return [
            RecallHit(memories[memory_id], score)
            for memory_id, score in top
            if memory_id in memories and memories[memory_id].scope == scope
        ]

    def _forget(self, scope: str, ids: list[int]) -> list[int]:
        if not ids:
            return []
        with write_transaction(self.db) as db:
            found = [
                int(r[0])
                for r in db.execute(
                    "SELECT id FROM memories WHERE scope = ? AND id IN"
                    " (SELECT value FROM json_each(?)) ORDER BY id",
                    (scope, json.dumps(ids)),
                )
            ]
            self._delete(db, found)
        return found

    def _clear(self, scope: str) -> int:
        with write_transaction(self.db) as db:
            found = [
                int(r[0]) for r in db.execute("SELECT id FROM memories WHERE scope = ?", (scope,))
            ]
            self._delete(db, found)
        return len(found)

    def _delete(self, db: sqlite3.Connection, ids: list[int]) -> None:
        pairs = [(memory_id,) for memory_id in ids]
        db.executemany("DELETE FROM memories WHERE id = ?", pairs)
        db.executemany("DELETE FROM memories_fts WHERE rowid = ?", pairs)
        if self._vectors.exists(db):
            self._vectors.delete(db, ids)

    def _get(self, scope: str, memory_id: int) -> Memory | None:
        row = self.db.execute(
            f"SELECT {_COLUMNS} FROM memories WHERE id = ? AND scope = ?", (memory_id, scope)
        ).fetchone()
        return _memory(row) if row is not None else None

    def _recent(self, scope: str, limit: int, offset: int, kind: str | None) -> list[Memory]:
        filters, params = _filters(kind, [])
        rows = self.db.execute(
            f"SELECT {_COLUMNS} FROM memories AS m WHERE scope = ?{filters}"
            " ORDER BY updated_at DESC, id DESC LIMIT ? OFFSET ?",
            (scope, *params, limit, offset),
        ).fetchall()
        return [_memory(row) for row in rows]

    def _count(self, scope: str | None) -> int:
        if scope is None:
            row = self.db.execute("SELECT count(*) FROM memories").fetchone()
        else:
            row = self.db.execute(
                "SELECT count(*) FROM memories WHERE scope = ?", (scope,)
            ).fetchone()
        return int(row[0])

    def _scopes(self) -> list[str]:
        rows = self.db.execute("SELECT DISTINCT scope FROM memories ORDER BY scope").fetchall()
        return [str(row[0]) for row in rows]

    def _by_ids(self, db: sqlite3.Connection, ids: Sequence[int]) -> dict[int, Memory]:
        if not ids:
            return {}
        rows = db.execute(
            f"SELECT {_COLUMNS} FROM memories WHERE id IN (SELECT value FROM json_each(?))",
            (json.dumps(list(ids)),),
        ).fetchall()
        return {int(row[0]): _memory(row) for row in rows}

    # --- vectors ----------------------------------------------------------------------------

    def _match_vectors(self, db: sqlite3.Connection, dimensions: int) -> None:
        """Make the vector table fit the current embedder; vectors of another embedder (or
        size) are dropped and every memory is queued to be embedded again."""
        assert self.embedder is not None
        if self._vectors.match(db, embedder_name(self.embedder), dimensions):
            db.execute("UPDATE memories SET embedded = 0 WHERE embedded = 1")

    async def _ready_vectors(self, dimensions: int) -> None:
        """Make the vector table fit the embedder before its vectors are used."""
        assert self.embedder is not None
        if self._vectors.matched != (embedder_name(self.embedder), dimensions):
            await self._in_thread(self._match_vectors_now, dimensions)

    def _match_vectors_now(self, dimensions: int) -> None:
        with write_transaction(self.db) as db:
            self._match_vectors(db, dimensions)

    def _store_vector(
        self, db: sqlite3.Connection, memory_id: int, vector: list[float], scope: str
    ) -> None:
        self._vectors.insert(db, [(memory_id, vector, scope)])
        db.execute("UPDATE memories SET embedded = 1 WHERE id = ?", (memory_id,))

    def _drop_vector(self, db: sqlite3.Connection, memory_id: int) -> None:
        if self._vectors.exists(db):
            self._vectors.delete(db, [memory_id])
        db.execute("UPDATE memories SET embedded = 0 WHERE id = ?", (memory_id,))

    async def _backfill(self, batch: int, *, raise_errors: bool = False) -> int:
        """Embed up to ``batch`` memories that have no vector; returns how many got one."""
        assert self.embedder is not None
        pending: list[tuple[int, str]] = await self._in_thread(self._unembedded, batch)
        if not pending:
            return 0
        try:
            vectors = await embed(self.embedder, [text for _, text in pending])
        except EmbeddingError as exc:
            if raise_errors:
                raise
            log.warning("could not embed stored memories yet: %s", exc)
            return 0
        return await self._in_thread(self._store_backfill, pending, vectors)

    def _unembedded(self, batch: int) -> list[tuple[int, str]]:
        rows = self.db.execute(
            "SELECT id, text FROM memories WHERE embedded = 0 ORDER BY id LIMIT ?", (batch,)
        ).fetchall()
        return [(int(memory_id), str(text)) for memory_id, text in rows]

    def _store_backfill(self, pending: list[tuple[int, str]], vectors: list[list[float]]) -> int:
        done = 0
        with write_transaction(self.db) as db:
            self._match_vectors(db, len(vectors[0]))
            for (memory_id, text), vector in zip(pending, vectors, strict=True):
                row = db.execute(
                    "SELECT scope FROM memories WHERE id = ? AND text = ? AND embedded = 0",
                    (memory_id, text),
                ).fetchone()
                if row is not None:  # not changed or forgotten meanwhile
                    self._store_vector(db, memory_id, vector, str(row[0]))
                    done += 1
        return done

    # --- input checks -----------------------------------------------------------------------

    def _checked_text(self, text: str) -> str:
        if not isinstance(text, str) or not text.strip():
            raise ValueError("A memory needs some text: give the fact to remember.")
        text = text.strip()
        if len(text) > self.max_text_chars:
            raise ValueError(
                f"The memory is {len(text):,} characters; memories are short facts of at most "
                f"{self.max_text_chars:,}. Split it into separate facts, or save a document "
                "with Write and remember where it is."
            )
        return text


def checked_scope(scope: str) -> str:
    """A valid scope (non-empty, at most :data:`MAX_SCOPE_CHARS`), or ``ValueError``."""
    if not isinstance(scope, str) or not scope.strip():
        raise ValueError('A memory scope must be a non-empty string such as "user:ada".')
    scope = scope.strip()
    if len(scope) > MAX_SCOPE_CHARS:
        raise ValueError(f"A memory scope is at most {MAX_SCOPE_CHARS} characters.")
    return scope


def checked_kind(kind: str) -> str:
    kind = kind.strip().lower() if isinstance(kind, str) else ""
    if not kind or len(kind) > MAX_KIND_CHARS:
        raise ValueError(
            f"A memory kind is one short word (at most {MAX_KIND_CHARS} characters), such as "
            '"preference", "fact" or "instruction".'
        )
    return kind


def checked_tags(tags: Iterable[str]) -> list[str]:
    if isinstance(tags, str):
        tags = [tags]
    cleaned: list[str] = []
    for tag in tags:
        if not isinstance(tag, str):
            raise ValueError("Tags are strings, such as ['ada', 'travel'].")
        tag = " ".join(tag.split()).lower()
        if not tag:
            continue
        if len(tag) > MAX_TAG_CHARS:
            raise ValueError(f"The tag {tag[:20]!r}... is too long; a tag is a word or two.")
        cleaned.append(tag)
    cleaned = list(dict.fromkeys(cleaned))
    if len(cleaned) > MAX_TAGS:
        raise ValueError(f"A memory has at most {MAX_TAGS} tags; keep the most useful ones.")
    return cleaned


def checked_limit(limit: int) -> int:
    if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be a whole number from 1 to {MAX_LIMIT}.")
    return limit


def _filters(kind: str | None, tags: list[str]) -> tuple[str, list[Any]]:
    sql = ""
    params: list[Any] = []
    if kind is not None:
        sql += " AND m.kind = ?"
        params.append(kind)
    if tags:
        sql += (
            " AND EXISTS (SELECT 1 FROM json_each(m.tags) AS t"
            " WHERE t.value IN (SELECT value FROM json_each(?)))"
        )
        params.append(json.dumps(tags))
    return sql, params


def _memory(row: Sequence[Any]) -> Memory:
    memory_id, scope, text, kind, tags, created_at, updated_at, session_id = row
    return Memory(
        int(memory_id),
        str(scope),
        str(text),
        str(kind),
        tuple(json.loads(tags)),
        float(created_at),
        float(updated_at),
        session_id,
    )


#: Words that do not change what a fact says, ignored when comparing memories for dedupe.
_FILLER = frozenset(
    ["a", "an", "the", "is", "are", "was", "were", "be", "been", "being", "am", "s"]
)


def _normalised(text: str) -> str:
    """The text's words, lower-cased and without accents: case, spacing and punctuation
    do not count."""
    folded = unicodedata.normalize("NFKD", text)
    folded = "".join(c for c in folded if not unicodedata.combining(c))
    return " ".join(words(folded))


def _fingerprint(text: str) -> str:
    """Equal for near-identical texts (see the module docs)."""
    normalised = _normalised(text).split()
    content = [
        word
        for word in normalised
        if word not in _FILLER and (len(word) > 1 or word.isdigit())  # the s of "Ada's"
    ]
    content = content or normalised
    return hashlib.sha256(" ".join(content).encode("utf-8")).hexdigest()
