"""The block manager: the only code that deletes blocks.

After Garage's block manager (``block/manager.rs``, ``BLOCK_GC_DELAY``): a block whose
reference count (kept beside it by the ``block_refs`` table's ``updated()`` hook, see
:mod:`dfspeer.blockstore.refcount`) is 0 becomes deletable ``block_gc_grace_s`` after it
reached 0. A collection pass re-checks each candidate inside one write transaction (the
block store's writer is the lock: no reference can appear between the check and the
delete) and deletes it only if it is still unreferenced since then and no hinted-handoff
hint pins this peer's copy. A block referenced again inside the grace lives on.

Other parts that used to delete blocks now leave them to it: a stand-in's copy of a
delivered hint and a handed-off partition's blocks lose their references (or never had
any here) and are collected after the grace. The passes are driven by
:class:`dfspeer.model.lifecycle.ObjectLifecycle`, which also releases references first.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

import lmdb
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from dfspeer.blockstore import BlockStore
from dfspeer.cluster.handoff import HINTS_TABLE, block_hint_prefix

PAGE = 512
"""Candidates re-checked per write transaction."""


class BlockManager:
    """Collects unreferenced blocks of one peer's store (module docstring).

    ``grace_s``: seconds a block stays unreferenced before it may go; ``clock``: unix
    seconds. Counters: ``blocks_deleted``, ``bytes_reclaimed``."""

    def __init__(
        self, store: BlockStore, *, grace_s: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.store = store
        self.grace_s = grace_s
        self.clock = clock
        self.hints = store.table(HINTS_TABLE)
        self.counters: Counter[str] = Counter()
        self.last_pass: float | None = None

    async def collect_once(self) -> int:
        """Delete blocks unreferenced for longer than the grace; returns how many."""
        horizon_ms = int((self.clock() - self.grace_s) * 1000)
        deleted = 0
        while found := self.store.gc_candidates(horizon_ms, PAGE):
            n, freed = await self.store.collect(found, horizon_ms, self._pinned)
            deleted += n
            self.counters["blocks_deleted"] += n
            self.counters["bytes_reclaimed"] += freed
            if len(found) < PAGE or n == 0:
                break
        self.last_pass = self.clock()
        return deleted

    def _pinned(self, txn: lmdb.Transaction[memoryview], digest: bytes) -> bool:
        """True while a hinted-handoff hint still needs this stand-in's copy."""
        return self.hints.has_prefix(block_hint_prefix(digest), txn)

    async def recount(self, counts: Mapping[bytes, int]) -> int:
        """Replace every reference count by ``counts`` (digest -> live references);
        returns how many changed."""
        return await self.store.rebuild_refcounts(counts)

    def status(self) -> dict[str, Any]:
        """Block fields of the ``"gc"`` object of ``GET /v1/cluster/status``."""
        horizon_ms = int((self.clock() - self.grace_s) * 1000)
        deletable = self.store.gc_candidates(horizon_ms, 10_000)
        return {
            "grace_s": self.grace_s,
            "blocks_unreferenced": self.store.gc_queued(),
            "blocks_deletable": len(deletable),
            "bytes_deletable": sum(self.store.block_size(d) for _, d in deletable),
            "blocks_deleted": self.counters["blocks_deleted"],
            "bytes_reclaimed": self.counters["bytes_reclaimed"],
            "last_pass": self.last_pass,
        }


class GcMetrics(Collector):
    """Prometheus collector of the ``"gc"`` status (read at scrape time)."""

    def __init__(self, status: Callable[[], Mapping[str, Any]]) -> None:
        self.status = status

    def collect(self) -> list[Metric]:
        s = self.status()
        out: list[Metric] = []
        for name, doc, key in (
            ("dfspeer_gc_blocks_deleted", "Blocks deleted by garbage collection", "blocks_deleted"),
            ("dfspeer_gc_bytes_reclaimed", "Bytes freed by garbage collection", "bytes_reclaimed"),
            ("dfspeer_gc_versions_aborted", "Expired or superseded versions", "versions_aborted"),
            ("dfspeer_gc_references_released", "Block references released", "references_released"),
        ):
            out.append(CounterMetricFamily(name, doc, value=s.get(key, 0)))
        for name, doc, key in (
            ("dfspeer_gc_blocks_unreferenced", "Blocks with no reference", "blocks_unreferenced"),
            (
                "dfspeer_gc_blocks_deletable",
                "Blocks unreferenced past the grace",
                "blocks_deletable",
            ),
            ("dfspeer_gc_bytes_deletable", "Bytes unreferenced past the grace", "bytes_deletable"),
            ("dfspeer_gc_releases_pending", "Block reference releases queued", "releases_pending"),
        ):
            out.append(GaugeMetricFamily(name, doc, value=s.get(key, 0)))
        return out
