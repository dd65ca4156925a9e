"""On-disk layout of a block store environment, and the block mutations.

One LMDB environment (directory ``<data_dir>``: ``data.mdb`` + ``lock.mdb``) holds these
named sub-databases:

=======================  ==============================  ===================================
sub-database             key                             value
=======================  ==============================  ===================================
``blocks``               SHA-256 of the content (32 B)   the content (0..n bytes)
``blocks_by_partition``  partition (2 B big-endian)      empty; present iff the block is
                         + digest (32 B)                 (only with ``partition_of``)
``meta``                 ``block_count``/``block_bytes`` 8-byte big-endian unsigned counters
                         ``format``                      ``b"1"``
                         ``partition_fingerprint``       SHA-256 of ``partition_of`` applied
                                                         to fixed probe digests
``table:<name>``         caller's bytes key              CBOR value (canonical encoding)
``merkle:blocks``        partition (2 B) + trie path     Merkle trie node of the blocks
``merkle:table:<name>``  partition (2 B) + trie path     Merkle trie node of table ``name``
``refcounts``            digest (32 B)                   reference count + zero-since
``gc_queue``             zero-since (8 B) + digest       empty (see :mod:`.refcount`)
``block_crc32c``         digest (32 B)                   CRC-32C (4 B big-endian) of each
                                                         64 KiB segment of the block, in
                                                         order (:func:`segment_sums`)
``block_segments``       digest (32 B)                   the same with CRC-32 (zlib), as
                                                         earlier versions wrote it (read,
                                                         never written)
=======================  ==============================  ===================================

``block_crc32c`` is written in the same transaction as the block, so a ranged read
verifies only the segments it covers (:meth:`~dfspeer.blockstore.store.BlockStore.
get_range`) instead of re-hashing the whole block; scrub, and every peer a copy is sent
to, still re-hash with SHA-256. CRC-32C (Castagnoli), as HDFS and ext4 checksum their
data, because CPUs compute it in hardware: about 50 GB/s here through ``awscrt``, against
6.7 GB/s for zlib's CRC-32. Both came within format 2: a block with only a CRC-32 entry
(written by an earlier version) is verified by it, and one with neither is read by a full
re-hash; either gets its CRC-32C entry the next time it is written. An entry is a function
of the content, hence of the digest, so a stale one can never be wrong for the block stored
under that digest; an earlier version reading a store written by this one finds no CRC-32
entry and falls back to the full re-hash.

``meta``'s ``format`` is the on-disk format version (:data:`FORMAT`); a store written in
another format is refused at open (:class:`~dfspeer.blockstore.errors.StoreFormatError`),
never misread.

``meta`` also holds ``summary_fingerprint:<sub-db>`` per Merkle tree (layout + partitioner,
see :func:`dfspeer.blockstore.merkle.fingerprint`); a tree whose fingerprint is missing or
different is rebuilt when it is opened. The trees are described in :mod:`.merkle`; they are
written by the same transactions as the blocks and records they summarize.

The partition of a digest is the ring's mmh3 partition, not a prefix of the digest, so the
index sub-db makes "digests of partition p" a single range scan; it is written in the same
transaction as the block. Its fingerprint detects a store reopened with another partitioner
(or without one for a while): the index is then rebuilt at open.
"""

from __future__ import annotations

import hashlib
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import lmdb
from awscrt.checksums import crc32c

from dfspeer.blockstore.errors import StoreFormatError
from dfspeer.blockstore.merkle import HASH_BYTES, fingerprint, rebuild, record_change
from dfspeer.blockstore.refcount import RefDbs, ensure_row
from dfspeer.blockstore.writer import WriteTxn

BLOCKS_DB = b"blocks"
PARTITION_DB = b"blocks_by_partition"
META_DB = b"meta"
TABLE_PREFIX = b"table:"
BLOCKS_SUMMARY_DB = b"merkle:blocks"
TABLE_SUMMARY_PREFIX = b"merkle:table:"
SUMMARY_FINGERPRINT_PREFIX = b"summary_fingerprint:"
REFCOUNTS_DB = b"refcounts"
GC_QUEUE_DB = b"gc_queue"
SEGMENTS_DB = b"block_crc32c"
LEGACY_SEGMENTS_DB = b"block_segments"
INTERNAL_DBS = 8
SEGMENT_BYTES = 64 * 1024
"""Bytes per checksummed segment of a block (the last one may be shorter)."""
SUM_BYTES = 4

COUNT_KEY = b"block_count"
BYTES_KEY = b"block_bytes"
FORMAT_KEY = b"format"
FINGERPRINT_KEY = b"partition_fingerprint"
FORMAT = b"2"
"""On-disk format version. 2: reference counts and the collection queue (every block has a
count kept by the block_refs table). Stores of format 1 are refused: they have no counts."""

