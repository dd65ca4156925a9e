"""S3 listings: ListObjectsV2, ListObjects (v1) and ListObjectVersions.

Pages come from the objects layer's listing (:mod:`dfspeer.objects.listing`: keys in
order, common prefixes rolled up, at most 1000 entries). ``continuation-token`` is the
base64url of the last key or prefix returned (opaque to clients); ``start-after`` /
``marker`` / ``key-marker`` are plain keys. With ``encoding-type=url`` every key, prefix,
delimiter and marker in the answer is percent-encoded (``quote(text, safe="/")``, so ``+``
is ``%2B``); without it a key that XML 1.0 cannot carry (a control character) is refused
with InvalidArgument rather than sent as invalid XML.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from urllib.parse import quote

from aiohttp import web

from dfspeer.api.s3 import xml
from dfspeer.api.s3.buckets import existing, owner, xml_response
from dfspeer.api.s3.context import S3Request
from dfspeer.api.s3.errors import invalid_argument
from dfspeer.api.s3.objects import s3_etag
from dfspeer.objects.info import ObjectInfo
from dfspeer.objects.listing import MAX_LIST_LIMIT, ListResult

STORAGE_CLASS = "STANDARD"


def _encoder(s3: S3Request) -> Callable[[str | None], str | None]:
    mode = s3.query.get("encoding-type")
    if mode is None:
        return lambda text: text
    if mode != "url":
        raise invalid_argument("Invalid Encoding Method specified in Request")
    return lambda text: None if text is None else quote(text, safe="/")


def _max_keys(s3: S3Request, name: str = "max-keys") -> int:
    raw = s3.query.get(name, str(MAX_LIST_LIMIT))
    if not raw.isdigit():
        raise invalid_argument(f"{name} must be a non-negative integer")
    return min(int(raw), MAX_LIST_LIMIT)


def _token(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode()


def _untoken(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except (binascii.Error, ValueError, UnicodeDecodeError):
        raise invalid_argument("The continuation token provided is incorrect") from None


async def _page(
    s3: S3Request, prefix: str, delimiter: str, limit: int, start_after: str
) -> ListResult:
    if limit == 0:
        return ListResult()
    return await s3.ctx.objects.list_objects(
        s3.bucket_name, prefix=prefix, delimiter=delimiter, limit=limit, start_after=start_after
    )


def _contents(
    s3: S3Request, o: ObjectInfo, enc: Callable[[str | None], str | None], with_owner: bool
) -> xml.Child:
    entry: list[xml.Child] = [
        ("Key", enc(o.key)),
        ("LastModified", xml.iso8601(o.modified)),
        ("ETag", s3_etag(o)),
        ("Size", o.size),
        ("StorageClass", STORAGE_CLASS),
    ]
    if with_owner:
        entry.append(("Owner", owner(s3)))
    return ("Contents", entry)


def _document(root: str, children: list[xml.Child]) -> web.Response:
    try:
        return xml_response(xml.document(root, children))
    except xml.XmlTextError:
        raise invalid_argument(
            "a key holds a character XML 1.0 cannot carry; list with encoding-type=url"
        ) from None


async def list_objects(s3: S3Request) -> web.StreamResponse:
    """``GET /bucket``: ListObjectsV2 with ``list-type=2``, else ListObjects (v1)."""
    await existing(s3, cached=True)
    enc = _encoder(s3)
    q = s3.query
    prefix, delimiter, limit = q.get("prefix", ""), q.get("delimiter", ""), _max_keys(s3)
    v2 = q.get("list-type") == "2"
    if v2:
        token = q.get("continuation-token")
        start = _untoken(token) if token is not None else q.get("start-after", "")
    else:
        start = q.get("marker", "")
    page = await _page(s3, prefix, delimiter, limit, start)
    head: list[xml.Child] = [
        ("Name", s3.bucket_name),
        ("Prefix", enc(prefix)),
        ("Delimiter", enc(delimiter) if delimiter else None),
        ("MaxKeys", limit),
        ("EncodingType", q.get("encoding-type")),
        ("IsTruncated", page.is_truncated),
    ]
    with_owner = not v2 or q.get("fetch-owner") == "true"
    body: list[xml.Child] = [_contents(s3, o, enc, with_owner) for o in page.objects]
    body += [("CommonPrefixes", [("Prefix", enc(p))]) for p in page.common_prefixes]
    following = page.next_start_after if page.is_truncated else None
    if v2:
        head += [
            ("KeyCount", len(page.objects) + len(page.common_prefixes)),
            ("ContinuationToken", q.get("continuation-token")),
            ("NextContinuationToken", _token(following) if following else None),
            ("StartAfter", enc(q["start-after"]) if "start-after" in q else None),
        ]
    else:
        head += [("Marker", enc(start)), ("NextMarker", enc(following) if following else None)]
    return _document("ListBucketResult", head + body)


async def list_object_versions(s3: S3Request) -> web.StreamResponse:
    """``GET /bucket?versions``: every version and delete marker, keys in order, each
    key's newest first (``prefix``, ``key-marker``, ``max-keys``; a page never splits a
    key's versions, so ``version-id-marker`` is not needed and is ignored)."""
    await existing(s3, cached=True)
    enc = _encoder(s3)
    q = s3.query
    prefix, limit, start = q.get("prefix", ""), _max_keys(s3), q.get("key-marker", "")
    if q.get("delimiter"):
        raise invalid_argument("delimiter is not supported by ListObjectVersions here")
    objects = s3.ctx.objects
    versions = (
        await objects.list_versions(s3.bucket_name, prefix=prefix, limit=limit, start_after=start)
        if limit
        else None
    )
    items: list[xml.Child] = []
    for v in versions.versions if versions is not None else []:
        vid = v.version
        common: list[xml.Child] = [
            ("Key", enc(v.key)),
            ("VersionId", vid),
            ("IsLatest", v.is_latest),
            ("LastModified", xml.iso8601(v.modified)),
        ]
        if v.delete_marker:
            items.append(("DeleteMarker", [*common, ("Owner", owner(s3))]))
            continue
        info = await objects.stat_object(s3.bucket_name, v.key, version=v.version)
        items.append(
            (
                "Version",
                [
                    *common,
                    ("ETag", s3_etag(info)),
                    ("Size", v.size),
                    ("StorageClass", STORAGE_CLASS),
                    ("Owner", owner(s3)),
                ],
            )
        )
    truncated = versions is not None and versions.is_truncated
    head: list[xml.Child] = [
        ("Name", s3.bucket_name),
        ("Prefix", enc(prefix)),
        ("KeyMarker", enc(start)),
        ("VersionIdMarker", q.get("version-id-marker", "")),
        ("MaxKeys", limit),
        ("EncodingType", q.get("encoding-type")),
        ("IsTruncated", truncated),
        ("NextKeyMarker", enc(versions.next_start_after) if versions and truncated else None),
    ]
    return _document("ListVersionsResult", head + items)
