"""Block read repair and quarantine.

Read repair of blocks (Dynamo's read repair, applied to chunks): when
:meth:`~dfspeer.cluster.replication.Replicator.read_block` found a block missing or corrupt
on some replicas (``BlockNotFound``, a ``corrupt_block`` error, or bytes that do not hash
to the digest) before a good copy came from another one, :meth:`BlockRepair.write_back`
writes the good copy back to exactly those replicas in the background. At most
``max_inflight`` repairs run at once; past that, repairs are skipped (counted) and left to
anti-entropy and scrub, so a read storm cannot turn into unbounded write work.

Quarantine: a block whose stored bytes no longer hash to its digest (found by a read or by
scrub, :mod:`.scrub`) is deleted from the block store so it is never served nor copied, and
recorded in the ``quarantine`` table (key: digest; value ``{"found_at": unix s, "by":
"read" | "scrub", "actual": hex of what the bytes hashed to, "repaired_at": unix s |
None}``) in the same transaction. The good copy is then fetched from a replica and stored
again (``put_verified``), which marks the entry repaired. Entries never repaired are retried
by the next scrub pass.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

from dfspeer.blockstore import BlockStore, CorruptBlock, DeleteBlock, TablePut
from dfspeer.cluster.quorum import cancel_all
from dfspeer.cluster.rpc import PeerRpcClient, PeerUnreachable
from dfspeer.cluster.view import ClusterView

log = logging.getLogger(__name__)

QUARANTINE_TABLE = "quarantine"
MAX_INFLIGHT = 64


class BlockRepair:
    """Write-back of good block copies and quarantine of corrupt local ones, for one peer.

    Counters: ``read_repairs`` (good copies written back to a replica, self included),
    ``read_repair_failures``, ``read_repairs_skipped`` (over ``max_inflight``),
    ``corrupt_found`` (corrupt local blocks quarantined), ``corrupt_repaired`` (quarantined
    blocks stored again from a good copy).
    """

    def __init__(
        self,
        view: ClusterView,
        store: BlockStore,
        rpc: PeerRpcClient,
        *,
        max_inflight: int = MAX_INFLIGHT,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.view = view
        self.store = store
        self.rpc = rpc
        self.max_inflight = max_inflight
        self.clock = clock
        self.table = store.table(QUARANTINE_TABLE)
        self.counters: Counter[str] = Counter()
        self._tasks: set[asyncio.Task[None]] = set()

    async def close(self) -> None:
        """Cancel the repairs still running."""
        await cancel_all(self._tasks)

    async def drain(self) -> None:
        """Wait for the repairs running now (tests)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    # ------------------------------------------------------------------ quarantine
    async def quarantine(self, digest: bytes, exc: CorruptBlock, *, by: str) -> bool:
        """Delete the corrupt local copy of ``digest`` and record it (one transaction).
        Returns True if a copy was removed (False: already gone, e.g. quarantined by a
        concurrent read)."""
        entry = {
            "found_at": self.clock(),
            "by": by,
            "actual": exc.actual.hex(),
            "repaired_at": None,
        }
        removed, _ = await self.store.write_batch(
            [DeleteBlock(digest), TablePut(QUARANTINE_TABLE, digest, entry)]
        )
        if removed:
            self.counters["corrupt_found"] += 1
            log.warning("quarantined corrupt block %s (found by %s)", digest.hex(), by)
        return bool(removed)

    async def mark_repaired(self, digest: bytes) -> bool:
        """Record that a good copy of quarantined ``digest`` is stored again. True (and
        counted) the first time only."""
        now = self.clock()
        changed = False

        def mark(cur: Any | None) -> Any | None:
            nonlocal changed
            if isinstance(cur, dict) and cur.get("repaired_at") is None:
                changed = True
                return {**cur, "repaired_at": now}
            changed = False
            return cur

        if self.table.get(digest) is None:
            return False
        await self.table.update(digest, mark)
        if changed:
            self.counters["corrupt_repaired"] += 1
        return changed

    def is_repaired(self, digest: bytes) -> bool:
        """True if quarantined ``digest`` has a good copy stored again."""
        entry = self.table.get(digest)
        return isinstance(entry, dict) and entry.get("repaired_at") is not None

    async def restore(self, digest: bytes, data: bytes) -> None:
        """Store a verified good copy locally and mark a quarantine entry repaired."""
        await self.store.put_verified(digest, data)
        await self.mark_repaired(digest)

    def unrepaired(self, limit: int = 1000) -> list[bytes]:
        """Digests quarantined and not yet stored again (oldest keys first)."""
        return [
            k
            for k, v in self.table.scan(limit=limit)
            if isinstance(v, dict) and v.get("repaired_at") is None
        ]

    # ------------------------------------------------------------------ read repair
    def write_back(self, digest: bytes, data: bytes, peers: Sequence[str], *, local: bool) -> None:
        """In the background, store verified ``data`` on ``peers`` (replicas that answered
        missing/corrupt) and locally if ``local``. Bounded by ``max_inflight``."""
        if not peers and not local:
            return
        if len(self._tasks) >= self.max_inflight:
            self.counters["read_repairs_skipped"] += 1
            return
        task = asyncio.create_task(self._write_back(digest, data, tuple(peers), local))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _write_back(
        self, digest: bytes, data: bytes, peers: tuple[str, ...], local: bool
    ) -> None:
        if local:
            try:
                await self.restore(digest, data)
                self.counters["read_repairs"] += 1
            except Exception as exc:
                self.counters["read_repair_failures"] += 1
                log.debug("local read repair of %s failed: %s", digest.hex(), exc)
        for peer in peers:
            try:
                address = self.view.address(peer)
                if address is None:
                    raise PeerUnreachable(f"no address for {peer}")
                await self.rpc.put_block(address, digest, data)
                self.counters["read_repairs"] += 1
            except Exception as exc:
                self.counters["read_repair_failures"] += 1
                log.debug("read repair of %s on %s failed: %s", digest.hex(), peer, exc)

    def status(self) -> dict[str, Any]:
        """Counters and the number of quarantine entries."""
        return {
            "read_repairs": self.counters["read_repairs"],
            "read_repair_failures": self.counters["read_repair_failures"],
            "corrupt_found": self.counters["corrupt_found"],
            "corrupt_repaired": self.counters["corrupt_repaired"],
            "quarantined": self.table.count(),
        }
