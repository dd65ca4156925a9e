"""Deterministic simulation of the dfspeer SWIM core at scale (N = 1,000 .. 10,000).

Runs the very same :class:`dfspeer.gossip.Swim` state machine the UDP agent runs, under a
virtual clock (an event heap), over a simulated network with per-datagram loss, uniform
latency and optional partitions. Everything random comes from ``--seed``, so a run —
including a failure found at N = 10,000 — replays exactly.

Scenario: members start pre-converged (every member knows every other: joining 10,000
peers one by one would only measure the join path), run ``--warmup`` seconds, then
``--crashes`` members crash one second apart and another member publishes a metadata
update 2 s after the first crash, or right after the last one when there are more than
three (with 20 crashes the update meets the wave of DEAD notices and last calls). Reported:

* first detection: crash -> first SUSPECT anywhere, in protocol periods, mean over the
  crashes (SWIM: e/(e-1) ~ 1.58);
* all know: crash -> every live member has it DEAD, in protocol periods (mean / max);
* false positives: refutation episodes, distinct members, and SUSPECT / DEAD events (one
  per observer) about members that never failed (a partition's deaths count here too);
* load: datagrams and bytes sent per member per second (push-pull TCP bytes apart);
* dissemination: update -> 50% / 99.99% / 100% of members have it, in seconds
  (Serf's model: 99.99% of 10,000 within 2.6 s with 200 ms gossip and fanout 3).

``--seeds 1-50`` runs the scenario once per seed and adds the distribution over the runs
(median, p95, max; first detection and all-know-dead pooled over every crash of every
run). One seed says little about a tail: a member that no copy of an update reaches is
a chance event (about ``N * exp(-copies per member)`` per run).

Usage::

    python simulations/swim_sim.py --n 1000 --loss 0.1 --seed 1
    python simulations/swim_sim.py --n 1000 --crashes 20 --seeds 1-50 --min-run 0 --jobs 2
    python simulations/swim_sim.py --all          # the three reference cases, markdown table
    python simulations/swim_sim.py --n 200 --crashes 0 --partition-at 5 --partition-for 30
    python simulations/swim_sim.py --lifeguard --n 100 --max-run 300   # plain SWIM vs Lifeguard
"""

from __future__ import annotations

import argparse
import gc
import heapq
import math
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dfspeer.gossip import EventKind, Keyring, Member, MemberState, Swim, SwimConfig

Address = tuple[str, int]
TICK, DELIVER, PUSH_PULL = 0, 1, 2


@dataclass
class Scenario:
    """One simulation run; times in seconds of virtual time."""

    n: int
    loss: float = 0.0
    seed: int = 1
    warmup_s: float = 5.0
    min_run_s: float = 0.0  # keep running this long after the crash (false-positive watch)
    max_run_s: float = 120.0  # give up this long after the crash
    update_delay_s: float = 2.0  # the update: this long after the first crash, or after the last
    latency_s: tuple[float, float] = (0.001, 0.005)
    partition_at_s: float | None = None
    partition_for_s: float = 10.0
    partition_fraction: float = 0.2
    crashes: int = 5  # members that crash, ``crash_spacing_s`` apart, from the end of warmup
    slow: int = 0  # members that stall now and then (CPU starvation, GC pauses)
    stall_s: tuple[float, float] = (2.0, 10.0)
    stall_gap_s: tuple[float, float] = (5.0, 30.0)
    crash_spacing_s: float = 1.0
    config: SwimConfig = field(default_factory=SwimConfig)


