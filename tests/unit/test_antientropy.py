"""Anti-entropy repair and partition handoff, in process: real block stores behind real
internal apps on aiohttp test servers; each node has its own view, RPC client and
RepairService (anti-entropy + rebalancer)."""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import cbor2
import pytest
from prometheus_client import CollectorRegistry, generate_latest

from dfspeer.blockstore import TablePut
from dfspeer.blockstore.merkle import BLOCKS_TREE
from dfspeer.cluster.repair import RepairMetrics
from dfspeer.cluster.replication import Replicator
from dfspeer.cluster.view import ClusterView
from dfspeer.config import PeerConfig
from dfspeer.gossip import Member, MemberState
from dfspeer.model.objects import OBJECTS_TABLE, table_key
from dfspeer.objects import ObjectService
from tests.unit.lww_table import TEST_TABLE, referenced, test_tables
from tests.unit.maintenance_cluster import Cluster, Node, start_cluster

MANIFEST_TABLE = TEST_TABLE
TABLES = test_tables()


def config(rf: int = 3) -> PeerConfig:
    return PeerConfig(
        chunk_size_bytes=64 * 1024,
        partition_bits=4,
        replication_factor=rf,
        write_quorum=min(2, rf),
        read_quorum=min(2, rf),
        request_timeout_s=5.0,
        anti_entropy_interval_s=3600.0,
    ).validate()


async def make_cluster(tmp_path: Path, count: int, rf: int) -> tuple[Cluster, list[Node]]:
    cluster = await start_cluster(tmp_path, count, config(rf), repair_tables=TABLES)
    return cluster, cluster.nodes


@pytest.fixture
async def trio(tmp_path: Path) -> AsyncIterator[Cluster]:
    cluster, nodes = await make_cluster(tmp_path, 3, 3)
    yield cluster
    await close(nodes)


async def close(nodes: list[Node]) -> None:
    for n in nodes:
        await n.close()


def record(version: str, **extra: Any) -> dict[str, Any]:
    return {"version": version, **extra}


def tkey(i: int) -> bytes:
    return f"bucket/key-{i:06d}".encode()


async def put_records(node: Node, items: dict[bytes, Any]) -> None:
    ops = [TablePut(MANIFEST_TABLE, k, v) for k, v in items.items()]
    for i in range(0, len(ops), 500):
        await node.store.write_batch(ops[i : i + 500])


def roots(node: Node, tree: str) -> list[bytes]:
    reader = node.store.merkle(tree)
    return [reader.root(p) for p in range(node.view.ring.partition_count)]


# ---------------------------------------------------------------------- repair
async def test_empty_replica_gets_blocks_and_records_back(trio: Cluster) -> None:
    a, b, empty = trio.nodes
    blobs = [os.urandom(1000 + i) for i in range(40)]
    for node in (a, b):
        await node.store.write_batch([op for x in blobs for op in referenced(x)])
    recs = {tkey(i): record(f"v{i:03d}", n=i) for i in range(30)}
    await put_records(a, recs)
    await put_records(b, dict(list(recs.items())[:10]))  # b lacks 20 of them

    summary = await empty.repair.run_round()

    assert summary["failed_pairs"] == 0
    for blob in blobs:
        assert await empty.store.get(hashlib.sha256(blob).digest()) == blob
    table = empty.store.table(MANIFEST_TABLE)
    assert {k: table.get(k) for k in recs} == recs
    # the pulls made `empty` equal to a; b got its missing records pushed by `empty`
    assert roots(empty, BLOCKS_TREE) == roots(a, BLOCKS_TREE)
    assert roots(empty, MANIFEST_TABLE) == roots(a, MANIFEST_TABLE) == roots(b, MANIFEST_TABLE)
    status = empty.repair.status()
    assert status["partitions_behind"] == 0 and status["partitions_in_sync"] == 16
    assert status["last_full_sync"] is not None and status["keys_pulled"] >= 70
    # a second round finds nothing
    again = await empty.repair.run_round()
    assert again["differences"] == 0 and again["pushed"] == again["pulled"] == 0


async def test_stale_record_is_updated_both_ways(trio: Cluster) -> None:
    a, b, _ = trio.nodes
    await put_records(a, {tkey(1): record("v2", who="a"), tkey(2): record("v1", who="a")})
    await put_records(b, {tkey(1): record("v1", who="b"), tkey(2): record("v3", who="b")})
    report = await a.ae.sync(b.peer_id, range(16))
    assert report.differences == 2
    for node in (a, b):
        table = node.store.table(MANIFEST_TABLE)
        assert table.get(tkey(1)) == record("v2", who="a")
        assert table.get(tkey(2)) == record("v3", who="b")


