"""Internal peer RPC server: the ``/internal/`` routes other peers call.

Mount it in the public app (API+PEER helper)::

    from dfspeer.api.internal import internal_app
    app.add_subapp("/internal/", internal_app(store, keyring, self_id=peer_id,
                                              status=lambda: {...}))

Signature::

    def internal_app(store: BlockStore, keyring: Keyring, *, self_id: str = "",
                     tables: Mapping[str, TableSchema] | None = None,
                     status: Callable[[], Mapping[str, Any]] | None = None,
                     max_block_bytes: int = 64 MiB, max_skew_s: float = 300.0,
                     clock: Callable[[], float] = time.time) -> web.Application

Every route requires an HMAC signature (:mod:`dfspeer.cluster.auth`): otherwise 401
``{"error": {"code": "unauthorized", ...}}`` and nothing is touched. Routes (under /internal):

=======  =====================================  =============================================
PUT      /blocks/{hex digest}                   raw body, Content-Length required (<=
                                                ``max_block_bytes``, the peer passes
                                                ``PeerConfig.max_block_bytes``);
                                                verified against the digest; 204 when durable;
                                                ``?ref=<hex CBOR block_refs record>`` stores
                                                the block and its reference in one txn;
                                                ``&linger=1``: more blocks follow, the
                                                commit may wait to share their flush
GET      /blocks/{hex digest}                   200 raw bytes, 404 ``block_not_found``;
                                                ``?range=<lo>-<hi>``: bytes [lo, hi) only,
                                                checked by segment here, their SHA-256 signed
HEAD     /blocks/{hex digest}                   200 / 404
POST     /blocks/has                            CBOR list of digests: 200 CBOR list of
                                                booleans (:mod:`.internal_dedup`)
PUT      /tables/{table}/records/{hex key}      CBOR record, merged (schema) atomically; 204
GET      /tables/{table}/records/{hex key}      200 CBOR, 404 ``no_such_record``
DELETE   /tables/{table}/records/{hex key}      ?version=<hex utf-8 token>: retract that
         (retract)                              write (``TableSchema.retract``); 204 / 404
GET      /tables/{table}/scan                   ?prefix=<hex>&start_after=<hex>&limit=<1..1000>
                                                &omit=<field,...>: 200 CBOR [[key, record], ...]
GET      /status                                200 JSON: block store stats + ``status()``
GET      /channel                               WebSocket: the peer channel, signed
                                                messages (:mod:`.internal_channel`)
POST     /merkle/{tree}                         CBOR summary request of the anti-entropy diff
                                                (tree: "blocks" or a table): 200 CBOR answer
                                                (:func:`dfspeer.blockstore.merkle_diff.serve`)
=======  =====================================  =============================================

``tables`` maps the table names peers may use to their schema
(:class:`dfspeer.cluster.table.TableSchema`); other names answer 404 ``no_such_table``.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import cbor2
from aiohttp import web
from prometheus_client import CollectorRegistry

from dfspeer.api.internal_channel import MAX_TABLE_KEY_BYTES, ChannelServer, merge_record
from dfspeer.api.internal_dedup import add_dedup_routes
from dfspeer.api.internal_hints import add_hint_routes, read_body
from dfspeer.api.tracing_middleware import server_spans
from dfspeer.blockstore import (
    BlockNotFound,
    BlockStore,
    BlockStoreError,
    CorruptBlock,
    DigestMismatch,
    PutBlock,
    StoreFull,
    TableUpdate,
    WriteOp,
)
from dfspeer.blockstore.merkle import BLOCKS_TREE
from dfspeer.blockstore.merkle_diff import serve as merkle_serve
from dfspeer.blockstore.summary import SummaryReader
from dfspeer.cluster.auth import HEADER_BODY_SHA256, RpcAuth, error_response, rpc_auth_middleware
from dfspeer.cluster.handoff import HintStore
from dfspeer.cluster.rpc import MAX_RECORD_BYTES, MAX_SCAN_LIMIT, TABLE_NAME_RE, sha256_hex
from dfspeer.cluster.table import TableSchema
from dfspeer.gossip import Keyring

MiB = 1024 * 1024
_HEX_DIGEST = re.compile(r"^[0-9a-f]{64}$")
MAX_SUMMARY_REQUEST_BYTES = 1024 * 1024  # 4096 items of <= 51 bytes + a partition bitmap
BLOCK_REFS = "block_refs"
"""The table a block PUT's ``?ref=`` goes to (:mod:`dfspeer.model.block_refs`)."""
STORE_KEY = web.AppKey("dfspeer.internal.store", BlockStore)


