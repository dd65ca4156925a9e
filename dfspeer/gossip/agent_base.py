"""The state every part of a :class:`~dfspeer.gossip.agent.GossipAgent` shares, the
driver's limits, and its exchange with the sans-IO core: one input fed to the core, then
its outputs flushed (datagrams queued for the sender task, member events handed to
subscribers, push-pull exchanges started).

:class:`AgentBase` declares the state that the agent's constructor (:mod:`.agent`) sets.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from ipaddress import ip_address
from typing import TYPE_CHECKING, Any

from dfspeer.gossip.config import SwimConfig
from dfspeer.gossip.keyring import Keyring
from dfspeer.gossip.swim import Swim
from dfspeer.gossip.transport import HostResolver, is_ip
from dfspeer.gossip.types import Member, MemberEvent, MemberState

log = logging.getLogger("dfspeer.gossip.agent")

Address = tuple[str, int]

STREAM_TIMEOUT_S = 10.0  # whole push-pull exchange (either side)
CONNECT_TIMEOUT_S = 3.0
MIN_SLEEP_S = 0.005
MAX_SLEEP_S = 1.0
SEND_QUEUE_MAX = 8192  # datagrams waiting for the socket
MAX_OUTBOUND_STREAMS = 4  # concurrent push-pull exchanges we start
MAX_INBOUND_STREAMS = 16  # concurrent push-pull exchanges we serve
JOIN_BACKOFF_INITIAL_S = 0.5
JOIN_BACKOFF_MAX_S = 8.0


class AgentBase:
    """State and core I/O shared by the parts of a
    :class:`~dfspeer.gossip.agent.GossipAgent` (whose docstring describes the arguments
    that set them)."""

    config: SwimConfig
    keyring: Keyring
    bind_host: str
    _rng: random.Random
    swim: Swim
    counters: Counter[str]
    _subscribers: list[Callable[[MemberEvent], None]]
    _udp: Any
    _tcp: asyncio.Server | None
    _self_addrs: set[Address]
    _send_q: asyncio.Queue[tuple[Address, bytes]]
    _wake: asyncio.Event
    _armed_deadline: float
    _joined: asyncio.Event
    _tasks: set[asyncio.Task[Any]]
    _join_task: asyncio.Task[None] | None
    _outbound: set[Address]
    _inbound: int
    _resolver: HostResolver
    _started: bool
    _stopped: bool

    if TYPE_CHECKING:  # provided by other parts of GossipAgent

        def _start_push_pull(self, target: Address) -> None: ...

        async def _serve(
            self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
        ) -> None: ...

    @property
    def local_member(self) -> Member:
        """This peer as the core sees it (incarnation bumps on refutation)."""
        return self.swim.local

    def _is_self(self, addr: Address) -> bool:
        """True if ``addr`` reaches this agent (its own or, on a wildcard bind, loopback)."""
        if addr in self._self_addrs:
            return True
        port = self.local_member.gossip_address[1]
        wildcard = self.bind_host in ("", "0.0.0.0", "::")
        return wildcard and addr[1] == port and is_ip(addr[0]) and ip_address(addr[0]).is_loopback

    def _spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        task = asyncio.get_running_loop().create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("gossip task %s failed", task.get_name(), exc_info=task.exception())

    # ------------------------------------------------------------------ core I/O
    def _run_core(self, step: Callable[[float], object]) -> None:
        """Feed one input to the core, then flush its outputs. Never raises."""
        try:
            step(time.time())
        except Exception:  # the core promises not to raise; keep the agent alive if it does
            self.counters["core_errors"] += 1
            log.exception("gossip core raised")
        self._flush()

    def _flush(self) -> None:
        for dest, data in self.swim.drain_datagrams():
            addr = self._resolver.route(dest, stopped=self._stopped)
            if addr is None:
                continue
            try:
                self._send_q.put_nowait((addr, data))
            except asyncio.QueueFull:
                self.counters["dropped.send_queue_full"] += 1
        for event in self.swim.drain_events():
            self._dispatch(event)
        for target in self.swim.drain_push_pull():
            self._start_push_pull(target)
        if self.swim.next_deadline() < self._armed_deadline:
            self._wake.set()

    def _dispatch(self, event: MemberEvent) -> None:
        member = event.member
        if member.id != self.local_member.id and member.state is MemberState.ALIVE:
            self._mark_joined()
        for callback in list(self._subscribers):
            try:
                callback(event)
            except Exception:
                self.counters["subscriber_errors"] += 1
                log.exception("gossip subscriber %r failed on %s", callback, event)

    def _mark_joined(self) -> None:
        if not self._joined.is_set():
            self._joined.set()
            log.info("gossip %s joined the cluster", self.local_member.id)
