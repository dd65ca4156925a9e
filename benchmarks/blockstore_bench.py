"""Block store throughput beside a plain-files baseline, in the same run.

For 1 MiB and 4 MiB blocks, with fsync on (``durable=True``) and off, it writes
``--total-mib`` (default 256) of random, distinct blocks and reads them back, ``--repeat``
(default 3) times per cell, reporting the median:

* LMDB put, 1 writer: ``await store.put(block)`` one after the other (1 commit per put).
* LMDB put, 8 writers: 8 concurrent tasks (group commit: commits < puts, shown).
* files put: the baseline — each block to its own file named by its SHA-256 hex (hash,
  ``open/write/close``, plus ``fsync`` of the file when fsync is on; no directory fsync, so
  the baseline is optimistic), done in a worker thread like the store's work; 1 and 8
  concurrent writers.
* get: read back every block once and verify its SHA-256 (LMDB ``get`` / file read +
  hash). The data was just written, so reads are WARM-CACHE (dropping the page cache
  needs root); they measure copy + hash, not the disk.

Both sides include SHA-256 hashing (~2 GB/s with SHA-NI). Each case uses a fresh directory
under ``--dir`` (default: a temp dir), removed afterwards. Prints a markdown table.
Run: ``python benchmarks/blockstore_bench.py [--total-mib 256] [--dir PATH]``.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, fields
from pathlib import Path

import lmdb

from dfspeer.blockstore import BlockStore

MiB = 1024 * 1024
WRITERS = 8


@dataclass
class Row:
    block: str
    fsync: bool
    lmdb_put_1: float = 0.0
    lmdb_put_8: float = 0.0
    files_put_1: float = 0.0
    files_put_8: float = 0.0
    lmdb_get: float = 0.0
    files_get: float = 0.0
    lmdb_get_cold: float = 0.0
    files_get_cold: float = 0.0
    puts_8: float = 0
    commits_8: float = 0


async def _timed(total_bytes: int, work: Awaitable[object]) -> float:
    """MiB/s of ``total_bytes`` moved by awaiting ``work`` (a not-yet-started coroutine)."""
    os.sync()  # start every measurement without dirty pages of the previous one
    start = time.perf_counter()
    await work
    return total_bytes / MiB / (time.perf_counter() - start)


async def _concurrently(blocks: list[bytes], put: Callable[[bytes], Awaitable[object]]) -> None:
    async def writer(k: int) -> None:
        for b in blocks[k::WRITERS]:
            await put(b)

    await asyncio.gather(*(writer(k) for k in range(WRITERS)))


async def _sequentially(blocks: list[bytes], put: Callable[[bytes], Awaitable[object]]) -> None:
    for b in blocks:
        await put(b)


def evict(path: Path) -> None:
    """Drop ``path``'s pages from the page cache (flushed first): the next read is cold.

    ``posix_fadvise(DONTNEED)`` on one file needs no root, unlike ``drop_caches``."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


async def bench_lmdb(root: Path, blocks: list[bytes], durable: bool, row: Row) -> None:
    total = sum(map(len, blocks))
    digests = [hashlib.sha256(b).digest() for b in blocks]
    for writers in (1, WRITERS):
        path = root / f"lmdb-{writers}"
        async with BlockStore(path, map_size_bytes=4 * total, durable=durable) as store:
            run = _sequentially if writers == 1 else _concurrently
            mbps = await _timed(total, run(blocks, store.put))
            if writers == 1:
                row.lmdb_put_1 = mbps
                row.lmdb_get = await _timed(total, _sequentially(digests, store.get))
            else:
                row.lmdb_put_8 = mbps
                stats = store.stats()
                row.puts_8, row.commits_8 = stats.write_requests, stats.txn_commits
        if writers == 1:  # reopen with the file out of the page cache
            evict(path / "data.mdb")
            async with BlockStore(path, map_size_bytes=4 * total) as store:
                row.lmdb_get_cold = await _timed(total, _sequentially(digests, store.get))
        shutil.rmtree(path)


def _write_file(directory: Path, data: bytes, fsync: bool) -> None:
    name = directory / hashlib.sha256(data).hexdigest()
    fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        if fsync:
            os.fsync(fd)
    finally:
        os.close(fd)


def _read_file(directory: Path, digest: bytes) -> bytes:
    data = (directory / digest.hex()).read_bytes()
    if hashlib.sha256(data).digest() != digest:
        raise ValueError("corrupt file")
    return data


async def bench_files(root: Path, blocks: list[bytes], fsync: bool, row: Row) -> None:
    total = sum(map(len, blocks))
    for writers in (1, WRITERS):
        directory = root / f"files-{writers}"
        directory.mkdir()

        async def put(b: bytes, d: Path = directory) -> None:
            await asyncio.to_thread(_write_file, d, b, fsync)

        run = _sequentially if writers == 1 else _concurrently
        mbps = await _timed(total, run(blocks, put))
        if writers == 1:
            row.files_put_1 = mbps
            digests = [hashlib.sha256(b).digest() for b in blocks]

            async def get(d_: bytes, d: Path = directory) -> None:
                await asyncio.to_thread(_read_file, d, d_)

            row.files_get = await _timed(total, _sequentially(digests, get))
            for name in directory.iterdir():
                evict(name)
            row.files_get_cold = await _timed(total, _sequentially(digests, get))
        else:
            row.files_put_8 = mbps
        shutil.rmtree(directory)


