"""Prometheus metrics of one peer's HTTP API and state, on a registry the peer owns.

Families (``dfspeer_`` prefix):

- ``http_requests_total{method,route,status}`` and
  ``http_request_duration_seconds{method,route,status}`` (histogram, seconds, until the last byte
  of the response is written); ``route`` is the route pattern
  (``/v1/objects/{bucket}/{key}``), or ``unmatched``, so label cardinality stays bounded;
- ``object_bytes_received_total`` / ``object_bytes_sent_total``: object payload bytes
  through the public API;
- scrape-time gauges (:class:`PeerStateCollector`): ``store_blocks``, ``store_block_bytes``,
  ``store_map_used_bytes``, ``store_map_size_bytes``, ``ring_partitions_held``,
  ``ring_members``, ``ready``; counters ``store_txn_commits_total`` (LMDB write
  transactions committed: one flush each on a durable store) and
  ``store_write_requests_total`` (writes applied in them: their ratio is the group-commit
  batch size) and ``store_cache_dropped_bytes_total`` (written blocks' bytes dropped from
  the OS page cache, see :mod:`dfspeer.blockstore.page_cache`).

Gossip families come from :class:`dfspeer.gossip.metrics.GossipMetrics`, registered by the peer.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest

from dfspeer.api.context import PeerState

LATENCY_BUCKETS_S = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
)  # fmt: skip


def route_label(request: web.Request) -> str:
    """The matched route pattern of ``request``, or ``unmatched``."""
    resource = request.match_info.route.resource
    if resource is None:
        return "unmatched"
    return str(resource.canonical).replace("{key:.+}", "{key}")


Record = Callable[[web.Request, int, float], None]
"""``record(request, status, elapsed_s)``: what a metrics middleware does with one request."""


async def measured(request: web.Request, handler: Handler, record: Record) -> web.StreamResponse:
    """Run ``handler`` and ``record`` the request's status and its time in seconds, errors
    included: an ``HTTPException``'s status, 499 when the client went away (the task was
    cancelled; nginx's convention), 500 for any other exception."""
    started = time.perf_counter()
    status = 500
    try:
        response = await handler(request)
        status = response.status
        return response
    except web.HTTPException as exc:
        status = exc.status
        raise
    except asyncio.CancelledError:
        status = 499
        raise
    finally:
        record(request, status, time.perf_counter() - started)


class ApiMetrics:
    """HTTP request counters and latency; :attr:`middleware` records every request."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "dfspeer_http_requests",
            "HTTP requests handled, by method, route pattern and status.",
            ["method", "route", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "dfspeer_http_request_duration_seconds",
            "Time from request to last response byte, by method, route pattern and status.",
            ["method", "route", "status"],
            registry=registry,
            buckets=LATENCY_BUCKETS_S,
        )
        self.bytes_received = Counter(
            "dfspeer_object_bytes_received", "Object payload bytes received.", registry=registry
        )
        self.bytes_sent = Counter(
            "dfspeer_object_bytes_sent", "Object payload bytes sent.", registry=registry
        )

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Outermost middleware: count and time every request, errors included."""
        return await measured(request, handler, self._record)

    def _record(self, request: web.Request, status: int, elapsed_s: float) -> None:
        route = route_label(request)
        self.requests.labels(request.method, route, str(status)).inc()
        self.latency.labels(request.method, route, str(status)).observe(elapsed_s)

    def render(self) -> web.Response:
        """The registry in Prometheus text format."""
        response = web.Response(body=generate_latest(self.registry))
        response.headers["Content-Type"] = CONTENT_TYPE_LATEST
        return response


class PeerStateCollector:
    """Scrape-time gauges of the block store and ring of one peer (see module docstring)."""

    def __init__(self, state: PeerState) -> None:
        self.state = state

    def describe(self) -> Iterable[Metric]:
        return list(self._families(live=False))

    def collect(self) -> Iterable[Metric]:
        return list(self._families(live=True))

    def _families(self, *, live: bool) -> Iterable[Metric]:
        names = (
            ("store_blocks", "Blocks in the local block store."),
            ("store_block_bytes", "Bytes of block content in the local block store."),
            ("store_map_used_bytes", "LMDB map bytes in use."),
            ("store_map_size_bytes", "LMDB map size, bytes."),
            ("ring_partitions_held", "Partitions for which this peer is one of the replicas."),
            ("ring_members", "Peers in the ring (alive and suspect members)."),
            ("ready", "1 once this peer has joined the cluster."),
        )
        values: dict[str, float] = {}
        if live:
            state = self.state
            stats = state.store_stats()
            ring = state.ring
            values = {
                "store_blocks": stats.block_count,
                "store_block_bytes": stats.block_bytes,
                "store_map_used_bytes": stats.map_used_bytes,
                "store_map_size_bytes": stats.map_size_bytes,
                "ring_partitions_held": len(ring.partitions_of(state.peer_id)),
                "ring_members": len(ring.members),
                "ready": 1.0 if state.ready else 0.0,
                "store_txn_commits": stats.txn_commits,
                "store_write_requests": stats.write_requests,
                "store_cache_dropped_bytes": stats.cache_dropped_bytes,
            }
        for name, help_text in names:
            family = GaugeMetricFamily("dfspeer_" + name, help_text)
            if live:
                family.add_metric([], values[name])
            yield family
        counters = (
            ("store_txn_commits", "LMDB write transactions committed (one flush each)."),
            ("store_write_requests", "Writes applied in those transactions."),
            (
                "store_cache_dropped_bytes",
                "Bytes of durably written blocks dropped from the OS page cache.",
            ),
        )
        for name, help_text in counters:
            counter = CounterMetricFamily("dfspeer_" + name, help_text)
            if live:
                counter.add_metric([], values[name])
            yield counter


__all__ = [
    "CONTENT_TYPE_LATEST",
    "ApiMetrics",
    "PeerStateCollector",
    "Record",
    "measured",
    "route_label",
]
