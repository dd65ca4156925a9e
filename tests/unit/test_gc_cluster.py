"""Garbage collection of blocks end to end, on an in-process 4-peer cluster (N=3, W=R=2):
uploads reference their blocks (``block_refs``), overwrites and deletes release them
(``gc_releases`` -> deleted references), the block manager collects what nothing
references after the grace, and anti-entropy brings a peer that missed everything back
to the same tables, blocks and reference counts."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dfspeer.blockstore.merkle import BLOCKS_TREE
from dfspeer.cluster.blockmanager import BlockManager
from dfspeer.errors import NoSuchKey
from dfspeer.model.block_refs import BLOCK_REFS_TABLE, ref_key
from dfspeer.model.buckets import BUCKETS_TABLE
from dfspeer.model.lifecycle import ObjectLifecycle
from dfspeer.model.objects import OBJECTS_TABLE, RELEASES_TABLE, table_key
from dfspeer.objects.info import ObjectInfo
from tests.unit.lww_table import TEST_TABLE
from tests.unit.maintenance_cluster import CHUNK, CONFIG, TABLES, Cluster, Node, make_cluster

GC0 = dataclasses.replace(CONFIG, block_gc_grace_s=0.0).validate()
GRACE = 3600.0
GC_GRACE = dataclasses.replace(CONFIG, block_gc_grace_s=GRACE).validate()
REPLICATED_TABLES = (OBJECTS_TABLE, BLOCK_REFS_TABLE, BUCKETS_TABLE, TEST_TABLE)


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with make_cluster(tmp_path, 4, GC0, objects=True, maintenance=True) as cl:
        yield cl


# ---------------------------------------------------------------------- helpers
def digests_of(data: bytes) -> list[bytes]:
    """The chunk digests of ``data`` (fixed-size chunks of CHUNK bytes)."""
    return [hashlib.sha256(data[i : i + CHUNK]).digest() for i in range(0, len(data), CHUNK)]


def replicas(cluster: Cluster, placed_by: bytes) -> set[str]:
    view = cluster.nodes[0].view
    return set(view.replicas(view.partition_of(placed_by)))


async def settle(cluster: Cluster, max_rounds: int = 5) -> int:
    """Drain, then run a lifecycle pass on every node, until a round does nothing and no
    release is pending anywhere; returns the rounds run (fails after ``max_rounds``)."""
    for rounds in range(1, max_rounds + 1):
        await cluster.drain()
        did = 0
        for n in cluster.nodes:
            did += sum((await n.lifecycle.run_pass()).values())
        await cluster.drain()
        pending = sum(n.store.table(RELEASES_TABLE).count() for n in cluster.nodes)
        if did == 0 and pending == 0:
            return rounds
    raise AssertionError(f"garbage collection did not settle in {max_rounds} rounds")


def refs_held(cluster: Cluster, digest: bytes, version: str) -> dict[str, dict[str, object]]:
    """peer -> its ``block_refs`` entry of (digest, version), for peers holding one."""
    key = ref_key(digest, version)
    out = {}
    for n in cluster.nodes:
        record = n.store.table(BLOCK_REFS_TABLE).get(key)
        if record is not None:
            out[n.peer_id] = record
    return out


async def assert_live(cluster: Cluster, digest: bytes, count: int = 1) -> None:
    """``digest`` is held by exactly its replicas, each counting ``count`` references."""
    owners = replicas(cluster, digest)
    assert await cluster.holders(digest) == owners, digest.hex()[:16]
    for p in owners:
        assert cluster.by_id[p].store.refcount(digest) == count, (digest.hex()[:16], p)


async def assert_gone(cluster: Cluster, digest: bytes) -> None:
    assert await cluster.holders(digest) == set(), digest.hex()[:16]
    for n in cluster.nodes:
        assert n.store.refcount(digest) == 0


def assert_refs(cluster: Cluster, digests: list[bytes], version: str, *, deleted: bool) -> None:
    """Exactly the 3 replicas of each block hold its reference by ``version``, live or a
    tombstone as ``deleted`` says."""
    for d in digests:
        held = refs_held(cluster, d, version)
        assert set(held) == replicas(cluster, d), d.hex()[:16]
        assert len(held) == 3
        assert {bool(r["deleted"]) for r in held.values()} == {deleted}


def expected_block_count(cluster: Cluster, digests: set[bytes], peer: str) -> int:
    return sum(1 for d in digests if peer in replicas(cluster, d))


async def read_all(node: Node, bucket: str, key: str, version: str | None = None) -> bytes:
    _, stream = await node.service.get_object(bucket, key, version=version)
    return b"".join([piece async for piece in stream])


def stored_chunks(cluster: Cluster, bucket: str, key: str, version: str) -> list[bytes]:
    """The chunk list of ``version`` as stored on the key's replicas (all must agree)."""
    found = []
    for p in sorted(replicas(cluster, table_key(bucket, key))):
        record = cluster.by_id[p].store.table(OBJECTS_TABLE).get(table_key(bucket, key))
        assert record is not None, p
        (v,) = [v for v in record["versions"] if v["id"] == version]
        found.append([bytes(d) for d, _ in v["chunks"]])
    assert all(f == found[0] for f in found)
    return found[0]


