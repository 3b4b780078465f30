"""Tool kinds: what a tool does, as far as permissions and output handling care.

``read`` (looks, changes nothing), ``write`` (changes files), ``execute`` (runs commands or
code), ``network`` (talks to other machines), ``internal`` (changes only the agent's own session
state, such as its todo list) or ``other`` (not known, so treated as possibly changing things).

A tool's kind comes from, in order: the policy's ``kinds`` table, the tool's own ``kind``
attribute (a string class attribute on a ``BaseTool`` subclass), :data:`BUILTIN_KINDS`, and
``other``. This module is imported by the registry on every start-up, so it stays tiny.
"""

from __future__ import annotations

from typing import Any, Literal, TypeAlias

ToolKind: TypeAlias = Literal["read", "write", "execute", "network", "internal", "other"]

TOOL_KINDS: tuple[ToolKind, ...] = ("read", "write", "execute", "network", "internal", "other")

#: The kind of each built-in tool.
BUILTIN_KINDS: dict[str, ToolKind] = {
    "Read": "read",
    "Glob": "read",
    "Grep": "read",
    "BashOutput": "read",
    "Search": "read",
    "Consult": "read",
    "SQL": "read",
    "Write": "write",
    "Edit": "write",
    "Memory": "write",
    "Bash": "execute",
    "Python": "execute",
    "KillShell": "execute",
    "HTTP": "network",
    "TodoWrite": "internal",
    "Delegate": "internal",
}

#: Kinds whose output is stripped of terminal control sequences by default: what programs
#: print (commands, code, web responses, unknown tools). File contents (``read``) are left
#: exact, so the model can quote them back to ``Edit``.
SANITIZED_KINDS: frozenset[ToolKind] = frozenset({"execute", "network", "other"})


def declared_kind(tool_name: str, tool: Any = None) -> ToolKind:
    """The kind a tool declares (``kind`` attribute) or, for a built-in, its listed kind."""
    declared = getattr(tool, "kind", None)
    if isinstance(declared, str) and declared in TOOL_KINDS:
        return declared
    return BUILTIN_KINDS.get(tool_name, "other")
