"""The one writer thread of a block store, with group commit.

Every mutation of the LMDB environment is a *request*: a function ``apply(w: WriteTxn)``
queued by :meth:`GroupCommitWriter.submit` from the event loop. The writer thread takes
everything queued (up to ``max_group_bytes`` / ``max_group_requests``), applies it in ONE
LMDB write transaction, commits once (one fsync when the env is durable) and only then
resolves the callers' futures with ``loop.call_soon_threadsafe``. Under load, N concurrent
puts therefore cost one commit, not N (group commit as in database WALs, e.g. PostgreSQL's
``commit_delay`` / InnoDB's binlog group commit).

Failure isolation:

* A request whose ``apply`` raises a Python exception (e.g. an update callback raising)
  fails alone. Plain requests must raise such errors only *before* they mutate anything;
  ``atomic`` requests run in a nested LMDB transaction that is aborted on error, so they
  may fail anywhere.
* An LMDB error (``MapFullError`` when the map is full, an I/O error on commit, ...)
  leaves the transaction unusable, so the whole group is aborted — nothing of it is
  written — and every request of the group is replayed alone in its own transaction. The
  requests that fit still succeed; the one that does not gets the mapped error (e.g.
  ``StoreFull``). A replayed ``apply`` runs a second time, which is why update callbacks
  must be pure.

Lingering (Kafka's ``linger.ms``, PostgreSQL's ``commit_delay``): a request submitted with
``linger=True`` says "more writes of this stream follow at once" (the blocks of one upload
arriving one RPC each). A group made only of lingering requests waits, up to ``linger_s``
after its first request was queued, for more requests until it holds ``linger_bytes``;
any request that does not linger ends the wait. An upload's blocks then share one commit
(one flush) per few blocks instead of one each: on this project's test machine a flush per
2 MiB wrote 283 MB/s, one per 8 MiB 1,491 MB/s.

Cancelling the awaiting coroutine does not withdraw a queued request: it may still be
applied.

No write transaction is ever begun outside the writer thread. Work that needs a write
transaction of its own — creating a table's sub-databases (``mdb_dbi_open``) and checking
or rebuilding its Merkle summary — is queued as an *exclusive* request
(:meth:`GroupCommitWriter.run_exclusive`), run alone in its own transaction between two
groups. This matters beyond serialization: py-lmdb's ``Environment.open_db()`` without a
``txn`` begins a write transaction while *holding the GIL*, so calling it on another thread
while the writer holds (or is acquiring) LMDB's write mutex deadlocks the process — that
thread waits for the mutex with the GIL, the writer waits for the GIL with the mutex.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import lmdb

from dfspeer.blockstore.errors import BlockStoreError

MiB = 1024 * 1024
log = logging.getLogger(__name__)


class WriteTxn:
    """An LMDB write transaction (``buffers=True``: reads return memoryviews valid only
    inside it) plus the changes to the persisted block counters made inside it, and the
    Merkle summary changes still to be written before it commits."""

    __slots__ = (
        "bytes_delta", "count_delta", "keep_cached", "kept_blocks", "summary_changes",
        "txn", "written_blocks",
    )

    def __init__(self, txn: lmdb.Transaction[memoryview]) -> None:
        self.txn = txn
        self.count_delta = 0
        """Change of the number of stored blocks in this transaction."""
        self.bytes_delta = 0
        """Change of the stored block bytes (sum of value lengths) in this transaction."""
        self.summary_changes: dict[Any, dict[bytes, Any]] = {}
        """Per (summary sub-db, partition): key -> final leaf value hash (None: removed),
        applied by ``before_commit`` (see :mod:`dfspeer.blockstore.merkle`), so the keys
        of one transaction share the rewrites of their common trie nodes."""
        self.keep_cached = False
        """True while a ``keep_cached`` request is applied (its blocks: ``kept_blocks``)."""
        self.written_blocks: list[bytes] = []
        """Digests of the blocks whose values this transaction wrote (``after_settle``)."""
        self.kept_blocks: list[tuple[bytes, int]] = []
        """``(digest, size)`` of the blocks written by ``keep_cached`` requests."""

    def absorb(self, child: WriteTxn) -> None:
        """Take over the counters and summary changes of a committed nested transaction."""
        self.count_delta += child.count_delta
        self.bytes_delta += child.bytes_delta
        self.written_blocks += child.written_blocks
        self.kept_blocks += child.kept_blocks
        for where, changes in child.summary_changes.items():
            mine = self.summary_changes.get(where)
            if mine is None:
                self.summary_changes[where] = changes
            else:
                mine.update(changes)


Apply = Callable[[WriteTxn], Any]
AfterSettle = Callable[[list[bytes], list[tuple[bytes, int]]], None]


@dataclass(slots=True, eq=False)
class _Request:
    apply: Apply
    atomic: bool
    size: int
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[Any]
    linger: bool = False
    keep_cached: bool = False
    queued_at: float = 0.0  # time.monotonic() when submitted
    result: Any = None
    error: BaseException | None = field(default=None)


@dataclass(slots=True, eq=False)
class _Exclusive:
    """Run ``fn(txn)`` alone in its own write transaction; the result goes to ``future``."""

    fn: Callable[[lmdb.Transaction[memoryview]], Any]
    future: concurrent.futures.Future[Any]


def _settle(future: asyncio.Future[Any], result: Any, error: BaseException | None) -> None:
    if future.done():  # the caller was cancelled; the write may still have happened
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(result)


class GroupCommitWriter:
    """One daemon thread applying queued write requests with group commit.

    ``before_commit(w)`` runs in the writer thread after the requests of a transaction and
    before its commit (the store writes its counters there); ``after_commit(w)`` runs after
    a successful commit. ``after_settle(written, kept)``, if given, runs once the callers
    of a group have their answers, with the blocks its committed transactions wrote:
    ``written``, their digests; ``kept``, ``(digest, size)`` of those written by requests
    submitted with ``keep_cached`` (the store drops their pages from the OS page cache,
    :mod:`.page_cache`). An exception from it is logged and the writer goes on.
    ``map_error`` turns an ``lmdb.Error`` into the error a failed request receives.
    Counters (read from any thread): ``commits`` (write transactions committed),
    ``requests`` (requests applied in them), ``replays`` (groups that had to be replayed
    one request per transaction).
    """

    def __init__(
        self,
        env: lmdb.Environment,
        *,
        before_commit: Callable[[WriteTxn], None],
        after_commit: Callable[[WriteTxn], None],
        map_error: Callable[[lmdb.Error], BlockStoreError],
        after_settle: AfterSettle | None = None,
        max_group_bytes: int = 64 * MiB,
        max_group_requests: int = 4096,
        linger_s: float = 0.0,
        linger_bytes: int = 8 * MiB,
        name: str = "dfspeer-blockstore-writer",
    ) -> None:
        self._env = env
        self._before_commit = before_commit
        self._after_commit = after_commit
        self._map_error = map_error
        self._init_settle(after_settle)
        self._max_group_bytes = max_group_bytes
        self._max_group_requests = max_group_requests
        self._linger_s = linger_s
        self._linger_bytes = min(linger_bytes, max_group_bytes)
        self._queue: collections.deque[_Request | _Exclusive] = collections.deque()
        self._cond = threading.Condition()
        self._closing = False
        self.commits = 0
        self.requests = 0
        self.replays = 0
        # Daemon: a process that exits without close() must not hang; LMDB is crash-safe.
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    async def submit(
        self,
        apply: Apply,
        *,
        size: int = 0,
        atomic: bool = False,
        linger: bool = False,
        keep_cached: bool = False,
    ) -> Any:
        """Queue ``apply`` and wait until its transaction is committed; return its result.

        ``size`` (bytes) bounds the group; ``atomic`` runs ``apply`` in a nested transaction
        so an exception anywhere in it rolls back its partial writes; ``linger``: more
        writes follow at once, the commit may wait for them (module docstring);
        ``keep_cached``: the blocks it writes are this peer's own (``after_settle``). Raises what
        ``apply`` raised, the mapped LMDB error (e.g. ``StoreFull``), or ``BlockStoreError``
        if the writer is closed.
        """
        loop = asyncio.get_running_loop()
        request = _Request(
            apply, atomic, size, loop, loop.create_future(), linger, keep_cached, time.monotonic()
        )
        with self._cond:
            if self._closing:
                raise BlockStoreError("block store is closed")
            self._queue.append(request)
            self._cond.notify()
        return await request.future

    def in_writer_thread(self) -> bool:
        """True if called from the writer thread itself."""
        return threading.current_thread() is self._thread

    def run_exclusive(self, fn: Callable[[lmdb.Transaction[memoryview]], Any]) -> Any:
        """Run ``fn(txn)`` in the writer thread, alone in its own write transaction
        (``buffers=True``) between two groups; commit it and return ``fn``'s result.

        Blocking: callable from any thread but the writer's own (the event loop included —
        it waits at most for the group being committed; use it for rare work such as
        opening a table). Raises what ``fn`` raised (the transaction is then aborted, so
        nothing of it is written), ``lmdb.Error`` (unmapped), or ``BlockStoreError`` if the
        writer is closed or if called from the writer thread (it would wait for itself).
        Not counted in ``commits``/``requests``.
        """
        if self.in_writer_thread():
            raise BlockStoreError(
                "cannot run an exclusive write (e.g. open a new table) from inside the "
                "block store's writer thread (e.g. in a table update callback): it would "
                "wait for itself"
            )
        request = _Exclusive(fn, concurrent.futures.Future())
        with self._cond:
            if self._closing:
                raise BlockStoreError("block store is closed")
            self._queue.append(request)
            self._cond.notify()
        return request.future.result()

    async def close(self) -> None:
        """Refuse new requests, let the thread finish everything queued, and join it."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        await asyncio.to_thread(self._thread.join)

    # ------------------------------------------------------------------ writer thread
    def _run(self) -> None:
        while (group := self._take()) is not None:
            if isinstance(group, _Exclusive):
                self._run_exclusive(group)
                continue
            try:
                self._process(group)
            except BaseException as exc:  # a bug here must not leave callers hanging
                for request in group:
                    request.error = BlockStoreError(f"block store writer failed: {exc!r}")
            for request in group:
                # RuntimeError: the caller's loop is closed, nobody is waiting any more.
                with contextlib.suppress(RuntimeError):
                    request.loop.call_soon_threadsafe(
                        _settle, request.future, request.result, request.error
                    )
            self._settled()

    def _init_settle(self, after_settle: AfterSettle | None) -> None:
        """The hook, and the committed blocks waiting for it (the writer thread's)."""
        self._after_settle = after_settle
        self._written: list[bytes] = []
        self._kept: list[tuple[bytes, int]] = []

    def _settled(self) -> None:
        """Hand the blocks of the group just answered to ``after_settle``."""
        written, kept, self._written, self._kept = self._written, self._kept, [], []
        if (written or kept) and self._after_settle is not None:
            try:
                self._after_settle(written, kept)
            except Exception:  # dropping cached pages is an optimisation, never a failure
                log.exception("block store: after-settle hook failed")

    def _take(self) -> list[_Request] | _Exclusive | None:
        """Block until work is queued; pop a group (or one exclusive request, which never
        joins a group). None once closing and drained."""
        with self._cond:
            while not self._queue and not self._closing:
                self._cond.wait()
            if not self._queue:
                return None
            first = self._queue.popleft()
            if isinstance(first, _Exclusive):
                return first
            group = [first]
            size = self._fill(group, first.size)
            if first.linger and self._linger_s > 0 and all(r.linger for r in group):
                self._linger(group, size, first.queued_at + self._linger_s)
            return group

    def _fill(self, group: list[_Request], size: int) -> int:
        """Move queued requests into ``group`` while they fit; return its size. Holds the
        condition's lock."""
        while self._queue and len(group) < self._max_group_requests:
            head = self._queue[0]
            if isinstance(head, _Exclusive) or size + head.size > self._max_group_bytes:
                break
            self._queue.popleft()
            size += head.size
            group.append(head)
        return size

    def _linger(self, group: list[_Request], size: int, deadline: float) -> None:
        """Wait until ``deadline`` (monotonic) for more requests to join a group of
        lingering ones, until it holds ``linger_bytes``, a request that does not linger
        joins, or one cannot join. Holds the condition's lock (``wait`` releases it)."""
        while size < self._linger_bytes and not self._closing:
            if self._queue:
                count = len(group)
                size = self._fill(group, size)
                if len(group) == count or not all(r.linger for r in group[count:]):
                    return
                continue
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return
            self._cond.wait(remaining)

    def _run_exclusive(self, request: _Exclusive) -> None:
        try:
            txn = self._env.begin(write=True, buffers=True)
            try:
                result = request.fn(txn)
                txn.commit()
            except BaseException:
                txn.abort()
                raise
        except BaseException as exc:  # the waiting caller gets it; the writer goes on
            request.future.set_exception(exc)
        else:
            request.future.set_result(result)

    def _process(self, group: list[_Request]) -> None:
        if len(group) > 1:
            try:
                self._commit(group)
                return
            except lmdb.Error:
                self.replays += 1  # nothing of the group was written; replay one by one
        for request in group:
            try:
                self._commit([request])
            except lmdb.Error as exc:
                request.result, request.error = None, self._map_error(exc)

    def _commit(self, requests: list[_Request]) -> None:
        """Apply ``requests`` in one write transaction and commit it; lmdb.Error aborts all."""
        txn = self._env.begin(write=True, buffers=True)
        w = WriteTxn(txn)
        try:
            for request in requests:
                request.result, request.error = None, None
                try:
                    request.result = self._apply(w, request)
                except lmdb.Error:
                    raise
                except Exception as exc:  # this request alone fails; it wrote nothing
                    request.error = exc
            self._before_commit(w)
            txn.commit()
        except BaseException:
            txn.abort()
            raise
        self.commits += 1
        self.requests += len(requests)
        self._written += w.written_blocks
        self._kept += w.kept_blocks
        self._after_commit(w)

    def _apply(self, w: WriteTxn, request: _Request) -> Any:
        w.keep_cached = request.keep_cached
        if not request.atomic:
            return request.apply(w)
        child = WriteTxn(self._env.begin(write=True, parent=w.txn, buffers=True))
        child.keep_cached = request.keep_cached
        try:
            result = request.apply(child)
        except BaseException:
            child.txn.abort()
            raise
        child.txn.commit()
        w.absorb(child)
        return result
