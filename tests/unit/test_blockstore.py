"""Behaviour of dfspeer.blockstore on a real LMDB environment in tmp_path."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import cbor2
import lmdb
import mmh3
import pytest

from dfspeer.blockstore import (
    BlockNotFound,
    BlockStore,
    BlockStoreError,
    CorruptBlock,
    DeleteBlock,
    DigestMismatch,
    PutBlock,
    StoreFull,
    TableDelete,
    TablePut,
    TableUpdate,
)
from dfspeer.blockstore import store as store_module

MiB = 1024 * 1024
REPO = Path(__file__).resolve().parents[2]


def sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def partition16(digest: bytes) -> int:
    """Top 4 bits of the 64-bit mmh3 hash: 16 partitions (the ring's scheme, P=4)."""
    return int(mmh3.hash64(digest, signed=False)[0]) >> 60


def blob(i: int, size: int = 1000) -> bytes:
    return (i.to_bytes(4, "big") * (size // 4 + 1))[:size]


@pytest.fixture
async def store(tmp_path: Path) -> Any:
    async with BlockStore(tmp_path / "bs", map_size_bytes=256 * MiB) as s:
        yield s


# ---------------------------------------------------------------------- blocks
@pytest.mark.parametrize("size", [0, 1, 4 * MiB])
async def test_round_trip(store: BlockStore, size: int) -> None:
    data = os.urandom(size)
    digest = await store.put(data)
    assert digest == sha(data)
    assert await store.has(digest)
    assert await store.get(digest) == data
    assert store.stats().block_count == 1
    assert store.stats().block_bytes == size


async def test_identical_content_is_stored_once(store: BlockStore) -> None:
    data = os.urandom(100_000)
    first = await store.put(data)
    second = await store.put(bytearray(data))
    await store.put_verified(first, data)
    assert first == second
    stats = store.stats()
    assert (stats.block_count, stats.block_bytes) == (1, len(data))
    assert list(store.iter_digests()) == [first]


async def test_missing_block(store: BlockStore) -> None:
    digest = sha(b"never stored")
    with pytest.raises(BlockNotFound):
        await store.get(digest)
    assert not await store.has(digest)
    assert not await store.delete(digest)


async def test_delete(store: BlockStore) -> None:
    keep, drop = await store.put(b"keep"), await store.put(b"drop")
    assert await store.delete(drop)
    assert not await store.has(drop)
    assert await store.get(keep) == b"keep"
    stats = store.stats()
    assert (stats.block_count, stats.block_bytes) == (1, 4)


async def test_bad_digest_argument(store: BlockStore) -> None:
    with pytest.raises(ValueError):
        await store.get(b"short")
    with pytest.raises(ValueError):
        await store.put_verified(b"x" * 31, b"data")


async def test_put_verified_mismatch_writes_nothing(store: BlockStore) -> None:
    data = b"payload" * 10_000
    wrong = sha(b"something else")
    commits = store.stats().txn_commits
    with pytest.raises(DigestMismatch) as err:
        await store.put_verified(wrong, data)
    assert err.value.actual == sha(data)
    assert not await store.has(wrong)
    assert not await store.has(sha(data))
    stats = store.stats()
    assert (stats.block_count, stats.txn_commits) == (0, commits)
    await store.put_verified(sha(data), data)
    assert await store.get(sha(data)) == data


@pytest.mark.parametrize("size", [10, 4 * MiB])
async def test_corruption_is_detected_and_repaired(tmp_path: Path, size: int) -> None:
    path = tmp_path / "bs"
    data = os.urandom(size)
    async with BlockStore(path) as s:
        digest = await s.put(data)
    env = lmdb.open(str(path), max_dbs=8)
    blocks = env.open_db(b"blocks")
    with env.begin(write=True) as txn:
        stored = bytearray(txn.get(digest, db=blocks))
        stored[size // 2] ^= 0x01
        txn.put(digest, bytes(stored), db=blocks)
    env.close()
    async with BlockStore(path) as s:
        assert await s.has(digest)
        with pytest.raises(CorruptBlock) as err:
            await s.get(digest)
        assert err.value.digest == digest
        assert err.value.actual == sha(bytes(stored))
        await s.put_verified(digest, data)  # read repair overwrites the bad copy
        assert await s.get(digest) == data
        assert (s.stats().block_count, s.stats().block_bytes) == (1, size)


# ---------------------------------------------------------------------- group commit
@contextlib.asynccontextmanager
async def writer_held(store: BlockStore) -> AsyncIterator[None]:
    """Hold the writer thread inside a table update until the block exits, so every write
    submitted meanwhile queues up and lands in the same group."""
    entered, release = threading.Event(), threading.Event()

    def hold(_current: Any) -> int:
        entered.set()
        release.wait(10)
        return 1

    gate = asyncio.create_task(store.table("gate").update(b"gate", hold))
    assert await asyncio.to_thread(entered.wait, 10)
    try:
        yield
        await asyncio.sleep(0.05)  # let every submitted write reach the queue
    finally:
        release.set()
        assert await gate == 1


async def test_concurrent_puts_share_transactions(store: BlockStore) -> None:
    """200 puts queued behind a held writer are committed together: far fewer commits."""
    blobs = [blob(i, 100 + i) for i in range(200)]
    before = store.stats().txn_commits
    async with writer_held(store):
        puts = [asyncio.create_task(store.put(b)) for b in blobs]
    digests = await asyncio.gather(*puts)
    stats = store.stats()
    assert stats.write_requests >= 201
    assert stats.txn_commits - before <= 2  # the gate's txn + one txn for all 200 puts
    assert stats.block_count == 200
    for data, digest in zip(blobs, digests, strict=True):
        assert await store.get(digest) == data


async def test_many_concurrent_writers(store: BlockStore) -> None:
    async def writer(w: int) -> list[bytes]:
        return [await store.put(blob(w * 1000 + i, 5000)) for i in range(25)]

    results = await asyncio.gather(*(writer(w) for w in range(8)))
    digests = {d for r in results for d in r}
    assert len(digests) == 200
    assert set(store.iter_digests()) == digests
    assert store.stats().txn_commits < 200


# ---------------------------------------------------------------------- map full
async def test_map_full_raises_store_full_and_store_stays_usable(tmp_path: Path) -> None:
    async with BlockStore(tmp_path / "bs", map_size_bytes=2 * MiB) as s:
        stored: dict[bytes, bytes] = {}
        with pytest.raises(StoreFull):
            for i in range(100):
                data = blob(i, 100_000)
                stored[await s.put(data)] = data
        assert 0 < len(stored) < 100
        stats = s.stats()
        assert stats.block_count == len(stored)
        assert stats.map_used_bytes <= stats.map_size_bytes
        for digest, data in stored.items():
            assert await s.get(digest) == data
        # A group where some puts fit and one cannot: the group is replayed one by one,
        # only the one that does not fit fails.
        victim = next(iter(stored))
        assert await s.delete(victim)
        big = blob(999, 3 * MiB)
        async with writer_held(s):
            puts = [asyncio.create_task(s.put(x)) for x in (b"small", big, b"tiny")]
        results = await asyncio.gather(*puts, return_exceptions=True)
        assert results[0] == sha(b"small") and results[2] == sha(b"tiny")
        assert isinstance(results[1], StoreFull)
        assert s.stats().group_replays >= 1
        assert not await s.has(sha(big))
        await s.table("t").put(b"k", "still writable")
        assert s.table("t").get(b"k") == "still writable"
        assert s.stats().block_count == len(stored) + 1  # -1 victim, +small +tiny


async def test_map_full_in_batch_writes_nothing(tmp_path: Path) -> None:
    async with BlockStore(tmp_path / "bs", map_size_bytes=2 * MiB) as s:
        ops = [TablePut("t", b"a", 1), PutBlock(blob(1, 3 * MiB))]
        with pytest.raises(StoreFull):
            await s.write_batch(ops)
        assert s.table("t").get(b"a") is None
        assert s.stats().block_count == 0


# ---------------------------------------------------------------------- tables
async def test_table_crud(store: BlockStore) -> None:
    t = store.table("manifests")
    assert t.name == "manifests"
    assert t.get(b"k") is None
    await t.put(b"k", {"size": 3, "chunks": [b"\x00" * 32]})
    assert t.get(b"k") == {"size": 3, "chunks": [b"\x00" * 32]}
    await t.put(b"k", [1, 2])
    assert t.get(b"k") == [1, 2]
    assert t.count() == 1
    assert await t.delete(b"k")
    assert not await t.delete(b"k")
    assert t.count() == 0
    assert store.table("manifests") is t
    with pytest.raises(ValueError):
        await t.put(b"k", None)
    with pytest.raises(ValueError):
        await t.put(b"", 1)
    with pytest.raises(ValueError):
        store.table("bad name!")


async def test_table_update(store: BlockStore) -> None:
    t = store.table("refs")
    assert await t.update(b"n", lambda v: (v or 0) + 1) == 1
    results = await asyncio.gather(*(t.update(b"n", lambda v: v + 1) for _ in range(50)))
    assert sorted(results) == list(range(2, 52))
    assert t.get(b"n") == 51
    assert await t.update(b"n", lambda v: None) is None
    assert t.get(b"n") is None

    def boom(_v: Any) -> Any:
        raise RuntimeError("no")

    await t.put(b"x", "old")
    with pytest.raises(RuntimeError):
        await t.update(b"x", boom)
    assert t.get(b"x") == "old"


async def test_table_scan(store: BlockStore) -> None:
    t = store.table("scan")
    for p in (b"a", b"b"):
        for i in range(5):
            await t.put(p + bytes([i]), i)
    await t.put(b"c", "other")
    assert [k for k, _ in t.scan()] == [p + bytes([i]) for p in (b"a", b"b") for i in range(5)] + [
        b"c"
    ]
    assert t.scan(prefix=b"b") == [(b"b" + bytes([i]), i) for i in range(5)]
    assert t.scan(prefix=b"b", start_after=b"b\x02") == [(b"b\x03", 3), (b"b\x04", 4)]
    assert t.scan(prefix=b"b", limit=2) == [(b"b\x00", 0), (b"b\x01", 1)]
    assert t.scan(start_after=b"a") == t.scan()[:]
    assert t.scan(start_after=b"b\x04") == [(b"c", "other")]
    assert t.scan(prefix=b"z") == []
    assert t.scan(limit=0) == []
    assert store.table_names() == ["scan"]


async def test_tables_persist_with_canonical_cbor(tmp_path: Path) -> None:
    path = tmp_path / "bs"
    async with BlockStore(path) as s:
        await s.table("m").put(b"k", {"b": 1, "a": 2})
    async with BlockStore(path) as s:
        assert s.table("m").get(b"k") == {"a": 2, "b": 1}
    env = lmdb.open(str(path), max_dbs=8)
    with env.begin() as txn:
        raw = txn.get(b"k", db=env.open_db(b"table:m", txn=txn, create=False))
    env.close()
    assert raw == cbor2.dumps({"a": 2, "b": 1}, canonical=True)


async def test_write_batch_is_atomic(store: BlockStore) -> None:
    data = b"block in a batch"
    results = await store.write_batch(
        [
            PutBlock(data, digest=sha(data)),
            TablePut("m", b"obj", {"chunks": [sha(data)]}),
            TableUpdate("refs", sha(data), lambda v: (v or 0) + 1),
            TableDelete("m", b"absent"),
        ]
    )
    assert results == [sha(data), None, 1, False]

    def boom(_v: Any) -> Any:
        raise KeyError("fail late")

    with pytest.raises(KeyError):
        await store.write_batch(
            [PutBlock(b"other"), DeleteBlock(sha(data)), TableUpdate("refs", b"x", boom)]
        )
    with pytest.raises(DigestMismatch):
        await store.write_batch([TablePut("m", b"y", 1), PutBlock(b"z", digest=sha(b"q"))])
    assert await store.get(sha(data)) == data
    assert not await store.has(sha(b"other"))
    assert store.table("m").get(b"y") is None
    assert store.table("refs").get(sha(data)) == 1
    assert store.stats().block_count == 1


# ---------------------------------------------------------------------- partitions, stats
async def test_iter_digests_by_partition(tmp_path: Path, monkeypatch: Any) -> None:
    monkeypatch.setattr(store_module, "ITER_PAGE", 3)  # exercise paging
    async with BlockStore(tmp_path / "bs", partition_of=partition16) as s:
        digests = await asyncio.gather(*(s.put(blob(i)) for i in range(60)))
        await s.delete(digests[0])
        live = set(digests[1:])
        assert sorted(s.iter_digests()) == list(s.iter_digests()) == sorted(live)
        for p in range(16):
            got = list(s.iter_digests(p))
            assert got == sorted(d for d in live if partition16(d) == p)
        assert sum(len(list(s.iter_digests(p))) for p in range(16)) == 59
        with pytest.raises(ValueError):
            s.iter_digests(70_000)


async def test_partition_index_rebuilt_after_reopen(tmp_path: Path) -> None:
    path = tmp_path / "bs"
    async with BlockStore(path, partition_of=partition16) as s:
        old = await s.put(b"old")
    async with BlockStore(path) as s:  # no partitioner: index not maintained
        await s.delete(old)
        new = await s.put(b"new")
        with pytest.raises(ValueError):
            s.iter_digests(0)
    async with BlockStore(path, partition_of=partition16) as s:
        assert list(s.iter_digests(partition16(new))) == [new]
        assert [d for p in range(16) for d in s.iter_digests(p)] == [new]

    def other(d: bytes) -> int:
        return d[0] % 4

    async with BlockStore(path, partition_of=other) as s:
        assert list(s.iter_digests(other(new))) == [new]


async def test_stats_persist(tmp_path: Path) -> None:
    path = tmp_path / "bs"
    async with BlockStore(path, map_size_bytes=64 * MiB) as s:
        for i in range(10):
            await s.put(blob(i, 1000 * (i + 1)))
        await s.delete(sha(blob(0, 1000)))
        stats = s.stats()
    assert (stats.block_count, stats.block_bytes) == (9, sum(1000 * (i + 1) for i in range(1, 10)))
    assert stats.map_size_bytes == 64 * MiB
    assert 0 < stats.map_used_bytes <= stats.map_size_bytes
    assert stats.write_requests == 11
    async with BlockStore(path, map_size_bytes=64 * MiB, durable=False) as s:
        again = s.stats()
        assert (again.block_count, again.block_bytes) == (stats.block_count, stats.block_bytes)
        await s.put(b"not fsynced but flushed at close")
    async with BlockStore(path) as s:
        assert s.stats().block_count == 10


async def test_closed_store_refuses_calls(tmp_path: Path) -> None:
    s = BlockStore(tmp_path / "bs")
    digest = await s.put(b"x")
    t = s.table("t")
    await asyncio.gather(s.close(), s.close())
    await s.close()
    with pytest.raises(BlockStoreError):
        await s.get(digest)
    with pytest.raises(BlockStoreError):
        await s.put(b"y")
    with pytest.raises(BlockStoreError):
        t.get(b"k")
    with pytest.raises(BlockStoreError):
        s.stats()


async def test_same_directory_cannot_be_opened_twice(store: BlockStore) -> None:
    with pytest.raises(BlockStoreError):
        BlockStore(store.path)


# ---------------------------------------------------------------------- crash safety
def _run_and_kill(path: Path, acks: int) -> list[bytes]:
    """Start the crash writer on ``path``, SIGKILL it after ``acks`` acknowledged puts,
    return every digest it acknowledged (including lines still in the pipe)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    helper = Path(__file__).with_name("blockstore_crash_writer.py")
    proc = subprocess.Popen(
        [sys.executable, str(helper), str(path)], stdout=subprocess.PIPE, env=env
    )
    assert proc.stdout is not None
    lines: list[bytes] = []
    try:
        while len(lines) < acks:
            line = proc.stdout.readline()
            assert line, "crash writer exited early"
            lines.append(line)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        rest, _ = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    lines += rest.splitlines(keepends=True)
    # a line cut by the kill is not an acknowledgement
    return [bytes.fromhex(x.decode()) for x in lines if len(x) == 65 and x.endswith(b"\n")]


def test_sigkill_loses_no_acknowledged_put(tmp_path: Path) -> None:
    """Three rounds of write-then-SIGKILL on one store; after each, every acknowledged
    block is present and verifies, and the counters agree with the blocks."""
    path = tmp_path / "bs"
    acked: list[bytes] = []

    async def verify() -> None:
        async with BlockStore(path, map_size_bytes=1 << 30) as s:
            for digest in acked:
                assert sha(await s.get(digest)) == digest  # raises if missing or corrupt
            stats = s.stats()
            stored = list(s.iter_digests())
            assert stats.block_count == len(stored) >= len(set(acked))
            sizes = [len(await s.get(d)) for d in stored]
            assert stats.block_bytes == sum(sizes)

    for _ in range(3):
        acked += _run_and_kill(path, 80)
        asyncio.run(verify())