def version_states(cluster: Cluster, bucket: str, key: str) -> dict[str, list[str]]:
    """peer -> states of the key's versions (oldest first) on each of its replicas."""
    out = {}
    for p in sorted(replicas(cluster, table_key(bucket, key))):
        record = cluster.by_id[p].store.table(OBJECTS_TABLE).get(table_key(bucket, key))
        out[p] = [v["state"] for v in record["versions"]] if record is not None else []
    return out


# ---------------------------------------------------------------------- tests
async def test_put_references_every_chunk_once_on_its_replicas(cluster: Cluster) -> None:
    data = os.urandom(4 * CHUNK + 1000)  # 5 chunks, the last short
    digests = digests_of(data)
    assert len(set(digests)) == 5
    info = await cluster.by_id["peer-0"].service.put_object("bkt", "obj", data)
    assert info.chunks == 5

    assert await settle(cluster) == 1  # nothing to expire, release, sweep or collect
    assert stored_chunks(cluster, "bkt", "obj", info.version) == digests
    for d in digests:
        await assert_live(cluster, d)
    assert_refs(cluster, digests, info.version, deleted=False)
    for n in cluster.nodes:
        assert n.store.stats().block_count == expected_block_count(cluster, set(digests), n.peer_id)
        assert n.store.gc_queued() == 0
    assert sum(n.store.stats().block_count for n in cluster.nodes) == 15
    # every (digest, version) reference exists exactly 15 times over the cluster
    assert sum(len(n.store.table(BLOCK_REFS_TABLE).scan()) for n in cluster.nodes) == 15


async def test_unversioned_overwrite_frees_the_old_blocks(cluster: Cluster) -> None:
    svc = cluster.by_id["peer-1"].service
    old_data, new_data = os.urandom(3 * CHUNK), os.urandom(3 * CHUNK)
    old_digests, new_digests = digests_of(old_data), digests_of(new_data)
    old = await svc.put_object("bkt", "k", old_data)
    new = await cluster.by_id["peer-2"].service.put_object("bkt", "k", new_data)
    assert old.version < new.version

    await settle(cluster)
    for d in old_digests:
        await assert_gone(cluster, d)
    for d in new_digests:
        await assert_live(cluster, d)
    assert_refs(cluster, old_digests, old.version, deleted=True)  # tombstones
    assert_refs(cluster, new_digests, new.version, deleted=False)
    assert all(
        states == ["aborted", "complete"] for states in version_states(cluster, "bkt", "k").values()
    )
    listing = await svc.list_object_versions("bkt", "k")
    assert [v.version for v in listing] == [new.version]
    for n in cluster.nodes:
        assert n.store.stats().block_count == expected_block_count(
            cluster, set(new_digests), n.peer_id
        )
        assert await read_all(n, "bkt", "k") == new_data


