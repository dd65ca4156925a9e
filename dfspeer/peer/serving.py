"""The HTTP side of a :class:`~dfspeer.peer.Peer`: the API server on the bound socket (public
REST, ``/internal/`` peer RPC, upload sessions, repair and drain routes, the web console at
``/ui/``) and the S3 server on ``s3_port`` (:mod:`dfspeer.api.s3`)."""

from __future__ import annotations

import logging
import socket
from typing import Any

from aiohttp import web

import dfspeer
from dfspeer.access.limits import LIMITS_KEY
from dfspeer.api.app import build_app
from dfspeer.api.console import add_console
from dfspeer.api.console.members import MemberForwarder
from dfspeer.api.internal import internal_app
from dfspeer.api.middleware import AccessLogger
from dfspeer.api.repair_routes import DRAIN_KEY
from dfspeer.api.repair_routes import routes as repair_routes
from dfspeer.api.uploads import UPLOADS_KEY
from dfspeer.api.uploads import routes as upload_routes
from dfspeer.peer.base import HTTP_SHUTDOWN_TIMEOUT_S, PeerBase, need


class ServingMixin(PeerBase):
    """The HTTP and S3 servers of a peer, started by :meth:`~dfspeer.peer.Peer.start`."""

    async def _start_http(self, sock: socket.socket) -> None:
        """Serve the API on ``sock`` (bound first thing at start)."""
        app = build_app(
            self.objects,
            self,
            self.config,
            registry=self.registry,
            internal=internal_app(
                self.store,
                need(self.keyring),
                self_id=self.peer_id,
                tables=self.tables,
                status=self._rpc_status,
                max_block_bytes=self.config.max_block_bytes,
                hints=need(self._maintenance).hints,
                registry=self.registry,
            ),
            gate=self.gate,
            access=self._access,
            audit=self._audit,
        )
        app[DRAIN_KEY] = need(self._drainer)
        app[UPLOADS_KEY] = need(self._uploads)
        app.add_routes(upload_routes)
        app.add_routes(repair_routes)
        # the web console at /ui/ (it reads other peers' figures with the peer RPC, and hands
        # an admin's drain or recount of another member on to that member's native API)
        forwarder = MemberForwarder(tls=need(self._rpc).tls)
        self._stack.defer(forwarder.close, "console member calls")
        add_console(app, need(self.keyring), peer_status=need(self._rpc).status, forward=forwarder)
        self._runner = web.AppRunner(
            app,
            handle_signals=False,
            access_log_class=AccessLogger,
            access_log=logging.getLogger("dfspeer.api.access"),
            shutdown_timeout=HTTP_SHUTDOWN_TIMEOUT_S,
        )
        await self._runner.setup()
        self._stack.defer(self._runner.cleanup, "http server")
        await web.SockSite(self._runner, sock, ssl_context=self._tls).start()

    async def _upload_bucket(self, upload_id: str) -> str:
        """The bucket of upload session ``upload_id`` (for the access checks)."""
        return (await need(self._uploads).get(upload_id)).bucket

    async def _start_s3(self) -> None:
        """The S3 API on its own port (:mod:`dfspeer.api.s3`); none when ``s3_port`` is 0.
        It shares the native port's rate limits and in-flight cap (one budget a principal)
        and its auth cache: access keys and buckets are read through the lookups
        :meth:`_start_access` built (:mod:`dfspeer.access.cache`), so a key disabled or a
        grant revoked is refused by both ports at the same time."""
        if not self.config.s3_port:
            return
        from dfspeer.api.s3.service import s3_site  # botocore loads only for an S3 port

        limits = self._runner.app.get(LIMITS_KEY) if self._runner is not None else None
        site = s3_site(
            self.config,
            self.objects,
            self.uploads,
            need(self.keyring),
            gate=self.gate,
            limits=limits,
            audit=self._audit,
            key_records=need(self._key_records),
            bucket_lookup=need(self._bucket_lookup),
            registry=self.registry,
        )
        await site.start(
            self.config.host,
            self.config.s3_port,
            shutdown_timeout_s=HTTP_SHUTDOWN_TIMEOUT_S,
            ssl_context=self._tls,
        )
        self._s3 = site
        self._stack.defer(site.close, "s3 server")

    def _rpc_status(self) -> dict[str, Any]:
        """Extra fields of ``GET /internal/status`` (other peers compare ring digests)."""
        ring = self.view.ring
        return {
            "ready": self.ready,
            "ring_digest": ring.digest,
            "partitions_held": len(ring.partitions_of(self.peer_id)),
            "version": dfspeer.__version__,
        }
