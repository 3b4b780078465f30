"""File tools: ``Read``, ``Write``, ``Edit`` and ``Glob`` (``Grep`` lives in ``grep.py``).

Every path parameter is validated against the workspace by the registry (``path_params``)
before the tool runs, and again inside each tool so a direct ``execute`` call is just as
safe: a tool only ever touches resolved paths inside the workspace. ``Glob`` also checks its
``pattern``, which could otherwise name a place outside (``../*``, ``/etc/*``).

The glob dialect (:func:`glob_to_regex`) is ripgrep's: ``*``, ``?``, ``[abc]``/``[!abc]``,
``{a,b}``, ``**`` for any number of directories, ``\\`` to escape. ``Glob`` and ``Grep``'s
pure-Python backend share it, so a pattern means the same thing in both tools.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import os
import re
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from loopwright.messages import ImageBlock, TextBlock
from loopwright.sandbox.paths import SecurityError
from loopwright.tools.base import BaseTool, ToolResult, error, ok

DEFAULT_LINE_LIMIT = 2000
MAX_LINE_CHARS = 2000
MAX_IMAGE_BYTES = 5 * 1024 * 1024
IMAGE_TYPES = {
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".gif": "image/gif",
    ".webp": "image/webp",
}


class ReadTool(BaseTool):
    """Read a text file (numbered lines) or an image from the workspace."""

    path_params = ("file_path",)

    @property
    def name(self) -> str:
        return "Read"

    @property
    def schema(self) -> dict[str, Any]:
        return {
            "name": "Read",
            "description": (
                "Read a file from the workspace. Text comes back with line numbers "
                f"(cat -n style), at most {DEFAULT_LINE_LIMIT} lines from `offset`; use `offset` "
                "and `limit` to page through long files. Images come back as images."
            ),
            "input_schema": {
                "type": "object",
                "properties": {
                    "file_path": {
                        "type": "string",
                        "description": "Path of the file, relative to the workspace or absolute",
                    },
                    "offset": {
                        "type": "integer",
                        "minimum": 1,
                        "description": "Line number to start at (1-based)",
                    },
                    "limit": {
                        "type": "integer",
                        "minimum": 1,
                        "description": f"How many lines to read (default {DEFAULT_LINE_LIMIT})",
                    },
                },
                "required": ["file_path"],
                "additionalProperties": False,
            },
        }

    async def execute(self, input: dict[str, Any]) -> ToolResult:
        return await asyncio.to_thread(
            self._read, input["file_path"], input.get("offset", 1), input.get("limit")
        )

    def _read(self, file_path: str, offset: int, limit: int | None) -> ToolResult:
        try:  # already done by the registry; repeated so a direct call is just as safe
            path = self.path_validator.validate(file_path, "Read file_path")
        except SecurityError as exc:
            return error(str(exc))
        shown = self.relative(path)
        if not os.path.exists(path):
            return error(f"File not found: {shown}. Check the path with Glob, or Write it first.")
        if os.path.isdir(path):
            return error(f"{shown} is a directory, not a file; list it with Glob or Bash `ls`.")
        if not os.path.isfile(path):  # a FIFO or a device: opening it could block forever
            return error(f"{shown} is not a regular file (a pipe, socket or device); not read.")
        extension = os.path.splitext(path)[1].lower()
        if extension in IMAGE_TYPES:
            return self._read_image(path, shown, extension)
        start = max(offset, 1) - 1
        count = limit or DEFAULT_LINE_LIMIT
        window: list[bytes] = []
        total = 0
        with open(path, "rb") as handle:  # streamed: a huge log is not loaded whole
            head = handle.read(8192)
            if not head:
                return ok(f"{shown} exists but is empty.")
            if b"\x00" in head:
                size = os.fstat(handle.fileno()).st_size
                return error(
                    f"{shown} is a binary file ({size:,} bytes) and cannot be shown as text; "
                    "inspect it with Bash or Python instead."
                )
            handle.seek(0)
            for raw in handle:  # split on "\n" only, as Grep, Edit and `wc -l` count lines
                if start <= total < start + count:
                    window.append(raw)
                total += 1
        if start >= total:
            return error(f"{shown} has {total} lines; offset {offset} is past the end.")
        width = len(str(start + len(window)))
        out: list[str] = []
        cut_lines = 0
        for number, raw in enumerate(window, start=start + 1):
            line = raw.decode("utf-8", errors="replace").rstrip("\n").removesuffix("\r")
            if len(line) > MAX_LINE_CHARS:
                line = line[:MAX_LINE_CHARS] + f" [... line cut: {len(line):,} characters]"
                cut_lines += 1
            out.append(f"{number:>{width}}\t{line}")
        end = start + len(window)
        if end < total:
            out.append(
                f"\n[Showing lines {start + 1}-{end} of {total}. "
                f"Read with offset={end + 1} to continue.]"
            )
        if cut_lines:
            out.append(f"[{cut_lines} long line(s) were cut at {MAX_LINE_CHARS} characters.]")
        return ok("\n".join(out))

    @staticmethod
    def _read_image(path: str, shown: str, extension: str) -> ToolResult:
        size = os.path.getsize(path)
        if size > MAX_IMAGE_BYTES:
            return error(
                f"{shown} is an image of {size:,} bytes, over the {MAX_IMAGE_BYTES:,} limit."
            )
        with open(path, "rb") as handle:
            raw = handle.read()
        # The media type comes from the bytes, not the name: a provider refuses the whole
        # request when an image's declared type is wrong or its data is not an image.
        media_type = _sniff_image(raw)
        if media_type is None:
            return error(
                f"{shown} has an image extension ({extension}) but its content is not a PNG, "
                "JPEG, GIF or WebP image; inspect it with Bash or Python instead."
            )
        data = base64.b64encode(raw).decode("ascii")
        return ok([TextBlock(f"Image {shown} ({size:,} bytes):"), ImageBlock(data, media_type)])


def _sniff_image(data: bytes) -> str | None:
    """The media type of image bytes, from their signature; ``None`` if not an image."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None


