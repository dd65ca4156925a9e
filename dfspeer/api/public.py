"""Public object routes: ``/v1/objects/{bucket}[/{key}]``.

Thin handlers: parse, call the :class:`~dfspeer.api.context.ObjectBackend`, render. The
upload body is streamed into ``put_object`` as it arrives (never buffered whole); the
download is streamed out chunk by chunk from ``get_object``'s iterator. Range and
precondition rules are in :mod:`dfspeer.api.ranges`.

Versions: ``?version=V`` on GET / HEAD reads version V (404 ``no_such_version``), on
DELETE removes it for good; ``?versions`` on a key lists its versions
(``{"bucket", "key", "versions": [VersionInfo JSON]}``, newest first, 404 ``no_such_key``
when it has none) and on a bucket lists a page of every key's versions (the
:class:`~dfspeer.objects.VersionPage` JSON). User metadata: ``X-Meta-<name>`` request
headers on PUT (names lower-cased, at most :data:`MAX_META_BYTES` of names and values),
sent back as ``X-Meta-<name>`` on GET / HEAD.

The headers, names and query parameters the routes read and write are in
:mod:`dfspeer.api.public_fields`, the streamed upload body in :mod:`dfspeer.api.public_body`,
the download answer in :mod:`dfspeer.api.public_download`.
"""

from __future__ import annotations

import re

from aiohttp import web

from dfspeer.api.context import CONFIG_KEY, OBJECTS_KEY
from dfspeer.api.public_body import _body, _check_length, _expect_upload
from dfspeer.api.public_download import _close, _plan, _respond
from dfspeer.api.public_fields import (
    MAX_META_BYTES,
    MAX_VERSION_CHARS,
    META_PREFIX,
    _int_param,
    _names,
    _text_params,
    etag,
    object_headers,
    object_json,
    user_meta,
    version_param,
)
from dfspeer.api.ranges import expected_span
from dfspeer.errors import InvalidArgument, NoSuchKey
from dfspeer.objects.names import validate_bucket

__all__ = [
    "BUCKET_PATH",
    "DEFAULT_CONTENT_TYPE",
    "MAX_CONTENT_TYPE_CHARS",
    "MAX_LIST_LIMIT",
    "MAX_META_BYTES",
    "MAX_VERSION_CHARS",
    "META_PREFIX",
    "OBJECT_PATH",
    "delete_object",
    "etag",
    "get_object",
    "list_objects",
    "object_headers",
    "object_json",
    "put_object",
    "routes",
    "user_meta",
    "version_param",
]

routes = web.RouteTableDef()

OBJECT_PATH = "/v1/objects/{bucket}/{key:.+}"
BUCKET_PATH = "/v1/objects/{bucket}"
MAX_LIST_LIMIT = 1000
MAX_CONTENT_TYPE_CHARS = 256
DEFAULT_CONTENT_TYPE = "application/octet-stream"
_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")


@routes.put(OBJECT_PATH, expect_handler=_expect_upload)
async def put_object(request: web.Request) -> web.Response:
    """Stream the body into a new object version; 201 with :func:`object_json`."""
    bucket, key = _names(request)
    config = request.app[CONFIG_KEY]
    declared = request.content_length
    _check_length(request)
    expected = request.headers.get("X-Content-SHA256")
    if expected is not None:
        expected = expected.strip()
        if not _SHA256_HEX.fullmatch(expected):
            raise InvalidArgument("X-Content-SHA256 must be 64 hexadecimal characters")
        expected = expected.lower()
    content_type = request.headers.get("Content-Type", DEFAULT_CONTENT_TYPE)
    if len(content_type) > MAX_CONTENT_TYPE_CHARS or not content_type.isprintable():
        raise InvalidArgument(f"Content-Type must be 1..{MAX_CONTENT_TYPE_CHARS} printable chars")
    meta = user_meta(request.headers)
    body = _body(
        request, timeout_s=config.request_timeout_s, max_bytes=config.max_object_size_bytes
    )
    try:
        info = await request.app[OBJECTS_KEY].put_object(
            bucket,
            key,
            body,
            expected_sha256=expected,
            content_length=declared,
            content_type=content_type or DEFAULT_CONTENT_TYPE,
            meta=meta,
        )
    finally:
        await body.aclose()
    return web.json_response(object_json(info), status=201, headers={"ETag": etag(info)})


