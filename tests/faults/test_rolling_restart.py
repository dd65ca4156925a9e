"""Rolling restart under load: every one of five peers in turn gets SIGTERM, is started
again on the same data dir (as an upgrade would) and must be ``ready`` before the next.

Clients go through a load balancer's pool (:class:`RollingLoad`): a peer leaves the pool
once its ``/ready`` answers 503 (it is stopping) and rejoins it once ready again. Writers
and readers keep going the whole time; a client retries only an answer ``503`` with
``Retry-After`` (waiting what it says, on another peer of the pool) and counts it; any
other error fails the request. For each stopped peer a slow streamed upload is in flight
when SIGTERM arrives: it must complete (201) and read back, and a request sent to the peer
while it drains must get 503 ``not_ready`` with ``Retry-After: 1``.

Invariants at the end: no client request failed, the agents exited 0, every acknowledged
write reads back byte-identical from every peer, and every object is held by exactly its N
replicas (:func:`wait_all_readable`, :func:`wait_replicated`).
"""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import pytest

from dfspeer.client import Client
from dfspeer.errors import DfsError
from tests.faults.checks import Ledger, wait_all_readable, wait_replicated
from tests.faults.conftest import CHUNK_BYTES
from tests.faults.membership import wait_view
from tests.faults.netns import FaultNet
from tests.faults.workload import payload

pytestmark = pytest.mark.faults

T = TypeVar("T")
BUCKET = "rolling"
MAX_ATTEMPTS = 6  # per request, the first one included
RETRY_AFTER_CAP_S = 2.0
WRITERS, READERS = 3, 3
MAX_WRITES_PER_WRITER = 2000  # bounded, far above what the restarts take
SLOW_PIECES, SLOW_PIECE_BYTES, SLOW_PIECE_PAUSE_S = 12, 32 * 1024, 0.1
READY_TIMEOUT_S = 60.0
STOP_TIMEOUT_S = 30.0


class RollingLoad:
    """Writers and readers through the peers of a load balancer's pool (``pool``)."""

    def __init__(self, net: FaultNet, ledger: Ledger) -> None:
        self.net = net
        self.ledger = ledger
        self.pool: set[int] = set(net.indices)
        self.clients = {i: Client(net.host(i).url, timeout_s=30.0, max_attempts=1)
                        for i in net.indices}  # fmt: skip
        self.rng = random.Random(5)
        self.retries = 0
        self.retried: list[str] = []  # "h3 not_ready" per retry
        self.failures: list[str] = []
        self.reads = 0
        self.writes = 0
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []

    async def call(self, what: str, op: Callable[[Client], Awaitable[T]]) -> T:
        """``op`` through a random peer of the pool; a 503 with ``Retry-After`` is retried
        (on another peer when there is one) after the wait it asks for, capped."""
        avoid: int | None = None
        for attempt in range(1, MAX_ATTEMPTS + 1):
            hosts = sorted(self.pool - {avoid}) or sorted(self.pool)
            host = self.rng.choice(hosts)
            try:
                return await op(self.clients[host])
            except DfsError as exc:
                retry_after = exc.retry_after_s
                if exc.status != 503 or retry_after is None or attempt == MAX_ATTEMPTS:
                    raise DfsError(
                        f"{what} via h{host} (attempt {attempt}): {exc.code} ({exc.status}) "
                        f"{exc.message}",
                        code=exc.code,
                        status=exc.status,
                    ) from exc
                self.retries += 1
                self.retried.append(f"h{host} {exc.code}")
                avoid = host
                await asyncio.sleep(min(retry_after, RETRY_AFTER_CAP_S))
        raise AssertionError("unreachable")

    async def _writer(self, w: int) -> None:
        for n in range(MAX_WRITES_PER_WRITER):
            if self._stop.is_set():
                return
            key = f"w{w}/{n:05d}"
            size = CHUNK_BYTES + 300 if n % 5 == 0 else 200 + 37 * n % 5000
            data = payload(w * 1_000_000 + n, size)
            try:
                info = await self.call(
                    f"PUT {key}", lambda c, k=key, d=data: c.put_object(BUCKET, k, d)
                )
            except DfsError as exc:
                self.failures.append(str(exc))
                self.ledger.fail(BUCKET, key, exc)
            else:
                self.ledger.ack(BUCKET, key, data, info)
                self.writes += 1
            await asyncio.sleep(0.03)

    async def _reader(self) -> None:
        while not self._stop.is_set():
            keys = sorted(self.ledger.acked)
            if not keys:
                await asyncio.sleep(0.05)
                continue
            acked = self.ledger.acked[self.rng.choice(keys)]
            try:
                got = await self.call(
                    f"GET {acked.key}", lambda c, a=acked: c.get_object(a.bucket, a.key)
                )
            except DfsError as exc:
                self.failures.append(str(exc))
            else:
                if got != acked.data:
                    self.failures.append(f"GET {acked.key}: WRONG BYTES ({len(got)})")
                self.reads += 1
            await asyncio.sleep(0.01)

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._writer(w)) for w in range(WRITERS)]
        self._tasks += [asyncio.create_task(self._reader()) for _ in range(READERS)]

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        for c in self.clients.values():
            await c.close()

    def summary(self) -> str:
        return (
            f"{self.writes} writes, {self.reads} reads, {self.retries} retries "
            f"({', '.join(sorted(set(self.retried)))}), {len(self.failures)} failed:\n"
            + "\n".join(self.failures[:20])
        )


