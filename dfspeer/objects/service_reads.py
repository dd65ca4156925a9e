"""Reads of :class:`~dfspeer.objects.service.ObjectService`: the quorum read of an object's
entry, the version a request names, and the stream of its bytes (with the early fetch of
:mod:`.early_read` when the caller says which span it expects)."""

from __future__ import annotations

from collections.abc import AsyncIterator

from dfspeer.blockstore import BlockStore
from dfspeer.cluster.replication import Replicator
from dfspeer.config import PeerConfig
from dfspeer.errors import DfsError
from dfspeer.model.objects import (
    OBJECTS_TABLE,
    ObjectEntry,
    ObjectsSchema,
    ObjectVersion,
    table_key,
)
from dfspeer.objects.download import (
    ChunkStream,
    InlineStream,
    ObjectReader,
    map_range,
    resolve_range,
)
from dfspeer.objects.early_read import (
    EarlyRead,
    VersionReader,
    plan_early_read,
    select_version,
)
from dfspeer.objects.hlc import HybridLogicalClock
from dfspeer.objects.info import ObjectInfo
from dfspeer.objects.names import validate_bucket, validate_key


class ObjectReads:
    """The read half of :class:`~dfspeer.objects.service.ObjectService` (which sets these
    attributes). Every method may raise InsufficientReplicas when fewer than R replicas
    answer."""

    config: PeerConfig
    store: BlockStore
    replicator: Replicator
    schema: ObjectsSchema
    clock: HybridLogicalClock

    async def _read_entry(
        self, bucket: str, key: str, early: EarlyRead | None = None
    ) -> ObjectEntry | None:
        record = await self.replicator.read_record(OBJECTS_TABLE, table_key(bucket, key))
        if record is None:
            return None
        entry = early.entry_for(record) if early is not None else None
        if entry is None:
            try:
                entry = self.schema.decode(record)
            except ValueError as exc:
                raise DfsError(f"stored entry of {bucket}/{key} is unreadable: {exc}") from exc
        if entry.versions:
            self.clock.observe_version(entry.versions[-1].id)
        return entry

    async def _version(
        self, bucket: str, key: str, version_id: str | None, early: EarlyRead | None = None
    ) -> ObjectVersion:
        """The live version, or version ``version_id``. Raises NoSuchKey, NoSuchVersion."""
        validate_bucket(bucket)
        validate_key(key)
        entry = await self._read_entry(bucket, key, early)
        return select_version(entry, version_id, f"{bucket}/{key}")

    def _early_read(
        self, bucket: str, key: str, version_id: str | None, span: tuple[int, int | None]
    ) -> EarlyRead | None:
        """Start fetching ``span`` of the version this peer's own copy of the entry names
        (see :mod:`.early_read`); None when there is no readable local copy."""
        try:
            record = self.store.table(OBJECTS_TABLE).get(table_key(bucket, key))
            if record is None:
                return None
            entry = self.schema.decode(record)
        except Exception:  # a local fault is the quorum read's to report
            return None
        return plan_early_read(record, entry, version_id, span, self._chunk_stream)

    async def stat_object(self, bucket: str, key: str, *, version: str | None = None) -> ObjectInfo:
        """Info of the live version (or of ``version``). Raises NoSuchKey, NoSuchVersion."""
        return ObjectInfo.of(bucket, key, await self._version(bucket, key, version))

    async def get_object(
        self,
        bucket: str,
        key: str,
        *,
        start: int = 0,
        end: int | None = None,
        version: str | None = None,
    ) -> tuple[ObjectInfo, AsyncIterator[bytes]]:
        """Info and a stream of bytes ``[start, end)`` of the live version (or of
        ``version``); ``end`` None = the size, an end past the size is clamped. The first
        chunk is already fetched when this returns, so a missing chunk raises
        DataUnavailable here. Raises NoSuchKey, NoSuchVersion, InvalidRange. The stream has
        ``aclose()``: call it when stopping early."""
        info, reader = await self.open_object(bucket, key, version=version)
        return info, await reader(start, end)

    async def open_object(
        self,
        bucket: str,
        key: str,
        *,
        version: str | None = None,
        span: tuple[int, int | None] | None = None,
    ) -> tuple[ObjectInfo, ObjectReader]:
        """Info of the live version (or of ``version``) and a reader of its bytes, from
        one read of the entry: ``await reader(start, end)`` is what :meth:`get_object`
        returns as its stream (``end`` None = the size; InvalidRange, DataUnavailable
        raised there). Lets a caller decide on the info (304, 416, the span) without
        reading the entry twice. ``span`` (``(start, end)``, ``end`` None = the size), when
        given, is the read the caller expects: its first bytes are fetched from this
        peer's copy of the entry while the quorum read runs (:mod:`.early_read`), and the
        reader uses them only for that same version and span; a caller that may not call
        the reader calls ``await reader.aclose()``. Raises NoSuchKey, NoSuchVersion."""
        early = self._early_read(bucket, key, version, span) if span is not None else None
        try:
            v = await self._version(bucket, key, version, early)
        except BaseException:
            if early is not None:
                await early.close()
            raise

        async def open_stream(
            start: int, end: int | None, early: EarlyRead | None
        ) -> AsyncIterator[bytes]:
            return await self._open_stream(v, start, end, early)

        return ObjectInfo.of(bucket, key, v), VersionReader(open_stream, early)

    def _chunk_stream(self, v: ObjectVersion, lo: int, hi: int) -> ChunkStream | None:
        """The (not yet started) stream of bytes ``[lo, hi)`` of ``v``; None if inline."""
        if v.inline is not None or not v.chunks:
            return None
        sizes = [n for _, n in v.chunks]
        return ChunkStream(
            [d for d, _ in v.chunks],
            map_range(sizes, lo, hi),
            self.replicator.read_block,
            prefetch=self.config.download_prefetch_chunks,
            read_range=self.replicator.read_block_range,
            sizes=sizes,
        )

    async def _open_stream(
        self, v: ObjectVersion, start: int, end: int | None, early: EarlyRead | None = None
    ) -> AsyncIterator[bytes]:
        lo, hi = resolve_range(v.size, start, end)
        stream = early.take(v, lo, hi) if early is not None else None
        stream = stream or self._chunk_stream(v, lo, hi)
        if stream is None:
            return InlineStream((v.inline or b"")[lo:hi])
        try:
            await stream.start()
        except BaseException:
            await stream.aclose()
            raise
        return stream
