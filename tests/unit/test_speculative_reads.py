"""Quorum reads ask R replicas, not N: :func:`dfspeer.cluster.quorum.speculative_fan_out`
on its own (fake operations on a real event loop) and inside ``Replicator.read_record`` on
the in-process cluster of ``tests.unit.maintenance_cluster`` (4 peers, N = 3, W = R = 2),
counting the record reads each replica served."""

from __future__ import annotations

import asyncio
import dataclasses
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from dfspeer.cluster.quorum import speculative_fan_out, wait_quorum
from dfspeer.objects.hlc import Version
from tests.unit.lww_table import TEST_TABLE, LwwTestSchema, test_tables
from tests.unit.maintenance_cluster import CONFIG, Cluster, Node, make_cluster

PEERS = ("a", "b", "c")


def spawner(
    behaviour: dict[str, Callable[[], Awaitable[str]]], started: list[str]
) -> Callable[[tuple[str, ...]], dict[str, asyncio.Task[str]]]:
    def spawn(peers: tuple[str, ...]) -> dict[str, asyncio.Task[str]]:
        started.extend(peers)
        return {p: asyncio.ensure_future(behaviour[p]()) for p in peers}

    return spawn


def answer(value: str, delay_s: float = 0.0) -> Callable[[], Awaitable[str]]:
    async def run() -> str:
        await asyncio.sleep(delay_s)
        return value

    return run


def failure() -> Callable[[], Awaitable[str]]:
    async def run() -> str:
        raise ConnectionError("refused")

    return run


async def test_fast_answers_ask_only_the_quorum() -> None:
    started: list[str] = []
    spawn = spawner({p: answer(p) for p in PEERS}, started)
    tasks = await speculative_fan_out(PEERS, 2, spawn, after_s=0.5)
    outcome = await wait_quorum(tasks, 2)
    assert started == ["a", "b"]
    assert sorted(outcome.results) == ["a", "b"]


async def test_a_failure_asks_the_others_at_once() -> None:
    started: list[str] = []
    spawn = spawner({"a": answer("a"), "b": failure(), "c": answer("c")}, started)
    t0 = time.monotonic()
    tasks = await speculative_fan_out(PEERS, 2, spawn, after_s=5.0)
    outcome = await wait_quorum(tasks, 2)
    assert time.monotonic() - t0 < 4.0  # not the 5 s speculation delay
    assert started == ["a", "b", "c"]
    assert sorted(outcome.results) == ["a", "c"] and list(outcome.errors) == ["b"]


async def test_a_slow_replica_asks_the_others_after_the_delay() -> None:
    started: list[str] = []
    spawn = spawner({"a": answer("a"), "b": answer("b", 30.0), "c": answer("c")}, started)
    tasks = await speculative_fan_out(PEERS, 2, spawn, after_s=0.05)
    outcome = await wait_quorum(tasks, 2)
    assert started == ["a", "b", "c"]
    assert sorted(outcome.results) == ["a", "c"] and list(outcome.pending) == ["b"]
    outcome.pending["b"].cancel()


@pytest.mark.parametrize(("need", "after_s"), [(2, 0.0), (3, 0.5), (5, 0.5)])
async def test_every_peer_at_once_when_off_or_all_needed(need: int, after_s: float) -> None:
    started: list[str] = []
    tasks = await speculative_fan_out(
        PEERS, need, spawner({p: answer(p) for p in PEERS}, started), after_s
    )
    assert started == list(PEERS) and sorted(tasks) == list(PEERS)
    await asyncio.gather(*tasks.values())


async def test_none_needed_asks_none() -> None:
    started: list[str] = []
    assert await speculative_fan_out(PEERS, 0, spawner({}, started), 0.5) == {}
    assert started == []


