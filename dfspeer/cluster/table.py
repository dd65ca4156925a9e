"""The generic replicated table: one schema per kind of metadata, one runtime for all.

As in Garage (``table/schema.rs``), every kind of replicated metadata — buckets, object
versions, block references, and any table added later — is declared by a
:class:`TableSchema`:

- its ``name``; a table key (bytes, at most 511) made of a **partition key** (what places
  the entry on the ring: :meth:`TableSchema.partition_key`) and a **sort key** (the rest of
  the table key: order inside a partition, for range scans);
- a typed entry with its canonical CBOR codec (:meth:`encode` / :meth:`decode`) and a
  ``format_version`` stored in every record (a record of a newer format is refused, never
  misread);
- ``merge(a, b)``: a state-based CRDT join — commutative, associative, idempotent — so
  replicas converge whatever the order and number of deliveries;
- which entries are tombstones and since when (:meth:`tombstone_since`), so the purger
  may drop them after the grace;
- ``updated(txn, key, old, new)``: a hook run inside the LMDB write transaction that
  changes the entry, so derived state (reference counts, queues) never disagrees with it.

The record-level methods (``merge_records``, ``pick``, ``stale``, ``retract_record``,
``token_of``) are what the replication machinery calls: quorum writes and reads
(:mod:`.replication`), read repair, hinted handoff (:mod:`.handoff`), Merkle anti-entropy
(:mod:`.antientropy`), tombstone purge (:mod:`.tombstones`) and the ``/internal/tables``
routes. All of them look a table up in one :class:`TableRegistry`, built in
:mod:`dfspeer.peer`; adding a table is a schema module in :mod:`dfspeer.model` and one
registration line.
"""

from __future__ import annotations

import hashlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any, Generic, TypeVar

import cbor2

from dfspeer.blockstore.tables import HookTxn, TableHook

E = TypeVar("E")


