"""The upload pipeline: stream -> chunks -> hashes -> replicated blocks.

Bounded memory: at most ``depth`` chunks are being hashed or written at once (a semaphore
taken before a chunk is handed on), plus the chunk being cut and its last piece, so memory
is about ``(depth + 2) x chunk_size`` whatever the object size. Hashing runs on one
dedicated thread per upload (hashlib releases the GIL), so the event loop never hashes a
chunk, the chunk digests and the incremental whole-object SHA-256 are computed in stream
order, and hashing overlaps reading the next chunk. The function returns once every chunk
is on W replicas; an object that fits ``inline_threshold`` bytes is returned inline and
writes no block.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from dfspeer.cluster.replication import MORE_BLOCKS_FOLLOW
from dfspeer.errors import BadDigest, EntityTooLarge, IncompleteBody, InvalidArgument
from dfspeer.objects.chunker import iter_chunks

WriteBlock = Callable[[bytes, bytes], Awaitable[int]]
"""``write_block(data, digest) -> acks``: store one block with quorum (Replicator)."""


@dataclass(frozen=True)
class StoredBody:
    """Result of :func:`store_body`. ``chunks``: (digest, size) in order; ``inline``: the
    whole body when it was stored inline (then ``chunks`` is empty)."""

    size: int
    sha256: str
    chunks: tuple[tuple[bytes, int], ...]
    inline: bytes | None


def check_expected_sha256(expected: str | None) -> str | None:
    """Normalise a client's ``X-Content-SHA256`` (64 hex). Raises InvalidArgument."""
    if expected is None:
        return None
    text = expected.strip().lower()
    if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
        raise InvalidArgument("X-Content-SHA256 must be 64 hexadecimal characters")
    return text


async def _one_piece(data: bytes) -> AsyncIterator[bytes]:
    yield data


def as_stream(body: AsyncIterable[bytes] | bytes) -> AsyncIterable[bytes]:
    """Wrap ``bytes`` as a one-piece stream; pass streams through."""
    if isinstance(body, bytes | bytearray | memoryview):
        return _one_piece(bytes(body))
    return body


def _hash_chunk(whole: Any, chunk: bytes) -> bytes:
    whole.update(chunk)
    return hashlib.sha256(chunk).digest()


class _Pipeline:
    """The chunks of one upload in flight: each hashed on a dedicated thread (in stream
    order, feeding the whole-object SHA-256 too) and replicated by its own task, at most
    ``depth`` at once."""

    def __init__(self, write_block: WriteBlock, depth: int) -> None:
        self.write_block = write_block
        self.whole = hashlib.sha256()
        self.chunks: list[tuple[asyncio.Future[bytes], int]] = []
        self.slots = asyncio.Semaphore(depth)
        self.running: set[asyncio.Task[None]] = set()
        self.failures: list[BaseException] = []
        self.executor: ThreadPoolExecutor | None = None
        self.loop = asyncio.get_running_loop()

    async def _replicate(
        self, digest_future: asyncio.Future[bytes], chunk: bytes, more: bool
    ) -> None:
        MORE_BLOCKS_FOLLOW.set(more)  # this task's own context: its replicas may linger
        try:
            await self.write_block(chunk, await digest_future)
        finally:
            self.slots.release()

    def _on_done(self, task: asyncio.Task[None]) -> None:
        self.running.discard(task)
        if not task.cancelled() and task.exception() is not None:
            self.failures.append(task.exception())  # type: ignore[arg-type]

    async def add(self, chunk: bytes, *, more: bool) -> None:
        """Hash and replicate ``chunk`` (``more``: others follow it), once a slot is free.
        Raises the first failure of an earlier chunk."""
        if self.executor is None:
            self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="dfspeer-hash")
        await self.slots.acquire()
        if self.failures:
            self.slots.release()
            raise self.failures[0]
        digest_future = self.loop.run_in_executor(self.executor, _hash_chunk, self.whole, chunk)
        self.chunks.append((digest_future, len(chunk)))
        task = asyncio.create_task(self._replicate(digest_future, chunk, more))
        self.running.add(task)
        task.add_done_callback(self._on_done)

    async def finish(self) -> list[tuple[bytes, int]]:
        """Wait for every chunk; ``(digest, size)`` in order. Raises the first failure."""
        if self.running:
            await asyncio.wait(set(self.running))
        if self.failures:
            raise self.failures[0]
        return [(await fut, n) for fut, n in self.chunks]

    async def cancel(self) -> None:
        """Cancel every chunk write still running and wait for them to end."""
        for task in list(self.running):
            task.cancel()
        if self.running:
            await asyncio.gather(*self.running, return_exceptions=True)

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=False)


