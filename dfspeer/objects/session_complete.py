"""Completion of an upload session (:mod:`dfspeer.objects.sessions`): the chunks are read
back in order to compute the object's SHA-256 (checked against a declared one: a mismatch
is ``bad_digest`` and the session stays open), then the version is written ``complete``
with the concatenated chunk list — no data is copied, and readers see the old version or
the whole new one. :meth:`SessionCompleteMixin.publish` is the version flip that S3
multipart completion (:mod:`dfspeer.objects.multipart`) shares."""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from dfspeer.errors import BadDigest, IncompleteUpload, InvalidChunkSize, UploadNotOpen
from dfspeer.model.block_refs import BLOCK_REFS_TABLE, ref_key
from dfspeer.model.objects import (
    ABORTED,
    COMPLETE,
    OBJECTS_TABLE,
    ObjectEntry,
    ObjectVersion,
    table_key,
)
from dfspeer.model.uploads import COMPLETED, ChunkRecord, UploadSession
from dfspeer.objects.info import ObjectInfo
from dfspeer.objects.session_records import (
    ELEMENT_CONCURRENCY,
    SessionRecords,
    _native,
    missing_chunks,
)
from dfspeer.objects.upload import check_expected_sha256
from dfspeer.objects.versioned_put import release_refs


class SessionCompleteMixin(SessionRecords):
    """:class:`~dfspeer.objects.sessions.UploadService` calls that complete a session."""

    async def complete(self, upload_id: str, *, sha256: str | None = None) -> ObjectInfo:
        """Make the session's chunks the object's new version; returns its info (the same
        info again for a completed session). Raises NoSuchUpload, UploadNotOpen,
        IncompleteUpload (``details["missing"]``), InvalidChunkSize, BadDigest (the
        session stays open)."""
        session = await self.get_checked(upload_id)
        _native(session)
        if session.state == COMPLETED and session.result is not None:
            return _info_of(session.result)
        if not session.is_open:
            raise UploadNotOpen(f"upload {upload_id} is {session.state}")
        chunks = self._ordered_chunks(session)
        declared = check_expected_sha256(sha256) or session.sha256
        whole, size = await self._whole_sha256(chunks)
        if declared is not None and whole != declared:
            raise BadDigest(f"the chunks hash to {whole}, not to the declared SHA-256 {declared}")
        blocks = tuple((c.digest, c.size) for c in chunks)
        return await self.publish(session, blocks, size, whole, dict(session.meta))

    async def publish(
        self,
        session: UploadSession,
        blocks: tuple[tuple[bytes, int], ...],
        size: int,
        sha256: str,
        meta: Mapping[str, str],
        parts: tuple[int, ...] = (),
    ) -> ObjectInfo:
        """Make ``blocks`` (in order; ``size`` bytes hashing to ``sha256``) the new version
        of the session's key and end the session as completed; returns the object's info.
        ``parts``: the byte sizes of an S3 multipart upload's parts, kept with the version.

        The version gets a fresh id at completion, so it orders after every write made
        while the session was open (as S3's CompleteMultipartUpload does): its blocks are
        referenced under that id first (quorum W each; a failure leaves the session open
        and nothing visible), then the version is written complete together with the
        abort of the session's ``uploading`` version, then the references under the old
        id and the session's elements are released."""
        bucket, key = session.bucket, session.key
        prior = await self.objects.observe(bucket, key)
        version_id = self._now_version()
        await self._reference({d for d, _ in blocks}, version_id, session)
        now = time.time()
        version = ObjectVersion(
            id=version_id,
            state=COMPLETE,
            null=session.null,
            size=size,
            sha256=sha256,
            content_type=session.content_type,
            meta=tuple(sorted(meta.items())),
            chunks=blocks,
            inline=b"" if not blocks else None,
            modified=now,
            created=session.created,
            upload=session.id,
            parts=parts,
        )
        entry = ObjectEntry(bucket, key, (ObjectVersion(session.version, ABORTED), version))
        await self.replicator.write_record(
            OBJECTS_TABLE, table_key(bucket, key), self.objects.schema.encode(entry)
        )
        info = ObjectInfo.of(bucket, key, version)
        done = replace(
            session,
            chunks=frozenset(),
            parts=frozenset(),
            states=frozenset({(COMPLETED, now)}),
            activity=now,
            result=info.to_json(),
        )
        await self._write(done)
        self.objects.supersede(bucket, key, prior, version)
        received = {c.digest for c in session.chunks} | session.part_digests()
        await release_refs(self.replicator, received, session.version, bucket, key)
        await self._end_elements(session, now)
        return info

    async def _reference(
        self, digests: set[bytes], version_id: str, session: UploadSession
    ) -> None:
        """Live references of ``version_id`` to ``digests`` (quorum W each, 32 at once).
        Raises the first failure."""
        slots = asyncio.Semaphore(ELEMENT_CONCURRENCY)

        async def ref(digest: bytes) -> None:
            record = self.objects.ref_record(
                digest, version_id, session.bucket, session.key, time.time()
            )
            async with slots:
                await self.replicator.write_record(
                    BLOCK_REFS_TABLE, ref_key(digest, version_id), record
                )

        await asyncio.gather(*(ref(d) for d in digests))

    def _ordered_chunks(self, session: UploadSession) -> list[ChunkRecord]:
        current = session.current()
        missing = missing_chunks(session)
        if missing:
            shown = missing[:1000]
            raise IncompleteUpload(
                f"{len(missing)} chunk(s) missing, first {shown[0]}",
                details={"missing": shown},
            )
        ordered = [current[i] for i in sorted(current)]
        for c in ordered[:-1]:
            if c.size != session.chunk_size:
                raise InvalidChunkSize(f"chunk {c.index} is {c.size} bytes, not the chunk size")
        return ordered

    async def _whole_sha256(self, chunks: list[ChunkRecord]) -> tuple[str, int]:
        """SHA-256 and size of the chunks in order, each read (verified) from its replicas,
        one read ahead."""
        whole = hashlib.sha256()
        size = 0
        pending: asyncio.Task[bytes] | None = None
        for i, c in enumerate(chunks):
            task = pending or asyncio.create_task(self.replicator.read_block(c.digest))
            pending = (
                asyncio.create_task(self.replicator.read_block(chunks[i + 1].digest))
                if i + 1 < len(chunks)
                else None
            )
            try:
                data = await task
            except BaseException:
                if pending is not None:
                    pending.cancel()
                raise
            await asyncio.to_thread(whole.update, data)
            size += len(data)
        return whole.hexdigest(), size


def _info_of(doc: Mapping[str, Any]) -> ObjectInfo:
    return ObjectInfo(
        bucket=str(doc["bucket"]),
        key=str(doc["key"]),
        version=str(doc["version"]),
        size=int(doc["size"]),
        sha256=str(doc["sha256"]),
        chunks=int(doc["chunks"]),
        modified=float(doc["modified"]),
        content_type=str(doc.get("content_type", "application/octet-stream")),
        meta=dict(doc.get("meta") or {}),
    )
