"""Distributed tracing: a small facade over OpenTelemetry that costs next to nothing when off.

OpenTelemetry is an optional extra (``pip install 'dfspeer[otel]'``). This module does not
import it; :func:`configure` does, if it is installed. Until tracing is on (and for good
when the packages are missing) :func:`span` hands out one shared no-op context manager,
:func:`inject` / :func:`extract` return at once and :func:`current_trace_id` is ``None``.

The facade::

    with span("replicator.read_block", {"dfspeer.block": digest.hex()}, n=1) as s:
        ...                                  # ``async with`` works too
        s.set_attribute("dfspeer.acks", 2)   # s.set_error("...") marks the span failed

    inject(headers)              # add W3C ``traceparent`` (and ``tracestate``) to a request
    parent = extract(headers)    # ... and read them back on the server:
    with span("GET /internal/blocks/{digest}", kind="server", parent=parent): ...

    current_trace_id()           # "4bf92f3577b34da6a3ce929d0e0e4736" inside a span, else None

:func:`traced` wraps a coroutine function in a span (used on the replicator and the peer RPC
client, so their code keeps its shape).

Turning it on, :func:`configure` (``dfspeer agent`` calls it at start; an embedding
application calls it itself):

- ``configure(provider)``: spans go to that ``TracerProvider`` (tests, an application with
  its own pipeline); the global provider is left alone;
- ``configure()``: off if OpenTelemetry is not installed or ``OTEL_SDK_DISABLED=true``;
  else the application's global provider if it has set one
  (``opentelemetry.trace.set_tracer_provider``); else, when the standard variables ask
  for export -- ``OTEL_TRACES_EXPORTER`` names exporters (``otlp``, ``console``, any
  ``opentelemetry_traces_exporter`` entry point; ``none`` is off), or it is unset and
  ``OTEL_EXPORTER_OTLP_ENDPOINT`` / ``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`` is set, which
  means ``otlp`` -- an SDK ``TracerProvider`` with one ``BatchSpanProcessor`` per exporter,
  installed as the global provider. ``otlp`` is gRPC unless ``OTEL_EXPORTER_OTLP_PROTOCOL``
  (or ``..._TRACES_PROTOCOL``) says ``http/protobuf``, as in the OpenTelemetry SDK's own
  auto-configuration. The resource comes from ``OTEL_SERVICE_NAME`` /
  ``OTEL_RESOURCE_ATTRIBUTES`` (``service.name`` defaults to ``dfspeer``) and sampling from
  ``OTEL_TRACES_SAMPLER`` (default: parent-based always-on), both read by the SDK.

Propagation uses the global propagator (W3C trace context and baggage unless
``OTEL_PROPAGATORS`` says otherwise).
"""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Coroutine, Mapping, MutableMapping
from importlib import metadata
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar, cast

if TYPE_CHECKING:
    from contextvars import Token

    from opentelemetry.context import Context
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, Tracer, TracerProvider

log = logging.getLogger(__name__)

AttributeValue = str | bool | int | float
"""What a span attribute may hold (OpenTelemetry also takes sequences; we need none)."""
Kind = Literal["internal", "server", "client"]
"""The span kinds dfspeer makes: work inside a peer, a request served, a request sent."""
TRACER_NAME = "dfspeer"
DEFAULT_SERVICE_NAME = "dfspeer"
EXPORTER_ENTRY_POINTS = "opentelemetry_traces_exporter"
_OTLP_BY_PROTOCOL = {"grpc": "otlp_proto_grpc", "http/protobuf": "otlp_proto_http"}

P = ParamSpec("P")
R = TypeVar("R")


class Parent:
    """An extracted remote span context (opaque): pass it to :func:`span` as ``parent``."""

    __slots__ = ("context",)

    def __init__(self, context: Context) -> None:
        self.context = context


class SpanHandle:
    """The span a :func:`span` block runs in; every method is a no-op when tracing is off."""

    __slots__ = ("_span",)

    def __init__(self, span: Span | None) -> None:
        self._span = span

    def set_attribute(self, key: str, value: AttributeValue) -> None:
        """Set one attribute (semantic-convention names, or ``dfspeer.*``)."""
        if self._span is not None:
            self._span.set_attribute(key, value)

    def set_error(self, description: str) -> None:
        """Mark the span failed (an exception leaving the block does this by itself)."""
        if self._span is not None and _otel is not None:
            self._span.set_status(_otel.error_status(description))

    @property
    def recording(self) -> bool:
        """True if this span is recorded (tracing on and the span sampled)."""
        return self._span is not None and self._span.is_recording()


_NOOP_HANDLE = SpanHandle(None)


class _NoopScope:
    """The shared context manager :func:`span` returns while tracing is off."""

    __slots__ = ()

    def __enter__(self) -> SpanHandle:
        return _NOOP_HANDLE

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None

    async def __aenter__(self) -> SpanHandle:
        return _NOOP_HANDLE

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None


_NOOP_SCOPE = _NoopScope()


