"""Metadata tables: named LMDB sub-databases mapping bytes keys to CBOR values.

A :class:`MetaTable` is the generic storage layer under every replicated metadata table of
the cluster (objects, block references, upload sessions, hints): ordered bytes keys (so a key
prefix such as a 2-byte partition gives a range), CBOR values encoded canonically (RFC 8949
§4.2: sorted map keys, shortest forms — the same value gives the same bytes on every peer,
so records can be hashed), reads on the calling thread, and writes through the store's
single writer with group commit. Every write also updates the table's Merkle summary
(:mod:`.merkle`) in the same transaction: leaf ``(key, BLAKE2b-128(canonical CBOR))`` in
the trie of ``partition_key_of(key)``.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import cbor2
import lmdb

from dfspeer.blockstore import refcount
from dfspeer.blockstore.merkle import BLOCKS_TREE, fingerprint, record_change, value_hash
from dfspeer.blockstore.schema import (
    SUMMARY_FINGERPRINT_PREFIX,
    TABLE_PREFIX,
    TABLE_SUMMARY_PREFIX,
    Dbs,
    PartitionOf,
    check_summary,
    checked_partition,
)
from dfspeer.blockstore.writer import Apply, WriteTxn

TABLE_NAME = re.compile(r"[A-Za-z0-9_.:/-]{1,64}")

if TYPE_CHECKING:  # lmdb.Transaction is generic only in its type stubs
    ReadTxn = Callable[[], AbstractContextManager[lmdb.Transaction[memoryview]]]
Submit = Callable[..., Awaitable[Any]]
BoundHook = Callable[[WriteTxn, bytes, Any | None, Any | None], None]
"""``hook(w, key, old, new)``: called inside the write transaction ``w`` after ``key``
changed from ``old`` to ``new`` (decoded values; None = absent)."""


class HookTxn:
    """What a table's ``updated()`` hook may do inside the entry's write transaction:
    change reference counts (:mod:`.refcount`) and write entries of other, already opened
    tables. ``now_ms``: unix milliseconds of the transaction."""

    __slots__ = ("_dbs", "_handle_of", "now_ms", "w")

    def __init__(
        self, w: WriteTxn, dbs: Dbs, handle_of: Callable[[str], TableHandle], now_ms: int
    ) -> None:
        self.w = w
        self._dbs = dbs
        self._handle_of = handle_of
        self.now_ms = now_ms

    def adjust_refcount(self, digest: bytes, delta: int) -> int:
        """Add ``delta`` to the reference count of block ``digest``; the new count."""
        return refcount.adjust(self.w, self._dbs.refs, digest, delta, self.now_ms)

    def put(self, table: str, key: bytes, value: Any) -> None:
        """Set ``table[key] = value`` in this transaction (``table`` must be open)."""
        t = self._handle_of(table)
        encoded = encode(value)
        table_put(self.w, t, key, encoded, t.partition(key), value_hash(encoded))


TableHook = Callable[[HookTxn, bytes, Any | None, Any | None], None]
"""A schema's ``updated(txn, key, old, new)`` hook (see :class:`HookTxn`)."""


def _changed(w: WriteTxn, t: TableHandle, key: bytes, old: Any | None, new: Any | None) -> None:
    if t.hook is not None and old != new:
        t.hook(w, key, old, new)


def encode(value: Any) -> bytes:
    """Canonical CBOR of ``value``. Raises ``cbor2.CBOREncodeError`` (a ValueError) for a
    value CBOR cannot represent."""
    return cbor2.dumps(value, canonical=True)


def decode(raw: bytes | memoryview) -> Any:
    """Value of canonical CBOR bytes (copied first if a memoryview into a transaction)."""
    return cbor2.loads(bytes(raw))


def check_table_name(name: str) -> str:
    """Return ``name`` if it is 1..64 chars of ``[A-Za-z0-9_.:/-]`` and not ``"blocks"``
    (the name of the blocks' Merkle summary), else raise ValueError."""
    if not isinstance(name, str) or not TABLE_NAME.fullmatch(name):
        raise ValueError(f"table name must be 1..64 chars of [A-Za-z0-9_.:/-], got {name!r}")
    if name == BLOCKS_TREE:
        raise ValueError(f"table name {name!r} is reserved for the blocks' Merkle summary")
    return name


