"""An SDK client whose pooled connections belong to one event loop.

``agent.run_sync()`` called again runs each call in its own ``asyncio.run()``: the old
client's connections belong to the old loop, closed by then, and fail with "Event loop is
closed" (after the server may have had the request). :class:`PerLoopClient` makes the client
anew when it is used on another loop. A client built on an HTTP client the caller gave is
the caller's, and is kept.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, Protocol, TypeVar


class _Closable(Protocol):
    async def close(self) -> None: ...


C = TypeVar("C", bound=_Closable)


class PerLoopClient(Generic[C]):
    """``client``, replaced by ``make()`` when used on another event loop than the last
    (``make`` is ``None`` for a client on the caller's HTTP client: kept, and not closed)."""

    def __init__(self, client: C, make: Callable[[], C] | None) -> None:
        self.client = client
        self._make = make
        self._loop: asyncio.AbstractEventLoop | None = None

    def for_this_loop(self) -> C:
        """The client to use on the running event loop."""
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            if self._loop is not None and self._make is not None:
                # the old client's connections cannot be closed from this loop: dropped
                self.client = self._make()
            self._loop = loop
        return self.client

    async def aclose(self) -> None:
        """Close the client (one on the caller's HTTP client is left to the caller)."""
        if self._make is not None:
            await self.client.close()
