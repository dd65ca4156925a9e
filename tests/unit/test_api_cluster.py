"""Cluster and operations routes against a fake PeerState."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

import dfspeer
from dfspeer.api.app import build_app
from dfspeer.api.shutdown import ShutdownGate
from dfspeer.config import PeerConfig
from dfspeer.errors import (
    DataUnavailable,
    InsufficientReplicas,
    MemberAlive,
    NoSuchKey,
    NoSuchMember,
    NotReady,
)
from dfspeer.gossip import Member, MemberState
from dfspeer.objects import ObjectInfo
from tests.unit.api_fakes import FakeObjects, FakeState

Client = TestClient[aiohttp.web.Request, aiohttp.web.Application]


@pytest.fixture
def state() -> FakeState:
    return FakeState()


@pytest.fixture
async def client(state: FakeState) -> AsyncIterator[Client]:
    app = build_app(FakeObjects(), state, PeerConfig(), registry=CollectorRegistry())
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def test_health_and_ready(client: Client, state: FakeState) -> None:
    resp = await client.get("/health")
    assert resp.status == 200
    assert await resp.json() == {"status": "ok"}
    resp = await client.get("/ready")
    assert resp.status == 503
    body = await resp.json()
    assert body["error"]["code"] == "not_ready"
    assert body["error"]["request_id"] == resp.headers["X-Request-Id"]
    state.ready = True
    resp = await client.get("/ready")
    assert resp.status == 200


async def test_members(client: Client) -> None:
    resp = await client.get("/v1/cluster/members")
    body = await resp.json()
    assert body["self"] == "p1"
    assert [m["id"] for m in body["members"]] == ["p1", "p2", "p3"]
    assert body["members"][1] == {
        "id": "p2",
        "address": "127.0.0.1:7002",
        "gossip_address": "127.0.0.1:8002",
        "state": "suspect",
        "incarnation": 2,
        "zone": "z1",
        "weight": 1.0,
        "version": "0.1.0",
    }


async def test_ring(client: Client, state: FakeState) -> None:
    body = await (await client.get("/v1/cluster/ring")).json()
    ring = state.ring
    assert body["partitions"] == 16
    assert body["partition_bits"] == 4
    assert body["replication_factor"] == 2
    assert body["digest"] == ring.digest
    assert set(body["peers"]) == {"p1", "p2"}  # the dead member holds nothing
    # two live peers, N = 2: each holds every partition
    assert body["assignments"]["p1"] == list(range(16))
    assert body["peers"]["p2"] == {"partitions": 16, "zone": "z1", "weight": 1.0}


async def test_status(client: Client, state: FakeState) -> None:
    body = await (await client.get("/v1/cluster/status")).json()
    assert body == {
        "id": "p1",
        "ready": False,
        "blocks": 3,
        "block_bytes": 300,
        "map_used_bytes": 4096,
        "map_size_bytes": 1 << 30,
        "partitions_held": 16,
        "members": {"alive": 1, "suspect": 1, "dead": 1, "left": 0},
        "ring_digest": state.ring.digest,
        "version": dfspeer.__version__,
    }


async def test_state_gauges(client: Client) -> None:
    text = await (await client.get("/metrics")).text()
    assert "dfspeer_ring_partitions_held 16.0" in text
    assert "dfspeer_ring_members 2.0" in text
    assert "dfspeer_ready 0.0" in text


# ---------------------------------------------------------------------- members remove
@dataclass
class RemovableState(FakeState):
    """FakeState whose dead members can be removed, with the peer's error mapping."""

    def remove_member(self, peer_id: str) -> Member:
        found = [m for m in self.known if m.id == peer_id]
        if not found:
            raise NoSuchMember(f"no member {peer_id!r}")
        if found[0].is_live or peer_id == self.peer_id:
            raise MemberAlive(f"member {peer_id!r} is {found[0].state.value}")
        removed = found[0].with_state(MemberState.LEFT, found[0].incarnation)
        self.known = [removed if m.id == peer_id else m for m in self.known]
        return removed


