"""Object commands: ``put``, ``get``, ``ls``, ``rm``, ``stat``, ``versions``."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from dfspeer.client import Client, VersionJson, sha256_file
from dfspeer.commands.common import (
    UsageError,
    add_peer_options,
    ca_file_arg,
    credentials_arg,
    format_fields,
    format_table,
    format_time,
    human_bytes,
    parse_range,
    parse_target,
    peer_url,
    progress_bar,
    progress_enabled,
)
from dfspeer.commands.uploads import add_resumable_options, put_resumable, stats_json


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the object commands."""
    _add_put(sub)
    _add_get(sub)
    _add_ls(sub)
    _add_rm(sub)
    _add_stat(sub)
    _add_versions(sub)


def _add_put(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``put``."""
    p = sub.add_parser(
        "put",
        help="upload a file",
        description="Upload FILE ('-' = stdin) as "
        "BUCKET/KEY; with BUCKET or BUCKET/PREFIX/ the file's name is appended.",
    )
    p.add_argument("file", metavar="FILE")
    p.add_argument("target", metavar="BUCKET/KEY")
    p.add_argument("--content-type", metavar="TYPE", help="stored Content-Type")
    p.add_argument(
        "--meta",
        metavar="NAME=VALUE",
        action="append",
        default=[],
        type=_meta_arg,
        help="user metadata (repeatable; sent as X-Meta-NAME, at most 2 KiB in all)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    add_resumable_options(p)
    _transfer_options(p)
    p.set_defaults(func=cmd_put)


def _add_get(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``get``."""
    g = sub.add_parser("get", help="download an object (to stdout unless -o)")
    g.add_argument("target", metavar="BUCKET/KEY")
    g.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        type=Path,
        help="write to FILE (or into FILE/ if it is a directory)",
    )
    g.add_argument(
        "--range",
        metavar="A-B",
        type=_range_arg,
        help="bytes A..B inclusive (HTTP style); A- = from A, -N = last N bytes",
    )
    g.add_argument("--version", metavar="V", help="read version V (see `dfspeer versions`)")
    _transfer_options(g)
    g.set_defaults(func=cmd_get)


