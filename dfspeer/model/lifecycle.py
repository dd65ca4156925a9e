"""The object lifecycle around garbage collection: release, expire, sweep, collect.

A pass runs every ``block_gc_interval_s``; it expires first, so that what it aborts is
released and (with a zero grace) collected in the same pass:

1. **Release** — the ``objects`` table's ``updated()`` hook queues, in the local
   ``gc_releases`` table and in the same transaction as the entry, every block reference of
   a version that lost its data (overwritten null version, deleted version, aborted
   upload). The pass writes each as a deleted ``block_refs`` entry with quorum W to the
   block's replicas, then drops it from the queue (kept for the next pass on failure).
   Every replica of the object does this; the writes are idempotent.
2. **Expire** — a version left ``uploading`` for ``upload_expiry_s`` (its coordinator
   died) is aborted, and so is a superseded null version whose coordinator did not abort
   it (:meth:`ObjectEntry.superseded`), by the first replica of its key.
3. **Sweep** — a live reference older than ``upload_expiry_s`` that was never confirmed is
   checked against its object, by the first replica of its block: a complete version with
   data confirms it; an aborted or missing one deletes it. This catches references whose
   release was never queued (an upload whose coordinator died, a version aborted on a
   replica that never saw its chunk list).
4. **Collect** — :meth:`dfspeer.cluster.blockmanager.BlockManager.collect_once` deletes
   the blocks left unreferenced for longer than ``block_gc_grace_s``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

from dfspeer.blockstore import BlockStore
from dfspeer.cluster.blockmanager import BlockManager
from dfspeer.cluster.replication import Replicator
from dfspeer.cluster.view import ClusterView
from dfspeer.config import PeerConfig
from dfspeer.errors import DfsError
from dfspeer.model.block_refs import BLOCK_REFS_TABLE, BlockRef, BlockRefsSchema
from dfspeer.model.objects import (
    ABORTED,
    OBJECTS_TABLE,
    RELEASES_TABLE,
    UPLOADING,
    ObjectEntry,
    ObjectsSchema,
    table_key,
)

log = logging.getLogger(__name__)

PAGE = 512
"""Entries read per page by a pass."""
RELEASE_CONCURRENCY = 32
"""Reference releases in flight at once."""


def _pages(items: Iterator[tuple[bytes, Any]], size: int) -> Iterator[list[tuple[bytes, Any]]]:
    page: list[tuple[bytes, Any]] = []
    for item in items:
        page.append(item)
        if len(page) >= size:
            yield page
            page = []
    if page:
        yield page


class ObjectLifecycle:
    """Release, expire, sweep and collect for one peer (module docstring). ``clock``: unix
    seconds. ``extra_passes``: coroutines run with the expiry (each returns how many things
    it expired), e.g. the expiry of idle upload sessions. Counters:
    ``references_released``, ``versions_aborted`` (expired uploads and superseded null
    versions), ``refs_confirmed``, ``refs_swept``, ``pass_failures``."""

    def __init__(
        self,
        config: PeerConfig,
        view: ClusterView,
        store: BlockStore,
        replicator: Replicator,
        blocks: BlockManager,
        *,
        extra_passes: Sequence[Callable[[], Awaitable[int]]] = (),
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.view = view
        self.store = store
        self.replicator = replicator
        self.blocks = blocks
        self.extra_passes = tuple(extra_passes)
        self.interval_s = config.block_gc_interval_s
        self.upload_expiry_s = config.upload_expiry_s
        self.clock = clock
        self.refs_schema = BlockRefsSchema()
        self.objects_schema = ObjectsSchema()
        self.releases = store.table(RELEASES_TABLE)
        self.counters: Counter[str] = Counter()
        self._lock = asyncio.Lock()

    async def run(self) -> None:
        """Passes forever, every ``interval_s``."""
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.run_pass()
            except Exception:
                self.counters["pass_failures"] += 1
                log.exception("garbage collection pass failed")

    async def run_pass(self) -> dict[str, int]:
        """One pass of every duty, in order; what each did."""
        async with self._lock:
            expired = await self.expire_once()
            for extra in self.extra_passes:  # e.g. resumable upload sessions that expired
                expired += await extra()
            return {
                "expired": expired,
                "released": await self.release_once(),
                "swept": await self.sweep_once(),
                "deleted": await self.blocks.collect_once(),
            }

    # ------------------------------------------------------------------ release
    async def release_once(self) -> int:
        """Write every queued release as a deleted reference (quorum W, ``RELEASE_CONCURRENCY``
        at once); returns how many."""
        released = 0
        slots = asyncio.Semaphore(RELEASE_CONCURRENCY)

        async def release(key: bytes, value: Any) -> int:
            ref = BlockRef(
                digest=key[:32],
                version=key[32:].decode(errors="replace"),
                bucket=str(value.get("bucket", "")),
                key=str(value.get("key", "")),
                created=float(value.get("queued_ms", 0)) / 1000.0,
                deleted=True,
                deleted_at=self.clock(),
            )
            async with slots:
                try:
                    record = self.refs_schema.encode(ref)
                    await self.replicator.write_record(BLOCK_REFS_TABLE, key, record)
                except DfsError as exc:
                    log.debug("release of %s deferred: %s", key.hex()[:16], exc)
                    return 0
                await self.releases.delete(key)
                return 1

        for page in _pages(self.releases.iter_items(page=PAGE), PAGE):
            released += sum(await asyncio.gather(*(release(k, v) for k, v in page)))
        self.counters["references_released"] += released
        return released

    # ------------------------------------------------------------------ expire
    def _first_replica(self, placed_by: bytes) -> bool:
        replicas = self.view.replicas(self.view.partition_of(placed_by))
        return bool(replicas) and replicas[0] == self.view.self_id

    async def expire_once(self) -> int:
        """Abort versions left uploading longer than ``upload_expiry_s`` (for the keys this
        peer is the first replica of); returns how many."""
        horizon = self.clock() - self.upload_expiry_s
        expired = 0
        for key, record in self.store.table(OBJECTS_TABLE).iter_items(page=PAGE):
            stale = self._stale_uploads(record, horizon)
            if stale is None or not self._first_replica(key):
                continue
            try:
                await self.replicator.write_record(
                    OBJECTS_TABLE, key, self.objects_schema.encode(stale)
                )
                expired += len(stale.versions)
                self.counters["versions_aborted"] += len(stale.versions)
            except DfsError as exc:
                log.debug("expiry of uploads of %s deferred: %s", key.hex()[:16], exc)
        return expired

    def _stale_uploads(self, record: Any, horizon: float) -> ObjectEntry | None:
        try:
            entry = self.objects_schema.decode(record)
        except ValueError:
            return None
        old = [
            v
            for v in entry.versions
            if v.state == UPLOADING and v.created < horizon and not v.upload  # sessions expire
        ]
        old += entry.superseded()
        aborted = tuple(v.aborted() for v in old)
        return ObjectEntry(entry.bucket, entry.key, aborted) if aborted else None

    # ------------------------------------------------------------------ sweep
    async def sweep_once(self) -> int:
        """Confirm or delete unconfirmed references older than ``upload_expiry_s`` (for
        the blocks this peer is the first replica of); returns how many were deleted."""
        horizon = self.clock() - self.upload_expiry_s
        swept = 0
        for key, record in self.store.table(BLOCK_REFS_TABLE).iter_items(page=PAGE):
            try:
                ref = self.refs_schema.decode(record)
            except ValueError:
                continue
            if ref.deleted or ref.confirmed or ref.created >= horizon:
                continue
            if not self._first_replica(key[:32]):
                continue
            try:
                swept += await self._settle(key, ref)
            except DfsError as exc:
                log.debug("sweep of reference %s deferred: %s", key.hex()[:16], exc)
        return swept

    async def _settle(self, key: bytes, ref: BlockRef) -> int:
        record = await self.replicator.read_record(OBJECTS_TABLE, table_key(ref.bucket, ref.key))
        entry = self.objects_schema.decode(record) if record is not None else None
        version = entry.get(ref.version) if entry is not None else None
        if version is not None and version.state == UPLOADING:
            return 0  # expire_once aborts it first; settled on a later pass
        keep = version is not None and version.state != ABORTED and version.is_data
        settled = BlockRef(
            ref.digest,
            ref.version,
            ref.bucket,
            ref.key,
            ref.created,
            deleted=not keep,
            deleted_at=0.0 if keep else self.clock(),
            confirmed=keep,
        )
        await self.replicator.write_record(BLOCK_REFS_TABLE, key, self.refs_schema.encode(settled))
        self.counters["refs_confirmed" if keep else "refs_swept"] += 1
        return 0 if keep else 1

    # ------------------------------------------------------------------ recount
    async def recount(self) -> dict[str, int]:
        """Rebuild every reference count from the local ``block_refs`` table.
        Returns ``{"references", "blocks", "changed"}``."""
        counts: dict[bytes, int] = {}
        references = 0
        for key, record in self.store.table(BLOCK_REFS_TABLE).iter_items(page=PAGE):
            try:
                live = self.refs_schema.decode(record).live
            except ValueError:
                continue
            if live:
                counts[key[:32]] = counts.get(key[:32], 0) + 1
                references += 1
        changed = await self.blocks.recount(counts)
        return {"references": references, "blocks": len(counts), "changed": changed}

    # ------------------------------------------------------------------ status
    def status(self) -> dict[str, Any]:
        """The ``"gc"`` object of ``GET /v1/cluster/status``: the block manager's fields
        plus ``releases_pending``, ``references_released``, ``versions_aborted``,
        ``references_swept``."""
        doc = self.blocks.status()
        doc.update(
            releases_pending=self.releases.count(),
            references_released=self.counters["references_released"],
            versions_aborted=self.counters["versions_aborted"],
            references_swept=self.counters["refs_swept"],
        )
        return doc
