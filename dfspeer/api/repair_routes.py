"""Drain and repair routes (``dfspeer drain``, ``dfspeer repair``), mounted by the peer
next to the cluster routes.

- ``POST /v1/cluster/drain``: start draining this peer (idempotent); 202 with the progress
  document of :meth:`dfspeer.cluster.drain.Drainer.progress`; 409 ``drain_failed`` with the
  same document (under ``"drain"``) if it cannot start (e.g. no other peer).
- ``GET /v1/cluster/drain``: 200 with the progress document.
- ``POST /v1/cluster/repair/block-refs``: rebuild this peer's block reference counts from
  its ``block_refs`` table (:meth:`dfspeer.peer.Peer.recount_block_refs`); 200
  ``{"references", "blocks", "changed"}``. 501 ``not_supported`` when the peer state has
  no such operation (a test double).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from aiohttp import web

from dfspeer.api.context import STATE_KEY
from dfspeer.api.middleware import request_id
from dfspeer.errors import DfsError


class DrainControl(Protocol):
    def start(self) -> dict[str, Any]: ...

    def progress(self) -> dict[str, Any]: ...


DRAIN_KEY = web.AppKey("dfspeer.drain", DrainControl)
routes = web.RouteTableDef()


@routes.post("/v1/cluster/drain")
async def start_drain(request: web.Request) -> web.Response:
    doc = request.app[DRAIN_KEY].start()
    if doc.get("state") == "failed":
        return web.json_response(
            {
                "error": {
                    "code": "drain_failed",
                    "message": f"cannot drain: {doc.get('error')}",
                    "request_id": request_id(request),
                },
                "drain": doc,
            },
            status=409,
        )
    return web.json_response(doc, status=202)


@routes.get("/v1/cluster/drain", allow_head=False)
async def drain_progress(request: web.Request) -> web.Response:
    return web.json_response(request.app[DRAIN_KEY].progress())


@routes.post("/v1/cluster/repair/block-refs")
async def recount_block_refs(request: web.Request) -> web.Response:
    """Recount this peer's block references; 200 with what changed."""
    recount: Callable[[], Awaitable[dict[str, int]]] | None = getattr(
        request.app[STATE_KEY], "recount_block_refs", None
    )
    if recount is None:
        raise DfsError(
            "this peer cannot recount block references", code="not_supported", status=501
        )
    return web.json_response(await recount())
