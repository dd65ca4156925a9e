"""``dfspeer agent`` (run one peer until SIGINT/SIGTERM) and ``dfspeer keygen``."""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from dfspeer import eventloop, tracing
from dfspeer.commands.common import UsageError
from dfspeer.config import PeerConfig
from dfspeer.logsetup import configure_logging
from dfspeer.memory import return_large_blocks_to_the_kernel

# flag -> PeerConfig field; every value goes through PeerConfig.from_sources as a string so
# the flag, its DFSPEER_* variable and its TOML key share one parser and one error message.
AGENT_FLAGS: dict[str, tuple[str, str, str]] = {
    "--data-dir": ("data_dir", "DIR", "directory for the block store and the peer id"),
    "--host": ("host", "H", "address to bind the HTTP API and gossip to"),
    "--port": ("port", "P", "HTTP API port"),
    "--gossip-port": ("gossip_port", "G", "gossip port (UDP, and TCP for push-pull)"),
    "--s3-port": ("s3_port", "P", "S3 API port (default 7080; 0 turns S3 off)"),
    "--advertise-host": ("advertise_host", "H", "host other peers use to reach this one"),
    "--peer-id": ("peer_id", "ID", "fixed peer id (default: generated, kept in the data dir)"),
    "--replication-factor": ("replication_factor", "N", "replicas per partition"),
    "--write-quorum": ("write_quorum", "W", "replica acks a write waits for"),
    "--read-quorum": ("read_quorum", "R", "replicas a read consults"),
    "--zone": ("zone", "Z", "failure zone; replicas spread across zones"),
    "--weight": ("weight", "X", "relative share of the data (default 1.0)"),
    "--cluster-key-file": ("cluster_key_file", "F", "file of base64 keys, first one seals"),
    "--admin-token-file": (
        "admin_token_file",
        "F",
        "file holding the admin token (`dfspeer keygen --admin-token -o F`)",
    ),
    "--jwt-public-key-file": (
        "jwt_public_key_file",
        "F",
        "PEM public key (EC P-256 or RSA) whose ES256 / RS256 JWTs act as the access key "
        "of their sub",
    ),
    "--jwt-jwks-file": ("jwt_jwks_file", "F", "local JWKS file of ES256 / RS256 public keys"),
    "--jwt-jwks-url": (
        "jwt_jwks_url",
        "URL",
        "https URL of an identity provider's JWKS: fetched, cached 5 min, fetched again for "
        "an unknown kid (at most every 10 s)",
    ),
    "--jwt-issuer": ("jwt_issuer", "ISS", "the iss every JWT must carry"),
    "--jwt-audience": ("jwt_audience", "AUD", "an aud every JWT must name"),
    "--tls-cert-file": (
        "tls_cert_file",
        "F",
        "PEM certificate (chain): serve the API and S3 ports over HTTPS (with --tls-key-file)",
    ),
    "--tls-key-file": ("tls_key_file", "F", "PEM private key of --tls-cert-file (unencrypted)"),
    "--tls-ca-file": (
        "tls_ca_file",
        "F",
        "CA certificates peers' certificates chain to (--internal-tls; default: the system's)",
    ),
    "--audit-log": (
        "audit_log_file",
        "FILE",
        "append a JSON line for every mutating or refused request to FILE (rotated)",
    ),
    "--log-level": ("log_level", "LEVEL", "debug, info, warning or error"),
    "--log-format": ("log_format", "FORMAT", "text (default) or json: one JSON object a line"),
}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add ``agent`` and ``keygen``."""
    p = sub.add_parser(
        "agent",
        help="run a peer in the foreground",
        description="Run one peer until SIGINT/SIGTERM. Every flag can also be set as "
        "DFSPEER_<SETTING> in the environment or in a TOML file (--config); flags win "
        "over the environment, which wins over the file.",
    )
    for flag, (_, metavar, text) in AGENT_FLAGS.items():
        p.add_argument(flag, metavar=metavar, help=text)
    p.add_argument(
        "--join",
        metavar="HOST:PORT",
        nargs="+",
        action="extend",
        help="gossip address(es) of peers to join through (repeatable)",
    )
    p.add_argument(
        "--insecure",
        action="store_const",
        const=True,
        default=None,
        help="run without a cluster key (gossip and peer RPC unauthenticated) and without "
        "client authentication (every HTTP client may do everything)",
    )
    p.add_argument(
        "--internal-tls",
        action="store_const",
        const=True,
        default=None,
        help="peer RPC verifies every peer's certificate (against --tls-ca-file); needs "
        "--tls-cert-file",
    )
    p.add_argument(
        "--set",
        metavar="SETTING=VALUE",
        action="append",
        default=[],
        help="any other PeerConfig setting, e.g. --set chunk_size_bytes=1048576",
    )
    p.add_argument("--config", metavar="FILE", type=Path, help="TOML file of settings")
    p.set_defaults(func=cmd_agent)

    k = sub.add_parser("keygen", help="generate a cluster key (or an admin token)")
    k.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        type=Path,
        help="write the key to FILE (mode 0600) instead of printing it",
    )
    k.add_argument(
        "--admin-token",
        action="store_true",
        help="generate an admin token (for --admin-token-file) instead of a cluster key",
    )
    k.add_argument("--force", action="store_true", help="overwrite an existing FILE")
    k.set_defaults(func=cmd_keygen)


def agent_overrides(args: argparse.Namespace) -> dict[str, Any]:
    """The flag values given on the command line as a ``from_sources`` overrides dict."""
    overrides: dict[str, Any] = {}
    for flag, (name, _, _) in AGENT_FLAGS.items():
        overrides[name] = getattr(args, flag.lstrip("-").replace("-", "_"))
    overrides["join"] = ",".join(args.join) if args.join else None
    overrides["insecure"] = args.insecure
    overrides["internal_tls"] = args.internal_tls
    for item in args.set:
        name, eq, value = item.partition("=")
        if not eq or not name.strip():
            raise UsageError(f"--set: expected SETTING=VALUE, got {item!r}")
        overrides[name.strip()] = value
    return overrides


def config_from_args(
    args: argparse.Namespace, environ: Mapping[str, str] | None = None
) -> PeerConfig:
    """flags > ``DFSPEER_*`` > TOML (``--config`` or ``$DFSPEER_CONFIG``) > defaults.
    Raises :class:`ConfigError`."""
    return PeerConfig.from_sources(
        agent_overrides(args),
        toml_path=args.config,
        environ=os.environ if environ is None else environ,
    )


def cmd_agent(args: argparse.Namespace) -> int:
    """Run a peer until SIGINT/SIGTERM, then stop it gracefully (leave gossip, close)."""
    config = config_from_args(args)
    configure_logging(config.log_level, config.log_format, stream=sys.stderr)
    tracing.configure()  # on only with opentelemetry installed and OTEL_* asking for export
    return_large_blocks_to_the_kernel()  # chunk buffers do not pile up in the heap
    try:
        eventloop.run(_run_peer(config), config.event_loop)
    except OSError as exc:
        print(f"dfspeer: error: cannot start peer: {exc}", file=sys.stderr)
        return 1
    return 0


DRAINED_EXIT_DELAY_S = 2.0


async def _run_peer(config: PeerConfig) -> None:
    from dfspeer.peer import Peer

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log = logging.getLogger("dfspeer.agent")
    async with Peer(config) as peer:
        log.info(
            "peer %s serving %s (gossip %s:%d, event loop %s)",
            peer.peer_id,
            peer.api_url,
            config.advertised_host,
            config.gossip_port,
            type(loop).__module__.split(".")[0],
        )
        waiters = [asyncio.create_task(stop.wait()), asyncio.create_task(peer.left.wait())]
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        for waiter in waiters:
            waiter.cancel()
        if peer.left.is_set() and not stop.is_set():
            log.info("drained and left the cluster: stopping")
            await asyncio.sleep(DRAINED_EXIT_DELAY_S)  # `dfspeer drain` sees "done" first
        log.info("stopping: leaving the cluster")
    log.info("stopped")


def write_key_file(path: Path, key: str, *, force: bool = False) -> None:
    """Write ``key`` plus a newline to ``path`` with mode 0600.

    Raises :class:`FileExistsError` if ``path`` exists and not ``force``.
    """
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (key + "\n").encode())
    finally:
        os.close(fd)


def cmd_keygen(args: argparse.Namespace) -> int:
    """Print a new cluster key (or, with ``--admin-token``, an admin token), or write it to
    ``-o FILE`` (mode 0600)."""
    from dfspeer.access.credentials import new_admin_token
    from dfspeer.gossip import generate_key

    what = "admin token" if args.admin_token else "cluster key"
    key = new_admin_token() if args.admin_token else generate_key()
    if args.output is None:
        print(key)
        return 0
    try:
        write_key_file(args.output, key, force=args.force)
    except FileExistsError:
        raise UsageError(f"{args.output} exists; use --force to overwrite it") from None
    print(f"wrote a new {what} to {args.output}", file=sys.stderr)
    return 0
