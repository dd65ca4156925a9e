"""SwimConfig: tuning of the SWIM + Lifeguard core (defaults: memberlist's LAN profile)."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SwimConfig:
    """Protocol settings; durations in seconds, sizes in bytes.

    * ``probe_interval_s`` / ``probe_timeout_s``: protocol period and direct-ack wait;
      both are stretched by the Lifeguard health multiplier (``health_score + 1``).
    * ``indirect_checks``: members asked to ping-req a target that missed its ack.
    * ``gossip_interval_s`` / ``gossip_fanout``: dissemination rounds and their fanout.
    * ``retransmit_mult``: each update is sent ``retransmit_mult * ceil(log10(N + 1))`` times.
    * ``alive_retransmit_mult``: the same for ALIVE news (metadata updates, refutations,
      joins), which has no path but gossip before the next push-pull. Each live member
      receives about ``mult * ceil(log10(N + 1))`` copies, so misses an update with
      probability about ``exp(-that)``; see ``broadcast.py``.
    * ``suspicion_mult``: minimum suspicion timeout ``suspicion_mult * log10(N) * probe
      interval``; ``suspicion_max_timeout_mult`` times that is where a suspicion starts.
    * ``awareness_max_multiplier``: health score ranges over ``0 .. this - 1``.
    * ``push_pull_interval_s``: full-state exchange period (scaled up above 32 members).
    * ``max_datagram_bytes``: sealed datagram size limit, for sending and receiving.
    * ``dead_member_reap_s``: DEAD/LEFT members are forgotten this long after the change.
    * ``replay_window_s``: datagrams stamped further than this from ``now`` are dropped.
    * ``gossip_to_dead_s``: DEAD/LEFT members still receive gossip this long, so a
      wrongly declared member hears about it and refutes (memberlist GossipToTheDeadTime).
    * ``reconnect_interval_s``: every this often, with probability ``failed / live``
      (capped at 1; Serf's reconnect rule), push-pull with one random DEAD (never LEFT)
      member, so the sides of a healed partition find each other again after gossip to
      the dead has stopped.
    * ``reconnect_timeout_s``: a DEAD member is retried this long after it was declared
      dead (Serf's reconnect_timeout, 24 h), even after it is reaped from the table.
    * ``lifeguard``: False runs plain SWIM for comparison (simulations): no health
      awareness, fixed suspicion timeout, no buddy hint, no nacks, no last calls.

    Raises ``ValueError`` naming the field when a value is out of range.
    """

    probe_interval_s: float = 1.0
    probe_timeout_s: float = 0.5
    indirect_checks: int = 3
    gossip_interval_s: float = 0.2
    gossip_fanout: int = 3
    retransmit_mult: int = 4
    alive_retransmit_mult: int = 8
    suspicion_mult: int = 4
    suspicion_max_timeout_mult: int = 6
    awareness_max_multiplier: int = 8
    push_pull_interval_s: float = 30.0
    max_datagram_bytes: int = 1400
    dead_member_reap_s: float = 3600.0
    replay_window_s: float = 60.0
    gossip_to_dead_s: float = 30.0
    reconnect_interval_s: float = 30.0
    reconnect_timeout_s: float = 86400.0
    lifeguard: bool = True

    def __post_init__(self) -> None:
        def need(cond: bool, name: str, what: str) -> None:
            if not cond:
                raise ValueError(f"SwimConfig.{name}: {what} (got {getattr(self, name)!r})")

        for name in (
            "probe_interval_s",
            "probe_timeout_s",
            "gossip_interval_s",
            "push_pull_interval_s",
            "dead_member_reap_s",
            "replay_window_s",
            "reconnect_interval_s",
        ):
            value = getattr(self, name)
            need(math.isfinite(value) and value > 0, name, "must be > 0")
        need(self.gossip_to_dead_s >= 0, "gossip_to_dead_s", "must be >= 0")
        need(self.reconnect_timeout_s >= 0, "reconnect_timeout_s", "must be >= 0 (0: off)")
        need(
            self.probe_timeout_s < self.probe_interval_s,
            "probe_timeout_s",
            "must be < probe_interval_s",
        )
        for name in (
            "indirect_checks",
            "gossip_fanout",
            "retransmit_mult",
            "alive_retransmit_mult",
            "suspicion_mult",
            "suspicion_max_timeout_mult",
            "awareness_max_multiplier",
        ):
            need(1 <= getattr(self, name) <= 64, name, "must be in 1..64")
        need(512 <= self.max_datagram_bytes <= 65507, "max_datagram_bytes", "must be 512..65507")

    @classmethod
    def from_settings(cls, settings: Any) -> SwimConfig:
        """Copy every same-named attribute of ``settings`` (e.g. a ``PeerConfig``)."""
        names = [f.name for f in dataclasses.fields(cls)]
        return cls(**{n: getattr(settings, n) for n in names if hasattr(settings, n)})