@routes.delete(OBJECT_PATH)
async def delete_object(request: web.Request) -> web.Response:
    """Plain: write a delete marker; 204 whether or not the object existed, with
    ``X-Object-Version`` = the marker's id in a versioned bucket or when it hid a live
    version (an unversioned key with nothing visible gets its marker without the header).
    ``?version=V``: remove version V for good; 204 with ``X-Object-Version: V``, 404
    ``no_such_version``."""
    bucket, key = _names(request)
    version = version_param(request)
    written = await request.app[OBJECTS_KEY].delete_object(bucket, key, version=version)
    headers = {"X-Object-Version": written} if written is not None else None
    return web.Response(status=204, headers=headers)


@routes.get(BUCKET_PATH, allow_head=False)
async def list_objects(request: web.Request) -> web.Response:
    """``?prefix=&delimiter=&limit=&start_after=`` -> one page of keys (see README);
    ``?versions&prefix=&limit=&start_after=`` -> one page of versions
    (``{"versions": [{"key", "version", "size", "sha256", "modified", "is_latest",
    "delete_marker"}], "is_truncated", "next_start_after"}``; a page never splits a key's
    versions, so it may hold more than ``limit``)."""
    bucket = request.match_info["bucket"]
    validate_bucket(bucket)
    limit = _int_param(request, "limit", MAX_LIST_LIMIT, 1, MAX_LIST_LIMIT)
    if "versions" in request.query:
        prefix, start_after = _text_params(request, "prefix", "start_after")
        page = await request.app[OBJECTS_KEY].list_versions(
            bucket, prefix=prefix, limit=limit, start_after=start_after
        )
        return web.json_response({"bucket": bucket, "prefix": prefix, **page.to_json()})
    prefix, delimiter, start_after = _text_params(request, "prefix", "delimiter", "start_after")
    result = await request.app[OBJECTS_KEY].list_objects(
        bucket, prefix=prefix, delimiter=delimiter, limit=limit, start_after=start_after
    )
    objects = [
        {
            "key": o.key,
            "size": o.size,
            "sha256": o.sha256,
            "version": o.version,
            "modified": o.modified,
        }
        for o in result.objects
    ]
    return web.json_response(
        {
            "bucket": bucket,
            "prefix": prefix,
            "delimiter": delimiter,
            "objects": objects,
            "common_prefixes": list(result.common_prefixes),
            "is_truncated": result.is_truncated,
            "next_start_after": result.next_start_after,
        }
    )


@routes.get(OBJECT_PATH)  # HEAD too (allow_head)
async def get_object(request: web.Request) -> web.StreamResponse:
    """Whole object (200), a byte range (206), 304 on a matching ``If-None-Match``, 416.

    One read of the entry per request: HEAD is a ``stat``; GET opens the version
    (``open_object``), plans the answer on its info (304 and 416 fetch no block) and
    streams the planned span of that same version.
    """
    bucket, key = _names(request)
    objects = request.app[OBJECTS_KEY]
    if "versions" in request.query:
        return await _list_key_versions(request, bucket, key)
    version = version_param(request)
    if request.method == "HEAD":
        info = await objects.stat_object(bucket, key, version=version)
        plan = _plan(request, info)
        if isinstance(plan, web.Response):
            return plan
        return await _respond(request, info, plan, None)
    span = expected_span(request.headers)
    info, reader = await objects.open_object(bucket, key, version=version, span=span)
    try:
        plan = _plan(request, info)
        if isinstance(plan, web.Response):
            return plan
        want = plan if plan is not None else (0, info.size)
        stream = await reader(want[0], want[1])
    finally:
        await _close(reader)
    try:
        return await _respond(request, info, plan, stream)
    finally:
        await _close(stream)


async def _list_key_versions(request: web.Request, bucket: str, key: str) -> web.Response:
    """``GET ...?versions``: ``{"bucket", "key", "versions": [{"key", "version", "size",
    "sha256", "modified", "is_latest", "delete_marker"}]}`` newest first. Raises NoSuchKey
    when the key has no version at all."""
    versions = await request.app[OBJECTS_KEY].list_object_versions(bucket, key)
    if not versions:
        raise NoSuchKey(f"no object {bucket}/{key}")
    return web.json_response(
        {"bucket": bucket, "key": key, "versions": [v.to_json() for v in versions]}
    )