async def test_identical_overwrite_keeps_blocks_and_drops_one_reference(cluster: Cluster) -> None:
    data = os.urandom(3 * CHUNK + 17)
    digests = digests_of(data)
    svc = cluster.by_id["peer-0"].service
    first = await svc.put_object("bkt", "same", data)
    await settle(cluster)
    second = await svc.put_object("bkt", "same", data)
    await cluster.drain()  # the old version is aborted, its releases queued, not yet written

    for d in digests:
        await assert_live(cluster, d, count=2)
    assert_refs(cluster, digests, first.version, deleted=False)
    assert_refs(cluster, digests, second.version, deleted=False)

    await settle(cluster)
    for d in digests:
        await assert_live(cluster, d, count=1)
    assert_refs(cluster, digests, first.version, deleted=True)
    assert_refs(cluster, digests, second.version, deleted=False)
    assert sum(n.lifecycle.blocks.counters["blocks_deleted"] for n in cluster.nodes) == 0
    for n in cluster.nodes:
        assert n.store.gc_queued() == 0
        assert await read_all(n, "bkt", "same") == data


async def test_shared_content_lives_until_the_last_key_goes(cluster: Cluster) -> None:
    data = os.urandom(4 * CHUNK)
    digests = digests_of(data)
    svc = cluster.by_id["peer-3"].service
    await svc.put_object("bkt", "a", data)
    await cluster.by_id["peer-0"].service.put_object("bkt", "b", data)
    await settle(cluster)
    for d in digests:
        await assert_live(cluster, d, count=2)

    assert await svc.delete_object("bkt", "a") is not None
    await settle(cluster)
    for d in digests:
        await assert_live(cluster, d, count=1)
    for n in cluster.nodes:
        assert await read_all(n, "bkt", "b") == data

    assert await svc.delete_object("bkt", "b") is not None
    await settle(cluster)
    for d in digests:
        await assert_gone(cluster, d)
    for n in cluster.nodes:
        assert n.store.stats().block_count == 0
        assert n.store.gc_queued() == 0


async def test_unversioned_delete_empties_every_store(cluster: Cluster) -> None:
    data = os.urandom(6 * CHUNK + 5)
    digests = digests_of(data)
    svc = cluster.by_id["peer-2"].service
    put = await svc.put_object("bkt", "gone", data)
    await settle(cluster)
    assert sum(n.store.stats().block_count for n in cluster.nodes) == 21

    marker = await svc.delete_object("bkt", "gone")
    assert marker is not None
    await settle(cluster)
    for d in digests:
        await assert_gone(cluster, d)
    assert_refs(cluster, digests, put.version, deleted=True)
    for n in cluster.nodes:
        assert n.store.stats().block_count == 0
        assert n.store.gc_queued() == 0
        with pytest.raises(NoSuchKey):
            await n.service.get_object("bkt", "gone")
    listing = await svc.list_object_versions("bkt", "gone")  # only the null delete marker
    assert [(v.version, v.delete_marker) for v in listing] == [(marker, True)]
    assert await svc.delete_object("bkt", "gone") is None  # nothing left to delete


async def test_versioned_bucket_keeps_versions_until_deleted_by_id(cluster: Cluster) -> None:
    svc = cluster.by_id["peer-0"].service
    await svc.buckets.create("vbkt", versioning="enabled")
    d1, d2 = os.urandom(2 * CHUNK + 9), os.urandom(3 * CHUNK)
    g1, g2 = digests_of(d1), digests_of(d2)
    v1 = await svc.put_object("vbkt", "k", d1)
    v2 = await svc.put_object("vbkt", "k", d2)
    marker = await svc.delete_object("vbkt", "k")
    assert marker is not None

    await settle(cluster)
    for d in g1 + g2:
        await assert_live(cluster, d)
    listing = await svc.list_object_versions("vbkt", "k")
    assert [v.version for v in listing] == [marker, v2.version, v1.version]
    with pytest.raises(NoSuchKey):
        await svc.get_object("vbkt", "k")

    assert await cluster.by_id["peer-1"].service.delete_object("vbkt", "k", version=v1.version)
    await settle(cluster)
    for d in g1:
        await assert_gone(cluster, d)
    for d in g2:
        await assert_live(cluster, d)
    assert_refs(cluster, g1, v1.version, deleted=True)
    assert_refs(cluster, g2, v2.version, deleted=False)
    for n in cluster.nodes:
        assert await read_all(n, "vbkt", "k", version=v2.version) == d2
        assert n.store.stats().block_count == expected_block_count(cluster, set(g2), n.peer_id)
    listing = await svc.list_object_versions("vbkt", "k")
    assert [v.version for v in listing] == [marker, v2.version]