class TableSchema(ABC, Generic[E]):
    """Declaration of one replicated table (module docstring). Subclasses set ``name`` and
    ``format_version`` and implement :meth:`decode`, :meth:`encode` and :meth:`merge`."""

    name: str = ""
    format_version: int = 1

    # ------------------------------------------------------------------ declaration
    def partition_key(self, key: bytes) -> bytes:
        """The bytes of table key ``key`` whose ring partition places the entry (default:
        the whole key). Every key with the same partition key lands on the same replicas."""
        return key

    @abstractmethod
    def decode(self, record: Any) -> E:
        """The typed entry of a stored or received record. Raises ValueError when the
        record is malformed or of a newer ``format`` than :attr:`format_version`."""

    @abstractmethod
    def encode(self, entry: E) -> dict[str, Any]:
        """The record (a CBOR map with ``"format"``) of ``entry``."""

    @abstractmethod
    def merge(self, a: E, b: E) -> E:
        """The CRDT join of two copies of one entry (commutative, associative,
        idempotent)."""

    def tombstone_since(self, entry: E) -> float | None:
        """Unix seconds since which ``entry`` is a tombstone that may be purged once the
        grace has passed on every replica; None when it is not one (default: never)."""
        return None

    def updated(self, txn: HookTxn, key: bytes, old: E | None, new: E | None) -> None:
        """Hook run in the write transaction after ``key`` changed from ``old`` to ``new``
        (None: absent). Default: nothing. Must be quick and pure of I/O."""

    def retract(self, entry: E, token: str) -> E | None:
        """``entry`` without the write identified by ``token`` (see :meth:`token`); None
        removes the entry. Default: remove the entry if it is exactly that write."""
        return None if self.token(entry) == token else entry

    def token(self, entry: E) -> str:
        """Identifies this exact state of ``entry`` (default: a hash of its canonical
        record), for remove-if-unchanged (retraction of a failed write, tombstone purge)."""
        raw = cbor2.dumps(self.encode(entry), canonical=True)
        return hashlib.blake2b(raw, digest_size=16).hexdigest()

    def check_format(self, record: Any) -> dict[str, Any]:
        """``record`` as a map whose ``format`` this schema reads. Raises ValueError."""
        if not isinstance(record, dict):
            raise ValueError(f"a {self.name} record must be a map")
        fmt = record.get("format", 1)
        if not isinstance(fmt, int) or not 1 <= fmt <= self.format_version:
            raise ValueError(
                f"{self.name} record of format {fmt!r}; this peer reads up to {self.format_version}"
            )
        return record

    # ------------------------------------------------------------------ records
    def merge_records(self, current: Any | None, incoming: Any) -> Any:
        """The record to store when ``incoming`` meets ``current`` (None: absent).
        Validates ``incoming`` (ValueError); a malformed ``current`` loses to it."""
        new = self.decode(incoming)
        if current is None:
            return self.encode(new)
        try:
            old = self.decode(current)
        except ValueError:
            return self.encode(new)
        return self.encode(self.merge(old, new))

    def pick(self, records: Iterable[Any | None]) -> Any | None:
        """The join of every valid record among replica answers (None if none)."""
        best: E | None = None
        for record in records:
            if record is None:
                continue
            try:
                entry = self.decode(record)
            except ValueError:
                continue
            best = entry if best is None else self.merge(best, entry)
        return None if best is None else self.encode(best)

    def stale(self, record: Any | None, winner: Any) -> bool:
        """True if a replica holding ``record`` lacks something of ``winner``."""
        if record is None:
            return True
        try:
            merged = cbor2.dumps(self.merge_records(record, winner), canonical=True)
            return merged != cbor2.dumps(self.encode(self.decode(record)), canonical=True)
        except ValueError:
            return True

    def retract_record(self, current: Any | None, token: str) -> Any | None:
        """:meth:`retract` on a stored record (a malformed one is left alone)."""
        if current is None:
            return None
        try:
            entry = self.decode(current)
        except ValueError:
            return current
        left = self.retract(entry, token)
        return None if left is None else self.encode(left)

    def token_of(self, record: Any) -> str:
        """:meth:`token` of a record. Raises ValueError."""
        return self.token(self.decode(record))

    def retract_token(self, record: Any) -> str:
        """What a coordinator sends to retract the write ``record`` it made (default: its
        :meth:`token`; version-set tables name the version instead)."""
        return self.token_of(record)

    def tombstone_since_record(self, record: Any) -> float | None:
        """:meth:`tombstone_since` of a stored record (None when malformed)."""
        try:
            return self.tombstone_since(self.decode(record))
        except ValueError:
            return None

    def hook(self) -> TableHook | None:
        """The block store hook running :meth:`updated` on decoded entries (None when the
        schema keeps the default no-op)."""
        if type(self).updated is TableSchema.updated:
            return None

        def run(txn: HookTxn, key: bytes, old: Any | None, new: Any | None) -> None:
            self.updated(txn, key, self._maybe(old), self._maybe(new))

        return run

    def _maybe(self, record: Any | None) -> E | None:
        if record is None:
            return None
        try:
            return self.decode(record)
        except ValueError:
            return None


class TableRegistry(Mapping[str, TableSchema[Any]]):
    """Every replicated table of a peer, by name: the one place that declares them."""

    def __init__(self, schemas: Iterable[TableSchema[Any]]) -> None:
        self._schemas: dict[str, TableSchema[Any]] = {}
        for schema in schemas:
            if not schema.name or schema.name in self._schemas:
                raise ValueError(f"table name {schema.name!r} is empty or registered twice")
            self._schemas[schema.name] = schema

    def __getitem__(self, name: str) -> TableSchema[Any]:
        return self._schemas[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._schemas)

    def __len__(self) -> int:
        return len(self._schemas)

    def partitioners(
        self, partition_of: Callable[[bytes], int]
    ) -> dict[str, Callable[[bytes], int]]:
        """Table name -> partition of a table key (``partition_of`` of its partition key),
        for the tables not placed by their whole key."""
        out: dict[str, Callable[[bytes], int]] = {}
        for name, schema in self._schemas.items():
            if type(schema).partition_key is not TableSchema.partition_key:
                out[name] = _placed(schema, partition_of)
        return out

    def hooks(self) -> dict[str, TableHook]:
        """Table name -> block store hook, for the tables whose schema has one."""
        out: dict[str, TableHook] = {}
        for name, schema in self._schemas.items():
            hook = schema.hook()
            if hook is not None:
                out[name] = hook
        return out


def _placed(
    schema: TableSchema[Any], partition_of: Callable[[bytes], int]
) -> Callable[[bytes], int]:
    def place(key: bytes) -> int:
        return partition_of(schema.partition_key(key))

    return place
