"""Where one key's object versions stand on each of its replicas, for the lifecycle's
decisions that a quorum read cannot make.

A quorum read merges R answers, so it cannot tell a version ``complete`` on one replica
(the copy of a put that failed its quorum, its retraction perhaps under way) from one
complete on W (acknowledged), nor an abort applied on one replica (retracted if its write
fails its quorum) from an abort that can no longer be undone. These decisions count
replicas instead (:mod:`dfspeer.model.lifecycle`):

- a null version supersedes the older null versions (for the lifecycle, which aborts
  what a coordinator did not) only once it is known *acknowledged*: complete on at least
  W replicas, and older than ``upload_expiry_s`` — a put can fail in its coordinator's
  eyes after reaching W replicas, and its coordinator then aborts it
  (:func:`acknowledged_null`);
- a queued release of a version's block references goes out only once the version's abort
  is *settled*: aborted on at least W replicas — a retraction removes a failed write from
  the fewer than W replicas that took it, so at least one holder outlives it and
  anti-entropy spreads the abort — or held live by no replica at all
  (:func:`release_verdict`).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from typing import Any

from dfspeer.blockstore import BlockStore
from dfspeer.cluster.rpc import PeerRpcClient, PeerUnreachable
from dfspeer.cluster.view import ClusterView
from dfspeer.model.hlc_time import version_unix_s
from dfspeer.model.objects import (
    ABORTED,
    COMPLETE,
    OBJECTS_TABLE,
    UPLOADING,
    ObjectEntry,
    ObjectsSchema,
)

ABSENT = "absent"
"""The state counted for a replica whose entry lacks the version (or that has no entry)."""
RELEASE, WITHDRAW, WAIT = "release", "withdraw", "wait"
"""What to do with a queued release (:func:`release_verdict`)."""


@dataclass(frozen=True)
class ReplicaEntries:
    """The entry of one ``objects`` key on each of its ``replicas`` (N in the reading
    peer's view) that answered: ``answers`` holds one item per answering replica, its
    entry or None when it holds none."""

    replicas: int
    answers: tuple[ObjectEntry | None, ...]

    def states(self, version_id: str) -> Counter[str]:
        """State of version ``version_id`` -> how many answering replicas hold it so
        (:data:`ABSENT` for those that lack it)."""
        counts: Counter[str] = Counter()
        for entry in self.answers:
            version = entry.get(version_id) if entry is not None else None
            counts[version.state if version is not None else ABSENT] += 1
        return counts


async def read_replica_entries(
    view: ClusterView, store: BlockStore, rpc: PeerRpcClient, key: bytes
) -> ReplicaEntries:
    """What each replica of ``objects`` key ``key`` holds now: this peer's copy from
    ``store``, the others' by RPC, all at once. A replica that fails, times out or holds a
    record this peer cannot read is left out of the answers. Nothing is merged or repaired:
    where each version stands on each replica is the point. Raises nothing."""
    schema = ObjectsSchema()
    replicas = view.replicas(view.partition_of(schema.partition_key(key)))

    async def one(peer: str) -> Any | None:
        if peer == view.self_id:
            return store.table(OBJECTS_TABLE).get(key)
        address = view.address(peer)
        if address is None:
            raise PeerUnreachable(f"no address known for peer {peer}")
        return await rpc.get_record(address, OBJECTS_TABLE, key)

    got = await asyncio.gather(*(one(p) for p in replicas), return_exceptions=True)
    answers: list[ObjectEntry | None] = []
    for record in got:
        if isinstance(record, BaseException):
            continue
        try:
            answers.append(None if record is None else schema.decode(record))
        except ValueError:
            continue
    return ReplicaEntries(len(replicas), tuple(answers))


def acknowledged_null(found: ReplicaEntries, write_quorum: int, before_s: float) -> str:
    """Id of the newest null version known acknowledged ("" if none): one ``complete`` on
    at least ``write_quorum`` of the answering replicas, aborted on none of them, and
    written before ``before_s`` (unix seconds, from its HLC id). A put whose complete
    version reached W replicas can still fail in its coordinator's eyes (the answers were
    lost) and be aborted by it; once ``before_s`` is past (the lifecycle passes now minus
    ``upload_expiry_s``) its coordinator has long finished, one way or the other. Such a
    version supersedes every older null version."""
    complete: Counter[str] = Counter()
    aborted: set[str] = set()
    for entry in found.answers:
        for v in entry.versions if entry is not None else ():
            if v.state == ABORTED:
                aborted.add(v.id)
            elif v.null and v.state == COMPLETE:
                complete[v.id] += 1
    known = [
        vid
        for vid, n in complete.items()
        if n >= write_quorum and vid not in aborted and _written_before(vid, before_s)
    ]
    return max(known, default="")


def _written_before(version_id: str, before_s: float) -> bool:
    written = version_unix_s(version_id)
    return written is not None and written < before_s


def release_verdict(found: ReplicaEntries, version_id: str, write_quorum: int) -> str:
    """What to do with a queued release of version ``version_id``'s references:

    - :data:`RELEASE` when its abort is settled: aborted on at least ``write_quorum``
      replicas, or every replica answered and none holds it live (uploading or complete);
    - :data:`WITHDRAW` when the abort did not hold: live on some replica, aborted on none
      that answered (a failed abort was retracted; a later abort queues its release again
      on every replica that sees the version go from live to aborted);
    - :data:`WAIT` otherwise (an abort under way, or replicas that did not answer)."""
    states = found.states(version_id)
    live = states[UPLOADING] + states[COMPLETE]
    everyone = found.replicas > 0 and len(found.answers) == found.replicas
    if states[ABORTED] >= write_quorum or (everyone and live == 0):
        return RELEASE
    if live > 0 and states[ABORTED] == 0:
        return WITHDRAW
    return WAIT