@dataclass
class Report:
    """Results of one run (None where the event never happened)."""

    scenario: Scenario
    first_detection_periods: float | None = None  # mean over the crashes
    detection_list: list[float] = field(default_factory=list)  # per crash, periods
    all_know_list: list[float] = field(default_factory=list)  # per crash, periods
    all_know_periods: float | None = None  # mean over the crashes
    all_know_max_periods: float | None = None
    undetected: int = 0  # crashes not known dead everywhere by the end
    false_suspicions: int = 0  # SUSPECT events (one per observer) about healthy members
    false_episodes: int = 0  # refutations: times a healthy member had to clear its name
    false_suspected_members: int = 0
    false_deaths: int = 0  # DEAD events (one per observer) about healthy members
    slow_deaths: int = 0  # DEAD events about stalling members
    steady_msgs_per_member_s: float = 0.0  # warmup: no failure, no news
    steady_bytes_per_member_s: float = 0.0
    msgs_per_member_s: float = 0.0  # from the first crash to the end
    bytes_per_member_s: float = 0.0
    push_pull_bytes_per_member_s: float = 0.0
    update_s: dict[str, float | None] = field(default_factory=dict)
    virtual_s: float = 0.0
    wall_s: float = 0.0
    datagrams: int = 0
    errors: int = 0
    max_health: int = 0
    partition_heal_s: float | None = None


