"""SQLite connections for the memory store and the search index, and sqlite-vec tables.

:func:`connect` opens a database the way both stores want it (WAL journal, a busy timeout,
usable from worker threads) and, when asked, with the `sqlite-vec <https://github.com/asg017/
sqlite-vec>`_ extension loaded, for :class:`VectorTable`.

Loading an extension needs a Python whose ``sqlite3`` module was built with
``--enable-loadable-sqlite-extensions``; many are not (pyenv's and some distributions'
builds, macOS's system Python). Then the extension is registered with SQLite's
``sqlite3_auto_extension`` (through ctypes, once per process), which SQLite calls for every
connection opened afterwards; the extension is the same file either way. When neither
works, :class:`VectorSearchUnavailable` says what to do.
"""

from __future__ import annotations

import ctypes
import os
import re
import sqlite3
import struct
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import ModuleType

BUSY_TIMEOUT_S = 30.0
#: sqlite-vec answers at most this many neighbours per query.
MAX_K = 4096

_INSTALL_HINT = "install the `loopwright[memory]` extra (pip install 'loopwright[memory]')"
_auto_lock = threading.Lock()
_auto_registered = False


class VectorSearchUnavailable(RuntimeError):
    """sqlite-vec cannot be loaded here, so vector search cannot be turned on."""


def connect(path: str | os.PathLike[str], *, vectors: bool = False) -> sqlite3.Connection:
    """A connection in autocommit mode (transactions are explicit), WAL journal,
    ``synchronous=NORMAL``, shareable between threads (callers hold a lock), with
    sqlite-vec loaded when ``vectors`` is true."""
    target = os.fspath(path)
    if target != ":memory:":
        Path(target).parent.mkdir(parents=True, exist_ok=True)
    if vectors and not _can_load_extensions():
        _register_auto_extension()
    db = sqlite3.connect(
        target, timeout=BUSY_TIMEOUT_S, isolation_level=None, check_same_thread=False
    )
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        if vectors:
            load_sqlite_vec(db)
    except BaseException:
        db.close()
        raise
    return db


def load_sqlite_vec(db: sqlite3.Connection) -> None:
    """Make sqlite-vec's functions and ``vec0`` tables available on ``db``."""
    if _can_load_extensions():
        sqlite_vec = _import_sqlite_vec()
        db.enable_load_extension(True)
        try:
            sqlite_vec.load(db)
        except sqlite3.Error as exc:
            raise VectorSearchUnavailable(
                f"sqlite-vec could not be loaded into SQLite {sqlite3.sqlite_version} ({exc}); "
                "reinstall sqlite-vec, or turn vector search off."
            ) from exc
        finally:
            db.enable_load_extension(False)
    elif not _has_vec(db):  # registered before this connection was opened? then it has it
        _register_auto_extension()
        raise VectorSearchUnavailable(
            "this connection was opened before sqlite-vec was registered; open it with "
            "loopwright.memory.vectors.connect(path, vectors=True)."
        )
    if not _has_vec(db):
        raise VectorSearchUnavailable("sqlite-vec was loaded but its functions are missing.")


def sqlite_vec_available() -> bool:
    """Whether vector search can be used in this process."""
    try:
        db = connect(":memory:", vectors=True)
    except VectorSearchUnavailable:
        return False
    db.close()
    return True


def _can_load_extensions() -> bool:
    return hasattr(sqlite3.Connection, "enable_load_extension")


def _has_vec(db: sqlite3.Connection) -> bool:
    try:
        db.execute("SELECT vec_version()").fetchone()
    except sqlite3.OperationalError:
        return False
    return True


def _import_sqlite_vec() -> ModuleType:
    try:
        import sqlite_vec  # type: ignore[import-untyped]
    except ImportError:
        raise VectorSearchUnavailable(
            f"vector search needs the sqlite-vec package; {_INSTALL_HINT}, or turn it off "
            "(no embedding function)."
        ) from None
    module: ModuleType = sqlite_vec
    return module


