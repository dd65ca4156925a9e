"""Ring balance and movement: the data behind dfspeer.ring's defaults.

Run: ``python simulations/ring_balance.py`` (under a minute on one core; ``--seeds N`` for
more rings per cell, ``--step S`` for the M step of the sweep). Every figure comes from the
real :class:`dfspeer.ring.Ring`.

Figures (replication factor 3, random 48-bit hex peer ids, seeded):

* ``max/mean`` and ``min/mean``: replica assignments of the busiest / idlest peer over the
  mean (``Q * 3 / M``). The target is ``max/mean <= 1.15`` for 5..200 peers.
* ``add x`` / ``remove x``: fraction of ``(partition, peer)`` replica assignments that changed
  when one peer joins / a random one leaves, in units of the ideal ``1 / M``. The target is
  ``<= 2.5``.
* ``build ms``: wall time of one ``Ring.build`` (a pure-Python rebuild on every membership
  change).

Tables: (1) random vnode tokens alone (no capacity bound) vs bounded loads; (2) the grid
M x tokens x partition bits at the default eps; (3) a sweep over 5..200 peers for a few token
counts and eps values (worst balance, mean / p99 / max movement), which is how the defaults
were chosen; (4) weights and zones at the defaults.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections.abc import Sequence

from dfspeer.ring import Ring, RingMember, ring_diff
from dfspeer.ring.placement import DEFAULT_LOAD_EPSILON, DEFAULT_TOKENS_PER_WEIGHT

UNBOUNDED = 1e9  # an eps so large that no capacity ever binds: plain consistent hashing


def ids(count: int, rnd: random.Random) -> list[str]:
    return [f"{rnd.getrandbits(48):012x}" for _ in range(count)]


def build(members: Sequence[RingMember], bits: int, tokens: int, eps: float) -> Ring:
    return Ring.build_with(members, partition_bits=bits, tokens_per_weight=tokens, load_epsilon=eps)


def spread(ring: Ring) -> tuple[float, float]:
    load = ring.load()
    mean = sum(load.values()) / len(load)
    return max(load.values()) / mean, min(load.values()) / mean


def trial(
    count: int, bits: int, tokens: int, eps: float, seed: int
) -> tuple[float, float, float, float, float]:
    """One ring: (max/mean, min/mean, add x ideal, remove x ideal, build seconds)."""
    rnd = random.Random(seed)
    names = ids(count + 1, rnd)
    members = [RingMember(n) for n in names[:count]]
    started = time.perf_counter()
    base = build(members, bits, tokens, eps)
    elapsed = time.perf_counter() - started
    grown = build([*members, RingMember(names[count])], bits, tokens, eps)
    leaver = rnd.randrange(count)
    shrunk = build(members[:leaver] + members[leaver + 1 :], bits, tokens, eps)
    hi, lo = spread(base)
    added = ring_diff(base, grown).moved_fraction * count
    removed = ring_diff(base, shrunk).moved_fraction * count
    return hi, lo, added, removed, elapsed


def mean_of(rows: Sequence[tuple[float, ...]], k: int) -> float:
    return statistics.fmean(r[k] for r in rows)


def table_unbounded(seeds: int) -> None:
    print("\n(1) random tokens alone vs bounded loads   (P=10, Q=1024; mean over seeds)")
    print(f"{'M':>5} {'tokens':>6} | {'unbounded max/mean':>18} | {'bounded max/mean':>16}")
    for count in (5, 20, 100, 200, 1000):
        for tokens in (24, 256):
            free = [trial(count, 10, tokens, UNBOUNDED, s)[:1] for s in range(seeds)]
            bound = [trial(count, 10, tokens, DEFAULT_LOAD_EPSILON, s)[:1] for s in range(seeds)]
            print(
                f"{count:>5} {tokens:>6} | {mean_of(free, 0):>18.3f} | {mean_of(bound, 0):>16.3f}"
            )


def table_grid(seeds: int) -> None:
    print(f"\n(2) grid at eps={DEFAULT_LOAD_EPSILON} (mean over {seeds} seed(s); x = ideal 1/M)")
    header = (
        f"{'M':>5} {'tokens':>6} {'P':>3} {'Q':>5} | {'max/mean':>8} {'min/mean':>8} | "
        f"{'add frac':>8} {'add x':>6} | {'rem frac':>8} {'rem x':>6} | {'build ms':>8}"
    )
    print(header)
    print("-" * len(header))
    for count in (5, 20, 100, 1000):
        for tokens in (8, 16, 24, 32, 64):
            for bits in (8, 10, 12):
                rows = [trial(count, bits, tokens, DEFAULT_LOAD_EPSILON, s) for s in range(seeds)]
                hi, lo, add, rem, secs = (mean_of(rows, k) for k in range(5))
                mark = "  <- default" if (tokens, bits) == (DEFAULT_TOKENS_PER_WEIGHT, 10) else ""
                print(
                    f"{count:>5} {tokens:>6} {bits:>3} {1 << bits:>5} | {hi:>8.3f} {lo:>8.3f} | "
                    f"{add / count:>8.4f} {add:>6.2f} | {rem / count:>8.4f} {rem:>6.2f} | "
                    f"{secs * 1000:>8.1f}{mark}"
                )


def table_sweep(step: int, seeds: int) -> None:
    sizes = list(range(5, 201, step))
    print(
        f"\n(3) sweep over M = 5..200 step {step} x {seeds} seed(s) = {len(sizes) * seeds} rings"
        " per row (P=10)"
    )
    header = (
        f"{'tokens':>6} {'eps':>5} | {'worst max/mean':>14} | {'move x mean':>11} "
        f"{'p99':>5} {'max':>5} {'>2.5':>6}"
    )
    print(header)
    print("-" * len(header))
    configs = [(t, DEFAULT_LOAD_EPSILON) for t in (16, 24, 32, 64)] + [(24, 0.10)]
    for tokens, eps in configs:
        worst, moves = 0.0, []
        for count in sizes:
            for s in range(seeds):
                hi, _, add, rem, _ = trial(count, 10, tokens, eps, 1000 * s + count)
                worst = max(worst, hi)
                moves += [add, rem]
        moves.sort()
        p99 = moves[int(0.99 * (len(moves) - 1))]
        over = sum(m > 2.5 for m in moves) / len(moves)
        mark = (
            "  <- default"
            if (tokens, eps) == (DEFAULT_TOKENS_PER_WEIGHT, DEFAULT_LOAD_EPSILON)
            else ""
        )
        print(
            f"{tokens:>6} {eps:>5.2f} | {worst:>14.3f} | {statistics.fmean(moves):>11.2f} "
            f"{p99:>5.2f} {moves[-1]:>5.2f} {over:>6.1%}{mark}"
        )


def table_weights_zones() -> None:
    print("\n(4) weights and zones at the defaults (P=10, N=3)")
    rnd = random.Random(7)
    weights = [rnd.choice([0.5, 1.0, 2.0, 3.0]) for _ in range(60)]
    members = [RingMember(n, weight=w) for n, w in zip(ids(60, rnd), weights, strict=True)]
    ring = Ring.build(members)
    load, total = ring.load(), sum(weights)
    for w in sorted(set(weights)):
        ratios = [load[m.peer_id] / (3072 * w / total) for m in members if m.weight == w]
        print(
            f"  weight {w:>3}: {len(ratios):>2} peers, load / weighted share: "
            f"mean {statistics.fmean(ratios):.3f} max {max(ratios):.3f} min {min(ratios):.3f}"
        )
    zoned = [RingMember(n, zone=f"zone-{i % 4}") for i, n in enumerate(ids(40, rnd))]
    ring = Ring.build(zoned)
    zone_of = {m.peer_id: m.zone for m in zoned}
    spread_ok = all(len({zone_of[p] for p in ring.preference_list(q)}) == 3 for q in range(1024))
    hi, lo = spread(ring)
    print(
        f"  40 peers in 4 zones: replicas in 3 zones everywhere={spread_ok}, "
        f"max/mean {hi:.3f} min/mean {lo:.3f}"
    )
    started = time.perf_counter()
    Ring.build(RingMember(n) for n in ids(1000, rnd))
    print(f"  Ring.build, 1000 peers, Q=1024: {(time.perf_counter() - started) * 1000:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2, help="rings per grid cell (default 2)")
    parser.add_argument("--step", type=int, default=2, help="M step of the sweep (default 2)")
    args = parser.parse_args()
    started = time.perf_counter()
    print(
        f"defaults: tokens_per_weight={DEFAULT_TOKENS_PER_WEIGHT}, "
        f"load_epsilon={DEFAULT_LOAD_EPSILON}, partition_bits=10, replication_factor=3"
    )
    table_unbounded(args.seeds)
    table_grid(args.seeds)
    table_sweep(args.step, args.seeds)
    table_weights_zones()
    print(f"\ntotal {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
