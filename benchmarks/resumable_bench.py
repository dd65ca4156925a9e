"""Resumable uploads: a session with chunks in flight vs a one-shot PUT, and per-chunk cost.

In one run, against 3 local ``dfspeer agent`` processes (N = 3, W = 2, durable, like
``benchmarks/throughput.py``):

* **1 GiB file**: ``dfspeer.Client.upload_file`` (a session, ``--parallel`` chunks in
  flight, the session's default chunk size unless ``--chunk-size``; the client reads and
  hashes the file once, the server re-reads every chunk at completion to hash the object)
  against ``Client.put_object`` of the same kind of file (one streamed ``PUT``); each a
  fresh file of random bytes (so nothing deduplicates), the two alternating, median of
  ``--runs`` (3);
* **per-chunk overhead, 1 MiB chunks**: a session's chunks sent one at a time; the time per
  chunk PUT minus the time 1 MiB takes at the one-shot PUT's measured MB/s;
* **small chunks** (64 KiB, the smallest a session takes with ``upload_min_chunk_bytes``
  lowered to 64 KiB): chunk PUTs per second one at a time and 4 in flight, and one at a
  time for the first and last 200 of 2,000 chunks (does a session slow down as it grows?).

Prints a Markdown table (1 MB = 10^6 bytes) ending with the load average at the start and
the end of the run (the figures depend on what else the machine runs). Usage::

    python benchmarks/resumable_bench.py [--size-mib 1024] [--runs 3] [--parallel 4]

Data goes to a temporary directory (``--base-dir``), removed at the end unless ``--keep``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from dfspeer.client import Client, UploadStats
from dfspeer.localcluster import LocalCluster
from dfspeer.resume_state import ResumeStore

MiB = 1024 * 1024
BUCKET = "bench"
SETTINGS: dict[str, object] = {
    "log_level": "warning",
    "insecure": True,  # no client authentication: measure the data path
    "upload_min_chunk_bytes": 64 * 1024,
    "block_gc_grace_s": 0.0,
    "block_gc_interval_s": 1.0,
}


def make_file(path: Path, size: int) -> None:
    """``size`` random bytes (fresh, so no chunk repeats an earlier run's)."""
    with open(path, "wb") as out:
        left = size
        while left:
            n = min(8 * MiB, left)
            out.write(os.urandom(n))
            left -= n
        out.flush()
        os.fsync(out.fileno())


def start_cluster(base: Path) -> LocalCluster:
    cluster = LocalCluster(base, 3, base_port=None, gossip_base_port=None, settings=SETTINGS)
    cluster.start()
    cluster.wait_ready(60)
    cluster.wait_view([1, 2, 3], timeout_s=60)
    time.sleep(1.0)  # let every peer see the full ring
    return cluster


async def one_shot(url: str, path: Path, key: str) -> float:
    """One streamed PUT of the file; MB/s."""
    size = path.stat().st_size
    async with Client(url) as c:
        start = time.perf_counter()
        info = await c.put_object(BUCKET, key, path)
        elapsed = time.perf_counter() - start
        await c.delete_object(BUCKET, key)
    assert info["size"] == size, info
    return size / elapsed / 1e6


async def session(
    url: str, path: Path, key: str, parallel: int, chunk: int | None, state: Path
) -> tuple[float, UploadStats]:
    """``Client.upload_file`` of the file; MB/s and what it did."""
    size = path.stat().st_size
    stats = UploadStats()
    async with Client(url) as c:
        start = time.perf_counter()
        info = await c.upload_file(
            path,
            BUCKET,
            key,
            parallel=parallel,
            chunk_size=chunk,
            stats=stats,
            state_store=ResumeStore(state),
        )
        elapsed = time.perf_counter() - start
        await c.delete_object(BUCKET, key)
    assert info["size"] == size and stats.sent_bytes == size, (info, stats)
    return size / elapsed / 1e6, stats


async def chunk_times(url: str, chunk: int, count: int, parallel: int) -> list[float]:
    """Seconds each of ``count`` chunk PUTs of ``chunk`` random bytes took (``parallel`` in
    flight; with more than one, the mean interval instead), in index order."""
    async with Client(url) as c:
        created, _ = await c.init_upload(
            BUCKET, f"chunks-{chunk}-{parallel}", size=chunk * count, chunk_size=chunk
        )
        upload_id = created["upload_id"]
        payloads = [os.urandom(chunk) for _ in range(min(count, 64))]
        times: list[float] = []
        if parallel == 1:
            for i in range(count):
                start = time.perf_counter()
                await c.put_chunk(upload_id, i, payloads[i % len(payloads)][:-8] + i.to_bytes(8))
                times.append(time.perf_counter() - start)
        else:
            slots = asyncio.Semaphore(parallel)

            async def one(i: int) -> None:
                async with slots:
                    await c.put_chunk(
                        upload_id, i, payloads[i % len(payloads)][:-8] + i.to_bytes(8)
                    )

            start = time.perf_counter()
            await asyncio.gather(*(one(i) for i in range(count)))
            times = [(time.perf_counter() - start) / count] * count
        await c.abort_upload(upload_id)
        return times


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.base_dir or tempfile.mkdtemp(prefix="dfspeer-resumable-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    size = args.size_mib * MiB
    chunk = args.chunk_size_mib * MiB if args.chunk_size_mib else None
    results: dict[str, Any] = {
        "size_bytes": size,
        "parallel": args.parallel,
        "cpus": os.cpu_count(),
        "loadavg_start": os.getloadavg(),
    }
    cluster = start_cluster(work / "cluster")
    try:
        url = cluster.peer(1).url
        shot: list[float] = []
        sess: list[float] = []
        chunk_used = 0
        for r in range(args.runs):
            for method in ("one-shot", "session") if r % 2 == 0 else ("session", "one-shot"):
                path = work / f"file-{r}-{method}.bin"
                make_file(path, size)
                if method == "one-shot":
                    shot.append(await one_shot(url, path, f"one-{r}"))
                else:
                    mbps, stats = await session(
                        url, path, f"sess-{r}", args.parallel, chunk, work / "state"
                    )
                    sess.append(mbps)
                    chunk_used = stats.chunk_size
                path.unlink()
                last = (shot if method == "one-shot" else sess)[-1]
                print(
                    f"run {r + 1} {method}: {last:.0f} MB/s",
                    file=sys.stderr,
                    flush=True,
                )
        results.update(one_shot_mbps=shot, session_mbps=sess, session_chunk_bytes=chunk_used)
        rate = statistics.median(shot) * 1e6  # bytes/s
        mib_times = await chunk_times(url, MiB, args.overhead_chunks, 1)
        results["mib_chunk_s"] = statistics.median(mib_times)
        results["mib_transfer_s"] = MiB / rate
        small = 64 * 1024
        seq = await chunk_times(url, small, args.small_chunks, 1)
        par = await chunk_times(url, small, args.small_chunks, 4)
        results["small_seq_s"] = statistics.median(seq)
        results["small_first_s"] = statistics.median(seq[:200])
        results["small_last_s"] = statistics.median(seq[-200:])
        results["small_par_s"] = par[0]
        results["small_chunks"] = args.small_chunks
        results["loadavg_end"] = os.getloadavg()
    finally:
        cluster.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return results


def table(r: dict[str, Any]) -> str:
    shot, sess = statistics.median(r["one_shot_mbps"]), statistics.median(r["session_mbps"])
    gib = r["size_bytes"] / (1024 * MiB)
    overhead_ms = (r["mib_chunk_s"] - r["mib_transfer_s"]) * 1e3
    lines = [
        "| measure | value |",
        "|---|---|",
        f"| one-shot PUT, {gib:g} GiB | {shot:.0f} MB/s "
        f"(runs: {', '.join(f'{x:.0f}' for x in r['one_shot_mbps'])}) |",
        f"| session, {gib:g} GiB, {r['session_chunk_bytes'] // MiB} MiB chunks, "
        f"{r['parallel']} in flight | {sess:.0f} MB/s "
        f"(runs: {', '.join(f'{x:.0f}' for x in r['session_mbps'])}); "
        f"{100 * sess / shot:.0f} % of one-shot |",
        f"| 1 MiB chunk PUT, one at a time | {r['mib_chunk_s'] * 1e3:.1f} ms median; "
        f"1 MiB at {shot:.0f} MB/s is {r['mib_transfer_s'] * 1e3:.1f} ms, so "
        f"{overhead_ms:.1f} ms overhead per chunk |",
        f"| 64 KiB chunk PUTs, one at a time | {1 / r['small_seq_s']:.0f} chunks/s "
        f"({r['small_seq_s'] * 1e3:.1f} ms each) |",
        f"| 64 KiB chunk PUTs, 4 in flight | {1 / r['small_par_s']:.0f} chunks/s |",
        f"| 64 KiB chunk PUT, chunks 1-200 vs {r['small_chunks'] - 199}-{r['small_chunks']} "
        "of a session, one at a time | "
        f"{r['small_first_s'] * 1e3:.1f} ms vs {r['small_last_s'] * 1e3:.1f} ms |",
        f"| load average (1/5/15 min) at start / end, {r['cpus']} CPUs | "
        f"{' '.join(f'{x:.2f}' for x in r['loadavg_start'])} / "
        f"{' '.join(f'{x:.2f}' for x in r['loadavg_end'])} |",
    ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size-mib", type=int, default=1024, help="file size (default 1024)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each method (median)")
    parser.add_argument("--parallel", type=int, default=4, help="session chunks in flight")
    parser.add_argument(
        "--chunk-size-mib", type=int, default=0, help="session chunk size (default: server's)"
    )
    parser.add_argument("--overhead-chunks", type=int, default=64, help="1 MiB chunks timed")
    parser.add_argument("--small-chunks", type=int, default=2000, help="64 KiB chunks timed")
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
    args = parser.parse_args()
    for item in args.set:
        name, _, value = item.partition("=")
        SETTINGS[name.strip()] = value.strip()
    results = asyncio.run(run(args))
    print(table(results))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
