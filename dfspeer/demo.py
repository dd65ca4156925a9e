"""``dfspeer demo``: the main job end to end on a throwaway local cluster.

Starts a :class:`~dfspeer.localcluster.LocalCluster` in a temporary directory, stores real
files from this machine (one large binary concatenated from the largest shared libraries
and executables found, and the small files of two stdlib packages), reads everything back
whole and by random byte ranges from every peer comparing bytes and SHA-256, lists the
small files, SIGKILLs a peer, writes and reads everything again from the survivors, and
prints a report. Exit code 0 only if every comparison matched.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from dfspeer.client import Client
from dfspeer.commands.common import human_bytes
from dfspeer.config import PeerConfig
from dfspeer.demo_corpus import Corpus, build_corpus
from dfspeer.demo_report import DemoReport, Phase
from dfspeer.localcluster import LocalCluster, LocalClusterError

MiB = 1024 * 1024
BUCKET = "demo"
# Short gossip timers so the killed peer is noticed quickly; everything else is default.
DEMO_SETTINGS: dict[str, object] = {
    "probe_interval_s": 0.5,
    "probe_timeout_s": 0.25,
    "push_pull_interval_s": 5.0,
    "map_size_bytes": 4 * 1024 * MiB,
}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``demo``."""
    p = sub.add_parser(
        "demo",
        help="run the main job end to end on a throwaway local cluster",
        description=__doc__,
    )
    p.add_argument("--peers", type=int, default=3, metavar="N", help="peers (3)")
    p.add_argument("--size-mib", type=int, default=64, metavar="M", help="large file (64)")
    p.add_argument(
        "--ranges",
        type=int,
        default=200,
        metavar="K",
        help="random ranges per read-back phase (200)",
    )
    p.add_argument("--seed", type=int, default=None, help="seed for the random ranges")
    p.add_argument("--keep", action="store_true", help="keep the temporary directory")
    p.set_defaults(func=cmd_demo)


