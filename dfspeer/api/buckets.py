"""Public bucket routes: ``/v1/buckets[/{bucket}[/versioning]]``.

Shapes (a bucket's JSON is :meth:`dfspeer.model.buckets.Bucket.to_json`: ``{"name",
"created" (unix s), "versioning": "unversioned" | "enabled" | "suspended"}``):

- ``PUT /v1/buckets/{bucket}``, optional body ``{"versioning": "enabled" | "suspended" |
  "unversioned"}``: 201 with the bucket when created, 200 when it existed (a given
  ``versioning`` is applied to it).
- ``GET /v1/buckets``: ``{"buckets": [bucket, ...]}`` by name (an access key: only the
  buckets it owns or holds a permission on).
- ``GET /v1/buckets/{bucket}``: the bucket plus ``"objects"`` (live objects) and
  ``"bytes"`` (their logical size), ``"logical_bytes"`` (every readable version),
  ``"physical_bytes"`` (the distinct chunks they use) and ``"dedup_ratio"`` (logical /
  physical, :mod:`dfspeer.objects.usage`); 404 ``no_such_bucket``.
- ``PUT /v1/buckets/{bucket}/versioning``, body ``{"status": "enabled" | "suspended"}``:
  200 with the bucket; 404 ``no_such_bucket``.
- ``DELETE /v1/buckets/{bucket}``: 204; 409 ``bucket_not_empty`` while any key holds a
  version or a delete marker; 404 ``no_such_bucket``.

A body that is not a JSON object with the documented fields is 400 ``invalid_argument``.
Errors are raised as :class:`~dfspeer.errors.DfsError` and rendered by the error middleware.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from dfspeer.access.middleware import principal_of
from dfspeer.access.permissions import visible
from dfspeer.api.context import OBJECTS_KEY
from dfspeer.api.jsonbody import read_json_object
from dfspeer.errors import InvalidArgument, NoSuchBucket
from dfspeer.objects.names import validate_bucket

routes = web.RouteTableDef()

BUCKETS_PATH = "/v1/buckets"
BUCKET_PATH = "/v1/buckets/{bucket}"
VERSIONING_PATH = "/v1/buckets/{bucket}/versioning"
MAX_BODY_BYTES = 4096


def _bucket_name(request: web.Request) -> str:
    name = request.match_info["bucket"]
    validate_bucket(name)
    return name


async def _json_object(
    request: web.Request, *, allowed: frozenset[str], required: bool
) -> dict[str, Any]:
    """The request body as a JSON object whose keys are among ``allowed`` and whose values
    are strings; ``{}`` for an empty body unless ``required``. Raises InvalidArgument."""
    doc = await read_json_object(request, max_bytes=MAX_BODY_BYTES, required=False)
    if not doc and required:
        raise InvalidArgument(f"a JSON body with {', '.join(sorted(allowed))} is required")
    unknown = sorted(set(doc) - allowed)
    if unknown:
        raise InvalidArgument(f"unknown field(s): {', '.join(unknown)}")
    for name, value in doc.items():
        if not isinstance(value, str):
            raise InvalidArgument(f"{name} must be a string")
    return doc


@routes.put(BUCKET_PATH)
async def create_bucket(request: web.Request) -> web.Response:
    """Create the bucket: 201 with its JSON, or 200 when it already exists."""
    name = _bucket_name(request)
    doc = await _json_object(request, allowed=frozenset({"versioning", "chunking"}), required=False)
    versioning: str | None = doc.get("versioning")
    owner = principal_of(request).owner_id  # the key that creates a bucket owns it
    bucket, created = await request.app[OBJECTS_KEY].buckets.create(
        name, versioning, owner=owner, chunking=doc.get("chunking")
    )
    return web.json_response(bucket.to_json(), status=201 if created else 200)


@routes.get(BUCKETS_PATH, allow_head=False)
async def list_buckets(request: web.Request) -> web.Response:
    """``{"buckets": [{"name", "created", "versioning"}]}`` by name; an access key sees
    only the buckets it owns or has a permission on."""
    principal = principal_of(request)
    buckets = [b for b in await request.app[OBJECTS_KEY].buckets.list() if visible(principal, b)]
    return web.json_response({"buckets": [b.to_json() for b in buckets]})


@routes.get(BUCKET_PATH, allow_head=False)
async def get_bucket(request: web.Request) -> web.Response:
    """The bucket's JSON plus ``objects`` and ``bytes``; 404 ``no_such_bucket``."""
    name = _bucket_name(request)
    objects = request.app[OBJECTS_KEY]
    bucket = await objects.buckets.read(name)
    if bucket is None:
        raise NoSuchBucket(f"no bucket {name}")
    count, size = await objects.bucket_usage(name)
    footprint = await objects.bucket_footprint(name)  # dfspeer.objects.usage
    return web.json_response(
        {
            **bucket.to_json(),
            "objects": count,
            "bytes": size,
            "logical_bytes": footprint.logical_bytes,
            "physical_bytes": footprint.physical_bytes,
            "dedup_ratio": footprint.dedup_ratio,
        }
    )


@routes.put(VERSIONING_PATH)
async def set_versioning(request: web.Request) -> web.Response:
    """Body ``{"status": "enabled" | "suspended"}``; 200 with the bucket's JSON."""
    name = _bucket_name(request)
    doc = await _json_object(request, allowed=frozenset({"status"}), required=True)
    if "status" not in doc:
        raise InvalidArgument("status is required: enabled or suspended")
    bucket = await request.app[OBJECTS_KEY].buckets.set_versioning(name, doc["status"])
    return web.json_response(bucket.to_json())


@routes.delete(BUCKET_PATH)
async def delete_bucket(request: web.Request) -> web.Response:
    """204; 409 ``bucket_not_empty``; 404 ``no_such_bucket``."""
    name = _bucket_name(request)
    objects = request.app[OBJECTS_KEY]

    async def is_empty() -> bool:
        return await objects.bucket_is_empty(name)

    await objects.buckets.delete(name, is_empty=is_empty)
    return web.Response(status=204)
