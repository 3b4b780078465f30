"""A session: one conversation, its workspace directory, its usage, persisted after every step."""

from __future__ import annotations

import os
import re
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from loopwright.events import Usage
from loopwright.messages import ContentBlock, Message, ToolResultBlock

if TYPE_CHECKING:
    from loopwright.sessions.store import SessionStore

_SESSION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")

INTERRUPTED = (
    "Tool call interrupted: the run stopped ({why}) before {name} finished. It may or may not "
    "have taken effect; check before repeating it."
)


def validate_session_id(session_id: str) -> str:
    """Return ``session_id`` if it is safe as a directory name, else raise ``ValueError``."""
    if (
        not isinstance(session_id, str)
        or not _SESSION_ID.fullmatch(session_id)
        or ".." in session_id
    ):
        raise ValueError(
            f"invalid session id {session_id!r}: use 1-128 letters, digits, '_', '-' or '.', "
            "starting with a letter or digit (no '/' or '..')"
        )
    return session_id


def new_session_id() -> str:
    """A fresh random session id."""
    return uuid.uuid4().hex[:12]


#: Characters of a trimmed output's first line kept in its note.
TRIMMED_FIRST_LINE = 200


def trimmed_note(text: str) -> str:
    """What a trimmed tool output becomes in the prompt: its size and its first line (a SQL
    result's "Saved 1,204 rows × 3 columns to top.csv", a command's first output), so the
    model knows what the call gave and where it is without running it again."""
    from loopwright.summaries import first_line

    begun = first_line(text, TRIMMED_FIRST_LINE, count=False) if text.strip() else ""
    said = f' It began: "{begun}".' if begun else ""
    return (
        f"[Output of this tool call ({len(text):,} characters) was trimmed to save context."
        f"{said} Read a file it saved if you need the rest, or run the tool again.]"
    )


