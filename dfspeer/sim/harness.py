"""One seeded run of the whole-peer simulation: build N peers, run the workload under the
fault schedule, heal, settle, check the invariants.

The peers start together and join each other through the gossip seeds (every first
peer's gossip address, as a deployment lists them); the clients start once every peer
has every other in its ring (the cluster is formed). Membership is each peer's own SWIM
core from then on (:mod:`.gossip`): a crash is noticed by the others' probes, a restart
rejoins with a new core, a drain gossips weight 0 and leaves. The fresh-read check is on
while no more than N peers have ever run, except for a key last written before a wipe
(:mod:`.workload` says why that is exact).

Everything random comes from one :class:`random.Random` seeded with the run's seed (the
global :mod:`random` module is seeded from it too, for the product's jitter), time is the
loop's virtual time, and the event log (virtual time + event) is the run's fingerprint:
the same seed gives the same log. Set ``PYTHONHASHSEED`` (``simulations/cluster_sim.py``
does) for identical logs across processes; within one process they always are.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from dataclasses import dataclass, field
from pathlib import Path

from dfspeer.cluster.table import TableRegistry
from dfspeer.config import PeerConfig
from dfspeer.gossip import Keyring
from dfspeer.model import default_schemas
from dfspeer.peer_setup import swim_config
from dfspeer.sim.checks import check_placement, check_reads, check_refcounts
from dfspeer.sim.clock import PeerTasks, WallClocks, patched_time
from dfspeer.sim.disk import SimDisk
from dfspeer.sim.faults import Fault, draw_schedule
from dfspeer.sim.loop import VirtualTimeLoop
from dfspeer.sim.network import SimNetwork
from dfspeer.sim.peer import GossipSettings, SimPeer
from dfspeer.sim.workload import Workload

COMMIT_DELAY_S = (0.001, 0.01)
"""Range of a simulated commit + fsync, seconds: long enough that crashes catch writes
in flight (lost, never acknowledged)."""
DRAIN_WAIT_S = 600
"""Longest wait for a drain to finish, virtual seconds (checked every second)."""
FORM_WAIT_S = 60
REUPLOAD_PERIODS = 3
"""A delete's ``reput`` comes up to this many lifecycle periods (``block_gc_interval_s``)
after it (:mod:`.workload`): by then its references are usually released."""
"""Longest wait for the first peers to see each other in their rings before the clients
start, virtual seconds (checked every 0.1 s)."""

SIM_CONFIG = PeerConfig(
    chunk_size_bytes=64 * 1024,
    default_chunking="fixed",
    partition_bits=4,
    replication_factor=3,
    write_quorum=2,
    read_quorum=2,
    request_timeout_s=2.0,
    map_size_bytes=64 << 20,
    anti_entropy_interval_s=20.0,
    dead_member_evict_s=10.0,
    hint_delivery_interval_s=5.0,
    block_gc_grace_s=30.0,
    block_gc_interval_s=5.0,
    scrub_rate_bytes_per_s=0,
    tombstone_grace_s=3600.0,
    upload_expiry_s=600.0,
    suspicion_max_timeout_mult=2,
    push_pull_interval_s=10.0,
    reconnect_interval_s=10.0,
).validate()
"""Small chunks, 16 partitions, N = 3, W = R = 2, and repair / GC periods short enough
to run many times in a simulated run. Gossip keeps the product's probe and gossip timings
(1 s probes, 0.5 s probe timeout, 0.2 s gossip rounds, ``suspicion_mult`` 4) but three
knobs are shorter: ``suspicion_max_timeout_mult`` 2 (product 6): below four members no
peer can confirm a suspicion (Lifeguard's k is 0), so every suspicion runs its longest
timeout, 6 x 4 s = 24 s with the product's value, longer than most simulated crashes; with
2 a crashed peer is declared DEAD ~10 s after it stops answering. A DEAD member leaves
the rings after ``dead_member_evict_s`` 10 s. Full-state push-pull and the reconnect to
DEAD members run every 10 s instead of 30 s, so a healed partition is whole again well
within the settling time."""


@dataclass(frozen=True)
class SimSettings:
    """One run: ``seed``, ``peers`` (N replicas each, N = min(3, peers)), ``ops`` client
    operations over ``keys`` keys (default ops / 4, at least 4), ``faults`` faults
    (default ops / 15, at least 2), ``settle_s`` virtual seconds of healing;
    ``schedule``: these faults instead of the drawn ones (tests; the draw still happens,
    so the rest of the run draws as it would)."""

    seed: int
    peers: int = 3
    ops: int = 60
    keys: int = 0
    faults: int = -1
    settle_s: float = 60.0
    schedule: tuple[Fault, ...] | None = None

    def resolved(self) -> SimSettings:
        return dataclasses.replace(
            self,
            keys=self.keys or max(4, self.ops // 4),
            faults=self.faults if self.faults >= 0 else max(2, self.ops // 15),
        )


@dataclass
class SimResult:
    """What a run did: its event log, fault schedule, invariant violations and counts."""

    settings: SimSettings
    schedule: list[Fault]
    log: list[str] = field(default_factory=list)
    violations: list[str] = field(default_factory=list)
    acked: int = 0
    virtual_s: float = 0.0
    messages: int = 0
    dropped: int = 0
    datagrams: int = 0
    datagrams_dropped: int = 0
    lost_writes: int = 0
    reused: int = 0
    """Puts issued with reused content (:mod:`.workload`)."""
    reputs: int = 0
    """Of those, puts of a deleted key's bytes again."""
    dedup_skipped: int = 0
    """Chunks written as references only (the replicas held the block), summed over the
    coordinators' :class:`~dfspeer.objects.dedup.DedupWriter` counters."""
    dedup_rechecks_missed: int = 0
    """Reference-only attempts whose re-check found the block gone, so it was sent."""

    @property
    def ok(self) -> bool:
        return not self.violations

    def report(self) -> str:
        """The schedule and the violations, for a failing seed."""
        lines = [f"seed {self.settings.seed}: {len(self.violations)} violation(s)"]
        lines += ["fault schedule:", *(f"  {f}" for f in self.schedule)]
        lines += ["violations:", *(f"  {v}" for v in self.violations[:40])]
        return "\n".join(lines)


def run_simulation(settings: SimSettings, root: Path) -> SimResult:
    """Run one simulation with data directories under ``root`` (must be empty); blocking
    (it runs its own virtual-time loop). Returns the result; raises nothing for a
    violated invariant (see :attr:`SimResult.violations`)."""
    loop = VirtualTimeLoop()
    tasks = PeerTasks()
    loop.set_task_factory(tasks)  # type: ignore[arg-type]
    sim = Simulation(settings.resolved(), root, loop, tasks)
    saved = random.getstate()
    random.seed(sim.rng.getrandbits(64))
    try:
        with patched_time(sim.clocks):
            loop.run_until_complete(sim.run())
    finally:
        random.setstate(saved)
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()
    return sim.result


class Simulation:
    """The state of one run (see :func:`run_simulation`)."""

    def __init__(
        self, settings: SimSettings, root: Path, loop: VirtualTimeLoop, tasks: PeerTasks
    ) -> None:
        self.settings = settings
        self.loop = loop
        self.rng = random.Random(settings.seed)
        self.clocks = WallClocks(loop)
        self.net = SimNetwork(self.rng, self.log)
        self.config = dataclasses.replace(
            SIM_CONFIG,
            replication_factor=min(3, settings.peers),
            write_quorum=min(2, settings.peers),
            read_quorum=min(2, settings.peers),
        )
        self.tables = TableRegistry(default_schemas())
        self.root = root
        self.tasks = tasks
        self.disks: dict[str, SimDisk] = {}
        self.peers: list[SimPeer] = []
        self.result = SimResult(settings, [])
        first = [f"p{i}" for i in range(settings.peers)]
        self.gossip = GossipSettings(
            swim_config(self.config),
            Keyring([bytes(32)]),
            self.rng,
            tuple(self.net.gossip_address_of(p) for p in first),
            self.log,
        )
        for i in range(settings.peers):
            self._add_peer(f"p{i}")
        span = settings.ops * 0.25 * 1.2 / 4
        schedule = draw_schedule(
            self.rng, [p.peer_id for p in self.peers], span_s=span, count=settings.faults
        )
        self.result.schedule = schedule if settings.schedule is None else list(settings.schedule)
        self.workload = Workload(
            self.rng,
            self.active,
            self.log,
            ops=settings.ops,
            keys=settings.keys,
            reupload_within_s=REUPLOAD_PERIODS * self.config.block_gc_interval_s,
            fresh_reads=lambda: len(self.peers) <= self.config.replication_factor,
        )

    def _add_peer(self, pid: str) -> SimPeer:
        disk = self.disks[pid] = SimDisk(self.rng, COMMIT_DELAY_S)
        peer = SimPeer(
            pid,
            self.config,
            data_dir=self.root / pid,
            tables=self.tables,
            network=self.net,
            clocks=self.clocks,
            tasks=self.tasks,
            disk=disk,
            gossip=self.gossip,
        )
        self.peers.append(peer)
        return peer

    def active(self) -> list[SimPeer]:
        """The peers that have not left (up or down)."""
        return [p for p in self.peers if not p.left]

    def log(self, event: str) -> None:
        self.result.log.append(f"{self.loop.time():10.4f} {event}")

    # ------------------------------------------------------------------ the run
    async def run(self) -> None:
        for p in self.peers:
            await p.start()
        self.log(f"started {len(self.peers)} peers")
        await self._formed()
        faults = [asyncio.create_task(self._fault(f)) for f in self.result.schedule]
        await self.workload.run()
        await asyncio.gather(*faults)
        await self._heal()
        await self._check()
        for p in self.peers:
            self._count_dedup(p)
            await p.stop()
        net = self.net
        self.log(
            f"end; {net.messages} messages, {net.datagrams} datagrams, trace {net.fingerprint()}"
        )
        r = self.result
        r.acked, r.virtual_s = self.workload.acked, self.loop.time()
        r.messages, r.dropped = net.messages, net.dropped
        r.datagrams, r.datagrams_dropped = net.datagrams, net.datagrams_dropped
        r.lost_writes = sum(d.lost_writes for d in self.disks.values())
        r.reused, r.reputs = self.workload.reused, self.workload.reputs

    def _count_dedup(self, peer: SimPeer) -> None:
        """Add ``peer``'s dedup counters to the result (before it stops or crashes)."""
        if peer.parts is not None:
            counters = peer.objects.dedup.counters
            self.result.dedup_skipped += counters["dedup_chunks_skipped"]
            self.result.dedup_rechecks_missed += counters["dedup_rechecks_missed"]

    async def _formed(self) -> None:
        """Wait until every peer has every other one in its ring (clients connect to a
        formed cluster), for at most :data:`FORM_WAIT_S`."""
        everyone = tuple(sorted(p.peer_id for p in self.peers))
        for _ in range(FORM_WAIT_S * 10):
            if all(p.ready and p.view.ring_peers() == everyone for p in self.peers):
                break
            await asyncio.sleep(0.1)
        self.log(f"formed: {'yes' if all(p.ready for p in self.peers) else 'not yet'}")

    async def _fault(self, f: Fault) -> None:
        await asyncio.sleep(f.at_s)
        self.log(f"fault {f}")
        if f.kind in ("crash", "wipe"):
            await self._crash(f)
        elif f.kind == "partition":
            others = [p.peer_id for p in self.peers if p.peer_id not in f.peers]
            pairs = {frozenset((a, b)) for a in f.peers for b in others}
            self.net.faults.cut |= pairs
            await asyncio.sleep(f.for_s)
            self.net.faults.cut -= pairs
        elif f.kind == "lossy":
            self.net.faults.drop = f.value
            await asyncio.sleep(f.for_s)
            self.net.faults.drop = 0.0
        elif f.kind == "slow":
            self.net.faults.delay_s = (0.0005, f.value)
            await asyncio.sleep(f.for_s)
            self.net.faults.delay_s = (0.0005, 0.005)
        elif f.kind == "join":
            await self._add_peer(f.peers[0]).start()
        elif f.kind == "drain":
            await self._drain(f.peers[0])
        else:
            for pid in f.peers:
                self.clocks.skew_s[pid] = self.clocks.skew_s.get(pid, 0.0) + f.value
        self.log(f"fault over {f.kind} {','.join(f.peers)}")

    async def _crash(self, f: Fault) -> None:
        peer = next(p for p in self.peers if p.peer_id == f.peers[0])
        if not peer.up or peer.left or peer.view.is_draining(peer.peer_id):
            self.log(f"skipped {f.kind} of {peer.peer_id}: down, draining or gone")
            return
        if f.kind == "wipe":
            self.workload.wipes += 1  # before: ops issued from now on miss its old disk
        self._count_dedup(peer)
        await peer.crash()
        if f.kind == "wipe":
            peer.wipe()
        await asyncio.sleep(f.for_s)
        await peer.start()

    async def _drain(self, peer_id: str) -> None:
        """Drain ``peer_id`` with the product's Drainer; once it left, stop it."""
        peer = next(p for p in self.peers if p.peer_id == peer_id)
        ring = peer.view.ring_peers() if peer.up else ()
        if not peer.up or peer.left or len(ring) <= self.config.replication_factor:
            self.log(f"skipped drain of {peer_id}: down, gone, or the ring would be short")
            return

        async def start() -> None:
            peer.drainer.start()

        await peer.run(start())
        for _ in range(DRAIN_WAIT_S):
            await asyncio.sleep(1.0)
            if peer.left or not peer.up or peer.drainer.state != "draining":
                break
        self.log(f"drain of {peer_id}: {'left' if peer.left else 'unfinished'}")
        if peer.left:
            self._count_dedup(peer)
            await peer.stop()

    async def _heal(self) -> None:
        """End every fault, let background repair run, then force a few rounds of it."""
        self.net.heal()
        self.log("healed")
        await asyncio.sleep(self.settings.settle_s)
        for _ in range(2):
            for p in self.active():
                await p.run(p.maintenance.handoff.deliver_once())
            for p in self.active():
                await p.run(p.repair.run_round())
            for p in self.active():
                await p.run(p.lifecycle.run_pass())
            await asyncio.sleep(self.config.block_gc_grace_s + self.config.block_gc_interval_s)
        for p in self.active():
            await p.run(p.objects.drain())
            await p.run(p.maintenance.replicator.drain())
        self.log("settled")

    async def _check(self) -> None:
        r = self.result
        r.violations += self.workload.history.violations
        r.violations += await check_reads(self.active(), self.workload.history)
        r.violations += check_placement(self.active(), self.workload.keys)
        r.violations += check_refcounts(self.active())
        for v in r.violations:
            self.log(f"violation {v}")
