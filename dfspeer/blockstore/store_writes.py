"""Block writes of a :class:`~dfspeer.blockstore.store.BlockStore`: puts (hashed on the
caller's side, on a worker thread for large blocks), deletes and atomic multi-op batches,
all queued to the store's group-commit writer (the write path is described in
:mod:`.store`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from functools import partial
from typing import Any

from dfspeer.blockstore.batch import prepare_batch, run_steps
from dfspeer.blockstore.errors import DigestMismatch
from dfspeer.blockstore.ops import PutBlock, WriteOp
from dfspeer.blockstore.schema import (
    as_bytes,
    check_digest,
    checked_partition,
    delete_block,
    put_block,
    sha256,
)
from dfspeer.blockstore.store_base import INLINE_BYTES, StoreBase


class WritesMixin(StoreBase):
    """:class:`~dfspeer.blockstore.store.BlockStore` writes of blocks and batches."""

    async def put(self, data: bytes) -> bytes:
        """Store ``data`` (0..~4 GiB) under its SHA-256; return the 32-byte digest.

        Returns once committed (fsync'd if durable). Identical content is stored once.
        Raises ``StoreFull`` (nothing written) or ``BlockStoreError``.
        """
        data = as_bytes(data)
        digest = await self._hash(data)
        await self._store(digest, data)
        return digest

    async def put_verified(self, digest: bytes, data: bytes, *, linger: bool = False) -> None:
        """Store ``data`` under ``digest`` after checking ``sha256(data) == digest``.

        Raises ``DigestMismatch`` (and writes nothing) if not; else as :meth:`put`. Also
        repairs a corrupt stored copy of the same digest (it is overwritten). ``linger``:
        more blocks follow at once; the commit may wait ``commit_linger_s`` to share their
        flush (:mod:`.writer`).
        """
        check_digest(digest)
        data = as_bytes(data)
        actual = await self._hash(data)
        if actual != digest:
            raise DigestMismatch(digest, actual)
        await self._store(digest, data, linger=linger)

    async def delete(self, digest: bytes) -> bool:
        """Delete the block; True if it existed. Works on a full map (frees pages)."""
        check_digest(digest)
        partition = checked_partition(self._partition_of, digest)
        apply = partial(delete_block, dbs=self._dbs, digest=digest, partition=partition)
        return bool(await self._writer.submit(apply))

    async def write_batch(
        self, ops: Sequence[WriteOp], *, linger: bool = False, keep_cached: bool = False
    ) -> list[Any]:
        """Apply ``ops`` (see :mod:`dfspeer.blockstore.ops`) atomically in ONE transaction.

        All ops are validated, hashed and CBOR-encoded before anything is queued, so a bad
        op (``DigestMismatch``, ValueError, TypeError) rejects the batch with nothing
        written; an exception from a ``TableUpdate`` callback or ``StoreFull`` also leaves
        nothing of the batch. Returns one result per op (see the table in :mod:`.ops`).
        ``linger``: as for :meth:`put_verified`. ``keep_cached``: the blocks are this peer's
        own writes as a coordinator; they stay in the OS page cache while among the newest
        ``recent_writes_cache_bytes`` of such writes (:mod:`.page_cache`), where other
        written blocks leave it at once.
        """
        if not ops:
            return []
        puts = [op for op in ops if isinstance(op, PutBlock)]
        blobs = [as_bytes(op.data) for op in puts]
        total = sum(map(len, blobs))
        if all(op.hashed and op.digest is not None for op in puts):
            digests = [check_digest(op.digest) for op in puts if op.digest is not None]
        elif total <= INLINE_BYTES:
            digests = [sha256(b) for b in blobs]
        else:
            digests = await asyncio.to_thread(lambda: [sha256(b) for b in blobs])
        steps = prepare_batch(
            ops,
            iter(zip(digests, blobs, strict=True)),
            dbs=self._dbs,
            partition_of=self._partition_of,
            table=self._table_handle,
            max_key_bytes=self._max_key,
        )
        result = await self._writer.submit(
            partial(run_steps, steps),
            size=total,
            atomic=True,
            linger=linger,
            keep_cached=keep_cached,
        )
        return list(result)

    async def _hash(self, data: bytes) -> bytes:
        if len(data) <= INLINE_BYTES:
            return sha256(data)
        return await asyncio.to_thread(sha256, data)

    async def _store(self, digest: bytes, data: bytes, *, linger: bool = False) -> None:
        partition = checked_partition(self._partition_of, digest)
        apply = partial(put_block, dbs=self._dbs, digest=digest, data=data, partition=partition)
        await self._writer.submit(apply, size=len(data), linger=linger)
