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
their CRC-32 sums (kept beside the block, see :mod:`.schema`) instead of the whole SHA-256.
"""

from __future__ import annotations

import asyncio
import dataclasses
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Any

import lmdb

from dfspeer.blockstore import refcount
from dfspeer.blockstore.batch import prepare_batch, run_steps
from dfspeer.blockstore.errors import (
    BlockNotFound,
    BlockStoreError,
    CorruptBlock,
    DigestMismatch,
    StoreFull,
)
from dfspeer.blockstore.merkle import BLOCKS_TREE, apply_pending
from dfspeer.blockstore.ops import PutBlock, WriteOp
from dfspeer.blockstore.schema import (
    INTERNAL_DBS,
    MAX_PARTITION,
    SUM_BYTES,
    TABLE_PREFIX,
    PartitionOf,
    as_bytes,
    bad_segment,
    check_digest,
    checked_partition,
    delete_block,
    delete_block_sized,
    digest_page,
    open_schema,
    put_block,
    segment_count,
    segments_of,
    sha256,
    write_counters,
    zero_partition,
)
from dfspeer.blockstore.summary import MerkleReader
from dfspeer.blockstore.tables import (
    BoundHook,
    HookTxn,
    MetaTable,
    TableHandle,
    TableHook,
    check_table_name,
    open_existing_tables,
    open_table,
    summary_current,
)
from dfspeer.blockstore.writer import GroupCommitWriter, WriteTxn

GiB = 1024**3
INLINE_BYTES = 64 * 1024
"""Blocks up to this size are hashed/copied on the event loop; larger ones in a thread."""
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
    request per transaction.
    """

    block_count: int
    block_bytes: int
    map_used_bytes: int
    map_size_bytes: int
    txn_commits: int = 0
    write_requests: int = 0
    group_replays: int = 0


def _now_ms() -> int:
    return int(time.time() * 1000)


def _verified(digest: bytes, data: bytes) -> bytes:
    actual = sha256(data)
    if actual != digest:
        raise CorruptBlock(digest, actual)
    return data


