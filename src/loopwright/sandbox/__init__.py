"""Keeping agents inside their workspace: path validation (and, later, process sandboxes)."""

from loopwright.sandbox.paths import PathValidator, SecurityError, create_path_validation_prehook

__all__ = ["PathValidator", "SecurityError", "create_path_validation_prehook"]
