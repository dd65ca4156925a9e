"""Repair throughput: refill an empty peer with anti-entropy, 3 local agents (N = 3).

1. Starts 3 ``dfspeer agent`` processes on loopback (free ports, ``durable=False`` unless
   ``--durable``), uploads ``--size-mib`` MiB (default 256) of unique data in objects of
   ``--object-mib`` MiB through peer 1, and waits until every peer holds every block.
2. SIGKILLs peer 3, deletes its data directory, restarts it empty (same id, so the ring
   does not change), and polls its ``GET /v1/cluster/status`` every 0.1 s until it holds
   as many blocks and block bytes as peer 1.
3. Prints: time from restart to ready, time from restart to full replication, refill
   throughput (block bytes / time from ready to full), the anti-entropy figures of the
   three peers (keys pushed / pulled, summary round trips), and the CPU seconds of each
   agent during the refill.

Usage: ``python benchmarks/repair_bench.py [--size-mib 256] [--object-mib 64]
[--repair-concurrency 4] [--keep] [--json FILE]``. Needs psutil. The summary traffic to
find one difference among 1,000,000 keys is ``benchmarks/merkle_bench.py``'s figure.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil  # type: ignore[import-untyped]

from dfspeer.client import Client
from dfspeer.localcluster import LocalCluster

MiB = 1024 * 1024


async def status(url: str) -> dict[str, Any]:
    async with Client(url, timeout_s=10.0) as c:
        return await c.status()


async def upload(url: str, size: int, object_size: int) -> int:
    nonce = os.urandom(8)
    sent = 0
    async with Client(url, timeout_s=600.0) as c:
        i = 0
        while sent < size:
            n = min(object_size, size - sent)
            data = nonce + os.urandom(n - len(nonce))
            await c.put_object("bench", f"obj-{i}", data)
            sent += n
            i += 1
    return sent


async def wait_equal(urls: list[str], timeout_s: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout_s
    while True:
        docs = [await status(u) for u in urls]
        if len({(d["blocks"], d["block_bytes"]) for d in docs}) == 1:
            return docs[0]
        if time.monotonic() > deadline:
            raise TimeoutError(f"peers did not converge: {[d['blocks'] for d in docs]}")
        await asyncio.sleep(0.5)


def cpu_seconds(pid: int) -> float:
    try:
        proc = psutil.Process(pid)
        total = 0.0
        for p in [proc, *proc.children(recursive=True)]:
            t = p.cpu_times()
            total += t.user + t.system
        return total
    except psutil.Error:
        return 0.0


async def refill(cluster: LocalCluster, want: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    peer = cluster.peer(3)
    cluster.kill(3)
    shutil.rmtree(peer.data_dir)
    t0 = time.monotonic()
    cluster.start_peer(3)
    await asyncio.to_thread(cluster.wait_ready, 60.0, [3])
    t_ready = time.monotonic()
    cpu0 = {i: cpu_seconds(cluster.peer(i).process.pid) for i in (1, 2, 3)}  # type: ignore[union-attr]
    while True:
        doc = await status(peer.url)
        if doc["blocks"] >= want["blocks"] and doc["block_bytes"] >= want["block_bytes"]:
            break
        if time.monotonic() - t0 > timeout_s:
            raise TimeoutError(f"refill incomplete after {timeout_s} s: {doc['blocks']} blocks")
        await asyncio.sleep(0.1)
    t_full = time.monotonic()
    cpu = {
        i: round(cpu_seconds(cluster.peer(i).process.pid) - cpu0[i], 2)  # type: ignore[union-attr]
        for i in (1, 2, 3)
    }
    docs = [await status(u) for u in cluster.urls]
    return {
        "bytes": want["block_bytes"],
        "blocks": want["blocks"],
        "restart_to_ready_s": round(t_ready - t0, 3),
        "restart_to_full_s": round(t_full - t0, 3),
        "refill_MBps": round(want["block_bytes"] / 1e6 / max(t_full - t_ready, 1e-9), 1),
        "cpu_s_during_refill": cpu,
        "repair": [
            {k: d["repair"].get(k) for k in ("keys_pushed", "keys_pulled", "bytes_repaired")}
            for d in docs
        ],
    }


async def run(args: argparse.Namespace, base: Path) -> dict[str, Any]:
    settings: dict[str, object] = {
        "map_size_bytes": max(4 * 1024 * MiB, 4 * args.size_mib * MiB),
        "durable": args.durable,
        "anti_entropy_interval_s": args.interval,
        "repair_concurrency": args.repair_concurrency,
        "probe_interval_s": 0.5,
        "probe_timeout_s": 0.25,
        "log_level": "warning",
    }
    with LocalCluster(
        base, 3, base_port=None, gossip_base_port=None, host_base=50, settings=settings
    ) as cluster:
        cluster.start()
        os.environ["DFSPEER_ADMIN_TOKEN"] = cluster.admin_token or ""  # for dfspeer.Client
        await asyncio.to_thread(cluster.wait_ready, 60.0)
        await asyncio.to_thread(cluster.wait_view, range(1, 4), 60.0)
        t = time.monotonic()
        sent = await upload(cluster.peer(1).url, args.size_mib * MiB, args.object_mib * MiB)
        upload_s = time.monotonic() - t
        want = await wait_equal(cluster.urls, 600.0)
        result = await refill(cluster, want, args.timeout)
        result["uploaded_bytes"] = sent
        result["upload_MBps"] = round(sent / 1e6 / upload_s, 1)
        return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--object-mib", type=int, default=64)
    parser.add_argument("--repair-concurrency", type=int, default=4)
    parser.add_argument("--interval", type=float, default=30.0, help="anti_entropy_interval_s")
    parser.add_argument("--durable", action="store_true")
    parser.add_argument("--timeout", type=float, default=1800.0)
    parser.add_argument("--keep", action="store_true")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="dfspeer-repair-bench-"))
    try:
        result = asyncio.run(run(args, base))
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    result["size_mib"] = args.size_mib
    print(json.dumps(result, indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
