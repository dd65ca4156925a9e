"""The peer's aiohttp application: public routes, cluster routes, metrics, ``/internal/``."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Middleware
from prometheus_client import CollectorRegistry

from dfspeer.access.audit import AuditLog, Describe, native_target
from dfspeer.access.limits import LIMITS_KEY, Limits
from dfspeer.access.middleware import ACCESS_KEY, AccessControl
from dfspeer.api import access_routes, buckets, cluster_routes, public, share_routes
from dfspeer.api.context import (
    CONFIG_KEY,
    METRICS_KEY,
    OBJECTS_KEY,
    STATE_KEY,
    ObjectBackend,
    PeerState,
)
from dfspeer.api.metrics import ApiMetrics, PeerStateCollector
from dfspeer.api.middleware import add_request_id_header, error_middleware
from dfspeer.api.observability import EventLoopLag, HttpTraffic, request_context_middleware
from dfspeer.api.shutdown import ShutdownGate
from dfspeer.api.tracing_middleware import server_spans
from dfspeer.config import MiB, PeerConfig

INTERNAL_PREFIX = "/internal/"


def client_max_size(config: PeerConfig) -> int:
    """Largest body a handler may ``read()`` whole, bytes: the largest block any write
    path stores (a fixed or content-defined chunk, a resumable upload's part:
    :attr:`PeerConfig.max_block_bytes`) plus 1 MiB of framing.

    Object uploads stream and are not bound by it (``max_object_size_bytes`` is); it bounds
    buffered bodies: peer RPC block writes (one block each) and JSON requests (which also
    have their own, smaller caps).
    """
    return config.max_block_bytes + MiB


def build_app(
    objects: ObjectBackend,
    state: PeerState,
    config: PeerConfig,
    *,
    registry: CollectorRegistry,
    internal: web.Application | None = None,
    gate: ShutdownGate | None = None,
    access: AccessControl | None = None,
    audit: AuditLog | None = None,
) -> web.Application:
    """The public application of one peer.

    ``objects`` serves the object routes, ``state`` the cluster routes and gauges;
    HTTP, state and event-loop lag metrics are registered on ``registry`` (once per
    registry: a second call raises ValueError); log records made while a request is served
    carry its id (:mod:`dfspeer.api.observability`). ``internal`` (the peer RPC sub-app) is
    mounted under ``/internal/`` and shares the error shape and request metrics. ``gate``
    (innermost middleware) answers 503 ``not_ready`` once the peer is stopping and counts
    the requests in flight (:mod:`dfspeer.api.shutdown`). ``access`` (inside the error
    middleware) authenticates and authorizes every request outside ``/internal/`` before
    its handler runs and serves the ``/v1/keys`` and bucket permission routes
    (:mod:`dfspeer.access`); without it (test doubles) every request is allowed. With
    ``access`` and a limit set in ``config``, the rate limits and in-flight cap
    (:mod:`dfspeer.access.limits`, in ``app[LIMITS_KEY]``) run right inside it. ``audit``
    (right outside the error middleware, so it sees the status sent) writes a line for
    every mutating or refused request (:mod:`dfspeer.access.audit`).
    """
    metrics = ApiMetrics(registry)
    traffic = HttpTraffic(registry)
    loop_lag = EventLoopLag(registry)
    registry.register(PeerStateCollector(state))
    limits = _limits(config, access)
    describe = native_target(metrics_public=config.metrics_public)
    app = web.Application(
        middlewares=_middlewares(
            metrics, traffic, describe, audit=audit, access=access, limits=limits, gate=gate
        ),
        client_max_size=client_max_size(config),
    )
    app.cleanup_ctx.append(loop_lag.cleanup_ctx)
    app[OBJECTS_KEY] = objects
    app[STATE_KEY] = state
    app[CONFIG_KEY] = config
    app[METRICS_KEY] = metrics
    app.on_response_prepare.append(add_request_id_header)
    if audit is not None:
        audit.install(app, "native", describe)
    _add_routes(app, access, limits)
    if internal is not None:
        app.add_subapp(INTERNAL_PREFIX, internal)
    return app


def _middlewares(
    metrics: ApiMetrics,
    traffic: HttpTraffic,
    describe: Describe,
    *,
    audit: AuditLog | None,
    access: AccessControl | None,
    limits: Limits | None,
    gate: ShutdownGate | None,
) -> list[Middleware]:
    """The middleware stack, outermost first (:func:`build_app` says where each one runs)."""
    return [
        request_context_middleware,
        server_spans(skip_prefix=INTERNAL_PREFIX),  # the internal app has its own
        metrics.middleware,
        traffic.middleware,
        *([audit.middleware("native", describe)] if audit is not None else []),
        error_middleware,
        *([access.middleware] if access is not None else []),
        *([limits.middleware] if limits is not None else []),
        *([gate.middleware] if gate is not None else []),
    ]


def _limits(config: PeerConfig, access: AccessControl | None) -> Limits | None:
    """The rate limits and in-flight caps of ``config``; None without ``access`` or when
    none is set."""
    limits = Limits.from_config(config) if access is not None else None
    if limits is not None and not limits.enabled:
        limits = None
    return limits


def _add_routes(app: web.Application, access: AccessControl | None, limits: Limits | None) -> None:
    """The object, bucket and cluster routes; with ``access``, its key, permission and
    share-link routes; ``limits`` in ``app[LIMITS_KEY]`` when there are some."""
    app.add_routes(public.routes)
    app.add_routes(buckets.routes)
    app.add_routes(cluster_routes.routes)
    if access is not None:
        app[ACCESS_KEY] = access
        app.add_routes(access_routes.routes)
        app.add_routes(share_routes.routes)
    if limits is not None:
        app[LIMITS_KEY] = limits
