"""Fixtures of the fault harness: five agents in network namespaces per test.

Every test here is skipped, with the reason, when namespaces cannot be made (not root,
no iproute2, no CAP_SYS_ADMIN). A session finalizer (and an atexit hook) deletes every
namespace this process made; namespaces of crashed earlier runs are deleted when the next
:class:`FaultNet` opens.
"""

from __future__ import annotations

import atexit
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.faults import nsutil
from tests.faults.membership import start_cluster
from tests.faults.netns import FaultNet

CHUNK_BYTES = 64 * 1024
MAP_SIZE_BYTES = 256 * 1024 * 1024
# Fast gossip timers (a SIGKILLed agent is declared dead within ~2-3 s), small chunks so
# multi-chunk objects stay small, a sparse 256 MiB LMDB map per agent.
FAST_SETTINGS: dict[str, object] = {
    "chunk_size_bytes": CHUNK_BYTES,
    "map_size_bytes": MAP_SIZE_BYTES,
    "probe_interval_s": 0.4,
    "probe_timeout_s": 0.2,
    "suspicion_mult": 3,
    "suspicion_max_timeout_mult": 2,
    "push_pull_interval_s": 5.0,
    "reconnect_interval_s": 1.0,  # healed partitions re-merge within seconds
    "request_timeout_s": 10.0,
    "log_level": "info",
}
# Fast timers of the repair mechanisms (PeerConfig): anti-entropy rounds every
# 2 s, hints retried every second, a scrub pass every 10 s (a few MB per peer at the
# default 32 MiB/s; each pass logs a line, so not more often), and a DEAD peer evicted
# from the ring after 15 s: shorter than the 30 s partition of scenario 3 (so partitions
# move and come back) and longer than the few seconds h3 is down in scenario 1 (hinted
# handoff and anti-entropy fill it in).
REPAIR_SETTINGS: dict[str, object] = {
    "anti_entropy_interval_s": 2.0,
    "hint_delivery_interval_s": 1.0,
    "scrub_interval_s": 10.0,
    "dead_member_evict_s": 15.0,
}


@pytest.fixture(scope="session")
def fault_support() -> Iterator[None]:
    """Skip when namespaces are unavailable; delete this run's namespaces at the end."""
    problem = nsutil.support_problem()
    if problem is not None:
        pytest.skip(f"fault harness unavailable: {problem}")
    atexit.register(nsutil.cleanup_own)
    nsutil.cleanup_stale()
    try:
        yield
    finally:
        nsutil.cleanup_own()


@pytest.fixture
def net(fault_support: None, tmp_path: Path) -> Iterator[FaultNet]:
    """Five agents (N=3, W=2, R=2) in their own namespaces, ready and seeing each other."""
    with FaultNet(tmp_path, 5, settings={**FAST_SETTINGS, **REPAIR_SETTINGS}) as fault_net:
        fault_net.run(start_cluster(fault_net), timeout_s=120)
        yield fault_net
        check_responsive(fault_net)


def check_responsive(net: FaultNet) -> None:
    """A running agent must answer HTTP; a hung one is a bug: fail (at teardown)
    with the stacks of its threads (faulthandler, on SIGABRT)."""
    hung = net.run(net.unresponsive(), timeout_s=60)
    if hung:
        stacks = "\n".join(f"----- h{i}:\n{net.dump_stacks(i)}" for i in hung)
        pytest.fail(f"agent(s) {[f'h{i}' for i in hung]} stopped answering:\n{stacks}")