def _register_auto_extension() -> None:
    """Register sqlite-vec's entry point for every connection opened from now on."""
    global _auto_registered
    with _auto_lock:
        if _auto_registered:
            return
        sqlite_vec = _import_sqlite_vec()
        import _sqlite3

        try:
            # the module's own handle finds SQLite's symbols whether it links libsqlite3
            # dynamically (Debian, pyenv) or carries SQLite inside
            library = ctypes.CDLL(_sqlite3.__file__)
            auto_extension = library.sqlite3_auto_extension
            extension = ctypes.CDLL(_library_file(sqlite_vec.loadable_path()))
            entry_point = extension.sqlite3_vec_init
        except (OSError, AttributeError) as exc:
            raise VectorSearchUnavailable(
                "this Python's sqlite3 module cannot load extensions, so sqlite-vec cannot "
                f"be used ({exc}); use a Python built with --enable-loadable-sqlite-extensions "
                "(for example one installed by `uv python install`), or turn vector search off."
            ) from exc
        auto_extension.argtypes = [ctypes.c_void_p]
        auto_extension.restype = ctypes.c_int
        if auto_extension(ctypes.cast(entry_point, ctypes.c_void_p)) != 0:
            raise VectorSearchUnavailable("SQLite refused to register sqlite-vec.")
        # keep the library loaded for the life of the process: SQLite calls into it
        _keep_alive.append(extension)
        _auto_registered = True


_keep_alive: list[ctypes.CDLL] = []


def _library_file(stem: str) -> str:
    """sqlite-vec's ``loadable_path()`` has no suffix (SQLite adds it); ctypes needs it."""
    for suffix in ("", ".so", ".dylib", ".dll"):
        if os.path.isfile(stem + suffix):
            return stem + suffix
    return stem


def _has_table(db: sqlite3.Connection, name: str) -> bool:
    row = db.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
    ).fetchone()
    return row is not None


def serialize(vector: Sequence[float]) -> bytes:
    """A vector as sqlite-vec's compact float32 blob."""
    return struct.pack(f"{len(vector)}f", *vector)


