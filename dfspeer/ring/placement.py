"""Replica placement: vnode tokens, expected loads, capacities, bounded-load assignment.

Pure functions over peers given by index ``0..M-1`` (the caller sorts them by peer id, so
equal membership views give equal results whatever order members arrived in).

Sources
-------
* Dynamo strategy 3 (DeCandia et al., SOSP 2007, section 6.2): ``Q`` equal partitions whose
  placement is decoupled from the key space; a partition's preference list is the next
  distinct peers clockwise on a ring of virtual nodes (vnodes).
* Consistent hashing with bounded loads (Mirrokni, Thorup, Zadimoghaddam, SODA 2018): walk
  clockwise from the item's position, skipping bins that are at capacity
  ``ceil((1 + eps) * mean)``. Random tokens alone leave the busiest of 200 peers 55-75 %
  above the mean at ``Q = 1024`` (``simulations/ring_balance.py``, table 1); the capacity
  bound removes that tail. This module rounds the capacity *down* (below), because with
  ``ceil`` an ``eps`` of 0.15 still allows ``18 / 15.36 = 1.17`` times the mean at 200 peers.
* Deferred acceptance (Gale & Shapley, 1962) decides who stays when a peer is over its
  capacity: partitions propose to peers in ring order, a full peer keeps the partitions whose
  tokens are nearest (counter-clockwise) to its vnodes and rejects the farthest. The result
  does not depend on the processing order when no zone rule or forced placement interferes
  (it is then the partition-optimal stable matching); partitions are processed in index
  order, so the result is deterministic in every case.

Capacity, per peer ``i`` with expected load ``e_i`` (replica assignments, see
:func:`expected_loads`) and a per-peer offset ``u_i`` in ``(0, 1)`` derived from its id::

    cap_i = max(ceil(e_i), floor((1 + eps) * e_i - u_i))

so no peer exceeds ``(1 + eps) * e_i`` once ``e_i >= 1 / eps`` (about 7 at ``eps = 0.15``)
and the capacities always sum to at least the number of assignments. The offsets (evenly
spread over ``[0, 1)``, see :func:`capacity_offsets`) spread the integer steps of the
capacity over cluster sizes: with one shared ``floor`` every peer at capacity would shed a
partition at the same cluster size (5-6x the ideal movement there).

Rules, strongest first, when they conflict: (1) the replicas of a partition are distinct
peers; (2) zone spreading - a zone holds at most ``zone_limit`` replicas of a partition
(1 when there are at least as many zones as replicas); (3) capacity. (1) and (2) always
hold; capacity gives way. Expected loads already respect (1) and (2) (a peer alone in its
zone, with three zones and three replicas, is expected to hold every partition), so the
capacity is only exceeded in corner cases: a partition that finds no peer satisfying all
three after a full turn of the ring takes the first peer clockwise that satisfies (1) and
(2), above its capacity, and a final repair pass moves such placements to peers with room
where (1) and (2) allow.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import mmh3

from dfspeer.ring.assigner import BoundedAssigner

DEFAULT_TOKENS_PER_WEIGHT = 24
"""Vnode tokens of a peer of weight 1.0, chosen with ``simulations/ring_balance.py``.

Over 5..200 equal peers (Q = 1024, N = 3) movement when one peer joins or leaves is lowest
around 24-32 tokens (mean 1.4x the ideal 1/M, p99 about 2.2x); 16 or 64 do worse (more
peers at capacity: arc-length variance below, Poisson variance of discrete partitions
above), and fewer tokens keep ``Ring.build`` fast (about 30 ms at 1000 peers).
"""

DEFAULT_LOAD_EPSILON = 0.15
"""``eps`` of the capacity bound: no peer above ``(1 + eps)`` times its expected load.

