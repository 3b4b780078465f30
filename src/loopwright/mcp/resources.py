"""A session's workspace files as MCP resources: their URIs, their types, reading one safely.

A file ``results/top.csv`` in the workspace of session ``s1`` is the resource
``loopwright://sessions/s1/files/results/top.csv`` (:data:`URI_TEMPLATE`); each part of the
path is percent-encoded (a space as ``%20``), so any file name makes a URI and reads back
as the same name. A URI names a path relative to the workspace; it is checked by the
:class:`~loopwright.sandbox.paths.PathValidator` the file tools use (``..`` and symbolic
links are resolved first), so a read never reaches outside the workspace, and only a
regular file is read, up to a size limit.

A workspace's files are listed in a fixed order, by their paths' parts (a directory's files
right after its name), hidden ones (a part starting with ``.``: ``.git``, loopwright's own
``.loopwright``) and Python's caches left out (:func:`files_after`). A listing's page ends
with a cursor naming the last file it served (:func:`listing_cursor`), so the next page starts
after that file whatever was added or deleted meanwhile: no file is skipped or served twice
for it, and every file is reached however many the workspace holds.

A read is what the agent's policy makes of a ``Read`` call of that file
(:class:`ReadPolicy`): its permission rules (and PreToolUse hooks) decide whether it is
served, and its PostToolUse hooks matching ``Read`` (the healthcare agent's patient-identifier
mask) and its redaction filter the text. A policy that does nothing to a Read (none, or
``Policy()``) costs nothing.
"""

from __future__ import annotations

import base64
import errno
import json
import mimetypes
import os
import stat
from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

from loopwright.messages import ImageBlock, TextBlock
from loopwright.sandbox.paths import PathValidator, SecurityError
from loopwright.sessions.session import validate_session_id
from loopwright.tools.files import IMAGE_TYPES, ReadTool
from loopwright.tools.written import IMAGE_SIGNATURES, Stamp

if TYPE_CHECKING:
    from loopwright.policy import Policy
    from loopwright.tools.base import ToolResult

SCHEME = "loopwright"
_PREFIX = f"{SCHEME}://sessions/"
#: RFC 6570: ``{+path}`` keeps the ``/`` between a path's parts.
URI_TEMPLATE = f"{_PREFIX}{{session_id}}/files/{{+path}}"
#: The largest file a resource read returns (a bigger one is refused, saying so).
MAX_RESOURCE_BYTES = 16 * 1024 * 1024

#: Types of the files loopwright's tools write, whatever the machine's ``mimetypes`` knows
#: (images: those Read shows as images).
_TYPES = {
    **IMAGE_TYPES,
    ".csv": "text/csv",
    ".tsv": "text/tab-separated-values",
    ".parquet": "application/vnd.apache.parquet",
    ".json": "application/json",
    ".jsonl": "application/jsonl",
    ".md": "text/markdown",
    ".txt": "text/plain",
    ".sql": "application/sql",
    ".py": "text/x-python",
    ".svg": "image/svg+xml",
    # compressed: the type of the bytes, not (as ``mimetypes`` says of ``x.csv.gz``) of
    # what is inside them
    ".gz": "application/gzip",
    ".bz2": "application/x-bzip2",
    ".xz": "application/x-xz",
    ".zst": "application/zstd",
}
#: Kinds of type whose files are always sent as base64 (``blob``), never as text.
_BINARY_KINDS = ("image/", "audio/", "video/", "font/")
_BINARY_TYPES = frozenset(
    {
        "application/vnd.apache.parquet",
        "application/pdf",
        "application/zip",
        "application/gzip",
        "application/x-bzip2",
        "application/x-xz",
        "application/zstd",
    }
)
#: Types sent as base64 but that Read shows as text (so a policy's hooks can filter them).
_READ_AS_TEXT = frozenset({"image/svg+xml"})
#: The tool a resource read is judged as by the agent's policy.
READ = "Read"
#: How a ``resources/list`` cursor made here starts (then the base64 of its JSON).
_CURSOR_TAG = "lw1."
#: Directories whose files are not listed, beside the hidden ones: Python's bytecode caches.
_UNLISTED_DIRS = frozenset({"__pycache__"})


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


def listing_cursor(session_id: str, path: str) -> str:
    """The ``resources/list`` cursor of a page whose last file is ``path`` (relative) of
    session ``session_id``: the next page starts after that file."""
    data = json.dumps([session_id, path]).encode("ascii")  # a lone surrogate as \udcxx
    return _CURSOR_TAG + base64.urlsafe_b64encode(data).decode("ascii")


