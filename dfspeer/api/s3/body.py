"""Request bodies of the S3 API: the signed payload hash and ``Content-MD5`` checked.

Object bodies (PutObject, UploadPart) stream into the objects layer, which computes the
SHA-256 anyway: the signed hash goes in as its expected digest, and a mismatch
(``BadDigest`` from below) is re-raised here as ``XAmzContentSHA256Mismatch`` before
anything becomes visible. Small XML bodies are read whole and checked here.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator

from aiohttp import web

from dfspeer.api.s3.auth import STREAMING_PREFIX, UNSIGNED_PAYLOAD
from dfspeer.api.s3.chunked import BytesSource, ChunkedBody, check_mode
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


async def read_small(s3: S3Request) -> bytes:
    """The whole (XML) body, checked against the signed hash and ``Content-MD5``. Raises
    XAmzContentSHA256Mismatch, BadDigest, EntityTooLarge (over the app's 2 MiB)."""
    try:
        body = await s3.http.read()
    except web.HTTPRequestEntityTooLarge:
        raise S3Error("EntityTooLarge", 400, "the XML body is too large") from None
    want = signed_sha256(s3)
    if s3.identity.payload.startswith(STREAMING_PREFIX):
        body = await _unframe(body, s3)
    if want is not None and hashlib.sha256(body).hexdigest() != want:
        raise sha256_mismatch()
    check_md5(s3, hashlib.md5(body).digest())
    return body


async def _unframe(framed: bytes, s3: S3Request) -> bytes:
    """The decoded bytes of a (small) aws-chunked body read whole."""
    body = ChunkedBody(BytesSource(framed), s3.identity.payload, s3.identity)
    return b"".join([piece async for piece in body])


class Md5Stream:
    """Passes a request body through while computing its MD5 (the S3 ETag);
    :attr:`md5` is the digest once the body has been read to its end."""

    def __init__(self, request: web.Request) -> None:
        self.request = request
        self._md5 = hashlib.md5()
        self.size = 0

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._pieces()

    async def _pieces(self) -> AsyncIterator[bytes]:
        async for piece in self.request.content.iter_chunked(READ_PIECE_BYTES):
            self._md5.update(piece)
            self.size += len(piece)
            yield piece

    @property
    def md5(self) -> bytes:
        return self._md5.digest()


def declared_length(s3: S3Request) -> int | None:
    """``Content-Length`` (None for a chunked transfer). Raises InvalidArgument."""
    value = s3.http.headers.get("Content-Length")
    if value is None:
        return None
    if not value.isdigit():
        raise invalid_argument("Content-Length must be a number of bytes")
    return int(value)
