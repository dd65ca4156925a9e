"""``dfspeer up``: a local cluster in the foreground until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from dfspeer.commands.common import UsageError
from dfspeer.localcluster import LocalCluster, LocalClusterError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``up``."""
    p = sub.add_parser(
        "up",
        help="run a local cluster in the foreground",
        description="Run N peers on 127.0.0.11, .12, ... (127.0.0.1 with distinct ports where "
        "those addresses cannot be bound) with their own cluster key and data dirs under "
        "--base-dir, until Ctrl-C. Data, cluster key and admin token (admin.token) are kept "
        "for the next run; the export lines printed at start authenticate the CLI as the "
        "admin.",
    )
    p.add_argument("--peers", type=int, default=3, metavar="N", help="number of peers (3)")
    p.add_argument(
        "--base-dir",
        type=Path,
        default=Path("dfspeer-up"),
        metavar="DIR",
        help="key, data dirs and logs (default ./dfspeer-up)",
    )
    p.add_argument(
        "--base-port",
        type=int,
        default=7070,
        metavar="P",
        help="HTTP port of peer 1; peer i gets P+i-1 (7070)",
    )
    p.add_argument(
        "--gossip-base-port",
        type=int,
        default=7946,
        metavar="G",
        help="gossip port of peer 1; peer i gets G+i-1 (7946)",
    )
    p.add_argument(
        "--s3-base-port",
        type=int,
        default=7080,
        metavar="S",
        help="S3 port of peer 1; peer i gets S+i-1 (7080; 0 turns S3 off)",
    )
    p.add_argument(
        "--set",
        metavar="SETTING=VALUE",
        action="append",
        default=[],
        help="a PeerConfig setting for every peer (repeatable)",
    )
    p.set_defaults(func=cmd_up)


def _settings(items: list[str]) -> dict[str, object]:
    settings: dict[str, object] = {}
    for item in items:
        name, eq, value = item.partition("=")
        if not eq or not name.strip():
            raise UsageError(f"--set: expected SETTING=VALUE, got {item!r}")
        settings[name.strip().replace("-", "_")] = value
    return settings


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def cmd_up(args: argparse.Namespace) -> int:
    """Start the peers, print their URLs, wait for readiness, then watch until Ctrl-C."""
    if not 1 <= args.peers <= 64:
        raise UsageError("--peers must be in 1..64")
    cluster = LocalCluster(
        args.base_dir,
        args.peers,
        base_port=args.base_port,
        gossip_base_port=args.gossip_base_port,
        s3_base_port=args.s3_base_port,
        settings=_settings(args.set),
    )
    signal.signal(signal.SIGTERM, _terminate)
    with cluster:
        try:
            cluster.start()
            for p in cluster.peers:
                s3 = f"  s3 {p.s3_url}" if p.s3_url else ""
                print(f"{p.peer_id}  {p.url}  gossip {p.gossip_address}{s3}  log {p.log_path}")
            print(f"cluster key: {cluster.key_file}", flush=True)
            print(f"admin token: {cluster.admin_token_file}", flush=True)
            cluster.wait_ready(timeout_s=60.0)
            print(
                f"all {args.peers} peers ready; in another shell:\n"
                f"export DFSPEER_PEER={cluster.peers[0].url}\n"
                f"export DFSPEER_ADMIN_TOKEN={cluster.admin_token}\n"
                f"web console: {cluster.peers[0].url}/ui/ (log in with the admin token)\n"
                "dfspeer members   (Ctrl-C stops the cluster)",
                flush=True,
            )
            _watch(cluster)
        except KeyboardInterrupt:
            print("\nstopping the cluster ...", file=sys.stderr, flush=True)
        except LocalClusterError as exc:
            print(f"dfspeer: error: {exc}", file=sys.stderr, flush=True)
            return 1
    return 0


def _watch(cluster: LocalCluster) -> None:
    reported: set[int] = set()
    while True:
        for p in cluster.peers:
            if not p.running and p.index not in reported:
                reported.add(p.index)
                code = p.process.returncode if p.process else None
                print(
                    f"{p.peer_id} exited (code {code}); see {p.log_path}",
                    file=sys.stderr,
                    flush=True,
                )
        time.sleep(0.5)
