"""The cost of authentication: small-object GET and PUT ops/s on two local 3-peer clusters
started in one run, one secured (cluster key, admin token, requests signed with an access
key that owns the bucket) and one ``--insecure`` (no client authentication; gossip and peer
RPC still use the cluster key, so the difference is the client authentication alone).

Workload: 4 KiB objects (``--size``), ``--clients`` concurrent clients (16), each with its
own keep-alive connection to one of the peers (round-robin), for ``--seconds`` a window.
GETs read a preloaded set of objects; PUTs overwrite a small per-client key set. Rounds
alternate between the clusters (secured first on even rounds, insecure first on odd ones)
so both see the same machine weather; the figure of each is the median over ``--rounds``.
The cost is ``(insecure - secured) / insecure`` in %.

The secured cluster runs with the peers' default ``auth_cache_ttl_s`` (1 s: key and bucket
reads reused for a second, :mod:`dfspeer.access.cache`); ``--auth-cache-ttl S`` sets it, and
``--auth-cache-ttl 0`` measures the uncached path (two quorum reads per request).
``--profile FILE`` records peer 1 of the secured cluster with py-spy (``pip install
py-spy``) during an extra secured GET window (collapsed stacks, ``-f raw``) and prints the
functions with the largest inclusive share.

Usage::

    python benchmarks/auth_bench.py --seconds 5 --rounds 3
    python benchmarks/auth_bench.py --seconds 5 --rounds 3 --auth-cache-ttl 0
    python benchmarks/auth_bench.py --json auth.json --profile secured-get.txt
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp

from dfspeer.localcluster import LocalCluster

BUCKET = "authbench"
PRELOADED = 256  # objects the GET windows read
KEYS_PER_CLIENT = 32  # keys each client overwrites in the PUT windows


@dataclass
class Target:
    """One cluster under test: its peers' URLs and the headers every request carries."""

    name: str
    cluster: LocalCluster
    headers: dict[str, str]

    @property
    def urls(self) -> list[str]:
        return self.cluster.urls


def start(
    base: Path, *, secured: bool, host_base: int, cache_ttl_s: float | None
) -> LocalCluster:
    settings: dict[str, object] = {"log_level": "warning", "map_size_bytes": 1 << 30}
    if not secured:
        settings["insecure"] = True
    elif cache_ttl_s is not None:  # None: the peers' default
        settings["auth_cache_ttl_s"] = cache_ttl_s
    cluster = LocalCluster(
        base,
        3,
        base_port=None,
        gossip_base_port=None,
        s3_base_port=0,
        host_base=host_base,
        settings=settings,
        admin_token=secured,
    )
    cluster.start()
    cluster.wait_ready(60)
    cluster.wait_view(range(1, 4), timeout_s=60)
    return cluster


async def _json(http: aiohttp.ClientSession, method: str, url: str, **kw: Any) -> Any:
    async with http.request(method, url, **kw) as resp:
        body = await resp.read()
        if resp.status >= 300:
            raise RuntimeError(f"{method} {url}: {resp.status} {body[:200]!r}")
        return json.loads(body) if body else None


async def prepare(secured: LocalCluster, insecure: LocalCluster, size: int) -> list[Target]:
    """An access key owning the bucket on the secured cluster, and the preloaded objects on
    both."""
    admin = secured.headers
    async with aiohttp.ClientSession(headers=admin) as http:
        key = await _json(
            http,
            "POST",
            secured.urls[0] + "/v1/keys",
            json={"name": "bench", "allow_create_bucket": True},
        )
    targets = [
        Target("secured", secured, {"Authorization": f"Bearer {key['id']}.{key['secret']}"}),
        Target("insecure", insecure, {}),
    ]
    body = os.urandom(size)
    for target in targets:
        async with aiohttp.ClientSession(headers=target.headers) as http:
            await _json(http, "PUT", f"{target.urls[0]}/v1/buckets/{BUCKET}")  # owned by the key
            for i in range(PRELOADED):
                url = f"{target.urls[i % 3]}/v1/objects/{BUCKET}/get/{i}"
                await _json(http, "PUT", url, data=body)
    return targets


async def window(target: Target, op: str, seconds: float, clients: int, size: int) -> float:
    """ops/s of ``clients`` concurrent clients doing ``op`` ("get" or "put") for
    ``seconds`` (after 0.5 s of warm-up on the same connections, not counted); any error
    answer aborts the run."""
    body = os.urandom(size)
    warm_end = time.perf_counter() + 0.5
    deadline = warm_end + seconds
    counts = [0] * clients

    async def client(index: int) -> None:
        base = target.urls[index % len(target.urls)]
        connector = aiohttp.TCPConnector(limit=1)  # one keep-alive connection
        async with aiohttp.ClientSession(connector=connector, headers=target.headers) as http:
            i = index
            while (now := time.perf_counter()) < deadline:
                if op == "get":
                    url = f"{base}/v1/objects/{BUCKET}/get/{i % PRELOADED}"
                    async with http.get(url) as resp:
                        await resp.read()
                        ok = resp.status == 200
                else:
                    url = f"{base}/v1/objects/{BUCKET}/put/{index}/{i % KEYS_PER_CLIENT}"
                    async with http.put(url, data=body) as resp:
                        await resp.read()
                        ok = resp.status == 201
                if not ok:
                    raise RuntimeError(f"{target.name} {op} {url}: {resp.status}")
                if now >= warm_end:
                    counts[index] += 1
                i += clients

    await asyncio.gather(*(client(c) for c in range(clients)))
    return sum(counts) / seconds


