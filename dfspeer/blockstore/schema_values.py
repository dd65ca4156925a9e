"""Block values (:mod:`.schema`): digest and type checks, SHA-256, and the CRC-32C sums of
a block's 64 KiB segments that let a ranged read verify only the segments it covers.
"""

from __future__ import annotations

import hashlib
import zlib
from collections.abc import Callable
from typing import Any

from awscrt.checksums import crc32c

from dfspeer.blockstore.schema_layout import DIGEST_BYTES, SEGMENT_BYTES, SUM_BYTES


def check_digest(digest: bytes) -> bytes:
    """Return ``digest`` if it is 32 bytes, else raise TypeError/ValueError."""
    if not isinstance(digest, bytes):
        raise TypeError(f"a digest is 32 bytes, got {type(digest).__name__}")
    if len(digest) != DIGEST_BYTES:
        raise ValueError(f"a digest is 32 bytes (SHA-256), got {len(digest)}")
    return digest


def as_bytes(data: bytes) -> bytes:
    """``data`` as immutable bytes: a bytearray/memoryview is copied, since a mutable
    buffer could change between hashing and storing. TypeError for anything else."""
    if type(data) is bytes:
        return data
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data)
    raise TypeError(f"block data is bytes, got {type(data).__name__}")


def sha256(data: bytes) -> bytes:
    """The 32-byte SHA-256 digest of ``data``."""
    return hashlib.sha256(data).digest()


def segment_sums(data: bytes) -> bytes:
    """CRC-32C (4 bytes big-endian) of each :data:`SEGMENT_BYTES` segment of ``data``."""
    view = memoryview(data)
    return b"".join(
        crc32c(view[i : i + SEGMENT_BYTES]).to_bytes(SUM_BYTES, "big")
        for i in range(0, len(data), SEGMENT_BYTES)
    )


def legacy_segment_sums(data: bytes) -> bytes:
    """:func:`segment_sums` with zlib's CRC-32, as earlier versions wrote them."""
    view = memoryview(data)
    return b"".join(
        zlib.crc32(view[i : i + SEGMENT_BYTES]).to_bytes(SUM_BYTES, "big")
        for i in range(0, len(data), SEGMENT_BYTES)
    )


def segment_count(size: int) -> int:
    """Segments of a ``size``-byte block (0 for an empty one)."""
    return -(-size // SEGMENT_BYTES)


def segments_of(size: int, lo: int, hi: int) -> tuple[int, int]:
    """Byte span ``[start, stop)`` of the whole segments of a ``size``-byte block that
    cover ``[lo, hi)`` (``0 <= lo < hi <= size``)."""
    return lo - lo % SEGMENT_BYTES, min(size, -(-hi // SEGMENT_BYTES) * SEGMENT_BYTES)


def bad_segment(
    sums: bytes, start: int, data: bytes | memoryview, crc: Callable[[Any], int] = crc32c
) -> int | None:
    """Offset in the block of the first segment of ``data`` (the block's bytes from
    ``start``, a segment boundary; a view into the map is not copied) whose checksum
    (``crc``: CRC-32C, or ``zlib.crc32`` for legacy sums) differs from ``sums``; None if
    all match."""
    view = memoryview(data)
    first = start // SEGMENT_BYTES
    for n, i in enumerate(range(0, len(data), SEGMENT_BYTES)):
        at = (first + n) * SUM_BYTES
        want = int.from_bytes(sums[at : at + SUM_BYTES], "big")
        if crc(view[i : i + SEGMENT_BYTES]) != want:
            return start + i
    return None
