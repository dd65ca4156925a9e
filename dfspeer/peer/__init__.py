"""Peer: the composition root. Builds every part of one storage peer, starts them in order
and stops them in reverse; the only package that knows them all.

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

The package: :mod:`~dfspeer.peer.base` (settings, part slots and accessors, readiness),
:mod:`~dfspeer.peer.stack` (stop steps in reverse, background tasks),
:mod:`~dfspeer.peer.serving` (the HTTP and S3 servers), :mod:`~dfspeer.peer.cluster`
(membership, drain, GC, status reports) and :mod:`~dfspeer.peer.objects` (the Python object
API); the start order lives here. Setup steps that need no running part are in
:mod:`dfspeer.peer_setup`.
"""

from __future__ import annotations

import logging
import socket
import ssl
from types import TracebackType
from typing import TYPE_CHECKING

import dfspeer
from dfspeer import tls
from dfspeer.access.audit import AuditLog
from dfspeer.access.cache import cached_lookups
from dfspeer.access.keystore import KeyService
from dfspeer.access.middleware import AccessControl
from dfspeer.access.sealing import SecretSealer
from dfspeer.access.share import ShareLinks
from dfspeer.api.cluster_routes import host_port
from dfspeer.blockstore import BlockStore
from dfspeer.cluster.blockmanager import BlockManager, GcMetrics
from dfspeer.cluster.drain import Drainer
from dfspeer.cluster.maintenance import Maintenance, MaintenanceMetrics
from dfspeer.cluster.repair import RepairMetrics, RepairService
from dfspeer.cluster.replication import Replicator
from dfspeer.cluster.rpc import PeerRpcClient
from dfspeer.cluster.view import ClusterView
from dfspeer.config import parse_host_port
from dfspeer.gossip import GossipAgent, Member, MemberState
from dfspeer.gossip.metrics import GossipMetrics
from dfspeer.model import LOCAL_TABLES
from dfspeer.model.lifecycle import ObjectLifecycle
from dfspeer.objects import ObjectService
from dfspeer.objects.dedup_stats import DedupStats
from dfspeer.objects.sessions import UploadService
from dfspeer.peer.base import HTTP_SHUTDOWN_TIMEOUT_S as HTTP_SHUTDOWN_TIMEOUT_S
from dfspeer.peer.base import READY_POLL_S as READY_POLL_S
from dfspeer.peer.base import need
from dfspeer.peer.cluster import ClusterMixin
from dfspeer.peer.objects import ObjectsMixin
from dfspeer.peer.serving import ServingMixin
from dfspeer.peer_setup import (
    bind_socket,
    load_admin_token,
    load_keyring,
    load_peer_id,
    swim_config,
)
from dfspeer.ring import Partitioner

if TYPE_CHECKING:  # PyJWT loads only when a JWT key source is set (PeerConfig.accepts_jwt)
    from dfspeer.access.jwt_auth import JwtVerifier

log = logging.getLogger("dfspeer.peer")