class Simulation:
    """The event loop: TICK a member at its ``next_deadline()``, DELIVER datagrams, and
    run PUSH_PULL exchanges (reliable, like the TCP stream they stand for)."""

    def __init__(self, sc: Scenario) -> None:
        self.sc = sc
        self.rng = random.Random(sc.seed)
        self.net_rng = random.Random(self.rng.getrandbits(64))
        self.keyring = Keyring([random.Random(sc.seed).randbytes(32)])
        self.members = [_member(i) for i in range(sc.n)]
        self.index: dict[Address, int] = {m.gossip_address: i for i, m in enumerate(self.members)}
        self.swims: list[Swim] = []
        self.down = [False] * sc.n
        self.group = [0] * sc.n  # partition group; messages cross groups only when equal
        self.scheduled = [math.inf] * sc.n
        self.heap: list[tuple[float, int, int, int, object, object]] = []
        self.seq = 0
        self.now = 0.0
        self.crash_at: dict[int, float] = {}
        self.first_suspect: dict[int, float] = {}
        self.all_know: dict[int, float] = {}
        self.dead_known: dict[int, dict[int, float]] = {}  # subject -> observer -> when
        self.updater: int | None = None
        self.update_at: float | None = None
        self.learned_update: list[float] = []
        self.report = Report(sc)
        self.push_pull_bytes = 0
        self.falsely_suspected: set[int] = set()
        self.stalls: dict[int, tuple[float, float]] = {}
        for i in self.rng.sample(range(sc.n), sc.slow):
            first = self.net_rng.uniform(*sc.stall_gap_s)
            self.stalls[i] = (first, first + self.net_rng.uniform(*sc.stall_s))
        self._min_end = 0.0

    # ------------------------------------------------------------------ setup
    def build(self) -> None:
        base = {m.id: m for m in self.members}
        for m in self.members:
            swim = Swim(self.sc.config, m, self.keyring, random.Random(self.rng.getrandbits(64)))
            swim.preload(base, 0.0)
            self.swims.append(swim)
        for i in range(self.sc.n):
            self.swims[i].tick(0.0)
            self._after(i, 0.0)

    # ------------------------------------------------------------------ event loop
    def _push(self, t: float, kind: int, i: int, a: object = None, b: object = None) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (t, self.seq, kind, i, a, b))

    def _after(self, i: int, t: float) -> None:
        """Collect member ``i``'s outputs after an input at time ``t``."""
        swim = self.swims[i]
        lo, hi = self.sc.latency_s
        loss = self.sc.loss
        rnd = self.net_rng.random
        src = self.members[i].gossip_address
        gi = self.group[i]
        for dst, data in swim.drain_datagrams():
            j = self.index.get(dst)
            if j is None or (loss and rnd() < loss) or self.group[j] != gi:
                continue
            self._push(t + lo + (hi - lo) * rnd(), DELIVER, j, src, data)
        events = swim.drain_events()
        if events:
            self._record(i, events, t)
        for dst in swim.drain_push_pull():
            j = self.index.get(dst)
            if j is not None:
                self._push(t + lo + (hi - lo) * rnd(), PUSH_PULL, i, j)
        deadline = swim.next_deadline()
        if deadline < self.scheduled[i] or self.scheduled[i] <= t:
            self.scheduled[i] = deadline
            self._push(deadline, TICK, i)

    def run_until(self, end: float, stop: object = None) -> None:
        heap, swims, down, stalls = self.heap, self.swims, self.down, self.stalls
        pop = heapq.heappop
        steps = 0
        while heap and heap[0][0] <= end:
            t, _, kind, i, a, b = pop(heap)
            self.now = t
            if down[i]:
                continue
            if stalls and i in stalls and self._stalled(i, t, kind, a, b):
                continue
            if kind == TICK:
                if t != self.scheduled[i]:
                    continue  # superseded by an earlier deadline
                self.scheduled[i] = -math.inf
                swims[i].tick(t)
            elif kind == DELIVER:
                swims[i].receive(b, a, t)  # type: ignore[arg-type]
                self.report.datagrams += 1
            else:
                self._push_pull(i, a, t)  # type: ignore[arg-type]
            self._after(i, t)
            steps += 1
            if stop is not None and steps % 4096 == 0 and self._done():
                return
        self.now = max(self.now, end)

    def _stalled(self, i: int, t: float, kind: int, a: object, b: object) -> bool:
        """Slow member ``i`` (Lifeguard's scenario): now and then its inbound processing
        stalls (CPU starvation, GC pause) while its timers still fire, so its probes
        time out although the acks arrived. What arrives waits for the end of the stall."""
        if kind == TICK:
            return False
        start, until = self.stalls[i]
        if t >= until:  # schedule the next stall
            start = until + self.net_rng.uniform(*self.sc.stall_gap_s)
            until = start + self.net_rng.uniform(*self.sc.stall_s)
            self.stalls[i] = (start, until)
        if not start <= t < until:
            return False
        self._push(until, kind, i, a, b)
        return True

    def _push_pull(self, i: int, j: int, t: float) -> None:
        if self.down[j] or self.group[i] != self.group[j]:
            return
        a, b = self.swims[i], self.swims[j]
        mine = a.local_state()
        b.merge_state(mine, t)
        theirs = b.local_state()
        a.merge_state(theirs, t)
        self.push_pull_bytes += len(mine) + len(theirs)
        self._after(j, t)

    # ------------------------------------------------------------------ measurement
    def _record(self, observer: int, events: list, t: float) -> None:  # type: ignore[type-arg]
        rep = self.report
        for ev in events:
            subject = int(ev.member.id[1:])
            kind = ev.kind
            if t >= self.crash_at.get(subject, math.inf):
                if kind is EventKind.SUSPECT:
                    self.first_suspect.setdefault(subject, t)
                elif kind is EventKind.DEAD:
                    known = self.dead_known.setdefault(subject, {})
                    known.setdefault(observer, t)
                    if len(known.keys() - self.crash_at.keys()) == self.sc.n - len(self.crash_at):
                        self.all_know.setdefault(subject, t)
            elif subject in self.stalls:  # a stalling member: declaring it is fair game
                rep.slow_deaths += kind is EventKind.DEAD
            elif kind is EventKind.SUSPECT:
                rep.false_suspicions += 1
                self.falsely_suspected.add(subject)
            elif kind is EventKind.DEAD:
                rep.false_deaths += 1
            elif kind is EventKind.UPDATED and subject == self.updater:
                self.learned_update.append(t)

    def _recheck_all_know(self) -> None:
        """A crash can complete an earlier victim's "all know": the last member that did
        not know it yet was this one. It completed when the last live member learned."""
        for subject, known in self.dead_known.items():
            if subject in self.all_know:
                continue
            live = [o for o in range(self.sc.n) if not self.down[o]]
            if all(o in known for o in live):
                self.all_know[subject] = max(known[o] for o in live)

    def _done(self) -> bool:
        others = self.sc.n - 1 - len(self.crash_at)
        need_update = self.update_at is not None and len(self.learned_update) < others
        need_dead = len(self.all_know) < len(self.crash_at)
        return not need_update and not need_dead and self.now >= self._min_end

    # ------------------------------------------------------------------ scenario
    def run(self) -> Report:
        sc = self.sc
        wall = time.perf_counter()
        self.build()
        gc.collect()
        gc.freeze()  # millions of long-lived members: keep the cyclic GC off them
        steady_from = min(1.0, sc.warmup_s / 2)  # every member has started by then
        self.run_until(steady_from)
        msgs, nbytes = self._sent()
        self.run_until(sc.warmup_s)
        sent0, bytes0 = self._sent()
        span = sc.warmup_s - steady_from
        self.report.steady_msgs_per_member_s = (sent0 - msgs) / (sc.n * span)
        self.report.steady_bytes_per_member_s = (bytes0 - nbytes) / (sc.n * span)
        pp0 = self.push_pull_bytes
        start = self.now
        self._min_end = start + sc.min_run_s
        healthy = [i for i in range(sc.n) if i not in self.stalls]
        victims = self.rng.sample(healthy, sc.crashes)
        for j, victim in enumerate(victims):
            self.run_until(start + j * sc.crash_spacing_s)
            self.crash_at[victim] = self.now
            self.down[victim] = True
            self._recheck_all_know()
        self.run_until(start + sc.update_delay_s)
        self._publish_update()
        if sc.partition_at_s is not None:
            self._partition(start)
        self.run_until(start + sc.max_run_s, stop=True)
        self._finish(start, sent0, bytes0, pp0)
        self.report.wall_s = time.perf_counter() - wall
        gc.unfreeze()
        return self.report

    def _sent(self) -> tuple[int, int]:
        swims = self.swims
        return (sum(s.counters["msgs_sent"] for s in swims),
                sum(s.counters["bytes_sent"] for s in swims))

    def _publish_update(self) -> None:
        candidates = [i for i in range(self.sc.n) if not self.down[i]]
        self.updater = candidates[self.rng.randrange(len(candidates))]
        self.update_at = self.now
        self.swims[self.updater].update_local(self.now, version="v2")
        self._after(self.updater, self.now)

    def _partition(self, start: float) -> None:
        sc = self.sc
        assert sc.partition_at_s is not None
        self.run_until(start + sc.partition_at_s)
        cut = int(sc.n * sc.partition_fraction)
        for i in self.rng.sample(range(sc.n), cut):
            self.group[i] = 1
        self.run_until(self.now + sc.partition_for_s)
        self.group = [0] * sc.n
        healed = self.now
        live = [s for i, s in enumerate(self.swims) if not self.down[i]]
        ids = {s.local.id for s in live}
        while self.now < healed + sc.max_run_s:
            self.run_until(self.now + 1.0)
            if all(_alive_ids(s) >= ids for s in live):
                self.report.partition_heal_s = self.now - healed
                break

    def _finish(self, start: float, sent0: int, bytes0: int, pp0: int) -> None:
        rep, sc = self.report, self.sc
        rep.virtual_s = self.now
        span = max(self.now - start, 1e-9)
        live = [s for i, s in enumerate(self.swims) if not self.down[i]]
        rep.msgs_per_member_s = (sum(s.counters["msgs_sent"] for s in self.swims) - sent0) / (
            len(live) * span
        )
        rep.bytes_per_member_s = (sum(s.counters["bytes_sent"] for s in self.swims) - bytes0) / (
            len(live) * span
        )
        rep.push_pull_bytes_per_member_s = (self.push_pull_bytes - pp0) / (len(live) * span)
        rep.errors = sum(s.counters["errors.internal"] for s in self.swims)
        rep.max_health = max(s.health_score for s in live)
        rep.false_suspected_members = len(self.falsely_suspected)
        rep.false_episodes = sum(
            s.counters["refutations"] for i, s in enumerate(self.swims)
            if not self.down[i] and i not in self.stalls
        )
        period = sc.config.probe_interval_s
        detect = [self.first_suspect[v] - t0 for v, t0 in self.crash_at.items()
                  if v in self.first_suspect]
        know = [self.all_know[v] - t0 for v, t0 in self.crash_at.items() if v in self.all_know]
        rep.detection_list = [d / period for d in detect]
        rep.all_know_list = [k / period for k in know]
        if detect:
            rep.first_detection_periods = sum(detect) / len(detect) / period
        if know:
            rep.all_know_periods = sum(know) / len(know) / period
            rep.all_know_max_periods = max(know) / period
        rep.undetected = len(self.crash_at) - len(know)
        if self.update_at is not None:
            times = sorted(self.learned_update)
            others = sc.n - 1 - len(self.crash_at)
            for label, frac in (("50%", 0.5), ("99%", 0.99), ("99.99%", 0.9999), ("100%", 1.0)):
                k = max(1, math.ceil(frac * others))
                rep.update_s[label] = times[k - 1] - self.update_at if len(times) >= k else None