class VectorTable:
    """A sqlite-vec ``vec0`` table of float32 vectors keyed by an integer rowid, compared by
    cosine distance, and optionally split by a text partition key (a memory scope), so a
    nearest-neighbour query only ever sees its own partition.

    :meth:`ensure` creates the table for an embedding function and remembers which one (in
    a ``vector_tables`` table), so vectors of different models never mix; :meth:`match` does
    the same once per embedder for the store that owns this object. Callers hold their
    connection's lock and run these in a transaction where they need one.
    """

    def __init__(self, name: str, *, partitioned: bool = False) -> None:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", name):
            raise ValueError(f"invalid table name {name!r}")
        self.name = name
        self.partitioned = partitioned
        #: ``(embedder name, dimensions)`` the table was last made to fit through match()
        self.matched: tuple[str, int] | None = None

    def match(self, db: sqlite3.Connection, embedder: str, dimensions: int) -> bool:
        """:meth:`ensure`, skipped when this object already made the table fit the same
        embedder and size. Returns whether the table was (re)created, in which case every
        row must be embedded again."""
        key = (embedder, dimensions)
        if self.matched == key:
            return False
        recreated = self.ensure(db, *key)
        self.matched = key
        return recreated

    def usable(self, db: sqlite3.Connection, dimensions: int) -> bool:
        """Whether vectors of ``dimensions`` can be searched: the table fits an embedder of
        that size (through :meth:`match`) and exists."""
        return self.matched is not None and self.matched[1] == dimensions and self.exists(db)

    def exists(self, db: sqlite3.Connection) -> bool:
        return _has_table(db, self.name)

    def dimensions(self, db: sqlite3.Connection) -> int | None:
        """The vector size of the existing table, or ``None`` when there is none."""
        row = db.execute(
            "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?", (self.name,)
        ).fetchone()
        if row is None:
            return None
        match = re.search(r"float\[(\d+)\]", row[0])
        return int(match.group(1)) if match else None

    def create(self, db: sqlite3.Connection, dimensions: int) -> None:
        if dimensions < 1:
            raise ValueError("vectors need at least one dimension")
        partition = "partition_key text partition key, " if self.partitioned else ""
        db.execute(
            f"CREATE VIRTUAL TABLE {self.name} USING vec0("
            f"{partition}embedding float[{dimensions}] distance_metric=cosine)"
        )

    def drop(self, db: sqlite3.Connection) -> None:
        db.execute(f"DROP TABLE IF EXISTS {self.name}")
        if _has_table(db, "vector_tables"):
            db.execute("DELETE FROM vector_tables WHERE name = ?", (self.name,))

    def made_by(self, db: sqlite3.Connection) -> tuple[str, int] | None:
        """``(embedder name, dimensions)`` of the vectors in the table, if it exists."""
        if not self.exists(db) or not _has_table(db, "vector_tables"):
            return None
        row = db.execute(
            "SELECT embedder, dimensions FROM vector_tables WHERE name = ?", (self.name,)
        ).fetchone()
        return (str(row[0]), int(row[1])) if row is not None else None

    def ensure(self, db: sqlite3.Connection, embedder: str, dimensions: int) -> bool:
        """Make the table hold vectors of ``embedder`` with ``dimensions``: kept when it does
        already, else dropped and created empty. Returns whether it was (re)created, in
        which case every row must be embedded again. Run it inside a transaction."""
        if self.made_by(db) == (embedder, dimensions):
            return False
        self.drop(db)
        self.create(db, dimensions)
        db.execute(
            "CREATE TABLE IF NOT EXISTS vector_tables"
            " (name TEXT PRIMARY KEY, embedder TEXT NOT NULL, dimensions INTEGER NOT NULL)"
        )
        db.execute(
            "INSERT OR REPLACE INTO vector_tables (name, embedder, dimensions) VALUES (?, ?, ?)",
            (self.name, embedder, dimensions),
        )
        return True

    def insert(
        self, db: sqlite3.Connection, rows: Iterable[tuple[int, Sequence[float], str | None]]
    ) -> None:
        """Add ``(rowid, vector, partition)`` rows, replacing any with the same rowid."""
        batch = [(rowid, serialize(vector), partition) for rowid, vector, partition in rows]
        if not batch:
            return
        self.delete(db, [rowid for rowid, _, _ in batch])  # vec0 has no INSERT OR REPLACE
        if self.partitioned:
            db.executemany(
                f"INSERT INTO {self.name}(rowid, embedding, partition_key) VALUES (?, ?, ?)",
                batch,
            )
        else:
            db.executemany(
                f"INSERT INTO {self.name}(rowid, embedding) VALUES (?, ?)",
                [(rowid, blob) for rowid, blob, _ in batch],
            )

    def delete(self, db: sqlite3.Connection, rowids: Iterable[int]) -> None:
        db.executemany(f"DELETE FROM {self.name} WHERE rowid = ?", [(r,) for r in rowids])

    def count(self, db: sqlite3.Connection) -> int:
        row = db.execute(f"SELECT count(*) FROM {self.name}").fetchone()
        return int(row[0])

    def contains(self, db: sqlite3.Connection, rowid: int) -> bool:
        row = db.execute(f"SELECT 1 FROM {self.name} WHERE rowid = ?", (rowid,)).fetchone()
        return row is not None

    def nearest(
        self,
        db: sqlite3.Connection,
        vector: Sequence[float],
        k: int,
        partition: str | None = None,
    ) -> list[tuple[int, float]]:
        """The ``k`` nearest rows as ``(rowid, cosine distance)``, closest first."""
        k = max(1, min(k, MAX_K))
        if self.partitioned:
            if partition is None:
                raise ValueError(f"{self.name} is partitioned: give the partition to search")
            rows = db.execute(
                f"SELECT rowid, distance FROM {self.name} WHERE embedding MATCH ? AND k = ?"
                " AND partition_key = ? ORDER BY distance",
                (serialize(vector), k, partition),
            ).fetchall()
        else:
            rows = db.execute(
                f"SELECT rowid, distance FROM {self.name} WHERE embedding MATCH ? AND k = ?"
                " ORDER BY distance",
                (serialize(vector), k),
            ).fetchall()
        return [(int(rowid), float(distance)) for rowid, distance in rows]
