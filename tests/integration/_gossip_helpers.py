"""Helpers for gossip process tests: spawn ``tests.integration.gossip_node`` processes on
loopback aliases and observe them over their HTTP endpoint."""

from __future__ import annotations

import base64
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

REPO_ROOT = Path(__file__).resolve().parents[2]

# Fast timers so detection takes about a second (flags of gossip_node).
FAST_TIMERS = [
    "--probe-interval",
    "0.2",
    "--probe-timeout",
    "0.1",
    "--gossip-interval",
    "0.05",
    "--suspicion-mult",
    "2",
    "--push-pull-interval",
    "2",
]

T = TypeVar("T")


def loopback_unavailable(hosts: list[str]) -> str | None:
    """A reason to skip if any of ``hosts`` cannot be bound (UDP), else None."""
    for host in hosts:
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                s.bind((host, 0))
        except OSError as exc:
            return f"cannot bind loopback alias {host}: {exc}"
    return None


def ports_busy(addresses: list[tuple[str, int]]) -> str | None:
    """A reason to skip if any (host, port) is taken for UDP or TCP, else None."""
    for host, port in addresses:
        for kind in (socket.SOCK_DGRAM, socket.SOCK_STREAM):
            with socket.socket(socket.AF_INET, kind) as s:
                if kind == socket.SOCK_STREAM:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind((host, port))
                except OSError as exc:
                    return f"port {host}:{port} is taken: {exc}"
    return None


def write_key_file(path: Path) -> Path:
    """A cluster key file with one fresh base64 32-byte key."""
    path.write_text("# test cluster key\n" + base64.b64encode(os.urandom(32)).decode() + "\n")
    return path


@dataclass
class GossipProc:
    """One gossip_node process (its own process group) and how to reach it."""

    node_id: str
    host: str
    port: int
    http_port: int
    key_file: Path
    log_dir: Path
    join: list[str] = field(default_factory=list)
    proc: subprocess.Popen[bytes] | None = None
    starts: int = 0

    @property
    def gossip(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self) -> None:
        cmd = [
            sys.executable,
            "-m",
            "tests.integration.gossip_node",
            "--id",
            self.node_id,
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--http-port",
            str(self.http_port),
            "--key-file",
            str(self.key_file),
            "--log-level",
            "debug",
            *FAST_TIMERS,
        ]
        for seed in self.join:
            cmd += ["--join", seed]
        self.starts += 1
        log = open(self.log_dir / f"{self.node_id}.{self.starts}.log", "wb")  # noqa: SIM115
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "PYTHONUNBUFFERED": "1"}
        with log:
            self.proc = subprocess.Popen(
                cmd,
                cwd=REPO_ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def signal(self, sig: int) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, sig)

    def kill(self) -> None:
        """SIGKILL the whole process group and reap it."""
        if self.proc is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def get(self, path: str) -> Any:
        url = f"http://{self.host}:{self.http_port}{path}"
        with urllib.request.urlopen(url, timeout=2) as resp:
            return json.loads(resp.read())

    def post(self, path: str) -> Any:
        req = urllib.request.Request(f"http://{self.host}:{self.http_port}{path}", method="POST")
        with urllib.request.urlopen(req, timeout=5) as resp:
            return json.loads(resp.read())

    def view(self) -> dict[str, dict[str, Any]] | None:
        """id -> member row as this node sees it, or None if the node does not answer."""
        try:
            body = self.get("/members")
        except (OSError, urllib.error.URLError, ValueError):
            return None
        return {m["id"]: m for m in body["members"]}

    def log_tail(self, lines: int = 40) -> str:
        path = self.log_dir / f"{self.node_id}.{self.starts}.log"
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def wait_for(
    what: str,
    probe: Callable[[], T | None],
    *,
    timeout_s: float,
    on_fail: Callable[[], str] = lambda: "",
) -> T:
    """Poll ``probe`` every 0.1 s until it returns a truthy value; fail with ``what``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            msg = f"timed out after {timeout_s:.0f} s waiting for {what}"
            raise AssertionError(f"{msg}\n{on_fail()}")
        time.sleep(0.1)


def iter_views(nodes: list[GossipProc]) -> Iterator[tuple[GossipProc, dict[str, dict[str, Any]]]]:
    """(node, view) for each node that answers."""
    for node in nodes:
        view = node.view()
        if view is not None:
            yield node, view
