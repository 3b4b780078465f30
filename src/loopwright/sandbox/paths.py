"""Path validation: every path a tool touches must resolve inside the workspace."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterable
from typing import Any


class SecurityError(Exception):
    """A tool input tried to reach outside what the agent is allowed to touch."""


class PathValidator:
    """Resolves paths against a workspace and refuses anything that escapes it.

    Relative paths are taken from the workspace; ``..`` and symlinks are resolved
    (``realpath``) before the check, so a link pointing outside is refused too.
    """

    def __init__(self, workspace_dir: str | os.PathLike[str]) -> None:
        self.workspace_dir = os.path.realpath(os.fspath(workspace_dir))
        # "/ws/" rather than "/ws": "/ws2/file" shares the prefix "/ws" but is outside
        self._prefix = os.path.join(self.workspace_dir, "")

    def validate(self, path: str | os.PathLike[str], operation: str = "access") -> str:
        """Return the absolute, resolved path, or raise :class:`SecurityError`."""
        try:
            raw = os.fspath(path)
        except TypeError:
            raise SecurityError(
                f"Access denied: {operation} needs a path string, got {type(path).__name__}"
            ) from None
        if not isinstance(raw, str) or not raw:
            raise SecurityError(f"Access denied: {operation} needs a non-empty path")
        if "\x00" in raw:
            raise SecurityError(f"Access denied: {operation} path contains a NUL byte")
        expanded = raw if os.path.isabs(raw) else os.path.join(self.workspace_dir, raw)
        resolved = os.path.realpath(expanded)
        if resolved != self.workspace_dir and not resolved.startswith(self._prefix):
            raise SecurityError(
                f"Access denied: {operation} outside the workspace. Path: {raw} -> {resolved}. "
                f"Use a path inside {self.workspace_dir}."
            )
        return resolved

    def is_inside(self, path: str | os.PathLike[str]) -> bool:
        """Whether ``path`` resolves inside the workspace."""
        try:
            self.validate(path)
        except SecurityError:
            return False
        return True


def create_path_validation_prehook(
    workspace_dir: str | os.PathLike[str],
    params: Iterable[str] = ("file_path", "path"),
) -> Callable[[dict[str, Any]], Awaitable[None]]:
    """Make a prehook that validates (and normalises in place) the named path parameters.

    Built-in tools validate their own path parameters already; this is for your own tools,
    e.g. ``registry.set_prehook("MyTool", create_path_validation_prehook(workspace))``.
    """
    validator = PathValidator(workspace_dir)
    names = tuple(params)

    async def prehook(input: dict[str, Any]) -> None:
        for name in names:
            value = input.get(name)
            if isinstance(value, str):
                input[name] = validator.validate(value)

    return prehook
