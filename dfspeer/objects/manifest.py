"""Object manifests: the replicated "manifests" table and its LWW records.

One record per (bucket, key): the latest version wins (:func:`merge_manifest`, LWW by the
``version`` text, see :mod:`dfspeer.objects.hlc`); a delete is a tombstone record with its
own version. Record layout (a CBOR map)::

    {"format": 1, "bucket": str, "key": str, "version": str, "size": int (bytes),
     "sha256": str (hex, whole object), "chunks": [[digest (32 bytes), size], ...],
     "chunk_count": int, "inline": bytes | None, "content_type": str,
     "modified": float (unix s), "deleted": bool}

Table key: ``bucket + b"/" + key``, except that keys longer than :data:`TABLE_KEY_LIMIT`
bytes (LMDB keys are at most 511 bytes) are cut there and followed by ``0xff`` and 16 bytes
of their SHA-256: listings stay in byte order except among long keys sharing the same first
448 bytes, which come in hash order (and stay stable, so pagination neither repeats nor
skips). Placement: the record lives on the replicas of ``partition(table key)``
(:func:`placement_key`) — the same partition the table's Merkle summary files it under
(``partition_of(table key)``), so anti-entropy compares a record on the replicas that own
it; for keys up to 448 bytes that is ``partition(bucket/key)``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from dfspeer.cluster.records import merge_by_version

MANIFEST_TABLE = "manifests"
TABLE_KEY_LIMIT = 448
FORMAT = 1
DEFAULT_CONTENT_TYPE = "application/octet-stream"

merge_manifest = merge_by_version
"""The manifests table's merge: LWW by version (tombstones are ordinary versions)."""


def partition_key(bucket: str, key: str) -> bytes:
    """Placement key of an object's manifest: ``bucket/key`` in UTF-8."""
    return bucket.encode() + b"/" + key.encode()


def encode_table_key(full: bytes) -> bytes:
    """Table key for placement key ``full`` (order-preserving up to TABLE_KEY_LIMIT bytes)."""
    if len(full) <= TABLE_KEY_LIMIT:
        return full
    return full[:TABLE_KEY_LIMIT] + b"\xff" + hashlib.sha256(full).digest()[:16]


def table_key(bucket: str, key: str) -> bytes:
    return encode_table_key(partition_key(bucket, key))


def placement_key(bucket: str, key: str) -> bytes:
    """Bytes whose ring partition places an object's manifest: its table key (equal to
    :func:`partition_key` for keys up to :data:`TABLE_KEY_LIMIT` bytes)."""
    return table_key(bucket, key)


def scan_prefix(full_prefix: bytes) -> bytes:
    """Table-key prefix to scan for placement keys starting with ``full_prefix``."""
    return full_prefix[:TABLE_KEY_LIMIT]


@dataclass(frozen=True)
class ObjectInfo:
    """What a client sees of one object version. ``size`` in bytes, ``sha256`` hex of the
    whole object, ``chunks`` number of blocks (0 when stored inline), ``modified`` unix s."""

    bucket: str
    key: str
    version: str
    size: int
    sha256: str
    chunks: int
    modified: float
    content_type: str = DEFAULT_CONTENT_TYPE

    def to_json(self) -> dict[str, Any]:
        return {
            "bucket": self.bucket,
            "key": self.key,
            "version": self.version,
            "size": self.size,
            "sha256": self.sha256,
            "chunks": self.chunks,
            "modified": self.modified,
            "content_type": self.content_type,
        }


@dataclass(frozen=True)
class Manifest:
    """One version of an object (or a tombstone). ``chunks``: (digest, size in bytes)."""

    bucket: str
    key: str
    version: str
    size: int
    sha256: str
    chunks: tuple[tuple[bytes, int], ...] = ()
    inline: bytes | None = None
    content_type: str = DEFAULT_CONTENT_TYPE
    modified: float = 0.0
    deleted: bool = False
    chunk_count: int = field(default=-1)

    def __post_init__(self) -> None:
        if self.chunk_count < 0:
            object.__setattr__(self, "chunk_count", len(self.chunks))

    @classmethod
    def tombstone(cls, bucket: str, key: str, version: str, modified: float) -> Manifest:
        return cls(bucket, key, version, 0, "", modified=modified, deleted=True)

    def info(self) -> ObjectInfo:
        return ObjectInfo(
            self.bucket,
            self.key,
            self.version,
            self.size,
            self.sha256,
            self.chunk_count,
            self.modified,
            self.content_type,
        )

    def to_record(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "bucket": self.bucket,
            "key": self.key,
            "version": self.version,
            "size": self.size,
            "sha256": self.sha256,
            "chunks": [[digest, size] for digest, size in self.chunks],
            "chunk_count": self.chunk_count,
            "inline": self.inline,
            "content_type": self.content_type,
            "modified": self.modified,
            "deleted": self.deleted,
        }

    @classmethod
    def from_record(cls, record: Any) -> Manifest:
        """Parse a record (chunks may be omitted, as in listings). Raises ValueError."""
        try:
            chunks = tuple((bytes(d), int(s)) for d, s in record.get("chunks") or ())
            inline = record.get("inline")
            manifest = cls(
                bucket=str(record["bucket"]),
                key=str(record["key"]),
                version=str(record["version"]),
                size=int(record["size"]),
                sha256=str(record["sha256"]),
                chunks=chunks,
                inline=bytes(inline) if inline is not None else None,
                content_type=str(record.get("content_type") or DEFAULT_CONTENT_TYPE),
                modified=float(record.get("modified", 0.0)),
                deleted=bool(record.get("deleted", False)),
                chunk_count=int(record.get("chunk_count", len(chunks))),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"malformed manifest record: {exc}") from exc
        if any(len(d) != 32 or s <= 0 for d, s in chunks):
            raise ValueError("malformed manifest record: bad chunk entry")
        if chunks and sum(s for _, s in chunks) != manifest.size:
            raise ValueError("malformed manifest record: chunk sizes do not add up to the size")
        if manifest.inline is not None and len(manifest.inline) != manifest.size:
            raise ValueError("malformed manifest record: inline data is not the size")
        return manifest
