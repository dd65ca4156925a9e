"""Key -> partition mapping: the top ``P`` bits of a 64-bit MurmurHash3.

Dynamo's strategy 3 (DeCandia et al., "Dynamo: Amazon's Highly Available Key-value Store",
SOSP 2007, section 6.2) splits the hash space into ``Q`` equal, fixed partitions and places
partitions (not keys) on peers. A partition is the unit of placement, repair, Merkle
summaries and hand-off; it never changes for a key while ``P`` stays the same.
"""

from __future__ import annotations

import mmh3

HASH_BITS = 64
"""Width of the hash space in bits; partitions and vnode tokens live in ``[0, 2**64)``."""

MAX_PARTITION_BITS = 32
"""Largest accepted ``partition_bits`` (``Q = 2**32``)."""


def key_hash(key: bytes) -> int:
    """Unsigned 64-bit hash of ``key``: ``mmh3.hash64(key, signed=False)[0]`` (seed 0).

    Returns an int in ``[0, 2**64)``. The same bytes give the same value on every platform.
    """
    return int(mmh3.hash64(key, signed=False)[0])


class Partitioner:
    """Maps keys (bytes) to one of ``Q = 2**partition_bits`` equal partitions.

    The partition of a key is the top ``partition_bits`` bits of :func:`key_hash`, so
    partition ``p`` owns the hash range ``[p * 2**(64-P), (p + 1) * 2**(64-P))``; its start
    (:meth:`token`) is where the ring walk for its replicas begins.

    Raises ``ValueError`` if ``partition_bits`` is not an int in ``0..32``.
    """

    __slots__ = ("_shift", "partition_bits", "partition_count")

    partition_bits: int
    partition_count: int

    def __init__(self, partition_bits: int = 10) -> None:
        if (
            isinstance(partition_bits, bool)
            or not isinstance(partition_bits, int)
            or not 0 <= partition_bits <= MAX_PARTITION_BITS
        ):
            raise ValueError(
                f"partition_bits must be an int in 0..{MAX_PARTITION_BITS}, got {partition_bits!r}"
            )
        self.partition_bits = partition_bits
        self.partition_count = 1 << partition_bits
        self._shift = HASH_BITS - partition_bits

    def partition(self, key: bytes) -> int:
        """Partition of ``key``: an int in ``[0, partition_count)``."""
        return key_hash(key) >> self._shift

    def token(self, partition: int) -> int:
        """First hash value of ``partition`` (``partition << (64 - P)``), in ``[0, 2**64)``.

        Raises ``ValueError`` if ``partition`` is outside ``[0, partition_count)``.
        """
        if not 0 <= partition < self.partition_count:
            raise ValueError(
                f"partition must be in 0..{self.partition_count - 1}, got {partition!r}"
            )
        return partition << self._shift

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Partitioner):
            return NotImplemented
        return self.partition_bits == other.partition_bits

    def __hash__(self) -> int:
        return hash(("Partitioner", self.partition_bits))

    def __repr__(self) -> str:
        return f"Partitioner(partition_bits={self.partition_bits})"
