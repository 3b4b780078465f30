"""A session's workspace over HTTP: listing, safe downloads, and the todo list.

Every path comes from the client, so every path goes through the same
:class:`~loopwright.sandbox.paths.PathValidator` the tools use: ``..``, absolute paths and
symlinks that lead outside the workspace are refused. A download is served from the file it
checked (opened once, then checked again where it really is), so a link the agent swaps in
between the check and the read is not followed. Files are served so a browser cannot
be tricked into running them as part of the web UI: only images, plain text and data formats
are shown inline, everything else is an attachment, and every response carries
``nosniff`` and a sandboxing Content-Security-Policy. A file's media type
(:func:`content_type_of`), whether it is shown in place (:func:`disposition_of`) and its
``Content-Disposition`` header (:func:`content_disposition`) are decided here, for the
listing and the download alike.
"""

from __future__ import annotations

import contextlib
import errno
import json
import mimetypes
import os
import re
import stat
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import quote

from loopwright.sandbox.paths import PathValidator, SecurityError

#: at most this many entries in one listing (the answer says when it was cut)
MAX_LISTED = 5000
#: the TodoWrite tool's list, relative to the workspace
TODOS_PATH = ".loopwright/todos.json"
TODO_STATUSES = ("pending", "in_progress", "completed")
#: the agent's own state in the workspace (todo list, audit log, the sandbox's home and
#: caches): not listed with the analyst's files, unless its directory is asked for
INTERNAL_DIR = ".loopwright"
#: a result file being written (``.<name>.<hex>.partial``) or an old one not yet freed
#: (``.<name>.<hex>.old``), see :mod:`loopwright.sql.files`: never listed
TEMPORARY_FILE = re.compile(r"\..+\.[0-9a-f]{8}\.(?:partial|old)")
#: where Linux shows what an open file descriptor really is
_FD_DIR = "/proc/self/fd"

#: media types by file name ending, over the platform's table (which varies from system to
#: system and lacks data formats such as Parquet)
MEDIA_TYPES = {
    ".md": "text/markdown",
    ".markdown": "text/markdown",
    ".parquet": "application/vnd.apache.parquet",
}
#: the media type of a compressed file (``report.csv.gz`` is gzip data, not CSV text)
COMPRESSED_TYPES = {
    "gzip": "application/gzip",
    "bzip2": "application/x-bzip2",
    "xz": "application/x-xz",
    "compress": "application/x-compress",
    "br": "application/x-brotli",
}
#: media types a browser may show in place; anything else is downloaded (binary data such as
#: Parquet, HTML and scripts the agent wrote, archives)
INLINE_TYPES = frozenset(
    {
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "image/bmp",
        "image/svg+xml",
        "text/plain",
        "text/csv",
        "text/markdown",
        "application/json",
        "application/pdf",
    }
)
#: headers on every file response: no MIME sniffing, no scripts, no embedding
FILE_HEADERS = {
    "X-Content-Type-Options": "nosniff",
    "Content-Security-Policy": "default-src 'none'; img-src 'self' data:; "
    "style-src 'unsafe-inline'; sandbox",
    "Cache-Control": "no-store",
}


