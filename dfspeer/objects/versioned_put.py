"""One object upload as a version's life: ``uploading`` with references, then ``complete``.

Order (so garbage collection can never take a block a live upload needs):

1. with the first block, the version is written ``uploading`` to the key's replicas
   (quorum W; no block counts as written before it is) — an inline object, which writes no
   block, skips this;
2. every block goes to its replicas *with* its ``block_refs`` entry (digest, version id),
   stored in the same transaction as the block, so the block is referenced from the
   instant it exists;
3. the version is written ``complete`` with its chunk list and metadata.

On a failure after step 1 (a short body, a wrong ``X-Content-SHA256``, lost replicas) the
coordinator marks the version aborted and releases the references it wrote, both best
effort — but once the complete version was sent, only if the abort reached W replicas (the
complete version may have landed where the answers were lost); what it cannot do (it
died) the lifecycle's expiry and sweep finish (:mod:`dfspeer.model.lifecycle`).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterable, Callable, Iterable, Mapping
from dataclasses import dataclass

from dfspeer.cluster.replication import Replicator
from dfspeer.config import PeerConfig
from dfspeer.errors import DfsError
from dfspeer.model.block_refs import BLOCK_REFS_TABLE, BlockRef, BlockRefsSchema, ref_key
from dfspeer.model.objects import (
    ABORTED,
    COMPLETE,
    OBJECTS_TABLE,
    UPLOADING,
    ObjectEntry,
    ObjectsSchema,
    ObjectVersion,
    table_key,
)
from dfspeer.objects.cdc import chunker_for
from dfspeer.objects.dedup import DedupWriter
from dfspeer.objects.upload import StoredBody, store_body

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PutRequest:
    """What a client asked to store. ``null``: the bucket does not keep versions (the new
    version replaces the previous null version)."""

    bucket: str
    key: str
    version_id: str
    null: bool
    content_type: str
    meta: Mapping[str, str]
    expected_sha256: str | None = None
    content_length: int | None = None
    chunking: str = "fixed"  # the bucket's: "cdc" | "fixed" (dfspeer.objects.cdc)
    late_meta: Callable[[], Mapping[str, str]] | None = None
    """Called once the body is stored; its entries join ``meta`` (an S3 ETag, the MD5 of
    the body, is known only then)."""
    late_checksum: Callable[[], tuple[str, str] | None] | None = None
    """Called once the body is stored: the version's checked full-object checksum
    ``(algorithm, base64 value)`` or None (:attr:`ObjectVersion.checksum`)."""


class VersionedPut:
    """Runs one upload (module docstring) through ``replicator``; with ``dedup``, blocks
    its replicas already hold are not sent again (:mod:`dfspeer.objects.dedup`)."""

    def __init__(
        self,
        config: PeerConfig,
        replicator: Replicator,
        request: PutRequest,
        *,
        dedup: DedupWriter | None = None,
    ) -> None:
        self.dedup = dedup
        self.config = config
        self.replicator = replicator
        self.request = request
        self.objects = ObjectsSchema()
        self.refs = BlockRefsSchema()
        self.created = time.time()
        self._begun: asyncio.Task[None] | None = None
        self._written: set[bytes] = set()
        self._completing = False
        """True once the complete version was sent: it may have landed, even on W replicas
        whose answers were lost, whatever the write raised."""

    def _entry(self, version: ObjectVersion) -> dict[str, object]:
        r = self.request
        return self.objects.encode(ObjectEntry(r.bucket, r.key, (version,)))

    async def _write_version(self, version: ObjectVersion) -> None:
        r = self.request
        await self.replicator.write_record(
            OBJECTS_TABLE, table_key(r.bucket, r.key), self._entry(version)
        )

    def _ref(self, digest: bytes, *, deleted: bool = False) -> dict[str, object]:
        r = self.request
        ref = BlockRef(
            digest,
            r.version_id,
            r.bucket,
            r.key,
            self.created,
            deleted=deleted,
            deleted_at=time.time() if deleted else 0.0,
        )
        return self.refs.encode(ref)

    async def _write_block(self, data: bytes, digest: bytes) -> int:
        if self._begun is None:
            uploading = ObjectVersion(
                self.request.version_id, UPLOADING, null=self.request.null, created=self.created
            )
            self._begun = asyncio.create_task(self._write_version(uploading))
        if self.dedup is not None:
            write = self.dedup.write_block(data, digest, ref=self._ref(digest))
        else:
            write = self.replicator.write_block(data, digest, ref=self._ref(digest))
        # the block and the uploading version travel at once; the block counts as written
        # only once the version is on W replicas too
        acks, _ = await asyncio.gather(write, self._begun)
        self._written.add(digest)
        return acks

    async def run(self, body: AsyncIterable[bytes]) -> ObjectVersion:
        """Store ``body``; return the complete version once it is on W replicas. Raises
        what :func:`store_body` raises, or InsufficientReplicas (nothing visible)."""
        r = self.request
        chunker, largest_chunk = chunker_for(r.chunking, self.config)
        try:
            stored = await store_body(
                body,
                self._write_block,
                chunker=chunker,
                chunk_size=largest_chunk,
                inline_threshold=self.config.inline_threshold_bytes,
                depth=self.config.upload_pipeline_depth,
                max_bytes=self.config.max_object_size_bytes,
                content_length=r.content_length,
                expected_sha256=r.expected_sha256,
            )
            version = self._complete(stored)
            self._completing = True
            await self._write_version(version)
        except BaseException:
            if self._begun is not None:
                await asyncio.shield(self._abort())
            raise
        return version

    def _complete(self, stored: StoredBody) -> ObjectVersion:
        r = self.request
        return ObjectVersion(
            id=r.version_id,
            state=COMPLETE,
            null=r.null,
            size=stored.size,
            sha256=stored.sha256,
            content_type=r.content_type,
            meta=tuple(sorted({**r.meta, **(r.late_meta() if r.late_meta else {})}.items())),
            chunks=stored.chunks,
            inline=stored.inline,
            modified=time.time(),
            created=self.created,
            checksum=r.late_checksum() if r.late_checksum else None,
        )

    async def _abort(self) -> None:
        """Best effort: mark the version aborted and release the references written. When
        the abort fails after the complete version was sent, the references stay: that
        version may be complete on replicas the abort missed, and anti-entropy spreads it
        (a failed write may land); the lifecycle's sweep settles them later."""
        r = self.request
        try:
            await self._write_version(ObjectVersion(r.version_id, ABORTED))
        except DfsError as exc:
            log.debug("abort of an upload's version deferred to the lifecycle: %s", exc)
            if self._completing:
                return
        await release_refs(self.replicator, self._written, r.version_id, r.bucket, r.key)


async def release_refs(
    replicator: Replicator, digests: Iterable[bytes], version: str, bucket: str, key: str
) -> int:
    """Write the references of ``version`` to ``digests`` as deleted (quorum W each, all
    at once); returns how many were written. Best effort: a failure is left to the
    lifecycle sweep (:mod:`dfspeer.model.lifecycle`)."""
    schema = BlockRefsSchema()
    now = time.time()
    jobs = [
        replicator.write_record(
            BLOCK_REFS_TABLE,
            ref_key(d, version),
            schema.encode(BlockRef(d, version, bucket, key, now, deleted=True, deleted_at=now)),
        )
        for d in digests
    ]
    written = 0
    for result in await asyncio.gather(*jobs, return_exceptions=True):
        if isinstance(result, DfsError):
            log.debug("release of a reference deferred to the sweep: %s", result)
        elif isinstance(result, BaseException):
            log.warning("release of a reference failed: %r", result)
        else:
            written += 1
    return written
