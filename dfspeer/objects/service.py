"""ObjectService: the coordinator any peer runs for a client request.

Upload: validate, stream the body through the chunk pipeline (:mod:`.upload`), then write
the manifest (HLC version) to the key's replicas with quorum W. Nothing is visible until
that manifest write succeeds; a failed manifest write is retracted from the replicas that
took it. Reads: quorum-R manifest read (LWW), then chunks with prefetch (:mod:`.download`).
Delete: a tombstone version. Listing: :mod:`.listing`.

Version order across coordinators: before choosing a version, the coordinator reads the
key's current manifest (concurrently with the upload) and feeds its version to the hybrid
logical clock, so an overwrite always orders after the version it replaces even when the
coordinators' wall clocks disagree (Garage does the same with its timestamps).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterable, AsyncIterator

from dfspeer.blockstore import BlockStore
from dfspeer.cluster.replication import Replicator
from dfspeer.cluster.view import ClusterView
from dfspeer.config import PeerConfig
from dfspeer.errors import DfsError, NoSuchKey
from dfspeer.objects.download import ChunkStream, InlineStream, map_range, resolve_range
from dfspeer.objects.hlc import HybridLogicalClock
from dfspeer.objects.listing import ListResult, list_objects
from dfspeer.objects.manifest import (
    DEFAULT_CONTENT_TYPE,
    MANIFEST_TABLE,
    Manifest,
    ObjectInfo,
    placement_key,
    table_key,
)
from dfspeer.objects.names import validate_bucket, validate_key
from dfspeer.objects.upload import as_stream, store_body

log = logging.getLogger(__name__)


class ObjectService:
    """Objects over the cluster: put / get (ranged) / stat / delete / list.

    Sizes in bytes; ``modified`` in unix seconds. Every method may raise
    InsufficientReplicas when fewer than W (writes) or R (reads) replicas answer.
    """

    def __init__(
        self, config: PeerConfig, view: ClusterView, store: BlockStore, replicator: Replicator
    ) -> None:
        self.config = config
        self.view = view
        self.store = store
        self.replicator = replicator
        self.clock = HybridLogicalClock()

    # ------------------------------------------------------------------ manifests
    async def _read_manifest(self, bucket: str, key: str) -> Manifest | None:
        record = await self.replicator.read_record(
            MANIFEST_TABLE, placement_key(bucket, key), table_key(bucket, key)
        )
        if record is None:
            return None
        try:
            manifest = Manifest.from_record(record)
        except ValueError as exc:
            raise DfsError(f"stored manifest of {bucket}/{key} is unreadable: {exc}") from exc
        self.clock.observe_version(manifest.version)
        return manifest

    async def _write_manifest(self, manifest: Manifest) -> None:
        await self.replicator.write_record(
            MANIFEST_TABLE,
            placement_key(manifest.bucket, manifest.key),
            table_key(manifest.bucket, manifest.key),
            manifest.to_record(),
        )

    async def _live_manifest(self, bucket: str, key: str) -> Manifest:
        validate_bucket(bucket)
        validate_key(key)
        manifest = await self._read_manifest(bucket, key)
        if manifest is None or manifest.deleted:
            raise NoSuchKey(f"no object {bucket}/{key}")
        return manifest

    # ------------------------------------------------------------------ API
    async def put_object(
        self,
        bucket: str,
        key: str,
        body: AsyncIterable[bytes] | bytes,
        *,
        expected_sha256: str | None = None,
        content_length: int | None = None,
        content_type: str = DEFAULT_CONTENT_TYPE,
    ) -> ObjectInfo:
        """Store ``body`` as the new version of ``bucket/key``; return its info once the
        chunks and the manifest are on W replicas. Raises InvalidBucketName, InvalidKey,
        InvalidArgument, EntityTooLarge, IncompleteBody, BadDigest (the previous version
        stays), InsufficientReplicas (nothing becomes visible)."""
        validate_bucket(bucket)
        validate_key(key)
        # read the current version meanwhile: the HLC then orders this write after it
        prior = asyncio.create_task(self._read_manifest(bucket, key))
        try:
            stored = await store_body(
                as_stream(body),
                self.replicator.write_block,
                chunk_size=self.config.chunk_size_bytes,
                inline_threshold=self.config.inline_threshold_bytes,
                depth=self.config.upload_pipeline_depth,
                max_bytes=self.config.max_object_size_bytes,
                content_length=content_length,
                expected_sha256=expected_sha256,
            )
        except BaseException:
            prior.cancel()
            await asyncio.gather(prior, return_exceptions=True)
            raise
        try:
            await prior
        except DfsError as exc:  # best effort: the write itself decides (quorum W)
            log.debug("pre-read of %s/%s failed: %s", bucket, key, exc)
        manifest = Manifest(
            bucket=bucket,
            key=key,
            version=str(self.clock.next_version(self.view.self_id)),
            size=stored.size,
            sha256=stored.sha256,
            chunks=stored.chunks,
            inline=stored.inline,
            content_type=content_type or DEFAULT_CONTENT_TYPE,
            modified=time.time(),
        )
        await self._write_manifest(manifest)
        return manifest.info()

    async def stat_object(self, bucket: str, key: str) -> ObjectInfo:
        """Info of the live version. Raises NoSuchKey."""
        return (await self._live_manifest(bucket, key)).info()

    async def get_object(
        self, bucket: str, key: str, *, start: int = 0, end: int | None = None
    ) -> tuple[ObjectInfo, AsyncIterator[bytes]]:
        """Info and a stream of bytes ``[start, end)`` (``end`` None = the size; an end past
        the size is clamped). The first chunk is already fetched when this returns, so a
        missing chunk raises DataUnavailable here. Raises NoSuchKey, InvalidRange. The
        stream has ``aclose()``: call it when stopping early."""
        manifest = await self._live_manifest(bucket, key)
        lo, hi = resolve_range(manifest.size, start, end)
        if manifest.inline is not None or not manifest.chunks:
            return manifest.info(), InlineStream((manifest.inline or b"")[lo:hi])
        slices = map_range([n for _, n in manifest.chunks], lo, hi)
        stream = ChunkStream(
            [d for d, _ in manifest.chunks],
            slices,
            self.replicator.read_block,
            prefetch=self.config.download_prefetch_chunks,
        )
        await stream.start()
        return manifest.info(), stream

    async def delete_object(self, bucket: str, key: str) -> None:
        """Write a tombstone over the live version (no-op if there is none)."""
        validate_bucket(bucket)
        validate_key(key)
        current = await self._read_manifest(bucket, key)
        if current is None or current.deleted:
            return
        version = str(self.clock.next_version(self.view.self_id))
        await self._write_manifest(Manifest.tombstone(bucket, key, version, time.time()))

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
