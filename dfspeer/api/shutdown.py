"""Graceful shutdown of one peer's HTTP API: refuse new work, let in-flight work finish.

:class:`ShutdownGate` sits innermost among the app's middlewares (inside the error
middleware, so its refusal is rendered in the one error shape). While the peer runs it only
counts the public requests in flight. Once :meth:`ShutdownGate.close` is called (the peer is
stopping: SIGTERM to ``dfspeer agent``, or ``Peer.stop()``), every new request is answered
``503 not_ready`` with ``Retry-After: 1`` (:func:`dfspeer.api.middleware.error_response`
adds it to every 503) — ``/ready`` included, so a load balancer takes the peer out of
rotation — while the requests already being served run to completion;
:meth:`ShutdownGate.wait_idle` returns when the last one finished (or after a timeout).

Not gated: ``/internal/`` (other peers finishing a quorum write or read that counts this
peer as a replica still reach it until its listener closes), ``/health`` (the process is
alive) and ``/metrics``. This is the "lame duck" state of a server being drained: not
ready, still answering.
"""

from __future__ import annotations

import asyncio

from aiohttp import web
from aiohttp.typedefs import Handler

from dfspeer.errors import NotReady

UNGATED_PATHS = ("/health", "/metrics")
UNGATED_PREFIXES = ("/internal/",)


class ShutdownGate:
    """Counts public requests in flight; refuses new ones with 503 once closed."""

    def __init__(self) -> None:
        self.closed = False
        self.in_flight = 0
        self.refused = 0  # requests answered 503 because the peer was stopping
        self._idle = asyncio.Event()
        self._idle.set()

    def close(self) -> None:
        """Stop admitting new gated requests (idempotent)."""
        self.closed = True

    async def wait_idle(self, timeout_s: float) -> bool:
        """Wait until no admitted request is in flight, at most ``timeout_s`` seconds;
        True if idle, False on timeout (those requests are then left to the HTTP
        server's own shutdown, which cancels them)."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout=timeout_s)
        except TimeoutError:
            return False
        return True

    @staticmethod
    def gated(request: web.BaseRequest) -> bool:
        """True for the requests the gate counts and, once closed, refuses."""
        path = request.path
        return path not in UNGATED_PATHS and not path.startswith(UNGATED_PREFIXES)

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Admit and count a request, or refuse it with ``NotReady`` (503) if closed."""
        if not self.gated(request):
            return await handler(request)
        if self.closed:
            self.refused += 1
            raise NotReady("this peer is shutting down; retry on another peer")
        self.in_flight += 1
        self._idle.clear()
        try:
            return await handler(request)
        finally:
            self.in_flight -= 1
            if self.in_flight == 0:
                self._idle.set()


__all__ = ["ShutdownGate"]
