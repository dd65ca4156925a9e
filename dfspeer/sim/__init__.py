"""Deterministic whole-peer simulation: N complete peers in one process.

The same parts the agent runs (block store, gossip core, view, replicator, object service,
anti-entropy, rebalance, hinted handoff, tombstone purge, lifecycle / GC) are built by
:mod:`.peer` with simulated collaborators instead of real ones:

* :mod:`.loop` -- an asyncio event loop on virtual time (it jumps to the next timer when
  nothing is ready) that runs executor work inline, so a run is a pure function of its seed;
* :mod:`.clock` -- per-peer wall clocks (virtual time plus a skew) and the task registry
  that ties every task to the peer it runs for;
* :mod:`.disk` -- a block-store writer that commits on the loop after a seeded delay: a
  crash loses exactly the writes that were not yet durable (never acknowledged);
* :mod:`.network` -- a peer RPC client that delivers calls in memory into the target peer's
  store, and gossip datagrams and push-pulls into its core, with seeded delays, drops,
  partitions and reordering;
* :mod:`.gossip` -- each peer's own SWIM core (:class:`dfspeer.gossip.swim.Swim`, the one
  the UDP agent drives), driven on the virtual clock over the simulated network; each
  peer's view is built from its own core, so views diverge for a while, as in production;
* :mod:`.workload`, :mod:`.faults`, :mod:`.checks` -- the clients and their history, the
  fault schedule drawn from the seed, and the invariants checked after healing;
* :mod:`.harness` -- one seeded run of all of it, driven by ``simulations/cluster_sim.py``
  and ``tests/unit/test_cluster_sim.py``.

After FoundationDB's simulation testing and TigerBeetle's VOPR: one seed, one schedule,
one event log; a failing seed replays exactly.
"""
