"""``Memory``: long-term memory the model reads and writes across sessions.

One tool with an ``action``: ``remember`` a fact, ``recall`` the facts relevant to a query,
``list`` the latest ones, ``forget`` some by id. Memories live in a
:class:`~loopwright.memory.MemoryBank` (SQLite, ``<LOOPWRIGHT_HOME>/memory.db`` by default)
under the scope the tool is configured with (a user, ``"user:ada"``, or a project,
``"project:falcon"``): the model cannot choose or cross scopes. Each memory records the
session that stated it::

    from loopwright import Agent
    from loopwright.tools.memory import MemoryTools

    memory = MemoryTools(scope="user:ada")  # the default file; or MemoryTools(bank, ...)
    agent = Agent(model, tools=[memory])
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable
from typing import Any

from loopwright.memory.embeddings import EmbeddingFunction
from loopwright.memory.store import (
    DEFAULT_SCOPE,
    MAX_LIMIT,
    Memory,
    MemoryBank,
    Remembered,
    checked_scope,
)
from loopwright.tools.base import BaseTool, ToolResult, Toolset, error, ok

ACTIONS = ("remember", "recall", "list", "forget")
DEFAULT_RECALL_LIMIT = 5
DEFAULT_LIST_LIMIT = 20

BankSource = MemoryBank | Callable[[], MemoryBank] | None


class MemoryTool(BaseTool):
    """The ``Memory`` tool for one session.

    ``bank`` is a :class:`MemoryBank`, a function that makes one (called once, in a worker
    thread, on first use), or ``None`` for the default file; a bank made here is closed with
    the tool, a given one is not. ``scope`` is where this tool's memories live.
    """

    sequential = True  # remember/forget in the model's order

    def __init__(
        self,
        workspace_dir: str | os.PathLike[str],
        *,
        bank: BankSource = None,
        scope: str = DEFAULT_SCOPE,
        session_id: str | None = None,
    ) -> None:
        super().__init__(workspace_dir)
        self.scope = checked_scope(scope)
        self.session_id = session_id
        self._bank: MemoryBank | None = None
        self._make_bank: Callable[[], MemoryBank] | None = None
        self._owns_bank = bank is None
        if isinstance(bank, MemoryBank):
            self._bank = bank
        elif bank is None:
            self._make_bank = MemoryBank
        else:
            self._make_bank = bank

    @property
    def name(self) -> str:
        return "Memory"

    @property
    def schema(self) -> dict[str, Any]:
        return {
            "name": "Memory",
            "description": (
                "Long-term memory that persists across sessions. Actions: 'remember' saves one "
                "self-contained fact (`text`, optional `kind` such as preference, fact or "
                "instruction, and `tags`); near-identical facts are merged, the newer wording "
                "kept. 'recall' returns the memories most relevant to `query`. 'list' shows "
                "the latest memories. 'forget' deletes memories by `ids` (the #numbers shown "
                "by recall and list). Recall before asking the user something they may have "
                "told you before; remember lasting facts and preferences, not passing details."
            ),
            "input_schema": {
                "type": "object",
                "properties": {
                    "action": {"type": "string", "enum": list(ACTIONS)},
                    "text": {
                        "type": "string",
                        "description": "remember: the fact, as one self-contained sentence",
                    },
                    "query": {
                        "type": "string",
                        "description": "recall: what to look for, in words the memory may use",
                    },
                    "ids": {
                        "type": "array",
                        "items": {"type": "integer"},
                        "minItems": 1,
                        "description": "forget: the ids of the memories to delete",
                    },
                    "kind": {
                        "type": "string",
                        "description": (
                            "remember: what sort of memory (preference, fact, instruction, "
                            "event...); recall/list: only memories of this kind"
                        ),
                    },
                    "tags": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": "remember: labels to file it under; recall: any of these",
                    },
                    "limit": {
                        "type": "integer",
                        "minimum": 1,
                        "maximum": MAX_LIMIT,
                        "description": (
                            f"recall/list: how many to return (default {DEFAULT_RECALL_LIMIT} "
                            f"for recall, {DEFAULT_LIST_LIMIT} for list)"
                        ),
                    },
                },
                "required": ["action"],
                "additionalProperties": False,
            },
        }

    async def bank(self) -> MemoryBank:
        """The bank, opened on first use."""
        if self._bank is None:
            assert self._make_bank is not None
            self._bank = await asyncio.to_thread(self._make_bank)
        return self._bank

    async def execute(self, input: dict[str, Any]) -> ToolResult:
        action = input["action"]
        try:
            if action == "remember":
                return await self._remember(input)
            if action == "recall":
                return await self._recall(input)
            if action == "list":
                return await self._list(input)
            return await self._forget(input)
        except ValueError as exc:
            return error(str(exc))

    async def _remember(self, input: dict[str, Any]) -> ToolResult:
        text = input.get("text")
        if not isinstance(text, str) or not text.strip():
            return error("remember needs `text`: the fact to keep, as one sentence.")
        bank = await self.bank()
        result = await bank.remember(
            text,
            scope=self.scope,
            kind=input.get("kind"),
            tags=input.get("tags") or (),
            session_id=self.session_id,
        )
        return ok(_remembered(result), memory_id=result.memory.id)

    async def _recall(self, input: dict[str, Any]) -> ToolResult:
        query = input.get("query")
        if not isinstance(query, str) or not query.strip():
            return error("recall needs `query`: the words to look for.")
        bank = await self.bank()
        hits = await bank.recall(
            query,
            scope=self.scope,
            limit=input.get("limit") or DEFAULT_RECALL_LIMIT,
            kind=input.get("kind"),
            tags=input.get("tags") or (),
        )
        if not hits:
            return ok(f"No memories match {query!r}. Try other words, or 'list' to see the latest.")
        lines = [f"{len(hits)} {_memories(len(hits))} for {query!r}, most relevant first:"]
        lines += [_line(hit.memory) for hit in hits]
        return ok("\n".join(lines), memory_ids=[hit.memory.id for hit in hits])

    async def _list(self, input: dict[str, Any]) -> ToolResult:
        bank = await self.bank()
        kind = input.get("kind")
        memories = await bank.recent(
            scope=self.scope, limit=input.get("limit") or DEFAULT_LIST_LIMIT, kind=kind
        )
        total = await bank.count(scope=self.scope)
        if not memories:
            return ok("No memories yet." if total == 0 else f"No memories of kind {kind!r}.")
        shown = f"{len(memories)} of {total}" if total > len(memories) else f"All {total}"
        lines = [f"{shown} {_memories(total)}, newest first:"]
        lines += [_line(memory) for memory in memories]
        return ok("\n".join(lines), memory_ids=[memory.id for memory in memories])

    async def _forget(self, input: dict[str, Any]) -> ToolResult:
        ids = input.get("ids")
        if not ids:
            return error("forget needs `ids`: the #numbers of the memories, from recall or list.")
        bank = await self.bank()
        deleted = await bank.forget(ids, scope=self.scope)
        missing = [i for i in dict.fromkeys(ids) if i not in deleted]
        parts: list[str] = []
        if deleted:
            parts.append(f"Forgot {_ids(deleted)}.")
        if missing:
            parts.append(
                f"No memory {_ids(missing)} here (already forgotten, or never stored); "
                "use recall or list to see the ids."
            )
        result = " ".join(parts)
        return ok(result, forgotten=deleted) if deleted else error(result)

    async def aclose(self) -> None:
        if self._owns_bank and self._bank is not None:
            await self._bank.aclose()
            self._bank = None


class MemoryTools(Toolset):
    """``Memory`` for each session, all sharing one bank and scope.

    ``bank`` is a :class:`MemoryBank`, a path to its file, or ``None`` for the default file
    (opened on first use, with ``embedder`` for vector search). A bank opened here stays open
    for the toolset's life; :meth:`close` closes it.
    """

    def __init__(
        self,
        bank: MemoryBank | str | os.PathLike[str] | None = None,
        *,
        scope: str = DEFAULT_SCOPE,
        embedder: EmbeddingFunction | None = None,
    ) -> None:
        self.scope = checked_scope(scope)
        self.embedder = embedder
        self._bank = bank if isinstance(bank, MemoryBank) else None
        self._path = None if isinstance(bank, MemoryBank) else bank
        self._owns_bank = self._bank is None
        if self._bank is not None and embedder is not None:
            raise ValueError("give the embedder to the MemoryBank itself when you pass a bank")
        self._lock = threading.Lock()

    def shared_bank(self) -> MemoryBank:
        """The bank every session's tool uses (opened on first call)."""
        with self._lock:
            if self._bank is None:
                self._bank = MemoryBank(self._path, embedder=self.embedder)
            return self._bank

    def bind(self, workspace_dir: str, session_id: str | None = None) -> list[BaseTool]:
        return [
            MemoryTool(
                workspace_dir,
                bank=self._bank or self.shared_bank,
                scope=self.scope,
                session_id=session_id,
            )
        ]

    def close(self) -> None:
        """Close the bank if this toolset opened it (a bank you gave is yours to close)."""
        with self._lock:
            if self._bank is not None and self._owns_bank:
                self._bank.close()
                self._bank = None

    async def aclose(self) -> None:
        """Called when the agent closes: the same as :meth:`close`."""
        self.close()


# --- rendering ---------------------------------------------------------------------------


def _remembered(result: Remembered) -> str:
    memory = result.memory
    if result.created:
        text = f"Remembered as #{memory.id}."
    elif result.previous_text is not None:
        text = (
            f"Updated #{memory.id}, which was near-identical (it said: "
            f"{result.previous_text!r}); the new wording is kept."
        )
    else:
        text = f"Already remembered as #{memory.id}; marked as stated again."
    if result.vector_error:
        text += (
            " It is found by keyword for now: its embedding failed "
            f"({result.vector_error}) and is retried later."
        )
    return text


def _line(memory: Memory) -> str:
    details = [time.strftime("%Y-%m-%d", time.localtime(memory.updated_at))]
    if memory.tags:
        details.insert(0, "tags: " + ", ".join(memory.tags))
    kind = f"[{memory.kind}] " if memory.kind != "note" else ""
    return f"#{memory.id} {kind}{memory.text} ({'; '.join(details)})"


def _memories(count: int) -> str:
    return "memory" if count == 1 else "memories"


def _ids(ids: list[int]) -> str:
    labels = [f"#{i}" for i in ids]
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + " and " + labels[-1]
