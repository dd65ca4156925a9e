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

The service is assembled from single-purpose modules: the session's records
(:mod:`dfspeer.objects.session_records`), chunk upload (:mod:`dfspeer.objects.session_chunks`),
completion (:mod:`dfspeer.objects.session_complete`), and abort, expiry and listing
(:mod:`dfspeer.objects.session_end`); init and idempotency are here.
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from collections.abc import Mapping
from typing import Any

from dfspeer.errors import IdempotencyConflict, InvalidArgument, TooManyUploads
from dfspeer.model.objects import UPLOADING, ObjectVersion
from dfspeer.model.uploads import ABORTED as SESSION_ABORTED
from dfspeer.model.uploads import (
    CHUNKS_KIND,
    INITIATED,
    UPLOAD_KEYS_TABLE,
    UploadKey,
    UploadSession,
    upload_key_id,
)
from dfspeer.objects.names import validate_bucket, validate_key
from dfspeer.objects.session_chunks import SessionChunksMixin
from dfspeer.objects.session_complete import SessionCompleteMixin
from dfspeer.objects.session_end import MAX_LISTED, SessionEndMixin
from dfspeer.objects.session_records import ACTIVITY_REFRESH_S, ELEMENT_CONCURRENCY
from dfspeer.objects.upload import check_expected_sha256

__all__ = ["ACTIVITY_REFRESH_S", "ELEMENT_CONCURRENCY", "MAX_LISTED", "UploadService"]


class UploadService(SessionCompleteMixin, SessionChunksMixin, SessionEndMixin):
    """Resumable upload sessions over the cluster (module docstring). Sizes in bytes,
    times in unix seconds. Every method may raise InsufficientReplicas."""

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
        session = await self._create(
            bucket,
            key,
            size=size,
            chunk_size=chunk,
            sha256=sha,
            content_type=content_type,
            meta=meta,
            idempotency_key=idempotency_key,
            request_hash=request_hash,
            kind=kind,
        )
        if idempotency_key:
            return await self._claim_key(session), True
        return session, True

    async def _create(
        self,
        bucket: str,
        key: str,
        *,
        size: int | None,
        chunk_size: int,
        sha256: str | None,
        content_type: str,
        meta: Mapping[str, str] | None,
        idempotency_key: str,
        request_hash: str,
        kind: str,
    ) -> UploadSession:
        """Write a new session of ``bucket/key`` (creating the bucket if it is missing) and
        its ``uploading`` version; returns the session."""
        info = await self.objects.buckets.ensure(bucket)
        await self.objects.observe(bucket, key)
        now = time.time()
        session = UploadSession(
            id=secrets.token_hex(16),
            bucket=bucket,
            key=key,
            version=self._now_version(),
            null=not info.keeps_versions,
            chunk_size=chunk_size,
            created=now,
            size=size,
            sha256=sha256,
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
        return session

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
