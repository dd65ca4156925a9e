"""Cluster metrics: quorum failures by operation and peer RPC latency by peer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from dfspeer.cluster.maintenance import MaintenanceMetrics
from dfspeer.cluster.rpc import PeerRpcClient
from dfspeer.errors import InsufficientReplicas, PeerUnreachable
from tests.unit.lww_table import TEST_TABLE
from tests.unit.maintenance_cluster import KEYRING, Cluster, make_cluster


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with make_cluster(tmp_path) as cl:
        yield cl


async def test_quorum_failures_are_counted_by_operation(cluster: Cluster) -> None:
    node = cluster.nodes[0]
    registry = CollectorRegistry()
    registry.register(MaintenanceMetrics(node.maintenance))
    cluster.set_down("peer-1", "peer-2", "peer-3", on=(0,))
    with pytest.raises(InsufficientReplicas):
        await node.replicator.write_record(TEST_TABLE, b"k", {"version": "1"})
    with pytest.raises(InsufficientReplicas):
        await node.replicator.read_record(TEST_TABLE, b"k")
    text = generate_latest(registry).decode()
    assert 'dfspeer_quorum_failures_total{op="record"} 1.0' in text
    assert 'dfspeer_quorum_failures_total{op="read"} 1.0' in text
    assert 'dfspeer_quorum_failures_total{op="block"} 0.0' in text


async def test_rpc_latency_is_measured_per_peer_and_outcome(cluster: Cluster) -> None:
    registry = CollectorRegistry()
    rpc = PeerRpcClient(KEYRING, "peer-0", timeout_s=5.0, registry=registry)
    target = cluster.nodes[1]
    try:
        assert await rpc.get_record(target.address, TEST_TABLE, b"absent") is None
        with pytest.raises(PeerUnreachable):  # nothing listens there
            await rpc.get_record("127.0.0.1:1", TEST_TABLE, b"absent")
    finally:
        await rpc.close()
    text = generate_latest(registry).decode()
    family = "dfspeer_rpc_duration_seconds_count"
    # record reads go on the peer channel: timed as method CHANNEL
    ok = f'{family}{{method="CHANNEL",outcome="ok",peer="{target.address}"}} 1.0'
    down = f'{family}{{method="CHANNEL",outcome="unreachable",peer="127.0.0.1:1"}} 1.0'
    assert ok in text and down in text
    assert 'method="GET"' not in text
