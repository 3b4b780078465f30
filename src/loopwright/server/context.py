"""What every request handler of one server shares: the agent, the store, auth and runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fastapi import HTTPException, Request

from loopwright.agent import Agent
from loopwright.server.auth import LOCAL_USER, TokenMap, User, bearer_token
from loopwright.server.limits import RateLimiter, retry_after_header
from loopwright.server.runs import RunManager
from loopwright.server.sessions import SessionAccess
from loopwright.sessions.store import SessionStore


@dataclass(slots=True)
class ServerContext:
    """The parts of one server; :func:`loopwright.server.create_app` builds it."""

    agent: Agent
    store: SessionStore
    tokens: TokenMap
    limiter: RateLimiter | None
    runs: RunManager
    sessions: SessionAccess
    shutdown_grace: float
    max_body_bytes: int

    def authenticate(self, request: Request) -> User:
        """The caller, or 401; then one request of the caller's rate limit, or 429."""
        if self.tokens.enabled:
            token = bearer_token(request.headers.get("authorization"))
            if token is None:
                raise HTTPException(
                    401,
                    "this server needs a token: send the header 'Authorization: Bearer TOKEN' "
                    "with a token from its tokens configuration",
                    headers={"WWW-Authenticate": "Bearer"},
                )
            user = self.tokens.user_for(token)
            if user is None:
                raise HTTPException(
                    401,
                    "the bearer token is not valid on this server; check it against the "
                    "server's LOOPWRIGHT_TOKENS or tokens file",
                    headers={"WWW-Authenticate": 'Bearer error="invalid_token"'},
                )
            key = "token:" + token
        else:
            user = User(LOCAL_USER)
            key = "client:" + (request.client.host if request.client else "")
        if self.limiter is not None:
            wait = self.limiter.take(key)
            if wait > 0:
                rate = self.limiter.rate
                raise HTTPException(
                    429,
                    f"too many requests: this token may make {rate.requests} requests per "
                    f"{rate.per:g}s; wait {retry_after_header(wait)}s (see Retry-After) "
                    "and try again",
                    headers={"Retry-After": retry_after_header(wait)},
                )
        return user


def context_of(app: Any) -> ServerContext:
    """The :class:`ServerContext` of an application made by ``create_app``."""
    context = getattr(getattr(app, "state", None), "loopwright", None)
    if not isinstance(context, ServerContext):
        raise TypeError("this application was not made by loopwright.server.create_app")
    return context
