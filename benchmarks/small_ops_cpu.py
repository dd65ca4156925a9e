"""CPU microseconds per small request, per agent: where a 4 KiB PUT, GET or HEAD goes.

Starts 3 local agents (N = 3, W = R = 2, durable; :class:`~dfspeer.localcluster.LocalCluster`,
admin token on) and, for each operation in turn, sends ``--ops`` requests to peer 1 from
``--clients`` threads, each on its own keep-alive ``http.client`` connection: ``PUT`` of
new 4 KiB objects, then ``GET`` and ``HEAD`` of them. Around each phase it reads
``utime + stime`` of every agent from ``/proc/PID/stat``.

Reported per phase: CPU microseconds per request of the coordinator (peer 1), of the other
two agents together, and of all three, each less what that agent uses when idle (gossip,
anti-entropy and the other timers, measured for 5 s before the phases); ops/s (wall time,
so it swings with the machine's load while the CPU figures barely do). ``--py-spy DIR``
records the coordinator with ``py-spy record --format raw`` during each phase
(``DIR/<op>.txt``, folded stacks) -- the agent then pays the sampling, so read the CPU
figures of a run without it.

Usage::

    python benchmarks/small_ops_cpu.py                     # 3,000 of each, 8 clients
    python benchmarks/small_ops_cpu.py --ops 1000 --py-spy /tmp/small
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from upload_cpu import cpu_seconds, start_py_spy, stop_py_spy  # benchmarks/ on sys.path

from dfspeer.localcluster import LocalCluster

SIZE = 4096
BUCKET = "small-cpu"


def _worker(cluster: LocalCluster, method: str, keys: list[str], failures: list[str]) -> None:
    peer = cluster.peer(1)
    conn = http.client.HTTPConnection(peer.host, peer.port, timeout=60)
    body = os.urandom(SIZE)
    for key in keys:
        headers = dict(cluster.headers)
        data = None
        if method == "PUT":
            data = body[:-8] + os.urandom(8)  # unique: nothing deduplicates
            headers["Content-Length"] = str(SIZE)
        conn.request(method, f"/v1/objects/{BUCKET}/{key}", body=data, headers=headers)
        response = conn.getresponse()
        response.read()
        if response.status >= 300:
            failures.append(f"{method} {key}: {response.status}")
    conn.close()


def idle_cpu(pids: list[int], secs: float) -> list[float]:
    """CPU seconds per second each agent uses with no request (gossip, anti-entropy, ...)."""
    before = [cpu_seconds(p) for p in pids]
    time.sleep(secs)
    return [(cpu_seconds(p) - b) / secs for p, b in zip(pids, before, strict=True)]


def phase(
    cluster: LocalCluster,
    pids: list[int],
    method: str,
    keys: list[str],
    clients: int,
    idle: list[float] | None = None,
) -> dict[str, Any]:
    """Run ``method`` on every key from ``clients`` threads; CPU µs per op per agent, less
    what each agent uses when idle (``idle``: CPU s per s, from :func:`idle_cpu`)."""
    failures: list[str] = []
    shares = [keys[i::clients] for i in range(clients)]
    threads = [
        threading.Thread(target=_worker, args=(cluster, method, share, failures))
        for share in shares
    ]
    before = [cpu_seconds(p) for p in pids]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    secs = time.perf_counter() - started
    time.sleep(0.3)  # the third replica's writes finish
    secs_all = time.perf_counter() - started
    used = [cpu_seconds(p) - b for p, b in zip(pids, before, strict=True)]
    used = [u - (idle[i] * secs_all if idle else 0.0) for i, u in enumerate(used)]
    n = len(keys)
    return {
        "op": method,
        "ops": n,
        "ops_per_s": round(n / secs, 1),
        "coordinator_us": round(used[0] * 1e6 / n),
        "others_us": round(sum(used[1:]) * 1e6 / n),
        "agents_us": round(sum(used) * 1e6 / n),
        "failures": len(failures),
        "load": round(os.getloadavg()[0], 1),
    }


def run(work: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    settings = {"log_level": "warning", **dict(item.split("=", 1) for item in args.set)}
    cluster = LocalCluster(
        work / "cluster",
        3,
        base_port=None,
        gossip_base_port=None,
        s3_base_port=0,
        settings=settings,
    )
    with cluster:
        cluster.start()
        cluster.wait_ready(60)
        cluster.wait_view([1, 2, 3], 30)
        pids = [p.process.pid for p in cluster.peers if p.process is not None]
        peer = cluster.peer(1)
        conn = http.client.HTTPConnection(peer.host, peer.port, timeout=60)
        conn.request("PUT", f"/v1/buckets/{BUCKET}", headers=cluster.headers)
        conn.getresponse().read()
        conn.close()
        warm = [f"warm-{i}" for i in range(200)]
        for method in ("PUT", "GET", "HEAD"):
            phase(cluster, pids, method, warm, args.clients)
        keys = [f"k-{i:06d}" for i in range(args.ops)]
        idle = idle_cpu(pids, 5.0)
        print(json.dumps({"idle_cpu_percent": [round(x * 100, 1) for x in idle]}), flush=True)
        out = []
        for method in ("PUT", "GET", "HEAD"):
            spy = None
            if args.py_spy is not None:
                args.py_spy.mkdir(parents=True, exist_ok=True)
                spy = start_py_spy(pids[0], args.py_spy / f"{method.lower()}.txt", 100, False)
                time.sleep(1.0)
            out.append(phase(cluster, pids, method, keys, args.clients, idle))
            if spy is not None:
                stop_py_spy([spy])
            print(json.dumps(out[-1]), flush=True)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--ops", type=int, default=3000, help="requests per operation")
    parser.add_argument("--clients", type=int, default=8, help="threads, one connection each")
    parser.add_argument("--base-dir", default=None, help="where the agents' data goes")
    parser.add_argument("--py-spy", type=Path, default=None, help="profile each phase here")
    parser.add_argument(
        "--set", action="append", default=[], metavar="SETTING=VALUE", help="PeerConfig setting"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dfspeer-small-", dir=args.base_dir))
    try:
        rows = run(work, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for r in rows:
        print(
            f"{r['op']:4} {r['ops_per_s']:8.1f} ops/s  coordinator {r['coordinator_us']} µs/op,"
            f" other two {r['others_us']} µs/op, all {r['agents_us']} µs/op"
            f" ({r['failures']} failed, load {r['load']})",
            file=sys.stderr,
        )


if __name__ == "__main__":
    main()
