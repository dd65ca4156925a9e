"""The peer channel: record reads and writes as signed WebSocket messages, and every way they
fail."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import cbor2
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from prometheus_client import CollectorRegistry

from dfspeer.api import internal_channel
from dfspeer.api.internal import internal_app
from dfspeer.api.internal_channel import ChannelServer
from dfspeer.blockstore import BlockStore, StoreFull
from dfspeer.cluster.auth import RpcAuth
from dfspeer.cluster.channel import (
    ANSWER_DOMAIN,
    CHANNEL_PATH,
    MAC_BYTES,
    MAX_ANSWER_BYTES,
    REQUEST_DOMAIN,
)
from dfspeer.cluster.rpc import PeerRpcClient, PeerStoreFull, RpcError
from dfspeer.cluster.rpc_channel import CHANNEL_RECORD_BYTES
from dfspeer.errors import PeerUnreachable
from dfspeer.gossip import Keyring
from tests.unit.lww_table import TEST_TABLE, test_tables

K1, K2 = bytes(range(32)), bytes(range(1, 33))


class Served:
    def __init__(self, srv: TestServer, store: BlockStore, registry: CollectorRegistry) -> None:
        self.srv, self.store, self.registry = srv, store, registry
        self.address = f"127.0.0.1:{srv.port}"

    def count(self, name: str, **labels: str) -> float:
        return self.registry.get_sample_value(name, labels) or 0.0


async def _serve(tmp_path: Path, app: web.Application) -> TestServer:
    srv = TestServer(app, host="127.0.0.1")
    await srv.start_server()
    return srv


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    store = BlockStore(tmp_path / "s", map_size_bytes=64 << 20, durable=False)
    registry = CollectorRegistry()
    app = web.Application()
    internal = internal_app(
        store, Keyring([K1]), self_id="srv", tables=test_tables(), registry=registry
    )
    app.add_subapp("/internal/", internal)
    srv = await _serve(tmp_path, app)
    yield Served(srv, store, registry)
    await srv.close()
    await store.close()


def _client(timeout_s: float = 5.0, key: bytes = K1) -> tuple[PeerRpcClient, CollectorRegistry]:
    registry = CollectorRegistry()
    return PeerRpcClient(Keyring([key]), "peer", timeout_s=timeout_s, registry=registry), registry


def _rpc_calls(registry: CollectorRegistry, method: str) -> float:
    total = 0.0
    for metric in registry.collect():
        for sample in metric.samples:
            if sample.name.endswith("_count") and sample.labels.get("method") == method:
                total += sample.value
    return total


async def test_record_reads_go_over_the_channel(served: Served) -> None:
    rpc, registry = _client()
    record = {"version": "7", "v": "seven", "blob": bytes(range(256))}
    await rpc.put_record(served.address, TEST_TABLE, b"b/k", record)
    assert await rpc.get_record(served.address, TEST_TABLE, b"b/k") == record
    assert await rpc.get_record(served.address, TEST_TABLE, b"b/none") is None
    with pytest.raises(RpcError) as info:
        await rpc.get_record(served.address, "other_table", b"b/k")
    assert (info.value.status, info.value.code) == (404, "no_such_table")
    # many calls in flight on the one connection, each matched to its own answer
    for i in range(20):
        await rpc.put_record(served.address, TEST_TABLE, b"m/%d" % i, {"version": "1", "i": i})
    got = await asyncio.gather(
        *(rpc.get_record(served.address, TEST_TABLE, b"m/%d" % i) for i in range(20))
    )
    assert [g["i"] for g in got] == list(range(20))
    assert served.count("dfspeer_channel_requests_total", op="get_record", status="200") == 21
    assert served.count("dfspeer_channel_requests_total", op="get_record", status="404") == 2
    assert served.count("dfspeer_channel_requests_total", op="put_record", status="204") == 21
    assert _rpc_calls(registry, "CHANNEL") == 44
    assert _rpc_calls(registry, "GET") == _rpc_calls(registry, "PUT") == 0  # none over HTTP
    await rpc.close()


async def test_record_writes_merge_and_refuse_like_the_http_route(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    rpc, registry = _client()
    await rpc.put_record(served.address, TEST_TABLE, b"b/k", {"version": "2", "v": "new"})
    await rpc.put_record(served.address, TEST_TABLE, b"b/k", {"version": "1", "v": "old"})
    assert served.store.table(TEST_TABLE).get(b"b/k") == {"version": "2", "v": "new"}
    with pytest.raises(RpcError) as info:  # the schema refuses it: nothing is written
        await rpc.put_record(served.address, TEST_TABLE, b"b/bad", {"no": "version"})
    assert (info.value.status, info.value.code) == (400, "invalid_argument")
    assert served.store.table(TEST_TABLE).get(b"b/bad") is None
    with pytest.raises(RpcError) as info:
        await rpc.put_record(served.address, "other_table", b"b/k", {"version": "1"})
    assert (info.value.status, info.value.code) == (404, "no_such_table")
    with pytest.raises(RpcError) as info:
        await rpc.put_record(served.address, TEST_TABLE, b"x" * 512, {"version": "1"})
    assert info.value.status == 400
    # a full store is a 507 store_full, which a quorum write tells from an unreachable peer
    table = served.store.table(TEST_TABLE)

    async def full(*_: Any, **__: Any) -> None:
        raise StoreFull("no space left on the test disk")

    monkeypatch.setattr(type(table), "update", full)
    with pytest.raises(PeerStoreFull) as full_info:
        await rpc.put_record(served.address, TEST_TABLE, b"b/k", {"version": "3"})
    assert full_info.value.status == 507
    monkeypatch.undo()
    assert served.count("dfspeer_channel_requests_total", op="put_record", status="507") == 1
    # a record too large for a message goes over HTTP, and is merged the same
    big = {"version": "4", "big": "x" * CHANNEL_RECORD_BYTES}
    await rpc.put_record(served.address, TEST_TABLE, b"b/k", big)
    assert served.store.table(TEST_TABLE).get(b"b/k") == big
    assert _rpc_calls(registry, "PUT") == 1 and _rpc_calls(registry, "CHANNEL") == 6
    await rpc.close()


async def test_a_failing_handler_answers_500_and_keeps_the_channel(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    rpc, _ = _client()
    await rpc.put_record(served.address, TEST_TABLE, b"b/k", {"version": "1"})
    table = served.store.table(TEST_TABLE)

    def broken(*_: Any, **__: Any) -> None:
        raise RuntimeError("a bug in the read path")

    monkeypatch.setattr(type(table), "get", broken)
    with pytest.raises(RpcError) as info:
        await rpc.get_record(served.address, TEST_TABLE, b"b/k")
    assert (info.value.status, info.value.code) == (500, "internal_error")
    link = rpc._channels._links[served.address]  # type: ignore[union-attr]
    monkeypatch.undo()
    assert await rpc.get_record(served.address, TEST_TABLE, b"b/k") == {"version": "1"}
    assert rpc._channels._links[served.address] is link  # type: ignore[union-attr]
    await rpc.close()


async def test_without_the_channel_reads_go_over_http(served: Served) -> None:
    registry = CollectorRegistry()
    rpc = PeerRpcClient(Keyring([K1]), "p", timeout_s=5, registry=registry, channel=False)
    await rpc.put_record(served.address, TEST_TABLE, b"b/k", {"version": "1"})
    assert await rpc.get_record(served.address, TEST_TABLE, b"b/k") == {"version": "1"}
    assert _rpc_calls(registry, "GET") == 1 and _rpc_calls(registry, "CHANNEL") == 0
    assert served.count("dfspeer_channel_requests_total", op="get_record", status="200") == 0
    await rpc.close()


async def test_a_peer_without_the_channel_is_read_over_http(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A peer that predates the channel answers the upgrade 404: the read goes over HTTP,
    and so do the next ones without asking again."""
    monkeypatch.setattr(ChannelServer, "add_to", lambda self, app: None)
    store = BlockStore(tmp_path / "old", map_size_bytes=64 << 20, durable=False)
    app = web.Application()
    app.add_subapp("/internal/", internal_app(store, Keyring([K1]), tables=test_tables()))
    srv = await _serve(tmp_path, app)
    address = f"127.0.0.1:{srv.port}"
    rpc, registry = _client()
    await rpc.put_record(address, TEST_TABLE, b"b/k", {"version": "3"})
    for _ in range(3):
        assert await rpc.get_record(address, TEST_TABLE, b"b/k") == {"version": "3"}
    assert _rpc_calls(registry, "GET") == 3 and _rpc_calls(registry, "CHANNEL") == 0
    await rpc.close()
    await srv.close()
    await store.close()


