"""Coordinator RSS while one peer takes a 2 GiB upload through the native API.

Starts 3 local agents (N = 3, W = 2, durable; :class:`~dfspeer.localcluster.LocalCluster`,
admin token on), then streams one object into peer 1 with ``PUT /v1/objects/{bucket}/{key}``
(stdlib ``http.client``, ``Content-Length``, 1 MiB writes). The body is generated on the fly
(never held in memory): a seeded 16 MiB random buffer read cyclically, with a 16-byte
BLAKE2b stamp every 64 KiB, so no chunk repeats (nothing deduplicates) and nothing
compresses; its SHA-256 is computed as it is sent.

While it runs, a thread reads ``VmRSS`` (and its split ``RssAnon`` / ``RssFile`` +
``RssShmem``) from ``/proc/PID/status`` of the coordinator (peer 1) every 100 ms, and of the
two other agents too. Reported, in MiB (2^20 B):

* ``peak``: the largest coordinator sample during the upload;
* ``steady``: the median of the samples in the upload's second half;
* ``idle``: before the upload; the other agents' peaks; the same during the download.

Then the object is read back with one ``GET`` (1 MiB reads), hashed, and its SHA-256
compared with the one computed while sending and with the server's ``ETag``. Exit status 1
if the upload or the check fails or the peak is over ``--aim-mib`` (150).

The agents run without an S3 port (an agent loads botocore, about 10 MiB, only for one);
``--s3`` gives each agent an S3 port as ``dfspeer agent`` does by default.

``--tracemalloc`` runs the coordinator under :mod:`trace_agent` (tracemalloc, 12 frames)
and prints where its Python allocations were at their largest (slower; for diagnosis only).

Usage::

    python benchmarks/rss_upload.py                  # 2 GiB (about 1-2 minutes)
    python benchmarks/rss_upload.py --size-mib 256   # a short check
    python benchmarks/rss_upload.py --json rss.json
    python benchmarks/rss_upload.py --tracemalloc    # where the memory goes
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
import threading
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from typing import Any

from dfspeer.localcluster import LocalCluster

MiB = 1 << 20
HERE = Path(__file__).resolve().parent
STAMP_EVERY = 64 * 1024
BASE_BYTES = 16 * MiB
FIELDS = ("VmRSS", "RssAnon", "RssFile", "RssShmem")


class Body:
    """``size`` unique bytes in 1 MiB pieces, made on the fly; ``sha256`` of what was sent."""

    def __init__(self, size: int, seed: int) -> None:
        self.size = size
        self.base = random.Random(seed).randbytes(BASE_BYTES + STAMP_EVERY)
        self.key = os.urandom(16)  # per run: no dedup against an earlier run's blocks
        self.sha256 = hashlib.sha256()

    def __iter__(self) -> Iterator[bytes]:
        for start in range(0, self.size, MiB):
            end = min(self.size, start + MiB)
            parts = []
            for s in range(start, end, STAMP_EVERY):
                e = min(end, s + STAMP_EVERY)
                stamp = hashlib.blake2b(s.to_bytes(8, "big"), key=self.key, digest_size=16)
                head = stamp.digest()[: e - s]
                off = s % BASE_BYTES
                parts.append(head + self.base[off + len(head) : off + (e - s)])
            piece = b"".join(parts)
            self.sha256.update(piece)
            yield piece


def rss(pid: int) -> dict[str, int]:
    """``FIELDS`` of ``/proc/PID/status`` in bytes (RssFile includes RssShmem here)."""
    out = dict.fromkeys(FIELDS, 0)
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name in out:
                out[name] = int(rest.split()[0]) * 1024
    out["RssFile"] += out.pop("RssShmem")
    return out


class Sampler:
    """Samples the RSS of ``pids`` every ``interval_s`` in a thread, with timestamps."""

    def __init__(self, pids: list[int], interval_s: float) -> None:
        self.pids, self.interval_s = pids, interval_s
        self.samples: list[tuple[float, list[dict[str, int]]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with suppress(OSError):
                self.samples.append((time.perf_counter(), [rss(p) for p in self.pids]))
            self._stop.wait(self.interval_s)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def figures(self, t0: float, t1: float) -> dict[str, Any]:
        """Peak and steady (median of the second half of [t0, t1]) RSS, in MiB."""
        window = [s for t, s in self.samples if t0 <= t <= t1]
        late = [s for t, s in self.samples if (t0 + t1) / 2 <= t <= t1] or window

        def mib(x: float) -> float:
            return round(x / MiB, 1)

        coord = [s[0] for s in window]
        return {
            "samples": len(window),
            "peak_mib": mib(max(s["VmRSS"] for s in coord)),
            "peak_anon_mib": mib(max(s["RssAnon"] for s in coord)),
            "peak_file_mib": mib(max(s["RssFile"] for s in coord)),
            "steady_mib": mib(statistics.median(s[0]["VmRSS"] for s in late)),
            "steady_anon_mib": mib(statistics.median(s[0]["RssAnon"] for s in late)),
            "other_peers_peak_mib": [
                mib(max(s[i]["VmRSS"] for s in window)) for i in range(1, len(self.pids))
            ],
        }


def put(cluster: LocalCluster, path: str, body: Body) -> tuple[int, dict[str, Any], float]:
    peer = cluster.peer(1)
    c = http.client.HTTPConnection(peer.host, peer.port, timeout=600, blocksize=MiB)
    t = time.perf_counter()
    headers = {**cluster.headers, "Content-Length": str(body.size)}
    c.request("PUT", path, body=body, headers=headers)
    r = c.getresponse()
    text = r.read()
    secs = time.perf_counter() - t
    c.close()
    with suppress(ValueError):
        return r.status, json.loads(text), secs
    return r.status, {"text": text[:300].decode(errors="replace")}, secs


def get(cluster: LocalCluster, path: str) -> tuple[int, int, str, str, float]:
    """(status, bytes, SHA-256 of the body, ETag, seconds)."""
    peer = cluster.peer(1)
    c = http.client.HTTPConnection(peer.host, peer.port, timeout=600, blocksize=MiB)
    h, n, buf = hashlib.sha256(), 0, bytearray(MiB)
    t = time.perf_counter()
    c.request("GET", path, headers=cluster.headers)
    r = c.getresponse()
    while k := r.readinto(buf):
        n += k
        h.update(memoryview(buf)[:k])
    secs = time.perf_counter() - t
    c.close()
    return r.status, n, h.hexdigest(), (r.getheader("ETag") or "").strip('"'), secs


def measure(cluster: LocalCluster, args: argparse.Namespace) -> dict[str, Any]:
    pids = [p.process.pid for p in cluster.peers if p.process is not None]
    size = args.size_mib * MiB
    body = Body(size, args.seed)
    path = f"/v1/objects/rss-{time.time_ns()}/big"
    out: dict[str, Any] = {"object_bytes": size, "coordinator_pid": pids[0]}
    idle = rss(pids[0])
    out["idle_mib"] = round(idle["VmRSS"] / MiB, 1)
    out["idle_anon_mib"] = round(idle["RssAnon"] / MiB, 1)
    out["idle_file_mib"] = round(idle["RssFile"] / MiB, 1)
    out["loadavg_1min_before"] = round(os.getloadavg()[0], 2)
    with Sampler(pids, args.interval) as sampler:
        t0 = time.perf_counter()
        status, answer, up_secs = put(cluster, path, body)
        t1 = time.perf_counter()
        time.sleep(2 * args.interval)  # the samples right after the upload
        t2 = time.perf_counter()
        g_status, n, sha, etag, down_secs = get(cluster, path)
        t3 = time.perf_counter()
    sent = body.sha256.hexdigest()
    out["upload"] = {
        "status": status,
        "MBps": round(size / up_secs / 1e6, 1),
        "server_sha256_matches": answer.get("sha256") == sent,
        **sampler.figures(t0, t1),
    }
    out["download"] = {
        "status": g_status,
        "bytes": n,
        "MBps": round(n / down_secs / 1e6, 1),
        "sha256_matches": sha == sent,
        "etag_matches": etag == sent,
        **sampler.figures(t2, t3),
    }
    out["sha256"] = sent
    out["after_mib"] = round(rss(pids[0])["VmRSS"] / MiB, 1)
    out["loadavg_1min_after"] = round(os.getloadavg()[0], 2)
    return out


def run(work: Path, args: argparse.Namespace) -> dict[str, Any]:
    settings = {"log_level": "warning", **dict(item.split("=", 1) for item in args.set)}
    python = sys.executable
    if args.tracemalloc:  # a wrapper "interpreter": trace_agent.py -m dfspeer agent ...
        python = str(work / "python-traced")
        Path(python).write_text(
            f'#!/bin/sh\nexec "{sys.executable}" "{HERE / "trace_agent.py"}" "$@"\n'
        )
        os.chmod(python, 0o755)
    cluster = LocalCluster(
        work / "cluster",
        3,
        base_port=None,
        gossip_base_port=None,
        s3_base_port=None if args.s3 else 0,  # None: a free port
        settings=settings,
        python=python,
    )
    os.environ["RSS_TRACE_PEER"] = cluster.peer(1).peer_id
    os.environ["RSS_TRACE_DIR"] = str(work)
    with cluster:
        cluster.start()
        cluster.wait_ready(60)
        cluster.wait_view([1, 2, 3], 30)
        if args.tracemalloc:
            (work / "start").touch()  # trace_agent starts tracemalloc now
            time.sleep(2.0)
        out = measure(cluster, args)
    trace = work / f"{cluster.peer(1).peer_id}.txt"
    if trace.exists():
        out["tracemalloc"] = trace.read_text()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=2048, help="object size (MiB)")
    parser.add_argument("--interval", type=float, default=0.1, help="sampling period (s)")
    parser.add_argument("--aim-mib", type=float, default=150.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--base-dir", default=None, help="where the agents' data goes")
    parser.add_argument("--json", default=None, help="also write the figures here")
    parser.add_argument("--tracemalloc", action="store_true", help="trace the coordinator")
    parser.add_argument(
        "--s3", action="store_true", help="agents serve the S3 API too (its port loads botocore)"
    )
    parser.add_argument(
        "--set", action="append", default=[], metavar="SETTING=VALUE", help="PeerConfig setting"
    )
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dfspeer-rss-", dir=args.base_dir))
    try:
        out = run(work, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    up, down = out["upload"], out["download"]
    print(json.dumps({k: v for k, v in out.items() if k != "tracemalloc"}, indent=2))
    if "tracemalloc" in out:
        print("coordinator, tracemalloc at its largest:\n" + out["tracemalloc"])
    print(
        f"{args.size_mib} MiB upload at {up['MBps']} MB/s: coordinator RSS peak {up['peak_mib']}"
        f" MiB (anonymous {up['peak_anon_mib']}, file-backed {up['peak_file_mib']}), steady "
        f"{up['steady_mib']} MiB, idle {out['idle_mib']} MiB; download {down['MBps']} MB/s, "
        f"peak {down['peak_mib']} MiB, SHA-256 {'ok' if down['sha256_matches'] else 'MISMATCH'}"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    good = up["status"] == 201 and down["sha256_matches"] and down["etag_matches"]
    sys.exit(0 if good and up["peak_mib"] <= args.aim_mib else 1)


if __name__ == "__main__":
    main()
