"""The state of a :class:`~dfspeer.peer.Peer`: its settings, the slots of its parts (None
until :meth:`~dfspeer.peer.Peer.start` builds them), their accessors, and readiness."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from aiohttp import web
from prometheus_client import CollectorRegistry

from dfspeer import tls
from dfspeer.access.audit import AuditLog
from dfspeer.access.keystore import RecordStore
from dfspeer.access.middleware import AccessControl, BucketLookup
from dfspeer.api.cluster_routes import host_port
from dfspeer.api.shutdown import ShutdownGate
from dfspeer.blockstore import BlockStore, BlockStoreStats
from dfspeer.cluster.drain import Drainer
from dfspeer.cluster.maintenance import Maintenance
from dfspeer.cluster.repair import RepairService
from dfspeer.cluster.rpc import PeerRpcClient
from dfspeer.cluster.table import TableRegistry, TableSchema
from dfspeer.cluster.view import ClusterView
from dfspeer.config import PeerConfig
from dfspeer.gossip import GossipAgent, Keyring, Member
from dfspeer.model import default_schemas
from dfspeer.model.lifecycle import ObjectLifecycle
from dfspeer.objects import ObjectService
from dfspeer.objects.dedup_stats import DedupStats
from dfspeer.objects.sessions import UploadService
from dfspeer.peer.stack import PartStack
from dfspeer.ring import Ring

if TYPE_CHECKING:  # the S3 API (and botocore) load only when an S3 port is on
    from dfspeer.api.s3.service import S3Site

HTTP_SHUTDOWN_TIMEOUT_S = 20.0  # in-flight requests get this long to finish on stop, s
READY_POLL_S = 0.05
_T = TypeVar("_T")


class PeerBase:
    """Settings, parts and readiness of a :class:`~dfspeer.peer.Peer` (its docstring gives
    the arguments). A part's accessor raises RuntimeError until the peer has built it."""

    def __init__(
        self,
        config: PeerConfig,
        *,
        registry: CollectorRegistry | None = None,
        serve_http: bool = True,
        tables: Sequence[TableSchema[Any]] | None = None,
    ) -> None:
        self.config = config.validate()
        self.tables = TableRegistry(default_schemas() if tables is None else tables)
        """The replicated tables: the one registry every part is built from."""
        self.registry = registry if registry is not None else CollectorRegistry()
        self.serve_http = serve_http
        self.peer_id = config.peer_id or ""
        self.api_address = config.api_address
        self.keyring: Keyring | None = None
        self._store: BlockStore | None = None
        self._view: ClusterView | None = None
        self._gossip: GossipAgent | None = None
        self._objects: ObjectService | None = None
        self._rpc: PeerRpcClient | None = None
        self._runner: web.AppRunner | None = None
        self._repair: RepairService | None = None
        self._drainer: Drainer | None = None
        self._maintenance: Maintenance | None = None
        self._lifecycle: ObjectLifecycle | None = None
        self._dedup_stats: DedupStats | None = None
        self._uploads: UploadService | None = None
        self._s3: S3Site | None = None
        self._access: AccessControl | None = None
        # the keys and buckets reads of access control, through the auth cache
        # (dfspeer.access.cache); both ports use them
        self._key_records: RecordStore | None = None
        self._bucket_lookup: BucketLookup | None = None
        self._tls: ssl.SSLContext | None = None  # HTTPS on the API and S3 ports (dfspeer.tls)
        self._audit: AuditLog | None = None  # dfspeer.access.audit
        self.left = asyncio.Event()  # set once a drain finished and the peer left the cluster
        self.gate = ShutdownGate()
        """Refuses new API requests (503) once the peer is stopping; counts those in flight."""
        self.repair_status_sources: list[Callable[[], Mapping[str, Any]]] = []
        """Extra fields for the ``"repair"`` status object (hints, scrub, ...)."""
        self._stack = PartStack()
        self._started = False
        self._running = False

    # ------------------------------------------------------------------ parts
    @property
    def store(self) -> BlockStore:
        return need(self._store)

    @property
    def view(self) -> ClusterView:
        return need(self._view)

    @property
    def gossip(self) -> GossipAgent:
        return need(self._gossip)

    @property
    def objects(self) -> ObjectService:
        return need(self._objects)

    @property
    def uploads(self) -> UploadService:
        """Resumable upload sessions (:mod:`dfspeer.objects.sessions`)."""
        return need(self._uploads)

    @property
    def s3_url(self) -> str | None:
        """``http(s)://host:port`` of the S3 API (the bound port once started); None when
        ``s3_port`` is 0 or the peer serves no HTTP."""
        if self._s3 is None or not self._s3.port:
            return None
        address = host_port(self.config.advertised_host, self._s3.port)
        return f"{tls.scheme(self.config)}://{address}"

    @property
    def api_url(self) -> str:
        """``http(s)://host:port`` of the HTTP API (the bound port once started)."""
        return f"{tls.scheme(self.config)}://{self.api_address}"

    @property
    def ring(self) -> Ring:
        return self.view.ring

    @property
    def ready(self) -> bool:
        """True while running, not stopping, and joined (another member seen alive, or
        no seeds)."""
        return (
            self._running
            and not self.gate.closed
            and self._gossip is not None
            and self._gossip.joined
        )

    def members(self) -> list[Member]:
        """Every member gossip knows, self included, in any state."""
        return self.gossip.members()

    def store_stats(self) -> BlockStoreStats:
        return self.store.stats()

    async def wait_ready(self, timeout_s: float) -> None:
        """Return once :attr:`ready`; raises TimeoutError after ``timeout_s`` seconds."""
        async with asyncio.timeout(timeout_s):
            while not self.ready:
                await asyncio.sleep(READY_POLL_S)


def need(part: _T | None) -> _T:
    """``part``; raises RuntimeError while it is None (the peer is not started)."""
    if part is None:
        raise RuntimeError("the peer is not started")
    return part