DIGEST_BYTES = 32
MAX_PARTITION = 0xFFFF

PartitionOf = Callable[[bytes], int]


@dataclass(frozen=True)
class Dbs:
    """Handles of the internal sub-databases."""

    blocks: lmdb._Database
    by_partition: lmdb._Database
    meta: lmdb._Database
    summary: lmdb._Database | None
    """Merkle trie of the blocks; None when the store keeps no summaries."""
    refs: RefDbs
    """Reference counts and the collection queue (:mod:`.refcount`)."""
    segments: lmdb._Database
    """CRC-32C per 64 KiB segment of each block (:func:`segment_sums`)."""
    legacy_segments: lmdb._Database
    """CRC-32 per 64 KiB segment of blocks written by earlier versions (read only)."""


def partition_key(partition: int, digest: bytes) -> bytes:
    """Key of the index entry: 2-byte big-endian partition + 32-byte digest."""
    return partition.to_bytes(2, "big") + digest


def zero_partition(_key: bytes) -> int:
    """The partitioner of a store opened without ``partition_of``: everything in 0."""
    return 0


def checked_partition(partition_of: PartitionOf | None, digest: bytes) -> int | None:
    """``partition_of(digest)``, checked to fit the 2-byte index; None without partitioner.

    Raises ValueError if the partitioner returns something outside 0..65535.
    """
    if partition_of is None:
        return None
    partition = partition_of(digest)
    if not isinstance(partition, int) or not 0 <= partition <= MAX_PARTITION:
        raise ValueError(f"partition_of returned {partition!r}; expected an int in 0..65535")
    return partition


# ---------------------------------------------------------------------- block values
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


# ---------------------------------------------------------------------- block mutations
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


# ---------------------------------------------------------------------- opening
def open_schema(
    env: lmdb.Environment, partition_of: PartitionOf | None, summaries: bool = True
) -> tuple[Dbs, tuple[int, int]]:
    """Create/open the internal sub-dbs, check the counters, the partition index and the
    blocks' Merkle trie.

    Runs before the writer thread starts (it uses write transactions of the caller's
    thread). Returns the handles and ``(block_count, block_bytes)``. The counters are
    recomputed by a scan if they disagree with the entry count of ``blocks`` (a store
    written by another tool); the index is rebuilt if its fingerprint changed, and so is
    the Merkle trie. With ``summaries=False`` no trie is kept and every summary fingerprint
    is forgotten, so that a later open with summaries rebuilds them. Raises ValueError for
    an unknown on-disk format.
    """
    # open_db with an explicit write txn: without one, py-lmdb begins its own write txn
    # while holding the GIL (see dfspeer.blockstore.writer).
    with env.begin(write=True, buffers=True) as txn:
        dbs = Dbs(
            blocks=env.open_db(BLOCKS_DB, txn=txn),
            by_partition=env.open_db(PARTITION_DB, txn=txn),
            meta=env.open_db(META_DB, txn=txn),
            summary=env.open_db(BLOCKS_SUMMARY_DB, txn=txn) if summaries else None,
            refs=RefDbs(
                refcounts=env.open_db(REFCOUNTS_DB, txn=txn),
                gc_queue=env.open_db(GC_QUEUE_DB, txn=txn),
            ),
            segments=env.open_db(SEGMENTS_DB, txn=txn),
            legacy_segments=env.open_db(LEGACY_SEGMENTS_DB, txn=txn),
        )
        fmt = txn.get(FORMAT_KEY, db=dbs.meta)
        if fmt is None:
            if txn.stat(dbs.blocks)["entries"]:
                raise StoreFormatError(b"1", FORMAT)  # written before formats were recorded
            txn.put(FORMAT_KEY, FORMAT, db=dbs.meta)
        elif bytes(fmt) != FORMAT:
            raise StoreFormatError(bytes(fmt), FORMAT)
        counters = _checked_counters(txn, dbs)
        _check_partition_index(txn, dbs, partition_of, counters[0])
        if dbs.summary is None:
            forget_summaries(txn, dbs)
        else:
            leaves = _block_leaves(txn, dbs)
            check_summary(
                txn, dbs, BLOCKS_SUMMARY_DB, dbs.summary, partition_of or zero_partition, leaves
            )
    return dbs, counters


