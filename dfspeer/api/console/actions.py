"""The console's own JSON beyond download links: share links, version restore, the
cluster-wide peer figures.

- ``GET /ui/api/share-link?bucket=&key=[&version=]&expires_in=S`` (authorized as the
  bucket's owner; the admin too): ``{"url", "expires", "version"}``: an absolute ``/ui/dl``
  link (:mod:`dfspeer.api.console.links`) to the version current now (or the one named),
  valid ``S`` seconds, :data:`~dfspeer.api.console.links.SHARE_MIN_TTL_S` ..
  :data:`~dfspeer.api.console.links.SHARE_MAX_TTL_S`; 400 ``invalid_argument`` outside.
- ``POST /ui/api/restore?bucket=&key=&version=`` (a write of the bucket): the version's
  bytes become a new current version with its content type and metadata (the chunks are
  content-addressed, so nothing is stored twice); 201 with the object JSON of
  ``PUT /v1/objects``; 404 ``no_such_version``; 400 for a delete marker.
- ``GET /ui/api/peers`` (any principal): ``{"peers": {id: {"blocks", "block_bytes",
  "partitions_held", "map_used_bytes", "map_size_bytes", ...} | {"error": text}}}`` for
  every alive or suspect member, each read with the peer RPC ``/internal/status`` (at most
  :data:`PEER_STATUS_TIMEOUT_S` each, in parallel).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote, urlencode

from aiohttp import web

from dfspeer.api.console.links import SHARE_MAX_TTL_S, SHARE_MIN_TTL_S, DownloadLinks
from dfspeer.api.context import OBJECTS_KEY, STATE_KEY
from dfspeer.api.public import object_json, version_param
from dfspeer.errors import DfsError, InvalidArgument
from dfspeer.gossip import MemberState
from dfspeer.objects.download import close_stream
from dfspeer.objects.names import validate_bucket, validate_key

PeerStatus = Callable[[str], Awaitable[dict[str, Any]]]
"""The ``/internal/status`` document of the peer at an API address (``PeerRpcClient.status``)."""

PEER_STATUS_TIMEOUT_S = 3.0
LINKS_KEY = web.AppKey("dfspeer.console.links", DownloadLinks)
PEER_STATUS_KEY: web.AppKey[PeerStatus] = web.AppKey("dfspeer.console.peer_status")
NO_STORE = {"Cache-Control": "no-store"}

routes = web.RouteTableDef()


def names(request: web.Request) -> tuple[str, str]:
    """``?bucket=`` and ``?key=``, validated. Raises InvalidArgument and the name errors."""
    bucket, key = request.query.get("bucket", ""), request.query.get("key", "")
    if not bucket or not key:
        raise InvalidArgument("?bucket= and ?key= are required")
    validate_bucket(bucket)
    validate_key(key)
    return bucket, key


def link_url(
    request: web.Request,
    links: DownloadLinks,
    bucket: str,
    key: str,
    version: str,
    *,
    ttl_s: float | None = None,
) -> dict[str, Any]:
    """A signed ``/ui/dl`` link: ``{"url", "expires", "version"}`` (``url`` a path)."""
    link, signature = links.make(bucket, key, version, ttl_s=ttl_s)
    query = urlencode(
        {
            "bucket": bucket,
            "key": key,
            "version": link.version,
            "expires": link.expires,
            "sig": signature,
        },
        quote_via=quote,
    )
    return {"url": f"/ui/dl?{query}", "expires": link.expires, "version": link.version}


@routes.get("/api/share-link")
async def share_link(request: web.Request) -> web.Response:
    """A share link with a chosen lifetime (module docstring)."""
    bucket, key = names(request)
    text = request.query.get("expires_in", "")
    if not text.isdigit() or not SHARE_MIN_TTL_S <= int(text) <= SHARE_MAX_TTL_S:
        raise InvalidArgument(f"expires_in must be {SHARE_MIN_TTL_S}..{SHARE_MAX_TTL_S} seconds")
    info = await request.config_dict[OBJECTS_KEY].stat_object(
        bucket, key, version=version_param(request)
    )
    doc = link_url(request, request.app[LINKS_KEY], bucket, key, info.version, ttl_s=int(text))
    doc["url"] = f"{request.scheme}://{request.host}{doc['url']}"
    return web.json_response(doc, headers=NO_STORE)


@routes.post("/api/restore")
async def restore(request: web.Request) -> web.Response:
    """Copy an old version to be the current one (module docstring)."""
    bucket, key = names(request)
    version = version_param(request)
    if not version:
        raise InvalidArgument("?version= is required")
    objects = request.config_dict[OBJECTS_KEY]
    info, reader = await objects.open_object(bucket, key, version=version)
    stream = await reader(0, info.size)
    try:
        copy = await objects.put_object(
            bucket,
            key,
            stream,
            expected_sha256=info.sha256,
            content_length=info.size,
            content_type=info.content_type,
            meta=info.meta,
        )
    finally:
        await close_stream(stream)
    return web.json_response(object_json(copy), status=201)


@routes.get("/api/peers")
async def peers(request: web.Request) -> web.Response:
    """Every live member's store figures (module docstring)."""
    status = request.app.get(PEER_STATUS_KEY)
    members = [
        m
        for m in request.config_dict[STATE_KEY].members()
        if m.state in (MemberState.ALIVE, MemberState.SUSPECT) and m.api_address
    ]

    async def one(address: str) -> dict[str, Any]:
        if status is None:
            return {"error": "this peer cannot ask other peers"}
        try:
            return await asyncio.wait_for(status(address), PEER_STATUS_TIMEOUT_S)
        except TimeoutError:
            return {"error": f"no answer within {PEER_STATUS_TIMEOUT_S:g} s"}
        except (DfsError, OSError, ValueError) as exc:
            return {"error": str(exc) or type(exc).__name__}

    docs = await asyncio.gather(*(one(m.api_address) for m in members))
    return web.json_response(
        {"peers": {m.id: doc for m, doc in zip(members, docs, strict=True)}}, headers=NO_STORE
    )
