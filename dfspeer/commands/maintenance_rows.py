"""How ``dfspeer status`` shows the hinted-handoff, read-repair, scrub and tombstone fields
of the ``"repair"`` status object (:meth:`dfspeer.cluster.maintenance.Maintenance.status`)."""

from __future__ import annotations

import time
from typing import Any

from dfspeer.commands.common import human_bytes


def _when(ts: Any) -> str:
    if not isinstance(ts, int | float):
        return "never"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts))


def maintenance_value(name: str, value: Any) -> str | None:
    """One-line text of the maintenance field ``name``, or None if it is not one."""
    if not isinstance(value, dict):
        return None
    if name == "scrub":
        state = "running" if value.get("running") else "idle"
        return (
            f"{state}, pass {human_bytes(int(value.get('pass_bytes') or 0))} in "
            f"{value.get('pass_blocks', 0)} block(s), {value.get('passes', 0)} pass(es) done "
            f"(last ended {_when(value.get('last_pass_end'))}), "
            f"{human_bytes(int(value.get('bytes_total') or 0))} checked, "
            f"{value.get('corrupt_found', 0)} corrupt, {value.get('repaired', 0)} repaired, "
            f"rate {human_bytes(int(value.get('rate_bytes_per_s') or 0))}/s"
        )
    if name == "read_repairs":
        return f"{value.get('records', 0)} record(s), {value.get('blocks', 0)} block(s)"
    if name == "tombstones":
        grace_d = float(value.get("grace_s") or 0) / 86400
        return f"{value.get('purged', 0)} purged (grace {grace_d:g} d)"
    return None
