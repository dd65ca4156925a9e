"""Waiting on a local cluster: each agent's ``/ready``, a check that the process answering
on a peer's port is that peer, and the membership views converging on a set of alive peers.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping

from dfspeer.localcluster_base import ClusterBase, LocalClusterError, LocalPeer
from dfspeer.loopback import http_get_json


class WaitsMixin(ClusterBase):
    """:class:`~dfspeer.localcluster.LocalCluster`'s waits: readiness and converged views."""

    def _check_alive(self, peer: LocalPeer) -> None:
        if peer.process is None:
            raise LocalClusterError(f"{peer.peer_id} was never started")
        code = peer.process.poll()
        if code is not None:
            raise LocalClusterError(
                f"{peer.peer_id} exited with code {code}; last lines of {peer.log_path}:\n"
                + peer.log_tail()
            )

    def _check_identity(self, peer: LocalPeer) -> None:
        """Make sure the process answering on the peer's port is ours."""
        try:
            _, doc = http_get_json(
                peer.url + "/v1/cluster/status", headers=self.headers, context=self.ssl_context
            )
        except OSError:
            doc = None
        found = doc.get("id") if isinstance(doc, dict) else None
        if found != peer.peer_id:
            self._check_alive(peer)
            raise LocalClusterError(
                f"{peer.url} is answered by peer {found!r}, not {peer.peer_id}: "
                "its port belongs to another process"
            )

    def wait_ready(self, timeout_s: float = 60.0, indices: Iterable[int] | None = None) -> None:
        """Poll ``GET /ready`` until every (selected) peer answers 200.

        Raises :class:`LocalClusterError` (with the peer's log tail) if a peer exits or the
        deadline passes.
        """
        waiting = [self.peer(i) for i in (indices or range(1, len(self.peers) + 1))]
        deadline = time.monotonic() + timeout_s
        while waiting:
            peer = waiting[0]
            self._check_alive(peer)
            try:
                status, _ = http_get_json(
                    peer.url + "/ready", timeout_s=1.0, context=self.ssl_context
                )
            except OSError:
                status = 0
            if status == 200:
                self._check_identity(peer)
                waiting.pop(0)
                continue
            if time.monotonic() > deadline:
                raise LocalClusterError(
                    f"{peer.peer_id} not ready after {timeout_s:.0f} s (last status {status});"
                    f" last lines of {peer.log_path}:\n{peer.log_tail()}"
                )
            time.sleep(0.1)

    def member_states(self, index: int) -> dict[str, str]:
        """Peer ``index``'s view: ``{peer_id: state}``; ``{}`` if it does not answer."""
        try:
            status, doc = http_get_json(
                self.peer(index).url + "/v1/cluster/members",
                headers=self.headers,
                context=self.ssl_context,
            )
        except OSError:
            return {}
        if status != 200 or not isinstance(doc, dict):
            return {}
        return {str(m.get("id")): str(m.get("state")) for m in doc.get("members", [])}

    def wait_view(
        self,
        alive: Iterable[int],
        timeout_s: float = 30.0,
        *,
        observers: Iterable[int] | None = None,
    ) -> None:
        """Wait until every observer (default: the ``alive`` peers) sees exactly the
        ``alive`` peers as alive and every other peer of the cluster as dead, left or not
        at all (a suspect does not count as gone yet)."""
        alive_set = sorted(set(alive))
        want = {self.peer(i).peer_id for i in alive_set}
        watchers = list(observers) if observers is not None else alive_set
        deadline = time.monotonic() + timeout_s
        while True:
            views = {i: self.member_states(i) for i in watchers}
            if all(_view_matches(v, want) for v in views.values()):
                return
            if time.monotonic() > deadline:
                raise LocalClusterError(
                    f"views did not converge to alive={sorted(want)} in {timeout_s:.0f} s: {views}"
                )
            time.sleep(0.2)


def _view_matches(view: Mapping[str, str], alive: set[str]) -> bool:
    if not view:
        return False
    seen_alive = {p for p, s in view.items() if s == "alive"}
    undecided = {p for p, s in view.items() if p not in alive and s not in ("dead", "left")}
    return seen_alive == alive and not undecided
