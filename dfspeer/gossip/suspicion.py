"""Lifeguard dynamic suspicion timeout (Dadgar et al. 2018, section 4.2; memberlist suspicion.go).

A suspicion starts with the long timeout ``max_s`` and shrinks logarithmically toward
``min_s`` as independent peers confirm it (each suspecting peer counts once, the one that
raised it not at all)::

    timeout(n) = max(min_s, max_s - (max_s - min_s) * log(n + 1) / log(k + 1))

so a peer whose own view is wrong (its probes fail because *it* is slow) waits long and
lets the accused refute, while a real failure seen by ``k`` others is declared quickly.
``min_s = suspicion_mult * max(1, log10(N)) * probe_interval`` as in memberlist.

Not in memberlist: when the timeout expires, ``LAST_CALLS`` direct notices go to the
suspect one probe timeout apart before it is declared dead (see ``membership.py``).
"""

from __future__ import annotations

import math

LAST_CALLS = 3  # direct "you are suspected" notices before an unconfirmed suspicion expires


def suspicion_timeout(suspicion_mult: int, n_members: int, probe_interval_s: float) -> float:
    """Minimum suspicion timeout in seconds for a cluster of ``n_members`` live members."""
    scale = max(1.0, math.log10(max(1, n_members)))
    return suspicion_mult * scale * probe_interval_s


def confirmations_wanted(suspicion_mult: int, n_members: int) -> int:
    """``k``: independent confirmations that drive the timeout to its minimum.

    ``suspicion_mult - 2`` (memberlist), or 0 in clusters too small to supply them.
    """
    k = suspicion_mult - 2
    return 0 if n_members - 2 < k else max(0, k)


class Suspicion:
    """One running suspicion of a member at ``incarnation``; times are absolute seconds."""

    __slots__ = (
        "confirmations",
        "deadline",
        "incarnation",
        "k",
        "last_calls",
        "max_s",
        "min_s",
        "n",
        "start",
    )

    def __init__(
        self,
        origin: str,
        incarnation: int,
        k: int,
        min_s: float,
        max_s: float,
        start: float,
    ) -> None:
        self.incarnation = incarnation
        self.k = k
        self.n = 0
        self.min_s = min_s
        self.max_s = max(min_s, max_s)
        self.start = start
        self.confirmations: set[str] = {origin}
        self.last_calls = LAST_CALLS
        self.deadline = start + self.timeout()

    def timeout(self) -> float:
        """Total timeout (from ``start``) for the confirmations seen so far."""
        if self.k < 1:
            return self.max_s
        frac = math.log(self.n + 1) / math.log(self.k + 1)
        return max(self.min_s, self.max_s - frac * (self.max_s - self.min_s))

    def confirm(self, from_id: str) -> bool:
        """Count an independent confirmation; True (and ``deadline`` moved earlier) if new.

        Duplicates, and confirmations beyond ``k``, return False.
        """
        if self.n >= self.k or from_id in self.confirmations:
            return False
        self.confirmations.add(from_id)
        self.n += 1
        if self.last_calls == LAST_CALLS:  # once the last calls started, they run their course
            self.deadline = self.start + self.timeout()
        return True