class Session:
    """One conversation and its workspace.

    ``messages`` is the full log and is never rewritten by context management: what the model
    sees is :meth:`context_messages`, which starts at ``context_start`` (earlier turns are
    replaced by ``summary``) and stubs out tool outputs listed in ``trimmed``.
    """

    def __init__(
        self,
        id: str,
        workspace_dir: str | os.PathLike[str],
        *,
        messages: list[Message] | None = None,
        usage: Usage | None = None,
        metadata: dict[str, Any] | None = None,
        store: SessionStore | None = None,
        created_at: float | None = None,
        updated_at: float | None = None,
        summary: str = "",
        context_start: int = 0,
        trimmed: set[str] | None = None,
    ) -> None:
        self.id = validate_session_id(id)
        self.workspace_dir = Path(workspace_dir)
        self.messages: list[Message] = messages if messages is not None else []
        self.usage = usage or Usage()
        self.metadata: dict[str, Any] = metadata or {}
        self.store = store
        now = time.time()
        self.created_at = created_at or now
        self.updated_at = updated_at or now
        self.summary = summary
        self.context_start = context_start
        self.trimmed: set[str] = trimmed or set()
        #: index of the first message that changed since the last save
        self.dirty_from = 0 if messages is None else len(self.messages)
        #: how many messages the store holds (after the last save)
        self.stored_count = self.dirty_from

    # --- creation -----------------------------------------------------------------------

    @classmethod
    def create(
        cls,
        id: str | None = None,
        *,
        root: str | os.PathLike[str] | None = None,
        store: SessionStore | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> Session:
        """A new session with its own workspace ``<root>/<id>/``, saved to ``store``."""
        from loopwright.config import workspace_root

        session_id = validate_session_id(id) if id is not None else new_session_id()
        if store is not None and store.exists(session_id):
            raise ValueError(
                f"session {session_id!r} already exists; resume it with Session.resume"
                f"({session_id!r}) or pick another id"
            )
        workspace = Path(root) if root is not None else workspace_root()
        workspace = workspace / session_id
        workspace.mkdir(parents=True, exist_ok=True)
        session = cls(session_id, workspace, metadata=metadata, store=store)
        session.save()
        return session

    @staticmethod
    def remove_workspace(
        workspace: str | os.PathLike[str], root: str | os.PathLike[str] | None
    ) -> bool:
        """Delete a removed session's workspace if loopwright made it (a directory right
        under the workspace root, ``root`` or else the configured one, as :meth:`create`
        makes it); one given by the user is kept. Whether it was deleted."""
        import shutil

        from loopwright.config import workspace_root

        made_in = (Path(root) if root is not None else workspace_root()).resolve()
        path = Path(workspace).resolve()
        if not path.is_dir() or path.parent != made_in:
            return False
        shutil.rmtree(path, ignore_errors=True)
        return True

    @classmethod
    def resume(cls, id: str, *, store: SessionStore | None = None) -> Session:
        """Load a saved session; tool calls cut off by a crash get an "interrupted" result."""
        if store is None:
            from loopwright.sessions.store import default_store

            store = default_store()
        session = store.load(validate_session_id(id))
        if session is None:
            raise LookupError(
                f"no session {id!r} in {store.describe()}; list saved sessions with "
                "`loopwright sessions list`"
            )
        session.workspace_dir.mkdir(parents=True, exist_ok=True)
        if session.repair("the process ended"):
            session.save()
        return session

    # --- history ------------------------------------------------------------------------

    def append(self, message: Message) -> None:
        """Add a message to the log (saved on the next :meth:`save`)."""
        self.messages.append(message)

    def touch(self, index: int) -> None:
        """Mark message ``index`` (and everything after it) as changed since the last save."""
        if index < self.dirty_from:
            self.dirty_from = index

    def save(self) -> None:
        """Persist what changed; a no-op without a store."""
        self.updated_at = time.time()
        if self.store is not None:
            self.store.save(self)
        self.dirty_from = self.stored_count = len(self.messages)

    def holds_saved(self, stored: Session) -> bool:
        """Whether this copy still holds what ``stored``, the session just loaded from the
        store, holds: nothing was saved since by another copy (another process's turn), so
        this one may go on without being replaced."""
        return self.updated_at == stored.updated_at and len(self.messages) == len(stored.messages)

    def pending_tool_uses(self) -> list[str]:
        """Ids of the last assistant message's tool calls that have no result yet."""
        for index in range(len(self.messages) - 1, -1, -1):
            message = self.messages[index]
            if message.role == "assistant":
                wanted = [b.id for b in message.tool_uses]
                if not wanted:
                    return []
                answered = {
                    r.tool_use_id
                    for later in self.messages[index + 1 :]
                    for r in later.tool_results
                }
                return [i for i in wanted if i not in answered]
        return []

    def repair(self, why: str) -> bool:
        """Give every unanswered tool call an "interrupted" error result. True if any was."""
        missing = self.pending_tool_uses()
        if not missing:
            return False
        names = {}
        for message in reversed(self.messages):
            if message.role == "assistant":
                names = {b.id: b.name for b in message.tool_uses}
                break
        blocks: list[ContentBlock] = [
            ToolResultBlock(i, INTERRUPTED.format(why=why, name=names.get(i, "the tool")), True)
            for i in missing
        ]
        last = self.messages[-1]
        if (
            last.role == "user"
            and last.tool_results
            and all(isinstance(b, ToolResultBlock) for b in last.content)
        ):
            last.content.extend(blocks)
            self.touch(len(self.messages) - 1)
        else:
            self.append(Message("user", blocks))
        return True

    # --- what the model sees ------------------------------------------------------------

    def context_messages(self) -> list[Message]:
        """The messages sent to the model: summary first, trimmed outputs stubbed."""
        view = self.messages[self.context_start :]
        if self.trimmed:
            view = [self._trim(m) if m.role == "user" else m for m in view]
        if self.summary:
            from loopwright.messages import TextBlock

            note = TextBlock(
                "[Summary of the earlier part of this conversation, which was condensed to fit "
                f"the context window]\n{self.summary}"
            )
            if view and view[0].role == "user":
                view[0] = Message("user", [note, *view[0].content])
            else:
                view.insert(0, Message("user", [note]))
        return view

    def _trim(self, message: Message) -> Message:
        if not any(
            isinstance(b, ToolResultBlock) and b.tool_use_id in self.trimmed
            for b in message.content
        ):
            return message
        content: list[ContentBlock] = []
        for block in message.content:
            if isinstance(block, ToolResultBlock) and block.tool_use_id in self.trimmed:
                block = ToolResultBlock(block.tool_use_id, trimmed_note(block.text), block.is_error)
            content.append(block)
        return Message("user", content)

    def state(self) -> dict[str, Any]:
        """Context-management state, persisted with the session."""
        return {
            "summary": self.summary,
            "context_start": self.context_start,
            "trimmed": sorted(self.trimmed),
        }

    @staticmethod
    def state_arguments(state: dict[str, Any]) -> dict[str, Any]:
        """The constructor's keyword arguments that restore what :meth:`state` saved."""
        return {
            "summary": state.get("summary", ""),
            "context_start": int(state.get("context_start", 0)),
            "trimmed": set(state.get("trimmed", [])),
        }

    def __repr__(self) -> str:
        return f"<Session {self.id} messages={len(self.messages)} workspace={self.workspace_dir}>"
