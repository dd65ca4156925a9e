"""The table side of upload sessions (:mod:`dfspeer.objects.sessions`): a session's header
in the replicated ``uploads`` table, the chunks and parts it received in ``upload_parts``
(one entry each, so the header stays small), its activity, and the ending of those entries
when the session ends."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable
from dataclasses import replace

from dfspeer.cluster.partition_scan import scan_partition
from dfspeer.cluster.replication import Replicator
from dfspeer.config import PeerConfig
from dfspeer.errors import DfsError, NoSuchUpload
from dfspeer.model.upload_parts import (
    CHUNK_KIND,
    UPLOAD_PARTS_TABLE,
    UploadElement,
    UploadPartsSchema,
    element_prefix,
    session_prefix,
)
from dfspeer.model.uploads import (
    CHUNKS_KIND,
    IN_PROGRESS,
    UPLOADS_TABLE,
    ChunkRecord,
    PartRecord,
    UploadKeysSchema,
    UploadSession,
    UploadsSchema,
)
from dfspeer.objects.service import ObjectService

log = logging.getLogger("dfspeer.objects.sessions")

ACTIVITY_REFRESH_S = 60.0
"""A session's last activity is rewritten at most this often (or a quarter of
``upload_expiry_s`` when that is shorter): its idle expiry is hours by default."""
ELEMENT_CONCURRENCY = 32
"""Element records (re)written at once when a session ends."""


class SessionRecords:
    """Session records of an :class:`~dfspeer.objects.sessions.UploadService`, which the
    other session modules build on. Every method may raise InsufficientReplicas."""

    def __init__(self, config: PeerConfig, objects: ObjectService) -> None:
        self.config = config
        self.objects = objects
        self.replicator: Replicator = objects.replicator
        self.clock = objects.clock
        self.self_id = objects.view.self_id
        self.schema = UploadsSchema()
        self.keys_schema = UploadKeysSchema()
        self.parts_schema = UploadPartsSchema()

    # ------------------------------------------------------------------ table access
    async def header(self, upload_id: str) -> UploadSession:
        """The session ``upload_id`` without its chunks and parts (one small quorum read).
        Raises NoSuchUpload."""
        if not _is_upload_id(upload_id):
            raise NoSuchUpload(f"no upload {upload_id!r}")
        record = await self.replicator.read_record(UPLOADS_TABLE, upload_id.encode())
        if record is None:
            raise NoSuchUpload(f"no upload {upload_id}")
        return self.schema.decode(record)

    async def get(self, upload_id: str) -> UploadSession:
        """The session ``upload_id`` with every chunk and part it received (a quorum scan
        of its ``upload_parts`` entries). Raises NoSuchUpload."""
        return await self.with_elements(await self.header(upload_id))

    async def get_checked(self, upload_id: str) -> UploadSession:
        """:meth:`get`; when that finds chunks missing, the elements again from every
        replica that answers, not only the first R (what ``complete`` and
        ``missing-chunks`` use before they call an acknowledged chunk missing: after a
        partition heals, the first R may all lack what a third replica holds)."""
        session = await self.get(upload_id)
        if missing_chunks(session):
            session = await self.with_elements(session, every=True)
        return session

    async def with_elements(
        self,
        session: UploadSession,
        number: int | None = None,
        kind: str | None = None,
        *,
        every: bool = False,
    ) -> UploadSession:
        """``session`` with its received chunks and parts filled in (all, or those of one
        ``kind`` and ``number``); ``every``: read from every replica that answers."""
        prefix = (
            session_prefix(session.id) if kind is None else element_prefix(session.id, kind, number)
        )
        rows = await scan_partition(
            self.replicator, UPLOAD_PARTS_TABLE, session.id.encode(), prefix, every=every
        )
        chunks, parts = set(session.chunks), set(session.parts)
        for _, record in rows:
            try:
                element = self.parts_schema.decode(record)
            except ValueError:
                continue
            if element.kind == CHUNK_KIND:
                chunks.add(element.chunk())
            else:
                parts.add(element.part())
        return replace(session, chunks=frozenset(chunks), parts=frozenset(parts))

    async def record_element(
        self, session: UploadSession, element: ChunkRecord | PartRecord
    ) -> None:
        """Record a received chunk or part (quorum W) and the session's activity."""
        if isinstance(element, ChunkRecord):
            item = UploadElement.of_chunk(session.id, element)
        else:
            item = UploadElement.of_part(session.id, element)
        now = time.time()
        writes: list[Awaitable[object]] = [
            self.replicator.write_record(
                UPLOAD_PARTS_TABLE, item.key(), self.parts_schema.encode(item)
            )
        ]
        refresh = min(ACTIVITY_REFRESH_S, self.config.upload_expiry_s / 4)
        if session.state != IN_PROGRESS or now - session.activity > refresh:
            activity = replace(
                session,
                chunks=frozenset(),
                parts=frozenset(),
                states=frozenset({(IN_PROGRESS, now)}),
                activity=now,
                result=None,
            )
            writes.append(self._write(activity))
        await asyncio.gather(*writes)

    async def _end_elements(self, session: UploadSession, now: float) -> None:
        """Mark every received element ended (tombstones, purged after the grace); best
        effort, ``RELEASE_CONCURRENCY`` at once."""
        items = [UploadElement.of_chunk(session.id, c) for c in session.chunks] + [
            UploadElement.of_part(session.id, p) for p in session.parts
        ]
        slots = asyncio.Semaphore(ELEMENT_CONCURRENCY)

        async def end(item: UploadElement) -> None:
            ended = replace(item, ended=now)
            async with slots:
                try:
                    await self.replicator.write_record(
                        UPLOAD_PARTS_TABLE, item.key(), self.parts_schema.encode(ended)
                    )
                except DfsError as exc:
                    log.debug("ending an element of upload %s deferred: %s", session.id, exc)

        await asyncio.gather(*(end(i) for i in items))

    async def _write(self, session: UploadSession) -> None:
        await self.replicator.write_record(
            UPLOADS_TABLE, session.id.encode(), self.schema.encode(session)
        )

    def _now_version(self) -> str:
        return str(self.clock.next_version(self.self_id))


def _native(session: UploadSession) -> None:
    """Raise NoSuchUpload for an S3 multipart session (it has parts, not chunks)."""
    if session.kind != CHUNKS_KIND:
        raise NoSuchUpload(f"upload {session.id} is an S3 multipart upload")


def _is_upload_id(text: str) -> bool:
    return len(text) == 32 and all(c in "0123456789abcdef" for c in text)


def missing_chunks(session: UploadSession) -> list[int]:
    """The chunk indices ``session`` lacks: below its declared total, or, without a size,
    the gaps below the highest index received."""
    if session.total_chunks is not None:
        return session.missing()
    current = session.current()
    return [i for i in range(max(current, default=-1) + 1) if i not in current]
