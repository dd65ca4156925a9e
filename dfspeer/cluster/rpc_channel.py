"""The peer channel's part of :class:`~dfspeer.cluster.rpc.PeerRpcClient`: record reads and
writes sent as channel messages (:mod:`dfspeer.cluster.channel`), with their timing and
errors, so the client's HTTP methods fall back to HTTP only when the channel declines."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import Histogram

from dfspeer.cluster.channel import MAX_REQUEST_BYTES, ChannelDeclined, PeerChannels
from dfspeer.cluster.rpc_base import answer_error, observe
from dfspeer.errors import PeerUnreachable, RpcError

CHANNEL_RECORD_BYTES = MAX_REQUEST_BYTES - 1024
"""Largest encoded record a write sends on the channel (a larger one goes over HTTP)."""
HTTP = object()
"""What a channel call returns when it must be made over HTTP instead."""


class ChannelRpcMixin:
    """Record calls on the peer channel; the host class sets ``_channels`` (None: off) and
    ``_latency`` (the ``dfspeer_rpc_duration_seconds`` histogram, or None)."""

    _channels: PeerChannels | None
    _latency: Histogram | None

    async def _channel_get_record(self, address: str, table: str, key: bytes) -> Any:
        """The peer's copy (None if it has none), or :data:`HTTP`. Raises RpcError."""
        answer = await self._on_channel(address, "get_record", [table, key])
        if answer is None:
            return HTTP
        status, code, value = answer
        if status == 404 and code == "no_such_record":
            return None
        if status != 200:
            raise answer_error(address, status, code, str(value))
        return value

    async def _channel_put_record(self, address: str, table: str, key: bytes, body: bytes) -> bool:
        """Merge CBOR record ``body`` into the peer's copy; False if it must go over HTTP.
        Raises RpcError (:class:`~dfspeer.cluster.rpc_base.PeerStoreFull` for 507)."""
        if len(body) > CHANNEL_RECORD_BYTES:
            return False
        answer = await self._on_channel(address, "put_record", [table, key, body])
        if answer is None:
            return False
        status, code, message = answer
        if status not in (200, 201, 204):
            raise answer_error(address, status, code, str(message))
        return True

    async def _on_channel(
        self, address: str, op: str, args: list[Any]
    ) -> tuple[int, str, Any] | None:
        """``op(args)`` on the channel, timed as method ``CHANNEL`` in the RPC histogram;
        None when the channel is off or declines."""
        if self._channels is None:
            return None
        started, outcome = time.perf_counter(), "unreachable"
        try:
            answer = await self._channels.call(address, op, args)
            outcome = "ok" if answer[0] < 500 else "error"
            return answer
        except ChannelDeclined:
            outcome = ""  # made over HTTP instead, and timed there
            return None
        except RpcError as exc:
            outcome = "unreachable" if isinstance(exc, PeerUnreachable) else "error"
            raise
        finally:
            if outcome:
                observe(self._latency, address, "CHANNEL", outcome, started)
