"""Per-segment checksums: ranged block reads verify only the 64 KiB segments they cover.

Byte-identical ranges at every segment and chunk boundary; a flipped byte in any segment
caught by a ranged read (and by a full read and scrub), quarantined and repaired; blocks
stored without segment sums (older stores of format 2) still read, by a full re-hash.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path

import lmdb
import pytest

from dfspeer.blockstore import BlockNotFound, BlockStore, CorruptBlock
from dfspeer.blockstore.schema import (
    LEGACY_SEGMENTS_DB,
    SEGMENT_BYTES,
    SEGMENTS_DB,
    legacy_segment_sums,
    segment_sums,
)
from dfspeer.cluster.readrepair import QUARANTINE_TABLE
from dfspeer.model.objects import OBJECTS_TABLE, table_key
from tests.unit.maintenance_cluster import CONFIG, Cluster, flip_byte, make_cluster

S = SEGMENT_BYTES
SIZE = 4 * S + 123  # four whole segments and a short fifth one


def boundaries(size: int, step: int) -> list[int]:
    """Every multiple of ``step`` in ``[0, size]``, its neighbours, and the size."""
    points = {0, 1, size - 1, size}
    for b in range(step, size, step):
        points |= {b - 1, b, b + 1}
    return sorted(p for p in points if 0 <= p <= size)


def flip_at(path: Path, digest: bytes, at: int) -> None:
    env = lmdb.open(str(path), max_dbs=16)
    blocks = env.open_db(b"blocks")
    with env.begin(write=True) as txn:
        stored = bytearray(txn.get(digest, db=blocks))
        stored[at] ^= 0x01
        txn.put(digest, bytes(stored), db=blocks)
    env.close()


def drop_sums(path: Path, digest: bytes) -> None:
    """Make the block look like one stored before segment sums existed."""
    env = lmdb.open(str(path), max_dbs=16)
    segments = env.open_db(SEGMENTS_DB)
    with env.begin(write=True) as txn:
        assert txn.delete(digest, db=segments)
    env.close()


def has_sums(path: Path, digest: bytes, db: bytes = SEGMENTS_DB) -> bool:
    env = lmdb.open(str(path), max_dbs=16)
    segments = env.open_db(db)
    with env.begin() as txn:
        found = txn.get(digest, db=segments)
    env.close()
    return found is not None


def as_written_by_an_earlier_version(path: Path, digest: bytes, data: bytes) -> None:
    """Replace the block's CRC-32C sums by the CRC-32 sums earlier versions wrote."""
    drop_sums(path, digest)
    env = lmdb.open(str(path), max_dbs=16)
    legacy = env.open_db(LEGACY_SEGMENTS_DB)
    with env.begin(write=True) as txn:
        txn.put(digest, legacy_segment_sums(data), db=legacy)
    env.close()


async def test_every_boundary_range_reads_back_identical(tmp_path: Path) -> None:
    data = os.urandom(SIZE)
    async with BlockStore(tmp_path / "bs", map_size_bytes=64 << 20) as store:
        digest = await store.put(data)
        points = boundaries(SIZE, S)
        for lo in points:
            for hi in points:
                if lo <= hi:
                    assert await store.get_range(digest, lo, hi) == data[lo:hi], (lo, hi)
        assert await store.get_range(digest, S, SIZE + 10**6) == data[S:]  # clamped
        empty = await store.put(b"")
        assert await store.get_range(empty, 0, 10) == b""
        with pytest.raises(ValueError):
            await store.get_range(digest, 5, 4)
        with pytest.raises(BlockNotFound):
            await store.get_range(hashlib.sha256(b"absent").digest(), 0, 1)


