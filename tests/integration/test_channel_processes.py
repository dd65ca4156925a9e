"""The peer channel between real agents (127.0.0.181..183, N=3 W=2 R=2): record reads and
writes travel on it, and a frozen replica (SIGSTOP: its connections stay open, nothing
answers) neither stalls reads and writes through the others nor keeps the channel from
coming back once it thaws."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from dfspeer.client import Client
from dfspeer.localcluster import LocalCluster
from tests.integration.conftest import start_cluster

pytestmark = pytest.mark.integration

BUCKET = "channel"
SETTINGS: dict[str, object] = {
    "map_size_bytes": 256 * 1024 * 1024,
    "request_timeout_s": 2.0,  # a frozen peer's calls give up after this
    "probe_interval_s": 0.4,
    "probe_timeout_s": 0.2,
    "suspicion_mult": 3,
    "log_level": "info",
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    yield from start_cluster(
        tmp_path_factory.mktemp("channel-cluster"),
        host_base=180,
        base_port=34070,
        gossip_base_port=34946,
        settings=SETTINGS,
    )


@pytest.fixture
async def client(cluster: LocalCluster) -> AsyncIterator[Client]:
    c = Client(cluster.urls[0], timeout_s=30.0)
    yield c
    await c.close()


async def samples(url: str, name: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Every sample of metric ``name`` on the peer at ``url``, by its labels."""
    async with aiohttp.ClientSession() as http, http.get(f"{url}/metrics") as resp:
        text = await resp.text()
    out: dict[tuple[tuple[str, str], ...], float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                out[tuple(sorted(sample.labels.items()))] = sample.value
    return out


async def served(url: str, op: str) -> float:
    """Channel requests of ``op`` the peer at ``url`` answered, any status."""
    found = await samples(url, "dfspeer_channel_requests_total")
    return sum(v for labels, v in found.items() if dict(labels)["op"] == op)


def calls(found: dict[tuple[tuple[str, str], ...], float], method: str) -> float:
    return sum(v for labels, v in found.items() if dict(labels)["method"] == method)


async def test_reads_and_writes_travel_on_the_channel(
    cluster: LocalCluster, client: Client
) -> None:
    """Small objects live inline in their records: every peer RPC of these PUTs and GETs is
    a record read or write, and all of them go on the channel, none over HTTP."""
    others = cluster.urls[1:]
    reads_before = [await served(u, "get_record") for u in others]
    writes_before = [await served(u, "put_record") for u in others]
    rpc_before = await samples(cluster.urls[0], "dfspeer_rpc_duration_seconds_count")
    for i in range(20):
        await client.put_object(BUCKET, f"k{i}", b"v%d" % i * 100)
    for i in range(20):
        assert await client.get_object(BUCKET, f"k{i}") == b"v%d" % i * 100
    reads = [await served(u, "get_record") - b for u, b in zip(others, reads_before, strict=True)]
    writes = [await served(u, "put_record") - b for u, b in zip(others, writes_before, strict=True)]
    assert sum(reads) >= 40  # one other replica per quorum read: 20 PUTs' and 20 GETs'
    assert all(w >= 20 for w in writes)  # every record write goes to every replica
    rpc = await samples(cluster.urls[0], "dfspeer_rpc_duration_seconds_count")
    on_channel = calls(rpc, "CHANNEL") - calls(rpc_before, "CHANNEL")
    over_http = sum(calls(rpc, m) - calls(rpc_before, m) for m in ("GET", "PUT"))
    assert on_channel >= 80
    assert over_http < 10  # background work only (anti-entropy, hints), not these records


async def test_a_frozen_replica_does_not_stall_the_others(
    cluster: LocalCluster, client: Client
) -> None:
    frozen = cluster.peer(2)
    assert frozen.process is not None
    await client.put_object(BUCKET, "before", b"x" * 5000)
    assert await client.get_object(BUCKET, "before") == b"x" * 5000  # channels are open
    frozen.process.send_signal(signal.SIGSTOP)
    address = cluster.urls[1].split("://", 1)[1]
    try:
        for i in range(10):  # W = 2 and R = 2 from peers 1 and 3
            await client.put_object(BUCKET, f"frozen/{i}", b"f%d" % i * 2000)
            assert await client.get_object(BUCKET, f"frozen/{i}") == b"f%d" % i * 2000
        # its calls fail after request_timeout_s, and its silent channel is shut
        await poll("calls to the frozen peer to time out", lambda: timed_out(cluster, address))
        for i in range(10):
            assert await client.get_object(BUCKET, f"frozen/{i}") == b"f%d" % i * 2000
        assert await client.get_object(BUCKET, "before") == b"x" * 5000
    finally:
        frozen.process.send_signal(signal.SIGCONT)
    # it thaws and works off what was sent to it; then reads that ask it are served on a
    # channel again (a new one: the old one was shut)
    url = cluster.urls[1]
    start = await settled(url)
    deadline = time.monotonic() + 60
    while await served(url, "get_record") == start:
        assert time.monotonic() < deadline, "the thawed peer is never asked again"
        for i in range(10):
            assert await client.get_object(BUCKET, f"frozen/{i}") == b"f%d" % i * 2000
        await asyncio.sleep(0.2)


async def timed_out(cluster: LocalCluster, address: str) -> bool:
    """True once peer 1 counted a channel call to ``address`` that got no answer."""
    rpc = await samples(cluster.urls[0], "dfspeer_rpc_duration_seconds_count")
    unreachable = {"peer": address, "method": "CHANNEL", "outcome": "unreachable"}
    return any(dict(labels) == unreachable and v > 0 for labels, v in rpc.items())


async def settled(url: str) -> float:
    """The peer's count of served reads once two polls 0.2 s apart agree."""
    last = await served(url, "get_record")
    while True:
        await asyncio.sleep(0.2)
        now = await served(url, "get_record")
        if now == last:
            return now
        last = now


async def poll(what: str, check: Callable[[], Awaitable[bool]], timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not await check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)
