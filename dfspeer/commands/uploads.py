"""Resumable upload commands: ``uploads ls|abort``, and the session path of ``put``.

``dfspeer put`` sends a file larger than ``--resumable-threshold`` through a resumable
session (:meth:`dfspeer.Client.upload_file`): several chunks in flight, the session's state
kept under ``$XDG_CACHE_HOME/dfspeer/uploads/``, so the same command run again — through any
peer — sends only what the cluster does not have yet.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from dfspeer.client import Client, UploadJson, UploadStats
from dfspeer.commands.common import (
    UsageError,
    add_peer_options,
    ca_file_arg,
    credentials_arg,
    format_table,
    format_time,
    human_bytes,
    peer_url,
)

MiB = 1024 * 1024
DEFAULT_RESUMABLE_THRESHOLD = 64 * MiB
DEFAULT_PARALLEL = 4
_UNITS = {
    "": 1,
    "b": 1,
    "k": 1024,
    "kib": 1024,
    "m": MiB,
    "mib": MiB,
    "g": 1024 * MiB,
    "gib": 1024 * MiB,
    "t": 1024**4,
    "tib": 1024**4,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
}
_SIZE = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*")


def parse_size(text: str) -> int:
    """A size in bytes from ``123``, ``64MiB``, ``4M`` (binary), ``1.5GiB`` or ``10MB``
    (decimal). Raises ValueError."""
    match = _SIZE.fullmatch(text)
    unit = match.group(2).lower() if match else ""
    if match is None or unit not in _UNITS:
        raise ValueError(f"expected a size such as 1048576, 64MiB or 1GiB, got {text!r}")
    return int(float(match.group(1)) * _UNITS[unit])


def size_arg(text: str) -> int:
    """argparse ``type=`` for sizes (:func:`parse_size`)."""
    try:
        return parse_size(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_resumable_options(p: argparse.ArgumentParser) -> None:
    """``put``'s session options."""
    p.add_argument(
        "--resumable-threshold",
        metavar="SIZE",
        type=size_arg,
        default=DEFAULT_RESUMABLE_THRESHOLD,
        help="files larger than SIZE (bytes, or e.g. 64MiB) go through a resumable "
        "session (default: 64MiB)",
    )
    p.add_argument(
        "--chunk-size",
        metavar="SIZE",
        type=size_arg,
        help="a resumable session's chunk size (default: the peer's chunk_size_bytes)",
    )
    p.add_argument(
        "--parallel",
        metavar="N",
        type=int,
        default=DEFAULT_PARALLEL,
        help=f"chunks in flight in a resumable session (default: {DEFAULT_PARALLEL})",
    )
    p.add_argument(
        "--no-resume",
        action="store_true",
        help="start a new session even if an earlier run of this file left one",
    )


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``uploads`` and its subcommands."""
    u = sub.add_parser(
        "uploads",
        help="list or abort resumable upload sessions",
        description="Resumable upload sessions (started by `dfspeer put` for large files or "
        "by POST /v1/uploads). An abandoned session expires after upload_expiry_s idle.",
    )
    commands = u.add_subparsers(dest="uploads_command", metavar="COMMAND", required=True)

    ls = commands.add_parser("ls", help="list a bucket's open sessions")
    ls.add_argument("bucket", metavar="BUCKET")
    ls.add_argument("--json", action="store_true", help="one JSON object per line")
    add_peer_options(ls)
    ls.set_defaults(func=cmd_ls)

    ab = commands.add_parser("abort", help="abort a session and free its chunks")
    ab.add_argument("upload_ids", metavar="ID", nargs="+")
    add_peer_options(ab)
    ab.set_defaults(func=cmd_abort)


def _client(args: argparse.Namespace) -> Client:
    return Client(
        peer_url(args),
        timeout_s=args.timeout,
        credentials=credentials_arg(args),
        ca_file=ca_file_arg(args),
    )


def cmd_ls(args: argparse.Namespace) -> int:
    """List the open sessions of a bucket, oldest first, with what each has received (the
    listing leaves chunks out, so each session is read once more)."""

    async def run() -> list[UploadJson]:
        async with _client(args) as c:
            listed = await c.list_uploads(args.bucket)
            return [await c.get_upload(u["upload_id"]) for u in listed]

    sessions = asyncio.run(run())
    if args.json:
        for s in sessions:
            print(json.dumps(s, sort_keys=True))
    elif sessions:
        rows = [
            (
                s["upload_id"],
                format_time(s["created"]),
                "-" if s["size"] is None else human_bytes(s["size"]),
                human_bytes(s["bytes_received"]),
                s["state"],
                s["key"],
            )
            for s in sessions
        ]
        print(format_table(("ID", "CREATED (UTC)", "SIZE", "RECEIVED", "STATE", "KEY"), rows))
    return 0


def cmd_abort(args: argparse.Namespace) -> int:
    """Abort each session (its chunks are freed)."""

    async def run() -> None:
        async with _client(args) as c:
            for upload_id in args.upload_ids:
                await c.abort_upload(upload_id)

    asyncio.run(run())
    return 0


def _mib(n: int) -> str:
    return f"{n / MiB:.0f}" if n >= 10 * MiB else f"{n / MiB:.1f}"


def resuming_line(stored: int, total: int) -> str:
    """``resuming: 412 of 512 MiB already stored`` (sizes in bytes)."""
    return f"resuming: {_mib(stored)} of {_mib(total)} MiB already stored"


@contextlib.contextmanager
def _bar(enabled: bool, desc: str) -> Iterator[Callable[[int, int], None]]:
    """A progress callback ``(done, total)`` (bytes) that draws a tqdm bar on stderr,
    created at the first call so that it starts at the resumed offset."""
    bars: list[Any] = []
    try:

        def update(done: int, total: int) -> None:
            if not enabled:
                return
            if not bars:
                from tqdm import tqdm

                bars.append(
                    tqdm(
                        total=total,
                        initial=done,
                        desc=desc,
                        unit="B",
                        unit_scale=True,
                        unit_divisor=1024,
                        file=sys.stderr,
                        leave=False,
                        dynamic_ncols=True,
                    )
                )
                return
            bars[0].update(done - bars[0].n)

        yield update
    finally:
        for bar in bars:
            bar.close()


def put_resumable(
    args: argparse.Namespace,
    path: Path,
    bucket: str,
    key: str,
    *,
    show_progress: bool,
) -> tuple[dict[str, Any], UploadStats]:
    """Upload ``path`` through a resumable session (printing the resuming line to stderr
    when earlier runs stored some of it); the object JSON and what this run did."""
    if args.parallel < 1:
        raise UsageError("--parallel must be >= 1")
    stats = UploadStats()

    async def run() -> dict[str, Any]:
        with _bar(show_progress, f"put {key}") as draw:
            said: list[bool] = []

            def progress(done: int, total: int) -> None:
                if not said:
                    said.append(True)
                    if done > 0:
                        print(resuming_line(done, total), file=sys.stderr, flush=True)
                draw(done, total)

            async with _client(args) as c:
                return await c.upload_file(
                    path,
                    bucket,
                    key,
                    resume=not args.no_resume,
                    chunk_size=args.chunk_size,
                    parallel=args.parallel,
                    progress=progress,
                    content_type=args.content_type,
                    metadata=dict(args.meta) or None,
                    stats=stats,
                )

    return asyncio.run(run()), stats


def stats_json(stats: UploadStats) -> dict[str, Any]:
    """The ``upload`` part of ``put --json`` (sizes in bytes)."""
    return {
        "upload_id": stats.upload_id,
        "chunk_size": stats.chunk_size,
        "resumed": stats.resumed,
        "stored_bytes": stats.stored_bytes,
        "sent_bytes": stats.sent_bytes,
        "chunks_sent": stats.chunks_sent,
        "sessions": stats.sessions,
    }
