"""Early reads: a GET's first bytes are fetched from the coordinator's own copy of the
object's entry while the quorum read of that entry is still in flight.

A coordinator that holds a replica of the entry reads it locally (one LMDB read, no RPC).
When that copy names a version with blocks, the stream of the span the request expects is
built from it and its first pieces start at once (:meth:`ChunkStream.begin`). Once the
quorum read returns, the stream is used only if the merged entry resolves to the same
version (equal id, state, chunks and every other field) and the same span; otherwise it is
closed, its fetches cancelled, and the read goes on from the merged entry as before. So the
answer is always the quorum's: the local copy only decides what to fetch early.

This overlaps one peer round trip with the first block read, as Cassandra's read path
runs the data read on one replica in parallel with the digest reads of the others. The
decoded local entry is reused when the quorum's record equals it, so a read whose copies
agree decodes the entry once.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from dfspeer.errors import DfsError, NoSuchKey, NoSuchVersion
from dfspeer.model.objects import ObjectEntry, ObjectVersion
from dfspeer.objects.download import ChunkStream, resolve_range


def select_version(entry: ObjectEntry | None, version_id: str | None, name: str) -> ObjectVersion:
    """The live version of ``entry`` (``version_id`` None) or version ``version_id`` if it
    holds data. ``name`` (``bucket/key``) is for the error. Raises NoSuchKey,
    NoSuchVersion."""
    if version_id is None:
        live = entry.live() if entry is not None else None
        if live is None:
            raise NoSuchKey(f"no object {name}")
        return live
    version = entry.get(version_id) if entry is not None else None
    if version is None or not version.is_data:
        raise NoSuchVersion(f"{name} has no version {version_id}")
    return version


@dataclass
class EarlyRead:
    """The local copy of one entry and, when it names a version with blocks, a stream of
    the expected span (``lo``, ``hi``: resolved byte offsets) already fetching."""

    record: Any
    entry: ObjectEntry
    version: ObjectVersion | None = None
    lo: int = 0
    hi: int = 0
    stream: ChunkStream | None = None

    def entry_for(self, record: Any) -> ObjectEntry | None:
        """The decoded entry if ``record`` (the quorum's) equals the local copy, else None."""
        return self.entry if record == self.record else None

    def take(self, version: ObjectVersion, lo: int, hi: int) -> ChunkStream | None:
        """The early stream if it reads bytes ``[lo, hi)`` of exactly ``version`` (it is
        then the caller's to close), else None."""
        if self.stream is None or self.version != version or (self.lo, self.hi) != (lo, hi):
            return None
        stream, self.stream = self.stream, None
        return stream

    async def close(self) -> None:
        """Cancel the early fetches if nobody took them (idempotent)."""
        stream, self.stream = self.stream, None
        if stream is not None:
            with contextlib.suppress(Exception):
                await stream.aclose()


def plan_early_read(
    record: Any,
    entry: ObjectEntry,
    version_id: str | None,
    span: tuple[int, int | None],
    open_stream: Callable[[ObjectVersion, int, int], ChunkStream | None],
) -> EarlyRead:
    """An :class:`EarlyRead` of the local ``record`` (decoded: ``entry``) for a read of
    ``version_id`` (None = live) over ``span`` (``end`` None = to the end).
    ``open_stream(version, lo, hi)`` builds the (not yet started) ChunkStream of resolved
    offsets, or returns None for an inline version. A span the local version cannot serve
    (InvalidRange), or no such version, means no early fetch."""
    early = EarlyRead(record, entry)
    try:
        version = select_version(entry, version_id, "")
        lo, hi = resolve_range(version.size, span[0], span[1])
    except DfsError:
        return early
    stream = open_stream(version, lo, hi)
    if stream is not None:
        early.version, early.stream, early.lo, early.hi = version, stream, lo, hi
        stream.begin()
    return early


class VersionReader:
    """The reader :meth:`ObjectService.open_object` returns for one version:
    ``await reader(start, end)`` is the stream of bytes ``[start, end)`` (``end`` None =
    the size), built from the early fetches when they match. ``await reader.aclose()``
    cancels early fetches that no call used (idempotent; a caller that may answer without
    reading, e.g. 304 or 416, calls it)."""

    def __init__(
        self,
        open_stream: Callable[[int, int | None, EarlyRead | None], Awaitable[AsyncIterator[bytes]]],
        early: EarlyRead | None,
    ) -> None:
        self._open = open_stream
        self._early = early

    async def __call__(self, start: int = 0, end: int | None = None) -> AsyncIterator[bytes]:
        try:
            return await self._open(start, end, self._early)
        finally:
            await self.aclose()

    async def aclose(self) -> None:
        early, self._early = self._early, None
        if early is not None:
            await early.close()
