"""Peer: the composition root. Builds every part of one storage peer, starts them in order
and stops them in reverse; the only module that knows them all.

Start order: cluster keyring -> peer id (``<data_dir>/peer_id``) -> HTTP listening socket
(bound early, so a taken port fails fast and port 0 is known before gossip advertises it)
-> block store -> cluster view -> gossip agent (bound, not yet joined) -> peer RPC client ->
replicator -> object service -> HTTP server (public API + ``/internal/`` peer RPC) ->
gossip join. Stop: gossip leave, HTTP server, replicator, RPC client, gossip agent, block
store. A failure during start unwinds what was started.

Embedding::

    async with Peer(PeerConfig(data_dir=Path("d"), insecure=True, replication_factor=1,
                               write_quorum=1, read_quorum=1)) as peer:
        await peer.wait_ready(10)
        info = await peer.put_object("photos", "cat.jpg", data)
        info, chunks = await peer.get_object("photos", "cat.jpg", start=0, end=100)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, TypeVar

from aiohttp import web
from prometheus_client import CollectorRegistry

import dfspeer
from dfspeer.api.app import build_app
from dfspeer.api.cluster_routes import host_port
from dfspeer.api.internal import internal_app
from dfspeer.api.middleware import AccessLogger
from dfspeer.api.repair_routes import DRAIN_KEY
from dfspeer.api.repair_routes import routes as repair_routes
from dfspeer.blockstore import BlockStore, BlockStoreStats
from dfspeer.cluster.drain import Drainer
from dfspeer.cluster.maintenance import Maintenance, MaintenanceMetrics
from dfspeer.cluster.repair import RepairMetrics, RepairService
from dfspeer.cluster.replication import Replicator
from dfspeer.cluster.rpc import PeerRpcClient
from dfspeer.cluster.view import ClusterView
from dfspeer.config import PeerConfig, parse_host_port
from dfspeer.gossip import GossipAgent, Keyring, Member, MemberEvent, MemberState
from dfspeer.gossip.metrics import GossipMetrics
from dfspeer.objects import ListResult, ObjectInfo, ObjectService
from dfspeer.objects.manifest import MANIFEST_TABLE, merge_manifest
from dfspeer.peer_setup import bind_socket, load_keyring, load_peer_id, swim_config
from dfspeer.ring import Partitioner, Ring

log = logging.getLogger("dfspeer.peer")

HTTP_SHUTDOWN_TIMEOUT_S = 5.0  # in-flight requests get this long to finish on stop
READY_POLL_S = 0.05
_T = TypeVar("_T")


class Peer:
    """One storage peer: gossip, ring, block store, peer RPC, object service, HTTP API.

    ``registry``: where Prometheus metrics go (a fresh one if omitted; never the global one,
    so several peers can share a process). ``serve_http=False`` runs no HTTP server: the
    Python API still works, but other peers cannot reach this one's blocks, so it suits a
    single-peer embedding. A Peer starts once; to restart, build a new one on the same
    ``data_dir`` (it keeps its id).
    """

    def __init__(
        self,
        config: PeerConfig,
        *,
        registry: CollectorRegistry | None = None,
        serve_http: bool = True,
    ) -> None:
        self.config = config.validate()
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
        self.left = asyncio.Event()  # set once a drain finished and the peer left the cluster
        self.repair_status_sources: list[Callable[[], Mapping[str, Any]]] = []
        """Extra fields for the ``"repair"`` status object (hints, scrub, ...)."""
        self._stack = contextlib.AsyncExitStack()
        self._started = False
        self._running = False

    # ------------------------------------------------------------------ parts
    @property
    def store(self) -> BlockStore:
        return _need(self._store)

    @property
    def view(self) -> ClusterView:
        return _need(self._view)

    @property
    def gossip(self) -> GossipAgent:
        return _need(self._gossip)

    @property
    def objects(self) -> ObjectService:
        return _need(self._objects)

    @property
    def api_url(self) -> str:
        """``http://host:port`` of the HTTP API (the bound port once started)."""
        return f"http://{self.api_address}"

    @property
    def ring(self) -> Ring:
        return self.view.ring

    @property
    def ready(self) -> bool:
        """True while running and joined (another member seen alive, or no seeds)."""
        return self._running and self._gossip is not None and self._gossip.joined

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

    # ------------------------------------------------------------------ lifecycle
    async def __aenter__(self) -> Peer:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        """Start every part (see module docstring). Raises ConfigError on a bad setup
        (no key, foreign data dir), OSError when a port is taken; then nothing stays open."""
        if self._started:
            raise RuntimeError("a Peer starts once; build a new Peer to restart")
        self._started = True
        logging.getLogger("dfspeer").setLevel(self.config.log_level.upper())
        try:
            await self._start()
        except BaseException:
            await self._unwind()
            raise
        self._running = True
        log.info(
            "peer started id=%s api=%s gossip=%s seeds=%d",
            self.peer_id,
            self.api_url,
            host_port(*self.gossip.local_member.gossip_address),
            len(self.config.join),
        )

    async def _start(self) -> None:
        config = self.config
        self.keyring = load_keyring(config)
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.peer_id = load_peer_id(config.data_dir, config.peer_id)
        sock: socket.socket | None = None
        if self.serve_http:
            sock = bind_socket(config.host, config.port)
            self._stack.callback(sock.close)
            self.api_address = host_port(config.advertised_host, sock.getsockname()[1])
        partitioner = Partitioner(config.partition_bits)
        self._store = BlockStore(
            config.data_dir / "blocks",
            map_size_bytes=config.map_size_bytes,
            durable=config.durable,
            partition_of=partitioner.partition,
        )
        self._defer(self._store.close, "block store")
        self._view = ClusterView(
            self.peer_id,
            partition_bits=config.partition_bits,
            replication_factor=config.replication_factor,
            dead_member_evict_s=config.dead_member_evict_s,
        )
        await self._start_gossip()
        self._rpc = PeerRpcClient(self.keyring, self.peer_id, timeout_s=config.request_timeout_s)
        self._defer(self._rpc.close, "peer rpc client")
        replicator = Replicator(config, self._view, self._store, self._rpc)
        self._defer(replicator.close, "replicator")
        self._objects = ObjectService(config, self._view, self._store, replicator)
        self._start_repair()
        self._start_maintenance(replicator)
        if sock is not None:
            await self._start_http(sock)
        seeds = [parse_host_port(s, what="join") for s in config.join]
        await self.gossip.join(seeds)
        self._defer(self.gossip.leave, "gossip leave")
        await _need(self._repair).start()
        await _need(self._maintenance).start()

    async def _start_gossip(self) -> None:
        config = self.config
        me = Member(
            id=self.peer_id,
            gossip_address=(config.advertised_host, config.gossip_port),
            api_address=self.api_address,
            incarnation=0,
            state=MemberState.ALIVE,
            zone=config.zone,
            weight=config.weight,
            version=dfspeer.__version__,
        )
        self._gossip = GossipAgent(
            swim_config(config), me, _need(self.keyring), bind_host=config.host
        )
        self._gossip.subscribe(self._on_member_event)
        await self._gossip.start()
        self._defer(self._gossip.stop, "gossip agent")
        self.view.update(self._gossip.members())
        GossipMetrics(self._gossip).register(self.registry)

    async def _start_http(self, sock: socket.socket) -> None:
        app = build_app(
            self.objects,
            self,
            self.config,
            registry=self.registry,
            internal=internal_app(
                self.store,
                _need(self.keyring),
                self_id=self.peer_id,
                status=self._rpc_status,
                hints=_need(self._maintenance).hints,
            ),
        )
        app[DRAIN_KEY] = _need(self._drainer)
        app.add_routes(repair_routes)
        self._runner = web.AppRunner(
            app,
            handle_signals=False,
            access_log_class=AccessLogger,
            access_log=logging.getLogger("dfspeer.api.access"),
            shutdown_timeout=HTTP_SHUTDOWN_TIMEOUT_S,
        )
        await self._runner.setup()
        self._defer(self._runner.cleanup, "http server")
        await web.SockSite(self._runner, sock).start()

    def _start_repair(self) -> None:
        """Anti-entropy + partition handoff (every peer) and the drain control."""
        self._repair = RepairService(
            self.config,
            self.view,
            self.store,
            _need(self._rpc),
            merges={MANIFEST_TABLE: merge_manifest},
            refresh=self._refresh_view,
        )
        self._drainer = Drainer(
            self._repair,
            publish_weight=self._publish_weight,
            leave=self.gossip.leave,
            on_done=self.left.set,
        )
        RepairMetrics(self._repair).register(self.registry)
        self._defer(self._repair.close, "repair service")
        self._defer(self._drainer.close, "drain")

    def _start_maintenance(self, replicator: Replicator) -> None:
        """Hinted handoff, block read repair, scrub, tombstone purge (cluster.maintenance)."""
        self._maintenance = Maintenance(
            self.config, self.view, self.store, _need(self._rpc), replicator
        )
        self.registry.register(MaintenanceMetrics(self._maintenance))
        self.repair_status_sources.append(self._maintenance.status)
        self._defer(self._maintenance.stop, "maintenance")

    def _refresh_view(self) -> bool:
        """Rebuild the view from gossip (a dead member's eviction is a matter of time)."""
        if self.view.update(self.gossip.members()):
            ring = self.view.ring
            log.info("ring changed digest=%s peers=%d", ring.digest, len(ring.members))
            return True
        return False

    def _publish_weight(self, weight: float) -> None:
        self.gossip.update_local(weight=weight)
        self._refresh_view()

    def repair_status(self) -> dict[str, Any]:
        """The ``"repair"`` object of ``GET /v1/cluster/status``."""
        doc = self._repair.status() if self._repair is not None else {}
        if self._drainer is not None:
            doc["drain"] = self._drainer.progress()
        for source in self.repair_status_sources:
            doc.update(source())
        return doc

    async def drain(self) -> dict[str, Any]:
        """Start draining this peer (see :mod:`dfspeer.cluster.drain`); its progress."""
        return _need(self._drainer).start()

    def _rpc_status(self) -> dict[str, Any]:
        """Extra fields of ``GET /internal/status`` (other peers compare ring digests)."""
        ring = self.view.ring
        return {
            "ready": self.ready,
            "ring_digest": ring.digest,
            "partitions_held": len(ring.partitions_of(self.peer_id)),
            "version": dfspeer.__version__,
        }

    def _on_member_event(self, event: MemberEvent) -> None:
        member = event.member
        log.info(
            "member %s id=%s state=%s incarnation=%d api=%s",
            event.kind.value,
            member.id,
            member.state.value,
            member.incarnation,
            member.api_address,
        )
        self._refresh_view()
        if self._maintenance is not None:
            self._maintenance.on_member_event(event)

    def _defer(self, close: Callable[[], Awaitable[Any]], what: str) -> None:
        """Unwind ``close`` on stop; a failing step is logged and the others still run."""

        async def step() -> None:
            try:
                await close()
            except Exception:
                log.exception("error while stopping the %s", what)

        self._stack.push_async_callback(step)

    async def _unwind(self) -> None:
        self._running = False
        await self._stack.aclose()

    async def stop(self) -> None:
        """Leave the cluster gracefully, then stop every part in reverse. Idempotent."""
        if not self._running:
            await self._unwind()
            return
        log.info("peer stopping id=%s", self.peer_id)
        await self._unwind()
        log.info("peer stopped id=%s", self.peer_id)

    # ------------------------------------------------------------------ Python API
    async def put_object(
        self,
        bucket: str,
        key: str,
        body: AsyncIterable[bytes] | bytes,
        *,
        expected_sha256: str | None = None,
        content_length: int | None = None,
        content_type: str = "application/octet-stream",
    ) -> ObjectInfo:
        """Store an object (see :meth:`ObjectService.put_object`)."""
        return await self.objects.put_object(
            bucket,
            key,
            body,
            expected_sha256=expected_sha256,
            content_length=content_length,
            content_type=content_type,
        )

    async def get_object(
        self, bucket: str, key: str, *, start: int = 0, end: int | None = None
    ) -> tuple[ObjectInfo, AsyncIterator[bytes]]:
        """Bytes ``[start, end)`` of an object as chunks (see :meth:`ObjectService.get_object`)."""
        return await self.objects.get_object(bucket, key, start=start, end=end)

    async def read_object(
        self, bucket: str, key: str, *, start: int = 0, end: int | None = None
    ) -> bytes:
        """Bytes ``[start, end)`` of an object in memory (for small objects and ranges)."""
        _, chunks = await self.get_object(bucket, key, start=start, end=end)
        return b"".join([chunk async for chunk in chunks])

    async def stat_object(self, bucket: str, key: str) -> ObjectInfo:
        """The current version's metadata. Raises NoSuchKey."""
        return await self.objects.stat_object(bucket, key)

    async def delete_object(self, bucket: str, key: str) -> None:
        """Write a tombstone (idempotent)."""
        await self.objects.delete_object(bucket, key)

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


def _need(part: _T | None) -> _T:
    if part is None:
        raise RuntimeError("the peer is not started")
    return part
