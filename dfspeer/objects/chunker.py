"""Fixed-size chunking of a byte stream.

Cuts an async stream of pieces of any sizes into chunks of exactly ``chunk_size`` bytes
(the last one shorter, never empty). Memory: one chunk plus one piece. Copies each byte
once into the buffer and once out (``bytes(memoryview)``).
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
        body, chunk_size, lambda _buf, limit: min(chunk_size, limit), max_bytes=max_bytes
    ):
        yield chunk


Cut = Callable[[bytearray, int], int]
"""``cut(buf, limit)``: length in bytes (1..limit) of the first chunk of ``buf[:limit]``."""


async def iter_cut_chunks(
    body: AsyncIterable[bytes], window: int, cut: Cut, *, max_bytes: int | None = None
) -> AsyncIterator[bytes]:
    """Yield the chunks ``cut`` makes of ``body``: it is asked for the first chunk of the
    next ``window`` bytes whenever that many are buffered, then, once the body ended, of
    what is left until nothing is (so memory stays about ``window`` + one read). Raises
    :class:`EntityTooLarge` as soon as more than ``max_bytes`` arrived, and
    :class:`IncompleteBody` if the stream breaks (connection reset / EOF error)."""
    buf = bytearray()
    total = 0
    try:
        async for piece in body:
            if not piece:
                continue
            total += len(piece)
            if max_bytes is not None and total > max_bytes:
                raise EntityTooLarge(f"object is larger than the {max_bytes}-byte limit")
            buf += piece
            while len(buf) >= window:
                yield _take(buf, cut(buf, window))
    except (ConnectionError, EOFError) as exc:
        raise IncompleteBody(f"the request body broke off after {total} bytes: {exc}") from exc
    while buf:
        yield _take(buf, cut(buf, len(buf)))


def _take(buf: bytearray, n: int) -> bytes:
    """Remove and return the first ``n`` bytes of ``buf``."""
    with memoryview(buf) as view:
        chunk = bytes(view[:n])
    del buf[:n]
    return chunk