def _member(i: int) -> Member:
    return Member(
        id=f"m{i}",
        gossip_address=(f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}", 7946),
        api_address=f"10.{i >> 16 & 255}.{i >> 8 & 255}.{i & 255}:7070",
        incarnation=0,
        state=MemberState.ALIVE,
    )


def _alive_ids(swim: Swim) -> set[str]:
    return {m.id for m in swim.members() if m.state is MemberState.ALIVE}


# ---------------------------------------------------------------------- output
def _fmt(x: float | None, digits: int = 2) -> str:
    return "never" if x is None else f"{x:.{digits}f}"


HEADER = (
    "| N | loss | first detection (periods, mean) | all know dead (periods, mean / max) "
    "| false suspicions: episodes / members / events | false deaths "
    "| datagrams/member/s: steady / run | bytes/member/s: steady / run (+push-pull) "
    "| update 50% / 99.99% / 100% (s) "
    "| virtual s | wall s |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|"
)


def row(r: Report) -> str:
    sc, u = r.scenario, r.update_s
    know = f"{_fmt(r.all_know_periods)} / {_fmt(r.all_know_max_periods)}"
    if r.undetected:
        know += f" ({r.undetected} of {sc.crashes} not everywhere)"
    return (
        f"| {sc.n:,} | {sc.loss:.0%} | {_fmt(r.first_detection_periods)} | {know} "
        f"| {r.false_episodes} / {r.false_suspected_members} / {r.false_suspicions:,} "
        f"| {r.false_deaths} | {r.steady_msgs_per_member_s:.1f} / {r.msgs_per_member_s:.1f} "
        f"| {r.steady_bytes_per_member_s:,.0f} / {r.bytes_per_member_s:,.0f} "
        f"(+{r.push_pull_bytes_per_member_s:,.0f}) "
        f"| {_fmt(u.get('50%'))} / {_fmt(u.get('99.99%'))} / {_fmt(u.get('100%'))} "
        f"| {r.virtual_s:.0f} | {r.wall_s:.0f} |"
    )


