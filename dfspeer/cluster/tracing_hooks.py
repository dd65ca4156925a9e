"""The spans of the cluster layer: peer RPC client spans and the replicator's steps.

Kept here so :mod:`.rpc`, :mod:`.replication` and :mod:`.quorum` carry one decorator line
per traced function (:func:`dfspeer.tracing.traced`) and nothing else:

- ``replicator.write_block`` / ``replicator.read_block`` (``dfspeer.block``: hex digest,
  ``dfspeer.bytes``), ``replicator.write_record`` / ``replicator.read_record``
  (``dfspeer.table``), with ``dfspeer.quorum.need``; writes add ``dfspeer.quorum.acks``;
- ``quorum.wait``: the wait for W (or R) replicas, with ``dfspeer.quorum.need``,
  ``dfspeer.quorum.replicas`` and, when it ends, ``dfspeer.quorum.acks``,
  ``dfspeer.quorum.failed`` and ``dfspeer.quorum.pending`` (still running: stragglers);
- one ``CLIENT`` span per peer RPC (:func:`traced_rpc` on ``PeerRpcClient._call``), named
  like the replica's server span (``PUT /internal/blocks/{digest}``), with
  ``http.request.method``, ``url.template``, ``server.address``, ``server.port``,
  ``dfspeer.table`` (or the Merkle tree) and ``http.response.status_code``; error status
  for a 5xx answer or a failure to get one. ``_call`` injects ``traceparent`` into the
  request inside this span, so the replica's server span is its child;
- a record read on the peer channel (:mod:`.channel`) runs in a ``CLIENT`` span
  ``CHANNEL get_record`` (``server.address``, ``server.port``, ``dfspeer.table``,
  ``dfspeer.channel.status``) whose context rides in the message, and the replica's
  ``SERVER`` span of the same name (``dfspeer.peer``) is its child.

The replicas' RPC tasks are created inside the replicator's span (``asyncio.create_task``
copies the context), so their client spans are its children; stragglers that finish after
it are still in the same trace.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Coroutine, Mapping
from typing import Any, Concatenate, ParamSpec, TypeVar

from dfspeer import tracing
from dfspeer.tracing import AttributeValue

P = ParamSpec("P")
S = TypeVar("S")
Attributes = dict[str, AttributeValue]
RpcResult = tuple[int, str, bytes]

_RPC_ROUTES: tuple[tuple[re.Pattern[str], str, str], ...] = (
    (re.compile(r"/internal/blocks/[0-9a-f]{64}"), "/internal/blocks/{digest}", ""),
    (re.compile(r"/internal/hints/blocks/[0-9a-f]{64}"), "/internal/hints/blocks/{digest}", ""),
    (
        re.compile(r"/internal/hints/records/([^/]+)/[^/]+"),
        "/internal/hints/records/{table}/{key}",
        "dfspeer.table",
    ),
    (
        re.compile(r"/internal/tables/([^/]+)/records/[^/]+"),
        "/internal/tables/{table}/records/{key}",
        "dfspeer.table",
    ),
    (
        re.compile(r"/internal/tables/([^/]+)/scan"),
        "/internal/tables/{table}/scan",
        "dfspeer.table",
    ),
    (re.compile(r"/internal/merkle/([^/]+)"), "/internal/merkle/{tree}", "dfspeer.tree"),
)


def rpc_route(path_qs: str) -> tuple[str, Attributes]:
    """The route pattern of an ``/internal/`` request target (``/internal/blocks/{digest}``;
    a path without parameters, such as ``/internal/status``, as it is, without its query)
    and the attributes it names."""
    path = path_qs.partition("?")[0]
    for pattern, template, attribute in _RPC_ROUTES:
        match = pattern.fullmatch(path)
        if match is not None:
            return template, ({attribute: match.group(1)} if attribute else {})
    return path, {}


def peer_attributes(address: str) -> Attributes:
    """``server.address`` and ``server.port`` of a peer's ``host:port`` (a client span's)."""
    host, _, port = address.rpartition(":")
    attributes: Attributes = {"server.address": host or address}
    if port.isdigit():
        attributes["server.port"] = int(port)
    return attributes


def rpc_span(method: str, address: str, path_qs: str) -> tuple[str, Attributes]:
    """Name and attributes of the client span of one peer RPC."""
    route, attributes = rpc_route(path_qs)
    attributes["http.request.method"] = method
    attributes["url.template"] = route
    attributes.update(peer_attributes(address))
    return f"{method} {route}", attributes


def traced_rpc(
    call: Callable[Concatenate[S, str, str, str, P], Coroutine[Any, Any, RpcResult]],
) -> Callable[Concatenate[S, str, str, str, P], Coroutine[Any, Any, RpcResult]]:
    """Decorator of ``PeerRpcClient._call(self, method, address, path_qs, ...)`` returning
    ``(status, body sha256, body)``: runs each call in a client span (module docstring)."""

    @functools.wraps(call)
    async def wrapper(
        self: S, method: str, address: str, path_qs: str, /, *args: P.args, **kwargs: P.kwargs
    ) -> RpcResult:
        if not tracing.enabled():
            return await call(self, method, address, path_qs, *args, **kwargs)
        name, attributes = rpc_span(method, address, path_qs)
        async with tracing.span(name, attributes, kind="client") as span:
            result = await call(self, method, address, path_qs, *args, **kwargs)
            span.set_attribute("http.response.status_code", result[0])
            if result[0] >= 500:
                span.set_error(f"HTTP {result[0]}")
            return result

    return wrapper


# ---------------------------------------------------------------------- replicator
def block_write(replicator: Any, data: bytes, digest: bytes, *_: Any, **__: Any) -> Attributes:
    """Attributes of ``replicator.write_block``."""
    return {
        "dfspeer.block": digest.hex(),
        "dfspeer.bytes": len(data),
        "dfspeer.quorum.need": replicator.write_quorum,
    }


def block_read(replicator: Any, digest: bytes, *_: Any, **__: Any) -> Attributes:
    """Attributes of ``replicator.read_block``."""
    return {"dfspeer.block": digest.hex()}


def record_write(replicator: Any, table: str, *_: Any, **__: Any) -> Attributes:
    """Attributes of ``replicator.write_record``."""
    return {"dfspeer.table": table, "dfspeer.quorum.need": replicator.write_quorum}


def record_read(replicator: Any, table: str, *_: Any, **__: Any) -> Attributes:
    """Attributes of ``replicator.read_record``."""
    return {"dfspeer.table": table, "dfspeer.quorum.need": replicator.read_quorum}


def acks(result: Any) -> Attributes:
    """``dfspeer.quorum.acks`` of a write that returned its number of acks."""
    return {"dfspeer.quorum.acks": result} if isinstance(result, int) else {}


# ---------------------------------------------------------------------- quorum
def quorum_wait(tasks: Mapping[str, Any], need: int, *_: Any, **__: Any) -> Attributes:
    """Attributes of ``quorum.wait`` when it starts."""
    return {"dfspeer.quorum.need": need, "dfspeer.quorum.replicas": len(tasks)}


def quorum_outcome(outcome: Any) -> Attributes:
    """Attributes of ``quorum.wait`` when it ends (from its ``QuorumOutcome``)."""
    return {
        "dfspeer.quorum.acks": len(outcome.results),
        "dfspeer.quorum.failed": len(outcome.errors),
        "dfspeer.quorum.pending": len(outcome.pending),
    }


__all__ = [
    "acks",
    "block_read",
    "block_write",
    "peer_attributes",
    "quorum_outcome",
    "quorum_wait",
    "record_read",
    "record_write",
    "rpc_route",
    "rpc_span",
    "traced_rpc",
]
