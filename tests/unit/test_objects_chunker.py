"""The chunker cuts any piece pattern into exact fixed-size chunks; the pipeline hashes."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dfspeer.errors import (
    BadDigest,
    EntityTooLarge,
    IncompleteBody,
    InsufficientReplicas,
    InvalidArgument,
)
from dfspeer.objects.chunker import iter_chunks, iter_cut_chunks
from dfspeer.objects.upload import store_body


async def pieces_of(parts: list[bytes]) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def collect(parts: list[bytes], size: int) -> list[bytes]:
    return [c async for c in iter_chunks(pieces_of(parts), size)]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=40), max_size=30), st.integers(1, 17))
def test_chunks_are_exact(parts: list[bytes], size: int) -> None:
    chunks = asyncio.run(collect(parts, size))
    assert b"".join(chunks) == b"".join(parts)
    assert all(len(c) == size for c in chunks[:-1])
    assert all(0 < len(c) <= size for c in chunks)


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.binary(min_size=1, max_size=40), max_size=30),
    st.integers(1, 17),
    st.lists(st.integers(1, 17), min_size=1, max_size=8),
)
def test_any_cut_sees_its_window_and_the_bytes_come_out_in_order(
    parts: list[bytes], window: int, cuts: list[int]
) -> None:
    """Whatever lengths the cut function picks, each call sees exactly the next bytes of
    the stream (``window`` of them while more follow), and the chunks concatenate to the
    body, though the buffer is taken from by an offset and compacted in place."""
    data = b"".join(parts)
    seen: list[bytes] = []

    def cut(view: memoryview) -> int:
        seen.append(bytes(view))
        return min(cuts[len(seen) % len(cuts)], len(view))

    async def run() -> list[bytes]:
        return [c async for c in iter_cut_chunks(pieces_of(parts), window, cut)]

    chunks = asyncio.run(run())
    assert b"".join(chunks) == data
    offset = 0
    for view, chunk in zip(seen, chunks, strict=True):
        assert view == data[offset : offset + len(view)]
        assert len(view) == window or offset + len(view) == len(data)
        assert chunk == view[: len(chunk)]
        offset += len(chunk)


def test_a_cut_outside_its_window_is_refused() -> None:
    async def run() -> None:
        async for _ in iter_cut_chunks(pieces_of([b"abcdef"]), 4, lambda view: len(view) + 1):
            pass

    with pytest.raises(ValueError, match="outside"):
        asyncio.run(run())


async def test_too_large_is_refused_early() -> None:
    with pytest.raises(EntityTooLarge):
        async for _ in iter_chunks(pieces_of([b"a" * 10] * 5), 16, max_bytes=25):
            pass


async def test_broken_stream_is_incomplete_body() -> None:
    async def broken() -> AsyncIterator[bytes]:
        yield b"abc"
        raise ConnectionResetError("Connection lost")

    with pytest.raises(IncompleteBody):
        async for _ in iter_chunks(broken(), 2):
            pass


class Sink:
    def __init__(self, fail_after: int | None = None) -> None:
        self.blocks: dict[bytes, bytes] = {}
        self.fail_after = fail_after
        self.max_inflight = 0
        self._inflight = 0

    async def write(self, data: bytes, digest: bytes) -> int:
        assert hashlib.sha256(data).digest() == digest
        self._inflight += 1
        self.max_inflight = max(self.max_inflight, self._inflight)
        await asyncio.sleep(0.001)
        self._inflight -= 1
        if self.fail_after is not None and len(self.blocks) >= self.fail_after:
            raise InsufficientReplicas("down")
        self.blocks[digest] = data
        return 2


async def run(parts: list[bytes], sink: Sink, **kw: object) -> object:
    args: dict[str, object] = dict(chunk_size=8, inline_threshold=4, depth=2, max_bytes=10**6)
    args.update(kw)
    return await store_body(pieces_of(parts), sink.write, **args)  # type: ignore[arg-type]


async def test_pipeline_hashes_and_bounds_inflight() -> None:
    data = bytes(range(200)) * 3
    sink = Sink()
    stored = await run([data[i : i + 7] for i in range(0, len(data), 7)], sink)
    assert stored.sha256 == hashlib.sha256(data).hexdigest()  # type: ignore[attr-defined]
    assert stored.size == len(data) and stored.inline is None  # type: ignore[attr-defined]
    assert b"".join(sink.blocks[d] for d, _ in stored.chunks) == data  # type: ignore[attr-defined]
    assert sink.max_inflight <= 2


@pytest.mark.parametrize(("data", "inline"), [(b"", b""), (b"abc", b"abc"), (b"abcd", b"abcd")])
async def test_small_bodies_are_inline(data: bytes, inline: bytes) -> None:
    sink = Sink()
    stored = await run([data], sink)
    assert stored.inline == inline and not sink.blocks  # type: ignore[attr-defined]


async def test_pipeline_errors() -> None:
    data = b"z" * 40
    with pytest.raises(BadDigest):
        await run([data], Sink(), expected_sha256="0" * 64)
    with pytest.raises(InvalidArgument):
        await run([data], Sink(), expected_sha256="nothex")
    with pytest.raises(IncompleteBody):
        await run([data], Sink(), content_length=41)
    with pytest.raises(EntityTooLarge):
        await run([data], Sink(), content_length=10**7)
    with pytest.raises(InsufficientReplicas):
        await run([data], Sink(fail_after=1))
