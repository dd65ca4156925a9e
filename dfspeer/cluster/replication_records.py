"""Record writes and reads of a :class:`~dfspeer.cluster.replication.Replicator`: a
record merged into the replicas of its partition key's partition (retracted from those
that took it when W is not reached), and quorum reads that answer at R and repair stale
replicas in the background.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from dfspeer.cluster import tracing_hooks as spans
from dfspeer.cluster.quorum import (
    QuorumOutcome,
    cancel_all,
    speculative_fan_out,
    wait_quorum,
)
from dfspeer.cluster.replication_base import ReplicatorBase
from dfspeer.tracing import traced

log = logging.getLogger("dfspeer.cluster.replication")
_MAX_REPAIR_TASKS = 64


class RecordReplication(ReplicatorBase):
    """:class:`~dfspeer.cluster.replication.Replicator` record writes and reads."""

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