async def test_remove_member_route() -> None:
    state = RemovableState()
    app = build_app(FakeObjects(), state, PeerConfig(), registry=CollectorRegistry())
    async with TestClient(TestServer(app)) as client:
        resp = await client.post("/v1/cluster/members/p3/remove")
        assert resp.status == 200
        body = await resp.json()
        assert body["id"] == "p3" and body["state"] == "left"
        members = await (await client.get("/v1/cluster/members")).json()
        assert [m["state"] for m in members["members"]] == ["alive", "suspect", "left"]
        for peer_id, status, code in [
            ("p1", 409, "member_alive"),  # alive (and this peer)
            ("p2", 409, "member_alive"),  # suspect
            ("nope", 404, "no_such_member"),
        ]:
            resp = await client.post(f"/v1/cluster/members/{peer_id}/remove")
            assert resp.status == status
            assert (await resp.json())["error"]["code"] == code
        assert (await client.get("/v1/cluster/members/p3/remove")).status == 405


async def test_remove_member_not_supported_by_a_state_without_it(client: Client) -> None:
    resp = await client.post("/v1/cluster/members/p3/remove")
    assert resp.status == 501
    assert (await resp.json())["error"]["code"] == "not_supported"


# ---------------------------------------------------------------------- 503 and shutdown
async def test_every_503_carries_retry_after(client: Client) -> None:
    resp = await client.get("/ready")  # not_ready
    assert resp.status == 503 and resp.headers["Retry-After"] == "1"
    resp = await client.get("/health")
    assert "Retry-After" not in resp.headers


@pytest.mark.parametrize("code", ["insufficient_replicas", "data_unavailable", "not_ready"])
async def test_service_unavailable_errors_carry_retry_after(code: str) -> None:
    cls = {
        "insufficient_replicas": InsufficientReplicas,
        "data_unavailable": DataUnavailable,
        "not_ready": NotReady,
    }[code]

    class FailingObjects(FakeObjects):
        async def stat_object(
            self, bucket: str, key: str, *, version: str | None = None
        ) -> ObjectInfo:
            raise cls("try again")

        async def get_object(
            self,
            bucket: str,
            key: str,
            *,
            start: int = 0,
            end: int | None = None,
            version: str | None = None,
        ) -> tuple[ObjectInfo, AsyncIterator[bytes]]:
            raise cls("try again")

    app = build_app(FailingObjects(), FakeState(), PeerConfig(), registry=CollectorRegistry())
    async with TestClient(TestServer(app)) as client:
        resp = await client.head("/v1/objects/bkt/k")
        assert resp.status == 503
        assert resp.headers["Retry-After"] == "1"
        resp = await client.request("GET", "/v1/objects/bkt/k")
        assert resp.status == 503 and resp.headers["Retry-After"] == "1"
        assert (await resp.json())["error"]["code"] == code


async def test_stopping_peer_finishes_in_flight_requests_and_refuses_new_ones() -> None:
    started, release = asyncio.Event(), asyncio.Event()

    class SlowObjects(FakeObjects):
        async def stat_object(
            self, bucket: str, key: str, *, version: str | None = None
        ) -> ObjectInfo:
            started.set()
            await release.wait()
            raise NoSuchKey("gone")  # any answer will do: it must reach the client

    gate = ShutdownGate()
    state = FakeState(ready=True)
    app = build_app(SlowObjects(), state, PeerConfig(), registry=CollectorRegistry(), gate=gate)
    async with TestClient(TestServer(app)) as client:
        in_flight = asyncio.create_task(client.request("HEAD", "/v1/objects/bkt/k"))
        await started.wait()
        assert gate.in_flight == 1
        gate.close()
        for path in ("/v1/objects/bkt/k", "/ready", "/v1/cluster/members"):
            resp = await client.get(path)
            assert resp.status == 503, path
            assert resp.headers["Retry-After"] == "1"
            assert (await resp.json())["error"]["code"] == "not_ready"
        assert (await client.get("/health")).status == 200  # ungated
        assert (await client.get("/metrics")).status == 200
        assert not await gate.wait_idle(0.05)  # the first request still runs
        release.set()
        assert await gate.wait_idle(5.0)
        resp = await in_flight
        assert resp.status == 404  # completed normally
        assert gate.in_flight == 0 and gate.refused == 3
