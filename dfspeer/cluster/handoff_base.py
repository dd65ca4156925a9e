"""The state every part of a :class:`~dfspeer.cluster.handoff.HintedHandoff` shares: its
settings, view, hints and RPC client, and whether a peer can be written to now (self or
ALIVE) and at which address.

:class:`HandoffBase` declares the state that the constructor (:mod:`.handoff`) sets.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable

from dfspeer.blockstore import BlockStore
from dfspeer.cluster.handoff_hints import HintStore
from dfspeer.cluster.rpc import PeerRpcClient, PeerUnreachable
from dfspeer.cluster.view import ClusterView
from dfspeer.config import PeerConfig

PeerOp = Callable[[str], Awaitable[None]]
Fetch = Callable[[bytes], Awaitable[bytes]]


class HandoffBase:
    """State shared by the parts of a :class:`~dfspeer.cluster.handoff.HintedHandoff`
    (whose docstring describes the arguments that set it)."""

    config: PeerConfig
    view: ClusterView
    hints: HintStore
    store: BlockStore
    rpc: PeerRpcClient
    fetch: Fetch | None
    interval_s: float
    counters: Counter[str]
    _wake: asyncio.Event

    def _reachable(self, peer: str) -> bool:
        return peer == self.view.self_id or self.view.is_alive(peer)

    def _address(self, peer: str) -> str:
        address = self.view.address(peer)
        if address is None:
            raise PeerUnreachable(f"no address known for peer {peer}")
        return address