def parse_cursor(cursor: str) -> tuple[str, str]:
    """``(session_id, path)`` of a cursor :func:`listing_cursor` made; a
    :class:`ResourceError` for any other string."""
    shown = cursor if len(cursor) <= 80 else f"{cursor[:80]}..."
    problem = ResourceError(
        f"invalid cursor {shown!r}: pass the nextCursor of the previous page of this server's "
        "resources/list, or no cursor to list from the start"
    )
    if not cursor.startswith(_CURSOR_TAG):
        raise problem
    try:
        data = base64.urlsafe_b64decode(cursor[len(_CURSOR_TAG) :].encode("ascii"))
        value = json.loads(data)
    except (ValueError, RecursionError):  # not ASCII, not base64, not JSON, nested too deep
        raise problem from None
    if not (isinstance(value, list) and len(value) == 2 and all(isinstance(v, str) for v in value)):
        raise problem
    session_id, path = value
    try:
        validate_session_id(session_id)
    except ValueError:
        raise problem from None
    if not path or path.startswith(os.sep):
        raise problem
    return session_id, path


def files_after(
    workspace: str | os.PathLike[str], after: str | None, count: int
) -> list[tuple[str, Stamp]]:
    """The first ``count`` files (relative path, stamp) of the workspace listed as resources
    that come after the file ``after`` (all of them when ``None``), in the listing's order
    (see the module docstring). A directory that cannot be read is passed over."""
    last = tuple(after.split(os.sep)) if after else None
    found: list[tuple[str, Stamp]] = []
    root: tuple[str, ...] = ()
    levels = [(root, iter(_listed_entries(os.fspath(workspace))))]
    while levels and len(found) < count:
        prefix, entries = levels[-1]
        entry = next(entries, None)
        if entry is None:
            levels.pop()
            continue
        parts = (*prefix, entry.name)
        try:
            if entry.is_dir(follow_symlinks=False):
                # passed over when every file in it comes before ``after``
                if entry.name not in _UNLISTED_DIRS and (
                    last is None or parts >= last[: len(parts)]
                ):
                    levels.append((parts, iter(_listed_entries(entry.path))))
            elif entry.is_file(follow_symlinks=False) and (last is None or parts > last):
                info = entry.stat(follow_symlinks=False)
                found.append((os.sep.join(parts), (info.st_ino, info.st_size, info.st_mtime_ns)))
        except OSError:
            continue  # removed meanwhile
    return found


def _listed_entries(directory: str) -> list[os.DirEntry[str]]:
    """The entries of ``directory`` that are not hidden, by name (none if it is unreadable)."""
    try:
        with os.scandir(directory) as entries:
            return sorted((e for e in entries if not e.name.startswith(".")), key=_name)
    except OSError:
        return []


def _name(entry: os.DirEntry[str]) -> str:
    return entry.name


def mime_type(path: str) -> str | None:
    """The file's MIME type by its name, if known."""
    suffix = PurePosixPath(path).suffix.lower()
    return _TYPES.get(suffix) or mimetypes.guess_type(path, strict=False)[0]


def resolve(workspace: str | os.PathLike[str], path: str) -> str:
    """The absolute, resolved path of ``path`` (``..`` and links followed); a
    :class:`ResourceError` when it is outside the workspace."""
    try:
        return PathValidator(workspace).validate(path, "resources/read")
    except SecurityError as exc:
        raise ResourceError(str(exc)) from None


def read_file(
    workspace: str | os.PathLike[str], path: str, limit: int, *, resolved: str | None = None
) -> bytes:
    """The bytes of the regular file ``path`` inside ``workspace``, at most ``limit`` of
    them; :class:`ResourceError` for a path outside, a missing file, a directory or device,
    or a file over the limit. ``resolved``: ``path`` as :func:`resolve` made it (the file a
    policy judged), read as it is: a link put in place of any part of it since is not
    followed."""
    if resolved is None:
        resolved = resolve(workspace, path)
    try:
        fd = _open_resolved(os.path.realpath(workspace), resolved)
    except FileNotFoundError:
        raise ResourceError(
            f"no file {path!r} in the workspace; list the resources to see its files"
        ) from None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.ENOTDIR):
            raise ResourceError(
                f"{path!r} became a symbolic link (or a part of its path did) while it was "
                "read; a link is not followed then: read it again"
            ) from None
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


