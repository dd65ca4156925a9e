"""The lifecycle aborts and releases only what a quorum has settled: a null version is
superseded only by one complete on W replicas (a failed put's copy on one replica does
not count), and a queued release goes out only once its version is aborted on W replicas
(an abort that failed its quorum and was retracted withdraws it). Pure rules
(:mod:`dfspeer.model.replica_states`) and the lifecycle on an in-process 3-peer cluster
(N = 3, W = R = 2)."""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from dfspeer.model.block_refs import BLOCK_REFS_TABLE, ref_key
from dfspeer.model.objects import (
    ABORTED,
    COMPLETE,
    OBJECTS_TABLE,
    RELEASES_TABLE,
    UPLOADING,
    ObjectEntry,
    ObjectsSchema,
    ObjectVersion,
    table_key,
)
from dfspeer.model.replica_states import (
    RELEASE,
    WAIT,
    WITHDRAW,
    ReplicaEntries,
    acknowledged_null,
    release_verdict,
)
from tests.unit.maintenance_cluster import CHUNK, Cluster, Node, make_cluster
from tests.unit.test_gc_cluster import GC0, assert_live, digests_of, read_all

SCHEMA = ObjectsSchema()
BUCKET, KEY = "bkt", "k"


# ---------------------------------------------------------------- the rules
def entry(*versions: tuple[str, str]) -> ObjectEntry:
    """An entry of null versions given as (id, state)."""
    return ObjectEntry(BUCKET, KEY, tuple(ObjectVersion(i, s, null=True) for i, s in versions))


def held(replicas: int, *answers: ObjectEntry | None) -> ReplicaEntries:
    return ReplicaEntries(replicas, answers)


def hlc(unix_s: float) -> str:
    """A version id written at ``unix_s``."""
    return f"{int(unix_s * 1000) << 16:016x}-p0"


V1, V2, V3 = hlc(1000.0), hlc(2000.0), hlc(3000.0)


@pytest.mark.parametrize(
    ("found", "expected"),
    [
        # V2 complete on one replica only (a failed put's copy): V1 is the acknowledged one
        (held(3, entry((V1, COMPLETE), (V2, COMPLETE)), entry((V1, COMPLETE))), V1),
        (held(3, entry((V1, COMPLETE), (V2, COMPLETE)), entry((V2, COMPLETE))), V2),
        # V3 on W replicas but too recent: its coordinator may still abort it
        (held(3, entry((V2, COMPLETE), (V3, COMPLETE)), entry((V2, COMPLETE), (V3, COMPLETE))), V2),
        # V2 on W replicas, but aborted on a third (its coordinator's abort is spreading)
        (
            held(
                3,
                entry((V1, COMPLETE), (V2, COMPLETE)),
                entry((V1, COMPLETE), (V2, COMPLETE)),
                entry((V2, ABORTED)),
            ),
            V1,
        ),
        (held(3, entry((V1, COMPLETE)), None, None), ""),  # on fewer than W
        (held(3, entry((V1, ABORTED)), entry((V1, ABORTED))), ""),
        (held(3, entry((V1, UPLOADING)), entry((V1, UPLOADING))), ""),
        (held(3, entry(("v1", COMPLETE)), entry(("v1", COMPLETE))), ""),  # not HLC: age unknown
    ],
)
def test_acknowledged_null_is_the_newest_complete_on_w_replicas_and_old_enough(
    found: ReplicaEntries, expected: str
) -> None:
    assert acknowledged_null(found, 2, 2500.0) == expected


@pytest.mark.parametrize(
    ("found", "verdict"),
    [
        (held(3, entry(("v", ABORTED)), entry(("v", ABORTED))), RELEASE),  # settled on W
        (held(3, entry(("v", ABORTED)), entry(("v", COMPLETE))), WAIT),  # under way
        (held(3, entry(("v", ABORTED)), None), WAIT),
        (held(3, entry(("v", ABORTED))), WAIT),  # the others did not answer
        (held(3, None, entry(("v", COMPLETE)), entry(("v", COMPLETE))), WITHDRAW),  # retracted
        (held(3, None, entry(("v", UPLOADING))), WITHDRAW),
        (held(3, None, None, entry(("v", ABORTED))), RELEASE),  # live nowhere, all answered
        (held(3, None, None, None), RELEASE),  # gone everywhere (purged)
        (held(3, None, None), WAIT),  # gone from those that answered: not enough
        (held(0), WAIT),
    ],
)
def test_release_verdict(found: ReplicaEntries, verdict: str) -> None:
    assert release_verdict(found, "v", 2) == verdict


# ---------------------------------------------------------------- on a cluster
@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async with make_cluster(tmp_path, 3, GC0, objects=True, maintenance=False) as cl:
        yield cl


def key_replicas(cluster: Cluster) -> list[Node]:
    """The key's replicas, the first (the one that runs its expiry) first."""
    view = cluster.nodes[0].view
    return [cluster.by_id[p] for p in view.replicas(view.partition_of(table_key(BUCKET, KEY)))]


async def land(node: Node, version: ObjectVersion) -> None:
    """Merge ``version`` into the key's entry on ``node`` alone (a write that reached only
    this replica), as a replica applies a write: in one transaction with its hook."""
    record = SCHEMA.encode(ObjectEntry(BUCKET, KEY, (version,)))
    await node.store.table(OBJECTS_TABLE).update(
        table_key(BUCKET, KEY), lambda cur: SCHEMA.merge_records(cur, record)
    )


