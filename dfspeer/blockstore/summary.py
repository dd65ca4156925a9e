"""Reading Merkle summaries: nodes of a partition's trie and of a partition-set tree.

:class:`MerkleReader` (from :meth:`BlockStore.merkle`) answers, each call in one read
transaction of the last committed state:

* ``node(partition, path)`` — the canonical node at ``path`` (nibbles 0..15) of the
  partition's trie (layout in :mod:`dfspeer.blockstore.merkle`). A path inside a leaf
  bucket gives the *virtual* canonical node there (the bucket's entries under that path),
  so two peers whose tries differ in shape can still compare any path.
* ``entries(partition, path)`` — every ``(key, value hash)`` under a path.
* ``set_node(partitions, path)`` — a node of the *partition-set tree*: a 16-way tree over
  the sorted partitions that two peers share, whose leaves are the partitions' roots. With
  ``L = max(1, ceil(log16(len(partitions))))`` levels, the set node at path ``s`` (child
  indexes 0..15, ``len(s) < L``) covers the positions ``[start, start + 16**(L-len(s)))``
  of the sorted list; its children are 16**(L-len(s)-1) positions wide, and at level
  ``L-1`` they are single partitions (child ``i`` = partition at position ``start + i``).
  Its hash is ``BLAKE2b-128(b"S" + bitmap + non-empty child hashes)``, or EMPTY_HASH if
  every partition under it is empty. Two peers sharing 600 partitions compare 1 root hash,
  then at most 16 group hashes, then 16, then 16 partition roots.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

import lmdb

from dfspeer.blockstore.merkle import (
    EMPTY_HASH,
    INNER,
    LEAF,
    MAX_DEPTH,
    Entry,
    bucket_children,
    canonical_hash,
    inner_decode,
    inner_encode,
    key_path,
    leaf_decode,
    node_count,
    node_hash,
)

if TYPE_CHECKING:
    ReadTxn = Callable[[], AbstractContextManager[lmdb.Transaction[memoryview]]]

FANOUT = 16


@dataclass(frozen=True)
class MerkleNode:
    """One node of a summary.

    ``hash``: 16-byte BLAKE2b-128 (EMPTY_HASH for an empty subtree). ``count``: keys under
    it. Exactly one of ``children`` (inner / set node: child index -> hash, non-empty
    children only) and ``leaves`` (leaf bucket: ``[(key, value hash)]`` sorted by key;
    ``[]`` for an empty subtree) is not None.
    """

    hash: bytes
    count: int
    children: dict[int, bytes] | None = None
    leaves: list[Entry] | None = None

    @property
    def is_leaf(self) -> bool:
        return self.leaves is not None


EMPTY_NODE = MerkleNode(EMPTY_HASH, 0, None, [])


class SummaryReader(Protocol):
    """What the anti-entropy diff reads of a summary (:class:`MerkleReader` is one)."""

    def node(self, partition: int, path: bytes = b"") -> MerkleNode: ...

    def entries(self, partition: int, path: bytes = b"") -> list[Entry]: ...

    def set_node(self, partitions: Sequence[int], path: bytes = b"") -> MerkleNode: ...


def bucket_node(entries: list[Entry], depth: int) -> MerkleNode:
    """The canonical node at ``depth`` holding ``entries`` (sorted by key), as a bucket."""
    if not entries:
        return EMPTY_NODE
    return MerkleNode(canonical_hash(entries, depth), len(entries), None, entries)


def split_bucket(node: MerkleNode, depth: int) -> dict[int, MerkleNode]:
    """The canonical children (nibble -> node) of bucket ``node`` at ``depth``, as if it
    were an inner node: lets a bucket be compared with a peer's inner node there."""
    groups = bucket_children(node.leaves or [], depth)
    return {n: bucket_node(g, depth + 1) for n, g in groups.items()}


def check_path(path: bytes, limit: int = MAX_DEPTH) -> bytes:
    """Return ``path`` if it is bytes of at most ``limit`` values 0..15, else ValueError."""
    if not isinstance(path, bytes):
        raise TypeError(f"a summary path is bytes of nibbles, got {type(path).__name__}")
    if len(path) > limit or any(b > 15 for b in path):
        raise ValueError(f"a summary path is at most {limit} nibbles 0..15, got {path.hex()}")
    return path


def _decode(raw: bytes) -> MerkleNode:
    if raw[0] == INNER:
        count, children = inner_decode(raw)
        return MerkleNode(node_hash(raw), count, children, None)
    entries = leaf_decode(raw)
    return MerkleNode(node_hash(raw), len(entries), None, entries)


def _virtual(entries: list[Entry], path: bytes) -> MerkleNode:
    """Canonical node at ``path`` for the entries of an ancestor bucket under it."""
    depth = len(path)
    return bucket_node([e for e in entries if key_path(e[0])[:depth] == path], depth)


def set_levels(n: int) -> int:
    """Levels of the set tree over ``n`` partitions: ``max(1, ceil(log16(n)))``."""
    levels = 1
    while FANOUT**levels < n:
        levels += 1
    return levels


