"""PeerChannels: small peer RPCs as messages on one WebSocket per peer (the peer channel).

A quorum read or write of a record is a small request and a small answer, yet as an HTTP
request it pays for a request line, headers, a signature over them, aiohttp's client
machinery and a pass through the server's middlewares: ``benchmarks/small_ops_cpu.py`` put
that at about 200 µs of CPU on each side, more than half of what a 4 KiB GET costs the
cluster. The channel carries such calls as binary WebSocket messages (RFC 6455, aiohttp's
client and server) on one long-lived connection per peer pair, any number in flight at once
and matched by id -- as Cassandra's internode messaging multiplexes requests over a few
connections per peer instead of a request per connection.

The connection is opened with a signed ``GET /internal/channel`` (:mod:`dfspeer.cluster.auth`;
an unsigned upgrade is refused with 401 before anything runs), over TLS when peer RPC uses
TLS. Each message then carries its own signature, so a message injected into the stream is
dropped like a forged request:

- request: ``MAC || CBOR [id, date, peer, op, args, trace]`` with ``MAC`` the 32-byte
  HMAC-SHA256 of ``REQUEST_DOMAIN || CBOR...`` under the keyring's RPC key; ``date``: unix
  seconds (outside ``max_skew_s`` of the server's clock: answered 401); ``trace``: the W3C
  trace context (a map, or null);
- answer: ``MAC || CBOR [id, status, code, value]``, ``MAC`` over ``ANSWER_DOMAIN ||
  request MAC || CBOR...``, so an answer cannot be replayed for another request; ``status``
  and ``code`` as the HTTP route would answer (200 and ``""`` with the value; 404
  ``no_such_record``; ...), ``value`` the message on an error.

Operations, each answering as its HTTP route does:

- ``get_record`` (``args``: table, key): ``GET /internal/tables/{table}/records/{key}``;
- ``put_record`` (``args``: table, key, the record as CBOR bytes): ``PUT`` of that route,
  the record merged with the peer's copy in one transaction, answered once durable; a
  record over ``CHANNEL_RECORD_BYTES`` (:mod:`dfspeer.cluster.rpc_channel`) goes over HTTP.

Fallback to HTTP (:class:`ChannelDeclined`): a peer that answers the upgrade with 404 (it
predates the channel) is called over HTTP for ``DECLINED_RETRY_S``; an answer larger than
``MAX_ANSWER_BYTES`` comes back as 413 ``too_large``, and an operation the peer does not
know (a peer of an earlier release) as 400 ``unknown_operation``: that call is made over
HTTP.

Errors: a failed connect, a closed connection or no answer within ``timeout_s`` raises
:class:`~dfspeer.errors.PeerUnreachable` for the calls it hits (a connection that stays
silent that long is closed, and the next call dials again); a 401 upgrade or an answer with a
bad signature raises :class:`~dfspeer.errors.RpcError`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import cbor2
from yarl import URL

from dfspeer import tracing
from dfspeer.cluster.auth import RpcAuth
from dfspeer.cluster.tracing_hooks import peer_attributes
from dfspeer.errors import PeerUnreachable, RpcError

log = logging.getLogger(__name__)

CHANNEL_PATH = "/internal/channel"
REQUEST_DOMAIN = b"dfspeer-channel-request-v1\n"
ANSWER_DOMAIN = b"dfspeer-channel-answer-v1\n"
MAC_BYTES = 32
MAX_REQUEST_BYTES = 64 * 1024
MAX_ANSWER_BYTES = 1024 * 1024
"""Largest answer value sent as a message; a larger one is answered 413 ``too_large``."""
DECLINED_RETRY_S = 60.0
CLOSE_WAIT_S = 2.0
"""How long closing a channel waits for the peer's close frame (a frozen peer sends none)."""
HEARTBEAT_S = 10.0
"""WebSocket ping interval; a connection without a pong for half of it is closed."""

__all__ = [
    "ANSWER_DOMAIN",
    "CHANNEL_PATH",
    "MAX_ANSWER_BYTES",
    "MAX_REQUEST_BYTES",
    "REQUEST_DOMAIN",
    "ChannelDeclined",
    "PeerChannels",
]


