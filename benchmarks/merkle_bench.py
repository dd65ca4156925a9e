"""Merkle summaries: traffic to find one difference among N keys, and the write overhead.

Part 1 — anti-entropy traffic. Builds store A with ``--keys`` (default 1,000,000) records
``bucket/object-<i>`` -> a small manifest-like CBOR map in table ``manifests``, placed in
``2**--partition-bits`` (default 1024) partitions by the ring's rule (top bits of
``mmh3.hash64``), with ``write_batch`` of ``--batch`` records and ``durable=False``. Store B
is a copy of A's directory (same bytes), then made to differ. For each case it runs the
sans-IO diff (``dfspeer.blockstore.merkle_diff``) of A against B over every partition,
with ``serve`` on B as the in-memory "network", and prints the round trips, nodes asked
for and the exact request + response bytes a real exchange would carry:

* in sync; one record changed on B; one record missing on B; one extra record on B.

Part 2 — write overhead. On fresh stores with ``summaries=True`` and ``summaries=False``
(same process, alternating, ``--repeat`` runs, median): single ``put`` of 1 KiB blocks,
64 concurrent ``put``s (group commit), single ``MetaTable.put``, and ``write_batch`` of
10,000 ``TablePut``/``PutBlock``. Also prints the 1M build rate and the size of the
summary sub-db beside the table.

Run: ``python benchmarks/merkle_bench.py [--keys 1000000] [--quick] [--dir PATH]``
(``--quick``: 100,000 keys, 1 repeat).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import lmdb
import mmh3

from dfspeer.blockstore import BlockStore, PutBlock, TablePut
from dfspeer.blockstore.merkle_diff import DiffResult, diff, serve

MiB = 1024 * 1024
TABLE = "manifests"


def partitioner(bits: int) -> Callable[[bytes], int]:
    def partition_of(key: bytes) -> int:
        return int(mmh3.hash64(key, signed=False)[0]) >> (64 - bits)

    return partition_of


def record(i: int) -> dict[str, Any]:
    return {"version": f"{1700000000000 + i:016x}-peer-a", "size": i * 7, "chunks": i % 5}


def key_of(i: int) -> bytes:
    return b"bucket/object-%d" % i


# ---------------------------------------------------------------------- part 1
async def build(path: Path, keys: int, batch: int, bits: int) -> float:
    """Fill store ``path``; return records/s (summaries maintained)."""
    start = time.perf_counter()
    async with BlockStore(path, durable=False, partition_of=partitioner(bits)) as store:
        for lo in range(0, keys, batch):
            hi = min(lo + batch, keys)
            await store.write_batch([TablePut(TABLE, key_of(i), record(i)) for i in range(lo, hi)])
    return keys / (time.perf_counter() - start)


def sub_db_bytes(path: Path) -> dict[str, int]:
    env = lmdb.open(str(path), max_dbs=128, readonly=True, lock=False)
    try:
        out = {}
        psize = int(env.stat()["psize"])
        with env.begin() as txn:
            for name in (b"table:" + TABLE.encode(), b"merkle:table:" + TABLE.encode()):
                st = txn.stat(env.open_db(name, txn=txn, create=False))
                pages = st["branch_pages"] + st["leaf_pages"] + st["overflow_pages"]
                out[name.decode()] = pages * psize
        return out
    finally:
        env.close()


async def _nothing() -> None:
    return None


async def one_diff(a: BlockStore, b: BlockStore, partitions: range, hash_bytes: int) -> DiffResult:
    async def exchange(request: bytes) -> bytes:
        return serve(b.merkle, request)

    return await diff(a.merkle(TABLE), TABLE, partitions, exchange, hash_bytes=hash_bytes)


async def part1(args: argparse.Namespace, root: Path) -> None:
    bits = args.partition_bits
    rate = await build(root / "a", args.keys, args.batch, bits)
    print(f"build: {args.keys:,} records in batches of {args.batch:,}: {rate:,.0f} records/s")
    sizes = sub_db_bytes(root / "a")
    for name, size in sizes.items():
        print(f"  {name}: {size / MiB:,.1f} MiB")
    shutil.copytree(root / "a", root / "b")
    partitions = range(2**bits)
    print(
        "\n| case | hash bytes | diffs found | round trips | nodes asked | sent B | received B |"
        " total B | diff s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    async with (
        BlockStore(root / "a", durable=False, partition_of=partitioner(bits)) as a,
        BlockStore(root / "b", durable=False, partition_of=partitioner(bits)) as b,
    ):
        mid = args.keys // 2
        cases: list[tuple[str, Callable[[], Awaitable[object]]]] = [
            ("in sync", _nothing),
            ("1 record changed", lambda: b.table(TABLE).put(key_of(mid), record(-1))),
            ("+1 record missing there", lambda: b.table(TABLE).delete(key_of(mid + 1))),
            ("+1 record missing here", lambda: b.table(TABLE).put(b"bucket/new", record(0))),
        ]
        for name, change in cases:
            await change()
            for hb in (16, 8):
                t = time.perf_counter()
                result = await one_diff(a, b, partitions, hb)
                took = time.perf_counter() - t
                s = result.stats
                print(
                    f"| {name} | {hb} | {len(result.diffs)} | {s.rounds} | {s.nodes_requested} |"
                    f" {s.bytes_sent:,} | {s.bytes_received:,} | {s.bytes_total:,} | {took:.3f} |"
                )


# ---------------------------------------------------------------------- part 2
async def _timed(n: int, work: Callable[[], Awaitable[object]]) -> float:
    start = time.perf_counter()
    await work()
    return n / (time.perf_counter() - start)


async def overhead_case(path: Path, summaries: bool, n: int, bits: int) -> dict[str, float]:
    out: dict[str, float] = {}
    store = BlockStore(
        path,
        durable=False,
        partition_of=partitioner(bits),
        summaries=summaries,
        map_size_bytes=4 << 30,
    )
    try:
        table = store.table(TABLE)
        blobs = [os.urandom(1024) for _ in range(2 * n)]

        async def seq_blocks() -> None:
            for data in blobs[:n]:
                await store.put(data)

        async def conc_blocks() -> None:
            async def writer(k: int) -> None:
                for data in blobs[n + k :: 64]:
                    await store.put(data)

            await asyncio.gather(*(writer(k) for k in range(64)))

        async def seq_records() -> None:
            for i in range(n):
                await table.put(key_of(i), record(i))

        async def batch_records() -> None:
            for lo in range(n, 11 * n, 10_000):
                await store.write_batch(
                    [TablePut(TABLE, key_of(i), record(i)) for i in range(lo, lo + 10_000)]
                )

        async def batch_blocks() -> None:
            for _ in range(10 * n // 10_000):
                await store.write_batch([PutBlock(os.urandom(64)) for _ in range(10_000)])

        out["put 1 KiB block, 1 writer"] = await _timed(n, seq_blocks)
        out["put 1 KiB block, 64 writers"] = await _timed(n, conc_blocks)
        out["MetaTable.put, 1 writer"] = await _timed(n, seq_records)
        out["write_batch 10k TablePut"] = await _timed(10 * n, batch_records)
        out["write_batch 10k PutBlock 64 B"] = await _timed(10 * n, batch_blocks)
    finally:
        await store.close()
        shutil.rmtree(path, ignore_errors=True)
    return out


async def part2(args: argparse.Namespace, root: Path) -> None:
    runs: dict[bool, list[dict[str, float]]] = {True: [], False: []}
    for r in range(args.repeat):
        for summaries in (False, True) if r % 2 == 0 else (True, False):
            got = await overhead_case(root / "ovh", summaries, args.ops, args.partition_bits)
            runs[summaries].append(got)
    print(
        f"\nwrite throughput (ops/s, median of {args.repeat}; durable=False; "
        f"{2**args.partition_bits} partitions; stores start empty)\n"
    )
    print("| operation | summaries off | summaries on | overhead |")
    print("|---|---|---|---|")
    for name in runs[True][0]:
        off = statistics.median(run[name] for run in runs[False])
        on = statistics.median(run[name] for run in runs[True])
        print(f"| {name} | {off:,.0f} | {on:,.0f} | {100 * (off / on - 1):+.0f}% time/op |")


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keys", type=int, default=1_000_000)
    parser.add_argument("--batch", type=int, default=50_000)
    parser.add_argument("--partition-bits", type=int, default=10)
    parser.add_argument("--ops", type=int, default=10_000, help="ops per overhead case")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="100,000 keys, 1 repeat")
    parser.add_argument("--skip-overhead", action="store_true")
    parser.add_argument("--skip-diff", action="store_true")
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    if args.quick:
        args.keys, args.repeat = 100_000, 1
    root = Path(tempfile.mkdtemp(prefix="merkle-bench-", dir=args.dir))
    try:
        if not args.skip_diff:
            await part1(args, root)
        if not args.skip_overhead:
            await part2(args, root)
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    asyncio.run(main())