class _Internal:
    """Handlers, bound to one block store."""

    def __init__(
        self,
        store: BlockStore,
        tables: Mapping[str, TableSchema[Any]],
        status: Callable[[], Mapping[str, Any]] | None,
        max_block_bytes: int,
        self_id: str,
    ) -> None:
        self.store = store
        self.self_id = self_id
        self.tables = dict(tables)
        self.status_fn = status
        self.max_block_bytes = max_block_bytes

    # ------------------------------------------------------------------ parsing
    @staticmethod
    def _digest(request: web.Request) -> bytes | None:
        text = request.match_info["digest"]
        return bytes.fromhex(text) if _HEX_DIGEST.match(text) else None

    def _table_key(self, request: web.Request) -> tuple[str, bytes] | web.Response:
        table = request.match_info["table"]
        if not TABLE_NAME_RE.match(table) or table not in self.tables:
            return error_response(404, "no_such_table", f"unknown table {table!r}", request)
        key = _hex_param(request.match_info.get("key", ""))
        if key is None or not 0 < len(key) <= MAX_TABLE_KEY_BYTES:
            return error_response(400, "invalid_argument", "key must be 1..511 bytes, hex", request)
        return table, key

    # ------------------------------------------------------------------ blocks
    async def put_block(self, request: web.Request) -> web.Response:
        digest = self._digest(request)
        if digest is None:
            return error_response(400, "invalid_argument", "digest must be 64 hex", request)
        if request.headers.get(HEADER_BODY_SHA256) != digest.hex():
            return error_response(400, "bad_digest", "signed body hash is not the digest", request)
        data = await read_body(request, self.max_block_bytes)
        if isinstance(data, web.Response):
            return data
        ops = self._block_ref_ops(request, digest)
        if isinstance(ops, web.Response):
            return ops
        linger = request.query.get("linger") == "1"
        try:
            if ops:
                await self.store.write_batch([PutBlock(data, digest), *ops], linger=linger)
            else:
                await self.store.put_verified(digest, data, linger=linger)
        except DigestMismatch as exc:
            return error_response(400, "bad_digest", exc.message, request)
        except StoreFull as exc:
            return error_response(507, exc.code, exc.message, request)
        except BlockStoreError as exc:
            return error_response(500, exc.code, exc.message, request)
        return web.Response(status=204)

    def _block_ref_ops(self, request: web.Request, digest: bytes) -> list[WriteOp] | web.Response:
        """The ``?ref=`` block reference of a block PUT as a batch op ([] without one)."""
        if "ref" not in request.query:
            return []
        schema = self.tables.get(BLOCK_REFS)
        raw = _hex_param(request.query["ref"])
        try:
            if schema is None or raw is None:
                raise ValueError("this peer keeps no block references, or ref is not hex")
            record = cbor2.loads(raw)
            ref = schema.decode(record)
            if ref.digest != digest:
                raise ValueError("the reference names another block")
            key = digest + ref.version.encode()
        except (ValueError, cbor2.CBORDecodeError) as exc:
            return error_response(400, "invalid_argument", f"bad ref: {exc}", request)
        merge = schema.merge_records
        return [TableUpdate(BLOCK_REFS, key, lambda cur: merge(cur, record))]

    async def get_block(self, request: web.Request) -> web.Response:
        digest = self._digest(request)
        if digest is None:
            return error_response(400, "invalid_argument", "digest must be 64 hex", request)
        try:
            span = _range_param(request.query.get("range"))
        except ValueError as exc:
            return error_response(400, "invalid_argument", str(exc), request)
        try:
            if span is None:
                data = await self.store.get(digest)
            else:
                data = await self.store.get_range(digest, *span)
        except BlockNotFound as exc:
            return error_response(404, "block_not_found", exc.message, request)
        except CorruptBlock as exc:
            return error_response(500, "corrupt_block", exc.message, request)
        response = web.Response(body=data, content_type="application/octet-stream")
        # a whole block self-verifies; a range is checked against its signed hash
        response.headers[HEADER_BODY_SHA256] = (
            digest.hex() if span is None else await sha256_hex(data)
        )
        return response

    async def head_block(self, request: web.Request) -> web.Response:
        digest = self._digest(request)
        if digest is None:
            return error_response(400, "invalid_argument", "digest must be 64 hex", request)
        return web.Response(status=200 if await self.store.has(digest) else 404)

    # ------------------------------------------------------------------ records
    async def put_record(self, request: web.Request) -> web.Response:
        parsed = self._table_key(request)
        if isinstance(parsed, web.Response):
            return parsed
        table, key = parsed
        body = await read_body(request, MAX_RECORD_BYTES)
        if isinstance(body, web.Response):
            return body
        if await sha256_hex(body) != request.headers.get(HEADER_BODY_SHA256):
            return error_response(400, "bad_digest", "body does not match its signed hash", request)
        try:
            value = cbor2.loads(body)
        except (ValueError, cbor2.CBORDecodeError) as exc:
            return error_response(400, "invalid_argument", f"bad record: {exc}", request)
        status, code, message = await merge_record(
            self.store, self.tables[table], table, key, value
        )
        if status != 204:
            return error_response(status, code, message, request)
        return web.Response(status=204)

    async def get_record(self, request: web.Request) -> web.Response:
        parsed = self._table_key(request)
        if isinstance(parsed, web.Response):
            return parsed
        table, key = parsed
        value = self.store.table(table).get(key)
        if value is None:
            return error_response(404, "no_such_record", "no such record", request)
        return await _cbor_response(value)

    async def retract_record(self, request: web.Request) -> web.Response:
        parsed = self._table_key(request)
        if isinstance(parsed, web.Response):
            return parsed
        table, key = parsed
        raw = _hex_param(request.query.get("version", ""))
        if not raw:
            return error_response(400, "invalid_argument", "version is required", request)
        token = raw.decode("utf-8", "replace")
        schema = self.tables[table]
        removed = False

        def drop(cur: Any | None) -> Any | None:
            nonlocal removed
            left = schema.retract_record(cur, token)
            removed = cur is not None and left != cur
            return left

        await self.store.table(table).update(key, drop)
        return web.Response(status=204 if removed else 404)

    async def scan(self, request: web.Request) -> web.Response:
        table = request.match_info["table"]
        if not TABLE_NAME_RE.match(table) or table not in self.tables:
            return error_response(404, "no_such_table", f"unknown table {table!r}", request)
        prefix = _hex_param(request.query.get("prefix", ""))
        start_after = (
            _hex_param(request.query["start_after"]) if "start_after" in request.query else None
        )
        omit = tuple(f for f in request.query.get("omit", "").split(",") if f)
        try:
            limit = int(request.query.get("limit", str(MAX_SCAN_LIMIT)))
        except ValueError:
            limit = -1
        if (
            prefix is None
            or ("start_after" in request.query and start_after is None)
            or not (1 <= limit <= MAX_SCAN_LIMIT)
        ):
            return error_response(400, "invalid_argument", "bad prefix/start_after/limit", request)
        rows = self.store.table(table).scan(prefix=prefix, start_after=start_after, limit=limit)
        if omit:
            rows = [
                (k, {f: x for f, x in v.items() if f not in omit} if isinstance(v, dict) else v)
                for k, v in rows
            ]
        return await _cbor_response([[k, v] for k, v in rows])

    async def merkle(self, request: web.Request) -> web.Response:
        tree = request.match_info["tree"]
        if tree != BLOCKS_TREE and (not TABLE_NAME_RE.match(tree) or tree not in self.tables):
            return error_response(404, "no_such_table", f"unknown summary {tree!r}", request)
        body = await read_body(request, MAX_SUMMARY_REQUEST_BYTES)
        if isinstance(body, web.Response):
            return body
        if await sha256_hex(body) != request.headers.get(HEADER_BODY_SHA256):
            return error_response(400, "bad_digest", "body does not match its signed hash", request)

        def open_reader(name: str) -> SummaryReader:
            if name != tree:
                raise ValueError(f"summary request names {name!r} on the route of {tree!r}")
            return self.store.merkle(name)

        try:
            if len(body) <= 4096:
                answer = merkle_serve(open_reader, body)
            else:  # up to 4096 node reads: keep them off the event loop
                answer = await asyncio.to_thread(merkle_serve, open_reader, body)
        except ValueError as exc:
            return error_response(400, "invalid_argument", f"bad summary request: {exc}", request)
        except BlockStoreError as exc:
            return error_response(500, exc.code, exc.message, request)
        response = web.Response(body=answer, content_type="application/cbor")
        response.headers[HEADER_BODY_SHA256] = await sha256_hex(answer)
        return response

    async def status(self, request: web.Request) -> web.Response:
        stats = self.store.stats()
        doc: dict[str, Any] = {
            "id": self.self_id,
            "blocks": stats.block_count,
            "block_bytes": stats.block_bytes,
            "map_used_bytes": stats.map_used_bytes,
            "map_size_bytes": stats.map_size_bytes,
        }
        if self.status_fn is not None:
            doc.update(self.status_fn())
        return web.Response(body=json.dumps(doc).encode(), content_type="application/json")


