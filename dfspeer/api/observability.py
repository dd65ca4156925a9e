"""Request context for logs, per-route byte counters and event-loop lag of one peer's API.

Three pieces, registered by :func:`dfspeer.api.app.build_app`:

- :func:`request_context_middleware` (outermost) puts the request id (the one in
  ``X-Request-Id``, see :func:`dfspeer.api.middleware.request_id`) into
  :data:`dfspeer.logsetup.current_request_id` while the request is served, so JSON log
  lines carry it;
- :class:`HttpTraffic` counts bytes per route pattern and method:
  ``dfspeer_http_request_bytes_total{route,method}`` (request body bytes received, after
  transfer decoding) and ``dfspeer_http_response_bytes_total{route,method}`` (bytes written
  to the socket for the response: status line, headers and body). ``route`` is the route
  pattern (``/v1/objects/{bucket}/{key}``) or ``unmatched``, never the raw path, so label
  cardinality stays bounded;
- :class:`EventLoopLag` samples how late the event loop wakes a sleeping task:
  ``dfspeer_event_loop_lag_seconds`` (gauge, seconds, the latest sample). A busy or blocked
  loop delays every request, gossip probe and repair RPC of the peer at once; Lifeguard's
  health score reacts to the same thing, later.

Request latency is ``dfspeer_http_request_duration_seconds{method,route}`` and request counts
by status ``dfspeer_http_requests_total{method,route,status}``, both from
:class:`dfspeer.api.metrics.ApiMetrics`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry, Counter, Gauge

from dfspeer.api.metrics import route_label
from dfspeer.api.middleware import request_id
from dfspeer.logsetup import current_request_id

log = logging.getLogger("dfspeer.api.observability")

LOOP_LAG_INTERVAL_S = 0.5  # pause between two event-loop lag samples


@web.middleware
async def request_context_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Set :data:`~dfspeer.logsetup.current_request_id` to this request's id while it runs.

    Assigns the id if no middleware has yet (same rule as the error middleware: the
    client's ``X-Request-Id`` when sane, else a fresh one). Tasks started by the handler
    inherit the id (they copy the context); it is reset when the handler returns.
    """
    token = current_request_id.set(request_id(request))
    try:
        return await handler(request)
    finally:
        current_request_id.reset(token)


class HttpTraffic:
    """Bytes in and out per route pattern and method; :attr:`middleware` records them.

    The middleware sits inside the request counter (so its latency includes writing the
    response) and outside the error middleware (so error responses are counted). It writes
    a response that the handler returned unsent itself (``prepare`` + ``write_eof``, which
    aiohttp would otherwise do just after) to learn its size; a client that goes away
    meanwhile is left to aiohttp, as before, and its response counts 0 bytes.
    """

    def __init__(self, registry: CollectorRegistry) -> None:
        self.request_bytes = Counter(
            "dfspeer_http_request_bytes",
            "HTTP request body bytes received, by route pattern and method.",
            ["route", "method"],
            registry=registry,
        )
        self.response_bytes = Counter(
            "dfspeer_http_response_bytes",
            "HTTP response bytes written (status line, headers, body), by route pattern "
            "and method.",
            ["route", "method"],
            registry=registry,
        )

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Count the request body and the whole response of every request (see class)."""
        response: web.StreamResponse | None = None
        try:
            response = await handler(request)
            await _finish(request, response)
            return response
        finally:
            route = route_label(request)
            self.request_bytes.labels(route, request.method).inc(request.content.total_bytes)
            if response is not None:
                self.response_bytes.labels(route, request.method).inc(response.body_length)


async def _finish(request: web.Request, response: web.StreamResponse) -> None:
    """Send ``response`` whole now (a no-op for one the handler already finished)."""
    try:
        await response.prepare(request)
        await response.write_eof()
    except ConnectionError as exc:  # aiohttp meets the same error next and drops the client
        log.debug("client went away id=%s: %s", request_id(request), exc)


class EventLoopLag:
    """Samples event-loop lag every ``interval_s`` seconds while the app runs.

    A sample is how much later than asked ``asyncio.sleep(interval_s)`` returned, in
    seconds (>= 0); ``dfspeer_event_loop_lag_seconds`` holds the latest one. Add
    :meth:`cleanup_ctx` to ``app.cleanup_ctx`` to run the sampler with the app.
    """

    def __init__(
        self, registry: CollectorRegistry, *, interval_s: float = LOOP_LAG_INTERVAL_S
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s!r}")
        self.interval_s = interval_s
        self.gauge = Gauge(
            "dfspeer_event_loop_lag_seconds",
            "How late the event loop woke a sleeping task at the latest sample, seconds.",
            registry=registry,
        )
        self.samples = 0  # samples taken so far

    async def run(self) -> None:
        """Sample forever (until cancelled)."""
        loop = asyncio.get_running_loop()
        while True:
            started = loop.time()
            await asyncio.sleep(self.interval_s)
            self.gauge.set(max(0.0, loop.time() - started - self.interval_s))
            self.samples += 1

    async def cleanup_ctx(self, app: web.Application) -> AsyncIterator[None]:
        """aiohttp cleanup context: the sampler runs from app startup to cleanup."""
        task = asyncio.create_task(self.run(), name="event-loop-lag")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


__all__ = [
    "LOOP_LAG_INTERVAL_S",
    "EventLoopLag",
    "HttpTraffic",
    "request_context_middleware",
]
