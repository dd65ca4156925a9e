"""A shared in-process cluster for the unit tests: real block stores behind real internal apps
on aiohttp test servers, each peer with its own view and RPC client, plus (chosen by the
builder's arguments) a replicator and object service, a
:class:`~dfspeer.cluster.maintenance.Maintenance` (with the hint routes) and/or a
:class:`~dfspeer.cluster.repair.RepairService`."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TypeVar

from aiohttp import web
from aiohttp.test_utils import TestServer

from dfspeer.api.internal import internal_app
from dfspeer.blockstore import BlockStore
from dfspeer.cluster.antientropy import AntiEntropy
from dfspeer.cluster.blockmanager import BlockManager
from dfspeer.cluster.maintenance import Maintenance
from dfspeer.cluster.repair import RepairService
from dfspeer.cluster.replication import Replicator
from dfspeer.cluster.rpc import PeerRpcClient
from dfspeer.cluster.table import TableRegistry
from dfspeer.cluster.view import ClusterView
from dfspeer.config import PeerConfig
from dfspeer.gossip import Keyring, Member, MemberState
from dfspeer.model import LOCAL_TABLES
from dfspeer.model.lifecycle import ObjectLifecycle
from dfspeer.objects import ObjectService
from dfspeer.ring import Partitioner
from tests.unit.lww_table import test_tables

CHUNK = 64 * 1024
DEAD = "127.0.0.1:1"  # nothing listens there: connection refused
KEYRING = Keyring([bytes(range(32))])
CONFIG = PeerConfig(
    chunk_size_bytes=CHUNK,
    default_chunking="fixed",  # these tests count fixed-size chunks
    partition_bits=4,
    request_timeout_s=5.0,
    upload_pipeline_depth=3,
    tombstone_grace_s=3600.0,
).validate()


TABLES = test_tables()
"""The model's tables plus the test-only LWW table (``tests.unit.lww_table``)."""
T = TypeVar("T")


def _required(value: T | None, what: str) -> T:
    if value is None:
        raise AttributeError(f"this cluster was built without a {what}")
    return value


@dataclasses.dataclass
class Node:
    peer_id: str
    store: BlockStore
    server: TestServer
    view: ClusterView
    rpc: PeerRpcClient
    replicator_: Replicator | None = None
    service_: ObjectService | None = None
    maintenance_: Maintenance | None = None
    repair_: RepairService | None = None
    lifecycle_: ObjectLifecycle | None = None

    @property
    def lifecycle(self) -> ObjectLifecycle:
        """Release, expire, sweep and collect (with the config's ``block_gc_grace_s``);
        present whenever the node has an object service. Run with ``run_pass()``."""
        return _required(self.lifecycle_, "object lifecycle")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.port}"

    @property
    def replicator(self) -> Replicator:
        return _required(self.replicator_, "replicator")

    @property
    def service(self) -> ObjectService:
        return _required(self.service_, "object service")

    @property
    def maintenance(self) -> Maintenance:
        return _required(self.maintenance_, "maintenance")

    @property
    def repair(self) -> RepairService:
        return _required(self.repair_, "repair service")

    @property
    def ae(self) -> AntiEntropy:
        return self.repair.ae

    async def close(self) -> None:
        if self.service_ is not None:
            await self.service_.close()
        if self.maintenance_ is not None:
            await self.maintenance_.stop()
        if self.replicator_ is not None:
            await self.replicator_.close()
        if self.repair_ is not None:
            await self.repair_.close()
        await self.rpc.close()
        await self.server.close()
        await self.store.close()


