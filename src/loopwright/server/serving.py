"""Running the app with uvicorn: the bind check and the graceful shutdown.

On SIGTERM or Ctrl-C the server stops starting turns (``/readyz`` turns 503, new turns get
503) but keeps answering everything else, gives running turns ``shutdown_grace`` seconds to
finish, cancels the rest (their history is saved consistently, ready to resume), and only
then closes its listening socket and connections. A second Ctrl-C skips the wait.
"""

from __future__ import annotations

import ipaddress
import signal
import socket
from types import FrameType

import uvicorn
from fastapi import FastAPI

from loopwright.server.app import server_context

LOOPBACK_NAMES = frozenset({"localhost", "ip6-localhost"})


class InsecureBindError(ValueError):
    """Authentication is off and the address is reachable from other machines."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (only this machine can connect)."""
    if host.lower() in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, *, auth_enabled: bool, insecure_no_auth: bool = False) -> None:
    """Refuse to serve without authentication anywhere but loopback, unless told to."""
    if auth_enabled or insecure_no_auth or is_loopback(host):
        return
    raise InsecureBindError(
        f"refusing to listen on {host} without authentication: set LOOPWRIGHT_TOKENS "
        '(e.g. "TOKEN=alice") or --tokens-file, listen on 127.0.0.1, or pass '
        "--insecure-no-auth if the network is trusted"
    )


class GracefulServer(uvicorn.Server):
    """A uvicorn server that lets running turns finish (or checkpoints them) on shutdown."""

    def __init__(self, config: uvicorn.Config, app: FastAPI) -> None:
        super().__init__(config)
        self.context = server_context(app)
        #: the signals that stopped the server
        self.stop_signals: list[int] = []

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """SIGINT/SIGTERM: shut down gracefully (a second SIGINT: at once).

        Unlike plain uvicorn, the signal is not raised again after the shutdown, so
        ``run()`` returns normally and the caller can close what it opened."""
        self.stop_signals.append(sig)
        if self.should_exit and sig == signal.SIGINT:
            self.force_exit = True
        else:
            self.should_exit = True

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        await self.context.runs.shutdown(
            self.context.shutdown_grace, give_up=lambda: self.force_exit
        )
        await super().shutdown(sockets)


def make_server(
    app: FastAPI,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    insecure_no_auth: bool = False,
    log_level: str = "info",
    access_log: bool = True,
) -> GracefulServer:
    """A server for ``app`` (made by ``create_app``), after the bind check.

    Call ``server.run()`` (blocking; handles SIGINT/SIGTERM in the main thread), or
    ``await server.serve()``; set ``server.should_exit = True`` to stop it from elsewhere.
    """
    context = server_context(app)
    check_bind(host, auth_enabled=context.tokens.enabled, insecure_no_auth=insecure_no_auth)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log,
        # running turns had their grace period already; what is left are idle streams
        timeout_graceful_shutdown=5,
        server_header=False,
    )
    return GracefulServer(config, app)


def serve(
    app: FastAPI,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    insecure_no_auth: bool = False,
    log_level: str = "info",
    access_log: bool = True,
) -> None:
    """Serve ``app`` until SIGINT/SIGTERM, then shut down gracefully."""
    make_server(
        app,
        host=host,
        port=port,
        insecure_no_auth=insecure_no_auth,
        log_level=log_level,
        access_log=access_log,
    ).run()