def sorted_partitions(partitions: Iterable[int]) -> list[int]:
    """Sorted distinct partitions, each checked to be in 0..65535 (else ValueError)."""
    out = sorted(set(partitions))
    if out and not (out[0] >= 0 and out[-1] <= 0xFFFF):
        raise ValueError("partitions are in 0..65535")
    return out


def set_span(n: int, path: bytes) -> tuple[int, int, int]:
    """``(start, end, child width)`` positions of set node ``path`` over ``n`` partitions.

    Raises ValueError if ``path`` is not a set node (too deep, or starting past ``n``).
    """
    levels = set_levels(n)
    check_path(path, levels - 1)
    width = FANOUT**levels
    start = 0
    for digit in path:
        width //= FANOUT
        start += digit * width
    if start >= n and n:
        raise ValueError(f"set path {path.hex()} is outside {n} partitions")
    return start, min(start + width, n), width // FANOUT


class MerkleReader:
    """Read access to one tree's summaries (see the module docstring). Raises
    ``BlockStoreError`` once the store is closed, ValueError for a bad path/partition."""

    def __init__(self, name: str, db: lmdb._Database, read_txn: ReadTxn) -> None:
        self.name = name
        self._db = db
        self._read_txn = read_txn

    def __repr__(self) -> str:
        return f"MerkleReader({self.name!r})"

    def node(self, partition: int, path: bytes = b"") -> MerkleNode:
        """The canonical node at ``path`` of ``partition``'s trie (EMPTY_NODE if none)."""
        prefix = _prefix(partition) + check_path(path)
        with self._read_txn() as txn:
            return self._node(txn, prefix)

    def root(self, partition: int) -> bytes:
        """Root hash of ``partition`` (EMPTY_HASH if it holds no key)."""
        return self.node(partition).hash

    def entries(self, partition: int, path: bytes = b"") -> list[Entry]:
        """Every ``(key, value hash)`` under ``path`` in ``partition``, sorted by key."""
        prefix = _prefix(partition) + check_path(path)
        with self._read_txn() as txn:
            node = self._node(txn, prefix)
            if node.leaves is not None:
                return node.leaves
            out: list[Entry] = []
            with txn.cursor(db=self._db) as cursor:
                cursor.set_range(prefix)
                for key, value in cursor:
                    if bytes(key[: len(prefix)]) != prefix:
                        break
                    if value[0] == LEAF:
                        out += leaf_decode(bytes(value))
        out.sort()
        return out

    def set_node(self, partitions: Sequence[int], path: bytes = b"") -> MerkleNode:
        """Node ``path`` of the set tree over ``partitions`` (sorted, distinct; see
        :func:`sorted_partitions`). EMPTY_NODE-like (no children) if all are empty."""
        start, end, width = set_span(len(partitions), path)
        with self._read_txn() as txn:
            roots = [self._root_of(txn, p) for p in partitions[start:end]]
        return _set_node(roots, width)

    def set_root(self, partitions: Sequence[int]) -> bytes:
        """Root hash of the set tree over ``partitions``."""
        return self.set_node(partitions).hash

    # ------------------------------------------------------------------ helpers
    def _node(self, txn: lmdb.Transaction[memoryview], prefix: bytes) -> MerkleNode:
        view = txn.get(prefix, db=self._db)
        if view is not None:
            return _decode(bytes(view))
        for cut in range(len(prefix) - 1, 1, -1):  # deepest existing ancestor
            view = txn.get(prefix[:cut], db=self._db)
            if view is None:
                continue
            if view[0] == INNER:
                return EMPTY_NODE  # the ancestor has no child on this path
            return _virtual(leaf_decode(bytes(view)), prefix[2:])
        return EMPTY_NODE

    def _root_of(self, txn: lmdb.Transaction[memoryview], partition: int) -> tuple[bytes, int]:
        view = txn.get(_prefix(partition), db=self._db)
        if view is None:
            return EMPTY_HASH, 0
        raw = bytes(view)
        return node_hash(raw), node_count(raw)


def _prefix(partition: int) -> bytes:
    if not isinstance(partition, int) or not 0 <= partition <= 0xFFFF:
        raise ValueError(f"partition must be in 0..65535, got {partition!r}")
    return partition.to_bytes(2, "big")


def _set_node(roots: list[tuple[bytes, int]], width: int) -> MerkleNode:
    """Set node over consecutive partition ``roots`` ((hash, count) each), children
    ``width`` positions wide (1: the children are the partitions)."""
    children: dict[int, bytes] = {}
    total = 0
    for i in range(0, len(roots), width):
        group = roots[i : i + width]
        count = sum(c for _, c in group)
        total += count
        digest = group[0][0] if width == 1 else _set_node(group, width // FANOUT).hash
        if digest != EMPTY_HASH:
            children[i // width] = digest
    if not children:
        return MerkleNode(EMPTY_HASH, 0, {}, None)
    raw = inner_encode(total, children)
    return MerkleNode(node_hash(b"S" + raw[9:]), total, children, None)
