"""Merkle summaries: one hash trie per (tree, partition), updated inside the write txn.

A *tree* is the blocks (leaf: ``(digest, digest[:16])`` — the value hash of a block is its
digest) or one metadata table (leaf: ``(key, BLAKE2b-128(canonical CBOR value))``). Its
sub-database ``merkle:...`` holds, per partition, a 16-way trie over the nibbles of
``key_path(key)`` (BLAKE2b-128 of the key: 32 nibbles, uniform whatever the keys look
like). A node's LMDB key is ``partition (2 B big-endian) + path``, one nibble (0..15) per
byte, so a subtree is one key range. Node values:

``inner``  ``b"I" + count (8 B) + bitmap (2 B, bit n = child n present) + 16-B child hashes``
           in nibble order; ``count`` = keys in the subtree.
``leaf``   ``b"L" + entries`` sorted by key, each ``len(key) (2 B) + key + value hash (16 B)``.

The shape is canonical — a function of the key set only, never of the write order: the
node at path ``p`` is absent if no key's path starts with ``p``, a leaf bucket if at most
:data:`BUCKET` keys do (or ``p`` is 32 nibbles long), otherwise an inner node. A node's
hash is ``BLAKE2b-128(value)``; an empty subtree hashes to :data:`EMPTY_HASH`. So equal
contents give byte-identical tries and equal hashes on every peer, whatever the order.

This is Garage's Merkle trie (deuxfleurs, ``src/table/merkle.rs``) with leaf buckets of up
to 8 keys (a level less per update and per exchange), kept synchronously: every write
notes its leaf change in its :class:`WriteTxn`, and the changes are applied just before
that transaction commits (:func:`apply_pending`), so the summary commits, aborts and
survives crashes with the data it describes, and the keys of one group commit or batch
share the rewrites of their common nodes. One key's update reads and rewrites the nodes on
its root-to-leaf path — ``O(depth)``, depth ≈ ``log16(keys in partition / 4)``, 3 for a
thousand keys — and hashes each once (plus, rarely, a bucket split or the collapse of an
inner node fallen to BUCKET keys). Inner nodes hash their children's hashes (a Merkle
hash), not a modular sum of leaf hashes: a sum would save nothing (the node is read anyway
for its child list), and additive hashing mod 2^n falls to Wagner's generalized birthday
attack.

Hashes are 128 bits: the anti-entropy exchange sends at most 16 bytes per hash anyway
(:mod:`.merkle_diff`), so longer stored hashes would buy no security, and 16 bytes keep
inner nodes at 267 bytes (fewer LMDB pages dirtied per write; the trie of a table of small
records is about half the table's size). A stale replica goes unnoticed only if a node's
hash collides with ours: 2^-128 per comparison for honest data; forging a collision needs
2^64 work *and* the power to choose the stored values (a cluster member).

The nodes themselves (hashes, key paths, the inner and leaf encodings) are in
:mod:`.merkle_nodes`; this module updates, rebuilds and fingerprints the tries.
"""

from __future__ import annotations

import hashlib
from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import lmdb

from dfspeer.blockstore.merkle_nodes import BUCKET as BUCKET
from dfspeer.blockstore.merkle_nodes import EMPTY_HASH as EMPTY_HASH
from dfspeer.blockstore.merkle_nodes import HASH_BYTES as HASH_BYTES
from dfspeer.blockstore.merkle_nodes import INNER as INNER
from dfspeer.blockstore.merkle_nodes import LEAF as LEAF
from dfspeer.blockstore.merkle_nodes import MAX_DEPTH as MAX_DEPTH
from dfspeer.blockstore.merkle_nodes import Entry as Entry
from dfspeer.blockstore.merkle_nodes import _inner_set_child
from dfspeer.blockstore.merkle_nodes import bucket_children as bucket_children
from dfspeer.blockstore.merkle_nodes import canonical_hash as canonical_hash
from dfspeer.blockstore.merkle_nodes import inner_decode as inner_decode
from dfspeer.blockstore.merkle_nodes import inner_encode as inner_encode
from dfspeer.blockstore.merkle_nodes import key_path as key_path
from dfspeer.blockstore.merkle_nodes import leaf_decode as leaf_decode
from dfspeer.blockstore.merkle_nodes import leaf_encode as leaf_encode
from dfspeer.blockstore.merkle_nodes import node_count as node_count
from dfspeer.blockstore.merkle_nodes import node_hash as node_hash
from dfspeer.blockstore.merkle_nodes import value_hash as value_hash