def check_summary(
    txn: lmdb.Transaction[memoryview],
    dbs: Dbs,
    name: bytes,
    db: lmdb._Database,
    partition_of: PartitionOf,
    leaves: Iterator[tuple[bytes, bytes]],
) -> bool:
    """Rebuild the Merkle trie in ``db`` (sub-db ``name``) from ``leaves`` (key, value
    hash) unless its stored fingerprint matches ``partition_of``; True if rebuilt."""
    key = SUMMARY_FINGERPRINT_PREFIX + name
    expected = fingerprint(partition_of)
    stored = txn.get(key, db=dbs.meta)
    if stored is not None and bytes(stored) == expected:
        return False
    rebuild(txn, db, leaves, lambda k: _checked(partition_of, k))
    txn.put(key, expected, db=dbs.meta)
    return True


def forget_summaries(txn: lmdb.Transaction[memoryview], dbs: Dbs) -> None:
    """Delete every summary fingerprint (the trees will not be maintained)."""
    with txn.cursor(db=dbs.meta) as cursor:
        if not cursor.set_range(SUMMARY_FINGERPRINT_PREFIX):
            return
        while bytes(cursor.key()).startswith(SUMMARY_FINGERPRINT_PREFIX):
            if not cursor.delete():
                break


def _block_leaves(txn: lmdb.Transaction[memoryview], dbs: Dbs) -> Iterator[tuple[bytes, bytes]]:
    """``(digest, digest)`` of every stored block: a block's leaf value is its digest."""
    with txn.cursor(db=dbs.blocks) as cursor:
        for key in cursor.iternext(keys=True, values=False):
            digest = bytes(key)
            yield digest, digest[:HASH_BYTES]


def _checked(partition_of: PartitionOf, key: bytes) -> int:
    partition = checked_partition(partition_of, key)
    assert partition is not None
    return partition


def _checked_counters(txn: lmdb.Transaction[memoryview], dbs: Dbs) -> tuple[int, int]:
    entries = txn.stat(dbs.blocks)["entries"]
    raw_count = txn.get(COUNT_KEY, db=dbs.meta)
    raw_bytes = txn.get(BYTES_KEY, db=dbs.meta)
    if raw_count is not None and raw_bytes is not None:
        count = int.from_bytes(raw_count, "big")
        if count == entries:
            return count, int.from_bytes(raw_bytes, "big")
    total = 0
    with txn.cursor(db=dbs.blocks) as cursor:
        for _key, value in cursor:
            total += len(value)
    write_counters(txn, dbs, entries, total)
    return entries, total


def partition_fingerprint(partition_of: PartitionOf) -> bytes:
    """SHA-256 over the partitions of 64 fixed probe digests: identifies a partitioner."""
    probes = (hashlib.sha256(b"dfspeer-partition-probe-%d" % i).digest() for i in range(64))
    parts = ",".join(str(partition_of(p)) for p in probes)
    return hashlib.sha256(parts.encode()).digest()


def _check_partition_index(
    txn: lmdb.Transaction[memoryview], dbs: Dbs, partition_of: PartitionOf | None, count: int
) -> None:
    if partition_of is None:
        # Puts and deletes will not maintain the index: forget it, so that a later open
        # with a partitioner rebuilds it.
        txn.delete(FINGERPRINT_KEY, db=dbs.meta)
        return
    fingerprint = partition_fingerprint(partition_of)
    stored = txn.get(FINGERPRINT_KEY, db=dbs.meta)
    index_entries = txn.stat(dbs.by_partition)["entries"]
    if stored is not None and bytes(stored) == fingerprint and index_entries == count:
        return
    txn.drop(dbs.by_partition, delete=False)
    with txn.cursor(db=dbs.blocks) as cursor:
        for key in cursor.iternext(keys=True, values=False):
            digest = bytes(key)
            partition = checked_partition(partition_of, digest)
            assert partition is not None
            txn.put(partition_key(partition, digest), b"", db=dbs.by_partition)
    txn.put(FINGERPRINT_KEY, fingerprint, db=dbs.meta)


# ---------------------------------------------------------------------- iteration
def digest_page(
    txn: lmdb.Transaction[memoryview],
    dbs: Dbs,
    partition: int | None,
    after: bytes | None,
    limit: int,
) -> list[bytes]:
    """Up to ``limit`` digests in key order, strictly after ``after`` (a digest).

    ``partition=None`` walks ``blocks``; otherwise the range ``partition||*`` of the index.
    """
    if partition is None:
        db, prefix = dbs.blocks, b""
    else:
        db, prefix = dbs.by_partition, partition.to_bytes(2, "big")
    start = prefix + after if after is not None else prefix
    out: list[bytes] = []
    with txn.cursor(db=db) as cursor:
        if not cursor.set_range(start):
            return out
        for key in cursor.iternext(keys=True, values=False):
            k = bytes(key)
            if not k.startswith(prefix):
                break
            if after is not None and k == start:
                continue
            out.append(k[len(prefix) :])
            if len(out) >= limit:
                break
    return out