def parse_seeds(spec: str) -> list[int]:
    """``"1-50"``, ``"2,7"`` or ``"1-8,20"`` -> the seeds, in order, without repeats."""
    seeds: list[int] = []
    for part in spec.split(","):
        lo, _, hi = part.strip().partition("-")
        first = int(lo)
        last = int(hi) if hi else first
        if last < first:
            raise ValueError(f"bad seed range {part!r}")
        seeds.extend(x for x in range(first, last + 1) if x not in seeds)
    return seeds


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (``q`` in 0..1) of a non-empty list; ``inf`` stands for never."""
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def _never(x: float | None) -> float:
    return math.inf if x is None else x


def distribution(reports: list[Report]) -> str:
    """Markdown table: median / p95 / max over the runs of one scenario (one per seed)."""
    rows: list[tuple[str, list[float], int]] = [
        ("first detection, periods (every crash)",
         [d for r in reports for d in r.detection_list]
         + [math.inf] * sum(r.scenario.crashes - len(r.detection_list) for r in reports), 2),
        ("first detection, periods (mean of a run)",
         [r.first_detection_periods for r in reports if r.first_detection_periods is not None],
         2),
        ("all know dead, periods (every crash)",
         [k for r in reports for k in r.all_know_list]
         + [math.inf] * sum(r.undetected for r in reports), 2),
        ("update reaches 50 %, s", [_never(r.update_s.get("50%")) for r in reports], 2),
        ("update reaches 99.99 %, s", [_never(r.update_s.get("99.99%")) for r in reports], 2),
        ("update reaches 100 %, s", [_never(r.update_s.get("100%")) for r in reports], 2),
        ("datagrams / member / s, steady", [r.steady_msgs_per_member_s for r in reports], 2),
        ("bytes / member / s, steady", [r.steady_bytes_per_member_s for r in reports], 0),
        ("datagrams / member / s, from the first crash",
         [r.msgs_per_member_s for r in reports], 1),
        ("bytes / member / s, from the first crash (datagrams)",
         [r.bytes_per_member_s for r in reports], 0),
        ("false deaths (events) per run", [float(r.false_deaths) for r in reports], 0),
        ("false suspicion episodes per run", [float(r.false_episodes) for r in reports], 0),
    ]

    def fmt(x: float, digits: int) -> str:
        return "never" if math.isinf(x) else f"{x:,.{digits}f}"

    seeds = [r.scenario.seed for r in reports]
    out = [f"| over {len(reports)} runs (seeds {_seed_spec(seeds)}) | median | p95 | max | n |",
           "|---|---|---|---|---|"]
    for label, values, digits in rows:
        if not values:
            continue
        out.append(f"| {label} | {fmt(percentile(values, 0.5), digits)} "
                   f"| {fmt(percentile(values, 0.95), digits)} | {fmt(max(values), digits)} "
                   f"| {len(values)} |")
    slow = [f"{r.scenario.seed}: {_fmt(r.update_s.get('99.99%'))} s" for r in reports
            if _never(r.update_s.get("99.99%")) > 2.0]
    out.append("")
    out.append("update 99.99 % later than 2 s: " + (", ".join(slow) if slow else "none"))
    return "\n".join(out)


def _seed_spec(seeds: list[int]) -> str:
    if seeds == list(range(seeds[0], seeds[0] + len(seeds))) and len(seeds) > 1:
        return f"{seeds[0]}-{seeds[-1]}"
    return ",".join(map(str, seeds))


def reference_cases(seed: int) -> list[Scenario]:
    return [
        Scenario(n=1000, loss=0.0, seed=seed, min_run_s=60.0),
        Scenario(n=1000, loss=0.1, seed=seed, min_run_s=120.0),
        Scenario(n=10_000, loss=0.0, seed=seed, warmup_s=3.0, max_run_s=90.0),
    ]


def lifeguard_cases(n: int, slow: int, seed: int, run_s: float) -> list[Scenario]:
    """Lifeguard's experiment in miniature: a few members stall now and then; count how
    often healthy members get suspected / declared dead, with and without Lifeguard."""
    return [
        Scenario(n=n, seed=seed, slow=slow, crashes=0, min_run_s=run_s, max_run_s=run_s,
                 config=SwimConfig(lifeguard=lifeguard))
        for lifeguard in (False, True)
    ]


def _run(sc: Scenario, profile: bool = False) -> Report:
    sim = Simulation(sc)
    if not profile:
        return sim.run()
    import cProfile
    import pstats

    prof = cProfile.Profile()
    report: Report = prof.runcall(sim.run)
    pstats.Stats(prof).sort_stats("tottime").print_stats(25)
    return report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--n", type=int, default=1000, help="members")
    p.add_argument("--loss", type=float, default=0.0, help="datagram loss probability 0..1")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--seeds", default=None,
                   help="run once per seed (e.g. 1-50 or 1-8,20) and print distributions")
    p.add_argument("--warmup", type=float, default=5.0, help="seconds before the first crash")
    p.add_argument("--min-run", type=float, default=30.0, help="seconds to watch after it")
    p.add_argument("--max-run", type=float, default=120.0, help="give up after (s)")
    p.add_argument("--crashes", type=int, default=5, help="members that crash, 1 s apart")
    p.add_argument("--slow", type=int, default=0, help="members that stall 2-10 s now and then")
    p.add_argument("--plain-swim", action="store_true", help="SwimConfig(lifeguard=False)")
    p.add_argument("--partition-at", type=float, default=None, help="s after the first crash")
    p.add_argument("--partition-for", type=float, default=10.0)
    p.add_argument("--partition-fraction", type=float, default=0.2)
    p.add_argument("--all", action="store_true", help="run the three reference cases")
    p.add_argument("--lifeguard", action="store_true",
                   help="compare plain SWIM and Lifeguard with --slow (default 5) stalling members")
    p.add_argument("--jobs", type=int, default=1,
                   help="run this many scenarios at once (one process each)")
    p.add_argument("--profile", action="store_true", help="cProfile the run (top 25 by tottime)")
    args = p.parse_args(argv)
    seeds = parse_seeds(args.seeds) if args.seeds else [args.seed]
    scenarios: list[Scenario] = []
    for seed in seeds:
        if args.all:
            scenarios += reference_cases(seed)
        elif args.lifeguard:
            scenarios += lifeguard_cases(args.n, args.slow or 5, seed, args.max_run)
        else:
            scenarios.append(Scenario(
                n=args.n, loss=args.loss, seed=seed, warmup_s=args.warmup,
                min_run_s=args.min_run, max_run_s=args.max_run, crashes=args.crashes,
                slow=args.slow, partition_at_s=args.partition_at,
                partition_for_s=args.partition_for, partition_fraction=args.partition_fraction,
                config=SwimConfig(lifeguard=not args.plain_swim),
            ))
    reports = []
    if args.jobs > 1 and not args.profile:
        from concurrent.futures import ProcessPoolExecutor

        pool = ProcessPoolExecutor(max_workers=args.jobs)
        results = pool.map(_run, scenarios)
    else:
        pool, results = None, map(lambda sc: _run(sc, args.profile), scenarios)
    for report in results:  # in scenario order, as each is done
        sc = report.scenario
        reports.append(report)
        print(f"done n={sc.n} loss={sc.loss} seed={sc.seed}: wall {report.wall_s:.1f}s, "
              f"update 99.99 % {_fmt(report.update_s.get('99.99%'))} s, "
              f"{report.datagrams:,} datagrams, internal errors {report.errors}, "
              f"max health score {report.max_health}"
              + (f", partition healed in {report.partition_heal_s:.1f}s"
                 if report.partition_heal_s is not None else ""),
              file=sys.stderr, flush=True)
    if pool is not None:
        pool.shutdown()
    print(HEADER)
    for report in reports:
        print(row(report))
    if args.lifeguard or args.slow:
        print("\n| mode | false suspicion episodes | false deaths (events) | deaths of stalling "
              "members (events) |\n|---|---|---|---|")
        for r in reports:
            mode = "SWIM + Lifeguard" if r.scenario.config.lifeguard else "plain SWIM"
            print(f"| {mode} | {r.false_episodes} | {r.false_deaths} | {r.slow_deaths} |")
    if args.seeds:
        groups: dict[tuple[object, ...], list[Report]] = {}
        for r in reports:
            sc = r.scenario
            key = (sc.n, sc.loss, sc.crashes, sc.slow, sc.config.lifeguard)
            groups.setdefault(key, []).append(r)
        for (n, loss, crashes, slow, lifeguard), group in groups.items():
            print(f"\nN = {n:,}, loss {loss:.0%}, {crashes} crashes, {slow} slow"
                  + ("" if lifeguard else ", plain SWIM") + ":\n")
            print(distribution(group))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
