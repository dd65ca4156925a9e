"""BucketService: buckets over the replicated ``buckets`` table (quorum W writes, R reads).

A first object write into an unknown bucket creates it (unversioned), so plain ``PUT``s
keep working without a bucket step. Each coordinator caches what it read of a bucket for
``CACHE_TTL_S`` seconds: a versioning change made through another peer applies to writes
coordinated here within that time (changes made here apply at once). Other caches of
buckets (access control's, :mod:`dfspeer.access.cache`) listen to :attr:`BucketService.on_change`
to drop what a write made here changed.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import replace

from dfspeer.cluster.replication import Replicator
from dfspeer.errors import BucketNotEmpty, InvalidArgument, NoSuchBucket
from dfspeer.model.buckets import BUCKETS_TABLE, VERSIONING_STATES, Bucket, BucketsSchema, Grant
from dfspeer.objects.hlc import HybridLogicalClock
from dfspeer.objects.names import validate_bucket

CACHE_TTL_S = 2.0
MAX_BUCKETS_LISTED = 10_000


class BucketService:
    """Create, read, list, version and delete buckets. ``self_id``: this peer's id (the
    tie-break of versions it writes); ``clock``: unix seconds; ``on_change``: listeners
    called with a bucket's name after every write of it through this service (creation,
    versioning, chunking, permissions and owner, deletion), whether or not the write
    succeeded (a failed one may have reached some replicas); more can be appended to
    :attr:`on_change` later."""

    def __init__(
        self,
        replicator: Replicator,
        hlc: HybridLogicalClock,
        self_id: str,
        *,
        clock: Callable[[], float] = time.time,
        default_chunking: str = "fixed",
        on_change: Iterable[Callable[[str], None]] = (),
    ) -> None:
        self.default_chunking = default_chunking  # a new bucket's chunking (cdc | fixed)
        self.on_change: list[Callable[[str], None]] = list(on_change)
        self.replicator = replicator
        self.hlc = hlc
        self.self_id = self_id
        self.clock = clock
        self.schema = BucketsSchema()
        self._cache: dict[str, tuple[Bucket | None, float]] = {}

    async def read(self, name: str, *, cached: bool = False) -> Bucket | None:
        """The live bucket ``name`` or None (a deleted bucket is None)."""
        if cached:
            hit = self._cache.get(name)
            if hit is not None and hit[1] > self.clock():
                return hit[0]
        record = await self.replicator.read_record(BUCKETS_TABLE, name.encode())
        bucket = self.schema.decode(record) if record is not None else None
        if bucket is not None:
            self.hlc.observe_version(bucket.version)
        live = bucket if bucket is not None and not bucket.deleted else None
        self._cache[name] = (live, self.clock() + CACHE_TTL_S)
        return live

    async def _write(self, bucket: Bucket) -> Bucket:
        record = self.schema.encode(bucket)
        try:
            await self.replicator.write_record(BUCKETS_TABLE, bucket.name.encode(), record)
        finally:
            for listener in self.on_change:
                listener(bucket.name)
        self._cache[bucket.name] = (None if bucket.deleted else bucket, self.clock() + CACHE_TTL_S)
        return bucket

    def _version(self) -> str:
        return str(self.hlc.next_version(self.self_id))

    async def ensure(self, name: str) -> Bucket:
        """The bucket ``name``, created (unversioned) if it does not exist."""
        bucket = await self.read(name, cached=True)
        if bucket is not None:
            return bucket
        bucket, _ = await self.create(name)
        return bucket

    async def create(
        self,
        name: str,
        versioning: str | None = None,
        *,
        owner: str = "",
        chunking: str | None = None,
    ) -> tuple[Bucket, bool]:
        """Create ``name``; returns the bucket and True if it was created now (False: it
        existed, and ``versioning``, if given, was applied). ``owner``: the access key id
        that creates it ("" for the admin). Raises InvalidBucketName, InvalidArgument
        (unknown versioning state). ``chunking`` ("cdc" | "fixed", default: the cluster's
        ``default_chunking``) is applied like ``versioning``."""
        validate_bucket(name)
        if versioning is not None:
            _check_state(versioning, allow_unversioned=True)
        if chunking is not None:
            check_chunking(chunking)
        current = await self.read(name)
        if current is not None:
            if versioning is not None and versioning != current.versioning:
                current = await self.set_versioning(name, versioning)
            if chunking is not None and chunking != current.chunking:
                current = await self._write(
                    replace(current, chunking=chunking, version=self._version())
                )
            return current, False
        bucket = Bucket(
            name=name,
            created=self.clock(),
            version=self._version(),
            versioning=versioning or "unversioned",
            owner=owner,
            chunking=chunking or self.default_chunking,
        )
        return await self._write(bucket), True

    async def set_versioning(self, name: str, status: str) -> Bucket:
        """Set versioning to ``enabled`` or ``suspended`` (S3 never goes back to
        ``unversioned``; creation may choose it). Raises NoSuchBucket, InvalidArgument."""
        validate_bucket(name)
        _check_state(status, allow_unversioned=False)
        current = await self.read(name)
        if current is None:
            raise NoSuchBucket(f"no bucket {name}")
        return await self._write(replace(current, versioning=status, version=self._version()))

    async def set_permissions(
        self, name: str, permissions: Callable[[Mapping[str, Grant]], Mapping[str, Grant]]
    ) -> Bucket:
        """Replace the bucket's permissions by ``permissions(current)`` (a pure function,
        see :func:`dfspeer.access.permissions.with_grant`), read with quorum and written
        as a new version. Raises NoSuchBucket."""
        validate_bucket(name)
        current = await self.read(name)
        if current is None:
            raise NoSuchBucket(f"no bucket {name}")
        changed = dict(permissions(current.permissions))
        return await self._write(replace(current, permissions=changed, version=self._version()))

    async def list(self) -> list[Bucket]:
        """Every live bucket, by name."""
        buckets: list[Bucket] = await self.replicator.scan_entries(
            BUCKETS_TABLE, lambda bucket: not bucket.deleted, limit=MAX_BUCKETS_LISTED
        )
        return buckets

    async def delete(self, name: str, *, is_empty: Callable[[], Awaitable[bool]]) -> None:
        """Delete bucket ``name`` (a tombstone). ``is_empty``: awaitable factory answering
        whether the bucket holds no version. Raises NoSuchBucket, BucketNotEmpty."""
        validate_bucket(name)
        current = await self.read(name)
        if current is None:
            raise NoSuchBucket(f"no bucket {name}")
        if not await is_empty():
            raise BucketNotEmpty(f"bucket {name} still holds object versions or delete markers")
        await self._write(replace(current, deleted=True, version=self._version()))


def check_chunking(chunking: str) -> None:
    """Raise InvalidArgument unless ``chunking`` is "cdc" or "fixed"."""
    if chunking not in ("cdc", "fixed"):
        raise InvalidArgument(f"chunking must be cdc or fixed, got {chunking!r}")


def _check_state(status: str, *, allow_unversioned: bool) -> None:
    allowed = VERSIONING_STATES if allow_unversioned else ("enabled", "suspended")
    if status not in allowed:
        raise InvalidArgument(f"versioning must be one of {', '.join(allowed)}, got {status!r}")