def _open_resolved(root: str, resolved: str) -> int:
    """A descriptor of ``resolved`` (a resolved path inside the resolved directory ``root``),
    opened part by part from ``root`` without following a link (``ELOOP``/``ENOTDIR`` when a
    part is one now)."""
    parts = [] if resolved == root else os.path.relpath(resolved, root).split(os.sep)
    directory = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for part in parts[:-1]:
            inner = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=directory)
            os.close(directory)
            directory = inner
        if not parts:
            return os.dup(directory)
        return os.open(parts[-1], os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK, dir_fd=directory)
    finally:
        os.close(directory)


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


class ReadPolicy:
    """The agent's ``policy`` applied to the resource reads of one session's files: what it
    makes of a ``Read`` call of the same file in that session.

    - the permission decision (rules, mode, the PreToolUse hooks matching ``Read``): a
      denied read is refused with the reason; one that needs a person's approval is refused
      too, saying so (a resource read has no one to ask); a read a PreToolUse hook moves to
      another file is refused;
    - the text goes through the PostToolUse hooks matching ``Read`` (the event a Read of the
      file builds: the resolved path as ``file_path``, the session's id and workspace), then
      the policy's redaction; what they return is served, and a result they withhold is
      refused with their message;
    - an image Read shows as an image (PNG, JPEG, GIF, WebP) goes through them as Read's
      image result does, and the image they return is served;
    - any other binary file (Parquet, PDF, text that is not UTF-8) is refused while the text
      is filtered: the hooks cannot look inside it.

    Files the permission rules refuse are left out of the listing (:meth:`listed`), and so
    are those whose names the PostToolUse hooks would change (:meth:`unchanged_names`).
    """

    def __init__(self, policy: Policy, workspace: str | os.PathLike[str], session_id: str) -> None:
        self.policy = policy
        self.workspace = os.fspath(workspace)
        self.session_id = session_id
        self._real_workspace = os.path.realpath(self.workspace)
        self.tool = ReadTool(self.workspace)

    @staticmethod
    def applies(policy: Policy) -> bool:
        """Whether ``policy`` does anything to a Read call's file (a rule or mode that may
        refuse it, hooks matching ``Read``, redaction); else reads are served as they are."""
        hooks = policy.hooks
        return (
            not policy.permissions.trivial
            or hooks.has_pre(READ)
            or hooks.has_post(READ)
            or policy.redactor is not None
        )

    @property
    def filters(self) -> list[str]:
        """What filters the text of a Read, in words (empty: nothing does)."""
        found = []
        if self.policy.hooks.has_post(READ):
            found.append(
                "PostToolUse hooks on Read, such as the healthcare agent's identifier mask"
            )
        if self.policy.redactor is not None:
            found.append("the redaction of secrets")
        return found

    def listed(self, path: str) -> bool:
        """Whether the permission rules and mode let ``path`` (relative) be read: the
        listing shows only those (PreToolUse hooks are asked when a file is read)."""
        permissions = self.policy.permissions
        if permissions.trivial:
            return True
        info = permissions.call_info(READ, {"file_path": path}, self._real_workspace, self.tool)
        return permissions.evaluate(info).behavior == "allow"

    async def unchanged_names(self, paths: list[str]) -> list[str]:
        """Those of ``paths`` (relative) whose names the PostToolUse hooks and redaction of a
        Read leave as they are; a file they would hide a part of the name of (one the code
        named after a patient, which the mask shows as ``note-[masked #1].txt``) is left out
        of the listing and of ``run_agent``'s ``files``, since its URI shows the name. None
        when they withhold the names (the mask while it cannot read a result)."""
        if not self.filters or not paths:
            return paths
        names: list[TextBlock | ImageBlock] = [TextBlock(path) for path in paths]
        result = await self._after_read(self._real_workspace, names)
        shown = result["content"]
        if result.get("is_error") or not isinstance(shown, list) or len(shown) < len(paths):
            return []
        return [
            path
            for path, block in zip(paths, shown, strict=False)
            if isinstance(block, TextBlock) and block.text == path
        ]

    async def admit(self, resolved: str, path: str) -> None:
        """Refuse (:class:`ResourceError`, saying why) a read of ``path`` (resolved to
        ``resolved``) that the policy would not let a Read make."""
        policy = self.policy
        if policy.permissions.trivial and not policy.hooks.has_pre(READ):
            return
        bound = policy.bind(self.workspace, self.session_id)
        input: dict[str, Any] = {"file_path": resolved}
        call = bound.begin(READ, input, None)
        outcome = await bound.run_pre_hooks(self.tool, input, call)
        hooked = outcome.decision if outcome is not None else None
        if outcome is not None and outcome.input.get("file_path") != resolved:
            raise ResourceError(
                f"Permission denied: a PreToolUse hook of this server's policy changes a Read "
                f"of {path!r} into another call, which a resource read cannot follow; ask the "
                "agent to read it with its Read tool"
            )
        info = policy.permissions.call_info(READ, input, self._real_workspace, self.tool)
        decision = policy.permissions.evaluate(info, hooked)
        if decision.behavior == "deny":
            raise ResourceError(
                f"Permission denied: {decision.reason} (a resource read is judged as a Read "
                "of the file by this server's policy)"
            )
        if decision.behavior == "ask":
            raise ResourceError(
                f"Permission denied: a Read of {path!r} needs a person's approval "
                f"({decision.reason or 'the policy asks for it'}), and a resource read has no "
                "one to ask, so it is not served; ask the agent to read it with its Read tool "
                "(whose call can be approved), or change the permission rules"
            )

    async def filtered(
        self, resolved: str, path: str, data: bytes, mime: str | None
    ) -> str | ImageBlock:
        """What a Read of ``path`` would let out of its bytes ``data``: the text, or the
        image, as the PostToolUse hooks and redaction leave it; a :class:`ResourceError`
        when they withhold it or cannot filter it (a binary file). Only for a policy that
        :attr:`filters` the text."""
        extension = PurePosixPath(path).suffix.lower()
        content: str | list[TextBlock | ImageBlock]
        if extension in IMAGE_TYPES:  # as Read: an image if its bytes are one
            if not data.startswith(IMAGE_SIGNATURES[extension]):
                raise ResourceError(
                    f"{path!r} has an image's name ({extension}) but its content is not such "
                    "an image, so this server's policy cannot filter it as one; not served"
                )
            image = base64.b64encode(data).decode("ascii")
            media_type = IMAGE_TYPES[extension]
            content = [
                TextBlock(f"Image {path} ({len(data):,} bytes):"),
                ImageBlock(image, media_type),
            ]
        else:
            text = as_text(data, None if mime in _READ_AS_TEXT else mime)
            if text is None:
                raise ResourceError(self._unfiltered(path, mime))
            content = text
        result = await self._after_read(resolved, content)
        shown = result["content"]
        if result.get("is_error"):
            raise ResourceError(f"{path!r} is withheld by this server's policy: {_text(shown)}")
        if isinstance(shown, str):
            return shown
        if isinstance(content, str):  # text the hooks made into blocks: their text
            return _text(shown)
        image_block = next((b for b in shown if isinstance(b, ImageBlock)), None)
        if image_block is None:
            raise ResourceError(
                f"{path!r} is withheld by this server's policy: its PostToolUse hooks left "
                f"no image of it ({_text(shown) or 'nothing'})"
            )
        return image_block

    async def _after_read(
        self, file_path: str, content: str | list[TextBlock | ImageBlock]
    ) -> ToolResult:
        """``content`` as the PostToolUse hooks and redaction leave a Read of ``file_path``
        that returned it (the event such a call gets, in this session)."""
        bound = self.policy.bind(self.workspace, self.session_id)
        input: dict[str, Any] = {"file_path": file_path}
        call = bound.begin(READ, input, None)
        call.executed = True
        result = await bound.run_post_hooks(
            self.tool, input, call, {"content": content, "is_error": False}
        )
        return bound.clean(self.tool, call, result)

    def _unfiltered(self, path: str, mime: str | None) -> str:
        if mime is None or mime.startswith("text/"):
            what = "not UTF-8 text" if mime else "a binary file (or text that is not UTF-8)"
        else:
            what = f"a binary file ({mime})"
        instead = "read a text version of it (a CSV)"
        if PurePosixPath(path).suffix.lower() == ".parquet":
            csv = str(PurePosixPath(path).with_suffix(".csv"))
            if os.path.isfile(os.path.join(self.workspace, csv)):
                instead = f"read the CSV saved beside it ({file_uri(self.session_id, csv)})"
        return (
            f"{path!r} is {what}: this server's policy filters what a Read of a file shows "
            f"({'; '.join(self.filters)}), and cannot look inside it, so it is not served. "
            f"To see it, {instead}; for a de-identified extract, serve the healthcare agent "
            "without its mask (LOOPWRIGHT_MASK_IDENTIFIERS=0)."
        )


def _text(content: str | list[TextBlock | ImageBlock]) -> str:
    if isinstance(content, str):
        return content
    return "\n".join(block.text for block in content if isinstance(block, TextBlock))


__all__ = [
    "MAX_RESOURCE_BYTES",
    "URI_TEMPLATE",
    "ReadPolicy",
    "ResourceError",
    "as_text",
    "file_uri",
    "files_after",
    "listing_cursor",
    "mime_type",
    "parse_cursor",
    "parse_uri",
    "read_file",
    "resolve",
]