if TYPE_CHECKING:
    Txn = lmdb.Transaction[memoryview]

BLOCKS_TREE = "blocks"
"""Name of the blocks' summary in :meth:`BlockStore.merkle` (reserved: no table has it)."""
FORMAT = b"merkle-1:blake2b128:bucket8:nibble16"
"""Part of every tree's fingerprint: changing the layout rebuilds the trees."""

REBUILD_CHUNK = 65536
"""Leaves inserted per pass by :func:`rebuild` (bounds its memory)."""


# ---------------------------------------------------------------------- updates
Changes = dict[bytes, bytes | None]
"""Final leaf value hash (None: no leaf) per key, for the keys a transaction touched."""


def record_change(
    pending: dict[tuple[lmdb._Database, int], Changes],
    db: lmdb._Database,
    partition: int,
    key: bytes,
    vhash: bytes | None,
) -> None:
    """Note that ``key``'s leaf in ``db``/``partition`` is now ``vhash`` (None: removed);
    :func:`apply_pending` writes every noted change before the transaction commits."""
    changes = pending.get((db, partition))
    if changes is None:
        pending[db, partition] = {key: vhash}
    else:
        changes[key] = vhash


def apply_pending(txn: Txn, pending: dict[tuple[lmdb._Database, int], Changes]) -> None:
    """Apply the noted changes (one pass per partition; see :func:`apply_changes`)."""
    for (db, partition), changes in pending.items():
        if len(changes) == 1:
            for key, vhash in changes.items():
                apply_change(txn, db, partition, key, vhash)
        else:
            apply_changes(txn, db, partition, changes)
    pending.clear()


def apply_changes(txn: Txn, db: lmdb._Database, partition: int, changes: Changes) -> None:
    """Set the leaves of ``changes`` (key -> value hash, None: remove) in ``partition``.

    Runs inside the caller's write transaction. Reads and rewrites the nodes on the keys'
    root-to-leaf paths, each node once however many of the keys pass through it (plus the
    split of a bucket grown past :data:`BUCKET` keys, or the collapse of an inner node
    fallen to BUCKET keys); leaves that already have the value change nothing.
    """
    items = [(key_path(key), key, vhash) for key, vhash in changes.items()]
    _update(txn, db, partition.to_bytes(2, "big"), 0, items)


def apply_change(
    txn: Txn, db: lmdb._Database, partition: int, key: bytes, vhash: bytes | None
) -> None:
    """:func:`apply_changes` of a single key (the same, iteratively: the common case)."""
    path = key_path(key)
    node_key = partition.to_bytes(2, "big")
    ancestors: list[bytes] = []
    while True:
        view = txn.get(node_key, db=db)
        if view is None or view[0] == LEAF:
            break
        ancestors.append(bytes(view))
        node_key += path[len(ancestors) - 1 : len(ancestors)]
    entries = leaf_decode(bytes(view)) if view is not None else []
    delta = _modify(entries, key, vhash)
    if delta is None:
        return
    depth = len(ancestors)
    child: bytes | None = None
    if entries:
        child = _build(txn, db, node_key, depth, entries)
    else:
        txn.delete(node_key, db=db)
    while ancestors:
        raw = ancestors.pop()
        depth -= 1
        node_key = node_key[:-1]
        if delta < 0 and int.from_bytes(raw[1:9], "big") + delta <= BUCKET:
            child = _collapse(txn, db, node_key)
        else:
            raw = _inner_set_child(raw, path[depth], child, delta)
            txn.put(node_key, raw, db=db)
            child = node_hash(raw)


_Item = tuple[bytes, bytes, bytes | None]  # (path, key, value hash or None)


def _update(
    txn: Txn, db: lmdb._Database, node_key: bytes, depth: int, items: list[_Item]
) -> tuple[bytes | None, int] | None:
    """Apply ``items`` (all below ``node_key``, at ``depth``) to that subtree; return
    ``(new hash or None if now empty, change of its key count)``, or None if unchanged."""
    view = txn.get(node_key, db=db)
    if view is None or view[0] == LEAF:
        entries = leaf_decode(bytes(view)) if view is not None else []
        if len(items) == 1:
            delta = _modify(entries, items[0][1], items[0][2])
        else:
            delta = _modify_many(entries, items)
        if delta is None:
            return None
        if not entries:
            txn.delete(node_key, db=db)
            return None, delta
        return _build(txn, db, node_key, depth, entries), delta
    raw = bytes(view)
    groups: dict[int, list[_Item]] = {}
    for item in items:
        groups.setdefault(item[0][depth], []).append(item)
    total, changed = 0, False
    for nibble, group in groups.items():
        result = _update(txn, db, node_key + bytes((nibble,)), depth + 1, group)
        if result is not None:
            raw = _inner_set_child(raw, nibble, result[0], result[1])
            total, changed = total + result[1], True
    if not changed:
        return None
    if total < 0 and int.from_bytes(raw[1:9], "big") <= BUCKET:
        return _collapse(txn, db, node_key), total
    txn.put(node_key, raw, db=db)
    return node_hash(raw), total