async def test_cancelling_the_read_cancels_what_it_started() -> None:
    started: list[str] = []
    spawn = spawner({p: answer(p, 30.0) for p in PEERS}, started)
    tasks: dict[str, asyncio.Task[str]] = {}

    def keep(peers: tuple[str, ...]) -> dict[str, asyncio.Task[str]]:
        tasks.update(spawn(peers))
        return {p: tasks[p] for p in peers}

    read = asyncio.ensure_future(speculative_fan_out(PEERS, 2, keep, 10.0))
    await asyncio.sleep(0.05)
    read.cancel()
    with pytest.raises(asyncio.CancelledError):
        await read
    await asyncio.sleep(0)
    assert started == ["a", "b"] and all(t.cancelled() for t in tasks.values())


# ---------------------------------------------------------------- in the replicator
SCHEMA = LwwTestSchema()


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with make_cluster(tmp_path, repair_tables=test_tables()) as cl:
        yield cl


def replicas_of(cluster: Cluster, key: bytes) -> list[str]:
    view = cluster.nodes[0].view
    return list(view.replicas(view.partition_of(SCHEMA.partition_key(key))))


def count_reads(cluster: Cluster) -> Counter[str]:
    """Record reads served per peer from now on (each node's RPC client counts the calls
    it makes, by the address called)."""
    served: Counter[str] = Counter()
    by_address = {n.address: n.peer_id for n in cluster.nodes}
    for node in cluster.nodes:
        real = node.rpc.get_record

        async def counted(address: str, *args: Any, _real: Any = real, **kw: Any) -> Any:
            served[by_address.get(address, address)] += 1
            return await _real(address, *args, **kw)

        node.rpc.get_record = counted  # type: ignore[method-assign]
    return served


async def written(cluster: Cluster, key: bytes) -> tuple[Node, dict[str, str]]:
    """An outsider of ``key`` (every replica over RPC) after a record was written."""
    (outside,) = set(cluster.by_id) - set(replicas_of(cluster, key))
    coordinator = cluster.by_id[outside]
    record = {"version": str(Version(int(time.time() * 1000) << 16, "peer-0")), "value": "v"}
    await coordinator.replicator.write_record(TEST_TABLE, key, record)
    await cluster.drain()
    return coordinator, record


async def test_a_read_asks_r_replicas_in_turn(cluster: Cluster) -> None:
    key = b"speculative/fast"
    coordinator, record = await written(cluster, key)
    # a loaded machine can make a replica slower than the default delay: that read would
    # rightly speculate; here no replica is slow, so no delay may trigger it
    coordinator.replicator.config = dataclasses.replace(CONFIG, read_speculation_ms=60_000.0)
    served = count_reads(cluster)
    for _ in range(6):
        assert await coordinator.replicator.read_record(TEST_TABLE, key) == record
    await cluster.drain()
    assert sum(served.values()) == 12  # R = 2 a read, not N = 3
    assert sorted(served) == sorted(replicas_of(cluster, key))  # rotated over all three
    assert all(n == 4 for n in served.values())


async def test_a_read_asks_every_replica_when_speculation_is_off(cluster: Cluster) -> None:
    key = b"speculative/off"
    coordinator, record = await written(cluster, key)
    coordinator.replicator.config = dataclasses.replace(CONFIG, read_speculation_ms=0.0)
    served = count_reads(cluster)
    assert await coordinator.replicator.read_record(TEST_TABLE, key) == record
    await cluster.drain()
    assert sum(served.values()) == 3


async def test_a_replica_down_is_replaced_by_the_third(cluster: Cluster) -> None:
    key = b"speculative/down"
    coordinator, record = await written(cluster, key)
    down = replicas_of(cluster, key)[0]
    cluster.set_down(down)  # ALIVE in gossip, but its connections are refused
    served = count_reads(cluster)
    for _ in range(3):
        assert await coordinator.replicator.read_record(TEST_TABLE, key) == record
    live = set(replicas_of(cluster, key)) - {down}
    assert sum(n for p, n in served.items() if p in live) == 6  # both others, every read