async def test_tombstone_wins_over_older_put(trio: Cluster) -> None:
    a, b, _ = trio.nodes
    tomb = record("v5", deleted=True)
    await put_records(a, {tkey(7): tomb})
    await put_records(b, {tkey(7): record("v4", size=10)})
    await b.ae.sync(a.peer_id, range(16))  # b initiates: it must take the tombstone
    assert b.store.table(MANIFEST_TABLE).get(tkey(7)) == tomb
    assert a.store.table(MANIFEST_TABLE).get(tkey(7)) == tomb  # not resurrected there


async def test_one_difference_among_many_costs_a_small_exchange(trio: Cluster) -> None:
    a, b, _ = trio.nodes
    recs = {tkey(i): record("v1", n=i) for i in range(20000)}
    await put_records(a, recs)
    await put_records(b, recs)
    in_sync = await a.ae.sync(b.peer_id, range(16))
    assert in_sync.differences == 0 and in_sync.rounds == len(a.ae.trees)  # one per tree
    assert in_sync.summary_bytes < 40 * len(a.ae.trees)  # one root hash exchange per tree
    await put_records(b, {tkey(12345): record("v2", n=-1)})
    report = await a.ae.sync(b.peer_id, range(16))
    assert report.differences == 1 and report.pulled == 1
    assert report.summary_bytes < 4096, report
    assert a.store.table(MANIFEST_TABLE).get(tkey(12345)) == record("v2", n=-1)