async def retract(node: Node, version_id: str) -> None:
    """What a coordinator's retraction of its failed one-version write does on ``node``."""
    record = SCHEMA.encode(ObjectEntry(BUCKET, KEY, (ObjectVersion(version_id, ABORTED),)))
    token = SCHEMA.retract_token(record)
    await node.store.table(OBJECTS_TABLE).update(
        table_key(BUCKET, KEY), lambda cur: SCHEMA.retract_record(cur, token)
    )


def state_on(node: Node, version_id: str) -> str | None:
    record = node.store.table(OBJECTS_TABLE).get(table_key(BUCKET, KEY))
    found = SCHEMA.decode(record).get(version_id) if record is not None else None
    return found.state if found is not None else None


def queued(node: Node) -> int:
    return node.store.table(RELEASES_TABLE).count()


def newer_null(node: Node) -> ObjectVersion:
    """A complete inline null version newer than everything ``node`` has written."""
    now = time.time()
    vid = str(node.service.clock.next_version(node.peer_id))
    return ObjectVersion(vid, COMPLETE, size=5, inline=b"fresh", modified=now, created=now)


def later(node: Node) -> None:
    """Run ``node``'s lifecycle as if ``upload_expiry_s`` had passed: every coordinator
    of the writes so far has finished, one way or the other."""
    node.lifecycle.clock = lambda: time.time() + GC0.upload_expiry_s + 1.0


async def test_expiry_keeps_a_version_superseded_only_by_a_failed_put(cluster: Cluster) -> None:
    first, second, third = key_replicas(cluster)
    data = os.urandom(2 * CHUNK)
    acked = await first.service.put_object(BUCKET, KEY, data)
    await cluster.drain()
    failed = newer_null(first)
    await land(first, failed)  # a put that failed its quorum left its copy here only
    later(first)

    assert await first.lifecycle.expire_once() == 0
    assert [state_on(n, acked.version) for n in (first, second, third)] == [COMPLETE] * 3

    await retract(first, failed.id)  # the failed put's coordinator retracts it
    for n in cluster.nodes:
        await n.lifecycle.run_pass()  # grace 0: anything released is collected at once
    for d in digests_of(data):
        await assert_live(cluster, d)
    assert await read_all(second, BUCKET, KEY) == data


async def test_expiry_waits_until_the_superseding_version_is_settled(cluster: Cluster) -> None:
    first, second, third = key_replicas(cluster)
    acked = await first.service.put_object(BUCKET, KEY, os.urandom(CHUNK))
    await cluster.drain()
    newer = newer_null(first)
    await land(first, newer)
    await land(third, newer)  # on W replicas (its coordinator saw the answers or not)

    # recent: its coordinator may yet take it for failed and abort it
    assert await first.lifecycle.expire_once() == 0
    later(first)
    await land(second, ObjectVersion(newer.id, ABORTED))  # ... as it does here
    assert await first.lifecycle.expire_once() == 0
    assert [state_on(n, acked.version) for n in (first, second, third)] == [COMPLETE] * 3


async def test_expiry_aborts_a_version_superseded_by_a_settled_one(cluster: Cluster) -> None:
    first, second, third = key_replicas(cluster)
    acked = await first.service.put_object(BUCKET, KEY, os.urandom(CHUNK))
    await cluster.drain()
    newer = newer_null(first)
    await land(first, newer)
    await land(third, newer)  # acknowledged, but its coordinator died before superseding
    later(first)

    assert await first.lifecycle.expire_once() == 1
    await cluster.drain()  # the write returned after W answers; the third is in flight
    assert [state_on(n, acked.version) for n in (first, second, third)] == [ABORTED] * 3
    assert await read_all(second, BUCKET, KEY) == b"fresh"


async def test_a_retracted_abort_withdraws_its_queued_release(cluster: Cluster) -> None:
    first, second, third = key_replicas(cluster)
    data = os.urandom(3 * CHUNK)
    acked = await first.service.put_object(BUCKET, KEY, data)
    await cluster.drain()
    await land(second, ObjectVersion(acked.version, ABORTED))  # an abort lands on one replica
    assert queued(second) == 3  # the hook queued the release of each chunk's reference

    assert await second.lifecycle.release_once() == 0  # on one replica: it may be retracted
    assert queued(second) == 3
    await retract(second, acked.version)  # it failed its quorum: retracted
    assert await second.lifecycle.release_once() == 0
    assert queued(second) == 0  # withdrawn: the version is live, aborted nowhere
    assert second.lifecycle.counters["releases_withdrawn"] == 3

    await land(second, ObjectVersion(acked.version, COMPLETE))  # anti-entropy's part, short
    for n in cluster.nodes:
        await n.lifecycle.run_pass()
    for d in digests_of(data):
        await assert_live(cluster, d)
        refs = [
            n.store.table(BLOCK_REFS_TABLE).get(ref_key(d, acked.version)) for n in cluster.nodes
        ]
        assert not any(r["deleted"] for r in refs if r is not None)
    assert await read_all(third, BUCKET, KEY) == data


async def test_a_release_goes_out_once_the_abort_is_on_w_replicas(cluster: Cluster) -> None:
    first, second, third = key_replicas(cluster)
    data = os.urandom(2 * CHUNK)
    acked = await first.service.put_object(BUCKET, KEY, data)
    await cluster.drain()
    await land(second, ObjectVersion(acked.version, ABORTED))
    assert await second.lifecycle.release_once() == 0

    await land(third, ObjectVersion(acked.version, ABORTED))  # now on W: cannot be undone
    assert await second.lifecycle.release_once() == 2
    assert queued(second) == 0
    for n in cluster.nodes:
        await n.lifecycle.run_pass()
    assert all(queued(n) == 0 for n in cluster.nodes)
    for d in digests_of(data):
        assert await cluster.holders(d) == set()
