"""The inputs of a :class:`~dfspeer.gossip.swim.Swim` from other members: a datagram
(opened, checked against replay, each message handed to its handler, the replies sent
once the whole datagram is applied) and a push-pull exchange of full state. Rejected
input is counted under ``dropped.<reason>`` and changes nothing.
"""

from __future__ import annotations

from typing import Any

from dfspeer.gossip import wire
from dfspeer.gossip.swim_base import Address, SwimBase
from dfspeer.gossip.wire import WireError


class SwimReceive(SwimBase):
    """:class:`~dfspeer.gossip.swim.Swim` input: datagrams, their messages and push-pull
    state."""

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
