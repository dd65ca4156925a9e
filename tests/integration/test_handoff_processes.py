"""Hinted handoff across real ``dfspeer agent`` processes: 4 peers on 127.0.0.51..54
(HTTP 22070.., gossip 22946..). Kill one, write (its copies go to a stand-in with hints,
visible in ``GET /v1/cluster/status``'s ``repair.hints_pending``), restart it: the hints are
delivered and dropped, and it serves the object from its own store."""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import Iterator

import pytest

from dfspeer.client import Client
from dfspeer.localcluster import LocalCluster
from tests.integration.conftest import FAILURE_SETTINGS, start_cluster

SETTINGS = {**FAILURE_SETTINGS, "hint_delivery_interval_s": 1.0, "chunk_size_bytes": 64 * 1024}


@pytest.fixture(scope="module")
def handoff_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    yield from start_cluster(
        tmp_path_factory.mktemp("handoff-cluster"),
        host_base=50,
        base_port=22070,
        gossip_base_port=22946,
        settings=SETTINGS,
        peers=4,
    )


async def hints_pending(urls: list[str]) -> int:
    total = 0
    for url in urls:
        async with Client(url, timeout_s=10.0) as c:
            total += int((await c.status())["repair"]["hints_pending"])
    return total


async def test_hints_are_stored_while_a_peer_is_down_and_delivered_after(
    handoff_cluster: LocalCluster,
) -> None:
    live = handoff_cluster.urls[:3]
    handoff_cluster.kill(4)
    handoff_cluster.wait_view([1, 2, 3], timeout_s=30.0)  # dead, still in the ring
    data = os.urandom(20 * 64 * 1024 + 5)
    async with Client(live[0], timeout_s=30.0) as c:
        await c.put_object("hints", "obj", data)
    deadline = time.monotonic() + 20
    while await hints_pending(live) == 0 and time.monotonic() < deadline:
        await asyncio.sleep(0.2)  # the hinted straggler writes finish in the background
    assert await hints_pending(live) > 0

    handoff_cluster.start_peer(4)
    handoff_cluster.wait_ready(30.0, indices=[4])
    deadline = time.monotonic() + 30
    while await hints_pending(live) and time.monotonic() < deadline:
        await asyncio.sleep(0.3)
    assert await hints_pending(live) == 0
    async with Client(handoff_cluster.urls[3], timeout_s=30.0) as c:
        status = await c.status()
        assert status["blocks"] > 0  # its share arrived by hint delivery
        assert await c.get_object("hints", "obj") == data
