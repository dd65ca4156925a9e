"""Bucket commands: ``bucket create|ls|stat|rm|versioning``."""

from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from dfspeer.client import BucketJson, Client
from dfspeer.commands.common import (
    UsageError,
    add_peer_options,
    ca_file_arg,
    credentials_arg,
    format_fields,
    format_table,
    format_time,
    human_bytes,
    peer_url,
)

_T = TypeVar("_T")
CREATE_STATES = ("unversioned", "enabled", "suspended")
SET_STATES = ("enabled", "suspended")


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``bucket`` and its subcommands."""
    b = sub.add_parser(
        "bucket",
        help="create, list, inspect and delete buckets",
        description="Buckets. A first PUT into an unknown bucket creates it unversioned; "
        "`bucket create` can create it with versioning enabled (every write then keeps "
        "the previous versions, and a delete adds a delete marker).",
    )
    commands = b.add_subparsers(dest="bucket_command", metavar="COMMAND", required=True)
    _add_create(commands)
    _add_ls(commands)
    _add_stat(commands)
    _add_rm(commands)
    _add_grants(commands)
    _add_versioning(commands)


def _add_create(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``bucket create``."""
    c = commands.add_parser("create", help="create a bucket (existing: apply --versioning)")
    c.add_argument("name", metavar="NAME")
    c.add_argument("--versioning", choices=CREATE_STATES, help="versioning state")
    add_peer_options(c)
    c.set_defaults(func=cmd_create)


def _add_ls(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``bucket ls``."""
    ls = commands.add_parser("ls", help="list buckets")
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    add_peer_options(ls)
    ls.set_defaults(func=cmd_ls)


def _add_stat(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``bucket stat``."""
    st = commands.add_parser("stat", help="show a bucket, its object count and size")
    st.add_argument("name", metavar="NAME")
    st.add_argument("--json", action="store_true", help="print JSON")
    add_peer_options(st)
    st.set_defaults(func=cmd_stat)


def _add_rm(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``bucket rm``."""
    rm = commands.add_parser(
        "rm",
        help="delete an empty bucket",
        description="Delete NAME. Fails with bucket_not_empty while any key holds a version "
        "or a delete marker (remove them with `dfspeer rm --version V`).",
    )
    rm.add_argument("name", metavar="NAME")
    add_peer_options(rm)
    rm.set_defaults(func=cmd_rm)


def _add_grants(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``bucket allow`` and ``bucket deny``."""
    for verb, text in (
        ("allow", "grant an access key permissions on a bucket (owner or admin)"),
        ("deny", "take permissions on a bucket from an access key (owner or admin)"),
    ):
        g = commands.add_parser(
            verb,
            help=text,
            description=f"{text[0].upper()}{text[1:]}. Flags not given stay as they are; "
            "`deny` without a flag takes every permission. Authenticate with "
            "--credentials or $DFSPEER_KEY / $DFSPEER_ADMIN_TOKEN (--key names the grantee).",
        )
        g.add_argument("name", metavar="BUCKET")
        g.add_argument("--key", dest="grantee", metavar="ID", required=True, help="key id")
        for flag in ("read", "write", "owner"):
            g.add_argument(f"--{flag}", action="store_true", help=f"the {flag} permission")
        add_peer_options(g, key_flag=False)
        g.set_defaults(func=cmd_allow if verb == "allow" else cmd_deny)


def _add_versioning(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``bucket versioning``."""
    v = commands.add_parser("versioning", help="enable or suspend versioning")
    v.add_argument("name", metavar="NAME")
    v.add_argument("status", choices=SET_STATES)
    add_peer_options(v)
    v.set_defaults(func=cmd_versioning)


def _run(args: argparse.Namespace, call: Callable[[Client], Awaitable[_T]]) -> _T:
    """Run ``call`` with a client of the chosen peer."""

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
    """Create a bucket; prints whether it was created or already existed."""
    bucket, created = _run(args, lambda c: c.create_bucket(args.name, versioning=args.versioning))
    state = "created bucket" if created else "bucket exists:"
    print(f"{state} {bucket['name']} (versioning {bucket['versioning']})")
    return 0


def bucket_table(buckets: list[BucketJson]) -> str:
    """Table of buckets: NAME, VERSIONING, CREATED (UTC)."""
    rows = [(b["name"], b["versioning"], format_time(b["created"])) for b in buckets]
    return format_table(("NAME", "VERSIONING", "CREATED (UTC)"), rows)


def cmd_ls(args: argparse.Namespace) -> int:
    """List every bucket."""
    buckets = _run(args, lambda c: c.list_buckets())
    if args.json:
        for b in buckets:
            print(json.dumps(b, sort_keys=True))
    elif buckets:
        print(bucket_table(buckets))
    return 0


def cmd_stat(args: argparse.Namespace) -> int:
    """Show a bucket with its live object count and logical size."""
    info = _run(args, lambda c: c.get_bucket(args.name))
    if args.json:
        print(json.dumps(info, sort_keys=True))
        return 0
    rows = [
        ("name", info["name"]),
        ("versioning", info["versioning"]),
        ("created", format_time(info["created"]) + " UTC"),
        ("objects", info["objects"]),
        ("bytes", f"{info['bytes']} ({human_bytes(info['bytes'])})"),
    ]
    print(format_fields(rows))
    return 0


def cmd_rm(args: argparse.Namespace) -> int:
    """Delete an empty bucket."""
    _run(args, lambda c: c.delete_bucket(args.name))
    return 0


def cmd_versioning(args: argparse.Namespace) -> int:
    """Set a bucket's versioning state."""
    bucket = _run(args, lambda c: c.set_bucket_versioning(args.name, args.status))
    print(f"{bucket['name']}: versioning {bucket['versioning']}")
    return 0


def _flags(args: argparse.Namespace, value: bool) -> dict[str, bool]:
    chosen = [f for f in ("read", "write", "owner") if getattr(args, f)]
    if not chosen and not value:
        chosen = ["read", "write", "owner"]
    if not chosen:
        raise UsageError("name at least one of --read, --write, --owner")
    return dict.fromkeys(chosen, value)


def _print_permissions(doc: dict[str, Any]) -> None:
    rows = [
        (key_id, *("yes" if g.get(f) else "no" for f in ("read", "write", "owner")))
        for key_id, g in sorted(doc.get("permissions", {}).items())
    ]
    print(f"{doc.get('name')}: owner {doc.get('owner') or '(admin)'}")
    if rows:
        print(format_table(("KEY", "READ", "WRITE", "OWNER"), rows))


def cmd_allow(args: argparse.Namespace) -> int:
    """Grant ``--read`` / ``--write`` / ``--owner`` on a bucket to ``--key ID``."""
    flags = _flags(args, True)
    doc = _run(args, lambda c: c.set_bucket_permissions(args.name, args.grantee, **flags))
    _print_permissions(doc)
    return 0


def cmd_deny(args: argparse.Namespace) -> int:
    """Take the given permissions (default: all) on a bucket from ``--key ID``."""
    flags = _flags(args, False)
    doc = _run(args, lambda c: c.set_bucket_permissions(args.name, args.grantee, **flags))
    _print_permissions(doc)
    return 0
