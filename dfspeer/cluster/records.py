"""Replicated-table records: the last-writer-wins (LWW) register every table shares.

A record of a replicated table is a CBOR map with a text field ``"version"`` whose
*lexicographic* order is the LWW order (see :mod:`dfspeer.objects.hlc`: a fixed-width HLC
timestamp followed by the writer's peer id). Replicas merge an incoming record with the
stored one by keeping the higher version; equal versions keep the stored record, so a
merge is commutative, associative and idempotent (a state-based CRDT register), and replays
or re-deliveries change nothing. A delete is a record with ``"deleted": True`` (a tombstone)
and its own version; it wins over older versions like any other write.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

MergeFn = Callable[[Any | None, Any], Any]
"""``merge(current, incoming) -> stored``: ``current`` is ``None`` when the key is absent.
Raises :class:`ValueError` when ``incoming`` is not a valid record of the table."""


def record_version(record: Any) -> str:
    """The LWW version of ``record``. Raises :class:`ValueError` if it has none."""
    if not isinstance(record, dict):
        raise ValueError("a table record must be a map")
    version = record.get("version")
    if not isinstance(version, str) or not version:
        raise ValueError("a table record needs a non-empty text 'version'")
    return version


def merge_by_version(current: Any | None, incoming: Any) -> Any:
    """LWW merge: the record with the higher ``version`` wins; a tie keeps ``current``.

    Validates ``incoming`` (ValueError). A malformed ``current`` loses to a valid
    ``incoming`` so a damaged stored record heals on the next write.
    """
    new_version = record_version(incoming)
    if current is None:
        return incoming
    try:
        old_version = record_version(current)
    except ValueError:
        return incoming
    return incoming if new_version > old_version else current


def lww_pick(records: Iterable[Any | None]) -> Any | None:
    """The winning record among replica answers (``None`` = replica has no record).

    Malformed answers are ignored. Returns ``None`` if no replica has a valid record.
    """
    best: Any | None = None
    best_version = ""
    for record in records:
        if record is None:
            continue
        try:
            version = record_version(record)
        except ValueError:
            continue
        if best is None or version > best_version:
            best, best_version = record, version
    return best


def is_stale(record: Any | None, winner: Any) -> bool:
    """True if a replica holding ``record`` should receive ``winner`` (read repair)."""
    if record is None:
        return True
    try:
        return record_version(record) < record_version(winner)
    except ValueError:
        return True
