"""Helper process for the block store crash test (not a test module).

Usage: ``python blockstore_crash_writer.py <store dir>``. Opens a durable BlockStore and
writes random blocks forever from 4 concurrent writers; after each ``put`` RETURNS it prints
the digest (hex) and a newline and flushes stdout. The test SIGKILLs it mid-stream and
checks that every printed digest survived.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from dfspeer.blockstore import BlockStore

SIZES = (1, 4096, 100_000, 1 << 20)


async def _writer(store: BlockStore, seed: int) -> None:
    i = seed
    while True:
        data = os.urandom(SIZES[i % len(SIZES)])
        digest = await store.put(data)
        sys.stdout.write(digest.hex() + "\n")
        sys.stdout.flush()
        i += 1


async def main(path: Path) -> None:
    store = BlockStore(path, map_size_bytes=1 << 30, durable=True)
    await asyncio.gather(*(_writer(store, seed) for seed in range(4)))


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
