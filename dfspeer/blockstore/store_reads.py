"""Block reads of a :class:`~dfspeer.blockstore.store.BlockStore`: whole blocks re-hashed
with SHA-256, byte ranges verified by the CRC-32C sums of the 64 KiB segments they cover,
and unverified size and presence lookups (the read path is described in :mod:`.store`).
"""

from __future__ import annotations

import asyncio
import zlib
from collections.abc import Callable
from typing import Any

from awscrt.checksums import crc32c

from dfspeer.blockstore.errors import BlockNotFound, CorruptBlock
from dfspeer.blockstore.residency import resident
from dfspeer.blockstore.schema import (
    SUM_BYTES,
    bad_segment,
    check_digest,
    segment_count,
    segments_of,
    sha256,
)
from dfspeer.blockstore.store_base import INLINE_BYTES, StoreBase

RESIDENT_INLINE_BYTES = 1088 * 1024
"""A range whose segments (a 1 MiB range covers at most 17 of 64 KiB) are all in the page
cache is copied and checked on the event loop up to this size: cheaper than the hand-off
to a worker thread and back, which is kept for ranges that may wait for the disk."""


def _verified(digest: bytes, data: bytes) -> bytes:
    actual = sha256(data)
    if actual != digest:
        raise CorruptBlock(digest, actual)
    return data


class ReadsMixin(StoreBase):
    """:class:`~dfspeer.blockstore.store.BlockStore` reads of blocks."""

    async def get(self, digest: bytes) -> bytes:
        """The block's bytes, re-hashed. Raises ``BlockNotFound`` if absent, ``CorruptBlock``
        if the stored bytes do not hash to ``digest``."""
        check_digest(digest)
        with self._read_txn() as txn:
            view = txn.get(digest, db=self._dbs.blocks)
            if view is None:
                raise BlockNotFound(digest)
            small = bytes(view) if len(view) <= INLINE_BYTES else None
        if small is not None:
            return _verified(digest, small)
        return await asyncio.to_thread(self._get_large, digest)

    async def get_range(self, digest: bytes, lo: int, hi: int) -> bytes:
        """Bytes ``[lo, hi)`` of the block (clamped to its size), verified by the CRC-32C of
        each 64 KiB segment they touch (see :mod:`.schema`), not by re-hashing the whole
        block; a block stored without segment sums is read whole and re-hashed. Up to
        ``INLINE_BYTES``, or ``RESIDENT_INLINE_BYTES`` when those bytes are in the page
        cache (:mod:`.residency`), on the event loop; else in a worker thread. Raises
        ``BlockNotFound``, ``CorruptBlock`` (``actual``: the SHA-256 of the whole stored
        block) when a covered segment does not match; ValueError for a bad range."""
        check_digest(digest)
        if lo < 0 or hi < lo:
            raise ValueError(f"bad range [{lo}, {hi})")
        got = self._read_segments(digest, lo, hi, INLINE_BYTES, RESIDENT_INLINE_BYTES)
        if got is None:
            got = await asyncio.to_thread(self._read_segments, digest, lo, hi, None)
        assert got is not None
        return got

    def _read_segments(
        self, digest: bytes, lo: int, hi: int, limit: int | None, resident_limit: int = 0
    ) -> bytes | None:
        """:meth:`get_range`'s work; None (nothing done) when more than ``limit`` bytes
        would be copied and verified, unless they are at most ``resident_limit`` bytes all
        in the page cache (then the caller runs it in a thread)."""
        with self._read_txn() as txn:
            view = txn.get(digest, db=self._dbs.blocks)
            if view is None:
                raise BlockNotFound(digest)
            size = len(view)
            hi = min(hi, size)
            if lo >= hi:
                return b""
            crc: Callable[[Any], int] = crc32c
            sums = txn.get(digest, db=self._dbs.segments)
            if sums is None:  # written by an earlier version: CRC-32 sums, or none
                crc, sums = zlib.crc32, txn.get(digest, db=self._dbs.legacy_segments)
            whole = sums is None or len(sums) != segment_count(size) * SUM_BYTES
            start, stop = (0, size) if whole else segments_of(size, lo, hi)
            if (
                limit is not None
                and stop - start > limit
                and not (stop - start <= resident_limit and resident(view[start:stop]))
            ):
                return None
            if (
                sums is not None
                and not whole
                and bad_segment(bytes(sums), start, view[start:stop], crc) is None
            ):
                # checked in the map (this txn's snapshot); one copy, of the bytes asked for
                return bytes(view[lo:hi])
            data = bytes(view)  # no sums, or a segment does not match (for the error)
        if whole:
            return _verified(digest, data)[lo:hi]
        raise CorruptBlock(digest, sha256(data))

    def _get_large(self, digest: bytes) -> bytes:
        with self._read_txn() as txn:
            view = txn.get(digest, db=self._dbs.blocks)
            if view is None:  # deleted since the first lookup
                raise BlockNotFound(digest)
            data = bytes(view)
        return _verified(digest, data)

    def block_size(self, digest: bytes) -> int:
        """Stored length of block ``digest`` in bytes (0 when absent; not verified)."""
        with self._read_txn() as txn:
            view = txn.get(check_digest(digest), db=self._dbs.blocks)
            return 0 if view is None else len(view)

    async def has(self, digest: bytes) -> bool:
        """True if a block is stored under ``digest`` (not verified; see :meth:`get`)."""
        check_digest(digest)
        with self._read_txn() as txn:
            return txn.get(digest, db=self._dbs.blocks) is not None
