"""The ``objects`` table: one entry per (bucket, key) holding the key's versions.

Table key: ``bucket/key`` (as :func:`table_key`; keys over 448 bytes are cut and suffixed by
a hash), placed by the whole table key. Record (CBOR)::

    {"format": 1, "bucket": str, "key": str, "versions": [version, ...]}   # sorted by id
    version = {"id": str (HLC "%016x-<peer>", unique, orders versions),
               "state": "uploading" | "complete" | "aborted",
               "null": bool,             # written while the bucket did not keep versions
               "delete_marker": bool, "size": int, "sha256": str (hex),
               "content_type": str, "meta": {str: str}, "chunks": [[digest, size], ...],
               "inline": bytes | None, "modified": float (unix s), "created": float,
               "upload": str (the resumable upload session, if any),
               "checksum": [algorithm, value],   # only when set (see below)
               "parts": [size, ...]}             # only for a multipart upload (see below)

An aborted version keeps only ``id`` and ``state``: its data is released. ``checksum``: the
full-object checksum a client declared and the coordinator checked when it wrote the
version (S3's ``x-amz-checksum-<algorithm>``: the algorithm's S3 name in lower case and
the base64 of its big-endian digest); a version without one (written through the native
API, by a multipart upload, or by an earlier release) has no ``checksum`` key, so its
record is byte-for-byte what it was. ``parts``: the byte sizes of an S3 multipart upload's
parts, in order (they add up to ``size``), so S3's ``GetObject?partNumber=N`` can serve
the N-th; absent for any other version, and for multipart uploads completed by an
earlier release.

Merge (a state-based CRDT, after Garage's ``object_table.rs``): the union of versions by
id; for one id the more advanced state wins (``uploading`` < ``complete`` < ``aborted``;
equal states: a copy with a checksum over one without, then one with parts over one
without, then the larger canonical encoding,
so the choice is deterministic) — so merge is commutative, associative and idempotent, and
a failed write can be retracted by removing its version alone. A version is written once,
so two copies of one id differ in a field that is fixed once complete (the checksum among
them) only when one went through a peer of an earlier release, which re-encodes a version
without the fields it does not know: the copy that kept the checksum wins.

The current version of a key is its newest complete version; if that is a delete marker the
key reads as absent. S3's "null version": a *null* version (written in an unversioned or
suspended bucket) older than a newer complete null version is *superseded*
(:meth:`ObjectEntry.superseded`): hidden from listings at once, and aborted — which releases
its data — by the coordinator right after the new version is acknowledged, or else by the
lifecycle pass (:mod:`dfspeer.model.lifecycle`).

``updated()`` hook: every version that becomes aborted while it had chunks queues, in the
same transaction, the release of its block references in the local ``gc_releases`` table
(drained by :mod:`dfspeer.model.lifecycle`); a version or entry that only disappears from
this peer (rebalance, retraction, purge) releases nothing.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field, replace
from typing import Any

import cbor2

from dfspeer.blockstore.tables import HookTxn
from dfspeer.cluster.table import TableSchema
from dfspeer.model.block_refs import release_key, release_value
from dfspeer.model.hlc_time import version_unix_s

OBJECTS_TABLE = "objects"
TABLE_KEY_LIMIT = 448
DEFAULT_CONTENT_TYPE = "application/octet-stream"
UPLOADING, COMPLETE, ABORTED = "uploading", "complete", "aborted"
_RANK = {UPLOADING: 0, COMPLETE: 1, ABORTED: 2}
VERSION_TOKEN = "version:"


def partition_key(bucket: str, key: str) -> bytes:
    """``bucket/key`` in UTF-8."""
    return bucket.encode() + b"/" + key.encode()


def encode_table_key(full: bytes) -> bytes:
    """Table key for ``bucket/key`` bytes (order-preserving up to TABLE_KEY_LIMIT bytes)."""
    if len(full) <= TABLE_KEY_LIMIT:
        return full
    return full[:TABLE_KEY_LIMIT] + b"\xff" + hashlib.sha256(full).digest()[:16]


def table_key(bucket: str, key: str) -> bytes:
    """The objects-table key of ``bucket``/``key`` (also what places it on the ring)."""
    return encode_table_key(partition_key(bucket, key))


def scan_prefix(full_prefix: bytes) -> bytes:
    """Table-key prefix to scan for ``bucket/prefix`` bytes."""
    return full_prefix[:TABLE_KEY_LIMIT]


@dataclass(frozen=True)
class ObjectVersion:
    """One version of an object. Sizes in bytes, times in unix seconds, ``chunks`` as
    (SHA-256 digest, size) pairs (empty when the data is inline or released)."""

    id: str
    state: str = UPLOADING
    null: bool = True
    delete_marker: bool = False
    size: int = 0
    sha256: str = ""
    content_type: str = DEFAULT_CONTENT_TYPE
    meta: tuple[tuple[str, str], ...] = ()
    chunks: tuple[tuple[bytes, int], ...] = ()
    inline: bytes | None = None
    modified: float = 0.0
    created: float = 0.0
    upload: str = ""
    """The resumable upload session that owns this version ("" for a one-shot upload);
    such a version expires with its session, not by its age."""
    checksum: tuple[str, str] | None = None
    """``(algorithm, base64 value)`` of the full-object checksum checked when the version
    was written (module docstring), or None."""
    parts: tuple[int, ...] = ()
    """Byte sizes of the parts of an S3 multipart upload, in order; () otherwise."""

    @property
    def is_data(self) -> bool:
        """True for a complete version with content (not a delete marker)."""
        return self.state == COMPLETE and not self.delete_marker

    def aborted(self) -> ObjectVersion:
        """This version aborted: only its id and state remain."""
        return ObjectVersion(self.id, ABORTED, null=False)

    def to_record(self) -> dict[str, Any]:
        if self.state == ABORTED:
            return {"id": self.id, "state": ABORTED}
        record: dict[str, Any] = {
            "id": self.id,
            "state": self.state,
            "null": self.null,
            "delete_marker": self.delete_marker,
            "size": self.size,
            "sha256": self.sha256,
            "content_type": self.content_type,
            "meta": dict(self.meta),
            "chunks": [[d, n] for d, n in self.chunks],
            "inline": self.inline,
            "modified": self.modified,
            "created": self.created,
            "upload": self.upload,
        }
        if self.checksum is not None:
            record["checksum"] = list(self.checksum)
        if self.parts:
            record["parts"] = list(self.parts)
        return record

    @classmethod
    def from_record(cls, raw: Any) -> ObjectVersion:
        """Raises ValueError on a malformed version."""
        if not isinstance(raw, dict):
            raise ValueError("an object version must be a map")
        state = raw.get("state")
        vid = raw.get("id")
        if not isinstance(vid, str) or not vid or state not in _RANK:
            raise ValueError(f"malformed object version {vid!r} in state {state!r}")
        if state == ABORTED:
            return cls(vid, ABORTED, null=False)
        try:
            chunks = tuple((_digest(d), int(n)) for d, n in raw.get("chunks") or ())
            inline = raw.get("inline")
            meta = raw.get("meta") or {}
            version = cls(
                id=vid,
                state=str(state),
                null=bool(raw.get("null", True)),
                delete_marker=bool(raw.get("delete_marker", False)),
                size=int(raw.get("size", 0)),
                sha256=str(raw.get("sha256", "")),
                content_type=str(raw.get("content_type") or DEFAULT_CONTENT_TYPE),
                meta=tuple(sorted((str(k), str(v)) for k, v in meta.items())),
                chunks=chunks,
                inline=bytes(inline) if inline is not None else None,
                modified=float(raw.get("modified", 0.0)),
                created=float(raw.get("created", 0.0)),
                upload=str(raw.get("upload", "")),
                checksum=_checksum(raw.get("checksum")),
                parts=tuple(int(n) for n in raw.get("parts") or ()),
            )
        except (TypeError, ValueError, AttributeError) as exc:
            raise ValueError(f"malformed object version {vid!r}: {exc}") from exc
        if any(len(d) != 32 or n <= 0 for d, n in chunks):
            raise ValueError(f"malformed object version {vid!r}: bad chunk entry")
        if chunks and sum(n for _, n in chunks) != version.size:
            raise ValueError(f"malformed object version {vid!r}: chunk sizes do not add up")
        if version.parts and (min(version.parts) < 0 or sum(version.parts) != version.size):
            raise ValueError(f"malformed object version {vid!r}: part sizes do not add up")
        return version


@dataclass(frozen=True)
class ObjectEntry:
    """Every version of one key, sorted by id (oldest first)."""

    bucket: str
    key: str
    versions: tuple[ObjectVersion, ...] = field(default=())

    def current(self) -> ObjectVersion | None:
        """The newest complete version (a delete marker included), or None."""
        for version in reversed(self.versions):
            if version.state == COMPLETE:
                return version
        return None

    def live(self) -> ObjectVersion | None:
        """The current version if it holds data (not a delete marker), else None."""
        current = self.current()
        return current if current is not None and not current.delete_marker else None

    def get(self, version_id: str) -> ObjectVersion | None:
        """The version ``version_id``, or None."""
        for version in self.versions:
            if version.id == version_id:
                return version
        return None

    def superseded(self) -> list[ObjectVersion]:
        """Null versions, not aborted yet, older than the newest complete null version."""
        newest_null = ""
        for v in self.versions:
            if v.null and v.state == COMPLETE:
                newest_null = v.id
        return [v for v in self.versions if v.null and v.state != ABORTED and v.id < newest_null]

    def listed(self) -> list[ObjectVersion]:
        """The versions a client sees (complete ones, delete markers too; not superseded
        null versions), newest first."""
        hidden = {v.id for v in self.superseded()}
        return [v for v in reversed(self.versions) if v.state == COMPLETE and v.id not in hidden]


def _digest(raw: Any) -> bytes:
    if not isinstance(raw, bytes):
        raise ValueError("a chunk digest is 32 bytes")
    return raw


def _checksum(raw: Any) -> tuple[str, str] | None:
    """A record's ``checksum``: absent (None) or ``[algorithm, value]``, two non-empty
    strings (an algorithm this release does not serve is kept, not refused)."""
    if raw is None:
        return None
    if not isinstance(raw, list | tuple) or len(raw) != 2:
        raise ValueError("a checksum is [algorithm, value]")
    algorithm, value = raw
    if not isinstance(algorithm, str) or not isinstance(value, str) or not algorithm or not value:
        raise ValueError("a checksum is two non-empty strings")
    return algorithm, value


def _pick_same_id(a: ObjectVersion, b: ObjectVersion) -> ObjectVersion:
    """The winner of two copies of one version: a total order on copies (state rank, then
    whether it kept its checksum, then its parts, then the canonical encoding), so merge is
    a join."""
    ka = (_RANK[a.state], a.checksum is not None, bool(a.parts))
    kb = (_RANK[b.state], b.checksum is not None, bool(b.parts))
    if ka != kb:  # decided without encoding either copy
        return a if ka > kb else b
    ea = cbor2.dumps(a.to_record(), canonical=True)
    eb = cbor2.dumps(b.to_record(), canonical=True)
    return a if ea >= eb else b


class ObjectsSchema(TableSchema[ObjectEntry]):
    """Schema of the ``objects`` table (module docstring)."""

    name = OBJECTS_TABLE
    format_version = 1

    def decode(self, record: Any) -> ObjectEntry:
        record = self.check_format(record)
        try:
            bucket, key = str(record["bucket"]), str(record["key"])
            raw_versions = record.get("versions") or []
            versions = {v.id: v for v in map(ObjectVersion.from_record, raw_versions)}
        except (KeyError, TypeError) as exc:
            raise ValueError(f"malformed objects record: {exc}") from exc
        if len(versions) != len(raw_versions):
            raise ValueError("malformed objects record: a version id appears twice")
        return ObjectEntry(bucket, key, tuple(versions[k] for k in sorted(versions)))

    def encode(self, entry: ObjectEntry) -> dict[str, Any]:
        return {
            "format": self.format_version,
            "bucket": entry.bucket,
            "key": entry.key,
            "versions": [v.to_record() for v in entry.versions],
        }

    def merge(self, a: ObjectEntry, b: ObjectEntry) -> ObjectEntry:
        versions = {v.id: v for v in a.versions}
        for v in b.versions:
            mine = versions.get(v.id)
            versions[v.id] = v if mine is None else _pick_same_id(mine, v)
        bucket, key = (
            (a.bucket, a.key)
            if (a.bucket, a.key) <= (b.bucket, b.key)
            else (
                b.bucket,
                b.key,
            )
        )
        return ObjectEntry(bucket, key, tuple(versions[k] for k in sorted(versions)))

    def tombstone_since(self, entry: ObjectEntry) -> float | None:
        """An entry is a tombstone once no version holds data or is uploading: only
        aborted versions and delete markers remain (a lone delete marker is purged after
        the grace, like S3's expired object delete markers)."""
        if not entry.versions:
            return None
        if any(v.is_data or v.state == UPLOADING for v in entry.versions):
            return None
        return version_unix_s(entry.versions[-1].id)

    def retract(self, entry: ObjectEntry, token: str) -> ObjectEntry | None:
        if token.startswith(VERSION_TOKEN):
            vid = token[len(VERSION_TOKEN) :]
            left = tuple(v for v in entry.versions if v.id != vid)
            return replace(entry, versions=left) if left else None
        return super().retract(entry, token)

    def retract_token(self, record: Any) -> str:
        entry = self.decode(record)
        if len(entry.versions) == 1:
            return VERSION_TOKEN + entry.versions[0].id
        return self.token(entry)

    def updated(
        self, txn: HookTxn, key: bytes, old: ObjectEntry | None, new: ObjectEntry | None
    ) -> None:
        """Queue the release of the block references of every version that became aborted
        here. An entry or version that merely disappears from this peer (a rebalance drops
        a partition it no longer replicates, a failed write is retracted, a tombstone is
        purged) releases nothing: its references belong to the entry's other replicas, or
        to the coordinator that retracted it."""
        if old is None or new is None:
            return
        kept = {v.id: v for v in new.versions}
        for version in old.versions:
            if not version.chunks:
                continue
            now = kept.get(version.id)
            if now is not None and now.state == ABORTED:
                for digest in {d for d, _ in version.chunks}:
                    txn.put(
                        RELEASES_TABLE,
                        release_key(digest, version.id),
                        release_value(old.bucket, old.key, txn.now_ms),
                    )


RELEASES_TABLE = "gc_releases"
"""Local table: block references to mark deleted (key ``digest + version id``)."""
