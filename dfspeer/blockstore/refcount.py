"""Reference counts beside the blocks, and the queue of blocks that may be collected.

Two internal sub-databases of the block store environment (see :mod:`.schema`):

=============  =================================  ==========================================
sub-database   key                                value
=============  =================================  ==========================================
``refcounts``  digest (32 B)                      count (8 B big-endian) + ``zero_since``
                                                  (8 B big-endian unix ms; 0 while count > 0)
``gc_queue``   ``zero_since`` (8 B) + digest      empty: the digest has had no reference
                                                  since ``zero_since``
=============  =================================  ==========================================

Counts are changed only by the ``block_refs`` table's ``updated()`` hook (through
:class:`dfspeer.blockstore.tables.HookTxn`), inside the same write transaction as the
reference entry, so a count can never disagree with the references after a crash. A block
stored while nothing references it (a block that arrived before its reference, by repair
or by a failed upload) gets a row with count 0, so it too is collected after the grace.

Collection (:func:`collect`) re-checks every candidate inside the writer's transaction —
the writer thread is the lock: no reference can be added between the check and the delete
— and deletes the block only if its count is still 0 since the same instant, older than
the grace horizon, and no pin (a pending hinted-handoff copy) holds it. This is Garage's
``BLOCK_GC_DELAY`` with its re-check under a lock (``block/manager.rs``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import lmdb

from dfspeer.blockstore.writer import WriteTxn

ROW_BYTES = 16
MS_BYTES = 8


@dataclass(frozen=True)
class RefDbs:
    """Handles of the two sub-databases."""

    refcounts: lmdb._Database
    gc_queue: lmdb._Database


def _row(count: int, zero_since_ms: int) -> bytes:
    return count.to_bytes(8, "big") + zero_since_ms.to_bytes(8, "big")


def parse_row(raw: bytes | memoryview | None) -> tuple[int, int] | None:
    """``(count, zero_since_ms)`` of a stored row, or None when there is none."""
    if raw is None:
        return None
    data = bytes(raw)
    if len(data) != ROW_BYTES:
        return None
    return int.from_bytes(data[:8], "big"), int.from_bytes(data[8:], "big")


def _queue_key(zero_since_ms: int, digest: bytes) -> bytes:
    return zero_since_ms.to_bytes(MS_BYTES, "big") + digest


def adjust(w: WriteTxn, dbs: RefDbs, digest: bytes, delta: int, now_ms: int) -> int:
    """Add ``delta`` (may be negative) to the count of ``digest``, never below 0; queue
    the digest for collection when the count reaches 0, unqueue it when it leaves 0.
    Returns the new count."""
    txn = w.txn
    row = parse_row(txn.get(digest, db=dbs.refcounts))
    count, zero_since = row if row is not None else (0, 0)
    new = max(0, count + delta)
    if row is not None and new == count:
        return new
    if new == 0:
        if row is None or count > 0:
            zero_since = now_ms
            txn.put(_queue_key(zero_since, digest), b"", db=dbs.gc_queue)
    elif row is not None and count == 0:
        txn.delete(_queue_key(zero_since, digest), db=dbs.gc_queue)
        zero_since = 0
    else:
        zero_since = 0
    txn.put(digest, _row(new, zero_since), db=dbs.refcounts)
    return new


def ensure_row(w: WriteTxn, dbs: RefDbs, digest: bytes, now_ms: int) -> None:
    """Give a newly stored block a row (count 0, queued) unless it has one already."""
    if w.txn.get(digest, db=dbs.refcounts) is None:
        adjust(w, dbs, digest, 0, now_ms)


def count_of(txn: lmdb.Transaction[memoryview], dbs: RefDbs, digest: bytes) -> int:
    """The reference count of ``digest`` (0 when it has no row)."""
    row = parse_row(txn.get(digest, db=dbs.refcounts))
    return row[0] if row is not None else 0


def candidates(
    txn: lmdb.Transaction[memoryview], dbs: RefDbs, horizon_ms: int, limit: int
) -> list[tuple[int, bytes]]:
    """Up to ``limit`` queued ``(zero_since_ms, digest)`` with ``zero_since_ms <= horizon_ms``,
    oldest first."""
    out: list[tuple[int, bytes]] = []
    with txn.cursor(db=dbs.gc_queue) as cursor:
        if not cursor.first():
            return out
        for key in cursor.iternext(keys=True, values=False):
            raw = bytes(key)
            since = int.from_bytes(raw[:MS_BYTES], "big")
            if since > horizon_ms:
                break
            out.append((since, raw[MS_BYTES:]))
            if len(out) >= limit:
                break
    return out


def queued(txn: lmdb.Transaction[memoryview], dbs: RefDbs) -> int:
    """Number of queued digests (O(1))."""
    return int(txn.stat(dbs.gc_queue)["entries"])


def collect(
    w: WriteTxn,
    dbs: RefDbs,
    found: Iterable[tuple[int, bytes]],
    horizon_ms: int,
    delete_block: Callable[[WriteTxn, bytes], int | None],
    pinned: Callable[[WriteTxn, bytes], bool],
) -> tuple[int, int]:
    """Delete the blocks of ``found`` that are still collectable (module docstring).

    ``delete_block(w, digest)`` deletes one block and returns its size in bytes (None if it
    was not stored); ``pinned(w, digest)`` is True while something else needs the block.
    Stale queue entries are dropped. Returns ``(blocks deleted, bytes freed)``.
    """
    deleted = freed = 0
    txn = w.txn
    for since, digest in found:
        qkey = _queue_key(since, digest)
        row = parse_row(txn.get(digest, db=dbs.refcounts))
        if row is None or row[0] > 0 or row[1] != since:
            txn.delete(qkey, db=dbs.gc_queue)  # referenced again, or requeued since
            continue
        if since > horizon_ms or pinned(w, digest):
            continue
        size = delete_block(w, digest)
        txn.delete(qkey, db=dbs.gc_queue)
        txn.delete(digest, db=dbs.refcounts)
        if size is not None:
            deleted += 1
            freed += size
    return deleted, freed


def rebuild(
    w: WriteTxn,
    dbs: RefDbs,
    counts: dict[bytes, int],
    stored: Iterable[bytes],
    now_ms: int,
) -> int:
    """Replace every row by ``counts`` (digest -> live references) for the ``stored``
    blocks and the referenced digests; returns the number of rows whose count changed."""
    txn = w.txn
    old: dict[bytes, int] = {}
    with txn.cursor(db=dbs.refcounts) as cursor:
        for key, value in cursor:
            row = parse_row(value)
            old[bytes(key)] = row[0] if row is not None else -1
    txn.drop(dbs.refcounts, delete=False)
    txn.drop(dbs.gc_queue, delete=False)
    changed = 0
    for digest in set(stored) | set(counts):
        count = counts.get(digest, 0)
        if old.get(digest) != count:
            changed += 1
        adjust(w, dbs, digest, count, now_ms)
    return changed


def referenced_bytes(
    txn: lmdb.Transaction[memoryview], dbs: RefDbs, blocks: lmdb._Database
) -> tuple[int, int, int]:
    """``(blocks, bytes, logical bytes)`` of the stored blocks that have references: how
    many, their stored size, and the sum of count x size -- what the referencing versions
    would occupy on this peer if no block were shared (a version that repeats a block
    holds one reference, so repeats inside one version count once). O(referenced blocks):
    one cursor walk of ``refcounts`` and one lookup of each block's length."""
    count = size = logical = 0
    with txn.cursor(db=dbs.refcounts) as cursor:
        for digest, raw in cursor:
            row = parse_row(raw)
            if row is None or row[0] <= 0:
                continue
            data = txn.get(bytes(digest), db=blocks)
            if data is None:
                continue
            count += 1
            size += len(data)
            logical += row[0] * len(data)
    return count, size, logical
