"""CPU seconds per GiB uploaded, per agent: where a streamed upload's CPU goes.

Starts 3 local agents (N = 3, W = 2, durable; :class:`~dfspeer.localcluster.LocalCluster`,
admin token on), then, ``--rounds`` times, streams one new object of ``--size-mib`` MiB into
peer 1 with ``PUT /v1/objects/{bucket}/{key}`` (stdlib ``http.client``, ``Content-Length``,
1 MiB writes; the body of :mod:`rss_upload`: unique bytes made on the fly, so nothing
deduplicates). Around each upload it reads ``utime + stime`` of every agent from
``/proc/PID/stat`` (CPU seconds the process used, all its threads), and of this client.

Reported per round and as the median over the rounds: CPU seconds per GiB (2^30 B) of the
coordinator (peer 1), of each other replica and of all three agents together; the upload's
MB/s (10^6 B/s, wall time, so it swings with the machine's load while the CPU figures do
not); the server's SHA-256 is checked against the one computed while sending.

``--py-spy DIR`` also records the coordinator and peer 2 with ``py-spy record --format raw``
(busy threads only; ``--native`` adds C frames) during the last round
(``DIR/coordinator.txt``, ``DIR/replica.txt``: folded stacks, one line per stack with its
sample count; ``--rate`` samples/s) -- the agents then pay the sampling, so read the CPU
figures of the runs without it.

Usage::

    python benchmarks/upload_cpu.py                          # 3 x 512 MiB
    python benchmarks/upload_cpu.py --size-mib 256 --rounds 5
    python benchmarks/upload_cpu.py --set default_chunking=fixed
    python benchmarks/upload_cpu.py --rounds 1 --py-spy /tmp/prof
    python benchmarks/upload_cpu.py --swift-port 46100 --swift-run-dir /tmp/swift-anchor/run

``--swift-port`` also uploads the same bytes, after each dfspeer round, into an OpenStack
Swift anchor that is already running (``../shared/anchors/swift/setup.sh``; see
:mod:`vs_swift`), and reports its MB/s, the CPU seconds per GiB of all its server processes
and the median of the per-round dfspeer / Swift MB/s ratios: unique bytes every round, so
neither side deduplicates (``vs_swift.py`` repeats each file, which dfspeer deduplicates).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import suppress
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rss_upload import Body, put  # benchmarks/ is on sys.path when this file is run

from dfspeer.localcluster import LocalCluster

MiB = 1 << 20
GiB = 1 << 30
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int, tid: int | None = None) -> float:
    """User + system CPU seconds so far of process ``pid`` (all its threads), or of its
    thread ``tid``."""
    path = f"/proc/{pid}/stat" if tid is None else f"/proc/{pid}/task/{tid}/stat"
    with open(path) as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime, stime (fields 14, 15)


def thread_cpu(pid: int) -> dict[int, float]:
    """CPU seconds so far of each thread of ``pid``, by thread id."""
    out: dict[int, float] = {}
    for tid in os.listdir(f"/proc/{pid}/task"):
        with suppress(OSError):
            out[int(tid)] = cpu_seconds(pid, int(tid))
    return out


def thread_names(pid: int) -> dict[int, str]:
    """Python thread names by thread id, from ``py-spy dump`` ({} without py-spy)."""
    try:
        text = subprocess.run(
            ["py-spy", "dump", "--pid", str(pid)], capture_output=True, text=True, timeout=30
        ).stdout
    except (OSError, subprocess.TimeoutExpired):
        return {}
    found = re.findall(r'^Thread (\d+) \([^)]*\): "([^"]*)"', text, re.MULTILINE)
    return {int(tid): name for tid, name in found}


def by_thread(
    before: dict[int, float], after: dict[int, float], names: dict[int, str], size: int
) -> dict[str, float]:
    """CPU seconds per GiB of each thread busy more than 0.05 s/GiB, busiest first."""
    used = {tid: (t - before.get(tid, 0.0)) * GiB / size for tid, t in after.items()}
    busy = sorted(((v, tid) for tid, v in used.items() if v > 0.05), reverse=True)
    return {f"{names.get(tid, 'thread')} ({tid})": round(v, 2) for v, tid in busy}


def start_py_spy(pid: int, out: Path, rate: int, native: bool) -> subprocess.Popen[bytes]:
    """``py-spy record`` of ``pid`` into ``out`` (raw folded stacks) until SIGINT."""
    cmd = ["py-spy", "record", "--pid", str(pid), "--format", "raw", "--threads"]
    cmd += ["--rate", str(rate), "--output", str(out)]
    if native:
        cmd.append("--native")
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def stop_py_spy(procs: list[subprocess.Popen[bytes]]) -> None:
    """Stop the recorders (SIGINT: each writes its file) and wait for them."""
    for proc in procs:
        proc.send_signal(signal.SIGINT)
    for proc in procs:
        _, err = proc.communicate(timeout=60)
        if proc.returncode not in (0, -signal.SIGINT):
            print(f"py-spy: {err.decode(errors='replace')[-300:]}", file=sys.stderr)


def one_round(
    cluster: LocalCluster,
    pids: list[int],
    size: int,
    seed: int,
    profile: Path | None = None,
    spy: tuple[int, bool] = (100, False),
    names: dict[int, dict[int, str]] | None = None,
) -> dict[str, Any]:
    """Upload one new object; CPU seconds per GiB of each agent and the client, MB/s, and
    of each busy thread of the coordinator and of peer 2 (``names``: pid -> tid -> name)."""
    names = names or {}
    body = Body(size, seed)
    path = f"/v1/objects/cpu-{time.time_ns()}/big"
    spies: list[subprocess.Popen[bytes]] = []
    if profile is not None:
        profile.mkdir(parents=True, exist_ok=True)
        spies = [
            start_py_spy(pids[0], profile / "coordinator.txt", *spy),
            start_py_spy(pids[1], profile / "replica.txt", *spy),
        ]
        time.sleep(1.0)  # py-spy attaches
    load = os.getloadavg()[0]
    threads = [thread_cpu(p) for p in pids[:2]]
    before = [cpu_seconds(p) for p in pids]
    client0 = time.process_time()
    status, answer, secs = put(cluster, path, body)
    client = time.process_time() - client0
    time.sleep(0.5)  # stragglers (the third replica's write) finish
    used = [cpu_seconds(p) - b for p, b in zip(pids, before, strict=True)]
    threads_after = [thread_cpu(p) for p in pids[:2]]
    if spies:
        stop_py_spy(spies)
    if status != 201 or answer.get("sha256") != body.sha256.hexdigest():
        raise SystemExit(f"upload failed: {status} {answer}")
    per_gib = [u * GiB / size for u in used]
    return {
        "MBps": round(size / secs / 1e6, 1),
        "coordinator_s_per_GiB": round(per_gib[0], 2),
        "replicas_s_per_GiB": [round(x, 2) for x in per_gib[1:]],
        "agents_s_per_GiB": round(sum(per_gib), 2),
        "client_s_per_GiB": round(client * GiB / size, 2),
        "loadavg_1min": round(load, 2),
        "threads": [
            by_thread(b, a, names.get(pid, {}), size)
            for pid, b, a in zip(pids, threads, threads_after, strict=False)
        ],
    }


def swift_round(port: int, run_dir: Path, size: int, seed: int) -> dict[str, Any]:
    """The same upload into a running Swift anchor (its proxy on 127.0.0.1:``port``,
    tempauth ``test:tester``): MB/s and CPU seconds per GiB of all its server processes
    (their PIDs from ``run_dir/*.pid``)."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    auth = {"X-Auth-User": "test:tester", "X-Auth-Key": "testing"}
    c.request("GET", "/auth/v1.0", headers=auth)
    r = c.getresponse()
    r.read()
    token = {"X-Auth-Token": r.getheader("X-Auth-Token") or ""}
    container = f"{urlsplit(r.getheader('X-Storage-Url') or '').path}/cpu-{time.time_ns()}"
    c.request("PUT", container, headers=token)
    c.getresponse().read()
    c.close()
    pids = [int(p.read_text()) for p in run_dir.glob("*.pid")]
    body = Body(size, seed)
    before = {p: cpu_seconds(p) for p in pids}
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=600, blocksize=MiB)
    t = time.perf_counter()
    c.request("PUT", container + "/big", body=body, headers={**token, "Content-Length": str(size)})
    r = c.getresponse()
    r.read()
    secs = time.perf_counter() - t
    time.sleep(0.5)
    used = sum(cpu_seconds(p) - b for p, b in before.items())
    for path in (container + "/big", container):  # leave the anchor's disk as it was
        c.request("DELETE", path, headers=token)
        c.getresponse().read()
    c.close()
    if r.status != 201:
        raise SystemExit(f"Swift upload failed: {r.status}")
    return {"MBps": round(size / secs / 1e6, 1), "servers_s_per_GiB": round(used * GiB / size, 2)}


def summary(rounds: list[dict[str, Any]]) -> dict[str, Any]:
    """Medians over ``rounds`` of each figure."""

    def med(key: str) -> float:
        return round(statistics.median(r[key] for r in rounds), 2)

    replicas = [
        statistics.median(x) for x in zip(*(r["replicas_s_per_GiB"] for r in rounds), strict=True)
    ]
    return {
        "MBps": med("MBps"),
        "coordinator_s_per_GiB": med("coordinator_s_per_GiB"),
        "replicas_s_per_GiB": [round(x, 2) for x in replicas],
        "agents_s_per_GiB": med("agents_s_per_GiB"),
        "client_s_per_GiB": med("client_s_per_GiB"),
    }


def run(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Start the cluster under ``work``, warm it up, run the rounds; every figure."""
    settings = {"log_level": "warning", **dict(item.split("=", 1) for item in args.set)}
    cluster = LocalCluster(
        work / "cluster",
        3,
        base_port=None,
        gossip_base_port=None,
        s3_base_port=0,
        settings=settings,
    )
    size = args.size_mib * MiB
    with cluster:
        cluster.start()
        cluster.wait_ready(60)
        cluster.wait_view([1, 2, 3], 30)
        pids = [p.process.pid for p in cluster.peers if p.process is not None]
        one_round(cluster, pids, min(size, 64 * MiB), args.seed)  # warm-up: threads start
        names = {pid: thread_names(pid) for pid in pids[:2]}
        rounds: list[dict[str, Any]] = []
        swift: list[dict[str, Any]] = []
        for i in range(args.rounds):
            profile = args.py_spy if args.py_spy and i == args.rounds - 1 else None
            rounds.append(
                one_round(
                    cluster, pids, size, args.seed + i, profile, (args.rate, args.native), names
                )
            )
            print(json.dumps(rounds[-1]), flush=True)
            if args.swift_port:
                swift.append(swift_round(args.swift_port, args.swift_run_dir, size, args.seed + i))
                print("swift", json.dumps(swift[-1]), flush=True)
    return {
        "object_MiB": args.size_mib,
        "settings": settings,
        "rounds": rounds,
        "median": summary(rounds),
        **(swift_summary(rounds, swift) if swift else {}),
    }


def swift_summary(rounds: list[dict[str, Any]], swift: list[dict[str, Any]]) -> dict[str, Any]:
    """Swift's rounds, their medians, and the median of per-round dfspeer / Swift MB/s."""
    ratios = [d["MBps"] / s["MBps"] for d, s in zip(rounds, swift, strict=True)]
    return {
        "swift_rounds": swift,
        "swift_median": {
            "MBps": statistics.median(s["MBps"] for s in swift),
            "servers_s_per_GiB": statistics.median(s["servers_s_per_GiB"] for s in swift),
        },
        "MBps_ratio_dfspeer_to_swift": round(statistics.median(ratios), 2),
    }


def main() -> None:
    """Parse the arguments, run, print the medians (and write ``--json``)."""
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=512, help="object size (MiB)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--base-dir", default=None, help="where the agents' data goes")
    parser.add_argument("--json", default=None, help="also write the figures here")
    parser.add_argument("--py-spy", type=Path, default=None, help="profile the last round here")
    parser.add_argument("--rate", type=int, default=100, help="py-spy samples per second")
    parser.add_argument("--native", action="store_true", help="py-spy: C frames too")
    parser.add_argument(
        "--swift-port", type=int, default=0, help="also upload to a running Swift anchor's proxy"
    )
    parser.add_argument(
        "--swift-run-dir",
        type=Path,
        default=Path("/tmp/swift-anchor/run"),
        help="the anchor's PID files (its SWIFT_ANCHOR_DIR/run)",
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="SETTING=VALUE", help="PeerConfig setting"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dfspeer-cpu-", dir=args.base_dir))
    try:
        out = run(work, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    m = out["median"]
    print(json.dumps(out["median"], indent=2))
    print(
        f"{args.size_mib} MiB x {args.rounds} (medians): coordinator {m['coordinator_s_per_GiB']}"
        f" CPU-s/GiB, replicas {m['replicas_s_per_GiB']}, agents {m['agents_s_per_GiB']},"
        f" client {m['client_s_per_GiB']}; {m['MBps']} MB/s"
    )
    if "swift_median" in out:
        sw = out["swift_median"]
        print(
            f"Swift: {sw['MBps']} MB/s, its servers {sw['servers_s_per_GiB']} CPU-s/GiB;"
            f" dfspeer / Swift MB/s (median of rounds) {out['MBps_ratio_dfspeer_to_swift']}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
