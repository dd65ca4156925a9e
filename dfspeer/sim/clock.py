"""Per-peer wall clocks and the peer each task runs for.

Every simulated peer runs its tasks in its own :class:`contextvars.Context` in which
:data:`CURRENT_PEER` names it; a task created from such a task inherits it, so
:class:`PeerTasks` (installed as the loop's task factory) can file every task under its
peer, and a crash cancels exactly that peer's tasks.

A peer's wall clock is ``EPOCH_S + loop.time() + skew`` (unix seconds). Parts that take a
clock get :meth:`WallClocks.clock_of`; the few product lines that still read ``time.time()``
directly (version timestamps in the put path, the block store's zero-reference stamp) see
the same clock through :func:`patched_time`, which answers per :data:`CURRENT_PEER`.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import time
from collections.abc import Callable, Coroutine, Iterator
from typing import Any

EPOCH_S = 1_700_000_000.0
"""Unix seconds at virtual time 0 (a fixed date, so runs do not depend on today)."""

CURRENT_PEER: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "dfspeer_sim_peer", default=None
)


class WallClocks:
    """Unix-second clocks of the simulated peers, each ``skew`` seconds off."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self.skew_s: dict[str, float] = {}

    def now(self, peer_id: str | None) -> float:
        """Peer ``peer_id``'s wall clock (None: the true time), unix seconds."""
        skew = self.skew_s.get(peer_id, 0.0) if peer_id is not None else 0.0
        return EPOCH_S + self._loop.time() + skew

    def clock_of(self, peer_id: str) -> Callable[[], float]:
        """A ``clock()`` for constructors: peer ``peer_id``'s wall clock."""
        return lambda: self.now(peer_id)

    def current(self) -> float:
        """The wall clock of the peer the calling task runs for."""
        return self.now(CURRENT_PEER.get())


def peer_context(peer_id: str | None) -> contextvars.Context:
    """A fresh context in which :data:`CURRENT_PEER` is ``peer_id``."""
    ctx = contextvars.Context()
    ctx.run(CURRENT_PEER.set, peer_id)
    return ctx


@contextlib.contextmanager
def patched_time(clocks: WallClocks) -> Iterator[None]:
    """Make ``time.time()`` answer the calling peer's virtual wall clock, restored on exit
    (the approach of time-machine / freezegun, scoped per peer by :data:`CURRENT_PEER`)."""
    real = time.time
    time.time = clocks.current
    try:
        yield
    finally:
        time.time = real


class SimTask(asyncio.Task[Any]):
    """A task hashed by its creation number, not its memory address: a set of tasks (as
    ``asyncio.wait`` returns) then iterates in the same order in every process, where
    address order would change with address-space layout randomisation."""

    _created = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        SimTask._created += 1
        self._sim_number = SimTask._created  # before: the base registers (hashes) the task
        super().__init__(*args, **kwargs)

    def __hash__(self) -> int:
        return self._sim_number


class PeerTasks:
    """The loop's task factory: files each task under the peer it runs for; every task is
    a :class:`SimTask`."""

    def __init__(self) -> None:
        SimTask._created = 0  # every run numbers its tasks from 1
        # Insertion-ordered (not a WeakSet, whose order follows memory addresses), so
        # cancelling is deterministic; finished tasks are pruned now and then.
        self._by_peer: dict[str, dict[asyncio.Task[Any], None]] = {}
        self._added = 0

    def __call__(
        self,
        loop: asyncio.AbstractEventLoop,
        coro: Coroutine[Any, Any, Any],
        context: contextvars.Context | None = None,
    ) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = SimTask(coro, loop=loop, context=context)
        peer = context.get(CURRENT_PEER) if context is not None else CURRENT_PEER.get()
        if peer is not None:
            self._by_peer.setdefault(peer, {})[task] = None
            self._added += 1
            if self._added % 1024 == 0:
                for tasks in self._by_peer.values():
                    for done in [t for t in tasks if t.done()]:
                        del tasks[done]
        return task

    def of(self, peer_id: str) -> list[asyncio.Task[Any]]:
        """The unfinished tasks running for ``peer_id``."""
        return [t for t in self._by_peer.get(peer_id, ()) if not t.done()]

    async def cancel(self, peer_id: str) -> None:
        """Cancel every task of ``peer_id`` (except the caller) and wait until they end."""
        me = asyncio.current_task()
        for _ in range(100):  # a cancelled task may start others on its way out
            tasks = [t for t in self.of(peer_id) if t is not me]
            if not tasks:
                return
            for t in tasks:
                t.cancel()
            await asyncio.wait(tasks)
        raise RuntimeError(f"tasks of {peer_id} keep starting new ones while cancelled")
