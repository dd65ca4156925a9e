"""The hints a stand-in keeps for other peers (hinted handoff, :mod:`.handoff`): the
``hints`` metadata table, the keys of its block and record hints (layout in
:mod:`.handoff`), and :class:`HintStore`, which takes a hint unless ``max_hints`` are
already kept (:class:`HintsFull`, 507 ``hints_full``).
"""

from __future__ import annotations

import hashlib
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any

from dfspeer.blockstore import BlockStore
from dfspeer.cluster.table import TableSchema
from dfspeer.errors import DfsError

HINTS_TABLE = "hints"


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
