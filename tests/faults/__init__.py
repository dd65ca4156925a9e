"""Multi-host fault harness: dfspeer agents in Linux network namespaces.

Run (root + iproute2; skipped with the reason otherwise)::

    python -m pytest tests/faults -v            # all six scenarios, ~1-3 min
    python -m pytest tests/faults -k partition  # one of them

Files:

- ``nsutil.py``: iproute2 primitives, support probes, stale-namespace cleanup, packet loss
  (netem, or a classic-BPF random-drop classifier when the kernel has no ``sch_netem``)
  and :class:`~tests.faults.nsutil.NetnsLoop` (an asyncio loop on a thread that entered a
  namespace with ``setns(2)``).
- ``netns.py``: :class:`~tests.faults.netns.FaultNet`: the hub namespace with the bridge,
  one namespace per host, agent processes, and the faults (kill, wipe, link down,
  partition, loss, delay).
- ``membership.py``: readiness, gossip views and gossip counters of the agents.
- ``checks.py``: the ledger of acknowledged writes and the two invariants (readable and
  byte-identical everywhere; exactly N replicas of every manifest and chunk), polled
  until a deadline and reported precisely on failure.
- ``workload.py``: tracked uploads and a verifying read load.
- ``test_scenarios.py``: the six repair scenarios.

Design choice for the test's own traffic: the test talks HTTP to the agents from a thread
inside the hub namespace (where the bridge has 10.213.0.1), not through an interface in
the host's namespace, so the host's network stays untouched (no interface, no route).
Agent logs are ``<tmp_path>/hN.log``; assertion messages carry their tails.
"""
