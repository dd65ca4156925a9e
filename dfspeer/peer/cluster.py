"""The cluster side of a :class:`~dfspeer.peer.Peer`: its view following gossip (member
events, its own weight, member removal), the drain, garbage-collection passes, and the
``repair``, ``gc`` and ``dedup`` objects of ``GET /v1/cluster/status``."""

from __future__ import annotations

import logging
from typing import Any

from dfspeer.errors import MemberAlive, NoSuchMember
from dfspeer.gossip import Member, MemberEvent, MemberIsLive, UnknownMember
from dfspeer.peer.base import PeerBase, need

log = logging.getLogger("dfspeer.peer")


class ClusterMixin(PeerBase):
    """Membership, drain, GC and status reports of a started peer."""

    async def dedup_status(self) -> dict[str, Any]:
        """The ``"dedup"`` object of ``GET /v1/cluster/status`` (stored and sent savings,
        :mod:`dfspeer.objects.dedup_stats`)."""
        return await self._dedup_stats.status_async() if self._dedup_stats else {}

    def gc_status(self) -> dict[str, Any]:
        """The ``"gc"`` object of ``GET /v1/cluster/status`` (see
        :meth:`dfspeer.model.lifecycle.ObjectLifecycle.status`)."""
        return self._lifecycle.status() if self._lifecycle is not None else {}

    async def gc_pass(self) -> dict[str, int]:
        """Run one garbage-collection pass now; what it did."""
        return await need(self._lifecycle).run_pass()

    async def recount_block_refs(self) -> dict[str, int]:
        """Rebuild this peer's reference counts from its ``block_refs`` table."""
        return await need(self._lifecycle).recount()

    def _refresh_view(self) -> bool:
        """Rebuild the view from gossip (a dead member's eviction is a matter of time)."""
        if self.view.update(self.gossip.members()):
            ring = self.view.ring
            log.info("ring changed digest=%s peers=%d", ring.digest, len(ring.members))
            return True
        return False

    def _publish_weight(self, weight: float) -> None:
        self.gossip.update_local(weight=weight)
        self._refresh_view()

    def repair_status(self) -> dict[str, Any]:
        """The ``"repair"`` object of ``GET /v1/cluster/status``."""
        doc = self._repair.status() if self._repair is not None else {}
        if self._drainer is not None:
            doc["drain"] = self._drainer.progress()
        for source in self.repair_status_sources:
            doc.update(source())
        return doc

    async def drain(self) -> dict[str, Any]:
        """Start draining this peer (see :mod:`dfspeer.cluster.drain`); its progress."""
        return need(self._drainer).start()

    def remove_member(self, peer_id: str) -> Member:
        """Forget a DEAD member for good (``dfspeer members remove``): it becomes LEFT
        here and the removal is gossiped to every peer, each of which drops it from its
        ring at once (not after ``dead_member_evict_s``), so its partitions are
        re-replicated now. Returns the member (state ``left``); removing a LEFT member
        again is harmless. Raises :class:`NoSuchMember` (404) for an unknown id and
        :class:`MemberAlive` (409) for an alive or suspect member or this peer."""
        try:
            removed = self.gossip.remove_member(peer_id)
        except UnknownMember:
            raise NoSuchMember(f"no member {peer_id!r} in this peer's view") from None
        except MemberIsLive as exc:
            raise MemberAlive(
                f"member {peer_id!r} is not dead ({exc}); only a dead member can be removed"
            ) from None
        self._refresh_view()
        log.info("member removed id=%s incarnation=%d", removed.id, removed.incarnation)
        return removed

    def _on_member_event(self, event: MemberEvent) -> None:
        member = event.member
        log.info(
            "member %s id=%s state=%s incarnation=%d api=%s",
            event.kind.value,
            member.id,
            member.state.value,
            member.incarnation,
            member.api_address,
        )
        self._refresh_view()
        if self._maintenance is not None:
            self._maintenance.on_member_event(event)