class _LiveScope(_NoopScope):
    """A span started at ``__enter__`` and current until ``__exit__``, which ends it. Like
    OpenTelemetry's ``start_as_current_span`` (an ``Exception`` leaving the block is recorded
    and sets the status to error; ``CancelledError`` and other ``BaseException`` s only end
    it), minus its generator-based context manager (a fifth of the cost of a span)."""

    __slots__ = ("_attributes", "_kind", "_name", "_otel", "_parent", "_span", "_token")

    def __init__(
        self,
        otel: _Otel,
        name: str,
        kind: Kind,
        parent: Parent | None,
        attributes: Mapping[str, AttributeValue],
    ) -> None:
        self._otel = otel
        self._name = name
        self._kind = kind
        self._parent = parent
        self._attributes = attributes
        self._span: Span | None = None
        self._token: object = None

    def __enter__(self) -> SpanHandle:
        otel = self._otel
        span = otel.tracer.start_span(
            self._name,
            context=self._parent.context if self._parent is not None else None,
            kind=otel.kinds[self._kind],
            attributes=self._attributes or None,
        )
        self._span = span
        self._token = otel.context.attach(otel.trace.set_span_in_context(span))
        return SpanHandle(span)

    def __exit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        span = self._span
        if span is None:
            return
        self._span = None
        try:
            if isinstance(e, Exception) and span.is_recording():
                span.record_exception(e)
                span.set_status(self._otel.error_status(f"{type(e).__name__}: {e}"))
        finally:
            self._otel.context.detach(cast("Token[Context]", self._token))
            span.end()

    async def __aenter__(self) -> SpanHandle:
        return self.__enter__()

    async def __aexit__(
        self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.__exit__(et, e, tb)


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


_otel: _Otel | None = None


# ---------------------------------------------------------------------- the facade
def enabled() -> bool:
    """True while tracing is on (after a :func:`configure` that turned it on)."""
    return _otel is not None


def span(
    name: str,
    attributes: Mapping[str, AttributeValue] | None = None,
    *,
    kind: Kind = "internal",
    parent: Parent | None = None,
    **more: AttributeValue,
) -> _NoopScope:
    """A context manager (``with`` or ``async with``) running its block in a new span
    ``name``, child of the current span (or of ``parent``, a remote context from
    :func:`extract`), with ``attributes`` and the keyword ``more`` (for names that are
    identifiers). It yields a :class:`SpanHandle`. Off: a shared no-op, nothing allocated."""
    if _otel is None:
        return _NOOP_SCOPE
    if more:
        attributes = {**(attributes or {}), **more}
    return _scope(name, kind, parent, attributes or {})


def _scope(
    name: str, kind: Kind, parent: Parent | None, attributes: Mapping[str, AttributeValue]
) -> _NoopScope:
    otel = _otel
    if otel is None:
        return _NOOP_SCOPE
    return _LiveScope(otel, name, kind, parent, attributes)


def inject(headers: MutableMapping[str, str]) -> None:
    """Add the current trace context to outgoing ``headers`` (W3C ``traceparent``, and
    ``tracestate``/``baggage`` when there are some). No-op when off or outside a span."""
    otel = _otel
    if otel is not None:
        otel.propagate.inject(headers)


def extract(headers: Mapping[str, str]) -> Parent | None:
    """The remote trace context carried by incoming ``headers`` (case-insensitive mapping,
    e.g. aiohttp's ``request.headers``), or None when off. Headers without one give an
    empty context: a span with it as ``parent`` starts a new trace."""
    otel = _otel
    if otel is None:
        return None
    return Parent(otel.propagate.extract(headers))


def current_trace_id() -> str | None:
    """The trace id of the current span, 32 lowercase hex digits, or None (off, or no span)."""
    otel = _otel
    if otel is None:
        return None
    context = otel.trace.get_current_span().get_span_context()
    return format(context.trace_id, "032x") if context.is_valid else None


def traced(
    name: str,
    describe: Callable[..., Mapping[str, AttributeValue]] | None = None,
    *,
    outcome: Callable[[Any], Mapping[str, AttributeValue]] | None = None,
    kind: Kind = "internal",
) -> Callable[[Callable[P, Coroutine[Any, Any, R]]], Callable[P, Coroutine[Any, Any, R]]]:
    """Decorator: each call of the coroutine function runs in a span ``name``.

    Only when tracing is on: ``describe``, called with the call's arguments, gives the
    span's attributes, and ``outcome``, called with the result, more of them. Off, a call
    costs one extra check and coroutine frame.
    """

    def decorate(fn: Callable[P, Coroutine[Any, Any, R]]) -> Callable[P, Coroutine[Any, Any, R]]:
        @functools.wraps(fn)
        async def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            if _otel is None:
                return await fn(*args, **kwargs)
            attributes = describe(*args, **kwargs) if describe is not None else {}
            with _scope(name, kind, None, attributes) as span:
                result = await fn(*args, **kwargs)
                if outcome is not None:
                    for key, value in outcome(result).items():
                        span.set_attribute(key, value)
                return result

        return wrapper

    return decorate


# ---------------------------------------------------------------------- configuration
def configure(provider: TracerProvider | None = None) -> bool:
    """Turn tracing on if there is somewhere to send spans; return whether it is on.

    See the module docstring for the rules. Safe to call again (a later call with the same
    environment keeps the provider the first one installed). Never raises for a bad or
    missing exporter: it logs a warning and leaves tracing off.
    """
    global _otel
    if provider is None:
        provider = _provider_from_environment()
    if provider is None:
        _otel = None
        return False
    _otel = _Otel(provider.get_tracer(TRACER_NAME))
    return True


def disable() -> None:
    """Turn tracing off again (spans already started finish normally)."""
    global _otel
    _otel = None


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


__all__ = [
    "AttributeValue",
    "Kind",
    "Parent",
    "SpanHandle",
    "configure",
    "current_trace_id",
    "disable",
    "enabled",
    "extract",
    "inject",
    "span",
    "traced",
]
