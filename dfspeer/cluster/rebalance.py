"""Ring changes: hand partitions this peer no longer replicates to their new owners.

After a ring change (a peer joined, left, drained, or stayed dead past
``dead_member_evict_s``) this peer may hold blocks and records of partitions it is no longer
a replica of ("orphans"). :meth:`Rebalancer.handoff` moves them, in batches of partitions:

1. snapshot the orphan partitions' leaves — ``(key, value hash)`` per tree, from the
   Merkle summaries;
2. for each current replica of those partitions that is ALIVE: push what it lacks
   (:meth:`AntiEntropy.sync` with ``pull=False``), then diff again: a replica *confirms* a
   partition when that second diff finds nothing it lacks (records it holds in a newer
   version count as held);
3. drop the snapshot's keys of every partition that **all** its current replicas confirmed
   — a key only if it still has the snapshot's value (a block: still present; a record:
   the same canonical value), so a write that landed meanwhile is kept for the next pass.

A partition whose replicas are not all reachable and confirmed is kept (never the last
copy: with every replica confirmed, at least ``min(N, ring size)`` other copies exist).
Garage's table sync does the same ("offload" of partitions no longer in the layout).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from dfspeer.blockstore import BlockStore, DeleteBlock, TableUpdate, WriteOp
from dfspeer.blockstore.merkle import BLOCKS_TREE, Entry, value_hash
from dfspeer.blockstore.tables import encode
from dfspeer.cluster.antientropy import AntiEntropy
from dfspeer.cluster.handoff import HINTS_TABLE, block_hint_prefix
from dfspeer.cluster.view import ClusterView

log = logging.getLogger(__name__)

BATCH_PARTITIONS = 64
"""Orphan partitions snapshotted and handed off together (bounds the snapshot's memory)."""
DROP_BATCH = 256
"""Keys deleted per write transaction when dropping a handed-off partition."""


def held_partitions(
    store: BlockStore, trees: Iterable[str], partition_count: int
) -> dict[int, int]:
    """Partitions holding any key in any of ``trees`` -> keys held (sum over trees).

    One summary root read per (tree, partition): run it in a thread for large rings."""
    held: dict[int, int] = {}
    for tree in trees:
        reader = store.merkle(tree)
        for partition in range(partition_count):
            count = reader.node(partition).count
            if count:
                held[partition] = held.get(partition, 0) + count
    return held


@dataclass
class HandoffReport:
    """``moved``: partitions confirmed by all their replicas and dropped here;
    ``kept``: orphan partitions still held (a replica unreachable or not yet complete);
    ``pushed``: keys sent; ``dropped``: keys deleted here; ``bytes_moved``: bytes sent."""

    moved: set[int] = field(default_factory=set)
    kept: set[int] = field(default_factory=set)
    pushed: int = 0
    dropped: int = 0
    bytes_moved: int = 0


class Rebalancer:
    """Hands orphan partitions to their replicas and drops them here (see module doc)."""

    def __init__(self, antientropy: AntiEntropy) -> None:
        self.ae = antientropy
        self.view: ClusterView = antientropy.view
        self.store: BlockStore = antientropy.store

    def orphans(self, held: Iterable[int]) -> set[int]:
        """Partitions of ``held`` this peer is not a replica of in the current ring."""
        mine = set(self.view.ring.partitions_of(self.view.self_id))
        return {p for p in held if p not in mine}

    async def handoff(self, partitions: Iterable[int]) -> HandoffReport:
        """Move ``partitions`` (orphans) to their replicas; drop what all confirmed."""
        report = HandoffReport()
        todo = sorted(set(partitions))
        for i in range(0, len(todo), BATCH_PARTITIONS):
            await self._handoff_batch(todo[i : i + BATCH_PARTITIONS], report)
        return report

    async def _handoff_batch(self, batch: list[int], report: HandoffReport) -> None:
        ring_ids = set(self.view.ring_peers())
        snapshot = await asyncio.to_thread(self._snapshot, batch)
        owners: dict[str, set[int]] = {}
        confirmed: dict[int, set[str]] = {p: set() for p in batch}
        for p in batch:
            for peer in self.view.replicas(p):
                if peer != self.view.self_id and peer in ring_ids:
                    owners.setdefault(peer, set()).add(p)
        for peer, ps in sorted(owners.items()):
            if not self.view.is_alive(peer):
                continue
            try:
                first = await self.ae.sync(peer, ps, pull=False)
                report.pushed += first.pushed
                report.bytes_moved += first.bytes_moved
                check = await self.ae.sync(peer, ps, pull=False) if first.differences else first
            except Exception as exc:
                log.info("handoff of %d partition(s) to %s failed: %s", len(ps), peer, exc)
                continue
            report.pushed += check.pushed if check is not first else 0
            for p in ps - check.lacking:
                confirmed[p].add(peer)
        for p in batch:
            replicas = self.view.replicas(p)  # the ring may have changed back meanwhile
            if replicas and self.view.self_id not in replicas and set(replicas) <= confirmed[p]:
                report.dropped += await self._drop(snapshot[p])
                report.moved.add(p)
            else:
                report.kept.add(p)

    def _snapshot(self, batch: list[int]) -> dict[int, dict[str, list[Entry]]]:
        return {
            p: {tree: self.store.merkle(tree).entries(p) for tree in self.ae.trees} for p in batch
        }

    async def _drop(self, leaves: dict[str, list[Entry]]) -> int:
        """Delete the snapshotted keys that still have the snapshot's value; return how many
        ops were applied (a key changed meanwhile is kept, and so is a block a pending
        hinted-handoff hint still needs)."""
        ops: list[WriteOp] = []
        hints = self.store.table(HINTS_TABLE)
        for tree, entries in leaves.items():
            for key, vhash in entries:
                if tree == BLOCKS_TREE:
                    # a stand-in's copy waits for its hint's delivery
                    if not hints.has_prefix(block_hint_prefix(key)):
                        ops.append(DeleteBlock(key))
                else:
                    ops.append(TableUpdate(tree, key, _drop_if(vhash)))
        for i in range(0, len(ops), DROP_BATCH):
            await self.store.write_batch(ops[i : i + DROP_BATCH])
        return len(ops)


def _drop_if(vhash: bytes) -> Any:
    """TableUpdate fn: delete the record if its canonical value still hashes to ``vhash``."""

    def fn(current: Any | None) -> Any | None:
        if current is not None and value_hash(encode(current)) == vhash:
            return None
        return current

    return fn
