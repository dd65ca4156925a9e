"""The Python object API of a :class:`~dfspeer.peer.Peer`: objects and buckets, each call
handed to the peer's :class:`~dfspeer.objects.ObjectService` (and its bucket service)."""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Mapping

import dfspeer
from dfspeer.objects import ListResult, ObjectInfo
from dfspeer.peer.base import PeerBase


class ObjectsMixin(PeerBase):
    """Objects and buckets of a started peer (before start: RuntimeError)."""

    async def put_object(
        self,
        bucket: str,
        key: str,
        body: AsyncIterable[bytes] | bytes,
        *,
        expected_sha256: str | None = None,
        content_length: int | None = None,
        content_type: str = "application/octet-stream",
        meta: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        """Store an object as a new version (see :meth:`ObjectService.put_object`);
        ``meta``: user metadata ``{name: value}``."""
        return await self.objects.put_object(
            bucket,
            key,
            body,
            expected_sha256=expected_sha256,
            content_length=content_length,
            content_type=content_type,
            meta=meta,
        )

    async def get_object(
        self,
        bucket: str,
        key: str,
        *,
        start: int = 0,
        end: int | None = None,
        version: str | None = None,
    ) -> tuple[ObjectInfo, AsyncIterator[bytes]]:
        """Bytes ``[start, end)`` of the live version (or of ``version``) as chunks (see
        :meth:`ObjectService.get_object`). Raises NoSuchKey, NoSuchVersion, InvalidRange."""
        return await self.objects.get_object(bucket, key, start=start, end=end, version=version)

    async def read_object(
        self,
        bucket: str,
        key: str,
        *,
        start: int = 0,
        end: int | None = None,
        version: str | None = None,
    ) -> bytes:
        """Bytes ``[start, end)`` of an object in memory (for small objects and ranges)."""
        _, chunks = await self.get_object(bucket, key, start=start, end=end, version=version)
        return b"".join([chunk async for chunk in chunks])

    async def get_bytes(
        self,
        bucket: str,
        key: str,
        *,
        start: int = 0,
        end: int | None = None,
        version: str | None = None,
    ) -> bytes:
        """Same as :meth:`read_object`: bytes ``[start, end)`` of the live version (or of
        ``version``) in memory. Raises NoSuchKey, NoSuchVersion, InvalidRange."""
        return await self.read_object(bucket, key, start=start, end=end, version=version)

    async def stat_object(self, bucket: str, key: str, *, version: str | None = None) -> ObjectInfo:
        """The live version's info (or ``version``'s). Raises NoSuchKey, NoSuchVersion."""
        return await self.objects.stat_object(bucket, key, version=version)

    async def delete_object(
        self, bucket: str, key: str, *, version: str | None = None
    ) -> str | None:
        """Without ``version``: add a delete marker and return its id (None when an
        unversioned key had nothing to delete; idempotent). With ``version``: remove that
        version for good and return it. Raises NoSuchVersion."""
        return await self.objects.delete_object(bucket, key, version=version)

    async def list_objects(
        self,
        bucket: str,
        *,
        prefix: str = "",
        delimiter: str = "",
        limit: int = 1000,
        start_after: str = "",
    ) -> ListResult:
        """One page of keys (see :meth:`ObjectService.list_objects`)."""
        return await self.objects.list_objects(
            bucket, prefix=prefix, delimiter=delimiter, limit=limit, start_after=start_after
        )

    async def list_object_versions(
        self, bucket: str, key: str
    ) -> list[dfspeer.objects.VersionInfo]:
        """Every version of ``bucket/key`` (delete markers too), newest first; [] if none."""
        return await self.objects.list_object_versions(bucket, key)

    async def list_versions(
        self, bucket: str, *, prefix: str = "", limit: int = 1000, start_after: str = ""
    ) -> dfspeer.objects.VersionPage:
        """One page of the versions of every key of ``bucket`` under ``prefix`` after key
        ``start_after`` (``limit``: 1..1000, a key's versions are never split)."""
        return await self.objects.list_versions(
            bucket, prefix=prefix, limit=limit, start_after=start_after
        )

    async def create_bucket(
        self, name: str, *, versioning: str | None = None
    ) -> tuple[dfspeer.model.Bucket, bool]:
        """Create bucket ``name``; ``(bucket, created)`` (False: it existed, and a given
        ``versioning`` — ``unversioned`` | ``enabled`` | ``suspended`` — was applied).
        Raises InvalidBucketName, InvalidArgument."""
        return await self.objects.buckets.create(name, versioning)

    async def list_buckets(self) -> list[dfspeer.model.Bucket]:
        """Every live bucket, by name."""
        return await self.objects.buckets.list()

    async def get_bucket(self, name: str) -> tuple[dfspeer.model.Bucket, int, int]:
        """``(bucket, objects, bytes)``: the bucket, its live objects and their logical
        size in bytes. Raises InvalidBucketName, NoSuchBucket."""
        dfspeer.objects.validate_bucket(name)
        bucket = await self.objects.buckets.read(name)
        if bucket is None:
            raise dfspeer.errors.NoSuchBucket(f"no bucket {name}")
        count, size = await self.objects.bucket_usage(name)
        return bucket, count, size

    async def set_bucket_versioning(self, name: str, status: str) -> dfspeer.model.Bucket:
        """Set versioning of ``name`` to ``enabled`` or ``suspended``; the bucket. Raises
        NoSuchBucket, InvalidArgument."""
        return await self.objects.buckets.set_versioning(name, status)

    async def delete_bucket(self, name: str) -> None:
        """Delete bucket ``name``. Raises NoSuchBucket, BucketNotEmpty (a key still holds
        a version or a delete marker)."""

        async def is_empty() -> bool:
            return await self.objects.bucket_is_empty(name)

        await self.objects.buckets.delete(name, is_empty=is_empty)
