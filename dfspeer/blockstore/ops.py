"""Write operations for :meth:`BlockStore.write_batch` (several writes in ONE transaction).

A batch is a sequence of these values; it is applied atomically (all ops or none) in one
LMDB write transaction of the group-commit writer, so e.g. a manifest record, its block
references and a Merkle summary update become visible and durable together.

Results, one per op, in order:

==============  =================================================================
op              result
==============  =================================================================
PutBlock        ``bytes`` — the 32-byte SHA-256 digest
DeleteBlock     ``bool`` — True if the block existed
TablePut        ``None``
TableDelete     ``bool`` — True if the key existed
TableUpdate     the new value (``None`` if ``fn`` returned None and the key was deleted)
==============  =================================================================

Ops see the effects of earlier ops of the same batch (a ``TableUpdate`` after a
``TablePut`` of the same key gets the put value).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PutBlock:
    """Store ``data`` under its SHA-256. With ``digest`` set, behaves like
    :meth:`BlockStore.put_verified`: a mismatch raises ``DigestMismatch`` and the whole
    batch is rejected before anything is written. ``hashed``: ``digest`` was computed from
    these very bytes in this process (e.g. by the upload that cut them), so it is trusted
    and not computed again."""

    data: bytes
    digest: bytes | None = None
    hashed: bool = False


@dataclass(frozen=True)
class DeleteBlock:
    """Delete the block ``digest`` (32 bytes) if present."""

    digest: bytes


@dataclass(frozen=True)
class TablePut:
    """Set ``table[key] = value``; ``value`` must be CBOR-encodable (checked before queueing)."""

    table: str
    key: bytes
    value: Any


@dataclass(frozen=True)
class TableDelete:
    """Delete ``table[key]`` if present."""

    table: str
    key: bytes


@dataclass(frozen=True)
class TableUpdate:
    """Read-modify-write ``table[key]``: ``fn(current or None) -> new or None`` (None deletes).

    ``fn`` runs in the writer thread inside the transaction; it must be quick, must not
    touch the store, and may be called more than once (a failed group commit is replayed),
    so it must be a pure function of its argument.
    """

    table: str
    key: bytes
    fn: Callable[[Any | None], Any | None]


WriteOp = PutBlock | DeleteBlock | TablePut | TableDelete | TableUpdate