async def test_an_operation_the_peer_does_not_know_goes_over_http(
    served: Served, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A peer of an earlier release with a channel that only reads records: the write is
    answered ``unknown_operation`` and made over HTTP; reads stay on the channel."""
    monkeypatch.setattr(internal_channel, "OPS", ("get_record",))
    rpc, registry = _client()
    await rpc.put_record(served.address, TEST_TABLE, b"b/k", {"version": "5"})
    assert await rpc.get_record(served.address, TEST_TABLE, b"b/k") == {"version": "5"}
    assert _rpc_calls(registry, "PUT") == 1 and _rpc_calls(registry, "CHANNEL") == 1
    await rpc.close()


async def test_an_answer_too_large_for_a_message_comes_over_http(served: Served) -> None:
    rpc, registry = _client()
    big = {"version": "1", "big": "x" * (MAX_ANSWER_BYTES + 10)}
    await rpc.put_record(served.address, TEST_TABLE, b"b/big", big)
    assert await rpc.get_record(served.address, TEST_TABLE, b"b/big") == big
    assert served.count("dfspeer_channel_requests_total", op="get_record", status="200") == 1
    assert _rpc_calls(registry, "GET") == 1  # the 413 was fetched again over HTTP
    assert _rpc_calls(registry, "PUT") == 1  # and the record was too large to send on it
    assert await rpc.get_record(served.address, TEST_TABLE, b"b/none") is None  # still on
    assert _rpc_calls(registry, "CHANNEL") == 1
    await rpc.close()


async def test_unsigned_or_wrongly_keyed_upgrades_are_refused(served: Served) -> None:
    async with aiohttp.ClientSession() as http:
        with pytest.raises(aiohttp.WSServerHandshakeError) as info:
            await http.ws_connect(served.srv.make_url(CHANNEL_PATH))
        assert info.value.status == 401
    evil, _ = _client(key=K2)
    with pytest.raises(RpcError) as err:
        await evil.get_record(served.address, TEST_TABLE, b"b/k")
    assert err.value.status == 401
    await evil.close()


def _request(auth: RpcAuth, call_id: int, op: str, args: Any, date: int | None = None) -> bytes:
    body = cbor2.dumps([call_id, int(time.time()) if date is None else date, "p", op, args, None])
    return auth.sign_frame(REQUEST_DOMAIN, body) + body


async def test_forged_malformed_stale_and_unknown_requests(served: Served) -> None:
    registry = CollectorRegistry()
    server = ChannelServer(served.store, test_tables(), RpcAuth(Keyring([K1]), "srv"), registry)
    good, evil = RpcAuth(Keyring([K1]), "p"), RpcAuth(Keyring([K2]), "p")

    async def answer(call_id: int, op: str, args: Any, date: int | None = None) -> list[Any]:
        frame = _request(good, call_id, op, args, date)
        out = await server.serve(frame)
        assert out is not None
        assert good.frame_matches(ANSWER_DOMAIN, frame[:MAC_BYTES] + out[MAC_BYTES:], out[:32])
        decoded: list[Any] = cbor2.loads(out[MAC_BYTES:])
        assert decoded[0] == call_id
        return decoded[1:]

    def dropped(reason: str) -> float:
        return registry.get_sample_value("dfspeer_channel_dropped_total", {"reason": reason}) or 0

    assert await server.serve(_request(evil, 1, "get_record", [TEST_TABLE, b"k"])) is None
    signed = _request(good, 1, "get_record", [TEST_TABLE, b"k"])
    assert await server.serve(signed[:-1] + bytes([signed[-1] ^ 1])) is None  # tampered body
    assert dropped("forged") == 2
    assert await server.serve(b"short") is None
    garbage = b"\xff\x00 not cbor"
    assert await server.serve(good.sign_frame(REQUEST_DOMAIN, garbage) + garbage) is None
    shape = cbor2.dumps({"not": "a list"})
    assert await server.serve(good.sign_frame(REQUEST_DOMAIN, shape) + shape) is None
    assert dropped("malformed") == 3
    stale = await answer(5, "get_record", [TEST_TABLE, b"k"], date=1)
    assert stale == [401, "unauthorized", "request date is too far off"]
    assert (await answer(6, "drop_table", [TEST_TABLE]))[:2] == [400, "unknown_operation"]
    assert (await answer(7, "get_record", ["nope", b"k"]))[:2] == [404, "no_such_table"]
    assert (await answer(8, "get_record", [TEST_TABLE, "text"]))[0] == 400
    assert (await answer(9, "get_record", [TEST_TABLE, b"k", b"extra"]))[0] == 400
    assert (await answer(10, "put_record", [TEST_TABLE, b"k", {"not": "bytes"}]))[0] == 400
    assert (await answer(11, "put_record", [TEST_TABLE, b"k", b"\xff"]))[0] == 400
    assert (await answer(12, "get_record", [TEST_TABLE, b"k"]))[:2] == [404, "no_such_record"]
    # a stored record answers 200, and the answer is bound to the request's MAC
    assert await answer(13, "put_record", [TEST_TABLE, b"k", cbor2.dumps({"version": "1"})]) == [
        204,
        "",
        None,
    ]
    request = _request(good, 14, "get_record", [TEST_TABLE, b"k"])
    out = await server.serve(request)
    assert out is not None and cbor2.loads(out[MAC_BYTES:]) == [14, 200, "", {"version": "1"}]
    other = _request(good, 14, "get_record", [TEST_TABLE, b"k"], date=int(time.time()) - 1)
    assert not good.frame_matches(ANSWER_DOMAIN, other[:MAC_BYTES] + out[MAC_BYTES:], out[:32])
    assert registry.get_sample_value(
        "dfspeer_channel_requests_total", {"op": "other", "status": "400"}
    )


async def test_a_closed_channel_fails_over_and_the_next_call_redials(served: Served) -> None:
    rpc, _ = _client()
    await rpc.put_record(served.address, TEST_TABLE, b"b/k", {"version": "1"})
    assert await rpc.get_record(served.address, TEST_TABLE, b"b/k") is not None
    internal = served.srv.app._subapps[0]  # the /internal/ app: its shutdown closes channels
    await internal.on_shutdown.send(internal)
    for _ in range(100):  # the client sees the close
        if not rpc._channels._links:  # type: ignore[union-attr]
            break
        await asyncio.sleep(0.01)
    assert not rpc._channels._links  # type: ignore[union-attr]
    assert await rpc.get_record(served.address, TEST_TABLE, b"b/k") == {"version": "1"}
    assert served.count("dfspeer_channel_requests_total", op="get_record", status="200") == 2
    await rpc.close()


async def _fake_peer(answer: Callable[[bytes], bytes | None]) -> TestServer:
    """A server whose channel answers each request with ``answer(request)`` (None: silence)."""

    async def channel(request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for message in ws:
            out = answer(message.data)
            if out is not None:
                await ws.send_bytes(out)
        return ws

    app = web.Application()
    app.router.add_get(CHANNEL_PATH, channel)
    srv = TestServer(app, host="127.0.0.1")
    await srv.start_server()
    return srv


async def test_a_silent_peer_times_out_and_its_channel_is_closed() -> None:
    srv = await _fake_peer(lambda _request: None)
    rpc, registry = _client(timeout_s=0.3)
    address = f"127.0.0.1:{srv.port}"
    started = time.monotonic()
    with pytest.raises(PeerUnreachable):
        await rpc.get_record(address, TEST_TABLE, b"b/k")
    assert time.monotonic() - started < 5
    assert not rpc._channels._links  # type: ignore[union-attr]  # dropped: dials again next
    assert registry.get_sample_value(
        "dfspeer_rpc_duration_seconds_count",
        {"peer": address, "method": "CHANNEL", "outcome": "unreachable"},
    )
    await rpc.close()
    await srv.close()


async def test_a_forged_answer_is_refused() -> None:
    def forge(request: bytes) -> bytes:
        call_id = cbor2.loads(request[MAC_BYTES:])[0]
        body = cbor2.dumps([call_id, 200, "", {"version": "9", "v": "forged"}])
        return bytes(MAC_BYTES) + body

    srv = await _fake_peer(forge)
    rpc, _ = _client()
    with pytest.raises(RpcError, match="no valid signature"):
        await rpc.get_record(f"127.0.0.1:{srv.port}", TEST_TABLE, b"b/k")
    await rpc.close()
    await srv.close()


async def test_an_unreachable_peer_fails_every_waiting_call_at_once() -> None:
    with socket_bound() as port:
        rpc, _ = _client(timeout_s=2)
        address = f"127.0.0.1:{port}"
        results = await asyncio.gather(
            *(rpc.get_record(address, TEST_TABLE, b"k") for _ in range(8)),
            return_exceptions=True,
        )
        assert all(isinstance(r, PeerUnreachable) for r in results)
        await rpc.close()


@contextlib.contextmanager
def socket_bound() -> Iterator[int]:
    """A loopback port that refuses connections (bound, never listening)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield int(sock.getsockname()[1])
