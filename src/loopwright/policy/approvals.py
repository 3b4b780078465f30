"""Human approval of tool calls: the request, the answer, and the broker between them.

When the permission check answers ``ask``, the registry builds an
:class:`~loopwright.events.ApprovalRequest` (the same object the agent streams as an
``approval_request`` event) and awaits an **approver**: any callable taking the request and
returning an :class:`ApprovalDecision` or a bool, sync or async. Two kinds are common:

- a function that decides on the spot (a CLI prompt, a test, a rule engine of your own);
- an :class:`ApprovalBroker`, when the answer comes later from elsewhere: the request is
  published (the agent yields it as an event, a server pushes it over SSE) and the call waits
  until someone calls :meth:`ApprovalBroker.answer` with the request's id.

:func:`approval_text` shows a request to a person in full: every argument whole (the SQL, the
code, the command, over as many lines as they hold), with what a terminal would act on instead
of showing (escape sequences, carriage returns, bidirectional overrides) written out as escapes,
so what is approved is what runs.

Every wait is bounded: the policy's ``approval_timeout`` turns silence into a deny, and a call
that needs approval when no approver is configured is denied at once. A denied call comes back
to the model as an ``is_error`` result saying who denied it and why; it never hangs the run.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import re
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TypeAlias

from loopwright.events import ApprovalRequest


@dataclass(frozen=True, slots=True)
class ApprovalDecision:
    """The answer to an approval request: ``allow`` or not, why, and who answered."""

    allow: bool
    reason: str = ""
    by: str = "user"


Approver: TypeAlias = Callable[
    [ApprovalRequest], ApprovalDecision | bool | Awaitable[ApprovalDecision | bool]
]


def new_request_id() -> str:
    """A fresh approval request id."""
    return "apr_" + uuid.uuid4().hex[:16]


async def ask_approver(approver: Approver, request: ApprovalRequest) -> ApprovalDecision:
    """Call ``approver`` (sync or async); its answer as an :class:`ApprovalDecision`."""
    answer: Any = approver(request)
    if inspect.isawaitable(answer):
        answer = await answer
    if isinstance(answer, ApprovalDecision):
        return answer
    if isinstance(answer, bool):
        return ApprovalDecision(answer, by=_approver_name(approver))
    raise TypeError(
        f"the approver returned {type(answer).__name__}; it must return an ApprovalDecision "
        "or a bool"
    )


def _approver_name(approver: Approver) -> str:
    """Who answered, when the approver only said yes or no: its function name."""
    name = getattr(approver, "__name__", None) or type(approver).__name__
    return str(name)


#: What a terminal would act on rather than show: control characters (but line breaks and
#: tabs), DEL and C1 controls, invisible format characters (zero-width, bidirectional
#: embeddings, overrides and isolates, the byte-order mark), line and paragraph separators,
#: and lone surrogates (bytes that were not UTF-8).
_HIDDEN = re.compile(
    r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200b-\u200f\u2028-\u202e"
    r"\u2060-\u2064\u2066-\u2069\ufeff\ud800-\udfff]"
)


def shown_text(text: str) -> str:
    """``text`` as a person should see it before approving it: each character a terminal
    would act on or hide (escape sequences, carriage returns, zero-width and bidirectional
    characters) written as an escape (``\\x1b``, ``\\r``, ``\\u202e``); other characters,
    line breaks and tabs as they are."""
    return _HIDDEN.sub(_escape, text)


def _escape(match: re.Match[str]) -> str:
    char = match.group(0)
    if char == "\r":
        return "\\r"
    code = ord(char)
    return f"\\x{code:02x}" if code <= 0xFF else f"\\u{code:04x}"


def approval_text(request: ApprovalRequest, *, indent: str = "  ") -> str:
    """The request as a person should read it before answering: the tool, why it asks, and
    every argument in full, one per line; text over several lines (SQL, code, a file's
    content) as an indented block under its name, each line marked with ``│``. Nothing is
    cut, and characters that would act on the terminal are shown as escapes
    (:func:`shown_text`), so the text shown is the text that runs."""
    why = f" ({shown_text(request.reason)})" if request.reason else ""
    lines = [f"{shown_text(request.name)} asks to run{why}:"]
    for key, value in request.input.items():
        name = shown_text(str(key))
        if not isinstance(value, str):
            value = json.dumps(value, ensure_ascii=False, default=str)
        text = shown_text(value)
        if "\n" in text:
            lines.append(f"{indent}{name}:")
            lines.extend(f"{indent}  │ {line}" for line in text.split("\n"))
        else:
            lines.append(f"{indent}{name}: {text}")
    return "\n".join(lines)


@dataclass(slots=True)
class _Pending:
    request: ApprovalRequest
    future: asyncio.Future[ApprovalDecision]
    loop: asyncio.AbstractEventLoop


class ApprovalBroker:
    """Holds approval requests until someone answers them.

    Use it as an approver: ``await broker(request)`` calls ``notify(request)`` (when given) so
    the request can be shown somewhere, then waits for :meth:`answer`. The waiting call is
    bounded by the policy's ``approval_timeout``; a request nobody can see is pointless, so a
    broker without ``notify`` must be polled through :attr:`pending` by whoever answers.
    :meth:`answer` may be called from any thread.
    """

    def __init__(self, notify: Callable[[ApprovalRequest], object] | None = None) -> None:
        self.notify = notify
        self._pending: dict[str, _Pending] = {}

    async def __call__(self, request: ApprovalRequest) -> ApprovalDecision:
        """Publish ``request`` through ``notify`` and wait for its answer."""
        return await self.wait(request, notify=self.notify)

    async def wait(
        self,
        request: ApprovalRequest,
        *,
        notify: Callable[[ApprovalRequest], object] | None = None,
    ) -> ApprovalDecision:
        """Register ``request``, call ``notify(request)`` if given, and wait for the answer.

        The request is forgotten when the wait ends for any reason (answer, timeout,
        cancellation), so an answer that comes too late is refused by :meth:`answer`.
        """
        if request.id in self._pending:
            raise ValueError(f"approval request {request.id!r} is already waiting for an answer")
        loop = asyncio.get_running_loop()
        future: asyncio.Future[ApprovalDecision] = loop.create_future()
        self._pending[request.id] = _Pending(request, future, loop)
        try:
            if notify is not None:
                published = notify(request)
                if inspect.isawaitable(published):
                    await published
            return await future
        finally:
            self._pending.pop(request.id, None)

    def answer(self, request_id: str, *, allow: bool, reason: str = "", by: str = "user") -> None:
        """Answer a pending request: the waiting tool call runs (``allow``) or is denied.

        Raises ``LookupError`` when no request with this id is waiting (it was answered
        already, timed out, or never existed).
        """
        pending = self._pending.get(request_id)
        if pending is None:
            waiting = ", ".join(self._pending) or "none"
            raise LookupError(
                f"no approval request {request_id!r} is waiting for an answer (it was answered, "
                f"timed out or never existed); waiting now: {waiting}"
            )
        decision = ApprovalDecision(bool(allow), reason, by)
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is pending.loop:
            _resolve(pending.future, decision)
        else:
            pending.loop.call_soon_threadsafe(_resolve, pending.future, decision)

    @property
    def pending(self) -> list[ApprovalRequest]:
        """The requests waiting for an answer, oldest first."""
        return [entry.request for entry in self._pending.values()]

    def deny_all(self, reason: str, *, by: str = "system") -> int:
        """Deny every waiting request (a run or server shutting down); returns how many."""
        ids = list(self._pending)
        for request_id in ids:
            self.answer(request_id, allow=False, reason=reason, by=by)
        return len(ids)


def _resolve(future: asyncio.Future[ApprovalDecision], decision: ApprovalDecision) -> None:
    if not future.done():
        future.set_result(decision)
