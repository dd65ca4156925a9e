"""Drain routes (``dfspeer drain``), mounted by the peer next to the cluster routes.

- ``POST /v1/cluster/drain``: start draining this peer (idempotent); 202 with the progress
  document of :meth:`dfspeer.cluster.drain.Drainer.progress`; 409 ``drain_failed`` with the
  same document (under ``"drain"``) if it cannot start (e.g. no other peer).
- ``GET /v1/cluster/drain``: 200 with the progress document.
"""

from __future__ import annotations

from typing import Any, Protocol

from aiohttp import web

from dfspeer.api.middleware import request_id


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
