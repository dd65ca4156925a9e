"""Data-path throughput: 3 local ``dfspeer agent`` processes (N = 3) vs a bare baseline.

Measures, in one run and on the same disk:

* upload and download MB/s of 64 MiB and 1 GiB objects through peer 1's public API;
* 1 MiB ranged GET latency p50 / p99 (random offsets, round-robin over the peers);
* the coordinator's peak RSS while it takes a 2 GiB upload (sampled every 20 ms);
* CPU seconds (user + sys) of each agent during the 1 GiB upload (where the time goes);
* a chunk-size sweep (1, 2, 4, 8 MiB: upload + download of 64 MiB and 256 MiB objects);
* the baseline: a bare aiohttp server that streams the same bytes into one local file and
  fsyncs it (upload), and serves it back with ``FileResponse`` (download, ranges),
  measured right before each dfspeer figure so both see the same disk weather.

Every upload body is unique (each 1 MiB piece starts with a counter and a per-run nonce),
so no chunk is deduplicated. Each dfspeer object is written to all 3 replicas on this
one disk, so the upload ceiling is about one third of the baseline's disk bandwidth.

Usage::

    python benchmarks/throughput.py            # full run (about 4-6 minutes)
    python benchmarks/throughput.py --quick    # smaller objects, fewer samples (~1.5 min)
    python benchmarks/throughput.py --json results.json

Needs psutil. Data goes to a temporary directory (``--base-dir`` to choose), removed at
the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import psutil  # type: ignore[import-untyped]
from aiohttp import web

from dfspeer.access.credentials import load_admin_token, new_admin_token, write_secret_file
from dfspeer.config import PeerConfig
from dfspeer.localcluster import LocalCluster

MiB = 1024 * 1024
GiB = 1024 * MiB
PIECE = MiB
BUCKET = "bench"


# ---------------------------------------------------------------------- baseline server
def serve_baseline(directory: Path, host: str, port: int) -> None:
    """The baseline: stream PUT bodies into a file + fsync; GET with FileResponse."""
    directory.mkdir(parents=True, exist_ok=True)

    async def put(request: web.Request) -> web.Response:
        path = directory / request.match_info["name"]
        size = 0
        with open(path, "wb") as f:
            async for piece in request.content.iter_any():
                f.write(piece)
                size += len(piece)
            f.flush()
            os.fsync(f.fileno())
        return web.json_response({"size": size}, status=201)

    async def get(request: web.Request) -> web.StreamResponse:
        return web.FileResponse(directory / request.match_info["name"])

    async def delete(request: web.Request) -> web.Response:
        (directory / request.match_info["name"]).unlink(missing_ok=True)
        return web.Response(status=204)

    app = web.Application(client_max_size=0)
    app.router.add_put("/{name}", put)
    app.router.add_get("/{name}", get)
    app.router.add_delete("/{name}", delete)
    web.run_app(app, host=host, port=port, print=None, access_log=None)


def free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def baseline_server(directory: Path) -> Iterator[str]:
    host = "127.0.0.1"
    port = free_port(host)
    proc = subprocess.Popen(
        [sys.executable, __file__, "--serve-baseline", str(directory), "--port", str(port)],
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    url = f"http://{host}:{port}"
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with contextlib.suppress(OSError), socket.create_connection((host, port), 0.2):
                break
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


# ---------------------------------------------------------------------- client side
class Body:
    """A unique, reproducible-size upload body of 1 MiB pieces (no chunk repeats)."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.nonce = os.urandom(8)
        self.base = os.urandom(PIECE)

    async def pieces(self) -> AsyncIterator[bytes]:
        sent = 0
        i = 0
        while sent < self.size:
            n = min(PIECE, self.size - sent)
            piece = (i.to_bytes(8, "big") + self.nonce + self.base[16:])[:n]
            yield piece
            sent += n
            i += 1


async def upload(http: aiohttp.ClientSession, url: str, size: int) -> float:
    """PUT ``size`` unique bytes; return MB/s (1 MB = 10^6 bytes)."""
    body = Body(size)
    start = time.perf_counter()
    async with http.put(url, data=body.pieces(), headers={"Content-Length": str(size)}) as r:
        text = await r.text()
        if r.status not in (200, 201):
            raise RuntimeError(f"PUT {url}: {r.status} {text[:300]}")
    return size / (time.perf_counter() - start) / 1e6


