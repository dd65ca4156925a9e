"""Scrub: a background pass that re-hashes every stored block at a bounded rate.

Bit rot, torn writes and media errors corrupt blocks silently; reads catch them only for
blocks that are read. The scrubber walks every stored digest in byte order, reads the
block (the store re-hashes it, :meth:`BlockStore.get`) and, for a block whose bytes no
longer hash to its digest, quarantines it and fetches a good copy from a replica
(:class:`~dfspeer.cluster.readrepair.BlockRepair`), as Garage's and Ceph's deep scrub do.

Rate: ``rate_bytes_per_s`` (config ``scrub_rate_bytes_per_s``, default 32 MiB/s; 0
disables the background task) bounds the bytes read per second, paced block by block from
the start of each run, so a scrub never starves foreground I/O. A full pass is followed by
a pause of ``interval_s`` (config ``scrub_interval_s``, default 7 days, as Ceph's
``osd_deep_scrub_interval``).

Progress persists in the ``scrub`` table (key ``b"state"``), saved every
``SAVE_EVERY_BLOCKS`` blocks / ``SAVE_EVERY_S`` seconds and when stopped: the cursor (last
digest checked; the next run resumes after it, so a restart never restarts a pass), the
current pass's start, bytes and blocks, the end of the last full pass, and running totals
(``bytes_total``, ``blocks_total``, ``corrupt_found``, ``repaired``, ``passes``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from dfspeer.blockstore import BlockNotFound, BlockStore, CorruptBlock
from dfspeer.cluster.readrepair import BlockRepair

log = logging.getLogger(__name__)

SCRUB_TABLE = "scrub"
STATE_KEY = b"state"
SAVE_EVERY_BLOCKS = 256
SAVE_EVERY_S = 5.0
RUN_BLOCKS = 1024
"""Blocks per :meth:`Scrubber.scan` call of the background loop (state saved between)."""

Fetch = Callable[[bytes], Awaitable[bytes]]


def _fresh_state() -> dict[str, Any]:
    return {
        "cursor": None,
        "pass_started": None,
        "pass_bytes": 0,
        "pass_blocks": 0,
        "last_pass_end": None,
        "passes": 0,
        "bytes_total": 0,
        "blocks_total": 0,
        "corrupt_found": 0,
        "repaired": 0,
    }


class Scrubber:
    """Rate-limited re-hash of every stored block of one peer, resumable.

    ``fetch(digest)``: a verified copy from the cluster (the replicator's ``read_block``).
    ``rate_bytes_per_s``: pacing (<= 0: unpaced). ``interval_s``: pause after a pass.
    ``clock``: unix seconds (timestamps); pacing uses ``time.monotonic``.
    """

    def __init__(
        self,
        store: BlockStore,
        repair: BlockRepair,
        fetch: Fetch,
        *,
        rate_bytes_per_s: float,
        interval_s: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.repair = repair
        self.fetch = fetch
        self.rate_bytes_per_s = rate_bytes_per_s
        self.interval_s = interval_s
        self.clock = clock
        self.table = store.table(SCRUB_TABLE)
        loaded = self.table.get(STATE_KEY)
        self.state: dict[str, Any] = {**_fresh_state(), **(loaded or {})}
        self._saved_at = time.monotonic()
        self._unsaved = 0

    # ------------------------------------------------------------------ state
    async def save(self) -> None:
        """Persist progress (cursor and counters) now."""
        await self.table.put(STATE_KEY, dict(self.state))
        self._saved_at = time.monotonic()
        self._unsaved = 0

    async def _maybe_save(self) -> None:
        self._unsaved += 1
        if self._unsaved >= SAVE_EVERY_BLOCKS or time.monotonic() - self._saved_at > SAVE_EVERY_S:
            await self.save()

    def progress(self) -> dict[str, Any]:
        """JSON-able progress: the persisted state with the cursor as hex."""
        doc = dict(self.state)
        cursor = doc.pop("cursor")
        doc["cursor"] = cursor.hex() if isinstance(cursor, bytes) else None
        doc["rate_bytes_per_s"] = self.rate_bytes_per_s
        doc["running"] = self.state["pass_started"] is not None
        return doc

    # ------------------------------------------------------------------ scanning
    async def scan(self, max_blocks: int | None = None) -> bool:
        """Check up to ``max_blocks`` blocks (all remaining if None) from the cursor,
        paced at the configured rate. Returns True if the pass reached its end (the cursor
        is then reset and the pass recorded). Saves progress before returning."""
        st = self.state
        if st["pass_started"] is None:
            st.update(pass_started=self.clock(), pass_bytes=0, pass_blocks=0)
            await self._retry_quarantined()
        started, paced_bytes = time.monotonic(), 0
        cursor = st["cursor"]
        for done, digest in enumerate(self.store.iter_digests(start_after=cursor)):
            if max_blocks is not None and done >= max_blocks:
                await self.save()
                return False
            size = await self._check(digest)
            paced_bytes += size
            st.update(cursor=digest, pass_bytes=st["pass_bytes"] + size)
            st.update(pass_blocks=st["pass_blocks"] + 1, blocks_total=st["blocks_total"] + 1)
            st["bytes_total"] += size
            await self._pace(started, paced_bytes)
            await self._maybe_save()
        st.update(cursor=None, pass_started=None, last_pass_end=self.clock())
        st["passes"] += 1
        await self.save()
        log.info("scrub pass done: %d blocks, %d bytes", st["pass_blocks"], st["pass_bytes"])
        return True

    async def _pace(self, started: float, done_bytes: int) -> None:
        if self.rate_bytes_per_s <= 0:
            await asyncio.sleep(0)  # stay fair to the event loop
            return
        delay = started + done_bytes / self.rate_bytes_per_s - time.monotonic()
        await asyncio.sleep(max(delay, 0.0))

    async def _check(self, digest: bytes) -> int:
        """Verify one block; quarantine + refetch if corrupt. Returns bytes read (a corrupt
        block's stored length included)."""
        try:
            return len(await self.store.get(digest))
        except BlockNotFound:  # deleted since it was listed
            return 0
        except CorruptBlock as exc:
            size = self.store.block_size(digest)  # read and hashed, so counted
            if await self.repair.quarantine(digest, exc, by="scrub"):
                self.state["corrupt_found"] += 1
            await self._refetch(digest)
            return size

    async def _refetch(self, digest: bytes) -> bool:
        try:
            data = await self.fetch(digest)
            await self.store.put_verified(digest, data)
        except Exception as exc:
            log.warning("scrub: no good copy of corrupt block %s yet: %s", digest.hex(), exc)
            return False
        # the read that fetched the good copy may have restored and marked it already
        if await self.repair.mark_repaired(digest) or self.repair.is_repaired(digest):
            self.state["repaired"] += 1
        return True

    async def _retry_quarantined(self) -> None:
        for digest in self.repair.unrepaired():
            await self._refetch(digest)

    # ------------------------------------------------------------------ background
    async def run(self) -> None:
        """Scrub forever: passes separated by ``interval_s``; progress saved on cancel."""
        try:
            while True:
                last = self.state["last_pass_end"]
                if self.state["pass_started"] is None and last is not None:
                    wait = last + self.interval_s - self.clock()
                    if wait > 0:
                        await asyncio.sleep(wait)
                try:
                    while not await self.scan(RUN_BLOCKS):
                        pass
                except Exception:
                    log.exception("scrub failed; retrying in 60 s")
                    await asyncio.sleep(60.0)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.shield(self.save())
