"""One simulated storage peer: the agent's parts, built with simulated collaborators.

:class:`SimPeer` composes the same parts as :class:`dfspeer.peer.Peer` -- block store,
cluster view, gossip, replicator, object service, anti-entropy and rebalance
(:class:`~dfspeer.cluster.repair.RepairService`), hinted handoff, read repair and tombstone
purge (:class:`~dfspeer.cluster.maintenance.Maintenance`), and the object lifecycle with
the block manager -- but gives them the virtual wall clock of :mod:`.clock`, the in-memory
RPC of :mod:`.network`, the simulated durability boundary of :mod:`.disk` and a SWIM core
driven by :mod:`.gossip`. As in ``Peer``, the view is rebuilt from this peer's own core on
every member event (and every second by the repair service), a start builds a new core
at incarnation 0 that joins through the seeds in the background, and a drain publishes
weight 0 and ends with a gossip leave. It serves no HTTP and runs no access control.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import random
import shutil
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import dfspeer
from dfspeer.blockstore import BlockStore
from dfspeer.cluster.blockmanager import BlockManager
from dfspeer.cluster.drain import Drainer
from dfspeer.cluster.handoff import HintStore
from dfspeer.cluster.maintenance import Maintenance
from dfspeer.cluster.repair import RepairService
from dfspeer.cluster.replication import Replicator
from dfspeer.cluster.table import TableRegistry
from dfspeer.cluster.view import ClusterView
from dfspeer.config import PeerConfig
from dfspeer.gossip import Keyring, Member, MemberEvent, MemberState, SwimConfig
from dfspeer.model import LOCAL_TABLES
from dfspeer.model.lifecycle import ObjectLifecycle
from dfspeer.objects import ObjectService
from dfspeer.ring import Partitioner
from dfspeer.sim.clock import PeerTasks, WallClocks, peer_context
from dfspeer.sim.disk import SimDisk
from dfspeer.sim.gossip import SimGossip
from dfspeer.sim.network import Address, SimNetwork, SimRpc

_T = TypeVar("_T")


@dataclass(frozen=True)
class GossipSettings:
    """What every simulated peer's gossip shares: ``config`` (from the ``PeerConfig``, as
    ``swim_config`` builds it), ``keyring``, ``rng`` (the seed's), ``seeds`` (gossip
    addresses joined through at every start) and ``log(event)``."""

    config: SwimConfig
    keyring: Keyring
    rng: random.Random
    seeds: tuple[Address, ...]
    log: Callable[[str], None]


class _Parts:
    """The running parts of one incarnation of a peer (rebuilt on every restart)."""

    def __init__(
        self,
        peer_id: str,
        config: PeerConfig,
        store: BlockStore,
        rpc: SimRpc,
        tables: TableRegistry,
        clock: Callable[[], float],
    ) -> None:
        self.store = store
        self.view = ClusterView(
            peer_id,
            partition_bits=config.partition_bits,
            replication_factor=config.replication_factor,
            dead_member_evict_s=config.dead_member_evict_s,
            clock=clock,
        )
        self.replicator = Replicator(config, self.view, store, rpc, tables=tables)
        self.objects = ObjectService(config, self.view, store, self.replicator, clock=clock)
        self.maintenance = Maintenance(config, self.view, store, rpc, self.replicator, clock=clock)
        self.repair: RepairService | None = None
        self.drainer: Drainer | None = None
        self.gossip: SimGossip | None = None
        blocks = BlockManager(store, grace_s=config.block_gc_grace_s, clock=clock)
        self.lifecycle = ObjectLifecycle(
            config, self.view, store, self.replicator, blocks, clock=clock
        )


class SimPeer:
    """A peer of the simulation (module docstring). Not started until :meth:`start`; a
    crash (:meth:`crash`) keeps its data directory, :meth:`wipe` empties it.

    ``gossip``: shared settings of every peer's gossip -- the SWIM config, the cluster
    keyring, the seed's rng (each core draws its own generator from it), the seed
    addresses to join through, and ``log(event)`` for member events."""

    def __init__(
        self,
        peer_id: str,
        config: PeerConfig,
        *,
        data_dir: Path,
        tables: TableRegistry,
        network: SimNetwork,
        clocks: WallClocks,
        tasks: PeerTasks,
        disk: SimDisk,
        gossip: GossipSettings,
    ) -> None:
        self.peer_id = peer_id
        self.config = config
        self.data_dir = data_dir
        self.tables = tables
        self.network = network
        self.clock = clocks.clock_of(peer_id)
        self.task_registry = tasks
        self.disk = disk
        self.gossip_settings = gossip
        self.left = False
        """Drained and gone for good."""
        self.context: contextvars.Context = peer_context(peer_id)
        self.up = False
        self.parts: _Parts | None = None
        self.address = network.address_of(peer_id)
        self.gossip_address = network.gossip_address_of(peer_id)
        network.endpoints[self.address] = self

    # ------------------------------------------------------------------ parts
    def _need(self) -> _Parts:
        if self.parts is None:
            raise RuntimeError(f"peer {self.peer_id} is not running")
        return self.parts

    @property
    def store(self) -> BlockStore:
        return self._need().store

    @property
    def hints(self) -> HintStore:
        return self._need().maintenance.hints

    @property
    def view(self) -> ClusterView:
        return self._need().view

    @property
    def gossip(self) -> SimGossip:
        gossip = self._need().gossip
        assert gossip is not None
        return gossip

    @property
    def ready(self) -> bool:
        """Up and joined (another member seen ALIVE): what ``Peer.ready`` and ``/ready``
        answer, so what a load balancer sends clients to."""
        return self.up and self.parts is not None and self.gossip.joined

    @property
    def objects(self) -> ObjectService:
        return self._need().objects

    @property
    def repair(self) -> RepairService:
        repair = self._need().repair
        assert repair is not None
        return repair

    @property
    def maintenance(self) -> Maintenance:
        return self._need().maintenance

    @property
    def lifecycle(self) -> ObjectLifecycle:
        return self._need().lifecycle

    def run(self, coro: Coroutine[Any, Any, _T]) -> asyncio.Task[_T]:
        """Run ``coro`` as a task of this peer (a crash cancels it)."""
        return asyncio.get_running_loop().create_task(coro, context=self.context.copy())

    # ------------------------------------------------------------------ life
    async def start(self) -> None:
        """Open the store, start gossip, join, start every background part (in this
        peer's context), in the order of ``Peer.start``."""
        await self.run(self._start())

    async def _start(self) -> None:
        partitioner = Partitioner(self.config.partition_bits)
        store = BlockStore(
            self.data_dir,
            map_size_bytes=self.config.map_size_bytes,
            durable=False,  # the durability boundary is the simulated disk's
            partition_of=partitioner.partition,
            table_hooks=self.tables.hooks(),
            table_partitioners=self.tables.partitioners(partitioner.partition),
            local_tables=LOCAL_TABLES,
            writer_factory=self.disk.writer,
        )
        rpc = SimRpc(self.network, self.peer_id, timeout_s=self.config.request_timeout_s)
        parts = _Parts(self.peer_id, self.config, store, rpc, self.tables, self.clock)
        parts.gossip = self._start_gossip(parts)
        parts.repair = RepairService(
            self.config,
            parts.view,
            store,
            rpc,
            tables=self.tables,
            refresh=self.refresh,
            diff_in_thread=False,  # no threads under the virtual-time loop
        )
        parts.drainer = Drainer(
            parts.repair,
            publish_weight=self._publish_weight,
            leave=self._leave,
        )
        self.parts = parts
        self.up = True
        self.run(parts.gossip.join(self.gossip_settings.seeds))
        await parts.repair.start()
        await parts.maintenance.start()
        self.run(parts.lifecycle.run())

    def _start_gossip(self, parts: _Parts) -> SimGossip:
        """A new core at incarnation 0 (as ``Peer._start_gossip`` builds it), its port
        open, the view built from it."""
        settings = self.gossip_settings
        me = Member(
            id=self.peer_id,
            gossip_address=self.gossip_address,
            api_address=self.address,
            incarnation=0,
            state=MemberState.ALIVE,
            zone=self.config.zone,
            weight=self.config.weight,
            version=dfspeer.__version__,
        )

        def on_event(event: MemberEvent) -> None:
            m = event.member
            settings.log(f"gossip {self.peer_id}: {m.id} {event.kind.value} inc {m.incarnation}")
            self._refresh(parts)
            parts.maintenance.on_member_event(event)

        gossip = SimGossip(
            settings.config,
            me,
            settings.keyring,
            settings.rng,
            network=self.network,
            clock=self.clock,
            context=self.context,
            on_event=on_event,
        )
        gossip.start()
        parts.view.update(gossip.members())
        return gossip

    def refresh(self) -> bool:
        """Rebuild the view from this peer's gossip core; True if the ring changed."""
        return self.parts is not None and self._refresh(self.parts)

    def _refresh(self, parts: _Parts) -> bool:
        if parts.gossip is None:
            return False
        changed = parts.view.update(parts.gossip.members())
        if changed:
            ring = " ".join(parts.view.ring_peers())
            self.gossip_settings.log(f"ring {self.peer_id}: {ring}")
        return changed

    def _publish_weight(self, weight: float) -> None:
        self.gossip.update_local(weight=weight)
        self.refresh()

    async def _leave(self) -> None:
        await self.gossip.leave()
        self.left = True

    @property
    def drainer(self) -> Drainer:
        drainer = self._need().drainer
        assert drainer is not None
        return drainer

    async def crash(self) -> None:
        """Stop at once: the gossip port closes, queued (unacknowledged) writes are lost,
        every task of the peer is cancelled, the committed data stays on disk."""
        self.up = False
        if self.parts is not None and self.parts.gossip is not None:
            self.parts.gossip.stop()
        self.disk.crash()
        await self.task_registry.cancel(self.peer_id)
        if self.parts is not None:
            with contextlib.suppress(Exception):
                await self.parts.store.close()
        self.parts = None

    async def stop(self) -> None:
        """A clean stop: gossip stops (no leave: others see it DEAD), background parts
        end, queued writes are committed, store closed."""
        parts = self.parts
        if parts is None:
            return
        self.up = False
        if parts.gossip is not None:
            parts.gossip.stop()
        if parts.drainer is not None:
            await parts.drainer.close()
        await parts.objects.close()
        await parts.maintenance.stop()
        await parts.replicator.close()
        if parts.repair is not None:
            await parts.repair.close()
        await self.task_registry.cancel(self.peer_id)
        await parts.store.close()
        self.parts = None

    def wipe(self) -> None:
        """Delete the data directory (the peer must be down)."""
        if self.up:
            raise RuntimeError("wipe a peer only while it is down")
        shutil.rmtree(self.data_dir, ignore_errors=True)
