"""Peers dying and coming back (127.0.0.24..26, default chunk size, N=3 W=2 R=2).

In order: a round trip at the default chunk size; SIGKILL one agent (reads and writes go
on, W=2); SIGKILL a second (writes answer 503 and leave nothing visible, reads succeed or
answer 503); restart both (service resumes, the failed write never appears).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from dfspeer.client import Client
from dfspeer.config import PeerConfig
from dfspeer.errors import DfsError, NoSuchKey
from dfspeer.localcluster import LocalCluster

pytestmark = pytest.mark.integration

BUCKET = "failures"
CHUNK = PeerConfig().chunk_size_bytes
DETECT_TIMEOUT_S = 30.0
# Written before any failure; every later phase reads them back.
SEEDED: dict[str, bytes] = {}


def payload(size: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(size)


@pytest.fixture
async def cs(failure_cluster: LocalCluster) -> AsyncIterator[list[Client]]:
    clients = [Client(url, timeout_s=30.0) for url in failure_cluster.urls]
    yield clients
    for c in clients:
        await c.close()


async def read_all(c: Client, objects: dict[str, bytes]) -> None:
    for key, want in objects.items():
        got = await c.get_object(BUCKET, key)
        assert got == want, f"{c.base_url} {key}"


async def wait_for(what: str, check: Callable[[], Awaitable[bool]], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        await asyncio.sleep(0.2)


async def test_round_trip_at_default_chunk_size(cs: list[Client]) -> None:
    for size in (CHUNK - 1, CHUNK, CHUNK + 1, 10):
        data = payload(size, size)
        key = f"seed/{size}"
        info = await cs[size % 3].put_object(
            BUCKET, key, data, sha256=hashlib.sha256(data).hexdigest()
        )
        if size > PeerConfig().inline_threshold_bytes:
            assert info["chunks"] == -(-size // CHUNK)
        SEEDED[key] = data
    for c in cs:
        await read_all(c, SEEDED)
        ranged = await c.get_object(BUCKET, f"seed/{CHUNK + 1}", range=(CHUNK - 2, None))
        assert ranged == SEEDED[f"seed/{CHUNK + 1}"][CHUNK - 2 :]


async def test_one_peer_down_reads_and_writes_go_on(
    failure_cluster: LocalCluster, cs: list[Client]
) -> None:
    assert SEEDED, "runs after test_round_trip_at_default_chunk_size"
    failure_cluster.kill(3)
    live = cs[:2]
    # At once (peer-3 still believed alive: its replicas fail fast, the others ack) ...
    for i, c in enumerate(live):
        data = payload(CHUNK + 7 * i, 100 + i)
        await c.put_object(BUCKET, f"one-down/now-{i}", data)
        SEEDED[f"one-down/now-{i}"] = data
        await read_all(c, SEEDED)
    # ... and once the others have declared it dead.
    failure_cluster.wait_view([1, 2], timeout_s=DETECT_TIMEOUT_S)
    for i, c in enumerate(live):
        data = payload(3000 + i, 200 + i)
        await c.put_object(BUCKET, f"one-down/later-{i}", data)
        SEEDED[f"one-down/later-{i}"] = data
    for c in live:
        await read_all(c, SEEDED)


async def test_two_peers_down_writes_503_and_nothing_visible(
    failure_cluster: LocalCluster, cs: list[Client]
) -> None:
    failure_cluster.kill(3)  # no-op if the previous test already killed it
    failure_cluster.kill(2)
    last = cs[0]
    for attempt in ("now", "after-detection"):
        if attempt == "after-detection":
            failure_cluster.wait_view([1], timeout_s=DETECT_TIMEOUT_S)
        for size in (100, CHUNK + 1):
            key = f"two-down/{attempt}-{size}"
            with pytest.raises(DfsError) as exc:
                await last.put_object(BUCKET, key, payload(size, size))
            assert exc.value.status == 503, exc.value
            assert exc.value.code == "insufficient_replicas", exc.value
            with pytest.raises(DfsError) as read_exc:
                await last.get_object(BUCKET, key)
            assert read_exc.value.status in (404, 503)
    for key, want in SEEDED.items():
        try:
            got = await last.get_object(BUCKET, key)
        except DfsError as exc:
            assert exc.status == 503, f"{key}: {exc.code} {exc.message}"
        else:
            assert got == want, key


async def test_restart_both_service_resumes(
    failure_cluster: LocalCluster, cs: list[Client]
) -> None:
    for index in (2, 3):
        if not failure_cluster.peer(index).running:
            failure_cluster.start_peer(index)
    failure_cluster.wait_ready(60.0)
    failure_cluster.wait_view([1, 2, 3], timeout_s=60.0)
    for i, c in enumerate(cs):
        data = payload(CHUNK + 3 + i, 300 + i)
        await c.put_object(BUCKET, f"resumed/{i}", data)
        SEEDED[f"resumed/{i}"] = data
    for c in cs:
        await read_all(c, SEEDED)
        for attempt in ("now", "after-detection"):
            for size in (100, CHUNK + 1):
                with pytest.raises(NoSuchKey):
                    await c.get_object(BUCKET, f"two-down/{attempt}-{size}")
        listed = [o["key"] async for o, _ in c.iter_objects(BUCKET, "two-down/") if o]
        assert listed == []


async def test_sigterm_stops_gracefully_and_keeps_its_partitions(
    failure_cluster: LocalCluster, cs: list[Client]
) -> None:
    """SIGTERM: the agent exits 0 without leaving: the others see it dead and keep it in
    their rings (a restart must not move partitions), writes go on, and once restarted it
    is alive again and serves what was written meanwhile."""
    ring_before = await cs[0].ring()
    assert failure_cluster.kill(3, signal.SIGTERM) == 0
    assert "stopped" in failure_cluster.peer(3).log_tail(5)
    for index in (1, 2):
        await wait_for(
            "peer-3 to be seen as dead",
            lambda i=index: _state_is(failure_cluster, i, "peer-3", "dead"),
            DETECT_TIMEOUT_S,
        )
    ring_after = await cs[0].ring()
    assert ring_after["digest"] == ring_before["digest"]  # still in the ring
    await cs[0].put_object(BUCKET, "after-stop", b"still writable with two peers")
    failure_cluster.start_peer(3)
    failure_cluster.wait_ready(60.0)
    failure_cluster.wait_view([1, 2, 3], timeout_s=60.0)
    assert await cs[2].get_object(BUCKET, "after-stop") == b"still writable with two peers"


async def _state_is(cluster: LocalCluster, observer: int, peer_id: str, state: str) -> bool:
    view = await asyncio.to_thread(cluster.member_states, observer)
    return view.get(peer_id) == state
