"""Replicator: quorum writes and reads of blocks and table records (local store + RPC).

Placement: a block lives on the N replicas of ``partition(digest)``; a record on the N
replicas of ``partition(partition_key)`` (for manifests: the table key). Writes go to every
replica of the preference list at once and return when W acknowledged durably; reads ask
every replica and return when R answered (Dynamo, DeCandia et al. 2007). A replica that is
down, times out or errs counts as a failed ack — unless a stand-in takes its write with a
hint (sloppy quorum / hinted handoff, :mod:`.handoff`, via :attr:`Replicator.handoff`).
Block reads repair what they find missing or corrupt (:mod:`.readrepair`).

Stragglers (replicas still writing when W acked) finish in the background, bounded by
``max_background`` writes; once that many are in flight, further writes wait for all their
replicas (backpressure) instead of returning at W — so memory stays bounded and a slow
replica slows the writer rather than being silently skipped. A write that fails a replica
for good is left to repair (anti-entropy / hinted handoff).

A record write that cannot reach W is retracted from the replicas that did take it
(delete-if-version-equals), so a failed write does not surface on a later quorum read.

The class is assembled from one part per concern: :mod:`.replication_base` (the state
the parts share and the quorum plumbing), :mod:`.replication_blocks` (block writes) and
:mod:`.replication_records` (record writes, reads and read repair); this module keeps its
construction, closing, and the reads that hand the replicator to their own modules (block
reads, :mod:`.block_reads`; cluster-wide scans, :mod:`.scan`).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from dfspeer.blockstore import BlockStore
from dfspeer.cluster import tracing_hooks as spans
from dfspeer.cluster.block_reads import read_verified_block, read_verified_range
from dfspeer.cluster.quorum import cancel_all
from dfspeer.cluster.replication_blocks import MORE_BLOCKS_FOLLOW as MORE_BLOCKS_FOLLOW
from dfspeer.cluster.replication_blocks import BlockReplication
from dfspeer.cluster.replication_records import RecordReplication
from dfspeer.cluster.rpc import PeerRpcClient
from dfspeer.cluster.scan import ScanPage, scan_cluster, scan_entries
from dfspeer.cluster.table import TableSchema
from dfspeer.cluster.view import ClusterView
from dfspeer.config import PeerConfig
from dfspeer.tracing import traced

if TYPE_CHECKING:
    from dfspeer.cluster.handoff import HintedHandoff
    from dfspeer.cluster.readrepair import BlockRepair


class Replicator(BlockReplication, RecordReplication):
    """Quorum replication over this peer's :class:`BlockStore` and :class:`PeerRpcClient`.

    ``tables``: the replicated tables (name -> schema, see :mod:`.table`); a record
    operation on another name raises ValueError.
    ``max_background``: straggler writes allowed in flight after their quorum (default:
    ``config.upload_pipeline_depth``), each holding one chunk in memory.
    """

    def __init__(
        self,
        config: PeerConfig,
        view: ClusterView,
        store: BlockStore,
        rpc: PeerRpcClient,
        *,
        tables: Mapping[str, TableSchema[Any]] | None = None,
        max_background: int | None = None,
    ) -> None:
        self.config = config
        self.view = view
        self.store = store
        self.rpc = rpc
        self.write_quorum = config.write_quorum
        self.read_quorum = config.read_quorum
        self.tables: Mapping[str, TableSchema[Any]] = tables or {}
        self._max_background = max_background or config.upload_pipeline_depth
        self._background: set[asyncio.Task[None]] = set()
        self._repairs: set[asyncio.Task[None]] = set()
        self._rotate = 0
        self.counters: Counter[str] = Counter()
        self.handoff: HintedHandoff | None = None
        """Sloppy quorum + hints (:mod:`.handoff`); None: strict quorum."""
        self.block_repair: BlockRepair | None = None
        """Block read repair + quarantine (:mod:`.readrepair`); None: off."""

    async def drain(self) -> None:
        """Wait until every straggler write and read repair running now has finished."""
        while self._background or self._repairs:
            await asyncio.gather(*self._background, *self._repairs, return_exceptions=True)

    async def close(self) -> None:
        """Wait for straggler writes (bounded by the RPC timeout), cancel read repairs."""
        await cancel_all(self._repairs)
        while self._background:
            await asyncio.gather(*self._background, return_exceptions=True)

    # ------------------------------------------------------------------ block reads
    @traced("replicator.read_block", spans.block_read)
    async def read_block(self, digest: bytes) -> bytes:
        """A verified copy of a block (see :func:`.block_reads.read_verified_block`: local
        copy, then the replicas in read order, read repair). Raises DataUnavailable."""
        return await read_verified_block(self, digest)

    async def read_block_range(self, digest: bytes, lo: int, hi: int) -> bytes:
        """Bytes ``[lo, hi)`` of a block, verified: from the local copy, checking only the
        64 KiB segments the range covers (:meth:`BlockStore.get_range`); on a peer that is
        not one of the block's replicas and has no copy, only those bytes from a replica;
        otherwise the whole block through :meth:`read_block` (which quarantines a corrupt
        local copy, fails over to the replicas and repairs). See
        :func:`.block_reads.read_verified_range`. Raises DataUnavailable."""
        return await read_verified_range(self, digest, lo, hi)

    # ------------------------------------------------------------------ scans
    async def scan_partitioned(
        self,
        table: str,
        *,
        prefix: bytes,
        start_after: bytes | None,
        limit: int,
        omit: tuple[str, ...] = (),
    ) -> ScanPage:
        """Scan ``table`` on every ring member and merge per key (for listings of tables
        placed by key hash; :func:`.scan.scan_cluster`). Raises InsufficientReplicas
        unless, for every partition, at least R of its replicas answered."""
        return await scan_cluster(
            self, table, prefix=prefix, start_after=start_after, limit=limit, omit=omit
        )

    async def scan_entries(
        self,
        table: str,
        keep: Callable[[Any], bool],
        *,
        limit: int,
        omit: tuple[str, ...] = (),
    ) -> list[Any]:
        """Decoded entries of ``table`` that ``keep`` accepts, cluster-wide, in key order,
        at most ``limit`` (:func:`.scan.scan_entries`)."""
        return await scan_entries(self, table, keep, limit=limit, omit=omit)
