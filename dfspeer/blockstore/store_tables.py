"""Metadata tables of a :class:`~dfspeer.blockstore.store.BlockStore`: the
:class:`~dfspeer.blockstore.tables.MetaTable` and Merkle summary reader of each name,
and the per-process registry of table handles (opened once, with one partitioner, and
bound to the table's hook). The tables themselves are in :mod:`.tables`.
"""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Callable
from typing import Any

import lmdb

from dfspeer.blockstore.errors import BlockStoreError
from dfspeer.blockstore.merkle import BLOCKS_TREE
from dfspeer.blockstore.schema import TABLE_PREFIX, PartitionOf, zero_partition
from dfspeer.blockstore.store_base import StoreBase, now_ms
from dfspeer.blockstore.summary import MerkleReader
from dfspeer.blockstore.tables import (
    BoundHook,
    HookTxn,
    MetaTable,
    TableHandle,
    TableHook,
    check_table_name,
    open_table,
    summary_current,
)
from dfspeer.blockstore.writer import WriteTxn


class TablesMixin(StoreBase):
    """:class:`~dfspeer.blockstore.store.BlockStore` metadata tables and Merkle readers."""

    _dbis: dict[str, tuple[lmdb._Database, lmdb._Database | None]]
    """Sub-dbs (table, Merkle trie) of the tables that existed when the store was opened."""
    _hooks: dict[str, TableHook]
    _table_partitioners: dict[str, PartitionOf]
    _local_tables: frozenset[str]
    _tables: dict[str, MetaTable]
    _handles: dict[str, TableHandle]
    _readers_by_name: dict[str, MerkleReader]
    _tables_lock: threading.Lock
    """Guards ``_tables``, ``_handles`` and ``_readers_by_name``."""
    _open_lock: threading.Lock

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
            user_hook(HookTxn(w, self._dbs, self._open_handle_of, now_ms()), key, old, new)

        return bound

    def _open_handle_of(self, name: str) -> TableHandle:
        with self._tables_lock:
            handle = self._handles.get(name)
        if handle is None:
            raise BlockStoreError(f"table {name!r} must be opened before a hook writes to it")
        return handle
