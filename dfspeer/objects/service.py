"""ObjectService: the coordinator any peer runs for a client request.

Objects live in the replicated ``objects`` table (:mod:`dfspeer.model.objects`): one entry
per key holding its versions. Upload: :mod:`.versioned_put` (``uploading`` with block
references, then ``complete``); nothing is visible until the complete version is on W
replicas. Reads (:mod:`.service_reads`): quorum-R read of the entry (merged), then chunks
with prefetch (:mod:`.download`), the first ones fetched from this peer's copy of the entry
while the quorum read runs (:mod:`.early_read`). Delete: in a bucket that keeps versions, a
delete marker; otherwise a null delete marker that replaces the null version (whose blocks
are then released), written even when the read sees nothing live; with a version id, that
version is aborted for good. Listing: :mod:`.listing`.

Version order across coordinators: before choosing a version id, the coordinator reads
the key's entry and feeds its newest version id to the hybrid logical clock, so a write
orders after every version it could see even when wall clocks disagree (Garage does the
same with its timestamps).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterable, Callable, Mapping

from dfspeer.blockstore import BlockStore
from dfspeer.cluster.replication import Replicator
from dfspeer.cluster.rpc_base import MAX_HAS_DIGESTS
from dfspeer.cluster.view import ClusterView
from dfspeer.config import PeerConfig
from dfspeer.errors import DfsError, NoSuchVersion
from dfspeer.model.block_refs import BlockRef, BlockRefsSchema
from dfspeer.model.objects import (
    ABORTED,
    COMPLETE,
    DEFAULT_CONTENT_TYPE,
    OBJECTS_TABLE,
    ObjectEntry,
    ObjectsSchema,
    ObjectVersion,
    table_key,
)
from dfspeer.objects.buckets import BucketService
from dfspeer.objects.dedup import DedupWriter
from dfspeer.objects.hlc import HybridLogicalClock
from dfspeer.objects.info import ObjectInfo, VersionInfo
from dfspeer.objects.listing import ListResult, VersionPage, list_objects, list_versions
from dfspeer.objects.names import validate_bucket, validate_key
from dfspeer.objects.service_reads import ObjectReads
from dfspeer.objects.upload import as_stream
from dfspeer.objects.usage import Footprint, bucket_footprint
from dfspeer.objects.versioned_put import PutRequest, VersionedPut

log = logging.getLogger(__name__)


class ObjectService(ObjectReads):
    """Objects and their versions over the cluster: put / get (ranged) / stat / delete /
    list, and the buckets (:attr:`buckets`).

    Sizes in bytes; ``modified`` in unix seconds. Every method may raise
    InsufficientReplicas when fewer than W (writes) or R (reads) replicas answer.
    ``clock``: unix seconds, the physical part of the version HLC (a simulation passes
    its virtual clock).
    """

    def __init__(
        self,
        config: PeerConfig,
        view: ClusterView,
        store: BlockStore,
        replicator: Replicator,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.view = view
        self.store = store
        self.replicator = replicator
        self.clock = HybridLogicalClock(clock)
        self.schema = ObjectsSchema()
        self.buckets = BucketService(
            replicator, self.clock, view.self_id, default_chunking=config.default_chunking
        )
        self.dedup = DedupWriter(replicator, max_batch=MAX_HAS_DIGESTS)
        self._background: set[asyncio.Task[None]] = set()

    async def drain(self) -> None:
        """Wait for the background aborts of superseded versions started so far."""
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    async def close(self) -> None:
        """Cancel background work (the lifecycle pass finishes what is cut short)."""
        for task in list(self._background):
            task.cancel()
        await asyncio.gather(*self._background, return_exceptions=True)
        await self.dedup.close()

    # ------------------------------------------------------------------ entries
    async def write_version(self, bucket: str, key: str, version: ObjectVersion) -> None:
        """Merge ``version`` into the entry of ``bucket/key`` (quorum W)."""
        await self._write_version(bucket, key, version)

    def ref_record(
        self, digest: bytes, version: str, bucket: str, key: str, created: float
    ) -> dict[str, object]:
        """The live ``block_refs`` record of ``version`` for block ``digest``."""
        return BlockRefsSchema().encode(BlockRef(digest, version, bucket, key, created))

    async def _write_version(self, bucket: str, key: str, version: ObjectVersion) -> None:
        record = self.schema.encode(ObjectEntry(bucket, key, (version,)))
        await self.replicator.write_record(OBJECTS_TABLE, table_key(bucket, key), record)

    # ------------------------------------------------------------------ writes
    async def put_object(
        self,
        bucket: str,
        key: str,
        body: AsyncIterable[bytes] | bytes,
        *,
        expected_sha256: str | None = None,
        content_length: int | None = None,
        content_type: str = DEFAULT_CONTENT_TYPE,
        meta: Mapping[str, str] | None = None,
        late_meta: Callable[[], Mapping[str, str]] | None = None,
        late_checksum: Callable[[], tuple[str, str] | None] | None = None,
    ) -> ObjectInfo:
        """Store ``body`` as a new version of ``bucket/key`` (creating the bucket if it does
        not exist); return its info once its chunks and the complete version are on W
        replicas. ``meta``: user metadata; ``late_meta()``, called once the body is stored,
        adds entries to it; ``late_checksum()``, called then too, gives the full-object
        checksum the caller checked (stored with the version), or None. Raises
        InvalidBucketName, InvalidKey, InvalidArgument, EntityTooLarge, IncompleteBody,
        BadDigest (the previous version stays), InsufficientReplicas (nothing becomes
        visible)."""
        validate_bucket(bucket)
        validate_key(key)
        info, prior = await asyncio.gather(self.buckets.ensure(bucket), self.observe(bucket, key))
        request = PutRequest(
            bucket=bucket,
            key=key,
            version_id=str(self.clock.next_version(self.view.self_id)),
            null=not info.keeps_versions,
            content_type=content_type or DEFAULT_CONTENT_TYPE,
            meta=dict(meta or {}),
            late_meta=late_meta,
            late_checksum=late_checksum,
            expected_sha256=expected_sha256,
            content_length=content_length,
            chunking=info.chunking,
        )
        put = VersionedPut(self.config, self.replicator, request, dedup=self.dedup)
        version = await put.run(as_stream(body))
        self.supersede(bucket, key, prior, version)
        return ObjectInfo.of(bucket, key, version)

    async def observe(self, bucket: str, key: str) -> ObjectEntry | None:
        """The key's entry, its newest version fed to the clock (best effort: None when
        the read fails; the write decides)."""
        try:
            return await self._read_entry(bucket, key)
        except DfsError as exc:
            log.debug("pre-read of %s/%s failed: %s", bucket, key, exc)
            return None

    def supersede(
        self, bucket: str, key: str, prior: ObjectEntry | None, new: ObjectVersion
    ) -> None:
        """In the background, abort the null versions ``new`` superseded (releasing their
        blocks); what this misses, the lifecycle pass aborts."""
        if prior is None or not new.null:
            return
        old = ObjectEntry(bucket, key, (*prior.versions, new)).superseded()
        if not old:
            return
        entry = ObjectEntry(bucket, key, tuple(v.aborted() for v in old))

        async def run() -> None:
            try:
                record = self.schema.encode(entry)
                await self.replicator.write_record(OBJECTS_TABLE, table_key(bucket, key), record)
            except DfsError as exc:
                log.debug("abort of superseded versions of %s/%s deferred: %s", bucket, key, exc)

        task = asyncio.create_task(run())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def delete_object(
        self, bucket: str, key: str, *, version: str | None = None
    ) -> str | None:
        """Delete ``bucket/key``: without ``version``, add a delete marker (its version id
        is returned; None when an unversioned key had nothing to delete); with one, remove
        that version for good (returned). Raises NoSuchVersion for an unknown version.

        In an existing bucket that does not keep versions, the null delete marker is
        written even when the quorum read sees no live version: a failed put may have left
        a null version on a replica outside that quorum, and only a newer null version (the
        marker) keeps it hidden once anti-entropy spreads it. A lone marker is a tombstone,
        purged after ``tombstone_grace_s`` (:mod:`dfspeer.cluster.tombstones`)."""
        validate_bucket(bucket)
        validate_key(key)
        entry = await self._read_entry(bucket, key)
        if version is not None:
            found = entry.get(version) if entry is not None else None
            if found is None or found.state == ABORTED:
                raise NoSuchVersion(f"{bucket}/{key} has no version {version}")
            await self._write_version(bucket, key, ObjectVersion(version, ABORTED))
            return version
        info = await self.buckets.read(bucket, cached=True)
        if info is None and entry is None:  # a cached "no such bucket" may be stale
            info = await self.buckets.read(bucket)
            if info is None:
                return None  # no bucket, no trace of the key: no marker to write
        keeps = info is not None and info.keeps_versions
        visible = keeps or (entry is not None and entry.live() is not None)
        now = time.time()
        marker = ObjectVersion(
            str(self.clock.next_version(self.view.self_id)),
            COMPLETE,
            null=not keeps,
            delete_marker=True,
            modified=now,
            created=now,
        )
        await self._write_version(bucket, key, marker)
        self.supersede(bucket, key, entry, marker)
        return marker.id if visible else None

    # ------------------------------------------------------------------ listings
    async def list_object_versions(self, bucket: str, key: str) -> list[VersionInfo]:
        """Every version of ``bucket/key`` (delete markers too), newest first; [] if none."""
        validate_bucket(bucket)
        validate_key(key)
        entry = await self._read_entry(bucket, key)
        return VersionInfo.listing(key, entry.listed()) if entry is not None else []

    async def list_objects(
        self,
        bucket: str,
        *,
        prefix: str = "",
        delimiter: str = "",
        limit: int = 1000,
        start_after: str = "",
    ) -> ListResult:
        """A page of live objects and common prefixes (see :mod:`.listing`)."""
        validate_bucket(bucket)
        return await list_objects(
            self.replicator,
            bucket,
            prefix=prefix,
            delimiter=delimiter,
            limit=limit,
            start_after=start_after,
        )

    async def list_versions(
        self, bucket: str, *, prefix: str = "", limit: int = 1000, start_after: str = ""
    ) -> VersionPage:
        """A page of every version of every key under ``prefix`` (see :mod:`.listing`)."""
        validate_bucket(bucket)
        return await list_versions(
            self.replicator, bucket, prefix=prefix, limit=limit, start_after=start_after
        )

    async def bucket_usage(self, bucket: str) -> tuple[int, int]:
        """``(objects, bytes)``: live objects of ``bucket`` and their logical size."""
        objects = size = 0
        cursor = ""
        while True:
            page = await self.list_objects(bucket, limit=1000, start_after=cursor)
            objects += len(page.objects)
            size += sum(o.size for o in page.objects)
            if not page.is_truncated or page.next_start_after is None:
                return objects, size
            cursor = page.next_start_after

    async def bucket_footprint(self, bucket: str) -> Footprint:
        """Logical bytes of ``bucket``'s versions vs the distinct chunks they use (see
        :mod:`.usage`)."""
        validate_bucket(bucket)
        return await bucket_footprint(self.replicator, bucket)

    async def bucket_is_empty(self, bucket: str) -> bool:
        """True if no key of ``bucket`` holds a version or a delete marker a client made
        (the null delete markers of plain deletes in an unversioned bucket do not count:
        they are tombstones, purged after the grace)."""
        cursor = ""
        while True:
            page = await self.list_versions(bucket, limit=1000, start_after=cursor)
            if any(not (v.delete_marker and v.null) for v in page.versions):
                return False
            if not page.is_truncated or page.next_start_after is None:
                return True
            cursor = page.next_start_after
