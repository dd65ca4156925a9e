"""Anti-entropy: sync two replicas' blocks and metadata tables through their Merkle summaries.

:meth:`AntiEntropy.sync` compares this peer's summaries with one other peer's over a set
of partitions both should hold — one :func:`~dfspeer.blockstore.merkle_diff.diff` per tree
(``"blocks"`` and every replicated table), batched over the whole partition set, so an
in-sync pair costs one round trip of a few dozen bytes per tree — then repairs exactly the
keys that differ (Dynamo's anti-entropy, DeCandia et al. 2007 §4.7; the trie is Garage's):

=================  ===================================  ====================================
difference         blocks                               table records
=================  ===================================  ====================================
missing here       pull (GET), ``put_verified``         pull, merge locally (LWW)
missing there      push (PUT, the peer verifies)        push (the peer merges, LWW)
different          (cannot happen: value = digest)      fetch theirs; store the merge here,
                                                        push it if theirs was not the winner
=================  ===================================  ====================================

Records merge with the table's merge function (LWW by version: a tombstone is a version and
wins over older puts, so repair never resurrects a deleted object). A key whose partition is
not the one the summary filed it under is skipped and counted (``misplaced_keys``).
``pull=False`` (handing a partition to its new owner) only pushes.

The diff reads local summaries synchronously (one LMDB read per node), so it runs in a worker
thread on a private event loop; each round trip hops back to the peer's loop for the RPC.
Transfers run ``concurrency`` at a time, and a token bucket caps their bytes per second.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import cbor2

from dfspeer.blockstore import BlockStore, DiffResult, KeyDiff
from dfspeer.blockstore.merkle import BLOCKS_TREE
from dfspeer.blockstore.merkle_diff import diff
from dfspeer.cluster.rpc import PeerRpcClient, PeerUnreachable
from dfspeer.cluster.table import TableSchema
from dfspeer.cluster.view import ClusterView
from dfspeer.errors import DfsError

log = logging.getLogger(__name__)


class RateLimiter:
    """Token bucket over bytes: ``rate`` bytes/s on average (0 = unlimited), bursts of up
    to one second's worth. :meth:`acquire` waits (callers queue in order)."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = float(rate)
        self._clock = clock
        self._tokens = self.rate
        self._stamp = clock()
        self._lock = asyncio.Lock()

    async def acquire(self, n: int) -> None:
        if self.rate <= 0:
            return
        async with self._lock:
            now = self._clock()
            self._tokens = min(self.rate, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            self._tokens -= n
            if self._tokens < 0:
                await asyncio.sleep(-self._tokens / self.rate)


@dataclass
class SyncReport:
    """Outcome of one :meth:`AntiEntropy.sync` with ``peer`` over ``partitions``.

    ``differences``: differing keys found (all trees); ``pushed`` / ``pulled``: keys sent /
    fetched; ``failed``: transfers that failed; ``bytes_moved``: bytes of blocks and records
    sent or fetched; ``summary_bytes`` / ``rounds``: cost of the diffs; ``lacking``:
    partitions where the peer lacked something (or a transfer failed) — empty means the
    peer held everything this peer holds there at diff time.
    """

    peer: str
    partitions: tuple[int, ...]
    differences: int = 0
    pushed: int = 0
    pulled: int = 0
    failed: int = 0
    bytes_moved: int = 0
    summary_bytes: int = 0
    rounds: int = 0
    lacking: set[int] = field(default_factory=set)
    behind: set[int] = field(default_factory=set)
    """Partitions where this peer lacked something (pulled or skipped)."""
    failed_partitions: set[int] = field(default_factory=set)
    """Partitions with a failed transfer (still differing after this sync)."""


class AntiEntropy:
    """Merkle sync of this peer's :class:`BlockStore` with other peers (see module doc).

    ``tables``: the replicated tables to sync besides the blocks (name -> schema); they
    are synced first, so block references arrive before the blocks they keep alive, and a
    block that no live reference needs (count 0 here after the tables synced) is neither
    pulled nor pushed: the block manager collects it. ``concurrency``: transfers in flight
    per sync; ``bandwidth_bytes_per_s``: cap on transferred bytes (0 = unlimited);
    ``hash_bytes``: summary hash size on the wire; ``diff_in_thread``: run each summary
    diff on a worker thread with its own event loop, keeping the Merkle reads off this
    one (default), or on this loop (a deterministic simulation, which has no threads).
    ``counters``: cumulative figures
    (``exchanges.<tree>``, ``summary_bytes``, ``keys_pushed.<tree>``, ``keys_pulled.<tree>``,
    ``bytes_pushed``, ``bytes_pulled``, ``transfer_failures``, ``misplaced_keys``,
    ``unreferenced_skipped``, ``syncs``, ``sync_failures``).
    """

    def __init__(
        self,
        view: ClusterView,
        store: BlockStore,
        rpc: PeerRpcClient,
        *,
        tables: Mapping[str, TableSchema[Any]],
        concurrency: int = 4,
        bandwidth_bytes_per_s: int = 0,
        hash_bytes: int = 16,
        diff_in_thread: bool = True,
    ) -> None:
        self.view = view
        self.store = store
        self.rpc = rpc
        self.diff_in_thread = diff_in_thread
        self.tables = dict(tables)
        self.trees: tuple[str, ...] = (*sorted(self.tables), BLOCKS_TREE)
        self.concurrency = concurrency
        self.limiter = RateLimiter(bandwidth_bytes_per_s)
        self.hash_bytes = hash_bytes
        self.counters: Counter[str] = Counter()

    def _address(self, peer: str) -> str:
        address = self.view.address(peer)
        if address is None:
            raise PeerUnreachable(f"no address known for peer {peer}")
        return address

    # ------------------------------------------------------------------ sync
    async def sync(self, peer: str, partitions: Iterable[int], *, pull: bool = True) -> SyncReport:
        """Diff every tree with ``peer`` over ``partitions`` and repair the differences
        (push what it lacks; pull what this peer lacks unless ``pull=False``).

        Raises PeerUnreachable / RpcError / ValueError if a diff fails (transfers that fail
        are counted in the report instead)."""
        address = self._address(peer)
        report = SyncReport(peer, tuple(sorted(set(partitions))))
        if not report.partitions:
            return report
        self.counters["syncs"] += 1
        try:
            for tree in self.trees:
                result = await self.diff(address, tree, report.partitions)
                report.summary_bytes += result.stats.bytes_total
                report.rounds += result.stats.rounds
                report.differences += len(result.diffs)
                self.counters["exchanges." + tree] += result.stats.rounds
                self.counters["summary_bytes"] += result.stats.bytes_total
                await self._repair(address, tree, result.diffs, report, pull)
        except Exception:
            self.counters["sync_failures"] += 1
            raise
        return report

    async def diff(self, address: str, tree: str, partitions: tuple[int, ...]) -> DiffResult:
        """The differing keys of ``tree`` between this peer and the one at ``address``."""
        reader = self.store.merkle(tree)
        if not self.diff_in_thread:

            def direct(request: bytes) -> Awaitable[bytes]:
                return self.rpc.merkle_exchange(address, tree, request)

            return await diff(reader, tree, partitions, direct, hash_bytes=self.hash_bytes)
        loop = asyncio.get_running_loop()
        abandoned = threading.Event()

        async def exchange(request: bytes) -> bytes:  # runs on the worker's loop
            if abandoned.is_set():
                raise asyncio.CancelledError("the sync was cancelled")
            call = self.rpc.merkle_exchange(address, tree, request)
            return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(call, loop))

        def run() -> DiffResult:
            return asyncio.run(diff(reader, tree, partitions, exchange, hash_bytes=self.hash_bytes))

        try:
            return await asyncio.to_thread(run)
        finally:
            abandoned.set()  # a cancelled caller: the worker stops at its next round trip

    async def _repair(
        self, address: str, tree: str, diffs: list[KeyDiff], report: SyncReport, pull: bool
    ) -> None:
        todo: Iterator[KeyDiff] = iter(diffs)

        async def worker() -> None:
            for d in todo:
                await self._repair_key(address, tree, d, report, pull)

        await asyncio.gather(*(worker() for _ in range(min(self.concurrency, len(diffs)))))

    async def _repair_key(
        self, address: str, tree: str, d: KeyDiff, report: SyncReport, pull: bool
    ) -> None:
        placed_by = d.key if tree == BLOCKS_TREE else self.tables[tree].partition_key(d.key)
        if self.view.partition_of(placed_by) != d.partition:
            self.counters["misplaced_keys"] += 1
            return
        try:
            if tree == BLOCKS_TREE:
                await self._repair_block(address, d, report, pull)
            else:
                await self._repair_record(address, tree, d, report, pull)
        except PeerUnreachable:  # the peer is gone: abort the pair sync, not key by key
            raise
        except (DfsError, ValueError, cbor2.CBORError) as exc:  # RpcError too: count, go on
            report.failed += 1
            report.lacking.add(d.partition)
            report.failed_partitions.add(d.partition)
            self.counters["transfer_failures"] += 1
            log.debug("repair of %s %s via %s failed: %s", tree, d.key.hex()[:16], address, exc)

    def _moved(self, report: SyncReport, tree: str, direction: str, size: int) -> None:
        if direction == "pushed":
            report.pushed += 1
        else:
            report.pulled += 1
        report.bytes_moved += size
        self.counters[f"keys_{direction}.{tree}"] += 1
        self.counters[f"bytes_{direction}"] += size

    async def _repair_block(self, address: str, d: KeyDiff, report: SyncReport, pull: bool) -> None:
        if d.local is None:  # missing here
            if self.store.refcount(d.key) == 0:
                self.counters["unreferenced_skipped"] += 1
                return
            report.behind.add(d.partition)
            if not pull or await self.store.has(d.key):
                return
            data = await self.rpc.get_block(address, d.key)
            await self.limiter.acquire(len(data))
            await self.store.put_verified(d.key, data)  # DigestMismatch: a bad answer
            self._moved(report, BLOCKS_TREE, "pulled", len(data))
        elif d.remote is None:  # missing there
            if self.store.refcount(d.key) == 0:
                self.counters["unreferenced_skipped"] += 1
                return
            report.lacking.add(d.partition)
            data = await self.store.get(d.key)  # CorruptBlock: left to scrub / other replicas
            await self.limiter.acquire(len(data))
            await self.rpc.put_block(address, d.key, data)
            self._moved(report, BLOCKS_TREE, "pushed", len(data))

    async def _repair_record(
        self, address: str, table: str, d: KeyDiff, report: SyncReport, pull: bool
    ) -> None:
        store_table = self.store.table(table)
        merge = self.tables[table].merge_records
        local = store_table.get(d.key)
        if d.remote is None:  # missing there
            report.lacking.add(d.partition)
            if local is not None:
                await self._push_record(address, table, d.key, local, report)
            return
        if d.local is None and not pull:
            return
        remote = await self.rpc.get_record(address, table, d.key)
        if remote is None:  # gone there since the diff: treat as missing there
            if local is not None:
                report.lacking.add(d.partition)
                await self._push_record(address, table, d.key, local, report)
            return
        winner = merge(None, remote) if local is None else merge(local, remote)
        if winner != local:
            report.behind.add(d.partition)
            if pull:
                await store_table.update(d.key, lambda cur: merge(cur, remote))
                size = len(cbor2.dumps(remote))
                await self.limiter.acquire(size)
                self._moved(report, table, "pulled", size)
        if winner != remote:
            report.lacking.add(d.partition)
            await self._push_record(address, table, d.key, winner, report)

    async def _push_record(
        self, address: str, table: str, key: bytes, value: Any, report: SyncReport
    ) -> None:
        size = len(cbor2.dumps(value))
        await self.limiter.acquire(size)
        await self.rpc.put_record(address, table, key, value)
        self._moved(report, table, "pushed", size)
