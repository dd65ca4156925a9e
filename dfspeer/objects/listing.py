"""Listing a bucket: cluster-wide scan of the manifests table, S3 ListObjects semantics.

Manifests are placed by key hash, so a listing asks every reachable member for the next
records of ``bucket/prefix`` (:meth:`Replicator.scan_partitioned`: per-partition quorum R,
LWW merge per key), drops tombstones, rolls keys up into common prefixes at the first
``delimiter`` after ``prefix``, and stops after ``limit`` entries (objects + common
prefixes, as in S3). ``next_start_after`` is the last entry returned; passing it back as
``start_after`` continues the listing (a common prefix given as ``start_after`` skips every
key under it).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from dfspeer.cluster.replication import Replicator
from dfspeer.errors import InvalidArgument
from dfspeer.objects.manifest import (
    MANIFEST_TABLE,
    TABLE_KEY_LIMIT,
    Manifest,
    ObjectInfo,
    encode_table_key,
    scan_prefix,
)

MAX_LIST_LIMIT = 1000


@dataclass(frozen=True)
class ListResult:
    """One page of a listing, in key order."""

    objects: list[ObjectInfo] = field(default_factory=list)
    common_prefixes: list[str] = field(default_factory=list)
    is_truncated: bool = False
    next_start_after: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "objects": [o.to_json() for o in self.objects],
            "common_prefixes": list(self.common_prefixes),
            "is_truncated": self.is_truncated,
            "next_start_after": self.next_start_after,
        }


def _skip_past(base: bytes, common_prefix: str) -> bytes | None:
    """A scan cursor after every key under ``common_prefix`` (UTF-8 has no 0xff byte)."""
    full = base + common_prefix.encode()
    return full + b"\xff" if len(full) < TABLE_KEY_LIMIT else None


async def list_objects(
    replicator: Replicator,
    bucket: str,
    *,
    prefix: str = "",
    delimiter: str = "",
    limit: int = 1000,
    start_after: str = "",
) -> ListResult:
    """List live objects of ``bucket`` whose keys start with ``prefix`` and sort after
    ``start_after``. ``limit``: 1..1000 entries. Raises InvalidArgument, or
    InsufficientReplicas when some partition has fewer than R replicas answering."""
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise InvalidArgument(f"limit must be in 1..{MAX_LIST_LIMIT}")
    base = bucket.encode() + b"/"
    cursor = encode_table_key(base + start_after.encode()) if start_after else None
    if start_after and _roll_up(start_after, prefix, delimiter) == start_after:
        cursor = _skip_past(base, start_after) or cursor  # resume after a common prefix
    objects: list[ObjectInfo] = []
    prefixes: list[str] = []
    last_prefix: str | None = None
    batch = min(MAX_LIST_LIMIT, limit + 1)
    while True:
        page = await replicator.scan_partitioned(
            MANIFEST_TABLE,
            prefix=scan_prefix(base + prefix.encode()),
            start_after=cursor,
            limit=batch,
            omit=("chunks", "inline"),
        )
        for _, record in page.items:
            try:
                manifest = Manifest.from_record(record)
            except ValueError:
                continue
            key = manifest.key
            if manifest.deleted or manifest.bucket != bucket or not key.startswith(prefix):
                continue
            rolled = _roll_up(key, prefix, delimiter)
            if rolled is not None and (
                rolled == last_prefix or (start_after and rolled <= start_after)
            ):
                continue
            if len(objects) + len(prefixes) >= limit:
                return ListResult(objects, prefixes, True, _last(objects, prefixes))
            if rolled is not None:
                prefixes.append(rolled)
                last_prefix = rolled
            else:
                objects.append(manifest.info())
        if not page.more:
            return ListResult(objects, prefixes, False, None)
        cursor = page.cursor
        if last_prefix is not None and cursor is not None:
            skip = _skip_past(base, last_prefix)
            if skip is not None and cursor < skip and cursor.startswith(skip[:-1]):
                cursor = skip


def _roll_up(key: str, prefix: str, delimiter: str) -> str | None:
    if not delimiter:
        return None
    at = key.find(delimiter, len(prefix))
    return key[: at + len(delimiter)] if at >= 0 else None


def _last(objects: list[ObjectInfo], prefixes: list[str]) -> str | None:
    candidates = [o.key for o in objects[-1:]] + prefixes[-1:]
    return max(candidates) if candidates else None