async def test_grace_keeps_unreferenced_blocks_and_a_reupload_saves_them(tmp_path: Path) -> None:
    async with make_cluster(tmp_path, 4, GC_GRACE, objects=True, maintenance=True) as cluster:
        svc = cluster.by_id["peer-0"].service
        saved, lost = os.urandom(3 * CHUNK), os.urandom(2 * CHUNK)
        gs, gl = digests_of(saved), digests_of(lost)
        await svc.put_object("bkt", "saved", saved)
        await svc.put_object("bkt", "lost", lost)
        await svc.delete_object("bkt", "saved")
        await svc.delete_object("bkt", "lost")

        await settle(cluster)  # released, but inside the grace: nothing collected
        for d in gs + gl:
            await assert_live(cluster, d, count=0)
        for n in cluster.nodes:
            assert n.store.gc_queued() == expected_block_count(cluster, set(gs + gl), n.peer_id)
            assert n.store.stats().block_count == n.store.gc_queued()
        assert sum(n.lifecycle.blocks.counters["blocks_deleted"] for n in cluster.nodes) == 0

        again = await cluster.by_id["peer-3"].service.put_object("bkt", "again", saved)
        await settle(cluster)
        for d in gs:
            await assert_live(cluster, d, count=1)
        for n in cluster.nodes:
            assert n.store.gc_queued() == expected_block_count(cluster, set(gl), n.peer_id)

        def later() -> float:
            return time.time() + 2 * GRACE

        deleted = 0
        for n in cluster.nodes:
            blocks = BlockManager(n.store, grace_s=GRACE, clock=later)
            life = ObjectLifecycle(GC_GRACE, n.view, n.store, n.replicator, blocks, clock=later)
            deleted += (await life.run_pass())["deleted"]
        assert deleted == 6  # the 2 chunks of "lost" on their 3 replicas each
        for d in gl:
            await assert_gone(cluster, d)
        for d in gs:
            await assert_live(cluster, d, count=1)
        assert_refs(cluster, gs, again.version, deleted=False)
        for n in cluster.nodes:
            assert n.store.gc_queued() == 0
            assert await read_all(n, "bkt", "again") == saved


async def refs_by_key(cluster: Cluster, digest: bytes, key: str) -> set[str]:
    """Peers holding a live reference to ``digest`` from any version of ``bkt/key``."""
    out = set()
    for n in cluster.nodes:
        for _, ref in n.store.table(BLOCK_REFS_TABLE).scan(prefix=digest):
            if ref["key"] == key and not ref["deleted"]:
                out.add(n.peer_id)
    return out


async def race_round(cluster: Cluster, data: bytes, old: str, new: str, via: str) -> None:
    """Upload ``data`` as ``new`` (through ``via``), held after its first 4 chunks until
    ``old`` (the only other holder of ``data``) is deleted, released and collected; then
    let it finish while deletes and passes keep running."""
    digests = digests_of(data)
    head, tail = digests[:4], digests[4:]
    gate, put_done = asyncio.Event(), asyncio.Event()

    async def body() -> AsyncIterator[bytes]:
        for i in range(0, len(data), CHUNK):
            if i == 4 * CHUNK:
                await asyncio.wait_for(gate.wait(), 10)
            yield data[i : i + CHUNK]

    async def put() -> ObjectInfo:
        try:
            return await cluster.by_id[via].service.put_object("bkt", new, body())
        finally:
            put_done.set()

    async def collect_during_upload() -> int:
        for _ in range(1000):  # wait until the first 4 chunks are on all their replicas
            held = [await refs_by_key(cluster, d, new) for d in head]
            if all(h == replicas(cluster, d) for h, d in zip(held, head, strict=True)):
                break
            await asyncio.sleep(0.005)
        else:
            raise AssertionError("the upload never wrote its first chunks")
        deleter = cluster.by_id["peer-2"].service
        deletes = int(await deleter.delete_object("bkt", old) is not None)
        deleted = 0
        for _ in range(2):
            await cluster.drain()
            for n in cluster.nodes:
                deleted += (await n.lifecycle.run_pass())["deleted"]
        # mid-upload: the chunks uploaded so far are kept by the new references alone,
        # the others had no reference left and are gone from every peer
        assert deleted == 3 * len(tail)
        for d in head:
            await assert_live(cluster, d, count=1)
        for d in tail:
            await assert_gone(cluster, d)
        gate.set()
        while not put_done.is_set():  # keep deleting and collecting while it finishes
            deletes += int(await deleter.delete_object("bkt", old) is not None)
            for n in cluster.nodes:
                await n.lifecycle.run_pass()
            await asyncio.sleep(0)
        return deletes

    info, deletes = await asyncio.gather(put(), collect_during_upload())
    assert deletes == 1  # later deletes of the already deleted key are no-ops
    assert info.chunks == len(digests)
    await cluster.drain()
    for n in cluster.nodes:
        assert await read_all(n, "bkt", new) == data
    for d in digests:
        owners = replicas(cluster, d)
        assert await cluster.holders(d) == owners
        assert all(cluster.by_id[p].store.refcount(d) >= 1 for p in owners)


