"""Three real Peers in one process (N = 3, W = R = 2): join, agree on the ring, replicate
through ``/internal/`` and serve every object and range from every peer."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack
from pathlib import Path

import aiohttp
import pytest

from dfspeer.peer import Peer
from tests.unit.test_peer_single import CHUNK, config_for


@pytest.fixture
async def peers(tmp_path: Path) -> AsyncIterator[list[Peer]]:
    async with AsyncExitStack() as stack:
        seed = await stack.enter_async_context(
            Peer(config_for(tmp_path / "p0", replication_factor=3, write_quorum=2, read_quorum=2))
        )
        host, port = seed.gossip.local_member.gossip_address
        started = [seed]
        for i in (1, 2):
            config = config_for(
                tmp_path / f"p{i}",
                replication_factor=3,
                write_quorum=2,
                read_quorum=2,
                join=(f"{host}:{port}",),
            )
            started.append(await stack.enter_async_context(Peer(config)))
        async with asyncio.timeout(15):
            for peer in started:
                await peer.wait_ready(15)
            while any(len(p.ring.members) < 3 for p in started):
                await asyncio.sleep(0.05)
        yield started


async def test_every_peer_serves_every_object(peers: list[Peer]) -> None:
    assert len({p.ring.digest for p in peers}) == 1
    data = os.urandom(3 * CHUNK + 7)
    async with aiohttp.ClientSession() as http:
        async with http.put(f"{peers[1].api_url}/v1/objects/bucket/obj", data=data) as resp:
            assert resp.status == 201, await resp.text()
        for peer in peers:
            url = f"{peer.api_url}/v1/objects/bucket/obj"
            async with http.get(url) as resp:
                assert await resp.read() == data
            async with http.get(url, headers={"Range": f"bytes={CHUNK - 1}-{CHUNK}"}) as resp:
                assert resp.status == 206
                assert await resp.read() == data[CHUNK - 1 : CHUNK + 1]
            async with http.get(f"{peer.api_url}/v1/cluster/members") as resp:
                members = (await resp.json())["members"]
            assert sorted(m["id"] for m in members) == sorted(p.peer_id for p in peers)
            assert {m["state"] for m in members} == {"alive"}
    # N = 3 on 3 peers: every peer holds every chunk (written with W = 2, the rest in background)
    async with asyncio.timeout(10):
        while any(p.store_stats().block_count < 4 for p in peers):
            await asyncio.sleep(0.05)
