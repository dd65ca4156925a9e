"""Cluster-wide table scans (listings of tables placed by key hash) and their merging."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from dfspeer.cluster.quorum import cancel_all, wait_until

if TYPE_CHECKING:
    from dfspeer.cluster.replication import Replicator

Pick = Callable[[Iterable[Any | None]], Any | None]


@dataclass(frozen=True)
class ScanPage:
    """One merged page of a cluster-wide table scan.

    ``items``: (table key, merged record) in key order, tombstones included; every key
    ``<= cursor`` that any answering replica holds is here. ``more``: keys past ``cursor``
    may exist (scan again with ``start_after=cursor``).
    """

    items: list[tuple[bytes, Any]]
    more: bool
    cursor: bytes | None


def omit_fields(value: Any, fields: tuple[str, ...]) -> Any:
    """``value`` without the keys ``fields`` when it is a dict, and without them in the maps
    of its list values too (e.g. chunk lists and inline data of every version in listings)."""
    if not fields or not isinstance(value, dict):
        return value
    return {
        k: [omit_fields(x, fields) if isinstance(x, dict) else x for x in v]
        if isinstance(v, list)
        else v
        for k, v in value.items()
        if k not in fields
    }


def merge_scans(answers: Any, limit: int, pick: Pick) -> ScanPage:
    """k-way merge of per-replica scan answers (each sorted, each at most ``limit`` rows).

    A full answer (``limit`` rows) only speaks for keys up to its last key, so the merged
    page stops at the smallest such last key (the horizon) and says ``more``.
    """
    rows: dict[bytes, list[Any]] = {}
    horizon: bytes | None = None
    for answer in answers:
        for key, value in answer:
            rows.setdefault(key, []).append(value)
        if len(answer) >= limit and answer:
            last = answer[-1][0]
            horizon = last if horizon is None else min(horizon, last)
    keys = sorted(k for k in rows if horizon is None or k <= horizon)
    items = [(k, pick(rows[k])) for k in keys]
    return ScanPage(
        items=[(k, v) for k, v in items if v is not None], more=horizon is not None, cursor=horizon
    )


async def scan_cluster(
    r: Replicator,
    table: str,
    *,
    prefix: bytes,
    start_after: bytes | None,
    limit: int,
    omit: tuple[str, ...] = (),
) -> ScanPage:
    """Scan ``table`` on every ring member (``limit`` rows after ``start_after`` under
    ``prefix``, fields ``omit`` left out) and merge per key with the table's merge. Returns
    as soon as, for every partition, R of its replicas answered; raises
    InsufficientReplicas when that cannot happen."""
    schema = r.schema(table)
    view = r.view
    peers = view.ring_peers()

    async def scan(peer: str) -> list[tuple[bytes, Any]]:
        if peer == view.self_id:
            rows = r.store.table(table).scan(prefix=prefix, start_after=start_after, limit=limit)
            return [(k, omit_fields(v, omit)) for k, v in rows]
        return await r.rpc.scan_records(
            r._address(peer),
            table,
            prefix=prefix,
            start_after=start_after,
            limit=limit,
            omit=omit,
        )

    outcome = await wait_until(r._spawn(peers, scan), lambda got: covered(r, got))
    await cancel_all(outcome.pending)  # enough answers: don't wait for slow peers
    if not covered(r, outcome.results):
        raise r._insufficient("listing", r.read_quorum, outcome, peers)
    return merge_scans(outcome.results.values(), limit, schema.pick)


def covered(r: Replicator, answered: Mapping[str, Any]) -> bool:
    """True if, for every partition, at least R of its replicas are in ``answered``."""
    need = r.read_quorum
    view = r.view
    ring = view.ring
    if len(answered) < need or not ring.members:
        return False
    if len(ring.members) >= need and all(m.peer_id in answered for m in ring.members):
        return True  # every replica of every partition answered
    return all(
        sum(1 for p in view.replicas(partition) if p in answered) >= need
        for partition in range(ring.partition_count)
    )


async def scan_entries(
    r: Replicator,
    table: str,
    keep: Callable[[Any], bool],
    *,
    limit: int,
    omit: tuple[str, ...] = (),
) -> list[Any]:
    """The decoded entries of ``table`` that ``keep`` accepts, in key order, at most
    ``limit`` of them, paging through :func:`scan_cluster` (malformed records skipped).
    Raises InsufficientReplicas like :func:`scan_cluster`."""
    schema = r.schema(table)
    out: list[Any] = []
    cursor: bytes | None = None
    while len(out) < limit:
        page = await scan_cluster(r, table, prefix=b"", start_after=cursor, limit=1000, omit=omit)
        for _, record in page.items:
            try:
                entry = schema.decode(record)
            except ValueError:
                continue
            if keep(entry):
                out.append(entry)
        if not page.more:
            break
        cursor = page.cursor
    return out[:limit]
