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

The hints table is :mod:`.handoff_hints`; :class:`HintedHandoff` is assembled from
:mod:`.handoff_base` (the state its parts share) and :mod:`.handoff_delivery` (delivery);
this module keeps its construction, the write side and its status.
"""

from __future__ import annotations

import asyncio
import logging
from collections import Counter, deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from dfspeer.cluster.handoff_base import Fetch, PeerOp
from dfspeer.cluster.handoff_delivery import DELIVERY_CONCURRENCY, PAGE, HintDelivery
from dfspeer.cluster.handoff_hints import (
    HINTS_TABLE,
    HintsFull,
    HintStore,
    block_hint_key,
    block_hint_prefix,
    record_hint_key,
)
from dfspeer.cluster.rpc import PeerRpcClient, PeerUnreachable
from dfspeer.cluster.view import ClusterView
from dfspeer.config import PeerConfig

__all__ = [
    "DELIVERY_CONCURRENCY",
    "HINTS_TABLE",
    "PAGE",
    "Fetch",
    "HintStore",
    "HintedHandoff",
    "HintsFull",
    "PeerOp",
    "block_hint_key",
    "block_hint_prefix",
    "record_hint_key",
]

log = logging.getLogger(__name__)


class _StandIns:
    """Stand-in candidates of one write, handed out once each (lazily computed)."""

    def __init__(self, compute: Callable[[], list[str]]) -> None:
        self._compute = compute
        self._free: deque[str] | None = None

    def take(self) -> str | None:
        if self._free is None:
            self._free = deque(self._compute())
        return self._free.popleft() if self._free else None


class HintedHandoff(HintDelivery):
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
