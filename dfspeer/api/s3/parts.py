"""``GetObject`` / ``HeadObject`` with ``?partNumber=N``: the N-th part of an object.

S3 serves part N of an object made by a multipart upload as a ranged read of that part's
bytes (206, ``Content-Range``) and names the object's part count in
``x-amz-mp-parts-count`` (the SDKs' ``PartsCount``); the AWS SDK transfer managers of Go
and Java download a multipart object that way, part after part. Parts are counted in the
order of the completed upload (1..count), whatever numbers they were uploaded under, as
MinIO does. An object not made by a multipart upload (or completed by an earlier release,
which kept no part sizes) is one part: ``partNumber=1`` is the whole object, without
``x-amz-mp-parts-count``, as S3 answers for a single-part object. Errors as S3's:
``InvalidArgument`` (400) for a number outside 1..10,000, ``InvalidRequest`` (400) with a
``Range`` header as well, ``InvalidPartNumber`` (416) past the object's last part.
"""

from __future__ import annotations

from dfspeer.api.s3.context import S3Request
from dfspeer.api.s3.errors import S3Error, invalid_argument, invalid_request
from dfspeer.objects.info import ObjectInfo

MAX_PART_NUMBER = 10_000
PARTS_COUNT_HEADER = "x-amz-mp-parts-count"


def part_number(s3: S3Request) -> int | None:
    """The request's ``partNumber`` (None without one). Raises InvalidArgument (not an
    integer in 1..10,000) or InvalidRequest (a ``Range`` header too)."""
    raw = s3.query.get("partNumber")
    if raw is None:
        return None
    if not (raw.isascii() and raw.isdigit()) or not 1 <= int(raw) <= MAX_PART_NUMBER:
        raise invalid_argument(
            f"Part number must be an integer between 1 and {MAX_PART_NUMBER}, inclusive"
        )
    if "Range" in s3.http.headers:
        raise invalid_request("Cannot specify both Range header and partNumber query parameter")
    return int(raw)


def part_span(info: ObjectInfo, number: int) -> tuple[int, int]:
    """Bytes ``[start, end)`` of part ``number`` (1-based) of ``info``. Raises
    InvalidPartNumber (416) past its last part."""
    sizes = info.parts or (info.size,)
    if number > len(sizes):
        raise S3Error("InvalidPartNumber", 416, "The requested partnumber is not satisfiable")
    start = sum(sizes[: number - 1])
    return start, start + sizes[number - 1]