async def download(http: aiohttp.ClientSession, url: str, size: int) -> float:
    start = time.perf_counter()
    got = 0
    async with http.get(url) as r:
        if r.status != 200:
            raise RuntimeError(f"GET {url}: {r.status} {(await r.text())[:300]}")
        async for piece in r.content.iter_chunked(PIECE):
            got += len(piece)
    if got != size:
        raise RuntimeError(f"GET {url}: got {got} bytes, expected {size}")
    return size / (time.perf_counter() - start) / 1e6


async def ranged(
    http: aiohttp.ClientSession, urls: list[str], size: int, count: int
) -> tuple[float, float]:
    """``count`` random 1 MiB ranged GETs round-robin over ``urls``; (p50, p99) in ms."""
    rng = random.Random(7)
    latencies = []
    for i in range(count):
        start = rng.randrange(0, size - MiB)
        t = time.perf_counter()
        headers = {"Range": f"bytes={start}-{start + MiB - 1}"}
        async with http.get(urls[i % len(urls)], headers=headers) as r:
            data = await r.read()
            if r.status != 206 or len(data) != MiB:
                raise RuntimeError(f"ranged GET: {r.status}, {len(data)} bytes")
        latencies.append((time.perf_counter() - t) * 1000)
    latencies.sort()
    return statistics.median(latencies), latencies[min(len(latencies) - 1, int(0.99 * count))]


def rss_parts(pid: int) -> tuple[int, int]:
    """(anonymous, file-backed) resident bytes of ``pid`` (Linux /proc/PID/status)."""
    anon = file = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("RssAnon:"):
                anon = int(line.split()[1]) * 1024
            elif line.startswith(("RssFile:", "RssShmem:")):
                file += int(line.split()[1]) * 1024
    return anon, file


class RssSampler:
    """Samples a process's RSS every ``interval_s`` in a thread. ``peak``: total RSS bytes;
    ``peak_anon``: anonymous (heap) part; ``peak_file``: file-backed part (LMDB's mmap)."""

    def __init__(self, pid: int, interval_s: float = 0.02) -> None:
        self.pid = pid
        self.interval_s = interval_s
        self.peak = self.peak_anon = self.peak_file = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            with contextlib.suppress(OSError):
                anon, file = rss_parts(self.pid)
                self.peak = max(self.peak, anon + file)
                self.peak_anon = max(self.peak_anon, anon)
                self.peak_file = max(self.peak_file, file)
            time.sleep(self.interval_s)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def cpu_seconds(pids: list[int]) -> list[float]:
    out = []
    for pid in pids:
        t = psutil.Process(pid).cpu_times()
        out.append(t.user + t.system)
    return out


# ---------------------------------------------------------------------- runs
SETTINGS: dict[str, str] = {}
ADMIN_TOKEN_FILE: list[Path] = []  # one admin token for every cluster of a run (set by run)


def start_cluster(base: Path, chunk_size: int) -> LocalCluster:
    cluster = LocalCluster(
        base,
        3,
        base_port=None,
        gossip_base_port=None,
        settings={"chunk_size_bytes": chunk_size, "log_level": "warning", **SETTINGS},
        admin_token_file=ADMIN_TOKEN_FILE[0] if ADMIN_TOKEN_FILE else None,
    )
    cluster.start()
    cluster.wait_ready(60)
    time.sleep(1.0)  # let every peer see the full ring
    return cluster


def pids_of(cluster: LocalCluster) -> list[int]:
    return [p.process.pid for p in cluster.peers if p.process is not None]


async def pair(
    http: aiohttp.ClientSession, base_url: str, cluster: LocalCluster, name: str, size: int
) -> dict[str, float]:
    """Baseline and dfspeer upload + download of one ``size``-byte object."""
    b_up = await upload(http, f"{base_url}/{name}", size)
    d_up = await upload(http, f"{cluster.peer(1).url}/v1/objects/{BUCKET}/{name}", size)
    b_down = await download(http, f"{base_url}/{name}", size)
    d_down = await download(http, f"{cluster.peer(2).url}/v1/objects/{BUCKET}/{name}", size)
    async with http.delete(f"{base_url}/{name}"):
        pass
    return {"baseline_up": b_up, "up": d_up, "baseline_down": b_down, "down": d_down}


