"""The sockets of a :class:`~dfspeer.gossip.agent.GossipAgent` and the tasks that run on
them: binding UDP and TCP on one port, the receive loop feeding datagrams to the core, the
send loop draining the send queue, the timer loop that ticks the core at its next
deadline, and the join task that retries with jittered exponential backoff.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import functools
import logging
import random
import time

import asyncio_dgram

from dfspeer.gossip.agent_base import (
    JOIN_BACKOFF_INITIAL_S,
    JOIN_BACKOFF_MAX_S,
    MAX_SLEEP_S,
    MIN_SLEEP_S,
    Address,
    AgentBase,
)
from dfspeer.gossip.swim import Swim

log = logging.getLogger("dfspeer.gossip.agent")


class AgentLoops(AgentBase):
    """:class:`~dfspeer.gossip.agent.GossipAgent` sockets and background tasks."""

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
