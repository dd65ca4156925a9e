"""A table declared by nothing but a schema (the test-only LWW table of
``tests.unit.lww_table``) gets the whole replicated-table runtime: quorum writes and reads
with read repair, Merkle anti-entropy, hinted handoff and tombstone purge — on the
in-process cluster of ``tests.unit.maintenance_cluster`` (4 peers, N=3, W=R=2)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from dfspeer.cluster.handoff import HINTS_TABLE, record_hint_key
from dfspeer.cluster.tombstones import TombstonePurger
from dfspeer.objects.hlc import Version
from tests.unit.lww_table import TEST_TABLE, LwwTestSchema, test_tables
from tests.unit.maintenance_cluster import CONFIG, TABLES, Cluster, Node, make_cluster

SCHEMA = LwwTestSchema()
GRACE_S = CONFIG.tombstone_grace_s


def hlc_text(unix_s: float, peer: str = "peer-0") -> str:
    """HLC version text of unix time ``unix_s`` (logical counter 0)."""
    return str(Version(int(unix_s * 1000) << 16, peer))


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with make_cluster(tmp_path, maintenance=True, repair_tables=test_tables()) as cl:
        yield cl


def replicas_of(cluster: Cluster, key: bytes) -> list[str]:
    view = cluster.nodes[0].view
    return list(view.replicas(view.partition_of(SCHEMA.partition_key(key))))


def held(cluster: Cluster, key: bytes) -> dict[str, Any]:
    """Peer id -> its local record of ``key`` (peers without one are left out)."""
    out: dict[str, Any] = {}
    for n in cluster.nodes:
        record = n.store.table(TEST_TABLE).get(key)
        if record is not None:
            out[n.peer_id] = record
    return out


def outsider(cluster: Cluster, key: bytes) -> Node:
    (peer,) = set(cluster.by_id) - set(replicas_of(cluster, key))
    return cluster.by_id[peer]


def key_first_on(cluster: Cluster, peer: str, prefix: str) -> bytes:
    """A key whose partition has ``peer`` as its first replica."""
    for i in range(1000):
        key = f"{prefix}-{i}".encode()
        if replicas_of(cluster, key)[0] == peer:
            return key
    raise AssertionError(f"no key of {peer}")


# ---------------------------------------------------------------------- quorum + read repair
async def test_quorum_write_and_read_with_read_repair(cluster: Cluster) -> None:
    key = b"generic/quorum"
    replicas = replicas_of(cluster, key)
    coordinator = outsider(cluster, key)  # every replica over RPC
    now = time.time()
    old = {"version": hlc_text(now - 10), "value": "old"}
    new = {"version": hlc_text(now), "value": "new"}

    assert await coordinator.replicator.write_record(TEST_TABLE, key, old) >= CONFIG.write_quorum
    assert await coordinator.replicator.write_record(TEST_TABLE, key, new) >= CONFIG.write_quorum
    await cluster.drain()
    assert held(cluster, key) == {p: new for p in replicas}  # N copies, the outsider none
    # an older write arriving late loses everywhere (last writer wins by HLC version)
    await cluster.by_id[replicas[0]].replicator.write_record(TEST_TABLE, key, old)
    await cluster.drain()
    assert held(cluster, key) == {p: new for p in replicas}
    with pytest.raises(ValueError):  # not a record of the table: refused before any write
        await coordinator.replicator.write_record(TEST_TABLE, key, {"value": "no version"})

    # one replica lost the record, another holds an older copy; a read that asks every
    # replica at once (read_speculation_ms = 0) repairs both
    coordinator.replicator.config = dataclasses.replace(CONFIG, read_speculation_ms=0.0)
    lost, behind, _ = replicas
    await cluster.by_id[lost].store.table(TEST_TABLE).delete(key)
    await cluster.by_id[behind].store.table(TEST_TABLE).put(key, old)
    assert await coordinator.replicator.read_record(TEST_TABLE, key) == new
    await cluster.drain()
    assert held(cluster, key) == {p: new for p in replicas}  # both repaired
    assert coordinator.replicator.counters["read_repairs"] == 2
    assert await coordinator.replicator.read_record(TEST_TABLE, b"generic/absent") is None


# ---------------------------------------------------------------------- anti-entropy
async def test_merkle_anti_entropy_brings_a_record_to_its_other_replicas(
    cluster: Cluster,
) -> None:
    key = b"generic/anti-entropy"
    stale_key = b"generic/anti-entropy-stale"
    first, *others = replicas_of(cluster, key)
    now = time.time()
    record = {"version": hlc_text(now), "value": "only on one peer"}
    await cluster.by_id[first].store.table(TEST_TABLE).put(key, record)  # bypasses replication
    # and a record where the replicas disagree: the newer copy must win on each
    a, b, _ = replicas_of(cluster, stale_key)
    newer = {"version": hlc_text(now), "who": a}
    await cluster.by_id[a].store.table(TEST_TABLE).put(stale_key, newer)
    await cluster.by_id[b].store.table(TEST_TABLE).put(stale_key, {"version": hlc_text(now - 5)})
    await cluster.drain()
    assert held(cluster, key) == {first: record}  # nothing else moves it

    for n in cluster.nodes:
        await n.repair.run_round()

    assert held(cluster, key) == {p: record for p in [first, *others]}
    assert held(cluster, stale_key) == {p: newer for p in replicas_of(cluster, stale_key)}
    assert outsider(cluster, key).peer_id not in held(cluster, key)
    again = [await n.repair.run_round() for n in cluster.nodes]  # converged: nothing to do
    assert sum(r["differences"] for r in again) == 0


# ---------------------------------------------------------------------- hinted handoff
async def test_hinted_handoff_delivers_a_record_to_the_replica_that_was_down(
    cluster: Cluster,
) -> None:
    key = b"generic/handoff"
    first, second, down = replicas_of(cluster, key)
    stand_in = outsider(cluster, key)
    record = {"version": hlc_text(time.time()), "value": "hinted"}
    cluster.set_down(down)

    acks = await cluster.by_id[first].replicator.write_record(TEST_TABLE, key, record)
    await cluster.drain()
    assert acks >= CONFIG.write_quorum
    assert down not in held(cluster, key)
    hint = stand_in.store.table(HINTS_TABLE).get(record_hint_key(TEST_TABLE, key, down))
    assert hint is not None
    assert (hint["kind"], hint["target"], hint["table"]) == ("record", down, TEST_TABLE)
    assert bytes(hint["key"]) == key and hint["record"] == record
    assert sum(n.maintenance.hints.pending() for n in cluster.nodes) == 1

    for n in cluster.nodes:  # still down: kept, not delivered
        assert await n.maintenance.handoff.deliver_once() == 0
    assert stand_in.maintenance.hints.pending() == 1

    cluster.heal()
    delivered = sum([await n.maintenance.handoff.deliver_once() for n in cluster.nodes])
    assert delivered == 1
    assert cluster.by_id[down].store.table(TEST_TABLE).get(key) == record
    assert {first, second, down} <= set(held(cluster, key))
    assert sum(n.maintenance.hints.pending() for n in cluster.nodes) == 0


# ---------------------------------------------------------------------- tombstone purge
async def test_tombstone_is_purged_from_every_replica_after_the_grace_only(
    cluster: Cluster,
) -> None:
    purger_peer = "peer-0"
    key = key_first_on(cluster, purger_peer, "generic/tombstone")
    live_key = key_first_on(cluster, purger_peer, "generic/live")
    deleted_at = time.time() - 60
    tombstone = {"version": hlc_text(deleted_at), "deleted": True}
    live = {"version": hlc_text(deleted_at - 1), "value": "kept"}
    node = cluster.by_id[purger_peer]
    await node.replicator.write_record(TEST_TABLE, key, tombstone)
    await node.replicator.write_record(TEST_TABLE, live_key, live)
    await cluster.drain()
    replicas = replicas_of(cluster, key)
    assert held(cluster, key) == {p: tombstone for p in replicas}
    assert SCHEMA.tombstone_since(tombstone) == pytest.approx(deleted_at, abs=0.001)

    now = deleted_at + GRACE_S - 5
    purger = TombstonePurger(
        node.view,
        node.store,
        node.rpc,
        grace_s=GRACE_S,
        interval_s=60.0,
        tables=TABLES,
        clock=lambda: now,
    )
    assert await purger.purge_once() == 0  # within the grace: kept everywhere
    assert held(cluster, key) == {p: tombstone for p in replicas}

    now = deleted_at + GRACE_S + 1
    assert await purger.purge_once() == 1
    assert held(cluster, key) == {}  # gone from every replica
    assert held(cluster, live_key) == {p: live for p in replicas_of(cluster, live_key)}
    assert purger.counters["purged"] == 1
    assert await purger.purge_once() == 0
