"""A local cluster of ``dfspeer agent`` subprocesses on loopback, for ``dfspeer up``, the
demo and the integration tests.

Peer ``i`` (1-based) binds ``127.0.0.(host_base + i)`` when that address can be bound
(Linux routes all of 127.0.0.0/8 to ``lo``), else ``127.0.0.1``; its HTTP port is
``base_port + i - 1`` and its gossip port ``gossip_base_port + i - 1`` (or free ports
picked at start when the base is ``None``). Every agent runs in its own process group
(so a kill reaches nothing else), logs to ``<base_dir>/peer-i.log``, keeps its data in
``<base_dir>/peer-i/``, uses the cluster key ``<base_dir>/cluster.key`` (made on first
use) and joins through every other peer's gossip address. Settings go to the agents as
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

    @property
    def url(self) -> str:
        """Base URL of the peer's HTTP API."""
        return f"http://{self.host}:{self.port}"

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
    agent (e.g. ``{"probe_interval_s": 0.3}``).
    """

    def __init__(
        self,
        base_dir: Path,
        peers: int = 3,
        *,
        base_port: int | None = 7070,
        gossip_base_port: int | None = 7946,
        host_base: int = 10,
        settings: Mapping[str, object] | None = None,
        key_file: Path | None = None,
        python: str = sys.executable,
    ) -> None:
        if peers < 1:
            raise ValueError("a cluster needs at least one peer")
        self.base_dir = Path(base_dir)
        self.settings = dict(settings or {})
        self.key_file = key_file or self.base_dir / "cluster.key"
        self.python = python
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
            self.peers.append(
                LocalPeer(
                    i,
                    f"peer-{i}",
                    host,
                    port,
                    gport,
                    self.base_dir / f"peer-{i}",
                    self.base_dir / f"peer-{i}.log",
                )
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
        """Create the cluster key file (mode 0600) unless it exists; return its path."""
        if not self.key_file.exists():
            from dfspeer.commands.agent import write_key_file
            from dfspeer.gossip import generate_key

            self.key_file.parent.mkdir(parents=True, exist_ok=True)
            write_key_file(self.key_file, generate_key())
        return self.key_file

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
            "--peer-id",
            peer.peer_id,
            "--cluster-key-file",
            str(self.key_file),
        ]
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
        busy = busy_ports(peer.host, (peer.port, peer.gossip_port))
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
            _, doc = http_get_json(peer.url + "/v1/cluster/status")
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
                status, _ = http_get_json(peer.url + "/ready", timeout_s=1.0)
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
            status, doc = http_get_json(self.peer(index).url + "/v1/cluster/members")
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
