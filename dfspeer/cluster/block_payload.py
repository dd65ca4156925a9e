"""A block as a request body that the HTTP client sends without copying it.

aiohttp sends a ``bytes`` body with one ``transport.write``: on Python < 3.12.9 it first
joins the request head and the whole body into a new buffer, then asyncio's transport
slices off what the socket did not take (a second copy) and appends that to its own
buffer (a third). For a block of a few MiB sent to two replicas that is up to six copies
of the block on the coordinator, each in freshly allocated memory. :class:`BlockBody`
writes the block as :data:`PIECE_BYTES` memoryview slices of the caller's buffer instead,
waiting for the socket to drain between them (aiohttp's ``StreamWriter.write``), so only
the first piece is joined with the head and at most about one piece waits in the
transport's buffer.
"""

from __future__ import annotations

from typing import Any

from aiohttp.abc import AbstractStreamWriter
from aiohttp.payload import Payload

PIECE_BYTES = 256 * 1024
"""Bytes handed to the transport per write (asyncio's own read size)."""


class BlockBody(Payload):
    """``data`` (bytes, 0..any length) as an ``application/octet-stream`` request body,
    written in ``piece_bytes`` slices (module docstring). Reusable: a retried request
    sends the same bytes again."""

    _autoclose = True  # nothing to close: the bytes are the caller's

    def __init__(self, data: bytes, *, piece_bytes: int = PIECE_BYTES, **kwargs: Any) -> None:
        if piece_bytes <= 0:
            raise ValueError("piece_bytes must be > 0")
        kwargs.setdefault("content_type", "application/octet-stream")
        super().__init__(data, **kwargs)
        self._size = len(data)
        self._piece = piece_bytes

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        """The body as text (for aiohttp's debugging aids)."""
        return bytes(self._value).decode(encoding, errors)

    async def as_bytes(self, encoding: str = "utf-8", errors: str = "strict") -> bytes:
        """The body's bytes (the caller's object, not a copy)."""
        return bytes(self._value)

    async def write(self, writer: AbstractStreamWriter) -> None:
        """Write the whole body."""
        await self.write_with_length(writer, None)

    async def write_with_length(
        self, writer: AbstractStreamWriter, content_length: int | None
    ) -> None:
        """Write the body's first ``content_length`` bytes (all with None), piece by piece."""
        view = memoryview(self._value)
        end = len(view) if content_length is None else min(len(view), content_length)
        for start in range(0, end, self._piece):
            await writer.write(view[start : min(end, start + self._piece)])
