"""Object bodies of the S3 API (PutObject, UploadPart): decoded, hashed and checked.

:class:`BodyStream` passes the body through to the objects layer: the raw bytes, or the
decoded bytes of an ``aws-chunked`` body (:mod:`.chunked`). On the way it computes the
MD5 (the S3 ETag) and the checksum the client declared, in a header
(``x-amz-checksum-crc32`` / ``-crc32c`` / ``-crc64nvme`` / ``-sha1`` / ``-sha256``) or as
a trailer (``x-amz-trailer``). At the body's end ``Content-MD5`` and the checksum are
compared; a mismatch raises BadDigest, so the upload fails before its version (or part)
is written, and :meth:`BodyStream.checked_checksum` gives the checked value to store with
the version. As S3: a declared value that is not the base64 of a digest of the
algorithm's size, two checksum headers, or ``x-amz-sdk-checksum-algorithm`` without its
header or trailer are InvalidRequest, before the body is read.

Implementations: ``zlib`` (CRC32), ``google-crc32c`` (CRC32C), ``awscrt``'s checksums
(CRC64/NVME, what botocore itself uses for it), ``hashlib`` (SHA-1, SHA-256).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import zlib
from collections.abc import AsyncIterable, AsyncIterator, Callable
from typing import Any

import google_crc32c
from aiohttp import web
from awscrt import checksums as crt_checksums

from dfspeer.api.s3.body import (
    READ_PIECE_BYTES,
    check_md5,
    content_md5,
    declared_length,
    sha256_mismatch,
    signed_sha256,
)
from dfspeer.api.s3.chunked import STREAMING_MODES, BytesSource, ChunkedBody
from dfspeer.api.s3.context import S3Request
from dfspeer.api.s3.errors import S3Error, invalid_argument, invalid_request
from dfspeer.api.s3.metrics import s3_metrics
from dfspeer.objects.multipart import ETAG_META

CHECKSUM_PREFIX = "x-amz-checksum-"
SDK_ALGORITHM_HEADER = "x-amz-sdk-checksum-algorithm"


class _Crc:
    """A running CRC: ``step(data, crc) -> crc`` and its digest size in bytes."""

    def __init__(self, step: Callable[[bytes, int], int], size: int) -> None:
        self.step = step
        self.size = size
        self.value = 0

    def update(self, piece: bytes) -> None:
        self.value = self.step(piece, self.value)

    def digest(self) -> bytes:
        return self.value.to_bytes(self.size, "big")


def _crc32(piece: bytes, crc: int) -> int:
    return zlib.crc32(piece, crc)


def _crc32c(piece: bytes, crc: int) -> int:
    return int(google_crc32c.extend(crc, piece))


def _crc64nvme(piece: bytes, crc: int) -> int:
    return int(crt_checksums.crc64nvme(piece, crc))


DIGEST_BYTES = {"crc32": 4, "crc32c": 4, "crc64nvme": 8, "sha1": 20, "sha256": 32}
"""The checked algorithms (S3's names, lower-case) and their digest sizes, bytes."""
ACCEPTED = tuple(DIGEST_BYTES)
XML_CHECKSUM_NAMES = {
    "crc32": "ChecksumCRC32",
    "crc32c": "ChecksumCRC32C",
    "crc64nvme": "ChecksumCRC64NVME",
    "sha1": "ChecksumSHA1",
    "sha256": "ChecksumSHA256",
}
"""The element of each algorithm in S3's XML answers (``CopyObjectResult``, ...)."""


def new_checksum(algorithm: str) -> Any:
    """A running checksum of ``algorithm`` (a name of :data:`DIGEST_BYTES`): ``update``,
    ``digest``."""
    if algorithm == "crc32":
        return _Crc(_crc32, 4)
    if algorithm == "crc32c":
        return _Crc(_crc32c, 4)
    if algorithm == "crc64nvme":
        return _Crc(_crc64nvme, 8)
    return hashlib.new(algorithm)


class Checksums:
    """Running checksums of the algorithms named (names of :data:`DIGEST_BYTES`);
    :meth:`values` gives each as S3 shows it (base64 of the big-endian digest)."""

    def __init__(self, algorithms: set[str]) -> None:
        self.algorithms = algorithms & set(DIGEST_BYTES)
        self.running = {a: new_checksum(a) for a in sorted(self.algorithms)}

    def update(self, piece: bytes) -> None:
        for checksum in self.running.values():
            checksum.update(piece)

    def values(self) -> dict[str, str]:
        return {a: base64.b64encode(c.digest()).decode() for a, c in self.running.items()}


def check_value(algorithm: str, value: str) -> None:
    """Raise InvalidRequest unless ``value`` is the base64 of a digest of ``algorithm``'s
    size (as S3 checks a declared checksum before reading the body)."""
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) != DIGEST_BYTES[algorithm]:
        raise invalid_request(f"Value for {CHECKSUM_PREFIX}{algorithm} header is invalid.")


def _algorithm(name: str) -> str:
    name = name.strip().lower()
    if not name.startswith(CHECKSUM_PREFIX) or name[len(CHECKSUM_PREFIX) :] not in ACCEPTED:
        raise invalid_argument(f"unsupported checksum {name!r}")
    return name[len(CHECKSUM_PREFIX) :]