class WriteTool(BaseTool):
    """Create or overwrite a file in the workspace, atomically."""

    path_params = ("file_path",)
    sequential = True

    @property
    def name(self) -> str:
        return "Write"

    @property
    def schema(self) -> dict[str, Any]:
        return {
            "name": "Write",
            "description": (
                "Write a file in the workspace, creating parent directories as needed and "
                "replacing any existing file. Use Edit to change part of an existing file."
            ),
            "input_schema": {
                "type": "object",
                "properties": {
                    "file_path": {
                        "type": "string",
                        "description": "Path of the file, relative to the workspace or absolute",
                    },
                    "content": {"type": "string", "description": "The whole new content"},
                },
                "required": ["file_path", "content"],
                "additionalProperties": False,
            },
        }

    async def execute(self, input: dict[str, Any]) -> ToolResult:
        return await asyncio.to_thread(self._write, input["file_path"], input["content"])

    def _write(self, file_path: str, content: str) -> ToolResult:
        try:  # already done by the registry; repeated so a direct call is just as safe
            path = self.path_validator.validate(file_path, "Write file_path")
        except SecurityError as exc:
            return error(str(exc))
        shown = self.relative(path)
        if os.path.isdir(path):
            return error(f"{shown} is a directory; give a file path.")
        existed = os.path.exists(path)
        if existed and not os.path.isfile(path):
            return error(f"{shown} is not a regular file (a pipe, socket or device); not written.")
        directory = os.path.dirname(path)
        try:
            data = content.encode("utf-8")
        except UnicodeEncodeError as exc:
            return error(f"Cannot write {shown}: the content is not valid Unicode ({exc.reason}).")
        try:
            os.makedirs(directory, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            return error(
                f"Cannot write {shown}: a part of its directory path is a file, not a directory."
            )
        _atomic_write(path, data, existed)
        verb = "Overwrote" if existed else "Created"
        lines = content.count("\n") + (1 if content and not content.endswith("\n") else 0)
        return ok(f"{verb} {shown} ({len(data):,} bytes, {lines} lines).")


def _atomic_write(path: str, data: bytes, existed: bool) -> None:
    """Replace ``path`` with ``data`` in one step (temp file + rename), keeping its mode.

    A reader, or a crash half-way, sees the old content or the new one, never a mix.
    """
    descriptor, temp_path = tempfile.mkstemp(prefix=".write-", dir=os.path.dirname(path))
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if existed:
            os.chmod(temp_path, stat.S_IMODE(os.stat(path).st_mode))
        else:
            os.chmod(temp_path, 0o644)
        os.replace(temp_path, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(temp_path)
        raise


def _numbered(lines: list[tuple[int, str]], width: int) -> list[str]:
    """``cat -n`` style lines, as Read shows them (long lines cut)."""
    out = []
    for number, line in lines:
        if len(line) > MAX_LINE_CHARS:
            line = line[:MAX_LINE_CHARS] + f" [... line cut: {len(line):,} characters]"
        out.append(f"{number:>{width}}\t{line}")
    return out


# --- Edit ------------------------------------------------------------------------------

SNIPPET_CONTEXT_LINES = 3
MAX_SNIPPET_LINES = 60
MAX_SNIPPET_REGIONS = 5


class EditTool(BaseTool):
    """Replace an exact piece of text in a workspace file, atomically."""

    path_params = ("file_path",)
    sequential = True

    @property
    def name(self) -> str:
        return "Edit"

    @property
    def schema(self) -> dict[str, Any]:
        return {
            "name": "Edit",
            "description": (
                "Replace text in a file of the workspace. `old_string` must match the file "
                "exactly (whitespace and indentation included; the line numbers Read shows are "
                "not part of the file) and only once, unless `replace_all` is true. Include "
                "enough surrounding lines to make it unique. Returns the changed lines."
            ),
            "input_schema": {
                "type": "object",
                "properties": {
                    "file_path": {
                        "type": "string",
                        "description": "Path of the file, relative to the workspace or absolute",
                    },
                    "old_string": {"type": "string", "description": "The exact text to replace"},
                    "new_string": {
                        "type": "string",
                        "description": "The text to put in its place (must differ)",
                    },
                    "replace_all": {
                        "type": "boolean",
                        "default": False,
                        "description": "Replace every occurrence instead of exactly one",
                    },
                },
                "required": ["file_path", "old_string", "new_string"],
                "additionalProperties": False,
            },
        }

    async def execute(self, input: dict[str, Any]) -> ToolResult:
        return await asyncio.to_thread(
            self._edit,
            input["file_path"],
            input["old_string"],
            input["new_string"],
            bool(input.get("replace_all", False)),
        )

    def _edit(self, file_path: str, old: str, new: str, replace_all: bool) -> ToolResult:
        try:  # already done by the registry; repeated so a direct call is just as safe
            path = self.path_validator.validate(file_path, "Edit file_path")
        except SecurityError as exc:
            return error(str(exc))
        shown = self.relative(path)
        if old == "":
            return error(
                "old_string is empty; give the exact text to replace, or use Write to create "
                "or replace a whole file."
            )
        if old == new:
            return error("old_string and new_string are identical, so there is nothing to change.")
        if not os.path.exists(path):
            return error(
                f"File not found: {shown}. Check the path with Glob, or create it with Write."
            )
        if os.path.isdir(path):
            return error(f"{shown} is a directory, not a file; Edit changes a file.")
        if not os.path.isfile(path):
            return error(f"{shown} is not a regular file (a pipe, socket or device); not edited.")
        with open(path, "rb") as handle:
            raw = handle.read()
        if b"\x00" in raw[:8192]:
            return error(f"{shown} is a binary file; Edit only changes text files.")
        # surrogateescape: bytes that are not UTF-8 come back unchanged when written
        text = raw.decode("utf-8", errors="surrogateescape")
        count = text.count(old)
        if count == 0 and "\r\n" in text and "\n" in old and "\r\n" not in old:
            # Read shows a Windows file without its "\r"; match the text the model saw
            crlf_old = old.replace("\n", "\r\n")
            count = text.count(crlf_old)
            if count:
                old, new = crlf_old, new.replace("\r\n", "\n").replace("\n", "\r\n")
        if count == 0:
            return error(
                f"old_string was not found in {shown}; Read the file and copy the text exactly, "
                "including indentation and line breaks (without Read's line numbers)."
            )
        starts = _occurrences(text, old)
        if count > 1 and not replace_all:
            lines = [text.count("\n", 0, start) + 1 for start in starts[:10]]
            where = ", ".join(str(n) for n in lines) + (", ..." if count > 10 else "")
            return error(
                f"old_string occurs {count} times in {shown} (at lines {where}); add surrounding "
                "lines to old_string so that it matches exactly once, or set replace_all to "
                "true to replace every occurrence."
            )
        if not replace_all:
            starts = starts[:1]
        new_text = text.replace(old, new) if replace_all else text.replace(old, new, 1)
        try:
            data = new_text.encode("utf-8", errors="surrogateescape")
        except UnicodeEncodeError as exc:
            return error(f"Cannot edit {shown}: new_string is not valid Unicode ({exc.reason}).")
        _atomic_write(path, data, existed=True)
        # where each replacement sits in the new text
        shift = len(new) - len(old)
        spans = [(at + k * shift, at + k * shift + len(new)) for k, at in enumerate(starts)]
        noun = "occurrence" if len(starts) == 1 else "occurrences"
        header = f"Edited {shown}: replaced {len(starts)} {noun}. The file now reads:"
        return ok(header + "\n" + _snippet(new_text, spans))


def _occurrences(text: str, needle: str) -> list[int]:
    """Start offsets of the non-overlapping occurrences ``str.replace`` would replace."""
    starts = []
    start = text.find(needle)
    while start >= 0:
        starts.append(start)
        start = text.find(needle, start + len(needle))
    return starts


def _snippet(text: str, spans: list[tuple[int, int]]) -> str:
    """Numbered lines around each changed span, merged, with ``...`` between regions."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()  # the final newline ends the last line; it does not start a new one
    total = max(len(lines), 1)
    windows: list[list[int]] = []
    for start, end in spans[:MAX_SNIPPET_REGIONS]:
        first = text.count("\n", 0, start) + 1
        last = text.count("\n", 0, max(end - 1, start)) + 1 if end > start else first
        low = max(first - SNIPPET_CONTEXT_LINES, 1)
        high = min(last + SNIPPET_CONTEXT_LINES, total)
        if windows and low <= windows[-1][1] + 1:
            windows[-1][1] = max(windows[-1][1], high)
        else:
            windows.append([low, high])
    width = len(str(windows[-1][1])) if windows else 1
    out: list[str] = []
    budget = MAX_SNIPPET_LINES
    for index, (low, high) in enumerate(windows):
        if index:
            out.append("...")
        shown_high = min(high, low + budget - 1)
        chunk = [
            (n, _display(lines[n - 1]) if n - 1 < len(lines) else "")
            for n in range(low, shown_high + 1)
        ]
        out.extend(_numbered(chunk, width))
        budget -= len(chunk)
        if shown_high < high or (budget <= 0 and index < len(windows) - 1):
            out.append("[... more changed lines not shown; Read the file to see them all.]")
            break
    if len(spans) > MAX_SNIPPET_REGIONS and budget > 0:
        out.append(f"[... and {len(spans) - MAX_SNIPPET_REGIONS} more replacements.]")
    return "\n".join(out)


def _display(line: str) -> str:
    """A line of surrogate-escaped text as shown to the model (bad bytes as U+FFFD)."""
    return (
        line.removesuffix("\r")
        .encode("utf-8", errors="surrogateescape")
        .decode("utf-8", errors="replace")
    )


# --- glob patterns ---------------------------------------------------------------------

MAX_BRACE_EXPANSIONS = 1024


class GlobError(ValueError):
    """A glob pattern that cannot be parsed (an unclosed ``[`` or ``{``, a dangling ``\\``)."""


def glob_to_regex(glob: str) -> str:
    """The regular expression (for ``re.fullmatch``) of a glob over ``/``-separated paths.

    ripgrep's dialect with literal separators: ``*`` and ``?`` never match ``/``; ``**`` as a
    whole path component matches any number of directories (``**/x``, ``a/**/b``, ``a/**``),
    elsewhere it is ``*``; ``[abc]``, ``[a-z]``, ``[!abc]`` classes; ``{a,b}`` alternatives
    (not nested); ``\\`` escapes the next character. Raises :class:`GlobError`.
    """
    return "(?s:" + _GlobTranslator(glob).translate(in_braces=False) + ")"


@functools.lru_cache(maxsize=256)
def compile_glob(glob: str) -> re.Pattern[str]:
    """:func:`glob_to_regex`, compiled (and cached)."""
    return re.compile(glob_to_regex(glob))


class _GlobTranslator:
    def __init__(self, glob: str) -> None:
        self.glob = glob
        self.i = 0

    def translate(self, in_braces: bool) -> str:
        glob = self.glob
        out: list[str] = []
        while self.i < len(glob):
            char = glob[self.i]
            if in_braces and char in ",}":
                return "".join(out)
            if char == "*":
                out.append(self._stars())
            elif char == "?":
                out.append("[^/]")
                self.i += 1
            elif char == "[":
                out.append(self._char_class())
            elif char == "{":
                if in_braces:
                    raise GlobError("nested alternate groups are not allowed")
                self.i += 1
                alternatives = [self.translate(in_braces=True)]
                while self.i < len(glob) and glob[self.i] == ",":
                    self.i += 1
                    alternatives.append(self.translate(in_braces=True))
                if self.i >= len(glob):
                    raise GlobError("unclosed alternate group; missing '}'")
                self.i += 1  # the "}"
                out.append("(?:" + "|".join(alternatives) + ")")
            elif char == "\\":
                if self.i + 1 >= len(glob):
                    raise GlobError("dangling '\\'")
                out.append(re.escape(glob[self.i + 1]))
                self.i += 2
            else:
                out.append(re.escape(char))
                self.i += 1
        if in_braces:
            raise GlobError("unclosed alternate group; missing '}'")
        return "".join(out)

    def _stars(self) -> str:
        glob = self.glob
        start = self.i
        end = start
        while end < len(glob) and glob[end] == "*":
            end += 1
        self.i = end
        whole_component = (start == 0 or glob[start - 1] == "/") and (
            end == len(glob) or glob[end] == "/"
        )
        if end - start < 2 or not whole_component:
            return "[^/]*"
        if end == len(glob):  # "**" or ".../**": everything below
            return ".*"
        self.i = end + 1  # "**/" at the start or "/**/" inside: zero or more directories
        return "(?:.*/)?"

    def _char_class(self) -> str:
        glob = self.glob
        j = self.i + 1
        negate = j < len(glob) and glob[j] in "!^"
        if negate:
            j += 1
        items: list[str] = []
        first = True
        while j < len(glob) and (glob[j] != "]" or first):
            first = False
            low = glob[j]
            if j + 2 < len(glob) and glob[j + 1] == "-" and glob[j + 2] != "]":
                high = glob[j + 2]
                if low > high:
                    raise GlobError(f"invalid range; '{low}' > '{high}'")
                items.append(f"{re.escape(low)}-{re.escape(high)}")
                j += 3
            else:
                items.append(re.escape(low))
                j += 1
        if j >= len(glob):
            raise GlobError("unclosed character class; missing ']'")
        self.i = j + 1
        if negate:
            return "[^/" + "".join(items) + "]"
        return "[" + "".join(items) + "]"


def expand_braces(pattern: str) -> list[str]:
    """Every pattern a ``{a,b}`` pattern stands for (nesting allowed), in order.

    ``src/{a,b}/*.{py,md}`` gives four patterns. A ``\\``-escaped brace stays as it is.
    """
    start = _find_unescaped(pattern, "{", 0)
    if start < 0:
        return [pattern]
    depth = 0
    parts: list[str] = []
    piece_start = start + 1
    index = start
    while index < len(pattern):
        char = pattern[index]
        if char == "\\":
            index += 2
            continue
        if char == "{":
            depth += 1
        elif char == "}":
            depth -= 1
            if depth == 0:
                parts.append(pattern[piece_start:index])
                break
        elif char == "," and depth == 1:
            parts.append(pattern[piece_start:index])
            piece_start = index + 1
        index += 1
    else:
        raise GlobError("unclosed alternate group; missing '}'")
    head, tail = pattern[:start], pattern[index + 1 :]
    results: list[str] = []
    for part in parts:
        for expanded in expand_braces(head + part + tail):
            results.append(expanded)
            if len(results) > MAX_BRACE_EXPANSIONS:
                raise GlobError(f"the {{...}} alternatives expand to over {MAX_BRACE_EXPANSIONS}")
    return results


def _find_unescaped(text: str, char: str, start: int) -> int:
    index = start
    while index < len(text):
        if text[index] == "\\":
            index += 2
            continue
        if text[index] == char:
            return index
        index += 1
    return -1


# --- Glob ------------------------------------------------------------------------------

MAX_GLOB_RESULTS = 1000
_GLOB_SPECIAL = frozenset("*?[{\\")


@dataclass(frozen=True, slots=True)
class _Segment:
    """One ``/``-separated part of a pattern."""

    text: str
    regex: re.Pattern[str] | None  # None: a literal name
    recursive: bool = False  # "**"

    @property
    def matches_hidden(self) -> bool:
        return self.text.startswith(".")


class GlobTool(BaseTool):
    """Find workspace files by name pattern, newest first.

    ``**`` matches any number of directories. Only files are listed (not directories), by
    modification time, newest first, at most ``max_results`` with a note saying how many
    were left out; paths are relative to the workspace. Names starting with ``.`` (hidden
    files and directories such as ``.git``) are matched only by a pattern part that starts
    with ``.`` (``.github/**/*.yml``, ``**/.env``), and ``**`` does not enter hidden
    directories. ``.gitignore`` is not applied: build outputs and data files are found too.
    ``**`` does not follow symbolic links to directories; links that point outside the
    workspace are never followed or listed. The pattern cannot name a place outside the
    workspace: ``..`` parts are refused, and an absolute pattern must start inside it (it
    then takes the place of ``path``).
    """

    path_params = ("path",)

    def __init__(
        self, workspace_dir: str | os.PathLike[str], *, max_results: int = MAX_GLOB_RESULTS
    ) -> None:
        super().__init__(workspace_dir)
        self.max_results = max_results

    @property
    def name(self) -> str:
        return "Glob"

    @property
    def schema(self) -> dict[str, Any]:
        return {
            "name": "Glob",
            "description": (
                "Find files by name with a glob pattern such as `**/*.py` or "
                "`src/**/*.{ts,tsx}` (`**` matches any number of directories). Returns file "
                f"paths relative to the workspace, newest first, at most {self.max_results:,}. "
                "Hidden names (starting with '.') are matched only by a pattern part that "
                "starts with '.', e.g. `**/.env`; .gitignore is not applied. To search file "
                "contents use Grep."
            ),
            "input_schema": {
                "type": "object",
                "properties": {
                    "pattern": {
                        "type": "string",
                        "minLength": 1,
                        "description": "The glob pattern, relative to `path`",
                    },
                    "path": {
                        "type": "string",
                        "description": "Directory to search in (default: the workspace)",
                    },
                },
                "required": ["pattern"],
                "additionalProperties": False,
            },
        }

    async def execute(self, input: dict[str, Any]) -> ToolResult:
        return await asyncio.to_thread(self._glob, input["pattern"], input.get("path"))

    def _glob(self, pattern: str, path: str | None) -> ToolResult:
        try:  # already done by the registry; repeated so a direct call is just as safe
            base = self.path_validator.validate(path if path else ".", "Glob path")
            expanded = expand_braces(pattern)
            plans = [self._plan(one, base, pattern) for one in expanded]
        except SecurityError as exc:
            return error(str(exc))
        except GlobError as exc:
            return error(f"Invalid glob pattern {pattern!r}: {exc}.")
        shown_base = self.relative(base)
        if not os.path.exists(base):
            return error(f"Path not found: {shown_base}. Give an existing directory as path.")
        if not os.path.isdir(base):
            return error(
                f"{shown_base} is a file, not a directory; give a directory as path "
                "(or put the file name in the pattern)."
            )
        found: dict[str, float] = {}
        for root, segments in plans:
            self._collect(root, segments, found)
        if not found:
            where = "the workspace" if shown_base == "." else shown_base
            return ok(f"No files found matching {pattern!r} in {where}.")
        ordered = sorted(found.items(), key=lambda item: (-item[1], item[0]))
        lines = [self.relative(file) for file, _ in ordered[: self.max_results]]
        if len(ordered) > self.max_results:
            lines.append(
                f"\n[Showing the {self.max_results:,} most recently modified of "
                f"{len(ordered):,} matching files; {len(ordered) - self.max_results:,} were "
                "left out. Use a more specific pattern or path to see them.]"
            )
        return ok("\n".join(lines))

    def _plan(self, pattern: str, base: str, original: str) -> tuple[str, list[_Segment]]:
        """The resolved directory to start from and the pattern parts left to match."""
        if "\x00" in pattern:
            raise SecurityError("Access denied: the Glob pattern contains a NUL byte.")
        parts = [part for part in pattern.split("/") if part not in ("", ".")]
        if ".." in parts:
            raise SecurityError(
                f"Access denied: the Glob pattern {original!r} contains '..', which could "
                "reach outside the workspace; give a pattern below the workspace, and a path "
                "to start from if needed."
            )
        literal: list[str] = []
        while parts and not _GLOB_SPECIAL.intersection(parts[0]):
            literal.append(parts.pop(0))
        start = os.path.join("/" if pattern.startswith("/") else base, *literal)
        root = self.path_validator.validate(start, "Glob pattern")  # realpath, inside
        segments: list[_Segment] = []
        for part in parts:
            if part == "**":
                if not (segments and segments[-1].recursive):
                    segments.append(_Segment(part, None, recursive=True))
            elif _GLOB_SPECIAL.intersection(part):
                segments.append(_Segment(part, compile_glob(part)))
            else:
                segments.append(_Segment(part, None))
        return root, segments

    def _collect(self, directory: str, segments: list[_Segment], found: dict[str, float]) -> None:
        if not segments:  # the whole pattern was a literal path
            self._add_file(directory, found)
            return
        segment, rest = segments[0], segments[1:]
        if segment.recursive:
            if not rest:
                for file in self._walk_files(directory):
                    self._add_file(file, found)
                return
            self._collect(directory, rest, found)
            for sub in self._real_subdirectories(directory):
                self._collect(sub, segments, found)
            return
        if segment.regex is None:  # a literal name: no need to list the directory
            candidate = os.path.join(directory, segment.text)
            if os.path.islink(candidate) and not self.path_validator.is_inside(candidate):
                return
            if not rest:
                self._add_file(candidate, found)
            elif os.path.isdir(candidate):
                self._collect(candidate, rest, found)
            return
        for entry in _scan(directory):
            if entry.name.startswith(".") and not segment.matches_hidden:
                continue
            if not segment.regex.fullmatch(entry.name):
                continue
            if entry.is_symlink() and not self.path_validator.is_inside(entry.path):
                continue
            if not rest:
                self._add_file(entry.path, found)
            elif _is_dir(entry):
                self._collect(entry.path, rest, found)

    def _walk_files(self, directory: str) -> Iterator[str]:
        """Every non-hidden file below ``directory``; symlinked directories are not entered."""
        pending = [directory]
        while pending:
            for entry in _scan(pending.pop()):
                if entry.name.startswith("."):
                    continue
                if entry.is_symlink():
                    if self.path_validator.is_inside(entry.path):
                        yield entry.path  # _add_file keeps it only if it is a file
                elif _is_dir(entry):
                    pending.append(entry.path)
                else:
                    yield entry.path

    def _real_subdirectories(self, directory: str) -> Iterator[str]:
        for entry in _scan(directory):
            if not entry.name.startswith(".") and not entry.is_symlink() and _is_dir(entry):
                yield entry.path

    def _add_file(self, path: str, found: dict[str, float]) -> None:
        if path in found:
            return
        try:
            info = os.stat(path)  # follows a link, already known to stay inside
        except OSError:
            return
        if stat.S_ISREG(info.st_mode) and self.path_validator.is_inside(path):
            found[path] = info.st_mtime


def _scan(directory: str) -> list[os.DirEntry[str]]:
    """The entries of a directory; none when it cannot be read."""
    try:
        with os.scandir(directory) as entries:
            return list(entries)
    except OSError:
        return []


def _is_dir(entry: os.DirEntry[str]) -> bool:
    try:
        return entry.is_dir()
    except OSError:
        return False
