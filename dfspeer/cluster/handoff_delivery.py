"""Hint delivery of a :class:`~dfspeer.cluster.handoff.HintedHandoff`: every
``hint_delivery_interval_s`` and at once when gossip reports a member ALIVE, each hint
whose target is ALIVE is written to it, at most ``DELIVERY_CONCURRENCY`` at once, and
dropped only once the target acknowledged it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from dfspeer.blockstore import BlockNotFound, CorruptBlock
from dfspeer.cluster.handoff_base import HandoffBase
from dfspeer.cluster.rpc import PeerUnreachable

log = logging.getLogger("dfspeer.cluster.handoff")

PAGE = 256
"""Hints read per page by a delivery round."""
DELIVERY_CONCURRENCY = 8
"""Hint deliveries in flight at once."""


class HintDelivery(HandoffBase):
    """:class:`~dfspeer.cluster.handoff.HintedHandoff` delivery rounds."""

    def wake(self) -> None:
        """Run a delivery round now (e.g. a member came back ALIVE)."""
        self._wake.set()

    async def run(self) -> None:
        """Deliver hints forever: every ``hint_delivery_interval_s`` and on :meth:`wake`."""
        while True:
            self._wake.clear()
            try:
                if self.hints.pending():
                    await self.deliver_once()
            except Exception:
                log.exception("hint delivery round failed")
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval_s)

    async def deliver_once(self) -> int:
        """One pass over every hint: deliver those whose target is ALIVE (at most
        ``DELIVERY_CONCURRENCY`` at once). Returns the number delivered."""
        delivered = 0
        unreachable: set[str] = set()
        sem = asyncio.Semaphore(DELIVERY_CONCURRENCY)
        after: bytes | None = None
        while True:
            page = self.hints.table.scan(start_after=after, limit=PAGE)
            if not page:
                return delivered
            after = page[-1][0]
            due = [
                (k, h)
                for k, h in page
                if isinstance(h, dict)
                and str(h.get("target")) not in unreachable
                and self._reachable(str(h.get("target")))
            ]

            async def one(hkey: bytes, hint: dict[str, Any]) -> bool:
                async with sem:
                    if str(hint["target"]) in unreachable:
                        return False
                    try:
                        return await self._deliver(hkey, hint)
                    except PeerUnreachable:
                        unreachable.add(str(hint["target"]))
                    except Exception as exc:
                        log.debug("hint %s for %s not delivered: %s", hkey.hex(), hint, exc)
                    self.counters["delivery_failures"] += 1
                    return False

            results = await asyncio.gather(*(one(k, h) for k, h in due))
            delivered += sum(results)

    async def _put_block_on(self, target: str, digest: bytes, data: bytes) -> None:
        if target == self.view.self_id:
            await self.store.put_verified(digest, data)
        else:
            await self.rpc.put_block(self._address(target), digest, data)

    async def _deliver(self, hkey: bytes, hint: dict[str, Any]) -> bool:
        target = str(hint["target"])
        if hint.get("kind") == "record":
            return await self._deliver_record(hkey, hint, target)
        digest = bytes(hint["digest"])
        try:
            data = await self.store.get(digest)
        except (BlockNotFound, CorruptBlock):
            if target != self.view.self_id and await self.rpc.has_block(
                self._address(target), digest
            ):
                await self.hints.table.delete(hkey)
                self.counters["dropped"] += 1
                return False
            if self.fetch is None:
                raise
            data = await self.fetch(digest)
        await self._put_block_on(target, digest, data)
        await self.hints.table.delete(hkey)
        self.counters["delivered"] += 1
        await self._maybe_drop_copy(digest, target)
        return True

    async def _maybe_drop_copy(self, digest: bytes, target: str) -> None:
        """The stand-in's copy is no longer pinned by a hint: nothing references it here,
        so the block manager collects it after the grace (the only code that deletes)."""
        replicas = self.view.replicas(self.view.partition_of(digest))
        if self.view.self_id in replicas or target not in replicas:
            return
        if not self.hints.has_block_hints(digest):
            self.counters["copies_dropped"] += 1

    async def _deliver_record(self, hkey: bytes, hint: dict[str, Any], target: str) -> bool:
        table, key, record = str(hint["table"]), bytes(hint["key"]), hint["record"]
        schema = self.hints.schema(table)
        if target == self.view.self_id:
            merge = schema.merge_records
            await self.store.table(table).update(key, lambda cur: merge(cur, record))
        else:
            await self.rpc.put_record(self._address(target), table, key, record)

        def drop_if_same(cur: Any | None) -> Any | None:
            kept = cur.get("record") if isinstance(cur, dict) else None
            return None if kept == record else cur

        await self.hints.table.update(hkey, drop_if_same)
        self.counters["delivered"] += 1
        return True
