"""The OpenTelemetry side of :mod:`dfspeer.tracing`: the pieces its facade uses once tracing
is on (imported lazily, so a peer without OpenTelemetry never loads them), and the tracer
provider :func:`dfspeer.tracing.configure` picks from the standard ``OTEL_*`` variables:
the application's own, or an SDK provider with one batch processor per span exporter the
variables name (the rules are in :mod:`dfspeer.tracing`'s docstring).
"""

from __future__ import annotations

import logging
import os
from importlib import metadata
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Tracer, TracerProvider

log = logging.getLogger("dfspeer.tracing")  # records keep the facade's logger name

DEFAULT_SERVICE_NAME = "dfspeer"
EXPORTER_ENTRY_POINTS = "opentelemetry_traces_exporter"
_OTLP_BY_PROTOCOL = {"grpc": "otlp_proto_grpc", "http/protobuf": "otlp_proto_http"}


class _Otel:
    """The OpenTelemetry pieces the facade uses once tracing is on (imported lazily)."""

    def __init__(self, tracer: Tracer) -> None:
        from opentelemetry import context, propagate, trace
        from opentelemetry.trace import SpanKind, Status, StatusCode

        self.tracer = tracer
        self.trace = trace
        self.context = context
        self.propagate = propagate
        self.kinds: dict[str, SpanKind] = {
            "internal": SpanKind.INTERNAL,
            "server": SpanKind.SERVER,
            "client": SpanKind.CLIENT,
        }
        self._status = Status
        self._error = StatusCode.ERROR

    def error_status(self, description: str) -> Any:
        return self._status(self._error, description)


def _provider_from_environment() -> TracerProvider | None:
    """The provider :func:`configure` picks without an explicit one (module docstring)."""
    if os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return None
    try:
        from opentelemetry import trace
    except ImportError:
        if _export_requested():
            log.warning(
                "OTEL_* asks for traces but opentelemetry is not installed "
                "(pip install 'dfspeer[otel]'): tracing stays off"
            )
        return None
    current = trace.get_tracer_provider()
    if not isinstance(current, trace.ProxyTracerProvider | trace.NoOpTracerProvider):
        return current  # the application's own pipeline
    names = _exporter_names()
    if not names:
        return None
    try:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider as SdkTracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning(
            "OTEL_TRACES_EXPORTER is set but opentelemetry-sdk is not installed "
            "(pip install 'dfspeer[otel]'): tracing stays off"
        )
        return None
    exporters = [e for e in (_load_exporter(n) for n in names) if e is not None]
    if not exporters:
        return None
    resource = Resource.create()
    if str(resource.attributes.get("service.name", "")).startswith("unknown_service"):
        resource = resource.merge(Resource({"service.name": DEFAULT_SERVICE_NAME}))
    sdk = SdkTracerProvider(resource=resource)
    for exporter in exporters:
        sdk.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(sdk)
    log.info("tracing on: exporting spans with %s", ", ".join(names))
    return sdk


def _export_requested() -> bool:
    return bool(_exporter_names())


def _exporter_names() -> list[str]:
    """Entry-point names of the exporters the ``OTEL_*`` variables ask for ([] = none)."""
    env = os.environ
    raw = env.get("OTEL_TRACES_EXPORTER")
    if raw is None:
        endpoint = env.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or env.get(
            "OTEL_EXPORTER_OTLP_ENDPOINT"
        )
        raw = "otlp" if endpoint else ""
    names = [n.strip() for n in raw.split(",") if n.strip()]
    if not names or [n.lower() for n in names] == ["none"]:
        return []
    protocol = env.get("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL") or env.get(
        "OTEL_EXPORTER_OTLP_PROTOCOL", ""
    )
    protocol = protocol.strip()
    otlp = _OTLP_BY_PROTOCOL.get(protocol or "grpc")
    resolved: list[str] = []
    for name in names:
        if name == "otlp":
            if otlp is None:
                log.warning("unsupported OTLP protocol %r: no OTLP span exporter", protocol)
                continue
            name = otlp
        if name != "none" and name not in resolved:
            resolved.append(name)
    return resolved


def _load_exporter(name: str) -> SpanExporter | None:
    """A new exporter from entry point ``name`` of ``opentelemetry_traces_exporter``
    (configured by its own ``OTEL_EXPORTER_*`` variables), or None (warning logged)."""
    found = list(metadata.entry_points(group=EXPORTER_ENTRY_POINTS, name=name))
    if not found:
        log.warning(
            "no span exporter %r installed (pip install 'dfspeer[otel]' brings otlp and "
            "console): skipped",
            name,
        )
        return None
    try:
        exporter = found[0].load()()
    except Exception as exc:  # a broken exporter must not stop the peer
        log.warning("span exporter %r failed to start: %s", name, exc)
        return None
    return cast("SpanExporter", exporter)