def check_key(key: bytes, max_key_bytes: int) -> bytes:
    """Return ``key`` if it is bytes of length 1..max_key_bytes (LMDB: 511), else raise."""
    if not isinstance(key, bytes):
        raise TypeError(f"table keys are bytes, got {type(key).__name__}")
    if not 1 <= len(key) <= max_key_bytes:
        raise ValueError(f"table key must be 1..{max_key_bytes} bytes, got {len(key)}")
    return key


@dataclass(frozen=True)
class TableHandle:
    """What writes to a table need: its sub-db, its Merkle trie sub-db (None when the store
    keeps no summaries) and the partitioner of its keys."""

    name: str
    db: lmdb._Database
    summary: lmdb._Database | None
    partition_of: PartitionOf
    hook: BoundHook | None = None
    """Run in the write transaction after every change of an entry (see :class:`HookTxn`)."""

    def partition(self, key: bytes) -> int:
        """Partition of ``key`` (ValueError if the partitioner answers outside 0..65535)."""
        partition = checked_partition(self.partition_of, key)
        assert partition is not None
        return partition


def open_table_dbs(
    env: lmdb.Environment, txn: lmdb.Transaction[memoryview], name: str, summaries: bool
) -> tuple[lmdb._Database, lmdb._Database | None]:
    """Open (creating if needed) the sub-db of table ``name`` and, with ``summaries``, of its
    Merkle trie, inside the write transaction ``txn``.

    Always pass the transaction: ``env.open_db()`` without one begins a write transaction
    while holding the GIL, which deadlocks against the writer thread (see
    :mod:`.writer`). The handles are usable by other transactions once ``txn`` commits
    (an abort closes them). Raises ``lmdb.Error`` (e.g. ``DbsFullError``: too many tables).
    """
    db = env.open_db(TABLE_PREFIX + name.encode(), txn=txn)
    summary = env.open_db(TABLE_SUMMARY_PREFIX + name.encode(), txn=txn) if summaries else None
    return db, summary


def open_existing_tables(
    env: lmdb.Environment, txn: lmdb.Transaction[memoryview], summaries: bool, limit: int
) -> dict[str, tuple[lmdb._Database, lmdb._Database | None]]:
    """Open the sub-dbs of (at most ``limit`` of) the tables that exist, inside ``txn``
    (the store does this at open, before its writer thread starts, so that later uses of
    existing tables need no write transaction). Returns name -> (db, summary db)."""
    names: list[str] = []
    with txn.cursor() as cursor:
        if cursor.set_range(TABLE_PREFIX):
            for key in cursor.iternext(keys=True, values=False):
                raw = bytes(key)
                if not raw.startswith(TABLE_PREFIX):
                    break
                name = raw[len(TABLE_PREFIX) :].decode(errors="replace")
                if TABLE_NAME.fullmatch(name) and name != BLOCKS_TREE:
                    names.append(name)
    return {name: open_table_dbs(env, txn, name, summaries) for name in names[:limit]}


def summary_current(
    txn: lmdb.Transaction[memoryview], dbs: Dbs, name: str, partition_of: PartitionOf
) -> bool:
    """True if the Merkle trie of table ``name`` was built with ``partition_of`` (read-only
    check: then opening the table needs no write transaction)."""
    stored = txn.get(SUMMARY_FINGERPRINT_PREFIX + TABLE_SUMMARY_PREFIX + name.encode(), db=dbs.meta)
    return stored is not None and bytes(stored) == fingerprint(partition_of)


