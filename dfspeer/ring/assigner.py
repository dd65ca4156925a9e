"""Bounded-load assignment of partitions to peers by deferred acceptance.

Partitions walk the vnode ring clockwise from their token and propose to each distinct peer
they meet (consistent hashing with bounded loads, Mirrokni, Thorup, Zadimoghaddam, SODA
2018); a peer at capacity keeps the partitions nearest to its vnodes and rejects the
farthest, which walk on (deferred acceptance, Gale & Shapley 1962). Zone spreading limits
how many replicas of one partition a zone may hold. Inputs come from
:mod:`dfspeer.ring.placement`, which documents the rules and the capacity formula.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left
from collections import deque
from collections.abc import Sequence

HASH_MASK = (1 << 64) - 1


class BoundedAssigner:
    """Deferred acceptance of partitions by capacity-bounded peers.

    Inputs: ``tokens`` (``V`` sorted vnode tokens in ``[0, 2**64)``), ``owners`` (peer index
    of each vnode), ``zones`` (zone index of each of the ``M`` peers), ``limit`` (replicas
    of one partition a zone may hold), ``caps`` (replica assignments each peer may hold),
    ``partition_bits`` (``Q = 2**P`` partitions, partition ``p`` starts at ``p << (64-P)``)
    and ``replicas`` (per partition, ``1..M``). :meth:`run` returns the placement.

    State per partition ``p``: its walk position (vnodes passed, ``0..V``), the peers it has
    proposed to (``seen``: held or rejected it), the peers holding it and its replicas per
    zone. Per peer: a heap of held ``(-distance, -partition)``, worst on top.
    """

    def __init__(
        self,
        tokens: Sequence[int],
        owners: Sequence[int],
        zones: Sequence[int],
        limit: int,
        caps: Sequence[int],
        partition_bits: int,
        replicas: int,
    ) -> None:
        self.tokens = tokens
        self.owners = owners
        self.zones = zones
        self.limit = limit
        self.caps = caps
        self.vnodes = len(tokens)
        self.zoned = limit < replicas
        self.shift = 64 - partition_bits
        count = 1 << partition_bits
        self.start = [bisect_left(tokens, p << self.shift) for p in range(count)]
        self.pos = [0] * count
        self.need = [replicas] * count
        self.seen: list[set[int]] = [set() for _ in range(count)]
        self.held: list[set[int]] = [set() for _ in range(count)]
        self.zone_count: list[dict[int, int]] = [{} for _ in range(count)]
        self.heaps: list[list[tuple[int, int]]] = [[] for _ in caps]
        self.queue: deque[int] = deque(range(count))

    def run(self) -> list[tuple[int, ...]]:
        """Assign every partition; returns its replicas' peer indices, nearest first."""
        while self.queue:
            self._propose(self.queue.popleft())
        self._repair()
        chosen: list[list[tuple[int, int]]] = [[] for _ in self.start]
        for peer, heap in enumerate(self.heaps):
            for neg_distance, neg_partition in heap:
                chosen[-neg_partition].append((-neg_distance, peer))
        return [tuple(peer for _, peer in sorted(c)) for c in chosen]

    def _zone_full(self, p: int, peer: int) -> bool:
        return self.zoned and self.zone_count[p].get(self.zones[peer], 0) >= self.limit

    def _propose(self, p: int) -> None:
        tokens, owners, vnodes = self.tokens, self.owners, self.vnodes
        origin = p << self.shift
        seen = self.seen[p]
        while self.need[p] > 0:
            step = self.pos[p]
            if step >= vnodes:
                self._force(p)
                continue
            self.pos[p] = step + 1
            j = self.start[p] + step
            if j >= vnodes:
                j -= vnodes
            peer = owners[j]
            if peer in seen or self._zone_full(p, peer):
                continue
            seen.add(peer)
            key = (-((tokens[j] - origin) & HASH_MASK), -p)
            heap = self.heaps[peer]
            if len(heap) < self.caps[peer]:
                heapq.heappush(heap, key)
                self._hold(p, peer)
            elif key > heap[0]:  # nearer than the farthest partition the peer holds
                evicted = -heapq.heapreplace(heap, key)[1]
                self._hold(p, peer)
                self._release(evicted, peer)

    def _hold(self, p: int, peer: int) -> None:
        self.held[p].add(peer)
        self.need[p] -= 1
        if self.zoned:
            zone = self.zones[peer]
            self.zone_count[p][zone] = self.zone_count[p].get(zone, 0) + 1

    def _release(self, p: int, peer: int, *, requeue: bool = True) -> None:
        """``peer`` rejected partition ``p`` it held: ``p`` walks on (or again, if a zone freed)."""
        self.held[p].discard(peer)
        self.need[p] += 1
        if self.zoned:
            zone = self.zones[peer]
            counts = self.zone_count[p]
            if counts[zone] == self.limit:
                self.pos[p] = 0  # peers of that zone were skipped; reconsider them
            counts[zone] -= 1
        if requeue:
            self.queue.append(p)

    def _force(self, p: int) -> None:
        """No peer with room after a full turn: take the first fitting peer above capacity.

        One always fits: :func:`zone_limit` makes ``sum(min(limit, size)) >= replicas``, so
        while ``p`` holds fewer than ``replicas`` some zone has both room under the limit
        and a peer ``p`` does not hold yet.
        """
        origin = p << self.shift
        for step in range(self.vnodes):
            j = (self.start[p] + step) % self.vnodes
            peer = self.owners[j]
            if peer in self.held[p] or self._zone_full(p, peer):
                continue
            self.seen[p].add(peer)
            heapq.heappush(self.heaps[peer], (-((self.tokens[j] - origin) & HASH_MASK), -p))
            self._hold(p, peer)
            return
        raise AssertionError("no peer fits; zone_limit() guarantees one")

    def _repair(self) -> None:
        """Move forced placements off peers above capacity where a peer with room fits.

        Deferred acceptance can strand capacity when a few heavy peers should hold nearly
        every partition (e.g. 5 peers weighted 2, 2, 1, 0.5, 0.5): partitions fill up on
        light peers before their walk reaches a heavy one, and the last ones are forced
        above capacity. For each over-capacity peer (index order), its farthest partitions
        move to the first peer clockwise with room that keeps the partition's replicas
        distinct and zone-spread. Does nothing when no placement was forced.
        """
        for peer, heap in enumerate(self.heaps):
            if len(heap) <= self.caps[peer]:
                continue
            for neg_distance, neg_partition in sorted(heap):  # farthest first
                if len(heap) <= self.caps[peer]:
                    break
                p = -neg_partition
                found = self._substitute(p, peer)
                if found is None:
                    continue
                other, key = found
                heap.remove((neg_distance, neg_partition))
                heapq.heapify(heap)
                heapq.heappush(self.heaps[other], key)
                self._release(p, peer, requeue=False)
                self._hold(p, other)

    def _substitute(self, p: int, peer: int) -> tuple[int, tuple[int, int]] | None:
        """First peer clockwise from ``p``'s token with room that may replace ``peer``."""
        origin = p << self.shift
        old_zone = self.zones[peer]
        for step in range(self.vnodes):
            j = (self.start[p] + step) % self.vnodes
            other = self.owners[j]
            if other in self.held[p] or len(self.heaps[other]) >= self.caps[other]:
                continue
            zone = self.zones[other]
            if self.zoned and zone != old_zone and self.zone_count[p].get(zone, 0) >= self.limit:
                continue
            return other, (-((self.tokens[j] - origin) & HASH_MASK), -p)
        return None
