"""Hybrid logical clock and object versions.

HLC after Kulkarni, Demirbas et al., "Logical Physical Clocks and Consistent Snapshots in
Globally Distributed Databases" (OPODIS 2014). A timestamp packs the physical part (unix
milliseconds) and the logical counter into one integer, ``(ms << 16) | counter``, so the
paper's rules become: ``now = max(last + 1, wall_ms << 16)`` and, on seeing a remote
timestamp ``r``, ``last = max(last, r)``. A counter overflow carries into the millisecond,
which keeps timestamps unique and monotonic (the clock runs at most slightly ahead).

A :class:`Version` is ``(hlc, peer_id)``: LWW order is by timestamp, then by the writer's
peer id as a deterministic tie-break. Its text form ``"%016x-%s" % (hlc, peer_id)`` sorts
exactly like that order (fixed-width hex), so stores compare versions as plain strings.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

log = logging.getLogger(__name__)

LOGICAL_BITS = 16
_HEX_WIDTH = 16
_FUTURE_WARN_MS = 60_000


@dataclass(frozen=True, order=True)
class Version:
    """An object version: HLC timestamp, then writer peer id (the tie-break)."""

    hlc: int
    peer_id: str

    def __str__(self) -> str:
        return f"{self.hlc:0{_HEX_WIDTH}x}-{self.peer_id}"

    @property
    def unix_ms(self) -> int:
        """The physical part of the timestamp, in unix milliseconds."""
        return self.hlc >> LOGICAL_BITS

    @classmethod
    def parse(cls, text: str) -> Version:
        """Inverse of ``str(version)``. Raises ValueError on malformed text."""
        head, sep, peer = text.partition("-")
        if not sep or len(head) != _HEX_WIDTH or not peer:
            raise ValueError(f"malformed version {text!r}")
        return cls(int(head, 16), peer)


class HybridLogicalClock:
    """A per-peer HLC. ``clock`` returns unix seconds (injectable for tests)."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._last = 0

    @property
    def last(self) -> int:
        return self._last

    def now(self) -> int:
        """A timestamp greater than every one returned or observed so far."""
        wall = int(self._clock() * 1000) << LOGICAL_BITS
        self._last = max(self._last + 1, wall)
        return self._last

    def observe(self, remote: int) -> None:
        """Take a timestamp seen on another peer's record into account (so the next
        :meth:`now` orders after it, whatever this peer's wall clock says)."""
        if remote > self._last:
            ahead_ms = (remote >> LOGICAL_BITS) - int(self._clock() * 1000)
            if ahead_ms > _FUTURE_WARN_MS:
                log.warning("observed an HLC timestamp %d ms ahead of the local clock", ahead_ms)
            self._last = remote

    def observe_version(self, version: str) -> None:
        """:meth:`observe` for a version string; malformed text is ignored."""
        with contextlib.suppress(ValueError):
            self.observe(Version.parse(version).hlc)

    def next_version(self, peer_id: str) -> Version:
        return Version(self.now(), peer_id)
