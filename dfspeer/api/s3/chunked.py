"""``aws-chunked`` request bodies: the ``STREAMING-*`` payload modes of SigV4.

The body is framed (AWS "Signature Calculations for the Authorization Header: Transferring
Payload in Multiple Chunks")::

    <hex size>[;chunk-signature=<64 hex>]\\r\\n <size bytes> \\r\\n   ... repeated ...
    0[;chunk-signature=<64 hex>]\\r\\n
    [<trailer name>:<value>\\r\\n ...] [x-amz-trailer-signature:<64 hex>\\r\\n]
    \\r\\n

Modes: ``STREAMING-AWS4-HMAC-SHA256-PAYLOAD`` (every chunk signed; each signature chains
on the previous one, the first on the ``Authorization`` header's), the same with
``-TRAILER`` (the trailer signed too), and ``STREAMING-UNSIGNED-PAYLOAD-TRAILER`` (no
chunk signatures; the trailer carries a checksum, ``x-amz-checksum-crc32`` ...). A chunk
signature is checked when its chunk ends (``SignatureDoesNotMatch``); its bytes are
already in the pipeline then, and the error fails the upload before anything is
visible. :class:`ChunkedBody` yields only the decoded bytes, so the framing never reaches
the stored object; memory: one piece (``READ_PIECE_BYTES``) whatever the chunk size.
The object's length is ``x-amz-decoded-content-length``.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from dfspeer.api.s3.auth import ALGORITHM, Identity
from dfspeer.api.s3.errors import S3Error, invalid_request, not_implemented
from dfspeer.errors import IncompleteBody

STREAMING_SIGNED = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD"
STREAMING_SIGNED_TRAILER = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-TRAILER"
STREAMING_UNSIGNED_TRAILER = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
STREAMING_MODES = (STREAMING_SIGNED, STREAMING_SIGNED_TRAILER, STREAMING_UNSIGNED_TRAILER)
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
MAX_LINE_BYTES = 4096
MAX_TRAILER_LINES = 16
PIECE_BYTES = 256 * 1024


class ByteSource(Protocol):
    """What :class:`ChunkedBody` reads from (an aiohttp ``StreamReader``)."""

    async def readuntil(self, separator: bytes = b"\n") -> bytes: ...

    async def readexactly(self, n: int) -> bytes: ...

    def at_eof(self) -> bool: ...


class BytesSource:
    """A :class:`ByteSource` over bytes in memory (a small body read whole)."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.at = 0

    async def readuntil(self, separator: bytes = b"\n") -> bytes:
        end = self.data.find(separator, self.at)
        end = len(self.data) if end < 0 else end + len(separator)
        out, self.at = self.data[self.at : end], end
        return out

    async def readexactly(self, n: int) -> bytes:
        out = self.data[self.at : self.at + n]
        self.at += len(out)
        if len(out) < n:
            raise asyncio.IncompleteReadError(out, n)
        return out

    def at_eof(self) -> bool:
        return self.at >= len(self.data)


def check_mode(payload: str) -> None:
    """Raise NotImplemented for a ``STREAMING-*`` mode this server does not decode (the
    ECDSA ones)."""
    if payload not in STREAMING_MODES:
        raise not_implemented(f"the {payload} payload mode")


def bad_signature(what: str) -> S3Error:
    return S3Error(
        "SignatureDoesNotMatch",
        403,
        f"The {what} signature we calculated does not match the signature you provided.",
    )


