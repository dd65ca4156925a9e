"""Content-defined chunking and dedup on the wire on three real agents (127.0.0.101..103,
HTTP 26070.., gossip 26946..): a 64 MiB file built from this machine's files, then the same
file with 100 bytes inserted at offset 1,000 and with 1 MiB appended, as three versions of
one key. Each edit grows the cluster's physical bytes (every peer's ``block_bytes``) by a
few chunks only, and the coordinator sends about as few bytes (its ``dedup`` counters);
every version reads back byte-identical; deleting one version frees only its own chunks."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest

from dfspeer.demo_corpus import build_big_file
from dfspeer.localcluster import LocalCluster
from tests.integration.conftest import start_cluster

pytestmark = pytest.mark.integration

MiB = 1024 * 1024
SIZE = 64 * MiB
MAX_CHUNK = 8 * MiB  # cdc_max_chunk_bytes (default)
REPLICAS = 3
BUCKET = "cdcitest"
SETTINGS: dict[str, object] = {
    "map_size_bytes": 2 * 1024 * MiB,
    "durable": False,
    "default_chunking": "cdc",
    "block_gc_grace_s": 0,
    "block_gc_interval_s": 1,
    "log_level": "info",
}


@pytest.fixture(scope="module")
def cdc_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    yield from start_cluster(
        tmp_path_factory.mktemp("cdc-cluster"),
        host_base=100,
        base_port=26070,
        gossip_base_port=26946,
        settings=SETTINGS,
    )


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    path = tmp_path_factory.mktemp("cdc-corpus") / "big.bin"
    build_big_file(path, SIZE)
    return path.read_bytes()


@pytest.fixture
async def http(cdc_cluster: LocalCluster) -> AsyncIterator[aiohttp.ClientSession]:
    timeout = aiohttp.ClientTimeout(total=120)
    async with aiohttp.ClientSession(headers=cdc_cluster.headers, timeout=timeout) as session:
        yield session


async def status(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    async with http.get(f"{url}/v1/cluster/status") as resp:
        assert resp.status == 200, await resp.text()
        doc: dict[str, Any] = await resp.json()
        return doc


async def settled_physical(http: aiohttp.ClientSession, urls: list[str]) -> int:
    """Sum of every peer's ``block_bytes`` once every peer holds the same blocks (N = 3 on
    3 peers) and the sum held still for two polls."""
    deadline = time.monotonic() + 60
    last: tuple[int, ...] | None = None
    while True:
        docs = [await status(http, u) for u in urls]
        now = tuple(d["block_bytes"] for d in docs) + tuple(d["blocks"] for d in docs)
        if now == last and len({d["block_bytes"] for d in docs}) == 1:
            return sum(d["block_bytes"] for d in docs)
        assert time.monotonic() < deadline, f"stores never settled: {docs}"
        last = now
        await asyncio.sleep(0.5)


async def put(http: aiohttp.ClientSession, url: str, key: str, data: bytes) -> str:
    headers = {"X-Content-SHA256": hashlib.sha256(data).hexdigest()}
    async with http.put(f"{url}/v1/objects/{BUCKET}/{key}", data=data, headers=headers) as r:
        assert r.status == 201, await r.text()
        doc = await r.json()
        return str(doc["version"])


async def get(http: aiohttp.ClientSession, url: str, key: str, version: str) -> bytes:
    async with http.get(f"{url}/v1/objects/{BUCKET}/{key}", params={"version": version}) as r:
        assert r.status == 200, await r.text()
        return await r.read()


async def test_edited_versions_store_and_send_only_their_new_chunks(
    cdc_cluster: LocalCluster, http: aiohttp.ClientSession, original: bytes
) -> None:
    urls = cdc_cluster.urls
    coordinator = urls[0]
    inserted = original[:1000] + bytes(range(100)) + original[1000:]
    appended = original + hashlib.sha256(b"tail").digest() * (MiB // 32)
    assert len(appended) == SIZE + MiB

    async with http.put(f"{coordinator}/v1/buckets/{BUCKET}", json={"versioning": "enabled"}) as r:
        assert r.status in (200, 201), await r.text()
        assert (await r.json())["chunking"] == "cdc"

    base = await settled_physical(http, urls)
    v1 = await put(http, coordinator, "big", original)
    phys1 = await settled_physical(http, urls)
    sent1 = (await status(http, coordinator))["dedup"]
    assert phys1 - base >= REPLICAS * SIZE  # the first version is stored whole, 3 times

    v2 = await put(http, coordinator, "big", inserted)
    phys2 = await settled_physical(http, urls)
    sent2 = (await status(http, coordinator))["dedup"]
    grown2 = phys2 - phys1
    sent_v2 = sent2["block_bytes_sent"] - sent1["block_bytes_sent"]
    assert grown2 <= REPLICAS * 2 * MAX_CHUNK, grown2  # a chunk or two, on every replica
    assert sent_v2 <= (REPLICAS - 1) * 2 * MAX_CHUNK, sent_v2  # to the 2 other replicas
    assert sent_v2 <= grown2  # sent about what is new (2 remote copies of the 3 stored)
    skipped = sent2["dedup_bytes_skipped"] - sent1["dedup_bytes_skipped"]
    assert skipped >= (REPLICAS - 1) * (SIZE - 2 * MAX_CHUNK), skipped

    v3 = await put(http, coordinator, "big", appended)
    phys3 = await settled_physical(http, urls)
    sent3 = (await status(http, coordinator))["dedup"]
    grown3 = phys3 - phys2
    sent_v3 = sent3["block_bytes_sent"] - sent2["block_bytes_sent"]
    assert grown3 <= REPLICAS * (MiB + 2 * MAX_CHUNK), grown3
    assert sent_v3 <= (REPLICAS - 1) * (MiB + 2 * MAX_CHUNK), sent_v3

    for url in urls[1:]:  # every version reads back byte-identical from other peers
        assert await get(http, url, "big", v1) == original
        assert await get(http, url, "big", v2) == inserted
        assert await get(http, url, "big", v3) == appended

    async with http.get(f"{coordinator}/v1/buckets/{BUCKET}") as r:
        usage = await r.json()
    assert usage["logical_bytes"] == len(original) + len(inserted) + len(appended)
    assert usage["physical_bytes"] * REPLICAS == phys3 - base
    assert usage["dedup_ratio"] > 2.5
    async with http.get(f"{coordinator}/metrics") as r:
        metrics = await r.text()
    assert "dfspeer_dedup_bytes_skipped_total" in metrics
    assert (await status(http, coordinator))["dedup"]["ratio"] > 2.5

    # Deleting the middle version frees only the chunks nobody else references.
    async with http.delete(f"{coordinator}/v1/objects/{BUCKET}/big", params={"version": v2}) as r:
        assert r.status == 204, await r.text()
    deadline = time.monotonic() + 60
    while (now := await settled_physical(http, urls)) != phys3 - grown2:
        assert now >= phys3 - grown2, "a shared chunk was freed"
        assert time.monotonic() < deadline, f"{now} != {phys3 - grown2}"
        await asyncio.sleep(1)
    assert await get(http, urls[2], "big", v1) == original
    assert await get(http, urls[1], "big", v3) == appended
