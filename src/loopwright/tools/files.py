"""File tools: ``Read`` and ``Write`` (``Edit``, ``Glob`` and ``Grep`` build on these).

Every path parameter is validated against the workspace by the registry (``path_params``)
before the tool runs, so ``execute`` only ever sees resolved paths inside the workspace.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import tempfile
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
        descriptor, temp_path = tempfile.mkstemp(prefix=".write-", dir=directory)
        try:
            with os.fdopen(descriptor, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            if existed:
                os.chmod(temp_path, os.stat(path).st_mode & 0o7777)
            else:
                os.chmod(temp_path, 0o644)
            os.replace(temp_path, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(temp_path)
            raise
        verb = "Overwrote" if existed else "Created"
        lines = content.count("\n") + (1 if content and not content.endswith("\n") else 0)
        return ok(f"{verb} {shown} ({len(data):,} bytes, {lines} lines).")
