"""Anti-entropy and ring changes with real agents (127.0.0.41..44, HTTP 21070.., gossip
21946.., N=3 W=2 R=2, 256 KiB chunks, anti-entropy every 2 s).

In order: three peers take a set of objects; one peer's data dir is wiped and it restarts
empty (it refills to every block, the ring does not change); a fourth peer joins (its
partitions move to it; old owners drop what they handed off: exactly N copies); one peer is
drained with ``dfspeer drain`` (its data moves away, it leaves, its agent exits).
"""

from __future__ import annotations

import asyncio
import random
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dfspeer.client import Client
from dfspeer.errors import NoSuchKey
from dfspeer.localcluster import LocalCluster, LocalClusterError, busy_ports, host_bindable

pytestmark = pytest.mark.integration

BUCKET = "repair"
CHUNK = 256 * 1024
SETTINGS: dict[str, object] = {
    "chunk_size_bytes": CHUNK,
    "map_size_bytes": 1024 * 1024 * 1024,
    "probe_interval_s": 0.4,
    "probe_timeout_s": 0.2,
    "suspicion_mult": 3,
    "suspicion_max_timeout_mult": 2,
    "push_pull_interval_s": 5.0,
    "request_timeout_s": 10.0,
    "anti_entropy_interval_s": 2.0,
    "dead_member_evict_s": 600.0,
    "durable": False,
    "log_level": "info",
}
SETTLE_TIMEOUT_S = 90.0
OBJECTS: dict[str, bytes] = {}
STATE: dict[str, int] = {}  # "blocks": distinct blocks stored


@pytest.fixture(scope="module")
def repair_cluster(
    tmp_path_factory: pytest.TempPathFactory, admin_token_file: Path
) -> Iterator[LocalCluster]:
    hosts = [f"127.0.0.{40 + i}" for i in range(1, 5)]
    if not all(host_bindable(h) for h in hosts):
        pytest.skip("cannot bind 127.0.0.41..44 (needs 127.0.0.0/8 on lo)")
    for i, host in enumerate(hosts):
        if busy_ports(host, [21070 + i, 21946 + i]):
            pytest.skip(f"ports {21070 + i}/{21946 + i} on {host} are taken")
    cluster = LocalCluster(
        tmp_path_factory.mktemp("repair-cluster"),
        4,
        base_port=21070,
        gossip_base_port=21946,
        host_base=40,
        settings=SETTINGS,
        admin_token_file=admin_token_file,
    )
    try:
        cluster.ensure_key()
        for i in (1, 2, 3):
            cluster.start_peer(i)
        cluster.wait_ready(60.0, indices=[1, 2, 3])
        cluster.wait_view([1, 2, 3], timeout_s=60.0)
    except LocalClusterError:
        cluster.stop(timeout_s=5.0)
        raise
    try:
        yield cluster
    finally:
        cluster.stop(timeout_s=5.0)


async def statuses(cluster: LocalCluster, indices: list[int]) -> dict[int, dict[str, Any]]:
    out = {}
    for i in indices:
        async with Client(cluster.peer(i).url, timeout_s=10.0) as c:
            out[i] = await c.status()
    return out


