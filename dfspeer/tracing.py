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
``OTEL_PROPAGATORS`` says otherwise). The OpenTelemetry pieces and the provider choice are in
:mod:`dfspeer.tracing_otel`.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Coroutine, Mapping, MutableMapping
from types import TracebackType
from typing import TYPE_CHECKING, Any, Literal, ParamSpec, TypeVar, cast

from dfspeer.tracing_otel import DEFAULT_SERVICE_NAME as DEFAULT_SERVICE_NAME
from dfspeer.tracing_otel import EXPORTER_ENTRY_POINTS as EXPORTER_ENTRY_POINTS
from dfspeer.tracing_otel import _exporter_names as _exporter_names
from dfspeer.tracing_otel import _Otel, _provider_from_environment

if TYPE_CHECKING:
    from contextvars import Token

    from opentelemetry.context import Context
    from opentelemetry.trace import Span, TracerProvider

AttributeValue = str | bool | int | float
"""What a span attribute may hold (OpenTelemetry also takes sequences; we need none)."""
Kind = Literal["internal", "server", "client"]
"""The span kinds dfspeer makes: work inside a peer, a request served, a request sent."""
TRACER_NAME = "dfspeer"

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
