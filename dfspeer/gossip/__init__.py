"""dfspeer.gossip: SWIM + Lifeguard membership.

The core (:class:`Swim`) is sans-IO; :class:`GossipAgent` (``agent.py``) drives it over
UDP/TCP on the real clock and ``simulations/swim_sim.py`` on a virtual one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from dfspeer.gossip.config import SwimConfig
from dfspeer.gossip.keyring import Keyring, generate_key, load_keyring
from dfspeer.gossip.swim import Swim
from dfspeer.gossip.types import (
    EventKind,
    Member,
    MemberEvent,
    MemberIsLive,
    MemberState,
    UnknownMember,
)

if TYPE_CHECKING:
    from dfspeer.gossip.agent import GossipAgent

__all__ = [
    "EventKind",
    "GossipAgent",
    "Keyring",
    "Member",
    "MemberEvent",
    "MemberIsLive",
    "MemberState",
    "Swim",
    "SwimConfig",
    "UnknownMember",
    "generate_key",
    "load_keyring",
]


def __getattr__(name: str) -> Any:
    # Lazy: the sans-IO core imports without the asyncio driver.
    if name == "GossipAgent":
        from dfspeer.gossip.agent import GossipAgent

        return GossipAgent
    raise AttributeError(f"module 'dfspeer.gossip' has no attribute {name!r}")