The largest value that meets the 1.15 max/mean target; a smaller one puts more peers at
capacity and multiplies movement (eps = 0.10: p99 2.9x, worst 5x the ideal).
"""

MAX_TOKENS_PER_PEER = 4096
"""Upper bound on the vnodes of one peer, whatever its weight (capacity still follows weight)."""


def token_count(weight: float, tokens_per_weight: int) -> int:
    """Vnodes for a peer of ``weight``: ``round(weight * tokens_per_weight)`` in ``1..4096``."""
    return min(MAX_TOKENS_PER_PEER, max(1, round(weight * tokens_per_weight)))


def vnode_token(peer_id: str, index: int) -> int:
    """Token of vnode ``index`` of ``peer_id``: ``mmh3.hash64(f"{peer_id}#{index}")``, unsigned."""
    return int(mmh3.hash64(f"{peer_id}#{index}".encode(), signed=False)[0])


def build_vnodes(
    peer_ids: Sequence[str], weights: Sequence[float], tokens_per_weight: int
) -> tuple[list[int], list[int]]:
    """The ring of vnodes: ``(tokens, owners)``, both of length ``V``, sorted by token.

    ``owners[j]`` is the index of the peer owning ``tokens[j]``; equal tokens (a 64-bit
    collision) are ordered by peer index, which is the peer id order.
    """
    pairs = [
        (vnode_token(peer_id, k), i)
        for i, (peer_id, weight) in enumerate(zip(peer_ids, weights, strict=True))
        for k in range(token_count(weight, tokens_per_weight))
    ]
    pairs.sort()
    return [t for t, _ in pairs], [i for _, i in pairs]


def zone_limit(zone_sizes: Sequence[int], replicas: int) -> int:
    """Most replicas of one partition allowed in one zone.

    The smallest ``L >= ceil(replicas / Z)`` with ``sum(min(L, size)) >= replicas`` over the
    ``Z`` zones: 1 when there are at least ``replicas`` zones, otherwise as even as the zone
    sizes allow. ``replicas`` must not exceed the number of peers.
    """
    zones = len(zone_sizes)
    if zones <= 1:
        return replicas
    limit = -(-replicas // zones)
    while sum(min(limit, size) for size in zone_sizes) < replicas:
        limit += 1
    return limit


def water_fill(weights: Sequence[float], caps: Sequence[float], total: float) -> list[float]:
    """Split ``total`` in proportion to ``weights``, no share above its cap.

    Returns ``x`` with ``x_i = min(caps_i, lam * weights_i)`` and ``sum(x) == total`` (up to
    rounding); every share is its cap if the caps sum to less than ``total``. Weights > 0.
    """
    shares = [0.0] * len(weights)
    order = sorted(range(len(weights)), key=lambda i: (caps[i] / weights[i], i))
    remaining = float(total)
    weight_left = math.fsum(weights)
    for pos, i in enumerate(order):
        lam = remaining / weight_left if weight_left > 0 else 0.0
        if caps[i] <= lam * weights[i]:
            shares[i] = float(caps[i])
            remaining -= caps[i]
            weight_left -= weights[i]
            continue
        for k in order[pos:]:
            shares[k] = lam * weights[k]
        break
    return shares


def expected_loads(
    weights: Sequence[float], zones: Sequence[int], partition_count: int, replicas: int
) -> tuple[list[float], int]:
    """Fair replica assignments per peer and the per-partition zone limit.

    ``zones[i]`` is the zone index of peer ``i``. The ``partition_count * replicas``
    assignments go to zones by weight, no zone above ``partition_count * min(limit, size)``
    (what zone spreading lets it hold), then to the zone's peers by weight, no peer above
    ``partition_count`` (one replica per partition). Without zones or caps that binds this
    is ``total * weight / sum(weights)``. Returns ``(expected, zone_limit)``.
    """
    zone_count = max(zones, default=-1) + 1
    members: list[list[int]] = [[] for _ in range(zone_count)]
    for i, zone in enumerate(zones):
        members[zone].append(i)
    limit = zone_limit([len(m) for m in members], replicas)
    zone_weights = [math.fsum(weights[i] for i in m) for m in members]
    zone_caps = [float(partition_count * min(limit, len(m))) for m in members]
    zone_totals = water_fill(zone_weights, zone_caps, float(partition_count * replicas))
    expected = [0.0] * len(weights)
    for m, zone_total in zip(members, zone_totals, strict=True):
        shares = water_fill([weights[i] for i in m], [float(partition_count)] * len(m), zone_total)
        for i, share in zip(m, shares, strict=True):
            expected[i] = share
    return expected, limit


def capacity_offsets(peer_ids: Sequence[str]) -> list[float]:
    """Per-peer offsets ``u_i = (rank_i + 0.5) / M`` in ``(0, 1)`` for the capacity rounding.

    ``rank_i`` orders the peers by ``mmh3.hash64(f"{peer_id}#capacity")`` (ties by id). The
    offsets are stratified, not independent draws, so when the cluster grows or shrinks by
    one peer the number of capacities that step by one is ``(1 + eps) * mean`` +- 1, not a
    binomial count (measured: the worst moved fraction over 300 rings near M = 200 drops
    from 2.6x to 2.4x the ideal).
    """
    hashed = sorted(
        (int(mmh3.hash64(f"{peer_id}#capacity".encode(), signed=False)[0]), peer_id, i)
        for i, peer_id in enumerate(peer_ids)
    )
    offsets = [0.0] * len(peer_ids)
    for rank, (_, _, i) in enumerate(hashed):
        offsets[i] = (rank + 0.5) / len(peer_ids)
    return offsets


def capacities(
    peer_ids: Sequence[str], expected: Sequence[float], epsilon: float, partition_count: int
) -> list[int]:
    """Per-peer capacity ``max(ceil(e), floor((1 + eps) * e - u))``, at most ``partition_count``.

    See the module docstring; ``u`` from :func:`capacity_offsets`. ``expected`` is rounded
    to 1e-9 first so float noise in a water-filled share cannot bump ``ceil`` by one.
    """
    caps = []
    offsets = capacity_offsets(peer_ids)
    for share, offset in zip(expected, offsets, strict=True):
        e = round(share, 9)
        cap = max(math.ceil(e), math.floor((1.0 + epsilon) * e - offset))
        caps.append(min(partition_count, cap))
    return caps


def assign(
    peer_ids: Sequence[str],
    weights: Sequence[float],
    zones: Sequence[int],
    *,
    partition_bits: int,
    replicas: int,
    tokens_per_weight: int = DEFAULT_TOKENS_PER_WEIGHT,
    epsilon: float = DEFAULT_LOAD_EPSILON,
) -> list[tuple[int, ...]]:
    """Replicas of every partition as peer indices, nearest (primary) first.

    ``peer_ids`` sorted and distinct, ``weights > 0``, ``zones[i]`` a zone index; at most
    ``replicas`` (capped at the peer count) distinct peers per partition. Returns a list of
    ``2**partition_bits`` tuples, each of ``min(replicas, M)`` peer indices.
    """
    count = 1 << partition_bits
    replicas = min(replicas, len(peer_ids))
    if replicas == 0:
        return [() for _ in range(count)]
    tokens, owners = build_vnodes(peer_ids, weights, tokens_per_weight)
    expected, limit = expected_loads(weights, zones, count, replicas)
    caps = capacities(peer_ids, expected, epsilon, count)
    assigner = BoundedAssigner(tokens, owners, zones, limit, caps, partition_bits, replicas)
    return assigner.run()
