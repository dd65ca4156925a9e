"""How much deduplication saves: this peer's ``dedup`` status object and its metrics.

Two savings, measured separately:

- **stored**: ``block_bytes`` (what this peer's blocks occupy) against ``logical_bytes``,
  the sum over referenced blocks of reference count x block size -- what the versions
  referencing them would occupy here if no block were shared (a block repeated inside one
  version holds one reference, so such repeats count once: an approximation from below).
  ``ratio`` = logical / referenced bytes (1.0 when nothing is shared). Computed from the
  ``refcounts`` sub-database in one read transaction, O(referenced blocks), at most once
  every ``ttl_s`` seconds (off the event loop for the status route).
- **sent**: the coordinator's counters (:class:`dfspeer.objects.dedup.DedupWriter`): block
  bytes not sent to remote replicas because they held the block, and block bytes sent.

Prometheus families (scrape time): ``dfspeer_dedup_bytes_skipped_total``,
``dfspeer_dedup_chunks_skipped_total``, ``dfspeer_upload_block_bytes_sent_total``,
``dfspeer_upload_chunks_sent_total``, ``dfspeer_dedup_has_calls_total`` (counters) and
``dfspeer_dedup_logical_bytes``, ``dfspeer_dedup_referenced_bytes``,
``dfspeer_dedup_ratio`` (gauges).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from dfspeer.blockstore import BlockStore
from dfspeer.objects.dedup import DedupWriter

_METRIC_NAMES = {
    "dedup_bytes_skipped": "dfspeer_dedup_bytes_skipped",
    "dedup_chunks_skipped": "dfspeer_dedup_chunks_skipped",
    "block_bytes_sent": "dfspeer_upload_block_bytes_sent",
    "chunks_sent": "dfspeer_upload_chunks_sent",
    "has_calls": "dfspeer_dedup_has_calls",
}


class DedupStats(Collector):
    """The ``dedup`` object of ``GET /v1/cluster/status`` and its Prometheus families
    (module docstring). ``clock``: monotonic seconds."""

    def __init__(
        self,
        store: BlockStore,
        writer: DedupWriter,
        *,
        ttl_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.store = store
        self.writer = writer
        self.ttl_s = ttl_s
        self.clock = clock
        self._lock = threading.Lock()
        self._scanned: tuple[int, int, int] = (0, 0, 0)
        self._scanned_at: float | None = None

    def _referenced(self, *, fresh: bool = False) -> tuple[int, int, int]:
        with self._lock:
            now = self.clock()
            if fresh or self._scanned_at is None or now - self._scanned_at >= self.ttl_s:
                self._scanned = self.store.referenced_bytes()
                self._scanned_at = now
            return self._scanned

    def status(self, *, fresh: bool = False) -> dict[str, Any]:
        """``{"block_bytes", "referenced_blocks", "referenced_bytes", "logical_bytes",
        "ratio", "dedup_bytes_skipped", "dedup_chunks_skipped", "block_bytes_sent",
        "chunks_sent", ...}`` (bytes; module docstring). ``fresh``: rescan now."""
        blocks, referenced, logical = self._referenced(fresh=fresh)
        doc: dict[str, Any] = {
            "block_bytes": self.store.stats().block_bytes,
            "referenced_blocks": blocks,
            "referenced_bytes": referenced,
            "logical_bytes": logical,
            "ratio": round(logical / referenced, 4) if referenced else 1.0,
        }
        doc.update(self.writer.status())
        return doc

    async def status_async(self, *, fresh: bool = True) -> dict[str, Any]:
        """:meth:`status` with the scan on a worker thread (for the status route)."""
        return await asyncio.to_thread(lambda: self.status(fresh=fresh))

    def collect(self) -> Iterable[Metric]:
        counters = self.writer.status()
        for key, doc in (
            ("dedup_bytes_skipped", "Block bytes not sent: every replica held them"),
            ("dedup_chunks_skipped", "Chunks written as references only"),
            ("block_bytes_sent", "Block bytes sent to remote replicas by uploads"),
            ("chunks_sent", "Chunks sent in full to their replicas"),
            ("has_calls", "blocks/has questions asked (batched)"),
        ):
            name = _METRIC_NAMES[key]
            yield CounterMetricFamily(name, doc, value=counters.get(key, 0))
        _, referenced, logical = self._referenced()
        yield GaugeMetricFamily(
            "dfspeer_dedup_logical_bytes",
            "Sum of reference count x size over this peer's referenced blocks",
            value=logical,
        )
        yield GaugeMetricFamily(
            "dfspeer_dedup_referenced_bytes",
            "Bytes of this peer's blocks that have references",
            value=referenced,
        )
        yield GaugeMetricFamily(
            "dfspeer_dedup_ratio",
            "Logical / referenced block bytes on this peer (1: nothing shared)",
            value=logical / referenced if referenced else 1.0,
        )
