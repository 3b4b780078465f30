"""Fixtures: start real servers on 127.0.0.1 (stopped after the test)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from loopwright import Agent
from loopwright.server import create_app

from .live import LiveServer, make_agent, start_live

StartServer = Callable[..., LiveServer]


@pytest.fixture
def live(tmp_path: Path) -> Iterator[StartServer]:
    """``live(agent=None, **create_app_options)``: a running server (the test agent by
    default)."""
    servers: list[LiveServer] = []

    def start(agent: Agent | None = None, **options: Any) -> LiveServer:
        app = create_app(agent if agent is not None else make_agent(tmp_path), **options)
        server = start_live(app)
        servers.append(server)
        return server

    yield start
    for server in servers:
        if server.thread.is_alive():
            server.stop()
