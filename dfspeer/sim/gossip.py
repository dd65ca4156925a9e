"""The simulation's gossip driver: one peer's real SWIM core on the virtual clock.

:class:`SimGossip` drives a :class:`dfspeer.gossip.swim.Swim` (the sans-IO core the UDP
agent, :class:`dfspeer.gossip.agent.GossipAgent`, drives in production) the way the agent
does, with the simulated network (:mod:`.network`) in place of sockets:

* a timer on the loop runs ``swim.tick`` at ``swim.next_deadline()`` (the peer's skewed
  wall clock is the core's ``now``, as ``time.time()`` is the agent's), re-armed after
  every input and at least every :data:`~dfspeer.gossip.agent.MAX_SLEEP_S`;
* datagrams travel by :meth:`SimNetwork.send_datagram` (seeded delay, loss, partitions:
  the RPCs' faults) and arrive through :meth:`receive_datagram`;
* a push-pull exchange is a request and a reply over the same network, each leg lost like
  an RPC's (the initiator gives up after the agent's connect or stream timeout); at most
  :data:`~dfspeer.gossip.agent.MAX_OUTBOUND_STREAMS` run at once, one per target;
* :meth:`join` retries with the agent's jittered exponential backoff (0.5 s doubling to
  8 s) until another member is seen ALIVE (:attr:`joined`, what ``Peer.ready`` reads);
* :meth:`leave` broadcasts LEFT and waits, as the agent does, until the core has no update
  left to send or two gossip intervals have passed.

Member events go to the callback given (the peer refreshes its view from
:meth:`members` then, as ``Peer._on_member_event`` does). :meth:`stop` (a crash or a stop)
closes the port at once: the core is dropped, and a restart builds a new one at
incarnation 0, which rejoins and refutes what the others still believe of its old self.
All randomness comes from the ``rng`` given.
"""

from __future__ import annotations

import asyncio
import contextvars
import random
from collections.abc import Callable, Sequence
from typing import Any

from dfspeer.errors import PeerUnreachable
from dfspeer.gossip import Keyring, Member, MemberEvent, MemberState, Swim, SwimConfig
from dfspeer.gossip.agent import (
    JOIN_BACKOFF_INITIAL_S,
    JOIN_BACKOFF_MAX_S,
    MAX_OUTBOUND_STREAMS,
    MAX_SLEEP_S,
    MIN_SLEEP_S,
)
from dfspeer.sim.network import Address, SimNetwork


