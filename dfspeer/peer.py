"""Peer: the composition root. Builds every part of one storage peer, starts them in order
and stops them in reverse; the only module that knows them all.

Start order: cluster keyring -> peer id (``<data_dir>/peer_id``) -> HTTP listening socket
(bound early, so a taken port fails fast and port 0 is known before gossip advertises it)
-> block store -> cluster view -> gossip agent (bound, not yet joined) -> peer RPC client ->
replicator -> object service -> HTTP server (public API + ``/internal/`` peer RPC) -> S3
server (``s3_port``, :mod:`dfspeer.api.s3`) ->
gossip join. Stop (graceful: SIGTERM to ``dfspeer agent``): new API requests get 503
``not_ready`` with ``Retry-After`` (:mod:`dfspeer.api.shutdown`), the requests in flight
finish (up to
``HTTP_SHUTDOWN_TIMEOUT_S``), then the HTTP server, replicator, RPC client, gossip agent and
block store close. A failure during start unwinds what was started.

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
import ssl
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Coroutine,
    Mapping,
    Sequence,
)
from types import TracebackType
from typing import Any, TypeVar

from aiohttp import web
from prometheus_client import CollectorRegistry

import dfspeer
from dfspeer import tls
from dfspeer.access.audit import AuditLog
from dfspeer.access.cache import cached_lookups
from dfspeer.access.jwt_auth import load_jwt_verifier
from dfspeer.access.keystore import KeyService
from dfspeer.access.limits import LIMITS_KEY
from dfspeer.access.middleware import AccessControl
from dfspeer.access.sealing import SecretSealer
from dfspeer.access.share import ShareLinks
from dfspeer.api.app import build_app
from dfspeer.api.cluster_routes import host_port
from dfspeer.api.console import add_console
from dfspeer.api.internal import internal_app
from dfspeer.api.middleware import AccessLogger
from dfspeer.api.repair_routes import DRAIN_KEY
from dfspeer.api.repair_routes import routes as repair_routes
from dfspeer.api.s3.service import S3Site, s3_site
from dfspeer.api.shutdown import ShutdownGate
from dfspeer.api.uploads import UPLOADS_KEY
from dfspeer.api.uploads import routes as upload_routes
from dfspeer.blockstore import BlockStore, BlockStoreStats
from dfspeer.cluster.blockmanager import BlockManager, GcMetrics
from dfspeer.cluster.drain import Drainer
from dfspeer.cluster.maintenance import Maintenance, MaintenanceMetrics
from dfspeer.cluster.repair import RepairMetrics, RepairService
from dfspeer.cluster.replication import Replicator
from dfspeer.cluster.rpc import PeerRpcClient
from dfspeer.cluster.table import TableRegistry, TableSchema
from dfspeer.cluster.view import ClusterView
from dfspeer.config import PeerConfig, parse_host_port
from dfspeer.errors import MemberAlive, NoSuchMember
from dfspeer.gossip import (
    GossipAgent,
    Keyring,
    Member,
    MemberEvent,
    MemberIsLive,
    MemberState,
    UnknownMember,
)
from dfspeer.gossip.metrics import GossipMetrics
from dfspeer.model import LOCAL_TABLES, default_schemas
from dfspeer.model.lifecycle import ObjectLifecycle
from dfspeer.objects import ListResult, ObjectInfo, ObjectService
from dfspeer.objects.dedup_stats import DedupStats
from dfspeer.objects.sessions import UploadService
from dfspeer.peer_setup import (
    bind_socket,
    load_admin_token,
    load_keyring,
    load_peer_id,
    swim_config,
)
from dfspeer.ring import Partitioner, Ring

log = logging.getLogger("dfspeer.peer")

HTTP_SHUTDOWN_TIMEOUT_S = 20.0  # in-flight requests get this long to finish on stop, s
READY_POLL_S = 0.05
_T = TypeVar("_T")


class Peer:
    """One storage peer: gossip, ring, block store, peer RPC, object service, HTTP API.

    ``registry``: where Prometheus metrics go (a fresh one if omitted; never the global one,
    so several peers can share a process). ``serve_http=False`` runs no HTTP server: the
    Python API still works, but other peers cannot reach this one's blocks, so it suits a
    single-peer embedding. ``tables``: the replicated table schemas (default: the model's,
    :func:`dfspeer.model.default_schemas`; a test may add its own). A Peer starts once; to
    restart, build a new one on the same ``data_dir`` (it keeps its id).
    """

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
        self._tls: ssl.SSLContext | None = None  # HTTPS on the API and S3 ports (dfspeer.tls)
        self._audit: AuditLog | None = None  # dfspeer.access.audit
        self.left = asyncio.Event()  # set once a drain finished and the peer left the cluster
        self.gate = ShutdownGate()
        """Refuses new API requests (503) once the peer is stopping; counts those in flight."""
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
    def uploads(self) -> UploadService:
        """Resumable upload sessions (:mod:`dfspeer.objects.sessions`)."""
        return _need(self._uploads)

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
        admin_token = load_admin_token(config)
        jwt_verifier = load_jwt_verifier(config)
        self._tls = tls.serving(config)  # certificate and key checked before anything starts
        rpc_tls = tls.rpc_context(config)
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.peer_id = load_peer_id(config.data_dir, config.peer_id)
        self._audit = AuditLog.from_config(config)
        if self._audit is not None:
            self._defer(self._audit.aclose, "audit log")
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
            commit_linger_s=config.commit_linger_ms / 1000,
            partition_of=partitioner.partition,
            table_hooks=self.tables.hooks(),
            table_partitioners=self.tables.partitioners(partitioner.partition),
            local_tables=LOCAL_TABLES,
        )
        self._defer(self._store.close, "block store")
        self._view = ClusterView(
            self.peer_id,
            partition_bits=config.partition_bits,
            replication_factor=config.replication_factor,
            dead_member_evict_s=config.dead_member_evict_s,
        )
        await self._start_gossip()
        self._rpc = PeerRpcClient(
            self.keyring,
            self.peer_id,
            timeout_s=config.request_timeout_s,
            registry=self.registry,
            tls=rpc_tls,
        )
        self._defer(self._rpc.close, "peer rpc client")
        replicator = Replicator(config, self._view, self._store, self._rpc, tables=self.tables)
        self._defer(replicator.close, "replicator")
        self._objects = ObjectService(config, self._view, self._store, replicator)
        self._dedup_stats = DedupStats(self._store, self._objects.dedup)
        self.registry.register(self._dedup_stats)
        self._defer(self._objects.close, "object service")
        self._uploads = UploadService(config, self._objects)
        # quorum reads of keys and buckets, or reused for the auth cache's TTL (access.cache);
        # a bucket written through this peer drops its cached entry (BucketService.on_change)
        key_records, bucket_lookup = cached_lookups(
            replicator,
            self._objects.buckets,
            config.effective_auth_cache_ttl_s,
            bucket_listeners=self._objects.buckets.on_change,
        )
        keys = KeyService(
            key_records,
            self._objects.clock,
            self.peer_id,
            SecretSealer(self.keyring),
            admin_token=admin_token,
            jwt=jwt_verifier,
        )
        self._access = AccessControl(
            keys,
            bucket_lookup,
            enforce=not config.insecure,
            metrics_public=config.metrics_public,
            upload_bucket=self._upload_bucket,
            links=ShareLinks(keys, self.keyring, admin_token=admin_token),
        )
        if jwt_verifier is not None and jwt_verifier.source is not None:
            await jwt_verifier.source.warm_up()  # a failure is logged; JWTs get 401 until then
        self._start_repair()
        self._start_maintenance(replicator)
        self._start_lifecycle(replicator)
        if sock is not None:
            await self._start_http(sock)
            await self._start_s3()
        seeds = [parse_host_port(s, what="join") for s in config.join]
        await self.gossip.join(seeds)
        await _need(self._repair).start()
        await _need(self._maintenance).start()
        self._start_task(_need(self._lifecycle).run(), "dfspeer-gc")

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
                tables=self.tables,
                status=self._rpc_status,
                max_block_bytes=self.config.max_block_bytes,
                hints=_need(self._maintenance).hints,
            ),
            gate=self.gate,
            access=self._access,
            audit=self._audit,
        )
        app[DRAIN_KEY] = _need(self._drainer)
        app[UPLOADS_KEY] = _need(self._uploads)
        app.add_routes(upload_routes)
        app.add_routes(repair_routes)
        # the web console at /ui/ (it reads other peers' figures with the peer RPC)
        add_console(app, _need(self.keyring), peer_status=_need(self._rpc).status)
        self._runner = web.AppRunner(
            app,
            handle_signals=False,
            access_log_class=AccessLogger,
            access_log=logging.getLogger("dfspeer.api.access"),
            shutdown_timeout=HTTP_SHUTDOWN_TIMEOUT_S,
        )
        await self._runner.setup()
        self._defer(self._runner.cleanup, "http server")
        await web.SockSite(self._runner, sock, ssl_context=self._tls).start()

    async def _upload_bucket(self, upload_id: str) -> str:
        """The bucket of upload session ``upload_id`` (for the access checks)."""
        return (await _need(self._uploads).get(upload_id)).bucket

    async def _start_s3(self) -> None:
        """The S3 API on its own port (:mod:`dfspeer.api.s3`); none when ``s3_port`` is 0.
        It shares the native port's rate limits and in-flight cap (one budget a principal)."""
        if not self.config.s3_port:
            return
        limits = self._runner.app.get(LIMITS_KEY) if self._runner is not None else None
        site = s3_site(
            self.config,
            self.objects,
            self.uploads,
            _need(self.keyring),
            gate=self.gate,
            limits=limits,
            audit=self._audit,
        )
        await site.start(
            self.config.host,
            self.config.s3_port,
            shutdown_timeout_s=HTTP_SHUTDOWN_TIMEOUT_S,
            ssl_context=self._tls,
        )
        self._s3 = site
        self._defer(site.close, "s3 server")

    def _start_repair(self) -> None:
        """Anti-entropy + partition handoff (every peer) and the drain control."""
        self._repair = RepairService(
            self.config,
            self.view,
            self.store,
            _need(self._rpc),
            tables=self.tables,
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

    def _start_lifecycle(self, replicator: Replicator) -> None:
        """Reference release, upload expiry, sweep and block collection (model.lifecycle)."""
        blocks = BlockManager(self.store, grace_s=self.config.block_gc_grace_s)
        self._lifecycle = ObjectLifecycle(
            self.config,
            self.view,
            self.store,
            replicator,
            blocks,
            extra_passes=[_need(self._uploads).expire_once],
        )
        self.registry.register(GcMetrics(self.gc_status))

    def _start_task(self, coro: Coroutine[Any, Any, None], name: str) -> None:
        """Run ``coro`` until the peer stops (cancelled on stop)."""
        task = asyncio.create_task(coro, name=name)

        async def cancel() -> None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

        self._defer(cancel, name)

    async def dedup_status(self) -> dict[str, Any]:
        """The ``"dedup"`` object of ``GET /v1/cluster/status`` (stored and sent savings,
        :mod:`dfspeer.objects.dedup_stats`)."""
        return await self._dedup_stats.status_async() if self._dedup_stats else {}

    def gc_status(self) -> dict[str, Any]:
        """The ``"gc"`` object of ``GET /v1/cluster/status`` (see
        :meth:`dfspeer.model.lifecycle.ObjectLifecycle.status`)."""
        return self._lifecycle.status() if self._lifecycle is not None else {}

    async def gc_pass(self) -> dict[str, int]:
        """Run one garbage-collection pass now; what it did."""
        return await _need(self._lifecycle).run_pass()

    async def recount_block_refs(self) -> dict[str, int]:
        """Rebuild this peer's reference counts from its ``block_refs`` table."""
        return await _need(self._lifecycle).recount()

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

    def remove_member(self, peer_id: str) -> Member:
        """Forget a DEAD member for good (``dfspeer members remove``): it becomes LEFT
        here and the removal is gossiped to every peer, each of which drops it from its
        ring at once (not after ``dead_member_evict_s``), so its partitions are
        re-replicated now. Returns the member (state ``left``); removing a LEFT member
        again is harmless. Raises :class:`NoSuchMember` (404) for an unknown id and
        :class:`MemberAlive` (409) for an alive or suspect member or this peer."""
        try:
            removed = self.gossip.remove_member(peer_id)
        except UnknownMember:
            raise NoSuchMember(f"no member {peer_id!r} in this peer's view") from None
        except MemberIsLive as exc:
            raise MemberAlive(
                f"member {peer_id!r} is not dead ({exc}); only a dead member can be removed"
            ) from None
        self._refresh_view()
        log.info("member removed id=%s incarnation=%d", removed.id, removed.incarnation)
        return removed

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
        """Stop gracefully, then stop every part in reverse. Idempotent.

        New API requests are refused with 503 ``not_ready`` (``Retry-After: 1``) and
        ``/ready`` answers 503 from the start; the requests already in flight run to
        completion, for at most ``HTTP_SHUTDOWN_TIMEOUT_S`` seconds; then everything
        closes (the HTTP server last of the API parts, so peer RPCs in flight finish too).

        Stopping is not leaving: the peer does not gossip a leave, so the others see it
        DEAD and keep it in their rings for ``dead_member_evict_s`` (writes meanwhile go to
        stand-ins with hints, delivered when it is back), as a restart or an upgrade wants.
        To take a peer out for good, drain it (:meth:`drain`, which leaves at the end) or
        remove it once stopped (``dfspeer members remove``). Moving its partitions away on
        every restart would make two restarts in a row lose quorum for the writes that
        landed in between."""
        if not self._running:
            await self._unwind()
            return
        log.info("peer stopping id=%s in_flight=%d", self.peer_id, self.gate.in_flight)
        self.gate.close()
        if not await self.gate.wait_idle(HTTP_SHUTDOWN_TIMEOUT_S):
            log.warning(
                "peer stopping id=%s: %d request(s) still in flight after %.0f s",
                self.peer_id,
                self.gate.in_flight,
                HTTP_SHUTDOWN_TIMEOUT_S,
            )
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


def _need(part: _T | None) -> _T:
    if part is None:
        raise RuntimeError("the peer is not started")
    return part