def open_table(
    env: lmdb.Environment,
    txn: lmdb.Transaction[memoryview],
    dbs: Dbs,
    name: str,
    partition_of: PartitionOf,
    summaries: bool,
) -> TableHandle:
    """Open (creating if needed) table ``name`` and, with ``summaries``, its Merkle trie,
    rebuilt first if missing or built with another partitioner — all inside the write
    transaction ``txn``, which the caller commits (the store runs this in its writer
    thread, see ``GroupCommitWriter.run_exclusive``). Raises ``lmdb.Error`` (e.g.
    ``DbsFullError``: too many tables).
    """
    db, summary = open_table_dbs(env, txn, name, summaries)
    if summary is None:
        return TableHandle(name, db, None, partition_of)

    def leaves() -> Iterator[tuple[bytes, bytes]]:
        with txn.cursor(db=db) as cursor:
            for key, value in cursor:
                yield bytes(key), value_hash(bytes(value))

    sub_db = TABLE_SUMMARY_PREFIX + name.encode()
    check_summary(txn, dbs, sub_db, summary, partition_of, leaves())
    return TableHandle(name, db, summary, partition_of)


# ---------------------------------------------------------------------- mutations
def table_put(
    w: WriteTxn, t: TableHandle, key: bytes, encoded: bytes, partition: int, vhash: bytes
) -> None:
    """Set ``key`` to the already-encoded value whose :func:`value_hash` is ``vhash``."""
    old = w.txn.get(key, db=t.db) if t.hook is not None else None
    old_value = None if old is None else decode(old)
    w.txn.put(key, encoded, db=t.db)
    if t.summary is not None:
        record_change(w.summary_changes, t.summary, partition, key, vhash)
    if t.hook is not None:
        _changed(w, t, key, old_value, decode(encoded))


def table_delete(w: WriteTxn, t: TableHandle, key: bytes, partition: int) -> bool:
    """Delete ``key``; True if it existed."""
    old = w.txn.get(key, db=t.db) if t.hook is not None else None
    old_value = None if old is None else decode(old)
    existed = bool(w.txn.delete(key, db=t.db))
    if existed and t.summary is not None:
        record_change(w.summary_changes, t.summary, partition, key, None)
    if existed and t.hook is not None:
        _changed(w, t, key, old_value, None)
    return existed


def table_update(
    w: WriteTxn,
    t: TableHandle,
    key: bytes,
    fn: Callable[[Any | None], Any | None],
    partition: int,
) -> Any | None:
    """Read-modify-write ``key`` with ``fn`` inside the write transaction; return the new
    value. ``fn`` and the encoding run before any write, so an exception writes nothing."""
    raw = w.txn.get(key, db=t.db)
    old = None if raw is None else decode(raw)
    new = fn(old)
    if new is None:
        if raw is not None:
            w.txn.delete(key, db=t.db)
            if t.summary is not None:
                record_change(w.summary_changes, t.summary, partition, key, None)
            _changed(w, t, key, old, None)
        return None
    encoded = encode(new)
    if raw is not None and bytes(raw) == encoded:
        return new  # unchanged: no write, no summary change, no hook
    w.txn.put(key, encoded, db=t.db)
    if t.summary is not None:
        record_change(w.summary_changes, t.summary, partition, key, value_hash(encoded))
    _changed(w, t, key, old, new)
    return new