@pytest.mark.parametrize("segment", range(5))
async def test_flipped_byte_in_any_segment_is_caught_and_repaired(
    tmp_path: Path, segment: int
) -> None:
    path = tmp_path / "bs"
    data = os.urandom(SIZE)
    async with BlockStore(path, map_size_bytes=64 << 20) as store:
        digest = await store.put(data)
    at = min(segment * S + 77, SIZE - 1)
    flip_at(path, digest, at)
    async with BlockStore(path, map_size_bytes=64 << 20) as store:
        with pytest.raises(CorruptBlock) as err:
            await store.get_range(digest, at, at + 1)
        assert err.value.digest == digest and err.value.actual != digest
        with pytest.raises(CorruptBlock):  # any range touching that segment
            await store.get_range(digest, segment * S, segment * S + 1)
        with pytest.raises(CorruptBlock):
            await store.get_range(digest, 0, SIZE)
        with pytest.raises(CorruptBlock):  # the full read (scrub's) re-hashes everything
            await store.get(digest)
        other = (segment + 2) % 5 * S  # a segment the flip did not touch still verifies
        assert await store.get_range(digest, other, other + 10) == data[other : other + 10]
        await store.put_verified(digest, data)  # repair overwrites block and sums
        for lo in boundaries(SIZE, S):
            assert await store.get_range(digest, lo, SIZE) == data[lo:]


async def test_block_without_sums_reads_by_full_rehash(tmp_path: Path) -> None:
    path = tmp_path / "bs"
    data = os.urandom(SIZE)
    async with BlockStore(path, map_size_bytes=64 << 20) as store:
        digest = await store.put(data)
    drop_sums(path, digest)
    async with BlockStore(path, map_size_bytes=64 << 20) as store:
        assert await store.get_range(digest, S - 1, S + 1) == data[S - 1 : S + 1]
    flip_at(path, digest, SIZE - 1)
    async with BlockStore(path, map_size_bytes=64 << 20) as store:
        with pytest.raises(CorruptBlock):  # the whole block is hashed: any flip is caught
            await store.get_range(digest, 0, 1)
        await store.put_verified(digest, data)
        assert await store.get_range(digest, 0, 1) == data[:1]
    assert has_sums(path, digest)
    flip_at(path, digest, 5)
    async with BlockStore(path, map_size_bytes=64 << 20) as store:
        await store.put(data)  # identical content over a corrupt copy: rewritten
        assert await store.get(digest) == data
    drop_sums(path, digest)
    async with BlockStore(path, map_size_bytes=64 << 20) as store:
        await store.put(data)  # identical, intact, no sums: the sums are added
    assert has_sums(path, digest)


async def test_crc32_sums_of_an_earlier_version_still_verify(tmp_path: Path) -> None:
    path = tmp_path / "bs"
    data = os.urandom(SIZE)
    async with BlockStore(path, map_size_bytes=64 << 20) as store:
        digest = await store.put(data)
    as_written_by_an_earlier_version(path, digest, data)
    async with BlockStore(path, map_size_bytes=64 << 20) as store:
        for lo in boundaries(SIZE, S):
            assert await store.get_range(digest, lo, SIZE) == data[lo:]
    flip_at(path, digest, 3 * S + 9)
    async with BlockStore(path, map_size_bytes=64 << 20) as store:
        assert await store.get_range(digest, 0, 3 * S) == data[: 3 * S]  # untouched segments
        with pytest.raises(CorruptBlock):  # the CRC-32 sum of that segment catches it
            await store.get_range(digest, 3 * S + 9, 3 * S + 10)
        await store.put_verified(digest, data)  # repair writes CRC-32C sums
    assert has_sums(path, digest) and not has_sums(path, digest, LEGACY_SEGMENTS_DB)
    as_written_by_an_earlier_version(path, digest, data)
    async with BlockStore(path, map_size_bytes=64 << 20) as store:
        await store.put(data)  # identical, intact: the sums move to CRC-32C
        assert await store.get_range(digest, S, 2 * S) == data[S : 2 * S]
    assert has_sums(path, digest) and not has_sums(path, digest, LEGACY_SEGMENTS_DB)


async def test_delete_drops_the_sums(tmp_path: Path) -> None:
    path = tmp_path / "bs"
    async with BlockStore(path, map_size_bytes=64 << 20) as store:
        digest = await store.put(os.urandom(3 * S))
        await store.delete(digest)
    assert not has_sums(path, digest)


