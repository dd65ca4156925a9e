"""Access key commands: ``key create|ls|rm|disable`` (admin: run with
``$DFSPEER_ADMIN_TOKEN``)."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import TypeVar

from dfspeer.client import Client
from dfspeer.commands.common import (
    add_peer_options,
    ca_file_arg,
    credentials_arg,
    format_table,
    format_time,
    peer_url,
)

_T = TypeVar("_T")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``key`` and its subcommands."""
    k = sub.add_parser(
        "key",
        help="create, list, disable and delete access keys (admin)",
        description="Access keys of the native API. A key authenticates as "
        "`Authorization: Bearer ID.SECRET` ($DFSPEER_KEY for the CLI); it may use the "
        "buckets it creates and those it is granted (`dfspeer bucket allow`). These "
        "commands need the admin token ($DFSPEER_ADMIN_TOKEN).",
    )
    commands = k.add_subparsers(dest="key_command", metavar="COMMAND", required=True)

    c = commands.add_parser("create", help="create a key; prints its secret once")
    c.add_argument("name", metavar="NAME")
    c.add_argument("--allow-create-bucket", action="store_true", help="the key may create buckets")
    c.add_argument("--json", action="store_true", help="print the answer as JSON")
    add_peer_options(c)
    c.set_defaults(func=cmd_create)

    ls = commands.add_parser("ls", help="list keys (never their secrets)")
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    add_peer_options(ls)
    ls.set_defaults(func=cmd_ls)

    rm = commands.add_parser("rm", help="delete a key")
    rm.add_argument("id", metavar="ID")
    add_peer_options(rm)
    rm.set_defaults(func=cmd_rm)

    d = commands.add_parser("disable", help="disable a key (refused by every peer)")
    d.add_argument("id", metavar="ID")
    add_peer_options(d)
    d.set_defaults(func=cmd_disable)


def _run(args: argparse.Namespace, call: Callable[[Client], Awaitable[_T]]) -> _T:
    async def run() -> _T:
        async with Client(
            peer_url(args),
            timeout_s=args.timeout,
            credentials=credentials_arg(args),
            ca_file=ca_file_arg(args),
        ) as c:
            return await call(c)

    return asyncio.run(run())


def cmd_create(args: argparse.Namespace) -> int:
    """Create a key; print its id and secret (shown only now) and the export line."""
    doc = _run(
        args, lambda c: c.create_key(args.name, allow_create_bucket=args.allow_create_bucket)
    )
    if args.json:
        print(json.dumps(doc, sort_keys=True))
        return 0
    print(f"id:     {doc['id']}")
    print(f"name:   {doc['name']}")
    print(f"secret: {doc['secret']}   (shown only now)")
    print(f"export DFSPEER_KEY={doc['id']}.{doc['secret']}")
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    """List keys: ID, NAME, CREATE BUCKETS, DISABLED, CREATED."""
    keys = _run(args, lambda c: c.list_keys())
    if args.json:
        for key in keys:
            print(json.dumps(key, sort_keys=True))
        return 0
    rows = [
        (
            k.get("id", ""),
            k.get("name", ""),
            "yes" if k.get("allow_create_bucket") else "no",
            "yes" if k.get("disabled") else "no",
            format_time(k.get("created")),
        )
        for k in keys
    ]
    if rows:
        print(format_table(("ID", "NAME", "CREATE BUCKETS", "DISABLED", "CREATED (UTC)"), rows))
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    """Delete a key."""
    _run(args, lambda c: c.delete_key(args.id))
    return 0


def cmd_disable(args: argparse.Namespace) -> int:
    """Disable a key."""
    _run(args, lambda c: c.disable_key(args.id))
    print(f"disabled {args.id}")
    return 0
