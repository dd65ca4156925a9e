"""Maintenance: hinted handoff, block read repair, scrub and tombstone purge of one peer.

:class:`Maintenance` builds the four parts over the peer's view, store, RPC client and
replicator (plugging sloppy quorum and block read repair into the replicator), runs their
background tasks, reports their state for ``GET /v1/cluster/status``'s ``"repair"`` object
(:meth:`Maintenance.status`) and exports Prometheus metrics (:class:`MaintenanceMetrics`).
Anti-entropy and ring changes live in :mod:`.repair`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from dfspeer.blockstore import BlockStore
from dfspeer.cluster.handoff import HintedHandoff, HintStore
from dfspeer.cluster.quorum import cancel_all
from dfspeer.cluster.readrepair import BlockRepair
from dfspeer.cluster.replication import Replicator
from dfspeer.cluster.rpc import PeerRpcClient
from dfspeer.cluster.scrub import Scrubber
from dfspeer.cluster.tombstones import TombstonePurger
from dfspeer.cluster.view import ClusterView
from dfspeer.config import PeerConfig
from dfspeer.gossip import EventKind, MemberEvent

log = logging.getLogger(__name__)


class Maintenance:
    """The background repair parts of one peer (see the module docstring).

    The replicated tables (hints, tombstone purge) are the replicator's.
    Construction plugs :attr:`handoff` (if ``config.hinted_handoff``) and
    :attr:`block_repair` into ``replicator``; :meth:`start` starts hint delivery, scrub
    (if ``scrub_rate_bytes_per_s`` > 0) and tombstone purge; :meth:`stop` cancels them.
    ``clock``: unix seconds for hints, read repair, scrub and tombstone purge (a simulation
    passes its virtual clock).
    """

    def __init__(
        self,
        config: PeerConfig,
        view: ClusterView,
        store: BlockStore,
        rpc: PeerRpcClient,
        replicator: Replicator,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.replicator = replicator
        tables = replicator.tables
        self.hints = HintStore(store, max_hints=config.max_hints, tables=tables, clock=clock)
        self.handoff = HintedHandoff(config, view, self.hints, rpc, fetch=replicator.read_block)
        self.block_repair = BlockRepair(view, store, rpc, clock=clock)
        self.scrubber = Scrubber(
            store,
            self.block_repair,
            replicator.read_block,
            rate_bytes_per_s=config.scrub_rate_bytes_per_s,
            interval_s=config.scrub_interval_s,
            clock=clock,
        )
        self.purger = TombstonePurger(
            view,
            store,
            rpc,
            grace_s=config.tombstone_grace_s,
            interval_s=config.tombstone_purge_interval_s,
            tables=tables,
            clock=clock,
        )
        if config.hinted_handoff:
            replicator.handoff = self.handoff
        replicator.block_repair = self.block_repair
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        """Start the background tasks (idempotent per instance)."""
        if self._tasks:
            return
        self._tasks.add(asyncio.create_task(self.handoff.run(), name="dfspeer-hints"))
        self._tasks.add(asyncio.create_task(self.purger.run(), name="dfspeer-tombstones"))
        if self.config.scrub_rate_bytes_per_s > 0:
            self._tasks.add(asyncio.create_task(self.scrubber.run(), name="dfspeer-scrub"))

    async def stop(self) -> None:
        """Cancel the background tasks and running read repairs (scrub saves its cursor)."""
        await cancel_all(self._tasks)
        self._tasks.clear()
        await self.block_repair.close()

    def on_member_event(self, event: MemberEvent) -> None:
        """Gossip callback: a member (back) ALIVE triggers a hint delivery round."""
        if event.kind in (EventKind.ALIVE, EventKind.JOINED):
            self.handoff.wake()

    def status(self) -> dict[str, Any]:
        """Flat fields for the ``"repair"`` object of ``GET /v1/cluster/status``."""
        hints = self.handoff.status()
        repair = self.block_repair.status()
        return {
            "hints_pending": hints["pending"],
            "hints_stored": hints["stored"],
            "hints_delivered": hints["delivered"],
            "hinted_writes": hints["hinted_writes"],
            "read_repairs": {
                "records": self.replicator.counters["read_repairs"],
                "blocks": repair["read_repairs"],
            },
            "corrupt_blocks_found": repair["corrupt_found"],
            "corrupt_blocks_repaired": repair["corrupt_repaired"],
            "blocks_quarantined": repair["quarantined"],
            "scrub": self.scrubber.progress(),
            "tombstones": self.purger.status(),
        }


class MaintenanceMetrics:
    """Prometheus collector of a :class:`Maintenance` (read at scrape time).

    Families: ``dfspeer_hints_stored_total``, ``dfspeer_hints_delivered_total``,
    ``dfspeer_hinted_writes_total`` (writes a stand-in acked for a replica),
    ``dfspeer_hints_pending`` (gauge), ``dfspeer_scrub_bytes_total``,
    ``dfspeer_scrub_blocks_total``, ``dfspeer_scrub_passes_total``,
    ``dfspeer_corrupt_blocks_found_total``, ``dfspeer_corrupt_blocks_repaired_total``,
    ``dfspeer_read_repairs_total{kind="block"|"record"}``,
    ``dfspeer_tombstones_purged_total``, ``dfspeer_reads_speculated_total``.
    """

    def __init__(self, maintenance: Maintenance) -> None:
        self.m = maintenance

    def describe(self) -> Iterable[Metric]:
        return list(self._families())

    def collect(self) -> Iterable[Metric]:
        return list(self._families())

    def _families(self) -> Iterable[Metric]:
        m = self.m
        hints, scrub = m.handoff.status(), m.scrubber.state
        repair = m.block_repair.counters
        counters = (
            ("hints_stored", "Hints this peer took as a stand-in.", hints["stored"]),
            ("hints_delivered", "Hints delivered to their target.", hints["delivered"]),
            ("hinted_writes", "Writes acked by a stand-in for a replica.", hints["hinted_writes"]),
            ("scrub_bytes", "Bytes re-hashed by scrub.", scrub["bytes_total"]),
            ("scrub_blocks", "Blocks re-hashed by scrub.", scrub["blocks_total"]),
            ("scrub_passes", "Full scrub passes completed.", scrub["passes"]),
            ("corrupt_blocks_found", "Corrupt local blocks quarantined.", repair["corrupt_found"]),
            (
                "corrupt_blocks_repaired",
                "Quarantined blocks stored again from a good copy.",
                repair["corrupt_repaired"],
            ),
            (
                "tombstones_purged",
                "Tombstones purged after the grace.",
                m.purger.counters["purged"],
            ),
            (
                "reads_speculated",
                "Quorum reads that asked more replicas than R (one failed or was slow).",
                m.replicator.counters["reads_speculated"],
            ),
        )
        for name, help_text, value in counters:
            yield CounterMetricFamily("dfspeer_" + name, help_text, value=value)
        family = CounterMetricFamily(
            "dfspeer_read_repairs", "Good copies written back by reads.", labels=["kind"]
        )
        family.add_metric(["block"], repair["read_repairs"])
        family.add_metric(["record"], m.replicator.counters["read_repairs"])
        yield family
        failures = CounterMetricFamily(
            "dfspeer_quorum_failures",
            "Operations that could not reach their quorum (W or R), by operation.",
            labels=["op"],
        )
        for op in ("block", "record", "read", "listing", "scan"):
            failures.add_metric([op], m.replicator.counters["quorum_failures." + op])
        yield failures
        yield GaugeMetricFamily(
            "dfspeer_hints_pending", "Hints awaiting delivery.", value=m.hints.pending()
        )
