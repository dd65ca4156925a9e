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
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import AsyncGenerator, AsyncIterator, Mapping
from email.utils import formatdate
from typing import TYPE_CHECKING

import aiohttp
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from dfspeer.access.middleware import ACCESS_KEY
from dfspeer.api.context import CONFIG_KEY, METRICS_KEY, OBJECTS_KEY
from dfspeer.api.middleware import error_response, render_dfs_error, request_id
from dfspeer.api.ranges import (
    content_range,
    etag_matches,
    expected_span,
    if_range_allows,
    parse_range,
)
from dfspeer.errors import (
    DfsError,
    EntityTooLarge,
    IncompleteBody,
    InvalidArgument,
    InvalidRange,
    NoSuchKey,
)
from dfspeer.objects.info import public_meta
from dfspeer.objects.names import validate_bucket, validate_key

if TYPE_CHECKING:
    from dfspeer.objects import ObjectInfo

log = logging.getLogger("dfspeer.api")
routes = web.RouteTableDef()

OBJECT_PATH = "/v1/objects/{bucket}/{key:.+}"
BUCKET_PATH = "/v1/objects/{bucket}"
MAX_LIST_LIMIT = 1000
MAX_CONTENT_TYPE_CHARS = 256
DEFAULT_CONTENT_TYPE = "application/octet-stream"
META_PREFIX = "x-meta-"
MAX_META_BYTES = 2048
"""Largest user metadata of one object: UTF-8 bytes of every name plus every value."""
MAX_VERSION_CHARS = 128
_SHA256_HEX = re.compile(r"[0-9a-fA-F]{64}")
_META_NAME = re.compile(r"[a-z0-9!#$%&'*+.^_`|~-]+")
_BODY_ERRORS = (
    web.RequestPayloadError,
    HttpProcessingError,
    aiohttp.ClientPayloadError,
    aiohttp.EofStream,
    ConnectionError,
)


def _names(request: web.Request) -> tuple[str, str]:
    bucket, key = request.match_info["bucket"], request.match_info["key"]
    validate_bucket(bucket)
    validate_key(key)
    return bucket, key


def object_json(info: ObjectInfo) -> dict[str, object]:
    """The upload answer: ``{"bucket","key","version","size","sha256","chunks"}``."""
    return {
        "bucket": info.bucket,
        "key": info.key,
        "version": info.version,
        "size": info.size,
        "sha256": info.sha256,
        "chunks": info.chunks,
    }


def etag(info: ObjectInfo) -> str:
    """Strong entity tag: the quoted SHA-256 hex of the whole object."""
    return f'"{info.sha256}"'


def object_headers(info: ObjectInfo) -> dict[str, str]:
    """Headers every GET/HEAD/304 answer carries (``X-Meta-<name>`` per metadata entry)."""
    headers = {
        "ETag": etag(info),
        "Last-Modified": formatdate(info.modified, usegmt=True),
        "Accept-Ranges": "bytes",
        "Content-Type": info.content_type,
        "X-Object-Version": info.version,
    }
    for name, value in sorted(public_meta(info.meta).items()):
        headers["X-Meta-" + name] = value
    return headers


def user_meta(headers: Mapping[str, str]) -> dict[str, str]:
    """User metadata from ``X-Meta-<name>`` headers: ``{name lower-cased: value}``
    (repeated headers joined with ``,``). Raises InvalidArgument for an empty or
    non-token name, a value that is not printable ASCII, or more than
    :data:`MAX_META_BYTES` bytes of names and values in all."""
    meta: dict[str, str] = {}
    for header, value in headers.items():
        lowered = header.lower()
        if not lowered.startswith(META_PREFIX):
            continue
        name = lowered[len(META_PREFIX) :]
        if not _META_NAME.fullmatch(name):
            raise InvalidArgument(f"{header}: metadata name must be a non-empty HTTP token")
        value = value.strip()
        if not (value.isascii() and value.isprintable()):
            raise InvalidArgument(f"{header}: metadata value must be printable ASCII")
        meta[name] = f"{meta[name]},{value}" if name in meta else value
    total = sum(len(k.encode()) + len(v.encode()) for k, v in meta.items())
    if total > MAX_META_BYTES:
        raise InvalidArgument(
            f"user metadata is {total} bytes; at most {MAX_META_BYTES} bytes are allowed"
        )
    return meta


def version_param(request: web.Request) -> str | None:
    """The ``?version=`` query parameter, or None. Raises InvalidArgument when it is empty
    or not 1..128 printable characters."""
    raw = request.query.get("version")
    if raw is None:
        return None
    if not raw or len(raw) > MAX_VERSION_CHARS or not raw.isprintable():
        raise InvalidArgument(f"version must be 1..{MAX_VERSION_CHARS} printable characters")
    return raw


