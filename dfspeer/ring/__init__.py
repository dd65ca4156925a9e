"""dfspeer.ring: partitioner and consistent-hash ring with bounded loads (pure, no I/O).

Keys map to ``Q = 2**P`` equal partitions (:class:`Partitioner`); a :class:`Ring` built from
a membership view maps each partition to its preference list of peers (Dynamo strategy 3 on
a vnode ring, with capacity-bounded loads after Mirrokni, Thorup and Zadimoghaddam 2018).
"""

from dfspeer.ring.partitioner import Partitioner
from dfspeer.ring.ring import Ring, RingDiff, RingMember, ring_diff

__all__ = ["Partitioner", "Ring", "RingDiff", "RingMember", "ring_diff"]
