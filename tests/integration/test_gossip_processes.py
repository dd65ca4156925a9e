"""Five real gossip processes on 127.0.0.11..15: join through one seed and converge; a
SIGKILLed member is suspected then declared dead; restarted with the same id it rejoins
alive with a higher incarnation; a graceful leave is seen as left.

Runs ``tests.integration.gossip_node`` (GossipAgent + HTTP observer) with fast timers
(probe 0.2 s, gossip 0.05 s). Every wait polls with a deadline; nothing asserts on timing.
"""

from __future__ import annotations

import asyncio
import os
import signal
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import prometheus_client
import pytest

from dfspeer.gossip.agent import GossipAgent
from dfspeer.gossip.config import SwimConfig
from dfspeer.gossip.keyring import Keyring
from dfspeer.gossip.metrics import GossipMetrics
from dfspeer.gossip.transport import MAX_FRAME_BYTES, write_frame
from dfspeer.gossip.types import Member, MemberEvent, MemberState
from tests.integration._gossip_helpers import (
    GossipProc,
    loopback_unavailable,
    ports_busy,
    wait_for,
    write_key_file,
)

pytestmark = pytest.mark.integration

HOSTS = [f"127.0.0.{i}" for i in range(11, 16)]
GOSSIP_PORT_BASE = 17946
HTTP_PORT_BASE = 18080
WAIT_S = 30.0


@pytest.fixture
def gossip_cluster(tmp_path: Path) -> Iterator[list[GossipProc]]:
    reason = loopback_unavailable(HOSTS) or ports_busy(
        [(h, p) for i, h in enumerate(HOSTS) for p in (GOSSIP_PORT_BASE + i, HTTP_PORT_BASE + i)]
    )
    if reason:
        pytest.skip(reason)
    key_file = write_key_file(tmp_path / "cluster.key")
    seed = f"{HOSTS[0]}:{GOSSIP_PORT_BASE}"
    nodes = [
        GossipProc(
            node_id=f"n{i + 1}",
            host=host,
            port=GOSSIP_PORT_BASE + i,
            http_port=HTTP_PORT_BASE + i,
            key_file=key_file,
            log_dir=tmp_path,
            join=[seed],
        )
        for i, host in enumerate(HOSTS)
    ]
    try:
        yield nodes
    finally:
        for node in nodes:
            node.kill()


def _logs(nodes: list[GossipProc]) -> str:
    return "\n".join(f"--- {n.node_id}\n{n.log_tail()}" for n in nodes)


def _all_see(observers: list[GossipProc], check: Any) -> bool:
    """True when every observer answers and ``check(view)`` holds for each view."""
    for node in observers:
        view = node.view()
        if view is None or not check(view):
            return False
    return True


