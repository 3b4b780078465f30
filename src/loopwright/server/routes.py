"""The HTTP API: sessions, turns streamed as SSE, cancel, approvals, files, history, usage.

Every ``/api`` route but ``/api/info`` needs the caller (bearer token, then rate limit).
A session of another user answers 404 exactly like one that does not exist.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Header, HTTPException, Query, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.convertors import Convertor, register_url_convertor
from starlette.types import Receive, Scope, Send

from loopwright import __version__
from loopwright.agent import Prompt
from loopwright.server.auth import User
from loopwright.server.context import ServerContext, context_of
from loopwright.server.files import (
    FILE_HEADERS,
    FileUnreadable,
    OpenedFile,
    WorkspacePathError,
    content_disposition,
    content_type_of,
    disposition_of,
    list_files,
    open_file,
    read_todos,
)
from loopwright.server.runs import Run
from loopwright.server.schemas import (
    ApprovalIn,
    FileList,
    FileOut,
    InfoOut,
    MeOut,
    MessageIn,
    MessagesOut,
    ProblemOut,
    RunOut,
    SessionList,
    SessionOut,
    TodoList,
    TodoOut,
    UsageOut,
)
from loopwright.sessions.session import Session
from loopwright.sessions.store import SessionInfo, title_of

SSE_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": (
            "The run's events as Server-Sent Events: `event:` the event type, `id:` its number "
            "in the run (1, 2, ...), `data:` the event's JSON (the same shapes as "
            "`loopwright run --json`). The stream ends after the `done` event."
        ),
        "content": {"text/event-stream": {"schema": {"type": "string"}}},
    },
}
NOT_FOUND_DOC: dict[int | str, dict[str, Any]] = {
    404: {"model": ProblemOut, "description": "No such session for this user."}
}
START_DOC: dict[int | str, dict[str, Any]] = {
    **SSE_DOC,
    **NOT_FOUND_DOC,
    202: {"model": RunOut, "description": "With `stream=false`: the run started."},
    409: {
        "model": ProblemOut,
        "description": "A turn is already running in this session (here, or in another process "
        "sharing the session store: another server, the CLI).",
    },
    503: {"model": ProblemOut, "description": "The server is shutting down."},
}


class WorkspacePathConvertor(Convertor[str]):
    """A file path in a URL, every character of it: Starlette's ``path`` (``.*``) stops at a
    newline, so a file whose name holds one (listed like any other) answered a bare 404, and
    ``a.csv%0A`` matched as ``a.csv``."""

    regex = "(?s:.*)"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("workspace_path", WorkspacePathConvertor())

#: a file of a session's workspace (GET downloads it, HEAD answers its headers alone)
FILE_PATH = "/api/sessions/{session_id}/files/{path:workspace_path}"
FILE_REFUSALS: dict[int | str, dict[str, Any]] = {
    404: {
        "model": ProblemOut,
        "description": "No such session for this user, or no such file in its workspace.",
    },
    400: {
        "model": ProblemOut,
        "description": "The path leads outside the workspace (`..`, an absolute path, a link "
        "out) or is not a file name.",
    },
    403: {"model": ProblemOut, "description": "The server cannot read the file."},
}
FILE_HEADERS_DOC: dict[str, Any] = {
    "Content-Length": {"description": "The file's size in bytes.", "schema": {"type": "integer"}},
    "Content-Disposition": {
        "description": "`inline` for images, text and data a browser shows in place (unless "
        "`download=true`), else `attachment`; the name as `filename=` and, unless it is plain "
        "ASCII, exactly as `filename*=UTF-8''...` (percent-encoded).",
        "schema": {"type": "string"},
    },
    "ETag": {
        "description": "Changes when the file's size or modification time does.",
        "schema": {"type": "string"},
    },
    "Last-Modified": {"description": "The file's modification time.", "schema": {"type": "string"}},
}

StreamQuery = Annotated[
    bool,
    Query(description="false: answer 202 with the run at once instead of streaming its events."),
]
LastEventId = Annotated[
    str | None,
    Header(
        alias="Last-Event-ID",
        description="The `id` of the last event received; the stream resumes after it.",
    ),
]
AfterQuery = Annotated[int | None, Query(ge=0, description="Like Last-Event-ID.")]


async def current_user(request: Request) -> User:
    """The caller of the request (401 without a valid token; 429 over the rate limit)."""
    return context_of(request.app).authenticate(request)


Caller = Annotated[User, Depends(current_user)]


def add_routes(router: FastAPI | APIRouter, ctx: ServerContext) -> None:
    """Add the API routes of one server to an app (directly: one routing step less per
    request than an included router) or to a router."""

    # --- health ------------------------------------------------------------------------

    # HEAD too: load balancers and uptime checkers often probe with it
    @router.head("/healthz", tags=["health"], summary="Liveness, as GET, without the body")
    @router.get("/healthz", tags=["health"], summary="Liveness: the process answers")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.head(
        "/readyz",
        tags=["health"],
        summary="Readiness, as GET, without the body",
        responses={503: {"model": ProblemOut}},
    )
    @router.get(
        "/readyz",
        tags=["health"],
        summary="Readiness: the store answers and the server is not shutting down",
        responses={503: {"model": ProblemOut}},
    )
    async def readyz() -> JSONResponse:
        if ctx.runs.closing:
            return JSONResponse({"detail": "the server is shutting down"}, status_code=503)
        try:
            ctx.store.exists("readyz-probe")
        except Exception as exc:
            return JSONResponse(
                {"detail": f"the session store does not answer: {type(exc).__name__}: {exc}"},
                status_code=503,
            )
        return JSONResponse({"status": "ready", "running_turns": len(ctx.runs.running)})

    # --- who am I ----------------------------------------------------------------------

    @router.get("/api/info", tags=["server"], summary="Server name, version, whether auth is on")
    async def info() -> InfoOut:
        return InfoOut(name="loopwright", version=__version__, auth_required=ctx.tokens.enabled)

    @router.get("/api/me", tags=["server"], summary="The user the token stands for")
    async def me(user: Caller) -> MeOut:
        return MeOut(user=user.name, auth=ctx.tokens.enabled)

    # --- sessions ----------------------------------------------------------------------

    def session_out(session: Session | SessionInfo) -> SessionOut:
        run = ctx.runs.latest(session.id)
        running = run is not None and not run.finished
        can_resume = False
        if isinstance(session, Session):
            title = title_of(session.messages[:4])
            count = len(session.messages)
            can_resume = not running and resumable(session)
        else:
            title, count = session.title, session.message_count
        return SessionOut(
            id=session.id,
            title=title,
            created_at=session.created_at,
            updated_at=session.updated_at,
            message_count=count,
            usage=session.usage.to_dict(),
            running=running,
            resumable=can_resume,
            run=run_out(run).model_dump() if run is not None else None,
        )

    def run_out(run: Run) -> RunOut:
        return RunOut(
            id=run.id,
            session_id=run.session_id,
            running=not run.finished,
            started_at=run.started_at,
            finished_at=run.finished_at,
            stop_reason=run.stop_reason,
            last_event_id=run.last_event_id,
            usage=run.usage.to_dict(),
            pending_approvals=[r.to_dict() for r in run.pending_approvals.values()],
            events_url=f"/api/sessions/{run.session_id}/runs/{run.id}/events",
            first_message=run.first_message,
        )

    @router.get("/api/sessions", tags=["sessions"], summary="The caller's sessions")
    async def list_sessions(user: Caller) -> SessionList:
        return SessionList(sessions=[session_out(i) for i in ctx.sessions.list(user)])

    @router.post("/api/sessions", status_code=201, tags=["sessions"], summary="Create a session")
    async def create_session(user: Caller) -> SessionOut:
        return session_out(ctx.sessions.create(user))

    @router.get(
        "/api/sessions/{session_id}",
        tags=["sessions"],
        summary="A session and its current or latest run",
        responses=NOT_FOUND_DOC,
    )
    async def get_session(session_id: str, user: Caller) -> SessionOut:
        return session_out(ctx.sessions.get(user, session_id))

    @router.delete(
        "/api/sessions/{session_id}",
        status_code=204,
        tags=["sessions"],
        summary="Remove a session, its history and its workspace",
        responses={**NOT_FOUND_DOC, 409: {"model": ProblemOut}},
    )
    async def delete_session(session_id: str, user: Caller) -> Response:
        workspace = ctx.sessions.workspace_to_remove(user, session_id)
        # the session is claimed as a turn would claim it: refused while a turn runs here
        # (409, cancel it first) or in another process sharing the store
        run = ctx.runs.reserve(session_id, user.name)
        try:
            ctx.store.delete(session_id)
        finally:
            ctx.runs.forget(run)
            ctx.sessions.forget(session_id)
        await ctx.sessions.drop_closed()  # the session's tools (a Python process...) closed
        if workspace is not None:
            await run_in_threadpool(Session.remove_workspace, workspace, ctx.agent.workspace_root)
        return Response(status_code=204)

    @router.get(
        "/api/sessions/{session_id}/messages",
        tags=["sessions"],
        summary="The session's history",
        responses=NOT_FOUND_DOC,
    )
    async def get_messages(session_id: str, user: Caller) -> MessagesOut:
        session = ctx.sessions.get(user, session_id)
        return MessagesOut(
            session_id=session.id,
            messages=[m.to_dict() for m in session.messages],
            summary=session.summary,
        )

    @router.get(
        "/api/sessions/{session_id}/usage",
        tags=["sessions"],
        summary="Tokens and cost of the session",
        responses=NOT_FOUND_DOC,
    )
    async def get_usage(session_id: str, user: Caller) -> UsageOut:
        session = ctx.sessions.get(user, session_id)
        active = ctx.runs.active(session_id)
        return UsageOut(
            session_id=session.id,
            usage=session.usage.to_dict(),
            running_turn=active.usage.to_dict() if active is not None else None,
        )

    # --- turns -------------------------------------------------------------------------

    def start(user: User, session_id: str, prompt: Prompt | None, stream: bool) -> Response:
        ctx.sessions.header(user, session_id)  # 404 before anything says "busy"
        run = ctx.runs.reserve(session_id, user.name)
        try:
            session = ctx.sessions.for_run(user, session_id)
            if prompt is None and not resumable(session):
                raise HTTPException(
                    409,
                    "nothing to resume: the session's last turn finished; post a message to "
                    "start a new turn",
                )
            ctx.runs.start(run, session, prompt)
        except BaseException:
            ctx.runs.release(run)
            raise
        location = f"/api/sessions/{session_id}/runs/{run.id}/events"
        if not stream:
            return JSONResponse(
                run_out(run).model_dump(),
                status_code=202,
                headers={"Location": location, "X-Run-Id": run.id},
            )
        return event_stream(run, 0)

    @router.post(
        "/api/sessions/{session_id}/messages",
        tags=["turns"],
        summary="Post a message and stream the turn's events (SSE)",
        response_class=SSEResponse,
        responses=START_DOC,
    )
    async def post_message(
        session_id: str, body: MessageIn, user: Caller, stream: StreamQuery = True
    ) -> Response:
        response = start(user, session_id, body.content, stream)
        await ctx.sessions.drop_closed()
        return response

    @router.post(
        "/api/sessions/{session_id}/resume",
        tags=["turns"],
        summary="Continue a turn that was interrupted (cancelled, or the server stopped)",
        response_class=SSEResponse,
        responses=START_DOC,
    )
    async def resume(session_id: str, user: Caller, stream: StreamQuery = True) -> Response:
        response = start(user, session_id, None, stream)
        await ctx.sessions.drop_closed()
        return response

    @router.get(
        "/api/sessions/{session_id}/events",
        tags=["turns"],
        summary="Stream the current or latest turn's events, resuming after Last-Event-ID",
        response_class=SSEResponse,
        responses={**SSE_DOC, **NOT_FOUND_DOC},
    )
    async def latest_events(
        session_id: str,
        user: Caller,
        last_event_id: LastEventId = None,
        after: AfterQuery = None,
    ) -> Response:
        ctx.sessions.header(user, session_id)
        run = ctx.runs.latest(session_id)
        if run is None:
            raise HTTPException(
                404,
                f"session {session_id!r} has no turn kept on this server; read its history "
                "with GET /api/sessions/{id}/messages",
            )
        return event_stream(run, resume_point(last_event_id, after))

    @router.get(
        "/api/sessions/{session_id}/runs/{run_id}",
        tags=["turns"],
        summary="A run's state",
        responses=NOT_FOUND_DOC,
    )
    async def get_run(session_id: str, run_id: str, user: Caller) -> RunOut:
        return run_out(find_run(user, session_id, run_id))

    @router.get(
        "/api/sessions/{session_id}/runs/{run_id}/events",
        tags=["turns"],
        summary="Stream a run's events, resuming after Last-Event-ID",
        response_class=SSEResponse,
        responses={**SSE_DOC, **NOT_FOUND_DOC},
    )
    async def run_events(
        session_id: str,
        run_id: str,
        user: Caller,
        last_event_id: LastEventId = None,
        after: AfterQuery = None,
    ) -> Response:
        run = find_run(user, session_id, run_id)
        return event_stream(run, resume_point(last_event_id, after))

    @router.post(
        "/api/sessions/{session_id}/cancel",
        tags=["turns"],
        summary="Cancel the running turn (its history so far is kept)",
        responses={**NOT_FOUND_DOC, 409: {"model": ProblemOut}},
    )
    async def cancel(session_id: str, user: Caller) -> RunOut:
        ctx.sessions.header(user, session_id)
        run = ctx.runs.active(session_id)
        if run is None:
            raise HTTPException(409, f"no turn is running in session {session_id!r}")
        await ctx.runs.cancel(run)
        return run_out(run)

    @router.post(
        "/api/sessions/{session_id}/approvals/{request_id}",
        tags=["turns"],
        summary="Answer an approval_request event",
        responses=NOT_FOUND_DOC,
    )
    async def answer_approval(
        session_id: str, request_id: str, body: ApprovalIn, user: Caller
    ) -> dict[str, Any]:
        ctx.sessions.header(user, session_id)
        run = ctx.runs.active(session_id)
        missing = HTTPException(
            404,
            f"no approval request {request_id!r} is waiting in session {session_id!r} (it was "
            "answered, timed out or never asked); see the session's pending approvals with "
            "GET /api/sessions/{id}",
        )
        if run is None or request_id not in run.pending_approvals:
            raise missing
        try:
            ctx.agent.approve(request_id, allow=body.allow, reason=body.reason, by=user.name)
        except LookupError:
            raise missing from None
        run.pending_approvals.pop(request_id, None)
        return {"request_id": request_id, "allow": body.allow, "by": user.name}

    # --- files -------------------------------------------------------------------------

    @router.get(
        "/api/sessions/{session_id}/files",
        tags=["files"],
        summary="List the files of the session's workspace",
        responses={**NOT_FOUND_DOC, 400: {"model": ProblemOut}},
    )
    async def get_files(
        session_id: str,
        user: Caller,
        path: Annotated[str, Query(description="A directory to list (default: all).")] = "",
    ) -> FileList:
        header = ctx.sessions.header(user, session_id)
        try:
            entries, truncated = await run_in_threadpool(list_files, header.workspace_dir, path)
        except WorkspacePathError as exc:
            raise HTTPException(400, str(exc)) from None
        except FileNotFoundError as exc:
            raise HTTPException(404, str(exc)) from None
        return FileList(files=[FileOut(**e.to_dict()) for e in entries], truncated=truncated)

    @router.head(
        FILE_PATH,
        tags=["files"],
        summary="A file's headers (size, type, ETag), as GET would answer, without the file",
        response_class=FileResponse,
        responses={
            200: {"description": "The file is there.", "headers": FILE_HEADERS_DOC},
            **FILE_REFUSALS,
        },
    )
    @router.get(
        FILE_PATH,
        tags=["files"],
        summary="Download a file of the session's workspace",
        response_class=FileResponse,
        responses={
            200: {
                "content": {"application/octet-stream": {}},
                "description": "The file.",
                "headers": FILE_HEADERS_DOC,
            },
            **FILE_REFUSALS,
        },
    )
    async def download(
        session_id: str,
        path: str,
        user: Caller,
        download: Annotated[
            bool, Query(description="true: always as an attachment, never shown in place.")
        ] = False,
    ) -> FileResponse:
        header = ctx.sessions.header(user, session_id)
        try:
            opened = await run_in_threadpool(open_file, header.workspace_dir, path)
        except WorkspacePathError as exc:
            raise HTTPException(400, str(exc)) from None
        except FileNotFoundError as exc:
            raise HTTPException(404, str(exc)) from None
        except FileUnreadable as exc:
            raise HTTPException(403, str(exc)) from None
        kind = content_type_of(path)
        disposition = content_disposition(
            disposition_of(kind, download=download), path.rsplit("/", 1)[-1]
        )
        return OpenedFileResponse(
            opened,
            media_type=kind,
            headers={**FILE_HEADERS, "Content-Disposition": disposition},
        )

    @router.get(
        "/api/sessions/{session_id}/todos",
        tags=["files"],
        summary="The agent's todo list (written by the TodoWrite tool)",
        responses=NOT_FOUND_DOC,
    )
    async def get_todos(session_id: str, user: Caller) -> TodoList:
        header = ctx.sessions.header(user, session_id)
        todos, problem = await run_in_threadpool(read_todos, header.workspace_dir)
        return TodoList(todos=[TodoOut(**t) for t in todos], problem=problem)

    # --- helpers -----------------------------------------------------------------------

    def find_run(user: User, session_id: str, run_id: str) -> Run:
        ctx.sessions.header(user, session_id)
        run = ctx.runs.get(run_id)
        if run is None or run.session_id != session_id:
            raise HTTPException(
                404,
                f"no run {run_id!r} kept for session {session_id!r} (finished runs are kept "
                "for a while, then only the history remains: GET /api/sessions/{id}/messages)",
            )
        return run


def resumable(session: Session) -> bool:
    """Whether ``agent.run(None, session)`` has something to continue."""
    if not session.messages:
        return False
    return session.messages[-1].role == "user" or bool(session.pending_tool_uses())


def resume_point(last_event_id: str | None, after: int | None) -> int:
    """The number of the last event the client has (0: from the start)."""
    if last_event_id is None or not last_event_id.strip():
        return after or 0
    try:
        value = int(last_event_id.strip())
    except ValueError:
        value = -1
    if value < 0:
        raise HTTPException(
            400,
            f"Last-Event-ID {last_event_id!r} is not an event number; send the `id` of the "
            "last event received (or leave the header out to start from the beginning)",
        )
    return value


class OpenedFileResponse(FileResponse):
    """A workspace file served from the file :func:`open_file` opened and checked (never
    opened again by a path a tool may have changed meanwhile); closed when sent."""

    def __init__(self, opened: OpenedFile, **options: Any) -> None:
        super().__init__(opened.path, stat_result=opened.stat, **options)
        self.opened = opened

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self.opened.close()


class SSEResponse(StreamingResponse):
    """A ``text/event-stream`` response of pre-encoded SSE frames.

    (FastAPI's own ``EventSourceResponse`` is for generator endpoints; these endpoints
    first check the request, then return the stream of a run that lives on its own.)

    Lighter than Starlette's streaming: one small task watches for the client going away
    (the stream then stops at its next frame or keep-alive); the run is not affected.
    """

    media_type = "text/event-stream"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        watcher = asyncio.ensure_future(_disconnected(receive))
        frames = self.body_iterator
        try:
            await send(
                {
                    "type": "http.response.start",
                    "status": self.status_code,
                    "headers": self.raw_headers,
                }
            )
            async for chunk in frames:
                if watcher.done():
                    return
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b"", "more_body": False})
        except OSError:  # the connection broke while sending
            return
        finally:
            watcher.cancel()
            aclose = getattr(frames, "aclose", None)
            if aclose is not None:
                await aclose()


async def _disconnected(receive: Receive) -> None:
    """Return when the client disconnects."""
    while (await receive())["type"] != "http.disconnect":
        pass


def event_stream(run: Run, after: int) -> SSEResponse:
    """The run's events after ``after``, as an SSE response."""
    return SSEResponse(
        run.stream(after),
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no", "X-Run-Id": run.id},
    )
