"""RepairService: when anti-entropy runs, what it covers, and what it reports.

A *round* (:meth:`RepairService.run_round`):

1. reads which partitions this peer holds data of (Merkle roots, in a thread);
2. for every other replica of the partitions this peer replicates, syncs the shared
   partitions in one batched diff per tree (:class:`~dfspeer.cluster.antientropy.
   AntiEntropy`), pushing and pulling the differences; a DEAD replica is skipped and its
   partitions count as behind;
3. hands the partitions it holds but no longer replicates to their new owners and drops
   them once every owner confirmed (:class:`~dfspeer.cluster.rebalance.Rebalancer`).

Rounds run every ``anti_entropy_interval_s`` (±10% jitter so peers spread out), one second
after start, and ``RING_SETTLE_S`` after the ring digest changes (a join, leave, drain or
eviction: the view is refreshed every second, so a dead member's eviction is noticed in
time). Only one round runs at a time.

:meth:`RepairService.status` is the ``"repair"`` object of ``GET /v1/cluster/status``;
:class:`RepairMetrics` exports the counters to Prometheus.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import CollectorRegistry

from dfspeer.blockstore import BlockStore
from dfspeer.blockstore.merkle import BLOCKS_TREE
from dfspeer.cluster.antientropy import AntiEntropy
from dfspeer.cluster.rebalance import HandoffReport, Rebalancer, held_partitions
from dfspeer.cluster.rpc import PeerRpcClient
from dfspeer.cluster.table import TableSchema
from dfspeer.cluster.view import ClusterView
from dfspeer.config import PeerConfig
from dfspeer.gossip import MemberState

log = logging.getLogger(__name__)

STARTUP_DELAY_S = 1.0
RING_SETTLE_S = 1.0
REFRESH_S = 1.0


class RepairService:
    """Periodic and ring-change-driven anti-entropy + partition handoff of one peer.

    ``tables``: replicated tables to sync (name -> schema). ``refresh``: called every
    second to rebuild the view from gossip (returns True if the ring changed).
    ``diff_in_thread``: see :class:`~dfspeer.cluster.antientropy.AntiEntropy`.
    """

    def __init__(
        self,
        config: PeerConfig,
        view: ClusterView,
        store: BlockStore,
        rpc: PeerRpcClient,
        *,
        tables: Mapping[str, TableSchema[Any]],
        refresh: Callable[[], bool] | None = None,
        diff_in_thread: bool = True,
    ) -> None:
        self.view = view
        self.store = store
        self.interval_s = config.anti_entropy_interval_s
        self.ae = AntiEntropy(
            view,
            store,
            rpc,
            tables=tables,
            concurrency=config.repair_concurrency,
            bandwidth_bytes_per_s=config.repair_bandwidth_bytes_per_s,
            diff_in_thread=diff_in_thread,
        )
        self.rebalancer = Rebalancer(self.ae)
        self._refresh = refresh
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._round_lock = asyncio.Lock()
        self._digest_seen: str | None = None
        self.rounds = 0
        self.running = False
        self.last_full_sync: float | None = None
        self.last_round: dict[str, Any] | None = None
        self.in_sync: set[int] = set()
        self.behind: set[int] = set()
        self.to_move: dict[int, int] = {}  # orphan partition -> keys still held here
        self.bytes_to_move = 0

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name="repair-loop")

    async def close(self) -> None:
        """Stop the loop (a running round is cancelled). Idempotent."""
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    def trigger(self) -> None:
        """Run a round now (or right after the running one)."""
        self._wake.set()

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        next_round = loop.time() + STARTUP_DELAY_S
        while True:
            wait = max(0.0, min(next_round - loop.time(), REFRESH_S))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), wait)
            if self._refresh is not None:
                try:
                    self._refresh()
                except Exception:
                    log.exception("refreshing the cluster view failed")
            if self._digest_seen is not None and self.view.ring.digest != self._digest_seen:
                next_round = min(next_round, loop.time() + RING_SETTLE_S)
            if self._wake.is_set():
                self._wake.clear()
                next_round = loop.time()
            if loop.time() < next_round:
                continue
            try:
                await self.run_round()
            except Exception:
                log.exception("anti-entropy round failed")
            next_round = loop.time() + self.interval_s * random.uniform(0.9, 1.1)

    # ------------------------------------------------------------------ a round
    async def run_round(self) -> dict[str, Any]:
        """One full round (see module doc); returns its summary (also ``last_round``)."""
        async with self._round_lock:
            self.running = True
            try:
                return await self._round()
            finally:
                self.running = False

    def pairs(self) -> dict[str, set[int]]:
        """Other replica -> the partitions it shares with this peer in the current ring."""
        me = self.view.self_id
        out: dict[str, set[int]] = {}
        for p in self.view.ring.partitions_of(me):
            for peer in self.view.replicas(p):
                if peer != me:
                    out.setdefault(peer, set()).add(p)
        return out

    async def _round(self) -> dict[str, Any]:
        started, t0 = time.time(), time.monotonic()
        self._digest_seen = self.view.ring.digest
        trees, count = self.ae.trees, self.view.ring.partition_count
        held = await asyncio.to_thread(held_partitions, self.store, trees, count)
        summary: dict[str, Any] = {"started": started, "pairs": 0, "failed_pairs": 0}
        totals = {"differences": 0, "pushed": 0, "pulled": 0, "bytes_moved": 0}
        behind: set[int] = set()
        for peer, ps in sorted(self.pairs().items()):
            summary["pairs"] += 1
            member = self.view.member(peer)
            if member is None or member.state in (MemberState.DEAD, MemberState.LEFT):
                behind |= ps
                summary["failed_pairs"] += 1
                continue
            try:
                report = await self.ae.sync(peer, ps)
            except Exception as exc:
                log.info("anti-entropy with %s failed: %s", peer, exc)
                behind |= ps
                summary["failed_pairs"] += 1
                continue
            behind |= report.failed_partitions
            for name in totals:
                totals[name] += getattr(report, name)
        handoff = await self._handoff(held)
        mine = set(self.view.ring.partitions_of(self.view.self_id))
        self.behind, self.in_sync = behind & mine, mine - behind
        self.rounds += 1
        if not self.behind:
            self.last_full_sync = started
        summary.update(totals, duration_s=round(time.monotonic() - t0, 3))
        summary.update(moved=len(handoff.moved), dropped=handoff.dropped)
        summary["pushed"] += handoff.pushed
        summary["bytes_moved"] += handoff.bytes_moved
        self.last_round = summary
        return summary

    async def _handoff(self, held: Mapping[int, int]) -> HandoffReport:
        orphans = self.rebalancer.orphans(held)
        report = await self.rebalancer.handoff(orphans) if orphans else HandoffReport()
        self.to_move = {p: held[p] for p in report.kept}
        self.bytes_to_move = await asyncio.to_thread(self._estimate_bytes, report.kept)
        return report

    def _estimate_bytes(self, partitions: Iterable[int]) -> int:
        """Blocks held in ``partitions`` times the mean block size (an estimate)."""
        stats = self.store.stats()
        if not stats.block_count:
            return 0
        reader = self.store.merkle(BLOCKS_TREE)
        blocks = sum(reader.node(p).count for p in partitions)
        return blocks * stats.block_bytes // stats.block_count

    # ------------------------------------------------------------------ visibility
    def status(self) -> dict[str, Any]:
        """The ``"repair"`` object of ``GET /v1/cluster/status`` (times in unix s)."""
        c = self.ae.counters
        return {
            "partitions_in_sync": len(self.in_sync),
            "partitions_behind": len(self.behind),
            "partitions_to_move": len(self.to_move),
            "bytes_to_move": self.bytes_to_move,
            "last_full_sync": self.last_full_sync,
            "rounds": self.rounds,
            "round_running": self.running,
            "last_round": self.last_round,
            "keys_pushed": sum(v for k, v in c.items() if k.startswith("keys_pushed.")),
            "keys_pulled": sum(v for k, v in c.items() if k.startswith("keys_pulled.")),
            "bytes_repaired": c["bytes_pushed"] + c["bytes_pulled"],
        }


class RepairMetrics:
    """Prometheus collector (read at scrape time) of a :class:`RepairService`.

    Families (prefix ``dfspeer_repair_``): ``bytes_total{direction}`` (bytes of blocks and
    records pushed / pulled by repair), ``merkle_exchanges_total{tree}`` (summary round
    trips), ``summary_bytes_total``, ``keys_total{tree,direction}``, ``rounds_total``,
    ``transfer_failures_total``, gauges ``partitions{state}`` (in_sync, behind, to_move)
    and ``bytes_to_move``.
    """

    def __init__(self, service: RepairService) -> None:
        self.service = service

    def register(self, registry: CollectorRegistry) -> None:
        registry.register(self)

    def describe(self) -> Iterable[Metric]:
        return []

    def collect(self) -> Iterable[Metric]:
        s, c = self.service, self.service.ae.counters
        p = "dfspeer_repair_"
        moved = CounterMetricFamily(p + "bytes", "Bytes moved by repair.", labels=["direction"])
        for d in ("pushed", "pulled"):
            moved.add_metric([d], c["bytes_" + d])
        exchanges = CounterMetricFamily(
            p + "merkle_exchanges", "Merkle summary round trips.", labels=["tree"]
        )
        keys = CounterMetricFamily(p + "keys", "Keys repaired.", labels=["tree", "direction"])
        for tree in s.ae.trees:
            exchanges.add_metric([tree], c["exchanges." + tree])
            for d in ("pushed", "pulled"):
                keys.add_metric([tree, d], c[f"keys_{d}.{tree}"])
        parts = GaugeMetricFamily(p + "partitions", "Partitions by repair state.", labels=["state"])
        parts.add_metric(["in_sync"], len(s.in_sync))
        parts.add_metric(["behind"], len(s.behind))
        parts.add_metric(["to_move"], len(s.to_move))
        yield moved
        yield exchanges
        yield keys
        yield parts
        yield CounterMetricFamily(
            p + "summary_bytes", "Summary bytes exchanged.", value=c["summary_bytes"]
        )
        yield CounterMetricFamily(p + "rounds", "Anti-entropy rounds.", value=s.rounds)
        yield CounterMetricFamily(
            p + "transfer_failures", "Failed repair transfers.", value=c["transfer_failures"]
        )
        yield GaugeMetricFamily(
            p + "bytes_to_move", "Estimated bytes to hand off.", value=s.bytes_to_move
        )
