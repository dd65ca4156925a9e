"""Block references and garbage collection: upload cost and time to reclaim deleted data.

Two measures, both on 3 local ``dfspeer agent`` processes on 127.0.0.x (N = 3, W = 2,
durable, default 2 MiB chunks):

(a) **Upload MB/s with block references vs the release before them**, in the same run:
    this tree's agents and the agents of an older release (default ``f164e78``, extracted
    with ``git archive <commit> | tar -x`` unless ``--base-tree`` points at an extracted
    copy) upload identical object sizes -- ``--large-count`` x ``--large-mib`` MiB
    (default 5 x 256 MiB) one after the other, then a batch of ``--small-count`` x 1 MiB
    (default 200, ``--small-concurrency`` at a time) -- through peer 1's public API.
    Runs alternate old / new (the first tree switches every round, so neither always goes
    first), each on a fresh cluster and data directory, ``--repeats`` rounds (default 3);
    the table shows the medians and new / old (aim: >= 95 %).
(b) **Time to reclaim deleted data**: a fresh cluster of this tree with
    ``--set block_gc_grace_s=0 --set block_gc_interval_s=1`` takes ``--gc-count`` x
    ``--gc-mib`` MiB (default 4 x 256 MiB = 1 GiB); once every peer holds every block, the
    objects are deleted and every peer's ``GET /v1/cluster/status`` is polled every 0.1 s
    until its ``blocks`` and ``block_bytes`` are back to the baseline taken before the
    upload. Reports the time from the first DELETE to the last peer reclaimed and the
    ``gc.bytes_reclaimed`` / ``gc.blocks_deleted`` the peers count.

Each tree's agents run as ``PYTHONPATH=<tree> python3 -P -m dfspeer agent ...`` (``-P``:
the current directory is not put on ``sys.path``, so the benchmark's own working
directory cannot shadow the tree); the benchmark checks that each cluster runs the tree
it should (this tree's status has a ``"gc"`` object, the old one's has none). Every upload
body is unique (1 MiB pieces starting with a counter and a per-object nonce), so nothing
is deduplicated.

Usage::

    python benchmarks/gc_bench.py                    # full run (about 5-8 minutes)
    python benchmarks/gc_bench.py --quick            # 2 x 64 MiB, 40 x 1 MiB, 256 MiB GC
    python benchmarks/gc_bench.py --json out.json

Every agent is stopped (try/finally) and the data directories (under a temporary
directory, ``--base-dir`` to choose) are removed at the end unless ``--keep``.
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
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from dfspeer.localcluster import LocalCluster, LocalPeer

MiB = 1024 * 1024
PIECE = MiB
BUCKET = "gcbench"
REPO = Path(__file__).resolve().parent.parent
BASE_COMMIT = "f164e78"
STATUS_TIMEOUT_S = 10.0
POLL_S = 0.1

COMMON: dict[str, object] = {
    "replication_factor": 3,
    "write_quorum": 2,
    "read_quorum": 2,
    "durable": True,
    "log_level": "warning",
    # no client authentication: the older tree compared here predates it (and its flag)
    "insecure": True,
}
GC_FAST = {"block_gc_grace_s": "0", "block_gc_interval_s": "1"}


# ---------------------------------------------------------------------- clusters
class TreeCluster(LocalCluster):
    """A :class:`LocalCluster` whose agents run the ``dfspeer`` package of ``tree``
    (``PYTHONPATH=<tree> python -P -m dfspeer agent ...``) with ``set_flags`` as
    ``--set NAME=VALUE`` flags."""

    def __init__(
        self, tree: Path, base_dir: Path, *, set_flags: dict[str, str] | None = None, **kw: Any
    ) -> None:
        super().__init__(
            base_dir, 3, base_port=None, gossip_base_port=None, admin_token=False, **kw
        )
        self.tree = tree
        self.set_flags = dict(set_flags or {})

    def environment(self) -> dict[str, str]:
        env = super().environment()
        env["PYTHONPATH"] = str(self.tree)
        return env

    def command(self, peer: LocalPeer) -> list[str]:
        cmd = super().command(peer)
        assert cmd[1:4] == ["-m", "dfspeer", "agent"], cmd
        if not (self.tree / "dfspeer" / "api" / "s3").is_dir() and "--s3-port" in cmd:
            at = cmd.index("--s3-port")  # a release before the S3 API has no such flag
            del cmd[at : at + 2]
        flags = [a for name, value in self.set_flags.items() for a in ("--set", f"{name}={value}")]
        return [cmd[0], "-P", *cmd[1:], *flags]


async def get_status(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    timeout = aiohttp.ClientTimeout(total=STATUS_TIMEOUT_S)
    async with http.get(f"{url}/v1/cluster/status", timeout=timeout) as r:
        if r.status != 200:
            raise RuntimeError(f"GET {url}/v1/cluster/status: {r.status} {await r.text()}")
        doc = await r.json()
    assert isinstance(doc, dict)
    return doc


async def start(
    http: aiohttp.ClientSession,
    tree: Path,
    base_dir: Path,
    *,
    want_gc: bool,
    set_flags: dict[str, str] | None = None,
) -> TreeCluster:
    """Start 3 agents of ``tree``, wait until each is ready and sees the other two, and
    check that they run the expected code (``want_gc``: a ``"gc"`` object in the status).
    The caller stops the cluster (also when this raises)."""
    cluster = TreeCluster(tree, base_dir, set_flags=set_flags, settings=COMMON, host_base=70)
    try:
        cluster.start()
        await asyncio.to_thread(cluster.wait_ready, 60.0)
        await asyncio.to_thread(cluster.wait_view, range(1, 4), 60.0)
        for url in cluster.urls:
            has_gc = "gc" in await get_status(http, url)
            if has_gc != want_gc:
                raise RuntimeError(
                    f"{url} runs the wrong tree: status {'has' if has_gc else 'lacks'} 'gc' "
                    f"(agents should run {tree})"
                )
    except BaseException:
        cluster.stop()
        raise
    return cluster


# ---------------------------------------------------------------------- uploads
FILLER = os.urandom(PIECE)


async def body(size: int) -> AsyncIterator[bytes]:
    """``size`` unique bytes in 1 MiB pieces (counter + per-object nonce + filler)."""
    nonce = os.urandom(16)
    filler = FILLER[24:]
    sent = i = 0
    while sent < size:
        n = min(PIECE, size - sent)
        piece = (i.to_bytes(8, "big") + nonce + filler)[:n]
        yield piece
        sent += n
        i += 1


async def put(http: aiohttp.ClientSession, url: str, key: str, size: int) -> dict[str, Any]:
    headers = {"Content-Length": str(size), "Content-Type": "application/octet-stream"}
    async with http.put(f"{url}/v1/objects/{BUCKET}/{key}", data=body(size), headers=headers) as r:
        text = await r.text()
        if r.status != 201:
            raise RuntimeError(f"PUT {key}: {r.status} {text[:300]}")
    doc = json.loads(text)
    assert isinstance(doc, dict)
    return doc


async def upload_run(
    http: aiohttp.ClientSession, url: str, args: argparse.Namespace, tag: str
) -> dict[str, float]:
    """Large objects one after the other, then the small batch; MB/s of each part."""
    large = args.large_mib * MiB
    t0 = time.perf_counter()
    for i in range(args.large_count):
        await put(http, url, f"{tag}/large-{i}", large)
    large_s = time.perf_counter() - t0

    queue = list(range(args.small_count))

    async def writer() -> None:
        while queue:
            n = queue.pop()
            await put(http, url, f"{tag}/small-{n:04d}", MiB)

    t0 = time.perf_counter()
    await asyncio.gather(*(writer() for _ in range(args.small_concurrency)))
    small_s = time.perf_counter() - t0
    return {
        "large_MBps": args.large_count * large / large_s / 1e6,
        "small_MBps": args.small_count * MiB / small_s / 1e6,
        "small_objects_per_s": args.small_count / small_s,
    }


async def compare_uploads(
    http: aiohttp.ClientSession, work: Path, trees: dict[str, Path], args: argparse.Namespace
) -> dict[str, Any]:
    runs: dict[str, list[dict[str, float]]] = {"old": [], "new": []}
    order = ["old", "new"]
    for r in range(args.repeats):
        for name in order if r % 2 == 0 else order[::-1]:
            base = work / f"upload-{name}-{r}"
            cluster = await start(http, trees[name], base, want_gc=name == "new")
            try:
                row = await upload_run(http, cluster.peer(1).url, args, f"r{r}")
            finally:
                cluster.stop()
                shutil.rmtree(base, ignore_errors=True)
            runs[name].append(row)
            print(
                f"  round {r + 1} {name}: {args.large_count} x {args.large_mib} MiB "
                f"{row['large_MBps']:.1f} MB/s; {args.small_count} x 1 MiB "
                f"{row['small_MBps']:.1f} MB/s ({row['small_objects_per_s']:.1f} obj/s)",
                flush=True,
            )
    medians = {
        name: {k: statistics.median(row[k] for row in rows) for k in rows[0]}
        for name, rows in runs.items()
    }
    return {"runs": runs, "median": medians}


# ---------------------------------------------------------------------- reclaim
def block_counts(docs: list[dict[str, Any]]) -> list[tuple[int, int]]:
    return [(int(d["blocks"]), int(d["block_bytes"])) for d in docs]


async def statuses(http: aiohttp.ClientSession, urls: list[str]) -> list[dict[str, Any]]:
    return list(await asyncio.gather(*(get_status(http, u) for u in urls)))


async def poll_until(
    http: aiohttp.ClientSession,
    urls: list[str],
    done: Any,
    timeout_s: float,
    what: str,
) -> tuple[list[float | None], list[dict[str, Any]]]:
    """Poll every peer's status every POLL_S until ``done(i, doc)`` holds for each peer;
    returns the seconds (from the call) at which each peer first satisfied it, and the
    last status documents. Raises TimeoutError naming the peers still short."""
    t0 = time.monotonic()
    reached: list[float | None] = [None] * len(urls)
    while True:
        docs = await statuses(http, urls)
        now = time.monotonic() - t0
        for i, doc in enumerate(docs):
            if reached[i] is None and done(i, doc):
                reached[i] = now
        if all(r is not None for r in reached):
            return reached, docs
        if now > timeout_s:
            raise TimeoutError(
                f"{what} not reached after {timeout_s:.0f} s: {block_counts(docs)} "
                f"(gc: {[d.get('gc') for d in docs]})"
            )
        await asyncio.sleep(POLL_S)


async def measure_reclaim(
    http: aiohttp.ClientSession, work: Path, args: argparse.Namespace
) -> dict[str, Any]:
    base = work / "reclaim"
    cluster = await start(http, REPO, base, want_gc=True, set_flags=GC_FAST)
    try:
        urls = cluster.urls
        url = cluster.peer(1).url
        baseline_docs = await statuses(http, urls)
        baseline = block_counts(baseline_docs)
        size = args.gc_mib * MiB
        keys = [f"reclaim/obj-{i}" for i in range(args.gc_count)]
        chunks = 0
        t0 = time.perf_counter()
        for key in keys:
            chunks += int((await put(http, url, key, size))["chunks"])
        upload_s = time.perf_counter() - t0
        # every peer is a replica of every partition (N = 3 of 3 peers): wait for all blocks
        full, docs = await poll_until(
            http,
            urls,
            lambda i, d: int(d["blocks"]) >= baseline[i][0] + chunks,
            args.timeout,
            f"{chunks} new blocks on every peer",
        )
        before_delete = docs
        held = [
            (b - baseline[i][0], n - baseline[i][1])
            for i, (b, n) in enumerate(block_counts(before_delete))
        ]
        t_delete = time.monotonic()
        for key in keys:
            async with http.delete(f"{url}/v1/objects/{BUCKET}/{key}") as r:
                if r.status != 204:
                    raise RuntimeError(f"DELETE {key}: {r.status} {await r.text()}")
        deletes_s = time.monotonic() - t_delete
        reclaimed_at, after = await poll_until(
            http,
            urls,
            lambda i, d: (
                int(d["blocks"]) <= baseline[i][0] and int(d["block_bytes"]) <= baseline[i][1]
            ),
            args.timeout,
            "block counts back to the baseline",
        )
        # the polls started after the deletes were acknowledged
        reclaim_s = [deletes_s + (r or 0.0) for r in reclaimed_at]
        gc_before = [d["gc"] for d in before_delete]
        gc_after = [d["gc"] for d in after]
        return {
            "objects": args.gc_count,
            "object_bytes": size,
            "chunks": chunks,
            "upload_MBps": args.gc_count * size / upload_s / 1e6,
            "replicated_s_after_upload": max(f or 0.0 for f in full),
            "held_per_peer": [{"blocks": b, "bytes": n} for b, n in held],
            "deletes_acked_s": deletes_s,
            "reclaimed_s_per_peer": reclaim_s,
            "reclaimed_s": max(reclaim_s),
            "blocks_after": block_counts(after),
            "baseline": baseline,
            "bytes_reclaimed_per_peer": [
                int(a["bytes_reclaimed"]) - int(b["bytes_reclaimed"])
                for a, b in zip(gc_after, gc_before, strict=True)
            ],
            "blocks_deleted_per_peer": [
                int(a["blocks_deleted"]) - int(b["blocks_deleted"])
                for a, b in zip(gc_after, gc_before, strict=True)
            ],
            "map_used_bytes_after": [int(d.get("map_used_bytes", 0)) for d in after],
        }
    finally:
        cluster.stop()
        shutil.rmtree(base, ignore_errors=True)


# ---------------------------------------------------------------------- report
def table(results: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [
        "| measure | old (f164e78) | new (this tree) | new / old | aim |",
        "|---|---|---|---|---|",
    ]
    if "uploads" in results:
        med = results["uploads"]["median"]
        old, new = med["old"], med["new"]
        for label, key in (
            (f"upload {args.large_count} x {args.large_mib} MiB (MB/s)", "large_MBps"),
            (
                f"upload {args.small_count} x 1 MiB, {args.small_concurrency} at a time (MB/s)",
                "small_MBps",
            ),
        ):
            lines.append(
                f"| {label} | {old[key]:.1f} | {new[key]:.1f} | "
                f"{100 * new[key] / old[key]:.0f} % | >= 95 % |"
            )
    if "reclaim" in results:
        rc = results["reclaim"]
        total = rc["objects"] * rc["object_bytes"]
        reclaimed = sum(rc["bytes_reclaimed_per_peer"])
        lines += [
            "",
            "| reclaim (this tree, grace 0 s, GC every 1 s) | value |",
            "|---|---|",
            f"| deleted | {rc['objects']} x {rc['object_bytes'] // MiB} MiB "
            f"= {total / MiB:.0f} MiB ({rc['chunks']} chunks) |",
            f"| DELETEs acknowledged after | {rc['deletes_acked_s']:.2f} s |",
            f"| every peer back to its baseline block count after | {rc['reclaimed_s']:.2f} s |",
            "| per peer | " + ", ".join(f"{s:.2f} s" for s in rc["reclaimed_s_per_peer"]) + " |",
            f"| bytes reclaimed (gc.bytes_reclaimed, 3 peers) | {reclaimed / 1e6:.1f} MB "
            f"({reclaimed / MiB:.0f} MiB; {reclaimed / total:.2f} x the logical size) |",
            f"| blocks deleted (gc.blocks_deleted, 3 peers) | "
            f"{sum(rc['blocks_deleted_per_peer'])} |",
        ]
    return "\n".join(lines)


def extract_tree(commit: str, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    archive = subprocess.run(
        ["git", "-C", str(REPO), "archive", commit], check=True, capture_output=True, timeout=120
    )
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True, timeout=120)
    return dest


async def run(args: argparse.Namespace, work: Path) -> dict[str, Any]:
    results: dict[str, Any] = {"cpus": os.cpu_count(), "base_commit": args.base_commit}
    timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=300)
    async with aiohttp.ClientSession(timeout=timeout) as http:
        if not args.skip_uploads:
            old = Path(args.base_tree) if args.base_tree else None
            if old is None:
                old = extract_tree(args.base_commit, work / "base-tree")
            print(f"(a) uploads, old tree {old} vs new tree {REPO}:", flush=True)
            results["uploads"] = await compare_uploads(http, work, {"old": old, "new": REPO}, args)
        if not args.skip_reclaim:
            print(f"(b) reclaim {args.gc_count} x {args.gc_mib} MiB:", flush=True)
            results["reclaim"] = await measure_reclaim(http, work, args)
            print(f"  {json.dumps(results['reclaim'])}", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--large-count", type=int, default=5)
    parser.add_argument("--large-mib", type=int, default=256)
    parser.add_argument("--small-count", type=int, default=200)
    parser.add_argument("--small-concurrency", type=int, default=4)
    parser.add_argument("--gc-count", type=int, default=4)
    parser.add_argument("--gc-mib", type=int, default=256)
    parser.add_argument("--base-commit", default=BASE_COMMIT)
    parser.add_argument("--base-tree", default=None, help="an extracted old release")
    parser.add_argument("--skip-uploads", action="store_true")
    parser.add_argument("--skip-reclaim", action="store_true")
    parser.add_argument("--timeout", type=float, default=600.0, help="per wait, seconds")
    parser.add_argument("--base-dir", default=None)
    parser.add_argument("--keep", action="store_true", help="keep the data directories")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    if args.quick:
        args.large_count, args.large_mib, args.small_count = 2, 64, 40
        args.gc_count, args.gc_mib = 4, 64
    work = Path(args.base_dir or tempfile.mkdtemp(prefix="dfspeer-gc-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    try:
        results = asyncio.run(run(args, work))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    results["elapsed_s"] = time.perf_counter() - started
    print()
    print(table(results, args))
    print(f"\ntotal {results['elapsed_s']:.0f} s", file=sys.stderr)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
