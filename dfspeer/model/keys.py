"""The ``keys`` table: one entry per access key of the native API.

Table key: the key id (``DK`` + 24 hex digits, ASCII). Record (CBOR)::

    {"format": 1, "id": str, "name": str, "created": float (unix s),
     "secret": bytes (the secret sealed with a subkey of the cluster key, see
     dfspeer.access.sealing; empty once deleted), "allow_create_bucket": bool,
     "disabled": bool, "deleted": bool, "version": str (HLC, the last writer's)}

Merge: last writer wins by ``version`` (HLC order; equal versions: the larger canonical
encoding), as for ``buckets``. A deleted key is a tombstone with its own version, purged
after the grace. The secret is never stored in the clear: a peer that reads this table
without the cluster key learns names and ids, not secrets.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import cbor2

from dfspeer.cluster.table import TableSchema
from dfspeer.model.hlc_time import version_unix_s

KEYS_TABLE = "keys"
MAX_KEY_NAME_CHARS = 128


@dataclass(frozen=True)
class AccessKey:
    """An access key. ``sealed_secret``: the secret sealed under the cluster key's access
    subkey (hidden from ``repr``); ``created`` in unix seconds."""

    id: str
    name: str
    created: float
    version: str
    sealed_secret: bytes = field(default=b"", repr=False)
    allow_create_bucket: bool = False
    disabled: bool = False
    deleted: bool = False

    @property
    def usable(self) -> bool:
        """True if requests may authenticate with this key (not disabled, not deleted)."""
        return not self.disabled and not self.deleted

    def to_json(self) -> dict[str, Any]:
        """``{"id", "name", "created", "allow_create_bucket", "disabled"}`` (no secret)."""
        return {
            "id": self.id,
            "name": self.name,
            "created": self.created,
            "allow_create_bucket": self.allow_create_bucket,
            "disabled": self.disabled,
        }


class KeysSchema(TableSchema[AccessKey]):
    """Schema of the ``keys`` table (module docstring)."""

    name = KEYS_TABLE
    format_version = 1

    def decode(self, record: Any) -> AccessKey:
        record = self.check_format(record)
        try:
            secret = record.get("secret", b"")
            if not isinstance(secret, bytes):
                raise TypeError("secret must be bytes")
            key = AccessKey(
                id=str(record["id"]),
                name=str(record["name"]),
                created=float(record["created"]),
                version=str(record["version"]),
                sealed_secret=secret,
                allow_create_bucket=bool(record.get("allow_create_bucket", False)),
                disabled=bool(record.get("disabled", False)),
                deleted=bool(record.get("deleted", False)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(f"malformed keys record: {exc}") from exc
        if not key.id or not key.version:
            raise ValueError("malformed keys record: empty id or version")
        return key

    def encode(self, entry: AccessKey) -> dict[str, Any]:
        return {
            "format": self.format_version,
            "id": entry.id,
            "name": entry.name,
            "created": entry.created,
            "secret": entry.sealed_secret,
            "allow_create_bucket": entry.allow_create_bucket,
            "disabled": entry.disabled,
            "deleted": entry.deleted,
            "version": entry.version,
        }

    def merge(self, a: AccessKey, b: AccessKey) -> AccessKey:
        if a.version != b.version:
            return a if a.version > b.version else b
        ea = cbor2.dumps(self.encode(a), canonical=True)
        eb = cbor2.dumps(self.encode(b), canonical=True)
        return a if ea >= eb else b

    def tombstone_since(self, entry: AccessKey) -> float | None:
        return version_unix_s(entry.version) if entry.deleted else None
