"""Content-defined chunking (dfspeer.objects.cdc), ranges over variable chunks, and dedup
on the wire (dfspeer.objects.dedup) on an in-process 3-peer cluster."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import itertools
import logging
import random
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dfspeer.config import ConfigError, PeerConfig
from dfspeer.errors import EntityTooLarge
from dfspeer.objects import cdc
from dfspeer.objects.cdc import chunker_for, compiled_core, iter_cdc_chunks
from dfspeer.objects.dedup import PresenceBatcher
from dfspeer.objects.download import map_range
from dfspeer.objects.upload import store_body
from tests.unit.maintenance_cluster import CONFIG, Cluster, make_cluster

pytestmark = pytest.mark.skipif(compiled_core() is None, reason="pyfastcdc core missing")

# FastCDC's smallest legal shape, so small inputs have many chunks.
SMALL = {"min_size": 256, "avg_size": 1024, "max_size": 4096}


def blob(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


async def split(data: bytes, sizes: list[int]) -> AsyncIterator[bytes]:
    """``data`` as pieces of the given sizes, cycled (0 yields an empty piece)."""
    at = 0
    for n in itertools.cycle(sizes):
        if at >= len(data):
            return
        yield data[at : at + n]
        at += n


async def cuts(data: bytes, sizes: list[int], **shape: int) -> list[int]:
    return [len(c) async for c in iter_cdc_chunks(split(data, sizes), **shape)]


def whole_buffer_cuts(data: bytes, *, min_size: int, avg_size: int, max_size: int) -> list[int]:
    core = compiled_core()
    assert core is not None
    cutter = core(avg_size, min_size=min_size, max_size=max_size)
    return [c.length for c in cutter.cut_buf(memoryview(data))]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    size=st.integers(0, 40_000),
    seed=st.integers(0, 2**16),
    reads=st.lists(st.integers(0, 9000), min_size=1, max_size=6).filter(any),
)
async def test_cut_points_depend_on_content_only(size: int, seed: int, reads: list[int]) -> None:
    data = blob(size, seed)
    expected = whole_buffer_cuts(data, **SMALL)
    assert await cuts(data, reads, **SMALL) == expected
    assert await cuts(data, [size or 1], **SMALL) == expected  # one read
    assert sum(expected) == size


@settings(max_examples=40, deadline=None)
@given(size=st.integers(1, 60_000), seed=st.integers(0, 2**16))
async def test_chunk_sizes_stay_within_min_and_max(size: int, seed: int) -> None:
    sizes = await cuts(blob(size, seed), [777], **SMALL)
    assert sum(sizes) == size
    assert all(SMALL["min_size"] <= n <= SMALL["max_size"] for n in sizes[:-1])
    assert 0 < sizes[-1] <= SMALL["max_size"]


async def test_chunks_concatenate_to_the_input() -> None:
    data = blob(100_000, 7)
    chunks = [c async for c in iter_cdc_chunks(split(data, [3000]), **SMALL)]
    assert b"".join(chunks) == data


async def test_an_insertion_moves_only_the_boundaries_near_it() -> None:
    data = blob(400_000, 3)
    edited = data[:1000] + b"x" * 100 + data[1000:]
    before = {bytes(c) async for c in iter_cdc_chunks(split(data, [5000]), **SMALL)}
    after = [c async for c in iter_cdc_chunks(split(edited, [4096]), **SMALL)]
    new = [c for c in after if c not in before]
    assert len(after) > 50
    assert len(new) <= 3  # the chunk around the edit (and at most two neighbours)


async def test_memory_is_bounded_by_max_chunk_plus_one_read() -> None:
    seen: list[int] = []

    async def watched() -> AsyncIterator[bytes]:
        data = blob(200_000, 9)
        for i in range(0, len(data), 1000):
            seen.append(i)
            yield data[i : i + 1000]

    consumed = 0
    async for chunk in iter_cdc_chunks(watched(), **SMALL):
        consumed += len(chunk)
        read = (seen[-1] + 1000) if seen else 0
        assert read - consumed <= SMALL["max_size"] + 1000  # buffered bytes


async def test_max_bytes_is_enforced() -> None:
    with pytest.raises(EntityTooLarge):
        async for _ in iter_cdc_chunks(split(blob(10_000), [1000]), max_bytes=5000, **SMALL):
            pass


# ---------------------------------------------------------------- ranges over variable chunks


@settings(max_examples=200, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 50), min_size=1, max_size=40),
    data=st.data(),
)
def test_map_range_over_variable_chunks(sizes: list[int], data: st.DataObject) -> None:
    total = sum(sizes)
    start = data.draw(st.integers(0, total))
    end = data.draw(st.integers(start, total))
    content = bytes(i % 251 for i in range(total))
    offsets = list(itertools.accumulate(sizes, initial=0))
    pieces = [content[offsets[i] : offsets[i + 1]] for i in range(len(sizes))]
    out = map_range(sizes, start, end)
    assert b"".join(pieces[s.index][s.lo : s.hi] for s in out) == content[start:end]
    assert all(s.lo < s.hi for s in out)
    if out:  # the first slice is the chunk holding ``start`` (found by bisection)
        assert offsets[out[0].index] <= start < offsets[out[0].index + 1]


async def test_ranges_across_cdc_chunk_boundaries_read_back() -> None:
    data = blob(120_000, 11)
    chunks = [c async for c in iter_cdc_chunks(split(data, [9999]), **SMALL)]
    sizes = [len(c) for c in chunks]
    offsets = list(itertools.accumulate(sizes, initial=0))
    for boundary in offsets[1:-1]:
        for start, end in ((boundary - 1, boundary + 1), (boundary - 300, boundary + 5000)):
            start, end = max(start, 0), min(end, len(data))
            got = b"".join(chunks[s.index][s.lo : s.hi] for s in map_range(sizes, start, end))
            assert got == data[start:end]


# ---------------------------------------------------------------- choosing a chunker


def test_chunker_for_picks_cdc_or_fixed() -> None:
    config = PeerConfig()
    _, largest = chunker_for("cdc", config)
    assert largest == config.cdc_max_chunk_bytes
    _, largest = chunker_for("fixed", config)
    assert largest == config.chunk_size_bytes
    _, largest = chunker_for("something-newer", config)
    assert largest == config.chunk_size_bytes


async def test_missing_compiled_core_falls_back_to_fixed_with_one_warning(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setitem(sys.modules, "pyfastcdc.cy", None)  # the import now fails
    monkeypatch.setattr(cdc, "_warned", False)
    assert compiled_core() is None
    config = PeerConfig(chunk_size_bytes=64 * 1024)
    with caplog.at_level(logging.WARNING, logger="dfspeer.objects.cdc"):
        chunker, largest = chunker_for("cdc", config)
        chunker_for("cdc", config)
    assert largest == 64 * 1024
    warnings = [r for r in caplog.records if "compiled core" in r.getMessage()]
    assert len(warnings) == 1
    sizes = [len(c) async for c in chunker(split(blob(200_000), [7000]), None)]
    assert sizes == [65536, 65536, 65536, 200_000 - 3 * 65536]
    with pytest.raises(RuntimeError):
        async for _ in iter_cdc_chunks(split(b"abc", [1]), **SMALL):
            pass


def test_cdc_settings_are_checked() -> None:
    PeerConfig(cdc_min_chunk_bytes=64 * 1024, cdc_avg_chunk_bytes=128 * 1024)
    for bad in (
        {"default_chunking": "rabin"},
        {"cdc_min_chunk_bytes": 1024},  # under 64 KiB
        {"cdc_avg_chunk_bytes": 3 * 1024 * 1024},  # not a power of two
        {"cdc_min_chunk_bytes": 1024 * 1024, "cdc_avg_chunk_bytes": 512 * 1024},
        {"cdc_max_chunk_bytes": 1024 * 1024},  # below the average
        {"cdc_max_chunk_bytes": 32 * 1024 * 1024},  # over FastCDC's 16 MiB
    ):
        with pytest.raises(ConfigError):
            PeerConfig(**bad)  # type: ignore[arg-type]


def test_block_limits_follow_the_largest_chunk() -> None:
    config = PeerConfig(cdc_max_chunk_bytes=16 * 1024 * 1024, upload_max_chunk_bytes=8 << 20)
    assert config.max_block_bytes == 16 * 1024 * 1024
    from dfspeer.api.app import client_max_size

    assert client_max_size(config) == 17 * 1024 * 1024


async def test_store_body_with_cdc_keeps_small_bodies_inline() -> None:
    config = PeerConfig()
    chunker, largest = chunker_for("cdc", config)
    written: list[bytes] = []

    async def write(data: bytes, digest: bytes) -> int:
        written.append(digest)
        return 1

    async def one(data: bytes) -> AsyncIterator[bytes]:
        yield data

    stored = await store_body(
        one(b"tiny"),
        write,
        chunk_size=largest,
        inline_threshold=4096,
        depth=2,
        max_bytes=1 << 30,
        chunker=chunker,
    )
    assert stored.inline == b"tiny" and not written


# ---------------------------------------------------------------- batched presence questions


async def test_presence_questions_asked_meanwhile_share_one_call() -> None:
    calls: list[list[bytes]] = []
    gate = asyncio.Event()

    async def ask(digests: list[bytes]) -> list[bool]:  # type: ignore[override]
        calls.append(list(digests))
        await gate.wait()
        return [d.startswith(b"y") for d in digests]

    batcher = PresenceBatcher(ask)  # type: ignore[arg-type]
    first = asyncio.create_task(batcher.has(b"y1"))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    rest = [asyncio.create_task(batcher.has(d)) for d in (b"n2", b"y3", b"n4")]
    await asyncio.sleep(0)
    gate.set()
    assert await first is True
    assert [await t for t in rest] == [False, True, False]
    assert calls == [[b"y1"], [b"n2", b"y3", b"n4"]]


# ---------------------------------------------------------------- dedup on the wire

CDC = dataclasses.replace(
    CONFIG,
    default_chunking="cdc",
    cdc_min_chunk_bytes=64 * 1024,
    cdc_avg_chunk_bytes=128 * 1024,
    cdc_max_chunk_bytes=512 * 1024,
).validate()


@pytest.fixture
async def cdc_cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with make_cluster(tmp_path, 3, CDC, objects=True, maintenance=False) as cl:
        yield cl


async def test_an_edited_reupload_sends_only_the_new_chunks(cdc_cluster: Cluster) -> None:
    node = cdc_cluster.nodes[0]
    data = blob(4 * 1024 * 1024, 5)
    edited = data[:1000] + b"e" * 100 + data[1000:]
    bucket = await node.service.buckets.ensure("cdcbucket")
    assert bucket.chunking == "cdc"
    first = await node.service.put_object("cdcbucket", "a", split(data, [65536]))
    sent_before = node.service.dedup.counters["block_bytes_sent"]
    assert node.service.dedup.counters["dedup_chunks_skipped"] == 0
    second = await node.service.put_object("cdcbucket", "b", split(edited, [50_000]))
    counters = node.service.dedup.counters
    assert first.chunks >= 15 and abs(second.chunks - first.chunks) <= 1
    assert counters["dedup_chunks_skipped"] >= second.chunks - 2
    new_sent = counters["block_bytes_sent"] - sent_before
    assert new_sent <= 2 * 2 * CDC.cdc_max_chunk_bytes  # <= 2 chunks x 2 remote replicas
    assert counters["dedup_bytes_skipped"] >= 2 * (len(data) - 2 * CDC.cdc_max_chunk_bytes)
    for peer in cdc_cluster.nodes:
        _, stream = await peer.service.get_object("cdcbucket", "b")
        got = b"".join([p async for p in stream])
        assert hashlib.sha256(got).digest() == hashlib.sha256(edited).digest()
    footprint = await node.service.bucket_footprint("cdcbucket")
    assert footprint.logical_bytes == len(data) + len(edited)
    assert footprint.physical_bytes <= len(data) + 2 * CDC.cdc_max_chunk_bytes
    assert footprint.dedup_ratio > 1.8
    await node.replicator.drain()
    _, referenced, logical = node.store.referenced_bytes()
    assert referenced == node.store.stats().block_bytes
    assert logical > 1.8 * referenced


async def test_a_fixed_bucket_still_cuts_fixed_chunks(cdc_cluster: Cluster) -> None:
    node = cdc_cluster.nodes[1]
    bucket, created = await node.service.buckets.create("fixedbucket", chunking="fixed")
    assert created and bucket.chunking == "fixed"
    info = await node.service.put_object("fixedbucket", "k", split(blob(300_000), [10_000]))
    assert info.chunks == -(-300_000 // CDC.chunk_size_bytes)
