"""How a :class:`~dfspeer.peer.Peer` stops: each part, once started, registers its stop step
here, and :meth:`PartStack.aclose` runs the steps last started first. Background tasks are
parts too: they run until the peer stops, then are cancelled."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

log = logging.getLogger("dfspeer.peer")


class PartStack:
    """The stop steps of a peer's started parts, run in reverse by :meth:`aclose`."""

    def __init__(self) -> None:
        self._stack = contextlib.AsyncExitStack()

    def callback(self, close: Callable[[], object]) -> None:
        """Call ``close`` (synchronous, such as closing a socket) on stop."""
        self._stack.callback(close)

    def defer(self, close: Callable[[], Awaitable[Any]], what: str) -> None:
        """Unwind ``close`` on stop; a failing step is logged and the others still run."""

        async def step() -> None:
            try:
                await close()
            except Exception:
                log.exception("error while stopping the %s", what)

        self._stack.push_async_callback(step)

    def start_task(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``coro`` until the peer stops (cancelled on stop)."""
        task = asyncio.create_task(coro, name=name)

        async def cancel() -> None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        self.defer(cancel, name)

    async def aclose(self) -> None:
        """Run every stop step registered so far, in reverse; they run once."""
        await self._stack.aclose()
