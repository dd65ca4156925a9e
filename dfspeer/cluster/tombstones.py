"""Tombstone grace and purge.

A delete writes a tombstone: an entry that its table's schema says is one
(:meth:`dfspeer.cluster.table.TableSchema.tombstone_since`), e.g. an object whose versions
are all aborted or delete markers. While the tombstone exists, an older put that surfaces
later — from a replica that was down during the delete, a hint, or anti-entropy — loses the
merge, so
a deleted object is never resurrected. Tombstones cannot be kept forever (a delete-heavy
workload would fill the store), so they are purged after a grace period,
``tombstone_grace_s`` (default 10 days, Cassandra's ``gc_grace_seconds``).

Purge rule (conservative; every condition must hold for one tombstone):

1. its version is older than the grace (age from the HLC timestamp of the version);
2. every known member is ALIVE (no SUSPECT or DEAD peer that could hold an old put);
3. this peer is the first replica of the key's partition (one purger per key);
4. every replica of the partition answers with exactly this tombstone version — a replica
   with nothing or an older version is sent the tombstone instead (repair) and the purge
   waits for the next round; a replica with a newer version means a later write won;
5. then the tombstone is retracted (remove-if-version-equals) on the other replicas, then
   locally.

So a tombstone is purged only once it is older than the grace on every replica. The
remaining hazard is Cassandra's: a peer that was away (or partitioned off) for longer than
the grace, still holding an old put, must be wiped before it rejoins — hence the grace must
exceed the longest outage a peer may come back from with its data (and hints for such a
peer are delivered within ``hint_delivery_interval_s`` of its return, far inside it).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from dfspeer.blockstore import BlockStore
from dfspeer.cluster.rpc import PeerRpcClient, PeerUnreachable, RpcError
from dfspeer.cluster.table import TableSchema
from dfspeer.cluster.view import ClusterView
from dfspeer.gossip import MemberState

log = logging.getLogger(__name__)

PAGE = 512


class TombstonePurger:
    """Purges expired tombstones of ``tables`` (module docstring) for one peer.

    ``grace_s``: tombstone grace (seconds); ``interval_s``: time between rounds;
    ``clock``: unix seconds. Records of a table are placed by their table key
    (``partition_of(key)``, as :mod:`dfspeer.objects.manifest` does). Counters: ``purged``,
    ``pushed`` (tombstones sent to a replica that lacked them), ``expired_seen``.
    """

    def __init__(
        self,
        view: ClusterView,
        store: BlockStore,
        rpc: PeerRpcClient,
        *,
        grace_s: float,
        interval_s: float,
        tables: Mapping[str, TableSchema[Any]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.view = view
        self.store = store
        self.rpc = rpc
        self.grace_s = grace_s
        self.interval_s = interval_s
        self.tables = tables
        self.clock = clock
        self.counters: Counter[str] = Counter()
        self.last_round: float | None = None

    async def run(self) -> None:
        """Purge rounds forever, every ``interval_s``."""
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.purge_once()
            except Exception:
                log.exception("tombstone purge round failed")

    def _everyone_alive(self) -> bool:
        return all(
            m.state is MemberState.ALIVE
            for m in self.view.members()
            if m.state is not MemberState.LEFT
        )

    async def purge_once(self) -> int:
        """One round over the local tables; returns the number of tombstones purged."""
        self.last_round = self.clock()
        if not self._everyone_alive():
            return 0
        purged = 0
        horizon = self.clock() - self.grace_s
        for table, schema in self.tables.items():
            after: bytes | None = None
            while page := self.store.table(table).scan(start_after=after, limit=PAGE):
                after = page[-1][0]
                for key, record in page:
                    when = schema.tombstone_since_record(record)
                    if when is None or when > horizon:
                        continue
                    self.counters["expired_seen"] += 1
                    try:
                        purged += await self._purge(schema, key, record)
                    except RpcError as exc:  # a replica unreachable or erring: next round
                        log.debug("tombstone purge of %s skipped: %s", key.hex(), exc)
        return purged

    async def _purge(self, schema: TableSchema[Any], key: bytes, record: Any) -> int:
        table = schema.name
        replicas = self.view.replicas(self.view.partition_of(schema.partition_key(key)))
        if not replicas or replicas[0] != self.view.self_id:
            return 0
        version = schema.token_of(record)
        others = [(p, self._address(p)) for p in replicas[1:]]
        answers = await asyncio.gather(*(self.rpc.get_record(a, table, key) for _, a in others))
        ready = True
        for (_, address), answer in zip(others, answers, strict=True):
            theirs = _token_or_none(schema, answer)
            if theirs == version:
                continue
            ready = False
            if theirs is None or schema.stale(answer, record):
                await self.rpc.put_record(address, table, key, record)
                self.counters["pushed"] += 1
        if not ready:
            return 0
        for _, address in others:
            await self.rpc.retract_record(address, table, key, version)

        def drop(cur: Any | None) -> Any | None:
            return None if _token_or_none(schema, cur) == version else cur

        await self.store.table(table).update(key, drop)
        self.counters["purged"] += 1
        return 1

    def _address(self, peer: str) -> str:
        address = self.view.address(peer)
        if address is None:
            raise PeerUnreachable(f"no address known for peer {peer}")
        return address

    def status(self) -> dict[str, Any]:
        return {
            "grace_s": self.grace_s,
            "purged": self.counters["purged"],
            "pushed": self.counters["pushed"],
            "last_round": self.last_round,
        }


def _token_or_none(schema: TableSchema[Any], record: Any) -> str | None:
    if record is None:
        return None
    try:
        return schema.token_of(record)
    except ValueError:
        return None
