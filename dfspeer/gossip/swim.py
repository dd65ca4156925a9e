"""The SWIM + Lifeguard membership state machine, sans IO (h11 style).

Inputs: ``receive(datagram, source, now)``, ``tick(now)``, ``join``, ``leave``,
``remove_member``, ``merge_state``. Outputs, collected by the driver:
``drain_datagrams()`` (sealed, addressed), ``drain_events()``, ``drain_push_pull()``. Time
is whatever clock the driver passes as ``now`` (seconds); all randomness comes from the
``rng`` given; nothing here opens a socket or reads a clock, so the UDP agent and the
simulator run the same code.

Protocol: SWIM (Das, Gupta, Motivala 2002) with the Lifeguard refinements (Dadgar et al.
2018) as in HashiCorp memberlist — failure detection in ``probe.py``, member table and
merge rules in ``state.py``, dynamic suspicion in ``suspicion.py``, local health in
``awareness.py``, dissemination in ``broadcast.py``, wire format in ``wire.py``.

The state machine is assembled from one part per concern: :mod:`.swim_base` (the state the
parts share, and sending), :mod:`.swim_receive` (datagrams and push-pull state from other
members) and :mod:`.swim_timers` (probe, gossip, push-pull and reconnect rounds); this
module keeps its construction and the driver's API.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from dfspeer.gossip import wire
from dfspeer.gossip.awareness import Awareness
from dfspeer.gossip.broadcast import BroadcastQueue
from dfspeer.gossip.config import SwimConfig
from dfspeer.gossip.keyring import Keyring
from dfspeer.gossip.membership import Membership
from dfspeer.gossip.probe import Prober
from dfspeer.gossip.state import MemberTable
from dfspeer.gossip.swim_base import ALIVE, LEFT, Address
from dfspeer.gossip.swim_receive import SwimReceive
from dfspeer.gossip.swim_timers import SwimTimers, push_pull_interval
from dfspeer.gossip.timers import TimerHeap
from dfspeer.gossip.types import Member, MemberEvent

__all__ = ["Swim", "SwimConfig", "push_pull_interval"]


class Swim(SwimReceive, SwimTimers):
    """One member's SWIM state machine. See the module docstring and the contract.

    ``counters`` (a ``Counter``: missing names read 0) counts protocol activity —
    ``probes``, ``acks``, ``indirect_probes``, ``suspicions``, ``deaths``, ``refutations``,
    ``removals`` (DEAD members removed here by ``remove_member``),
    ``msgs_sent``/``bytes_sent`` (datagrams), ``dropped.<reason>`` for rejected input
    (``too_large``, ``unsealed``, ``malformed``, ``version``, ``unknown_type``,
    ``invalid``, ``stale``, ``replayed``, ``from_self``).
    """

    def __init__(
        self, config: SwimConfig, local: Member, keyring: Keyring, rng: random.Random
    ) -> None:
        self.config = config
        self.keyring = keyring
        self.rng = rng
        self.counters: dict[str, int] = Counter()
        local = local.with_state(ALIVE, local.incarnation)
        self._table = MemberTable(local)
        self._queue = BroadcastQueue(config.retransmit_mult)
        self._awareness = Awareness(config.awareness_max_multiplier if config.lifeguard else 1)
        self._timers = TimerHeap()
        self._membership = Membership(config, local, self._table, self._queue,
                                      self._awareness, self._timers, self.counters, self)
        self._prober = Prober(config, local.id, self._table, self._awareness, self._timers,
                              self, rng)
        self._replay = wire.ReplayGuard(config.replay_window_s)
        self._sender = wire.text_head(local.id)
        self._overhead = wire.datagram_overhead(self._sender)
        self._out: list[tuple[Address, bytes]] = []
        self._push_pull: list[Address] = []
        self._failed: dict[str, tuple[Address, float]] = {}  # reconnect: id -> (addr, since)
        self._replies: list[tuple[Address, bytes]] = []
        self._relay_pings: list[tuple[Address, bytes]] = []  # to ping-req targets
        self._started = False
        self._gossip_armed = False  # the gossip timer only runs while there is news
        self._gossip_phase = 0.0
        self._now = 0.0
        self._handlers = (
            self._on_ping, self._on_ack, self._on_nack, self._on_ping_req,
            self._on_alive, self._on_suspect, self._on_dead, self._on_left,
        )

    # ------------------------------------------------------------------ public API
    @property
    def health_score(self) -> int:
        """Lifeguard local health multiplier minus one (0 = healthy)."""
        return self._awareness.score

    def members(self) -> list[Member]:
        """Every known member, local included, in any state except reaped."""
        return self._table.members()

    def member(self, member_id: str) -> Member | None:
        """The current view of one member, or None if unknown (or reaped)."""
        return self._table.get(member_id)

    @property
    def pending_broadcasts(self) -> int:
        """Updates still queued for dissemination (a leaving driver may wait for 0)."""
        return len(self._queue)

    def next_deadline(self) -> float:
        """Absolute time at which ``tick`` should next run (0.0 before the first call)."""
        return self._timers.next() if self._started else 0.0

    def drain_datagrams(self) -> list[tuple[Address, bytes]]:
        out, self._out = self._out, []
        return out

    def drain_events(self) -> list[MemberEvent]:
        membership = self._membership
        out, membership.events = membership.events, []
        return out

    def drain_push_pull(self) -> list[Address]:
        out, self._push_pull = self._push_pull, []
        return out


    def join(self, seeds: Sequence[Address], now: float) -> None:
        """Ping each seed with our ALIVE and ask the driver to push-pull with it.

        Safe to call again (driver retries); our own address is skipped.
        """
        self.tick(now)
        if self._membership.leaving:
            return
        local = self.local
        alive = wire.alive(local)
        for host, port in seeds:
            addr = (str(host), int(port))
            if addr == local.gossip_address:
                continue
            self.send(addr, [wire.ping(self._prober.next_seq(), ""), alive], now)
            self._push_pull.append(addr)
            self.counters["join_attempts"] += 1
        self._queue.queue(local.id, alive, self.config.alive_retransmit_mult)
        self._settle(now)

    def leave(self, now: float) -> None:
        """Broadcast LEFT for ourselves (an immediate gossip round, then the queue).

        Afterwards this member stops probing; keep ticking until ``pending_broadcasts``
        is 0 (or a timeout) so the news spreads, then stop the driver.
        """
        self.tick(now)
        membership = self._membership
        if membership.leaving:
            return
        membership.leaving = True
        self._prober.enabled = False
        membership.set_local(self.local.with_state(LEFT, self.local.incarnation), now)
        self._gossip(now)
        self._settle(now)

    def update_local(self, now: float, **changes: Any) -> Member:
        """Change our metadata (``api_address``, ``zone``, ``weight``, ``version``,
        ``gossip_address``), bump our incarnation and broadcast it. Returns the new self.

        Raises ``ValueError`` for an unknown field or after ``leave``.
        """
        allowed = {"api_address", "zone", "weight", "version", "gossip_address"}
        if not changes.keys() <= allowed or self._membership.leaving:
            raise ValueError(f"cannot update {sorted(changes)} (allowed: {sorted(allowed)})")
        self.tick(now)
        cur = self.local
        f = {
            "api_address": cur.api_address, "zone": cur.zone, "weight": cur.weight,
            "version": cur.version, "gossip_address": cur.gossip_address, **changes,
        }
        new = Member(cur.id, tuple(f["gossip_address"]), f["api_address"], cur.incarnation + 1,
                     ALIVE, f["zone"], float(f["weight"]), f["version"])
        self._membership.set_local(new, now)
        self._settle(now)
        return new

    def remove_member(self, member_id: str, now: float) -> Member:
        """Forget a DEAD member for good (an operator's decision): it becomes LEFT, and
        the LEFT, gossiped like a graceful leave, replaces DEAD on every peer. Returns the
        member (state LEFT). Raises :class:`~dfspeer.gossip.types.UnknownMember` or
        :class:`~dfspeer.gossip.types.MemberIsLive` (ALIVE, SUSPECT or ourselves); nothing
        changes then."""
        self.tick(now)
        removed = self._membership.remove(member_id, now)
        self._settle(now)
        return removed

    def preload(self, members: Mapping[str, Member] | Iterable[Member], now: float) -> None:
        """Bootstrap the table with known members, without events or broadcasts.

        For simulators and tests (a pre-converged cluster); a normal peer joins instead.
        """
        table = members if isinstance(members, Mapping) else {m.id: m for m in members}
        self._table.preload(table, now)
