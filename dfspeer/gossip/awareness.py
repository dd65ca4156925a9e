"""Lifeguard local health awareness (Dadgar et al. 2018, section 4.1; memberlist awareness.go).

A peer that is itself slow (CPU starved, dropping packets) wrongly accuses healthy peers.
Lifeguard has each peer score its own health from evidence it can observe — probes that
failed although intermediaries could not confirm the failure (missing nacks), having to
refute a suspicion about itself — and stretch its probe interval and timeout by
``score + 1`` while unhealthy, so it accuses less and gives replies time to arrive.
"""

from __future__ import annotations


class Awareness:
    """Health score in ``0 .. max_multiplier - 1``; 0 is healthy."""

    __slots__ = ("max_multiplier", "score")

    def __init__(self, max_multiplier: int) -> None:
        if max_multiplier < 1:
            raise ValueError("awareness max_multiplier must be >= 1")
        self.max_multiplier = max_multiplier
        self.score = 0

    def apply_delta(self, delta: int) -> int:
        """Add ``delta`` (clamped to the range); return the new score."""
        score = self.score + delta
        if score < 0:
            score = 0
        elif score > self.max_multiplier - 1:
            score = self.max_multiplier - 1
        self.score = score
        return score

    @property
    def multiplier(self) -> int:
        """``score + 1``: the factor applied to probe interval and probe timeout."""
        return self.score + 1

    def scale(self, timeout_s: float) -> float:
        """``timeout_s * (score + 1)`` seconds."""
        return timeout_s * (self.score + 1)
