"""Cluster and operations routes: members, ring, status, health, readiness, metrics.

Shapes:

- ``GET /v1/cluster/members``: ``{"self": id, "members": [{"id", "address",
  "gossip_address", "state", "incarnation", "zone", "weight", "version"}]}`` sorted by id;
  ``address`` is the API ``host:port``, ``gossip_address`` the gossip ``host:port``.
- ``POST /v1/cluster/members/{id}/remove``: forget a DEAD member for good
  (:meth:`dfspeer.peer.Peer.remove_member`); 200 with its entry (``state`` ``"left"``);
  409 ``member_alive`` for an alive or suspect member, 404 ``no_such_member`` for an
  unknown id, 501 ``not_supported`` when the peer state cannot (a test double).
- ``GET /v1/cluster/ring``: ``{"partitions", "partition_bits", "replication_factor",
  "digest", "peers": {id: {"partitions": count, "zone", "weight"}}, "assignments": {id:
  [partition, ...]}}``.
- ``GET /v1/cluster/status``: ``{"id", "ready", "blocks", "block_bytes", "map_used_bytes",
  "map_size_bytes", "partitions_held", "members": {state: count}, "ring_digest",
  "version", "repair": {...}, "gc": {...}}`` (``repair``:
  :meth:`dfspeer.peer.Peer.repair_status`; ``gc``: :meth:`dfspeer.peer.Peer.gc_status`;
  ``dedup``: :meth:`dfspeer.peer.Peer.dedup_status`).
- ``GET /health``: 200 ``{"status": "ok"}`` while the process serves HTTP.
- ``GET /ready``: 200 ``{"status": "ready"}`` once joined, else 503 ``not_ready``.
- ``GET /metrics``: Prometheus text.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from aiohttp import web

import dfspeer
from dfspeer.api.context import METRICS_KEY, STATE_KEY
from dfspeer.errors import DfsError, NotReady
from dfspeer.gossip import Member, MemberState

routes = web.RouteTableDef()


def host_port(host: str, port: int) -> str:
    """``host:port``, with IPv6 literals in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def member_json(member: Member) -> dict[str, Any]:
    """One entry of ``/v1/cluster/members``."""
    return {
        "id": member.id,
        "address": member.api_address,
        "gossip_address": host_port(*member.gossip_address),
        "state": member.state.value,
        "incarnation": member.incarnation,
        "zone": member.zone,
        "weight": member.weight,
        "version": member.version,
    }


@routes.get("/v1/cluster/members", allow_head=False)
async def members(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    listed = sorted(state.members(), key=lambda m: m.id)
    return web.json_response({"self": state.peer_id, "members": [member_json(m) for m in listed]})


@routes.post("/v1/cluster/members/{id}/remove")
async def remove_member(request: web.Request) -> web.Response:
    """Forget a dead member for good; 200 with its entry (see the module docstring)."""
    remove: Callable[[str], Member] | None = getattr(request.app[STATE_KEY], "remove_member", None)
    if remove is None:
        raise DfsError("this peer cannot remove members", code="not_supported", status=501)
    return web.json_response(member_json(remove(request.match_info["id"])))


@routes.get("/v1/cluster/ring", allow_head=False)
async def ring(request: web.Request) -> web.Response:
    current = request.app[STATE_KEY].ring
    assignments = {m.peer_id: list(current.partitions_of(m.peer_id)) for m in current.members}
    peers = {
        m.peer_id: {"partitions": len(assignments[m.peer_id]), "zone": m.zone, "weight": m.weight}
        for m in current.members
    }
    return web.json_response(
        {
            "partitions": current.partition_count,
            "partition_bits": current.partitioner.partition_bits,
            "replication_factor": current.replication_factor,
            "digest": current.digest,
            "peers": peers,
            "assignments": assignments,
        }
    )


@routes.get("/v1/cluster/status", allow_head=False)
async def status(request: web.Request) -> web.Response:
    state = request.app[STATE_KEY]
    stats = state.store_stats()
    current = state.ring
    by_state = {s.value: 0 for s in MemberState}
    for member in state.members():
        by_state[member.state.value] += 1
    repair = getattr(state, "repair_status", None)  # a Peer has it; test doubles may not
    extra = {"repair": repair()} if callable(repair) else {}
    gc = getattr(state, "gc_status", None)  # likewise
    if callable(gc):
        extra["gc"] = gc()
    dedup = getattr(state, "dedup_status", None)  # likewise (dfspeer.objects.dedup_stats)
    if callable(dedup):
        extra["dedup"] = await dedup()
    return web.json_response(
        {
            "id": state.peer_id,
            "ready": state.ready,
            "blocks": stats.block_count,
            "block_bytes": stats.block_bytes,
            "map_used_bytes": stats.map_used_bytes,
            "map_size_bytes": stats.map_size_bytes,
            "partitions_held": len(current.partitions_of(state.peer_id)),
            "members": by_state,
            "ring_digest": current.digest,
            "version": dfspeer.__version__,
            **extra,
        }
    )


@routes.get("/health")
async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.get("/ready")
async def ready(request: web.Request) -> web.Response:
    if not request.app[STATE_KEY].ready:
        raise NotReady("this peer has not joined the cluster yet")
    return web.json_response({"status": "ready"})


@routes.get("/metrics", allow_head=False)
async def metrics(request: web.Request) -> web.Response:
    return request.app[METRICS_KEY].render()
