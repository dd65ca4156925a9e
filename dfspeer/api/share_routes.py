"""The share link route of the native API (see :mod:`dfspeer.access.share`).

- ``POST /v1/share``, JSON ``{"bucket", "key", "expires_s"}`` and optionally ``"version"``
  (any principal that may read the bucket; an access key, a JWT acting as one, or the
  admin): 200 ``{"url", "expires"}``, ``url`` an absolute presigned URL on the host the
  request was sent to, valid ``expires_s`` seconds (1..604800), ``expires`` its end in unix
  seconds. With ``version`` (a version id, 1..128 printable characters; null = none) the URL
  carries ``version=`` under its signature and serves exactly that version; without it, the
  current one. 400 ``invalid_argument`` / ``invalid_bucket_name`` / ``invalid_key`` for a bad
  body, 403 ``access_denied`` when the caller may not read the bucket. The object (or the
  version) need not exist yet: the link then answers 404 as a plain GET would.

Errors are :class:`~dfspeer.errors.DfsError` s rendered by the error middleware.
"""

from __future__ import annotations

import math

from aiohttp import web

from dfspeer.access.middleware import ACCESS_KEY, principal_of, require_bucket
from dfspeer.access.permissions import Action
from dfspeer.access.share import MAX_EXPIRY_S, MAX_VERSION_CHARS, valid_version
from dfspeer.api.jsonbody import read_json_object
from dfspeer.errors import InvalidArgument
from dfspeer.objects.names import validate_bucket, validate_key

routes = web.RouteTableDef()
MAX_JSON_BYTES = 4096
FIELDS = ("bucket", "key", "expires_s", "version")


@routes.post("/v1/share")
async def create_share_link(request: web.Request) -> web.Response:
    """A presigned GET link to one object, signed as the caller."""
    doc = await read_json_object(request, max_bytes=MAX_JSON_BYTES, required=True)
    unknown = sorted(set(doc) - set(FIELDS))
    if unknown:
        raise InvalidArgument(f"unknown field(s): {', '.join(unknown)}")
    bucket, key, expires_s = doc.get("bucket"), doc.get("key"), doc.get("expires_s")
    if not isinstance(bucket, str) or not isinstance(key, str):
        raise InvalidArgument("bucket and key (strings) are required")
    validate_bucket(bucket)
    validate_key(key)
    if (
        not isinstance(expires_s, int | float)
        or isinstance(expires_s, bool)
        or not math.isfinite(expires_s)
        or not 1 <= expires_s <= MAX_EXPIRY_S
    ):
        raise InvalidArgument(
            f"expires_s must be a number of seconds in 1..{MAX_EXPIRY_S} (7 days)"
        )
    version = doc.get("version")
    if version is not None and (not isinstance(version, str) or not valid_version(version)):
        raise InvalidArgument(
            f"version must be a version id: 1..{MAX_VERSION_CHARS} printable characters"
        )
    await require_bucket(request, bucket, Action.READ)
    links = request.app[ACCESS_KEY].links
    if links is None:
        raise InvalidArgument("this peer makes no share links (no access control)")
    path_query, expires = await links.make(
        principal_of(request), bucket, key, expires_s, version=version
    )
    url = str(request.url.origin()) + path_query
    return web.json_response(
        {"url": url, "expires": expires}, headers={"Cache-Control": "no-store"}
    )
