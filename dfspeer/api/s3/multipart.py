"""S3 multipart uploads: CreateMultipartUpload, UploadPart, UploadPartCopy, ListParts,
ListMultipartUploads, CompleteMultipartUpload, AbortMultipartUpload.

The work is :class:`dfspeer.objects.multipart.MultipartService` (upload sessions of kind
``s3``); this module maps requests and XML to it. Answers::

    POST ?uploads    -> <InitiateMultipartUploadResult><Bucket/><Key/><UploadId/>
    PUT ?partNumber=N&uploadId=U -> 200, ETag: "<hex MD5 of the part>"
    GET ?uploadId=U  -> <ListPartsResult> ... <Part><PartNumber/><LastModified/><ETag/>
                        <Size/></Part> ... (part-number-marker, max-parts <= 1000)
    POST ?uploadId=U <CompleteMultipartUpload><Part><PartNumber/><ETag/></Part>...
                     -> <CompleteMultipartUploadResult><Location/><Bucket/><Key/><ETag/>
    DELETE ?uploadId=U -> 204
    GET /bucket?uploads -> <ListMultipartUploadsResult> ... <Upload><Key/><UploadId/>
                           <Initiated/>...</Upload> (prefix, delimiter, key-marker,
                           upload-id-marker, max-uploads <= 1000)

Errors: NoSuchUpload (404), InvalidPart, InvalidPartOrder, EntityTooSmall (every part but
the last under 5 MiB), EntityTooLarge (a part over 5 GiB), MalformedXML (400).
"""

from __future__ import annotations

from collections.abc import AsyncIterable
from dataclasses import dataclass, field
from urllib.parse import quote

from aiohttp import web

from dfspeer.api.s3 import xml
from dfspeer.api.s3.body import sha256_mismatch, signed_sha256
from dfspeer.api.s3.buckets import existing, owner, xml_response
from dfspeer.api.s3.context import S3Request
from dfspeer.api.s3.errors import S3Error, invalid_argument, malformed_xml
from dfspeer.api.s3.objects import DEFAULT_CONTENT_TYPE, s3_etag, user_meta
from dfspeer.api.s3.payload import BodyStream, Md5Pass, body_length, read_small
from dfspeer.errors import BadDigest
from dfspeer.model.hlc_time import version_unix_s
from dfspeer.model.uploads import UploadSession
from dfspeer.objects.multipart import MAX_PART_NUMBER, MultipartService
from dfspeer.objects.names import validate_key

MAX_LISTED = 1000
STORAGE_CLASS = "STANDARD"


def service(s3: S3Request) -> MultipartService:
    return s3.ctx.multipart


def _int_param(s3: S3Request, name: str, default: int, lo: int, hi: int) -> int:
    raw = s3.query.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not lo <= int(raw) <= hi:
        raise invalid_argument(f"{name} must be an integer in {lo}..{hi}")
    return int(raw)


def part_number(s3: S3Request) -> int:
    """``?partNumber`` (1..10,000). Raises InvalidArgument."""
    raw = s3.query.get("partNumber", "")
    if not raw.isdigit() or not 1 <= int(raw) <= MAX_PART_NUMBER:
        raise invalid_argument(
            f"Part number must be an integer between 1 and {MAX_PART_NUMBER}, inclusive"
        )
    return int(raw)


def _upload_id(s3: S3Request) -> str:
    return s3.query.get("uploadId", "")


async def create_upload(s3: S3Request) -> web.StreamResponse:
    """``POST /bucket/key?uploads``: start an upload (``Content-Type``, ``x-amz-meta-*``
    are the object's)."""
    bucket = await existing(s3, cached=True)
    validate_key(s3.key_name)
    session = await service(s3).create(
        bucket.name,
        s3.key_name,
        content_type=s3.http.headers.get("Content-Type") or DEFAULT_CONTENT_TYPE,
        meta=user_meta(s3.http.headers),
    )
    return xml_response(
        xml.document(
            "InitiateMultipartUploadResult",
            [("Bucket", bucket.name), ("Key", s3.key_name), ("UploadId", session.id)],
        )
    )


async def store_part(
    s3: S3Request,
    number: int,
    body: AsyncIterable[bytes],
    md5: BodyStream | Md5Pass | None,
    length: int | None,
    expected_sha256: str | None,
) -> str:
    """Store one part of the request's upload; its quoted ETag."""
    stream: BodyStream | Md5Pass = md5 if md5 is not None else Md5Pass(body)
    try:
        part = await service(s3).upload_part(
            _upload_id(s3),
            s3.bucket_name,
            s3.key_name,
            number,
            stream,
            lambda: stream.md5,
            content_length=length,
            expected_sha256=expected_sha256,
        )
    except BadDigest:
        raise sha256_mismatch() from None
    return f'"{part.etag}"'