async def _slow_body(started: asyncio.Event) -> AsyncIterator[bytes]:
    """A streamed body that takes ~1.2 s: still in flight when SIGTERM arrives."""
    for n in range(SLOW_PIECES):
        if n == 1:
            started.set()
        yield payload(77_000 + n, SLOW_PIECE_BYTES)
        await asyncio.sleep(SLOW_PIECE_PAUSE_S)


SLOW_DATA = b"".join(payload(77_000 + n, SLOW_PIECE_BYTES) for n in range(SLOW_PIECES))


async def _is_ready(c: Client) -> bool:
    try:
        return await c.ready()
    except DfsError:
        return False


async def _restart(net: FaultNet, load: RollingLoad, index: int, ledger: Ledger) -> None:
    """SIGTERM ``index`` with a slow upload in flight, take it out of the pool once it is
    not ready, check it drains, start it again, put it back once ready."""
    probe = Client(net.host(index).url, timeout_s=30.0, max_attempts=1)
    try:
        started = asyncio.Event()
        key = f"slow/h{index}"
        upload = asyncio.create_task(probe.put_object(BUCKET, key, _slow_body(started)))
        await asyncio.wait_for(started.wait(), 10.0)
        await asyncio.sleep(SLOW_PIECE_PAUSE_S)  # the coordinator is reading the body
        stopping = asyncio.create_task(
            asyncio.to_thread(net.kill, index, signal.SIGTERM, STOP_TIMEOUT_S)
        )
        deadline = time.monotonic() + 10.0
        while await _is_ready(probe):  # the load balancer's health check
            assert time.monotonic() < deadline, f"h{index} still ready after SIGTERM"
            await asyncio.sleep(0.02)
        load.pool.discard(index)
        if not upload.done():  # draining: new requests are refused, and say when to retry
            with pytest.raises(DfsError) as refused:
                await probe.list_objects(BUCKET, limit=1)
            assert (refused.value.status, refused.value.code) == (503, "not_ready")
            assert refused.value.retry_after_s == 1.0
        info = await asyncio.wait_for(upload, 30.0)  # the request in flight completed
        ledger.ack(BUCKET, key, SLOW_DATA, info)
        code = await stopping
        assert code == 0, f"h{index} exited {code} on SIGTERM\n{net.logs([index])}"
        assert "peer stopped" in net.host(index).log_tail(200), net.logs([index])
    finally:
        await probe.close()
    net.start(index)  # the "upgraded" agent, same data dir and id
    fresh = Client(net.host(index).url, timeout_s=10.0, max_attempts=1)
    try:
        deadline = time.monotonic() + READY_TIMEOUT_S
        while not await _is_ready(fresh):
            assert net.host(index).running, f"h{index} exited\n{net.logs([index])}"
            assert time.monotonic() < deadline, f"h{index} not ready\n{net.logs([index])}"
            await asyncio.sleep(0.1)
    finally:
        await fresh.close()
    load.pool.add(index)
    await wait_view(net, net.indices, timeout_s=30.0)


def test_rolling_restart_under_load(net: FaultNet) -> None:
    """SIGTERM + restart h1..h5 one after the other under a steady read and write load."""
    net.run(_rolling_restart(net), timeout_s=280)


async def _rolling_restart(net: FaultNet) -> None:
    ledger = Ledger()
    load = RollingLoad(net, ledger)
    load.start()
    try:
        while load.writes < 30:  # a steady state first
            await asyncio.sleep(0.1)
        for index in net.indices:
            await _restart(net, load, index, ledger)
            await asyncio.sleep(1.0)  # some load on the whole cluster between restarts
    finally:
        await load.stop()
    assert not load.failures, load.summary()
    assert not ledger.failed, ledger.summary()
    assert load.writes >= 50 and load.reads >= 50, load.summary()
    print(f"rolling restart: {load.summary()}")
    await wait_all_readable(net, ledger, timeout_s=60.0)
    await wait_replicated(net, ledger, timeout_s=120.0)
