"""Transmit-limited broadcast queue (memberlist queue.go; SWIM section 4.1 dissemination).

Every membership update is piggybacked on outgoing datagrams until it has been sent
``retransmit_mult * ceil(log10(N + 1))`` times, which spreads it to the whole cluster
with high probability (infection-style dissemination, about ``log(N)`` rounds). The
least-sent update goes first, and among equally sent ones the newest; a new update about
a member replaces the queued one (it supersedes it). Updates are queued already encoded,
so packing a datagram is a matter of byte lengths.
"""

from __future__ import annotations

import heapq
import math

from dfspeer.gossip.wire import MIN_MESSAGE_BYTES


def retransmit_limit(retransmit_mult: int, n_members: int) -> int:
    """How many times each update is sent: ``retransmit_mult * ceil(log10(N + 1))``."""
    return retransmit_mult * math.ceil(math.log10(n_members + 1))


class _Item:
    __slots__ = ("key", "live", "payload")

    def __init__(self, key: str, payload: bytes) -> None:
        self.key = key
        self.payload = payload
        self.live = True


class BroadcastQueue:
    """Pending updates keyed by member id; ``get`` packs them into a byte budget.

    The heap is ordered by (transmits, -serial): least sent, then newest. Superseded
    items are marked dead and dropped lazily when they surface.
    """

    __slots__ = ("_by_key", "_heap", "_serial", "retransmit_mult")

    def __init__(self, retransmit_mult: int) -> None:
        self.retransmit_mult = retransmit_mult
        self._heap: list[tuple[int, int, _Item]] = []
        self._by_key: dict[str, _Item] = {}
        self._serial = 0

    def __len__(self) -> int:
        return len(self._by_key)

    def __contains__(self, key: str) -> bool:
        return key in self._by_key

    def queue(self, key: str, payload: bytes) -> None:
        """Queue ``payload`` (an encoded message about ``key``), replacing any older one."""
        old = self._by_key.get(key)
        if old is not None:
            old.live = False
        item = _Item(key, payload)
        self._by_key[key] = item
        self._serial += 1
        heapq.heappush(self._heap, (0, -self._serial, item))

    def get(self, free_bytes: int, n_members: int) -> list[bytes]:
        """Take updates whose total size fits ``free_bytes``; each counts as one transmit.

        Items that reach the retransmit limit for ``n_members`` leave the queue.
        """
        heap = self._heap
        if not self._by_key:
            heap.clear()
            return []
        limit = retransmit_limit(self.retransmit_mult, n_members)
        out: list[bytes] = []
        back: list[tuple[int, int, _Item]] = []
        misses = 0
        pop = heapq.heappop
        while heap and free_bytes >= MIN_MESSAGE_BYTES:
            entry = pop(heap)
            item = entry[2]
            if not item.live:
                continue
            size = len(item.payload)
            if size > free_bytes:
                back.append(entry)
                misses += 1
                if misses > 8:
                    break
                continue
            out.append(item.payload)
            free_bytes -= size
            transmits = entry[0] + 1
            if transmits >= limit:
                item.live = False
                del self._by_key[item.key]
            else:
                back.append((transmits, entry[1], item))
        for entry in back:
            heapq.heappush(heap, entry)
        return out

    def clear(self) -> None:
        """Drop everything queued."""
        self._heap.clear()
        self._by_key.clear()
