"""In-memory network for SWIM core tests: a fake clock, fixed latency, per-link drops.

Drives :class:`dfspeer.gossip.Swim` instances exactly as a driver would (tick at
``next_deadline()``, deliver datagrams, push-pull through ``local_state``/``merge_state``),
in virtual time, deterministically.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterable

from dfspeer.gossip import (
    EventKind,
    Keyring,
    Member,
    MemberEvent,
    MemberState,
    Swim,
    SwimConfig,
)

Address = tuple[str, int]
KEYRING = Keyring([bytes(range(32))])


def make_member(i: int, *, incarnation: int = 0, zone: str = "") -> Member:
    return Member(
        id=f"node-{i}",
        gossip_address=(f"10.0.0.{i}", 7946),
        api_address=f"10.0.0.{i}:7070",
        incarnation=incarnation,
        state=MemberState.ALIVE,
        zone=zone,
    )


class Net:
    """Swim instances wired through a lossless in-memory network with ``latency_s``."""

    def __init__(
        self, *, seed: int = 1, config: SwimConfig | None = None, latency_s: float = 0.002
    ) -> None:
        self.config = config or SwimConfig()
        self.latency_s = latency_s
        self.rng = random.Random(seed)
        self.now = 0.0
        self.nodes: dict[Address, Swim] = {}
        self.down: set[Address] = set()
        self.blocked: set[tuple[Address, Address]] = set()  # (src, dst) links that drop
        self.events: dict[str, list[MemberEvent]] = {}
        self.delivered = 0
        self._heap: list[tuple[float, int, Address, Address, bytes]] = []
        self._seq = 0
        self.tap: Callable[[Address, Address, bytes], None] | None = None

    # ------------------------------------------------------------------ setup
    def add(
        self, member: Member, *, keyring: Keyring = KEYRING, config: SwimConfig | None = None
    ) -> Swim:
        swim = Swim(config or self.config, member, keyring, random.Random(self.rng.random()))
        self.nodes[member.gossip_address] = swim
        self.events[member.id] = []
        self.down.discard(member.gossip_address)
        swim.tick(self.now)
        self._collect(swim)
        return swim

    def cluster(self, n: int) -> list[Swim]:
        """``n`` members that all join through the first one, run until converged."""
        swims = [self.add(make_member(i + 1)) for i in range(n)]
        seed = swims[0].local.gossip_address
        for s in swims[1:]:
            s.join([seed], self.now)
            self._collect(s)
        assert self.run_until(lambda: self.converged(swims), 60.0)
        return swims

    def crash(self, swim: Swim) -> None:
        self.down.add(swim.local.gossip_address)

    def block(self, a: Swim, b: Swim, *, both: bool = True) -> None:
        self.blocked.add((a.local.gossip_address, b.local.gossip_address))
        if both:
            self.blocked.add((b.local.gossip_address, a.local.gossip_address))

    def partition(self, *sides: Iterable[Swim]) -> None:
        """Drop every datagram and push-pull between members of different ``sides``."""
        groups = [[s.local.gossip_address for s in side] for side in sides]
        for i, a_side in enumerate(groups):
            for b_side in groups[i + 1 :]:
                for a in a_side:
                    for b in b_side:
                        self.blocked.update({(a, b), (b, a)})

    def heal(self) -> None:
        """Undo every ``block`` and ``partition``."""
        self.blocked.clear()

    def inject(self, dst: Swim, data: bytes, src: Address = ("10.9.9.9", 7946)) -> None:
        """Deliver raw bytes now, outside the network (tests of hostile input)."""
        dst.receive(data, src, self.now)
        self._collect(dst)

    # ------------------------------------------------------------------ running
    def _collect(self, swim: Swim) -> None:
        src = swim.local.gossip_address
        for dst, data in swim.drain_datagrams():
            if self.tap is not None:
                self.tap(src, dst, data)
            if (src, dst) in self.blocked or src in self.down:
                continue
            self._seq += 1
            heapq.heappush(self._heap, (self.now + self.latency_s, self._seq, src, dst, data))
        self.events[swim.local.id].extend(swim.drain_events())
        for dst in swim.drain_push_pull():
            peer = self.nodes.get(dst)
            if peer is None or dst in self.down or (src, dst) in self.blocked:
                continue
            peer.merge_state(swim.local_state(), self.now)
            swim.merge_state(peer.local_state(), self.now)
            self._collect(peer)
            self._collect(swim)

    def step(self) -> bool:
        """Process the next delivery or timer; False if nothing is pending."""
        due: Swim | None = None
        t_tick = float("inf")
        for swim in self.up():
            deadline = swim.next_deadline()
            if deadline < t_tick:
                t_tick, due = deadline, swim
        if self._heap and self._heap[0][0] <= t_tick:
            t_msg, _, src, dst, data = heapq.heappop(self._heap)
            self.now = max(self.now, t_msg)
            target = self.nodes.get(dst)
            if target is not None and dst not in self.down:
                target.receive(data, src, self.now)
                self.delivered += 1
                self._collect(target)
            return True
        if due is None:
            return False
        self.now = max(self.now, t_tick)
        due.tick(self.now)
        self._collect(due)
        return True

    def run(self, duration_s: float) -> None:
        end = self.now + duration_s
        while self._next_time() <= end:
            self.step()
        self.now = end

    def run_until(self, cond: Callable[[], bool], timeout_s: float) -> bool:
        end = self.now + timeout_s
        while not cond():
            if self._next_time() > end:
                return cond()
            self.step()
        return True

    def _next_time(self) -> float:
        times = [s.next_deadline() for a, s in self.nodes.items() if a not in self.down]
        if self._heap:
            times.append(self._heap[0][0])
        return min(times, default=float("inf"))

    # ------------------------------------------------------------------ views
    def up(self) -> list[Swim]:
        return [s for a, s in self.nodes.items() if a not in self.down]

    @staticmethod
    def state_of(viewer: Swim, member_id: str) -> MemberState | None:
        m = viewer.member(member_id)
        return None if m is None else m.state

    def converged(self, swims: Iterable[Swim]) -> bool:
        swims = list(swims)
        ids = {s.local.id for s in swims}
        return all(
            {m.id for m in s.members() if m.state is MemberState.ALIVE} >= ids for s in swims
        )

    def kinds(self, viewer: Swim, about: str) -> list[EventKind]:
        return [e.kind for e in self.events[viewer.local.id] if e.member.id == about]
