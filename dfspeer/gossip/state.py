"""Member table and SWIM merge rules (Das et al. 2002 section 4.2; memberlist state.go).

The table maps member id -> immutable :class:`Member` (local member included) and keeps a
probe order for randomized round-robin probing. Merge rules, for members other than the
local one (the local member refutes instead; see ``swim.py``):

* ALIVE(i) overrides anything known at incarnation < i; an unknown member is added.
* SUSPECT(i) overrides ALIVE at incarnation <= i; ignored for unknown, DEAD or LEFT members.
* DEAD(i) / LEFT(i) override ALIVE or SUSPECT at incarnation <= i; LEFT(i) also
  overrides DEAD at incarnation <= i (an operator's removal of a dead member,
  ``Swim.remove_member``: DEAD -> LEFT, never back); first word wins after.

Probe order: a lazy Fisher-Yates shuffle — each step swaps a uniformly chosen not-yet-
probed id into place — so every round is a fresh uniform permutation, a member that
joins mid-round lands at a uniformly random remaining position, and nothing is copied.
"""

from __future__ import annotations

import enum
import operator
import random
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from dfspeer.gossip.types import EventKind, Member, MemberState

ALIVE, SUSPECT, DEAD, LEFT = (
    MemberState.ALIVE,
    MemberState.SUSPECT,
    MemberState.DEAD,
    MemberState.LEFT,
)
_STATE_OF = operator.attrgetter("state")


class Merge(enum.Enum):
    """Outcome of a merge that emits no event."""

    IGNORE = "ignore"  # stale or duplicate: nothing changed, do not rebroadcast
    QUIET = "quiet"  # applied (newer incarnation, same state and data): rebroadcast only


