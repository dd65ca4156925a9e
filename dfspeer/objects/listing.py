"""Listing a bucket: cluster-wide scan of the objects table, S3 ListObjects semantics.

Object entries are placed by the hash of ``bucket/key``, so a listing asks every reachable
member for the next entries of ``bucket/prefix`` (:meth:`Replicator.scan_partitioned`:
per-partition quorum R, entries merged per key, chunk lists left out), keeps each key's
live version (dropping deleted keys), rolls keys up into common prefixes at the first
``delimiter`` after ``prefix``, and stops after ``limit`` entries (objects + common
prefixes, as in S3). ``next_start_after`` is the last entry returned; passing it back as
``start_after`` continues the listing (a common prefix given as ``start_after`` skips every
key under it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dfspeer.cluster.replication import Replicator
from dfspeer.errors import InvalidArgument
from dfspeer.model.objects import (
    OBJECTS_TABLE,
    TABLE_KEY_LIMIT,
    ObjectEntry,
    ObjectsSchema,
    encode_table_key,
    scan_prefix,
)
from dfspeer.objects.info import ObjectInfo, VersionInfo

MAX_LIST_LIMIT = 1000
OMIT = ("chunks", "inline")
"""Fields left out of listed versions (chunk lists and inline data are never listed)."""
_SCHEMA = ObjectsSchema()


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
            OBJECTS_TABLE,
            prefix=scan_prefix(base + prefix.encode()),
            start_after=cursor,
            limit=batch,
            omit=OMIT,
        )
        for entry in _entries(page.items, bucket, prefix):
            live = entry.live()
            if live is None:
                continue
            key = entry.key
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
                objects.append(ObjectInfo.of(bucket, key, live))
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


def _entries(items: list[tuple[bytes, Any]], bucket: str, prefix: str) -> list[ObjectEntry]:
    """The well-formed entries of ``bucket`` under ``prefix`` among scanned records."""
    out = []
    for _, record in items:
        try:
            entry = _SCHEMA.decode(record)
        except ValueError:
            continue
        if entry.bucket == bucket and entry.key.startswith(prefix):
            out.append(entry)
    return out


@dataclass(frozen=True)
class VersionPage:
    """One page of a versions listing: every version of each key, keys in order, each
    key's versions newest first. ``next_start_after``: the last key listed when
    ``is_truncated`` (pass it back as ``start_after``)."""

    versions: list[VersionInfo] = field(default_factory=list)
    is_truncated: bool = False
    next_start_after: str | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "versions": [v.to_json() for v in self.versions],
            "is_truncated": self.is_truncated,
            "next_start_after": self.next_start_after,
        }


async def list_versions(
    replicator: Replicator,
    bucket: str,
    *,
    prefix: str = "",
    limit: int = 1000,
    start_after: str = "",
) -> VersionPage:
    """Versions of the keys of ``bucket`` under ``prefix`` after key ``start_after``; a page
    ends after the key whose versions reach ``limit`` (1..1000), so one key's versions are
    never split. Raises InvalidArgument, InsufficientReplicas."""
    if not 1 <= limit <= MAX_LIST_LIMIT:
        raise InvalidArgument(f"limit must be in 1..{MAX_LIST_LIMIT}")
    base = bucket.encode() + b"/"
    cursor = encode_table_key(base + start_after.encode()) if start_after else None
    out: list[VersionInfo] = []
    while True:
        page = await replicator.scan_partitioned(
            OBJECTS_TABLE,
            prefix=scan_prefix(base + prefix.encode()),
            start_after=cursor,
            limit=min(MAX_LIST_LIMIT, limit + 1),
            omit=OMIT,
        )
        for entry in _entries(page.items, bucket, prefix):
            if start_after and entry.key <= start_after:
                continue
            listed = entry.listed()
            if not listed:
                continue
            if len(out) >= limit:
                return VersionPage(out, True, out[-1].key)
            out.extend(VersionInfo.listing(entry.key, listed))
        if not page.more:
            return VersionPage(out, False, None)
        cursor = page.cursor
