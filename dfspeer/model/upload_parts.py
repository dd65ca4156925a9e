"""The ``upload_parts`` table: the chunks and parts an upload session received.

One entry per received element (a native chunk or an S3 part), so that storing one more
chunk writes one small record instead of rewriting a session record that grows with every
chunk (which made a session of n chunks cost O(n²)). Table key::

    session id (16 bytes) ‖ kind (b"c" chunk | b"p" part) ‖ number (4 bytes, big-endian)
    ‖ BLAKE2b-128 of the element (so a re-sent index with other bytes is another entry)

placed by the session id (the first 16 bytes): every element of a session lives on the
session's own replicas, and one prefix scan on them lists it. Record (CBOR)::

    {"format": 1, "upload": str, "kind": "chunk" | "part", "number": int, "at": str (HLC),
     "size": int, "digest": bytes | None (a chunk's block), "md5": bytes | None (a part's
     ETag), "blocks": [[digest, size], ...] (a part's blocks), "ended": float (unix s, 0
     while the session is open)}

Elements are immutable (a grow-only set); the only change is ``ended`` (merge: maximum),
set when the session completes, aborts or expires, after which the element is a tombstone
purged after the grace.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from typing import Any

import cbor2

from dfspeer.cluster.table import TableSchema
from dfspeer.model.uploads import ChunkRecord, PartRecord

UPLOAD_PARTS_TABLE = "upload_parts"
ID_BYTES = 16
CHUNK_KIND, PART_KIND = "chunk", "part"
_KIND_BYTE = {CHUNK_KIND: b"c", PART_KIND: b"p"}


@dataclass(frozen=True)
class UploadElement:
    """A chunk or part of session ``upload`` (see the module docstring)."""

    upload: str
    kind: str
    number: int
    at: str
    size: int
    digest: bytes | None = None
    md5: bytes | None = None
    blocks: tuple[tuple[bytes, int], ...] = ()
    ended: float = 0.0

    @classmethod
    def of_chunk(cls, upload: str, chunk: ChunkRecord) -> UploadElement:
        return cls(upload, CHUNK_KIND, chunk.index, chunk.at, chunk.size, digest=chunk.digest)

    @classmethod
    def of_part(cls, upload: str, part: PartRecord) -> UploadElement:
        return cls(
            upload, PART_KIND, part.number, part.at, part.size, md5=part.md5, blocks=part.blocks
        )

    def chunk(self) -> ChunkRecord:
        assert self.digest is not None
        return ChunkRecord(self.number, self.digest, self.size, self.at)

    def part(self) -> PartRecord:
        assert self.md5 is not None
        return PartRecord(self.number, self.at, self.md5, self.size, self.blocks)

    def key(self) -> bytes:
        """This element's table key."""
        ident = cbor2.dumps(
            [self.kind, self.number, self.at, self.size, self.digest, self.md5, self.blocks],
            canonical=True,
        )
        return (
            element_prefix(self.upload, self.kind, self.number)
            + hashlib.blake2b(ident, digest_size=16).digest()
        )


def session_prefix(upload_id: str) -> bytes:
    """The key prefix of every element of session ``upload_id`` (32 hex characters)."""
    raw = bytes.fromhex(upload_id)
    if len(raw) != ID_BYTES:
        raise ValueError("an upload id is 32 hex characters")
    return raw


def element_prefix(upload_id: str, kind: str, number: int | None = None) -> bytes:
    """The key prefix of the chunks (or parts) of a session, or of one number."""
    prefix = session_prefix(upload_id) + _KIND_BYTE[kind]
    return prefix if number is None else prefix + number.to_bytes(4, "big")


class UploadPartsSchema(TableSchema[UploadElement]):
    """Schema of the ``upload_parts`` table (module docstring)."""

    name = UPLOAD_PARTS_TABLE
    format_version = 1

    def partition_key(self, key: bytes) -> bytes:
        return key[:ID_BYTES].hex().encode()

    def decode(self, record: Any) -> UploadElement:
        record = self.check_format(record)
        try:
            digest, md5 = record.get("digest"), record.get("md5")
            element = UploadElement(
                upload=str(record["upload"]),
                kind=str(record["kind"]),
                number=int(record["number"]),
                at=str(record["at"]),
                size=int(record["size"]),
                digest=None if digest is None else bytes(digest),
                md5=None if md5 is None else bytes(md5),
                blocks=tuple((bytes(d), int(n)) for d, n in record.get("blocks") or ()),
                ended=float(record.get("ended", 0.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed upload_parts record: {exc}") from exc
        if element.kind not in _KIND_BYTE or element.number < 0 or element.size < 0:
            raise ValueError("malformed upload_parts record: bad kind, number or size")
        if element.kind == CHUNK_KIND and (element.digest is None or len(element.digest) != 32):
            raise ValueError("malformed upload_parts record: a chunk needs a 32-byte digest")
        if element.kind == PART_KIND and (element.md5 is None or len(element.md5) != 16):
            raise ValueError("malformed upload_parts record: a part needs a 16-byte MD5")
        return element

    def encode(self, entry: UploadElement) -> dict[str, Any]:
        return {
            "format": self.format_version,
            "upload": entry.upload,
            "kind": entry.kind,
            "number": entry.number,
            "at": entry.at,
            "size": entry.size,
            "digest": entry.digest,
            "md5": entry.md5,
            "blocks": [[d, n] for d, n in entry.blocks],
            "ended": entry.ended,
        }

    def merge(self, a: UploadElement, b: UploadElement) -> UploadElement:
        ea = cbor2.dumps(self.encode(replace(a, ended=0.0)), canonical=True)
        eb = cbor2.dumps(self.encode(replace(b, ended=0.0)), canonical=True)
        base = a if ea >= eb else b
        return replace(base, ended=max(a.ended, b.ended))

    def tombstone_since(self, entry: UploadElement) -> float | None:
        return entry.ended if entry.ended > 0 else None