def test_five_processes_join_detect_death_rejoin_and_leave(
    gossip_cluster: list[GossipProc],
) -> None:
    nodes = gossip_cluster
    ids = [n.node_id for n in nodes]
    for node in nodes:
        node.start()

    # 1. converge: everyone sees all five alive
    def all_alive(view: dict[str, Any]) -> bool:
        return all(view.get(i, {}).get("state") == "alive" for i in ids)

    wait_for(
        "5 nodes to converge",
        lambda: _all_see(nodes, all_alive),
        timeout_s=WAIT_S,
        on_fail=lambda: _logs(nodes),
    )
    assert all(n.get("/members")["joined"] for n in nodes)

    # 2. SIGKILL n3: the others suspect it, then declare it dead
    victim = nodes[2]
    others = [n for n in nodes if n is not victim]
    victim.kill()
    wait_for(
        "n3 to be dead everywhere",
        lambda: _all_see(others, lambda v: v[victim.node_id]["state"] == "dead"),
        timeout_s=WAIT_S,
        on_fail=lambda: _logs(others),
    )
    dead_incarnation = max(
        int(row[victim.node_id]["incarnation"]) for row in (n.view() for n in others) if row
    )
    kinds = [
        [e["kind"] for e in n.get("/events")["events"] if e["id"] == victim.node_id] for n in others
    ]
    assert any("suspect" in k and k.index("suspect") < k.index("dead") for k in kinds), kinds

    # 3. restart n3 with the same id: alive again everywhere, at a higher incarnation
    victim.start()

    def rejoined(view: dict[str, Any]) -> bool:
        row = view.get(victim.node_id, {})
        return bool(row.get("state") == "alive" and row.get("incarnation", -1) > dead_incarnation)

    wait_for(
        "n3 to rejoin with a higher incarnation",
        lambda: _all_see(nodes, rejoined),
        timeout_s=WAIT_S,
        on_fail=lambda: _logs(nodes),
    )
    wait_for(
        "everyone alive again",
        lambda: _all_see(nodes, all_alive),
        timeout_s=WAIT_S,
        on_fail=lambda: _logs(nodes),
    )

    # 4. graceful leave of n5 (SIGTERM -> leave + exit 0): the others see it as left
    leaver = nodes[4]
    stayers = nodes[:4]
    leaver.signal(signal.SIGTERM)
    assert leaver.proc is not None
    assert leaver.proc.wait(timeout=WAIT_S) == 0, leaver.log_tail()
    wait_for(
        "n5 to be seen as left",
        lambda: _all_see(stayers, lambda v: v[leaver.node_id]["state"] == "left"),
        timeout_s=WAIT_S,
        on_fail=lambda: _logs(stayers),
    )

    # metrics are served and reflect what happened
    text = _metrics(nodes[0])
    assert 'dfspeer_gossip_members{state="left"} 1.0' in text
    assert "dfspeer_gossip_probes_total" in text


def _metrics(node: GossipProc) -> str:
    with urllib.request.urlopen(f"http://{node.host}:{node.http_port}/metrics", timeout=2) as r:
        return str(r.read().decode())


def _join_attempts(node: GossipProc) -> float:
    """Seeds pinged so far (core counter ``join_attempts``), read from /metrics."""
    line = 'dfspeer_gossip_core_events_total{name="join_attempts"} '
    for row in _metrics(node).splitlines():
        if row.startswith(line):
            return float(row[len(line) :])
    return 0.0


def test_join_survives_bad_and_down_seeds(tmp_path: Path) -> None:
    """Seeds that do not resolve or are not up yet are retried; the node joins once one is."""
    hosts = HOSTS[:2]
    reason = loopback_unavailable(hosts) or ports_busy(
        [
            (h, p)
            for i, h in enumerate(hosts)
            for p in (GOSSIP_PORT_BASE + 10 + i, HTTP_PORT_BASE + 10 + i)
        ]
    )
    if reason:
        pytest.skip(reason)
    key_file = write_key_file(tmp_path / "cluster.key")
    a = GossipProc(
        node_id="a",
        host=hosts[0],
        port=GOSSIP_PORT_BASE + 10,
        http_port=HTTP_PORT_BASE + 10,
        key_file=key_file,
        log_dir=tmp_path,
        join=["no-such-seed.invalid:7946", f"{hosts[1]}:{GOSSIP_PORT_BASE + 11}"],
    )
    b = GossipProc(
        node_id="b",
        host=hosts[1],
        port=GOSSIP_PORT_BASE + 11,
        http_port=HTTP_PORT_BASE + 11,
        key_file=key_file,
        log_dir=tmp_path,
        join=[a.gossip],
    )
    try:
        a.start()
        wait_for("a to serve HTTP", a.view, timeout_s=WAIT_S, on_fail=a.log_tail)
        # a keeps retrying (nothing to join yet) and stays up, not joined
        wait_for(
            "a to make a second join attempt",
            lambda: _join_attempts(a) >= 2,
            timeout_s=WAIT_S,
            on_fail=a.log_tail,
        )
        assert a.alive() and a.get("/members")["joined"] is False
        b.start()
        wait_for(
            "a and b to see each other alive",
            lambda: _all_see(
                [a, b], lambda v: {v.get(i, {}).get("state") for i in "ab"} == {"alive"}
            ),
            timeout_s=WAIT_S,
            on_fail=lambda: _logs([a, b]),
        )
        assert a.get("/members")["joined"] is True
    finally:
        a.kill()
        b.kill()


