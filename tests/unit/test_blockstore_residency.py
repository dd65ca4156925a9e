"""Ranged reads on the event loop when the bytes are in the page cache, in a worker thread
when they may wait for the disk; both verify the same segment sums."""

from __future__ import annotations

import asyncio
import mmap
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dfspeer.blockstore import BlockStore, CorruptBlock, residency, store_reads
from dfspeer.blockstore.schema import SEGMENT_BYTES
from tests.unit.test_blockstore_segments import flip_at

S = SEGMENT_BYTES
SIZE = 32 * S  # a 2 MiB block
MIB = 1 << 20

linux_only = pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="mincore(2) is asked only on Linux"
)


def cold_file(path: Path, size: int) -> tuple[int, bytes]:
    """A file of ``size`` random bytes written to disk and dropped from the page cache."""
    data = os.urandom(size)
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    return fd, data


@linux_only
def test_resident_tells_cached_pages_from_pages_on_disk(tmp_path: Path) -> None:
    fd, data = cold_file(tmp_path / "f", 4 * MIB)
    with mmap.mmap(fd, 0, prot=mmap.PROT_READ) as m:
        view = memoryview(m)
        try:
            assert not residency.resident(view[MIB : 2 * MIB])  # still on disk
            assert bytes(view[MIB + 5 : 2 * MIB - 5]) == data[MIB + 5 : 2 * MIB - 5]
            assert residency.resident(view[MIB + 5 : 2 * MIB - 5])  # read in: cached
            assert not residency.resident(view[0:0])
        finally:
            view.release()
    os.close(fd)
    assert residency.resident(memoryview(os.urandom(MIB)))  # heap memory just written


def test_where_residency_cannot_be_told_the_answer_is_no(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(residency, "_CALLS", None)
    assert not residency.resident(memoryview(os.urandom(MIB)))


class Threads:
    """Counts the block store's hand-offs to a worker thread."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        real = asyncio.to_thread

        async def counted(fn: Callable[..., Any], /, *args: Any) -> Any:
            self.calls += 1
            return await real(fn, *args)

        monkeypatch.setattr(store_reads.asyncio, "to_thread", counted)


def cache_says(monkeypatch: pytest.MonkeyPatch, answer: bool) -> None:
    monkeypatch.setattr(store_reads, "resident", lambda view: answer)


@pytest.mark.parametrize(
    ("cached", "lo", "hi", "threads"),
    [
        (True, 7, 7 + MIB, 0),  # 17 segments, in memory: on the event loop
        (False, 7, 7 + MIB, 1),  # may wait for the disk: a worker thread
        (True, 0, 2 * MIB, 1),  # larger than RESIDENT_INLINE_BYTES: a thread all the same
        (False, 10, 1000, 0),  # one segment: always on the event loop
    ],
)
async def test_where_a_range_is_read(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    cached: bool,
    lo: int,
    hi: int,
    threads: int,
) -> None:
    data = os.urandom(SIZE)
    async with BlockStore(tmp_path / "bs", map_size_bytes=64 << 20) as store:
        digest = await store.put(data)
        counter = Threads(monkeypatch)
        cache_says(monkeypatch, cached)
        assert await store.get_range(digest, lo, hi) == data[lo:hi]
        assert counter.calls == threads


@pytest.mark.parametrize("cached", [True, False])
async def test_a_flipped_byte_is_caught_on_either_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cached: bool
) -> None:
    path = tmp_path / "bs"
    data = os.urandom(SIZE)
    async with BlockStore(path, map_size_bytes=64 << 20) as store:
        digest = await store.put(data)
    flip_at(path, digest, 9 * S + 3)
    cache_says(monkeypatch, cached)
    async with BlockStore(path, map_size_bytes=64 << 20) as store:
        with pytest.raises(CorruptBlock):
            await store.get_range(digest, 8 * S, 8 * S + MIB)
        clean = 20 * S  # a megabyte of segments the flip did not touch
        assert await store.get_range(digest, clean, clean + MIB) == data[clean : clean + MIB]
