"""ClusterView: this peer's current picture of the cluster (ring + who is reachable).

Built from gossip membership (:class:`dfspeer.gossip.Member`). The ring is rebuilt from the
ALIVE and SUSPECT members only: a SUSPECT member is reachable-but-doubtful and is still
tried (an unanswered request simply counts as a failed ack), a DEAD or LEFT one is out of
the preference lists until it comes back.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from dfspeer.gossip import Member, MemberState
from dfspeer.ring import Ring, RingMember

_IN_RING = (MemberState.ALIVE, MemberState.SUSPECT)


class ClusterView:
    """Ring + member table of one peer. Cheap to query; rebuilt by :meth:`update`.

    ``partition_bits``: the ring has ``2**partition_bits`` partitions;
    ``replication_factor``: replicas per partition (N).
    """

    def __init__(self, self_id: str, *, partition_bits: int, replication_factor: int) -> None:
        self.self_id = self_id
        self.partition_bits = partition_bits
        self.replication_factor = replication_factor
        self._members: dict[str, Member] = {}
        self._replicas: dict[int, tuple[str, ...]] = {}  # cache for the current ring
        self.ring: Ring = Ring.build(
            [], partition_bits=partition_bits, replication_factor=replication_factor
        )

    # ------------------------------------------------------------------ updates
    def update(self, members: Sequence[Member]) -> bool:
        """Replace the member table with ``members`` (any states) and rebuild the ring from
        the ALIVE + SUSPECT ones. Returns True if the ring digest changed."""
        self._members = {m.id: m for m in members}
        ring = Ring.build(
            (
                RingMember(m.id, m.zone, m.weight)
                for m in self._members.values()
                if m.state in _IN_RING
            ),
            partition_bits=self.partition_bits,
            replication_factor=self.replication_factor,
        )
        changed = ring.digest != self.ring.digest
        if changed:
            self._replicas = {}
        self.ring = ring
        return changed

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
        """Ids of the members in the ring (ALIVE + SUSPECT), sorted."""
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
        """Every ring member in preference order (replicas first): where to look for a
        block last, e.g. after a ring change moved a partition."""
        return self.ring.preference_list(partition, len(self.ring.members))

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
