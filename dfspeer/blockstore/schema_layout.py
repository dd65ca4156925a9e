"""The names of a block store environment (:mod:`.schema`): its sub-databases and ``meta``
keys, the on-disk format version, the handles of the internal sub-databases, and the keys
of the partition index.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import lmdb

from dfspeer.blockstore.refcount import RefDbs

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
