"""Starting and stopping the agent subprocesses of a local cluster: their environment and
``dfspeer agent`` command lines, a port check before each start, a process group per agent,
and signals sent to those groups.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

from dfspeer.localcluster_base import ClusterBase, LocalClusterError, LocalPeer
from dfspeer.loopback import busy_ports, die_with_parent


class ProcessesMixin(ClusterBase):
    """:class:`~dfspeer.localcluster.LocalCluster`'s agent processes: start, kill, stop."""

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
