"""Request bodies of the S3 API: the signed payload hash and ``Content-MD5`` checked.

Object bodies (PutObject, UploadPart) stream into the objects layer, which computes the
SHA-256 anyway: the signed hash goes in as its expected digest, and a mismatch
(``BadDigest`` from below) is re-raised here as ``XAmzContentSHA256Mismatch`` before
anything becomes visible. Small XML bodies are read whole
(:func:`dfspeer.api.s3.payload.read_small`).
"""

from __future__ import annotations

import base64

from dfspeer.api.s3.auth import STREAMING_PREFIX, UNSIGNED_PAYLOAD
from dfspeer.api.s3.chunked import check_mode
from dfspeer.api.s3.context import S3Request
from dfspeer.api.s3.errors import S3Error, invalid_argument

READ_PIECE_BYTES = 256 * 1024


def sha256_mismatch() -> S3Error:
    return S3Error(
        "XAmzContentSHA256Mismatch",
        400,
        "The provided 'x-amz-content-sha256' header does not match what was computed.",
    )


def signed_sha256(s3: S3Request) -> str | None:
    """The hex SHA-256 the body must have (None: unsigned payload, or an aws-chunked one,
    whose chunks :mod:`.chunked` checks). Raises NotImplemented for a ``STREAMING-*`` mode
    that is not decoded."""
    payload = s3.identity.payload
    if payload == UNSIGNED_PAYLOAD:
        return None
    if payload.startswith(STREAMING_PREFIX):
        check_mode(payload)
        return None
    return payload


def content_md5(s3: S3Request) -> bytes | None:
    """The 16-byte digest of a ``Content-MD5`` header, None if absent. Raises InvalidDigest."""
    value = s3.http.headers.get("Content-MD5")
    if value is None:
        return None
    try:
        digest = base64.b64decode(value.strip(), validate=True)
    except ValueError:
        digest = b""
    if len(digest) != 16:
        raise S3Error("InvalidDigest", 400, "The Content-MD5 you specified was invalid.")
    return digest


def check_md5(s3: S3Request, md5: bytes) -> None:
    """Raise BadDigest if the body's MD5 is not the ``Content-MD5`` the client sent."""
    want = content_md5(s3)
    if want is not None and want != md5:
        raise S3Error(
            "BadDigest", 400, "The Content-MD5 you specified did not match what we received."
        )


def declared_length(s3: S3Request) -> int | None:
    """``Content-Length`` (None for a chunked transfer). Raises InvalidArgument."""
    value = s3.http.headers.get("Content-Length")
    if value is None:
        return None
    if not value.isdigit():
        raise invalid_argument("Content-Length must be a number of bytes")
    return int(value)
