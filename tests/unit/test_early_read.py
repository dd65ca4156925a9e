"""Early reads: a GET's first bytes come from the coordinator's own copy of the entry while
the quorum read runs, and are used only when the quorum resolves to the same version and
span (in process: 3 real block stores behind real internal apps)."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from dfspeer.api.ranges import expected_span
from dfspeer.errors import NoSuchKey
from dfspeer.model.objects import OBJECTS_TABLE, table_key
from dfspeer.objects.download import ChunkSlice, ChunkStream
from tests.unit.maintenance_cluster import CHUNK, Cluster, Node, make_cluster
from tests.unit.maintenance_cluster import CONFIG as SHARED_CONFIG

CONFIG = SHARED_CONFIG.replace(download_prefetch_chunks=1)


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with make_cluster(tmp_path, 3, CONFIG, objects=True, maintenance=False) as cl:
        yield cl


async def put(node: Node, key: str, data: bytes) -> None:
    async def body() -> AsyncIterator[bytes]:
        yield data

    await node.service.put_object("bucket", key, body(), content_length=len(data))
    await node.replicator.drain()  # every replica holds the entry, this peer's copy too


class Recorder:
    """Counts the coordinator's block reads and holds its quorum entry reads back until
    released, so a test can see what was fetched while the quorum read was in flight."""

    def __init__(self, node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
        self.reads: list[tuple[bytes, int, int]] = []
        self.reads_before_quorum: list[int] = []
        self.release = asyncio.Event()
        replicator = node.replicator
        read_range, read_block, read_record = (
            replicator.read_block_range,
            replicator.read_block,
            replicator.read_record,
        )

        async def counted_range(digest: bytes, lo: int, hi: int) -> bytes:
            self.reads.append((digest, lo, hi))
            return await read_range(digest, lo, hi)

        async def counted_block(digest: bytes) -> bytes:
            self.reads.append((digest, 0, -1))
            return await read_block(digest)

        async def held_record(table: str, key: bytes) -> Any:
            answer = await read_record(table, key)
            await self.release.wait()
            self.reads_before_quorum.append(len(self.reads))
            return answer

        monkeypatch.setattr(replicator, "read_block_range", counted_range)
        monkeypatch.setattr(replicator, "read_block", counted_block)
        monkeypatch.setattr(replicator, "read_record", held_record)

    async def open(self, node: Node, key: str, span: tuple[int, int | None] | None) -> Any:
        task = asyncio.create_task(node.service.open_object("bucket", key, span=span))
        for _ in range(50):  # let the early fetch (if any) start and finish
            await asyncio.sleep(0.01)
        self.release.set()
        return await task


def early_tasks() -> list[asyncio.Task[Any]]:
    return [
        t
        for t in asyncio.all_tasks()
        if not t.done() and "ChunkStream._fetch" in repr(t.get_coro())
    ]


async def test_a_range_is_fetched_while_the_quorum_read_runs_and_not_again(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = cluster.nodes[0]
    data = os.urandom(3 * CHUNK + 100)
    await put(node, "k", data)
    rec = Recorder(node, monkeypatch)
    lo, hi = CHUNK + 10, 2 * CHUNK + 20  # the end of chunk 1 and the start of chunk 2
    _, reader = await rec.open(node, "k", (lo, hi))
    assert rec.reads_before_quorum == [2]  # chunk 1's slice and the prefetched chunk 2
    stream = await reader(lo, hi)
    assert b"".join([p async for p in stream]) == data[lo:hi]
    assert len(rec.reads) == 2  # the early fetches were used, nothing read twice
    assert early_tasks() == []


async def test_without_a_span_nothing_is_fetched_before_the_quorum_answers(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = cluster.nodes[0]
    data = os.urandom(2 * CHUNK)
    await put(node, "k", data)
    rec = Recorder(node, monkeypatch)
    _, reader = await rec.open(node, "k", None)
    assert rec.reads_before_quorum == [0]
    stream = await reader(5, 50)
    assert b"".join([p async for p in stream]) == data[5:50]


async def test_a_different_span_discards_the_early_fetch(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = cluster.nodes[0]
    data = os.urandom(2 * CHUNK)
    await put(node, "k", data)
    rec = Recorder(node, monkeypatch)
    _, reader = await rec.open(node, "k", (0, None))
    assert rec.reads_before_quorum == [2]
    stream = await reader(7, 70)  # not what was expected: read afresh
    assert b"".join([p async for p in stream]) == data[7:70]
    assert rec.reads[-1][1:] == (7, 70)
    assert early_tasks() == []


async def test_a_stale_local_copy_never_decides_the_answer(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = cluster.nodes[0]
    old, new = os.urandom(2 * CHUNK), os.urandom(2 * CHUNK)
    await put(node, "k", old)
    table = node.store.table(OBJECTS_TABLE)
    stale = table.get(table_key("bucket", "k"))
    await put(node, "k", new)
    await node.service.drain()  # the old version's release is written
    await table.put(table_key("bucket", "k"), stale)  # this peer's copy falls behind
    rec = Recorder(node, monkeypatch)
    info, reader = await rec.open(node, "k", (0, None))
    assert rec.reads_before_quorum == [2]  # the stale copy's chunks were fetched early
    stale_digests = {d for d, _, _ in rec.reads}
    stream = await reader(0, info.size)
    assert b"".join([p async for p in stream]) == new
    assert {d for d, _, _ in rec.reads[2:]}.isdisjoint(stale_digests)
    assert early_tasks() == []


async def test_an_unused_reader_cancels_its_early_fetches(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    node = cluster.nodes[0]
    await put(node, "k", os.urandom(3 * CHUNK))
    release = asyncio.Event()
    read_range = node.replicator.read_block_range

    async def stuck_range(digest: bytes, lo: int, hi: int) -> bytes:
        await release.wait()
        return await read_range(digest, lo, hi)

    monkeypatch.setattr(node.replicator, "read_block_range", stuck_range)
    _, reader = await node.service.open_object("bucket", "k", span=(1, CHUNK + 10))
    assert len(early_tasks()) == 2  # answering 304 or 416 would not read these
    await reader.aclose()
    assert early_tasks() == []


async def test_a_missing_object_leaves_no_fetch_behind(cluster: Cluster) -> None:
    with pytest.raises(NoSuchKey):
        await cluster.nodes[0].service.open_object("bucket", "none", span=(0, None))
    assert early_tasks() == []


@pytest.mark.parametrize(
    ("headers", "span"),
    [
        ({}, (0, None)),
        ({"Range": "bytes=10-19"}, (10, 20)),
        ({"Range": "bytes=10-"}, (10, None)),
        ({"Range": "bytes=-5"}, None),  # a suffix: needs the size
        ({"Range": "bytes=0-1,5-6"}, (0, None)),  # ignored: the whole object
        ({"Range": "items=1-2"}, (0, None)),
        ({"Range": "bytes=1-2", "If-Range": '"x"'}, None),
        ({"If-None-Match": '"x"'}, None),  # likely a 304
    ],
)
def test_expected_span(headers: dict[str, str], span: tuple[int, int | None] | None) -> None:
    assert expected_span(headers) == span


async def test_begun_fetches_let_a_task_scheduled_after_them_go_first() -> None:
    """An early fetch of a local block runs on the event loop; the quorum RPC scheduled
    just after ``begin()`` must be sent before it, so that the two overlap."""
    order: list[str] = []

    async def read_block(digest: bytes) -> bytes:
        order.append("fetch")
        return digest

    async def rpc() -> None:
        order.append("rpc sent")

    stream = ChunkStream([b"a" * 32], [ChunkSlice(0, 0, 32)], read_block, prefetch=0)
    stream.begin()
    sent = asyncio.create_task(rpc())
    await stream.start()
    await sent
    assert order == ["rpc sent", "fetch"]
    assert [piece async for piece in stream] == [b"a" * 32]
