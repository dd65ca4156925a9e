"""S3 copies: CopyObject and UploadPartCopy (``x-amz-copy-source``).

CopyObject copies no data: the new version gets the source version's block list (or
inline bytes), size and SHA-256. Order, as a one-shot upload (:mod:`dfspeer.objects.
versioned_put`): the version is written ``uploading``, then a ``block_refs`` entry of the
new version for every distinct block (so garbage collection keeps each block while any
version names it), then the version ``complete``. ``x-amz-metadata-directive``: ``COPY``
(default: the source's ``Content-Type`` and metadata) or ``REPLACE`` (the request's); the
S3 ETag (``dfs:etag``) is the source's either way. A copy onto itself must change
something (``REPLACE``), else ``InvalidRequest``, as S3. ``x-amz-copy-source-if-match`` /
``-if-none-match`` are checked against the source's ETag (412). The copy keeps the
source's stored full-object checksum (the bytes are the same; a request for another
algorithm, ``x-amz-checksum-algorithm``, is not computed), and names it in
``CopyObjectResult`` as S3 does.

UploadPartCopy streams the source (or ``x-amz-copy-source-range: bytes=a-b``) through the
part pipeline, so the part's MD5 and blocks are those of the bytes copied.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from dfspeer.access.permissions import Action
from dfspeer.api.s3 import xml
from dfspeer.api.s3.access import authorize
from dfspeer.api.s3.buckets import existing, xml_response
from dfspeer.api.s3.context import S3Request
from dfspeer.api.s3.errors import S3Error, invalid_argument, invalid_request
from dfspeer.api.s3.multipart import part_number, store_part
from dfspeer.api.s3.objects import DEFAULT_CONTENT_TYPE, s3_etag, user_meta
from dfspeer.api.s3.payload import XML_CHECKSUM_NAMES
from dfspeer.errors import NoSuchKey, NoSuchVersion
from dfspeer.model.block_refs import BLOCK_REFS_TABLE, ref_key
from dfspeer.model.objects import COMPLETE, OBJECTS_TABLE, UPLOADING, ObjectVersion, table_key
from dfspeer.objects.download import close_stream
from dfspeer.objects.info import RESERVED_META_PREFIX, ObjectInfo
from dfspeer.objects.names import validate_bucket, validate_key


def copy_source(s3: S3Request) -> tuple[str, str, str | None]:
    """``(bucket, key, versionId or None)`` of ``x-amz-copy-source`` (``[/]bucket/key
    [?versionId=V]``, percent-encoded). Raises InvalidArgument."""
    raw = s3.http.headers.get("x-amz-copy-source", "")
    path, _, query = raw.partition("?")
    bucket, _, key = unquote(path).lstrip("/").partition("/")
    version = None
    for pair in query.split("&") if query else ():
        name, _, value = pair.partition("=")
        if name == "versionId":
            version = unquote(value)
    if not bucket or not key:
        raise invalid_argument("x-amz-copy-source must be bucket/key[?versionId=V]")
    validate_bucket(bucket)
    validate_key(key)
    return bucket, key, version


async def source_version(s3: S3Request, bucket: str, key: str, vid: str | None) -> ObjectVersion:
    """The source's version (the live one without ``vid``). Raises NoSuchBucket,
    NoSuchKey, NoSuchVersion, PreconditionFailed (``x-amz-copy-source-if-*``),
    AccessDenied (a key without ``read`` on the source's bucket)."""
    await authorize(s3, Action.READ, bucket)
    objects = s3.ctx.objects
    if await objects.buckets.read(bucket, cached=True) is None:
        raise S3Error("NoSuchBucket", 404, "The specified bucket does not exist")
    record = await objects.replicator.read_record(OBJECTS_TABLE, table_key(bucket, key))
    entry = objects.schema.decode(record) if record is not None else None
    if vid is None:
        version = entry.live() if entry is not None else None
        if version is None:
            raise NoSuchKey(f"no object {bucket}/{key}")
    else:
        version = entry.get(vid) if entry is not None else None
        if version is None or not version.is_data:
            raise NoSuchVersion(f"{bucket}/{key} has no version {vid}")
    etag = s3_etag(ObjectInfo.of(bucket, key, version)).strip('"')
    h = s3.http.headers
    match = h.get("x-amz-copy-source-if-match")
    none_match = h.get("x-amz-copy-source-if-none-match")
    if (match is not None and match.strip().strip('"') not in (etag, "*")) or (
        none_match is not None and none_match.strip().strip('"') in (etag, "*")
    ):
        raise S3Error("PreconditionFailed", 412, "At least one of the preconditions failed.")
    return version


def _meta(s3: S3Request, source: ObjectVersion, same: bool) -> tuple[str, tuple[Any, ...]]:
    directive = s3.http.headers.get("x-amz-metadata-directive", "COPY").upper()
    if directive not in ("COPY", "REPLACE"):
        raise invalid_argument("x-amz-metadata-directive must be COPY or REPLACE")
    reserved = {k: v for k, v in source.meta if k.startswith(RESERVED_META_PREFIX)}
    if directive == "COPY":
        if same:
            raise invalid_request(
                "This copy request is illegal because it is trying to copy an object to "
                "itself without changing the object's metadata, storage class, website "
                "redirect location or encryption attributes."
            )
        return source.content_type, source.meta
    meta = {**user_meta(s3.http.headers), **reserved}
    content_type = s3.http.headers.get("Content-Type") or DEFAULT_CONTENT_TYPE
    return content_type, tuple(sorted(meta.items()))


async def copy_object(s3: S3Request) -> web.StreamResponse:
    """``PUT /bucket/key`` with ``x-amz-copy-source`` (module docstring)."""
    bucket = await existing(s3, cached=True)
    validate_key(s3.key_name)
    src_bucket, src_key, src_vid = copy_source(s3)
    source = await source_version(s3, src_bucket, src_key, src_vid)
    same = (src_bucket, src_key) == (bucket.name, s3.key_name) and src_vid is None
    content_type, meta = _meta(s3, source, same)
    objects = s3.ctx.objects
    prior = await objects.observe(bucket.name, s3.key_name)
    now = time.time()
    vid = str(objects.clock.next_version(objects.view.self_id))
    new = ObjectVersion(
        id=vid,
        state=COMPLETE,
        null=not bucket.keeps_versions,
        size=source.size,
        sha256=source.sha256,
        content_type=content_type,
        meta=meta,
        chunks=source.chunks,
        inline=source.inline,
        modified=now,
        created=now,
        checksum=source.checksum,
    )
    digests = {d for d, _ in source.chunks}
    if digests:
        begun = ObjectVersion(vid, UPLOADING, null=new.null, created=now)
        await objects.write_version(bucket.name, s3.key_name, begun)
        await asyncio.gather(
            *(
                objects.replicator.write_record(
                    BLOCK_REFS_TABLE,
                    ref_key(d, vid),
                    objects.ref_record(d, vid, bucket.name, s3.key_name, now),
                )
                for d in digests
            )
        )
    await objects.write_version(bucket.name, s3.key_name, new)
    objects.supersede(bucket.name, s3.key_name, prior, new)
    info = ObjectInfo.of(bucket.name, s3.key_name, new)
    headers = {"x-amz-copy-source-version-id": source.id}
    if bucket.keeps_versions:
        headers["x-amz-version-id"] = vid
    result: list[xml.Child] = [
        ("LastModified", xml.iso8601(info.modified)),
        ("ETag", s3_etag(info)),
    ]
    if new.checksum is not None and new.checksum[0] in XML_CHECKSUM_NAMES:
        algorithm, value = new.checksum
        result += [("ChecksumType", "FULL_OBJECT"), (XML_CHECKSUM_NAMES[algorithm], value)]
    answer = xml_response(xml.document("CopyObjectResult", result))
    answer.headers.update(headers)
    return answer


def _range(s3: S3Request, size: int) -> tuple[int, int]:
    raw = s3.http.headers.get("x-amz-copy-source-range")
    if raw is None:
        return 0, size
    spec = raw.strip().removeprefix("bytes=")
    first, _, last = spec.partition("-")
    if not (first.isdigit() and last.isdigit()) or int(first) > int(last) or int(last) >= size:
        raise S3Error("InvalidRange", 416, "The x-amz-copy-source-range is not satisfiable.")
    return int(first), int(last) + 1


async def upload_part_copy(s3: S3Request) -> web.StreamResponse:
    """``PUT ?partNumber=N&uploadId=U`` with ``x-amz-copy-source`` (module docstring)."""
    await existing(s3, cached=True)
    number = part_number(s3)
    src_bucket, src_key, src_vid = copy_source(s3)
    source = await source_version(s3, src_bucket, src_key, src_vid)
    start, end = _range(s3, source.size)
    _, stream = await s3.ctx.objects.get_object(
        src_bucket, src_key, start=start, end=end, version=source.id
    )
    try:
        etag = await store_part(s3, number, stream, None, end - start, None)
    finally:
        await close_stream(stream)
    answer = xml_response(
        xml.document("CopyPartResult", [("LastModified", xml.iso8601(time.time())), ("ETag", etag)])
    )
    answer.headers["x-amz-copy-source-version-id"] = source.id
    return answer
