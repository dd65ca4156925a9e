"""Unix time of an HLC version text (``"%016x-<peer>"``, see :mod:`dfspeer.objects.hlc`)."""

from __future__ import annotations

LOGICAL_BITS = 16


def version_unix_s(version: str) -> float | None:
    """Unix seconds of the physical part of ``version``; None when it is not HLC text."""
    head = version[:16]
    if len(head) != 16 or version[16:17] != "-":
        return None
    try:
        return (int(head, 16) >> LOGICAL_BITS) / 1000.0
    except ValueError:
        return None
