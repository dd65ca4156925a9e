"""An in-process cluster for the issue-5 tests: real block stores behind real internal apps
(with the hint routes) on aiohttp test servers, each peer with its own view, RPC client,
replicator, object service and :class:`~dfspeer.cluster.maintenance.Maintenance`."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from aiohttp import web
from aiohttp.test_utils import TestServer

from dfspeer.api.internal import internal_app
from dfspeer.blockstore import BlockStore
from dfspeer.cluster.maintenance import Maintenance
from dfspeer.cluster.replication import Replicator
from dfspeer.cluster.rpc import PeerRpcClient
from dfspeer.cluster.view import ClusterView
from dfspeer.config import PeerConfig
from dfspeer.gossip import Keyring, Member, MemberState
from dfspeer.objects import ObjectService
from dfspeer.ring import Partitioner

CHUNK = 64 * 1024
DEAD = "127.0.0.1:1"  # nothing listens there: connection refused
KEYRING = Keyring([bytes(range(32))])
CONFIG = PeerConfig(
    chunk_size_bytes=CHUNK,
    partition_bits=4,
    request_timeout_s=5.0,
    upload_pipeline_depth=3,
    tombstone_grace_s=3600.0,
).validate()


@dataclasses.dataclass
class Node:
    peer_id: str
    store: BlockStore
    server: TestServer
    view: ClusterView
    rpc: PeerRpcClient
    replicator: Replicator
    service: ObjectService
    maintenance: Maintenance

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.port}"


class Cluster:
    def __init__(self, nodes: list[Node]) -> None:
        self.nodes = nodes
        self.by_id = {n.peer_id: n for n in nodes}

    def members(
        self, down: tuple[str, ...] = (), state: MemberState = MemberState.ALIVE
    ) -> list[Member]:
        return [
            Member(
                n.peer_id,
                ("127.0.0.1", 0),
                DEAD if n.peer_id in down else n.address,
                1,
                state if n.peer_id in down else MemberState.ALIVE,
            )
            for n in self.nodes
        ]

    def set_down(self, *peer_ids: str, state: MemberState = MemberState.ALIVE) -> None:
        """Make ``peer_ids`` unreachable as seen by every node (gossip ``state`` for them)."""
        for n in self.nodes:
            n.view.update(self.members(peer_ids, state))

    def heal(self) -> None:
        self.set_down()

    async def drain(self) -> None:
        for n in self.nodes:
            await n.replicator.drain()
            await n.maintenance.block_repair.drain()

    async def holders(self, digest: bytes) -> set[str]:
        return {n.peer_id for n in self.nodes if await n.store.has(digest)}


def flip_byte(store: BlockStore, digest: bytes, at: int = 0) -> None:
    """Corrupt a stored block in place, straight through the lmdb module."""
    env, db = store._env, store._dbs.blocks
    with env.begin(write=True, db=db) as txn:
        data = bytearray(txn.get(digest))
        data[at % len(data)] ^= 0xFF
        txn.put(digest, bytes(data))


@asynccontextmanager
async def make_cluster(
    tmp_path: Path, size: int = 4, config: PeerConfig = CONFIG
) -> AsyncIterator[Cluster]:
    partitioner = Partitioner(config.partition_bits)
    nodes: list[Node] = []
    for i in range(size):
        peer_id = f"peer-{i}"
        store = BlockStore(
            tmp_path / peer_id,
            map_size_bytes=256 << 20,
            durable=False,
            partition_of=partitioner.partition,
        )
        view = ClusterView(
            peer_id,
            partition_bits=config.partition_bits,
            replication_factor=config.replication_factor,
        )
        rpc = PeerRpcClient(KEYRING, peer_id, timeout_s=config.request_timeout_s)
        replicator = Replicator(config, view, store, rpc)
        maintenance = Maintenance(config, view, store, rpc, replicator)
        app = web.Application()
        app.add_subapp(
            "/internal/", internal_app(store, KEYRING, self_id=peer_id, hints=maintenance.hints)
        )
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        service = ObjectService(config, view, store, replicator)
        nodes.append(Node(peer_id, store, server, view, rpc, replicator, service, maintenance))
    cluster = Cluster(nodes)
    cluster.heal()
    try:
        yield cluster
    finally:
        for n in nodes:
            await n.maintenance.stop()
            await n.replicator.close()
            await n.rpc.close()
            await n.server.close()
            await n.store.close()
