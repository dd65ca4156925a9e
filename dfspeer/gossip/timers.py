"""Timer heap for the sans-IO core: callbacks due at absolute times of the caller's clock."""

from __future__ import annotations

import heapq
import math
from collections.abc import Callable
from typing import Any

TimerFn = Callable[[Any, float], None]


class TimerHeap:
    """``at(when, fn, arg)`` then ``run_due(now)`` calls ``fn(arg, now)`` for every due timer.

    Timers cannot be cancelled: callbacks check whether they still matter (cheaper than
    cancellation for the few short-lived timers of a SWIM member).
    """

    __slots__ = ("_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, TimerFn, Any]] = []
        self._seq = 0

    def at(self, when: float, fn: TimerFn, arg: Any = None) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, fn, arg))

    def run_due(self, now: float) -> int:
        """Run every timer with ``when <= now`` (including ones they schedule); return count."""
        heap = self._heap
        pop = heapq.heappop
        ran = 0
        while heap and heap[0][0] <= now:
            _, _, fn, arg = pop(heap)
            fn(arg, now)
            ran += 1
        return ran

    def next(self) -> float:
        """Earliest pending time, ``inf`` if none."""
        return self._heap[0][0] if self._heap else math.inf

    def __len__(self) -> int:
        return len(self._heap)
