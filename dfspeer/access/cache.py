"""Short-lived caches of what access control reads on every request: access keys (the
``keys`` table) and buckets (owner and grants), both read with quorum R otherwise.

``auth_cache_ttl_s`` (default 1 s; 0..60, 0: off) trades revocation latency for
throughput. The TTL actually used is ``min(auth_cache_ttl_s, anti_entropy_interval_s / 2)``
(:attr:`~dfspeer.config.PeerConfig.effective_auth_cache_ttl_s`), so a disabled key is
refused by every peer well within one anti-entropy round, and a short anti-entropy interval
shortens the TTL rather than failing validation. Off, every authenticated request costs two
quorum reads (each a peer RPC to every remote replica of the record's partition), and a
key disabled or a grant revoked through any peer is refused by every peer as soon as the
write is acknowledged (R + W > N). On, a peer reuses what it read for the TTL:

- a change made **through this peer** applies here at once: key writes (create, disable,
  delete) go through :class:`CachedRecords`, and every bucket write of the peer's
  :class:`~dfspeer.objects.buckets.BucketService` (creation, permissions and owner,
  versioning, deletion) calls :meth:`CachedBuckets.forget` through its ``on_change``
  listeners (wired by :func:`cached_lookups`): both drop the cached entry;
- a change made through **another peer** applies here within the TTL (the cached read
  expires; nothing is pushed between peers).

A write racing a read in flight leaves nothing stale (:meth:`TtlCache.ticket`). Misses (an
unknown key id, a missing bucket) are cached too; the cache holds at most ``max_entries``
(expired entries are dropped first, then everything), so a client spraying random key ids
costs memory bounded by it.

Both API ports read through the same two lookups: the peer hands the S3 port
(:func:`dfspeer.api.s3.service.s3_site`) the ``(records, buckets)`` of :func:`cached_lookups`
that its native access control uses, so a key disabled or a grant revoked stops working on
both ports at the same time. The key cache holds the stored records, whose secrets are
sealed (the S3 port opens a key's secret per request for SigV4 and keeps it nowhere).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from dfspeer.access.keystore import RecordStore
from dfspeer.access.middleware import BucketLookup
from dfspeer.model.buckets import Bucket
from dfspeer.model.keys import KEYS_TABLE

K = TypeVar("K")
V = TypeVar("V")
MAX_ENTRIES = 10_000


class TtlCache(Generic[K, V]):
    """``key -> value`` kept ``ttl_s`` seconds (``clock``: monotonic seconds)."""

    def __init__(
        self,
        ttl_s: float,
        *,
        max_entries: int = MAX_ENTRIES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self.max_entries = max_entries
        self.clock = clock
        self._entries: dict[K, tuple[V, float]] = {}
        self._drops = 0
        self.hits = 0
        self.misses = 0

    def ticket(self) -> int:
        """Take before reading from the cluster; :meth:`put` with it keeps nothing if an
        entry was dropped meanwhile (the read may predate a write)."""
        return self._drops

    def get(self, key: K) -> tuple[bool, V | None]:
        """``(True, value)`` while fresh, else ``(False, None)``."""
        entry = self._entries.get(key)
        if entry is not None and entry[1] > self.clock():
            self.hits += 1
            return True, entry[0]
        self.misses += 1
        return False, None

    def put(self, key: K, value: V, ticket: int) -> None:
        """Keep ``value`` for ``ttl_s`` from now, unless :meth:`drop` ran since ``ticket``."""
        if ticket != self._drops:
            return
        if len(self._entries) >= self.max_entries and key not in self._entries:
            now = self.clock()
            for old in [k for k, (_, expires) in self._entries.items() if expires <= now]:
                del self._entries[old]
            if len(self._entries) >= self.max_entries:
                self._entries.clear()
        self._entries[key] = (value, self.clock() + self.ttl_s)

    def drop(self, key: K) -> None:
        """Forget ``key`` (its next read goes to the cluster)."""
        self._drops += 1
        self._entries.pop(key, None)

    def __len__(self) -> int:
        return len(self._entries)


class CachedRecords:
    """The :class:`~dfspeer.access.keystore.RecordStore` of the key service with the
    ``keys`` table's reads cached (module docstring); writes go through and drop the
    entry, scans are never cached."""

    def __init__(self, records: RecordStore, cache: TtlCache[bytes, Any]) -> None:
        self.records = records
        self.cache = cache

    async def read_record(self, table: str, key: bytes) -> Any | None:
        if table != KEYS_TABLE:
            return await self.records.read_record(table, key)
        found, record = self.cache.get(key)
        if found:
            return record
        ticket = self.cache.ticket()
        record = await self.records.read_record(table, key)
        self.cache.put(key, record, ticket)
        return record

    async def write_record(self, table: str, key: bytes, value: Any) -> int:
        if table != KEYS_TABLE:
            return await self.records.write_record(table, key, value)
        self.cache.drop(key)  # before: a read in flight keeps nothing (its ticket is old)
        try:
            return await self.records.write_record(table, key, value)
        finally:
            self.cache.drop(key)  # after: nor does one that started during the write

    async def scan_entries(
        self,
        table: str,
        keep: Callable[[Any], bool],
        *,
        limit: int,
        omit: tuple[str, ...] = (),
    ) -> list[Any]:
        return await self.records.scan_entries(table, keep, limit=limit, omit=omit)


class CachedBuckets:
    """The :class:`~dfspeer.access.middleware.BucketLookup` of access control with bucket
    reads cached (module docstring); a bucket created through it drops its entry, and so
    does :meth:`forget` (a ``BucketService.on_change`` listener: any other bucket write)."""

    def __init__(self, buckets: BucketLookup, cache: TtlCache[str, Bucket | None]) -> None:
        self.buckets = buckets
        self.cache = cache

    async def read(self, name: str) -> Bucket | None:
        found, bucket = self.cache.get(name)
        if found:
            return bucket
        ticket = self.cache.ticket()
        bucket = await self.buckets.read(name)
        self.cache.put(name, bucket, ticket)
        return bucket

    def forget(self, name: str) -> None:
        """Drop bucket ``name`` (written through this peer): its next read goes to the
        cluster, and a read in flight keeps nothing."""
        self.cache.drop(name)

    async def create(
        self, name: str, versioning: str | None = None, *, owner: str = ""
    ) -> tuple[Bucket, bool]:
        self.cache.drop(name)
        try:
            return await self.buckets.create(name, versioning, owner=owner)
        finally:
            self.cache.drop(name)


def cached_lookups(
    records: RecordStore,
    buckets: BucketLookup,
    ttl_s: float,
    *,
    bucket_listeners: list[Callable[[str], None]] | None = None,
) -> tuple[RecordStore, BucketLookup]:
    """``(records, buckets)`` as access control should use them: cached for ``ttl_s``
    seconds (``PeerConfig.effective_auth_cache_ttl_s``), or unchanged when ``ttl_s`` is 0.
    ``bucket_listeners``: the ``on_change`` list of the BucketService every bucket write of
    this peer goes through; the bucket cache's :meth:`CachedBuckets.forget` joins it."""
    if ttl_s <= 0:
        return records, buckets
    cached = CachedBuckets(buckets, TtlCache(ttl_s))
    if bucket_listeners is not None:
        bucket_listeners.append(cached.forget)
    return CachedRecords(records, TtlCache(ttl_s)), cached
