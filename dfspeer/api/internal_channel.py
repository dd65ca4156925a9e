"""The server side of the peer channel: ``GET /internal/channel`` (a WebSocket upgrade).

Wire format, operations and why: :mod:`dfspeer.cluster.channel`. The upgrade passes the
internal app's signature check like every ``/internal/`` route; then each message is
checked on its own:

- a message that is not binary, is shorter than a MAC, is larger than
  ``MAX_REQUEST_BYTES``, does not decode, or whose MAC matches no key of the keyring is
  dropped unanswered and counted in ``dfspeer_channel_dropped_total{reason}``;
- a signed request with a stale date is answered 401 ``unauthorized``, an unknown
  operation 400 ``unknown_operation`` (the caller makes that call over HTTP), bad
  arguments 400 ``invalid_argument``, an unknown table 404
  ``no_such_table``; a record write answers as ``PUT /internal/tables/{table}/records/{key}``
  does (204; 400 for a record its schema refuses; 507 ``store_full``);
- every answer is counted in ``dfspeer_channel_requests_total{op,status}``.

Reads are served in order on the connection's task (one LMDB lookup each); each write runs
in a task of its own (it waits for its commit), at most ``MAX_WRITES_IN_FLIGHT`` per
connection before the connection stops reading. When the app shuts down, open channels are
closed (1001 going away); their callers fail over to other replicas or to HTTP.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections.abc import Mapping
from typing import Any, NamedTuple

import cbor2
from aiohttp import WSCloseCode, WSMsgType, web
from prometheus_client import CollectorRegistry, Counter

from dfspeer import tracing
from dfspeer.blockstore import BlockStore, BlockStoreError, StoreFull
from dfspeer.cluster.auth import RpcAuth
from dfspeer.cluster.channel import (
    ANSWER_DOMAIN,
    MAC_BYTES,
    MAX_ANSWER_BYTES,
    MAX_REQUEST_BYTES,
    REQUEST_DOMAIN,
)
from dfspeer.cluster.table import TableSchema

log = logging.getLogger(__name__)

Answer = tuple[int, str, Any]
MAX_TABLE_KEY_BYTES = 511  # LMDB's maximum key size
MAX_WRITES_IN_FLIGHT = 256
OPS = ("get_record", "put_record")

__all__ = ["MAX_TABLE_KEY_BYTES", "ChannelServer", "merge_record"]


class Request(NamedTuple):
    """One verified request message."""

    call_id: int
    mac: bytes
    date: int
    op: str
    args: Any
    trace: Any


async def merge_record(
    store: BlockStore, schema: TableSchema[Any], table: str, key: bytes, value: Any
) -> Answer:
    """Validate record ``value`` with ``schema`` and merge it into ``table`` at ``key`` in
    one transaction: ``(204, "", None)``, or 400 ``invalid_argument`` (nothing written), 507
    ``store_full`` or 500 with the message. Shared by the HTTP route and the channel."""
    try:
        schema.merge_records(None, value)  # validates the record before touching the table
    except ValueError as exc:
        return 400, "invalid_argument", f"bad record: {exc}"
    try:
        await store.table(table).update(key, lambda cur: schema.merge_records(cur, value))
    except StoreFull as exc:
        return 507, exc.code, exc.message
    except BlockStoreError as exc:
        return 500, exc.code, exc.message
    return 204, "", None


class ChannelServer:
    """Serves channel requests against ``store`` and its ``tables`` (name -> schema).
    ``registry``: where the counters go (none: not counted)."""

    def __init__(
        self,
        store: BlockStore,
        tables: Mapping[str, TableSchema[Any]],
        auth: RpcAuth,
        registry: CollectorRegistry | None = None,
    ) -> None:
        self.store = store
        self.tables = tables
        self.auth = auth
        self._sockets: weakref.WeakSet[web.WebSocketResponse] = weakref.WeakSet()
        self._requests = self._dropped = None
        if registry is not None:
            self._requests = Counter(
                "dfspeer_channel_requests_total",
                "Requests served on the peer channel, by operation and answer status.",
                ["op", "status"],
                registry=registry,
            )
            self._dropped = Counter(
                "dfspeer_channel_dropped_total",
                "Peer channel messages dropped unanswered, by reason (malformed, forged).",
                ["reason"],
                registry=registry,
            )

    def add_to(self, app: web.Application) -> None:
        """Register ``GET /channel`` on the internal app and the close at shutdown."""
        app.router.add_get("/channel", self.handle, allow_head=False)
        app.on_shutdown.append(self._close_all)

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(
            heartbeat=30.0, max_msg_size=MAX_REQUEST_BYTES, compress=False, autoping=True
        )
        await ws.prepare(request)
        self._sockets.add(ws)
        slots = asyncio.Semaphore(MAX_WRITES_IN_FLIGHT)
        writes: set[asyncio.Task[None]] = set()
        async for message in ws:
            parsed = self.parse(message.data if message.type is WSMsgType.BINARY else b"")
            if parsed is None:
                continue
            if parsed.op == "put_record":
                await slots.acquire()
                task = asyncio.create_task(self._answer_later(ws, parsed, slots))
                writes.add(task)
                task.add_done_callback(writes.discard)
            elif not await _send(ws, await self.answer(parsed)):
                break
        await asyncio.gather(*writes, return_exceptions=True)  # the server's shutdown waits
        return ws

    async def serve(self, data: bytes) -> bytes | None:
        """The signed answer to one request message, or None (dropped and counted)."""
        parsed = self.parse(data)
        return None if parsed is None else await self.answer(parsed)

    def parse(self, data: bytes) -> Request | None:
        """The verified request in ``data``, or None (dropped and counted)."""
        if len(data) <= MAC_BYTES or len(data) > MAX_REQUEST_BYTES:
            self._drop("malformed")
            return None
        mac, body = data[:MAC_BYTES], data[MAC_BYTES:]
        if not self.auth.frame_matches(REQUEST_DOMAIN, body, mac):
            self._drop("forged")
            return None
        try:
            call_id, date, _peer, op, args, trace = cbor2.loads(body)
        except (ValueError, TypeError, cbor2.CBORDecodeError):
            self._drop("malformed")
            return None
        if not isinstance(call_id, int) or not isinstance(date, int) or not isinstance(op, str):
            self._drop("malformed")
            return None
        return Request(call_id, mac, date, op, args, trace)

    async def answer(self, request: Request) -> bytes:
        """Run ``request``; its answer message, signed and bound to the request's MAC."""
        if not self.auth.date_ok(request.date):
            status, code, value = 401, "unauthorized", "request date is too far off"
        elif tracing.enabled() and isinstance(request.trace, dict):
            parent = tracing.extract({str(k): str(v) for k, v in request.trace.items()})
            attributes = {"dfspeer.peer": self.auth.self_id}
            name = f"CHANNEL {request.op}"
            with tracing.span(name, attributes, kind="server", parent=parent) as span:
                status, code, value = await self._dispatch(request.op, request.args)
                span.set_attribute("dfspeer.channel.status", status)
        else:
            status, code, value = await self._dispatch(request.op, request.args)
        if self._requests is not None:
            self._requests.labels(request.op if request.op in OPS else "other", str(status)).inc()
        try:
            body = cbor2.dumps([request.call_id, status, code, value])
        except (ValueError, TypeError) as exc:
            body = cbor2.dumps([request.call_id, 500, "internal_error", f"cannot encode: {exc}"])
        if len(body) > MAX_ANSWER_BYTES:
            body = cbor2.dumps([request.call_id, 413, "too_large", "answer too large"])
        return self.auth.sign_frame(ANSWER_DOMAIN, request.mac + body) + body

    async def _dispatch(self, op: str, args: Any) -> Answer:
        try:
            return await self._run(op, args)
        except Exception as exc:  # a bug: answered 500 like the HTTP routes, channel kept
            log.exception("peer channel %s failed", op[:64])
            return 500, "internal_error", f"{type(exc).__name__}"

    async def _run(self, op: str, args: Any) -> Answer:
        if op not in OPS:
            return 400, "unknown_operation", f"unknown operation {op[:64]!r}"
        arity = 2 if op == "get_record" else 3
        if not (isinstance(args, list) and len(args) == arity and isinstance(args[0], str)):
            return 400, "invalid_argument", f"{op} takes {arity} arguments"
        table, key = args[0], args[1]
        if table not in self.tables:
            return 404, "no_such_table", f"no table {table[:64]!r}"
        if not isinstance(key, bytes) or not 0 < len(key) <= MAX_TABLE_KEY_BYTES:
            return 400, "invalid_argument", f"key must be 1..{MAX_TABLE_KEY_BYTES} bytes"
        if op == "put_record":
            return await self._put_record(table, key, args[2])
        try:
            value = self.store.table(table).get(key)
        except BlockStoreError as exc:
            return 500, exc.code, exc.message
        if value is None:
            return 404, "no_such_record", "no such record"
        return 200, "", value

    async def _put_record(self, table: str, key: bytes, body: Any) -> Answer:
        if not isinstance(body, bytes):
            return 400, "invalid_argument", "the record must be CBOR bytes"
        try:
            value = cbor2.loads(body)
        except (ValueError, TypeError, cbor2.CBORDecodeError) as exc:
            return 400, "invalid_argument", f"bad record: {exc}"
        return await merge_record(self.store, self.tables[table], table, key, value)

    async def _answer_later(
        self, ws: web.WebSocketResponse, request: Request, slots: asyncio.Semaphore
    ) -> None:
        try:
            await _send(ws, await self.answer(request))
        finally:
            slots.release()

    def _drop(self, reason: str) -> None:
        """Count a message dropped for ``reason``."""
        if self._dropped is not None:
            self._dropped.labels(reason).inc()
        log.debug("peer channel message dropped: %s", reason)

    async def _close_all(self, _app: web.Application) -> None:
        for ws in list(self._sockets):
            await ws.close(code=WSCloseCode.GOING_AWAY, message=b"shutting down")


async def _send(ws: web.WebSocketResponse, answer: bytes) -> bool:
    """Send one answer; False if the caller went away (it fails over on its side)."""
    try:
        await ws.send_bytes(answer)
    except ConnectionError:
        return False
    return True
