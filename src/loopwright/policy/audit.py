"""An append-only JSON Lines audit log of every tool call in a session.

One line per call, written when the call ends (whether it ran, failed or was refused)::

    {"time": "2025-05-01T12:00:00.123+00:00", "session_id": "3f2a...", "tool_call_id": "toolu_1",
     "tool": "Bash", "kind": "execute", "input": {"command": "git status"},
     "decision": "allow", "decided_by": "rule:allow:Bash(git *)", "reason": "",
     "approved_by": null, "executed": true, "is_error": false, "duration_ms": 12.5,
     "result": {"chars": 120, "preview": "On branch main..."}}

``input`` and ``result.preview`` are redacted when the policy redacts, and long strings are
cut, except the call's primary argument (the SQL of ``SQL``, the code of ``Python``, the command
of ``Bash``: what ran), kept whole up to :data:`MAX_PRIMARY_STRING` characters. What the tool
reported about the call beyond its text (its ``metadata``: the rows and bytes a query read, a
cohort's SQL, parameters and counts, a command's exit code) is kept as ``result.metadata``,
redacted and cut the same way; values under credential names (``set-cookie``,
``authorization``, ``api_key``...: response headers the tool kept from the model) are always
replaced by a ``[REDACTED:<name>]`` marker. ``decision`` is ``allow``, ``deny`` or ``ask``
(an ``ask`` that was answered is recorded with the answer as ``allow``/``deny`` and
``approved_by`` naming who answered).

Each line is written with a single ``write`` on a file opened in append mode, so lines from
concurrent calls never interleave. Writing never breaks a tool call: if the log cannot be
written, the call goes on, a warning is logged once, and :attr:`AuditLog.error` says why.
The default location is ``.loopwright/audit.jsonl`` inside the workspace, where the agent's
own tools could reach it; for a log the agent cannot tamper with, give a path outside the
workspace (``{session_id}`` in the path is replaced by the session's id).
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from typing import Any

from loopwright.policy.redaction import is_secret_name

logger = logging.getLogger("loopwright.policy.audit")

DEFAULT_AUDIT_PATH = os.path.join(".loopwright", "audit.jsonl")
#: Strings in logged inputs are cut to this many characters.
MAX_INPUT_STRING = 2000
#: The call's primary argument (SQL, code, command) is kept whole up to this many characters.
MAX_PRIMARY_STRING = 100_000
#: Characters of the result kept as a preview.
PREVIEW_CHARS = 300


class AuditLog:
    """Appends one JSON object per line to ``path`` (created with its directory, mode 0600)."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        #: why the last write failed, or ``None`` while the log is healthy
        self.error: str | None = None
        self._warned = False

    def write(self, record: dict[str, Any]) -> bool:
        """Append ``record`` as one line; ``False`` (and a warning, once) if it could not be."""
        try:
            line = json.dumps(record, ensure_ascii=False, default=str) + "\n"
            data = line.encode("utf-8", errors="surrogateescape")
            directory = os.path.dirname(self.path)
            if directory:
                os.makedirs(directory, exist_ok=True)
            descriptor = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                written = os.write(descriptor, data)
            finally:
                os.close(descriptor)
            if written != len(data):
                raise OSError(f"only {written} of {len(data)} bytes were written")
        except (OSError, ValueError, TypeError, UnicodeError) as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            if not self._warned:
                self._warned = True
                logger.warning(
                    "The audit log %s cannot be written (%s); tool calls go on without it.",
                    self.path,
                    self.error,
                )
            return False
        self.error = None
        return True

    def read(self) -> list[dict[str, Any]]:
        """Every record in the log, oldest first (for tests and inspection tools)."""
        try:
            with open(self.path, encoding="utf-8") as handle:
                return [json.loads(line) for line in handle if line.strip()]
        except FileNotFoundError:
            return []

    def __repr__(self) -> str:
        return f"AuditLog({self.path!r})"


def timestamp() -> str:
    """The current UTC time, ISO 8601 with milliseconds."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def cut_strings(value: Any, limit: int = MAX_INPUT_STRING) -> Any:
    """A JSON-like value with every string longer than ``limit`` cut, noting how much."""
    if isinstance(value, str):
        if len(value) <= limit:
            return value
        return f"{value[:limit]}... [{len(value) - limit:,} more characters]"
    if isinstance(value, dict):
        return {key: cut_strings(item, limit) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [cut_strings(item, limit) for item in value]
    return value


def cut_input(value: Any, primary: str | None) -> Any:
    """A call's input for the log: strings cut at :data:`MAX_INPUT_STRING`, but the
    ``primary`` argument's (what ran: the SQL, the code, the command) only at
    :data:`MAX_PRIMARY_STRING`, so the log says what was run, not its first lines."""
    if primary is None or not isinstance(value, dict) or primary not in value:
        return cut_strings(value)
    return {
        key: cut_strings(item, MAX_PRIMARY_STRING if key == primary else MAX_INPUT_STRING)
        for key, item in value.items()
    }


#: Names of headers that carry credentials, beyond what :func:`is_secret_name` recognises.
_CREDENTIAL_NAMES = frozenset({"AUTHORIZATION", "PROXY_AUTHORIZATION", "SET_COOKIE", "COOKIE"})


def without_credentials(value: Any) -> Any:
    """A JSON-like value with what is under a credential's name (``set-cookie``,
    ``Authorization``, ``api_key``...) replaced by ``[REDACTED:<name>]``: tools report
    response headers in their metadata that they never showed the model."""
    if isinstance(value, dict):
        return {
            key: f"[REDACTED:{key}]" if _is_credential(key) else without_credentials(item)
            for key, item in value.items()
        }
    if isinstance(value, list | tuple):
        return [without_credentials(item) for item in value]
    return value


def _is_credential(key: Any) -> bool:
    if not isinstance(key, str):
        return False
    name = key.upper().replace("-", "_")
    return name in _CREDENTIAL_NAMES or is_secret_name(name)


def result_summary(content: Any) -> dict[str, Any]:
    """Size and start of a result's content, for the log."""
    if isinstance(content, str):
        text = content
        images = 0
    else:
        parts: list[str] = []
        images = 0
        for block in content if isinstance(content, list) else ():
            block_text = getattr(block, "text", None)
            if isinstance(block_text, str):
                parts.append(block_text)
            else:
                images += 1
        text = "\n".join(parts)
    summary: dict[str, Any] = {"chars": len(text), "preview": text[:PREVIEW_CHARS]}
    if images:
        summary["images"] = images
    return summary