def _modify(entries: list[Entry], key: bytes, vhash: bytes | None) -> int | None:
    """Apply the change to the sorted ``entries`` in place; return the key-count change
    (-1, 0, +1), or None if nothing changed."""
    keys = [k for k, _ in entries]
    i = bisect_left(keys, key)
    found = i < len(keys) and keys[i] == key
    if vhash is None:
        if not found:
            return None
        del entries[i]
        return -1
    if found:
        if entries[i][1] == vhash:
            return None
        entries[i] = (key, vhash)
        return 0
    entries.insert(i, (key, vhash))
    return 1


def _modify_many(entries: list[Entry], items: list[_Item]) -> int | None:
    """:func:`_modify` for several distinct keys, in O((n + k) log(n + k))."""
    current = dict(entries)
    delta, changed = 0, False
    for _path, key, vhash in items:
        old = current.get(key)
        if vhash is None:
            if old is not None:
                del current[key]
                delta, changed = delta - 1, True
        elif old != vhash:
            current[key] = vhash
            delta, changed = delta + (old is None), True
    if not changed:
        return None
    entries[:] = sorted(current.items())
    return delta


def _build(
    txn: Txn, db: lmdb._Database, node_key: bytes, depth: int, entries: list[Entry]
) -> bytes:
    """Write the canonical subtree for ``entries`` at ``node_key``; return its hash."""
    if len(entries) <= BUCKET or depth >= MAX_DEPTH:
        raw = leaf_encode(entries)
    else:
        groups = bucket_children(entries, depth)
        children = {
            n: _build(txn, db, node_key + bytes((n,)), depth + 1, g) for n, g in groups.items()
        }
        raw = inner_encode(len(entries), children)
    txn.put(node_key, raw, db=db)
    return node_hash(raw)


def _collapse(txn: Txn, db: lmdb._Database, node_key: bytes) -> bytes | None:
    """Replace the subtree at ``node_key`` (now at most BUCKET keys, so all its
    descendants are leaf buckets) by one leaf bucket; return its hash (None, and no node
    left, if no key is left)."""
    entries: list[Entry] = []
    with txn.cursor(db=db) as cursor:
        cursor.set_range(node_key + b"\x00")
        while cursor.key()[: len(node_key)] == node_key:
            raw = bytes(cursor.value())
            if raw[0] == LEAF:
                entries += leaf_decode(raw)
            if not cursor.delete():
                break
    if not entries:
        txn.delete(node_key, db=db)
        return None
    entries.sort()
    raw = leaf_encode(entries)
    txn.put(node_key, raw, db=db)
    return node_hash(raw)


# ---------------------------------------------------------------------- rebuilds
def rebuild(
    txn: Txn,
    db: lmdb._Database,
    leaves: Iterator[tuple[bytes, bytes]],
    partition_of: Callable[[bytes], int],
) -> int:
    """Empty ``db`` and insert every ``(key, value hash)`` of ``leaves``; return how many.

    Used when a tree has no fingerprint or another one (new store, a store written with
    summaries off, another partitioner, another layout).
    """
    txn.drop(db, delete=False)
    n = 0
    pending: dict[tuple[lmdb._Database, int], Changes] = {}
    for key, vhash in leaves:
        record_change(pending, db, partition_of(key), key, vhash)
        n += 1
        if n % REBUILD_CHUNK == 0:
            apply_pending(txn, pending)
    apply_pending(txn, pending)
    return n


def fingerprint(partition_of: Callable[[bytes], int]) -> bytes:
    """SHA-256 identifying the layout and a partitioner (its value on 64 fixed probe keys;
    a probe it rejects counts by the exception's type)."""
    parts = [FORMAT]
    for i in range(64):
        probe = hashlib.sha256(b"dfspeer-partition-probe-%d" % i).digest()
        try:
            parts.append(str(partition_of(probe)).encode())
        except Exception as exc:
            parts.append(b"!" + type(exc).__name__.encode())
    return hashlib.sha256(b",".join(parts)).digest()
