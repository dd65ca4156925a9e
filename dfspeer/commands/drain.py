"""``dfspeer drain``: move a peer's data to the other peers, then make it leave and stop."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any

from dfspeer.client import Client, PeerUnreachable
from dfspeer.commands.common import (
    add_peer_options,
    ca_file_arg,
    credentials_arg,
    human_bytes,
    peer_url,
)


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``drain``."""
    d = sub.add_parser(
        "drain",
        help="move a peer's data to its new owners, then make it leave the cluster",
        description="Marks the peer as draining (gossip weight 0: out of every preference "
        "list), waits while it hands each of its partitions to the new owners (a copy is "
        "dropped only once all of them hold it), then the peer leaves and its agent exits.",
    )
    d.add_argument("--no-wait", action="store_true", help="start the drain and return")
    d.add_argument("--poll", type=float, default=1.0, metavar="S", help="progress interval")
    d.add_argument("--json", action="store_true", help="print progress documents as JSON")
    add_peer_options(d)
    d.set_defaults(func=cmd_drain)


def progress_line(doc: dict[str, Any]) -> str:
    """One line of drain progress."""
    state = doc.get("state", "?")
    line = (
        f"{state}: {doc.get('partitions_remaining', '?')} partition(s), "
        f"~{human_bytes(int(doc.get('bytes_remaining') or 0))} to move, "
        f"{doc.get('rounds', 0)} round(s)"
    )
    if doc.get("error"):
        line += f" — {doc['error']}"
    return line


def cmd_drain(args: argparse.Namespace) -> int:
    """Start the drain; unless ``--no-wait``, print progress until done (exit 0) or
    failed (exit 1). A peer that stops answering after draining has left: exit 0."""
    return asyncio.run(_drain(args))


def _show(args: argparse.Namespace, doc: dict[str, Any]) -> None:
    print(json.dumps(doc, sort_keys=True) if args.json else progress_line(doc), flush=True)


async def _drain(args: argparse.Namespace) -> int:
    async with Client(
        peer_url(args),
        timeout_s=args.timeout,
        credentials=credentials_arg(args),
        ca_file=ca_file_arg(args),
    ) as client:
        doc = await client.drain()
        _show(args, doc)
        if args.no_wait:
            return 0
        last = ""
        while doc.get("state") == "draining":
            await asyncio.sleep(args.poll)
            try:
                doc = await client.drain_progress()
            except PeerUnreachable:
                print("the peer stopped answering: it has left the cluster", file=sys.stderr)
                return 0
            line = progress_line(doc)
            if line != last or args.json:
                _show(args, doc)
                last = line
        if doc.get("state") == "done":
            took = (doc.get("finished") or time.time()) - (doc.get("started") or time.time())
            print(f"drained in {took:.1f} s; the peer left the cluster", file=sys.stderr)
            return 0
        return 1