class MetaTable:
    """One named metadata table (obtain it with :meth:`BlockStore.table`).

    Keys are ``bytes`` of 1..511 bytes, ordered bytewise; values are anything cbor2 encodes
    (ints, str, bytes, lists, dicts, None is not storable: ``None`` means "absent").
    Reads are synchronous (an LMDB read is a few microseconds of memory-mapped B-tree
    lookups) and see the last committed state; writes are coroutines that return once
    their transaction is committed (durable if the store is). Writes raise ``StoreFull``
    when the map is full and ``BlockStoreError`` once the store is closed.
    """

    def __init__(
        self,
        handle: TableHandle,
        read_txn: ReadTxn,
        submit: Submit,
        max_key_bytes: int,
    ) -> None:
        self.name = handle.name
        self._handle = handle
        self._db = handle.db
        self._read_txn = read_txn
        self._submit = submit
        self._max_key = max_key_bytes

    def __repr__(self) -> str:
        return f"MetaTable({self.name!r})"

    def _key(self, key: bytes) -> bytes:
        return check_key(key, self._max_key)

    # ------------------------------------------------------------------ reads
    def get(self, key: bytes) -> Any | None:
        """The decoded value at ``key``, or None if absent."""
        key = self._key(key)
        with self._read_txn() as txn:
            raw = txn.get(key, db=self._db)
            return None if raw is None else decode(raw)

    def scan(
        self, *, prefix: bytes = b"", start_after: bytes | None = None, limit: int | None = None
    ) -> list[tuple[bytes, Any]]:
        """``[(key, value), ...]`` in key order for keys starting with ``prefix`` and
        greater than ``start_after`` (if given), at most ``limit`` of them.

        Page through a large table with ``start_after=<last key of previous page>``; each
        call is one consistent snapshot.
        """
        if limit is not None and limit <= 0:
            return []
        start = prefix
        if start_after is not None and start_after > start:
            start = start_after
        out: list[tuple[bytes, Any]] = []
        with self._read_txn() as txn, txn.cursor(db=self._db) as cursor:
            found = cursor.set_range(start) if start else cursor.first()
            if not found:
                return out
            for raw_key, raw in cursor:
                key = bytes(raw_key)
                if not key.startswith(prefix):
                    break
                if start_after is not None and key <= start_after:
                    continue
                out.append((key, decode(raw)))
                if limit is not None and len(out) >= limit:
                    break
        return out

    def iter_items(self, *, page: int = 512) -> Iterator[tuple[bytes, Any]]:
        """Every ``(key, value)`` in key order, read ``page`` at a time, each page in its
        own short read transaction (writes made meanwhile may or may not be seen)."""
        after: bytes | None = None
        while rows := self.scan(start_after=after, limit=page):
            yield from rows
            after = rows[-1][0]

    def has_prefix(
        self, prefix: bytes, txn: lmdb.Transaction[memoryview] | None = None
    ) -> bool:
        """True if some key starts with ``prefix`` (in ``txn`` if given, e.g. inside the
        writer's transaction; else in a fresh read transaction)."""
        if txn is None:
            with self._read_txn() as own:
                return self.has_prefix(prefix, own)
        with txn.cursor(db=self._db) as cursor:
            return bool(cursor.set_range(prefix)) and bytes(cursor.key()).startswith(prefix)

    def count(self) -> int:
        """Number of keys (O(1): LMDB keeps the entry count in the sub-db's root)."""
        with self._read_txn() as txn:
            return int(txn.stat(self._db)["entries"])

    # ------------------------------------------------------------------ writes
    async def put(self, key: bytes, value: Any) -> None:
        """Set ``key`` to ``value``. Raises ValueError if ``value`` is None or not CBOR."""
        key = self._key(key)
        if value is None:
            raise ValueError("None means absent; use delete() to remove a key")
        encoded = encode(value)
        apply: Apply = partial(
            table_put,
            t=self._handle,
            key=key,
            encoded=encoded,
            partition=self._handle.partition(key),
            vhash=value_hash(encoded),
        )
        await self._submit(apply, size=len(encoded))

    async def delete(self, key: bytes) -> bool:
        """Delete ``key``; True if it existed."""
        key = self._key(key)
        partition = self._handle.partition(key)
        return bool(
            await self._submit(partial(table_delete, t=self._handle, key=key, partition=partition))
        )

    async def update(self, key: bytes, fn: Callable[[Any | None], Any | None]) -> Any | None:
        """Atomic read-modify-write: ``new = fn(current or None)``; None deletes the key.

        ``fn`` runs in the writer thread inside the write transaction, so no other write
        interleaves; it must be quick, must not call the store, and must be pure (it may
        run twice if its group commit is replayed). An exception from ``fn`` propagates
        here and nothing is written. Returns the new value.
        """
        key = self._key(key)
        partition = self._handle.partition(key)
        apply: Apply = partial(table_update, t=self._handle, key=key, fn=fn, partition=partition)
        return await self._submit(apply)
