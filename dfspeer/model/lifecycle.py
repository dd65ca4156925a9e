"""The object lifecycle around garbage collection: release, expire, sweep, collect.

A pass runs every ``block_gc_interval_s``; it expires first, so that what it aborts is
released and (with a zero grace) collected in the same pass:

1. **Release** — the ``objects`` table's ``updated()`` hook queues, in the local
   ``gc_releases`` table and in the same transaction as the entry, every block reference of
   a version that lost its data (overwritten null version, deleted version, aborted
   upload). The pass writes each as a deleted ``block_refs`` entry with quorum W to the
   block's replicas, then drops it from the queue (kept for the next pass on failure).
   Every replica of the object does this; the writes are idempotent.
   A release is acted on only once its version's abort cannot be undone: the version is
   aborted on at least W of its key's replicas (an abort that failed its quorum is
   retracted from the replicas that took it, and the version comes back ``complete``), or
   no replica of the key holds it live any more. A release whose version is live again
   on some replica and aborted on none is withdrawn; anything else waits for a later pass.
2. **Expire** — a version left ``uploading`` for ``upload_expiry_s`` (its coordinator
   died) is aborted, and so is a superseded null version whose coordinator did not abort
   it (:meth:`ObjectEntry.superseded`), by the first replica of its key — superseded by a
   version known acknowledged only: ``complete`` on at least W of the key's replicas and
   older than ``upload_expiry_s`` (:func:`~dfspeer.model.replica_states.acknowledged_null`;
   a put that failed its quorum can leave its complete version on one replica, or on W
   whose answers were lost, and its coordinator then aborts it: what it seems to
   supersede may be the last acknowledged write).
3. **Sweep** — a live reference older than ``upload_expiry_s`` that was never confirmed is
   checked against its object, by the first replica of its block: a complete version with
   data confirms it; an aborted or missing one deletes it, once settled as for a release
   (aborted on W replicas, or live on none). This catches references whose
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
    ObjectVersion,
    table_key,
)
from dfspeer.model.replica_states import (
    RELEASE,
    WITHDRAW,
    ReplicaEntries,
    acknowledged_null,
    read_replica_entries,
    release_verdict,
)

log = logging.getLogger(__name__)

PAGE = 512
"""Entries read per page by a pass."""
RELEASE_CONCURRENCY = 32
"""Reference releases in flight at once."""


def _release_of(key: bytes, value: Any) -> tuple[bytes, str]:
    """(objects key, version id) of the queued release ``key`` -> ``value``."""
    bucket, name = str(value.get("bucket", "")), str(value.get("key", ""))
    return table_key(bucket, name), key[32:].decode(errors="replace")


def _expired_uploads(entry: ObjectEntry, horizon: float) -> list[ObjectVersion]:
    """Versions of ``entry`` left uploading since before ``horizon`` (unix s), except those
    of resumable upload sessions (they expire with their session)."""
    return [
        v for v in entry.versions if v.state == UPLOADING and v.created < horizon and not v.upload
    ]


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
    ``references_released``, ``releases_withdrawn`` (their abort was retracted),
    ``versions_aborted`` (expired uploads and superseded null versions), ``refs_confirmed``,
    ``refs_swept``, ``pass_failures``."""

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
        """Write every queued release whose version's abort is settled as a deleted
        reference (quorum W, ``RELEASE_CONCURRENCY`` at once), drop those whose abort was
        undone, keep the rest for a later pass (module docstring); returns how many were
        written."""
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
            verdicts = await self._release_verdicts(page, slots)
            go = [(k, v) for k, v in page if verdicts[_release_of(k, v)] == RELEASE]
            undone = [k for k, v in page if verdicts[_release_of(k, v)] == WITHDRAW]
            released += sum(await asyncio.gather(*(release(k, v) for k, v in go)))
            for key in undone:
                await self.releases.delete(key)
            self.counters["releases_withdrawn"] += len(undone)
        self.counters["references_released"] += released
        return released

    async def _release_verdicts(
        self, page: list[tuple[bytes, Any]], slots: asyncio.Semaphore
    ) -> dict[tuple[bytes, str], str]:
        """(objects key, version id) -> :func:`release_verdict` for every version with a
        release in ``page``; one read of the replicas per objects key."""
        wanted = {_release_of(k, v) for k, v in page}
        found: dict[bytes, ReplicaEntries] = {}

        async def read(key: bytes) -> None:
            async with slots:
                found[key] = await self._replica_entries(key)

        await asyncio.gather(*(read(key) for key in {key for key, _ in wanted}))
        w = self.replicator.write_quorum
        return {(key, vid): release_verdict(found[key], vid, w) for key, vid in wanted}

    async def _replica_entries(self, key: bytes) -> ReplicaEntries:
        return await read_replica_entries(self.view, self.store, self.replicator.rpc, key)

    # ------------------------------------------------------------------ expire
    def _first_replica(self, placed_by: bytes) -> bool:
        replicas = self.view.replicas(self.view.partition_of(placed_by))
        return bool(replicas) and replicas[0] == self.view.self_id

    async def expire_once(self) -> int:
        """Abort versions left uploading longer than ``upload_expiry_s`` and null versions
        superseded by an acknowledged one (for the keys this peer is the first replica
        of); returns how many."""
        horizon = self.clock() - self.upload_expiry_s
        expired = 0
        for key, record in self.store.table(OBJECTS_TABLE).iter_items(page=PAGE):
            try:
                entry = self.objects_schema.decode(record)
            except ValueError:
                continue
            stale = _expired_uploads(entry, horizon)
            if not (stale or entry.superseded()) or not self._first_replica(key):
                continue
            if entry.superseded():
                stale += await self._superseded(key, entry, horizon)
            if not stale:
                continue
            aborted = ObjectEntry(entry.bucket, entry.key, tuple(v.aborted() for v in stale))
            try:
                await self.replicator.write_record(
                    OBJECTS_TABLE, key, self.objects_schema.encode(aborted)
                )
                expired += len(stale)
                self.counters["versions_aborted"] += len(stale)
            except DfsError as exc:
                log.debug("expiry of versions of %s deferred: %s", key.hex()[:16], exc)
        return expired

    async def _superseded(
        self, key: bytes, entry: ObjectEntry, horizon: float
    ) -> list[ObjectVersion]:
        """The null versions of ``entry``, not aborted, older than the newest null version
        known acknowledged (:func:`acknowledged_null`: complete on at least W of the key's
        replicas now, and written before ``horizon``)."""
        local = ReplicaEntries(1, (entry,))
        if not any(v.id < acknowledged_null(local, 1, horizon) for v in entry.superseded()):
            return []  # nothing here is old enough to count: no need to ask the replicas
        found = await self._replica_entries(key)
        newest = acknowledged_null(found, self.replicator.write_quorum, horizon)
        return [v for v in entry.versions if v.null and v.state != ABORTED and v.id < newest]

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
        if not keep:  # the quorum read may see an abort that is being retracted
            found = await self._replica_entries(table_key(ref.bucket, ref.key))
            if release_verdict(found, ref.version, self.replicator.write_quorum) != RELEASE:
                return 0  # not settled: a later pass decides
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
