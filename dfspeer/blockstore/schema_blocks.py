"""The block mutations inside a write transaction (:mod:`.schema`): a put with its segment
sums, partition index entry, Merkle leaf and reference-count row; a delete; and the
persisted block count and byte total.
"""

from __future__ import annotations

import time

import lmdb

from dfspeer.blockstore.merkle import HASH_BYTES, record_change
from dfspeer.blockstore.refcount import ensure_row
from dfspeer.blockstore.schema_layout import BYTES_KEY, COUNT_KEY, Dbs, partition_key
from dfspeer.blockstore.schema_values import segment_sums
from dfspeer.blockstore.writer import WriteTxn


def put_block(w: WriteTxn, dbs: Dbs, digest: bytes, data: bytes, partition: int | None) -> bytes:
    """Store ``data`` (already verified to hash to ``digest``); return ``digest``.

    Identical content already stored is not rewritten (dedup). A stored value that differs
    from ``data`` can only be a corrupt copy, so it is overwritten (repair).
    """
    txn = w.txn
    old = txn.get(digest, db=dbs.blocks)
    if old is not None and len(old) == len(data) and bytes(old) == data:
        if txn.get(digest, db=dbs.segments) is None:  # stored by an earlier version
            txn.put(digest, segment_sums(data), db=dbs.segments)
            txn.delete(digest, db=dbs.legacy_segments)
        return digest
    txn.put(digest, data, db=dbs.blocks)
    if w.keep_cached:
        w.kept_blocks.append((digest, len(data)))
    else:
        w.written_blocks.append(digest)
    txn.put(digest, segment_sums(data), db=dbs.segments)
    if partition is not None:
        txn.put(partition_key(partition, digest), b"", db=dbs.by_partition)
    if old is None:
        if dbs.summary is not None:
            record_change(
                w.summary_changes, dbs.summary, partition or 0, digest, digest[:HASH_BYTES]
            )
        ensure_row(w, dbs.refs, digest, int(time.time() * 1000))
        w.count_delta += 1
        w.bytes_delta += len(data)
    else:  # a corrupt copy overwritten
        txn.delete(digest, db=dbs.legacy_segments)
        w.bytes_delta += len(data) - len(old)
    return digest


def delete_block(w: WriteTxn, dbs: Dbs, digest: bytes, partition: int | None) -> bool:
    """Delete the block ``digest`` and its index entry; True if it existed. Its reference
    count stays: references outlive a copy that repair may bring back."""
    return delete_block_sized(w, dbs, digest, partition) is not None


def delete_block_sized(w: WriteTxn, dbs: Dbs, digest: bytes, partition: int | None) -> int | None:
    """As :func:`delete_block`; returns the deleted block's size in bytes, None if absent."""
    txn = w.txn
    old = txn.get(digest, db=dbs.blocks)
    if old is None:
        return None
    size = len(old)
    txn.delete(digest, db=dbs.blocks)
    txn.delete(digest, db=dbs.segments)
    txn.delete(digest, db=dbs.legacy_segments)
    if partition is not None:
        txn.delete(partition_key(partition, digest), db=dbs.by_partition)
    if dbs.summary is not None:
        record_change(w.summary_changes, dbs.summary, partition or 0, digest, None)
    w.count_delta -= 1
    w.bytes_delta -= size
    return size


def write_counters(txn: lmdb.Transaction[memoryview], dbs: Dbs, count: int, size: int) -> None:
    """Persist the block count and byte total (8-byte big-endian each)."""
    txn.put(COUNT_KEY, count.to_bytes(8, "big"), db=dbs.meta)
    txn.put(BYTES_KEY, size.to_bytes(8, "big"), db=dbs.meta)
