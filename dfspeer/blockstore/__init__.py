"""dfspeer.blockstore: content-addressed blocks and metadata tables in LMDB.

One LMDB environment per peer (in its data dir) holds the blocks (key: SHA-256 of the
content, value: the content, re-hashed on every read), an optional index of digests by ring
partition, O(1) block counters, and named metadata tables (bytes key -> CBOR value). All
writes go through one writer thread with group commit. See :mod:`.store` (API and read
path), :mod:`.writer` (group commit), :mod:`.schema` (on-disk layout), :mod:`.tables`
(metadata tables), :mod:`.ops` (atomic multi-op batches), :mod:`.merkle` (Merkle summaries
kept in the same transactions), :mod:`.summary` (reading them) and :mod:`.merkle_diff`
(the sans-IO anti-entropy diff of two peers' summaries).
"""

from dfspeer.blockstore.errors import (
    BlockNotFound,
    BlockStoreError,
    CorruptBlock,
    DigestMismatch,
    StoreFull,
)
from dfspeer.blockstore.merkle import BLOCKS_TREE, EMPTY_HASH
from dfspeer.blockstore.merkle_diff import DiffResult, KeyDiff, SyncStats
from dfspeer.blockstore.ops import (
    DeleteBlock,
    PutBlock,
    TableDelete,
    TablePut,
    TableUpdate,
    WriteOp,
)
from dfspeer.blockstore.store import BlockStore, BlockStoreStats
from dfspeer.blockstore.summary import MerkleNode, MerkleReader, SummaryReader
from dfspeer.blockstore.tables import MetaTable

__all__ = [
    "BLOCKS_TREE",
    "EMPTY_HASH",
    "BlockNotFound",
    "BlockStore",
    "BlockStoreError",
    "BlockStoreStats",
    "CorruptBlock",
    "DeleteBlock",
    "DiffResult",
    "DigestMismatch",
    "KeyDiff",
    "MerkleNode",
    "MerkleReader",
    "MetaTable",
    "PutBlock",
    "StoreFull",
    "SummaryReader",
    "SyncStats",
    "TableDelete",
    "TablePut",
    "TableUpdate",
    "WriteOp",
]
