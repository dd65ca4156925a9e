"""S3 object operations: PutObject, GetObject, HeadObject, DeleteObject, DeleteObjects.

ETag: S3's is the MD5 of a single-part object. The objects layer hashes with SHA-256, so
the MD5 is computed here while the body streams through and stored with the version as
the reserved metadata entry ``dfs:etag`` (:data:`ETAG_META`; the native API hides
``dfs:`` names), written in the same ``complete`` version record, so it is never missing
for an object written through S3. An object written through the native API has no MD5:
its S3 ETag is its SHA-256 hex (S3 allows an ETag that is not an MD5, as for SSE-KMS).

Checksums: a PutObject whose body was checked against a declared ``x-amz-checksum-*``
(:mod:`.payload`) stores that algorithm and value with the version; GetObject and
HeadObject return it with ``x-amz-checksum-mode: ENABLED`` when the answer is the whole
object (no ``Range``), as S3 does for a full-object checksum. A multipart object (S3 gives
it a composite checksum) and an object written through the native API have none.

User metadata: ``x-amz-meta-<name>`` headers (names lower-cased, at most 2 KiB of names
and values) are the native API's ``X-Meta-<name>``, so metadata round-trips between them.
"""

from __future__ import annotations

import asyncio
import email.utils
from collections.abc import Mapping
from typing import Any

from aiohttp import web

from dfspeer.api.ranges import content_range, expected_span, parse_range
from dfspeer.api.s3 import xml
from dfspeer.api.s3.body import sha256_mismatch, signed_sha256
from dfspeer.api.s3.buckets import existing, xml_response
from dfspeer.api.s3.context import S3Request
from dfspeer.api.s3.errors import S3Error, invalid_argument, malformed_xml, not_implemented, s3_code
from dfspeer.api.s3.metrics import s3_metrics
from dfspeer.api.s3.parts import PARTS_COUNT_HEADER, part_number, part_span
from dfspeer.api.s3.payload import CHECKSUM_PREFIX, BodyStream, body_length, read_small
from dfspeer.errors import BadDigest, DfsError, NoSuchKey, NoSuchVersion
from dfspeer.objects.download import SMALL_BODY_BYTES, close_stream, read_whole
from dfspeer.objects.info import ObjectInfo, public_meta
from dfspeer.objects.multipart import ETAG_META
from dfspeer.objects.names import validate_key

META_PREFIX = "x-amz-meta-"
MAX_META_BYTES = 2048
MAX_DELETE_KEYS = 1000
DELETE_CONCURRENCY = 16
DEFAULT_CONTENT_TYPE = "binary/octet-stream"
CHECKSUM_MODE_HEADER = "x-amz-checksum-mode"
CHECKSUM_TYPE_HEADER = "x-amz-checksum-type"
RESPONSE_OVERRIDES = {
    "response-content-type": "Content-Type",
    "response-content-language": "Content-Language",
    "response-expires": "Expires",
    "response-cache-control": "Cache-Control",
    "response-content-disposition": "Content-Disposition",
    "response-content-encoding": "Content-Encoding",
}


def s3_etag(info: ObjectInfo) -> str:
    """The quoted S3 ETag of ``info`` (module docstring)."""
    return '"' + (info.meta.get(ETAG_META) or info.sha256) + '"'


def user_meta(headers: Mapping[str, str]) -> dict[str, str]:
    """``x-amz-meta-*`` headers as ``{name: value}``. Raises InvalidArgument,
    MetadataTooLarge (over 2 KiB)."""
    meta: dict[str, str] = {}
    for header, value in headers.items():
        lowered = header.lower()
        if not lowered.startswith(META_PREFIX):
            continue
        name = lowered[len(META_PREFIX) :]
        if not name or not value.isprintable():
            raise invalid_argument(f"{header}: a metadata name and a printable value are needed")
        meta[name] = f"{meta[name]},{value.strip()}" if name in meta else value.strip()
    if sum(len(k.encode()) + len(v.encode()) for k, v in meta.items()) > MAX_META_BYTES:
        raise S3Error("MetadataTooLarge", 400, f"user metadata is over {MAX_META_BYTES} bytes")
    return meta


async def put_object(s3: S3Request) -> web.StreamResponse:
    """``PUT /bucket/key``: stream the body into a new version (module docstring)."""
    if "x-amz-copy-source" in s3.http.headers:
        from dfspeer.api.s3.copy import copy_object

        return await copy_object(s3)
    bucket = await existing(s3, cached=True)
    validate_key(s3.key_name)
    length = body_length(s3)
    if length is None:
        raise S3Error("MissingContentLength", 411, "You must provide the Content-Length.")
    sha = signed_sha256(s3)
    meta = user_meta(s3.http.headers)
    stream = BodyStream(s3)
    try:
        info = await s3.ctx.objects.put_object(
            bucket.name,
            s3.key_name,
            stream,
            expected_sha256=sha,
            content_length=length,
            content_type=s3.http.headers.get("Content-Type") or DEFAULT_CONTENT_TYPE,
            meta=meta,
            late_meta=stream.etag_meta,
            late_checksum=stream.checked_checksum,
        )
    except BadDigest:
        raise sha256_mismatch() from None
    headers = {"ETag": s3_etag(info), **stream.checksum_headers()}
    if bucket.keeps_versions:
        headers["x-amz-version-id"] = info.version
    return web.Response(status=200, headers=headers)


