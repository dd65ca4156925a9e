"""Opening metadata tables while the writer is busy must never deadlock.

Regression: ``BlockStore.table()`` of a new table used to call py-lmdb's
``Environment.open_db()`` (and a write transaction for the summary check) on the calling
thread. ``open_db`` without a ``txn`` begins a write transaction *while holding the GIL*:
if the writer thread held LMDB's write mutex (committing, or just acquired in
``env.begin(write=True)`` and waiting to get the GIL back), the opener waited for the
mutex holding the GIL and the writer waited for the GIL holding the mutex — forever, and
unkillable by signals (the main thread never gets the GIL to run a handler).

Because the failure mode holds the GIL, the stress scenario runs in a child process that
the test kills on timeout: a deadlock fails the test instead of hanging pytest.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest

from dfspeer.blockstore import BlockStore, BlockStoreError

REPO = Path(__file__).resolve().parents[2]
MiB = 1024 * 1024

STRESS = r"""
import asyncio, sys, threading
from pathlib import Path
from dfspeer.blockstore import BlockStore

NEW_TABLES = 50

async def main(path: Path) -> None:
    async with BlockStore(path, map_size_bytes=256 * 1024 * 1024, durable=True,
                          max_tables=2 * NEW_TABLES + 8) as store:
        busy = store.table("busy")
        stop = asyncio.Event()

        async def writer(w: int) -> int:
            n = 0
            while not stop.is_set():
                await store.put(b"%d-%d" % (w, n) * 50)
                await busy.put(b"%d-%d" % (w, n), n)
                await busy.update(b"ctr-%d" % w, lambda cur: (cur or 0) + 1)
                n += 1
            return n

        def open_in_thread(k: int) -> None:
            for i in range(k, NEW_TABLES, 2):
                store.table("thr-%d" % i).get(b"x")

        writers = [asyncio.create_task(writer(w)) for w in range(16)]
        await asyncio.sleep(0.05)  # the writer is now committing back to back
        thread = asyncio.gather(*(asyncio.to_thread(open_in_thread, k) for k in range(2)))
        for i in range(NEW_TABLES):  # event loop: first use of a fresh table, sync API
            table = store.table("loop-%d" % i)
            await table.put(b"k", i)
            assert table.get(b"k") == i
            await asyncio.sleep(0)
        await thread
        stop.set()
        counts = await asyncio.gather(*writers)
        assert sum(counts) > 0
        assert len(store.table_names()) == 2 * NEW_TABLES + 1
    print("ok", sum(counts), flush=True)

asyncio.run(asyncio.wait_for(main(Path(sys.argv[1])), 60))
"""


@pytest.mark.parametrize("run", range(3))
def test_opening_tables_while_writer_is_busy_does_not_deadlock(tmp_path: Path, run: int) -> None:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", STRESS, str(tmp_path / f"bs{run}")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    try:
        out, err = proc.communicate(timeout=90)
    except subprocess.TimeoutExpired:
        proc.kill()  # SIGKILL: a process stuck in C with the GIL ignores SIGINT/SIGTERM
        proc.communicate()
        pytest.fail("deadlock: opening tables while the writer commits never finished")
    assert proc.returncode == 0, err.decode()
    assert out.startswith(b"ok ")


async def test_reopened_store_opens_existing_tables_without_the_writer(tmp_path: Path) -> None:
    """Tables that exist at open are opened then; their first use needs no writer
    round-trip even while the writer is blocked."""
    path = tmp_path / "bs"
    async with BlockStore(path, map_size_bytes=64 * MiB) as s:
        for name in ("a", "b", "c"):
            await s.table(name).put(b"k", name)
    async with BlockStore(path, map_size_bytes=64 * MiB) as s:
        gate = s.table("gate")
        entered, release = threading.Event(), threading.Event()

        def hold(_cur: Any) -> int:
            entered.set()
            release.wait(10)
            return 1

        held = asyncio.create_task(gate.update(b"g", hold))
        assert await asyncio.to_thread(entered.wait, 10)
        try:
            # would block until `release` if it needed the (held) writer thread
            done = await asyncio.wait_for(
                asyncio.to_thread(lambda: [s.table(n).get(b"k") for n in ("a", "b", "c")]), 5
            )
            assert done == ["a", "b", "c"]
        finally:
            release.set()
        assert await held == 1


async def test_first_use_of_a_table_inside_the_writer_raises(tmp_path: Path) -> None:
    async with BlockStore(tmp_path / "bs", map_size_bytes=64 * MiB) as s:
        t = s.table("t")
        s.table("old")

        def nested(_cur: Any) -> int:
            s.table("old")  # already open: fine
            s.table("brand-new")  # would need the writer thread itself
            return 1

        with pytest.raises(BlockStoreError, match="writer thread"):
            await asyncio.wait_for(t.update(b"k", nested), 10)
        assert t.get(b"k") is None
        await t.put(b"k", 2)  # the writer is still alive
        assert "brand-new" not in s.table_names()
        assert s.table("brand-new").get(b"x") is None


async def test_table_creation_errors_reach_the_caller(tmp_path: Path) -> None:
    async with BlockStore(tmp_path / "bs", map_size_bytes=64 * MiB, max_tables=2) as s:
        s.table("one")
        s.table("two")
        with pytest.raises(BlockStoreError, match="too many tables"):
            s.table("three")
        await s.table("one").put(b"k", 1)  # the writer survived the failed creation
        assert s.table("one").get(b"k") == 1