async def test_misplaced_key_is_not_repaired(
    trio: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b, _ = trio.nodes
    await put_records(b, {tkey(1): record("v1")})
    # a peer whose ring places keys elsewhere than the summaries file them: the diff sees
    # the key, the repair refuses to act on it
    real = a.view.partition_of
    monkeypatch.setattr(a.view, "partition_of", lambda k: (real(k) + 1) % 16)
    report = await a.ae.sync(b.peer_id, range(16))
    assert report.differences == 1 and report.pulled == 0
    assert a.ae.counters["misplaced_keys"] == 1
    assert a.store.table(MANIFEST_TABLE).get(tkey(1)) is None


async def test_metrics_expose_repair_counters(trio: Cluster) -> None:
    a, b, _ = trio.nodes
    ops = referenced(b"x" * 5000)
    await a.store.write_batch(ops)
    await b.repair.run_round()
    registry = CollectorRegistry()
    RepairMetrics(b.repair).register(registry)
    text = generate_latest(registry).decode()
    ref_bytes = len(cbor2.dumps(ops[1].value))  # type: ignore[union-attr]
    assert f'dfspeer_repair_bytes_total{{direction="pulled"}} {5000.0 + ref_bytes}' in text
    assert 'dfspeer_repair_keys_total{direction="pulled",tree="block_refs"} 1.0' in text
    assert 'dfspeer_repair_merkle_exchanges_total{tree="blocks"}' in text
    assert 'dfspeer_repair_keys_total{direction="pulled",tree="blocks"} 1.0' in text


# ---------------------------------------------------------------------- ring changes
async def test_partition_moves_and_old_copy_drops_only_once_new_owners_hold_it(
    tmp_path: Path,
) -> None:
    cluster, nodes = await make_cluster(tmp_path, 4, 2)
    try:
        three = [n.peer_id for n in nodes[:3]]
        cluster.set_view(three)
        old_view = nodes[0].view
        # data for every partition, on its replicas in the 3-peer ring
        blobs = [os.urandom(3000 + i) for i in range(64)]
        recs = {tkey(i): record("v1", n=i) for i in range(64)}
        for node in nodes[:3]:
            mine = set(old_view.ring.partitions_of(node.peer_id))
            await node.store.write_batch(
                [
                    op
                    for x in blobs
                    if old_view.partition_of(_sha(x)) in mine
                    for op in referenced(x)
                ]
            )
            await put_records(
                node, {k: v for k, v in recs.items() if old_view.partition_of(k) in mine}
            )
        # peer-3 joins but cannot be reached yet: nothing may be dropped
        cluster.set_view([n.peer_id for n in nodes], down=("peer-3",))
        for node in nodes[:3]:
            await node.repair.run_round()
        assert all(await _held_everywhere(nodes, blobs, recs, lambda n: n.peer_id != "peer-3"))
        kept = sum(len(n.repair.to_move) for n in nodes[:3])
        assert kept > 0  # partitions moving to peer-3 wait for it
        # now it is reachable: the old owners push, then drop
        cluster.set_view([n.peer_id for n in nodes])
        for node in nodes[:3]:
            await node.repair.run_round()
        new = nodes[0].view
        for node in nodes:
            mine = set(new.ring.partitions_of(node.peer_id))
            held = {p for p in range(16) if node.store.merkle(BLOCKS_TREE).root(p) != bytes(16)}
            held |= {p for p in range(16) if node.store.merkle(MANIFEST_TABLE).root(p) != bytes(16)}
            assert held <= mine, (node.peer_id, held - mine)
            assert not node.repair.to_move
        # every key is on exactly its 2 replicas
        for blob in blobs:
            d = _sha(blob)
            holders = [n.peer_id for n in nodes if await n.store.has(d)]
            assert sorted(holders) == sorted(new.replicas(new.partition_of(d)))
        for k, v in recs.items():
            holders = [n.peer_id for n in nodes if n.store.table(MANIFEST_TABLE).get(k) == v]
            assert sorted(holders) == sorted(new.replicas(new.partition_of(k)))
    finally:
        await close(nodes)


def _sha(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


async def _held_everywhere(
    nodes: list[Node], blobs: list[bytes], recs: dict[bytes, Any], where: Callable[[Node], bool]
) -> list[bool]:
    """For each key: is it still held by at least its old number of copies (2)?"""
    out = []
    for blob in blobs:
        out.append(sum([await n.store.has(_sha(blob)) for n in nodes if where(n)]) >= 2)
    for k in recs:
        out.append(sum(n.store.table(MANIFEST_TABLE).get(k) is not None for n in nodes) >= 2)
    return out


# ---------------------------------------------------------------------- placement fix
async def test_long_key_manifest_lives_in_its_table_key_partition(tmp_path: Path) -> None:
    _, nodes = await make_cluster(tmp_path, 4, 2)
    try:
        cfg = config(2)
        services = [
            ObjectService(
                cfg, n.view, n.store, Replicator(cfg, n.view, n.store, n.rpc, tables=TABLES)
            )
            for n in nodes
        ]
        view = nodes[0].view
        key = next(  # a long key whose full name is in another partition than its table key
            k
            for k in ("k" * 999 + c for c in "abcdefghij")
            if view.partition_of(b"bkt/" + k.encode()) != view.partition_of(table_key("bkt", k))
        )
        await services[0].put_object("bkt", key, b"hello, long key")
        tk = table_key("bkt", key)
        assert len(tk) < 500
        partition = view.partition_of(tk)
        holders = sorted(
            n.peer_id for n in nodes if n.store.table(OBJECTS_TABLE).get(tk) is not None
        )
        assert holders == sorted(view.replicas(partition))
        for n in nodes:  # the summary files it in that same partition
            entries = n.store.merkle(OBJECTS_TABLE).entries(partition)
            assert (tk in [k for k, _ in entries]) == (n.peer_id in holders)
        # and anti-entropy keeps it there: a round changes nothing
        for n in nodes:
            summary = await n.repair.run_round()
            assert summary["differences"] == 0 and summary["moved"] == 0
        data = b"".join([c async for c in (await services[3].get_object("bkt", key))[1]])
        assert data == b"hello, long key"
    finally:
        await close(nodes)


# ---------------------------------------------------------------------- view
def test_view_keeps_dead_members_until_evicted_and_drops_draining() -> None:
    now = [0.0]
    view = ClusterView(
        "a", partition_bits=4, replication_factor=2, dead_member_evict_s=10, clock=lambda: now[0]
    )

    def member(pid: str, state: MemberState, weight: float = 1.0) -> Member:
        return Member(pid, ("h", 1), "h:1", 1, state, weight=weight)

    view.update([member("a", MemberState.ALIVE), member("b", MemberState.ALIVE)])
    assert view.ring_peers() == ("a", "b")
    assert not view.update([member("a", MemberState.ALIVE), member("b", MemberState.DEAD)])
    now[0] = 9.0
    assert not view.update([member("a", MemberState.ALIVE), member("b", MemberState.DEAD)])
    assert view.next_eviction() == 10.0
    now[0] = 10.5
    assert view.update([member("a", MemberState.ALIVE), member("b", MemberState.DEAD)])
    assert view.ring_peers() == ("a",)
    view.update([member("a", MemberState.ALIVE), member("b", MemberState.LEFT)])
    assert view.ring_peers() == ("a",)
    view.update([member("a", MemberState.ALIVE), member("b", MemberState.ALIVE, weight=0.0)])
    assert view.ring_peers() == ("a",) and view.is_draining("b")
    assert view.extended_preference(0) == ("a", "b")


# ---------------------------------------------------------------------- CLI rendering
def test_status_rows_show_the_repair_object() -> None:
    from dfspeer.commands.cluster import status_rows
    from dfspeer.commands.drain import progress_line

    doc = {
        "id": "p1",
        "repair": {
            "partitions_in_sync": 10,
            "partitions_behind": 2,
            "bytes_to_move": 3 * 1024 * 1024,
            "last_full_sync": None,
            "hints_pending": 4,  # another subsystem's field: shown as it is
            "drain": {"state": "idle"},
        },
    }
    rows = dict(status_rows(doc))
    assert rows["repair partitions behind"] == 2
    assert rows["repair hints pending"] == 4
    assert rows["repair last full sync"] == "-"
    assert "MiB" in str(rows["repair bytes to move"])
    assert "repair drain" not in rows
    line = progress_line({"state": "draining", "partitions_remaining": 5, "bytes_remaining": 0})
    assert line.startswith("draining: 5 partition(s)")
