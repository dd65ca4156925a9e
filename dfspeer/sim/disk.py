"""The block store's durability boundary, simulated.

:class:`SimWriter` takes the place of the store's group-commit writer thread
(:class:`dfspeer.blockstore.writer.GroupCommitWriter`, whose transaction code it reuses):
requests queue on the event loop and the queued group is committed in one LMDB write
transaction after a seeded "fsync" delay, then every waiting future is resolved -- the
same contract (acknowledged = committed), without a thread. :meth:`SimDisk.crash` drops
the queued group: a crash loses exactly what was not yet durable, which was never
acknowledged. Committed data survives (the environment is closed cleanly afterwards; a
real ``durable = true`` store promises the same).
"""

from __future__ import annotations

import asyncio
import collections
import random
from collections.abc import Callable
from typing import Any

import lmdb

from dfspeer.blockstore.errors import BlockStoreError
from dfspeer.blockstore.writer import (
    Apply,
    GroupCommitWriter,
    WriteTxn,
    _Request,
    _settle,
)


class SimDisk:
    """One peer's disk: the commit delay (seconds, uniform in ``commit_delay_s``) and the
    writers it made, so :meth:`crash` can drop their queued writes."""

    def __init__(self, rng: random.Random, commit_delay_s: tuple[float, float]) -> None:
        self.rng = rng
        self.commit_delay_s = commit_delay_s
        self.writers: list[SimWriter] = []
        self.lost_writes = 0
        """Requests dropped by crashes (queued, never acknowledged)."""

    def writer(self, env: lmdb.Environment, **kwargs: Any) -> SimWriter:
        """A ``writer_factory`` for :class:`dfspeer.blockstore.BlockStore` (takes what
        ``GroupCommitWriter`` takes)."""
        writer = SimWriter(env, disk=self, **kwargs)
        self.writers.append(writer)
        return writer

    def delay(self) -> float:
        lo, hi = self.commit_delay_s
        return self.rng.uniform(lo, hi)

    def crash(self) -> None:
        """Drop every queued write of every writer and refuse new ones."""
        for w in self.writers:
            self.lost_writes += w.crash()
        self.writers.clear()


class SimWriter(GroupCommitWriter):
    """A group-commit writer on the event loop (module docstring). Built by
    :meth:`SimDisk.writer`; no thread is started."""

    def __init__(
        self,
        env: lmdb.Environment,
        *,
        disk: SimDisk,
        before_commit: Callable[[WriteTxn], None],
        after_commit: Callable[[WriteTxn], None],
        map_error: Callable[[lmdb.Error], BlockStoreError],
        max_group_bytes: int = 64 << 20,
        max_group_requests: int = 4096,
        **tuning: Any,
    ) -> None:
        # Deliberately not GroupCommitWriter.__init__: that starts the writer thread.
        # ``tuning`` (e.g. lingering): the thread's batching knobs; the simulated disk
        # batches by its own delay instead. A simulated store keeps no OS page cache, so
        # ``after_settle`` (dropping written pages from it) is dropped too.
        del tuning
        self._init_settle(None)
        self._env = env
        self._before_commit = before_commit
        self._after_commit = after_commit
        self._map_error = map_error
        self._max_group_bytes = max_group_bytes
        self._max_group_requests = max_group_requests
        self._disk = disk
        self._pending: collections.deque[_Request] = collections.deque()
        self._flush: asyncio.TimerHandle | None = None
        self._closing = False
        self._committing = False
        self.commits = 0
        self.requests = 0
        self.replays = 0

    async def submit(
        self, apply: Apply, *, size: int = 0, atomic: bool = False, **hints: Any
    ) -> Any:
        """As :meth:`GroupCommitWriter.submit` (batching ``hints`` such as ``linger`` are
        moot here); committed with the next group."""
        if self._closing:
            raise BlockStoreError("block store is closed")
        loop = asyncio.get_running_loop()
        request = _Request(
            apply=apply, atomic=atomic, size=size, loop=loop, future=loop.create_future()
        )
        self._pending.append(request)
        if self._flush is None:
            self._flush = loop.call_later(self._disk.delay(), self._commit_pending)
        return await request.future

    def _commit_pending(self) -> None:
        self._flush = None
        group = list(self._pending)
        self._pending.clear()
        if not group:
            return
        self._committing = True
        try:
            self._process(group)
        except BaseException as exc:  # as the thread does: no caller may hang
            for request in group:
                request.error = BlockStoreError(f"block store writer failed: {exc!r}")
        finally:
            self._committing = False
        for request in group:
            _settle(request.future, request.result, request.error)
        self._settled()

    def in_writer_thread(self) -> bool:
        """True while a group is being applied (a table hook runs then)."""
        return self._committing

    def run_exclusive(self, fn: Callable[[lmdb.Transaction[memoryview]], Any]) -> Any:
        """As :meth:`GroupCommitWriter.run_exclusive`, inline (nothing else writes now)."""
        if self._committing:
            raise BlockStoreError("cannot run an exclusive write from inside a write")
        if self._closing:
            raise BlockStoreError("block store is closed")
        txn = self._env.begin(write=True, buffers=True)
        try:
            result = fn(txn)
            txn.commit()
        except BaseException:
            txn.abort()
            raise
        return result

    async def close(self) -> None:
        """Refuse new requests and commit what is queued (a clean shutdown)."""
        self._closing = True
        if self._flush is not None:
            self._flush.cancel()
        self._commit_pending()

    def crash(self) -> int:
        """Drop the queued requests (never acknowledged); refuse new ones. Returns how
        many were dropped. Their callers stay waiting: the crash cancels them."""
        self._closing = True
        if self._flush is not None:
            self._flush.cancel()
            self._flush = None
        dropped = len(self._pending)
        self._pending.clear()
        return dropped