async def upload_part(s3: S3Request) -> web.StreamResponse:
    """``PUT /bucket/key?partNumber=N&uploadId=U``: store one part (a copy with
    ``x-amz-copy-source``)."""
    if "x-amz-copy-source" in s3.http.headers:
        from dfspeer.api.s3.copy import upload_part_copy

        return await upload_part_copy(s3)
    await existing(s3, cached=True)
    number = part_number(s3)
    length = body_length(s3)
    if length is None:
        raise S3Error("MissingContentLength", 411, "You must provide the Content-Length.")
    sha = signed_sha256(s3)
    stream = BodyStream(s3)
    etag = await store_part(s3, number, stream, stream, length, sha)
    return web.Response(status=200, headers={"ETag": etag, **stream.checksum_headers()})


async def list_parts(s3: S3Request) -> web.StreamResponse:
    """``GET /bucket/key?uploadId=U``: the parts received so far, by number."""
    await existing(s3, cached=True)
    marker = _int_param(s3, "part-number-marker", 0, 0, MAX_PART_NUMBER)
    limit = _int_param(s3, "max-parts", MAX_LISTED, 0, 2**31)
    multipart = service(s3)
    header = await multipart.open_session(_upload_id(s3), s3.bucket_name, s3.key_name)
    session = await multipart.uploads.with_elements(header)
    parts = [p for n, p in sorted(session.current_parts().items()) if n > marker]
    page, truncated = parts[: min(limit, MAX_LISTED)], len(parts) > min(limit, MAX_LISTED)
    who = owner(s3)
    children: list[xml.Child] = [
        ("Bucket", s3.bucket_name),
        ("Key", s3.key_name),
        ("UploadId", session.id),
        ("Initiator", who),
        ("Owner", who),
        ("StorageClass", STORAGE_CLASS),
        ("PartNumberMarker", marker),
        ("NextPartNumberMarker", page[-1].number if page else None),
        ("MaxParts", min(limit, MAX_LISTED)),
        ("IsTruncated", truncated),
    ]
    for p in page:
        children.append(
            (
                "Part",
                [
                    ("PartNumber", p.number),
                    ("LastModified", xml.iso8601(version_unix_s(p.at) or session.created)),
                    ("ETag", f'"{p.etag}"'),
                    ("Size", p.size),
                ],
            )
        )
    return xml_response(xml.document("ListPartsResult", children))


def _wanted_parts(body: bytes) -> list[tuple[int, str]]:
    try:
        doc = xml.parse(body, "CompleteMultipartUpload")
    except xml.XmlBodyError as exc:
        raise malformed_xml(str(exc)) from None
    wanted: list[tuple[int, str]] = []
    for part in xml.children(doc, "Part"):
        number, etag = xml.text_of(part, "PartNumber"), xml.text_of(part, "ETag")
        if number is None or not number.strip().isdigit() or not etag:
            raise malformed_xml("every <Part> needs a <PartNumber> and an <ETag>")
        wanted.append((int(number), etag))
    if not wanted or len(wanted) > MAX_PART_NUMBER:
        raise malformed_xml(f"name 1..{MAX_PART_NUMBER} parts")
    return wanted


async def complete_upload(s3: S3Request) -> web.StreamResponse:
    """``POST /bucket/key?uploadId=U``: make the listed parts the object."""
    bucket = await existing(s3, cached=True)
    wanted = _wanted_parts(await read_small(s3))
    info = await service(s3).complete(_upload_id(s3), bucket.name, s3.key_name, wanted)
    location = f"{s3.http.scheme}://{s3.http.host}/{quote(bucket.name)}/{quote(s3.key_name)}"
    headers = {"x-amz-version-id": info.version} if bucket.keeps_versions else {}
    answer = xml_response(
        xml.document(
            "CompleteMultipartUploadResult",
            [
                ("Location", location),
                ("Bucket", bucket.name),
                ("Key", s3.key_name),
                ("ETag", s3_etag(info)),
            ],
        )
    )
    answer.headers.update(headers)
    return answer


async def abort_upload(s3: S3Request) -> web.StreamResponse:
    """``DELETE /bucket/key?uploadId=U``: abort; every part's blocks are released."""
    await existing(s3, cached=True)
    await service(s3).abort(_upload_id(s3), s3.bucket_name, s3.key_name)
    return web.Response(status=204)


