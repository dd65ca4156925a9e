"""Fixed-size chunking of a byte stream.

Cuts an async stream of pieces of any sizes into chunks of exactly ``chunk_size`` bytes
(the last one shorter, never empty). Memory: about two chunks plus one piece. Copies each
byte once into the buffer and once out (``bytes(memoryview)``), and moves it inside the
buffer at most once more (:func:`iter_cut_chunks`).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable

from dfspeer.errors import EntityTooLarge, IncompleteBody


async def iter_chunks(
    body: AsyncIterable[bytes], chunk_size: int, *, max_bytes: int | None = None
) -> AsyncIterator[bytes]:
    """Yield ``chunk_size``-byte chunks of ``body``; the last may be shorter.

    Raises :class:`EntityTooLarge` as soon as more than ``max_bytes`` arrived, and
    :class:`IncompleteBody` if the stream breaks (connection reset / EOF error).
    """
    if chunk_size <= 0:
        raise ValueError("chunk_size must be > 0")
    async for chunk in iter_cut_chunks(
        body, chunk_size, lambda window: min(chunk_size, len(window)), max_bytes=max_bytes
    ):
        yield chunk


Cut = Callable[[memoryview], int]
"""``cut(window)``: length in bytes (1..len(window)) of the first chunk of ``window``. The
view is valid only during the call (the caller's buffer moves afterwards)."""


async def iter_cut_chunks(
    body: AsyncIterable[bytes], window: int, cut: Cut, *, max_bytes: int | None = None
) -> AsyncIterator[bytes]:
    """Yield the chunks ``cut`` makes of ``body``: it is asked for the first chunk of the
    next ``window`` bytes whenever that many are buffered, then, once the body ended, of
    what is left until nothing is (memory: at most about twice ``window`` plus one read,
    see below). Raises
    :class:`EntityTooLarge` as soon as more than ``max_bytes`` arrived, and
    :class:`IncompleteBody` if the stream breaks (connection reset / EOF error).

    Copies: each byte once into the buffer and once out into its chunk. The buffer is one
    allocation that grows (amortised) to about ``2 x window`` plus one read and never
    shrinks: bytes are written into it in place (``buf[end:end + n] = piece``), chunks are
    taken from the front by moving an offset, and what is left is moved to the front in
    place only when a piece does not fit behind it -- by then at least about ``window``
    bytes were taken, so that move is paid once per byte at most. Appending and deleting
    instead (``buf += piece``, ``del buf[:n]``) makes CPython reallocate, and so copy,
    the whole buffer several times per chunk."""
    buf = bytearray()
    start = end = 0  # buf[start:end] is buffered and not yet taken
    total = 0
    try:
        async for piece in body:
            if not piece:
                continue
            total += len(piece)
            if max_bytes is not None and total > max_bytes:
                raise EntityTooLarge(f"object is larger than the {max_bytes}-byte limit")
            start, end = _put(buf, start, end, piece, 2 * window)
            while end - start >= window:
                chunk = _take(buf, start, window, cut)
                start += len(chunk)
                yield chunk
    except (ConnectionError, EOFError) as exc:
        raise IncompleteBody(f"the request body broke off after {total} bytes: {exc}") from exc
    while start < end:
        chunk = _take(buf, start, end - start, cut)
        start += len(chunk)
        yield chunk


def _put(buf: bytearray, start: int, end: int, piece: bytes, capacity: int) -> tuple[int, int]:
    """Write ``piece`` behind ``buf[start:end]``; return the new ``(start, end)``. Moves
    the buffered bytes to the front first when the piece does not fit behind them and at
    least half of ``capacity`` bytes were taken; grows ``buf`` only when it still does
    not fit."""
    n = len(piece)
    if end + n > len(buf) and start and (start >= capacity // 2 or end + n > capacity):
        start, end = 0, _compact(buf, start, end)
    if end + n <= len(buf):
        buf[end : end + n] = piece  # same length: a copy into place, no reallocation
    else:
        buf[end:] = piece  # grows the buffer (amortised: CPython over-allocates)
    return start, end + n


def _take(buf: bytearray, start: int, limit: int, cut: Cut) -> bytes:
    """The first chunk ``cut`` makes of ``buf[start:start + limit]``, copied out."""
    with memoryview(buf) as whole, whole[start : start + limit] as window:
        n = cut(window)
        if not 0 < n <= limit:
            raise ValueError(f"a cut of {n} bytes is outside 1..{limit}")
        return bytes(window[:n])


def _compact(buf: bytearray, start: int, end: int) -> int:
    """Move ``buf[start:end]`` to the front of ``buf``, in place (its length does not
    change); return the new end."""
    left = end - start
    with memoryview(buf) as whole:
        whole[:left] = whole[start:end]
    return left
