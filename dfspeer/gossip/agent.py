"""GossipAgent: the sans-IO SWIM core (:class:`~dfspeer.gossip.swim.Swim`) on real I/O.

One UDP socket (asyncio-dgram) for SWIM datagrams and one TCP listener on the same port for
full-state push-pull, as in HashiCorp memberlist. The core decides what to send; the driver
moves bytes and keeps time. A receive task feeds ``swim.receive``; a timer task sleeps until
``swim.next_deadline()`` (clamped to 5 ms..1 s, woken early when a receive moves it) and
calls ``swim.tick``. After each input, a flush queues the core's datagrams for a sender task
(a full queue, an unresolved host or an ``OSError`` drops and counts the datagram, so one
bad address never stalls the loop), hands member events to subscribers (one that raises is
logged, never fatal) and starts push-pull exchanges. A join task resolves seeds, calls
``swim.join`` and push-pulls with each seed, retrying with jittered exponential backoff
(0.5 s doubling to 8 s) until another member is alive.

Clock: ``now`` is ``time.time()`` (wall-clock seconds), because the core's replay window
compares sender timestamps across hosts. Push-pull framing, each way: 4-byte big-endian
length + sealed payload, capped at :data:`MAX_FRAME_BYTES`; the responder replies only when
the request opened and merged (no answer, no amplification for unauthenticated callers).

The agent is assembled from one part per concern: :mod:`.agent_base` (the state the parts
share, the driver's limits and the exchange with the core), :mod:`.agent_loops` (sockets,
receive, send, timer and join tasks) and :mod:`.agent_pushpull` (push-pull streams); this
module keeps its construction and its API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from dfspeer.gossip.agent_base import (
    CONNECT_TIMEOUT_S,
    JOIN_BACKOFF_INITIAL_S,
    JOIN_BACKOFF_MAX_S,
    MAX_INBOUND_STREAMS,
    MAX_OUTBOUND_STREAMS,
    MAX_SLEEP_S,
    MIN_SLEEP_S,
    SEND_QUEUE_MAX,
    STREAM_TIMEOUT_S,
    Address,
)
from dfspeer.gossip.agent_loops import AgentLoops
from dfspeer.gossip.agent_pushpull import AgentPushPull
from dfspeer.gossip.config import SwimConfig
from dfspeer.gossip.keyring import Keyring
from dfspeer.gossip.swim import Swim
from dfspeer.gossip.transport import HostResolver
from dfspeer.gossip.types import Member, MemberEvent

__all__ = [
    "CONNECT_TIMEOUT_S",
    "JOIN_BACKOFF_INITIAL_S",
    "JOIN_BACKOFF_MAX_S",
    "MAX_INBOUND_STREAMS",
    "MAX_OUTBOUND_STREAMS",
    "MAX_SLEEP_S",
    "MIN_SLEEP_S",
    "SEND_QUEUE_MAX",
    "STREAM_TIMEOUT_S",
    "GossipAgent",
]

log = logging.getLogger(__name__)


class GossipAgent(AgentLoops, AgentPushPull):
    """SWIM member on a real network: UDP datagrams + TCP push-pull on one port.

    ``config``: core timers and sizes; ``self_member``: this peer (its ``gossip_address``
    port is the port to bind, 0 = any free port, after which ``local_member`` carries the
    real one); ``keyring``: cluster keys; ``bind_host``: local address for both sockets.
    ``rng`` seeds the core and the join jitter (tests). ``counters`` holds the driver's
    own counts (datagrams/bytes sent and received, drops by reason, push-pull results);
    the core's are in ``swim.counters``.
    """

    def __init__(
        self,
        config: SwimConfig,
        self_member: Member,
        keyring: Keyring,
        *,
        bind_host: str,
        rng: random.Random | None = None,
    ) -> None:
        self.config = config
        self.keyring = keyring
        self.bind_host = bind_host
        self._rng = rng if rng is not None else random.Random()
        self.swim = Swim(config, self_member, keyring, random.Random(self._rng.getrandbits(64)))
        self.counters: Counter[str] = Counter()
        self._subscribers: list[Callable[[MemberEvent], None]] = []
        self._udp: Any = None
        self._tcp: asyncio.Server | None = None
        self._self_addrs: set[Address] = set()
        self._send_q: asyncio.Queue[tuple[Address, bytes]] = asyncio.Queue(SEND_QUEUE_MAX)
        self._wake = asyncio.Event()
        self._armed_deadline = float("inf")
        self._joined = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._join_task: asyncio.Task[None] | None = None
        self._outbound: set[Address] = set()
        self._inbound = 0
        self._resolver = HostResolver(self.counters, self._spawn)
        self._started = False
        self._stopped = False

    # ------------------------------------------------------------------ surface
    @property
    def joined(self) -> bool:
        """True once another member has been seen alive, or join() had no other seeds."""
        return self._joined.is_set()

    def members(self) -> list[Member]:
        """Every known member including self, in any state except reaped."""
        return self.swim.members()

    def subscribe(self, callback: Callable[[MemberEvent], None]) -> None:
        """Call ``callback(event)`` for every member event, on the event loop, in order."""
        self._subscribers.append(callback)

    async def start(self) -> None:
        """Bind UDP and TCP on ``(bind_host, gossip port)`` and start the tasks.

        Raises OSError if the port cannot be bound, RuntimeError if started twice.
        """
        if self._started:
            raise RuntimeError("GossipAgent already started")
        self._started = True
        await self._bind()
        self._spawn(self._receive_loop(), "gossip-recv")
        self._spawn(self._send_loop(), "gossip-send")
        self._spawn(self._timer_loop(), "gossip-timer")
        local = self.local_member
        log.info("gossip %s on %s:%d", local.id, self.bind_host, local.gossip_address[1])

    async def join(self, seeds: Sequence[Address]) -> None:
        """Join through ``seeds`` ((host, port) pairs; hostnames allowed) in the background.

        Returns at once; retries with jittered exponential backoff until another member is
        alive or the agent stops. Seeds that are this agent itself are ignored; with no
        other seed the agent counts as joined (it is the first member).
        """
        if not self._started or self._stopped:
            raise RuntimeError("GossipAgent is not running")
        others = [s for s in seeds if not self._is_self((s[0], int(s[1])))]
        if not others:
            self._mark_joined()
            return
        if self._join_task is not None:
            self._join_task.cancel()
        self._join_task = self._spawn(self._join_loop(others), "gossip-join")

    def update_local(self, **changes: Any) -> Member:
        """Publish new metadata for self (``zone``, ``weight``, ``version``, ``api_address``,
        ``gossip_address``) at a higher incarnation; others see an UPDATED event. Returns
        the new self. Raises ValueError for another field, after leave, or if not running."""
        if not self._started or self._stopped:
            raise ValueError("GossipAgent is not running")
        new = self.swim.update_local(time.time(), **changes)
        self._flush()
        return new

    def remove_member(self, member_id: str) -> Member:
        """Forget a DEAD member for good and gossip it (see ``Swim.remove_member``); the
        member, now LEFT. Raises ``UnknownMember``, ``MemberIsLive``, or ValueError if
        the agent is not running."""
        if not self._started or self._stopped:
            raise ValueError("GossipAgent is not running")
        removed = self.swim.remove_member(member_id, time.time())
        self._flush()
        return removed

    async def leave(self) -> None:
        """Broadcast LEFT for self; return once the core has no update left to send or
        after two gossip intervals (at least 0.1 s), with the send queue flushed."""
        if not self._started or self._stopped:
            return
        if self._join_task is not None:
            self._join_task.cancel()
        self._run_core(self.swim.leave)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(2 * self.config.gossip_interval_s, 0.1)
        while self.swim.pending_broadcasts and loop.time() < deadline:
            await asyncio.sleep(min(self.config.gossip_interval_s / 2, 0.05))
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._send_q.join(), timeout=0.5)

    async def stop(self) -> None:
        """Cancel every task and close both sockets. Idempotent; no leave broadcast."""
        if self._stopped:
            return
        self._stopped = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._tcp is not None:
            self._tcp.close()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._tcp.wait_closed(), timeout=1.0)
        if self._udp is not None:
            self._udp.close()
