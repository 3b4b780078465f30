"""A session's workspace files as MCP resources: their URIs, their types, reading one safely.

A file ``results/top.csv`` in the workspace of session ``s1`` is the resource
``loopwright://sessions/s1/files/results/top.csv`` (:data:`URI_TEMPLATE`); each part of the
path is percent-encoded (a space as ``%20``), so any file name makes a URI and reads back
as the same name. A URI names a path relative to the workspace; it is checked by the
:class:`~loopwright.sandbox.paths.PathValidator` the file tools use (``..`` and symbolic
links are resolved first), so a read never reaches outside the workspace, and only a
regular file is read, up to a size limit.
"""

from __future__ import annotations

import mimetypes
import os
import stat
from pathlib import PurePosixPath
from urllib.parse import quote, unquote

from loopwright.sandbox.paths import PathValidator, SecurityError

SCHEME = "loopwright"
_PREFIX = f"{SCHEME}://sessions/"
#: RFC 6570: ``{+path}`` keeps the ``/`` between a path's parts.
URI_TEMPLATE = f"{_PREFIX}{{session_id}}/files/{{+path}}"
#: The largest file a resource read returns (a bigger one is refused, saying so).
MAX_RESOURCE_BYTES = 16 * 1024 * 1024

#: Types of the files loopwright's tools write, whatever the machine's ``mimetypes`` knows.
_TYPES = {
    ".csv": "text/csv",
    ".tsv": "text/tab-separated-values",
    ".parquet": "application/vnd.apache.parquet",
    ".json": "application/json",
    ".jsonl": "application/jsonl",
    ".md": "text/markdown",
    ".txt": "text/plain",
    ".sql": "application/sql",
    ".py": "text/x-python",
    ".png": "image/png",
    ".svg": "image/svg+xml",
}
#: Kinds of type whose files are always sent as base64 (``blob``), never as text.
_BINARY_KINDS = ("image/", "audio/", "video/", "font/")
_BINARY_TYPES = frozenset(
    {"application/vnd.apache.parquet", "application/pdf", "application/zip", "application/gzip"}
)


class ResourceError(ValueError):
    """A resource URI that names nothing this server can read; the message says why."""


def file_uri(session_id: str, path: str) -> str:
    """The URI of the file ``path`` (relative to the workspace) of session ``session_id``."""
    parts = (quote(part, safe="", errors="surrogateescape") for part in path.split(os.sep))
    return f"{_PREFIX}{session_id}/files/{'/'.join(parts)}"


def parse_uri(uri: str) -> tuple[str, str]:
    """``(session_id, path)`` of a file URI made by :func:`file_uri`; the path is decoded,
    not yet checked against the workspace (:func:`read_file` does that)."""
    example = file_uri("SESSION", "path/to/file.csv")
    if not uri.startswith(_PREFIX):
        raise ResourceError(f"unknown resource {uri!r}: a file's URI looks like {example}")
    session_id, separator, path = uri[len(_PREFIX) :].partition("/files/")
    if not separator or not session_id or "/" in session_id:
        raise ResourceError(f"resource {uri!r} names no file: use {example}")
    if not path:
        raise ResourceError(f"resource {uri!r} names no file after '/files/': use {example}")
    if "?" in path or "#" in path:
        raise ResourceError(
            f"resource {uri!r} has a query or fragment; a file's URI has neither "
            "(a '?' or '#' in a file name is written %3F or %23)"
        )
    decoded = unquote(path, errors="surrogateescape")
    if decoded.startswith("/"):
        raise ResourceError(
            f"resource {uri!r} names the absolute path {decoded!r}; a file's URI names a path "
            "relative to the session's workspace"
        )
    return session_id, decoded


def mime_type(path: str) -> str | None:
    """The file's MIME type by its name, if known."""
    suffix = PurePosixPath(path).suffix.lower()
    return _TYPES.get(suffix) or mimetypes.guess_type(path, strict=False)[0]


def read_file(workspace: str | os.PathLike[str], path: str, limit: int) -> bytes:
    """The bytes of the regular file ``path`` inside ``workspace``, at most ``limit`` of
    them; :class:`ResourceError` for a path outside, a missing file, a directory or device,
    or a file over the limit."""
    try:
        resolved = PathValidator(workspace).validate(path, "resources/read")
    except SecurityError as exc:
        raise ResourceError(str(exc)) from None
    try:  # the path is resolved: a link put in its place since is not followed
        fd = os.open(resolved, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except FileNotFoundError:
        raise ResourceError(
            f"no file {path!r} in the workspace; list the resources to see its files"
        ) from None
    except OSError as exc:
        raise ResourceError(f"cannot read {path!r}: {exc.strerror or exc}") from None
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise ResourceError(f"{path!r} is a directory; read the files in it")
        if not stat.S_ISREG(info.st_mode):
            raise ResourceError(f"{path!r} is not a regular file (a pipe, socket or device)")
        data = b""
        if info.st_size <= limit:
            with os.fdopen(fd, "rb", closefd=False) as handle:
                data = handle.read(limit + 1)  # at most: the file may be growing
        size = max(info.st_size, len(data))
    finally:
        os.close(fd)
    if size > limit:
        raise ResourceError(
            f"{path!r} is {size:,} bytes, over the {limit:,}-byte limit of a resource read; "
            "read part of it with a tool (Read with offset and limit, or Python), or write "
            "a smaller file"
        )
    return data


def as_text(data: bytes, mime: str | None) -> str | None:
    """The file's text, or ``None`` for a binary file (sent as base64): an image, Parquet,
    or bytes that are not UTF-8 text."""
    if mime is not None and (mime.startswith(_BINARY_KINDS) or mime in _BINARY_TYPES):
        return None
    if b"\x00" in data:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


__all__ = [
    "MAX_RESOURCE_BYTES",
    "URI_TEMPLATE",
    "ResourceError",
    "as_text",
    "file_uri",
    "mime_type",
    "parse_uri",
    "read_file",
]
