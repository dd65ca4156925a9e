"""Dedup on the wire: an upload sends a chunk only to replicas that do not hold it yet.

Content-addressed blocks make a repeated chunk free to *store*; this module makes it free
to *send*. Before a chunk goes out, the coordinator asks the chunk's replicas whether they
hold its block (``POST /internal/blocks/has``, :mod:`dfspeer.api.internal_dedup`); the
questions to one peer are batched, group-commit style: one call is in flight per peer and
every question asked meanwhile rides on the next one, so an idle pipeline asks at once and
a busy one asks once per group of up to ``upload_pipeline_depth`` chunks (the chunks
waiting for an answer hold their pipeline slots, so memory stays bounded as before). A
coordinator that is itself one of the chunk's replicas looks in its own store first and asks
no other peer when the block is not there: then it is new, or at least not on every replica.

When every replica holds the block, the coordinator writes only the version's reference
(a ``block_refs`` record, quorum W) instead of the data, then asks again: a block whose
count had reached zero may have been collected between the first answer and the
reference's arrival (with ``block_gc_grace_s = 0`` that is a real window), but once the
reference is stored the collector's re-check under the writer lock
(:func:`dfspeer.blockstore.refcount.collect`) can no longer take it. So an acknowledged
reference-only write has, on at least W replicas, the reference and the block at once;
if the second answer misses a replica the whole block is sent after all. When some
replica lacks the block (a new chunk, a replica that was away, one that does not answer)
the block goes to every replica as without dedup (:meth:`Replicator.write_block`, with
hinted handoff): a partial send would save little and duplicate the quorum logic.

Counters (:attr:`DedupWriter.counters`, bytes are block bytes addressed to *other*
peers, i.e. on the network, each chunk counted once per remote replica):
``dedup_chunks_skipped`` / ``dedup_bytes_skipped`` for chunks written as references
only, ``chunks_sent`` / ``block_bytes_sent`` for chunks sent in full, ``dedup_rechecks_missed``
for reference-only attempts that had to send the block after all, ``has_calls`` /
``has_digests`` for the questions asked.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from dfspeer.cluster.replication import Replicator
from dfspeer.errors import DfsError
from dfspeer.model.block_refs import BLOCK_REFS_TABLE, BlockRefsSchema, ref_key

log = logging.getLogger(__name__)

Ask = Callable[[Sequence[bytes]], Awaitable[list[bool]]]


class PresenceBatcher:
    """Batched "do you hold these blocks?" questions to one peer.

    ``ask(digests) -> answers``: one call (RPC or local lookup). At most one call is in
    flight; digests asked meanwhile wait for the next call, which takes up to
    ``max_batch`` of them. A failed call answers False for its digests (the chunk is
    then sent in full), never an error.
    """

    def __init__(self, ask: Ask, *, max_batch: int = 256) -> None:
        self._ask = ask
        self._max_batch = max_batch
        self._queue: list[tuple[bytes, asyncio.Future[bool]]] = []
        self._runner: asyncio.Task[None] | None = None
        self.calls = 0

    async def has(self, digest: bytes) -> bool:
        """True if the peer answered that it stores ``digest``."""
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.append((digest, future))
        if self._runner is None:
            self._runner = asyncio.create_task(self._run())
        return await future

    async def _run(self) -> None:
        batch: list[tuple[bytes, asyncio.Future[bool]]] = []
        try:
            while self._queue:
                batch = [(d, f) for d, f in self._queue[: self._max_batch] if not f.done()]
                del self._queue[: self._max_batch]
                if not batch:
                    continue
                self.calls += 1
                try:
                    answers = await self._ask([d for d, _ in batch])
                except (DfsError, OSError) as exc:
                    log.debug("blocks/has failed, sending the blocks: %s", exc)
                    answers = [False] * len(batch)
                for (_, future), answer in zip(batch, answers, strict=True):
                    if not future.done():
                        future.set_result(answer)
        finally:  # cancelled or failed: nobody may wait forever
            self._runner = None
            for _, future in batch + self._queue:
                if not future.done():
                    future.set_result(False)
            self._queue.clear()

    async def close(self) -> None:
        """Cancel the call in flight; questions waiting are answered False."""
        runner = self._runner
        if runner is not None:
            runner.cancel()
            await asyncio.gather(runner, return_exceptions=True)
        for _, future in self._queue:
            if not future.done():
                future.set_result(False)
        self._queue.clear()


class DedupWriter:
    """Writes a chunk's block with dedup on the wire (module docstring), through
    ``replicator``. One per coordinator (shared by its uploads, so questions to a peer
    are batched across uploads too); ``max_batch``: digests per question."""

    def __init__(self, replicator: Replicator, *, max_batch: int = 256) -> None:
        self.replicator = replicator
        self.max_batch = max_batch
        self.refs = BlockRefsSchema()
        self.counters: Counter[str] = Counter()
        self._batchers: dict[str, PresenceBatcher] = {}

    def _batcher(self, peer: str) -> PresenceBatcher:
        batcher = self._batchers.get(peer)
        if batcher is None:
            batcher = PresenceBatcher(self._asker(peer), max_batch=self.max_batch)
            self._batchers[peer] = batcher
        return batcher

    def _asker(self, peer: str) -> Ask:
        replicator = self.replicator

        async def ask(digests: Sequence[bytes]) -> list[bool]:
            self.counters["has_calls"] += 1
            self.counters["has_digests"] += len(digests)
            if peer == replicator.view.self_id:
                return [await replicator.store.has(d) for d in digests]
            address = replicator.view.address(peer)
            if address is None:
                return [False] * len(digests)
            return await replicator.rpc.has_blocks(address, digests)

        return ask

    async def all_hold(self, peers: Sequence[str], digest: bytes) -> bool:
        """True if every peer of ``peers`` answered that it stores block ``digest``. This
        peer's own store, when it is one of them, is asked first (a local lookup): if it
        lacks the block the answer is False without asking the others — for a new chunk,
        the usual case, no question leaves the peer."""
        self_id = self.replicator.view.self_id
        if self_id in peers:
            if not await self._batcher(self_id).has(digest):
                return False
            peers = [p for p in peers if p != self_id]
        answers = await asyncio.gather(*(self._batcher(p).has(digest) for p in peers))
        return all(answers)

    async def write_block(self, data: bytes, digest: bytes, *, ref: Any) -> int:
        """Store block ``digest`` (``data``) with its ``block_refs`` record ``ref`` on its
        replicas; returns the acks (>= W). Sends ``data`` only if some replica lacks it.
        Raises InsufficientReplicas (or InsufficientStorage) like
        :meth:`Replicator.write_block`."""
        replicator = self.replicator
        view = replicator.view
        targets = replicator.write_targets(view.partition_of(digest))
        remote = sum(1 for p in targets if p != view.self_id)
        if len(targets) >= replicator.write_quorum and await self.all_hold(targets, digest):
            key = ref_key(digest, self.refs.decode(ref).version)
            acks = await replicator.write_record(BLOCK_REFS_TABLE, key, ref)
            if await self.all_hold(targets, digest):  # the reference now pins the block
                self.counters["dedup_chunks_skipped"] += 1
                self.counters["dedup_bytes_skipped"] += len(data) * remote
                return acks
            self.counters["dedup_rechecks_missed"] += 1
        acks = await replicator.write_block(data, digest, ref=ref)
        self.counters["chunks_sent"] += 1
        self.counters["block_bytes_sent"] += len(data) * remote
        return acks

    def status(self) -> dict[str, int]:
        """The counters (module docstring), every one present (0 when nothing happened)."""
        names = (
            "dedup_chunks_skipped",
            "dedup_bytes_skipped",
            "chunks_sent",
            "block_bytes_sent",
            "dedup_rechecks_missed",
            "has_calls",
            "has_digests",
        )
        return {name: int(self.counters[name]) for name in names}

    async def close(self) -> None:
        """Cancel the questions in flight."""
        batchers = list(self._batchers.values())
        self._batchers.clear()
        for batcher in batchers:
            await batcher.close()