class Peer(ObjectsMixin, ClusterMixin, ServingMixin):
    """One storage peer: gossip, ring, block store, peer RPC, object service, HTTP API.

    ``registry``: where Prometheus metrics go (a fresh one if omitted; never the global one,
    so several peers can share a process). ``serve_http=False`` runs no HTTP server: the
    Python API still works, but other peers cannot reach this one's blocks, so it suits a
    single-peer embedding. ``tables``: the replicated table schemas (default: the model's,
    :func:`dfspeer.model.default_schemas`; a test may add its own). A Peer starts once; to
    restart, build a new one on the same ``data_dir`` (it keeps its id).
    """

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
        jwt_verifier: JwtVerifier | None = None
        if config.accepts_jwt:  # PyJWT and cryptography load only for a JWT key source
            from dfspeer.access.jwt_auth import load_jwt_verifier

            jwt_verifier = load_jwt_verifier(config)
        self._tls = tls.serving(config)  # certificate and key checked before anything starts
        rpc_tls = tls.rpc_context(config)
        config.data_dir.mkdir(parents=True, exist_ok=True)
        self.peer_id = load_peer_id(config.data_dir, config.peer_id)
        self._audit = AuditLog.from_config(config)
        if self._audit is not None:
            self._stack.defer(self._audit.aclose, "audit log")
        sock: socket.socket | None = None
        if self.serve_http:
            sock = bind_socket(config.host, config.port)
            self._stack.callback(sock.close)
            self.api_address = host_port(config.advertised_host, sock.getsockname()[1])
        replicator = await self._start_data_path(rpc_tls)
        await self._start_access(replicator, admin_token, jwt_verifier)
        self._start_repair()
        self._start_maintenance(replicator)
        self._start_lifecycle(replicator)
        if sock is not None:
            await self._start_http(sock)
            await self._start_s3()
        seeds = [parse_host_port(s, what="join") for s in config.join]
        await self.gossip.join(seeds)
        await need(self._repair).start()
        await need(self._maintenance).start()
        self._stack.start_task(need(self._lifecycle).run(), "dfspeer-gc")

    async def _start_data_path(self, rpc_tls: ssl.SSLContext | None) -> Replicator:
        """Block store -> cluster view -> gossip agent (bound, not yet joined) -> peer RPC
        client -> replicator -> object service and upload sessions; the replicator."""
        config = self.config
        partitioner = Partitioner(config.partition_bits)
        self._store = BlockStore(
            config.data_dir / "blocks",
            map_size_bytes=config.map_size_bytes,
            durable=config.durable,
            commit_linger_s=config.commit_linger_ms / 1000,
            drop_written=config.drop_written_blocks,
            recent_writes_cache_bytes=config.recent_writes_cache_bytes,
            partition_of=partitioner.partition,
            table_hooks=self.tables.hooks(),
            table_partitioners=self.tables.partitioners(partitioner.partition),
            local_tables=LOCAL_TABLES,
        )
        self._stack.defer(self._store.close, "block store")
        self._view = ClusterView(
            self.peer_id,
            partition_bits=config.partition_bits,
            replication_factor=config.replication_factor,
            dead_member_evict_s=config.dead_member_evict_s,
        )
        await self._start_gossip()
        self._rpc = PeerRpcClient(
            need(self.keyring),
            self.peer_id,
            timeout_s=config.request_timeout_s,
            registry=self.registry,
            tls=rpc_tls,
            channel=config.peer_channel,
        )
        self._stack.defer(self._rpc.close, "peer rpc client")
        replicator = Replicator(config, self._view, self._store, self._rpc, tables=self.tables)
        self._stack.defer(replicator.close, "replicator")
        self._objects = ObjectService(config, self._view, self._store, replicator)
        self._dedup_stats = DedupStats(self._store, self._objects.dedup)
        self.registry.register(self._dedup_stats)
        self._stack.defer(self._objects.close, "object service")
        self._uploads = UploadService(config, self._objects)
        return replicator

    async def _start_access(
        self,
        replicator: Replicator,
        admin_token: str | None,
        jwt_verifier: JwtVerifier | None,
    ) -> None:
        """Access control of the API (keys, bucket permissions, share links, JWTs)."""
        config = self.config
        keyring = need(self.keyring)
        # quorum reads of keys and buckets, or reused for the auth cache's TTL (access.cache);
        # a bucket written through this peer drops its cached entry (BucketService.on_change).
        # The S3 port reads through the same two (_start_s3), so both ports refuse a
        # disabled key at the same time.
        key_records, bucket_lookup = cached_lookups(
            replicator,
            self.objects.buckets,
            config.effective_auth_cache_ttl_s,
            bucket_listeners=self.objects.buckets.on_change,
        )
        self._key_records, self._bucket_lookup = key_records, bucket_lookup
        keys = KeyService(
            key_records,
            self.objects.clock,
            self.peer_id,
            SecretSealer(keyring),
            admin_token=admin_token,
            jwt=jwt_verifier,
        )
        self._access = AccessControl(
            keys,
            bucket_lookup,
            enforce=not config.insecure,
            metrics_public=config.metrics_public,
            upload_bucket=self._upload_bucket,
            links=ShareLinks(keys, keyring, admin_token=admin_token),
        )
        if jwt_verifier is not None and jwt_verifier.source is not None:
            await jwt_verifier.source.warm_up()  # a failure is logged; JWTs get 401 until then

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
            swim_config(config), me, need(self.keyring), bind_host=config.host
        )
        self._gossip.subscribe(self._on_member_event)
        await self._gossip.start()
        self._stack.defer(self._gossip.stop, "gossip agent")
        self.view.update(self._gossip.members())
        GossipMetrics(self._gossip).register(self.registry)

    def _start_repair(self) -> None:
        """Anti-entropy + partition handoff (every peer) and the drain control."""
        self._repair = RepairService(
            self.config,
            self.view,
            self.store,
            need(self._rpc),
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
        self._stack.defer(self._repair.close, "repair service")
        self._stack.defer(self._drainer.close, "drain")

    def _start_maintenance(self, replicator: Replicator) -> None:
        """Hinted handoff, block read repair, scrub, tombstone purge (cluster.maintenance)."""
        self._maintenance = Maintenance(
            self.config, self.view, self.store, need(self._rpc), replicator
        )
        self.registry.register(MaintenanceMetrics(self._maintenance))
        self.repair_status_sources.append(self._maintenance.status)
        self._stack.defer(self._maintenance.stop, "maintenance")

    def _start_lifecycle(self, replicator: Replicator) -> None:
        """Reference release, upload expiry, sweep and block collection (model.lifecycle)."""
        blocks = BlockManager(self.store, grace_s=self.config.block_gc_grace_s)
        self._lifecycle = ObjectLifecycle(
            self.config,
            self.view,
            self.store,
            replicator,
            blocks,
            extra_passes=[need(self._uploads).expire_once],
        )
        self.registry.register(GcMetrics(self.gc_status))

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
