"""A session's workspace over HTTP: listing, safe downloads, and the todo list.

Every path comes from the client, so every path goes through the same
:class:`~loopwright.sandbox.paths.PathValidator` the tools use: ``..``, absolute paths and
symlinks that lead outside the workspace are refused. Files are served so a browser cannot
be tricked into running them as part of the web UI: only images, plain text and data formats
are shown inline, everything else is an attachment, and every response carries
``nosniff`` and a sandboxing Content-Security-Policy.
"""

from __future__ import annotations

import json
import mimetypes
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from loopwright.sandbox.paths import PathValidator, SecurityError

#: at most this many entries in one listing (the answer says when it was cut)
MAX_LISTED = 5000
#: the TodoWrite tool's list, relative to the workspace
TODOS_PATH = ".loopwright/todos.json"
TODO_STATUSES = ("pending", "in_progress", "completed")

#: media types a browser may show in place; anything else is downloaded
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
    """One file of a listing (``path`` is relative to the workspace, with ``/``)."""

    path: str
    size: int
    modified: float
    content_type: str
    image: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def content_type_of(path: str) -> str:
    guessed, _ = mimetypes.guess_type(path, strict=False)
    if guessed is None and path.lower().endswith((".md", ".markdown")):
        return "text/markdown"
    return guessed or "application/octet-stream"


def _resolve(workspace: Path, path: str, operation: str) -> str:
    validator = PathValidator(workspace)
    try:
        return validator.validate(path, operation)
    except SecurityError:
        raise WorkspacePathError(
            f"the path {path!r} leads outside the session's workspace; use a path relative to "
            "the workspace, as GET /api/sessions/{id}/files lists them"
        ) from None


def list_files(workspace: Path, under: str = "") -> tuple[list[FileEntry], bool]:
    """The files under ``under`` (the whole workspace by default), sorted by path, and
    whether the listing was cut at :data:`MAX_LISTED`. Symlinks are listed only when they
    point inside the workspace; linked directories are not entered."""
    root = os.path.realpath(workspace)
    if not os.path.isdir(root):
        return [], False
    base = _resolve(workspace, under or ".", "list")
    if not os.path.isdir(base):
        raise FileNotFoundError(f"{under!r} is not a directory of the workspace")
    validator = PathValidator(root)
    entries: list[FileEntry] = []
    for directory, dirnames, filenames in os.walk(base):
        dirnames.sort()
        for name in sorted(filenames):
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
                FileEntry(relative, stat.st_size, stat.st_mtime, kind, kind.startswith("image/"))
            )
            if len(entries) >= MAX_LISTED:
                return sorted(entries, key=lambda e: e.path), True
    return sorted(entries, key=lambda e: e.path), False


def resolve_file(workspace: Path, path: str) -> str:
    """The absolute path of a regular file inside the workspace, or an error saying why not."""
    if not path:
        raise WorkspacePathError("give the file's path relative to the workspace")
    resolved = _resolve(workspace, path, "download")
    if not os.path.isfile(resolved):
        raise FileNotFoundError(
            f"no file {path!r} in the session's workspace; list the files with "
            "GET /api/sessions/{id}/files"
        )
    return resolved


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
