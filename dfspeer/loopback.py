"""Loopback networking helpers for local clusters: which 127.0.0.x addresses and ports can
be bound, a proxy-free HTTP GET, and child processes that die with their parent."""

from __future__ import annotations

import json
import signal
import socket
import ssl
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from typing import Any

_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def die_with_parent() -> None:
    """In the child before exec (Linux): get SIGKILL when the parent dies, so a crashed
    `dfspeer up`, demo or test run leaves no orphan agents behind."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def host_bindable(host: str) -> bool:
    """True if a TCP socket can bind ``host`` (any port)."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
    except OSError:
        return False
    return True


def choose_hosts(count: int, host_base: int) -> list[str]:
    """``127.0.0.(host_base + i)`` for i in 1..count if all bind, else ``127.0.0.1`` each."""
    hosts = [f"127.0.0.{host_base + i}" for i in range(1, count + 1)]
    if host_base + count <= 254 and all(host_bindable(h) for h in hosts):
        return hosts
    return ["127.0.0.1"] * count


def free_port(host: str, taken: Iterable[int] = ()) -> int:
    """A port free for TCP and UDP on ``host`` (the gossip port needs both)."""
    avoid = set(taken)
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if port in avoid:
            continue
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
                u.bind((host, port))
        except OSError:
            continue
        return port
    raise OSError(f"no free TCP+UDP port on {host}")


def busy_ports(host: str, ports: Iterable[int]) -> list[int]:
    """The ``ports`` on ``host`` that cannot be bound for TCP (with SO_REUSEADDR, as servers
    bind, so TIME_WAIT is no conflict) or UDP; empty if all are free."""
    taken: list[int] = []
    for port in ports:
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            with socket.socket(socket.AF_INET, kind) as s:
                if kind == socket.SOCK_STREAM:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind((host, port))
                except OSError:
                    taken.append(port)
                    break
    return taken


def http_get_json(
    url: str,
    timeout_s: float = 2.0,
    headers: Mapping[str, str] | None = None,
    *,
    context: ssl.SSLContext | None = None,
) -> tuple[int, Any]:
    """``GET url`` without proxies (with ``headers``, e.g. ``Authorization``) -> (status,
    decoded JSON or None); an ``https://`` URL is verified with ``context`` (default: the
    system's CAs). Raises OSError."""
    request = urllib.request.Request(url, headers=dict(headers or {}))
    opener = _NO_PROXY
    if context is not None:
        opener = urllib.request.build_opener(
            urllib.request.ProxyHandler({}), urllib.request.HTTPSHandler(context=context)
        )
    try:
        with opener.open(request, timeout=timeout_s) as resp:
            status, body = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, body = exc.code, exc.read()
    try:
        return status, json.loads(body) if body else None
    except ValueError:
        return status, None
