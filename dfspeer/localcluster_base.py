"""What the parts of a :class:`~dfspeer.localcluster.LocalCluster` build on: its error, one
agent subprocess (:class:`LocalPeer`: addresses, URLs, process, log), and the cluster's
settings, peer lookup, cluster key and admin credentials.
"""

from __future__ import annotations

import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path


class LocalClusterError(RuntimeError):
    """A local peer did not start, exited, or did not become ready in time."""


@dataclass
class LocalPeer:
    """One agent subprocess of a :class:`LocalCluster`."""

    index: int
    peer_id: str
    host: str
    port: int
    gossip_port: int
    data_dir: Path
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    s3_port: int = 0  # 0: S3 off
    scheme: str = "http"  # "https" when the agents serve TLS (tls_cert_file)

    @property
    def s3_url(self) -> str | None:
        """Base URL of the peer's S3 API (None when off)."""
        return f"{self.scheme}://{self.host}:{self.s3_port}" if self.s3_port else None

    @property
    def url(self) -> str:
        """Base URL of the peer's HTTP API."""
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def gossip_address(self) -> str:
        """``host:port`` of the peer's gossip endpoint."""
        return f"{self.host}:{self.gossip_port}"

    @property
    def running(self) -> bool:
        """True while the subprocess exists and has not exited."""
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 20) -> str:
        """The last ``lines`` lines of the peer's log ('' if none)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class ClusterBase:
    """The settings and peers of a local cluster (set by
    :meth:`~dfspeer.localcluster.LocalCluster.__init__`), its peer lookup and the cluster key
    and admin token its agents use."""

    base_dir: Path
    settings: dict[str, object]
    key_file: Path
    admin_token_file: Path | None
    python: str
    ssl_context: ssl.SSLContext | None
    distinct_hosts: bool
    peers: list[LocalPeer]

    def peer(self, index: int) -> LocalPeer:
        """Peer by 1-based index."""
        return self.peers[index - 1]

    @property
    def urls(self) -> list[str]:
        """Base URLs of every peer, in index order."""
        return [p.url for p in self.peers]

    def ensure_key(self) -> Path:
        """Create the cluster key file and the admin token file (mode 0600) unless they
        exist; return the key file's path."""
        if not self.key_file.exists():
            from dfspeer.commands.agent import write_key_file
            from dfspeer.gossip import generate_key

            self.key_file.parent.mkdir(parents=True, exist_ok=True)
            write_key_file(self.key_file, generate_key())
        if self.admin_token_file is not None and not self.admin_token_file.exists():
            from dfspeer.access.credentials import new_admin_token, write_secret_file

            self.admin_token_file.parent.mkdir(parents=True, exist_ok=True)
            write_secret_file(self.admin_token_file, new_admin_token())
        return self.key_file

    @property
    def admin_token(self) -> str | None:
        """The agents' admin token (made on first use), or None without one."""
        if self.admin_token_file is None:
            return None
        from dfspeer.access.credentials import load_admin_token

        self.ensure_key()
        return load_admin_token(self.admin_token_file)

    @property
    def headers(self) -> dict[str, str]:
        """``{"Authorization": "Bearer <admin token>"}`` (``{}`` without a token): for raw
        HTTP clients of the agents (``dfspeer.Client`` takes ``token=``)."""
        token = self.admin_token
        return {"Authorization": f"Bearer {token}"} if token else {}
