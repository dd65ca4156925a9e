"""The invariants checked once the simulated cluster has healed and settled.

1. every key reads back, through every peer, as one of its allowed states
   (:meth:`~dfspeer.sim.workload.History.allowed`): an acknowledged write byte-identical
   (or its documented successor), a deleted key absent -- no resurrection;
2. every record of the ``objects`` table is on each of its N replicas, and every block of
   a live version is on each of the N replicas of its partition (a referenced block was
   not collected, and repair put it back where it belongs);
3. on every peer, each stored block's reference count equals the live ``block_refs``
   entries naming it.

Each check returns human-readable violations (empty: holds).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence

from dfspeer.errors import DfsError
from dfspeer.model.block_refs import BlockRefsSchema
from dfspeer.model.objects import OBJECTS_TABLE, ObjectsSchema, table_key
from dfspeer.sim.peer import SimPeer
from dfspeer.sim.workload import ABSENT, BUCKET, History, label, read_all


async def check_reads(peers: Sequence[SimPeer], history: History) -> list[str]:
    """Invariant 1 (module docstring), through every peer."""
    out: list[str] = []
    for key in sorted(history.by_key):
        allowed = history.allowed(key)
        for peer in peers:
            try:
                got = await peer.run(read_all(peer, key))
            except DfsError as exc:
                out.append(f"{key} via {peer.peer_id}: read failed after healing: {exc}")
                continue
            if got not in allowed:
                what = "absent" if got == ABSENT else f"{len(got)} bytes {got[:12]!r}"
                out.append(
                    f"{key} via {peer.peer_id}: read {what}, allowed "
                    f"{sorted(label(a) for a in allowed)}"
                )
    return out


def check_placement(peers: Sequence[SimPeer], keys: Sequence[str]) -> list[str]:
    """Invariant 2: records and live blocks on each of their N replicas."""
    out: list[str] = []
    by_id = {p.peer_id: p for p in peers}
    view = peers[0].view
    schema = ObjectsSchema()
    for key in keys:
        tkey = table_key(BUCKET, key)
        replicas = view.replicas(view.partition_of(tkey))
        records = {r: by_id[r].store.table(OBJECTS_TABLE).get(tkey) for r in replicas}
        present = {r: rec for r, rec in records.items() if rec is not None}
        missing = sorted(set(replicas) - set(present))
        if present and missing:
            out.append(f"record {key}: missing on {missing} (replicas {list(replicas)})")
        for rec in present.values():
            live = schema.decode(rec).live()
            for digest, _size in live.chunks if live is not None else ():
                owners = view.replicas(view.partition_of(digest))
                lacking = [r for r in owners if not _has(by_id[r], digest)]
                if lacking:
                    out.append(f"block {digest.hex()[:12]} of {key}: missing on {lacking}")
    return sorted(set(out))


def _has(peer: SimPeer, digest: bytes) -> bool:
    return peer.store.block_size(digest) > 0  # chunks are never empty


def check_refcounts(peers: Sequence[SimPeer]) -> list[str]:
    """Invariant 3: reference counts equal the live references, on every peer."""
    out: list[str] = []
    refs_schema = BlockRefsSchema()
    for peer in peers:
        live: Counter[bytes] = Counter()
        for _key, record in peer.store.table("block_refs").scan():
            ref = refs_schema.decode(record)
            if ref.live:
                live[ref.digest] += 1
        for digest in peer.store.iter_digests():
            count = peer.store.refcount(digest)
            if count != live[digest]:
                out.append(
                    f"{peer.peer_id}: block {digest.hex()[:12]} count {count}, "
                    f"{live[digest]} live references"
                )
    return out
