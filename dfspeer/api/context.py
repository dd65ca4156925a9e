"""What the public HTTP handlers need from a peer, as typed protocols and app keys.

The handlers never import :mod:`dfspeer.peer`: they find an :class:`ObjectBackend` (the
peer's :class:`~dfspeer.objects.ObjectService`, or an in-memory double in tests) and a
:class:`PeerState` (the :class:`~dfspeer.peer.Peer` itself) under the app keys below.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator
from typing import TYPE_CHECKING, Protocol

from aiohttp import web

from dfspeer.config import PeerConfig

if TYPE_CHECKING:
    from dfspeer.api.metrics import ApiMetrics
    from dfspeer.blockstore import BlockStoreStats
    from dfspeer.gossip import Member
    from dfspeer.objects import ListResult, ObjectInfo
    from dfspeer.ring import Ring


class ObjectBackend(Protocol):
    """The object operations the API calls (the contract of ``ObjectService``)."""

    async def put_object(
        self,
        bucket: str,
        key: str,
        body: AsyncIterable[bytes] | bytes,
        *,
        expected_sha256: str | None = None,
        content_length: int | None = None,
        content_type: str = "application/octet-stream",
    ) -> ObjectInfo: ...

    async def stat_object(self, bucket: str, key: str) -> ObjectInfo: ...

    async def get_object(
        self, bucket: str, key: str, *, start: int = 0, end: int | None = None
    ) -> tuple[ObjectInfo, AsyncIterator[bytes]]: ...

    async def delete_object(self, bucket: str, key: str) -> None: ...

    async def list_objects(
        self,
        bucket: str,
        *,
        prefix: str = "",
        delimiter: str = "",
        limit: int = 1000,
        start_after: str = "",
    ) -> ListResult: ...


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
