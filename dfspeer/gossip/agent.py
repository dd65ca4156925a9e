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
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import random
import time
from collections import Counter
from collections.abc import Callable, Coroutine, Sequence
from ipaddress import ip_address
from typing import Any

import asyncio_dgram

from dfspeer.gossip.config import SwimConfig
from dfspeer.gossip.keyring import Keyring
from dfspeer.gossip.swim import Swim
from dfspeer.gossip.transport import (
    FrameError,
    HostResolver,
    close_stream,
    is_ip,
    read_frame,
    write_frame,
)
from dfspeer.gossip.types import Member, MemberEvent, MemberState

log = logging.getLogger(__name__)

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


class GossipAgent:
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
    def local_member(self) -> Member:
        """This peer as the core sees it (incarnation bumps on refutation)."""
        return self.swim.local

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

    # ------------------------------------------------------------------ sockets
    async def _bind(self) -> None:
        wanted = self.local_member.gossip_address[1]
        for attempt in range(8):
            udp = await asyncio_dgram.bind((self.bind_host, wanted))
            port = int(udp.sockname[1])
            try:
                self._tcp = await asyncio.start_server(self._serve, self.bind_host, port)
            except OSError:
                udp.close()
                if wanted != 0 or attempt == 7:
                    raise
                continue  # ephemeral UDP port was taken on TCP: try another
            self._udp = udp
            self._resolver.family = udp.socket.family
            break
        if port != self.local_member.gossip_address[1]:
            # Port 0 resolved before anything ran: rebuild the core around the real port.
            local = dataclasses.replace(
                self.local_member, gossip_address=(self.local_member.gossip_address[0], port)
            )
            seed = self._rng.getrandbits(64)
            self.swim = Swim(self.config, local, self.keyring, random.Random(seed))
        self._self_addrs = {self.local_member.gossip_address, (str(self._udp.sockname[0]), port)}

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

    async def _receive_loop(self) -> None:
        while True:
            try:
                data, addr = await self._udp.recv()
            except asyncio_dgram.TransportClosed:
                return
            except OSError as exc:  # an earlier send's ICMP error surfaced here
                self.counters["socket_errors"] += 1
                log.debug("udp error: %s", exc)
                continue
            self.counters["msgs_received"] += 1
            self.counters["bytes_received"] += len(data)
            source = (str(addr[0]), int(addr[1]))
            self._run_core(functools.partial(self.swim.receive, data, source))

    async def _send_loop(self) -> None:
        while True:
            addr, data = await self._send_q.get()
            try:
                self._drain_socket_errors()
                await self._udp.send(data, addr)
                self.counters["msgs_sent"] += 1
                self.counters["bytes_sent"] += len(data)
            except asyncio_dgram.TransportClosed:
                return
            except (OSError, ValueError, TypeError) as exc:
                self.counters["dropped.send_error"] += 1
                log.debug("udp send to %s failed: %s", addr, exc)
            finally:
                self._send_q.task_done()

    def _drain_socket_errors(self) -> None:
        # asyncio-dgram raises a queued error (from an earlier sendto) on the next send;
        # consume them first so they do not cost this datagram.
        for _ in range(64):
            try:
                _ = self._udp.exception
                return
            except OSError:
                self.counters["socket_errors"] += 1

    async def _timer_loop(self) -> None:
        while True:
            deadline = self.swim.next_deadline()
            self._armed_deadline = deadline
            delay = min(max(deadline - time.time(), MIN_SLEEP_S), MAX_SLEEP_S)
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=delay)
                continue  # the deadline moved earlier: re-arm
            except TimeoutError:
                pass
            self._run_core(self.swim.tick)

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

    # ------------------------------------------------------------------ join
    async def _join_loop(self, seeds: list[Address]) -> None:
        delay = JOIN_BACKOFF_INITIAL_S
        attempt = 0
        while not self._joined.is_set():
            attempt += 1
            resolved: list[Address] = []
            unresolved = 0
            ips = await asyncio.gather(*(self._resolver.resolve(h, int(p)) for h, p in seeds))
            for ip, (_, port) in zip(ips, seeds, strict=True):
                if ip is None:
                    unresolved += 1
                elif not self._is_self((ip, int(port))):
                    resolved.append((ip, int(port)))
            if resolved:  # the core pings each seed and asks us to push-pull with it
                log.info("gossip join attempt %d via %s", attempt, resolved)
                self._run_core(functools.partial(self.swim.join, resolved))
            elif not unresolved:  # every seed is this agent: it is the first member
                self._mark_joined()
                return
            else:
                log.warning("gossip join attempt %d: no seed of %s resolves", attempt, seeds)
            # "equal jitter": between half and all of the current delay
            sleep_s = delay / 2 + self._rng.uniform(0, delay / 2)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._joined.wait(), timeout=sleep_s)
            delay = min(delay * 2, JOIN_BACKOFF_MAX_S)

    # ------------------------------------------------------------------ push-pull
    def _start_push_pull(self, target: Address) -> None:
        if self._stopped:
            return
        key = (str(target[0]), int(target[1]))
        if key in self._outbound or self._is_self(key):
            return
        if len(self._outbound) >= MAX_OUTBOUND_STREAMS:
            self.counters["push_pull.skipped"] += 1
            return
        self._outbound.add(key)
        self._spawn(self._push_pull(key), "gossip-push-pull")

    async def _push_pull(self, target: Address) -> None:
        """Send our full state to ``target`` and merge its reply (memberlist pushPull)."""
        writer: asyncio.StreamWriter | None = None
        try:
            async with asyncio.timeout(STREAM_TIMEOUT_S):
                reader, stream = await asyncio.wait_for(
                    asyncio.open_connection(*target), timeout=CONNECT_TIMEOUT_S
                )
                writer = stream
                await write_frame(stream, self.swim.local_state())
                reply = await read_frame(reader)
            ok = self.swim.merge_state(reply, time.time())
            self.counters["push_pull.ok" if ok else "push_pull.rejected"] += 1
            self._flush()
        except (OSError, TimeoutError, FrameError, asyncio.IncompleteReadError) as exc:
            self.counters["push_pull.failed"] += 1
            log.debug("push-pull with %s failed: %r", target, exc)
        finally:
            self._outbound.discard(target)
            if writer is not None:
                await close_stream(writer)

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Answer one push-pull: merge the caller's state, reply with ours."""
        task = asyncio.current_task()
        if self._stopped or self._inbound >= MAX_INBOUND_STREAMS or task is None:
            self.counters["push_pull.refused"] += 1
            await close_stream(writer)
            return
        self._inbound += 1
        self._tasks.add(task)
        try:
            async with asyncio.timeout(STREAM_TIMEOUT_S):
                request = await read_frame(reader)
                if not self.swim.merge_state(request, time.time()):
                    self.counters["push_pull.rejected"] += 1
                    return
                self._flush()
                await write_frame(writer, self.swim.local_state())
            self.counters["push_pull.served"] += 1
        except (OSError, TimeoutError, FrameError, asyncio.IncompleteReadError) as exc:
            self.counters["push_pull.failed"] += 1
            log.debug("push-pull served to %s failed: %r", writer.get_extra_info("peername"), exc)
        finally:
            self._inbound -= 1
            self._tasks.discard(task)
            await close_stream(writer)
