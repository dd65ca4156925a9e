"""Reading a verified block (or a range of one): the local copy first, then the replicas,
with read repair.

Order: the local store (verified by the CRC-32C of each 64 KiB segment, as a ranged read
is; a block stored without segment sums is re-hashed); then the partition's replicas in read
order (ALIVE before SUSPECT, rotated between reads so load spreads), then any other peer of
the extended preference list (a stand-in may hold a hinted copy). Every answer is hashed; a
wrong or failed one is skipped. Read repair (with the replicator's ``block_repair``): a
corrupt local copy is quarantined; replicas that answered missing or corrupt before the
good copy came, and this peer if its copy was corrupt (or missing while it is a replica),
get the good copy back in the background (:mod:`.readrepair`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from dfspeer.blockstore import BlockNotFound, CorruptBlock
from dfspeer.cluster.rpc import RpcError, sha256_hex
from dfspeer.errors import DataUnavailable, DfsError, PeerUnreachable

if TYPE_CHECKING:
    from dfspeer.cluster.replication import Replicator

log = logging.getLogger(__name__)

WHOLE_BLOCK = 1 << 62
"""An end past any block: ``get_range(digest, 0, WHOLE_BLOCK)`` is the whole block."""


async def read_verified_block(r: Replicator, digest: bytes) -> bytes:
    """A verified copy of block ``digest`` (module docstring). Raises DataUnavailable if
    no replica returned one."""
    problems: list[str] = []
    local_missing = local_corrupt = False
    try:
        # verified by the CRC-32C of each 64 KiB segment (as HDFS verifies its chunks on
        # read), not by re-hashing the whole block: a third of the CPU per byte; scrub
        # re-hashes every block, and a copy sent on is re-hashed by the peer it goes to
        return await r.store.get_range(digest, 0, WHOLE_BLOCK)
    except BlockNotFound:
        local_missing = True
    except CorruptBlock as exc:
        problems.append(f"local: {exc}")
        local_corrupt = await _quarantine(r, digest, exc)
    except DfsError as exc:
        problems.append(f"local: {exc}")
    view = r.view
    partition = view.partition_of(digest)
    replicas = view.replicas(partition)
    order = view.rank_for_read(replicas, r.next_rotation())
    order += [p for p in view.extended_preference(partition) if p not in replicas]
    lacking: list[str] = []  # replicas that answered "missing" or "corrupt"
    for peer in order:
        if peer == view.self_id:
            continue
        address = view.address(peer)
        try:
            if address is None:
                raise PeerUnreachable(f"no address known for peer {peer}")
            data = await r.rpc.get_block(address, digest)
        except Exception as exc:  # any failure: try the next replica
            problems.append(f"{peer}: {exc}")
            if peer in replicas and _lacks_block(exc):
                lacking.append(peer)
            continue
        if await sha256_hex(data) == digest.hex():
            if r.block_repair is not None:
                local = local_corrupt or (local_missing and view.self_id in replicas)
                r.block_repair.write_back(digest, data, lacking, local=local)
            return data
        r.counters["block_digest_mismatch"] += 1
        problems.append(f"{peer}: answer does not hash to the digest")
        if peer in replicas:
            lacking.append(peer)
    r.counters["block_unavailable"] += 1
    raise DataUnavailable(
        f"no replica returned a verified copy of chunk {digest.hex()}: "
        + ("; ".join(problems) if problems else "no replica in the ring")
    )


async def read_verified_range(r: Replicator, digest: bytes, lo: int, hi: int) -> bytes:
    """Bytes ``[lo, hi)`` of block ``digest`` (``hi`` within the block). The local copy,
    checked by segment; when this peer has no copy and is not one of the block's replicas
    (a coordinator of a cluster larger than N), only those bytes from the replicas in read
    order, each checked by its segment sums there and its signed SHA-256 here: half of a
    2 MiB block's transfer and hashing for a 1 MiB range. Anything else (a corrupt local
    copy, a replica missing its copy, no replica answering the range) goes through
    :func:`read_verified_block`, which quarantines, fails over and repairs. Raises
    DataUnavailable."""
    try:
        return await r.store.get_range(digest, lo, hi)
    except BlockNotFound:
        pass
    except DfsError:
        return (await read_verified_block(r, digest))[lo:hi]
    view = r.view
    replicas = view.replicas(view.partition_of(digest))
    if view.self_id not in replicas:
        for peer in view.rank_for_read(replicas, r.next_rotation()):
            address = view.address(peer)
            if address is None:
                continue
            try:
                data = await r.rpc.get_block_range(address, digest, lo, hi)
            except Exception as exc:  # the whole-block read below reports and repairs
                log.debug("ranged read of %s from %s failed: %s", digest.hex(), peer, exc)
                continue
            r.counters["block_ranges_remote"] += 1
            return data
    return (await read_verified_block(r, digest))[lo:hi]


async def _quarantine(r: Replicator, digest: bytes, exc: CorruptBlock) -> bool:
    """Quarantine a corrupt local block (True if the replicator has ``block_repair``)."""
    if r.block_repair is None:
        return False
    try:
        await r.block_repair.quarantine(digest, exc, by="read")
    except Exception:  # the read goes on from the replicas regardless
        log.exception("could not quarantine corrupt block %s", digest.hex())
    return True


def _lacks_block(exc: BaseException) -> bool:
    """True if a replica's answer says it has no good copy (vs. being unreachable)."""
    return isinstance(exc, BlockNotFound) or (
        isinstance(exc, RpcError) and exc.code == "corrupt_block"
    )
