"""Deterministic simulation of whole dfspeer peers (ring, tables, replication, handoff,
anti-entropy, rebalance, GC, coordinator) under a seeded fault schedule.

The peers are the product's own parts (:mod:`dfspeer.sim`): N of them in this process on
a virtual-time event loop, an in-memory network, and a simulated durability boundary;
membership is each peer's own SWIM gossip core, over that network. Clients run ``--ops``
operations -- puts, overwrites, deletes, versioned deletes, ranged reads; a share of the
puts reuse earlier content, and deleted bytes are put again, so chunks are deduplicated
around the GC of blocks whose references went -- through random ready peers while
faults drawn from the seed crash and restart peers (losing their unacknowledged writes),
wipe one, partition the network, drop, delay and reorder messages
(RPCs, gossip datagrams and push-pulls alike) and skew clocks. Then the network heals,
repair runs, and the invariants of :mod:`dfspeer.sim.checks` are checked. A failing seed
prints its fault schedule and its violations; ``--seed S --log`` prints the whole event
log, which is identical on every replay (this script pins ``PYTHONHASHSEED``). After
FoundationDB's simulation testing and TigerBeetle's VOPR.

Usage::

    python simulations/cluster_sim.py --seed 7 --peers 3 --ops 200
    python simulations/cluster_sim.py --seed 7 --log          # the event log of one seed
    python simulations/cluster_sim.py --seeds 1-1000 --ops 60  # a benchmark: ops per wall s
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dfspeer.sim.harness import SimResult, SimSettings, run_simulation


def seed_range(text: str) -> list[int]:
    """``"7"`` -> [7]; ``"1-1000"`` -> [1, ..., 1000]."""
    lo, _, hi = text.partition("-")
    return list(range(int(lo), int(hi or lo) + 1))


def run_one(settings: SimSettings) -> SimResult:
    """One seed, in a fresh temporary directory."""
    with tempfile.TemporaryDirectory(prefix=f"dfspeer-sim-{settings.seed}-") as root:
        return run_simulation(settings, Path(root))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--seeds", default=None, help="a range of seeds, e.g. 1-1000")
    p.add_argument("--peers", type=int, default=3)
    p.add_argument("--ops", type=int, default=60, help="client operations a seed")
    p.add_argument("--faults", type=int, default=-1, help="faults a seed (default ops/15)")
    p.add_argument("--log", action="store_true", help="print the event log of each seed")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.CRITICAL)  # the product's own logs are expected noise
    seeds = seed_range(args.seeds) if args.seeds else [args.seed]
    failed: list[int] = []
    ops = virtual = 0.0
    started = time.perf_counter()
    for seed in seeds:
        settings = SimSettings(seed=seed, peers=args.peers, ops=args.ops, faults=args.faults)
        result = run_one(settings)
        ops += args.ops
        virtual += result.virtual_s
        if args.log:
            print("\n".join(result.log))
        if not result.ok:
            failed.append(seed)
            print(result.report(), flush=True)
        elif len(seeds) == 1:
            print(
                f"seed {seed}: ok, {result.acked} writes acknowledged, {result.messages} "
                f"messages ({result.dropped} lost), {result.datagrams} gossip datagrams "
                f"({result.datagrams_dropped} lost), {result.lost_writes} unacknowledged "
                f"writes lost in crashes, {result.reused} puts of reused content "
                f"({result.reputs} of deleted bytes), "
                f"{result.dedup_skipped} chunks deduplicated ({result.dedup_rechecks_missed} "
                f"re-checks missed), {result.virtual_s:.0f} s simulated"
            )
    wall = time.perf_counter() - started
    print(
        f"{len(seeds)} seed(s), {len(failed)} failed{': ' + str(failed) if failed else ''}; "
        f"{ops:.0f} ops in {wall:.1f} s wall = {ops / wall:.1f} simulated ops / wall s; "
        f"{virtual / wall:.0f} simulated s / wall s"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    if os.environ.get("PYTHONHASHSEED") != "0":  # identical logs across processes
        os.environ["PYTHONHASHSEED"] = "0"
        os.execv(sys.executable, [sys.executable, *sys.argv])
    sys.exit(main())
