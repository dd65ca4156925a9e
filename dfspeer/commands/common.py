"""Shared pieces of the CLI: target and range parsing, the peer option, progress bars,
tables and the one-line error policy.

Exit codes: 0 success, 1 a failed operation (server error, unreachable peer, unreadable
local file), 2 a usage or configuration error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

DEFAULT_PEER = "http://127.0.0.1:7070"
PEER_ENV = "DFSPEER_PEER"
PROGRESS_MIN_BYTES = 8 * 1024 * 1024


class UsageError(Exception):
    """A malformed command line value; printed as ``dfspeer: error: ...``, exit 2."""


def add_peer_options(parser: argparse.ArgumentParser, *, key_flag: bool = True) -> None:
    """``--peer URL``, ``--timeout S`` and the credentials (``--key ID.SECRET``, also
    spelt ``--credentials``; only ``--credentials`` when ``key_flag`` is False, for commands
    whose ``--key`` names another key) for commands that talk to a peer."""
    parser.add_argument(
        "--peer",
        metavar="URL",
        help=f"peer to talk to (default: ${PEER_ENV} or {DEFAULT_PEER})",
    )
    flags = ("--key", "--credentials") if key_flag else ("--credentials",)
    parser.add_argument(
        *flags,
        dest="credentials",
        metavar="ID.SECRET",
        help="access key to authenticate with (default: $DFSPEER_KEY, else the admin token "
        "of $DFSPEER_ADMIN_TOKEN)",
    )
    add_ca_file_option(parser)
    parser.add_argument(
        "--timeout",
        metavar="S",
        type=float,
        default=300.0,
        help="seconds to wait for a connection or for data (default: 300)",
    )


def add_ca_file_option(
    parser: argparse.ArgumentParser, *, default: object = argparse.SUPPRESS
) -> None:
    """``--ca-file FILE``: the PEM CA certificates an ``https://`` peer is verified against
    (default ``$DFSPEER_CA_FILE``, else the system's CAs). Global (before the command,
    ``default=None``) and on every command that talks to a peer (after it; ``SUPPRESS``, so
    it does not overwrite a global value)."""
    parser.add_argument(
        "--ca-file",
        metavar="FILE",
        default=default,
        help="CA certificates to verify an https:// peer with (default: $DFSPEER_CA_FILE, "
        "else the system's)",
    )


def ca_file_arg(args: argparse.Namespace) -> str | None:
    """The ``--ca-file`` value (None: the client falls back to ``$DFSPEER_CA_FILE``)."""
    value: str | None = getattr(args, "ca_file", None)
    return value


def peer_url(args: argparse.Namespace, environ: dict[str, str] | None = None) -> str:
    """The peer base URL: ``--peer``, else ``$DFSPEER_PEER``, else the default."""
    env = os.environ if environ is None else environ
    url = str(getattr(args, "peer", None) or env.get(PEER_ENV) or DEFAULT_PEER).rstrip("/")
    return url if "://" in url else "http://" + url


def credentials_arg(args: argparse.Namespace) -> str | None:
    """The ``--key`` / ``--credentials`` value (None: the client falls back to
    ``$DFSPEER_KEY`` / ``$DFSPEER_ADMIN_TOKEN``). Raises :class:`UsageError` when it is not
    ``ID.SECRET``."""
    from dfspeer.access.credentials import KeyCredential, MalformedCredential, parse_credential

    text: str | None = getattr(args, "credentials", None)
    if text is None:
        return None
    try:
        if not isinstance(parse_credential(text.strip()), KeyCredential):
            raise MalformedCredential("expected ID.SECRET")
    except MalformedCredential as exc:
        raise UsageError(f"--key: {exc}") from None
    return text.strip()


def parse_target(text: str, *, require_key: bool = True) -> tuple[str, str]:
    """Split ``BUCKET/KEY`` (the key may contain further slashes) -> ``(bucket, key)``.

    With ``require_key=False`` a bare ``BUCKET`` or ``BUCKET/`` gives key ``""``.
    Raises :class:`UsageError`.
    """
    bucket, _, key = text.partition("/")
    if not bucket or (require_key and not key):
        raise UsageError(f"expected BUCKET/KEY, got {text!r}")
    return bucket, key


def parse_range(text: str) -> tuple[int, int | None]:
    """Parse the CLI's ``--range``, HTTP style with an inclusive end, into the client's
    half-open ``(start, end)``: ``A-B`` -> ``(A, B+1)``, ``A-`` -> ``(A, None)``,
    ``-N`` (last N bytes) -> ``(-N, None)``. Raises :class:`UsageError`."""
    first, sep, last = text.strip().partition("-")
    try:
        if not sep or (not first and not last):
            raise ValueError
        if not first:
            n = int(last)
            if n <= 0:
                raise ValueError
            return -n, None
        start = int(first)
        if start < 0:
            raise ValueError
        if not last:
            return start, None
        end = int(last)
        if end < start:
            raise ValueError
        return start, end + 1
    except ValueError:
        raise UsageError(f"--range: expected A-B, A- or -N with A <= B, got {text!r}") from None


def human_bytes(n: float) -> str:
    """``1536`` -> ``"1.5 KiB"``."""
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def format_time(ts: float | None) -> str:
    """Unix seconds -> ``YYYY-MM-DD HH:MM:SS`` (UTC), ``-`` if unknown."""
    if ts is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(ts))


def format_table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """Left-aligned columns separated by two spaces."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells
    )


def format_fields(rows: Sequence[tuple[str, Any]]) -> str:
    """``name: value`` lines with the values aligned."""
    width = max((len(name) for name, _ in rows), default=0) + 1
    return "\n".join(f"{name + ':':<{width}}  {value}" for name, value in rows)


def progress_enabled(size: int | None, *, disabled: bool = False, stream: Any = None) -> bool:
    """Progress policy: bars go to stderr, only when it is a terminal and the transfer is
    at least 8 MiB (or of unknown size); ``--no-progress`` turns them off."""
    out = sys.stderr if stream is None else stream
    if disabled or not hasattr(out, "isatty") or not out.isatty():
        return False
    return size is None or size >= PROGRESS_MIN_BYTES


@contextlib.contextmanager
def progress_bar(
    size: int | None, desc: str, *, enabled: bool
) -> Iterator[tuple[Callable[[int], None], Callable[[int], None]]]:
    """Yield ``(advance(n), set_total(n))`` callbacks; no-ops when not ``enabled``."""
    if not enabled:
        yield (lambda _n: None), (lambda _n: None)
        return
    from tqdm import tqdm

    with tqdm(
        total=size,
        desc=desc,
        unit="B",
        unit_scale=True,
        unit_divisor=1024,
        file=sys.stderr,
        leave=False,
        dynamic_ncols=True,
    ) as bar:

        def set_total(n: int) -> None:
            bar.total = n
            bar.refresh()

        def advance(n: int) -> None:
            bar.update(n)

        yield advance, set_total
