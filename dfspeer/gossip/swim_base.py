"""The state every part of a :class:`~dfspeer.gossip.swim.Swim` shares, and its output.

:class:`SwimBase` declares the member table, broadcast queue, timers, failure detector and
output buffers that the state machine's constructor (:mod:`.swim`) sets, and holds what
sends: a datagram sealed with as many queued broadcasts as fit, a reply held until the
datagram being read is fully applied, and the protocol counters.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from dfspeer.gossip import wire
from dfspeer.gossip.awareness import Awareness
from dfspeer.gossip.broadcast import BroadcastQueue
from dfspeer.gossip.config import SwimConfig
from dfspeer.gossip.keyring import Keyring
from dfspeer.gossip.membership import Membership
from dfspeer.gossip.probe import Prober
from dfspeer.gossip.state import MemberTable
from dfspeer.gossip.timers import TimerHeap
from dfspeer.gossip.types import Member, MemberState

Address = tuple[str, int]
ALIVE, SUSPECT, DEAD, LEFT = (
    MemberState.ALIVE,
    MemberState.SUSPECT,
    MemberState.DEAD,
    MemberState.LEFT,
)

Handler = Callable[[list[Any], Address, str, float], None]
"""A message handler: ``(message, source address, sender id, now)``."""


class SwimBase:
    """State and output shared by the parts of a :class:`~dfspeer.gossip.swim.Swim` (whose
    docstring describes the counters and the constructor that sets the rest)."""

    config: SwimConfig
    keyring: Keyring
    rng: random.Random
    counters: dict[str, int]
    _table: MemberTable
    _queue: BroadcastQueue
    _awareness: Awareness
    _timers: TimerHeap
    _membership: Membership
    _prober: Prober
    _replay: wire.ReplayGuard
    _sender: bytes
    _overhead: int
    _out: list[tuple[Address, bytes]]
    _push_pull: list[Address]
    _failed: dict[str, tuple[Address, float]]
    """Reconnect candidates: id -> (address, since)."""
    _replies: list[tuple[Address, bytes]]
    _relay_pings: list[tuple[Address, bytes]]
    """Pings to ping-req targets."""
    _started: bool
    _gossip_armed: bool
    """The gossip timer only runs while there is news."""
    _gossip_phase: float
    _now: float
    _handlers: tuple[Handler, ...]

    if TYPE_CHECKING:  # provided by other parts of Swim

        def tick(self, now: float) -> None: ...

        def _settle(self, now: float) -> None: ...

    @property
    def local(self) -> Member:
        """Our current self (the incarnation grows on refutation and metadata updates)."""
        return self._membership.local

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
