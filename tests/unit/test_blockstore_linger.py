"""Lingering commits: the blocks of one upload share a flush (blockstore.writer), the
upload marks every chunk but its last (objects.upload), and a trusted local digest is not
computed again (PutBlock.hashed)."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dfspeer.blockstore import BlockStore, DigestMismatch
from dfspeer.blockstore.ops import PutBlock
from dfspeer.cluster.replication import MORE_BLOCKS_FOLLOW
from dfspeer.objects.upload import store_body

MiB = 1024 * 1024
GUARD_S = 20.0  # a hang guard, far above any linger these tests wait for


def blob(i: int, size: int) -> bytes:
    return (i.to_bytes(4, "big") * (size // 4 + 1))[:size]


def digest(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


async def put(store: BlockStore, data: bytes, *, linger: bool) -> None:
    await store.put_verified(digest(data), data, linger=linger)


async def test_lingering_blocks_share_one_commit_until_a_prompt_write(tmp_path: Path) -> None:
    """Blocks that say "more follow" wait for each other; a write that does not linger
    ends the wait at once and joins the same commit."""
    async with BlockStore(tmp_path / "bs", commit_linger_s=600.0) as store:
        before = store.stats().txn_commits
        tasks = []
        for i in range(3):
            tasks.append(asyncio.create_task(put(store, blob(i, 64 * 1024), linger=True)))
            await asyncio.sleep(0.02)
        assert not any(t.done() for t in tasks)  # still lingering: nothing committed
        tasks.append(asyncio.create_task(put(store, blob(9, 64 * 1024), linger=False)))
        await asyncio.wait_for(asyncio.gather(*tasks), GUARD_S)
        assert store.stats().txn_commits - before == 1
        for i in (0, 1, 2, 9):
            assert await store.has(digest(blob(i, 64 * 1024)))


async def test_lingering_stops_once_the_group_is_large_enough(tmp_path: Path) -> None:
    """A group that reached ``linger_bytes`` (8 MiB) commits without waiting longer."""
    async with BlockStore(tmp_path / "bs", commit_linger_s=600.0) as store:
        before = store.stats().txn_commits
        tasks = [asyncio.create_task(put(store, blob(i, 3 * MiB), linger=True)) for i in range(3)]
        await asyncio.wait_for(asyncio.gather(*tasks), GUARD_S)
        assert store.stats().txn_commits - before == 1


async def test_without_linger_each_sequential_block_commits_alone(tmp_path: Path) -> None:
    async with BlockStore(tmp_path / "bs") as store:  # commit_linger_s=0: off
        before = store.stats().txn_commits
        for i in range(3):
            await asyncio.wait_for(put(store, blob(i, 1024), linger=True), GUARD_S)
        assert store.stats().txn_commits - before == 3


async def test_a_trusted_digest_is_stored_as_given(tmp_path: Path) -> None:
    """``PutBlock(hashed=True)`` skips the hash (the caller computed it from these bytes);
    without ``hashed`` a wrong digest is refused."""
    async with BlockStore(tmp_path / "bs") as store:
        data = blob(1, 300_000)
        await store.write_batch([PutBlock(data, digest(data), hashed=True)])
        assert await store.get(digest(data)) == data
        with pytest.raises(DigestMismatch):
            await store.write_batch([PutBlock(blob(2, 10), digest(data))])


async def pieces(data: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(data), size):
        yield data[start : start + size]


@pytest.mark.parametrize("known_length", [True, False])
async def test_an_upload_marks_every_chunk_but_the_last(known_length: bool) -> None:
    """Each chunk's write sees MORE_BLOCKS_FOLLOW: true while more of a body of known
    length follows, false for its last chunk; with no length every chunk may be followed."""
    seen: dict[bytes, bool] = {}

    async def write_block(data: bytes, block_digest: bytes) -> int:
        seen[block_digest] = MORE_BLOCKS_FOLLOW.get()
        return 2

    data = b"".join(blob(i, 1000) for i in range(5000))  # 5,000,000 bytes: 5 chunks of 1 MB
    stored = await store_body(
        pieces(data, 65536),
        write_block,
        chunk_size=1_000_000,
        inline_threshold=4096,
        depth=2,
        max_bytes=10 * MiB,
        content_length=len(data) if known_length else None,
    )
    flags = [seen[d] for d, _ in stored.chunks]
    assert len(flags) == 5
    assert flags == ([True] * 4 + [False] if known_length else [True] * 5)
    assert MORE_BLOCKS_FOLLOW.get() is False  # the caller's context is untouched