class Cluster:
    def __init__(self, nodes: list[Node]) -> None:
        self.nodes = nodes
        self.by_id = {n.peer_id: n for n in nodes}

    def members(
        self,
        down: tuple[str, ...] = (),
        state: MemberState = MemberState.ALIVE,
        *,
        ids: Iterable[str] | None = None,
    ) -> list[Member]:
        """Members ``ids`` (default every node); ``down`` ones unreachable, in gossip ``state``."""
        return [
            Member(
                p,
                ("127.0.0.1", 0),
                DEAD if p in down else self.by_id[p].address,
                1,
                state if p in down else MemberState.ALIVE,
            )
            for p in (self.by_id if ids is None else ids)
        ]

    def set_down(
        self,
        *peer_ids: str,
        state: MemberState = MemberState.ALIVE,
        on: tuple[int, ...] | None = None,
    ) -> None:
        """Make ``peer_ids`` unreachable (gossip ``state`` for them) as seen by nodes ``on``
        (indexes; default every node)."""
        for i in range(len(self.nodes)) if on is None else on:
            self.nodes[i].view.update(self.members(peer_ids, state))

    def heal(self) -> None:
        self.set_down()

    def set_view(self, members: list[str], down: tuple[str, ...] = ()) -> None:
        """Every node's view: ``members`` (ids) ALIVE, ``down`` ones unreachable."""
        listed = self.members(down, ids=members)
        for n in self.nodes:
            n.view.update(listed)

    async def drain(self) -> None:
        """Wait for straggler writes, read repairs and background aborts on every node."""
        for n in self.nodes:
            if n.service_ is not None:
                await n.service_.drain()
            await n.replicator.drain()
            if n.maintenance_ is not None:
                await n.maintenance_.block_repair.drain()

    async def holders(self, digest: bytes) -> set[str]:
        return {n.peer_id for n in self.nodes if await n.store.has(digest)}

    async def close(self) -> None:
        for n in self.nodes:
            await n.close()


def flip_byte(store: BlockStore, digest: bytes, at: int = 0) -> None:
    """Corrupt a stored block in place, straight through the lmdb module."""
    env, db = store._env, store._dbs.blocks
    with env.begin(write=True, db=db) as txn:
        data = bytearray(txn.get(digest))
        data[at % len(data)] ^= 0xFF
        txn.put(digest, bytes(data))


async def start_cluster(
    tmp_path: Path,
    size: int,
    config: PeerConfig,
    *,
    objects: bool = False,
    maintenance: bool = False,
    repair_tables: TableRegistry | None = None,
) -> Cluster:
    """Start ``size`` peers; ``objects`` adds a replicator and object service, ``maintenance``
    adds those plus a Maintenance (and the hint routes), ``repair_tables`` a RepairService
    syncing those tables.
    Every view lists every peer ALIVE. Close with :meth:`Cluster.close`."""
    partitioner = Partitioner(config.partition_bits)
    nodes: list[Node] = []
    try:
        for i in range(size):
            peer_id = f"peer-{i}"
            store = BlockStore(
                tmp_path / peer_id,
                map_size_bytes=256 << 20,
                durable=False,
                partition_of=partitioner.partition,
                table_hooks=TABLES.hooks(),
                table_partitioners=TABLES.partitioners(partitioner.partition),
                local_tables=LOCAL_TABLES,
            )
            view = ClusterView(
                peer_id,
                partition_bits=config.partition_bits,
                replication_factor=config.replication_factor,
            )
            rpc = PeerRpcClient(KEYRING, peer_id, timeout_s=config.request_timeout_s)
            replicator: Replicator | None = None
            service: ObjectService | None = None
            maint: Maintenance | None = None
            repair: RepairService | None = None
            lifecycle: ObjectLifecycle | None = None
            if objects or maintenance:
                replicator = Replicator(config, view, store, rpc, tables=TABLES)
                if maintenance:
                    maint = Maintenance(config, view, store, rpc, replicator)
                service = ObjectService(config, view, store, replicator)
                blocks = BlockManager(store, grace_s=config.block_gc_grace_s)
                lifecycle = ObjectLifecycle(config, view, store, replicator, blocks)
            if repair_tables is not None:
                repair = RepairService(config, view, store, rpc, tables=repair_tables)
            app = web.Application()
            hints = maint.hints if maint is not None else None
            internal = internal_app(store, KEYRING, self_id=peer_id, tables=TABLES, hints=hints)
            app.add_subapp("/internal/", internal)
            server = TestServer(app, host="127.0.0.1")
            node = Node(
                peer_id, store, server, view, rpc, replicator, service, maint, repair, lifecycle
            )
            nodes.append(node)
            await node.server.start_server()
    except BaseException:
        await Cluster(nodes).close()
        raise
    cluster = Cluster(nodes)
    cluster.heal()
    return cluster


@asynccontextmanager
async def make_cluster(
    tmp_path: Path,
    size: int = 4,
    config: PeerConfig = CONFIG,
    *,
    objects: bool = False,
    maintenance: bool = True,
    repair_tables: TableRegistry | None = None,
) -> AsyncIterator[Cluster]:
    """:func:`start_cluster` as a context manager (by default with Maintenance, for the
    repair tests), closing every peer on exit."""
    cluster = await start_cluster(
        tmp_path,
        size,
        config,
        objects=objects,
        maintenance=maintenance,
        repair_tables=repair_tables,
    )
    try:
        yield cluster
    finally:
        await cluster.close()
