"""Request and response bodies of the HTTP API (they also make the OpenAPI spec)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field, field_validator


class MessageIn(BaseModel):
    """A user message that starts a turn."""

    content: str = Field(
        min_length=1, description="The message text.", examples=["Summarise notes.md"]
    )

    @field_validator("content")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the message is blank; write what the agent should do")
        return value


class ApprovalIn(BaseModel):
    """The answer to an ``approval_request`` event."""

    allow: bool = Field(description="true runs the tool call; false denies it.")
    reason: str = Field(
        default="", max_length=2000, description="Why (sent back to the model with a denial)."
    )


class SessionOut(BaseModel):
    """A session: its id, times, size, usage, and the turn running in it (if any)."""

    id: str
    title: str = ""
    created_at: float
    updated_at: float
    message_count: int
    usage: dict[str, Any]
    running: bool = False
    resumable: bool = Field(
        default=False,
        description="Its last turn was interrupted (cancelled, or the server stopped) and "
        "`POST /api/sessions/{id}/resume` continues it; set in one session's details, false "
        "in the list.",
    )
    run: dict[str, Any] | None = Field(
        default=None, description="The current or latest run kept by this server."
    )


class SessionList(BaseModel):
    sessions: list[SessionOut]


class RunOut(BaseModel):
    """A run (one turn): whether it is running, how it ended, its events so far."""

    id: str
    session_id: str
    running: bool
    started_at: float
    finished_at: float | None
    stop_reason: str | None
    last_event_id: int
    usage: dict[str, Any]
    pending_approvals: list[dict[str, Any]]
    events_url: str
    first_message: int = Field(
        default=0,
        description="How many messages of the session's history came before this run (its "
        "prompt, if it has one, is the next): a client opening the session while the run goes "
        "on shows the history up to there, then the run's events from the first (the history "
        "lacks the text streaming now and the calls waiting for approval).",
    )


class MessagesOut(BaseModel):
    """The session's history, in the provider-neutral message form."""

    session_id: str
    messages: list[dict[str, Any]]
    summary: str = Field(default="", description="Summary of turns compacted out of context.")


class UsageOut(BaseModel):
    """Tokens and cost of the whole session (and of the running turn, if any)."""

    session_id: str
    usage: dict[str, Any]
    running_turn: dict[str, Any] | None = None


class FileOut(BaseModel):
    path: str
    size: int
    modified: float
    content_type: str
    image: bool


class FileList(BaseModel):
    files: list[FileOut]
    truncated: bool = Field(description="True when the listing was cut at its maximum length.")


class TodoOut(BaseModel):
    content: str
    status: str
    activeForm: str | None = None  # the TodoWrite tool's field name


class TodoList(BaseModel):
    todos: list[TodoOut]
    problem: str = ""


class InfoOut(BaseModel):
    """What a client needs before it authenticates."""

    name: str
    version: str
    auth_required: bool


class MeOut(BaseModel):
    user: str
    auth: bool


class ProblemOut(BaseModel):
    detail: str