@dataclass
class ChunkSigner:
    """The chunk and trailer signatures of one request: ``key`` the SigV4 signing key,
    ``previous`` the last signature (starts as the header's)."""

    key: bytes
    amz_date: str
    scope: str
    previous: str

    @classmethod
    def of(cls, identity: Identity) -> ChunkSigner | None:
        """The signer of a signed request (None: anonymous, open mode)."""
        scope, secret = identity.scope, identity.secret
        if scope is None or secret is None:
            return None
        key = ("AWS4" + secret).encode()
        for part in (scope.date, scope.region, scope.service, "aws4_request"):
            key = hmac.new(key, part.encode(), hashlib.sha256).digest()
        text = f"{scope.date}/{scope.region}/{scope.service}/aws4_request"
        return cls(key, scope.amz_date, text, scope.signature)

    def _sign(self, kind: str, *hashes: str) -> str:
        to_sign = "\n".join([f"{ALGORITHM}-{kind}", self.amz_date, self.scope, self.previous])
        to_sign += "".join("\n" + h for h in hashes)
        return hmac.new(self.key, to_sign.encode(), hashlib.sha256).hexdigest()

    def check_chunk(self, data_sha256: str, got: str) -> None:
        """Verify one chunk's signature (and chain on it). Raises SignatureDoesNotMatch."""
        want = self._sign("PAYLOAD", EMPTY_SHA256, data_sha256)
        if not hmac.compare_digest(want, got):
            raise bad_signature("chunk")
        self.previous = want

    def check_trailer(self, canonical: bytes, got: str) -> None:
        """Verify the trailer's signature. Raises SignatureDoesNotMatch."""
        want = self._sign("TRAILER", hashlib.sha256(canonical).hexdigest())
        if not hmac.compare_digest(want, got):
            raise bad_signature("trailer")


class ChunkedBody:
    """The decoded bytes of an ``aws-chunked`` body (module docstring). After the
    iteration, :attr:`trailers` holds the trailing headers (names lower-case). Raises
    IncompleteBody (truncated or malformed framing), SignatureDoesNotMatch."""

    def __init__(self, content: ByteSource, mode: str, identity: Identity) -> None:
        check_mode(mode)
        self.content = content
        self.mode = mode
        self.signer = ChunkSigner.of(identity) if mode != STREAMING_UNSIGNED_TRAILER else None
        self.trailers: dict[str, str] = {}

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._pieces()

    async def _line(self) -> bytes:
        try:
            line = await self.content.readuntil(b"\n")
        except ValueError:
            raise IncompleteBody("an aws-chunked header line is too long") from None
        if len(line) > MAX_LINE_BYTES:
            raise IncompleteBody("an aws-chunked header line is too long")
        if not line.endswith(b"\n"):
            raise IncompleteBody("the aws-chunked body ended inside a header line")
        return line.rstrip(b"\r\n")

    def _header(self, line: bytes) -> tuple[int, str | None]:
        size_text, _, ext = line.partition(b";")
        try:
            size = int(size_text.strip(), 16)
        except ValueError:
            raise IncompleteBody(f"bad aws-chunked size line {line[:64]!r}") from None
        signature = None
        name, _, value = ext.partition(b"=")
        if name.strip() == b"chunk-signature":
            signature = value.strip().decode("ascii", "replace")
        if self.signer is not None and signature is None:
            raise bad_signature("chunk (missing)")
        return size, signature

    async def _pieces(self) -> AsyncIterator[bytes]:
        while True:
            size, signature = self._header(await self._line())
            digest = hashlib.sha256()
            left = size
            while left:
                want = min(left, PIECE_BYTES)
                try:
                    piece = await self.content.readexactly(want)
                except Exception as exc:  # IncompleteReadError, connection reset
                    raise IncompleteBody(f"the aws-chunked body ended early: {exc}") from None
                left -= len(piece)
                if self.signer is not None:
                    digest.update(piece)
                yield piece
            if self.signer is not None and signature is not None:
                self.signer.check_chunk(digest.hexdigest(), signature)
            if size == 0:
                break
            if await self._line() != b"":
                raise IncompleteBody("an aws-chunked chunk is longer than its size")
        await self._trailer()

    async def _trailer(self) -> None:
        canonical = b""
        signature: str | None = None
        for _ in range(MAX_TRAILER_LINES):
            if self.content.at_eof():
                break
            line = await self._line()
            if not line:
                break
            name, sep, value = line.partition(b":")
            if not sep:
                raise IncompleteBody(f"bad aws-chunked trailer line {line[:64]!r}")
            key = name.strip().lower().decode("ascii", "replace")
            text = value.strip().decode("ascii", "replace")
            if key == "x-amz-trailer-signature":
                signature = text
                continue
            self.trailers[key] = text
            canonical += f"{key}:{text}\n".encode()
        else:
            raise invalid_request("too many aws-chunked trailer lines")
        if self.mode == STREAMING_SIGNED_TRAILER and self.signer is not None:
            if signature is None:
                raise bad_signature("trailer (missing)")
            self.signer.check_trailer(canonical, signature)
