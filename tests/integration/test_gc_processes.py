"""Garbage collection with real agents: deleted data gives its space back.

Three ``dfspeer agent`` processes (127.0.0.61..63) with ``block_gc_grace_s=5``: ten 6 MiB
objects written, all ten deleted and an eleventh key overwritten through other peers; every
peer's block count must come back to that of the one live object, and the live object reads
back byte-identical from every peer.
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator

import aiohttp
import pytest

from dfspeer.localcluster import LocalCluster
from tests.integration.conftest import start_cluster

MiB = 1024 * 1024
SETTINGS: dict[str, object] = {
    "map_size_bytes": 1024 * MiB,
    "durable": False,
    "block_gc_grace_s": 5.0,
    "block_gc_interval_s": 1.0,
    "default_chunking": "fixed",  # exact block counts: 3 chunks of 2 MiB per 6 MiB object
    "log_level": "info",
}
RECLAIM_TIMEOUT_S = 60.0


@pytest.fixture(scope="module")
def gc_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    yield from start_cluster(
        tmp_path_factory.mktemp("gc-cluster"),
        host_base=60,
        base_port=22070,
        gossip_base_port=22946,
        settings=SETTINGS,
    )


async def block_counts(session: aiohttp.ClientSession, urls: list[str]) -> list[int]:
    counts = []
    for url in urls:
        async with session.get(f"{url}/v1/cluster/status") as resp:
            assert resp.status == 200
            counts.append(int((await resp.json())["blocks"]))
    return counts


async def test_deleted_objects_give_their_space_back(gc_cluster: LocalCluster) -> None:
    urls = gc_cluster.urls
    async with aiohttp.ClientSession(headers=gc_cluster.headers) as s:
        for i in range(10):
            async with s.put(f"{urls[0]}/v1/objects/gcbkt/obj{i}", data=os.urandom(6 * MiB)) as r:
                assert r.status == 201
        async with s.put(f"{urls[0]}/v1/objects/gcbkt/keep", data=os.urandom(6 * MiB)) as r:
            assert r.status == 201
        deadline = time.monotonic() + RECLAIM_TIMEOUT_S
        written = await block_counts(s, urls)
        while written != [33, 33, 33] and time.monotonic() < deadline:  # stragglers land
            await asyncio.sleep(0.2)
            written = await block_counts(s, urls)
        assert written == [33, 33, 33]  # 11 objects x 3 chunks of 2 MiB, N = 3 of 3 peers
        for i in range(10):
            async with s.delete(f"{urls[1]}/v1/objects/gcbkt/obj{i}") as r:
                assert r.status == 204
        final = os.urandom(6 * MiB)
        async with s.put(f"{urls[2]}/v1/objects/gcbkt/keep", data=final) as r:
            assert r.status == 201
        deadline = time.monotonic() + RECLAIM_TIMEOUT_S
        counts = await block_counts(s, urls)
        while counts != [3, 3, 3] and time.monotonic() < deadline:
            await asyncio.sleep(0.5)
            counts = await block_counts(s, urls)
        assert counts == [3, 3, 3], f"blocks per peer {RECLAIM_TIMEOUT_S} s after: {counts}"
        for url in urls:
            async with s.get(f"{url}/v1/objects/gcbkt/keep") as r:
                assert r.status == 200 and await r.read() == final
            async with s.get(f"{url}/v1/objects/gcbkt/obj3") as r:
                assert r.status == 404
            async with s.get(f"{url}/v1/cluster/status") as r:
                gc = (await r.json())["gc"]
                # ten deleted objects and the overwritten version: 11 x 3 chunks of 2 MiB
                assert gc["blocks_deleted"] == 33 and gc["bytes_reclaimed"] == 33 * 2 * MiB
