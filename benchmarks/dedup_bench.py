"""Content-defined chunking and dedup on the wire: chunker speed, upload MB/s of cdc vs
fixed buckets on 3 local agents, dedup of an edited tree of real files, bytes not sent.

Run: ``python benchmarks/dedup_bench.py`` (``--quick`` for smaller inputs). Everything is
measured in the same run on this machine's own files (:mod:`dfspeer.demo_corpus`):

1. **chunker alone**: MB/s of pyfastcdc's compiled core over a buffer, of the streaming
   :func:`dfspeer.objects.cdc.iter_cdc_chunks` fed 64 KiB reads (copies included), of
   the fixed chunker on the same reads, and of SHA-256 for scale; mean chunk size.
2. **upload MB/s, cdc vs fixed**: 3 agents (N = 3, W = 2, durable), one bucket of each
   chunking; each upload's content is the big file passed through its own byte
   permutation, so no chunk of one run dedups against another; runs interleave the two
   modes; the median per mode and the ratio cdc / fixed (aim >= 90 %).
3. **edited tree**: a tree of real files uploaded twice into a versioned bucket, the second
   time with small edits (an insertion, a deletion or an overwrite of a few bytes) in half
   of the files: the bucket's dedup ratio (logical bytes of both versions / distinct chunk
   bytes, ``GET /v1/buckets/{b}``) for cdc and for fixed chunking, and the fraction of block
   bytes not sent on the re-upload (the coordinator's ``dedup`` counters).
4. **unchanged re-upload**: the big file uploaded again as a new version: bytes not sent.

1 MB = 10^6 bytes; prints a Markdown table (and JSON with ``--json FILE``).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import shutil
import statistics
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp

from dfspeer.access.credentials import load_admin_token, new_admin_token, write_secret_file
from dfspeer.demo_corpus import build_big_file, source_roots
from dfspeer.localcluster import LocalCluster
from dfspeer.objects.cdc import compiled_core, iter_cdc_chunks
from dfspeer.objects.chunker import iter_chunks

MiB = 1024 * 1024
MB = 1_000_000
CDC_SHAPE = {"min_size": 512 * 1024, "avg_size": 2 * MiB, "max_size": 8 * MiB}
SETTINGS: dict[str, object] = {"map_size_bytes": 32 * 1024 * MiB, "log_level": "warning"}


def permuted(data: bytes, seed: int) -> bytes:
    """``data`` through a seeded byte permutation: same structure, no shared chunk."""
    table = list(range(256))
    random.Random(seed).shuffle(table)
    return data.translate(bytes(table))


async def pieces(data: bytes, step: int = 64 * 1024) -> AsyncIterator[bytes]:
    view = memoryview(data)
    for at in range(0, len(data), step):
        yield bytes(view[at : at + step])


async def chunker_speed(data: bytes) -> dict[str, float]:
    core = compiled_core()
    assert core is not None, "pyfastcdc's compiled core is missing"
    cutter = core(
        CDC_SHAPE["avg_size"], min_size=CDC_SHAPE["min_size"], max_size=CDC_SHAPE["max_size"]
    )
    t = time.perf_counter()
    lengths = [c.length for c in cutter.cut_buf(memoryview(data))]
    core_s = time.perf_counter() - t
    t = time.perf_counter()
    n = 0
    async for _ in iter_cdc_chunks(pieces(data), **CDC_SHAPE):
        n += 1
    stream_s = time.perf_counter() - t
    t = time.perf_counter()
    async for _ in iter_chunks(pieces(data), 2 * MiB):
        pass
    fixed_s = time.perf_counter() - t
    t = time.perf_counter()
    hashlib.sha256(data).digest()
    sha_s = time.perf_counter() - t
    return {
        "core_mb_s": len(data) / core_s / MB,
        "stream_mb_s": len(data) / stream_s / MB,
        "fixed_stream_mb_s": len(data) / fixed_s / MB,
        "sha256_mb_s": len(data) / sha_s / MB,
        "mean_chunk_mib": len(data) / len(lengths) / MiB,
        "chunks": float(n),
    }


def tree_files(total: int) -> list[Path]:
    """Real files of 256 KiB..16 MiB from this machine, up to ``total`` bytes, sorted."""
    found: list[Path] = []
    size = 0
    for root in source_roots():
        for dirpath, _, names in os.walk(root):
            for name in sorted(names):
                path = Path(dirpath) / name
                try:
                    st = path.lstat()
                except OSError:
                    continue
                if path.is_symlink() or not 256 * 1024 <= st.st_size <= 16 * MiB:
                    continue
                if not os.access(path, os.R_OK):
                    continue
                found.append(path)
                size += st.st_size
                if size >= total:
                    return found
    return found


def edit(data: bytes, rnd: random.Random) -> bytes:
    """One small edit: insert 100 bytes, delete 64, or overwrite 16, at a random offset."""
    at = rnd.randrange(len(data))
    kind = rnd.randrange(3)
    if kind == 0:
        return data[:at] + rnd.randbytes(100) + data[at:]
    if kind == 1:
        return data[:at] + data[at + 64 :]
    return data[:at] + rnd.randbytes(16) + data[at + 16 :]


class Bench:
    def __init__(self, http: aiohttp.ClientSession, urls: list[str]) -> None:
        self.http = http
        self.urls = urls

    async def bucket(self, name: str, chunking: str) -> None:
        body = {"versioning": "enabled", "chunking": chunking}
        async with self.http.put(f"{self.urls[0]}/v1/buckets/{name}", json=body) as r:
            assert r.status in (200, 201), await r.text()

    async def put(self, bucket: str, key: str, data: bytes) -> float:
        t = time.perf_counter()
        headers = {"Content-Length": str(len(data))}
        url = f"{self.urls[0]}/v1/objects/{bucket}/{key}"
        async with self.http.put(url, data=pieces(data), headers=headers) as r:
            assert r.status == 201, await r.text()
            await r.read()
        return time.perf_counter() - t

    async def dedup(self) -> dict[str, Any]:
        async with self.http.get(f"{self.urls[0]}/v1/cluster/status") as r:
            doc: dict[str, Any] = (await r.json())["dedup"]
            return doc

    async def usage(self, bucket: str) -> dict[str, Any]:
        async with self.http.get(f"{self.urls[0]}/v1/buckets/{bucket}") as r:
            doc: dict[str, Any] = await r.json()
            return doc


async def cluster_part(
    bench: Bench, big: bytes, tree: list[tuple[str, bytes]], runs: int
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    # 2. upload MB/s, cdc vs fixed, interleaved
    await bench.bucket("speedfixed", "fixed")
    await bench.bucket("speedcdc", "cdc")
    times: dict[str, list[float]] = {"fixed": [], "cdc": []}
    order = ["fixed", "cdc", "cdc", "fixed"] * runs
    for i, mode in enumerate(order[: 2 * runs]):
        data = permuted(big, 1000 + i)
        seconds = await bench.put(f"speed{mode}", f"run{i}", data)
        times[mode].append(len(data) / seconds / MB)
        print(f"  upload {mode} run {i}: {times[mode][-1]:.0f} MB/s", flush=True)
    out["upload_mb_s"] = {m: statistics.median(v) for m, v in times.items()}
    out["upload_runs"] = times
    # 3. edited tree: dedup ratio and bytes not sent, per chunking
    rnd = random.Random(7)
    edited = [(k, edit(d, rnd) if rnd.random() < 0.5 else d) for k, d in tree]
    changed = sum(1 for (_, a), (_, b) in zip(tree, edited, strict=True) if a != b)
    out["tree"] = {"files": len(tree), "bytes": sum(len(d) for _, d in tree), "edited": changed}
    for seed, mode in enumerate(("cdc", "fixed")):
        name = f"tree{mode}"
        await bench.bucket(name, mode)
        for key, data in tree:
            await bench.put(name, key, permuted(data, seed))
        before = await bench.dedup()
        for key, data in edited:
            await bench.put(name, key, permuted(data, seed))
        after = await bench.dedup()
        skipped = after["dedup_bytes_skipped"] - before["dedup_bytes_skipped"]
        sent = after["block_bytes_sent"] - before["block_bytes_sent"]
        usage = await bench.usage(name)
        out["tree"][mode] = {
            "logical_bytes": usage["logical_bytes"],
            "physical_bytes": usage["physical_bytes"],
            "dedup_ratio": usage["dedup_ratio"],
            "not_sent_fraction": skipped / (skipped + sent) if skipped + sent else 0.0,
        }
        print(f"  tree {mode}: {out['tree'][mode]}", flush=True)
    # 3b. the big file, then the same with 100 bytes inserted at offset 1,000
    inserted = big[:1000] + bytes(range(100)) + big[1000:]
    for seed, mode in enumerate(("cdc", "fixed"), start=50):
        name = f"insert{mode}"
        await bench.bucket(name, mode)
        await bench.put(name, "big", permuted(big, seed))
        first = await bench.usage(name)
        before = await bench.dedup()
        await bench.put(name, "big", permuted(inserted, seed))
        after = await bench.dedup()
        skipped = after["dedup_bytes_skipped"] - before["dedup_bytes_skipped"]
        sent = after["block_bytes_sent"] - before["block_bytes_sent"]
        usage = await bench.usage(name)
        out[f"insert_{mode}"] = {
            "new_physical_bytes": usage["physical_bytes"] - first["physical_bytes"],
            "not_sent_fraction": skipped / (skipped + sent) if skipped + sent else 0.0,
        }
        print(f"  insert {mode}: {out[f'insert_{mode}']}", flush=True)
    # 4. unchanged re-upload of the big file (a new version in the cdc bucket)
    before = await bench.dedup()
    seconds = await bench.put("speedcdc", "run1", permuted(big, 1001))
    after = await bench.dedup()
    skipped = after["dedup_bytes_skipped"] - before["dedup_bytes_skipped"]
    sent = after["block_bytes_sent"] - before["block_bytes_sent"]
    out["reupload"] = {
        "not_sent_fraction": skipped / (skipped + sent) if skipped + sent else 0.0,
        "mb_s": len(big) / seconds / MB,
    }
    out["peer_dedup"] = await bench.dedup()
    return out


def table(results: dict[str, Any]) -> str:
    c = results["chunker"]
    up = results["cluster"]["upload_mb_s"]
    tree = results["cluster"]["tree"]
    re_up = results["cluster"]["reupload"]
    rows = [
        ("chunker alone: FastCDC core (buffer)", f"{c['core_mb_s']:.0f} MB/s", ""),
        (
            "chunker alone: streaming CDC, 64 KiB reads",
            f"{c['stream_mb_s']:.0f} MB/s",
            f"fixed: {c['fixed_stream_mb_s']:.0f} MB/s, SHA-256: {c['sha256_mb_s']:.0f} MB/s",
        ),
        ("mean CDC chunk (512 KiB / 2 MiB / 8 MiB)", f"{c['mean_chunk_mib']:.2f} MiB", ""),
        (
            f"upload {results['big_mib']} MiB, 3 agents, durable (median)",
            f"cdc {up['cdc']:.0f} MB/s",
            f"fixed {up['fixed']:.0f} MB/s: cdc = {100 * up['cdc'] / up['fixed']:.0f} %"
            " (aim >= 90 %)",
        ),
        (
            f"edited tree ({tree['files']} files, {tree['bytes'] / MiB:.0f} MiB, "
            f"{tree['edited']} edited), dedup ratio of 2 versions",
            f"cdc {tree['cdc']['dedup_ratio']:.2f}x",
            f"fixed {tree['fixed']['dedup_ratio']:.2f}x",
        ),
        (
            "edited tree re-upload: block bytes not sent",
            f"cdc {100 * tree['cdc']['not_sent_fraction']:.1f} %",
            f"fixed {100 * tree['fixed']['not_sent_fraction']:.1f} %",
        ),
        (
            f"{results['big_mib']} MiB file with 100 bytes inserted at 1,000: new distinct"
            " bytes stored",
            f"cdc {results['cluster']['insert_cdc']['new_physical_bytes'] / MiB:.1f} MiB",
            f"fixed {results['cluster']['insert_fixed']['new_physical_bytes'] / MiB:.1f} MiB",
        ),
        (
            "same: block bytes not sent on its upload",
            f"cdc {100 * results['cluster']['insert_cdc']['not_sent_fraction']:.1f} %",
            f"fixed {100 * results['cluster']['insert_fixed']['not_sent_fraction']:.1f} %",
        ),
        (
            "unchanged re-upload: block bytes not sent",
            f"{100 * re_up['not_sent_fraction']:.1f} %",
            f"{re_up['mb_s']:.0f} MB/s",
        ),
    ]
    lines = ["| measure | result | compare |", "|---|---|---|"]
    lines += [f"| {a} | {b} | {c_} |" for a, b, c_ in rows]
    return "\n".join(lines)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="dfspeer-dedup-bench-"))
    big_size = (64 if args.quick else 256) * MiB
    tree_size = (48 if args.quick else 192) * MiB
    results: dict[str, Any] = {"big_mib": big_size // MiB, "cpus": os.cpu_count()}
    try:
        build_big_file(work / "big.bin", big_size)
        big = (work / "big.bin").read_bytes()
        print("chunker alone:", flush=True)
        results["chunker"] = await chunker_speed(big)
        print(f"  {results['chunker']}", flush=True)
        tree = [
            (f"t/{i:04d}/{p.name}", p.read_bytes()) for i, p in enumerate(tree_files(tree_size))
        ]
        token_file = work / "admin.token"
        write_secret_file(token_file, new_admin_token())
        cluster = LocalCluster(
            work / "cluster",
            3,
            base_port=None,
            gossip_base_port=None,
            settings=SETTINGS,
            admin_token_file=token_file,
        )
        cluster.start()
        try:
            cluster.wait_ready(60)
            cluster.wait_view(range(1, 4), timeout_s=60)
            auth = {"Authorization": f"Bearer {load_admin_token(token_file)}"}
            timeout = aiohttp.ClientTimeout(total=600)
            async with aiohttp.ClientSession(timeout=timeout, headers=auth) as http:
                print("3 agents:", flush=True)
                results["cluster"] = await cluster_part(
                    Bench(http, cluster.urls), big, tree, 1 if args.quick else 3
                )
        finally:
            cluster.stop(timeout_s=10)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="64 MiB / 48 MiB inputs, 1 run")
    parser.add_argument("--json", default=None, help="also write the results here")
    args = parser.parse_args()
    started = time.perf_counter()
    results = asyncio.run(run(args))
    results["elapsed_s"] = time.perf_counter() - started
    print()
    print(table(results))
    print(f"\ntotal {results['elapsed_s']:.0f} s")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
