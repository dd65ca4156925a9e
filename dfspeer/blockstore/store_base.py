"""The LMDB environment under a :class:`~dfspeer.blockstore.store.BlockStore`, and the
plumbing its parts share: opening the environment, read transactions counted so that
:meth:`~dfspeer.blockstore.store.BlockStore.close` can wait for them, LMDB errors mapped
to :class:`~dfspeer.blockstore.errors.BlockStoreError`, and the block counters written
before and published after each commit.

:class:`StoreBase` declares the state every part of the store uses; the store's
constructor (:mod:`.store`) sets it.
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import lmdb

from dfspeer.blockstore.errors import BlockStoreError, StoreFull
from dfspeer.blockstore.merkle import apply_pending
from dfspeer.blockstore.page_cache import WrittenPageDropper
from dfspeer.blockstore.schema import INTERNAL_DBS, Dbs, PartitionOf, write_counters
from dfspeer.blockstore.tables import TableHandle
from dfspeer.blockstore.writer import GroupCommitWriter, WriteTxn

INLINE_BYTES = 64 * 1024
"""Blocks up to this size are hashed/copied on the event loop; larger ones in a thread."""


DISK_FULL_BYTES = 64 * 1024 * 1024
"""An LMDB write error with less free space than this on the store's filesystem is a full
disk (``StoreFull``, 507), not a generic store error."""


def _free_bytes(path: Path) -> int | None:
    """Bytes free for this process on the filesystem of ``path``; None if unknown."""
    try:
        return shutil.disk_usage(path).free
    except OSError:
        return None


def now_ms() -> int:
    """Unix time in milliseconds."""
    return int(time.time() * 1000)


def open_environment(
    path: Path, *, map_size_bytes: int, durable: bool, max_tables: int
) -> lmdb.Environment:
    """Open (creating the directory if missing) the LMDB environment of a block store at
    ``path``. Raises ``BlockStoreError`` if it cannot be opened (e.g. already open in this
    process)."""
    path.mkdir(parents=True, exist_ok=True)
    try:
        return lmdb.open(
            str(path),
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
        raise BlockStoreError(f"cannot open LMDB environment {path}: {exc}") from exc


class StoreBase:
    """State and plumbing shared by the parts of a :class:`~dfspeer.blockstore.store.
    BlockStore` (whose docstring describes the arguments that set them)."""

    path: Path
    durable: bool
    summaries: bool
    _env: lmdb.Environment
    _dbs: Dbs
    _counters: tuple[int, int]
    """``(block_count, block_bytes)`` as of the last commit."""
    _partition_of: PartitionOf | None
    _max_key: int
    _writer: GroupCommitWriter
    _dropper: WrittenPageDropper | None
    """Drops durably written blocks from the OS page cache (None: they stay cached)."""
    _readers: int
    """Read transactions (and other uses of the environment) running; closing waits for
    them to end."""
    _readers_cond: threading.Condition
    _closing: bool
    _closed: threading.Event

    if TYPE_CHECKING:  # provided by other parts of BlockStore

        def _table_handle(
            self, name: str, partition_key_of: Callable[[bytes], int] | None = None
        ) -> TableHandle: ...

        def _iter_digests(self, partition: int | None, after: bytes | None) -> Iterator[bytes]: ...

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
        free = _free_bytes(self.path)
        if free is not None and free < DISK_FULL_BYTES:
            # A full disk fails LMDB's page writes, which it reports as an I/O error.
            return StoreFull(
                f"the disk under the block store is full ({free} bytes free): {exc}; "
                "write not applied"
            )
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
