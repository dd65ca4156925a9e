"""Latency and CPU per 1 MiB ranged GET: where a range read's time goes.

Starts ``--peers`` local agents (3 by default; N = 3, W = R = 2, durable;
:class:`~dfspeer.localcluster.LocalCluster`, admin token on), uploads one object of
``--size-mib`` MiB of random bytes to peer 1, then ``--rounds`` times sends ``--ranges``
GETs of ``--range-kib`` KiB at seeded random offsets to peer 1, one after the other on one
keep-alive ``http.client`` connection (the method of ``vs_swift.py``'s range phase, with
more requests per round), checking every body. Around each round it reads ``utime +
stime`` of every agent from ``/proc/PID/stat``.

Reported per round and as the median over the rounds: the median and p99 (nearest rank)
latency in ms, from sending the request to reading the last byte; the CPU ms per request of
the coordinator (peer 1) and of each other agent (with 3 peers each answers the quorum read
of half the requests; idle timers included, a few µs per request). With more peers than N,
the coordinator holds only some of the chunks and the entry, and reads the rest from the
replicas; the peers' ids are fixed (``peer-1`` ...), so placement is the same every run.

Usage::

    python benchmarks/range_latency.py                       # 5 rounds x 1,000 ranges
    python benchmarks/range_latency.py --rounds 3 --range-kib 4
    python benchmarks/range_latency.py --peers 5
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import json
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from upload_cpu import cpu_seconds  # benchmarks/ on sys.path

from dfspeer.localcluster import LocalCluster

BUCKET = "range-latency"
KiB, MiB = 1024, 1024 * 1024


def nearest_rank(sorted_ms: list[float], pct: int) -> float:
    """The ``pct``-th percentile of ``sorted_ms`` by the nearest-rank method."""
    rank = max(1, -(-pct * len(sorted_ms) // 100))
    return sorted_ms[rank - 1]


def upload(cluster: LocalCluster, data: bytes) -> str:
    peer = cluster.peer(1)
    conn = http.client.HTTPConnection(peer.host, peer.port, timeout=300)
    path = f"/v1/objects/{BUCKET}/object"
    headers = {
        **cluster.headers,
        "Content-Length": str(len(data)),
        "X-Content-SHA256": hashlib.sha256(data).hexdigest(),
    }
    conn.request("PUT", path, body=data, headers=headers)
    response = conn.getresponse()
    response.read()
    conn.close()
    if response.status != 201:
        raise SystemExit(f"upload failed: {response.status}")
    return path


def one_round(
    cluster: LocalCluster,
    pids: list[int],
    path: str,
    data: bytes,
    args: argparse.Namespace,
    round_no: int,
) -> dict[str, Any]:
    peer = cluster.peer(1)
    conn = http.client.HTTPConnection(peer.host, peer.port, timeout=60)
    rng = random.Random(args.seed + round_no)
    span = args.range_kib * KiB
    lat, bad = [], 0
    before = [cpu_seconds(p) for p in pids]
    for _ in range(args.ranges):
        off = rng.randrange(0, len(data) - span + 1)
        headers = {**cluster.headers, "Range": f"bytes={off}-{off + span - 1}"}
        started = time.perf_counter()
        conn.request("GET", path, headers=headers)
        response = conn.getresponse()
        body = response.read()
        lat.append((time.perf_counter() - started) * 1e3)
        bad += response.status != 206 or body != data[off : off + span]
    used = [cpu_seconds(p) - b for p, b in zip(pids, before, strict=True)]
    conn.close()
    lat.sort()
    return {
        "median_ms": round(statistics.median(lat), 3),
        "p99_ms": round(nearest_rank(lat, 99), 3),
        "cpu_ms_per_request": [round(u * 1e3 / args.ranges, 3) for u in used],
        "bad": bad,
        "load": round(os.getloadavg()[0], 1),
    }


def run(work: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    settings = {"log_level": "warning", **dict(item.split("=", 1) for item in args.set)}
    cluster = LocalCluster(
        work / "cluster", args.peers, base_port=None, gossip_base_port=None, settings=settings
    )
    with cluster:
        cluster.start()
        cluster.wait_ready(60)
        cluster.wait_view(list(range(1, args.peers + 1)), 30)
        pids = [p.process.pid for p in cluster.peers if p.process is not None]
        peer = cluster.peer(1)
        conn = http.client.HTTPConnection(peer.host, peer.port, timeout=60)
        conn.request("PUT", f"/v1/buckets/{BUCKET}", headers=cluster.headers)
        conn.getresponse().read()
        conn.close()
        data = random.Random(args.seed).randbytes(args.size_mib * MiB)
        path = upload(cluster, data)
        rows = []
        for round_no in range(args.rounds):
            rows.append(one_round(cluster, pids, path, data, args, round_no))
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--peers", type=int, default=3, help="agents (N = 3)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--ranges", type=int, default=1000, help="GETs per round")
    parser.add_argument("--range-kib", type=int, default=1024)
    parser.add_argument("--size-mib", type=int, default=64, help="the object's size")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--base-dir", default=None, help="where the agents' data goes")
    parser.add_argument(
        "--set", action="append", default=[], metavar="SETTING=VALUE", help="PeerConfig setting"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dfspeer-range-", dir=args.base_dir))
    try:
        rows = run(work, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if any(r["bad"] for r in rows):
        raise SystemExit("some ranges came back wrong")
    cpu = [statistics.median(r["cpu_ms_per_request"][i] for r in rows) for i in range(args.peers)]
    print(
        f"{args.range_kib} KiB ranges, {args.rounds} x {args.ranges} (medians of rounds):"
        f" median {statistics.median(r['median_ms'] for r in rows):.2f} ms,"
        f" p99 {statistics.median(r['p99_ms'] for r in rows):.2f} ms;"
        f" CPU ms/request coordinator {cpu[0]:.3f}, others "
        + " / ".join(f"{c:.3f}" for c in cpu[1:]),
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
