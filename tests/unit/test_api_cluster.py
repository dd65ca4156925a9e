"""Cluster and operations routes against a fake PeerState."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

import dfspeer
from dfspeer.api.app import build_app
from dfspeer.config import PeerConfig
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