def mean_of(rows: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.mean(r[k] for r in rows) for k in rows[0]}


async def sweep(
    http: aiohttp.ClientSession,
    base_url: str,
    work: Path,
    sizes: list[int],
    chunk_sizes: list[int],
    ranges: int,
) -> dict[str, Any]:
    """Per chunk size: mean up/down MB/s over ``sizes`` (each against the baseline run
    just before it) and 1 MiB ranged GET p50 over ``ranges`` requests."""
    out: dict[str, Any] = {}
    for cs in chunk_sizes:
        base = work / f"sweep-{cs // MiB}"
        with start_cluster(base, cs) as cluster:
            rows = [
                await pair(http, base_url, cluster, f"s{cs}-{i}", size)
                for i, size in enumerate(sizes)
            ]
            last = f"s{cs}-{len(sizes) - 1}"
            urls = [f"{p.url}/v1/objects/{BUCKET}/{last}" for p in cluster.peers]
            p50, _ = await ranged(http, urls, sizes[-1], ranges)
        shutil.rmtree(base, ignore_errors=True)
        r = mean_of(rows)
        r["ranged_p50_ms"] = p50
        out[f"{cs // MiB} MiB"] = r
        print(
            f"  chunk {cs // MiB} MiB: up {r['up']:.0f} MB/s (baseline {r['baseline_up']:.0f}),"
            f" down {r['down']:.0f} MB/s (baseline {r['baseline_down']:.0f}),"
            f" 1 MiB range p50 {p50:.1f} ms",
            flush=True,
        )
    return out


async def main_run(
    http: aiohttp.ClientSession, base_url: str, work: Path, args: argparse.Namespace
) -> dict[str, Any]:
    small, large, rss_size = (
        (64 * MiB, 256 * MiB, 512 * MiB) if args.quick else (64 * MiB, GiB, 2 * GiB)
    )
    repeats = 2 if args.quick else 5
    out: dict[str, Any] = {"chunk_size_bytes": args.chunk_size}
    base = work / "main"
    with start_cluster(base, args.chunk_size) as cluster:
        pids = pids_of(cluster)
        rows = [await pair(http, base_url, cluster, f"small-{i}", small) for i in range(repeats)]
        out[f"{small // MiB} MiB"] = mean_of(rows)
        print(f"  {small // MiB} MiB: {_fmt(out[f'{small // MiB} MiB'])}", flush=True)
        before = cpu_seconds(pids)
        t0 = time.perf_counter()
        row = await pair(http, base_url, cluster, "large", large)
        elapsed = time.perf_counter() - t0
        after = cpu_seconds(pids)
        out[f"{large // MiB} MiB"] = row
        out["cpu_s_during_large_pair"] = {
            "wall_s": elapsed,
            "per_agent": [round(a - b, 2) for a, b in zip(after, before, strict=True)],
        }
        print(f"  {large // MiB} MiB: {_fmt(row)}", flush=True)
        print(
            f"  agent CPU s during that pair ({elapsed:.1f} s wall, baseline included): "
            f"{out['cpu_s_during_large_pair']['per_agent']}",
            flush=True,
        )
        # ranged GETs on the large object (and on the baseline's copy of it)
        count = 50 if args.quick else 200
        await upload(http, f"{base_url}/large", large)
        b50, b99 = await ranged(http, [f"{base_url}/large"], large, count)
        urls = [f"{p.url}/v1/objects/{BUCKET}/large" for p in cluster.peers]
        p50, p99 = await ranged(http, urls, large, count)
        async with http.delete(f"{base_url}/large"):
            pass
        out["ranged_1MiB_ms"] = {
            "p50": p50,
            "p99": p99,
            "baseline_p50": b50,
            "baseline_p99": b99,
            "count": count,
        }
        print(
            f"  1 MiB ranged GET: p50 {p50:.1f} ms, p99 {p99:.1f} ms "
            f"(baseline p50 {b50:.1f}, p99 {b99:.1f}; {count} requests)",
            flush=True,
        )
    shutil.rmtree(base, ignore_errors=True)
    # memory: a fresh cluster whose coordinator takes one big upload and nothing else
    base = work / "rss"
    with start_cluster(base, args.chunk_size) as cluster:
        coordinator = cluster.peer(1).process
        assert coordinator is not None
        rss_before = sum(rss_parts(coordinator.pid))
        with RssSampler(coordinator.pid) as sampler:
            mbps = await upload(http, f"{cluster.peer(1).url}/v1/objects/{BUCKET}/rss", rss_size)
    shutil.rmtree(base, ignore_errors=True)
    out["rss"] = {
        "object_bytes": rss_size,
        "peak_rss_mib": sampler.peak / MiB,
        "peak_anon_mib": sampler.peak_anon / MiB,
        "peak_file_mib": sampler.peak_file / MiB,
        "rss_before_mib": rss_before / MiB,
        "upload_mb_s": mbps,
    }
    print(
        f"  {rss_size // MiB} MiB upload: coordinator peak RSS {sampler.peak / MiB:.0f} MiB "
        f"(anonymous {sampler.peak_anon / MiB:.0f}, file-backed {sampler.peak_file / MiB:.0f}; "
        f"{rss_before / MiB:.0f} MiB before), {mbps:.0f} MB/s",
        flush=True,
    )
    return out


