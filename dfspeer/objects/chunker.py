"""Fixed-size chunking of a byte stream.

Cuts an async stream of pieces of any sizes into chunks of exactly ``chunk_size`` bytes
(the last one shorter, never empty). Memory: one chunk plus one piece. Copies each byte
once into the buffer and once out (``bytes(memoryview)``).
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator

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
            while len(buf) >= chunk_size:
                with memoryview(buf) as view:
                    chunk = bytes(view[:chunk_size])
                del buf[:chunk_size]
                yield chunk
    except (ConnectionError, EOFError) as exc:
        raise IncompleteBody(f"the request body broke off after {total} bytes: {exc}") from exc
    if buf:
        yield bytes(buf)