def declared_checksums(s3: S3Request) -> tuple[dict[str, str], set[str]]:
    """The checksum a request declares: ``({algorithm: value} of its header, {algorithm}
    of its trailer)``. Raises InvalidRequest (two checksums, a malformed value,
    ``x-amz-sdk-checksum-algorithm`` without its checksum, a trailer on a body that is not
    aws-chunked), InvalidArgument (an unknown trailer)."""
    headers = s3.http.headers
    declared: dict[str, str] = {}
    for name, value in headers.items():
        lowered = name.lower()
        alg = lowered[len(CHECKSUM_PREFIX) :]
        if lowered.startswith(CHECKSUM_PREFIX) and alg in DIGEST_BYTES:  # not -algorithm
            check_value(alg, value.strip())
            declared[alg] = value.strip()
    trailers = {_algorithm(n) for n in headers.get("x-amz-trailer", "").split(",") if n.strip()}
    if trailers and not is_streaming(s3):
        raise invalid_request("x-amz-trailer needs an aws-chunked body")
    if len(set(declared) | trailers) > 1:
        raise invalid_request(
            "Expecting a single x-amz-checksum- header. Multiple checksum Types are not allowed."
        )
    sdk = headers.get(SDK_ALGORITHM_HEADER, "").strip().lower()
    if sdk and sdk not in declared and sdk not in trailers:
        raise invalid_request(
            f"{SDK_ALGORITHM_HEADER} specified, but no corresponding {CHECKSUM_PREFIX}* or "
            "x-amz-trailer headers were found."
        )
    return declared, trailers


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


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


class BodyStream:
    """The request body, decoded and checked (module docstring); :attr:`md5` once read.
    ``raw``: the body already read whole (else it streams from the request)."""

    def __init__(self, s3: S3Request, raw: bytes | None = None) -> None:
        self.s3 = s3
        self.declared, self.trailer_names = declared_checksums(s3)
        self.checksums = Checksums(set(self.declared) | self.trailer_names)
        self._md5 = hashlib.md5()
        self._checked: dict[str, str] = {}
        self.size = 0
        content_md5(s3)  # refuse a malformed Content-MD5 before reading
        metrics = s3_metrics(s3.http) if raw is None else None  # an XML document is no payload
        self._received = metrics.bytes_received if metrics is not None else None
        self.source: AsyncIterable[bytes]
        self.chunked: ChunkedBody | None = None
        if is_streaming(s3):
            content = s3.http.content if raw is None else BytesSource(raw)
            self.chunked = ChunkedBody(content, s3.identity.payload, s3.identity)
            self.source = self.chunked
        else:
            self.source = (
                s3.http.content.iter_chunked(READ_PIECE_BYTES) if raw is None else _once(raw)
            )

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._pieces()

    async def _pieces(self) -> AsyncIterator[bytes]:
        async for piece in self.source:
            self._md5.update(piece)
            self.checksums.update(piece)
            self.size += len(piece)
            if self._received is not None:
                self._received.inc(len(piece))
            yield piece
        check_md5(self.s3, self._md5.digest())
        want = dict(self.declared)
        if self.chunked is not None:
            for name, value in self.chunked.trailers.items():
                if name.startswith(CHECKSUM_PREFIX):
                    alg = _algorithm(name)
                    if alg not in self.trailer_names:
                        raise invalid_request(f"the trailer {name} is not in x-amz-trailer")
                    check_value(alg, value)
                    want[alg] = value
            missing = self.trailer_names - set(want)
            if missing:
                raise invalid_request(f"the trailer lacks x-amz-checksum-{min(missing)}")
        got = self.checksums.values()
        for alg, value in want.items():
            if got.get(alg) != value:
                raise S3Error(
                    "BadDigest",
                    400,
                    f"The {alg.upper()} you specified did not match the calculated checksum.",
                )
        self._checked = dict(want)

    @property
    def md5(self) -> bytes:
        """The decoded body's MD5 (complete once the body has been read)."""
        return self._md5.digest()

    def etag_meta(self) -> dict[str, str]:
        return {ETAG_META: self._md5.hexdigest()}

    def checked_checksum(self) -> tuple[str, str] | None:
        """``(algorithm, base64 value)`` of the declared checksum the whole body matched
        (what PutObject stores with the version), or None: none declared, or the body
        not read to its end and checked yet."""
        if len(self._checked) != 1:
            return None
        return next(iter(self._checked.items()))

    def checksum_headers(self) -> dict[str, str]:
        """``{x-amz-checksum-<alg>: value}`` of the checked checksum (S3 echoes it in the
        answer), once the body has been read."""
        return {CHECKSUM_PREFIX + a: v for a, v in self.checksums.values().items()}


async def read_small(s3: S3Request) -> bytes:
    """The whole (XML) body, decoded and checked as an object body is (``Content-MD5``,
    ``x-amz-checksum-*``), and against the signed hash. Raises XAmzContentSHA256Mismatch,
    BadDigest, InvalidRequest, EntityTooLarge (over the app's 2 MiB)."""
    try:
        raw = await s3.http.read()
    except web.HTTPRequestEntityTooLarge:
        raise S3Error("EntityTooLarge", 400, "the XML body is too large") from None
    want = signed_sha256(s3)
    body = b"".join([piece async for piece in BodyStream(s3, raw)])
    if want is not None and hashlib.sha256(body).hexdigest() != want:
        raise sha256_mismatch()
    return body


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
