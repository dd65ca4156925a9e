"""Fault scenario: garbage collection under an overwrite storm, one peer SIGKILLed in the
middle of a GC pass and restarted.

Five agents in network namespaces (N=3, W=2, R=2, 64 KiB chunks, fast gossip and repair
timers as in conftest.py), started with ``--set block_gc_grace_s=2 --set
block_gc_interval_s=1``, and a versioned bucket (``PUT /v1/buckets/{b}`` with
``{"versioning": "enabled"}``). One writer per key stores many versions (1-4 chunks, some
inline) through the ready hosts in turn and deletes old versions for good
(``DELETE /v1/objects/{b}/{k}?version=V``). Once deletes flow, h3 is SIGKILLed at a moment
its status shows a collection under way (it has deleted blocks in this storm and still has
releases queued or unreferenced blocks waiting), the storm goes on without it, and h3 is
restarted with its data.

Afterwards:

- every acknowledged version whose deletion was not acknowledged reads back byte-identical
  with ``GET ...?version=V`` from every running host (:func:`wait_all_readable`);
- every version whose deletion was acknowledged answers 404 everywhere
  (:func:`wait_versions_gone`);
- every such version is in its key's ``objects`` entry on exactly its N replicas, and every
  chunk of it is held *and referenced* by exactly its N replicas (:func:`wait_replicated`:
  no block a live version needs is missing or unreferenced anywhere it should be);
- the blocks of the deleted versions are collected from every host (space comes back
  after the crash too).

Run: ``sudo python -m pytest tests/faults -k gc -v`` (skipped without root / iproute2).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from dfspeer.errors import DfsError
from tests.faults.checks import (
    Acked,
    Ledger,
    ReplicaChecker,
    VersionHttp,
    gather_limited,
    wait_all_readable,
    wait_replicated,
    wait_versions_gone,
)
from tests.faults.conftest import CHUNK_BYTES, FAST_SETTINGS, REPAIR_SETTINGS, check_responsive
from tests.faults.membership import start_cluster, wait_ready, wait_view
from tests.faults.netns import FaultHost, FaultNet
from tests.faults.workload import payload

pytestmark = pytest.mark.faults

BUCKET = "gcstorm"
KEYS = 6
VICTIM = 3
GC_FLAGS = ["--set", "block_gc_grace_s=2", "--set", "block_gc_interval_s=1"]
INLINE_LIMIT = 4096  # PeerConfig.inline_threshold_bytes: no chunks at or below
MAX_VERSIONS_PER_KEY = 120  # bound of each writer's loop
STORM_DEADLINE_S = 120.0
DELETES_BEFORE_KILL = 10
OPS_WHILE_DOWN = 30
OPS_AFTER_RESTART = 30
KILL_WINDOW_S = 30.0
REPLICATION_DEADLINE_S = 90.0
READ_DEADLINE_S = 45.0
RECLAIM_DEADLINE_S = 60.0


class GcNet(FaultNet):
    """FaultNet whose agents run with the fast GC flags."""

    def command(self, host: FaultHost) -> list[str]:
        return [*super().command(host), *GC_FLAGS]


@pytest.fixture
def gc_net(fault_support: None, tmp_path: Path) -> Iterator[FaultNet]:
    """Five agents (N=3, W=2, R=2, GC grace 2 s, a pass every second), ready."""
    with GcNet(tmp_path, 5, settings={**FAST_SETTINGS, **REPAIR_SETTINGS}) as fault_net:
        fault_net.run(start_cluster(fault_net), timeout_s=120)
        yield fault_net
        check_responsive(fault_net)


def test_gc_overwrite_storm_with_peer_killed_mid_collection(gc_net: FaultNet) -> None:
    gc_net.run(_gc_storm(gc_net), timeout_s=280)


# ---------------------------------------------------------------------- helpers
def chunk_digests(data: bytes) -> set[bytes]:
    """The chunk digests an upload of ``data`` stores (fixed-size chunks; none inline)."""
    if len(data) <= INLINE_LIMIT:
        return set()
    return {
        hashlib.sha256(data[i : i + CHUNK_BYTES]).digest() for i in range(0, len(data), CHUNK_BYTES)
    }


def version_size(rng: random.Random) -> int:
    """Mostly 1-4 chunks; every fifth version inline."""
    if rng.random() < 0.2:
        return rng.randint(1, INLINE_LIMIT)
    return rng.randint(CHUNK_BYTES // 2, 4 * CHUNK_BYTES)


async def create_versioned_bucket(net: FaultNet, http: VersionHttp) -> None:
    """``PUT /v1/buckets/{BUCKET}`` with versioning enabled, then wait until every host
    reads it back enabled (which also refreshes each coordinator's bucket cache)."""
    url = f"{net.host(1).url}/v1/buckets/{BUCKET}"
    try:
        await http.request(1, "PUT", url, json={"versioning": "enabled"})
    except DfsError as exc:
        raise AssertionError(
            f"PUT /v1/buckets/{BUCKET} {{'versioning': 'enabled'}} failed: {exc.code} "
            f"({exc.status}) {exc.message} -- is the bucket route there?"
        ) from exc
    deadline = time.monotonic() + 30.0
    for i in net.indices:
        while True:
            try:
                _, _, body = await http.request(i, "GET", f"{net.host(i).url}/v1/buckets/{BUCKET}")
                seen = body.decode(errors="replace")
            except DfsError as exc:
                seen = f"{exc.code} ({exc.status})"
            if '"versioning": "enabled"' in seen or '"versioning":"enabled"' in seen:
                break
            if time.monotonic() > deadline:
                raise AssertionError(f"h{i} does not see {BUCKET} versioned: {seen}")
            await asyncio.sleep(0.2)


async def until(what: str, check: Callable[[], bool], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        await asyncio.sleep(0.05)


@dataclass
class Storm:
    """One writer per key: PUT a new version, now and then DELETE an old one for good,
    through the ready hosts in turn, until stopped (or a bound is reached)."""

    net: FaultNet
    http: VersionHttp
    ledger: Ledger
    targets: list[int] = field(default_factory=list)
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    ops: int = 0
    deletes: int = 0
    errors: list[str] = field(default_factory=list)
    odd: list[str] = field(default_factory=list)

    def coordinator(self, n: int) -> int:
        """The ``n``-th coordinator: the ready hosts in turn (the victim is taken out
        right before it is killed and put back once it answers ``/ready`` again)."""
        return self.targets[n % len(self.targets)]

    async def writer(self, k: int) -> None:
        rng = random.Random(7000 + k)
        key = f"key-{k}"
        kept: list[Acked] = []
        deadline = time.monotonic() + STORM_DEADLINE_S
        for n in range(MAX_VERSIONS_PER_KEY):
            if self.stop.is_set() or time.monotonic() > deadline:
                return
            data = payload(100_000 * k + n, version_size(rng))
            host = self.coordinator(n + k)
            try:
                info = await self.net.client(host).put_object(BUCKET, key, data)
            except DfsError as exc:
                self.ledger.fail(BUCKET, f"{key}#{n}", exc)
                self.errors.append(f"PUT {key}#{n} via h{host}: {exc.code}")
            else:
                kept.append(self.ledger.ack_version(BUCKET, key, data, info))
            self.ops += 1
            if len(kept) >= 3 and rng.random() < 0.6:
                old = kept.pop(rng.randrange(len(kept) - 1))  # never the newest
                await self.delete(old, self.coordinator(n + k + 1))
            await asyncio.sleep(0)

    async def delete(self, acked: Acked, host: int) -> None:
        try:
            await self.http.delete(host, acked.bucket, acked.key, acked.version)
        except DfsError as exc:
            if exc.status == 404:
                # a delete that found nothing removed nothing: the version must still be
                # readable, so it stays expected (and the final checks catch a loss)
                self.odd.append(f"DELETE {acked.key} v{acked.version} via h{host}: 404")
            else:
                self.ledger.forget_version(acked.version, f"{exc.code}: {exc}")
                self.errors.append(f"DELETE {acked.key} v{acked.version} via h{host}: {exc.code}")
        else:
            self.ledger.remove_version(acked.version)
            self.deletes += 1
        self.ops += 1


async def kill_mid_collection(net: FaultNet, storm: Storm, victim: int) -> dict[str, Any]:
    """SIGKILL ``victim`` once its status shows a collection under way: it has deleted
    blocks since the storm began and still has releases queued or unreferenced blocks
    waiting. Returns its last ``gc`` status."""
    client = net.client(victim, timeout_s=5.0)
    start = (await client.status())["gc"]
    deadline = time.monotonic() + KILL_WINDOW_S
    gc: dict[str, Any] = start
    while time.monotonic() < deadline:
        gc = (await client.status())["gc"]
        collecting = gc["blocks_deleted"] > start["blocks_deleted"]
        pending = gc["releases_pending"] + gc["blocks_unreferenced"] > 0
        if collecting and pending:
            storm.targets.remove(victim)
            net.kill(victim)
            return gc
        await asyncio.sleep(0.05)
    raise AssertionError(
        f"h{victim} showed no collection under way within {KILL_WINDOW_S:.0f} s of the "
        f"deletes (gc at start {start}, last {gc}; {storm.deletes} deletes acknowledged)"
    )


async def wait_reclaimed(
    net: FaultNet, ledger: Ledger, timeout_s: float = RECLAIM_DEADLINE_S
) -> int:
    """Poll until no running host holds a block of a deleted version (other than blocks a
    kept version also has); returns how many such blocks were checked."""
    keep: set[bytes] = set()
    for acked in ledger.versions.values():
        keep |= chunk_digests(acked.data)
    gone: set[bytes] = set()
    for acked in ledger.removed.values():
        gone |= chunk_digests(acked.data)
    gone -= keep  # (payloads are unique per version: nothing is shared in practice)
    checker = ReplicaChecker(net)
    deadline = time.monotonic() + timeout_s
    try:
        while True:
            held = await gather_limited((checker.block_holders(d) for d in sorted(gone)), 16)
            left = {d: h for d, h in zip(sorted(gone), held, strict=True) if h}
            if not left:
                return len(gone)
            if time.monotonic() > deadline:
                sample = [f"{d.hex()[:16]} on {[f'h{i}' for i in h]}" for d, h in left.items()]
                gc = {i: (await net.client(i).status())["gc"] for i in net.running()}
                raise AssertionError(
                    f"{len(left)} of {len(gone)} blocks of deleted versions still held "
                    f"after {timeout_s:.0f} s: {sample[:10]}; gc status {gc}"
                )
            await asyncio.sleep(1.0)
    finally:
        await checker.close()


# ---------------------------------------------------------------------- scenario
async def _gc_storm(net: FaultNet) -> None:
    ledger = Ledger()
    async with VersionHttp(net) as http:
        await create_versioned_bucket(net, http)
        storm = Storm(net, http, ledger, targets=list(net.indices))
        writers = asyncio.gather(*(storm.writer(k) for k in range(KEYS)))
        try:
            await until("the first deletes", lambda: storm.deletes >= DELETES_BEFORE_KILL, 60)
            gc_at_kill = await kill_mid_collection(net, storm, VICTIM)
            down_at = storm.ops
            await wait_view(net, [i for i in net.indices if i != VICTIM], timeout_s=30)
            await until("ops while h3 is down", lambda: storm.ops >= down_at + OPS_WHILE_DOWN, 60)
            net.start(VICTIM)
            await wait_ready(net, [VICTIM])
            storm.targets.append(VICTIM)
            up_at = storm.ops
            await until("ops after the restart", lambda: storm.ops >= up_at + OPS_AFTER_RESTART, 60)
        finally:
            storm.stop.set()
            await writers
    print(
        f"gc storm: {ledger.summary()}; {storm.deletes} deletes; h{VICTIM} killed with gc "
        f"{gc_at_kill}; errors {storm.errors[:10]}; odd {storm.odd[:10]}"
    )
    assert len(ledger.versions) >= 3 * KEYS and len(ledger.removed) >= 2 * DELETES_BEFORE_KILL, (
        ledger.summary()
    )
    await wait_view(net, net.indices)
    await wait_all_readable(net, ledger, timeout_s=READ_DEADLINE_S)
    await wait_versions_gone(net, ledger, timeout_s=READ_DEADLINE_S)
    report = await wait_replicated(net, ledger, timeout_s=REPLICATION_DEADLINE_S)
    reclaimed = await wait_reclaimed(net, ledger)
    print(
        f"gc storm: {report.entries} kept versions on exactly their replicas with "
        f"{report.chunks} referenced chunks; {reclaimed} blocks of deleted versions collected"
    )
    deleted = {
        f"h{i}": int((await net.client(i).status())["gc"]["blocks_deleted"]) for i in net.running()
    }
    print(f"gc storm: blocks deleted per host since its (re)start: {deleted}")
    assert sum(deleted.values()) > 0, "no block was ever collected"
