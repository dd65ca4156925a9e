"""Waiting on the agents of a :class:`FaultNet` (coroutines for :meth:`FaultNet.run`):
readiness, gossip views, and starting a whole cluster."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping

import aiohttp

from dfspeer.errors import DfsError
from tests.faults.netns import FaultNet


async def wait_ready(
    net: FaultNet, indices: Iterable[int] | None = None, timeout_s: float = 60.0
) -> None:
    """Poll ``GET /ready`` of the (running) hosts until each answers 200.

    Raises AssertionError with the log tail of a host that exits or stays unready."""
    waiting = list(indices if indices is not None else net.running())
    deadline = time.monotonic() + timeout_s
    while waiting:
        host = net.host(waiting[0])
        if not host.running:
            raise AssertionError(f"{host.peer_id} exited\n{net.logs([host.index])}")
        if await net.client(host.index).ready():
            waiting.pop(0)
            continue
        if time.monotonic() > deadline:
            raise AssertionError(
                f"{host.peer_id} not ready after {timeout_s:.0f} s\n{net.logs([host.index])}"
            )
        await asyncio.sleep(0.2)


async def member_states(net: FaultNet, index: int) -> dict[str, str]:
    """Host ``index``'s view ``{peer_id: state}``; {} if it does not answer."""
    try:
        doc = await net.client(index).members()
    except DfsError:
        return {}
    return {str(m.get("id")): str(m.get("state")) for m in doc.get("members", [])}


async def wait_view(
    net: FaultNet,
    alive: Iterable[int],
    *,
    observers: Iterable[int] | None = None,
    timeout_s: float = 60.0,
) -> None:
    """Wait until each observer (default: ``alive``) sees exactly the ``alive`` hosts
    as alive and every other known member as dead or left."""
    want = {net.host(i).peer_id for i in alive}
    watchers = sorted(set(observers if observers is not None else alive))
    deadline = time.monotonic() + timeout_s
    while True:
        views = {net.host(i).peer_id: await member_states(net, i) for i in watchers}
        if all(_view_matches(v, want) for v in views.values()):
            return
        if time.monotonic() > deadline:
            raise AssertionError(
                f"views did not converge to alive={sorted(want)} in {timeout_s:.0f} s: "
                f"{views}\n{net.logs(watchers, lines=15)}"
            )
        await asyncio.sleep(0.3)


async def start_cluster(net: FaultNet, timeout_s: float = 90.0) -> None:
    """Start every host, wait until all are ready and all see all alive."""
    net.start_all()
    await wait_ready(net, timeout_s=timeout_s)
    await wait_view(net, net.indices, timeout_s=timeout_s)


def _view_matches(view: Mapping[str, str], alive: set[str]) -> bool:
    if not view:
        return False
    seen_alive = {p for p, s in view.items() if s == "alive"}
    undecided = {p for p, s in view.items() if p not in alive and s not in ("dead", "left")}
    return seen_alive == alive and not undecided


async def gossip_counter(net: FaultNet, index: int, name: str = "deaths") -> float:
    """``dfspeer_gossip_<name>_total`` from host ``index``'s ``GET /metrics`` (e.g.
    ``deaths``: members that became dead in its view). Raises AssertionError if absent."""
    metric = f"dfspeer_gossip_{name}_total"
    async with aiohttp.ClientSession() as http, http.get(net.host(index).url + "/metrics") as r:
        text = await r.text()
    for line in text.splitlines():
        if line.startswith(metric + " ") or line.startswith(metric + "{"):
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"h{index} /metrics has no {metric}")
