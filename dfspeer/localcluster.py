"""A local cluster of ``dfspeer agent`` subprocesses on loopback, for ``dfspeer up``, the
demo and the integration tests.

Peer ``i`` (1-based) binds ``127.0.0.(host_base + i)`` when that address can be bound
(Linux routes all of 127.0.0.0/8 to ``lo``), else ``127.0.0.1``; its HTTP port is
``base_port + i - 1``, its gossip port ``gossip_base_port + i - 1`` and its S3 port
``s3_base_port + i - 1`` (or free ports picked at start when the base is ``None``; an S3
base of 0 turns S3 off; with free HTTP ports the S3 ports are free ones too). Ports that
would collide on one address are refused at construction. Every agent runs in its own process group
(so a kill reaches nothing else), logs to ``<base_dir>/peer-i.log``, keeps its data in
``<base_dir>/peer-i/``, uses the cluster key ``<base_dir>/cluster.key`` and the admin token
``<base_dir>/admin.token`` (both made on first use; ``admin_token=False``: no token) and
joins through every other peer's gossip address. :attr:`LocalCluster.admin_token` and
:attr:`LocalCluster.headers` authenticate a client as the admin. Settings go to the agents as
``DFSPEER_*`` variables; inherited ``DFSPEER_*`` variables are dropped so a run does not
depend on the caller's environment.

The class is assembled from :mod:`dfspeer.localcluster_base` (peers, key and admin token),
:mod:`dfspeer.localcluster_processes` (starting and stopping agents) and
:mod:`dfspeer.localcluster_wait` (readiness and membership views); this module lays the peers
out.
"""

from __future__ import annotations

import ssl
import sys
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType

from dfspeer.localcluster_base import LocalClusterError, LocalPeer
from dfspeer.localcluster_processes import ProcessesMixin
from dfspeer.localcluster_wait import WaitsMixin
from dfspeer.loopback import (
    busy_ports,
    choose_hosts,
    free_port,
    host_bindable,
    http_get_json,
)

__all__ = [
    "LocalCluster",
    "LocalClusterError",
    "LocalPeer",
    "busy_ports",
    "choose_hosts",
    "free_port",
    "host_bindable",
    "http_get_json",
]


class LocalCluster(ProcessesMixin, WaitsMixin):
    """``peers`` agent subprocesses under ``base_dir``; a context manager that stops them all.

    ``settings`` maps :class:`~dfspeer.config.PeerConfig` field names to values for every
    agent (e.g. ``{"probe_interval_s": 0.3}``). ``admin_token``: give the agents an admin
    token file (``admin_token_file``, default ``<base_dir>/admin.token``, made on first use;
    several clusters may share one). With ``tls_cert_file`` in ``settings`` the peers' URLs
    are ``https://`` and the cluster's own polling verifies them against ``ca_file``.
    """

    def __init__(
        self,
        base_dir: Path,
        peers: int = 3,
        *,
        base_port: int | None = 7070,
        gossip_base_port: int | None = 7946,
        s3_base_port: int | None = 7080,
        host_base: int = 10,
        settings: Mapping[str, object] | None = None,
        key_file: Path | None = None,
        python: str = sys.executable,
        admin_token: bool = True,
        admin_token_file: Path | None = None,
        ca_file: Path | None = None,
    ) -> None:
        if peers < 1:
            raise ValueError("a cluster needs at least one peer")
        self.base_dir = Path(base_dir)
        self.settings = dict(settings or {})
        self.key_file = key_file or self.base_dir / "cluster.key"
        self.admin_token_file: Path | None = None
        if admin_token:
            self.admin_token_file = admin_token_file or self.base_dir / "admin.token"
        self.python = python
        scheme = "https" if self.settings.get("tls_cert_file") else "http"
        self.ssl_context = _client_context(scheme, ca_file)
        hosts = choose_hosts(peers, host_base)
        self.distinct_hosts = len(set(hosts)) == peers
        self.peers = self._lay_out(hosts, scheme, base_port, gossip_base_port, s3_base_port)
        self._check_distinct()

    def _lay_out(
        self,
        hosts: list[str],
        scheme: str,
        base_port: int | None,
        gossip_base_port: int | None,
        s3_base_port: int | None,
    ) -> list[LocalPeer]:
        """Peer ``i`` on ``hosts[i - 1]`` with its ports (module docstring), data dir and log."""
        taken: list[int] = []
        peers: list[LocalPeer] = []
        for i, host in enumerate(hosts, start=1):
            port, gport, s3_port = _peer_ports(
                i, host, taken, base_port, gossip_base_port, s3_base_port
            )
            peers.append(
                LocalPeer(
                    i,
                    f"peer-{i}",
                    host,
                    port,
                    gport,
                    self.base_dir / f"peer-{i}",
                    self.base_dir / f"peer-{i}.log",
                    s3_port=s3_port,
                    scheme=scheme,
                )
            )
        return peers

    def _check_distinct(self) -> None:
        """Raise LocalClusterError if two ports would be the same on one address."""
        used: dict[tuple[str, int], str] = {}
        for p in self.peers:
            for what, port in (("HTTP", p.port), ("gossip", p.gossip_port), ("S3", p.s3_port)):
                if not port:
                    continue
                other = used.setdefault((p.host, port), f"{p.peer_id} {what}")
                if other != f"{p.peer_id} {what}":
                    raise LocalClusterError(
                        f"{p.peer_id} {what} port {port} on {p.host} is also {other}'s; "
                        "choose other base ports"
                    )

    def __enter__(self) -> LocalCluster:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _client_context(scheme: str, ca_file: Path | None) -> ssl.SSLContext | None:
    """The context the cluster's own polling verifies ``https://`` peers with; None for
    ``http``."""
    if scheme != "https":
        return None
    from dfspeer.tls import client_context

    return client_context(ca_file)


def _peer_ports(
    i: int,
    host: str,
    taken: list[int],
    base_port: int | None,
    gossip_base_port: int | None,
    s3_base_port: int | None,
) -> tuple[int, int, int]:
    """HTTP, gossip and S3 port of peer ``i`` on ``host`` (S3 0: off); a free port is one
    not in ``taken``, and every port chosen is added to it."""
    port = base_port + i - 1 if base_port is not None else free_port(host, taken)
    taken.append(port)
    gport = gossip_base_port + i - 1 if gossip_base_port is not None else free_port(host, taken)
    taken.append(gport)
    s3_port = 0
    if s3_base_port is None or (s3_base_port and base_port is None):
        s3_port = free_port(host, taken)
    elif s3_base_port:
        s3_port = s3_base_port + i - 1
    taken.append(s3_port)
    return port, gport, s3_port
