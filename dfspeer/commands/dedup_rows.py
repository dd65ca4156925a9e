"""How ``dfspeer status`` shows the ``"dedup"`` status object
(:mod:`dfspeer.objects.dedup_stats`): one row each, prefixed ``dedup``, byte counts also
in binary units."""

from __future__ import annotations

import json
from typing import Any

from dfspeer.commands.common import human_bytes


def dedup_rows(dedup: dict[str, Any]) -> list[tuple[str, Any]]:
    """Rows of the ``"dedup"`` object: stored savings (logical vs referenced block bytes,
    the ratio) and savings on the wire (block bytes not sent vs sent by uploads this peer
    coordinated)."""
    rows: list[tuple[str, Any]] = []
    for name, value in dedup.items():
        if "bytes" in name and isinstance(value, int):
            value = f"{value} ({human_bytes(value)})"
        elif name == "ratio" and isinstance(value, (int, float)):
            value = f"{value:.2f}x"
        elif isinstance(value, (dict, list)):
            value = json.dumps(value, sort_keys=True)
        rows.append(("dedup " + name.removeprefix("dedup_").replace("_", " "), value))
    skipped, sent = dedup.get("dedup_bytes_skipped"), dedup.get("block_bytes_sent")
    if isinstance(skipped, int) and isinstance(sent, int) and skipped + sent:
        rows.append(("dedup not sent", f"{100 * skipped / (skipped + sent):.1f}% of block bytes"))
    return rows
