"""Written blocks leave the OS page cache (``drop_written``): other peers' copies at once,
this peer's own (``keep_cached``) once a window of newer ones follows; every byte still
reads back, small blocks and non-durable stores keep their pages, a failing drop never
fails a write, and an upload's coordinator marks its own copies."""

from __future__ import annotations

import asyncio
import mmap
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from dfspeer.blockstore import BlockStore, page_cache, residency
from dfspeer.blockstore.ops import PutBlock
from dfspeer.blockstore.schema import sha256
from tests.unit.maintenance_cluster import CONFIG as SHARED_CONFIG
from tests.unit.maintenance_cluster import make_cluster

MIB = 1 << 20
KIB = 1024
BLOCKS = 8

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"),
    reason="dropping pages needs posix_fadvise, madvise and /proc/self/maps (Linux)",
)


def cached_bytes(path: Path) -> int:
    """Bytes of ``path`` in the page cache now, by ``mincore`` on a fresh mapping (which
    maps nothing in, so asking changes nothing)."""
    size = path.stat().st_size
    with path.open("rb") as f, mmap.mmap(f.fileno(), size, prot=mmap.PROT_READ) as m:
        view = memoryview(m)
        try:
            page = residency.PAGE
            return page * sum(residency.resident(view[o : o + page]) for o in range(0, size, page))
        finally:
            view.release()


async def settled(store: BlockStore) -> None:
    """Let the writer thread run its after-settle hook for what was answered so far."""
    for _ in range(100):
        await asyncio.sleep(0.005)
        if not store._writer._written and not store._writer._kept:
            break
    await asyncio.sleep(0.02)


def dropping(path: Path, recent: int = 0) -> BlockStore:
    return BlockStore(path, drop_written=True, recent_writes_cache_bytes=recent)


@linux_only
async def test_written_blocks_leave_the_page_cache_and_read_back(tmp_path: Path) -> None:
    blocks = [os.urandom(2 * MIB) for _ in range(BLOCKS)]
    async with dropping(tmp_path / "s") as store:
        digests = [await store.put(b) for b in blocks]
        await settled(store)
        assert store.stats().cache_dropped_bytes == BLOCKS * 2 * MIB
        # Of 16 MiB written, at most the pages next to B-tree pages stay cached.
        assert cached_bytes(tmp_path / "s" / "data.mdb") < BLOCKS * 2 * MIB // 4
        for digest, data in zip(digests, blocks, strict=True):
            assert await store.get(digest) == data  # read back from the disk
            assert await store.get_range(digest, 12345, MIB) == data[12345:MIB]
    async with BlockStore(tmp_path / "s") as reopened:
        assert [await reopened.get(d) for d in digests] == blocks


@linux_only
async def test_own_writes_stay_cached_while_they_are_the_newest(tmp_path: Path) -> None:
    blocks = [os.urandom(MIB) for _ in range(BLOCKS)]
    async with dropping(tmp_path / "s", recent=4 * MIB) as store:
        for data in blocks:
            await store.write_batch([PutBlock(data)], keep_cached=True)
        await settled(store)
        # The four newest stay: 4 MiB cached; the four oldest were dropped.
        assert store.stats().cache_dropped_bytes == 4 * MIB
        cached = cached_bytes(tmp_path / "s" / "data.mdb")
        assert 4 * MIB <= cached < 4 * MIB + 2 * MIB
        assert [await store.get(sha256(b)) for b in blocks] == blocks


@linux_only
async def test_small_blocks_stay_and_an_unchanged_block_is_not_dropped_again(
    tmp_path: Path,
) -> None:
    big = [os.urandom(MIB) for _ in range(4)]
    small = os.urandom(page_cache.DROP_MIN_BYTES - 1)
    async with dropping(tmp_path / "s") as store:
        await store.write_batch([PutBlock(b) for b in big] + [PutBlock(small)])
        await settled(store)
        assert store.stats().cache_dropped_bytes == 4 * MIB  # not the small block
        await store.put(big[0])  # identical content: nothing written, nothing dropped
        await settled(store)
        assert store.stats().cache_dropped_bytes == 4 * MIB
        assert await store.get(sha256(small)) == small
        assert [await store.get(sha256(b)) for b in big] == big


