"""Peer RPC signatures: sign/verify, expiry, tampering, key rotation; 401 touches nothing."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer

from dfspeer.api.internal import internal_app
from dfspeer.blockstore import BlockStore
from dfspeer.cluster.auth import (
    EMPTY_SHA256,
    HEADER_BODY_SHA256,
    HEADER_DATE,
    HEADER_SIGNATURE,
    RpcAuth,
)
from dfspeer.cluster.rpc import PeerRpcClient, RpcError
from dfspeer.errors import Unauthorized
from dfspeer.gossip import Keyring
from tests.unit.lww_table import TEST_TABLE, test_tables

K1, K2 = bytes(range(32)), bytes(range(1, 33))


class Clock:
    def __init__(self) -> None:
        self.t = 1_700_000_000.0

    def __call__(self) -> float:
        return self.t


def test_sign_and_verify() -> None:
    clock = Clock()
    a = RpcAuth(Keyring([K1]), "peer-a", clock=clock)
    headers = a.sign_request("PUT", "/internal/blocks/ab?x=1", "cd" * 32)
    assert a.verify_request("PUT", "/internal/blocks/ab?x=1", headers) == "peer-a"


@pytest.mark.parametrize(
    ("method", "path", "change"),
    [
        ("GET", "/internal/blocks/ab?x=1", {}),  # other method
        ("PUT", "/internal/blocks/ab?x=2", {}),  # other query
        ("PUT", "/internal/blocks/ab?x=1", {HEADER_BODY_SHA256: "ee" * 32}),  # other body
        ("PUT", "/internal/blocks/ab?x=1", {HEADER_SIGNATURE: "00" * 32}),
        ("PUT", "/internal/blocks/ab?x=1", {HEADER_SIGNATURE: ""}),
        ("PUT", "/internal/blocks/ab?x=1", {HEADER_DATE: "soon"}),
    ],
)
def test_tampered_requests_fail(method: str, path: str, change: dict[str, str]) -> None:
    auth = RpcAuth(Keyring([K1]), "peer-a", clock=Clock())
    headers = auth.sign_request("PUT", "/internal/blocks/ab?x=1", "cd" * 32)
    headers.update(change)
    with pytest.raises(Unauthorized):
        auth.verify_request(method, path, headers)


def test_expired_and_future_dates_fail() -> None:
    clock = Clock()
    auth = RpcAuth(Keyring([K1]), "p", clock=clock)
    headers = auth.sign_request("GET", "/internal/status")
    clock.t += 301
    with pytest.raises(Unauthorized):
        auth.verify_request("GET", "/internal/status", headers)
    clock.t -= 602
    with pytest.raises(Unauthorized):
        auth.verify_request("GET", "/internal/status", headers)
    clock.t += 301 + 299
    assert auth.verify_request("GET", "/internal/status", headers) == "p"


def test_key_rotation_and_wrong_key() -> None:
    old = RpcAuth(Keyring([K1]), "old", clock=Clock())
    rotated = RpcAuth(Keyring([K2, K1]), "new", clock=Clock())
    stranger = RpcAuth(Keyring([K2]), "x", clock=Clock())
    headers = old.sign_request("GET", "/internal/status")
    assert rotated.verify_request("GET", "/internal/status", headers) == "old"
    with pytest.raises(Unauthorized):
        stranger.verify_request("GET", "/internal/status", headers)


@pytest.fixture
async def server(tmp_path: Path) -> AsyncIterator[tuple[TestServer, BlockStore]]:
    store = BlockStore(tmp_path / "s", map_size_bytes=64 << 20, durable=False)
    app = web.Application()
    app.add_subapp(
        "/internal/", internal_app(store, Keyring([K1]), self_id="srv", tables=test_tables())
    )
    srv = TestServer(app, host="127.0.0.1")
    await srv.start_server()
    yield srv, store
    await srv.close()
    await store.close()


async def test_unsigned_or_forged_requests_get_401_and_touch_nothing(
    server: tuple[TestServer, BlockStore],
) -> None:
    srv, store = server
    data = b"hello block"
    digest = hashlib.sha256(data).digest()
    path = f"/internal/blocks/{digest.hex()}"
    forged = RpcAuth(Keyring([K2]), "evil").sign_request("PUT", path, digest.hex())
    async with ClientSession() as http:
        for headers in ({}, forged):
            async with http.put(srv.make_url(path), data=data, headers=headers) as resp:
                assert resp.status == 401
                body = await resp.json()
                assert body["error"]["code"] == "unauthorized"
        async with http.get(srv.make_url("/internal/status")) as resp:
            assert resp.status == 401
    assert not await store.has(digest)

    # the real key works, through the client
    rpc = PeerRpcClient(Keyring([K1]), "peer", timeout_s=5)
    address = f"127.0.0.1:{srv.port}"
    await rpc.put_block(address, digest, data)
    assert await store.has(digest)
    assert await rpc.get_block(address, digest) == data
    assert (await rpc.status(address))["id"] == "srv"
    # a peer with the wrong key is refused, and says so
    evil = PeerRpcClient(Keyring([K2]), "evil", timeout_s=5)
    with pytest.raises(RpcError) as info:
        await evil.get_block(address, digest)
    assert info.value.status == 401
    await rpc.close()
    await evil.close()


async def test_block_body_must_match_digest(server: tuple[TestServer, BlockStore]) -> None:
    srv, store = server
    digest = hashlib.sha256(b"right").digest()
    rpc = PeerRpcClient(Keyring([K1]), "peer", timeout_s=5)
    with pytest.raises(RpcError) as info:
        await rpc.put_block(f"127.0.0.1:{srv.port}", digest, b"wrong")
    assert info.value.status == 400
    assert not await store.has(digest)
    assert hashlib.sha256(b"").hexdigest() == EMPTY_SHA256
    await rpc.close()


async def test_record_routes(server: tuple[TestServer, BlockStore]) -> None:
    srv, _ = server
    rpc = PeerRpcClient(Keyring([K1]), "peer", timeout_s=5)
    address = f"127.0.0.1:{srv.port}"
    assert await rpc.get_record(address, TEST_TABLE, b"b/k") is None
    await rpc.put_record(address, TEST_TABLE, b"b/k", {"version": "2", "v": "new"})
    await rpc.put_record(address, TEST_TABLE, b"b/k", {"version": "1", "v": "old"})  # loses
    assert (await rpc.get_record(address, TEST_TABLE, b"b/k"))["v"] == "new"
    await rpc.put_record(address, TEST_TABLE, b"b/l", {"version": "1", "big": "x" * 100})
    rows = await rpc.scan_records(
        address, TEST_TABLE, prefix=b"b/", start_after=None, limit=10, omit=("big",)
    )
    assert [k for k, _ in rows] == [b"b/k", b"b/l"] and "big" not in rows[1][1]
    rows = await rpc.scan_records(address, TEST_TABLE, prefix=b"b/", start_after=b"b/k", limit=10)
    assert [k for k, _ in rows] == [b"b/l"]
    assert not await rpc.retract_record(address, TEST_TABLE, b"b/k", "1")
    assert await rpc.retract_record(address, TEST_TABLE, b"b/k", "2")
    assert await rpc.get_record(address, TEST_TABLE, b"b/k") is None
    with pytest.raises(RpcError):
        await rpc.put_record(address, TEST_TABLE, b"b/k", {"no": "version"})
    with pytest.raises(RpcError):
        await rpc.get_record(address, "other_table", b"b/k")
    await rpc.close()
