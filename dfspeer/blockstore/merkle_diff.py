"""Anti-entropy diff of two peers' Merkle summaries (sans-IO core; the RPC carries bytes).

The initiator runs :func:`diff` with its local :class:`SummaryReader` and an ``exchange``
coroutine that delivers one request (bytes) to the other replica and returns its answer;
the replica answers with :func:`serve` over its own summaries. One ``exchange`` call is
one round trip. The walk is breadth-first and descends only where hashes differ:

1. the partition-set tree over the partitions both peers replicate (1 root hash, then at
   most 16 group hashes per level, down to the partitions' roots);
2. each differing partition's trie, nibble by nibble, down to leaf buckets, whose
   ``(key, value hash)`` pairs are compared key by key.

Every request item carries the initiator's hash of the node it asks for; the replica
answers ``null`` when its own hash is equal — so an in-sync table costs one round trip of
a few dozen bytes. A subtree the replica lacks entirely is settled locally (all its keys
are "missing there") without asking; a subtree this peer lacks is fetched down to its
leaves. Tries of different shape (a bucket here, an inner node there) are compared through
the bucket's canonical children (:func:`split_bucket`).

Wire format (CBOR). Request: ``[table, hash_bytes, set_bitmap | null, [[partition | null,
path, known_hash], ...]]`` — ``partition`` null addresses the set tree, whose partitions
``set_bitmap`` lists (bit ``p % 8`` of byte ``p // 8``); it is sent only in rounds that
ask for set nodes. Response: one item per request item: ``null`` (same hash), ``[0, count,
child_bitmap, child_hashes]`` (inner or set node; hashes concatenated, truncated) or
``[1, [key, ...], value_hashes]`` (leaf bucket).

Hashes travel as stored (16 bytes, 128 bits) or truncated to ``hash_bytes`` (8..16). A
stale replica goes unnoticed only if a differing node's (truncated) hash equals ours: for
honest data 2^-128 per comparison at 16 bytes — after 10^15 comparisons still under
10^-23 — and 2^-64 at 8 bytes (10^15 comparisons, years of a large cluster: ~10^-4, and a
missed difference is found by the next run once either side changes). Forging equal hashes
needs the power to choose stored values and 2^64 work at 16 bytes, 2^32 at 8: 8 bytes
saves ~40% of summary traffic but is not forgery-safe, so 16 is the default.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import cbor2

from dfspeer.blockstore.merkle import EMPTY_HASH, HASH_BYTES, MAX_DEPTH, Entry, key_path
from dfspeer.blockstore.summary import (
    EMPTY_NODE,
    MerkleNode,
    SummaryReader,
    set_levels,
    set_span,
    sorted_partitions,
    split_bucket,
)

DEFAULT_HASH_BYTES = 16
MIN_HASH_BYTES, MAX_HASH_BYTES = 8, HASH_BYTES
MAX_ITEMS_PER_REQUEST = 4096
"""Node requests per round trip (bounds each message and the replica's work)."""

Exchange = Callable[[bytes], Awaitable[bytes]]
"""Deliver one request to the replica and return its response (one round trip)."""


@dataclass(frozen=True, order=True)
class KeyDiff:
    """One key whose leaf differs. ``local``: this peer's 16-byte value hash (None: the key
    is missing here); ``remote``: the replica's value hash truncated to ``hash_bytes``
    (None: missing there). For blocks the value hash is the digest's first 16 bytes."""

    partition: int
    key: bytes
    local: bytes | None
    remote: bytes | None

    @property
    def kind(self) -> str:
        """``"missing_here"``, ``"missing_there"`` or ``"different"``."""
        if self.local is None:
            return "missing_here"
        return "missing_there" if self.remote is None else "different"


@dataclass
class SyncStats:
    """Cost of one diff: ``rounds`` (round trips = exchange calls), ``nodes_requested``,
    ``nodes_equal`` (answered "same hash"), bytes of requests sent and responses received."""

    rounds: int = 0
    nodes_requested: int = 0
    nodes_equal: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0

    @property
    def bytes_total(self) -> int:
        return self.bytes_sent + self.bytes_received


@dataclass
class DiffResult:
    """The differing keys (sorted by partition, key) and what finding them cost."""

    diffs: list[KeyDiff] = field(default_factory=list)
    stats: SyncStats = field(default_factory=SyncStats)


# ---------------------------------------------------------------------- wire codec
def partitions_bitmap(partitions: Sequence[int]) -> bytes:
    """Bitmap of a partition set: bit ``p % 8`` of byte ``p // 8``."""
    bits = 0
    for p in partitions:
        bits |= 1 << p
    return bits.to_bytes((max(partitions, default=0) >> 3) + 1, "little")


def bitmap_partitions(bitmap: bytes) -> list[int]:
    """Sorted partitions of a bitmap made by :func:`partitions_bitmap`."""
    bits = int.from_bytes(bitmap, "little")
    return [p for p in range(len(bitmap) * 8) if bits >> p & 1]


def encode_request(
    table: str,
    hash_bytes: int,
    partitions: Sequence[int] | None,
    items: Sequence[tuple[int | None, bytes, bytes]],
) -> bytes:
    """CBOR request for ``items`` ``(partition | None, path, known truncated hash)``."""
    bitmap = None if partitions is None else partitions_bitmap(partitions)
    return bytes(cbor2.dumps([table, hash_bytes, bitmap, [list(i) for i in items]]))


def _decode_request(
    request: bytes,
) -> tuple[str, int, list[int] | None, list[tuple[int | None, bytes, bytes]]]:
    try:
        table, hash_bytes, bitmap, raw_items = cbor2.loads(request)
    except Exception as exc:
        raise ValueError(f"malformed summary request: {exc}") from exc
    if not isinstance(table, str) or type(hash_bytes) is not int:
        raise ValueError("summary request: bad table or hash size")
    if not MIN_HASH_BYTES <= hash_bytes <= MAX_HASH_BYTES:
        raise ValueError(f"summary request: hash size {hash_bytes} not in 8..{HASH_BYTES}")
    if bitmap is not None and not (isinstance(bitmap, bytes) and len(bitmap) <= 8192):
        raise ValueError("summary request: bad partition bitmap")
    if not isinstance(raw_items, list) or len(raw_items) > MAX_ITEMS_PER_REQUEST:
        raise ValueError("summary request: bad item list")
    items: list[tuple[int | None, bytes, bytes]] = []
    for item in raw_items:
        if not (isinstance(item, list) and len(item) == 3):
            raise ValueError("summary request: bad item")
        partition, path, known = item
        if not (partition is None or type(partition) is int):
            raise ValueError("summary request: bad partition")
        if not (isinstance(path, bytes) and isinstance(known, bytes)):
            raise ValueError("summary request: bad path or hash")
        if partition is None and bitmap is None:
            raise ValueError("summary request: set node without partition set")
        items.append((partition, path, known))
    partitions = None if bitmap is None else bitmap_partitions(bitmap)
    return table, hash_bytes, partitions, items


def _encode_node(node: MerkleNode, hash_bytes: int) -> list[Any]:
    if node.leaves is not None:
        keys = [k for k, _ in node.leaves]
        return [1, keys, b"".join(v[:hash_bytes] for _, v in node.leaves)]
    children = node.children or {}
    bitmap = sum(1 << n for n in children)
    hashes = b"".join(children[n][:hash_bytes] for n in sorted(children))
    return [0, node.count, bitmap, hashes]


def _decode_node(raw: Any, hash_bytes: int) -> MerkleNode | None:
    """A node of a response (hashes truncated; ``hash`` left empty), None for "same"."""
    if raw is None:
        return None
    if isinstance(raw, list) and len(raw) == 3 and raw[0] == 1:
        keys, hashes = raw[1], raw[2]
        if not (
            isinstance(keys, list)
            and all(isinstance(k, bytes) for k in keys)
            and isinstance(hashes, bytes)
            and len(hashes) == hash_bytes * len(keys)
        ):
            raise ValueError("summary response: bad leaf bucket")
        leaves = [(k, hashes[i * hash_bytes : (i + 1) * hash_bytes]) for i, k in enumerate(keys)]
        return MerkleNode(b"", len(leaves), None, leaves)
    if isinstance(raw, list) and len(raw) == 4 and raw[0] == 0:
        count, bitmap, hashes = raw[1], raw[2], raw[3]
        if not (type(count) is int and type(bitmap) is int and isinstance(hashes, bytes)):
            raise ValueError("summary response: bad inner node")
        nibbles = [n for n in range(16) if bitmap >> n & 1]
        if bitmap >> 16 or len(hashes) != hash_bytes * len(nibbles):
            raise ValueError("summary response: bad inner node")
        children = {n: hashes[i * hash_bytes : (i + 1) * hash_bytes] for i, n in enumerate(nibbles)}
        return MerkleNode(b"", count, children, None)
    raise ValueError("summary response: bad node")


# ---------------------------------------------------------------------- replica side
def serve(open_reader: Callable[[str], SummaryReader], request: bytes) -> bytes:
    """Answer one summary request (the replica's side of :func:`diff`).

    ``open_reader(table)`` gives the summary of a table the caller is willing to expose
    (it should refuse unknown names, e.g. with ValueError, rather than create tables).
    Raises ValueError for a malformed request (answer it with a 400).
    """
    table, hash_bytes, partitions, items = _decode_request(request)
    reader = open_reader(table)
    out: list[Any] = []
    for partition, path, known in items:
        if partition is None:
            assert partitions is not None
            node = reader.set_node(partitions, path)
        else:
            node = reader.node(partition, path)
        out.append(None if node.hash[:hash_bytes] == known else _encode_node(node, hash_bytes))
    return bytes(cbor2.dumps(out))


# ---------------------------------------------------------------------- initiator side
@dataclass(frozen=True)
class _Pending:
    partition: int | None  # None: a node of the set tree
    path: bytes
    local: MerkleNode


class _Diff:
    """State of one diff run (see :func:`diff`)."""

    def __init__(self, local: SummaryReader, partitions: list[int], hash_bytes: int) -> None:
        self.local = local
        self.partitions = partitions
        self.levels = set_levels(len(partitions))
        self.hb = hash_bytes
        self.result = DiffResult()

    def _t(self, digest: bytes) -> bytes:
        return digest[: self.hb]

    def missing_there(self, partition: int, entries: Iterable[Entry]) -> None:
        self.result.diffs += (KeyDiff(partition, k, v, None) for k, v in entries)

    def compare_leaves(self, partition: int, mine: list[Entry], theirs: list[Entry]) -> None:
        here, there = dict(mine), dict(theirs)
        for key in here.keys() | there.keys():
            lv, rv = here.get(key), there.get(key)
            if lv is None or rv is None or self._t(lv) != rv:
                self.result.diffs.append(KeyDiff(partition, key, lv, rv))

    def expand(self, item: _Pending, remote: MerkleNode) -> list[_Pending]:
        """Compare a differing node; return the children to ask the replica for."""
        if item.partition is None:
            return self._expand_set(item, remote)
        partition, path, local = item.partition, item.path, item.local
        if remote.leaves is not None:
            if any(key_path(k)[: len(path)] != path for k, _ in remote.leaves):
                raise ValueError("summary response: a leaf outside the subtree asked for")
            mine = local.leaves if local.leaves is not None else self.local.entries(partition, path)
            self.compare_leaves(partition, mine, remote.leaves)
            return []
        assert remote.children is not None
        if local.children is not None:
            hashes = local.children
            nodes: dict[int, MerkleNode] | None = None
        else:  # a bucket here, an inner node there: compare the bucket's canonical children
            nodes = split_bucket(local, len(path))
            hashes = {n: node.hash for n, node in nodes.items()}
        out: list[_Pending] = []
        for nibble in sorted(hashes.keys() | remote.children.keys()):
            mine_hash = self._t(hashes.get(nibble, EMPTY_HASH))
            theirs = remote.children.get(nibble)
            if theirs == mine_hash:
                continue
            child = path + bytes((nibble,))
            if theirs is None:
                if nodes is not None:
                    self.missing_there(partition, nodes[nibble].leaves or [])
                else:
                    self.missing_there(partition, self.local.entries(partition, child))
                continue
            if len(child) > MAX_DEPTH:
                raise ValueError("summary response: trie deeper than 32 nibbles")
            if nodes is not None:
                node = nodes.get(nibble, EMPTY_NODE)
            else:
                node = self.local.node(partition, child)
            out.append(_Pending(partition, child, node))
        return out

    def _expand_set(self, item: _Pending, remote: MerkleNode) -> list[_Pending]:
        start, end, width = set_span(len(self.partitions), item.path)
        mine = item.local.children or {}
        theirs = remote.children
        if theirs is None:
            raise ValueError("summary response: a set node must be an inner node")
        out: list[_Pending] = []
        for index in range((end - start + width - 1) // width):
            if self._t(mine.get(index, EMPTY_HASH)) == theirs.get(index, self._t(EMPTY_HASH)):
                continue
            lo = start + index * width
            if width == 1:  # the child is a partition's root
                partition = self.partitions[lo]
                if index not in theirs:
                    self.missing_there(partition, self.local.entries(partition))
                else:
                    out.append(_Pending(partition, b"", self.local.node(partition)))
                continue
            path = item.path + bytes((index,))
            if index not in theirs:
                for partition in self.partitions[lo : min(lo + width, end)]:
                    self.missing_there(partition, self.local.entries(partition))
            else:
                node = self.local.set_node(self.partitions, path)
                out.append(_Pending(None, path, node))
        return out


async def diff(
    local: SummaryReader,
    table: str,
    partitions: Iterable[int],
    exchange: Exchange,
    *,
    hash_bytes: int = DEFAULT_HASH_BYTES,
    max_items: int = MAX_ITEMS_PER_REQUEST,
) -> DiffResult:
    """Keys of ``table`` whose leaves differ between ``local`` and the replica behind
    ``exchange``, over ``partitions`` (the partitions both replicate).

    Breadth-first: each round sends every pending node (at most ``max_items``) in one
    request. The summaries are read as they are during the walk (concurrent writes may
    add or hide differences; anti-entropy simply runs again). Raises ValueError if the
    replica's answers are malformed, and whatever ``exchange`` raises.
    """
    if not MIN_HASH_BYTES <= hash_bytes <= MAX_HASH_BYTES:
        raise ValueError(f"hash_bytes must be in 8..{HASH_BYTES}, got {hash_bytes}")
    ps = sorted_partitions(partitions)
    state = _Diff(local, ps, hash_bytes)
    stats = state.result.stats
    pending = [_Pending(None, b"", local.set_node(ps))] if ps else []
    while pending:
        batch, pending = pending[:max_items], pending[max_items:]
        sets = any(item.partition is None for item in batch)
        items = [(i.partition, i.path, i.local.hash[:hash_bytes]) for i in batch]
        request = encode_request(table, hash_bytes, ps if sets else None, items)
        response = await exchange(request)
        stats.rounds += 1
        stats.nodes_requested += len(batch)
        stats.bytes_sent += len(request)
        stats.bytes_received += len(response)
        try:
            nodes = cbor2.loads(response)
        except Exception as exc:
            raise ValueError(f"malformed summary response: {exc}") from exc
        if not isinstance(nodes, list) or len(nodes) != len(batch):
            raise ValueError("summary response: wrong number of nodes")
        for item, raw in zip(batch, nodes, strict=True):
            remote = _decode_node(raw, hash_bytes)
            if remote is None:
                stats.nodes_equal += 1
                continue
            pending += state.expand(item, remote)
    state.result.diffs.sort(key=lambda d: (d.partition, d.key))
    return state.result
