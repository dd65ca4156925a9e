"""Resumable upload sessions: init → chunks (any order, any peer) → complete.

A session (:mod:`dfspeer.model.uploads`) owns one ``uploading`` object version from its
start. Every chunk is a block written with quorum W together with its ``block_refs`` entry
for that version (as a one-shot upload's chunks are), so garbage collection keeps it; the
session records it with quorum W. Complete reads the chunks back in order to compute the
object's SHA-256 (checked against a declared one: a mismatch is ``bad_digest`` and the
session stays open), then writes the version ``complete`` with the concatenated chunk
list — no data is copied, and readers see the old version or the whole new one. Abort and
expiry (idle for ``upload_expiry_s``) release every chunk's reference at once.

Any peer serves any step: the session lives in the replicated table, not in the peer that
started it. Idempotency: an ``Idempotency-Key`` on init maps (through the ``upload_keys``
table, first writer wins) to one session; the same key with another body is
``idempotency_conflict``. A re-sent chunk with the same bytes changes nothing; a chunk
re-sent with other bytes replaces it (the replaced block is released at the end).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import secrets
import time
from collections.abc import Awaitable, Mapping
from dataclasses import replace
from typing import Any

from dfspeer.cluster.partition_scan import scan_partition
from dfspeer.cluster.replication import Replicator
from dfspeer.config import PeerConfig
from dfspeer.errors import (
    BadDigest,
    DfsError,
    IdempotencyConflict,
    IncompleteUpload,
    InvalidArgument,
    InvalidChunkSize,
    NoSuchUpload,
    TooManyUploads,
    UploadNotOpen,
)
from dfspeer.model.block_refs import BLOCK_REFS_TABLE, ref_key
from dfspeer.model.objects import (
    ABORTED,
    COMPLETE,
    OBJECTS_TABLE,
    UPLOADING,
    ObjectEntry,
    ObjectVersion,
    table_key,
)
from dfspeer.model.upload_parts import (
    CHUNK_KIND,
    UPLOAD_PARTS_TABLE,
    UploadElement,
    UploadPartsSchema,
    element_prefix,
    session_prefix,
)
from dfspeer.model.uploads import (
    ABORTED as SESSION_ABORTED,
)
from dfspeer.model.uploads import (
    CHUNKS_KIND,
    COMPLETED,
    EXPIRED,
    IN_PROGRESS,
    INITIATED,
    UPLOAD_KEYS_TABLE,
    UPLOADS_TABLE,
    ChunkRecord,
    PartRecord,
    UploadKey,
    UploadKeysSchema,
    UploadSession,
    UploadsSchema,
    upload_key_id,
)
from dfspeer.objects.info import ObjectInfo
from dfspeer.objects.names import validate_bucket, validate_key
from dfspeer.objects.service import ObjectService
from dfspeer.objects.upload import check_expected_sha256
from dfspeer.objects.versioned_put import release_refs

log = logging.getLogger(__name__)

MAX_LISTED = 1000
ACTIVITY_REFRESH_S = 60.0
"""A session's last activity is rewritten at most this often (or a quarter of
``upload_expiry_s`` when that is shorter): its idle expiry is hours by default."""
ELEMENT_CONCURRENCY = 32
"""Element records (re)written at once when a session ends."""


class UploadService:
    """Resumable upload sessions over the cluster (module docstring). Sizes in bytes,
    times in unix seconds. Every method may raise InsufficientReplicas."""

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

    async def with_elements(
        self, session: UploadSession, number: int | None = None, kind: str | None = None
    ) -> UploadSession:
        """``session`` with its received chunks and parts filled in (all, or those of one
        ``kind`` and ``number``)."""
        prefix = (
            session_prefix(session.id) if kind is None else element_prefix(session.id, kind, number)
        )
        rows = await scan_partition(
            self.replicator, UPLOAD_PARTS_TABLE, session.id.encode(), prefix
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

    # ------------------------------------------------------------------ init
    async def init(
        self,
        bucket: str,
        key: str,
        *,
        size: int | None = None,
        chunk_size: int | None = None,
        sha256: str | None = None,
        content_type: str = "",
        meta: Mapping[str, str] | None = None,
        idempotency_key: str = "",
        kind: str = CHUNKS_KIND,
    ) -> tuple[UploadSession, bool]:
        """Start a session; returns it and True if it was created now (False: the same
        ``idempotency_key`` and request already started it). ``kind``: ``chunks`` (native)
        or ``s3`` (multipart parts, :mod:`dfspeer.objects.multipart`; its chunk size is the
        largest block). Raises InvalidBucketName, InvalidKey, InvalidArgument,
        IdempotencyConflict, TooManyUploads."""
        validate_bucket(bucket)
        validate_key(key)
        if kind == CHUNKS_KIND:
            chunk = self._check_init(size, chunk_size)
        else:
            chunk = self.config.largest_chunk_bytes
        sha = check_expected_sha256(sha256)
        request = {
            "bucket": bucket,
            "key": key,
            "size": size,
            "chunk_size": chunk,
            "sha256": sha,
            "content_type": content_type,
            "meta": dict(meta or {}),
        }
        request_hash = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()
        if idempotency_key:
            found = await self._by_idempotency_key(bucket, key, idempotency_key, request_hash)
            if found is not None:
                return found, False
        await self._check_open_count(bucket)
        info = await self.objects.buckets.ensure(bucket)
        await self.objects.observe(bucket, key)
        now = time.time()
        session = UploadSession(
            id=secrets.token_hex(16),
            bucket=bucket,
            key=key,
            version=self._now_version(),
            null=not info.keeps_versions,
            chunk_size=chunk,
            created=now,
            size=size,
            sha256=sha,
            content_type=content_type or "application/octet-stream",
            meta=tuple(sorted((meta or {}).items())),
            idempotency_key=idempotency_key,
            request_hash=request_hash,
            states=frozenset({(INITIATED, now)}),
            activity=now,
            kind=kind,
        )
        await self._write(session)
        uploading = ObjectVersion(
            session.version, UPLOADING, null=session.null, created=now, upload=session.id
        )
        await self.objects.write_version(bucket, key, uploading)
        if idempotency_key:
            return await self._claim_key(session), True
        return session, True

    def _check_init(self, size: int | None, chunk_size: int | None) -> int:
        cfg = self.config
        chunk = cfg.chunk_size_bytes if chunk_size is None else chunk_size
        lo, hi = cfg.upload_min_chunk_bytes, cfg.upload_max_chunk_bytes
        if not lo <= chunk <= hi:
            raise InvalidArgument(f"chunk_size must be in {lo}..{hi} bytes, got {chunk}")
        if size is not None:
            if size < 0 or size > cfg.max_object_size_bytes:
                raise InvalidArgument(f"size must be in 0..{cfg.max_object_size_bytes} bytes")
            if -(-size // chunk) > cfg.upload_max_chunks:
                raise InvalidArgument(
                    f"{size} bytes in chunks of {chunk} is over {cfg.upload_max_chunks} chunks"
                )
        return chunk

    async def _by_idempotency_key(
        self, bucket: str, key: str, idempotency_key: str, request_hash: str
    ) -> UploadSession | None:
        record = await self.replicator.read_record(
            UPLOAD_KEYS_TABLE, upload_key_id(bucket, key, idempotency_key)
        )
        if record is None:
            return None
        claim = self.keys_schema.decode(record)
        if claim.request_hash != request_hash:
            raise IdempotencyConflict(
                f"Idempotency-Key {idempotency_key!r} was used for another request"
            )
        return await self.get(claim.upload_id)

    async def _claim_key(self, session: UploadSession) -> UploadSession:
        """Record the session under its idempotency key; if another peer's session won
        the key (earlier), abort ours and return theirs."""
        kid = upload_key_id(session.bucket, session.key, session.idempotency_key)
        mine = UploadKey(session.id, session.request_hash, session.version)
        await self.replicator.write_record(UPLOAD_KEYS_TABLE, kid, self.keys_schema.encode(mine))
        record = await self.replicator.read_record(UPLOAD_KEYS_TABLE, kid)
        winner = self.keys_schema.decode(record) if record is not None else mine
        if winner.upload_id == session.id:
            return session
        await self._end(session, SESSION_ABORTED)
        return await self.get(winner.upload_id)

    async def _check_open_count(self, bucket: str) -> None:
        if len(await self.list_open(bucket, limit=self.config.max_open_uploads, kind=None)) >= (
            self.config.max_open_uploads
        ):
            raise TooManyUploads(
                f"bucket {bucket} already has {self.config.max_open_uploads} open uploads"
            )

    # ------------------------------------------------------------------ chunks
    async def put_chunk(
        self,
        upload_id: str,
        index: int,
        data: bytes,
        *,
        expected_sha256: str | None = None,
        session: UploadSession | None = None,
    ) -> ChunkRecord:
        """Store chunk ``index`` of the session; returns what was recorded. ``session``:
        its header when the caller has just read it. Raises NoSuchUpload, UploadNotOpen,
        InvalidArgument (index), InvalidChunkSize, BadDigest (nothing recorded)."""
        if session is None or session.id != upload_id:
            session = await self.header(upload_id)
        _native(session)
        if not session.is_open:
            raise UploadNotOpen(f"upload {upload_id} is {session.state}")
        self._check_chunk(session, index, len(data))
        expected = check_expected_sha256(expected_sha256)
        digest = await asyncio.to_thread(lambda: hashlib.sha256(data).digest())
        if expected is not None and digest.hex() != expected:
            raise BadDigest(f"chunk hashes to {digest.hex()}, not to X-Chunk-SHA256 {expected}")
        ref = self.objects.ref_record(
            digest, session.version, session.bucket, session.key, session.created
        )
        # what the index holds and the (idempotent) block write travel at once
        earlier, _ = await asyncio.gather(
            self.with_elements(session, index, CHUNK_KIND),
            self.replicator.write_block(data, digest, ref=ref),
        )
        have: ChunkRecord | None = earlier.current().get(index)
        if have is not None and have.digest == digest:
            return have  # the same bytes again: nothing new is recorded
        chunk = ChunkRecord(index, digest, len(data), self._now_version())
        await self.record_element(session, chunk)
        return chunk

    def _check_chunk(self, session: UploadSession, index: int, size: int) -> None:
        if index < 0 or index >= self.config.upload_max_chunks:
            raise InvalidArgument(
                f"chunk index must be in 0..{self.config.upload_max_chunks - 1}, got {index}"
            )
        total = session.total_chunks
        if total is not None:
            if index >= total:
                raise InvalidArgument(f"chunk {index} is beyond the declared size ({total} chunks)")
            want = session.chunk_size
            if index == total - 1:
                want = session.size - index * session.chunk_size  # type: ignore[operator]
            if size != want:
                raise InvalidChunkSize(f"chunk {index} must be {want} bytes, got {size}")
        elif not 0 < size <= session.chunk_size:
            raise InvalidChunkSize(
                f"a chunk is 1..{session.chunk_size} bytes (all but the last exactly that)"
            )

    # ------------------------------------------------------------------ complete / abort
    async def complete(self, upload_id: str, *, sha256: str | None = None) -> ObjectInfo:
        """Make the session's chunks the object's new version; returns its info (the same
        info again for a completed session). Raises NoSuchUpload, UploadNotOpen,
        IncompleteUpload (``details["missing"]``), InvalidChunkSize, BadDigest (the
        session stays open)."""
        session = await self.get(upload_id)
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
    ) -> ObjectInfo:
        """Make ``blocks`` (in order; ``size`` bytes hashing to ``sha256``) the new version
        of the session's key and end the session as completed; returns the object's info.

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
        missing = session.missing()
        if session.total_chunks is None:
            top = max(current, default=-1)
            missing = [i for i in range(top + 1) if i not in current]
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

    async def abort(self, upload_id: str) -> None:
        """Abort an open session and release its chunks now. Raises NoSuchUpload,
        UploadNotOpen."""
        session = await self.get(upload_id)
        if not session.is_open:
            raise UploadNotOpen(f"upload {upload_id} is {session.state}")
        await self._end(session, SESSION_ABORTED)

    async def _end(self, session: UploadSession, state: str) -> None:
        """Mark the session ``state`` (aborted / expired), abort its version, release every
        chunk it received (best effort: the lifecycle sweep finishes what fails)."""
        now = time.time()
        await self._write(
            replace(
                session,
                chunks=frozenset(),
                parts=frozenset(),
                states=frozenset({(state, now)}),
                activity=now,
                result=None,
            )
        )
        try:
            await self.objects.write_version(
                session.bucket, session.key, ObjectVersion(session.version, ABORTED)
            )
        except DfsError as exc:
            log.debug("abort of the version of upload %s deferred: %s", session.id, exc)
        digests = {c.digest for c in session.chunks} | session.part_digests()
        await release_refs(self.replicator, digests, session.version, session.bucket, session.key)
        await self._end_elements(session, now)

    # ------------------------------------------------------------------ listing / expiry
    async def list_open(
        self, bucket: str, *, limit: int = MAX_LISTED, kind: str | None = CHUNKS_KIND
    ) -> list[UploadSession]:
        """Open sessions of ``bucket`` of ``kind`` (None: any; at most ``limit``), oldest
        first, read without their chunk and part lists."""
        validate_bucket(bucket)
        out: list[UploadSession] = await self.replicator.scan_entries(
            UPLOADS_TABLE,
            lambda s: s.bucket == bucket and s.is_open and kind in (None, s.kind),
            limit=limit,
            omit=("chunks", "parts"),
        )
        return sorted(out, key=lambda s: (s.created, s.id))[:limit]

    async def expire_once(self) -> int:
        """Expire the open sessions idle for ``upload_expiry_s`` (those whose id this peer
        is the first replica of); returns how many."""
        horizon = time.time() - self.config.upload_expiry_s
        view = self.objects.view
        expired = 0
        for key, record in self.objects.store.table(UPLOADS_TABLE).iter_items():
            try:
                session = self.schema.decode(record)
            except ValueError:
                continue
            if not session.is_open or session.activity >= horizon:
                continue
            if view.replicas(view.partition_of(key))[:1] != (self.self_id,):
                continue
            try:
                await self._end(await self.with_elements(session), EXPIRED)
                expired += 1
            except DfsError as exc:
                log.debug("expiry of upload %s deferred: %s", session.id, exc)
        return expired

    def to_json(self, session: UploadSession) -> dict[str, Any]:
        """The session as the native API shows it."""
        return {
            "upload_id": session.id,
            "bucket": session.bucket,
            "key": session.key,
            "state": session.state,
            "chunk_size": session.chunk_size,
            "size": session.size,
            "total_chunks": session.total_chunks,
            "sha256": session.sha256,
            "content_type": session.content_type,
            "metadata": dict(session.meta),
            "created": session.created,
            "expires": session.activity + self.config.upload_expiry_s,
            "received": session.received_ranges(),
            "bytes_received": session.bytes_received(),
        }


def _native(session: UploadSession) -> None:
    """Raise NoSuchUpload for an S3 multipart session (it has parts, not chunks)."""
    if session.kind != CHUNKS_KIND:
        raise NoSuchUpload(f"upload {session.id} is an S3 multipart upload")


def _is_upload_id(text: str) -> bool:
    return len(text) == 32 and all(c in "0123456789abcdef" for c in text)


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
