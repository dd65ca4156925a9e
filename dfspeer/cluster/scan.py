"""Merging of cluster-wide table scans (listings of tables placed by key hash)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dfspeer.cluster.records import lww_pick


@dataclass(frozen=True)
class ScanPage:
    """One merged page of a cluster-wide table scan.

    ``items``: (table key, LWW-winning record) in key order, tombstones included; every key
    ``<= cursor`` that any answering replica holds is here. ``more``: keys past ``cursor``
    may exist (scan again with ``start_after=cursor``).
    """

    items: list[tuple[bytes, Any]]
    more: bool
    cursor: bytes | None


def omit_fields(value: Any, fields: tuple[str, ...]) -> Any:
    """``value`` without the keys ``fields`` when it is a dict (e.g. inline data in listings)."""
    if fields and isinstance(value, dict):
        return {k: v for k, v in value.items() if k not in fields}
    return value


def merge_scans(answers: Any, limit: int) -> ScanPage:
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
    items = [(k, lww_pick(rows[k])) for k in keys]
    return ScanPage(
        items=[(k, v) for k, v in items if v is not None], more=horizon is not None, cursor=horizon
    )