def cmd_demo(args: argparse.Namespace) -> int:
    """Run the demo; 0 if everything matched, 1 otherwise."""
    if not 3 <= args.peers <= 9 or not 1 <= args.size_mib <= 4096:
        print("dfspeer: error: --peers must be in 3..9, --size-mib in 1..4096", file=sys.stderr)
        return 2
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    workdir = Path(tempfile.mkdtemp(prefix="dfspeer-demo-"))
    try:
        corpus = build_corpus(workdir / "corpus", args.size_mib * MiB + 4321)
        _say(f"corpus: {corpus.describe()}")
        report = _run_cluster(workdir / "cluster", corpus, args.peers, args.ranges, seed)
    except LocalClusterError as exc:
        print(f"dfspeer: demo: the local cluster failed: {exc}", file=sys.stderr)
        return 1
    finally:
        if args.keep:
            _say(f"kept {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    print(report.render())
    return 0 if report.ok else 1


def _say(text: str) -> None:
    print(f"[demo] {text}", file=sys.stderr, flush=True)


def _run_cluster(base: Path, corpus: Corpus, peers: int, ranges: int, seed: int) -> DemoReport:
    cluster = LocalCluster(
        base, peers, base_port=None, gossip_base_port=None, host_base=30, settings=DEMO_SETTINGS
    )
    with cluster:
        started = time.monotonic()
        cluster.start()
        cluster.wait_ready(timeout_s=60.0)
        cluster.wait_view(range(1, peers + 1), timeout_s=30.0)
        hosts = ", ".join(p.url for p in cluster.peers)
        _say(f"{peers} peers ready in {time.monotonic() - started:.1f} s: {hosts}")
        _say(f"web console: {cluster.peers[0].url}/ui/ (log in with the admin token)")
        cfg = PeerConfig.from_sources(DEMO_SETTINGS, environ={})
        report = DemoReport(
            title=f"dfspeer demo: {peers} peers ({hosts}); N={cfg.replication_factor} "
            f"W={cfg.write_quorum} R={cfg.read_quorum}, chunk {human_bytes(cfg.chunk_size_bytes)}"
            f", durable={cfg.durable}; seed {seed}",
            corpus=corpus.describe(),
        )
        asyncio.run(_main_job(cluster, corpus, report, random.Random(seed), ranges))
    return report


async def _main_job(
    cluster: LocalCluster, corpus: Corpus, report: DemoReport, rng: random.Random, ranges: int
) -> None:
    token = cluster.admin_token
    clients = [Client(url, timeout_s=60.0, token=token) for url in cluster.urls]
    try:
        await _upload(clients, corpus, report)
        await _read_back(clients, corpus, report, rng, ranges, "all peers")
        victim = cluster.peers[-1]
        cluster.kill(victim.index)
        _say(f"SIGKILLed {victim.peer_id} ({victim.url})")
        survivors = clients[:-1]
        await _write_after_kill(survivors, report, victim.peer_id)
        await _read_back(survivors, corpus, report, rng, ranges, f"{victim.peer_id} killed")
    finally:
        for c in clients:
            await c.close()


async def _upload(clients: list[Client], corpus: Corpus, report: DemoReport) -> None:
    phase = report.add(Phase("upload (large + small)", peers=len(clients), direction="up"))
    size = human_bytes(corpus.big_size)
    _say(f"uploading {corpus.big_key} ({size}) and {len(corpus.small)} small files")
    t0 = time.monotonic()
    info = await clients[0].put_object(
        BUCKET, corpus.big_key, corpus.big_path, sha256=corpus.big_sha256
    )
    phase.record(1, corpus.big_size, info.get("sha256") == corpus.big_sha256, "upload large")
    sem = asyncio.Semaphore(8)

    async def put_one(i: int, key: str, path: Path) -> None:
        async with sem:
            data = path.read_bytes()
            sha = hashlib.sha256(data).hexdigest()
            try:
                res = await clients[i % len(clients)].put_object(BUCKET, key, data, sha256=sha)
                phase.record(1, len(data), res.get("sha256") == sha, f"upload {key}")
            except Exception as exc:  # reported, not raised: the demo counts failures
                phase.record(1, len(data), False, f"upload {key}: {exc}")

    await asyncio.gather(*(put_one(i, k, p) for i, (k, p) in enumerate(corpus.small)))
    phase.seconds = time.monotonic() - t0


async def _read_back(
    clients: list[Client],
    corpus: Corpus,
    report: DemoReport,
    rng: random.Random,
    ranges: int,
    label: str,
) -> None:
    whole = report.add(Phase(f"read whole ({label})", peers=len(clients), direction="down"))
    t0 = time.monotonic()
    big = corpus.big_path.read_bytes()
    for c in clients:
        await _check_get(c, corpus.big_key, big, corpus.big_sha256, whole)
        for key, path in corpus.small:
            data = path.read_bytes()
            await _check_get(c, key, data, hashlib.sha256(data).hexdigest(), whole)
    whole.seconds = time.monotonic() - t0
    await _check_ranges(clients, corpus, big, report, rng, ranges, label)
    await _check_listing(clients, corpus, report, label)


async def _check_get(c: Client, key: str, want: bytes, sha: str, phase: Phase) -> None:
    try:
        got = await c.get_object(BUCKET, key)
        ok = got == want and hashlib.sha256(got).hexdigest() == sha
        phase.record(1, len(got), ok, f"{c.base_url} {key}: bytes differ")
    except Exception as exc:
        phase.record(1, 0, False, f"{c.base_url} {key}: {exc}")


def _pick_ranges(rng: random.Random, size: int, count: int) -> list[tuple[int, int | None]]:
    """Edge cases first (first byte, last byte, a suffix, chunk-boundary crossings), then
    random spans of 1 byte .. 3 MiB."""
    picks: list[tuple[int, int | None]] = [(0, 1), (size - 1, None), (-4096, None)]
    for boundary in (1 * MiB, 2 * MiB, 4 * MiB, 8 * MiB):
        if boundary < size:
            picks.append((boundary - 7, min(size, boundary + 9)))
    while len(picks) < count:
        length = rng.choice((1, rng.randrange(1, 4096), rng.randrange(1, 3 * MiB)))
        start = rng.randrange(0, max(1, size - length))
        picks.append((start, min(size, start + length)))
    return picks[:count]


def _slice(data: bytes, r: tuple[int, int | None]) -> bytes:
    start, end = r
    return data[start:] if end is None else data[start:end]


async def _check_ranges(
    clients: list[Client],
    corpus: Corpus,
    big: bytes,
    report: DemoReport,
    rng: random.Random,
    count: int,
    label: str,
) -> None:
    phase = report.add(Phase(f"random ranges ({label})", peers=len(clients), direction="down"))
    t0 = time.monotonic()
    for i, r in enumerate(_pick_ranges(rng, len(big), count)):
        c = clients[i % len(clients)]
        try:
            got = await c.get_object(BUCKET, corpus.big_key, range=r)
            phase.record_range(len(got), got == _slice(big, r), f"{c.base_url} range {r}")
        except Exception as exc:
            phase.record_range(0, False, f"{c.base_url} range {r}: {exc}")
    phase.seconds = time.monotonic() - t0


async def _check_listing(
    clients: list[Client], corpus: Corpus, report: DemoReport, label: str
) -> None:
    phase = report.add(Phase(f"listing ({label})", peers=len(clients), direction=""))
    want = sorted(k for k, _ in corpus.small)
    for c in clients:
        try:
            keys = [
                o["key"]
                async for o, _ in c.iter_objects(BUCKET, corpus.small_prefix)
                if o is not None
            ]
            top = [p async for _, p in c.iter_objects(BUCKET, "", "/") if p is not None]
            ok = sorted(keys) == want and corpus.small_prefix in top
            phase.record(len(keys), 0, ok, f"{c.base_url}: listing differs ({len(keys)} keys)")
        except Exception as exc:
            phase.record(0, 0, False, f"{c.base_url} listing: {exc}")


async def _write_after_kill(clients: list[Client], report: DemoReport, victim: str) -> None:
    phase = report.add(Phase(f"write ({victim} killed)", peers=len(clients), direction="up"))
    t0 = time.monotonic()
    for i, c in enumerate(clients):
        data = f"written through {c.base_url} after {victim} died\n".encode() * (i * 50_000 + 1)
        key = f"after-kill/{i}.txt"
        try:
            await c.put_object(BUCKET, key, data)
            back = await clients[(i + 1) % len(clients)].get_object(BUCKET, key)
            phase.record(1, len(data), back == data, f"{c.base_url} {key}: read-back differs")
        except Exception as exc:
            phase.record(1, len(data), False, f"{c.base_url} {key}: {exc}")
    phase.seconds = time.monotonic() - t0
