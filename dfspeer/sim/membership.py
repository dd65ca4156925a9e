"""The simulation's stand-in for gossip: one membership table that every peer's view is
rebuilt from.

The gossip core has its own simulator (``simulations/swim_sim.py``); here membership is
what gossip would converge to, told to every running peer at once: a crash is noticed
(``DEAD``) after a seeded detection delay, a restart or a join is ``ALIVE``, a drain
publishes weight 0 and ends in ``LEFT``. Partitions do not change membership (the peers
stay ALIVE to each other; their RPCs fail).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from dfspeer.gossip import Member, MemberState


class Membership:
    """Members by id; ``log(event)`` records every change; :meth:`subscribe` adds a
    callback run after each change (a peer's view refresh)."""

    def __init__(self, log: Callable[[str], None]) -> None:
        self._members: dict[str, Member] = {}
        self._log = log
        self._listeners: list[Callable[[], object]] = []

    def members(self) -> list[Member]:
        """Every member, any state, sorted by id."""
        return [self._members[p] for p in sorted(self._members)]

    def subscribe(self, refresh: Callable[[], object]) -> None:
        self._listeners.append(refresh)

    def add(self, peer_id: str, address: str) -> None:
        """A new member, ALIVE, weight 1."""
        self._members[peer_id] = Member(peer_id, ("sim", 0), address, 1, MemberState.ALIVE)
        self._changed(f"membership {peer_id} joined")

    def set_state(self, peer_id: str, state: MemberState) -> None:
        m = self._members[peer_id]
        self._members[peer_id] = dataclasses.replace(m, state=state, incarnation=m.incarnation + 1)
        self._changed(f"membership {peer_id} {state.name}")

    def set_weight(self, peer_id: str, weight: float) -> None:
        m = self._members[peer_id]
        self._members[peer_id] = dataclasses.replace(
            m, weight=weight, incarnation=m.incarnation + 1
        )
        self._changed(f"membership {peer_id} weight {weight}")

    def state(self, peer_id: str) -> MemberState:
        return self._members[peer_id].state

    def __len__(self) -> int:
        return len(self._members)

    def _changed(self, event: str) -> None:
        self._log(event)
        for refresh in list(self._listeners):
            refresh()
