"""Prometheus metrics of a peer's S3 port, on the peer's registry (so they are scraped from
its native ``GET /metrics`` with every other family).

Families (``dfspeer_`` prefix):

- ``s3_requests_total{operation,status}``: S3 requests answered, by operation and HTTP
  status;
- ``s3_request_duration_seconds{operation,status}`` (histogram, seconds, from the request's
  arrival until its last response byte is written; the native port's buckets);
- ``s3_object_bytes_received_total`` / ``s3_object_bytes_sent_total``: object payload
  bytes of PutObject and UploadPart bodies (as they are read, decoded from ``aws-chunked``)
  and of GetObject answers (as they are written); the native port's are
  ``object_bytes_*_total`` (:mod:`dfspeer.api.metrics`).

``operation`` is the name the audit log gives the request (:func:`.service.s3_target`): the
operation's handler, ``get_object``, ``put_object``, ``upload_part``, ``list_objects``,
...; ``unknown`` when the request names none (an unparsable path, a sub-resource this
server does not implement, a method the target does not take), so label cardinality stays
bounded by the operations this server has. ``status`` is the status sent, errors rendered
as S3 XML included, and 499 when the client went away first (nginx's convention), as on the
native port (:mod:`dfspeer.api.metrics`).
"""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CollectorRegistry, Counter, Histogram

from dfspeer.access.audit import Describe
from dfspeer.api.metrics import LATENCY_BUCKETS_S, measured


class S3Metrics:
    """Request counters and latency of one S3 port; :meth:`middleware` records every
    request. ``describe``: how a request's operation is named (the audit log's)."""

    def __init__(self, registry: CollectorRegistry, describe: Describe) -> None:
        self.describe = describe
        self.requests = Counter(
            "dfspeer_s3_requests",
            "S3 requests answered, by operation and status.",
            ["operation", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "dfspeer_s3_request_duration_seconds",
            "Time from an S3 request to its last response byte, by operation and status.",
            ["operation", "status"],
            registry=registry,
            buckets=LATENCY_BUCKETS_S,
        )
        self.bytes_received = Counter(
            "dfspeer_s3_object_bytes_received",
            "Object payload bytes received through the S3 API.",
            registry=registry,
        )
        self.bytes_sent = Counter(
            "dfspeer_s3_object_bytes_sent",
            "Object payload bytes sent through the S3 API.",
            registry=registry,
        )

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Outside the S3 error renderer: count and time every request with the status
        the client got."""
        return await measured(request, handler, self._record)

    def _record(self, request: web.Request, status: int, elapsed_s: float) -> None:
        operation = self.describe(request).operation or "unknown"
        self.requests.labels(operation, str(status)).inc()
        self.latency.labels(operation, str(status)).observe(elapsed_s)


S3_METRICS_KEY = web.AppKey("dfspeer_s3_metrics", S3Metrics)


def s3_metrics(request: web.Request) -> S3Metrics | None:
    """The S3 metrics of the app serving ``request`` (None when it keeps none)."""
    return request.app.get(S3_METRICS_KEY)