class BlockStore:
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
    ) -> None:
        self.path = Path(path)
        self.durable = durable
        self.summaries = summaries
        self._partition_of: PartitionOf | None = partition_of
        self.path.mkdir(parents=True, exist_ok=True)
        try:
            self._env = lmdb.open(
                str(self.path),
                map_size=map_size_bytes,
                subdir=True,
                max_dbs=2 * max_tables + INTERNAL_DBS,  # a table + its Merkle trie
                sync=durable,
                metasync=durable,
                writemap=False,  # a stray pointer write can never reach the map
                # Blocks are long runs of overflow pages: OS readahead makes cold reads ~10x
                # faster than MDB_NORDAHEAD (benchmarks/blockstore_bench.py measures both).
                readahead=True,
                lock=True,
            )
        except lmdb.Error as exc:
            raise BlockStoreError(f"cannot open LMDB environment {self.path}: {exc}") from exc
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
        self._tables: dict[str, MetaTable] = {}
        self._handles: dict[str, TableHandle] = {}
        self._readers_by_name: dict[str, MerkleReader] = {}
        self._tables_lock = threading.Lock()
        self._open_lock = threading.Lock()
        self._readers = 0
        self._readers_cond = threading.Condition()
        self._closing = False
        self._closed = threading.Event()
        self._writer = writer_factory(
            self._env,
            before_commit=self._before_commit,
            after_commit=self._after_commit,
            map_error=self._map_error,
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
            await asyncio.to_thread(self._wait_readers)
            if not self.durable:
                self._env.sync(True)  # a clean shutdown loses nothing even without fsyncs
            self._env.close()
        finally:
            self._closed.set()

    # ------------------------------------------------------------------ blocks: writes
    async def put(self, data: bytes) -> bytes:
        """Store ``data`` (0..~4 GiB) under its SHA-256; return the 32-byte digest.

        Returns once committed (fsync'd if durable). Identical content is stored once.
        Raises ``StoreFull`` (nothing written) or ``BlockStoreError``.
        """
        data = as_bytes(data)
        digest = await self._hash(data)
        await self._store(digest, data)
        return digest

    async def put_verified(self, digest: bytes, data: bytes, *, linger: bool = False) -> None:
        """Store ``data`` under ``digest`` after checking ``sha256(data) == digest``.

        Raises ``DigestMismatch`` (and writes nothing) if not; else as :meth:`put`. Also
        repairs a corrupt stored copy of the same digest (it is overwritten). ``linger``:
        more blocks follow at once; the commit may wait ``commit_linger_s`` to share their
        flush (:mod:`.writer`).
        """
        check_digest(digest)
        data = as_bytes(data)
        actual = await self._hash(data)
        if actual != digest:
            raise DigestMismatch(digest, actual)
        await self._store(digest, data, linger=linger)

    async def delete(self, digest: bytes) -> bool:
        """Delete the block; True if it existed. Works on a full map (frees pages)."""
        check_digest(digest)
        partition = checked_partition(self._partition_of, digest)
        apply = partial(delete_block, dbs=self._dbs, digest=digest, partition=partition)
        return bool(await self._writer.submit(apply))

    async def write_batch(self, ops: Sequence[WriteOp], *, linger: bool = False) -> list[Any]:
        """Apply ``ops`` (see :mod:`dfspeer.blockstore.ops`) atomically in ONE transaction.

        All ops are validated, hashed and CBOR-encoded before anything is queued, so a bad
        op (``DigestMismatch``, ValueError, TypeError) rejects the batch with nothing
        written; an exception from a ``TableUpdate`` callback or ``StoreFull`` also leaves
        nothing of the batch. Returns one result per op (see the table in :mod:`.ops`).
        ``linger``: as for :meth:`put_verified`.
        """
        if not ops:
            return []
        puts = [op for op in ops if isinstance(op, PutBlock)]
        blobs = [as_bytes(op.data) for op in puts]
        total = sum(map(len, blobs))
        if all(op.hashed and op.digest is not None for op in puts):
            digests = [check_digest(op.digest) for op in puts if op.digest is not None]
        elif total <= INLINE_BYTES:
            digests = [sha256(b) for b in blobs]
        else:
            digests = await asyncio.to_thread(lambda: [sha256(b) for b in blobs])
        steps = prepare_batch(
            ops,
            iter(zip(digests, blobs, strict=True)),
            dbs=self._dbs,
            partition_of=self._partition_of,
            table=self._table_handle,
            max_key_bytes=self._max_key,
        )
        result = await self._writer.submit(
            partial(run_steps, steps), size=total, atomic=True, linger=linger
        )
        return list(result)

    async def _hash(self, data: bytes) -> bytes:
        if len(data) <= INLINE_BYTES:
            return sha256(data)
        return await asyncio.to_thread(sha256, data)

    async def _store(self, digest: bytes, data: bytes, *, linger: bool = False) -> None:
        partition = checked_partition(self._partition_of, digest)
        apply = partial(put_block, dbs=self._dbs, digest=digest, data=data, partition=partition)
        await self._writer.submit(apply, size=len(data), linger=linger)

    # ------------------------------------------------------------------ blocks: reads
    async def get(self, digest: bytes) -> bytes:
        """The block's bytes, re-hashed. Raises ``BlockNotFound`` if absent, ``CorruptBlock``
        if the stored bytes do not hash to ``digest``."""
        check_digest(digest)
        with self._read_txn() as txn:
            view = txn.get(digest, db=self._dbs.blocks)
            if view is None:
                raise BlockNotFound(digest)
            small = bytes(view) if len(view) <= INLINE_BYTES else None
        if small is not None:
            return _verified(digest, small)
        return await asyncio.to_thread(self._get_large, digest)

    async def get_range(self, digest: bytes, lo: int, hi: int) -> bytes:
        """Bytes ``[lo, hi)`` of the block (clamped to its size), verified by the CRC-32 of
        each 64 KiB segment they touch (see :mod:`.schema`), not by re-hashing the whole
        block; a block stored without segment sums is read whole and re-hashed. Raises
        ``BlockNotFound``, ``CorruptBlock`` (``actual``: the SHA-256 of the whole stored
        block) when a covered segment does not match; ValueError for a bad range."""
        check_digest(digest)
        if lo < 0 or hi < lo:
            raise ValueError(f"bad range [{lo}, {hi})")
        got = self._read_segments(digest, lo, hi, INLINE_BYTES)
        if got is None:
            got = await asyncio.to_thread(self._read_segments, digest, lo, hi, None)
        assert got is not None
        return got

    def _read_segments(self, digest: bytes, lo: int, hi: int, limit: int | None) -> bytes | None:
        """:meth:`get_range`'s work; None (nothing done) when more than ``limit`` bytes
        would be copied and verified (then the caller runs it in a thread)."""
        with self._read_txn() as txn:
            view = txn.get(digest, db=self._dbs.blocks)
            if view is None:
                raise BlockNotFound(digest)
            size = len(view)
            hi = min(hi, size)
            if lo >= hi:
                return b""
            sums = txn.get(digest, db=self._dbs.segments)
            whole = sums is None or len(sums) != segment_count(size) * SUM_BYTES
            start, stop = (0, size) if whole else segments_of(size, lo, hi)
            if limit is not None and stop - start > limit:
                return None
            data = bytes(view[start:stop])
            expected = None if sums is None else bytes(sums)
            if expected is not None and not whole and bad_segment(expected, start, data) is None:
                return data[lo - start : hi - start]
            if not whole:  # a segment does not match: the whole block, for the error
                data = bytes(view)
        if whole:
            return _verified(digest, data)[lo:hi]
        raise CorruptBlock(digest, sha256(data))

    def _get_large(self, digest: bytes) -> bytes:
        with self._read_txn() as txn:
            view = txn.get(digest, db=self._dbs.blocks)
            if view is None:  # deleted since the first lookup
                raise BlockNotFound(digest)
            data = bytes(view)
        return _verified(digest, data)

    def block_size(self, digest: bytes) -> int:
        """Stored length of block ``digest`` in bytes (0 when absent; not verified)."""
        with self._read_txn() as txn:
            view = txn.get(check_digest(digest), db=self._dbs.blocks)
            return 0 if view is None else len(view)

    async def has(self, digest: bytes) -> bool:
        """True if a block is stored under ``digest`` (not verified; see :meth:`get`)."""
        check_digest(digest)
        with self._read_txn() as txn:
            return txn.get(digest, db=self._dbs.blocks) is not None

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
        )

    # ------------------------------------------------------------------ tables
    def table(
        self, name: str, *, partition_key_of: Callable[[bytes], int] | None = None
    ) -> MetaTable:
        """The metadata table ``name`` (1..64 chars of ``[A-Za-z0-9_.:/-]``, not
        ``"blocks"``), created on first use.

        ``partition_key_of(key) -> 0..65535`` places each key in a partition of the table's
        Merkle summary; default: the store's ``partition_of`` (all keys in partition 0
        without one). Give it at the first use of the table in the process (also before a
        :meth:`write_batch` on it); a different one later raises ValueError. If the summary
        on disk was built with another partitioner (or none), it is rebuilt here.

        The first use of a table that did not exist when the store was opened (or whose
        summary must be rebuilt) creates it in the writer thread, alone in its own write
        transaction, and blocks the caller (event loop included) until that is committed:
        at most the current group commit plus the creation. Raises ``BlockStoreError`` when
        more than ``max_tables`` would exist, or when such a first use happens inside the
        writer thread (e.g. in an update callback).
        """
        handle = self._table_handle(name, partition_key_of)
        with self._tables_lock:
            table = self._tables.get(name)
            if table is None:
                table = MetaTable(handle, self._read_txn, self._writer.submit, self._max_key)
                self._tables[name] = table
            return table

    def merkle(self, name: str) -> MerkleReader:
        """Reader of the Merkle summary of the blocks (``name="blocks"``) or of the
        metadata table ``name`` (opened as by :meth:`table` if not yet). Raises ValueError
        if the store was opened with ``summaries=False``."""
        if not self.summaries:
            raise ValueError("this block store keeps no Merkle summaries (summaries=False)")
        db = self._dbs.summary if name == BLOCKS_TREE else self._table_handle(name).summary
        assert db is not None
        with self._tables_lock:
            reader = self._readers_by_name.get(name)
            if reader is None:
                reader = MerkleReader(name, db, self._read_txn)
                self._readers_by_name[name] = reader
            return reader

    def table_names(self) -> list[str]:
        """Names of every metadata table that exists in the environment, sorted."""
        with self._read_txn() as txn, txn.cursor() as cursor:
            cursor.set_range(TABLE_PREFIX)
            names = []
            for key in cursor.iternext(keys=True, values=False):
                raw = bytes(key)
                if not raw.startswith(TABLE_PREFIX):
                    break
                names.append(raw[len(TABLE_PREFIX) :].decode())
            return names

    def _table_handle(
        self, name: str, partition_key_of: Callable[[bytes], int] | None = None
    ) -> TableHandle:
        check_table_name(name)
        handle = self._cached_handle(name, partition_key_of)
        if handle is not None:
            return handle
        if self._writer.in_writer_thread():
            raise BlockStoreError(
                f"cannot open table {name!r} for the first time inside the block store's "
                "writer thread (e.g. in an update callback); open it beforehand"
            )
        # One opener at a time (so two first uses cannot rebuild the summary with two
        # partitioners); never held by the writer thread, nor while holding _tables_lock.
        with self._open_lock:
            handle = self._cached_handle(name, partition_key_of)
            if handle is not None:
                return handle
            partition_of = (
                partition_key_of
                or self._table_partitioners.get(name)
                or self._partition_of
                or zero_partition
            )
            with self._reading():
                handle = self._open_handle(name, partition_of)
            with self._tables_lock:
                self._handles[name] = handle
            return handle

    def _cached_handle(
        self, name: str, partition_key_of: Callable[[bytes], int] | None
    ) -> TableHandle | None:
        with self._tables_lock:
            handle = self._handles.get(name)
        if (
            handle is not None
            and partition_key_of is not None
            and partition_key_of != handle.partition_of
        ):
            raise ValueError(f"table {name!r} is already open with another partitioner")
        return handle

    def _open_handle(self, name: str, partition_of: PartitionOf) -> TableHandle:
        """Handle of table ``name``: from the sub-dbs opened at store open if its summary is
        current (a read), else created/rebuilt in the writer thread. Never begins a write
        transaction on this thread: see :mod:`dfspeer.blockstore.writer` for why."""
        hook = self._bind_hook(name)
        summaries = self.summaries and name not in self._local_tables
        dbis = self._dbis.get(name)
        if dbis is not None:
            db, summary = dbis
            if summary is None or not summaries:
                return TableHandle(name, db, None, partition_of, hook)
            with self._read_txn() as txn:
                if summary_current(txn, self._dbs, name, partition_of):
                    return TableHandle(name, db, summary, partition_of, hook)
        try:
            handle: TableHandle = self._writer.run_exclusive(
                lambda txn: open_table(self._env, txn, self._dbs, name, partition_of, summaries)
            )
            handle = dataclasses.replace(handle, hook=hook)
        except lmdb.DbsFullError as exc:
            raise BlockStoreError(f"cannot create table {name!r}: too many tables") from exc
        except lmdb.Error as exc:
            raise self._map_error(exc) from exc
        return handle

    def _bind_hook(self, name: str) -> BoundHook | None:
        hook = self._hooks.get(name)
        if hook is None:
            return None
        user_hook = hook

        def bound(w: WriteTxn, key: bytes, old: Any | None, new: Any | None) -> None:
            user_hook(HookTxn(w, self._dbs, self._open_handle_of, _now_ms()), key, old, new)

        return bound

    def _open_handle_of(self, name: str) -> TableHandle:
        with self._tables_lock:
            handle = self._handles.get(name)
        if handle is None:
            raise BlockStoreError(f"table {name!r} must be opened before a hook writes to it")
        return handle

    # ------------------------------------------------------------------ reference counts
    def refcount(self, digest: bytes) -> int:
        """References to block ``digest`` (kept by the block_refs table's hook)."""
        check_digest(digest)
        with self._read_txn() as txn:
            return refcount.count_of(txn, self._dbs.refs, digest)

    def referenced_bytes(self) -> tuple[int, int, int]:
        """``(blocks, bytes, logical bytes)`` of the referenced blocks (see
        :func:`.refcount.referenced_bytes`); O(referenced blocks), in one read txn."""
        with self._read_txn() as txn:
            return refcount.referenced_bytes(txn, self._dbs.refs, self._dbs.blocks)

    def gc_queued(self) -> int:
        """Digests with no reference, waiting for their grace to end (O(1))."""
        with self._read_txn() as txn:
            return refcount.queued(txn, self._dbs.refs)

    def gc_candidates(self, horizon_ms: int, limit: int = 1024) -> list[tuple[int, bytes]]:
        """Queued ``(zero_since_ms, digest)`` unreferenced since ``horizon_ms`` or before."""
        with self._read_txn() as txn:
            return refcount.candidates(txn, self._dbs.refs, horizon_ms, limit)

    async def collect(
        self,
        found: Sequence[tuple[int, bytes]],
        horizon_ms: int,
        pinned: Callable[[lmdb.Transaction[memoryview], bytes], bool],
    ) -> tuple[int, int]:
        """Delete the blocks of ``found`` still unreferenced since before ``horizon_ms``,
        re-checked in one write transaction (see :func:`.refcount.collect`);
        ``pinned(txn, digest)`` keeps a block. Returns ``(blocks deleted, bytes freed)``."""

        def delete(w: WriteTxn, digest: bytes) -> int | None:
            partition = checked_partition(self._partition_of, digest)
            return delete_block_sized(w, self._dbs, digest, partition)

        def apply(w: WriteTxn) -> tuple[int, int]:
            return refcount.collect(
                w, self._dbs.refs, found, horizon_ms, delete, lambda w2, d: pinned(w2.txn, d)
            )

        result: tuple[int, int] = await self._writer.submit(apply)
        return result

    async def rebuild_refcounts(self, counts: Mapping[bytes, int]) -> int:
        """Replace every reference count by ``counts`` (digest -> live references, from a
        scan of the block_refs table); returns how many counts changed."""
        stored = list(self._iter_digests(None, None))

        def apply(w: WriteTxn) -> int:
            return refcount.rebuild(w, self._dbs.refs, dict(counts), stored, _now_ms())

        result: int = await self._writer.submit(apply)
        return result

    # ------------------------------------------------------------------ plumbing
    @contextmanager
    def _reading(self) -> Iterator[None]:
        with self._readers_cond:
            if self._closing:
                raise BlockStoreError("block store is closed")
            self._readers += 1
        try:
            yield
        finally:
            with self._readers_cond:
                self._readers -= 1
                if self._readers == 0:
                    self._readers_cond.notify_all()

    @contextmanager
    def _read_txn(self) -> Iterator[lmdb.Transaction[memoryview]]:
        with self._reading():
            try:
                txn = self._env.begin(buffers=True)
            except lmdb.Error as exc:
                raise self._map_error(exc) from exc
            try:
                yield txn
            finally:
                txn.abort()

    def _wait_readers(self) -> None:
        with self._readers_cond:
            while self._readers:
                self._readers_cond.wait()

    def _map_error(self, exc: lmdb.Error) -> BlockStoreError:
        if isinstance(exc, lmdb.MapFullError):
            size = self._env.info()["map_size"]
            return StoreFull(f"block store map is full (map_size_bytes={size}); write not applied")
        return BlockStoreError(f"LMDB error: {exc}")

    def _before_commit(self, w: WriteTxn) -> None:
        if w.summary_changes:
            apply_pending(w.txn, w.summary_changes)
        if w.count_delta or w.bytes_delta:
            count, size = self._counters
            write_counters(w.txn, self._dbs, count + w.count_delta, size + w.bytes_delta)

    def _after_commit(self, w: WriteTxn) -> None:
        if w.count_delta or w.bytes_delta:
            count, size = self._counters
            self._counters = (count + w.count_delta, size + w.bytes_delta)
