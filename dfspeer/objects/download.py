"""Ranged reads: map a byte range onto chunks and stream it with prefetch.

:func:`map_range` is pure (property-tested). :class:`ChunkStream` fetches the needed
chunks through ``read_block`` (local store or the best live replica, verified, with
failover — see :meth:`dfspeer.cluster.replication.Replicator.read_block`) keeping up to
``prefetch`` chunks in flight ahead of the consumer, and yields only the requested slice.
Memory: ``(prefetch + 1) x chunk_size``.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from dfspeer.errors import DataUnavailable, InvalidRange

ReadBlock = Callable[[bytes], Coroutine[Any, Any, bytes]]
ReadRange = Callable[[bytes, int, int], Coroutine[Any, Any, bytes]]
"""``read_range(digest, lo, hi)``: bytes ``[lo, hi)`` of a block, verified."""
ObjectReader = Callable[[int, int | None], Coroutine[Any, Any, AsyncIterator[bytes]]]
"""``await reader(start, end)``: a stream of bytes ``[start, end)`` of one object version
(``end`` None = its size), first chunk already fetched (see ``ObjectService.open_object``)."""


@dataclass(frozen=True)
class ChunkSlice:
    """Bytes ``[lo, hi)`` of chunk number ``index``."""

    index: int
    lo: int
    hi: int


def resolve_range(size: int, start: int, end: int | None) -> tuple[int, int]:
    """Clamp ``[start, end)`` to an object of ``size`` bytes (``end`` None = size; an end
    past the size is cut, as S3 does). Raises InvalidRange if ``start`` is negative, past
    the object (``start >= size`` unless both are 0) or ``end < start``."""
    stop = size if end is None else min(end, size)
    if (
        start < 0
        or (end is not None and end < start)
        or start > size
        or (start == size and size > 0)
    ):
        raise InvalidRange(f"range [{start}, {end}) is not satisfiable for {size} bytes")
    return start, stop


def map_range(sizes: Sequence[int], start: int, end: int) -> list[ChunkSlice]:
    """The chunk slices covering bytes ``[start, end)`` of the concatenated chunks.

    ``sizes``: chunk sizes in order (all > 0). ``0 <= start <= end <= sum(sizes)``.
    Returns non-empty slices in order; their concatenation is exactly the range.
    """
    offsets = list(itertools.accumulate(sizes, initial=0))
    if not 0 <= start <= end <= offsets[-1]:
        raise ValueError("range outside the chunks")
    out: list[ChunkSlice] = []
    if start == end:
        return out
    index = bisect.bisect_right(offsets, start) - 1
    while index < len(sizes) and offsets[index] < end:
        lo = max(start - offsets[index], 0)
        hi = min(end, offsets[index + 1]) - offsets[index]
        out.append(ChunkSlice(index, lo, hi))
        index += 1
    return out


class ChunkStream:
    """Async iterator of the bytes of ``slices`` (chunks fetched by digest, prefetched).

    ``digests[i]`` addresses chunk ``i``. Call :meth:`start` to fetch the first chunk
    before committing to a response (so DataUnavailable surfaces as an error status), and
    :meth:`aclose` if you stop early (cancels prefetches).

    With ``read_range`` and ``sizes`` (chunk sizes), a slice that is not a whole chunk is
    read by ``read_range`` (only its bytes, verified by segment), the rest by
    ``read_block``.
    """

    def __init__(
        self,
        digests: Sequence[bytes],
        slices: Sequence[ChunkSlice],
        read_block: ReadBlock,
        *,
        prefetch: int,
        read_range: ReadRange | None = None,
        sizes: Sequence[int] | None = None,
    ) -> None:
        self._digests = digests
        self._read_range = read_range
        self._sizes = sizes
        self._pending = deque(slices)
        self._read = read_block
        self._window = prefetch + 1
        self._inflight: deque[tuple[ChunkSlice, asyncio.Task[bytes]]] = deque()
        self._first: bytes | None = None

    def _fill(self) -> None:
        while self._pending and len(self._inflight) < self._window:
            piece = self._pending.popleft()
            task = asyncio.create_task(self._fetch(piece))
            self._inflight.append((piece, task))

    async def _fetch(self, piece: ChunkSlice) -> bytes:
        digest = self._digests[piece.index]
        if (
            self._read_range is not None
            and self._sizes is not None
            and not (piece.lo == 0 and piece.hi == self._sizes[piece.index])
        ):
            return await self._read_range(digest, piece.lo, piece.hi)
        data = await self._read(digest)
        if piece.lo == 0 and piece.hi == len(data):
            return data
        return data[piece.lo : piece.hi]

    async def _next_piece(self) -> bytes:
        self._fill()
        if not self._inflight:
            raise StopAsyncIteration
        _, task = self._inflight.popleft()
        try:
            data = await task
        except BaseException:
            await self.aclose()
            raise
        self._fill()
        return data

    def begin(self) -> None:
        """Start fetching the first pieces (the prefetch window) without waiting for them;
        :meth:`start` or iteration then picks them up, :meth:`aclose` cancels them. The
        fetches are created on the loop's next turn, so a task scheduled just after this
        call (the quorum RPC) takes its first step before them: a local read runs on the
        event loop, and the RPC should be sent before it, not after."""
        asyncio.get_running_loop().call_soon(self._fill)

    async def start(self) -> None:
        """Fetch the first piece now (errors raise here). Idempotent."""
        if self._first is None and (self._pending or self._inflight):
            self._first = await self._next_piece()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        if self._first is not None:
            first, self._first = self._first, None
            return first
        return await self._next_piece()

    async def aclose(self) -> None:
        """Cancel every prefetch still running (idempotent)."""
        self._pending.clear()
        tasks = [task for _, task in self._inflight]
        self._inflight.clear()
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)


async def close_stream(stream: object) -> None:
    """``await stream.aclose()`` if ``stream`` has one (a :class:`ChunkStream`, an
    :class:`InlineStream`, a version reader's early fetches); anything else is left as is."""
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


SMALL_BODY_BYTES = 64 * 1024
"""A GET answer (native or S3) of up to this many bytes is read whole before its status line
and sent with its headers in one write: one ``send`` and one wake-up of the client fewer,
and a read that fails is an error answer rather than a body cut short."""


async def read_whole(stream: AsyncIterator[bytes], size: int, what: str) -> bytes:
    """Every piece of ``stream`` joined; ``size``: the bytes it must yield. Raises
    DataUnavailable (naming ``what``) if it yields another count, or what the stream
    raised. For an answer small enough to be read before its status line is sent."""
    body = b"".join([piece async for piece in stream])
    if len(body) != size:
        raise DataUnavailable(f"{what}: read {len(body)} bytes of {size}")
    return body


class InlineStream:
    """Async iterator yielding one slice of an inline object (nothing if empty)."""

    def __init__(self, data: bytes) -> None:
        self._data: bytes | None = data if data else None

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self

    async def __anext__(self) -> bytes:
        if self._data is None:
            raise StopAsyncIteration
        data, self._data = self._data, None
        return data

    async def aclose(self) -> None:
        self._data = None
