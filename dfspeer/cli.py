"""The ``dfspeer`` command: a small dispatcher over :mod:`dfspeer.commands`.

Errors never show a traceback: a usage or configuration error prints
``dfspeer: error: ...`` and exits 2; a failed operation prints ``dfspeer: <code>: <message>``
(or ``dfspeer: cannot reach URL: reason``) and exits 1; Ctrl-C exits 130.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from dfspeer import __version__
from dfspeer.access.credentials import MalformedCredential
from dfspeer.client import PeerUnreachable
from dfspeer.commands import agent, buckets, cluster, drain, keys, objects, share, up, uploads
from dfspeer.commands.common import UsageError, add_ca_file_option
from dfspeer.config import ConfigError
from dfspeer.errors import DfsError


def build_parser() -> argparse.ArgumentParser:
    """The full argument parser (every subcommand sets ``func``)."""
    parser = argparse.ArgumentParser(
        prog="dfspeer",
        description="dfspeer: a peer-to-peer storage cluster. Start with `dfspeer demo` or "
        "`dfspeer up`; `dfspeer COMMAND --help` for details.",
    )
    parser.add_argument("--version", action="version", version=f"dfspeer {__version__}")
    add_ca_file_option(parser, default=None)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    agent.register(sub)
    up.register(sub)
    from dfspeer import demo

    demo.register(sub)
    objects.register(sub)
    buckets.register(sub)
    uploads.register(sub)
    cluster.register(sub)
    drain.register(sub)
    keys.register(sub)
    share.register(sub)
    return parser


def _fail(message: str, code: int) -> int:
    print(f"dfspeer: {message}", file=sys.stderr)
    return code


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "func", None) is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        code: int = args.func(args)
    except (UsageError, ConfigError, MalformedCredential) as exc:
        return _fail(f"error: {exc}", 2)
    except PeerUnreachable as exc:
        return _fail(exc.message, 1)
    except DfsError as exc:
        return _fail(f"{exc.code}: {exc.message}", 1)
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    except BrokenPipeError:
        # stdout closed early (e.g. `| head`): silence the flush at interpreter exit
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        return _fail(f"error: {exc.strerror or exc}{where}", 1)
    return code