def test_segment_sums_layout() -> None:
    data = os.urandom(2 * S + 1)
    assert len(segment_sums(data)) == 3 * 4
    assert segment_sums(b"") == b""
    # CRC-32C (Castagnoli): the check value of "123456789" is 0xE3069283 (RFC 3720 B.4)
    assert segment_sums(b"123456789") == bytes.fromhex("e3069283")
    assert legacy_segment_sums(b"123456789") == bytes.fromhex("cbf43926")  # CRC-32


# ---------------------------------------------------------------------- through the cluster
BIG_CHUNK = 4 * S
BIG = dataclasses.replace(CONFIG, chunk_size_bytes=BIG_CHUNK)


def last_chunks(cluster: Cluster, bucket: str, key: str) -> list[bytes]:
    for n in cluster.nodes:
        record = n.store.table(OBJECTS_TABLE).get(table_key(bucket, key))
        if record is not None and record["versions"][-1]["state"] == "complete":
            return [bytes(d) for d, _ in record["versions"][-1]["chunks"]]
    raise AssertionError("no complete version found")


async def read(cluster: Cluster, peer: str, key: str, lo: int, hi: int) -> bytes:
    _, stream = await cluster.by_id[peer].service.get_object("bkt", key, start=lo, end=hi)
    return b"".join([piece async for piece in stream])


async def test_ranged_object_reads_at_segment_and_chunk_boundaries(tmp_path: Path) -> None:
    data = os.urandom(2 * BIG_CHUNK + S + 99)
    async with make_cluster(tmp_path, 3, BIG) as cluster:
        await cluster.by_id["peer-0"].service.put_object("bkt", "r", data)
        await cluster.drain()
        size = len(data)
        for at in boundaries(size, S):
            for lo, hi in ((at - 1, at + 1), (at, at + S), (0, at), (at, size)):
                lo, hi = max(lo, 0), min(hi, size)
                if lo < hi:
                    assert await read(cluster, "peer-1", "r", lo, hi) == data[lo:hi], (lo, hi)


async def test_ranged_read_catches_a_flipped_segment_and_repairs(tmp_path: Path) -> None:
    data = os.urandom(2 * BIG_CHUNK)
    async with make_cluster(tmp_path, 3, BIG) as cluster:
        await cluster.by_id["peer-0"].service.put_object("bkt", "f", data)
        await cluster.drain()
        digest = last_chunks(cluster, "bkt", "f")[1]
        node = cluster.by_id["peer-2"]  # 3 peers, N = 3: every peer holds every chunk
        flip_byte(node.store, digest, at=2 * S + 5)
        lo = BIG_CHUNK + 2 * S  # the flipped segment, through a ranged read only
        assert await read(cluster, "peer-2", "f", lo, lo + 100) == data[lo : lo + 100]
        await cluster.drain()
        assert await node.store.get(digest) == data[BIG_CHUNK:]  # repaired
        assert node.store.table(QUARANTINE_TABLE).get(digest)["by"] == "read"
        assert await node.store.get_range(digest, 2 * S, 3 * S) == data[lo : lo + S]


async def test_scrub_catches_a_flip_in_the_last_segment(tmp_path: Path) -> None:
    data = os.urandom(BIG_CHUNK)
    async with make_cluster(tmp_path, 3, BIG) as cluster:
        await cluster.by_id["peer-0"].service.put_object("bkt", "s", data)
        await cluster.drain()
        digest = last_chunks(cluster, "bkt", "s")[0]
        node = cluster.by_id["peer-1"]
        flip_byte(node.store, digest, at=BIG_CHUNK - 1)
        assert await node.maintenance.scrubber.scan() is True
        state = node.maintenance.scrubber.state
        assert state["corrupt_found"] == 1 and state["repaired"] == 1
        assert await node.store.get_range(digest, 0, BIG_CHUNK) == data
