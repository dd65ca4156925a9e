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
"""

from __future__ import annotations

import math
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
from dfspeer.gossip.timers import TimerHeap
from dfspeer.gossip.types import Member, MemberEvent, MemberState
from dfspeer.gossip.wire import WireError

__all__ = ["Swim", "SwimConfig", "push_pull_interval"]

Address = tuple[str, int]
ALIVE, SUSPECT, DEAD, LEFT = (
    MemberState.ALIVE,
    MemberState.SUSPECT,
    MemberState.DEAD,
    MemberState.LEFT,
)


def push_pull_interval(base_s: float, n_members: int) -> float:
    """memberlist's pushPullScale: the base interval up to 32 members, then one more
    multiple per doubling, so full-state traffic per peer stays roughly flat."""
    if n_members <= 32:
        return base_s
    return base_s * (math.ceil(math.log2(n_members) - math.log2(32)) + 1)


class Swim:
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
    def local(self) -> Member:
        """Our current self (the incarnation grows on refutation and metadata updates)."""
        return self._membership.local

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

    def tick(self, now: float) -> None:
        """Run every timer due at ``now`` (probe rounds, gossip, suspicion timeouts, ...)."""
        self._now = now
        if not self._started:
            self._start(now)
        self._timers.run_due(now)
        self._settle(now)

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

    # ------------------------------------------------------------------ push-pull
    def local_state(self) -> bytes:
        """Our sealed full state (every member, any size) for a push-pull stream."""
        return wire.seal_state(self.keyring, self._sender, self._now, self._table.members())

    def merge_state(self, sealed: bytes, now: float) -> bool:
        """Merge a peer's ``local_state()``; False (counted as dropped) if it is rejected."""
        try:
            plain = self.keyring.open(bytes(sealed))
            if plain is None:
                raise WireError("unsealed")
            t, sender, entries = wire.decode_state(plain)
            if abs(t - now) > self.config.replay_window_s:
                raise WireError("stale")
        except WireError as exc:
            self.counters["dropped." + exc.reason] += 1
            return False
        except Exception:
            self.counters["dropped.malformed"] += 1
            return False
        try:
            self.tick(now)
            merge = self._membership.merge_entry
            for entry in entries:
                merge(entry, sender, now)
            self.counters["push_pull_merges"] += 1
            self._settle(now)
        except Exception:  # pragma: no cover - a bug; never let it escape to the driver
            self.counters["errors.internal"] += 1
            return False
        return True

    # ------------------------------------------------------------------ receive
    def receive(self, datagram: bytes, source: Address, now: float) -> None:
        """Handle one datagram. Never raises; rejected input is counted and changes nothing."""
        counters = self.counters
        try:
            if type(datagram) is not bytes:
                datagram = bytes(datagram)
            plain = wire.open_datagram(self.keyring, datagram, self.config.max_datagram_bytes)
            t, sender, msgs = wire.decode_datagram(plain)
            if sender == self._table.local_id:
                raise WireError("from_self")
            reason = self._replay.check(datagram, t, now)
            if reason is not None:
                raise WireError(reason)
        except WireError as exc:
            counters["dropped." + exc.reason] += 1
            return
        except Exception:
            counters["dropped.malformed"] += 1
            return
        try:
            self.tick(now)
            counters["msgs_received"] += 1
            counters["bytes_received"] += len(datagram)
            handlers = self._handlers
            for m in msgs:
                handlers[m[0]](m, source, sender, now)
            self._flush_replies(now)
            self._settle(now)
        except Exception:  # pragma: no cover - a bug; never let it escape to the driver
            counters["errors.internal"] += 1
            self._replies.clear()
            self._relay_pings.clear()

    def _flush_replies(self, now: float) -> None:
        # Replies go out after the whole datagram is applied, so an ack carries e.g. the
        # refutation of a suspicion that arrived in the same datagram (buddy system).
        replies = self._replies
        while replies:
            dest, msg = replies.pop(0)
            self.send(dest, [msg], now)
        # A ping-req target just missed a direct ack: likely gone, so what rides along
        # does not use up its transmit budget (``broadcast.py``).
        relays = self._relay_pings
        while relays:
            dest, msg = relays.pop(0)
            self.send(dest, [msg], now, counted=False)

    def _on_ping(self, m: list[Any], source: Address, sender: str, now: float) -> None:
        target = m[2]
        if target and target != self.local.id:
            self.counters["pings_misdirected"] += 1
            return
        self._replies.append((source, wire.ack(m[1])))

    def _on_ack(self, m: list[Any], source: Address, sender: str, now: float) -> None:
        relay = self._prober.on_ack(m[1], now)
        if relay is not None:
            self._replies.append(relay)

    def _on_nack(self, m: list[Any], source: Address, sender: str, now: float) -> None:
        self._prober.on_nack(m[1])

    def _on_ping_req(self, m: list[Any], source: Address, sender: str, now: float) -> None:
        if m[2] == self.local.id:  # asked to ping ourselves: just answer
            self._replies.append((source, wire.ack(m[1])))
            return
        self._relay_pings.append(self._prober.on_ping_req(source, m[1], m[2], (m[3], m[4]), m[5],
                                                      now))

    # ------------------------------------------------------------------ membership news
    def _on_alive(self, m: list[Any], source: Address, sender: str, now: float) -> None:
        self._membership.alive(m, now)

    def _on_suspect(self, m: list[Any], source: Address, sender: str, now: float) -> None:
        self._membership.suspect(m[1], m[2], m[3], now, source)

    def _on_dead(self, m: list[Any], source: Address, sender: str, now: float) -> None:
        self._membership.dead(m[1], m[2], m[3], False, now, source)

    def _on_left(self, m: list[Any], source: Address, sender: str, now: float) -> None:
        self._membership.dead(m[1], m[2], m[1], True, now, source)

    def suspect(self, member_id: str, incarnation: int, from_id: str, now: float) -> None:
        """Raise or confirm a suspicion (used by the prober for failed probes)."""
        self._membership.suspect(member_id, incarnation, from_id, now)
        self._settle(now)

    # ------------------------------------------------------------------ output
    def send(
        self, dest: Address, msgs: list[bytes], now: float, *, counted: bool = True
    ) -> None:
        """Seal ``msgs`` plus as many queued broadcasts as fit; queue it for the driver.

        ``counted=False`` (``dest`` is not believed ALIVE): the broadcasts ride along
        without using up their retransmit budget (``broadcast.py``).
        """
        free = self.config.max_datagram_bytes - self._overhead
        for msg in msgs:
            free -= len(msg)
        if free >= wire.MIN_MESSAGE_BYTES and self._queue:
            msgs.extend(self._queue.get(free, self._table.live_count, counted))
        data = wire.seal_datagram(self.keyring, self._sender, now, msgs)
        self._out.append((dest, data))
        counters = self.counters
        counters["msgs_sent"] += 1
        counters["bytes_sent"] += len(data)

    def reply(self, dest: Address, msg: bytes) -> None:
        """Queue ``msg`` to ``dest``, sent once the datagram being read is fully applied."""
        self._replies.append((dest, msg))

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] += n

    # ------------------------------------------------------------------ timers
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