async def _body(
    request: web.Request, *, timeout_s: float, max_bytes: int
) -> AsyncGenerator[bytes, None]:
    """The request body as it arrives (``Content-Length`` or chunked).

    Raises IncompleteBody when the body breaks off before its declared length (aiohttp
    reports that as a payload/connection error), a 408 ``request_timeout`` when no byte
    arrives for ``timeout_s`` seconds, EntityTooLarge past ``max_bytes``.
    """
    content, declared = request.content, request.content_length
    counter = request.app[METRICS_KEY].bytes_received
    received = 0
    while True:
        try:
            async with asyncio.timeout(timeout_s):
                data = await content.readany()
        except TimeoutError:
            raise DfsError(
                f"no body bytes for {timeout_s:g} s after {received} bytes",
                code="request_timeout",
                status=408,
            ) from None
        except _BODY_ERRORS as exc:
            raise IncompleteBody(f"body broke off after {received} bytes: {exc}") from None
        if not data:
            break
        received += len(data)
        if received > max_bytes:
            raise EntityTooLarge(f"body exceeds the {max_bytes}-byte object limit")
        counter.inc(len(data))
        yield data
    if declared is not None and received != declared:
        raise IncompleteBody(f"body has {received} bytes, Content-Length says {declared}")


def _check_length(request: web.Request) -> None:
    limit = request.app[CONFIG_KEY].max_object_size_bytes
    declared = request.content_length
    if declared is not None and declared > limit:
        raise EntityTooLarge(f"Content-Length {declared} exceeds the {limit}-byte object limit")


async def _expect_upload(request: web.Request) -> web.StreamResponse | None:
    """``Expect: 100-continue`` on PUT: answer a missing credential or permission, a bad
    name or an oversized Content-Length before the client sends the body; otherwise send
    ``100 Continue`` (aiohttp's default)."""
    expect = request.headers.get("Expect", "")
    if request.version != aiohttp.HttpVersion11:
        return None
    if expect.lower() != "100-continue":
        return error_response(request, 417, "expectation_failed", f"unknown Expect: {expect}")
    try:
        access = request.app.get(ACCESS_KEY)
        if access is not None:  # refuse before the body is sent, not after
            await access.check(request)
        _names(request)
        _check_length(request)
        user_meta(request.headers)
    except DfsError as exc:
        return render_dfs_error(request, exc)
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0
    return None


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


def _int_param(request: web.Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise InvalidArgument(f"{name} must be an integer in {low}..{high}, got {raw!r}")
    return int(raw)


def _text_params(request: web.Request, *names: str) -> list[str]:
    """The query parameters ``names`` ("" when absent). Raises InvalidArgument past 1024
    bytes."""
    values = [request.query.get(name, "") for name in names]
    for name, value in zip(names, values, strict=True):
        if len(value.encode()) > 1024:
            raise InvalidArgument(f"{name} is longer than 1024 bytes")
    return values


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


async def _close(stream: object) -> None:
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):
            await aclose()


def _plan(request: web.Request, info: ObjectInfo) -> web.Response | tuple[int, int] | None:
    """304 or 416 answer, else the byte span to send (None = whole object, 200)."""
    if etag_matches(request.headers.get("If-None-Match"), etag(info)):
        headers = object_headers(info)
        del headers["Content-Type"]
        return web.Response(status=304, headers=headers)
    if not if_range_allows(request.headers.get("If-Range"), etag(info)):
        return None
    try:
        return parse_range(request.headers.get("Range"), info.size)
    except InvalidRange as exc:
        return render_dfs_error(request, exc, headers={"Content-Range": f"bytes */{info.size}"})


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


async def _respond(
    request: web.Request,
    info: ObjectInfo,
    span: tuple[int, int] | None,
    stream: AsyncIterator[bytes] | None,
) -> web.StreamResponse:
    response = web.StreamResponse(status=200 if span is None else 206)
    response.headers.update(object_headers(info))
    start, end = span if span is not None else (0, info.size)
    if span is not None:
        response.headers["Content-Range"] = content_range(start, end, info.size)
    response.content_length = end - start
    await response.prepare(request)
    if stream is None:
        await response.write_eof()
    else:
        await _send(request, response, stream)
    return response


async def _send(
    request: web.Request, response: web.StreamResponse, stream: AsyncIterator[bytes]
) -> None:
    """Write every chunk after ``prepare``. A failure now cannot change the status line,
    so the connection is closed and the client sees a body shorter than Content-Length."""
    metrics = request.app[METRICS_KEY]
    sent = 0
    try:
        async for chunk in stream:
            await response.write(chunk)
            sent += len(chunk)
            metrics.bytes_sent.inc(len(chunk))
        await response.write_eof()
    except ConnectionError as exc:
        log.debug("client went away id=%s after %d bytes: %s", request_id(request), sent, exc)
    except Exception as exc:
        level = logging.WARNING if isinstance(exc, DfsError) else logging.ERROR
        log.log(
            level,
            "download broke off id=%s path=%s after %d bytes",
            request_id(request),
            request.path,
            sent,
            exc_info=not isinstance(exc, DfsError),
        )
        if request.transport is not None:
            request.transport.close()