_RANGE = re.compile(r"(\d{1,19})-(\d{1,19})")


def _range_param(text: str | None) -> tuple[int, int] | None:
    """``?range=<lo>-<hi>`` as ``(lo, hi)``; None when absent. Raises ValueError when
    malformed (``hi < lo`` included)."""
    if text is None:
        return None
    match = _RANGE.fullmatch(text)
    if match is None or int(match.group(2)) < int(match.group(1)):
        raise ValueError("range must be <lo>-<hi> with lo <= hi")
    return int(match.group(1)), int(match.group(2))


def _hex_param(text: str) -> bytes | None:
    try:
        return bytes.fromhex(text)
    except ValueError:
        return None


async def _cbor_response(value: Any) -> web.Response:
    body = cbor2.dumps(value)
    response = web.Response(body=body, content_type="application/cbor")
    response.headers[HEADER_BODY_SHA256] = await sha256_hex(body)
    return response


def internal_app(
    store: BlockStore,
    keyring: Keyring,
    *,
    self_id: str = "",
    tables: Mapping[str, TableSchema[Any]] | None = None,
    status: Callable[[], Mapping[str, Any]] | None = None,
    max_block_bytes: int = 64 * MiB,
    max_skew_s: float = 300.0,
    clock: Callable[[], float] = time.time,
    hints: HintStore | None = None,
    registry: CollectorRegistry | None = None,
) -> web.Application:
    """The ``/internal/`` sub-application (see the module docstring for routes).

    ``store``: this peer's block store; ``keyring``: the cluster keyring (RPC subkeys are
    derived from it); ``self_id``: this peer's id (reported by /status); ``tables``: table
    name -> schema (none: no table routes answer); ``status``: extra fields for /status;
    ``max_block_bytes``: largest block accepted; ``max_skew_s`` / ``clock``: signature
    date window and clock;
    ``hints``: this peer's hint store, which adds the hinted-handoff routes
    (:mod:`dfspeer.api.internal_hints`); ``registry``: where the peer channel's counters go.
    """
    handlers = _Internal(store, tables or {}, status, max_block_bytes, self_id)
    auth = RpcAuth(keyring, self_id or "server", max_skew_s=max_skew_s, clock=clock)
    spans = server_spans(peer=self_id, skip_prefix="/internal/channel")  # spans per message
    app = web.Application(middlewares=[spans, rpc_auth_middleware(auth)])
    app[STORE_KEY] = store
    app.router.add_put("/blocks/{digest}", handlers.put_block)
    app.router.add_get("/blocks/{digest}", handlers.get_block, allow_head=False)
    app.router.add_route("HEAD", "/blocks/{digest}", handlers.head_block)
    app.router.add_put("/tables/{table}/records/{key}", handlers.put_record)
    app.router.add_get("/tables/{table}/records/{key}", handlers.get_record, allow_head=False)
    app.router.add_delete("/tables/{table}/records/{key}", handlers.retract_record)
    app.router.add_get("/tables/{table}/scan", handlers.scan, allow_head=False)
    app.router.add_get("/status", handlers.status, allow_head=False)
    app.router.add_post("/merkle/{tree}", handlers.merkle)
    add_dedup_routes(app, store)  # POST /blocks/has (dfspeer.api.internal_dedup)
    ChannelServer(store, handlers.tables, auth, registry).add_to(app)  # GET /channel
    if hints is not None:
        add_hint_routes(app, hints, tables=handlers.tables, max_block_bytes=max_block_bytes)
    return app
