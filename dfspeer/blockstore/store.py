"""BlockStore: content-addressed blocks and metadata tables in one LMDB environment.

Write path: the caller hashes (SHA-256, on a worker thread above 64 KiB so a 4 MiB block's
~2 ms of hashing stays off the event loop), then queues a request to the single writer
thread, which applies every queued request in one transaction and one commit (group
commit, see :mod:`dfspeer.blockstore.writer`). A put returns once its transaction is
committed — fsync'd when ``durable=True`` (LMDB ``sync``/``metasync``), written to the OS
page cache only when ``durable=False`` (survives a process crash, not a power loss).

Read path: LMDB readers never block the writer nor each other. A read opens a read-only
transaction on the calling thread, copies the value out (memoryviews into the map are only
valid inside the transaction) and re-hashes it. Values up to 64 KiB are copied and hashed
on the event loop (≤ ~40 µs, about the cost of a thread hop); larger ones are looked up,
copied and hashed in a worker thread (a 4 MiB block is ~2.3 ms of copy + SHA-256 that must
not stall the loop). py-lmdb opens environments with MDB_NOTLS, so any thread may run its
own read transaction; each read transaction lives and ends on one thread.
:meth:`BlockStore.get_range` copies only the 64 KiB segments a byte range covers and checks
their CRC-32C sums (kept beside the block, see :mod:`.schema`) instead of the whole SHA-256.

The class is assembled from one part per concern: :mod:`.store_base` (the environment and
the plumbing the parts share), :mod:`.store_reads`, :mod:`.store_writes`,
:mod:`.store_tables` (metadata tables and Merkle readers) and :mod:`.store_refcounts`
(reference counts and garbage collection); this module keeps its construction, closing,
iteration and statistics.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import lmdb

from dfspeer.blockstore.page_cache import WrittenPageDropper
from dfspeer.blockstore.schema import (
    MAX_PARTITION,
    PartitionOf,
    check_digest,
    digest_page,
    open_schema,
)
from dfspeer.blockstore.store_base import INLINE_BYTES as INLINE_BYTES
from dfspeer.blockstore.store_base import open_environment
from dfspeer.blockstore.store_reads import ReadsMixin
from dfspeer.blockstore.store_refcounts import RefcountsMixin
from dfspeer.blockstore.store_tables import TablesMixin
from dfspeer.blockstore.store_writes import WritesMixin
from dfspeer.blockstore.tables import TableHook, open_existing_tables
from dfspeer.blockstore.writer import GroupCommitWriter

GiB = 1024**3
ITER_PAGE = 1024
"""Digests read per read transaction by :meth:`BlockStore.iter_digests`."""


@dataclass(frozen=True)
class BlockStoreStats:
    """A snapshot of a store's size, O(1) to take.

    ``block_count``/``block_bytes``: stored blocks and the sum of their lengths (bytes),
    kept as counters in the ``meta`` sub-db by the same transactions that change them.
    ``map_used_bytes``: high-water mark of the LMDB file (pages up to the last used one;
    freed pages inside it are reused before the file grows). ``map_size_bytes``: the map
    size, the hard capacity. ``txn_commits``/``write_requests``: write transactions
    committed and write requests applied since open (requests > commits = group commit).
    ``group_replays``: groups aborted by an LMDB error (e.g. map full) and replayed one
    request per transaction. ``cache_dropped_bytes``: bytes of written blocks asked to leave
    the OS page cache since open (``drop_written``, :mod:`.page_cache`).
    """

    block_count: int
    block_bytes: int
    map_used_bytes: int
    map_size_bytes: int
    txn_commits: int = 0
    write_requests: int = 0
    group_replays: int = 0
    cache_dropped_bytes: int = 0


class BlockStore(ReadsMixin, WritesMixin, TablesMixin, RefcountsMixin):
    """Content-addressed block store + metadata tables in one LMDB environment.

    ``path``: directory of the environment (created if missing). ``map_size_bytes``: LMDB
    map size = hard capacity (sparse file; only used pages take disk). ``durable``: fsync
    on every commit (default) or not. ``partition_of(digest) -> 0..65535``: the ring's
    partition of a digest; given it, the store keeps an index so :meth:`iter_digests` of one
    partition is a range scan. ``max_tables``: named metadata tables that may exist.
    ``summaries``: keep a Merkle summary per (blocks or table, partition), updated in the
    transaction of every write (default; see :mod:`.merkle`, read with :meth:`merkle`);
    without, writes are cheaper and the summaries are rebuilt when next opened with them.
    Opening rebuilds the blocks' summary if it is missing or was built with another
    partitioner (a scan of every digest, in one transaction).

    ``table_hooks``: table name -> ``updated(txn, key, old, new)`` run inside the write
    transaction of every change of that table's entries (see
    :class:`~dfspeer.blockstore.tables.HookTxn`); ``table_partitioners``: table name ->
    the partition of a key, for tables not placed by their whole key; ``local_tables``:
    tables that are never compared with other peers, so they keep no Merkle summary.
    ``writer_factory``: builds the store's writer, called as ``GroupCommitWriter`` is
    (default: that one thread with group commit); a simulation passes one that commits on
    its event loop, so it can place the durability boundary (see :mod:`dfspeer.sim.disk`).
    ``commit_linger_s``: how long an upload's lingering block writes may wait to share a
    commit (:mod:`.writer`). ``drop_written``: in a durable store, written blocks leave the
    OS page cache (:mod:`.page_cache`) — at once, or for the blocks written with
    ``keep_cached``, once ``recent_writes_cache_bytes`` of newer such blocks follow (off by
    default here: every written block stays cached).

    Use as ``async with BlockStore(path) as store:`` or call :meth:`close`. Raises
    ``BlockStoreError`` if the environment cannot be opened (e.g. already open in this
    process), ``StoreFormatError`` for a store of another on-disk format. Keep one
    instance per directory per process.
    """

    def __init__(
        self,
        path: Path,
        *,
        map_size_bytes: int = 64 * GiB,
        durable: bool = True,
        partition_of: Callable[[bytes], int] | None = None,
        max_tables: int = 32,
        summaries: bool = True,
        table_hooks: Mapping[str, TableHook] | None = None,
        table_partitioners: Mapping[str, PartitionOf] | None = None,
        local_tables: Iterable[str] = (),
        writer_factory: Callable[..., GroupCommitWriter] = GroupCommitWriter,
        commit_linger_s: float = 0.0,
        drop_written: bool = False,
        recent_writes_cache_bytes: int = 0,
    ) -> None:
        self.path = Path(path)
        self.durable = durable
        self.summaries = summaries
        self._partition_of = partition_of
        self._env = open_environment(
            self.path, map_size_bytes=map_size_bytes, durable=durable, max_tables=max_tables
        )
        try:
            self._dbs, self._counters = open_schema(self._env, partition_of, summaries)
            # Open the existing tables' sub-dbs now, while no other thread uses the env, so
            # that a later first use of one needs no write transaction (see table()).
            with self._env.begin(write=True, buffers=True) as txn:
                self._dbis = open_existing_tables(self._env, txn, summaries, max_tables)
        except lmdb.Error as exc:
            self._env.close()
            raise self._map_error(exc) from exc
        except BaseException:
            self._env.close()
            raise
        self._psize = int(self._env.stat()["psize"])
        self._max_key = int(self._env.max_key_size())
        self._hooks = dict(table_hooks or {})
        self._table_partitioners = dict(table_partitioners or {})
        self._local_tables = frozenset(local_tables)
        self._tables = {}
        self._handles = {}
        self._readers_by_name = {}
        self._tables_lock = threading.Lock()
        self._open_lock = threading.Lock()
        self._readers = 0
        self._readers_cond = threading.Condition()
        self._closing = False
        self._closed = threading.Event()
        self._dropper = (
            WrittenPageDropper.open(
                self._env, self.path, self._dbs.blocks, recent_writes_cache_bytes
            )
            if durable and drop_written
            else None
        )
        self._writer = writer_factory(
            self._env,
            before_commit=self._before_commit,
            after_commit=self._after_commit,
            map_error=self._map_error,
            after_settle=self._dropper,
            linger_s=commit_linger_s,
        )
        for name in sorted(self._local_tables):  # open now: table hooks may write to them
            self.table(name)

    def __repr__(self) -> str:
        return f"BlockStore({str(self.path)!r}, durable={self.durable})"

    async def __aenter__(self) -> BlockStore:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Finish queued writes, wait for running reads, flush (if not durable), close.

        Idempotent; concurrent calls all return once the store is closed. Afterwards every
        call raises ``BlockStoreError``.
        """
        with self._readers_cond:
            already = self._closing
            self._closing = True
        if already:
            await asyncio.to_thread(self._closed.wait)
            return
        try:
            await self._writer.close()
            if self._dropper is not None:
                self._dropper.close()
            await asyncio.to_thread(self._wait_readers)
            if not self.durable:
                self._env.sync(True)  # a clean shutdown loses nothing even without fsyncs
            self._env.close()
        finally:
            self._closed.set()

    # ------------------------------------------------------------------ blocks: iteration, stats
    def iter_digests(
        self, partition: int | None = None, *, start_after: bytes | None = None
    ) -> Iterator[bytes]:
        """Stored digests (32 bytes each) in byte order: all, or those of ``partition``;
        only those after ``start_after`` (a digest) if given (resumable scans, e.g. scrub).

        Reads pages of 1024 digests, each in its own short read transaction, so a slow
        consumer never pins an old snapshot; digests written or deleted meanwhile may or may
        not appear. ``partition`` needs ``partition_of`` (else ValueError).
        """
        if partition is not None:
            if self._partition_of is None:
                raise ValueError("iter_digests(partition) needs a store opened with partition_of")
            if not 0 <= partition <= MAX_PARTITION:
                raise ValueError(f"partition must be in 0..65535, got {partition}")
        if start_after is not None:
            check_digest(start_after)
        return self._iter_digests(partition, start_after)

    def _iter_digests(self, partition: int | None, after: bytes | None) -> Iterator[bytes]:
        while True:
            with self._read_txn() as txn:
                page = digest_page(txn, self._dbs, partition, after, ITER_PAGE)
            yield from page
            if len(page) < ITER_PAGE:
                return
            after = page[-1]

    def stats(self) -> BlockStoreStats:
        """Counts and sizes, O(1) (see :class:`BlockStoreStats`)."""
        with self._reading():
            info = self._env.info()
        count, size = self._counters
        return BlockStoreStats(
            block_count=count,
            block_bytes=size,
            map_used_bytes=(int(info["last_pgno"]) + 1) * self._psize,
            map_size_bytes=int(info["map_size"]),
            txn_commits=self._writer.commits,
            write_requests=self._writer.requests,
            group_replays=self._writer.replays,
            cache_dropped_bytes=self._dropper.dropped_bytes if self._dropper else 0,
        )
