"""Replicator: quorum writes and reads of blocks and table records (local store + RPC).

Placement: a block lives on the N replicas of ``partition(digest)``; a record on the N
replicas of ``partition(partition_key)`` (for manifests: the table key). Writes go to every
replica of the preference list at once and return when W acknowledged durably; reads ask
every replica and return when R answered (Dynamo, DeCandia et al. 2007). A replica that is
down, times out or errs counts as a failed ack — unless a stand-in takes its write with a
hint (sloppy quorum / hinted handoff, :mod:`.handoff`, via :attr:`Replicator.handoff`).
Block reads repair what they find missing or corrupt (:mod:`.readrepair`).

Stragglers (replicas still writing when W acked) finish in the background, bounded by
``max_background`` writes; once that many are in flight, further writes wait for all their
replicas (backpressure) instead of returning at W — so memory stays bounded and a slow
replica slows the writer rather than being silently skipped. A write that fails a replica
for good is left to repair (anti-entropy / hinted handoff).

A record write that cannot reach W is retracted from the replicas that did take it
(delete-if-version-equals), so a failed write does not surface on a later quorum read.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from dfspeer.blockstore import (
    BlockStore,
    PutBlock,
    TableUpdate,
)
from dfspeer.cluster import tracing_hooks as spans
from dfspeer.cluster.block_reads import read_verified_block
from dfspeer.cluster.quorum import (
    QuorumOutcome,
    cancel_all,
    speculative_fan_out,
    wait_quorum,
)
from dfspeer.cluster.rpc import PeerRpcClient, PeerUnreachable
from dfspeer.cluster.scan import ScanPage, scan_cluster, scan_entries
from dfspeer.cluster.table import TableSchema
from dfspeer.cluster.view import ClusterView
from dfspeer.config import PeerConfig
from dfspeer.errors import DfsError, InsufficientReplicas, InsufficientStorage
from dfspeer.tracing import traced

if TYPE_CHECKING:
    from dfspeer.cluster.handoff import HintedHandoff
    from dfspeer.cluster.readrepair import BlockRepair

log = logging.getLogger(__name__)
T = TypeVar("T")
_MAX_REPAIR_TASKS = 64
MORE_BLOCKS_FOLLOW: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "dfspeer_more_blocks_follow", default=False
)
"""Set (in the task writing one block of a stream, e.g. an upload's chunk that is not its
last) to tell the replicas more blocks follow at once: they may hold the commit a moment to
share one flush among several blocks (:mod:`dfspeer.blockstore.writer`, *lingering*)."""


class Replicator:
    """Quorum replication over this peer's :class:`BlockStore` and :class:`PeerRpcClient`.

    ``tables``: the replicated tables (name -> schema, see :mod:`.table`); a record
    operation on another name raises ValueError.
    ``max_background``: straggler writes allowed in flight after their quorum (default:
    ``config.upload_pipeline_depth``), each holding one chunk in memory.
    """

    def __init__(
        self,
        config: PeerConfig,
        view: ClusterView,
        store: BlockStore,
        rpc: PeerRpcClient,
        *,
        tables: Mapping[str, TableSchema[Any]] | None = None,
        max_background: int | None = None,
    ) -> None:
        self.config = config
        self.view = view
        self.store = store
        self.rpc = rpc
        self.write_quorum = config.write_quorum
        self.read_quorum = config.read_quorum
        self.tables: Mapping[str, TableSchema[Any]] = tables or {}
        self._max_background = max_background or config.upload_pipeline_depth
        self._background: set[asyncio.Task[None]] = set()
        self._repairs: set[asyncio.Task[None]] = set()
        self._rotate = 0
        self.counters: Counter[str] = Counter()
        self.handoff: HintedHandoff | None = None
        """Sloppy quorum + hints (:mod:`.handoff`); None: strict quorum."""
        self.block_repair: BlockRepair | None = None
        """Block read repair + quarantine (:mod:`.readrepair`); None: off."""

    async def drain(self) -> None:
        """Wait until every straggler write and read repair running now has finished."""
        while self._background or self._repairs:
            await asyncio.gather(*self._background, *self._repairs, return_exceptions=True)

    async def close(self) -> None:
        """Wait for straggler writes (bounded by the RPC timeout), cancel read repairs."""
        await cancel_all(self._repairs)
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    # ------------------------------------------------------------------ hooks
    def write_targets(self, partition: int) -> tuple[str, ...]:
        """Peers a write of ``partition`` goes to: its N replicas. With :attr:`handoff`,
        the write for a replica that is down or fails goes on to a stand-in instead
        (sloppy quorum; the stand-in's ack counts toward W, see :mod:`.handoff`)."""
        return self.view.replicas(partition)

    def on_replica_write_failed(
        self, peer: str, partition: int, what: str, exc: BaseException
    ) -> None:
        """A replica missed a write (``what``: "block <hex>" or "record <table>") and no
        stand-in took it either (see :mod:`.handoff`): the gap is left to anti-entropy."""
        self.counters["replica_write_failures"] += 1
        log.debug("replica %s missed %s of partition %d: %s", peer, what, partition, exc)

    # ------------------------------------------------------------------ helpers
    def _address(self, peer: str) -> str:
        address = self.view.address(peer)
        if address is None:
            raise PeerUnreachable(f"no address known for peer {peer}")
        return address

    def _spawn(
        self, targets: tuple[str, ...], op: Callable[[str], Awaitable[T]]
    ) -> dict[str, asyncio.Task[T]]:
        async def run(peer: str) -> T:
            return await op(peer)

        return {peer: asyncio.create_task(run(peer)) for peer in targets}

    def _insufficient(
        self, what: str, need: int, outcome: QuorumOutcome[Any] | None, targets: tuple[str, ...]
    ) -> InsufficientReplicas | InsufficientStorage:
        """The error for an operation on ``targets`` that got fewer than ``need`` acks.

        :class:`InsufficientStorage` (507 ``insufficient_storage``) when full stores alone
        made the quorum impossible: some replicas failed with a full store (a local
        ``StoreFull``, a remote ``PeerStoreFull``) and even if every *other* target had
        acknowledged, fewer than ``need`` would have -- more space is the fix, not reviving
        peers. Otherwise (a mix where reviving peers would do, reads, too few peers in the
        ring) :class:`InsufficientReplicas` (503 ``insufficient_replicas``). Either message
        names every failed replica and why.
        """
        self.counters["quorum_failures." + what.split(" ", 1)[0]] += 1
        got = len(outcome.results) if outcome else 0
        detail = outcome.describe_errors() if outcome else f"{len(targets)} replica(s) in the ring"
        full = (
            sum(isinstance(e, InsufficientStorage) for e in outcome.errors.values())
            if outcome
            else 0
        )
        if full and len(targets) - full < need:
            return InsufficientStorage(
                f"{what}: {full} of {len(targets)} replica(s) have no space left; {got} of the"
                f" {need} required replicas answered ({detail})"
            )
        return InsufficientReplicas(
            f"{what}: {got} of the {need} required replicas answered ({detail})"
        )

    def _settle(self, outcome: QuorumOutcome[Any], partition: int, what: str) -> None:
        for peer, exc in outcome.errors.items():
            self.on_replica_write_failed(peer, partition, what, exc)

    def schema(self, table: str) -> TableSchema[Any]:
        """The schema of replicated table ``table``. Raises ValueError for another name."""
        schema = self.tables.get(table)
        if schema is None:
            raise ValueError(f"{table!r} is not a replicated table of this peer")
        return schema

    # ------------------------------------------------------------------ blocks
    @traced("replicator.write_block", spans.block_write, outcome=spans.acks)
    async def write_block(self, data: bytes, digest: bytes, *, ref: Any | None = None) -> int:
        """Write a block to its partition's replicas; return the number of acks (>= W) once
        W replicas stored it durably. Raises InsufficientReplicas otherwise. ``digest``:
        the SHA-256 of ``data`` as the caller computed it from these bytes (this peer's
        replica trusts it; the others verify it).

        ``ref``: a record of the ``block_refs`` table naming the version that needs the
        block; each replica stores it with the block in one transaction, so the block is
        referenced from the instant it exists there (a stand-in keeps the block alone,
        pinned by its hint; the reference reaches the target by anti-entropy)."""
        partition = self.view.partition_of(digest)
        targets = self.write_targets(partition)
        what = f"block {digest.hex()[:16]}"
        need = self.write_quorum
        if len(targets) < need:
            raise self._insufficient(what, need, None, targets)

        ref_ops = self._ref_ops(digest, ref)

        linger = MORE_BLOCKS_FOLLOW.get()

        async def put(peer: str) -> None:
            if peer == self.view.self_id:  # ``digest`` was computed here from ``data``
                block = PutBlock(data, digest, hashed=True)
                await self.store.write_batch([block, *ref_ops], linger=linger)
            else:
                address = self._address(peer)
                await self.rpc.put_block(address, digest, data, ref=ref, linger=linger)

        op: Callable[[str], Awaitable[None]] = put
        if self.handoff is not None:
            hint_ref = None
            if ref_ops:
                hint_ref = (ref_ops[0].table, ref_ops[0].key, ref)
            op = self.handoff.wrap_block(partition, targets, put, digest, data, hint_ref)
        outcome = await wait_quorum(self._spawn(targets, op), need)
        if not outcome.reached(need):
            await cancel_all(outcome.pending)
            self._settle(outcome, partition, what)
            raise self._insufficient(what, need, outcome, targets)
        acks = len(outcome.results)
        if outcome.pending:
            if len(self._background) < self._max_background:
                self._track(self._finish(outcome, partition, what), self._background)
            else:
                self.counters["write_backpressure"] += 1
                acks += await self._finish(outcome, partition, what)
        else:
            self._settle(outcome, partition, what)
        return acks

    def _ref_ops(self, digest: bytes, ref: Any | None) -> list[TableUpdate]:
        if ref is None:
            return []
        schema = self.schema("block_refs")
        version = schema.decode(ref).version
        return [
            TableUpdate(
                schema.name, digest + version.encode(), lambda cur: schema.merge_records(cur, ref)
            )
        ]

    async def _finish(self, outcome: QuorumOutcome[Any], partition: int, what: str) -> int:
        """Await the stragglers of a quorum write; report failures; return extra acks."""
        if outcome.pending:
            await asyncio.wait(outcome.pending.values())
        extra = 0
        for peer, task in outcome.pending.items():
            exc = task.exception() if not task.cancelled() else asyncio.CancelledError()
            if exc is None:
                extra += 1
            else:
                outcome.errors[peer] = exc
        self._settle(outcome, partition, what)
        return extra

    def _track(self, coro: Awaitable[Any], into: set[asyncio.Task[None]]) -> None:
        async def run() -> None:
            try:
                await coro
            except Exception:  # a background task must never die noisily
                log.exception("background replication task failed")

        task = asyncio.create_task(run())
        into.add(task)
        task.add_done_callback(into.discard)

    @traced("replicator.read_block", spans.block_read)
    async def read_block(self, digest: bytes) -> bytes:
        """A verified copy of a block (see :func:`.block_reads.read_verified_block`: local
        copy, then the replicas in read order, read repair). Raises DataUnavailable."""
        return await read_verified_block(self, digest)

    async def read_block_range(self, digest: bytes, lo: int, hi: int) -> bytes:
        """Bytes ``[lo, hi)`` of a block, verified: from the local copy, checking only the
        64 KiB segments the range covers (:meth:`BlockStore.get_range`); when that copy is
        missing, corrupt or fails, the whole block through :meth:`read_block` (which
        quarantines a corrupt local copy, fails over to the replicas and repairs)."""
        try:
            return await self.store.get_range(digest, lo, hi)
        except DfsError:
            pass
        data = await self.read_block(digest)
        return data[lo:hi]

    def next_rotation(self) -> int:
        """A counter that rotates the replica read order between reads."""
        self._rotate += 1
        return self._rotate

    # ------------------------------------------------------------------ records
    async def _put_record_on(self, peer: str, table: str, key: bytes, value: Any) -> None:
        if peer == self.view.self_id:
            merge = self.schema(table).merge_records
            await self.store.table(table).update(key, lambda cur: merge(cur, value))
        else:
            await self.rpc.put_record(self._address(peer), table, key, value)

    async def _get_record_on(self, peer: str, table: str, key: bytes) -> Any | None:
        if peer == self.view.self_id:
            return self.store.table(table).get(key)
        return await self.rpc.get_record(self._address(peer), table, key)

    async def _retract_on(self, peer: str, table: str, key: bytes, token: str) -> None:
        if peer == self.view.self_id:
            schema = self.schema(table)
            await self.store.table(table).update(key, lambda cur: schema.retract_record(cur, token))
        else:
            await self.rpc.retract_record(self._address(peer), table, key, token)

    @traced("replicator.write_record", spans.record_write, outcome=spans.acks)
    async def write_record(self, table: str, key: bytes, value: Any) -> int:
        """Merge ``value`` (a record of ``table``: ValueError if not) into the replicas of
        the partition of its partition key; return acks (>= W). On failure
        (InsufficientReplicas) the write is retracted from the replicas that took it."""
        schema = self.schema(table)
        version = schema.retract_token(value)  # decodes: ValueError for a bad record
        partition = self.view.partition_of(schema.partition_key(key))
        targets = self.write_targets(partition)
        what = f"record {table}"
        need = self.write_quorum
        if len(targets) < need:
            raise self._insufficient(what, need, None, targets)

        async def put(peer: str) -> None:
            await self._put_record_on(peer, table, key, value)

        op: Callable[[str], Awaitable[None]] = put
        if self.handoff is not None:
            op = self.handoff.wrap_record(partition, targets, put, table, key, value)
        outcome = await wait_quorum(self._spawn(targets, op), need)
        if not outcome.reached(need):
            # the stragglers may still land; wait for them so the retraction follows them
            await self._finish(outcome, partition, what)
            took = [
                p for p, t in outcome.pending.items() if not t.cancelled() and t.exception() is None
            ] + list(outcome.results)
            if len(took) < need:
                await asyncio.gather(
                    *(self._retract_on(p, table, key, version) for p in took),
                    return_exceptions=True,
                )
                raise self._insufficient(what, need, outcome, targets)
            return len(took)
        acks = len(outcome.results)
        if outcome.pending:
            self._track(self._finish(outcome, partition, what), self._background)
        else:
            self._settle(outcome, partition, what)
        return acks

    @traced("replicator.read_record", spans.record_read)
    async def read_record(self, table: str, key: bytes) -> Any | None:
        """The merge of ``table``'s record ``key`` on R replicas of its partition (None if
        none has it). Stale replicas get the merge back in the background (read repair)."""
        schema = self.schema(table)
        partition = self.view.partition_of(schema.partition_key(key))
        targets = self.view.replicas(partition)
        need = self.read_quorum
        if len(targets) < need:
            raise self._insufficient(f"read {table}", need, None, targets)
        # The local replica answers first, synchronously (an LMDB read, no task, no RPC);
        # then as many remote replicas as R still needs (ALIVE first, rotated), the others
        # only if one fails or they are slower than read_speculation_ms; the read returns
        # as soon as R answers are in. Late answers feed read repair in the background.
        local: dict[str, Any] = {}
        local_error: dict[str, BaseException] = {}
        self_id = self.view.self_id
        if self_id in targets:
            try:
                local[self_id] = self.store.table(table).get(key)
            except Exception as exc:  # counts as a failed replica, as a remote error does
                local_error[self_id] = exc
        remote = self.view.rank_for_read((p for p in targets if p != self_id), self.next_rotation())
        need_remote = max(0, need - len(local))
        tasks = await speculative_fan_out(
            remote,
            need_remote,
            lambda peers: self._spawn(peers, lambda p: self._get_record_on(p, table, key)),
            self.config.read_speculation_ms / 1000,
        )
        if len(tasks) > need_remote and self.config.read_speculation_ms > 0:
            self.counters["reads_speculated"] += 1  # a replica failed or was slow
        outcome = await wait_quorum(tasks, need_remote)
        outcome.results.update(local)
        outcome.errors.update(local_error)
        if not outcome.reached(need):
            await cancel_all(outcome.pending)
            raise self._insufficient(f"read {table}", need, outcome, targets)
        answers = list(outcome.results.values())
        if all(a == answers[0] for a in answers[1:]):
            answers = answers[:1]  # the replicas agree: one decode, no merge
        winner = schema.pick(answers)
        if winner is not None and len(self._repairs) < _MAX_REPAIR_TASKS:
            self._track(self._read_repair(outcome, table, key, winner), self._repairs)
        else:
            await cancel_all(outcome.pending)
        return winner

    async def _read_repair(
        self, outcome: QuorumOutcome[Any], table: str, key: bytes, winner: Any
    ) -> None:
        if outcome.pending:
            await asyncio.wait(outcome.pending.values())
        answers = dict(outcome.results)
        for peer, task in outcome.pending.items():
            if not task.cancelled() and task.exception() is None:
                answers[peer] = task.result()
        stale_of = self.schema(table).stale
        # an answer equal to the (normalized) winner lacks nothing: skip the merge
        stale = [
            peer
            for peer, record in answers.items()
            if record != winner and stale_of(record, winner)
        ]
        for peer in stale:
            try:
                await self._put_record_on(peer, table, key, winner)
                self.counters["read_repairs"] += 1
            except Exception as exc:
                log.debug("read repair of %s on %s failed: %s", table, peer, exc)

    # ------------------------------------------------------------------ scans
    async def scan_partitioned(
        self,
        table: str,
        *,
        prefix: bytes,
        start_after: bytes | None,
        limit: int,
        omit: tuple[str, ...] = (),
    ) -> ScanPage:
        """Scan ``table`` on every ring member and merge per key (for listings of tables
        placed by key hash; :func:`.scan.scan_cluster`). Raises InsufficientReplicas
        unless, for every partition, at least R of its replicas answered."""
        return await scan_cluster(
            self, table, prefix=prefix, start_after=start_after, limit=limit, omit=omit
        )

    async def scan_entries(
        self,
        table: str,
        keep: Callable[[Any], bool],
        *,
        limit: int,
        omit: tuple[str, ...] = (),
    ) -> list[Any]:
        """Decoded entries of ``table`` that ``keep`` accepts, cluster-wide, in key order,
        at most ``limit`` (:func:`.scan.scan_entries`)."""
        return await scan_entries(self, table, keep, limit=limit, omit=omit)