def object_headers(info: ObjectInfo, *, versioned: bool) -> dict[str, str]:
    """``ETag``, ``Last-Modified``, ``Content-Type``, ``Accept-Ranges``, ``x-amz-meta-*``
    and, in a bucket that keeps versions, ``x-amz-version-id``."""
    headers = {
        "ETag": s3_etag(info),
        "Last-Modified": email.utils.formatdate(info.modified, usegmt=True),
        "Content-Type": info.content_type,
        "Accept-Ranges": "bytes",
    }
    for name, value in sorted(public_meta(info.meta).items()):
        headers[META_PREFIX + name] = value
    if versioned:
        headers["x-amz-version-id"] = info.version
    return headers


def checksum_headers(s3: S3Request, info: ObjectInfo, *, whole: bool) -> dict[str, str]:
    """``x-amz-checksum-<algorithm>`` and ``x-amz-checksum-type: FULL_OBJECT`` of the
    version's stored checksum, for a request with ``x-amz-checksum-mode: ENABLED`` whose
    answer is the whole object (``whole``: no ``Range``); else none, as S3."""
    mode = s3.http.headers.get(CHECKSUM_MODE_HEADER, "").strip().upper()
    if mode != "ENABLED" or not whole or info.checksum is None:
        return {}
    algorithm, value = info.checksum
    return {CHECKSUM_PREFIX + algorithm: value, CHECKSUM_TYPE_HEADER: "FULL_OBJECT"}