class WorkspacePathError(ValueError):
    """A path the client gave is not a usable path inside the workspace."""


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One file of a listing (``path`` is relative to the workspace, with ``/``); ``image``
    when a browser can show it as a picture (:func:`is_shown_image`)."""

    path: str
    size: int
    modified: float
    content_type: str
    image: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def content_type_of(path: str) -> str:
    """The media type of a workspace file, by its name (``application/octet-stream`` when
    unknown)."""
    name = path.rsplit("/", 1)[-1]
    for ending, kind in MEDIA_TYPES.items():
        if name.lower().endswith(ending):
            return kind
    # "./": a name such as "data:x.csv" is a file name here, never a data: URL
    guessed, encoding = mimetypes.guess_type("./" + name, strict=False)
    if encoding is not None:
        return COMPRESSED_TYPES.get(encoding, "application/octet-stream")
    return guessed or "application/octet-stream"


def is_shown_image(content_type: str) -> bool:
    """Whether a file of this media type is an image the web UI can show in place (one of
    :data:`INLINE_TYPES`): a TIFF, AVIF or icon chart is a file to download, which the
    preview would show as a broken picture (and the server sends as an attachment)."""
    return content_type.startswith("image/") and content_type in INLINE_TYPES


Disposition = Literal["inline", "attachment"]


def disposition_of(content_type: str, *, download: bool = False) -> Disposition:
    """``inline`` for what a browser may show in place (:data:`INLINE_TYPES`) unless
    ``download`` asks for a file to save, else ``attachment``."""
    return "inline" if content_type in INLINE_TYPES and not download else "attachment"


#: what may not stand as is in the quoted ``filename=`` of a Content-Disposition: anything but
#: printable ASCII (control characters, non-ASCII), the quote, the backslash, and ``%``
#: (which some browsers decode)
_NOT_PLAIN = re.compile(r'[^\x20-\x7e]|["\\%]')


def content_disposition(disposition: Disposition, filename: str) -> str:
    """A ``Content-Disposition`` header value naming ``filename`` (RFC 6266).

    A plain printable-ASCII name is given as ``filename="..."``. Any other name (control
    characters such as a newline, non-ASCII letters, quotes) is given exactly as
    ``filename*=UTF-8''...``, percent-encoded (RFC 8187), after an ASCII ``filename=``
    fallback with those characters replaced by ``_``: the value never holds a raw control
    character, so a file name cannot add a header or end the header block."""
    fallback = _NOT_PLAIN.sub("_", filename)
    if fallback == filename:
        return f'{disposition}; filename="{filename}"'
    encoded = quote(filename, safe="")
    return f"{disposition}; filename=\"{fallback}\"; filename*=UTF-8''{encoded}"


def _outside(path: str) -> WorkspacePathError:
    return WorkspacePathError(
        f"the path {path!r} leads outside the session's workspace; use a path relative to "
        "the workspace, as GET /api/sessions/{id}/files lists them"
    )


def _resolve(workspace: Path, path: str, operation: str) -> str:
    if "\x00" in path:
        raise WorkspacePathError(
            f"the path {path!r} holds a NUL character, which no file name can hold; use the "
            "path exactly as GET /api/sessions/{id}/files lists it"
        )
    validator = PathValidator(workspace)
    try:
        return validator.validate(path, operation)
    except SecurityError:
        raise _outside(path) from None


def list_files(workspace: Path, under: str = "") -> tuple[list[FileEntry], bool]:
    """The files under ``under`` (the whole workspace by default), sorted by path, and
    whether the listing was cut at :data:`MAX_LISTED`. Symlinks are listed only when they
    point inside the workspace; linked directories are not entered. The agent's own
    :data:`INTERNAL_DIR` is left out unless ``under`` is in it, and result files still being
    written (:data:`TEMPORARY_FILE`) are never listed."""
    root = os.path.realpath(workspace)
    if not os.path.isdir(root):
        return [], False
    base = _resolve(workspace, under or ".", "list")
    if not os.path.isdir(base):
        raise FileNotFoundError(f"{under!r} is not a directory of the workspace")
    validator = PathValidator(root)
    entries: list[FileEntry] = []
    for directory, dirnames, filenames in os.walk(base):
        if directory == root and INTERNAL_DIR in dirnames:
            dirnames.remove(INTERNAL_DIR)
        dirnames.sort()
        for name in sorted(filenames):
            if TEMPORARY_FILE.fullmatch(name):
                continue
            full = os.path.join(directory, name)
            if os.path.islink(full) and not validator.is_inside(full):
                continue
            try:
                stat = os.stat(full)
            except OSError:  # a dangling link, or removed while listing
                continue
            relative = os.path.relpath(full, root).replace(os.sep, "/")
            kind = content_type_of(name)
            entries.append(
                FileEntry(relative, stat.st_size, stat.st_mtime, kind, is_shown_image(kind))
            )
            if len(entries) >= MAX_LISTED:
                return sorted(entries, key=lambda e: e.path), True
    return sorted(entries, key=lambda e: e.path), False


class FileUnreadable(OSError):
    """The file is in the workspace but the server cannot read it."""


@dataclass(slots=True)
class OpenedFile:
    """A regular file of the workspace, open for reading (until :meth:`close`).

    ``path`` opens this same file again (``/proc/self/fd/N`` on Linux, which stays this
    file whatever is renamed or linked meanwhile); ``stat`` is its size and times."""

    descriptor: int
    path: str
    stat: os.stat_result
    closed: bool = False

    def close(self) -> None:
        """Close the descriptor (once: its number may be another file's afterwards)."""
        if not self.closed:
            self.closed = True
            with contextlib.suppress(OSError):
                os.close(self.descriptor)


def _missing(path: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"no file {path!r} in the session's workspace; list the files with "
        "GET /api/sessions/{id}/files"
    )


def open_file(workspace: Path, path: str) -> OpenedFile:
    """Open a regular file inside the workspace, or raise an error saying why not:
    :class:`WorkspacePathError` (outside), :class:`FileNotFoundError` (no such file),
    :class:`FileUnreadable` (the server may not read it). A result file still being written
    (:data:`TEMPORARY_FILE`) is not there, as in the listing.

    The path is checked, the file opened without following a final link, then where the
    open file really is is checked again: a link swapped in after the first check (by a
    tool running meanwhile) is refused, never read through."""
    if not path:
        raise WorkspacePathError("give the file's path relative to the workspace")
    resolved = _resolve(workspace, path, "download")
    name = path.rsplit("/", 1)[-1]
    if TEMPORARY_FILE.fullmatch(name):  # half a result: not a file of its own, as listed
        raise FileNotFoundError(
            f"{path!r} is a query result still being written (or an old one being "
            "replaced), not a file of the workspace; the result appears under its own name "
            "when it is complete"
        )
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0)
    flags |= getattr(os, "O_CLOEXEC", 0)
    try:
        descriptor = os.open(resolved, flags)  # O_NONBLOCK: a FIFO does not hang the server
    except (FileNotFoundError, NotADirectoryError):
        raise _missing(path) from None
    except OSError as exc:
        if exc.errno == errno.ELOOP:  # the file became a link after the check
            raise _outside(path) from None
        raise FileUnreadable(
            f"the file {path!r} cannot be read by the server ({exc.strerror or exc})"
        ) from None
    opened = OpenedFile(descriptor, resolved, os.fstat(descriptor))
    try:
        if not stat.S_ISREG(opened.stat.st_mode):
            raise _missing(path)
        fd_path = os.path.join(_FD_DIR, str(descriptor))
        try:
            really = os.readlink(fd_path).removesuffix(" (deleted)")
        except OSError:  # no /proc: the file at the checked path must still be this one
            if not os.path.samestat(opened.stat, os.stat(resolved)):
                raise _outside(path) from None
            return opened
        if not PathValidator(workspace).is_inside(really):
            raise _outside(path)
        opened.path = fd_path
        return opened
    except BaseException:
        opened.close()
        raise


def read_todos(workspace: Path) -> tuple[list[dict[str, str]], str]:
    """The TodoWrite list (``.loopwright/todos.json``) and a problem with it ("" if none).

    A missing file is an empty list; malformed items are left out and reported."""
    file = workspace / TODOS_PATH
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return [], ""
    except (OSError, ValueError) as exc:
        return [], f"{TODOS_PATH} cannot be read ({exc})"
    if isinstance(data, dict) and isinstance(data.get("todos"), list):
        data = data["todos"]
    if not isinstance(data, list):
        return [], f"{TODOS_PATH} must hold a JSON list of todo items"
    todos: list[dict[str, str]] = []
    skipped = 0
    for item in data:
        if (
            isinstance(item, dict)
            and isinstance(item.get("content"), str)
            and item.get("status") in TODO_STATUSES
        ):
            todo = {"content": item["content"], "status": item["status"]}
            if isinstance(item.get("activeForm"), str):
                todo["activeForm"] = item["activeForm"]
            todos.append(todo)
        else:
            skipped += 1
    problem = f"{skipped} malformed item(s) in {TODOS_PATH} were left out" if skipped else ""
    return todos, problem
