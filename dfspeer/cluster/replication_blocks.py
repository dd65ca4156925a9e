"""Block writes of a :class:`~dfspeer.cluster.replication.Replicator`: a block written to
its partition's replicas at once (with its reference, in one transaction on each),
returning at W durable acks; stragglers finish in the background up to
``max_background``, past which a write waits for all its replicas (backpressure).
"""

from __future__ import annotations

import contextvars
from collections.abc import Awaitable, Callable
from typing import Any

from dfspeer.blockstore import PutBlock, TableUpdate
from dfspeer.cluster import tracing_hooks as spans
from dfspeer.cluster.quorum import cancel_all, wait_quorum
from dfspeer.cluster.replication_base import ReplicatorBase
from dfspeer.tracing import traced

MORE_BLOCKS_FOLLOW: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "dfspeer_more_blocks_follow", default=False
)
"""Set (in the task writing one block of a stream, e.g. an upload's chunk that is not its
last) to tell the replicas more blocks follow at once: they may hold the commit a moment to
share one flush among several blocks (:mod:`dfspeer.blockstore.writer`, *lingering*)."""


class BlockReplication(ReplicatorBase):
    """:class:`~dfspeer.cluster.replication.Replicator` block writes."""

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
                await self.store.write_batch([block, *ref_ops], linger=linger, keep_cached=True)
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
