"""The ``buckets`` table: one entry per bucket (name, creation time, owner, versioning,
permissions).

Table key: the bucket name (UTF-8). Record (CBOR)::

    {"format": 1 | 2, "name": str, "created": float (unix s), "owner": str (access key id,
     "" for the admin), "versioning": "unversioned" | "enabled" | "suspended",
     "deleted": bool, "version": str (HLC, the last writer's),
     "permissions": {key_id: {"read": bool, "write": bool, "owner": bool}}}

``permissions`` (format 2) is written only when not empty, and such a record says format 2,
so a peer that predates permissions refuses it rather than dropping them; a bucket without
grants stays format 1. ``"chunking": "cdc" | "fixed"`` (how uploads into the bucket are cut,
:mod:`dfspeer.objects.cdc`) is optional: a record without it reads as ``"fixed"``.

Merge: last writer wins by ``version`` (HLC order; equal versions: the larger canonical
encoding). A deleted bucket is a tombstone with its own version, purged after the grace.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import cbor2

from dfspeer.cluster.table import TableSchema
from dfspeer.model.hlc_time import version_unix_s

BUCKETS_TABLE = "buckets"
VERSIONING_STATES = ("unversioned", "enabled", "suspended")


@dataclass(frozen=True)
class Grant:
    """What one access key may do on a bucket (``owner`` implies the other two; see
    :mod:`dfspeer.access.permissions`)."""

    read: bool = False
    write: bool = False
    owner: bool = False

    def to_json(self) -> dict[str, bool]:
        return {"read": self.read, "write": self.write, "owner": self.owner}


@dataclass(frozen=True)
class Bucket:
    """A bucket. ``created`` in unix seconds; ``owner`` is the access key that created it
    ("" when the admin, or a peer without access control, did); ``permissions`` maps other
    access key ids to their :class:`Grant`."""

    name: str
    created: float
    version: str
    versioning: str = "unversioned"
    owner: str = ""
    deleted: bool = False
    permissions: Mapping[str, Grant] = field(default_factory=dict)
    chunking: str = "fixed"  # "cdc" | "fixed" (dfspeer.objects.cdc); absent: "fixed"

    @property
    def keeps_versions(self) -> bool:
        """True when a write adds a version instead of replacing the null version."""
        return self.versioning == "enabled"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "created": self.created,
            "versioning": self.versioning,
            "chunking": self.chunking,
        }


class BucketsSchema(TableSchema[Bucket]):
    """Schema of the ``buckets`` table (module docstring)."""

    name = BUCKETS_TABLE
    format_version = 2

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
                permissions=_decode_permissions(record.get("permissions", {})),
                chunking=str(record.get("chunking", "fixed")),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"malformed buckets record: {exc}") from exc
        if bucket.versioning not in VERSIONING_STATES or not bucket.version:
            raise ValueError("malformed buckets record: bad versioning state or version")
        return bucket

    def encode(self, entry: Bucket) -> dict[str, Any]:
        record: dict[str, Any] = {
            "format": 1,
            "name": entry.name,
            "created": entry.created,
            "owner": entry.owner,
            "versioning": entry.versioning,
            "deleted": entry.deleted,
            "version": entry.version,
            "chunking": entry.chunking,
        }
        if entry.permissions:
            record["format"] = 2
            record["permissions"] = {k: g.to_json() for k, g in entry.permissions.items()}
        return record

    def merge(self, a: Bucket, b: Bucket) -> Bucket:
        if a.version != b.version:
            return a if a.version > b.version else b
        ea = cbor2.dumps(self.encode(a), canonical=True)
        eb = cbor2.dumps(self.encode(b), canonical=True)
        return a if ea >= eb else b

    def tombstone_since(self, entry: Bucket) -> float | None:
        return version_unix_s(entry.version) if entry.deleted else None


def _decode_permissions(raw: Any) -> dict[str, Grant]:
    """``{key_id: {"read", "write", "owner"}}`` -> ``{key_id: Grant}``. Raises ValueError."""
    if not isinstance(raw, dict):
        raise ValueError("permissions must be a map")
    out: dict[str, Grant] = {}
    for key_id, flags in raw.items():
        if not isinstance(key_id, str) or not isinstance(flags, dict):
            raise ValueError("permissions must map key ids to maps of flags")
        out[key_id] = Grant(
            read=bool(flags.get("read", False)),
            write=bool(flags.get("write", False)),
            owner=bool(flags.get("owner", False)),
        )
    return out
