"""Reference counts and garbage collection of blocks in a
:class:`~dfspeer.blockstore.store.BlockStore` (the counts themselves are kept by
:mod:`.refcount`, changed by the block_refs table's hook).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import lmdb

from dfspeer.blockstore import refcount
from dfspeer.blockstore.schema import check_digest, checked_partition, delete_block_sized
from dfspeer.blockstore.store_base import StoreBase, now_ms
from dfspeer.blockstore.writer import WriteTxn


class RefcountsMixin(StoreBase):
    """:class:`~dfspeer.blockstore.store.BlockStore` reference counts and collection."""

    def refcount(self, digest: bytes) -> int:
        """References to block ``digest`` (kept by the block_refs table's hook)."""
        check_digest(digest)
        with self._read_txn() as txn:
            return refcount.count_of(txn, self._dbs.refs, digest)

    def referenced_bytes(self) -> tuple[int, int, int]:
        """``(blocks, bytes, logical bytes)`` of the referenced blocks (see
        :func:`.refcount.referenced_bytes`); O(referenced blocks), in one read txn."""
        with self._read_txn() as txn:
            return refcount.referenced_bytes(txn, self._dbs.refs, self._dbs.blocks)

    def gc_queued(self) -> int:
        """Digests with no reference, waiting for their grace to end (O(1))."""
        with self._read_txn() as txn:
            return refcount.queued(txn, self._dbs.refs)

    def gc_candidates(self, horizon_ms: int, limit: int = 1024) -> list[tuple[int, bytes]]:
        """Queued ``(zero_since_ms, digest)`` unreferenced since ``horizon_ms`` or before."""
        with self._read_txn() as txn:
            return refcount.candidates(txn, self._dbs.refs, horizon_ms, limit)

    async def collect(
        self,
        found: Sequence[tuple[int, bytes]],
        horizon_ms: int,
        pinned: Callable[[lmdb.Transaction[memoryview], bytes], bool],
    ) -> tuple[int, int]:
        """Delete the blocks of ``found`` still unreferenced since before ``horizon_ms``,
        re-checked in one write transaction (see :func:`.refcount.collect`);
        ``pinned(txn, digest)`` keeps a block. Returns ``(blocks deleted, bytes freed)``."""

        def delete(w: WriteTxn, digest: bytes) -> int | None:
            partition = checked_partition(self._partition_of, digest)
            return delete_block_sized(w, self._dbs, digest, partition)

        def apply(w: WriteTxn) -> tuple[int, int]:
            return refcount.collect(
                w, self._dbs.refs, found, horizon_ms, delete, lambda w2, d: pinned(w2.txn, d)
            )

        result: tuple[int, int] = await self._writer.submit(apply)
        return result

    async def rebuild_refcounts(self, counts: Mapping[bytes, int]) -> int:
        """Replace every reference count by ``counts`` (digest -> live references, from a
        scan of the block_refs table); returns how many counts changed."""
        stored = list(self._iter_digests(None, None))

        def apply(w: WriteTxn) -> int:
            return refcount.rebuild(w, self._dbs.refs, dict(counts), stored, now_ms())

        result: int = await self._writer.submit(apply)
        return result
