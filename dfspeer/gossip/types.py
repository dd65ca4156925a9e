"""Membership value types shared by the SWIM core, its drivers and the rest of dfspeer.

A :class:`Member` is an immutable snapshot of one peer as this peer sees it: identity,
addresses, incarnation number, SWIM state and placement metadata. The core never mutates
one; every change makes a new value, so a snapshot handed out in a :class:`MemberEvent`
stays true to the moment it was emitted.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class MemberState(enum.Enum):
    """SWIM state of a member (Das et al. 2002, section 4.2, plus memberlist's LEFT)."""

    ALIVE = "alive"
    SUSPECT = "suspect"
    DEAD = "dead"
    LEFT = "left"


@dataclass(frozen=True, slots=True)
class Member:
    """One peer of the cluster.

    ``gossip_address`` is the (host, UDP/TCP port) of its gossip agent, ``api_address``
    the ``"host:port"`` of its HTTP API. ``incarnation`` only ever grows; only the member
    itself bumps it (to refute a suspicion or to publish new metadata). ``zone``,
    ``weight`` and ``version`` are placement metadata for the ring.
    """

    id: str
    gossip_address: tuple[str, int]
    api_address: str
    incarnation: int
    state: MemberState
    zone: str = ""
    weight: float = 1.0
    version: str = ""

    def with_state(self, state: MemberState, incarnation: int) -> Member:
        """A copy in ``state`` at ``incarnation`` (metadata unchanged)."""
        return Member(
            self.id,
            self.gossip_address,
            self.api_address,
            incarnation,
            state,
            self.zone,
            self.weight,
            self.version,
        )

    def same_metadata(self, other: Member) -> bool:
        """True if addresses, zone, weight and version are equal (state/incarnation ignored)."""
        return (
            self.gossip_address == other.gossip_address
            and self.api_address == other.api_address
            and self.zone == other.zone
            and self.weight == other.weight
            and self.version == other.version
        )

    @property
    def is_live(self) -> bool:
        """ALIVE or SUSPECT: still counted as a member of the cluster."""
        return self.state is MemberState.ALIVE or self.state is MemberState.SUSPECT


class EventKind(enum.Enum):
    """What happened to a member, as seen by this peer."""

    JOINED = "joined"  # first heard of, or back from DEAD/LEFT with a higher incarnation
    SUSPECT = "suspect"  # ALIVE -> SUSPECT
    ALIVE = "alive"  # SUSPECT -> ALIVE (the member refuted)
    DEAD = "dead"  # -> DEAD (suspicion timed out here or elsewhere)
    LEFT = "left"  # -> LEFT (graceful leave)
    UPDATED = "updated"  # still ALIVE, metadata or address changed at a higher incarnation


@dataclass(frozen=True, slots=True)
class MemberEvent:
    """A membership change; ``member`` is the member's state right after the change."""

    kind: EventKind
    member: Member


class UnknownMember(LookupError):
    """No member has this id (never heard of, or already reaped)."""


class MemberIsLive(ValueError):
    """The member is ALIVE or SUSPECT (or is ourselves): only a DEAD member is removed."""
