"""The ``buckets`` table: one entry per bucket (name, creation time, owner, versioning).

Table key: the bucket name (UTF-8). Record (CBOR)::

    {"format": 1, "name": str, "created": float (unix s), "owner": str,
     "versioning": "unversioned" | "enabled" | "suspended", "deleted": bool,
     "version": str (HLC, the last writer's)}

Merge: last writer wins by ``version`` (HLC order; equal versions: the larger canonical
encoding). A deleted bucket is a tombstone with its own version, purged after the grace.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import cbor2

from dfspeer.cluster.table import TableSchema
from dfspeer.model.hlc_time import version_unix_s

BUCKETS_TABLE = "buckets"
VERSIONING_STATES = ("unversioned", "enabled", "suspended")


@dataclass(frozen=True)
class Bucket:
    """A bucket. ``created`` in unix seconds; ``owner`` is the principal that created it
    ("" until access control exists)."""

    name: str
    created: float
    version: str
    versioning: str = "unversioned"
    owner: str = ""
    deleted: bool = False

    @property
    def keeps_versions(self) -> bool:
        """True when a write adds a version instead of replacing the null version."""
        return self.versioning == "enabled"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "created": self.created, "versioning": self.versioning}


class BucketsSchema(TableSchema[Bucket]):
    """Schema of the ``buckets`` table (module docstring)."""

    name = BUCKETS_TABLE
    format_version = 1

    def decode(self, record: Any) -> Bucket:
        record = self.check_format(record)
        try:
            bucket = Bucket(
                name=str(record["name"]),
                created=float(record["created"]),
                version=str(record["version"]),
                versioning=str(record.get("versioning", "unversioned")),
                owner=str(record.get("owner", "")),
                deleted=bool(record.get("deleted", False)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed buckets record: {exc}") from exc
        if bucket.versioning not in VERSIONING_STATES or not bucket.version:
            raise ValueError("malformed buckets record: bad versioning state or version")
        return bucket

    def encode(self, entry: Bucket) -> dict[str, Any]:
        return {
            "format": self.format_version,
            "name": entry.name,
            "created": entry.created,
            "owner": entry.owner,
            "versioning": entry.versioning,
            "deleted": entry.deleted,
            "version": entry.version,
        }

    def merge(self, a: Bucket, b: Bucket) -> Bucket:
        if a.version != b.version:
            return a if a.version > b.version else b
        ea = cbor2.dumps(self.encode(a), canonical=True)
        eb = cbor2.dumps(self.encode(b), canonical=True)
        return a if ea >= eb else b

    def tombstone_since(self, entry: Bucket) -> float | None:
        return version_unix_s(entry.version) if entry.deleted else None