async def test_off_by_default_and_for_a_non_durable_store(tmp_path: Path) -> None:
    data = os.urandom(2 * MIB)
    async with BlockStore(tmp_path / "a") as default:
        await default.put(data)
        await settled(default)
        assert default.stats().cache_dropped_bytes == 0
    async with BlockStore(tmp_path / "b", durable=False, drop_written=True) as loose:
        digest = await loose.put(data)
        await settled(loose)
        assert loose.stats().cache_dropped_bytes == 0  # its pages are still dirty
        assert await loose.get(digest) == data


@linux_only
async def test_the_writer_tells_own_writes_from_others(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[list[bytes], list[tuple[bytes, int]]]] = []

    def record(
        self: page_cache.WrittenPageDropper,
        written: Sequence[bytes],
        kept: Sequence[tuple[bytes, int]],
    ) -> None:
        calls.append((list(written), list(kept)))

    monkeypatch.setattr(page_cache.WrittenPageDropper, "__call__", record)
    a, b, c = (os.urandom(300 * KIB) for _ in range(3))
    async with dropping(tmp_path / "s") as store:
        await store.put(a)
        await store.write_batch([PutBlock(b), PutBlock(c)], keep_cached=True)
        await store.put_verified(sha256(c), c)  # already stored: not written again
        await settled(store)
    size = 300 * KIB
    assert calls == [([sha256(a)], []), ([], [(sha256(b), size), (sha256(c), size)])]


@linux_only
async def test_a_failing_drop_never_fails_a_write(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(self: page_cache.WrittenPageDropper, *lists: Any) -> None:
        raise OSError("no such luck")

    monkeypatch.setattr(page_cache.WrittenPageDropper, "__call__", broken)
    blocks = [os.urandom(MIB) for _ in range(3)]
    async with dropping(tmp_path / "s") as store:
        digests = [await store.put(b) for b in blocks]
        assert [await store.get(d) for d in digests] == blocks
        await settled(store)
    assert "after-settle hook failed" in caplog.text


def test_where_the_map_cannot_be_found_nothing_is_dropped(tmp_path: Path) -> None:
    assert page_cache.map_span(tmp_path / "missing.mdb") is None
    (tmp_path / "plain").write_bytes(b"x" * 4096)
    assert page_cache.map_span(tmp_path / "plain") is None  # a file this process never mapped


@linux_only
async def test_an_address_outside_the_map_is_left_alone(tmp_path: Path) -> None:
    async with dropping(tmp_path / "s") as store:
        dropper = store._dropper
        assert dropper is not None
        start, end = page_cache.map_span(tmp_path / "s" / "data.mdb") or (0, 0)
        assert end > start
        assert not dropper._drop(start - 2 * MIB, MIB)
        assert not dropper._drop(end - 4096, MIB)
        assert dropper._drop(start, 4096)


async def test_an_uploads_coordinator_keeps_its_own_copies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Through the replicator: the coordinator writes its copy of every chunk with
    ``keep_cached``; the replicas' copies, written for it, without."""
    seen: list[tuple[str, bool]] = []
    original = BlockStore.write_batch

    async def spy(self: BlockStore, ops: Any, **kwargs: Any) -> list[Any]:
        if any(isinstance(op, PutBlock) for op in ops):
            seen.append((self.path.name, bool(kwargs.get("keep_cached"))))
        return await original(self, ops, **kwargs)

    monkeypatch.setattr(BlockStore, "write_batch", spy)
    config = SHARED_CONFIG.replace(replication_factor=3, write_quorum=3)
    async with make_cluster(tmp_path, 3, config, objects=True, maintenance=False) as cl:
        coordinator = cl.nodes[0]
        data = os.urandom(5 * 64 * KIB)

        async def body() -> Any:
            yield data

        await coordinator.service.put_object("bucket", "k", body(), content_length=len(data))
    chunks = 5
    assert sorted(seen) == sorted(
        [("peer-0", True)] * chunks + [("peer-1", False)] * chunks + [("peer-2", False)] * chunks
    )


def test_side_by_side_values_are_dropped_as_one_run() -> None:
    page = residency.PAGE
    spans = [(10 * page + 16, 3 * page), (13 * page + 40, 2 * page), (100 * page, page)]
    assert page_cache.runs(reversed(spans)) == [
        (10 * page + 16, 15 * page + 40, 2, 5 * page),
        (100 * page, 101 * page, 1, page),
    ]
    assert page_cache.runs([]) == []
