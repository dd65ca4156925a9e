"""Hinted handoff: sloppy quorum writes and the delivery of hints (Dynamo, DeCandia et al.,
SOSP 2007, section 4.6).

Write side (:meth:`HintedHandoff.wrap`): the replicator writes to the N replicas of a
partition. When a replica is known down (not ALIVE in gossip) or its write fails, the same
data goes instead to a *stand-in*: the next ALIVE peer of the partition's extended
preference list that is not itself one of the N replicas (each failed replica of one write
gets its own stand-in). The stand-in stores the data and a persisted *hint* naming the
replica it is meant for, and its acknowledgement **counts toward W** — as in Dynamo, so a
write stays available while up to ``N - W`` replicas plus any number of further replicas
are down, as long as enough stand-ins are up. With N=3, W=2 and one replica down, a write
therefore still lands 3 copies (2 real + 1 hinted). The price: a quorum *read* (which asks
the real replicas only) may miss a write whose acks were mostly hinted until the hints are
delivered; anti-entropy is the backstop either way.

Hints live in the stand-in's ``hints`` metadata table (:class:`HintStore`), one record per
(target peer, block) or (target peer, table record):

=========  ==========================================  =====================================
kind       key                                          value (CBOR map)
=========  ==========================================  =====================================
block      ``b"b"`` + digest (32 B) + target id         ``{"kind": "block", "target",
                                                         "digest", "created"}`` — the bytes
                                                         stay in the stand-in's block store
record     ``b"r"`` + BLAKE2b-128(table NUL key)        ``{"kind": "record", "target",
           + target id                                  "table", "key", "record",
                                                         "created"}`` — the record itself
                                                         (LWW-merged if hinted twice)
=========  ==========================================  =====================================

At most ``max_hints`` hints are kept; past that a stand-in refuses (507 ``hints_full``) and
the coordinator tries the next stand-in, then counts the replica as failed (anti-entropy).

Delivery (:meth:`HintedHandoff.run`): every ``hint_delivery_interval_s`` and at once when
gossip reports a member ALIVE, each hint whose target is ALIVE is written to it (a record
is merged there, LWW). Only after the target acknowledged is the hint dropped, and then the
stand-in's copy of a block too if no other hint needs it and the stand-in is not itself a
replica of the block's partition (while the target still is; otherwise the copy is left to
ring-change repair).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from dfspeer.blockstore import BlockNotFound, BlockStore, CorruptBlock
from dfspeer.cluster.rpc import PeerRpcClient, PeerUnreachable
from dfspeer.cluster.table import TableSchema
from dfspeer.cluster.view import ClusterView
from dfspeer.config import PeerConfig
from dfspeer.errors import DfsError

log = logging.getLogger(__name__)

HINTS_TABLE = "hints"
PAGE = 256
"""Hints read per page by a delivery round."""
DELIVERY_CONCURRENCY = 8
"""Hint deliveries in flight at once."""

PeerOp = Callable[[str], Awaitable[None]]
Fetch = Callable[[bytes], Awaitable[bytes]]


class HintsFull(DfsError):
    """This peer already keeps ``max_hints`` hints and takes no more."""

    code, status = "hints_full", 507


def block_hint_prefix(digest: bytes) -> bytes:
    """Hints-table key prefix of every hint for block ``digest`` (any target)."""
    return b"b" + digest


def block_hint_key(digest: bytes, target: str) -> bytes:
    """Hints-table key of the hint "block ``digest`` is meant for ``target``"."""
    return block_hint_prefix(digest) + target.encode()


def record_hint_key(table: str, key: bytes, target: str) -> bytes:
    """Hints-table key of the hint "record ``table``/``key`` is meant for ``target``"
    (hashed: a table key may be up to 511 bytes, an LMDB key too)."""
    h = hashlib.blake2b(table.encode() + b"\0" + key, digest_size=16).digest()
    return b"r" + h + target.encode()


class HintStore:
    """The ``hints`` table of one peer, and the data a stand-in keeps for other peers.

    ``max_hints``: capacity (0 refuses every hint); ``tables``: the replicated tables a
    record hint may name (name -> schema). ``clock``: unix seconds. Counters:
    ``stored`` (hints taken), ``refused`` (over capacity).
    """

    def __init__(
        self,
        store: BlockStore,
        *,
        max_hints: int,
        tables: Mapping[str, TableSchema[Any]],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.tables = tables
        self.table = store.table(HINTS_TABLE)
        self.max_hints = max_hints
        self.clock = clock
        self.counters: Counter[str] = Counter()

    def schema(self, table: str) -> TableSchema[Any]:
        """The schema of replicated table ``table``. Raises ValueError for another name."""
        schema = self.tables.get(table)
        if schema is None:
            raise ValueError(f"{table!r} is not a replicated table of this peer")
        return schema

    def pending(self) -> int:
        """Hints waiting for delivery (O(1))."""
        return self.table.count()

    def _check_room(self, hkey: bytes) -> None:
        if self.table.count() >= self.max_hints and self.table.get(hkey) is None:
            self.counters["refused"] += 1
            raise HintsFull(f"this peer already keeps {self.max_hints} hints (max_hints)")

    async def add_block(self, target: str, digest: bytes, data: bytes) -> None:
        """Keep block ``data`` (verified against ``digest``: DigestMismatch) for ``target``.
        Raises HintsFull, StoreFull; durable when it returns."""
        hkey = block_hint_key(digest, target)
        self._check_room(hkey)
        await self.store.put_verified(digest, data)
        hint = {"kind": "block", "target": target, "digest": digest, "created": self.clock()}
        await self.table.put(hkey, hint)
        self.counters["stored"] += 1

    async def add_record(self, target: str, table: str, key: bytes, record: Any) -> None:
        """Keep ``record`` of ``table``/``key`` for ``target`` (LWW-merged with a hint
        already kept for it). Raises ValueError (not a record of ``table``), HintsFull,
        StoreFull."""
        schema = self.schema(table)
        schema.decode(record)
        hkey = record_hint_key(table, key, target)
        self._check_room(hkey)
        now = self.clock()

        def merge(cur: Any | None) -> Any:
            old = cur.get("record") if isinstance(cur, dict) else None
            best = schema.merge_records(old, record)
            return {
                "kind": "record",
                "target": target,
                "table": table,
                "key": key,
                "record": best,
                "created": now,
            }

        await self.table.update(hkey, merge)
        self.counters["stored"] += 1

    def has_block_hints(self, digest: bytes) -> bool:
        """True if some hint still needs the local copy of block ``digest``."""
        return self.table.has_prefix(block_hint_prefix(digest))


class _StandIns:
    """Stand-in candidates of one write, handed out once each (lazily computed)."""

    def __init__(self, compute: Callable[[], list[str]]) -> None:
        self._compute = compute
        self._free: deque[str] | None = None

    def take(self) -> str | None:
        if self._free is None:
            self._free = deque(self._compute())
        return self._free.popleft() if self._free else None


class HintedHandoff:
    """Sloppy-quorum writes (:meth:`wrap_block`, :meth:`wrap_record`) and hint delivery
    (:meth:`run`, :meth:`deliver_once`) for one peer.

    ``fetch(digest)``: a verified copy of a block from anywhere in the cluster (the
    replicator's ``read_block``), used when a hinted block's local copy went missing.
    Counters: ``hinted_writes`` (writes acked by a stand-in), ``delivered``, ``dropped``
    (hints whose data was gone and the target already had it), ``delivery_failures``.
    """

    def __init__(
        self,
        config: PeerConfig,
        view: ClusterView,
        hints: HintStore,
        rpc: PeerRpcClient,
        *,
        fetch: Fetch | None = None,
    ) -> None:
        self.config = config
        self.view = view
        self.hints = hints
        self.store = hints.store
        self.rpc = rpc
        self.fetch = fetch
        self.interval_s = config.hint_delivery_interval_s
        self.counters: Counter[str] = Counter()
        self._wake = asyncio.Event()

    # ------------------------------------------------------------------ write side
    def _reachable(self, peer: str) -> bool:
        return peer == self.view.self_id or self.view.is_alive(peer)

    def _candidates(self, partition: int, targets: Sequence[str]) -> list[str]:
        return [
            p
            for p in self.view.extended_preference(partition)
            if p not in targets and self._reachable(p) and not self.view.is_draining(p)
        ]

    def wrap(
        self,
        partition: int,
        targets: Sequence[str],
        primary: PeerOp,
        hinted: Callable[[str, str], Awaitable[None]],
    ) -> PeerOp:
        """The per-replica write op of one quorum write, made sloppy.

        ``primary(peer)`` writes to replica ``peer``; ``hinted(stand_in, target)`` writes
        to ``stand_in`` with a hint for ``target``. The returned op tries the replica
        (unless it is known down), then stand-ins in preference order; it raises the
        replica's error if no stand-in took the write either.
        """
        stand_ins = _StandIns(lambda: self._candidates(partition, targets))

        async def op(peer: str) -> None:
            if self._reachable(peer):
                try:
                    await primary(peer)
                    return
                except Exception as exc:  # down, timed out, full, ...: hand it off
                    first: BaseException = exc
            else:
                first = PeerUnreachable(f"peer {peer} is not alive")
            while (stand_in := stand_ins.take()) is not None:
                try:
                    await hinted(stand_in, peer)
                except Exception as exc:
                    log.debug("stand-in %s refused a hint for %s: %s", stand_in, peer, exc)
                    continue
                self.counters["hinted_writes"] += 1
                return
            raise first

        return op

    def wrap_block(
        self,
        partition: int,
        targets: Sequence[str],
        primary: PeerOp,
        digest: bytes,
        data: bytes,
        ref: tuple[str, bytes, Any] | None = None,
    ) -> PeerOp:
        """:meth:`wrap` for a block write. ``ref``: ``(table, key, record)`` of the block's
        reference, handed to the stand-in as a record hint of its own, so the target gets
        the reference with the block."""

        async def hinted(stand_in: str, target: str) -> None:
            if stand_in == self.view.self_id:
                await self.hints.add_block(target, digest, data)
                if ref is not None:
                    await self.hints.add_record(target, *ref)
            else:
                address = self._address(stand_in)
                await self.rpc.put_hinted_block(address, target, digest, data)
                if ref is not None:
                    await self.rpc.put_hinted_record(address, target, *ref)

        return self.wrap(partition, targets, primary, hinted)

    def wrap_record(
        self,
        partition: int,
        targets: Sequence[str],
        primary: PeerOp,
        table: str,
        key: bytes,
        record: Any,
    ) -> PeerOp:
        """:meth:`wrap` for a record write."""

        async def hinted(stand_in: str, target: str) -> None:
            if stand_in == self.view.self_id:
                await self.hints.add_record(target, table, key, record)
            else:
                address = self._address(stand_in)
                await self.rpc.put_hinted_record(address, target, table, key, record)

        return self.wrap(partition, targets, primary, hinted)

    def _address(self, peer: str) -> str:
        address = self.view.address(peer)
        if address is None:
            raise PeerUnreachable(f"no address known for peer {peer}")
        return address

    # ------------------------------------------------------------------ delivery
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

    def status(self) -> dict[str, Any]:
        """``{"pending", "stored", "delivered", "hinted_writes", "refused", ...}``."""
        return {
            "pending": self.hints.pending(),
            "stored": self.hints.counters["stored"],
            "refused": self.hints.counters["refused"],
            "hinted_writes": self.counters["hinted_writes"],
            "delivered": self.counters["delivered"],
            "dropped": self.counters["dropped"],
            "delivery_failures": self.counters["delivery_failures"],
        }
