"""Object bodies of the S3 API (PutObject, UploadPart): decoded, hashed and checked.

:class:`BodyStream` passes the body through to the objects layer: the raw bytes, or the
decoded bytes of an ``aws-chunked`` body (:mod:`.chunked`). On the way it computes the
MD5 (the S3 ETag) and every checksum the client declared, in a header
(``x-amz-checksum-crc32`` / ``-crc32c`` / ``-sha1`` / ``-sha256``) or as a trailer
(``x-amz-trailer``). At the body's end ``Content-MD5`` and the checksums are compared; a
mismatch raises BadDigest, so the upload fails before its version (or part) is written.
``crc64nvme`` is accepted unchecked (no well-kept library computes it here).
"""

from __future__ import annotations

import base64
import hashlib
import zlib
from collections.abc import AsyncIterable, AsyncIterator
from typing import Any

import google_crc32c

from dfspeer.api.s3.body import READ_PIECE_BYTES, check_md5, content_md5, declared_length
from dfspeer.api.s3.chunked import STREAMING_MODES, ChunkedBody
from dfspeer.api.s3.context import S3Request
from dfspeer.api.s3.errors import S3Error, invalid_argument, invalid_request
from dfspeer.objects.multipart import ETAG_META

CHECKSUM_PREFIX = "x-amz-checksum-"
CHECKED = ("crc32", "crc32c", "sha1", "sha256")
ACCEPTED = (*CHECKED, "crc64nvme")


class Checksums:
    """Running checksums of the algorithms named (``crc32``, ``crc32c``, ``sha1``,
    ``sha256``); :meth:`values` gives each as S3 shows it (base64 of the big-endian
    digest)."""

    def __init__(self, algorithms: set[str]) -> None:
        self.algorithms = algorithms & set(CHECKED)
        self.crc32 = 0
        self.crc32c = 0
        self.hashes: dict[str, Any] = {
            a: hashlib.new(a) for a in ("sha1", "sha256") if a in self.algorithms
        }

    def update(self, piece: bytes) -> None:
        if "crc32" in self.algorithms:
            self.crc32 = zlib.crc32(piece, self.crc32)
        if "crc32c" in self.algorithms:
            self.crc32c = google_crc32c.extend(self.crc32c, piece)
        for h in self.hashes.values():
            h.update(piece)

    def values(self) -> dict[str, str]:
        out = {a: base64.b64encode(h.digest()).decode() for a, h in self.hashes.items()}
        if "crc32" in self.algorithms:
            out["crc32"] = base64.b64encode(self.crc32.to_bytes(4, "big")).decode()
        if "crc32c" in self.algorithms:
            out["crc32c"] = base64.b64encode(self.crc32c.to_bytes(4, "big")).decode()
        return out


def _algorithm(name: str) -> str:
    name = name.strip().lower()
    if not name.startswith(CHECKSUM_PREFIX) or name[len(CHECKSUM_PREFIX) :] not in ACCEPTED:
        raise invalid_argument(f"unsupported checksum {name!r}")
    return name[len(CHECKSUM_PREFIX) :]


def is_streaming(s3: S3Request) -> bool:
    """True for an ``aws-chunked`` body (a ``STREAMING-*`` payload mode)."""
    return s3.identity.payload in STREAMING_MODES


def body_length(s3: S3Request) -> int | None:
    """The object's length: ``x-amz-decoded-content-length`` of an aws-chunked body, else
    ``Content-Length`` (None: not given). Raises InvalidArgument, MissingContentLength."""
    if not is_streaming(s3):
        return declared_length(s3)
    value = s3.http.headers.get("x-amz-decoded-content-length")
    if value is None:
        raise S3Error(
            "MissingContentLength", 411, "aws-chunked needs x-amz-decoded-content-length."
        )
    if not value.isdigit():
        raise invalid_argument("x-amz-decoded-content-length must be a number of bytes")
    return int(value)


class BodyStream:
    """The request body, decoded and checked (module docstring); :attr:`md5` once read."""

    def __init__(self, s3: S3Request) -> None:
        self.s3 = s3
        headers = s3.http.headers
        self.declared = {
            h.lower()[len(CHECKSUM_PREFIX) :]: v.strip()
            for h, v in headers.items()
            if h.lower().startswith(CHECKSUM_PREFIX)
            and h.lower()[len(CHECKSUM_PREFIX) :] in ACCEPTED  # not -algorithm, -type
        }
        self.trailer_names = {
            _algorithm(n) for n in headers.get("x-amz-trailer", "").split(",") if n.strip()
        }
        if self.trailer_names and not is_streaming(s3):
            raise invalid_request("x-amz-trailer needs an aws-chunked body")
        self.checksums = Checksums(set(self.declared) | self.trailer_names)
        self._md5 = hashlib.md5()
        self.size = 0
        content_md5(s3)  # refuse a malformed Content-MD5 before reading
        self.source: AsyncIterable[bytes]
        self.chunked: ChunkedBody | None = None
        if is_streaming(s3):
            self.chunked = ChunkedBody(s3.http.content, s3.identity.payload, s3.identity)
            self.source = self.chunked
        else:
            self.source = s3.http.content.iter_chunked(READ_PIECE_BYTES)

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._pieces()

    async def _pieces(self) -> AsyncIterator[bytes]:
        async for piece in self.source:
            self._md5.update(piece)
            self.checksums.update(piece)
            self.size += len(piece)
            yield piece
        check_md5(self.s3, self._md5.digest())
        want = dict(self.declared)
        if self.chunked is not None:
            for name, value in self.chunked.trailers.items():
                if name.startswith(CHECKSUM_PREFIX):
                    want[_algorithm(name)] = value
            missing = self.trailer_names - set(want)
            if missing:
                raise invalid_request(f"the trailer lacks x-amz-checksum-{min(missing)}")
        got = self.checksums.values()
        for alg, value in want.items():
            if alg in got and got[alg] != value:
                raise S3Error(
                    "BadDigest", 400, f"The {alg.upper()} you specified did not match the body."
                )

    @property
    def md5(self) -> bytes:
        """The decoded body's MD5 (complete once the body has been read)."""
        return self._md5.digest()

    def etag_meta(self) -> dict[str, str]:
        return {ETAG_META: self._md5.hexdigest()}


class Md5Pass:
    """Passes a stream through while computing its MD5 (:attr:`md5` once read)."""

    def __init__(self, source: AsyncIterable[bytes]) -> None:
        self.source = source
        self._md5 = hashlib.md5()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._pieces()

    async def _pieces(self) -> AsyncIterator[bytes]:
        async for piece in self.source:
            self._md5.update(piece)
            yield piece

    @property
    def md5(self) -> bytes:
        return self._md5.digest()