class MemberTable:
    """All known members by id; ``live_count`` counts ALIVE + SUSPECT (local included).

    ``changed_at[id]`` is when a DEAD/LEFT member entered that state (for reaping and
    gossip-to-the-dead).
    """

    __slots__ = ("_members", "_next", "_order", "changed_at", "live_count", "local_id", "version")

    def __init__(self, local: Member) -> None:
        self.local_id = local.id
        self._members: dict[str, Member] = {local.id: local}
        self._order: list[str] = []
        self._next = 0
        self.live_count = 1 if local.is_live else 0
        self.changed_at: dict[str, float] = {}
        self.version = 0  # bumped on every change (caches of the full state key on it)

    # ------------------------------------------------------------------ access
    def get(self, member_id: str) -> Member | None:
        return self._members.get(member_id)

    def __len__(self) -> int:
        return len(self._members)

    def members(self) -> list[Member]:
        return list(self._members.values())

    def preload(self, members: Mapping[str, Member], now: float) -> None:
        """Bulk-add members not yet known, without merge rules (simulation bootstrap)."""
        known = self._members
        if len(known) == 1:  # fast path: copy (C speed, 10,000 x 10,000 in a simulation)
            local = known[self.local_id]
            self._members = dict(members)
            self._members[self.local_id] = local
            order = list(members)
            if self.local_id in members:
                order.remove(self.local_id)
            self._order.extend(order)
        else:
            for m in members.values():
                if m.id not in known:
                    self.put(m, now)
        self.version += 1
        states = Counter(map(_STATE_OF, self._members.values()))
        self.live_count = states[ALIVE] + states[SUSPECT]
        if self.live_count < len(self._members):
            for m in self._members.values():
                if not m.is_live:
                    self.changed_at.setdefault(m.id, now)

    def put(self, m: Member, now: float) -> Member | None:
        """Store ``m`` (add or replace); return the previous value."""
        prev = self._members.get(m.id)
        self._members[m.id] = m
        self.version += 1
        live = m.state is ALIVE or m.state is SUSPECT
        if prev is None:
            if m.id != self.local_id:
                self._order.append(m.id)
            self.live_count += live
            was_live = False
        else:
            was_live = prev.state is ALIVE or prev.state is SUSPECT
            self.live_count += live - was_live
        if live:
            if not was_live:
                self.changed_at.pop(m.id, None)
        elif was_live or prev is None:
            self.changed_at[m.id] = now
        return prev

    def remove(self, member_id: str) -> Member | None:
        """Forget a member entirely (reaping); the local member cannot be removed."""
        if member_id == self.local_id:
            return None
        prev = self._members.pop(member_id, None)
        if prev is None:
            return None
        self.version += 1
        self.live_count -= prev.is_live
        self.changed_at.pop(member_id, None)
        idx = self._order.index(member_id)
        del self._order[idx]
        if idx < self._next:
            self._next -= 1
        return prev

    # ------------------------------------------------------------------ merge rules
    def merge_alive(self, new: Member, now: float) -> EventKind | Merge:
        """Apply ALIVE for a non-local member (``new.state`` must be ALIVE)."""
        cur = self._members.get(new.id)
        if cur is not None and new.incarnation <= cur.incarnation:
            return Merge.IGNORE
        self.put(new, now)
        if cur is None or cur.state is DEAD or cur.state is LEFT:
            return EventKind.JOINED
        if cur.state is SUSPECT:
            return EventKind.ALIVE
        return Merge.QUIET if cur.same_metadata(new) else EventKind.UPDATED

    def merge_suspect(self, member_id: str, incarnation: int, now: float) -> EventKind | Merge:
        """Apply SUSPECT for a non-local member: ALIVE -> SUSPECT is an event; an already
        SUSPECT member is (re)suspected QUIETly (the caller restarts its timer)."""
        cur = self._members.get(member_id)
        if cur is None or incarnation < cur.incarnation or not cur.is_live:
            return Merge.IGNORE
        self.put(cur.with_state(SUSPECT, incarnation), now)
        return EventKind.SUSPECT if cur.state is ALIVE else Merge.QUIET

    def merge_dead(
        self, member_id: str, incarnation: int, left: bool, now: float
    ) -> EventKind | Merge:
        """Apply DEAD (or LEFT if ``left``) for a non-local member; LEFT also replaces
        DEAD (a removed member), nothing replaces LEFT."""
        cur = self._members.get(member_id)
        if cur is None or incarnation < cur.incarnation:
            return Merge.IGNORE
        if not cur.is_live and not (left and cur.state is DEAD):
            return Merge.IGNORE
        self.put(cur.with_state(LEFT if left else DEAD, incarnation), now)
        return EventKind.LEFT if left else EventKind.DEAD

    # ------------------------------------------------------------------ selection
    def next_probe_target(self, rng: random.Random) -> Member | None:
        """Next ALIVE or SUSPECT member in randomized round-robin order, or None."""
        order = self._order
        members = self._members
        n = len(order)
        for _ in range(n):
            i = self._next
            if i >= n:
                i = 0
            j = i + int(rng.random() * (n - i))
            order[i], order[j] = order[j], order[i]
            self._next = i + 1
            m = members[order[i]]
            if m.state is ALIVE or m.state is SUSPECT:
                return m
        return None

    def sample(
        self,
        k: int,
        rng: random.Random,
        accept: Callable[[Member], Any],
        exclude: str = "",
    ) -> list[Member]:
        """Up to ``k`` distinct random non-local members with ``accept(m)`` true."""
        order = self._order
        n = len(order)
        out: list[Member] = []
        if n == 0 or k <= 0:
            return out
        members = self._members
        picked: set[str] = set()
        for _ in range(3 * k + 8):
            mid = order[int(rng.random() * n)]
            if mid in picked or mid == exclude:
                continue
            picked.add(mid)
            m = members[mid]
            if accept(m):
                out.append(m)
                if len(out) >= k:
                    return out
        start = int(rng.random() * n)  # few acceptable members: scan from a random point
        for step in range(n):
            mid = order[(start + step) % n]
            if mid not in picked and mid != exclude:
                picked.add(mid)
                m = members[mid]
                if accept(m):
                    out.append(m)
                    if len(out) >= k:
                        break
        return out
