"""Quorum range scan of one partition: every record under a key prefix that lives on the
replicas of one partition (e.g. all chunks of one upload session).

Each page asks the partition's N replicas at once and merges the answers of the first R of
them per key with the table's merge (a key held by any answering replica is returned), as a
quorum read does for one key; pages continue after the merged page's horizon
(:func:`dfspeer.cluster.scan.merge_scans`).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from dfspeer.cluster.quorum import cancel_all, wait_all, wait_quorum
from dfspeer.cluster.scan import merge_scans
from dfspeer.errors import InsufficientReplicas

if TYPE_CHECKING:
    from dfspeer.cluster.replication import Replicator

PAGE = 1000


async def scan_partition(
    replicator: Replicator, table: str, placed_by: bytes, prefix: bytes, *, every: bool = False
) -> list[tuple[bytes, Any]]:
    """Every ``(key, merged record)`` of ``table`` whose key starts with ``prefix``, read
    from R of the replicas of ``partition(placed_by)``, in key order; ``every``: from every
    replica that answers (each page waits for all of them, each call bounded by the RPC
    timeout), for a caller about to call something missing -- after a partition heals,
    the first R to answer may all lack what a third holds. Raises InsufficientReplicas
    when fewer than R replicas answer a page."""
    schema = replicator.schema(table)
    view = replicator.view
    targets = view.replicas(view.partition_of(placed_by))
    need = replicator.read_quorum
    if len(targets) < need:
        raise InsufficientReplicas(f"scan {table}: {len(targets)} replica(s) in the ring")
    out: list[tuple[bytes, Any]] = []
    cursor: bytes | None = None
    while True:

        async def page(peer: str, after: bytes | None = cursor) -> list[tuple[bytes, Any]]:
            if peer == view.self_id:
                return replicator.store.table(table).scan(
                    prefix=prefix, start_after=after, limit=PAGE
                )
            address = view.address(peer)
            if address is None:
                raise InsufficientReplicas(f"no address known for peer {peer}")
            return await replicator.rpc.scan_records(
                address, table, prefix=prefix, start_after=after, limit=PAGE
            )

        tasks = {p: asyncio.create_task(page(p)) for p in targets}
        outcome = await (wait_all(tasks) if every else wait_quorum(tasks, need))
        await cancel_all(outcome.pending)
        if not outcome.reached(need):
            raise InsufficientReplicas(
                f"scan {table}: {len(outcome.results)} of the {need} required replicas "
                f"answered ({outcome.describe_errors()})"
            )
        merged = merge_scans(outcome.results.values(), PAGE, schema.pick)
        out.extend(merged.items)
        if not merged.more or merged.cursor is None:
            return out
        cursor = merged.cursor
