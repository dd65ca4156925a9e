"""FaultNet: dfspeer agents, each in its own Linux network namespace on a private bridge.

Layout (``<p>`` = ``dfs-<pid>-<seq>``)::

    namespace <p>-hub : bridge br0 = 10.213.0.1/24, veth ends vh1..vhN enslaved to br0
    namespace <p>-hN  : lo, eth0 = 10.213.0.(10+N)/24 (peer of vhN); `dfspeer agent hN`

The subnet lives only inside these namespaces: nothing is routed to or from any other
network, and the host's own namespace is not touched at all (no interface, no route).
The test process reaches the agents from a thread that entered the hub namespace
(:class:`~tests.faults.nsutil.NetnsLoop`): write the test as a coroutine and hand it to
:meth:`FaultNet.run`; every :class:`dfspeer.Client` it makes lives on that thread.
Because the hub is outside every host namespace, a partition between hosts never cuts the
test's own view: it can talk to both sides.

Faults (all per host ``i``, 1-based):

- processes: :meth:`start`, :meth:`stop` (SIGTERM, graceful leave), :meth:`kill`
  (SIGKILL by default), :meth:`restart`, :meth:`wipe` (empty data dir);
- links: :meth:`link_down` / :meth:`link_up` (the bridge-side veth end, so the host keeps
  its address and route, as when a cable is pulled);
- partitions: :meth:`partition` ``([1, 2], [3, 4, 5])`` and :meth:`heal`. ``mode="drop"``
  (default) gives each host a permanent neighbour entry with an unused MAC for every host
  on the other side, so frames are silently dropped (timeouts, as with a real split);
  ``mode="reject"`` installs ``unreachable`` routes instead (fast errors);
- packets: :meth:`set_loss` (netem, else a BPF random-drop classifier) and
  :meth:`set_delay` (netem only) on both directions of the host's link; :meth:`clear_shaping`.

Waiting for readiness and gossip views is in :mod:`tests.faults.membership`, the
invariants in :mod:`tests.faults.checks`.

Everything is deleted by :meth:`close` (also the context-manager exit) even after a
failure; namespaces left by a crashed run are deleted on the next one
(:func:`~tests.faults.nsutil.cleanup_stale`). Agents also die with the test process
(``setpriv --pdeathsig KILL``).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Coroutine, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

from dfspeer.client import Client
from dfspeer.errors import DfsError
from dfspeer.loopback import die_with_parent
from tests.faults import nsutil
from tests.faults.nsutil import NetError, NetnsLoop, ip

T = TypeVar("T")
SUBNET = "10.213.0"
HUB_IP = f"{SUBNET}.1"
API_PORT = 7070
GOSSIP_PORT = 7946
UNUSED_MAC = "02:00:00:00:00:00"
REPO_ROOT = Path(__file__).resolve().parents[2]
_SEQ = itertools.count(1)


@dataclass
class FaultHost:
    """One host: its namespace, address, data dir, log and agent process."""

    index: int
    ns: str
    ip: str
    data_dir: Path
    log_path: Path
    hub_if: str
    process: subprocess.Popen[bytes] | None = None

    @property
    def peer_id(self) -> str:
        return f"h{self.index}"

    @property
    def address(self) -> str:
        """API ``host:port`` (what peers call each other by)."""
        return f"{self.ip}:{API_PORT}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def gossip_address(self) -> str:
        return f"{self.ip}:{GOSSIP_PORT}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        """The last ``lines`` lines of the agent's log ('' if none)."""
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class FaultNet:
    """``hosts`` namespaces on one bridge under ``base_dir``; a context manager.

    ``settings`` maps :class:`~dfspeer.config.PeerConfig` field names to values, given to
    every agent as ``DFSPEER_*`` variables. Raises :class:`NetError` if namespaces cannot
    be made here (see :func:`~tests.faults.nsutil.support_problem`).
    """

    def __init__(
        self,
        base_dir: Path,
        hosts: int = 5,
        *,
        settings: Mapping[str, object] | None = None,
        python: str = sys.executable,
    ) -> None:
        self.base_dir = Path(base_dir)
        self.settings = dict(settings or {})
        self.python = python
        self.seq = next(_SEQ)
        self.hub = nsutil.ns_name(self.seq, "hub")
        self.hosts: list[FaultHost] = []
        self.key_file = self.base_dir / "cluster.key"
        self.admin_token_file = self.base_dir / "admin.token"
        self._initial_hosts = hosts
        self._loop: NetnsLoop | None = None
        self._clients: dict[int, Client] = {}
        self._partitioned: list[tuple[str, str, str]] = []

    # ------------------------------------------------------------------ lifecycle
    def __enter__(self) -> FaultNet:
        problem = nsutil.support_problem()
        if problem is not None:
            raise NetError(problem)
        nsutil.cleanup_stale()
        try:
            self.base_dir.mkdir(parents=True, exist_ok=True)
            self._make_key()
            # dfspeer.Client(url) of the tests authenticates as the admin (until close)
            self._token_env_before = os.environ.get("DFSPEER_ADMIN_TOKEN")
            os.environ["DFSPEER_ADMIN_TOKEN"] = self.admin_token
            ip(f"netns add {self.hub}")
            ip(f"-n {self.hub} link set lo up")
            ip(f"-n {self.hub} link add br0 type bridge")
            ip(f"-n {self.hub} addr add {HUB_IP}/24 dev br0")
            ip(f"-n {self.hub} link set br0 up")
            for _ in range(self._initial_hosts):
                self.add_host()
            self._loop = NetnsLoop(self.hub)
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _make_key(self) -> None:
        if not self.key_file.exists():
            from dfspeer.commands.agent import write_key_file
            from dfspeer.gossip import generate_key

            write_key_file(self.key_file, generate_key())
        if not self.admin_token_file.exists():
            from dfspeer.access.credentials import new_admin_token, write_secret_file

            write_secret_file(self.admin_token_file, new_admin_token())

    @property
    def admin_token(self) -> str:
        """The agents' admin token (``admin_token_file``)."""
        from dfspeer.access.credentials import load_admin_token

        self._make_key()
        return load_admin_token(self.admin_token_file)

    @property
    def headers(self) -> dict[str, str]:
        """``Authorization`` as the admin, for raw HTTP clients of the agents."""
        return {"Authorization": f"Bearer {self.admin_token}"}

    def add_host(self) -> FaultHost:
        """Create the next host namespace, wired to the bridge (agent not started)."""
        index = len(self.hosts) + 1
        host = FaultHost(
            index,
            nsutil.ns_name(self.seq, f"h{index}"),
            f"{SUBNET}.{10 + index}",
            self.base_dir / f"h{index}",
            self.base_dir / f"h{index}.log",
            f"vh{index}",
        )
        self.hosts.append(host)
        hub, ns, veth = self.hub, host.ns, host.hub_if
        ip(f"netns add {ns}")
        ip(f"-n {ns} link set lo up")
        ip(f"-n {hub} link add {veth} type veth peer name eth0 netns {ns}")
        ip(f"-n {hub} link set {veth} master br0")
        ip(f"-n {hub} link set {veth} up")
        ip(f"-n {ns} addr add {host.ip}/24 dev eth0")
        ip(f"-n {ns} link set eth0 up")
        host.data_dir.mkdir(parents=True, exist_ok=True)
        return host

    def close(self) -> None:
        """Stop every agent, close clients, delete every namespace (idempotent)."""
        with contextlib.suppress(Exception):
            self.stop_all(timeout_s=5.0)
        if self._loop is not None:
            with contextlib.suppress(Exception):
                self._loop.run(self._close_clients(), timeout_s=10)
            self._loop.close()
            self._loop = None
        for host in self.hosts:
            nsutil.delete_namespace(host.ns)
        nsutil.delete_namespace(self.hub)
        before = getattr(self, "_token_env_before", None)
        if before is None:
            os.environ.pop("DFSPEER_ADMIN_TOKEN", None)
        else:
            os.environ["DFSPEER_ADMIN_TOKEN"] = before

    async def _close_clients(self) -> None:
        for client in self._clients.values():
            await client.close()
        self._clients.clear()

    # ------------------------------------------------------------------ access
    def host(self, index: int) -> FaultHost:
        """Host by 1-based index."""
        return self.hosts[index - 1]

    @property
    def indices(self) -> list[int]:
        return [h.index for h in self.hosts]

    def running(self) -> list[int]:
        """Indices of the hosts whose agent runs."""
        return [h.index for h in self.hosts if h.running]

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float | None = 300.0) -> T:
        """Run ``coro`` on the hub-namespace loop and return its result."""
        if self._loop is None:
            raise RuntimeError("FaultNet is not open")
        return self._loop.run(coro, timeout_s)

    def client(self, index: int, timeout_s: float = 30.0) -> Client:
        """A :class:`dfspeer.Client` of host ``index`` (call from coroutines run by :meth:`run`)."""
        if index not in self._clients:
            self._clients[index] = Client(
                self.host(index).url, timeout_s=timeout_s, token=self.admin_token
            )
        return self._clients[index]

    def logs(self, indices: Iterable[int] | None = None, lines: int = 30) -> str:
        """Log tails of the given hosts (default: all), for assertion messages."""
        parts = []
        for i in indices if indices is not None else self.indices:
            h = self.host(i)
            state = "running" if h.running else f"exited {h.process and h.process.poll()}"
            parts.append(f"----- {h.peer_id} ({state}) {h.log_path}:\n{h.log_tail(lines)}")
        return "\n".join(parts)

    # ------------------------------------------------------------------ agents
    def environment(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DFSPEER_")}
        env["PYTHONUNBUFFERED"] = "1"
        env["PYTHONFAULTHANDLER"] = "1"  # SIGABRT dumps every thread's stack to the log
        for name, value in self.settings.items():
            text = str(value).lower() if isinstance(value, bool) else str(value)
            env["DFSPEER_" + name.upper()] = text
        return env

    def command(self, host: FaultHost) -> list[str]:
        """``ip netns exec <ns> [setpriv --pdeathsig KILL] python -m dfspeer agent ...``."""
        seeds = [h.gossip_address for h in self.hosts if h is not host]
        agent = [self.python, "-m", "dfspeer", "agent", "--data-dir", str(host.data_dir)]
        agent += f"--host {host.ip} --port {API_PORT} --gossip-port {GOSSIP_PORT}".split()
        agent += ["--peer-id", host.peer_id, "--cluster-key-file", str(self.key_file)]
        agent += ["--admin-token-file", str(self.admin_token_file)]
        agent += ["--join", *seeds] if seeds else []
        return ["ip", "netns", "exec", host.ns, *_pdeathsig_prefix(), *agent]

    def start(self, index: int) -> FaultHost:
        """Start host ``index``'s agent (data dir kept); returns at once."""
        host = self.host(index)
        if host.running:
            raise RuntimeError(f"{host.peer_id} is already running")
        host.data_dir.mkdir(parents=True, exist_ok=True)
        with open(host.log_path, "ab") as log:
            log.write(f"--- starting {host.peer_id} at {time.ctime()}\n".encode())
            log.flush()
            host.process = subprocess.Popen(
                self.command(host),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=self.environment(),
                cwd=REPO_ROOT,
                start_new_session=True,
                preexec_fn=None if _pdeathsig_prefix() else die_with_parent,
            )
        return host

    def start_all(self) -> None:
        for host in self.hosts:
            if not host.running:
                self.start(host.index)

    def kill(self, index: int, sig: int = signal.SIGKILL, timeout_s: float = 10.0) -> int | None:
        """Send ``sig`` to the agent's process group, wait for it; its exit code."""
        proc = self.host(index).process
        if proc is None:
            return None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, sig)
            try:
                proc.wait(timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        return proc.returncode

    def stop(self, index: int, timeout_s: float = 10.0) -> int | None:
        """SIGTERM (graceful leave), SIGKILL after ``timeout_s``; the exit code."""
        return self.kill(index, signal.SIGTERM, timeout_s)

    def stop_all(self, timeout_s: float = 10.0) -> None:
        for host in self.hosts:
            if host.running and host.process is not None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(host.process.pid, signal.SIGTERM)
        for host in self.hosts:
            self.kill(host.index, signal.SIGTERM, timeout_s)

    def restart(self, index: int) -> FaultHost:
        """SIGKILL (if running) and start again with the same data dir."""
        self.kill(index)
        return self.start(index)

    def wipe(self, index: int) -> None:
        """Delete host ``index``'s data dir (the agent must be stopped)."""
        host = self.host(index)
        if host.running:
            raise RuntimeError(f"stop {host.peer_id} before wiping its data dir")
        shutil.rmtree(host.data_dir, ignore_errors=True)
        host.data_dir.mkdir(parents=True)

    # ------------------------------------------------------------------ network faults
    def link_down(self, index: int) -> None:
        """Cut host ``index`` off the bridge (every packet to or from it is lost)."""
        ip(f"-n {self.hub} link set {self.host(index).hub_if} down")

    def link_up(self, index: int) -> None:
        ip(f"-n {self.hub} link set {self.host(index).hub_if} up")

    def partition(self, *groups: Iterable[int], mode: str = "drop") -> None:
        """Split the hosts into ``groups``: no packet crosses between groups (the hub
        still reaches everyone). ``mode``: "drop" (silent) or "reject" (unreachable)."""
        if mode not in ("drop", "reject"):
            raise ValueError(f"mode must be 'drop' or 'reject', got {mode!r}")
        sides = [sorted(set(g)) for g in groups]
        for side in sides:
            others = [i for s in sides if s is not side for i in s]
            for a in side:
                for b in others:
                    self._cut(self.host(a), self.host(b).ip, mode)

    def _cut(self, host: FaultHost, other_ip: str, mode: str) -> None:
        if mode == "drop":
            ip(f"-n {host.ns} neigh replace {other_ip} lladdr {UNUSED_MAC} dev eth0 nud permanent")
        else:
            ip(f"-n {host.ns} route add unreachable {other_ip}/32")
        self._partitioned.append((host.ns, other_ip, mode))

    def heal(self) -> None:
        """Undo every :meth:`partition`."""
        for ns, other_ip, mode in self._partitioned:
            if mode == "drop":
                ip(f"-n {ns} neigh del {other_ip} dev eth0", check=False)
            else:
                ip(f"-n {ns} route del unreachable {other_ip}/32", check=False)
        self._partitioned.clear()

    def _links(self, index: int, both: bool) -> list[tuple[str, str]]:
        host = self.host(index)
        return [(host.ns, "eth0")] + ([(self.hub, host.hub_if)] if both else [])

    def set_loss(self, index: int, percent: float, *, both_directions: bool = True) -> None:
        """Drop ``percent`` % of host ``index``'s outgoing packets (and, with
        ``both_directions``, of those sent to it). Raises NetError if unsupported."""
        for ns, dev in self._links(index, both_directions):
            nsutil.set_loss(ns, dev, percent)

    def set_delay(self, index: int, delay_ms: float, *, both_directions: bool = True) -> None:
        """Delay host ``index``'s packets (netem). Raises NetError without sch_netem."""
        for ns, dev in self._links(index, both_directions):
            nsutil.set_delay(ns, dev, delay_ms)

    def dropped_packets(self, index: int) -> int:
        """Packets dropped so far by the shaping on host ``index``'s link (both ends)."""
        return sum(nsutil.dropped_packets(ns, dev) for ns, dev in self._links(index, True))

    def clear_shaping(self, index: int) -> None:
        for ns, dev in self._links(index, True):
            nsutil.clear_qdisc(ns, dev)

    def dump_stacks(self, index: int) -> str:
        """SIGABRT host ``index``'s agent (it dies: diagnosis of a hung peer only) and
        return the end of its log, with every thread's stack from faulthandler."""
        self.kill(index, signal.SIGABRT)
        return self.host(index).log_tail(80)

    async def unresponsive(self, timeout_s: float = 5.0) -> list[int]:
        """Running hosts that do not answer ``GET /v1/cluster/status`` within ``timeout_s``."""

        async def answers(i: int) -> bool:
            try:
                async with asyncio.timeout(timeout_s):
                    await self.client(i).status()
            except (TimeoutError, DfsError):
                return False
            return True

        alive = self.running()
        ok = await asyncio.gather(*(answers(i) for i in alive))
        return [i for i, good in zip(alive, ok, strict=True) if not good]

    # ------------------------------------------------------------------ tools
    async def cli(self, *args: str, timeout_s: float = 300.0) -> subprocess.CompletedProcess[str]:
        """Run ``python -m dfspeer ARGS`` in the hub namespace (off the loop)."""
        argv = ["ip", "netns", "exec", self.hub, self.python, "-m", "dfspeer", *args]
        return await asyncio.to_thread(
            subprocess.run,
            argv,
            capture_output=True,
            text=True,
            timeout=timeout_s,
            env={**self.environment(), "DFSPEER_ADMIN_TOKEN": self.admin_token},
            cwd=REPO_ROOT,
            stdin=subprocess.DEVNULL,
        )


def _pdeathsig_prefix() -> list[str]:
    """``setpriv --pdeathsig KILL --`` when util-linux's setpriv exists (safer than a
    preexec_fn in a threaded process), else [] and :func:`die_with_parent` is used."""
    return ["setpriv", "--pdeathsig", "KILL", "--"] if shutil.which("setpriv") else []
