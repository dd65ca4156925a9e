"""SWIM failure detector: probe rounds, ping-req relays and their bookkeeping.

One probe per protocol period (Das et al. 2002, section 3.1): ping the next member of the
randomized round-robin order; without an ack after ``probe_timeout`` ask
``indirect_checks`` random alive members to ping it for us (ping-req, with Lifeguard
nacks so a failure that intermediaries could not confirm counts against *our* health);
without any ack by the end of the period, suspect it. Intervals and timeouts stretch by
the Lifeguard health multiplier. Buddy system (Lifeguard 4.3): a ping to a member we
suspect carries the suspicion, so it can refute at once in its ack.

The :class:`Prober` owns only probe state; it acts through its :class:`ProbeHost` (the
``Swim``), which sends, schedules and applies suspicions.
"""

from __future__ import annotations

import random
from typing import Protocol

from dfspeer.gossip import wire
from dfspeer.gossip.awareness import Awareness
from dfspeer.gossip.config import SwimConfig
from dfspeer.gossip.state import MemberTable
from dfspeer.gossip.timers import TimerHeap
from dfspeer.gossip.types import Member, MemberState

NACK_FRACTION = 0.8  # an intermediary nacks after 80% of the probe timeout (Lifeguard)
_ALIVE = MemberState.ALIVE
_SUSPECT = MemberState.SUSPECT


class ProbeHost(Protocol):
    """What the prober needs from the state machine that owns it."""

    def send(
        self, dest: tuple[str, int], msgs: list[bytes], now: float, *, counted: bool = True
    ) -> None: ...
    def suspect(self, member_id: str, incarnation: int, from_id: str, now: float) -> None: ...
    def count(self, name: str, n: int = 1) -> None: ...


def _is_alive(m: Member) -> bool:
    return m.state is _ALIVE


class _Probe:
    __slots__ = ("acked", "expected_nacks", "incarnation", "indirect", "nacks", "seq", "target")

    def __init__(self, seq: int, target: str, incarnation: int) -> None:
        self.seq = seq
        self.target = target
        self.incarnation = incarnation
        self.acked = False
        self.indirect = False
        self.expected_nacks = 0
        self.nacks = 0


class _Relay:
    __slots__ = ("requester", "seq", "want_nack")

    def __init__(self, requester: tuple[str, int], seq: int, want_nack: bool) -> None:
        self.requester = requester
        self.seq = seq
        self.want_nack = want_nack


class Prober:
    """Probe state of one member: the current probe and the ping-reqs it relays."""

    def __init__(
        self,
        config: SwimConfig,
        local_id: str,
        table: MemberTable,
        awareness: Awareness,
        timers: TimerHeap,
        host: ProbeHost,
        rng: random.Random,
    ) -> None:
        self.config = config
        self.rng = rng
        self.local_id = local_id
        self.table = table
        self.awareness = awareness
        self.timers = timers
        self.host = host
        self.enabled = True
        self._seq = 0
        self._probe: _Probe | None = None
        self._relays: dict[int, _Relay] = {}

    def next_seq(self) -> int:
        self._seq += 1
        return self._seq

    # ------------------------------------------------------------------ probe round
    def tick(self, now: float) -> float:
        """End the current probe, start the next; return when the next round is due."""
        self._finish(now)
        mult = self.awareness.multiplier
        if self.enabled:
            target = self.table.next_probe_target(self.rng)
            if target is not None:
                self._start(target, mult, now)
        return now + self.config.probe_interval_s * mult

    def _start(self, target: Member, mult: int, now: float) -> None:
        seq = self.next_seq()
        probe = _Probe(seq, target.id, target.incarnation)
        self._probe = probe
        msgs = [wire.ping(seq, target.id)]
        if target.state is _SUSPECT and self.config.lifeguard:  # buddy system: it refutes
            msgs.append(wire.suspect(target.id, target.incarnation, self.local_id))
        # A suspect is likely gone: piggybacked news rides along without using its budget.
        self.host.send(target.gossip_address, msgs, now, counted=target.state is _ALIVE)
        self.timers.at(now + self.config.probe_timeout_s * mult, self._on_timeout, probe)
        self.host.count("probes")

    def _on_timeout(self, probe: _Probe, now: float) -> None:
        if self._probe is not probe or probe.acked:
            return
        probe.indirect = True
        target = self.table.get(probe.target)
        if target is None or not target.is_live:
            return
        peers = self.table.sample(
            self.config.indirect_checks, self.rng, _is_alive, exclude=target.id
        )
        req = wire.ping_req(probe.seq, target, self.config.lifeguard)
        for peer in peers:
            self.host.send(peer.gossip_address, [req], now)
        probe.expected_nacks = len(peers)
        self.host.count("indirect_probes", len(peers))

    def _finish(self, now: float) -> None:
        probe = self._probe
        if probe is None:
            return
        self._probe = None
        if probe.acked or not self.enabled:
            return
        target = self.table.get(probe.target)
        if target is None or not target.is_live:
            return
        # Lifeguard: missing nacks mean *we* may be the problem; no intermediaries: +1.
        expected = probe.expected_nacks
        self.awareness.apply_delta(expected - probe.nacks if expected else 1)
        self.host.count("probe_failures")
        self.host.suspect(probe.target, probe.incarnation, self.local_id, now)

    # ------------------------------------------------------------------ replies
    def on_ack(self, seq: int, now: float) -> tuple[tuple[str, int], bytes] | None:
        """Handle an ack; returns an ack to relay (to a ping-req requester), if any."""
        probe = self._probe
        if probe is not None and probe.seq == seq:
            if not probe.acked:
                probe.acked = True
                self.host.count("acks")
                if not probe.indirect:
                    self.awareness.apply_delta(-1)
            return None
        relay = self._relays.pop(seq, None)
        if relay is None:
            self.host.count("acks_unexpected")
            return None
        self.host.count("indirect_acks_relayed")
        return relay.requester, wire.ack(relay.seq)

    def on_nack(self, seq: int) -> None:
        probe = self._probe
        if probe is not None and probe.seq == seq and not probe.acked:
            probe.nacks += 1
            self.host.count("nacks")

    def on_ping_req(
        self, requester: tuple[str, int], seq: int, target_id: str, addr: tuple[str, int],
        want_nack: bool, now: float,
    ) -> tuple[tuple[str, int], bytes]:
        """Relay a ping-req: returns the ping to send to the target."""
        my_seq = self.next_seq()
        self._relays[my_seq] = _Relay(requester, seq, want_nack)
        cfg = self.config
        if want_nack:
            self.timers.at(now + NACK_FRACTION * cfg.probe_timeout_s, self._relay_nack, my_seq)
        self.timers.at(now + cfg.probe_interval_s, self._relay_expire, my_seq)
        self.host.count("indirect_pings")
        return addr, wire.ping(my_seq, target_id)

    def _relay_nack(self, my_seq: int, now: float) -> None:
        relay = self._relays.get(my_seq)
        if relay is not None and relay.want_nack:
            relay.want_nack = False
            self.host.send(relay.requester, [wire.nack(relay.seq)], now)

    def _relay_expire(self, my_seq: int, now: float) -> None:
        self._relays.pop(my_seq, None)
