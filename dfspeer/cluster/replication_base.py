"""The state every part of a :class:`~dfspeer.cluster.replication.Replicator` shares,
and the plumbing of a quorum operation: the peers a write goes to, the error for a missed
quorum, the report of replicas that missed a write, stragglers awaited in the
background, and the rotation of the replica read order.

:class:`ReplicatorBase` declares the state that the replicator's constructor
(:mod:`.replication`) sets.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar

from dfspeer.blockstore import BlockStore
from dfspeer.cluster.quorum import QuorumOutcome
from dfspeer.cluster.rpc import PeerRpcClient, PeerUnreachable
from dfspeer.cluster.table import TableSchema
from dfspeer.cluster.view import ClusterView
from dfspeer.config import PeerConfig
from dfspeer.errors import InsufficientReplicas, InsufficientStorage

if TYPE_CHECKING:
    from dfspeer.cluster.handoff import HintedHandoff
    from dfspeer.cluster.readrepair import BlockRepair

log = logging.getLogger("dfspeer.cluster.replication")
T = TypeVar("T")


class ReplicatorBase:
    """State and quorum plumbing shared by the parts of a
    :class:`~dfspeer.cluster.replication.Replicator` (whose docstring describes the
    arguments that set them)."""

    config: PeerConfig
    view: ClusterView
    store: BlockStore
    rpc: PeerRpcClient
    write_quorum: int
    read_quorum: int
    tables: Mapping[str, TableSchema[Any]]
    _max_background: int
    _background: set[asyncio.Task[None]]
    _repairs: set[asyncio.Task[None]]
    _rotate: int
    counters: Counter[str]
    handoff: HintedHandoff | None
    block_repair: BlockRepair | None

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

    def next_rotation(self) -> int:
        """A counter that rotates the replica read order between reads."""
        self._rotate += 1
        return self._rotate