def _fmt(r: dict[str, float]) -> str:
    return (
        f"up {r['up']:.0f} MB/s vs baseline {r['baseline_up']:.0f} "
        f"({100 * r['up'] / r['baseline_up']:.0f}%), down {r['down']:.0f} MB/s vs baseline "
        f"{r['baseline_down']:.0f} ({100 * r['down'] / r['baseline_down']:.0f}%)"
    )


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.base_dir or tempfile.mkdtemp(prefix="dfspeer-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"quick": args.quick, "cpus": os.cpu_count()}
    timeout = aiohttp.ClientTimeout(total=600)
    started = time.perf_counter()
    token_file = work / "admin.token"
    if not token_file.exists():
        write_secret_file(token_file, new_admin_token())
    ADMIN_TOKEN_FILE[:] = [token_file]
    auth = {"Authorization": f"Bearer {load_admin_token(token_file)}"}
    try:
        with baseline_server(work / "baseline") as base_url:
            async with aiohttp.ClientSession(timeout=timeout, headers=auth) as http:
                if not args.skip_sweep:
                    print("chunk-size sweep (mean of uploads/downloads):", flush=True)
                    sizes = [64 * MiB] if args.quick else [64 * MiB] * 3 + [256 * MiB] * 2
                    results["sweep"] = await sweep(
                        http,
                        base_url,
                        work,
                        sizes,
                        [c * MiB for c in args.chunk_sizes],
                        20 if args.quick else 50,
                    )
                print(f"main run (chunk size {args.chunk_size // MiB} MiB):", flush=True)
                results["main"] = await main_run(http, base_url, work, args)
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    results["elapsed_s"] = time.perf_counter() - started
    print(f"total {results['elapsed_s']:.0f} s", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smaller objects, fewer samples")
    parser.add_argument(
        "--chunk-size",
        type=int,
        default=PeerConfig().chunk_size_bytes,
        help="main run chunk size (default: PeerConfig's)",
    )
    parser.add_argument(
        "--chunk-sizes",
        type=lambda s: [int(x) for x in s.split(",")],
        default=[1, 2, 4, 8],
        help="sweep, in MiB (default 1,2,4,8)",
    )
    parser.add_argument("--skip-sweep", action="store_true")
    parser.add_argument("--base-dir", default=None)
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    parser.add_argument("--json", default=None, help="also write the results here")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="SETTING=VALUE",
        help="extra PeerConfig setting for the agents (repeatable)",
    )
    parser.add_argument("--serve-baseline", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_baseline:
        serve_baseline(Path(args.serve_baseline), "127.0.0.1", args.port)
        return
    for item in args.set:
        name, _, value = item.partition("=")
        SETTINGS[name.strip()] = value.strip()
    results = asyncio.run(run(args))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
