"""Low-level Linux network-namespace primitives for the fault harness (iproute2 only).

- :func:`ip` / :func:`tc`: run one iproute2 command, raise :class:`NetError` with its stderr.
- :func:`support_problem`: why namespaces cannot be used here (not root, no ``ip``, no
  CAP_SYS_ADMIN, no veth/bridge), or ``None``.
- :func:`loss_method`: how packet loss can be emulated on this kernel: ``"netem"``
  (``sch_netem``), ``"bpf"`` (a classic-BPF classifier drawing ``ld rand`` that sends the
  chosen fraction of packets into a ``pfifo limit 0`` class under ``htb``; needs only
  ``sch_htb``, ``cls_bpf`` and ``sch_fifo``, which kernels without ``sch_netem`` often
  still have) or ``None``. Delay needs netem.
- :func:`cleanup_stale`: delete ``dfs-<pid>-*`` namespaces whose creator pid is dead
  (crashed earlier runs), and :func:`cleanup_own` those of this process.
- :class:`NetnsLoop`: a thread that has entered one namespace (``setns(2)``, which moves
  only the calling thread) and runs an asyncio loop there; sockets made by coroutines run
  on it live in that namespace. The test process reaches the hosts this way without
  touching the host's own network.

Every namespace this harness makes is named ``dfs-<pid>-<seq>-<role>``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import functools
import os
import re
import shutil
import signal
import subprocess
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")
NS_PREFIX = "dfs-"
_NS_RE = re.compile(r"^dfs-(\d+)-")
_CLONE_NEWNET = 0x40000000
_NETNS_DIR = "/var/run/netns"
# Classic BPF (struct sock_filter as "code jt jf k") drawing a random u32 per packet:
#   ld rand ; jge #threshold, keep, drop ; drop: ret #-1 (filter's classid) ; keep: ret #0
_SKF_AD_RANDOM = 0xFFFFF000 + 56


class NetError(RuntimeError):
    """An iproute2 command failed; the message has the command and its stderr."""


def _run(argv: list[str], check: bool = True, timeout_s: float = 30.0) -> str:
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=timeout_s, stdin=subprocess.DEVNULL
    )
    if check and proc.returncode != 0:
        raise NetError(f"`{' '.join(argv)}` failed ({proc.returncode}): {proc.stderr.strip()}")
    return proc.stdout


def ip(cmd: str, *extra: str, check: bool = True) -> str:
    """``ip`` with the words of ``cmd`` plus ``extra`` (unsplit); its stdout.
    Raises NetError (unless ``check`` is False)."""
    return _run(["ip", *cmd.split(), *extra], check)


def tc(cmd: str, *extra: str, check: bool = True) -> str:
    """``tc`` with the words of ``cmd`` plus ``extra`` (unsplit); its stdout.
    Raises NetError (unless ``check`` is False)."""
    return _run(["tc", *cmd.split(), *extra], check)


def ns_name(seq: int, role: str) -> str:
    """``dfs-<pid>-<seq>-<role>``: unique per process and harness instance."""
    return f"{NS_PREFIX}{os.getpid()}-{seq}-{role}"


def list_namespaces() -> list[str]:
    """Names of the named network namespaces (``ip netns list``)."""
    out = ip("netns list", check=False)
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def delete_namespace(name: str) -> None:
    """SIGKILL every process left inside ``name``, then delete it (no error if gone)."""
    for pid_text in ip(f"netns pids {name}", check=False).split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(pid_text), signal.SIGKILL)
    ip(f"netns del {name}", check=False)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def cleanup_stale() -> list[str]:
    """Delete ``dfs-<pid>-*`` namespaces whose pid no longer runs; their names."""
    gone = []
    for name in list_namespaces():
        m = _NS_RE.match(name)
        if m and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1))):
            delete_namespace(name)
            gone.append(name)
    return gone


def cleanup_own() -> list[str]:
    """Delete every namespace this process made (session finalizer / atexit)."""
    mine = f"{NS_PREFIX}{os.getpid()}-"
    names = [n for n in list_namespaces() if n.startswith(mine)]
    # hosts first, the hub (holding the bridge) last
    for name in sorted(names, key=lambda n: n.endswith("-hub")):
        delete_namespace(name)
    return names


@functools.cache
def support_problem() -> str | None:
    """Why the fault harness cannot run here, or None if it can."""
    if os.name != "posix" or not hasattr(os, "geteuid"):
        return "network namespaces need Linux"
    if os.geteuid() != 0:
        return "the fault harness needs root (it creates network namespaces, veths, a bridge)"
    if shutil.which("ip") is None:
        return "iproute2 (`ip`) is not installed"
    probe = ns_name(0, "probe")
    try:
        ip(f"netns add {probe}")
    except (NetError, OSError) as exc:
        return f"`ip netns add` fails (no CAP_SYS_ADMIN?): {exc}"
    try:
        ip(f"-n {probe} link add br0 type bridge")
        ip(f"-n {probe} link add va type veth peer name vb")
    except NetError as exc:
        return f"cannot create a bridge and a veth pair in a namespace: {exc}"
    finally:
        delete_namespace(probe)
    return None


@functools.cache
def loss_method() -> str | None:
    """``"netem"``, ``"bpf"`` or None: how :func:`set_loss` can drop packets here."""
    if support_problem() is not None or shutil.which("tc") is None:
        return None
    probe = ns_name(0, "qdisc-probe")
    try:
        ip(f"netns add {probe}")
        ip(f"-n {probe} link set lo up")
        tc(f"-n {probe} qdisc add dev lo root netem loss 1%", check=False)
        if "netem" in tc(f"-n {probe} qdisc show dev lo", check=False):
            return "netem"
        try:
            _bpf_loss(probe, "lo", 1.0)
        except NetError:
            return None
        return "bpf"
    except NetError:
        return None
    finally:
        delete_namespace(probe)


def netem_available() -> bool:
    """True if ``sch_netem`` works (needed for delay; loss has a fallback)."""
    return loss_method() == "netem"


def _bpf_loss(ns: str, dev: str, percent: float) -> None:
    threshold = min(0xFFFFFFFF, int(percent / 100.0 * 2**32))
    program = f"4,32 0 0 {_SKF_AD_RANDOM},53 1 0 {threshold},6 0 0 4294967295,6 0 0 0"
    tc(f"-n {ns} qdisc add dev {dev} root handle 1: htb default 1 r2q 100000")
    for cls in ("1:1", "1:2"):
        tc(f"-n {ns} class add dev {dev} parent 1: classid {cls} htb rate 10gbit quantum 60000")
    tc(f"-n {ns} qdisc add dev {dev} parent 1:2 handle 20: pfifo limit 0")
    tc(
        f"-n {ns} filter add dev {dev} parent 1: protocol all prio 1 bpf bytecode",
        program,
        "classid",
        "1:2",
    )


def clear_qdisc(ns: str, dev: str) -> None:
    """Remove any root qdisc from ``dev`` in ``ns`` (no error if there is none)."""
    tc(f"-n {ns} qdisc del dev {dev} root", check=False)


def set_loss(ns: str, dev: str, percent: float) -> None:
    """Drop ``percent`` % of the packets leaving ``dev`` in ``ns`` (netem, else BPF).

    Raises NetError if this kernel offers neither (see :func:`loss_method`)."""
    method = loss_method()
    clear_qdisc(ns, dev)
    if method == "netem":
        tc(f"-n {ns} qdisc add dev {dev} root netem loss {percent}%")
    elif method == "bpf":
        _bpf_loss(ns, dev, percent)
    else:
        raise NetError("neither sch_netem nor htb+cls_bpf is available: cannot drop packets")


def dropped_packets(ns: str, dev: str) -> int:
    """Packets the root qdisc of ``dev`` in ``ns`` dropped so far (0 if none)."""
    m = re.search(r"dropped (\d+)", tc(f"-s -n {ns} qdisc show dev {dev}", check=False))
    return int(m.group(1)) if m else 0


def set_delay(ns: str, dev: str, delay_ms: float, jitter_ms: float = 0.0) -> None:
    """Delay the packets leaving ``dev`` in ``ns`` by ``delay_ms`` (+- ``jitter_ms``) ms.

    Raises NetError without sch_netem."""
    if not netem_available():
        raise NetError("sch_netem is not available in this kernel: cannot delay packets")
    clear_qdisc(ns, dev)
    jitter = f" {jitter_ms}ms" if jitter_ms else ""
    tc(f"-n {ns} qdisc add dev {dev} root netem delay {delay_ms}ms{jitter}")


def _enter_netns(name: str) -> None:
    """Move the calling thread into network namespace ``name``. Raises OSError."""
    fd = os.open(os.path.join(_NETNS_DIR, name), os.O_RDONLY)
    try:
        setns = getattr(os, "setns", None)
        if setns is not None:  # Python >= 3.12
            setns(fd, _CLONE_NEWNET)
            return
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.setns(fd, _CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns({name}): {os.strerror(err)}")
    finally:
        os.close(fd)


class NetnsLoop:
    """An asyncio loop on a thread inside network namespace ``name``.

    :meth:`run` submits a coroutine and waits for its result (re-raising its exception);
    threads the loop starts (``asyncio.to_thread``) inherit the namespace.
    """

    def __init__(self, name: str) -> None:
        self.name = name
        self.loop = asyncio.new_event_loop()
        self._ready: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(target=self._main, name=f"netns-{name}", daemon=True)
        self._thread.start()
        self._ready.result(timeout=10)

    def _main(self) -> None:
        try:
            _enter_netns(self.name)
        except OSError as exc:
            self._ready.set_exception(exc)
            return
        asyncio.set_event_loop(self.loop)
        self._ready.set_result(None)
        self.loop.run_forever()
        self.loop.run_until_complete(self.loop.shutdown_asyncgens())
        self.loop.close()

    def run(self, coro: Coroutine[Any, Any, T], timeout_s: float | None = None) -> T:
        """Run ``coro`` on the loop; its result. On timeout the coroutine is cancelled and
        TimeoutError raised."""
        future = asyncio.run_coroutine_threadsafe(coro, self.loop)
        try:
            return future.result(timeout_s)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"coroutine did not finish in {timeout_s} s") from None

    def close(self) -> None:
        """Stop the loop and join the thread (idempotent)."""
        if self._thread.is_alive():
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