async def test_gc_racing_an_upload_of_the_same_content(cluster: Cluster) -> None:
    data = os.urandom(8 * CHUNK + 333)  # 9 chunks
    digests = digests_of(data)
    assert len(set(digests)) == 9
    await cluster.by_id["peer-0"].service.put_object("bkt", "race-0", data)
    await settle(cluster)
    for r in range(1, 4):  # each round, the previous key (the only holder of X) goes
        await race_round(cluster, data, f"race-{r - 1}", f"race-{r}", via=f"peer-{r}")

    await settle(cluster)
    for d in digests:
        await assert_live(cluster, d, count=1)
    for n in cluster.nodes:
        assert await read_all(n, "bkt", "race-3") == data
        assert n.store.stats().block_count == expected_block_count(cluster, set(digests), n.peer_id)


async def test_every_table_converges_after_a_peer_missed_everything(tmp_path: Path) -> None:
    async with make_cluster(
        tmp_path, 4, GC0, objects=True, maintenance=True, repair_tables=TABLES
    ) as cluster:
        down = "peer-3"
        cluster.set_down(down)
        svc = cluster.by_id["peer-0"].service
        await svc.buckets.create("plain")
        await svc.buckets.create("vers", versioning="enabled")
        blobs = {f"k{i}": os.urandom((i % 3 + 1) * CHUNK + i) for i in range(8)}
        for key, data in blobs.items():
            await svc.put_object("plain", key, data)
            await svc.put_object("vers", key, data[::-1])
        await svc.put_object("plain", "k0", blobs["k1"])  # overwrite: k0's blocks released
        await svc.delete_object("plain", "k2")
        v_old = (await svc.list_object_versions("vers", "k3"))[0].version
        await svc.delete_object("vers", "k3", version=v_old)
        await svc.delete_object("vers", "k4")  # a marker: data kept
        await settle(cluster)

        target = cluster.by_id[down]
        ring = target.view.ring
        assert target.store.stats().block_count == 0  # it received nothing
        assert all(target.store.table(t).count() == 0 for t in REPLICATED_TABLES)

        cluster.heal()
        for _ in range(2):
            for n in cluster.nodes:
                summary = await n.repair.run_round()
                assert summary["failed_pairs"] == 0

        for p in range(ring.partition_count):
            group = [cluster.by_id[q] for q in target.view.replicas(p)]
            for tree in (*REPLICATED_TABLES, BLOCKS_TREE):
                got = {n.peer_id: n.store.merkle(tree).root(p) for n in group}
                assert len(set(got.values())) == 1, (tree, p, got)

        want: dict[bytes, int] = {}  # live references per block
        for key, data in blobs.items():
            if key != "k2":  # plain/k0 now holds k1's content: 2 references
                for d in digests_of(blobs["k1"] if key == "k0" else data):
                    want[d] = want.get(d, 0) + 1
            if key != "k3":
                for d in digests_of(data[::-1]):
                    want[d] = want.get(d, 0) + 1
        assert sorted(set(want.values())) == [1, 2]
        mine = expected_block_count(cluster, set(want), down)
        assert target.store.stats().block_count == mine > 0
        for d, count in want.items():
            owners = replicas(cluster, d)
            assert owners <= await cluster.holders(d)  # (+ stand-ins' copies for peer-3)
            assert {p: cluster.by_id[p].store.refcount(d) for p in owners} == dict.fromkeys(
                owners, count
            )
        digests = [bytes(k[:32]) for k, _ in target.store.table(BLOCK_REFS_TABLE).scan()]
        assert {d for d in digests if down in replicas(cluster, d)} == set(digests)
        for n in cluster.nodes:
            if n.peer_id != down:
                for d in set(digests):
                    if n.peer_id in replicas(cluster, d):
                        assert target.store.refcount(d) == n.store.refcount(d)
        # hints delivered (or found redundant) and a pass later, only the replicas hold
        # the live blocks, and the converged cluster collected nothing it needs
        for n in cluster.nodes:
            await n.maintenance.handoff.deliver_once()
        await settle(cluster)
        assert target.store.stats().block_count == mine
        for d, count in want.items():
            owners = replicas(cluster, d)
            assert await cluster.holders(d) == owners
            assert {p: cluster.by_id[p].store.refcount(d) for p in owners} == dict.fromkeys(
                owners, count
            )
        for key, data in blobs.items():
            if key != "k2":
                expected = blobs["k1"] if key == "k0" else data
                assert await read_all(target, "plain", key) == expected
            if key != "k3":  # vers/k4's data is the version under its delete marker
                listed = await target.service.list_object_versions("vers", key)
                vid = listed[-1].version
                assert await read_all(target, "vers", key, version=vid) == data[::-1]