class ChannelDeclined(Exception):
    """This call cannot go over the channel (the peer has none, or the answer is too
    large for a message): make it over HTTP instead."""


class _Link:
    """One open channel: its socket, the calls waiting for answers, when it last spoke."""

    __slots__ = ("heard", "pending", "reader", "ws")

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.pending: dict[int, tuple[asyncio.Future[tuple[int, str, Any]], bytes]] = {}
        self.heard = time.monotonic()
        self.reader: asyncio.Task[None] | None = None


class PeerChannels:
    """The client side: one channel per peer address, opened on first use.

    ``auth``: signs requests and checks answers; ``session``: returns the RPC client's
    :class:`aiohttp.ClientSession` (its connector, TLS and timeouts are reused for the
    upgrade); ``scheme``: ``"http"`` or ``"https"``; ``timeout_s``: per call. Call
    :meth:`close` when done.
    """

    def __init__(
        self,
        auth: RpcAuth,
        session: Callable[[], aiohttp.ClientSession],
        *,
        scheme: str,
        timeout_s: float,
    ) -> None:
        self._auth = auth
        self._session = session
        self._scheme = "wss" if scheme == "https" else "ws"
        self._timeout_s = timeout_s
        self._links: dict[str, _Link] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._failed: dict[str, tuple[float, str]] = {}
        self._declined_until: dict[str, float] = {}
        self._closing: set[asyncio.Task[bool]] = set()
        self._next_id = 0

    async def call(self, address: str, op: str, args: list[Any]) -> tuple[int, str, Any]:
        """Send ``op(args)`` to the peer at ``address`` (``host:port``); return its answer
        ``(status, code, value)``. Raises :class:`ChannelDeclined` (use HTTP),
        :class:`PeerUnreachable` or :class:`RpcError` (module docstring)."""
        if self._declined_until.get(address, 0.0) > time.monotonic():
            raise ChannelDeclined(address)
        if not tracing.enabled():
            return await self._call(address, op, args, None)
        attributes = peer_attributes(address)
        if op == "get_record" and args:
            attributes["dfspeer.table"] = str(args[0])
        async with tracing.span(f"CHANNEL {op}", attributes, kind="client") as span:
            trace: dict[str, str] = {}
            tracing.inject(trace)
            answer = await self._call(address, op, args, trace or None)
            span.set_attribute("dfspeer.channel.status", answer[0])
            if answer[0] >= 500:
                span.set_error(f"status {answer[0]}")
            return answer

    async def _call(
        self, address: str, op: str, args: list[Any], trace: dict[str, str] | None
    ) -> tuple[int, str, Any]:
        link = self._links.get(address)
        if link is None or link.ws.closed:
            link = await self._connect(address)
        self._next_id += 1
        call_id = self._next_id
        body = cbor2.dumps([call_id, int(time.time()), self._auth.self_id, op, args, trace])
        mac = self._auth.sign_frame(REQUEST_DOMAIN, body)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[tuple[int, str, Any]] = loop.create_future()
        link.pending[call_id] = (future, mac)
        timer = loop.call_later(self._timeout_s, self._expire, address, link, call_id)
        try:
            try:
                await link.ws.send_bytes(mac + body)
            except (aiohttp.ClientError, OSError, RuntimeError) as exc:
                self._drop(address, link, f"send failed: {type(exc).__name__}")
                raise PeerUnreachable(f"{address}: channel send failed: {exc}") from exc
            answer = await future
        finally:
            timer.cancel()
            link.pending.pop(call_id, None)
        if answer[1] in ("too_large", "unknown_operation"):
            raise ChannelDeclined(address)
        return answer

    # ------------------------------------------------------------------ connections
    async def _connect(self, address: str) -> _Link:
        started = time.monotonic()
        lock = self._locks.setdefault(address, asyncio.Lock())
        async with lock:
            link = self._links.get(address)
            if link is not None and not link.ws.closed:
                return link
            if link is not None:  # closing: its reader has not seen the end yet
                self._drop(address, link, "closed")
            failed = self._failed.get(address)
            if failed is not None and failed[0] >= started:  # failed while this call waited
                raise PeerUnreachable(failed[1])
            if self._declined_until.get(address, 0.0) > time.monotonic():
                raise ChannelDeclined(address)
            try:
                link = _Link(await self._open(address))
            except PeerUnreachable as exc:
                self._failed[address] = (time.monotonic(), exc.message)
                raise
            self._failed.pop(address, None)
            link.reader = asyncio.create_task(self._read(address, link), name=f"channel {address}")
            self._links[address] = link
            return link

    async def _open(self, address: str) -> aiohttp.ClientWebSocketResponse:
        url = URL(f"{self._scheme}://{address}{CHANNEL_PATH}", encoded=True)
        headers = self._auth.sign_request("GET", CHANNEL_PATH)
        try:
            return await self._session().ws_connect(
                url,
                headers=headers,
                heartbeat=HEARTBEAT_S,
                max_msg_size=MAX_ANSWER_BYTES + 4096,
                compress=0,
                timeout=aiohttp.ClientWSTimeout(ws_receive=None, ws_close=CLOSE_WAIT_S),
            )
        except aiohttp.WSServerHandshakeError as exc:
            if exc.status in (404, 405):
                self._declined_until[address] = time.monotonic() + DECLINED_RETRY_S
                raise ChannelDeclined(address) from exc
            if exc.status >= 500:
                raise PeerUnreachable(f"{address}: channel refused: {exc.status}") from exc
            raise RpcError(f"{address}: channel refused: {exc.status}", status=exc.status) from exc
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise PeerUnreachable(f"{address}: channel: {type(exc).__name__}: {exc}") from exc

    async def _read(self, address: str, link: _Link) -> None:
        reason = "closed by the peer"
        try:
            async for message in link.ws:
                link.heard = time.monotonic()
                if message.type is aiohttp.WSMsgType.BINARY:
                    self._deliver(address, link, message.data)
        except Exception as exc:  # a broken stream: every waiting call fails, none hangs
            reason = f"{type(exc).__name__}: {exc}"
            log.debug("channel to %s failed: %s", address, reason)
        finally:
            self._drop(address, link, reason)

    def _deliver(self, address: str, link: _Link, data: bytes) -> None:
        """Hand one answer to the call waiting for it; drop what is malformed or forged."""
        body = data[MAC_BYTES:]
        try:
            call_id, status, code, value = cbor2.loads(body)
        except (ValueError, TypeError, cbor2.CBORDecodeError):
            log.warning("channel to %s: malformed answer dropped", address)
            return
        waiting = link.pending.get(call_id) if isinstance(call_id, int) else None
        if waiting is None or waiting[0].done():
            return  # its call timed out and went away
        future, request_mac = waiting
        if not self._auth.frame_matches(ANSWER_DOMAIN, request_mac + body, data[:MAC_BYTES]):
            future.set_exception(RpcError(f"{address}: channel answer carries no valid signature"))
        elif not isinstance(status, int) or not isinstance(code, str):
            future.set_exception(RpcError(f"{address}: malformed channel answer"))
        else:
            future.set_result((status, code, value))

    def _expire(self, address: str, link: _Link, call_id: int) -> None:
        waiting = link.pending.get(call_id)
        if waiting is not None and not waiting[0].done():
            waiting[0].set_exception(
                PeerUnreachable(f"{address}: no channel answer within {self._timeout_s:g} s")
            )
        if time.monotonic() - link.heard >= self._timeout_s:  # silent that long: dead
            self._drop(address, link, "silent")

    def _drop(self, address: str, link: _Link, reason: str) -> None:
        if self._links.get(address) is link:
            del self._links[address]
        for future, _ in link.pending.values():
            if not future.done():
                future.set_exception(PeerUnreachable(f"{address}: channel {reason}"))
        link.pending.clear()
        if not link.ws.closed:
            task = asyncio.get_running_loop().create_task(link.ws.close())
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def close(self) -> None:
        """Close every channel (idempotent); their waiting calls fail."""
        links = list(self._links.items())
        for address, link in links:
            self._drop(address, link, "closed")  # starts each close, waits at most CLOSE_WAIT_S
        readers = [link.reader for _, link in links if link.reader is not None]
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, *self._closing, return_exceptions=True)