async def bench_read_path(root: Path, pool: bytes) -> str:
    """Latency (µs) of one verified get per block size: all on the event loop (blocking it)
    vs hopping to a worker thread. The store inlines blocks <= INLINE_BYTES (64 KiB)."""
    lines = ["| block | on loop µs | worker thread µs | store.get µs |", "|---|---|---|---|"]
    async with BlockStore(root / "readpath", map_size_bytes=1 << 30) as store:
        for size in (4096, 65536, 262144, MiB, 4 * MiB):
            digests = [await store.put(pool[i * size : (i + 1) * size]) for i in range(16)]
            rounds = max(8, (32 * MiB) // (size * 16))

            def on_loop(ds: list[bytes] = digests) -> None:
                for d in ds:
                    store._get_large(d)

            async def threaded(ds: list[bytes] = digests) -> None:
                for d in ds:
                    await asyncio.to_thread(store._get_large, d)

            async def api(ds: list[bytes] = digests) -> None:
                for d in ds:
                    await store.get(d)

            cells = []
            for variant in ("loop", "thread", "api"):
                start = time.perf_counter()
                for _ in range(rounds):
                    if variant == "loop":
                        on_loop()
                    else:
                        await (threaded() if variant == "thread" else api())
                cells.append((time.perf_counter() - start) / (rounds * 16) * 1e6)
            label = f"{size // 1024} KiB" if size < MiB else f"{size // MiB} MiB"
            lines.append(f"| {label} | " + " | ".join(f"{c:.0f}" for c in cells) + " |")
    return "\n".join(lines) + "\n"


def make_blocks(pool: bytes, size: int) -> list[bytes]:
    return [pool[i : i + size] for i in range(0, len(pool) - size + 1, size)]


def render(rows: list[Row], total_mib: int, repeat: int) -> str:
    head = (
        f"| block | fsync | LMDB put x1 | LMDB put x{WRITERS} (commits/puts) | files put x1 "
        f"| files put x{WRITERS} | LMDB get warm | files get warm | LMDB get cold "
        "| files get cold |\n"
        "|---|---|---|---|---|---|---|---|---|---|\n"
    )
    body = "".join(
        f"| {r.block} | {'on' if r.fsync else 'off'} | {r.lmdb_put_1:.0f} "
        f"| {r.lmdb_put_8:.0f} ({r.commits_8:.0f}/{r.puts_8:.0f}) | {r.files_put_1:.0f} "
        f"| {r.files_put_8:.0f} | {r.lmdb_get:.0f} | {r.files_get:.0f} "
        f"| {r.lmdb_get_cold:.0f} | {r.files_get_cold:.0f} |\n"
        for r in rows
    )
    note = (
        f"\nMiB/s, median of {repeat} runs of {total_mib} MiB of distinct random blocks per "
        "cell; SHA-256 included on both sides; every get is verified. Warm: just written, in "
        "the page cache. Cold: the file(s) evicted with posix_fadvise(DONTNEED) first. "
        f"commits/puts: LMDB write transactions of the {WRITERS}-writer run.\n"
    )
    return head + body + note


def bench_readahead(root: Path, pool: bytes, size: int) -> str:
    """Cold sequential reads of every value with the LMDB env's readahead on vs off.

    MDB_NORDAHEAD (readahead=False) madvises the map MADV_RANDOM: every 4 KiB page of a
    block's overflow run is then a separate disk read. Returns a markdown row."""
    path = root / "readahead"
    env = lmdb.open(str(path), map_size=4 * len(pool), sync=False)
    with env.begin(write=True) as txn:
        for i in range(0, len(pool) - size + 1, size):
            txn.put(hashlib.sha256(pool[i : i + size]).digest(), pool[i : i + size])
    env.close()
    cells = []
    for readahead in (True, False):
        evict(path / "data.mdb")
        env = lmdb.open(str(path), map_size=4 * len(pool), readahead=readahead)
        start = time.perf_counter()
        with env.begin(buffers=True) as txn:
            for _key, value in txn.cursor():
                bytes(value)
        cells.append(len(pool) / MiB / (time.perf_counter() - start))
        env.close()
    shutil.rmtree(path)
    label = f"{size // MiB} MiB"
    return f"| {label} | {cells[0]:.0f} | {cells[1]:.0f} |"


def median_row(runs: list[Row]) -> Row:
    """Field-wise median of repeated runs of one cell (the VM disk is noisy)."""
    out = Row(block=runs[0].block, fsync=runs[0].fsync)
    for name in (f.name for f in fields(Row) if f.name not in ("block", "fsync")):
        setattr(out, name, statistics.median(getattr(r, name) for r in runs))
    return out


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--total-mib", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3, help="runs per cell; median shown")
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="dfspeer-bsbench-", dir=args.dir))
    pool = os.urandom(args.total_mib * MiB)
    cells: dict[tuple[int, bool], list[Row]] = {}
    try:
        for rep in range(args.repeat):
            for size in (1 * MiB, 4 * MiB):
                blocks = make_blocks(pool, size)
                for fsync in (True, False):
                    row = Row(block=f"{size // MiB} MiB", fsync=fsync)
                    await bench_lmdb(base, blocks, fsync, row)
                    await bench_files(base, blocks, fsync, row)
                    cells.setdefault((size, fsync), []).append(row)
            print(f"run {rep + 1}/{args.repeat} done", flush=True)
        read_path = await bench_read_path(base, pool)
        readahead = [bench_readahead(base, pool[: 64 * MiB], size) for size in (MiB, 4 * MiB)]
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print()
    print(render([median_row(runs) for runs in cells.values()], args.total_mib, args.repeat))
    print("Read path (warm cache, verified, one get at a time):\n")
    print(read_path)
    print("LMDB readahead, cold sequential read of 64 MiB (MiB/s, raw py-lmdb, no hashing):\n")
    print("| block | readahead=True (chosen) | readahead=False |\n|---|---|---|")
    print("\n".join(readahead))


if __name__ == "__main__":
    asyncio.run(main())
