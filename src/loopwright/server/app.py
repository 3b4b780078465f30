"""``create_app``: the FastAPI application that serves an agent over HTTP and the web UI."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from importlib.resources import files
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles

from loopwright import __version__
from loopwright.agent import Agent
from loopwright.server.auth import TokenMap
from loopwright.server.context import ServerContext, context_of
from loopwright.server.limits import BodySizeLimit, RateLimiter, RequestRate
from loopwright.server.routes import add_routes
from loopwright.server.runs import RunManager, ServerClosing, SessionBusy
from loopwright.server.sessions import OWNER_KEY, SessionAccess, SessionNotFound
from loopwright.sessions.lease import SessionLeased
from loopwright.sessions.store import SessionDamaged, SessionStore

DEFAULT_RATE = RequestRate(120, per=60.0)
DEFAULT_MAX_BODY_BYTES = 1_000_000
DEFAULT_SHUTDOWN_GRACE_S = 30.0
DEFAULT_RUN_RETENTION_S = 600.0

STATIC_DIR = Path(str(files("loopwright.server") / "static"))
#: the web UI renders what agents write: it runs only its own script, loads nothing else
UI_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; "
    "connect-src 'self'; script-src 'self'; style-src 'self'; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'; form-action 'self'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "X-Frame-Options": "DENY",
}


def create_app(
    agent: Agent | Callable[[], Agent],
    *,
    store: SessionStore | None = None,
    tokens: TokenMap | Mapping[str, str] | None = None,
    rate_limit: RequestRate | None = DEFAULT_RATE,
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
    shutdown_grace: float = DEFAULT_SHUTDOWN_GRACE_S,
    run_retention: float = DEFAULT_RUN_RETENTION_S,
    shared_store: bool | None = None,
    web_ui: bool = True,
    session_metadata: Mapping[str, Any] | None = None,
) -> FastAPI:
    """The HTTP API (and web UI at ``/``) serving ``agent``.

    ``agent``: an :class:`Agent`, or a function that builds one (called once, here).
    ``store``: where sessions live (default: the agent's store). ``tokens``: ``{token:
    user}``; empty or ``None`` turns authentication off (every caller is ``local``; bind to
    loopback only, see :func:`loopwright.server.serve`). ``rate_limit``: requests per token
    (``None``: unlimited). ``max_body_bytes``: larger request bodies get 413.
    ``shutdown_grace``: seconds running turns get to finish when the server stops, before
    they are cancelled. ``run_retention``: seconds a finished run's events stay available
    for reconnecting clients. ``shared_store``: other server processes use the same store
    (several servers on one PostgreSQL database), so each turn starts from the store's copy
    of its session; by default true for every store but SQLite and the in-memory one.
    ``session_metadata``: what every session this server creates records besides its owner
    (``loopwright serve --agent healthcare`` records the data it works on, so that
    ``loopwright healthcare --session ID`` continues a session begun in the web UI on the
    same data); JSON values, checked here.

    To let a person approve tool calls from the API or the web UI, give the agent a
    ``Policy(mode="ask")`` (without an ``approver``): its calls then wait for
    ``POST /api/sessions/{id}/approvals/{request_id}``.
    """
    built = agent() if not isinstance(agent, Agent) else agent
    if not isinstance(built, Agent):
        raise TypeError(
            f"create_app needs an Agent or a function returning one, got {type(built).__name__}"
        )
    token_map = tokens if isinstance(tokens, TokenMap) else TokenMap(tokens)
    if max_body_bytes < 1:
        raise ValueError(f"max_body_bytes must be at least 1, got {max_body_bytes}")
    session_store = store if store is not None else built.store
    shared = _is_shared(session_store) if shared_store is None else shared_store
    runs = RunManager(
        built, retention=run_retention, shared_store=session_store if shared else None
    )
    context = ServerContext(
        agent=built,
        store=session_store,
        tokens=token_map,
        limiter=RateLimiter(rate_limit) if rate_limit is not None else None,
        runs=runs,
        sessions=SessionAccess(
            built,
            session_store,
            auth_enabled=token_map.enabled,
            is_running=lambda session_id: runs.active(session_id) is not None,
            shared=shared,
            metadata=_checked_metadata(session_metadata),
        ),
        shutdown_grace=shutdown_grace,
        max_body_bytes=max_body_bytes,
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        # under loopwright's own server the grace period has passed already (see serving.py);
        # under a plain ASGI server, whatever still runs now is cancelled, history saved
        await runs.shutdown(0.0)
        await context.sessions.aclose()

    app = FastAPI(
        title="loopwright",
        version=__version__,
        summary="Run an autonomous agent over HTTP: sessions, turns streamed as SSE, "
        "approvals, workspace files.",
        lifespan=lifespan,
        docs_url=None,  # the interactive docs load scripts from a CDN; the spec is enough
        redoc_url=None,
    )
    app.state.loopwright = context
    app.add_middleware(BodySizeLimit, max_bytes=max_body_bytes)
    _add_error_handlers(app)
    add_routes(app, context)
    if web_ui:
        _add_web_ui(app)
    return app


def _checked_metadata(metadata: Mapping[str, Any] | None) -> dict[str, Any]:
    """``session_metadata`` as a plain dict, refused now (not at the first session) when the
    store could not save it or it would overwrite the owner."""
    if metadata is None:
        return {}
    checked = dict(metadata)
    if OWNER_KEY in checked:
        raise ValueError(
            f"session_metadata may not set {OWNER_KEY!r}: the server records each session's "
            "owner itself"
        )
    try:
        json.dumps(checked, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"session_metadata must hold JSON values: {exc}") from None
    return checked


def _is_shared(store: SessionStore) -> bool:
    """Whether other processes may write to ``store`` meanwhile: a database server, and the
    SQLite file too, which the CLI (``loopwright chat/run/healthcare --session``) writes
    beside the server (a turn taken there must not be overwritten by the server's copy)."""
    from loopwright.sessions.store import MemoryStore

    return not isinstance(store, MemoryStore)


def server_context(app: FastAPI) -> ServerContext:
    """The parts of a server made by :func:`create_app` (its runs, sessions, store...)."""
    return context_of(app)


def _add_error_handlers(app: FastAPI) -> None:
    async def not_found(request: Request, exc: Exception) -> Response:
        return JSONResponse({"detail": str(exc)}, status_code=404)

    async def busy(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SessionBusy)
        run = exc.run
        return JSONResponse(
            {
                "detail": f"a turn is already running in session {run.session_id!r}; wait for "
                "its done event, follow it at GET /api/sessions/{id}/events, or cancel it "
                "with POST /api/sessions/{id}/cancel",
                "run_id": run.id,
            },
            status_code=409,
        )

    async def busy_elsewhere(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SessionLeased)
        return JSONResponse(
            {
                "detail": f"a turn is already running in session {exc.session_id!r} in another "
                "process sharing the session store (another server, or the loopwright CLI); "
                "wait for its done event there, or try again in a moment"
            },
            status_code=409,
            headers={"Retry-After": "5"},
        )

    async def damaged(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SessionDamaged)
        return JSONResponse(
            {
                "detail": f"session {exc.session_id!r} cannot be read: {exc}; remove it with "
                f"loopwright sessions rm {exc.session_id}"
            },
            status_code=500,
        )

    async def closing(request: Request, exc: Exception) -> Response:
        return JSONResponse(
            {"detail": "the server is shutting down; try again in a moment (on another server)"},
            status_code=503,
            headers={"Retry-After": "5"},
        )

    async def invalid(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, RequestValidationError)
        errors: list[Any] = list(exc.errors())
        first = errors[0] if errors else {}
        detail = _body_problem(request, first)
        if detail is None:
            where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
            message = str(first.get("msg", "invalid request")).removeprefix("Value error, ")
            detail = f"invalid request ({where or 'body'}: {message})"
        return JSONResponse(
            {
                "detail": f"{detail}; see the request schemas at /openapi.json",
                "errors": [
                    {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", ""))} for e in errors
                ],
            },
            status_code=422,
        )

    app.add_exception_handler(SessionNotFound, not_found)
    app.add_exception_handler(SessionDamaged, damaged)
    app.add_exception_handler(SessionBusy, busy)
    app.add_exception_handler(SessionLeased, busy_elsewhere)
    app.add_exception_handler(ServerClosing, closing)
    app.add_exception_handler(RequestValidationError, invalid)


def _body_problem(request: Request, error: Any) -> str | None:
    """What is wrong with a request body that is not JSON at all (``None``: something else):
    the usual mistakes of a hand-written client, said so they can be fixed."""
    loc = tuple(error.get("loc", ()))
    if not loc or loc[0] != "body":
        return None
    if error.get("type") == "json_invalid":
        reason = str((error.get("ctx") or {}).get("error", "")).strip()
        at = f" at character {loc[1]}" if len(loc) > 1 and isinstance(loc[1], int) else ""
        return f"the request body is not valid JSON ({reason or 'cannot be parsed'}{at})"
    if loc != ("body",):
        return None
    kind = request.headers.get("content-type", "")
    if error.get("type") == "missing":
        return "the request needs a JSON body (Content-Type: application/json)"
    if kind and "json" not in kind.lower():
        return (
            f"the request body must be JSON sent with 'Content-Type: application/json', not "
            f"{kind.split(';')[0].strip()!r} (with curl: -H 'Content-Type: application/json')"
        )
    if error.get("type") in ("model_attributes_type", "dict_type"):
        return "the request body must be a JSON object"
    return None


class _UiFiles(StaticFiles):
    """The web UI's assets, with the UI's security headers."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers.update(UI_HEADERS)
        return response


def _add_web_ui(app: FastAPI) -> None:
    index = STATIC_DIR / "index.html"

    @app.get("/", include_in_schema=False)
    async def web_ui() -> FileResponse:
        return FileResponse(index, media_type="text/html", headers=UI_HEADERS)

    icon = STATIC_DIR / "favicon.svg"

    @app.get("/favicon.ico", include_in_schema=False)
    async def favicon() -> FileResponse:
        # what browsers (and bookmarks, tab strips of other tools) ask for without reading
        # the page's <link rel="icon">: the same picture, not a 404 in every server log
        return FileResponse(icon, media_type="image/svg+xml", headers=UI_HEADERS)

    app.mount("/static", _UiFiles(directory=STATIC_DIR), name="static")
