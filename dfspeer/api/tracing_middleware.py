"""Server spans: one OpenTelemetry span per HTTP request a peer serves (:mod:`dfspeer.tracing`).

:func:`server_spans` makes the aiohttp middleware. The public app registers it (skipping
``/internal/``, whose sub-app has its own) and the ``/internal/`` app registers it
outermost, before the signature check. Each request runs in a ``SERVER`` span:

- name: method and route pattern (``GET /v1/objects/{bucket}/{key}``,
  ``PUT /internal/blocks/{digest}``), just the method for an unmatched path, so span names
  stay few;
- parent: the W3C ``traceparent`` the caller sent (peer RPC always sends one while tracing
  is on), so a replica's work joins the coordinator's trace; without one a new trace;
- attributes: ``http.request.method``, ``http.route``, ``http.response.status_code``,
  ``dfspeer.bucket`` / ``dfspeer.key`` when the route has them, ``dfspeer.peer`` (the
  serving peer's id, when known);
- status: error for a 5xx answer or an exception (recorded on the span).

The ``traceparent`` header is outside what a peer RPC signature covers (method, path,
query, date, peer and body hash: :mod:`dfspeer.cluster.auth`), so adding it changes no
signature. Tracing off, the middleware only calls :func:`dfspeer.tracing.enabled`.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler

from dfspeer import tracing
from dfspeer.api.metrics import route_label

Middleware = Any  # aiohttp's middleware type (a decorated coroutine function)


def span_name(request: web.Request) -> tuple[str, str]:
    """``(span name, route)`` of ``request``: ``"GET /v1/objects/{bucket}/{key}"``."""
    route = route_label(request)
    if route == "unmatched":
        return request.method, route
    return f"{request.method} {route}", route


def server_spans(*, skip_prefix: str | None = None, peer: str | None = None) -> Middleware:
    """The middleware (module docstring). ``skip_prefix``: paths starting with it get no
    span here (a sub-app traces them itself); ``peer``: this peer's id, as ``dfspeer.peer``."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not tracing.enabled() or (skip_prefix and request.path.startswith(skip_prefix)):
            return await handler(request)
        name, route = span_name(request)
        attributes: dict[str, tracing.AttributeValue] = {
            "http.request.method": request.method,
            "http.route": route,
        }
        for field in ("bucket", "key"):
            value = request.match_info.get(field)
            if value is not None:
                attributes[f"dfspeer.{field}"] = value
        if peer:
            attributes["dfspeer.peer"] = peer
        parent = tracing.extract(request.headers)
        async with tracing.span(name, attributes, kind="server", parent=parent) as span:
            try:
                response = await handler(request)
            except web.HTTPException as exc:
                _record_status(span, exc.status)
                raise
            _record_status(span, response.status)
            return response

    return middleware


def _record_status(span: tracing.SpanHandle, status: int) -> None:
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_error(f"HTTP {status}")


__all__ = ["server_spans", "span_name"]
