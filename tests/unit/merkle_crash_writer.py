"""Helper process for the Merkle crash test (not a test module).

Usage: ``python merkle_crash_writer.py <store dir>``. Opens a durable BlockStore (blocks
partitioned by ``digest[0] % 4``, table ``t`` by ``key[0] % 4``) and, from 4 concurrent
writers, puts and deletes table records and blocks forever, singly and in batches; after
each write RETURNS it prints a line and flushes stdout. The test SIGKILLs it mid-stream and
checks the summaries on disk against the data on disk.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

from dfspeer.blockstore import BlockStore, PutBlock, TableDelete, TablePut


def quarter(key: bytes) -> int:
    return key[0] % 4


async def _writer(store: BlockStore, seed: int) -> None:
    table = store.table("t")
    i = seed
    while True:
        key = b"%c-key-%d" % (97 + i % 7, i % 500)
        if i % 5 == 0:
            await table.delete(key)
        elif i % 3 == 0:
            await store.write_batch(
                [PutBlock(os.urandom(64)), TablePut("t", key, i), TableDelete("t", key + b"x")]
            )
        else:
            await asyncio.gather(table.put(key, {"i": i}), store.put(os.urandom(100)))
        sys.stdout.write("ack\n")
        sys.stdout.flush()
        i += 4


async def main(path: Path) -> None:
    store = BlockStore(path, map_size_bytes=1 << 28, durable=True, partition_of=quarter)
    store.table("t", partition_key_of=quarter)
    await asyncio.gather(*(_writer(store, seed) for seed in range(4)))


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1])))
