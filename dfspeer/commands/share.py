"""``dfspeer share BUCKET/KEY --expires 1h [--version V]``: print a presigned URL that lets
anyone who holds it download that object (exactly version V with ``--version``), without
credentials, until it expires (at most 7 days).

The link is signed by the peer as the caller (``--key`` / ``$DFSPEER_KEY``, or the admin
token of ``$DFSPEER_ADMIN_TOKEN``); it stops working when it expires, or when that key is
deleted, disabled or loses read access to the bucket. See :mod:`dfspeer.access.share`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import sys

from dfspeer.access.share import MAX_EXPIRY_S, MAX_VERSION_CHARS, valid_version
from dfspeer.client import Client
from dfspeer.commands.common import (
    UsageError,
    add_peer_options,
    ca_file_arg,
    credentials_arg,
    format_time,
    parse_target,
    peer_url,
)

DEFAULT_EXPIRES = "1h"
UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_DURATION_RE = re.compile(r"([0-9]{1,9})([smhd]?)")


def parse_duration(text: str) -> int:
    """``30s``, ``30m``, ``1h``, ``7d`` (or bare seconds) -> seconds, 1..7 days. Raises
    :class:`UsageError` for another shape or a duration out of range."""
    match = _DURATION_RE.fullmatch(text.strip().lower())
    if match is None:
        raise UsageError(f"--expires: expected a duration such as 30m, 1h or 7d, got {text!r}")
    seconds = int(match.group(1)) * UNIT_S[match.group(2) or "s"]
    if seconds < 1:
        raise UsageError("--expires: must be at least 1s")
    if seconds > MAX_EXPIRY_S:
        raise UsageError(
            f"--expires: at most 7d ({MAX_EXPIRY_S} s), like S3 presigned URLs; got {text!r}"
        )
    return seconds


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``share``."""
    p = sub.add_parser(
        "share",
        help="print a presigned download URL for an object",
        description="Print a URL that lets anyone who holds it GET (or HEAD) BUCKET/KEY "
        "without credentials until it expires. The peer signs it as your access key (or "
        "the admin token); it stops working when it expires or when that key is deleted, "
        "disabled or may no longer read the bucket. With --version V the link serves "
        "exactly version V (see `dfspeer versions`), never a newer one.",
    )
    p.add_argument("target", metavar="BUCKET/KEY")
    p.add_argument(
        "--expires",
        metavar="DURATION",
        default=DEFAULT_EXPIRES,
        help=f"how long the link works: 30m, 1h, 7d... (default {DEFAULT_EXPIRES}, at most 7d)",
    )
    p.add_argument(
        "--version",
        metavar="V",
        help="pin version V: the link serves exactly that version (signed into the URL)",
    )
    p.add_argument("--json", action="store_true", help='print {"url", "expires"} as JSON')
    add_peer_options(p)
    p.set_defaults(func=cmd_share)


def cmd_share(args: argparse.Namespace) -> int:
    """Print the URL on stdout and its expiry on stderr (with ``--json``, one object
    ``{"url", "expires"}``, ``expires`` in unix seconds)."""
    bucket, key = parse_target(args.target)
    expires_s = parse_duration(args.expires)
    if args.version is not None and not valid_version(args.version):
        raise UsageError(f"--version: a version id is 1..{MAX_VERSION_CHARS} printable characters")

    async def run() -> str:
        async with Client(
            peer_url(args),
            timeout_s=args.timeout,
            credentials=credentials_arg(args),
            ca_file=ca_file_arg(args),
        ) as c:
            return await c.share_url(bucket, key, expires_s, version=args.version)

    url = asyncio.run(run())
    expires = _expires_of(url)
    if args.json:
        print(json.dumps({"url": url, "expires": expires}, sort_keys=True))
        return 0
    print(url)
    print(f"valid until {format_time(expires)} UTC", file=sys.stderr)
    return 0


def _expires_of(url: str) -> int | None:
    """The ``expires=`` of a share URL (unix seconds), None if it has none."""
    match = re.search(r"[?&]expires=([0-9]+)", url)
    return int(match.group(1)) if match else None
