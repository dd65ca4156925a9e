"""An asyncio event loop on virtual time.

:class:`VirtualTimeLoop` is a :class:`asyncio.SelectorEventLoop` whose :meth:`time` is a
virtual clock (seconds, starting at 0). Its selector never blocks: when the loop would
wait ``t`` seconds for the next timer, the clock jumps ``t`` ahead instead, so a simulated
hour of timers costs only the CPU of its callbacks (the trick of ``looptime`` and aiotools'
``VirtualClock``). Executor work (``asyncio.to_thread``, ``run_in_executor``) runs inline,
so no thread can finish at a wall-clock-dependent moment. The ready queue is FIFO and the
timer heap is ordered by time then insertion, and futures (with the task factory of
:mod:`.clock`, tasks too) hash by creation number rather than memory address, so sets of
them iterate alike in every process: a run is a function of its inputs (and of the hash
seed of str and bytes, which ``PYTHONHASHSEED`` pins).

A loop with nothing ready and no timer would wait forever: :class:`SimulationDeadlock`.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any, TypeVar

_T = TypeVar("_T")


class SimulationDeadlock(RuntimeError):
    """Nothing is ready and no timer is scheduled: every task waits for another."""


class _VirtualSelector(selectors.DefaultSelector):
    """Polls the real selector without blocking; a wait becomes a jump of the clock."""

    def __init__(self, clock: VirtualClock) -> None:
        super().__init__()
        self._clock = clock

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events = super().select(0)
        if events or timeout == 0:
            return events
        if timeout is None:
            raise SimulationDeadlock("no task is ready and no timer is scheduled")
        self._clock.now += timeout
        return []


class SimFuture(asyncio.Future[Any]):
    """A future hashed by its creation number on its loop, not its memory address (see
    :class:`dfspeer.sim.clock.SimTask`)."""

    def __init__(self, *, loop: VirtualTimeLoop) -> None:
        loop.futures_created += 1
        self._sim_number = loop.futures_created  # before: the base may hash it
        super().__init__(loop=loop)

    def __hash__(self) -> int:
        return self._sim_number


class VirtualClock:
    """The simulated time: ``now`` seconds since the start of the run."""

    def __init__(self) -> None:
        self.now = 0.0


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop whose time is :attr:`clock` (see the module docstring)."""

    def __init__(self) -> None:
        self.clock = VirtualClock()
        self.futures_created = 0
        super().__init__(selector=_VirtualSelector(self.clock))

    def time(self) -> float:
        return self.clock.now

    def create_future(self) -> asyncio.Future[Any]:
        """A :class:`SimFuture` (deterministic hash, so sets of futures iterate alike)."""
        return SimFuture(loop=self)

    def run_in_executor(  # type: ignore[override]
        self, executor: Executor | None, func: Callable[..., _T], *args: Any
    ) -> asyncio.Future[_T]:
        """Run ``func(*args)`` now, on the loop's thread; a done future of its outcome."""
        future: asyncio.Future[_T] = self.create_future()
        try:
            future.set_result(func(*args))
        except BaseException as exc:  # the awaiting task gets it, as from a thread
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            future.set_exception(exc)
        return future