def _add_ls(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``ls``."""
    ls = sub.add_parser(
        "ls",
        help="list objects",
        description="List BUCKET[/PREFIX]. Like "
        "`aws s3 ls`, keys are grouped at the next '/' (shown as PRE lines) "
        "unless --recursive.",
    )
    ls.add_argument("target", metavar="BUCKET[/PREFIX]")
    ls.add_argument("-r", "--recursive", action="store_true", help="no grouping: every key")
    ls.add_argument("--delimiter", metavar="D", help="group keys at D (default '/')")
    ls.add_argument("--limit", metavar="N", type=int, help="stop after N entries")
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    add_peer_options(ls)
    ls.set_defaults(func=cmd_ls)


def _add_rm(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``rm``."""
    rm = sub.add_parser(
        "rm",
        help="delete objects",
        description="Delete each BUCKET/KEY: a delete marker (older versions stay in a "
        "versioned bucket). With --version V, remove version V of each key for good.",
    )
    rm.add_argument("targets", metavar="BUCKET/KEY", nargs="+")
    rm.add_argument("--version", metavar="V", help="remove version V for good")
    add_peer_options(rm)
    rm.set_defaults(func=cmd_rm)


def _add_stat(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``stat``."""
    st = sub.add_parser("stat", help="show an object's metadata")
    st.add_argument("target", metavar="BUCKET/KEY")
    st.add_argument("--version", metavar="V", help="show version V")
    st.add_argument("--json", action="store_true", help="print JSON")
    add_peer_options(st)
    st.set_defaults(func=cmd_stat)


def _add_versions(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """``versions``."""
    v = sub.add_parser(
        "versions",
        help="list an object's versions",
        description="List the versions of BUCKET/KEY (delete markers too), newest first. "
        "With --prefix, TARGET is BUCKET[/PREFIX] and every key under it is listed.",
    )
    v.add_argument("target", metavar="TARGET")
    v.add_argument(
        "--prefix", action="store_true", help="TARGET is BUCKET[/PREFIX]: every key under it"
    )
    v.add_argument("--json", action="store_true", help="one JSON object per line")
    add_peer_options(v)
    v.set_defaults(func=cmd_versions)


def _range_arg(text: str) -> tuple[int, int | None]:
    try:
        return parse_range(text)
    except UsageError as exc:
        raise argparse.ArgumentTypeError(str(exc).removeprefix("--range: ")) from None


def _meta_arg(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name.strip(), value


def _transfer_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-progress", action="store_true", help="never show a progress bar")
    add_peer_options(p)


def _client(args: argparse.Namespace) -> Client:
    return Client(
        peer_url(args),
        timeout_s=args.timeout,
        credentials=credentials_arg(args),
        ca_file=ca_file_arg(args),
    )


async def _stdin_pieces() -> AsyncIterator[bytes]:
    stdin = sys.stdin.buffer
    while piece := await asyncio.to_thread(stdin.read, 1024 * 1024):
        yield piece


def cmd_put(args: argparse.Namespace) -> int:
    """Upload; the file is hashed first (one read) so the server can check the body. A
    file above ``--resumable-threshold`` goes through a resumable session instead
    (:func:`dfspeer.commands.uploads.put_resumable`), hashed while it is sent."""
    bucket, key = parse_target(args.target, require_key=False)
    if not key or key.endswith("/"):
        if args.file == "-":
            raise UsageError("a key is needed when reading stdin: BUCKET/KEY")
        key += Path(args.file).name
    data: Path | AsyncIterator[bytes]
    if args.file == "-":
        data, size, digest = _stdin_pieces(), None, None
    else:
        data = Path(args.file)
        if not data.is_file():
            raise UsageError(f"{args.file}: not a readable file")
        size = data.stat().st_size
        if size > getattr(args, "resumable_threshold", size):
            show = progress_enabled(size, disabled=args.no_progress)
            info, stats = put_resumable(args, data, bucket, key, show_progress=show)
            _print_put(args, bucket, key, info, size, None, stats_json(stats))
            return 0
        digest = sha256_file(data)
    show = progress_enabled(size, disabled=args.no_progress)

    async def run() -> dict[str, Any]:
        with progress_bar(size, f"put {key}", enabled=show) as (advance, _):
            async with _client(args) as c:
                return await c.put_object(
                    bucket,
                    key,
                    data,
                    sha256=digest,
                    progress=advance,
                    content_type=args.content_type,
                    meta=dict(args.meta) or None,
                )

    info = asyncio.run(run())
    _print_put(args, bucket, key, info, size, digest, None)
    return 0


def _print_put(
    args: argparse.Namespace,
    bucket: str,
    key: str,
    info: dict[str, Any],
    size: int | None,
    digest: str | None,
    upload: dict[str, Any] | None,
) -> None:
    """The result line of ``put`` (or, with ``--json``, the object JSON plus ``upload``:
    what a resumable session's run did)."""
    if getattr(args, "json", False):
        print(json.dumps({**info, "upload": upload}, sort_keys=True))
        return
    print(
        f"{bucket}/{info.get('key', key)}  {info.get('size', size)} bytes  "
        f"sha256 {info.get('sha256', digest)}  version {info.get('version', '-')}"
    )


def cmd_get(args: argparse.Namespace) -> int:
    """Download to ``-o FILE`` or stdout; a whole object is checked against its SHA-256."""
    bucket, key = parse_target(args.target)
    out: Path | None = args.output
    if out is not None and out.is_dir():
        out = out / Path(key).name
    show = progress_enabled(None, disabled=args.no_progress) and out is not None

    async def run() -> dict[str, Any]:
        with progress_bar(None, f"get {key}", enabled=show) as (advance, set_total):
            async with _client(args) as c:
                dest = out if out is not None else sys.stdout.buffer
                return await c.download(
                    bucket,
                    key,
                    dest,
                    range=args.range,
                    progress=advance,
                    total=set_total,
                    version=args.version,
                )

    info = asyncio.run(run())
    if out is not None:
        print(f"wrote {info['bytes']} bytes to {out}", file=sys.stderr)
    else:
        sys.stdout.flush()
    return 0


def cmd_ls(args: argparse.Namespace) -> int:
    """List objects and common prefixes, following continuation markers."""
    bucket, prefix = parse_target(args.target, require_key=False)
    delimiter = "" if args.recursive else ("/" if args.delimiter is None else args.delimiter)

    async def run() -> None:
        count = 0
        async with _client(args) as c:
            async for obj, common in c.iter_objects(bucket, prefix, delimiter):
                if args.limit is not None and count >= args.limit:
                    return
                count += 1
                print(_ls_line(obj, common, as_json=args.json))

    asyncio.run(run())
    return 0


def _ls_line(obj: dict[str, Any] | None, common: str | None, *, as_json: bool) -> str:
    if as_json:
        return json.dumps(obj if obj is not None else {"prefix": common}, sort_keys=True)
    if obj is None:
        return f"{'':19}  {'PRE':>12}  {common}"
    return f"{format_time(obj.get('modified'))}  {obj.get('size', 0):>12}  {obj.get('key')}"


def cmd_rm(args: argparse.Namespace) -> int:
    """Delete each BUCKET/KEY (a delete marker; deleting a missing key succeeds), or with
    ``--version`` remove that version of each for good (no_such_version if missing)."""
    targets = [parse_target(t) for t in args.targets]

    async def run() -> None:
        async with _client(args) as c:
            for bucket, key in targets:
                await c.delete_object(bucket, key, version=args.version)

    asyncio.run(run())
    return 0


def cmd_stat(args: argparse.Namespace) -> int:
    """Show size, SHA-256, version, modified time and content type."""
    bucket, key = parse_target(args.target)

    async def run() -> dict[str, Any]:
        async with _client(args) as c:
            return await c.stat_object(bucket, key, version=args.version)

    info = asyncio.run(run())
    if args.json:
        print(json.dumps(info, sort_keys=True))
        return 0
    rows = [
        ("bucket", info["bucket"]),
        ("key", info["key"]),
        ("size", f"{info['size']} ({human_bytes(info['size'])})"),
        ("sha256", info["sha256"] or "-"),
        ("version", info.get("version") or "-"),
        ("modified", format_time(info.get("modified")) + " UTC"),
        ("content-type", info.get("content_type") or "-"),
    ]
    rows += [(f"meta {name}", value) for name, value in sorted(info.get("meta", {}).items())]
    print(format_fields(rows))
    return 0


def versions_table(versions: list[VersionJson], *, with_key: bool) -> str:
    """Table of versions: MODIFIED (UTC), SIZE, VERSION, FLAGS (``latest``, ``marker``),
    and KEY when ``with_key``."""
    rows: list[tuple[str, ...]] = []
    for v in versions:
        flags = ",".join(
            f for f, on in (("latest", v["is_latest"]), ("marker", v["delete_marker"])) if on
        )
        row = (format_time(v["modified"]), str(v["size"]), v["version"], flags or "-")
        rows.append((*row, v["key"]) if with_key else row)
    headers = ("MODIFIED (UTC)", "SIZE", "VERSION", "FLAGS")
    return format_table((*headers, "KEY") if with_key else headers, rows)


def cmd_versions(args: argparse.Namespace) -> int:
    """List the versions of one key, or with ``--prefix`` of every key under a prefix
    (following pages)."""
    bucket, key = parse_target(args.target, require_key=not args.prefix)

    async def run() -> list[VersionJson]:
        async with _client(args) as c:
            if not args.prefix:
                return await c.list_object_versions(bucket, key)
            out: list[VersionJson] = []
            start_after = ""
            while True:
                page = await c.list_versions(bucket, prefix=key, start_after=start_after)
                out += page["versions"]
                start_after = page["next_start_after"] or ""
                if not page["is_truncated"] or not start_after:
                    return out

    versions = asyncio.run(run())
    if args.json:
        for v in versions:
            print(json.dumps(v, sort_keys=True))
    elif versions:
        print(versions_table(versions, with_key=args.prefix))
    return 0
