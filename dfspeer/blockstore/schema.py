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

The names, format version and sub-database handles are in :mod:`.schema_layout`, block
values and their segment checksums in :mod:`.schema_values`, the block mutations in
:mod:`.schema_blocks`; this module opens the schema and pages through digests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import lmdb

from dfspeer.blockstore.errors import StoreFormatError
from dfspeer.blockstore.merkle import HASH_BYTES, fingerprint, rebuild
from dfspeer.blockstore.refcount import RefDbs
from dfspeer.blockstore.schema_blocks import delete_block as delete_block
from dfspeer.blockstore.schema_blocks import delete_block_sized as delete_block_sized
from dfspeer.blockstore.schema_blocks import put_block as put_block
from dfspeer.blockstore.schema_blocks import write_counters as write_counters
from dfspeer.blockstore.schema_layout import BLOCKS_DB as BLOCKS_DB
from dfspeer.blockstore.schema_layout import BLOCKS_SUMMARY_DB as BLOCKS_SUMMARY_DB
from dfspeer.blockstore.schema_layout import BYTES_KEY as BYTES_KEY
from dfspeer.blockstore.schema_layout import COUNT_KEY as COUNT_KEY
from dfspeer.blockstore.schema_layout import DIGEST_BYTES as DIGEST_BYTES
from dfspeer.blockstore.schema_layout import FINGERPRINT_KEY as FINGERPRINT_KEY
from dfspeer.blockstore.schema_layout import FORMAT as FORMAT
from dfspeer.blockstore.schema_layout import FORMAT_KEY as FORMAT_KEY
from dfspeer.blockstore.schema_layout import GC_QUEUE_DB as GC_QUEUE_DB
from dfspeer.blockstore.schema_layout import INTERNAL_DBS as INTERNAL_DBS
from dfspeer.blockstore.schema_layout import LEGACY_SEGMENTS_DB as LEGACY_SEGMENTS_DB
from dfspeer.blockstore.schema_layout import MAX_PARTITION as MAX_PARTITION
from dfspeer.blockstore.schema_layout import META_DB as META_DB
from dfspeer.blockstore.schema_layout import PARTITION_DB as PARTITION_DB
from dfspeer.blockstore.schema_layout import REFCOUNTS_DB as REFCOUNTS_DB
from dfspeer.blockstore.schema_layout import SEGMENT_BYTES as SEGMENT_BYTES
from dfspeer.blockstore.schema_layout import SEGMENTS_DB as SEGMENTS_DB
from dfspeer.blockstore.schema_layout import SUM_BYTES as SUM_BYTES
from dfspeer.blockstore.schema_layout import (
    SUMMARY_FINGERPRINT_PREFIX as SUMMARY_FINGERPRINT_PREFIX,
)
from dfspeer.blockstore.schema_layout import TABLE_PREFIX as TABLE_PREFIX
from dfspeer.blockstore.schema_layout import TABLE_SUMMARY_PREFIX as TABLE_SUMMARY_PREFIX
from dfspeer.blockstore.schema_layout import Dbs as Dbs
from dfspeer.blockstore.schema_layout import PartitionOf as PartitionOf
from dfspeer.blockstore.schema_layout import checked_partition as checked_partition
from dfspeer.blockstore.schema_layout import partition_key as partition_key
from dfspeer.blockstore.schema_layout import zero_partition as zero_partition
from dfspeer.blockstore.schema_values import as_bytes as as_bytes
from dfspeer.blockstore.schema_values import bad_segment as bad_segment
from dfspeer.blockstore.schema_values import check_digest as check_digest
from dfspeer.blockstore.schema_values import legacy_segment_sums as legacy_segment_sums
from dfspeer.blockstore.schema_values import segment_count as segment_count
from dfspeer.blockstore.schema_values import segment_sums as segment_sums
from dfspeer.blockstore.schema_values import segments_of as segments_of
from dfspeer.blockstore.schema_values import sha256 as sha256


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
