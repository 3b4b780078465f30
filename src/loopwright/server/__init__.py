"""The HTTP server: an agent's sessions over a JSON API with SSE streams, and a web UI.

    from loopwright.server import create_app, serve

    app = create_app(agent, tokens={"s3cret-token": "alice"})
    serve(app, host="127.0.0.1", port=8000)

``loopwright serve`` does the same with the standard agent. Needs the ``server`` extra
(FastAPI and uvicorn).
"""

from loopwright.server.app import create_app, server_context
from loopwright.server.auth import TokenConfigError, TokenMap, User
from loopwright.server.limits import RequestRate
from loopwright.server.serving import (
    GracefulServer,
    InsecureBindError,
    check_bind,
    make_server,
    serve,
)

__all__ = [
    "GracefulServer",
    "InsecureBindError",
    "RequestRate",
    "TokenConfigError",
    "TokenMap",
    "User",
    "check_bind",
    "create_app",
    "make_server",
    "serve",
    "server_context",
]
