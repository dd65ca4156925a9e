"""Internal routes of hinted handoff: a coordinator asks this peer to stand in for a replica.

Added to the ``/internal/`` app by :func:`add_hint_routes` (signed like every internal
route). ``target`` is the hex of the UTF-8 peer id the data is meant for.

=======  ===============================================  ================================
PUT      /hints/blocks/{hex digest}?target=<hex>          raw body (<= ``max_block_bytes``),
                                                          verified; block + hint durable: 204
PUT      /hints/records/{table}/{hex key}?target=<hex>    CBOR record with a ``version``;
                                                          kept in the hint (LWW): 204
=======  ===============================================  ================================

Errors: 400 (bad digest / record / target), 411/413 (body), 404 ``no_such_table``,
507 ``hints_full`` or ``store_full``.
"""

from __future__ import annotations

import re
from collections.abc import Container

import cbor2
from aiohttp import web

from dfspeer.blockstore import BlockStoreError, DigestMismatch
from dfspeer.cluster.auth import HEADER_BODY_SHA256, error_response
from dfspeer.cluster.handoff import HintsFull, HintStore
from dfspeer.cluster.rpc import MAX_RECORD_BYTES, TABLE_NAME_RE, sha256_hex

_HEX_DIGEST = re.compile(r"^[0-9a-f]{64}$")
_MAX_KEY_BYTES = 511


def _target(request: web.Request) -> str | None:
    try:
        target = bytes.fromhex(request.query.get("target", "")).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    return target if 0 < len(target) <= 128 and target.isprintable() else None


async def read_body(request: web.Request, cap: int) -> bytes | web.Response:
    """The whole body (Content-Length required, at most ``cap`` bytes), or the error
    response to send: 411, 413, or 400 ``incomplete_body``; nothing is written either way."""
    length = request.content_length
    if length is None:
        return error_response(411, "length_required", "Content-Length is required", request)
    if length > cap:
        return error_response(413, "entity_too_large", f"body over {cap} bytes", request)
    if length == 0:  # aiohttp's reader of an empty body refuses even readexactly(0)
        return b""
    try:
        return await request.content.readexactly(length)
    except Exception:  # IncompleteReadError, reset: nothing written
        return error_response(400, "incomplete_body", "body shorter than Content-Length", request)


def _store_error(exc: BlockStoreError, request: web.Request) -> web.Response:
    status = 507 if exc.code == "store_full" else 500
    return error_response(status, exc.code, exc.message, request)


class _HintRoutes:
    def __init__(self, hints: HintStore, tables: Container[str], max_block_bytes: int) -> None:
        self.hints = hints
        self.tables = tables
        self.max_block_bytes = max_block_bytes

    async def put_block(self, request: web.Request) -> web.Response:
        text, target = request.match_info["digest"], _target(request)
        if not _HEX_DIGEST.match(text) or target is None:
            return error_response(400, "invalid_argument", "need a hex digest and target", request)
        if request.headers.get(HEADER_BODY_SHA256) != text:
            return error_response(400, "bad_digest", "signed body hash is not the digest", request)
        data = await read_body(request, self.max_block_bytes)
        if isinstance(data, web.Response):
            return data
        try:
            await self.hints.add_block(target, bytes.fromhex(text), data)
        except DigestMismatch as exc:
            return error_response(400, "bad_digest", exc.message, request)
        except BlockStoreError as exc:
            return _store_error(exc, request)
        except HintsFull as exc:
            return error_response(507, exc.code, exc.message, request)
        return web.Response(status=204)

    async def put_record(self, request: web.Request) -> web.Response:
        table, target = request.match_info["table"], _target(request)
        if not TABLE_NAME_RE.match(table) or table not in self.tables:
            return error_response(404, "no_such_table", f"unknown table {table!r}", request)
        try:
            key = bytes.fromhex(request.match_info["key"])
        except ValueError:
            key = b""
        if target is None or not 0 < len(key) <= _MAX_KEY_BYTES:
            return error_response(400, "invalid_argument", "need a hex key and target", request)
        body = await read_body(request, MAX_RECORD_BYTES)
        if isinstance(body, web.Response):
            return body
        if await sha256_hex(body) != request.headers.get(HEADER_BODY_SHA256):
            return error_response(400, "bad_digest", "body does not match its signed hash", request)
        try:
            record = cbor2.loads(body)
            self.hints.schema(table).decode(record)
        except (ValueError, cbor2.CBORDecodeError) as exc:
            return error_response(400, "invalid_argument", f"bad record: {exc}", request)
        try:
            await self.hints.add_record(target, table, key, record)
        except BlockStoreError as exc:
            return _store_error(exc, request)
        except HintsFull as exc:
            return error_response(507, exc.code, exc.message, request)
        return web.Response(status=204)


def add_hint_routes(
    app: web.Application, hints: HintStore, *, tables: Container[str], max_block_bytes: int
) -> None:
    """Add the hint routes (module docstring) to the internal app ``app``. ``tables``:
    names of the replicated tables a record hint may name."""
    routes = _HintRoutes(hints, tables, max_block_bytes)
    app.router.add_put("/hints/blocks/{digest}", routes.put_block)
    app.router.add_put("/hints/records/{table}/{key}", routes.put_record)
