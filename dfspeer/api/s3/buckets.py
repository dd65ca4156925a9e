"""S3 bucket operations: ListBuckets, CreateBucket, HeadBucket, DeleteBucket,
GetBucketLocation, Get/PutBucketVersioning.

Versioning states map one to one: S3's unset / ``Enabled`` / ``Suspended`` are the
bucket's ``unversioned`` / ``enabled`` / ``suspended``. A bucket exists in one region, the
peer's ``s3_region``; ``CreateBucketConfiguration`` naming another region is refused.
"""

from __future__ import annotations

from aiohttp import web

from dfspeer.access.permissions import visible
from dfspeer.api.s3 import xml
from dfspeer.api.s3.context import S3Request
from dfspeer.api.s3.errors import S3Error, malformed_xml
from dfspeer.api.s3.payload import read_small
from dfspeer.errors import NoSuchBucket
from dfspeer.model.buckets import Bucket
from dfspeer.objects.names import validate_bucket

XML = "application/xml"
OWNER_ID = "dfspeer"
_TO_S3 = {"enabled": "Enabled", "suspended": "Suspended"}
_FROM_S3 = {"Enabled": "enabled", "Suspended": "suspended"}


def xml_response(body: bytes, *, status: int = 200) -> web.Response:
    return web.Response(status=status, body=body, content_type=XML)


def owner(s3: S3Request) -> list[xml.Child]:
    """The ``<Owner>`` children: the access key (or ``dfspeer`` in open mode)."""
    who = s3.identity.access_key or OWNER_ID
    return [("ID", who), ("DisplayName", who)]


async def existing(s3: S3Request, *, cached: bool = False) -> Bucket:
    """The request's bucket. Raises InvalidBucketName, NoSuchBucket."""
    name = s3.bucket_name
    validate_bucket(name)
    bucket = await s3.ctx.objects.buckets.read(name, cached=cached)
    if bucket is None:
        raise NoSuchBucket("The specified bucket does not exist")
    return bucket


async def list_buckets(s3: S3Request) -> web.StreamResponse:
    """``GET /``: every live bucket the principal sees (the admin: all; a key: those it
    owns or has a grant on), by name."""
    listed = [b for b in await s3.ctx.objects.buckets.list() if visible(s3.identity.principal, b)]
    items: list[xml.Child] = [
        ("Bucket", [("Name", b.name), ("CreationDate", xml.iso8601(b.created))]) for b in listed
    ]
    return xml_response(
        xml.document("ListAllMyBucketsResult", [("Owner", owner(s3)), ("Buckets", items)])
    )


async def create_bucket(s3: S3Request) -> web.StreamResponse:
    """``PUT /bucket`` (optional ``CreateBucketConfiguration``). An existing bucket is
    ``BucketAlreadyOwnedByYou`` (409)."""
    name = s3.bucket_name
    validate_bucket(name)
    body = await read_small(s3)
    if body.strip():
        try:
            doc = xml.parse(body, "CreateBucketConfiguration")
        except xml.XmlBodyError as exc:
            raise malformed_xml(str(exc)) from None
        region = xml.text_of(doc, "LocationConstraint", "") or ""
        if region not in ("", s3.ctx.config.s3_region):
            raise S3Error(
                "InvalidLocationConstraint",
                400,
                f"this cluster serves region {s3.ctx.config.s3_region}, not {region}",
            )
    if await s3.ctx.objects.buckets.read(name) is not None:
        raise S3Error(
            "BucketAlreadyOwnedByYou",
            409,
            "Your previous request to create the named bucket succeeded and you already own it.",
        )
    await s3.ctx.objects.buckets.create(name, owner=s3.identity.access_key or "")
    return web.Response(status=200, headers={"Location": f"/{name}"})


async def head_bucket(s3: S3Request) -> web.StreamResponse:
    """``HEAD /bucket``: 200 with ``x-amz-bucket-region``, or 404."""
    await existing(s3)
    return web.Response(status=200, headers={"x-amz-bucket-region": s3.ctx.config.s3_region})


async def delete_bucket(s3: S3Request) -> web.StreamResponse:
    """``DELETE /bucket``: 204; ``BucketNotEmpty`` while a key holds a version or marker."""
    name = s3.bucket_name
    validate_bucket(name)
    objects = s3.ctx.objects

    async def is_empty() -> bool:
        return await objects.bucket_is_empty(name)

    await objects.buckets.delete(name, is_empty=is_empty)
    return web.Response(status=204)


async def get_location(s3: S3Request) -> web.StreamResponse:
    """``GET /bucket?location``: the region (empty for ``us-east-1``, as S3 answers)."""
    await existing(s3)
    region = s3.ctx.config.s3_region
    text = "" if region == "us-east-1" else region
    return xml_response(xml.document("LocationConstraint", [], text=text))


async def get_versioning(s3: S3Request) -> web.StreamResponse:
    """``GET /bucket?versioning``: ``Status`` Enabled / Suspended, none if never set."""
    bucket = await existing(s3)
    status = _TO_S3.get(bucket.versioning)
    return xml_response(xml.document("VersioningConfiguration", [("Status", status)]))


async def put_versioning(s3: S3Request) -> web.StreamResponse:
    """``PUT /bucket?versioning`` with ``<Status>Enabled|Suspended</Status>``."""
    await existing(s3)
    body = await read_small(s3)
    try:
        doc = xml.parse(body, "VersioningConfiguration")
    except xml.XmlBodyError as exc:
        raise malformed_xml(str(exc)) from None
    status = xml.text_of(doc, "Status")
    if status not in _FROM_S3:
        raise malformed_xml("Status must be Enabled or Suspended")
    if xml.text_of(doc, "MfaDelete", "Disabled") == "Enabled":
        raise S3Error("NotImplemented", 501, "MFA delete is not implemented by this server")
    await s3.ctx.objects.buckets.set_versioning(s3.bucket_name, _FROM_S3[status])
    return web.Response(status=200)
