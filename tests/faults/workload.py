"""Client load for the fault scenarios: tracked uploads and a verifying read load.

Everything here runs on the hub-namespace loop (inside :meth:`FaultNet.run`).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from dfspeer.errors import DfsError
from tests.faults.checks import Ledger
from tests.faults.netns import FaultNet

BUCKET = "faults"


def payload(seed: int, size: int) -> bytes:
    """Deterministic pseudo-random bytes."""
    return random.Random(seed).randbytes(size)


def object_sizes(count: int, chunk_size: int, seed: int = 0) -> list[int]:
    """Mostly small objects (inline and single-chunk), every 10th one 2-4 chunks long."""
    rng = random.Random(seed)
    sizes = []
    for n in range(count):
        if n % 10 == 3:
            sizes.append(rng.randint(chunk_size + 1, 4 * chunk_size - 1))
        elif n % 3 == 0:
            sizes.append(rng.randint(1, 4096))
        else:
            sizes.append(rng.randint(4097, chunk_size))
    return sizes


async def put_tracked(
    net: FaultNet, index: int, ledger: Ledger, key: str, data: bytes, bucket: str = BUCKET
) -> bool:
    """Upload through host ``index``; record the outcome in ``ledger``. True if acked."""
    try:
        info = await net.client(index).put_object(bucket, key, data)
    except DfsError as exc:
        ledger.fail(bucket, key, exc)
        return False
    ledger.ack(bucket, key, data, info)
    return True


async def upload_stream(
    net: FaultNet,
    ledger: Ledger,
    items: Sequence[tuple[str, bytes]],
    coordinators: Callable[[int], Sequence[int]],
    *,
    concurrency: int = 4,
    pause_s: float = 0.0,
) -> None:
    """Upload ``items`` (key, bytes) with ``concurrency`` writers, each pausing
    ``pause_s`` after every upload; item ``n`` goes through ``coordinators(n)[n % len]``
    (e.g. the hosts running at that moment)."""
    queue = list(enumerate(items))
    queue.reverse()

    async def writer() -> None:
        while queue:
            n, (key, data) = queue.pop()
            hosts = coordinators(n)
            await put_tracked(net, hosts[n % len(hosts)], ledger, key, data)
            await asyncio.sleep(pause_s)

    await asyncio.gather(*(writer() for _ in range(concurrency)))


@dataclass
class ReadLoad:
    """Readers fetching random acknowledged objects from ``targets()`` until stopped;
    every failure or wrong answer is kept in ``failures`` (host, key, error)."""

    net: FaultNet
    ledger: Ledger
    targets: Callable[[], Sequence[int]]
    readers: int = 3
    reads: int = 0
    failures: list[str] = field(default_factory=list)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _stop: bool = False

    def start(self) -> None:
        self._tasks = [asyncio.create_task(self._reader(r)) for r in range(self.readers)]

    async def stop(self) -> None:
        self._stop = True
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _reader(self, seed: int) -> None:
        rng = random.Random(seed)
        while not self._stop:
            keys = list(self.ledger.acked)
            hosts = list(self.targets())
            if not keys or not hosts:
                await asyncio.sleep(0.1)
                continue
            acked = self.ledger.acked[rng.choice(keys)]
            host = rng.choice(hosts)
            try:
                got = await self.net.client(host).get_object(acked.bucket, acked.key)
            except DfsError as exc:
                self.failures.append(f"h{host} {acked.key}: {exc.code} ({exc.status}) {exc}")
            else:
                if got != acked.data:
                    self.failures.append(f"h{host} {acked.key}: WRONG BYTES ({len(got)})")
            self.reads += 1
            await asyncio.sleep(0)

    def summary(self) -> str:
        head = "\n".join(self.failures[:20])
        return f"{self.reads} reads, {len(self.failures)} failed:\n{head}"
