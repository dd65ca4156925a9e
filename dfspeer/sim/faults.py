"""The fault schedule: drawn from the seed before the run, printed with a failure.

A :class:`Fault` starts at ``at_s`` (virtual seconds) and, for the kinds that end, lasts
``for_s``. Kinds: ``crash`` (the peer stops at once, losing its unacknowledged writes, and
restarts after ``for_s``), ``wipe`` (a crash whose data directory is deleted before the
restart; at most one a run), ``partition`` (``peers`` cannot talk to the others),
``lossy`` (each message lost with probability ``value``), ``slow`` (one-way delays up to
``value`` seconds, so messages reorder), ``skew`` (the peer's wall clock jumps by
``value`` seconds, for good), ``join`` (a new, empty peer joins; at most two a run) and
``drain`` (the peer is drained with the product's :class:`~dfspeer.cluster.drain.Drainer`
and leaves; skipped unless more than N peers are in the ring then).
"""

from __future__ import annotations

import random
from dataclasses import dataclass

KINDS = ("crash", "wipe", "partition", "lossy", "slow", "skew", "join", "drain")


@dataclass(frozen=True)
class Fault:
    at_s: float
    kind: str
    peers: tuple[str, ...] = ()
    for_s: float = 0.0
    value: float = 0.0

    def __str__(self) -> str:
        what = f"{self.kind} {','.join(self.peers) or '-'}"
        extra = f" value={self.value:.3f}" if self.value else ""
        return f"t={self.at_s:8.3f}s {what} for={self.for_s:.1f}s{extra}"


def draw_schedule(
    rng: random.Random, peers: list[str], *, span_s: float, count: int
) -> list[Fault]:
    """``count`` faults over ``[0, span_s)``, sorted by start; one wipe at most, a crash
    or wipe never starts while another peer is down, and joining peers are named on from
    ``peers`` (``p3``, ``p4`` after ``p0..p2``)."""
    faults: list[Fault] = []
    down_until = 0.0
    wiped = False
    joins = 0
    for _ in range(count):
        at = rng.uniform(0, span_s)
        kind = rng.choice(KINDS)
        peer = rng.choice(peers)
        if kind in ("crash", "wipe") and (at < down_until or (kind == "wipe" and wiped)):
            kind = "lossy"
        if kind == "join":
            joins += 1
            if joins > 2:
                kind = "slow"
        if kind in ("crash", "wipe"):
            length = rng.uniform(1.0, 30.0)
            down_until = at + length + 5.0
            wiped = wiped or kind == "wipe"
            faults.append(Fault(at, kind, (peer,), length))
        elif kind == "partition":
            side = tuple(sorted(rng.sample(peers, rng.randint(1, max(1, len(peers) // 2)))))
            faults.append(Fault(at, kind, side, rng.uniform(1.0, 20.0)))
        elif kind == "lossy":
            faults.append(Fault(at, kind, (), rng.uniform(1.0, 20.0), rng.uniform(0.05, 0.4)))
        elif kind == "slow":
            faults.append(Fault(at, kind, (), rng.uniform(1.0, 20.0), rng.uniform(0.01, 0.5)))
        elif kind == "join":
            faults.append(Fault(at, kind, (f"p{len(peers) + joins - 1}",)))
        elif kind == "drain":
            faults.append(Fault(at, kind, (peer,)))
        else:
            faults.append(Fault(at, kind, (peer,), 0.0, rng.uniform(-2.0, 2.0)))
    # Sorted by start then drawing order (the index), so the order is the seed's alone.
    return [f for _, f in sorted(enumerate(faults), key=lambda p: (p[1].at_s, p[0]))]