def _http_time(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None


def _tag_in(header: str, etag: str) -> bool:
    return any(t.strip() in ("*", etag) or t.strip() == etag.strip('"') for t in header.split(","))


def check_conditions(s3: S3Request, info: ObjectInfo, etag: str) -> int | None:
    """412 / 304 from ``If-Match``, ``If-Unmodified-Since``, ``If-None-Match``,
    ``If-Modified-Since`` (RFC 9110 section 13.2.2 order, as S3), else None. Raises
    PreconditionFailed."""
    h = s3.http.headers
    modified = int(info.modified)
    if_match = h.get("If-Match")
    if if_match is not None:
        if not _tag_in(if_match, etag):
            raise S3Error("PreconditionFailed", 412, "At least one of the preconditions failed.")
    else:
        since = _http_time(h.get("If-Unmodified-Since"))
        if since is not None and modified > since:
            raise S3Error("PreconditionFailed", 412, "At least one of the preconditions failed.")
    if_none = h.get("If-None-Match")
    if if_none is not None:
        return 304 if _tag_in(if_none, etag) else None
    since = _http_time(h.get("If-Modified-Since"))
    if since is not None and modified <= since:
        return 304
    return None


async def _read(s3: S3Request, head: bool) -> web.StreamResponse:
    """GetObject / HeadObject from one read of the object's entry (HEAD: a stat; GET:
    ``open_object``, whose reader streams that same version)."""
    objects = s3.ctx.objects
    version = s3.query.get("versionId")
    part = part_number(s3)
    reader: Any = None
    try:
        if head:
            info = await objects.stat_object(s3.bucket_name, s3.key_name, version=version)
        else:
            span = expected_span(s3.http.headers) if part is None else None
            info, reader = await objects.open_object(
                s3.bucket_name, s3.key_name, version=version, span=span
            )
    except (NoSuchKey, NoSuchVersion):
        await existing(s3, cached=True)
        raise
    try:
        return await _answer(s3, info, reader, part)
    finally:
        await close_stream(reader)


async def _answer(
    s3: S3Request, info: ObjectInfo, reader: Any, part: int | None = None
) -> web.StreamResponse:
    """The GetObject (``reader`` set) or HeadObject answer for ``info`` (``part``: its
    ``partNumber``, :mod:`.parts`)."""
    bucket = await existing(s3, cached=True)
    headers = object_headers(info, versioned=bucket.versioning != "unversioned")
    status = check_conditions(s3, info, headers["ETag"])
    if status == 304:
        keep = {k: v for k, v in headers.items() if k in ("ETag", "Last-Modified")}
        return web.Response(status=304, headers=keep)
    for param, header in RESPONSE_OVERRIDES.items():
        if param in s3.query:
            headers[header] = s3.query[param]
    if part is None:
        span = parse_range(s3.http.headers.get("Range"), info.size)
    else:
        span = part_span(info, part)
        if info.parts:
            headers[PARTS_COUNT_HEADER] = str(len(info.parts))
    start, end = span if span is not None else (0, info.size)
    ranged = end > start and span is not None  # an empty part has no byte range to name
    if ranged:
        headers["Content-Range"] = content_range(start, end, info.size)
    headers.update(checksum_headers(s3, info, whole=span is None))
    status = 206 if ranged else 200
    answer = web.StreamResponse(status=status, headers=headers)
    answer.content_length = end - start
    if reader is None:
        return answer
    stream = await reader(start, end)
    metrics = s3_metrics(s3.http)
    try:
        if end - start <= SMALL_BODY_BYTES:  # with the headers in one write, as natively
            what = f"object {info.bucket}/{info.key}"
            body = await read_whole(stream, end - start, what)
            if metrics is not None:
                metrics.bytes_sent.inc(len(body))
            return web.Response(status=status, headers=headers, body=body)
        await answer.prepare(s3.http)
        async for piece in stream:
            await answer.write(piece)
            if metrics is not None:
                metrics.bytes_sent.inc(len(piece))
    finally:
        await close_stream(stream)
    await answer.write_eof()
    return answer


async def get_object(s3: S3Request) -> web.StreamResponse:
    """``GET /bucket/key``: the object (``Range``, conditions, ``response-*``, ``versionId``)."""
    return await _read(s3, head=False)


async def head_object(s3: S3Request) -> web.StreamResponse:
    """``HEAD /bucket/key``: the object's headers."""
    return await _read(s3, head=True)


async def _delete_one(s3: S3Request, key: str, version: str | None) -> dict[str, str]:
    """Delete one key (or one version); ``{"version", "marker"}`` of what was done."""
    validate_key(key)
    objects = s3.ctx.objects
    if version is not None:
        if version == "null":
            raise not_implemented("versionId=null")
        try:
            listed = await objects.list_object_versions(s3.bucket_name, key)
            was_marker = any(v.version == version and v.delete_marker for v in listed)
            await objects.delete_object(s3.bucket_name, key, version=version)
        except NoSuchVersion:
            return {"version": version}
        return {"version": version, **({"marker": version} if was_marker else {})}
    marker = await objects.delete_object(s3.bucket_name, key)
    return {"marker": marker} if marker is not None else {}


async def delete_object(s3: S3Request) -> web.StreamResponse:
    """``DELETE /bucket/key[?versionId=V]``: 204 with ``x-amz-delete-marker`` /
    ``x-amz-version-id`` as S3 sends them."""
    bucket = await existing(s3, cached=True)
    done = await _delete_one(s3, s3.key_name, s3.query.get("versionId"))
    headers: dict[str, str] = {}
    if "marker" in done:
        headers["x-amz-delete-marker"] = "true"
        if bucket.keeps_versions or "version" in done:
            headers["x-amz-version-id"] = done["marker"]
    elif "version" in done:
        headers["x-amz-version-id"] = done["version"]
    return web.Response(status=204, headers=headers)


async def delete_objects(s3: S3Request) -> web.StreamResponse:
    """``POST /bucket?delete``: up to 1000 keys; ``<Deleted>`` (unless ``Quiet``) and
    ``<Error>`` per key."""
    bucket = await existing(s3, cached=True)
    body = await read_small(s3)
    try:
        doc = xml.parse(body, "Delete")
    except xml.XmlBodyError as exc:
        raise malformed_xml(str(exc)) from None
    quiet = (xml.text_of(doc, "Quiet", "false") or "").strip().lower() == "true"
    wanted = [
        (xml.text_of(o, "Key"), xml.text_of(o, "VersionId")) for o in xml.children(doc, "Object")
    ]
    if not wanted or len(wanted) > MAX_DELETE_KEYS or any(not k for k, _ in wanted):
        raise malformed_xml(f"name 1..{MAX_DELETE_KEYS} objects, each with a Key")
    slots = asyncio.Semaphore(DELETE_CONCURRENCY)

    async def one(key: str, version: str | None) -> dict[str, str] | DfsError:
        async with slots:
            try:
                return await _delete_one(s3, key, version)
            except DfsError as exc:
                return exc

    results = await asyncio.gather(*(one(k or "", v) for k, v in wanted))
    items: list[xml.Child] = []
    for (key, version), result in zip(wanted, results, strict=True):
        if isinstance(result, DfsError):
            code, _ = s3_code(result)
            items.append(
                (
                    "Error",
                    [
                        ("Key", key),
                        ("VersionId", version),
                        ("Code", code),
                        ("Message", result.message),
                    ],
                )
            )
            continue
        if quiet:
            continue
        entry: list[xml.Child] = [("Key", key), ("VersionId", version)]
        if "marker" in result:
            entry += [("DeleteMarker", True)]
            if bucket.keeps_versions or version is not None:
                entry += [("DeleteMarkerVersionId", result["marker"])]
        items.append(("Deleted", entry))
    return xml_response(xml.document("DeleteResult", items))
