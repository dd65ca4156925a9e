"""One error hierarchy: RPC failures are DfsErrors, and a full block store answers 507.

A full LMDB map is ``StoreFull`` (507 ``store_full``) inside a peer and on ``/internal/``,
``PeerStoreFull`` on the calling side, and 507 ``insufficient_storage`` for a public client
when full stores alone made a quorum write impossible (not 503 ``insufficient_replicas``,
which would send an operator looking for dead peers).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

import dfspeer.cluster
import dfspeer.cluster.rpc
import dfspeer.errors
from dfspeer.api.internal import internal_app
from dfspeer.api.middleware import error_middleware
from dfspeer.blockstore import BlockStore, StoreFull
from dfspeer.cluster.quorum import QuorumOutcome
from dfspeer.cluster.replication import Replicator
from dfspeer.cluster.rpc import PeerRpcClient, PeerStoreFull, PeerUnreachable, RpcError
from dfspeer.config import MiB, PeerConfig
from dfspeer.errors import DfsError, InsufficientReplicas, InsufficientStorage
from dfspeer.gossip import Keyring
from dfspeer.peer import Peer

CHUNK = 64 * 1024
KEY = bytes(range(32))


# ---------------------------------------------------------------------- the hierarchy
def test_rpc_error_is_a_dfs_error_and_peer_unreachable_is_one_class() -> None:
    assert issubclass(RpcError, DfsError)
    assert RpcError is dfspeer.errors.RpcError is dfspeer.cluster.RpcError
    assert PeerUnreachable is dfspeer.errors.PeerUnreachable is dfspeer.cluster.PeerUnreachable
    assert issubclass(PeerUnreachable, RpcError)  # `except RpcError` still catches it
    down = PeerUnreachable("10.0.0.9:7070: ConnectionRefusedError")
    assert (down.status, down.code) == (503, "peer_unreachable")
    answered = RpcError("x: 404 no_such_table: unknown", status=404, code="no_such_table")
    assert (answered.status, answered.code, answered.message) == (
        404,
        "no_such_table",
        "x: 404 no_such_table: unknown",
    )
    assert (RpcError("garbled answer").status, RpcError("garbled answer").code) == (
        502,
        "peer_error",
    )


def test_storage_errors_are_insufficient_storage() -> None:
    assert (InsufficientStorage.status, InsufficientStorage.code) == (507, "insufficient_storage")
    local = StoreFull("block store map is full")
    assert isinstance(local, InsufficientStorage) and (local.status, local.code) == (
        507,
        "store_full",
    )
    body = json.dumps({"error": {"code": "store_full", "message": "map is full"}}).encode()
    remote = PeerRpcClient._error("10.0.0.2:7070", 507, body)
    assert isinstance(remote, PeerStoreFull) and isinstance(remote, InsufficientStorage)
    assert isinstance(remote, RpcError) and (remote.status, remote.code) == (507, "store_full")
    hints = json.dumps({"error": {"code": "hints_full", "message": "too many"}}).encode()
    refused = PeerRpcClient._error("10.0.0.2:7070", 507, hints)
    assert type(refused) is RpcError and not isinstance(refused, InsufficientStorage)


# ---------------------------------------------------------------------- the quorum rule
def _outcome(results: list[str], errors: dict[str, BaseException]) -> QuorumOutcome[None]:
    outcome: QuorumOutcome[None] = QuorumOutcome()
    outcome.results = dict.fromkeys(results)
    outcome.errors = errors
    return outcome


def _full(peer: str) -> BaseException:
    return PeerStoreFull(f"{peer}: 507 store_full: map is full", status=507, code="store_full")


@pytest.mark.parametrize(
    ("results", "errors", "need", "expected"),
    [
        # one peer, its own store full
        ([], {"a": StoreFull("map is full")}, 1, InsufficientStorage),
        # every replica full
        ([], {"a": StoreFull("full"), "b": _full("b"), "c": _full("c")}, 2, InsufficientStorage),
        # two of three full: even if the third had answered, W = 2 was out of reach
        ([], {"a": _full("a"), "b": _full("b"), "c": PeerUnreachable("c")}, 2, InsufficientStorage),
        # one full, one down: reviving the down peer would have made W = 2
        (["a"], {"b": _full("b"), "c": PeerUnreachable("c")}, 2, InsufficientReplicas),
        # nothing full
        ([], {"a": PeerUnreachable("a"), "b": RpcError("b"), "c": PeerUnreachable("c")}, 2,
         InsufficientReplicas),
    ],
)  # fmt: skip
def test_a_quorum_write_lost_to_full_stores_is_insufficient_storage(
    results: list[str], errors: dict[str, BaseException], need: int, expected: type[DfsError]
) -> None:
    replicator = Replicator(PeerConfig(), None, None, None)  # type: ignore[arg-type]
    targets = tuple(sorted({*results, *errors}))
    err = replicator._insufficient("block 00ff", need, _outcome(results, errors), targets)
    assert type(err) is expected
    for peer in errors:
        assert peer in err.message  # every failed replica is named, with its reason


def test_too_few_peers_in_the_ring_stays_insufficient_replicas() -> None:
    replicator = Replicator(PeerConfig(), None, None, None)  # type: ignore[arg-type]
    err = replicator._insufficient("block 00ff", 2, None, ("a",))
    assert type(err) is InsufficientReplicas and err.status == 503


# ---------------------------------------------------------------------- public rendering
async def test_an_rpc_error_is_not_relayed_to_a_public_client() -> None:
    async def handler(request: web.Request) -> web.Response:
        raise RpcError("10.0.0.2:7070: 401 unauthorized: bad signature", status=401,
                       code="unauthorized")  # fmt: skip

    app = web.Application(middlewares=[error_middleware])
    app.router.add_get("/x", handler)
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/x")
        assert resp.status == 500
        assert (await resp.json())["error"]["code"] == "internal_error"


# ---------------------------------------------------------------------- a full remote store
@pytest.fixture
async def tiny_internal(tmp_path: Path) -> AsyncIterator[tuple[str, BlockStore]]:
    store = BlockStore(tmp_path / "s", map_size_bytes=2 * MiB, durable=False)
    app = web.Application()
    app.add_subapp("/internal/", internal_app(store, Keyring([KEY]), self_id="full"))
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    yield f"127.0.0.1:{server.port}", store
    await server.close()
    await store.close()


async def test_a_full_remote_store_raises_peer_store_full(
    tiny_internal: tuple[str, BlockStore],
) -> None:
    address, store = tiny_internal
    rpc = PeerRpcClient(Keyring([KEY]), "writer", timeout_s=10)
    try:
        with pytest.raises(PeerStoreFull) as info:
            for _ in range(100):
                data = os.urandom(128 * 1024)
                await rpc.put_block(address, hashlib.sha256(data).digest(), data)
        assert (info.value.status, info.value.code) == (507, "store_full")
        assert isinstance(info.value, InsufficientStorage)
        assert 0 < store.stats().block_count < 100
    finally:
        await rpc.close()


# ---------------------------------------------------------------------- a full peer, over HTTP
def _config(data_dir: Path) -> PeerConfig:
    return PeerConfig(
        data_dir=data_dir,
        port=0,
        gossip_port=0,
        s3_port=0,
        insecure=True,
        replication_factor=1,
        write_quorum=1,
        read_quorum=1,
        chunk_size_bytes=CHUNK,
        durable=False,
        map_size_bytes=16 * MiB,  # the smallest map PeerConfig allows
        log_level="warning",
    )


async def test_a_full_peer_answers_507_and_shows_nothing_half_written(tmp_path: Path) -> None:
    async with Peer(_config(tmp_path / "p")) as peer, aiohttp.ClientSession() as http:
        await peer.wait_ready(10)
        base = f"{peer.api_url}/v1/objects/bucket"
        stored: dict[str, bytes] = {}
        answer: dict[str, Any] = {}
        failed = ""
        for i in range(200):  # 16 MiB fills after ~30 objects of 512 KiB
            data = os.urandom(8 * CHUNK)
            async with http.put(f"{base}/obj-{i}", data=data) as resp:
                if resp.status == 201:
                    stored[f"obj-{i}"] = data
                    continue
                assert resp.status == 507, await resp.text()
                answer = await resp.json()
                assert resp.headers["X-Request-Id"] == answer["error"]["request_id"]
                failed = f"obj-{i}"
                break
        assert failed, "the store never filled up"
        assert answer["error"]["code"] == "insufficient_storage"
        assert "no space left" in answer["error"]["message"]
        assert stored  # some objects fitted before the map filled
        # nothing of the failed object is visible
        async with http.get(f"{base}/{failed}") as resp:
            assert resp.status == 404
            assert (await resp.json())["error"]["code"] == "no_such_key"
        async with http.head(f"{base}/{failed}") as resp:
            assert resp.status == 404
        async with http.get(base) as resp:
            listed = {o["key"] for o in (await resp.json())["objects"]}
        assert failed not in listed and set(stored) <= listed
        # what was acknowledged reads back whole
        first = next(iter(stored))
        async with http.get(f"{base}/{first}") as resp:
            assert resp.status == 200 and await resp.read() == stored[first]
