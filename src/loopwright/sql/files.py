"""Result files put in place atomically, with the old file's space freed off the clock.

A result is written to a temporary name beside its target (:func:`temp_beside`) and renamed
over it when complete (:func:`replace`). Renaming over an existing file makes the kernel free
that file's blocks inside the ``rename`` call: on ext4, 2 to 7 ms for a 10 MB CSV, and about
60 µs even for a ten-row CSV (ext4 allocates the blocks of a file renamed over another at
once, so by the time a result is replaced its blocks are on disk), paid by whoever waits for
the query. :func:`replace` keeps a second hard link to the old file first, so the rename
only drops a link, and a background thread (:class:`Reclaimer`) removes the extra link,
which is where the space is freed. Readers see the old file or the new one, never neither,
as with a plain rename. Links not yet removed when the process exits are removed then; a
crash can leave one behind, named ``.<name>.<hex>.old``.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import queue
import secrets
import stat
import threading
from typing import BinaryIO

#: The name of the thread that frees replaced files: one per process, idle when it has none.
RECLAIM_THREAD = "loopwright-reclaim"
_CREATE = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC


def open_beside(path: str, suffix: str = "partial") -> tuple[str, BinaryIO]:
    """A new file next to ``path`` (same directory, so a rename onto ``path`` is atomic),
    created with the process's usual permissions and open for writing: its name and file.

    The directory is created when missing. One ``open`` with ``O_EXCL``: a name that exists
    is never written through (a fresh name is drawn instead).
    """
    directory, base = os.path.split(os.path.abspath(path))
    while True:
        temp = os.path.join(directory, f".{base}.{secrets.token_hex(4)}.{suffix}")
        try:
            descriptor = os.open(temp, _CREATE, 0o666)
        except FileExistsError:
            continue
        except FileNotFoundError:
            os.makedirs(directory, exist_ok=True)
            continue
        return temp, os.fdopen(descriptor, "wb")


def temp_beside(path: str, suffix: str = "partial") -> str:
    """A new, empty file next to ``path`` (see :func:`open_beside`): its name."""
    temp, handle = open_beside(path, suffix)
    handle.close()
    return temp


def replace(temp: str, target: str) -> None:
    """Rename ``temp`` over ``target``; the file it replaces is freed in the background.

    Measured here on ext4, replacing a ten-row CSV took 100 µs with a plain rename and 37 µs
    with the link (handing the link over costs 2 µs). A symlink at ``target`` is replaced,
    not written through, as ``os.replace`` does.
    """
    replace_together([(temp, target)])


#: Held while a set of files is renamed into place: files that belong together (a result's
#: CSV and Parquet) are never seen from two different writers.
_RENAMING = threading.Lock()


def replace_together(moves: list[tuple[str, str]]) -> None:
    """Rename each ``(temp, target)`` as :func:`replace` does, all or none.

    Two writers of the same targets (two queries saving under one name at once) each put
    all their files in place in turn, so the targets never mix one writer's files with the
    other's. When a rename fails, the targets already replaced get their old files back (or
    are removed where there was none) and the error is raised: a failed save keeps the
    earlier set whole. (Without hard links the old file cannot be kept, and a target
    replaced before the failure keeps the new file.)
    """
    with _RENAMING:
        existed = [os.path.lexists(target) for _, target in moves]
        olds = [second_link(target) for _, target in moves]
        done = 0
        try:
            for temp, target in moves:
                os.replace(temp, target)
                done += 1
        except BaseException:
            replaced = list(zip(moves, olds, existed, strict=True))[:done]
            for (_, target), old, was in reversed(replaced):
                with contextlib.suppress(OSError):
                    if old is not None:
                        os.replace(old, target)
                    elif not was:
                        os.unlink(target)
            for old in olds[done:]:
                if old is not None:
                    _unlink(old)
            raise
    for old in olds:
        if old is not None:
            RECLAIMER.unlink(old)


def second_link(path: str, suffix: str = "old") -> str | None:
    """A second hard link to the regular file at ``path``, beside it under a fresh hidden
    name: the file outlives a rename over ``path``. ``None`` when there is no such file or
    the file system has no hard links."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    if not stat.S_ISREG(info.st_mode):
        return None
    directory, base = os.path.split(os.path.abspath(path))
    while True:
        link = os.path.join(directory, f".{base}.{secrets.token_hex(4)}.{suffix}")
        try:
            os.link(path, link, follow_symlinks=False)
        except FileExistsError:
            continue
        except OSError:  # a file system without hard links
            return None
        return link


def _unlink(path: str) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)


class Reclaimer:
    """One daemon thread that removes files handed to it, in order."""

    def __init__(self) -> None:
        self.forget()

    def forget(self) -> None:
        """Start over with no thread: in a forked child, whose threads did not come along."""
        self._lock = threading.Lock()
        self._paths: queue.SimpleQueue[str] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    def unlink(self, path: str) -> None:
        """Remove ``path`` soon, in the background."""
        self._paths.put(path)
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=RECLAIM_THREAD, daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            _unlink(self._paths.get())

    def drain(self) -> None:
        """Remove, in this thread, every file still waiting (at exit)."""
        while True:
            try:
                path = self._paths.get_nowait()
            except queue.Empty:
                return
            _unlink(path)


RECLAIMER = Reclaimer()
os.register_at_fork(after_in_child=RECLAIMER.forget)
atexit.register(RECLAIMER.drain)