def profile(target: Target, out: Path, seconds: float, clients: int, size: int) -> None:
    """py-spy record (collapsed stacks, ``-f raw``) of the target's peer 1 during one GET
    window; prints the dfspeer functions with the largest inclusive share of samples."""
    pid = target.cluster.peer(1).process.pid  # type: ignore[union-attr]
    spy = shutil.which("py-spy")
    if spy is None:
        print("py-spy not found: pip install py-spy", file=sys.stderr)
        return
    cmd = [spy, "record", "-p", str(pid), "-d", str(int(seconds) + 1), "-r", "200", "-f", "raw"]
    recorder = subprocess.Popen([*cmd, "-o", str(out), "--nonblocking"])
    asyncio.run(window(target, "get", seconds, clients, size))
    recorder.wait(60)
    print(f"profile of {target.name} peer 1 during GETs: {out}", flush=True)
    for share, name in top_frames(out)[:25]:
        print(f"  {share:5.1f} %  {name}", flush=True)


def top_frames(collapsed: Path) -> list[tuple[float, str]]:
    """(inclusive % of samples, function) of every dfspeer / aiohttp function in a
    collapsed-stack file, largest first."""
    inclusive: dict[str, int] = {}
    total = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        total += int(count)
        frames = {
            f.split(" (")[0] + " (" + f.split(" (")[-1].split(":")[0].split("/")[-1] + ")"
            for f in stack.split(";")
            if "dfspeer" in f or "aiohttp" in f
        }
        for frame in frames:
            inclusive[frame] = inclusive.get(frame, 0) + int(count)
    return sorted(((100.0 * n / max(total, 1), f) for f, n in inclusive.items()), reverse=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(args.base_dir or tempfile.mkdtemp(prefix="dfspeer-authbench-"))
    results: dict[str, Any] = {
        "size": args.size,
        "clients": args.clients,
        "auth_cache_ttl_s": args.auth_cache_ttl,
        "rounds": [],
    }
    clusters: list[LocalCluster] = []
    try:
        ttl = args.auth_cache_ttl
        clusters.append(start(work / "secured", secured=True, host_base=200, cache_ttl_s=ttl))
        clusters.append(start(work / "insecure", secured=False, host_base=210, cache_ttl_s=0))
        targets = asyncio.run(prepare(clusters[0], clusters[1], args.size))
        figures: dict[str, dict[str, list[float]]] = {
            t.name: {"get": [], "put": []} for t in targets
        }
        for r in range(args.rounds):
            for op in ("get", "put"):
                for target in targets if r % 2 == 0 else targets[::-1]:
                    rate = asyncio.run(window(target, op, args.seconds, args.clients, args.size))
                    figures[target.name][op].append(rate)
                    print(f"round {r + 1} {op} {target.name}: {rate:,.0f} ops/s", flush=True)
        results["rounds"] = figures
        for op in ("get", "put"):
            secured = statistics.median(figures["secured"][op])
            insecure = statistics.median(figures["insecure"][op])
            cost = 100.0 * (insecure - secured) / insecure
            results[op] = {"secured": secured, "insecure": insecure, "cost_pct": cost}
            print(
                f"{op.upper()} {args.size} B x {args.clients} clients: secured {secured:,.0f} "
                f"ops/s, insecure {insecure:,.0f} ops/s, cost {cost:+.1f} %",
                flush=True,
            )
        if args.profile:
            profile(targets[0], Path(args.profile), args.seconds, args.clients, args.size)
    finally:
        for cluster in clusters:
            cluster.stop()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="length of a window (10)")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds (5)")
    parser.add_argument("--clients", type=int, default=16, help="concurrent clients (16)")
    parser.add_argument("--size", type=int, default=4096, help="object size, bytes (4096)")
    parser.add_argument(
        "--auth-cache-ttl",
        type=float,
        default=None,
        help="the secured cluster's auth_cache_ttl_s (default: the peers' own, 1 s; 0: every "
        "request reads its key and bucket with quorum)",
    )
    parser.add_argument("--profile", default=None, help="py-spy output (collapsed stacks)")
    parser.add_argument("--base-dir", default=None)
    parser.add_argument("--keep", action="store_true", help="keep the data directories")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    results = run(args)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
