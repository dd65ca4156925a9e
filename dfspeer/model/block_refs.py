"""The ``block_refs`` table: which object version references which block (Garage's
``block_ref_table.rs``).

Table key: block digest (32 bytes) + version id (UTF-8); partition key: the digest, so a
block's references live on the same replicas as the block itself. Record (CBOR)::

    {"format": 1, "digest": bytes, "version": str, "bucket": str, "key": str,
     "created": float (unix s), "deleted": bool, "deleted_at": float, "confirmed": bool}

Merge: ``deleted`` and ``confirmed`` are monotone flags (or); ``created`` the earliest,
``deleted_at`` the latest. A deleted reference is a tombstone, purged after the grace.

``updated()`` hook: the reference count beside the block (:mod:`dfspeer.blockstore.refcount`)
goes up when a live reference appears and down when it is deleted, in the same write
transaction as the reference, so identical chunks shared by several versions are freed only
when the last reference goes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dfspeer.blockstore.tables import HookTxn
from dfspeer.cluster.table import TableSchema

BLOCK_REFS_TABLE = "block_refs"
DIGEST_BYTES = 32


def ref_key(digest: bytes, version_id: str) -> bytes:
    """Table key of the reference of version ``version_id`` to block ``digest``."""
    if len(digest) != DIGEST_BYTES:
        raise ValueError("a block digest is 32 bytes")
    return digest + version_id.encode()


release_key = ref_key
"""Key of a queued release in the local ``gc_releases`` table (same layout)."""


def release_value(bucket: str, key: str, now_ms: int) -> dict[str, Any]:
    """Value of a queued release."""
    return {"bucket": bucket, "key": key, "queued_ms": now_ms}


@dataclass(frozen=True)
class BlockRef:
    """A reference from object version ``version`` of ``bucket``/``key`` to a block."""

    digest: bytes
    version: str
    bucket: str
    key: str
    created: float
    deleted: bool = False
    deleted_at: float = 0.0
    confirmed: bool = False

    @property
    def live(self) -> bool:
        return not self.deleted


class BlockRefsSchema(TableSchema[BlockRef]):
    """Schema of the ``block_refs`` table (module docstring)."""

    name = BLOCK_REFS_TABLE
    format_version = 1

    def partition_key(self, key: bytes) -> bytes:
        return key[:DIGEST_BYTES]

    def decode(self, record: Any) -> BlockRef:
        record = self.check_format(record)
        try:
            ref = BlockRef(
                digest=bytes(record["digest"]),
                version=str(record["version"]),
                bucket=str(record["bucket"]),
                key=str(record["key"]),
                created=float(record["created"]),
                deleted=bool(record.get("deleted", False)),
                deleted_at=float(record.get("deleted_at", 0.0)),
                confirmed=bool(record.get("confirmed", False)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed block_refs record: {exc}") from exc
        if len(ref.digest) != DIGEST_BYTES or not ref.version:
            raise ValueError("malformed block_refs record: bad digest or version")
        return ref

    def encode(self, entry: BlockRef) -> dict[str, Any]:
        return {
            "format": self.format_version,
            "digest": entry.digest,
            "version": entry.version,
            "bucket": entry.bucket,
            "key": entry.key,
            "created": entry.created,
            "deleted": entry.deleted,
            "deleted_at": entry.deleted_at,
            "confirmed": entry.confirmed,
        }

    def merge(self, a: BlockRef, b: BlockRef) -> BlockRef:
        first = min(a, b, key=lambda r: (r.bucket, r.key))
        return BlockRef(
            digest=a.digest,
            version=a.version,
            bucket=first.bucket,
            key=first.key,
            created=min(a.created, b.created),
            deleted=a.deleted or b.deleted,
            deleted_at=max(a.deleted_at, b.deleted_at),
            confirmed=a.confirmed or b.confirmed,
        )

    def tombstone_since(self, entry: BlockRef) -> float | None:
        return entry.deleted_at if entry.deleted else None

    def updated(self, txn: HookTxn, key: bytes, old: BlockRef | None, new: BlockRef | None) -> None:
        delta = int(new is not None and new.live) - int(old is not None and old.live)
        if delta:
            txn.adjust_refcount(key[:DIGEST_BYTES], delta)
