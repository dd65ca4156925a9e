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
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

from dfspeer.loopback import (
    busy_ports,
    choose_hosts,
    die_with_parent,
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


class LocalCluster:
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
        self.ssl_context = None
        if scheme == "https":
            from dfspeer.tls import client_context

            self.ssl_context = client_context(ca_file)
        hosts = choose_hosts(peers, host_base)
        self.distinct_hosts = len(set(hosts)) == peers
        taken: list[int] = []
        self.peers: list[LocalPeer] = []
        for i, host in enumerate(hosts, start=1):
            port = base_port + i - 1 if base_port is not None else free_port(host, taken)
            taken.append(port)
            gport = (
                gossip_base_port + i - 1 if gossip_base_port is not None else free_port(host, taken)
            )
            taken.append(gport)
            s3_port = 0
            if s3_base_port is None or (s3_base_port and base_port is None):
                s3_port = free_port(host, taken)
            elif s3_base_port:
                s3_port = s3_base_port + i - 1
            taken.append(s3_port)
            self.peers.append(
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
        self._check_distinct()

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

    def environment(self) -> dict[str, str]:
        """The agents' environment: the caller's minus ``DFSPEER_*``, plus the settings."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("DFSPEER_")}
        env["PYTHONUNBUFFERED"] = "1"
        for name, value in self.settings.items():
            env["DFSPEER_" + name.upper()] = (
                str(value).lower() if isinstance(value, bool) else str(value)
            )
        return env

    def command(self, peer: LocalPeer) -> list[str]:
        """The ``dfspeer agent`` command line of ``peer``."""
        cmd = [
            self.python,
            "-m",
            "dfspeer",
            "agent",
            "--data-dir",
            str(peer.data_dir),
            "--host",
            peer.host,
            "--port",
            str(peer.port),
            "--gossip-port",
            str(peer.gossip_port),
            "--s3-port",
            str(peer.s3_port),
            "--peer-id",
            peer.peer_id,
            "--cluster-key-file",
            str(self.key_file),
        ]
        if self.admin_token_file is not None:
            cmd += ["--admin-token-file", str(self.admin_token_file)]
        seeds = [p.gossip_address for p in self.peers if p is not peer]
        return cmd + (["--join", *seeds] if seeds else [])

    def start(self) -> None:
        """Start every peer that is not running (returns at once; see :meth:`wait_ready`).

        Raises :class:`LocalClusterError` if a peer's ports are taken.
        """
        self.ensure_key()
        for peer in self.peers:
            if not peer.running:
                self._check_ports(peer)
        for peer in self.peers:
            if not peer.running:
                self.start_peer(peer.index)

    def _check_ports(self, peer: LocalPeer) -> None:
        busy = busy_ports(peer.host, [p for p in (peer.port, peer.gossip_port, peer.s3_port) if p])
        if busy:
            raise LocalClusterError(
                f"{peer.peer_id}: port(s) {', '.join(map(str, busy))} on {peer.host} in use "
                "(another cluster running?); choose other base ports"
            )

    def start_peer(self, index: int) -> LocalPeer:
        """Start (or restart) peer ``index`` with its data dir kept."""
        peer = self.peer(index)
        if peer.running:
            raise LocalClusterError(f"{peer.peer_id} is already running")
        self._check_ports(peer)
        self.ensure_key()
        peer.data_dir.mkdir(parents=True, exist_ok=True)
        with open(peer.log_path, "ab") as log:
            log.write(f"--- starting {peer.peer_id} at {time.ctime()}\n".encode())
            log.flush()
            peer.process = subprocess.Popen(
                self.command(peer),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.environment(),
                start_new_session=True,
                preexec_fn=die_with_parent if sys.platform.startswith("linux") else None,
            )
        return peer

    def kill(self, index: int, sig: int = signal.SIGKILL, timeout_s: float = 10.0) -> int | None:
        """Send ``sig`` to peer ``index``'s process group and wait for it; its exit code."""
        peer = self.peer(index)
        proc = peer.process
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        return proc.returncode

    def stop(self, timeout_s: float = 10.0) -> None:
        """SIGTERM every peer (graceful leave), SIGKILL whatever is left after ``timeout_s``."""
        for peer in self.peers:
            if peer.running and peer.process is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(peer.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        for peer in self.peers:
            if peer.process is None:
                continue
            with contextlib.suppress(subprocess.TimeoutExpired):
                peer.process.wait(max(0.0, deadline - time.monotonic()))
            self.kill(peer.index, signal.SIGKILL)

    def _check_alive(self, peer: LocalPeer) -> None:
        if peer.process is None:
            raise LocalClusterError(f"{peer.peer_id} was never started")
        code = peer.process.poll()
        if code is not None:
            raise LocalClusterError(
                f"{peer.peer_id} exited with code {code}; last lines of {peer.log_path}:\n"
                + peer.log_tail()
            )

    def _check_identity(self, peer: LocalPeer) -> None:
        """Make sure the process answering on the peer's port is ours."""
        try:
            _, doc = http_get_json(
                peer.url + "/v1/cluster/status", headers=self.headers, context=self.ssl_context
            )
        except OSError:
            doc = None
        found = doc.get("id") if isinstance(doc, dict) else None
        if found != peer.peer_id:
            self._check_alive(peer)
            raise LocalClusterError(
                f"{peer.url} is answered by peer {found!r}, not {peer.peer_id}: "
                "its port belongs to another process"
            )

    def wait_ready(self, timeout_s: float = 60.0, indices: Iterable[int] | None = None) -> None:
        """Poll ``GET /ready`` until every (selected) peer answers 200.

        Raises :class:`LocalClusterError` (with the peer's log tail) if a peer exits or the
        deadline passes.
        """
        waiting = [self.peer(i) for i in (indices or range(1, len(self.peers) + 1))]
        deadline = time.monotonic() + timeout_s
        while waiting:
            peer = waiting[0]
            self._check_alive(peer)
            try:
                status, _ = http_get_json(
                    peer.url + "/ready", timeout_s=1.0, context=self.ssl_context
                )
            except OSError:
                status = 0
            if status == 200:
                self._check_identity(peer)
                waiting.pop(0)
                continue
            if time.monotonic() > deadline:
                raise LocalClusterError(
                    f"{peer.peer_id} not ready after {timeout_s:.0f} s (last status {status});"
                    f" last lines of {peer.log_path}:\n{peer.log_tail()}"
                )
            time.sleep(0.1)

    def member_states(self, index: int) -> dict[str, str]:
        """Peer ``index``'s view: ``{peer_id: state}``; ``{}`` if it does not answer."""
        try:
            status, doc = http_get_json(
                self.peer(index).url + "/v1/cluster/members",
                headers=self.headers,
                context=self.ssl_context,
            )
        except OSError:
            return {}
        if status != 200 or not isinstance(doc, dict):
            return {}
        return {str(m.get("id")): str(m.get("state")) for m in doc.get("members", [])}

    def wait_view(
        self,
        alive: Iterable[int],
        timeout_s: float = 30.0,
        *,
        observers: Iterable[int] | None = None,
    ) -> None:
        """Wait until every observer (default: the ``alive`` peers) sees exactly the
        ``alive`` peers as alive and every other peer of the cluster as dead, left or not
        at all (a suspect does not count as gone yet)."""
        alive_set = sorted(set(alive))
        want = {self.peer(i).peer_id for i in alive_set}
        watchers = list(observers) if observers is not None else alive_set
        deadline = time.monotonic() + timeout_s
        while True:
            views = {i: self.member_states(i) for i in watchers}
            if all(_view_matches(v, want) for v in views.values()):
                return
            if time.monotonic() > deadline:
                raise LocalClusterError(
                    f"views did not converge to alive={sorted(want)} in {timeout_s:.0f} s: {views}"
                )
            time.sleep(0.2)


def _view_matches(view: Mapping[str, str], alive: set[str]) -> bool:
    if not view:
        return False
    seen_alive = {p for p, s in view.items() if s == "alive"}
    undecided = {p for p, s in view.items() if p not in alive and s not in ("dead", "left")}
    return seen_alive == alive and not undecided
