"""Merging of cluster-wide table scans (listings of tables placed by key hash)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

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
