"""Setup steps of a :class:`~dfspeer.peer.Peer` that need no running parts: the cluster
keyring, the admin token, the persisted peer id, the HTTP listening socket and the gossip
settings."""

from __future__ import annotations

import logging
import os
import socket
import uuid
from pathlib import Path

from dfspeer.access.credentials import load_admin_token as _load_admin_token
from dfspeer.config import ConfigError, PeerConfig
from dfspeer.gossip import Keyring, SwimConfig
from dfspeer.gossip import load_keyring as _load_keyring

log = logging.getLogger("dfspeer.peer")

PEER_ID_FILE = "peer_id"
INSECURE_API_WARNING = (
    "without client authentication (--insecure): anyone who reaches the HTTP port may "
    "read, write and delete every object and drain this peer"
)


def load_admin_token(config: PeerConfig) -> str | None:
    """The admin token of ``admin_token_file`` (None without one; a warning when client
    authentication is on, as then only access keys authenticate and no key can be
    created). Raises ConfigError when the file is unreadable or malformed."""
    if config.admin_token_file is None:
        if not config.insecure:
            log.warning(
                "no admin_token_file: only access keys authenticate, and none can be created "
                "(create a token with `dfspeer keygen --admin-token -o FILE`)"
            )
        return None
    try:
        return _load_admin_token(config.admin_token_file)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"admin_token_file: {exc}") from exc


def swim_config(config: PeerConfig) -> SwimConfig:
    """The gossip settings of ``config`` (every SwimConfig field that PeerConfig names)."""
    return SwimConfig.from_settings(config)


def load_keyring(config: PeerConfig) -> Keyring:
    """The cluster keyring. Raises ConfigError without a key file unless ``insecure``."""
    if config.cluster_key_file is not None:
        try:
            keyring = _load_keyring(config.cluster_key_file)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"cluster_key_file: {exc}") from exc
        if config.insecure:
            log.warning(INSECURE_API_WARNING)
        return keyring
    if config.insecure:
        log.warning(
            "running with the well-known insecure cluster key (--insecure), and "
            + INSECURE_API_WARNING
        )
        return Keyring.insecure()
    raise ConfigError(
        "cluster_key_file: a cluster key is required (create one with `dfspeer keygen`), "
        "or pass --insecure for a throwaway local cluster"
    )


def load_peer_id(data_dir: Path, configured: str | None) -> str:
    """The peer's id: ``configured``, else the one stored in ``<data_dir>/peer_id``, else a
    new 16-hex-digit random id. Persisted (atomically) on first use. Raises ConfigError if
    the stored id differs from ``configured`` (the data directory belongs to another peer)."""
    path = data_dir / PEER_ID_FILE
    try:
        stored: str | None = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        stored = None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"data_dir: cannot read {path}: {exc}") from exc
    if stored is not None and not (0 < len(stored) <= 128 and stored.isprintable()):
        raise ConfigError(f"data_dir: {path} does not hold a valid peer id")
    if stored and configured and stored != configured:
        raise ConfigError(
            f"peer_id: {configured!r} given, but {data_dir} belongs to peer {stored!r}"
        )
    peer_id = configured or stored or uuid.uuid4().hex[:16]
    if stored != peer_id:
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(peer_id + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    return peer_id


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``(host, port)``; port 0 picks a free one. Raises OSError."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=1024)
