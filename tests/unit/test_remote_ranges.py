"""Ranged reads on a peer that holds no copy of the block and is not one of its replicas
(a coordinator of a cluster larger than N): only the range comes over the wire, checked by
segment on the replica and by its signed SHA-256 here, with failover, and the whole-block
read (quarantine, repair) whenever that does not work (in process: 4 real block stores
behind real internal apps, N = 3)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dfspeer.errors import DataUnavailable
from tests.unit.maintenance_cluster import CHUNK, CONFIG, Cluster, Node, flip_byte, make_cluster


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with make_cluster(tmp_path, 4, CONFIG, objects=True, maintenance=False) as cl:
        yield cl


class Calls:
    """Counts a node's whole-block and ranged block RPCs."""

    def __init__(self, node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
        self.whole: list[bytes] = []
        self.ranged: list[tuple[str, int, int]] = []
        rpc = node.rpc
        get_block, get_block_range = rpc.get_block, rpc.get_block_range

        async def whole(address: str, digest: bytes) -> bytes:
            self.whole.append(digest)
            return await get_block(address, digest)

        async def ranged(address: str, digest: bytes, lo: int, hi: int) -> bytes:
            self.ranged.append((address, lo, hi))
            return await get_block_range(address, digest, lo, hi)

        monkeypatch.setattr(rpc, "get_block", whole)
        monkeypatch.setattr(rpc, "get_block_range", ranged)


async def stored_chunk(cluster: Cluster) -> tuple[bytes, bytes, Node, list[Node]]:
    """A one-chunk object's bytes and digest, a node outside the chunk's replicas, and the
    replicas."""
    data = os.urandom(CHUNK)

    async def body() -> AsyncIterator[bytes]:
        yield data

    info = await cluster.nodes[0].service.put_object("bucket", "k", body(), content_length=CHUNK)
    entry = await cluster.nodes[0].service._read_entry("bucket", "k")
    assert entry is not None and info.size == CHUNK
    digest = entry.versions[-1].chunks[0][0]
    view = cluster.nodes[0].view
    holders = set(view.replicas(view.partition_of(digest)))
    outside = [n for n in cluster.nodes if n.peer_id not in holders]
    replicas = [n for n in cluster.nodes if n.peer_id in holders]
    assert len(outside) == 1 and len(replicas) == 3
    for n in replicas:  # every write has landed (W = 2 returns before the third)
        await n.replicator.drain()
    return data, digest, outside[0], replicas


async def test_only_the_range_crosses_the_wire(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, digest, node, _ = await stored_chunk(cluster)
    calls = Calls(node, monkeypatch)
    for lo, hi in [(0, 1), (100, 9000), (CHUNK - 7, CHUNK), (0, CHUNK)]:
        assert await node.replicator.read_block_range(digest, lo, hi) == data[lo:hi]
    assert [c[1:] for c in calls.ranged] == [(0, 1), (100, 9000), (CHUNK - 7, CHUNK), (0, CHUNK)]
    assert calls.whole == []
    assert node.replicator.counters["block_ranges_remote"] == 4
    assert not await node.store.has(digest)  # a non-replica keeps no copy


async def test_a_corrupt_replica_is_skipped_and_all_corrupt_falls_back(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, digest, node, replicas = await stored_chunk(cluster)
    calls = Calls(node, monkeypatch)
    for r in replicas[:2]:
        flip_byte(r.store, digest, at=5000)
    for _ in range(3):  # whichever replica the rotation asks first
        assert await node.replicator.read_block_range(digest, 4000, 6000) == data[4000:6000]
    assert calls.whole == []
    flip_byte(replicas[2].store, digest, at=5000)
    with pytest.raises(DataUnavailable):
        await node.replicator.read_block_range(digest, 4000, 6000)
    assert calls.whole == [digest] * 3  # the whole-block read tried every replica too


async def test_a_replica_without_its_copy_reads_the_whole_block(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    data, digest, _, replicas = await stored_chunk(cluster)
    node = replicas[0]
    await node.store.delete(digest)
    calls = Calls(node, monkeypatch)
    assert await node.replicator.read_block_range(digest, 10, 20) == data[10:20]
    assert calls.ranged == [] and len(calls.whole) == 1


@pytest.mark.parametrize("query", ["range=abc", "range=9-3", "range=-1-4", "range=1-"])
async def test_a_malformed_range_is_refused(cluster: Cluster, query: str) -> None:
    _, digest, node, replicas = await stored_chunk(cluster)
    status, _, body = await node.rpc._call(
        "GET", replicas[0].address, f"/internal/blocks/{digest.hex()}?{query}"
    )
    assert status == 400 and b"invalid_argument" in body


async def test_a_range_past_the_end_is_refused_by_length(cluster: Cluster) -> None:
    _, digest, node, replicas = await stored_chunk(cluster)
    with pytest.raises(Exception, match="answered 7 bytes for a 17-byte range"):
        await node.rpc.get_block_range(replicas[0].address, digest, CHUNK - 7, CHUNK + 10)
