"""What the public HTTP handlers need from a peer, as typed protocols and app keys.

The handlers never import :mod:`dfspeer.peer`: they find an :class:`ObjectBackend` (the
peer's :class:`~dfspeer.objects.ObjectService`, or an in-memory double in tests) and a
:class:`PeerState` (the :class:`~dfspeer.peer.Peer` itself) under the app keys below.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING, Protocol

from aiohttp import web

from dfspeer.config import PeerConfig

if TYPE_CHECKING:
    from dfspeer.api.metrics import ApiMetrics
    from dfspeer.blockstore import BlockStoreStats
    from dfspeer.gossip import Member
    from dfspeer.model.buckets import Bucket, Grant
    from dfspeer.objects import ListResult, ObjectInfo, VersionInfo, VersionPage
    from dfspeer.objects.download import ObjectReader
    from dfspeer.objects.usage import Footprint
    from dfspeer.ring import Ring


class BucketBackend(Protocol):
    """The bucket operations the API calls (the contract of ``BucketService``)."""

    async def create(
        self,
        name: str,
        versioning: str | None = None,
        *,
        owner: str = "",
        chunking: str | None = None,
    ) -> tuple[Bucket, bool]:
        """``(bucket, created)``; an existing bucket gets ``versioning`` and ``chunking``
        ("cdc" | "fixed") if given; a new one is owned by access key ``owner`` ("" for the
        admin). Raises InvalidBucketName, InvalidArgument."""
        ...

    async def read(self, name: str) -> Bucket | None:
        """The live bucket ``name``, or None."""
        ...

    async def list(self) -> list[Bucket]:
        """Every live bucket, by name."""
        ...

    async def set_versioning(self, name: str, status: str) -> Bucket:
        """``status``: ``enabled`` | ``suspended``. Raises NoSuchBucket, InvalidArgument."""
        ...

    async def delete(self, name: str, *, is_empty: Callable[[], Awaitable[bool]]) -> None:
        """Raises NoSuchBucket, BucketNotEmpty (when ``await is_empty()`` is False)."""
        ...

    async def set_permissions(
        self, name: str, permissions: Callable[[Mapping[str, Grant]], Mapping[str, Grant]]
    ) -> Bucket:
        """Replace the bucket's permissions by ``permissions(current)``. Raises
        NoSuchBucket."""
        ...


class ObjectBackend(Protocol):
    """The object operations the API calls (the contract of ``ObjectService``)."""

    @property
    def buckets(self) -> BucketBackend:
        """The buckets (``ObjectService.buckets``)."""
        ...

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
    ) -> ObjectInfo: ...

    async def stat_object(
        self, bucket: str, key: str, *, version: str | None = None
    ) -> ObjectInfo: ...

    async def get_object(
        self,
        bucket: str,
        key: str,
        *,
        start: int = 0,
        end: int | None = None,
        version: str | None = None,
    ) -> tuple[ObjectInfo, AsyncIterator[bytes]]: ...

    async def open_object(
        self,
        bucket: str,
        key: str,
        *,
        version: str | None = None,
        span: tuple[int, int | None] | None = None,
    ) -> tuple[ObjectInfo, ObjectReader]:
        """Info and a reader (``await reader(start, end)`` -> the stream of
        :meth:`get_object`) from one read of the entry; ``span``: the read expected, whose
        first bytes may be fetched early (the reader may have ``aclose()`` to drop them)."""
        ...

    async def delete_object(
        self, bucket: str, key: str, *, version: str | None = None
    ) -> str | None:
        """Without ``version``: the delete marker's id (None if none was written); with
        one: that version, removed for good. Raises NoSuchVersion."""
        ...

    async def list_objects(
        self,
        bucket: str,
        *,
        prefix: str = "",
        delimiter: str = "",
        limit: int = 1000,
        start_after: str = "",
    ) -> ListResult: ...

    async def list_object_versions(self, bucket: str, key: str) -> list[VersionInfo]:
        """Every version of ``bucket/key`` (delete markers too), newest first; [] if none."""
        ...

    async def list_versions(
        self, bucket: str, *, prefix: str = "", limit: int = 1000, start_after: str = ""
    ) -> VersionPage:
        """A page of the versions of every key under ``prefix`` after key ``start_after``."""
        ...

    async def bucket_usage(self, bucket: str) -> tuple[int, int]:
        """``(objects, bytes)``: live objects of ``bucket`` and their logical size."""
        ...

    async def bucket_footprint(self, bucket: str) -> Footprint:
        """Logical vs physical (distinct chunk) bytes of ``bucket``'s versions."""
        ...

    async def bucket_is_empty(self, bucket: str) -> bool:
        """True if no key of ``bucket`` holds a version or delete marker."""
        ...


class PeerState(Protocol):
    """Read-only view of the running peer for the cluster routes and metrics."""

    @property
    def peer_id(self) -> str: ...

    @property
    def ready(self) -> bool:
        """True once the peer has joined the cluster (``/ready`` answers 200)."""
        ...

    @property
    def ring(self) -> Ring: ...

    def members(self) -> list[Member]:
        """Every known member, self included, in any state."""
        ...

    def store_stats(self) -> BlockStoreStats: ...


OBJECTS_KEY = web.AppKey("dfspeer.objects", ObjectBackend)
STATE_KEY = web.AppKey("dfspeer.state", PeerState)
CONFIG_KEY = web.AppKey("dfspeer.config", PeerConfig)
METRICS_KEY: web.AppKey[ApiMetrics] = web.AppKey("dfspeer.metrics")
REQUEST_ID_KEY = web.RequestKey("dfspeer.request_id", str)
