"""Cluster commands: ``status`` (this peer), ``members`` (the gossip view) and ``repair``
(operator repairs of this peer)."""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

from dfspeer.client import Client
from dfspeer.commands.common import (
    add_peer_options,
    ca_file_arg,
    credentials_arg,
    format_fields,
    format_table,
    human_bytes,
    peer_url,
)
from dfspeer.commands.dedup_rows import dedup_rows
from dfspeer.commands.maintenance_rows import maintenance_value


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``status``, ``members`` and ``repair``."""
    s = sub.add_parser("status", help="show a peer's status")
    s.add_argument("--json", action="store_true", help="print the raw JSON")
    add_peer_options(s)
    s.set_defaults(func=cmd_status)
    m = sub.add_parser("members", help="show the cluster members as a peer sees them")
    m.add_argument("--json", action="store_true", help="print the raw JSON")
    add_peer_options(m)
    m.set_defaults(func=cmd_members)
    members_sub = m.add_subparsers(dest="members_command", metavar="COMMAND")
    rm = members_sub.add_parser(
        "remove",
        help="forget a dead member for good (its partitions are re-replicated now)",
        description="Remove a DEAD member from the cluster for good: every peer drops it from "
        "its ring at once (instead of after dead_member_evict_s) and repair brings its "
        "partitions back to N replicas on the others. Refused (member_alive) for a member "
        "that is alive or suspect; stop it first.",
    )
    rm.add_argument("id", metavar="ID", help="the dead member's id (see `dfspeer members`)")
    rm.add_argument("--json", action="store_true", help="print the raw JSON")
    add_peer_options(rm)
    rm.set_defaults(func=cmd_members_remove)
    for action in rm._actions:  # options given before `remove` must survive: no defaults
        if action.dest in ("peer", "credentials", "timeout", "json"):
            action.default = argparse.SUPPRESS
    r = sub.add_parser("repair", help="run an operator repair on a peer")
    repairs = r.add_subparsers(dest="repair_command", metavar="COMMAND", required=True)
    br = repairs.add_parser(
        "block-refs",
        help="rebuild the peer's block reference counts from its block_refs table",
        description="Recount every block reference this peer holds and fix the reference "
        "counts beside its blocks (garbage collection deletes only unreferenced blocks).",
    )
    br.add_argument("--json", action="store_true", help="print the raw JSON")
    add_peer_options(br)
    br.set_defaults(func=cmd_repair_block_refs)


def _fetch(args: argparse.Namespace, what: str) -> dict[str, Any]:
    async def run() -> dict[str, Any]:
        async with Client(
            peer_url(args),
            timeout_s=args.timeout,
            credentials=credentials_arg(args),
            ca_file=ca_file_arg(args),
        ) as c:
            result: dict[str, Any] = await getattr(c, what)()
            return result

    return asyncio.run(run())


def cmd_status(args: argparse.Namespace) -> int:
    """``GET /v1/cluster/status`` as aligned fields."""
    doc = _fetch(args, "status")
    if args.json:
        print(json.dumps(doc, indent=2, sort_keys=True))
        return 0
    print(format_fields(status_rows(doc)))
    return 0


def status_rows(doc: dict[str, Any]) -> list[tuple[str, Any]]:
    """Rows for ``dfspeer status``; unknown extra fields are shown as they are."""
    size = doc.get("map_size_bytes")
    rows: list[tuple[str, Any]] = []
    for name, value in doc.items():
        if name == "map_size_bytes":
            continue
        if name == "map_used_bytes" and isinstance(value, int) and isinstance(size, int) and size:
            value = f"{human_bytes(value)} of {human_bytes(size)} ({100 * value / size:.1f}%)"
        elif name == "block_bytes" and isinstance(value, int):
            value = f"{value} ({human_bytes(value)})"
        elif name == "members" and isinstance(value, dict):
            value = ", ".join(f"{n} {state}" for state, n in sorted(value.items())) or "-"
        elif name == "repair" and isinstance(value, dict):
            rows += repair_rows(value)
            continue
        elif name == "gc" and isinstance(value, dict):
            rows += gc_rows(value)
            continue
        elif name == "dedup" and isinstance(value, dict):
            rows += dedup_rows(value)
            continue
        elif isinstance(value, (dict, list)):
            value = json.dumps(value, sort_keys=True)
        rows.append((name.replace("_", " "), value))
    return rows


def repair_rows(repair: dict[str, Any]) -> list[tuple[str, Any]]:
    """Rows of the ``"repair"`` status object (anti-entropy, handoff, drain, and any
    fields other subsystems add), each prefixed ``repair``."""
    rows: list[tuple[str, Any]] = []
    for name, value in repair.items():
        if name in ("last_full_sync",) and isinstance(value, (int, float)):
            ago = max(0.0, time.time() - value)
            value = f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(value))} ({ago:.0f} s ago)"
        elif name.endswith("bytes_to_move") or name == "bytes_repaired":
            value = f"{value} ({human_bytes(int(value or 0))})"
        elif name == "drain" and isinstance(value, dict):
            if value.get("state") == "idle":
                continue
            value = f"{value.get('state')}: {value.get('partitions_remaining')} partition(s) left"
        elif name == "last_round" and isinstance(value, dict):
            value = (
                f"{value.get('pairs', 0)} pair(s), {value.get('failed_pairs', 0)} failed, "
                f"{value.get('pushed', 0)} pushed, {value.get('pulled', 0)} pulled, "
                f"{value.get('moved', 0)} partition(s) handed off in "
                f"{value.get('duration_s', 0)} s"
            )
        elif (text := maintenance_value(name, value)) is not None:
            value = text
        elif value is None:
            value = "-"
        elif isinstance(value, (dict, list)):
            value = json.dumps(value, sort_keys=True)
        rows.append(("repair " + name.replace("_", " "), value))
    return rows


def gc_rows(gc: dict[str, Any]) -> list[tuple[str, Any]]:
    """Rows of the ``"gc"`` status object (block garbage collection, reference release,
    upload expiry), each prefixed ``gc``."""
    rows: list[tuple[str, Any]] = []
    for name, value in gc.items():
        if name == "grace_s" and isinstance(value, (int, float)):
            value = f"{value:g} s ({value / 3600:.1f} h)"
        elif name == "last_pass":
            if isinstance(value, (int, float)):
                ago = max(0.0, time.time() - value)
                when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(value))
                value = f"{when} ({ago:.0f} s ago)"
            else:
                value = "never"
        elif name.startswith("bytes_") and isinstance(value, int):
            value = f"{value} ({human_bytes(value)})"
        elif value is None:
            value = "-"
        elif isinstance(value, (dict, list)):
            value = json.dumps(value, sort_keys=True)
        rows.append(("gc " + name.replace("_", " "), value))
    return rows


def cmd_repair_block_refs(args: argparse.Namespace) -> int:
    """``POST /v1/cluster/repair/block-refs``: what the recount found and changed."""
    doc = _fetch(args, "recount_block_refs")
    if args.json:
        print(json.dumps(doc, indent=2, sort_keys=True))
        return 0
    print(
        f"{doc.get('references', 0)} reference(s) to {doc.get('blocks', 0)} block(s); "
        f"{doc.get('changed', 0)} count(s) changed"
    )
    return 0


def cmd_members(args: argparse.Namespace) -> int:
    """``GET /v1/cluster/members`` as a table; the answering peer is marked ``*``."""
    doc = _fetch(args, "members")
    if args.json:
        print(json.dumps(doc, indent=2, sort_keys=True))
        return 0
    print(members_table(doc))
    return 0


def cmd_members_remove(args: argparse.Namespace) -> int:
    """``POST /v1/cluster/members/{id}/remove``: the removed member, now ``left``."""

    async def run() -> dict[str, Any]:
        async with Client(
            peer_url(args),
            timeout_s=getattr(args, "timeout", 300.0),
            credentials=credentials_arg(args),
            ca_file=ca_file_arg(args),
        ) as c:
            return await c.remove_member(args.id)

    doc = asyncio.run(run())
    if getattr(args, "json", False):
        print(json.dumps(doc, indent=2, sort_keys=True))
        return 0
    print(
        f"removed {doc.get('id', args.id)} (now {doc.get('state', 'left')}); its partitions "
        "are being re-replicated on the other peers"
    )
    return 0


def members_table(doc: dict[str, Any]) -> str:
    """Table of ``{"self", "members": [...]}`` sorted by id."""
    me = doc.get("self")
    rows = [
        (
            ("* " if m.get("id") == me else "  ") + str(m.get("id", "?")),
            m.get("address", "-"),
            m.get("gossip_address", "-"),
            m.get("state", "-"),
            m.get("incarnation", "-"),
            m.get("zone") or "-",
            m.get("weight", "-"),
        )
        for m in sorted(doc.get("members", []), key=lambda m: str(m.get("id")))
    ]
    headers = ("  ID", "ADDRESS", "GOSSIP", "STATE", "INC", "ZONE", "WEIGHT")
    return format_table(headers, rows)
