"""Draining a peer (``dfspeer drain``): move every partition away, then leave gracefully.

1. The peer gossips weight 0: every member (itself included) drops it from the ring, so
   its partitions get new owners, and it stops receiving writes (it still answers reads
   for what it holds: :meth:`ClusterView.extended_preference`).
2. It runs anti-entropy rounds back to back; each hands its partitions to their new owners
   and drops those all of them confirmed (:mod:`.rebalance`), until none is left.
3. It broadcasts a graceful leave and calls ``on_done`` (the agent then exits).

Progress (:meth:`Drainer.progress`): ``{"state": "idle" | "draining" | "done" | "failed",
"started", "finished" (unix s or None), "rounds", "partitions_remaining",
"bytes_remaining" (estimate), "error"}``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from dfspeer.cluster.repair import RepairService

log = logging.getLogger(__name__)

PAUSE_S = 0.5
"""Pause between two drain rounds (lets writes in flight and gossip settle)."""


class Drainer:
    """Runs the drain of one peer (see module doc).

    ``publish_weight(w)``: gossip our new weight and refresh the local view;
    ``leave()``: graceful gossip leave; ``on_done()``: called once drained and left.
    """

    def __init__(
        self,
        repair: RepairService,
        *,
        publish_weight: Callable[[float], None],
        leave: Callable[[], Awaitable[None]],
        on_done: Callable[[], None] | None = None,
    ) -> None:
        self.repair = repair
        self.view = repair.view
        self._publish_weight = publish_weight
        self._leave = leave
        self._on_done = on_done
        self.state = "idle"
        self.started: float | None = None
        self.finished: float | None = None
        self.rounds = 0
        self.error: str | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> dict[str, Any]:
        """Begin draining (no-op if already draining or done); return :meth:`progress`."""
        if self.state in ("idle", "failed"):
            others = [p for p in self.view.ring_peers() if p != self.view.self_id]
            if not others:
                self.state, self.error = "failed", "no other peer in the ring to move data to"
                return self.progress()
            self.state, self.error = "draining", None
            self.started, self.finished = time.time(), None
            self._task = asyncio.create_task(self._run(), name="drain")
        return self.progress()

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    async def _run(self) -> None:
        try:
            self._publish_weight(0.0)
            log.info("draining: weight 0 published, moving partitions away")
            while True:
                await self.repair.run_round()
                self.rounds += 1
                if not self.repair.to_move:
                    break
                await asyncio.sleep(PAUSE_S)
            log.info("drained after %d round(s); leaving the cluster", self.rounds)
            await self._leave()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.exception("drain failed")
            self.state, self.error = "failed", str(exc)
            return
        self.state, self.finished = "done", time.time()
        if self._on_done is not None:
            self._on_done()

    def progress(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "started": self.started,
            "finished": self.finished,
            "rounds": self.rounds,
            "partitions_remaining": len(self.repair.to_move),
            "bytes_remaining": self.repair.bytes_to_move,
            "error": self.error,
        }
