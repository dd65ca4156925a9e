"""Transport pieces of the gossip driver: push-pull stream framing and a host resolver.

Push-pull framing, each way: 4-byte big-endian length + sealed payload, capped at
:data:`MAX_FRAME_BYTES`. :class:`HostResolver` maps member gossip hostnames to IPs with a
TTL cache, resolving in the background so a datagram send never waits on DNS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections import Counter
from collections.abc import Callable, Coroutine
from ipaddress import ip_address
from typing import Any

log = logging.getLogger("dfspeer.gossip.agent")

Address = tuple[str, int]

MAX_FRAME_BYTES = 32 * 1024 * 1024  # push-pull frame cap, bytes
RESOLVE_TIMEOUT_S = 2.0
RESOLVE_TTL_S = 30.0  # cache of hostname -> IP for member gossip addresses


class FrameError(Exception):
    """A push-pull frame is larger than the cap."""


async def read_frame(reader: asyncio.StreamReader, max_bytes: int = MAX_FRAME_BYTES) -> bytes:
    """Read one ``4-byte BE length + payload`` frame. Raises FrameError,
    asyncio.IncompleteReadError."""
    size = int.from_bytes(await reader.readexactly(4), "big")
    if size > max_bytes:
        raise FrameError(f"frame of {size} bytes exceeds {max_bytes}")
    return await reader.readexactly(size)


async def write_frame(writer: asyncio.StreamWriter, payload: bytes) -> None:
    """Write one frame and wait for the transport to drain. Raises FrameError, OSError."""
    if len(payload) > MAX_FRAME_BYTES:
        raise FrameError(f"frame of {len(payload)} bytes exceeds {MAX_FRAME_BYTES}")
    writer.write(len(payload).to_bytes(4, "big"))
    writer.write(payload)
    await writer.drain()


def is_ip(host: str) -> bool:
    try:
        ip_address(host)
    except ValueError:
        return False
    return True


class HostResolver:
    """Hostname -> IP cache (TTL :data:`RESOLVE_TTL_S`, failures retried after a sixth).

    ``counters`` receives ``dropped.unresolved`` and ``resolve_errors``; ``spawn(coro,
    name)`` runs a background lookup; ``family`` is the socket family to resolve for.
    """

    def __init__(
        self,
        counters: Counter[str],
        spawn: Callable[[Coroutine[Any, Any, Any], str], Any],
    ) -> None:
        self.counters = counters
        self.family: int = socket.AF_INET
        self._spawn = spawn
        self._resolved: dict[str, tuple[str | None, float]] = {}
        self._resolving: set[str] = set()

    def route(self, dest: Address, *, stopped: bool = False) -> Address | None:
        """An IP destination for ``dest``; None (datagram dropped) while a hostname resolves."""
        host, port = dest
        if is_ip(host):
            return dest
        ip, expires = self._resolved.get(host, (None, 0.0))
        if time.monotonic() >= expires and host not in self._resolving and not stopped:
            self._resolving.add(host)
            self._spawn(self._resolve_cached(host, port), "gossip-resolve")
        if ip is None:
            self.counters["dropped.unresolved"] += 1
            return None
        return (ip, port)

    async def _resolve_cached(self, host: str, port: int) -> None:
        try:
            ip = await self.resolve(host, port)
            ttl = RESOLVE_TTL_S if ip is not None else RESOLVE_TTL_S / 6
            old = self._resolved.get(host, (None, 0.0))[0]
            self._resolved[host] = (ip or old, time.monotonic() + ttl)
        finally:
            self._resolving.discard(host)

    async def resolve(self, host: str, port: int) -> str | None:
        """First address of ``host`` in the socket's family, or None (logged) on failure."""
        if is_ip(host):
            return host
        loop = asyncio.get_running_loop()
        try:
            infos = await asyncio.wait_for(
                loop.getaddrinfo(host, port, family=self.family, type=socket.SOCK_DGRAM),
                timeout=RESOLVE_TIMEOUT_S,
            )
        except (OSError, TimeoutError) as exc:
            self.counters["resolve_errors"] += 1
            log.warning("gossip: cannot resolve %s: %s", host, exc or "timeout")
            return None
        return str(infos[0][4][0]) if infos else None


async def close_stream(writer: asyncio.StreamWriter) -> None:
    """Close a push-pull stream, waiting at most 1 s."""
    writer.close()
    with contextlib.suppress(OSError, TimeoutError):
        await asyncio.wait_for(writer.wait_closed(), timeout=1.0)