async def store_body(
    body: AsyncIterable[bytes],
    write_block: WriteBlock,
    *,
    chunk_size: int,
    inline_threshold: int,
    depth: int,
    max_bytes: int,
    content_length: int | None = None,
    expected_sha256: str | None = None,
    chunker: Callable[[AsyncIterable[bytes], int | None], AsyncIterator[bytes]] | None = None,
) -> StoredBody:
    """Cut, hash and replicate ``body``; return its size, SHA-256 and chunk list.

    Raises EntityTooLarge (over ``max_bytes``), IncompleteBody (shorter than
    ``content_length``), InvalidArgument (longer), BadDigest (``expected_sha256`` differs),
    or the first write error (e.g. InsufficientReplicas). On any error every chunk write
    still running is cancelled; blocks already written are unreferenced (collected later).

    ``chunker(body, max_bytes)``: how the body is cut (default: fixed ``chunk_size``
    chunks; :func:`dfspeer.objects.cdc.chunker_for` gives content-defined ones), then
    ``chunk_size`` is the largest chunk it cuts. Every chunk but the last must be larger
    than ``inline_threshold`` (a short first chunk is the whole body).
    """
    expected = check_expected_sha256(expected_sha256)
    if content_length is not None and content_length > max_bytes:
        raise EntityTooLarge(f"object of {content_length} bytes is over the {max_bytes}-byte limit")
    pipeline = _Pipeline(write_block, depth)
    inline: bytes | None = None
    size = 0
    try:
        if chunker is None:
            chunks_of = iter_chunks(body, chunk_size, max_bytes=max_bytes)
        else:
            chunks_of = chunker(body, max_bytes)
        async for chunk in chunks_of:
            size += len(chunk)
            if not pipeline.chunks and len(chunk) < chunk_size and len(chunk) <= inline_threshold:
                pipeline.whole.update(chunk)  # a short first chunk is the whole body: inline
                inline = chunk
                continue
            await pipeline.add(chunk, more=content_length is None or size < content_length)
            del chunk
        digests = await pipeline.finish()
    except BaseException:
        await pipeline.cancel()
        raise
    finally:
        pipeline.close()
    return _stored(size, content_length, pipeline.whole.hexdigest(), expected, inline, digests)


def _stored(
    size: int,
    content_length: int | None,
    sha: str,
    expected: str | None,
    inline: bytes | None,
    digests: list[tuple[bytes, int]],
) -> StoredBody:
    """The result once every chunk is stored, checked against the declared length and
    SHA-256. Raises IncompleteBody, InvalidArgument, BadDigest."""
    if content_length is not None and size < content_length:
        raise IncompleteBody(f"body ended after {size} of {content_length} bytes")
    if content_length is not None and size > content_length:
        raise InvalidArgument(f"body is longer ({size}) than its Content-Length")
    if inline is None and not digests:
        inline = b""
    if expected is not None and sha != expected:
        raise BadDigest(f"body hashes to {sha}, not to the X-Content-SHA256 {expected}")
    return StoredBody(size=size, sha256=sha, chunks=tuple(digests), inline=inline)
