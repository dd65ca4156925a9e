"""Access key and bucket permission routes (see :mod:`dfspeer.access`).

- ``POST /v1/keys`` (admin), JSON ``{"name", "allow_create_bucket"?: bool}``: 201
  ``{"id", "secret", "name", "created", "allow_create_bucket", "disabled"}``; the secret is
  shown here only.
- ``GET /v1/keys`` (admin): ``{"keys": [{"id", "name", "created", "allow_create_bucket",
  "disabled"}]}`` by id.
- ``DELETE /v1/keys/{id}`` (admin): 204; 404 ``no_such_access_key``.
- ``POST /v1/keys/{id}/disable`` (admin): 200 with the key.
- ``PUT /v1/buckets/{bucket}/permissions`` (owner or admin), JSON ``{"key": ID, "read"?:
  bool, "write"?: bool, "owner"?: bool}``: a flag not given keeps its value, a key left with
  no flag loses its entry; 200 ``{"name", "owner", "permissions": {ID: {"read", "write",
  "owner"}}}``. ``GET`` the same path answers that object.

Errors are :class:`~dfspeer.errors.DfsError` s rendered by the error middleware.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from dfspeer.access.credentials import KEY_ID_RE
from dfspeer.access.keystore import KeyService
from dfspeer.access.middleware import ACCESS_KEY
from dfspeer.access.permissions import with_grant
from dfspeer.api.context import OBJECTS_KEY
from dfspeer.api.jsonbody import read_json_object
from dfspeer.errors import InvalidArgument, NoSuchAccessKey, NoSuchBucket
from dfspeer.model.buckets import Bucket, Grant
from dfspeer.objects.names import validate_bucket

routes = web.RouteTableDef()
MAX_JSON_BYTES = 4096
PERMISSION_FLAGS = ("read", "write", "owner")


def _keys(request: web.Request) -> KeyService:
    return request.app[ACCESS_KEY].keys


def _key_id(request: web.Request) -> str:
    key_id = request.match_info["id"]
    if not KEY_ID_RE.fullmatch(key_id):
        raise NoSuchAccessKey(f"no access key {key_id!r}")
    return key_id


def permissions_json(bucket: Bucket) -> dict[str, Any]:
    """``{"name", "owner", "permissions": {key_id: {"read", "write", "owner"}}}``."""
    return {
        "name": bucket.name,
        "owner": bucket.owner,
        "permissions": {k: g.to_json() for k, g in sorted(bucket.permissions.items())},
    }


@routes.post("/v1/keys")
async def create_key(request: web.Request) -> web.Response:
    """Create an access key; 201 with its secret (shown only here)."""
    doc = await read_json_object(request, max_bytes=MAX_JSON_BYTES, required=True)
    unknown = sorted(set(doc) - {"name", "allow_create_bucket"})
    if unknown:
        raise InvalidArgument(f"unknown field(s): {', '.join(unknown)}")
    name = doc.get("name")
    allow = doc.get("allow_create_bucket", False)
    if not isinstance(name, str):
        raise InvalidArgument("name (a string) is required")
    if not isinstance(allow, bool):
        raise InvalidArgument("allow_create_bucket must be true or false")
    key, secret = await _keys(request).create(name, allow_create_bucket=allow)
    return web.json_response({**key.to_json(), "secret": secret}, status=201)


@routes.get("/v1/keys", allow_head=False)
async def list_keys(request: web.Request) -> web.Response:
    """Every live key (no secrets)."""
    keys = await _keys(request).list()
    return web.json_response({"keys": [k.to_json() for k in keys]})


@routes.delete("/v1/keys/{id}")
async def delete_key(request: web.Request) -> web.Response:
    """Delete a key; 204."""
    await _keys(request).delete(_key_id(request))
    return web.Response(status=204)


@routes.post("/v1/keys/{id}/disable")
async def disable_key(request: web.Request) -> web.Response:
    """Disable a key; 200 with the key."""
    key = await _keys(request).disable(_key_id(request))
    return web.json_response(key.to_json())


@routes.put("/v1/buckets/{bucket}/permissions")
async def set_permissions(request: web.Request) -> web.Response:
    """Set one key's flags on the bucket; 200 with the bucket's permissions."""
    name = request.match_info["bucket"]
    validate_bucket(name)
    doc = await read_json_object(request, max_bytes=MAX_JSON_BYTES, required=True)
    unknown = sorted(set(doc) - {"key", *PERMISSION_FLAGS})
    if unknown:
        raise InvalidArgument(f"unknown field(s): {', '.join(unknown)}")
    key_id = doc.get("key")
    if not isinstance(key_id, str) or not KEY_ID_RE.fullmatch(key_id):
        raise InvalidArgument("key must be an access key id (DK + 24 hex digits)")
    change: dict[str, bool] = {}
    for flag in PERMISSION_FLAGS:
        if flag in doc:
            if not isinstance(doc[flag], bool):
                raise InvalidArgument(f"{flag} must be true or false")
            change[flag] = doc[flag]
    if any(change.values()):
        await _keys(request).get(key_id)  # granting to a key that does not exist: 404

    def apply(current: Any) -> dict[str, Grant]:
        return with_grant(dict(current), key_id, change)

    bucket = await request.app[OBJECTS_KEY].buckets.set_permissions(name, apply)
    return web.json_response(permissions_json(bucket))


@routes.get("/v1/buckets/{bucket}/permissions", allow_head=False)
async def get_permissions(request: web.Request) -> web.Response:
    """The bucket's owner and permissions."""
    name = request.match_info["bucket"]
    validate_bucket(name)
    bucket = await request.app[OBJECTS_KEY].buckets.read(name)
    if bucket is None:
        raise NoSuchBucket(f"no bucket {name}")
    return web.json_response(permissions_json(bucket))