async def wait_replicated(cluster: LocalCluster, indices: list[int], blocks: int) -> None:
    """Until the peers hold exactly 3 copies of ``blocks`` blocks in total, with nothing
    left to move or behind."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    docs: dict[int, dict[str, Any]] = {}
    while time.monotonic() < deadline:
        try:
            docs = await statuses(cluster, indices)
        except Exception:
            await asyncio.sleep(0.5)
            continue
        repair = [d["repair"] for d in docs.values()]
        if (
            sum(d["blocks"] for d in docs.values()) == 3 * blocks
            and all(r["partitions_to_move"] == 0 and r["partitions_behind"] == 0 for r in repair)
            and all(r["last_full_sync"] for r in repair)
        ):
            return
        await asyncio.sleep(0.5)
    summary = {i: (d["blocks"], d["repair"]) for i, d in docs.items()}
    pytest.fail(f"not replicated to 3 x {blocks} blocks in time: {summary}")


async def read_all(cluster: LocalCluster, index: int) -> None:
    async with Client(cluster.peer(index).url, timeout_s=30.0) as c:
        for key, want in OBJECTS.items():
            assert await c.get_object(BUCKET, key) == want, (index, key)


async def test_seed_objects(repair_cluster: LocalCluster) -> None:
    rng = random.Random(5)
    async with Client(repair_cluster.peer(1).url, timeout_s=30.0) as c:
        for i in range(24):
            size = rng.choice([100, 5000, CHUNK - 1, CHUNK + 7, 3 * CHUNK + 11])
            # obj-0 is deleted below: inline, so its delete leaves a tombstone but no
            # unreferenced blocks (never moved by repair, and collected only after the GC
            # grace, they would make the block counts below depend on timing)
            data = rng.randbytes(100 if i == 0 else size)
            await c.put_object(BUCKET, f"obj-{i}", data)
            OBJECTS[f"obj-{i}"] = data
        await c.delete_object(BUCKET, "obj-0")  # a tombstone must survive repair
        del OBJECTS["obj-0"]
    docs = await statuses(repair_cluster, [1])
    assert docs[1]["repair"]["rounds"] >= 0  # the status carries the repair object


async def test_wiped_peer_refills_to_n_replicas(repair_cluster: LocalCluster) -> None:
    assert OBJECTS, "runs after test_seed_objects"
    # with 3 peers and N=3 every peer holds every block
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    while True:
        docs = await statuses(repair_cluster, [1, 2, 3])
        counts = {d["blocks"] for d in docs.values()}
        if len(counts) == 1 or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.5)
    blocks = docs[1]["blocks"]
    assert counts == {blocks} and blocks > 0
    repair_cluster.kill(3)
    shutil.rmtree(repair_cluster.peer(3).data_dir)
    repair_cluster.start_peer(3)
    repair_cluster.wait_ready(60.0, indices=[3])
    await wait_replicated(repair_cluster, [1, 2, 3], blocks)
    docs = await statuses(repair_cluster, [1, 2, 3])
    assert docs[3]["blocks"] == blocks
    assert sum(d["repair"]["keys_pulled"] + d["repair"]["keys_pushed"] for d in docs.values())
    repair_cluster.kill(1)  # peer 3's copy (and peer 2's) now carry reads alone
    try:
        await read_all(repair_cluster, 3)
        async with Client(repair_cluster.peer(3).url) as c:
            with pytest.raises(NoSuchKey):
                await c.get_object(BUCKET, "obj-0")
    finally:
        repair_cluster.start_peer(1)
        repair_cluster.wait_ready(60.0, indices=[1])
    STATE["blocks"] = blocks


async def test_fourth_peer_gets_its_partitions(repair_cluster: LocalCluster) -> None:
    blocks = STATE.get("blocks")
    assert blocks, "runs after test_wiped_peer_refills_to_n_replicas"
    repair_cluster.start_peer(4)
    repair_cluster.wait_ready(60.0, indices=[4])
    repair_cluster.wait_view([1, 2, 3, 4], timeout_s=60.0)
    await wait_replicated(repair_cluster, [1, 2, 3, 4], blocks)
    docs = await statuses(repair_cluster, [1, 2, 3, 4])
    assert 0 < docs[4]["blocks"] < blocks  # a share of the blocks, not all
    assert all(d["blocks"] < blocks for d in docs.values())  # old owners dropped some
    await read_all(repair_cluster, 4)


async def test_drain_moves_data_then_leaves(repair_cluster: LocalCluster) -> None:
    blocks = STATE.get("blocks")
    assert blocks, "runs after test_fourth_peer_gets_its_partitions"
    peer = repair_cluster.peer(2)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "dfspeer",
        "drain",
        "--peer",
        peer.url,
        "--poll",
        "0.5",
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), SETTLE_TIMEOUT_S)
    text = out.decode()
    assert proc.returncode == 0, text
    assert "drain" in text
    assert peer.process is not None
    await asyncio.to_thread(peer.process.wait, 30)  # the agent exits by itself
    repair_cluster.wait_view([1, 3, 4], timeout_s=30.0)
    await wait_replicated(repair_cluster, [1, 3, 4], blocks)
    for i in (1, 3, 4):
        await read_all(repair_cluster, i)
    members = repair_cluster.member_states(1)
    assert members.get("peer-2") == "left"