# ---------------------------------------------------------------- in-process driver checks
# Two GossipAgents in this process on 127.0.0.1, ephemeral ports: driver behaviour that
# the process test above does not reach (port 0, subscribers, push-pull refusal, metrics).


def _agent(node_id: str, keyring: Keyring) -> GossipAgent:
    config = SwimConfig(
        probe_interval_s=0.2, probe_timeout_s=0.1, gossip_interval_s=0.05, suspicion_mult=2
    )
    local = Member(node_id, ("127.0.0.1", 0), f"127.0.0.1:{8000}", 0, MemberState.ALIVE)
    return GossipAgent(config, local, keyring, bind_host="127.0.0.1")


async def _until(what: str, cond: Callable[[], bool], timeout_s: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


async def test_agents_in_process_join_events_metrics_and_stop() -> None:
    keyring = Keyring([os.urandom(32)])
    a, b = _agent("a", keyring), _agent("b", keyring)
    seen: list[MemberEvent] = []

    def broken(_: MemberEvent) -> None:
        raise RuntimeError("subscriber bug")

    a.subscribe(broken)
    a.subscribe(seen.append)
    try:
        await a.start()
        await b.start()
        assert a.local_member.gossip_address[1] != 0  # port 0 resolved to the real port
        await a.join([a.local_member.gossip_address])  # only itself: first member
        assert a.joined
        await b.join([("no-such-seed.invalid", 7946), a.local_member.gossip_address])
        await _until("a and b joined", lambda: a.joined and b.joined)
        await _until(
            "a sees b alive",
            lambda: any(m.id == "b" and m.state is MemberState.ALIVE for m in a.members()),
        )
        assert any(e.member.id == "b" for e in seen)  # the broken subscriber did not stop it
        assert a.counters["subscriber_errors"] >= 1
        registry = prometheus_client.CollectorRegistry()
        GossipMetrics(a).register(registry)
        assert registry.get_sample_value("dfspeer_gossip_members", {"state": "alive"}) == 2
        sent = registry.get_sample_value("dfspeer_gossip_messages_total", {"direction": "sent"})
        assert sent is not None and sent > 0
        await b.leave()
        await _until(
            "a sees b left",
            lambda: any(m.id == "b" and m.state is MemberState.LEFT for m in a.members()),
        )
    finally:
        await b.stop()
        await a.stop()
        await a.stop()  # idempotent


async def test_push_pull_refuses_foreign_key_and_oversized_frames() -> None:
    a = _agent("a", Keyring([os.urandom(32)]))
    stranger = _agent("s", Keyring([os.urandom(32)]))
    await a.start()
    try:
        host, port = a.local_member.gossip_address
        before = {m.id for m in a.members()}
        # a full-state frame sealed under another key: no reply, nothing merged
        reader, writer = await asyncio.open_connection(host, port)
        await write_frame(writer, stranger.swim.local_state())
        assert await reader.read() == b""
        writer.close()
        # a frame header announcing more than the cap: closed without reading it
        reader, writer = await asyncio.open_connection(host, port)
        writer.write((MAX_FRAME_BYTES + 1).to_bytes(4, "big"))
        await writer.drain()
        assert await reader.read() == b""
        writer.close()
        assert {m.id for m in a.members()} == before
        assert a.counters["push_pull.rejected"] == 1
        assert a.counters["push_pull.failed"] == 1
    finally:
        await a.stop()
