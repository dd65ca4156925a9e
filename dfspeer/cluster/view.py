"""ClusterView: this peer's current picture of the cluster (ring + who is reachable).

Built from gossip membership (:class:`dfspeer.gossip.Member`). The ring holds the ALIVE and
SUSPECT members, and the DEAD ones for ``dead_member_evict_s`` seconds after this peer first
saw them dead: a SUSPECT member is reachable-but-doubtful and is still tried (an unanswered
request simply counts as a failed ack); a short outage (a restart, a crash, a network blip)
keeps the dead peer's partitions where they are instead of reshuffling data twice — writes
meanwhile miss it (hinted handoff / anti-entropy fill it later). Past that time, or once it
LEFT gracefully, it is out of the ring and its partitions move (:mod:`.rebalance`). A member
gossiping weight 0 is *draining* (``dfspeer drain``): out of the ring for everyone, but still
asked for data it holds (:meth:`ClusterView.extended_preference`) until it leaves.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence

from dfspeer.gossip import Member, MemberState
from dfspeer.ring import Ring, RingMember

_IN_RING = (MemberState.ALIVE, MemberState.SUSPECT)


class ClusterView:
    """Ring + member table of one peer. Cheap to query; rebuilt by :meth:`update`.

    ``partition_bits``: the ring has ``2**partition_bits`` partitions;
    ``replication_factor``: replicas per partition (N); ``dead_member_evict_s``: how long a
    DEAD member stays in the ring (0: leaves it at once); ``clock``: monotonic seconds.
    """

    def __init__(
        self,
        self_id: str,
        *,
        partition_bits: int,
        replication_factor: int,
        dead_member_evict_s: float = 0.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.self_id = self_id
        self.dead_member_evict_s = dead_member_evict_s
        self._clock = clock
        self._dead_since: dict[str, float] = {}
        self.partition_bits = partition_bits
        self.replication_factor = replication_factor
        self._members: dict[str, Member] = {}
        self._replicas: dict[int, tuple[str, ...]] = {}  # cache for the current ring
        self._ring_input: frozenset[RingMember] = frozenset()  # what self.ring was built from
        self.ring: Ring = Ring.build(
            [], partition_bits=partition_bits, replication_factor=replication_factor
        )

    # ------------------------------------------------------------------ updates
    def update(self, members: Sequence[Member]) -> bool:
        """Replace the member table with ``members`` (any states) and rebuild the ring from
        the ALIVE + SUSPECT ones, plus the DEAD ones not yet past ``dead_member_evict_s``,
        minus the draining ones (weight 0). Returns True if the ring digest changed. Call it
        again now and then (a dead member's eviction is a matter of time, not of events)."""
        self._members = {m.id: m for m in members}
        now = self._clock()
        for m in members:
            if m.state is MemberState.DEAD:
                self._dead_since.setdefault(m.id, now)
            else:
                self._dead_since.pop(m.id, None)
        for gone in [p for p in self._dead_since if p not in self._members]:
            del self._dead_since[gone]
        ring_input = frozenset(
            RingMember(m.id, m.zone, m.weight)
            for m in self._members.values()
            if m.weight > 0 and self._in_ring(m, now)
        )
        if ring_input == self._ring_input:
            return False  # the same members: the same ring (Ring.build is deterministic)
        ring = Ring.build(
            ring_input,
            partition_bits=self.partition_bits,
            replication_factor=self.replication_factor,
        )
        self._ring_input = ring_input
        changed = ring.digest != self.ring.digest
        if changed:
            self._replicas = {}
        self.ring = ring
        return changed

    def _in_ring(self, member: Member, now: float) -> bool:
        if member.state in _IN_RING:
            return True
        if member.state is not MemberState.DEAD:
            return False
        return now - self._dead_since.get(member.id, now) < self.dead_member_evict_s

    def next_eviction(self) -> float | None:
        """Clock time at which the next DEAD member leaves the ring, None if none will."""
        times = [
            since + self.dead_member_evict_s
            for peer, since in self._dead_since.items()
            if any(m.peer_id == peer for m in self.ring.members)
        ]
        return min(times, default=None)

    def is_draining(self, peer_id: str) -> bool:
        """True if the member gossips weight 0 (``dfspeer drain``) and is not gone."""
        member = self._members.get(peer_id)
        return member is not None and member.weight <= 0 and member.is_live

    # ------------------------------------------------------------------ queries
    def members(self) -> list[Member]:
        """Every known member (any state), sorted by id."""
        return [self._members[k] for k in sorted(self._members)]

    def member(self, peer_id: str) -> Member | None:
        return self._members.get(peer_id)

    def address(self, peer_id: str) -> str | None:
        """API ``host:port`` of a member, or None if unknown."""
        member = self._members.get(peer_id)
        return member.api_address if member is not None else None

    def is_alive(self, peer_id: str) -> bool:
        """True only for ALIVE (SUSPECT members are still tried, but ranked after)."""
        member = self._members.get(peer_id)
        return member is not None and member.state is MemberState.ALIVE

    def ring_peers(self) -> tuple[str, ...]:
        """Ids of the members in the ring (see :meth:`update`), sorted."""
        return tuple(m.peer_id for m in self.ring.members)

    def partition_of(self, key: bytes) -> int:
        """Partition of a placement key (chunk digest, or ``bucket/key`` for a manifest)."""
        return self.ring.partitioner.partition(key)

    def replicas(self, partition: int) -> tuple[str, ...]:
        """The partition's replicas: the first N entries of its preference list."""
        found = self._replicas.get(partition)
        if found is None:
            found = self._replicas[partition] = self.ring.preference_list(partition)
        return found

    def extended_preference(self, partition: int) -> tuple[str, ...]:
        """Every ring member in preference order (replicas first), then the draining
        members: where to look for a block last, e.g. after a ring change moved a
        partition and its new owners are still being filled."""
        ordered = self.ring.preference_list(partition, len(self.ring.members))
        draining = tuple(p for p in sorted(self._members) if self.is_draining(p))
        return ordered + draining

    def rank_for_read(self, peers: Iterable[str], rotate: int = 0) -> list[str]:
        """``peers`` ordered for reading: self first, then ALIVE (rotated by ``rotate`` to
        spread load), then SUSPECT / unknown."""
        ordered = list(peers)
        local = [p for p in ordered if p == self.self_id]
        alive = [p for p in ordered if p != self.self_id and self.is_alive(p)]
        doubtful = [p for p in ordered if p != self.self_id and not self.is_alive(p)]
        if alive:
            k = rotate % len(alive)
            alive = alive[k:] + alive[:k]
        return local + alive + doubtful