def chunks_replicated_on(cluster: Cluster, peer: str, count: int) -> bytes:
    """``count`` random chunks, each placed on a partition ``peer`` replicates."""
    out = []
    while len(out) < count:
        chunk = os.urandom(CHUNK)
        if peer in replicas(cluster, hashlib.sha256(chunk).digest()):
            out.append(chunk)
    return b"".join(out)


async def test_released_hinted_blocks_leave_no_stuck_hints_after_repair(tmp_path: Path) -> None:
    async with make_cluster(
        tmp_path, 4, GC0, objects=True, maintenance=True, repair_tables=TABLES
    ) as cluster:
        down = "peer-3"
        cluster.set_down(down)
        svc = cluster.by_id["peer-0"].service
        data = chunks_replicated_on(cluster, down, 3)
        digests = digests_of(data)
        await svc.put_object("bkt", "doomed", data)
        await svc.delete_object("bkt", "doomed")
        await settle(cluster)
        # released and collected on the real replicas; each stand-in copy (one per chunk,
        # for peer-3) is pinned by its hint
        for d in digests:
            (stand_in,) = await cluster.holders(d)
            assert stand_in not in replicas(cluster, d)
            assert cluster.by_id[stand_in].store.refcount(d) == 0
        assert sum(n.store.gc_queued() for n in cluster.nodes) == 3

        cluster.heal()
        for _ in range(2):
            for n in cluster.nodes:
                assert (await n.repair.run_round())["failed_pairs"] == 0
        for n in cluster.nodes:
            await n.maintenance.handoff.deliver_once()
        await settle(cluster)

        for d in digests:
            await assert_gone(cluster, d)
        assert [n.maintenance.hints.pending() for n in cluster.nodes] == [0, 0, 0, 0]
        assert [n.store.gc_queued() for n in cluster.nodes] == [0, 0, 0, 0]


async def test_a_rebalance_frees_nothing_that_is_still_live(tmp_path: Path) -> None:
    """A peer that hands partitions to a new member drops its copies of the entries and
    references: that must release nothing, so after garbage collection every object still
    reads back and every block is held, referenced, by exactly its new replicas."""
    async with make_cluster(
        tmp_path, 4, GC0, objects=True, maintenance=True, repair_tables=TABLES
    ) as cluster:
        three = ["peer-0", "peer-1", "peer-2"]
        cluster.set_view(three)
        datas = {f"k{i}": os.urandom(3 * CHUNK) for i in range(8)}
        for k, data in datas.items():
            await cluster.by_id["peer-0"].service.put_object("bkt", k, data)
        await settle(cluster)
        cluster.heal()  # peer-3 joins: partitions move to it
        dropped = 0
        for _ in range(2):
            for n in cluster.nodes:
                summary = await n.repair.run_round()
                assert summary["failed_pairs"] == 0
                dropped += summary["dropped"]
        assert dropped > 0  # the old owners really dropped what moved
        await settle(cluster)
        for k, data in datas.items():
            for n in cluster.nodes:
                assert await read_all(n, "bkt", k) == data
            for d in digests_of(data):
                await assert_live(cluster, d)
