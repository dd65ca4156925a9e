"""Hinted handoff (sloppy quorum) and block read repair, on an in-process 4-peer cluster."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dfspeer.blockstore import BlockStore
from dfspeer.cluster.blockmanager import BlockManager
from dfspeer.cluster.handoff import HINTS_TABLE, HintsFull, HintStore
from dfspeer.cluster.readrepair import QUARANTINE_TABLE
from dfspeer.gossip import MemberState
from dfspeer.model.objects import OBJECTS_TABLE, table_key
from tests.unit.lww_table import TEST_TABLE
from tests.unit.maintenance_cluster import CHUNK, TABLES, Cluster, flip_byte, make_cluster


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with make_cluster(tmp_path) as cl:
        yield cl


async def read_all(cluster: Cluster, peer: str, bucket: str, key: str) -> bytes:
    _, stream = await cluster.by_id[peer].service.get_object(bucket, key)
    return b"".join([piece async for piece in stream])


def chunk_digests(cluster: Cluster, bucket: str, key: str) -> list[bytes]:
    for n in cluster.nodes:
        record = n.store.table(OBJECTS_TABLE).get(table_key(bucket, key))
        if record is not None and record["versions"][-1]["state"] == "complete":
            return [bytes(d) for d, _ in record["versions"][-1]["chunks"]]
    raise AssertionError("no manifest anywhere")


@pytest.mark.parametrize("state", [MemberState.ALIVE, MemberState.SUSPECT])
async def test_hinted_writes_land_n_copies_and_are_delivered(
    cluster: Cluster, state: MemberState
) -> None:
    down = "peer-3"
    cluster.set_down(down, state=state)  # ALIVE: its writes fail; SUSPECT: skipped at once
    data = os.urandom(8 * CHUNK + 123)
    await cluster.by_id["peer-0"].service.put_object("bkt", "obj", data)
    await cluster.drain()

    digests = chunk_digests(cluster, "bkt", "obj")
    view = cluster.by_id["peer-0"].view
    hinted_for_down = 0
    for digest in digests:
        replicas = view.replicas(view.partition_of(digest))
        holders = await cluster.holders(digest)
        assert len(holders) == 3, (digest.hex(), holders)  # W=2 + the straggler: N copies
        assert down not in holders
        if down in replicas:
            hinted_for_down += 1
            (stand_in,) = holders - set(replicas)
            hints = cluster.by_id[stand_in].store.table(HINTS_TABLE).scan(prefix=b"b" + digest)
            assert [h["target"] for _, h in hints] == [down]
    assert hinted_for_down > 0  # 8 chunks over 16 partitions: peer-3 replicates some
    pending = sum(n.maintenance.hints.pending() for n in cluster.nodes)
    manifest_replicas = view.replicas(view.partition_of(table_key("bkt", "obj")))
    bucket_replicas = view.replicas(view.partition_of(b"bkt"))
    assert pending == (
        2 * hinted_for_down  # each block and its reference
        + (1 if down in manifest_replicas else 0)
        + (1 if down in bucket_replicas else 0)
    )

    cluster.heal()
    delivered = 0
    for n in cluster.nodes:
        delivered += await n.maintenance.handoff.deliver_once()
    assert delivered == pending
    assert sum(n.maintenance.hints.pending() for n in cluster.nodes) == 0
    for n in cluster.nodes:  # the stand-ins' copies are no longer pinned: collected
        await BlockManager(n.store, grace_s=0).collect_once()
    for digest in digests:  # exactly the N real replicas hold each chunk now, referenced
        replicas = set(view.replicas(view.partition_of(digest)))
        assert await cluster.holders(digest) == replicas
        assert all(cluster.by_id[p].store.refcount(digest) == 1 for p in replicas)
    if down in manifest_replicas:
        assert cluster.by_id[down].store.table(OBJECTS_TABLE).get(table_key("bkt", "obj"))
    assert await read_all(cluster, down, "bkt", "obj") == data


async def test_hint_delivery_waits_for_the_target(cluster: Cluster) -> None:
    cluster.set_down("peer-3", state=MemberState.SUSPECT)
    await cluster.by_id["peer-1"].service.put_object("bkt", "k", os.urandom(6 * CHUNK))
    await cluster.drain()
    pending = sum(n.maintenance.hints.pending() for n in cluster.nodes)
    assert pending > 0
    for n in cluster.nodes:  # target still not alive: nothing delivered, nothing dropped
        assert await n.maintenance.handoff.deliver_once() == 0
    assert sum(n.maintenance.hints.pending() for n in cluster.nodes) == pending


async def test_hint_store_capacity(tmp_path: Path) -> None:
    async with BlockStore(tmp_path / "s", map_size_bytes=64 << 20, durable=False) as store:
        hints = HintStore(store, max_hints=1, tables=TABLES)
        await hints.add_record("p1", TEST_TABLE, b"k", {"version": "1"})
        await hints.add_record("p1", TEST_TABLE, b"k", {"version": "2"})  # same hint: merged
        (_, hint) = hints.table.scan()[0]
        assert hint["record"]["version"] == "2"
        with pytest.raises(HintsFull):
            await hints.add_block("p2", b"\0" * 32, b"x")
        assert hints.pending() == 1


async def test_read_repair_restores_missing_and_corrupt_replicas(cluster: Cluster) -> None:
    data = os.urandom(3 * CHUNK)
    await cluster.by_id["peer-0"].service.put_object("bkt", "rr", data)
    await cluster.drain()
    digest = chunk_digests(cluster, "bkt", "rr")[0]
    view = cluster.by_id["peer-0"].view
    a, b, _c = view.replicas(view.partition_of(digest))
    await cluster.by_id[a].store.delete(digest)
    flip_byte(cluster.by_id[b].store, digest, at=17)
    (reader,) = {n.peer_id for n in cluster.nodes} - set(view.replicas(view.partition_of(digest)))
    node = cluster.by_id[reader]
    for _ in range(3):  # the read order rotates: some read meets the bad replicas first
        assert await node.replicator.read_block(digest) == b"".join([data[:CHUNK]])
        await cluster.drain()
    assert await cluster.by_id[a].store.get(digest) == data[:CHUNK]
    assert await cluster.by_id[b].store.get(digest) == data[:CHUNK]
    assert node.maintenance.block_repair.counters["read_repairs"] == 2
    assert not await node.store.has(digest)  # the reader is no replica: keeps no copy


async def test_local_corrupt_block_is_quarantined_and_refetched(cluster: Cluster) -> None:
    data = os.urandom(2 * CHUNK)
    await cluster.by_id["peer-0"].service.put_object("bkt", "q", data)
    await cluster.drain()
    digest = chunk_digests(cluster, "bkt", "q")[1]
    view = cluster.by_id["peer-0"].view
    replica = cluster.by_id[view.replicas(view.partition_of(digest))[0]]
    flip_byte(replica.store, digest, at=5)
    assert await read_all(cluster, replica.peer_id, "bkt", "q") == data
    await cluster.drain()
    assert await replica.store.get(digest) == data[CHUNK:]
    entry = replica.store.table(QUARANTINE_TABLE).get(digest)
    assert entry["by"] == "read" and entry["repaired_at"] is not None
    counters = replica.maintenance.block_repair.counters
    assert counters["corrupt_found"] == 1 and counters["corrupt_repaired"] == 1
