"""A search index over the text files of a workspace: ranked passages for a question.

:class:`DocumentIndex` keeps an SQLite file (by default ``.loopwright/search.db`` inside
the workspace) with every text file cut into passages of some twenty to fifty lines, each
with its path and line range. A search first brings the index up to date, then ranks
passages with FTS5's bm25 (porter stemming, prefix matches, the question quoted word by word:
see :mod:`loopwright.memory.fts`); with an embedding function, passages also get vectors and
the two rankings are fused (reciprocal-rank fusion).

Why SQLite FTS5 rather than a BM25 of our own: it is in every Python, incremental (a changed
file's passages are replaced, nothing else is touched), persistent between sessions and
processes, and its bm25 is the standard Okapi formula computed in C. The index is a file in
the workspace, so a resumed session finds it ready.

What is indexed: what ``Grep`` would search. Files and directories whose names start with a
dot are skipped (so ``.git`` and loopwright's own ``.loopwright``), as are those matched by the
workspace's ``.gitignore`` and ``.ignore`` files, dependency and cache directories
(:data:`SKIPPED_DIRS`), files with known binary extensions or a NUL byte near the start, files
over ``max_file_bytes``, and everything past ``max_files`` files or ``max_total_bytes``.
Symbolic links are never followed, and every file is checked to resolve inside the workspace
(:class:`~loopwright.sandbox.paths.PathValidator`) and opened without following a link, so
the index never reads outside the workspace.

Updates are incremental: a file whose size and modification time are unchanged is not read
again. A file modified within a couple of seconds of being indexed is checked by content on
the next search too, since a file system's clock can be coarser than two quick writes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import sqlite3
import stat
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from loopwright.memory.embeddings import EmbeddingError, EmbeddingFunction, embed, embedder_name
from loopwright.memory.fts import TOKENIZER, fts_query, reciprocal_rank_fusion
from loopwright.memory.vectors import VectorTable, connect
from loopwright.sandbox.paths import PathValidator
from loopwright.sqlite_tx import write_transaction

log = logging.getLogger("loopwright.search")

INDEX_PATH = os.path.join(".loopwright", "search.db")
MAX_FILE_BYTES = 1024 * 1024
MAX_FILES = 20_000
MAX_TOTAL_BYTES = 256 * 1024 * 1024
PASSAGE_CHARS = 1200
EMBED_BATCH = 64
#: A file changed this close to its indexing is checked by content next time (see above).
RACY_NS = 2_000_000_000
SNIFF_BYTES = 8192

SKIPPED_DIRS = frozenset(
    {"node_modules", "__pycache__", "site-packages", "venv", "bower_components"}
)
BINARY_EXTENSIONS = frozenset(
    """
    .png .jpg .jpeg .gif .webp .bmp .ico .tif .tiff .psd .heic .avif .svgz
    .mp3 .wav .flac .ogg .m4a .aac .mp4 .mkv .mov .avi .webm .wmv
    .zip .gz .tgz .bz2 .xz .zst .7z .rar .tar .jar .war .whl .egg .deb .rpm .dmg .iso
    .exe .dll .so .dylib .a .o .obj .lib .bin .class .pyc .pyo .pyd .wasm
    .pdf .doc .docx .xls .xlsx .ppt .pptx .odt .ods .odp .epub
    .db .sqlite .sqlite3 .duckdb .parquet .feather .arrow .npy .npz .pkl .pickle .h5 .hdf5
    .gguf .safetensors .pt .pth .onnx .ckpt
    .ttf .otf .woff .woff2 .eot
    """.split()  # noqa: SIM905  # a list of extensions reads better as text
)
#: Extensions whose ``#`` lines are headings (kept as the context of the passages below).
_HEADED = frozenset({".md", ".markdown", ".mdx", ".mdown", ".mkd", ".txt", ".rst", ".qmd"})

_SCHEMA = f"""
CREATE TABLE IF NOT EXISTS files (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL UNIQUE,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    checked_ns INTEGER NOT NULL,
    digest TEXT NOT NULL,
    status TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS passages (
    id INTEGER PRIMARY KEY,
    file_id INTEGER NOT NULL,
    start_line INTEGER NOT NULL,
    end_line INTEGER NOT NULL,
    text TEXT NOT NULL,
    embedded INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS passages_by_file ON passages (file_id);
CREATE INDEX IF NOT EXISTS passages_unembedded ON passages (id) WHERE embedded = 0;
CREATE VIRTUAL TABLE IF NOT EXISTS passages_fts USING fts5(title, body, parts,
    tokenize='{TOKENIZER}');
"""
#: bm25 weights: title (path words and section heading), body, parts (split identifiers)
_BM25 = "bm25(passages_fts, 0.5, 1.0, 0.5)"

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Passage:
    """A ranked passage: lines ``start_line``-``end_line`` (1-based, inclusive) of ``path``
    (relative to the workspace, ``/``-separated)."""

    path: str
    start_line: int
    end_line: int
    text: str
    score: float


@dataclass(slots=True)
class IndexStats:
    """What a refresh did and what the index holds."""

    files: int = 0
    passages: int = 0
    added: int = 0
    updated: int = 0
    removed: int = 0
    #: files left out, by reason: binary, too_large, over_budget, too_many, unreadable
    skipped: dict[str, int] = field(default_factory=dict)
    #: passages that still lack a vector (embedding failed; retried on the next search)
    unembedded: int = 0
    embedding_error: str | None = None


@dataclass(frozen=True, slots=True)
class _Indexed:
    """A file as the index last saw it."""

    id: int
    size: int
    mtime_ns: int
    checked_ns: int
    digest: str
    status: str

    def unchanged(self, size: int, mtime_ns: int) -> bool:
        """Whether the file can be taken as unchanged without reading it: same size and
        time, not modified within :data:`RACY_NS` of being read, and not in a state that
        can change by itself (too large for a budget that has room now, unreadable)."""
        return (
            self.status in ("indexed", "binary")
            and self.size == size
            and self.mtime_ns == mtime_ns
            and mtime_ns < self.checked_ns - RACY_NS
        )


@dataclass(frozen=True, slots=True)
class Chunk:
    """A passage cut from a file, before indexing."""

    start_line: int
    end_line: int
    text: str
    heading: str = ""


class DocumentIndex:
    """The search index of one workspace (see the module docs).

    ``index_path`` defaults to ``<workspace>/.loopwright/search.db``. ``embedder`` turns on
    vector search with hybrid ranking. One index is safe to share between threads and
    tasks; its async methods do their file and SQLite work in a worker thread.
    """

    def __init__(
        self,
        workspace_dir: str | os.PathLike[str],
        *,
        index_path: str | os.PathLike[str] | None = None,
        embedder: EmbeddingFunction | None = None,
        max_file_bytes: int = MAX_FILE_BYTES,
        max_files: int = MAX_FILES,
        max_total_bytes: int = MAX_TOTAL_BYTES,
        passage_chars: int = PASSAGE_CHARS,
    ) -> None:
        self.validator = PathValidator(workspace_dir)
        self.workspace_dir = self.validator.workspace_dir
        self.index_path = Path(index_path or os.path.join(self.workspace_dir, INDEX_PATH))
        self.embedder = embedder
        self.max_file_bytes = max_file_bytes
        self.max_files = max_files
        self.max_total_bytes = max_total_bytes
        self.passage_chars = passage_chars
        self.stats = IndexStats()
        self._vectors = VectorTable("passage_vectors")
        self._lock = threading.RLock()
        self._db: sqlite3.Connection | None = None

    # --- public API ---------------------------------------------------------------------

    async def refresh(self) -> IndexStats:
        """Bring the index up to date with the workspace's files (and embed new passages)."""
        stats = await asyncio.to_thread(self._locked, self._refresh)
        if self.embedder is not None:
            await self._embed_pending(stats)
        self.stats = stats
        return stats

    async def search(
        self,
        query: str,
        *,
        limit: int = 5,
        path_filter: Callable[[str], bool] | None = None,
        refresh: bool = True,
    ) -> list[Passage]:
        """The passages most relevant to ``query``, best first. ``path_filter`` keeps only
        files whose workspace-relative path it accepts."""
        vector: list[float] | None = None
        problem: str | None = None
        if self.embedder is not None and query.strip():
            try:
                [vector] = await embed(self.embedder, [query])
            except EmbeddingError as exc:
                log.warning("search falls back to full-text ranking: %s", exc)
                problem = str(exc)
            else:  # before the refresh, so a new embedder's vectors are made in it
                await asyncio.to_thread(self._locked, self._match_vectors_now, len(vector))
        if refresh:
            await self.refresh()
        if problem is not None:
            self.stats.embedding_error = problem
        return await asyncio.to_thread(
            self._locked, self._search, query, max(1, limit), path_filter, vector
        )

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
                self._db = None

    async def aclose(self) -> None:
        await asyncio.to_thread(self.close)

    # --- the database -------------------------------------------------------------------

    def _locked(self, function: Callable[..., T], *args: Any) -> T:
        with self._lock:
            return function(*args)

    @property
    def db(self) -> sqlite3.Connection:
        if self._db is None:
            try:
                db = self._connect(self.embedder is not None)
            except sqlite3.DatabaseError:
                # a damaged index is only a cache of the workspace: start it again
                for suffix in ("", "-wal", "-shm"):
                    Path(f"{self.index_path}{suffix}").unlink(missing_ok=True)
                db = self._connect(self.embedder is not None)
            self._db = db
        return self._db

    def _connect(self, vectors: bool) -> sqlite3.Connection:
        db = connect(self.index_path, vectors=vectors)
        try:
            db.executescript(_SCHEMA)
            if not vectors and self._vectors.exists(db):  # so stale vectors can be deleted
                db.close()
                return self._connect(True)
        except BaseException:
            db.close()
            raise
        return db

    # --- indexing -----------------------------------------------------------------------

    def _refresh(self) -> IndexStats:
        stats = IndexStats()
        found = self._scan(stats)
        db = self.db
        known = {
            str(row[0]): _Indexed(*row[1:])
            for row in db.execute(
                "SELECT path, id, size, mtime_ns, checked_ns, digest, status FROM files"
            )
        }
        with write_transaction(self.db):
            for path in known.keys() - found.keys():
                self._remove_file(db, known[path].id)
                stats.removed += 1
            budget = self.max_total_bytes
            for path, (size, mtime_ns) in found.items():
                old = known.get(path)
                if old is not None and old.unchanged(size, mtime_ns):
                    status = old.status
                else:
                    status = self._update(db, path, size, mtime_ns, budget, old, stats)
                if status == "indexed":
                    budget -= size
                else:
                    _count(stats.skipped, status)
        stats.files = int(
            db.execute("SELECT count(*) FROM files WHERE status = 'indexed'").fetchone()[0]
        )
        stats.passages = int(db.execute("SELECT count(*) FROM passages").fetchone()[0])
        return stats

    def _update(
        self,
        db: sqlite3.Connection,
        path: str,
        size: int,
        mtime_ns: int,
        budget: int,
        old: _Indexed | None,
        stats: IndexStats,
    ) -> str:
        """Read a new or possibly changed file and (re)index it if its content changed."""
        status, chunks, digest = self._read(path, size, budget)
        now = time.time_ns()
        if old is not None and digest == old.digest and status == old.status:
            db.execute(
                "UPDATE files SET size = ?, mtime_ns = ?, checked_ns = ? WHERE id = ?",
                (size, mtime_ns, now, old.id),
            )
            return status
        if old is not None:
            self._remove_file(db, old.id)
            stats.updated += 1
        else:
            stats.added += 1
        cursor = db.execute(
            "INSERT INTO files (path, size, mtime_ns, checked_ns, digest, status)"
            " VALUES (?, ?, ?, ?, ?, ?)",
            (path, size, mtime_ns, now, digest, status),
        )
        self._add_passages(db, int(cursor.lastrowid or 0), path, chunks)
        return status

    def _scan(self, stats: IndexStats) -> dict[str, tuple[int, int]]:
        """The indexable files: workspace-relative path -> (size, mtime_ns), in path order."""
        found: dict[str, tuple[int, int]] = {}
        for path, info in _walk(self.workspace_dir):
            if len(found) >= self.max_files:
                _count(stats.skipped, "too_many")
                continue
            found[path] = (info.st_size, info.st_mtime_ns)
        return found

    def _read(self, path: str, size: int, budget: int) -> tuple[str, list[Chunk], str]:
        """``(status, chunks, digest)`` of one file; status ``indexed`` or why it is not."""
        if os.path.splitext(path)[1].lower() in BINARY_EXTENSIONS:
            return "binary", [], ""
        if size > self.max_file_bytes:
            return "too_large", [], ""
        if size > budget:
            return "over_budget", [], ""
        try:
            data = self._read_bytes(path)
        except OSError:
            return "unreadable", [], ""
        digest = hashlib.blake2b(data, digest_size=16).hexdigest()
        text = _decode(data)
        if text is None:
            return "binary", [], digest
        heading_style = os.path.splitext(path)[1].lower() in _HEADED
        return "indexed", split_passages(text, self.passage_chars, headings=heading_style), digest

    def _read_bytes(self, path: str) -> bytes:
        """The file's bytes, read only if it is a regular file inside the workspace."""
        absolute = self.validator.validate(os.path.join(self.workspace_dir, path), "Search index")
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        descriptor = os.open(absolute, flags)
        with os.fdopen(descriptor, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise OSError(f"{path} is not a regular file")
            return handle.read(self.max_file_bytes + 1)[: self.max_file_bytes]

    def _add_passages(
        self, db: sqlite3.Connection, file_id: int, path: str, chunks: list[Chunk]
    ) -> None:
        title_path = " ".join(re.split(r"[/._\-]+", path))
        for chunk in chunks:
            cursor = db.execute(
                "INSERT INTO passages (file_id, start_line, end_line, text) VALUES (?, ?, ?, ?)",
                (file_id, chunk.start_line, chunk.end_line, chunk.text),
            )
            db.execute(
                "INSERT INTO passages_fts (rowid, title, body, parts) VALUES (?, ?, ?, ?)",
                (
                    cursor.lastrowid,
                    f"{title_path} {chunk.heading}",
                    chunk.text,
                    _identifier_parts(chunk.text),
                ),
            )

    def _remove_file(self, db: sqlite3.Connection, file_id: int) -> None:
        ids = [
            int(r[0]) for r in db.execute("SELECT id FROM passages WHERE file_id = ?", (file_id,))
        ]
        db.executemany("DELETE FROM passages_fts WHERE rowid = ?", [(i,) for i in ids])
        if ids and self._vectors.exists(db):
            self._vectors.delete(db, ids)
        db.execute("DELETE FROM passages WHERE file_id = ?", (file_id,))
        db.execute("DELETE FROM files WHERE id = ?", (file_id,))

    # --- vectors ------------------------------------------------------------------------

    async def _embed_pending(self, stats: IndexStats) -> None:
        assert self.embedder is not None
        while True:
            pending = await asyncio.to_thread(self._locked, self._unembedded, EMBED_BATCH)
            if not pending:
                break
            try:
                vectors = await embed(self.embedder, [text for _, text in pending])
            except EmbeddingError as exc:
                log.warning("passages stay without vectors for now: %s", exc)
                stats.embedding_error = str(exc)
                break
            await asyncio.to_thread(self._locked, self._store_vectors, pending, vectors)
        stats.unembedded = await asyncio.to_thread(self._locked, self._count_unembedded)

    def _unembedded(self, batch: int) -> list[tuple[int, str]]:
        rows = self.db.execute(
            "SELECT p.id, f.path, p.text FROM passages AS p JOIN files AS f ON f.id = p.file_id"
            " WHERE p.embedded = 0 ORDER BY p.id LIMIT ?",
            (batch,),
        ).fetchall()
        # the path tells what the passage is about as much as its first lines do
        return [(int(pid), f"{path}\n{text}") for pid, path, text in rows]

    def _count_unembedded(self) -> int:
        return int(
            self.db.execute("SELECT count(*) FROM passages WHERE embedded = 0").fetchone()[0]
        )

    def _store_vectors(self, pending: list[tuple[int, str]], vectors: list[list[float]]) -> None:
        with write_transaction(self.db) as db:
            self._match_vectors(db, len(vectors[0]))
            rows = []
            for (passage_id, _), vector in zip(pending, vectors, strict=True):
                updated = db.execute(
                    "UPDATE passages SET embedded = 1 WHERE id = ? AND embedded = 0", (passage_id,)
                ).rowcount
                if updated:  # not replaced meanwhile by a newer version of its file
                    rows.append((passage_id, vector, None))
            self._vectors.insert(db, rows)

    def _match_vectors_now(self, dimensions: int) -> None:
        with write_transaction(self.db) as db:
            self._match_vectors(db, dimensions)

    def _match_vectors(self, db: sqlite3.Connection, dimensions: int) -> None:
        assert self.embedder is not None
        if self._vectors.match(db, embedder_name(self.embedder), dimensions):
            db.execute("UPDATE passages SET embedded = 0")

    # --- searching ----------------------------------------------------------------------

    def _search(
        self,
        query: str,
        limit: int,
        path_filter: Callable[[str], bool] | None,
        vector: list[float] | None,
    ) -> list[Passage]:
        db = self.db
        pool = max(limit * 5, 50)
        restrict = ""
        params: list[Any] = []
        allowed: set[int] | None = None
        if path_filter is not None:
            allowed = {
                int(file_id)
                for file_id, path in db.execute(
                    "SELECT id, path FROM files WHERE status = 'indexed'"
                )
                if path_filter(str(path))
            }
            if not allowed:
                return []
            restrict = " AND p.file_id IN (SELECT value FROM json_each(?))"
            params.append(json.dumps(sorted(allowed)))
        ranked: list[tuple[int, float]] = []
        match = fts_query(query)
        if match is not None:
            rows = db.execute(
                f"SELECT p.id, {_BM25} AS score FROM passages_fts"
                " JOIN passages AS p ON p.id = passages_fts.rowid"
                f" WHERE passages_fts MATCH ?{restrict} ORDER BY score LIMIT ?",
                (match, *params, pool),
            ).fetchall()
            ranked = [(int(pid), -float(score)) for pid, score in rows]
        if vector is not None and self._vectors.usable(db, len(vector)):
            nearest = [
                pid for pid, _ in self._vectors.nearest(db, vector, pool * (4 if allowed else 1))
            ]
            if allowed is not None:
                owners = dict(
                    db.execute(
                        "SELECT id, file_id FROM passages"
                        " WHERE id IN (SELECT value FROM json_each(?))",
                        (json.dumps(nearest),),
                    ).fetchall()
                )
                nearest = [pid for pid in nearest if owners.get(pid) in allowed][:pool]
            ranked = reciprocal_rank_fusion([[pid for pid, _ in ranked], nearest])
        top = ranked[:limit]
        if not top:
            return []
        rows = db.execute(
            "SELECT p.id, f.path, p.start_line, p.end_line, p.text FROM passages AS p"
            " JOIN files AS f ON f.id = p.file_id WHERE p.id IN (SELECT value FROM json_each(?))",
            (json.dumps([pid for pid, _ in top]),),
        ).fetchall()
        found = {int(row[0]): row for row in rows}
        return [
            Passage(
                str(found[pid][1]),
                int(found[pid][2]),
                int(found[pid][3]),
                str(found[pid][4]),
                score,
            )
            for pid, score in top
            if pid in found
        ]


# --- walking the workspace ------------------------------------------------------------------


_IGNORE_FILES = (".ignore", ".gitignore")  # higher precedence first, as in ripgrep


def _walk(root: str) -> Iterator[tuple[str, os.stat_result]]:
    """Regular files under ``root`` that Search indexes, as (relative path, stat), in
    path order; links are not followed (see the module docs)."""
    from loopwright.tools.grep import IgnoreRules

    pending: list[tuple[str, tuple[tuple[IgnoreRules, ...], ...]]] = [("", ())]
    while pending:
        directory, chain = pending.pop()
        absolute = os.path.join(root, directory) if directory else root
        try:
            with os.scandir(absolute) as scan:
                entries = sorted(scan, key=lambda e: e.name)
        except OSError:
            continue
        names = {entry.name for entry in entries}
        level = tuple(
            IgnoreRules(directory, _ignore_lines(os.path.join(absolute, name)))
            for name in _IGNORE_FILES
            if name in names
        )
        chain = (*chain, level) if level else chain
        subdirectories: list[str] = []
        for entry in entries:
            path = f"{directory}/{entry.name}" if directory else entry.name
            try:
                if entry.is_symlink():
                    continue
                is_dir = entry.is_dir(follow_symlinks=False)
                if not is_dir and not entry.is_file(follow_symlinks=False):
                    continue  # a FIFO, socket or device
            except OSError:
                continue
            decision = _ignored(chain, path, is_dir)
            if decision is True:
                continue
            if decision is None and (
                entry.name.startswith(".") or (is_dir and entry.name in SKIPPED_DIRS)
            ):
                continue
            if entry.name == ".loopwright" or entry.name == ".git":
                continue
            if is_dir:
                subdirectories.append(path)
            else:
                try:
                    yield path, entry.stat(follow_symlinks=False)
                except OSError:
                    continue
        pending.extend((sub, chain) for sub in reversed(subdirectories))


def _ignored(chain: tuple[tuple[Any, ...], ...], path: str, is_dir: bool) -> bool | None:
    """True: an ignore rule excludes ``path``; False: one re-includes it (``!rule``);
    None: no rule speaks of it. The deepest directory's files decide first."""
    from loopwright.tools.grep import IGNORED

    for level in reversed(chain):
        for rules in level:
            decided = rules.match(path, is_dir)
            if decided:
                return bool(decided == IGNORED)
    return None


def _ignore_lines(path: str) -> list[str]:
    try:
        with open(path, "rb") as handle:
            return handle.read(1024 * 1024).decode("utf-8", errors="replace").splitlines()
    except OSError:
        return []


def _count(counts: dict[str, int], key: str) -> None:
    counts[key] = counts.get(key, 0) + 1


# --- reading and cutting files ----------------------------------------------------------------

_CONTROL = re.compile(rb"[\x00-\x08\x0e-\x1f\x7f]")


def _decode(data: bytes) -> str | None:
    """The text of a file, or ``None`` when it looks binary (a NUL near the start, or not
    UTF-8 and full of control bytes); other 8-bit text is read as Latin-1."""
    if b"\x00" in data[:SNIFF_BYTES]:
        return None
    try:
        return data.decode("utf-8").removeprefix("\ufeff")
    except UnicodeDecodeError:
        sample = data[:SNIFF_BYTES]
        if len(_CONTROL.findall(sample)) > len(sample) // 100:
            return None
        return data.decode("latin-1")


_SECTION = re.compile(
    r"(#{1,6}\s|(async\s+)?def\s|class\s|function\s|fn\s|func\s|export\s|pub\s|impl\s"
    r"|struct\s|interface\s|module\s|@)"
)
_MARKDOWN_HEADING = re.compile(r"#{1,6}\s+(.*)")


def split_passages(
    text: str, target_chars: int = PASSAGE_CHARS, *, headings: bool = False
) -> list[Chunk]:
    """Cut ``text`` into passages of about ``target_chars`` (at most twice that), at blank
    lines or where a section starts (a heading, a top-level definition) when possible.

    Lines are counted as ``Read`` and ``Grep`` count them (split on ``\\n``). With
    ``headings`` (Markdown and plain text), each passage carries the last ``#`` heading above
    it, which is indexed with it.
    """
    max_chars = target_chars * 2
    chunks: list[Chunk] = []
    lines = text.split("\n")
    buffer: list[str] = []
    start = 1
    size = 0
    heading = ""
    chunk_heading = ""

    def flush(next_line: int) -> None:
        nonlocal buffer, start, size, chunk_heading
        while buffer and not buffer[-1].strip():
            buffer.pop()
        if buffer:
            chunks.append(Chunk(start, start + len(buffer) - 1, "\n".join(buffer), chunk_heading))
        buffer, start, size, chunk_heading = [], next_line, 0, heading

    for number, raw in enumerate(lines, start=1):
        line = raw.removesuffix("\r")
        blank = not line.strip()
        if not buffer:
            if blank:
                start = number + 1
                continue
            start = number
        is_heading = headings and _MARKDOWN_HEADING.match(line) is not None
        if len(line) > max_chars:  # a minified or data line: cut it in pieces
            flush(number)
            for offset in range(0, len(line), max_chars):
                chunks.append(Chunk(number, number, line[offset : offset + max_chars], heading))
            start = number + 1
            continue
        if buffer and (
            size + len(line) > max_chars
            or (size >= target_chars and (blank or _SECTION.match(line)))
            or (size >= target_chars // 3 and is_heading)
        ):
            flush(number)
            if blank:
                start = number + 1
                continue
            start = number
        if is_heading:
            match = _MARKDOWN_HEADING.match(line)
            heading = match.group(1).strip() if match else heading
            if not buffer:
                chunk_heading = heading
        buffer.append(line)
        size += len(line) + 1
    flush(len(lines) + 1)
    return chunks


_CAMEL = re.compile(r"[A-Za-z][a-z0-9]*[A-Z][A-Za-z0-9]*")
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])")


def _identifier_parts(text: str) -> str:
    """The words inside camelCase identifiers (``loadConfig`` -> ``load Config``), so a search
    for ``config`` finds them; snake_case is split by the tokenizer already."""
    parts = {_CAMEL_BOUNDARY.sub(" ", word) for word in _CAMEL.findall(text)}
    return " ".join(sorted(parts))