class SimGossip:
    """One peer's gossip on the simulated network (module docstring).

    ``local``: this peer (incarnation 0 at every start, as ``Peer`` builds it);
    ``clock()``: the peer's wall clock, unix seconds; ``context``: the peer's task
    context (a crash cancels what runs in it); ``on_event(event)``: called for every
    member event, in order.
    """

    def __init__(
        self,
        config: SwimConfig,
        local: Member,
        keyring: Keyring,
        rng: random.Random,
        *,
        network: SimNetwork,
        clock: Callable[[], float],
        context: contextvars.Context,
        on_event: Callable[[MemberEvent], None],
    ) -> None:
        self.config = config
        self.swim = Swim(config, local, keyring, random.Random(rng.getrandbits(64)))
        self.rng = rng
        self.network = network
        self.clock = clock
        self.context = context
        self.on_event = on_event
        self.address: Address = local.gossip_address
        self.joined = False
        """True once another member was seen ALIVE (or there was no one to join)."""
        self.running = False
        self._timer: asyncio.TimerHandle | None = None
        self._armed = float("inf")
        self._outbound: dict[Address, asyncio.Task[None]] = {}

    @property
    def peer_id(self) -> str:
        return self.swim.local.id

    def members(self) -> list[Member]:
        """Every member this core knows, self included, any state but reaped."""
        return self.swim.members()

    # ------------------------------------------------------------------ life
    def start(self) -> None:
        """Open the port (datagrams and push-pulls now reach this core) and arm the timer."""
        self.running = True
        self.network.gossip_ports[self.address] = self
        self._flush()

    def stop(self) -> None:
        """Close the port at once (a crash or a stop: no leave is broadcast)."""
        self.running = False
        if self.network.gossip_ports.get(self.address) is self:
            del self.network.gossip_ports[self.address]
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def join(self, seeds: Sequence[Address]) -> None:
        """Join through ``seeds`` (gossip addresses), retrying with jittered backoff until
        another member is ALIVE here; returns then (run it as a task of the peer)."""
        others = [s for s in seeds if s != self.address]
        if not others:
            self.joined = True
            return
        delay = JOIN_BACKOFF_INITIAL_S
        while not self.joined and self.running:
            self._run(lambda now: self.swim.join(others, now))
            await asyncio.sleep(delay / 2 + self.rng.uniform(0, delay / 2))
            delay = min(delay * 2, JOIN_BACKOFF_MAX_S)

    def update_local(self, **changes: Any) -> Member:
        """Publish new metadata (``weight=0.0`` for a drain) at a higher incarnation."""
        new = self.swim.update_local(self.clock(), **changes)
        self._flush()
        return new

    async def leave(self) -> None:
        """Broadcast LEFT; return once nothing is left to send, or after two gossip
        intervals (at least 0.1 s), as ``GossipAgent.leave`` does."""
        if not self.running:
            return
        self._run(self.swim.leave)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + max(2 * self.config.gossip_interval_s, 0.1)
        while self.swim.pending_broadcasts and loop.time() < deadline:
            await asyncio.sleep(min(self.config.gossip_interval_s / 2, 0.05))

    # ------------------------------------------------------------------ inputs
    def receive_datagram(self, data: bytes, source: Address) -> None:
        """A datagram from ``source`` arrived (called by the network; runs in this peer's
        context, so what it starts is this peer's)."""
        self.context.copy().run(self._run, lambda now: self.swim.receive(data, source, now))

    def serve_push_pull(self, state: bytes) -> bytes | None:
        """Merge a caller's full state; our own in reply, None if it was rejected (the
        agent then closes the stream without answering)."""
        return self.context.copy().run(self._serve, state)

    def _serve(self, state: bytes) -> bytes | None:
        if not self.swim.merge_state(state, self.clock()):
            return None
        self._flush()
        return self.swim.local_state()

    def _tick(self) -> None:
        self._timer = None
        self._armed = float("inf")
        self._run(self.swim.tick)

    def _run(self, step: Callable[[float], object]) -> None:
        if self.running:
            step(self.clock())
            self._flush()

    # ------------------------------------------------------------------ outputs
    def _flush(self) -> None:
        """Send the core's datagrams, hand on its events, start its push-pulls, re-arm."""
        if not self.running:
            return
        swim = self.swim
        for dest, data in swim.drain_datagrams():
            self.network.send_datagram(self.peer_id, self.address, dest, data)
        for event in swim.drain_events():
            member = event.member
            if member.id != self.peer_id and member.state is MemberState.ALIVE:
                self.joined = True
            self.on_event(event)
        for target in swim.drain_push_pull():
            self._start_push_pull(target)
        self._arm()

    def _arm(self) -> None:
        deadline = self.swim.next_deadline()
        if deadline >= self._armed and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
        delay = min(max(deadline - self.clock(), MIN_SLEEP_S), MAX_SLEEP_S)
        loop = asyncio.get_running_loop()
        self._armed = deadline
        self._timer = loop.call_later(delay, self._tick, context=self.context.copy())

    def _start_push_pull(self, target: Address) -> None:
        if target in self._outbound or target == self.address:
            return
        if len(self._outbound) >= MAX_OUTBOUND_STREAMS:
            self.swim.count("push_pull.skipped")
            return
        loop = asyncio.get_running_loop()
        task = loop.create_task(self._push_pull(target), context=self.context.copy())
        self._outbound[target] = task

    async def _push_pull(self, target: Address) -> None:
        try:
            reply = await self.network.push_pull(self.peer_id, target, self.swim.local_state())
        except PeerUnreachable:
            return
        finally:
            self._outbound.pop(target, None)
        if self.running:
            self.swim.merge_state(reply, self.clock())
            self._flush()
