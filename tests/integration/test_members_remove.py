"""``dfspeer members remove`` with real agents (127.0.0.71..74, HTTP 23070.., gossip
23946.., N=3 W=2 R=2, 256 KiB chunks, anti-entropy every 2 s, ``dead_member_evict_s`` 600 s).

Four peers take a set of objects; peer 4 is SIGKILLed and declared dead, and stays in every
ring (eviction would take 10 minutes); it is removed through peer 2 with the CLI; every
remaining peer drops it from its ring and marks it ``left``, and repair brings every block
back to exactly N copies on the three others.
"""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from dfspeer.client import Client
from dfspeer.errors import MemberAlive, NoSuchMember
from dfspeer.localcluster import LocalCluster, LocalClusterError, busy_ports, host_bindable

pytestmark = pytest.mark.integration

BUCKET = "removal"
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
HOST_BASE, API_BASE, GOSSIP_BASE = 70, 23070, 23946


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    hosts = [f"127.0.0.{HOST_BASE + i}" for i in range(1, 5)]
    if not all(host_bindable(h) for h in hosts):
        pytest.skip("cannot bind 127.0.0.71..74 (needs 127.0.0.0/8 on lo)")
    for i, host in enumerate(hosts):
        if busy_ports(host, [API_BASE + i, GOSSIP_BASE + i]):
            pytest.skip(f"ports {API_BASE + i}/{GOSSIP_BASE + i} on {host} are taken")
    local = LocalCluster(
        tmp_path_factory.mktemp("members-remove"),
        4,
        base_port=API_BASE,
        gossip_base_port=GOSSIP_BASE,
        host_base=HOST_BASE,
        settings=SETTINGS,
    )
    try:
        local.start()
        local.wait_ready(60.0)
        local.wait_view([1, 2, 3, 4], timeout_s=60.0)
    except LocalClusterError:
        local.stop(timeout_s=5.0)
        raise
    try:
        yield local
    finally:
        local.stop(timeout_s=5.0)


def client(cluster: LocalCluster, index: int) -> Client:
    return Client(cluster.peer(index).url, timeout_s=30.0, token=cluster.admin_token)


async def statuses(cluster: LocalCluster, indices: list[int]) -> dict[int, dict[str, Any]]:
    out = {}
    for i in indices:
        async with client(cluster, i) as c:
            out[i] = await c.status()
    return out


async def settled_blocks(cluster: LocalCluster, indices: list[int], want: int | None) -> int:
    """Poll until repair is idle everywhere (and, if ``want``, the peers hold ``want``
    blocks in all); the total."""
    deadline = time.monotonic() + SETTLE_TIMEOUT_S
    docs: dict[int, dict[str, Any]] = {}
    last = -1
    while time.monotonic() < deadline:
        try:
            docs = await statuses(cluster, indices)
        except Exception:
            await asyncio.sleep(0.5)
            continue
        repair = [d["repair"] for d in docs.values()]
        total = sum(d["blocks"] for d in docs.values())
        idle = all(r["partitions_to_move"] == 0 and r["partitions_behind"] == 0 for r in repair)
        synced = all(r["last_full_sync"] for r in repair)
        if idle and synced and (total == want if want is not None else total == last):
            return total
        last = total
        await asyncio.sleep(1.0)
    summary = {i: (d["blocks"], d["repair"]) for i, d in docs.items()}
    pytest.fail(f"repair did not settle at {want} blocks in time: {summary}")


async def ring_peers(cluster: LocalCluster, index: int) -> set[str]:
    async with client(cluster, index) as c:
        return set((await c.ring())["peers"])


async def test_removed_dead_peer_leaves_every_ring_and_repair_restores_n_copies(
    cluster: LocalCluster,
) -> None:
    rng = random.Random(71)
    objects: dict[str, bytes] = {}
    async with client(cluster, 1) as c:
        for i in range(16):
            size = rng.choice([5000, CHUNK - 1, CHUNK + 7, 3 * CHUNK + 11])
            objects[f"obj-{i}"] = rng.randbytes(size)
            await c.put_object(BUCKET, f"obj-{i}", objects[f"obj-{i}"])
    total = await settled_blocks(cluster, [1, 2, 3, 4], None)
    assert total > 0 and total % 3 == 0, total
    distinct = total // 3

    cluster.kill(4)
    cluster.wait_view([1, 2, 3], timeout_s=30.0)
    gone = cluster.peer(4).peer_id
    for i in (1, 2, 3):  # dead, but still in the ring for dead_member_evict_s
        assert cluster.member_states(i)[gone] == "dead"
        assert gone in await ring_peers(cluster, i)

    async with client(cluster, 2) as c:  # refusals change nothing
        with pytest.raises(MemberAlive):
            await c.remove_member(cluster.peer(1).peer_id)
        with pytest.raises(MemberAlive):
            await c.remove_member(cluster.peer(2).peer_id)  # itself
        with pytest.raises(NoSuchMember):
            await c.remove_member("no-such-peer")
    assert cluster.member_states(2)[gone] == "dead"

    env = cluster.environment()
    if cluster.admin_token:
        env["DFSPEER_ADMIN_TOKEN"] = cluster.admin_token
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "dfspeer", "members", "remove", gone,
        "--peer", cluster.peer(2).url,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    out, _ = await asyncio.wait_for(proc.communicate(), 60.0)
    assert proc.returncode == 0, out.decode()
    assert f"removed {gone}" in out.decode()

    deadline = time.monotonic() + 15.0  # gossip: well under a second on loopback
    while True:
        rings = {i: await ring_peers(cluster, i) for i in (1, 2, 3)}
        states = {i: cluster.member_states(i).get(gone) for i in (1, 2, 3)}
        if all(gone not in r for r in rings.values()) and set(states.values()) <= {"left", None}:
            break
        assert time.monotonic() < deadline, f"rings {rings}, states {states}"
        await asyncio.sleep(0.2)
    assert all(r == {cluster.peer(i).peer_id for i in (1, 2, 3)} for r in rings.values())

    await settled_blocks(cluster, [1, 2, 3], 3 * distinct)
    for i in (1, 2, 3):
        async with client(cluster, i) as c:
            for key, data in objects.items():
                assert await c.get_object(BUCKET, key) == data, (i, key)