async def list_uploads(s3: S3Request) -> web.StreamResponse:
    """``GET /bucket?uploads``: open multipart uploads by key, then initiation."""
    bucket = await existing(s3, cached=True)
    query = _uploads_query(s3)
    limit_open = s3.ctx.config.max_open_uploads
    sessions = await service(s3).list_open(bucket.name, limit=limit_open)
    sessions.sort(key=lambda s: (s.key.encode(), s.created, s.id))
    page = _uploads_page(sessions, query)
    children = _uploads_result(bucket.name, query, page, owner(s3))
    return xml_response(xml.document("ListMultipartUploadsResult", children))


@dataclass(frozen=True)
class _UploadsQuery:
    """ListMultipartUploads' query parameters (``max-uploads`` capped at MAX_LISTED)."""

    prefix: str
    delimiter: str
    key_marker: str
    id_marker: str
    limit: int
    url: bool  # encoding-type=url

    def enc(self, text: str) -> str:
        """``text`` as the answer carries it (URL-encoded with ``encoding-type=url``)."""
        return quote(text, safe="/") if self.url else text


def _uploads_query(s3: S3Request) -> _UploadsQuery:
    """The ListMultipartUploads parameters. Raises InvalidArgument."""
    q = s3.query
    prefix, delimiter = q.get("prefix", ""), q.get("delimiter", "")
    key_marker, id_marker = q.get("key-marker", ""), q.get("upload-id-marker", "")
    limit = min(_int_param(s3, "max-uploads", MAX_LISTED, 0, 2**31), MAX_LISTED)
    if q.get("encoding-type") not in (None, "url"):
        raise invalid_argument("Invalid Encoding Method specified in Request")
    url = q.get("encoding-type") == "url"
    return _UploadsQuery(prefix, delimiter, key_marker, id_marker, limit, url)


@dataclass
class _UploadsPage:
    """One page of ListMultipartUploads: its uploads and rolled-up common prefixes."""

    uploads: list[UploadSession] = field(default_factory=list)
    prefixes: list[str] = field(default_factory=list)
    truncated: bool = False
    last: tuple[str, str] = ("", "")  # key and upload id of the last entry listed


def _uploads_page(sessions: list[UploadSession], query: _UploadsQuery) -> _UploadsPage:
    """The page of ``sessions`` (sorted by key, initiation, id) after the markers and under
    the prefix, rolled up at the delimiter: at most ``limit`` uploads and prefixes in all."""
    page = _UploadsPage()
    prefix, delimiter, key_marker = query.prefix, query.delimiter, query.key_marker
    passed_marker = False
    for s in sessions:
        if not s.key.startswith(prefix):
            continue
        if key_marker and s.key < key_marker:
            continue
        if key_marker and s.key == key_marker and not passed_marker:
            passed_marker = s.id == query.id_marker  # uploads of key-marker after upload-id-marker
            continue
        rolled = ""
        if delimiter:
            cut = s.key.find(delimiter, len(prefix))
            rolled = s.key[: cut + len(delimiter)] if cut >= 0 else ""
        if rolled and rolled in page.prefixes:
            continue
        if len(page.uploads) + len(page.prefixes) >= query.limit:
            page.truncated = True
            break
        page.last = (s.key, s.id)
        if rolled:
            page.prefixes.append(rolled)
            continue
        page.uploads.append(s)
    return page


def _uploads_result(
    bucket: str, query: _UploadsQuery, page: _UploadsPage, who: list[xml.Child]
) -> list[xml.Child]:
    """The children of ``<ListMultipartUploadsResult>`` for ``page``."""
    enc, truncated, last = query.enc, page.truncated, page.last
    uploads: list[xml.Child] = [
        (
            "Upload",
            [
                ("Key", enc(s.key)),
                ("UploadId", s.id),
                ("Initiator", who),
                ("Owner", who),
                ("StorageClass", STORAGE_CLASS),
                ("Initiated", xml.iso8601(s.created)),
            ],
        )
        for s in page.uploads
    ]
    rolled_up: list[xml.Child] = [("CommonPrefixes", [("Prefix", enc(p))]) for p in page.prefixes]
    return [
        ("Bucket", bucket),
        ("KeyMarker", enc(query.key_marker)),
        ("UploadIdMarker", query.id_marker),
        ("NextKeyMarker", enc(last[0]) if truncated else None),
        ("NextUploadIdMarker", last[1] if truncated else None),
        ("Prefix", enc(query.prefix) if query.prefix else None),
        ("Delimiter", enc(query.delimiter) if query.delimiter else None),
        ("MaxUploads", query.limit),
        ("IsTruncated", truncated),
        *uploads,
        *rolled_up,
        ("EncodingType", "url" if query.url else None),
    ]
