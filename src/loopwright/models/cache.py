"""An opt-in response cache: the same request gets the same answer, from disk, for free.

``CachedModel(model, path)`` keys every request by a hash of exactly what the model would
see: the model's name, the system prompt, the messages, the tool schemas and the generation
parameters (``max_tokens``, ``temperature``, ``tool_choice``, ``response_format``,
``stop``). ``metadata`` and the agent's token estimate are not part of the key. On a hit the
recorded stream is replayed (the same text and thinking deltas, then the same final
response); on a miss the wrapped model answers and its complete turn is stored. Failed or
interrupted turns are never stored.

It is meant for development and evaluation reruns: a rerun of the same task replays what
the model said, without the network, the cost or the variance. A hit reports the recorded
token counts (so token budgets behave as they did) at a cost of $0 (nothing was spent).
The cache is one SQLite file, safe to share between processes.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import closing
from pathlib import Path
from typing import Any

from loopwright.events import TextDelta, Usage
from loopwright.messages import Message
from loopwright.models.base import (
    Model,
    ModelEvent,
    ModelRequest,
    ModelResponse,
    RetryNotice,
    ThinkingDelta,
)
from loopwright.models.retry import close_stream

__all__ = ["CachedModel", "request_key"]

#: Bump when the key or the stored form changes, so old entries are not misread.
_FORMAT = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY,
    model TEXT NOT NULL,
    created REAL NOT NULL,
    events TEXT NOT NULL
)
"""


def request_key(model_name: str, request: ModelRequest) -> str:
    """The cache key of ``request`` sent to the model called ``model_name`` (a SHA-256)."""
    data = {
        "format": _FORMAT,
        "model": model_name,
        "system": request.system,
        "messages": [message.to_dict() for message in request.messages],
        "tools": list(request.tools),
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "tool_choice": request.tool_choice,
        "response_format": request.response_format,
        "stop": list(request.stop),
    }
    canonical = json.dumps(
        data, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=str
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class CachedModel(Model):
    """A model whose answers are cached on disk, keyed by the exact request.

    ``name``, ``context_window`` are the wrapped model's. ``pricing`` is ``None``: a fresh
    answer's cost is computed with the wrapped model's prices, a cached one costs 0.
    ``hits`` and ``misses`` count lookups since the model was created.
    """

    def __init__(self, model: Model, path: str | os.PathLike[str]) -> None:
        #: The wrapped model.
        self.model = model
        self.path = Path(path)
        self.pricing = None
        self.hits = 0
        self.misses = 0
        self._ready = False

    @property
    def name(self) -> str:
        """The wrapped model's name."""
        return self.model.name

    @name.setter
    def name(self, value: str) -> None:
        self.model.name = value

    @property
    def context_window(self) -> int:
        """The wrapped model's context window."""
        return self.model.context_window

    @context_window.setter
    def context_window(self, value: int) -> None:
        self.model.context_window = value

    def key(self, request: ModelRequest) -> str:
        """The cache key of ``request`` for this model."""
        return request_key(self.model.name, request)

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        """Replay the cached turn for ``request``, or stream the wrapped model's and store it."""
        key = self.key(request)
        stored = await asyncio.to_thread(self._load, key)
        if stored is not None:
            self.hits += 1
            for event in _decode(stored):
                yield event
            return
        self.misses += 1
        deltas: list[TextDelta | ThinkingDelta] = []
        events = self.model.stream(request)
        try:
            async for event in events:
                if isinstance(event, TextDelta | ThinkingDelta):
                    deltas.append(event)
                elif isinstance(event, RetryNotice) and event.discard_partial:
                    deltas.clear()  # the turn restarted: only the final attempt is stored
                elif isinstance(event, ModelResponse):
                    usage = event.usage
                    if usage.cost_usd == 0.0 and self.model.pricing is not None:
                        usage.cost_usd = self.model.pricing.cost(usage)
                    await asyncio.to_thread(self._store, key, _encode(deltas, event))
                yield event
        finally:
            await close_stream(events)

    def clear(self) -> None:
        """Remove every cached answer."""
        with closing(self._connect()) as db, db:
            db.execute("DELETE FROM responses")

    def __len__(self) -> int:
        with closing(self._connect()) as db:
            row = db.execute("SELECT COUNT(*) FROM responses").fetchone()
        return int(row[0])

    async def aclose(self) -> None:
        """Close the wrapped model."""
        await self.model.aclose()

    # --- storage ------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if not self._ready:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        db = sqlite3.connect(self.path, timeout=30)
        if not self._ready:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute(_SCHEMA)
            db.commit()
            self._ready = True
        return db

    def _load(self, key: str) -> str | None:
        with closing(self._connect()) as db:
            row = db.execute("SELECT events FROM responses WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def _store(self, key: str, events: str) -> None:
        with closing(self._connect()) as db, db:
            db.execute(
                "INSERT OR REPLACE INTO responses (key, model, created, events) "
                "VALUES (?, ?, ?, ?)",
                (key, self.model.name, time.time(), events),
            )


def _encode(deltas: list[TextDelta | ThinkingDelta], response: ModelResponse) -> str:
    items: list[dict[str, Any]] = []
    for delta in deltas:
        if isinstance(delta, TextDelta):
            items.append({"type": "text", "text": delta.text})
        else:
            items.append({"type": "thinking", "thinking": delta.thinking})
    items.append(
        {
            "type": "response",
            "message": response.message.to_dict(),
            "stop_reason": response.stop_reason,
            "usage": response.usage.to_dict(),
        }
    )
    return json.dumps(items, ensure_ascii=False)


def _decode(stored: str) -> list[ModelEvent]:
    events: list[ModelEvent] = []
    for item in json.loads(stored):
        kind = item["type"]
        if kind == "text":
            events.append(TextDelta(item["text"]))
        elif kind == "thinking":
            events.append(ThinkingDelta(item["thinking"]))
        else:
            usage = Usage.from_dict(item["usage"])
            usage.cost_usd = 0.0  # a cached answer costs nothing
            message = Message.from_dict(item["message"])
            events.append(ModelResponse(message, item["stop_reason"], usage))
    return events
