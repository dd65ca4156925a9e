"""Scrub (rate-limited re-hash, quarantine, refetch, persisted cursor) and tombstone grace."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dfspeer.blockstore import BlockStore
from dfspeer.cluster.readrepair import QUARANTINE_TABLE, BlockRepair
from dfspeer.cluster.rpc import PeerRpcClient
from dfspeer.cluster.scrub import Scrubber
from dfspeer.cluster.tombstones import TombstonePurger
from dfspeer.cluster.view import ClusterView
from dfspeer.errors import NoSuchKey
from dfspeer.model.objects import OBJECTS_TABLE, ObjectsSchema, table_key
from tests.unit.maintenance_cluster import (
    CHUNK,
    CONFIG,
    KEYRING,
    TABLES,
    Cluster,
    flip_byte,
    make_cluster,
)


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with make_cluster(tmp_path) as cl:
        yield cl


async def test_scrub_finds_a_flipped_byte_and_refetches(cluster: Cluster) -> None:
    data = os.urandom(4 * CHUNK)
    await cluster.by_id["peer-0"].service.put_object("bkt", "s", data)
    await cluster.drain()
    view = cluster.by_id["peer-0"].view
    manifest = next(
        rec
        for n in cluster.nodes
        if (rec := n.store.table(OBJECTS_TABLE).get(table_key("bkt", "s"))) is not None
    )
    digest = bytes(manifest["versions"][-1]["chunks"][2][0])
    node = cluster.by_id[view.replicas(view.partition_of(digest))[1]]
    flip_byte(node.store, digest, at=1000)
    scrubber = node.maintenance.scrubber
    assert await scrubber.scan() is True  # one whole pass
    state = scrubber.state
    assert state["corrupt_found"] == 1 and state["repaired"] == 1
    assert state["passes"] == 1 and state["cursor"] is None
    assert state["pass_blocks"] == node.store.stats().block_count
    assert await node.store.get(digest) == data[2 * CHUNK : 3 * CHUNK]
    assert node.store.table(QUARANTINE_TABLE).get(digest)["by"] == "scrub"
    progress = node.maintenance.status()["scrub"]
    # every chunk of this object is CHUNK bytes, the corrupt one included (it was read)
    assert progress["corrupt_found"] == 1
    assert progress["bytes_total"] == state["pass_blocks"] * CHUNK == progress["pass_bytes"]


async def test_scrub_cursor_persists_across_restarts(tmp_path: Path) -> None:
    view = ClusterView("solo", partition_bits=4, replication_factor=1)
    rpc = PeerRpcClient(KEYRING, "solo", timeout_s=1.0)

    async def fetch(digest: bytes) -> bytes:
        raise AssertionError("nothing is corrupt")

    blocks = [os.urandom(1000 + i) for i in range(10)]
    async with BlockStore(tmp_path / "s", map_size_bytes=64 << 20) as store:
        for block in blocks:
            await store.put(block)
        first = Scrubber(
            store, BlockRepair(view, store, rpc), fetch, rate_bytes_per_s=0, interval_s=1.0
        )
        assert await first.scan(max_blocks=4) is False
        cursor = first.state["cursor"]
        assert cursor == sorted(list(store.iter_digests()))[3]
    async with BlockStore(tmp_path / "s", map_size_bytes=64 << 20) as store:
        again = Scrubber(
            store, BlockRepair(view, store, rpc), fetch, rate_bytes_per_s=0, interval_s=1.0
        )
        assert again.state["cursor"] == cursor and again.state["pass_blocks"] == 4
        assert await again.scan() is True
        assert again.state["pass_blocks"] == 10  # 4 before the restart + the 6 after
        assert again.state["blocks_total"] == 10
        assert again.state["pass_bytes"] == sum(map(len, blocks))
    await rpc.close()


async def test_scrub_is_rate_limited(tmp_path: Path) -> None:
    view = ClusterView("solo", partition_bits=4, replication_factor=1)
    rpc = PeerRpcClient(KEYRING, "solo", timeout_s=1.0)

    async def fetch(digest: bytes) -> bytes:
        raise AssertionError("nothing is corrupt")

    async with BlockStore(tmp_path / "s", map_size_bytes=64 << 20, durable=False) as store:
        for _ in range(4):
            await store.put(os.urandom(50_000))
        scrubber = Scrubber(
            store, BlockRepair(view, store, rpc), fetch, rate_bytes_per_s=1e6, interval_s=1.0
        )
        started = time.monotonic()
        await scrubber.scan()
        # 200 kB at 1 MB/s is paced to >= 0.2 s (a bound that holds on any machine)
        assert time.monotonic() - started >= 0.19
    await rpc.close()


async def test_tombstone_beats_a_stale_put_and_is_purged_after_grace(cluster: Cluster) -> None:
    coordinator = cluster.by_id["peer-0"]
    await coordinator.service.put_object("bkt", "gone", b"old bytes")
    await cluster.drain()
    key = table_key("bkt", "gone")
    view = coordinator.view
    first, _, stale = view.replicas(view.partition_of(key))
    old = cluster.by_id[stale].store.table(OBJECTS_TABLE).get(key)
    schema = ObjectsSchema()
    assert old is not None and schema.tombstone_since_record(old) is None

    cluster.set_down(stale)  # the delete misses it (a stand-in keeps the hint)
    await cluster.by_id[first].service.delete_object("bkt", "gone")
    await cluster.drain()
    cluster.heal()
    # anti-entropy / a late write brings the stale put back to every replica: the merge
    # keeps the version aborted (a later state wins)
    for n in cluster.nodes:
        await n.rpc.put_record(cluster.by_id[stale].address, OBJECTS_TABLE, key, old)
        await n.rpc.put_record(n.address, OBJECTS_TABLE, key, old)
    with pytest.raises(NoSuchKey):
        await coordinator.service.stat_object("bkt", "gone")
    await cluster.drain()  # (that read also repaired the stale replica)
    for peer in view.replicas(view.partition_of(key)):
        rec = cluster.by_id[peer].store.table(OBJECTS_TABLE).get(key)
        assert schema.tombstone_since_record(rec) is not None
    # a replica still holding the old put (e.g. restored from an old disk)
    await cluster.by_id[stale].store.table(OBJECTS_TABLE).put(key, old)

    now = time.time()
    purger = TombstonePurger(
        view,
        cluster.by_id[first].store,
        cluster.by_id[first].rpc,
        grace_s=CONFIG.tombstone_grace_s,
        interval_s=60.0,
        tables=TABLES,
        clock=lambda: now,
    )
    assert await purger.purge_once() == 0  # within the grace: kept
    now += CONFIG.tombstone_grace_s + 1
    stale_table = cluster.by_id[stale].store.table(OBJECTS_TABLE)
    assert await purger.purge_once() == 0  # the stale replica lacks it: sent, not purged
    assert purger.counters["pushed"] == 1
    assert schema.tombstone_since_record(stale_table.get(key)) is not None
    assert await purger.purge_once() == 1
    for peer in view.replicas(view.partition_of(key)):
        assert cluster.by_id[peer].store.table(OBJECTS_TABLE).get(key) is None
    with pytest.raises(NoSuchKey):
        await coordinator.service.stat_object("bkt", "gone")
