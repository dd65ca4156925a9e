"""The timed rounds of a :class:`~dfspeer.gossip.swim.Swim`: the probe round, gossip of
queued broadcasts to ``gossip_fanout`` random members (armed only while there is news),
push-pull with one random live member (its interval scaled to the cluster's size, as
memberlist's pushPullScale), and the reconnect round that push-pulls with a DEAD member
so the two sides of a healed partition find each other again.
"""

from __future__ import annotations

import math
from typing import Any

from dfspeer.gossip import wire
from dfspeer.gossip.swim_base import ALIVE, DEAD, SUSPECT, SwimBase
from dfspeer.gossip.types import Member


def push_pull_interval(base_s: float, n_members: int) -> float:
    """memberlist's pushPullScale: the base interval up to 32 members, then one more
    multiple per doubling, so full-state traffic per peer stays roughly flat."""
    if n_members <= 32:
        return base_s
    return base_s * (math.ceil(math.log2(n_members) - math.log2(32)) + 1)


class SwimTimers(SwimBase):
    """:class:`~dfspeer.gossip.swim.Swim` timers: started on the first tick, then each
    re-arms itself."""

    def tick(self, now: float) -> None:
        """Run every timer due at ``now`` (probe rounds, gossip, suspicion timeouts, ...)."""
        self._now = now
        if not self._started:
            self._start(now)
        self._timers.run_due(now)
        self._settle(now)

    def _start(self, now: float) -> None:
        self._started = True
        cfg, rnd = self.config, self.rng.random
        self._timers.at(now + rnd() * cfg.probe_interval_s, self._probe_tick)
        self._gossip_phase = now + rnd() * cfg.gossip_interval_s
        self._gossip_armed = True
        self._timers.at(self._gossip_phase, self._gossip_tick)
        interval = push_pull_interval(cfg.push_pull_interval_s, self._table.live_count)
        self._timers.at(now + rnd() * interval, self._push_pull_tick)
        # No jitter draw: the rng sequence of a cluster without deaths is unchanged.
        self._timers.at(now + cfg.reconnect_interval_s, self._reconnect_tick)

    def _probe_tick(self, _: Any, now: float) -> None:
        self._timers.at(self._prober.tick(now), self._probe_tick)

    def _gossip_tick(self, _: Any, now: float) -> None:
        self._gossip(now)
        if self._queue:
            self._timers.at(now + self.config.gossip_interval_s, self._gossip_tick)
        else:  # idle: no wakeups until there is news again (same rhythm)
            self._gossip_armed = False
            self._gossip_phase = now

    def _settle(self, now: float) -> None:
        """After every input: re-arm the gossip timer if news arrived while it was idle."""
        if not self._gossip_armed and self._queue and self._started:
            interval = self.config.gossip_interval_s
            rounds = max(1, math.ceil((now - self._gossip_phase) / interval))
            self._gossip_armed = True
            self._timers.at(self._gossip_phase + rounds * interval, self._gossip_tick)

    def _gossip(self, now: float) -> None:
        """Send queued broadcasts to ``gossip_fanout`` random members (memberlist gossip).

        Targets are ALIVE, SUSPECT, or DEAD/LEFT for ``gossip_to_dead_s`` (memberlist's
        gossipToTheDead); only a datagram to an ALIVE one uses up transmit budget, unless
        the round has no ALIVE target (every round makes progress, so the queue drains
        as before when only suspects or the dead are left to gossip to).
        """
        queue = self._queue
        if not queue:
            return
        cfg = self.config
        table = self._table
        targets = table.sample(cfg.gossip_fanout, self.rng, self._gossipable)
        budget = cfg.max_datagram_bytes - self._overhead
        free_ok = any(t.state is ALIVE for t in targets)
        for target in targets:
            counted = target.state is ALIVE or not free_ok
            msgs = queue.get(budget, table.live_count, counted)
            if not msgs:
                break
            data = wire.seal_datagram(self.keyring, self._sender, now, msgs)
            self._out.append((target.gossip_address, data))
            self.counters["msgs_sent"] += 1
            self.counters["bytes_sent"] += len(data)
            self.counters["gossip_sent"] += 1

    def _gossipable(self, m: Member) -> bool:
        if m.state is ALIVE or m.state is SUSPECT:
            return True
        changed = self._table.changed_at.get(m.id, -math.inf)
        return self._now - changed < self.config.gossip_to_dead_s

    def _push_pull_tick(self, _: Any, now: float) -> None:
        peers = self._table.sample(1, self.rng, _is_alive)
        if peers and not self._membership.leaving:
            self._push_pull.append(peers[0].gossip_address)
            self.counters["push_pulls"] += 1
        interval = push_pull_interval(self.config.push_pull_interval_s, self._table.live_count)
        self._timers.at(now + interval, self._push_pull_tick)

    def _reconnect_tick(self, _: Any, now: float) -> None:
        """Serf's reconnect: push-pull with one random DEAD member, with probability
        ``failed / live`` (capped at 1), so a healthy cluster sends nothing extra.

        Push-pull to ALIVE members and gossip to the dead (``gossip_to_dead_s``) stop
        reaching a member once it is declared DEAD; without this, the two sides of a
        healed partition would see each other dead forever. The exchange merges state
        both ways, and a side that reads it was declared dead refutes (higher
        incarnation). A DEAD member stays a candidate for ``reconnect_timeout_s`` after
        its death, also once reaped from the table (``dead_member_reap_s``); one that
        comes back (ALIVE/SUSPECT) or LEFT stops being one.
        """
        cfg = self.config
        self._timers.at(now + cfg.reconnect_interval_s, self._reconnect_tick)
        failed = self._failed
        changed_at = self._table.changed_at
        for m in self._table.members():
            if m.state is DEAD:
                failed[m.id] = (m.gossip_address, changed_at.get(m.id, now))
            elif m.id in failed:
                del failed[m.id]
        expired = [k for k, (_, since) in failed.items() if now - since >= cfg.reconnect_timeout_s]
        for mid in expired:
            del failed[mid]
        if not failed or self._membership.leaving:
            return
        live = max(1, self._table.live_count)
        if self.rng.random() >= min(1.0, len(failed) / live):
            return
        mid = self.rng.choice(sorted(failed))
        self._push_pull.append(failed[mid][0])
        self.counters["reconnects"] += 1


def _is_alive(m: Member) -> bool:
    return m.state is ALIVE
