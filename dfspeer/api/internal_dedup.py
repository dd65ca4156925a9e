"""The ``POST /internal/blocks/has`` route: which of a batch of blocks this peer stores.

An upload's coordinator asks a chunk's replicas before sending it (dedup on the wire,
:mod:`dfspeer.objects.dedup`): a replica that already holds the block gets only the
block's reference. Body: a CBOR list of at most :data:`~dfspeer.cluster.rpc.MAX_HAS_DIGESTS`
digests (32 bytes each); answer 200: a CBOR list of booleans in the same order (True: the
block is stored; not re-hashed -- scrub and read repair deal with rot). Signed like every
``/internal/`` route (the sub-app's middleware); a malformed body is 400
``invalid_argument``, a body whose hash is not the signed one 400 ``bad_digest``.
"""

from __future__ import annotations

from typing import Any

import cbor2
from aiohttp import web

from dfspeer.api.internal_hints import read_body
from dfspeer.blockstore import BlockStore, BlockStoreError
from dfspeer.cluster.auth import HEADER_BODY_SHA256, error_response
from dfspeer.cluster.rpc_base import MAX_HAS_DIGESTS, sha256_hex

DIGEST_BYTES = 32
MAX_HAS_BODY_BYTES = MAX_HAS_DIGESTS * (DIGEST_BYTES + 2) + 16  # CBOR: 2-byte header each


def _digests(body: bytes) -> list[bytes] | None:
    """The digests of a request body, or None when it is not a list of 32-byte strings."""
    try:
        value: Any = cbor2.loads(body)
    except (ValueError, cbor2.CBORDecodeError):
        return None
    if not isinstance(value, list) or len(value) > MAX_HAS_DIGESTS:
        return None
    if not all(isinstance(d, bytes) and len(d) == DIGEST_BYTES for d in value):
        return None
    return value


def add_dedup_routes(app: web.Application, store: BlockStore) -> None:
    """Add ``POST /blocks/has`` (module docstring) to the ``/internal/`` sub-app ``app``."""

    async def has_blocks(request: web.Request) -> web.Response:
        body = await read_body(request, MAX_HAS_BODY_BYTES)
        if isinstance(body, web.Response):
            return body
        if await sha256_hex(body) != request.headers.get(HEADER_BODY_SHA256):
            return error_response(400, "bad_digest", "body does not match its signed hash", request)
        digests = _digests(body)
        if digests is None:
            return error_response(
                400,
                "invalid_argument",
                f"body must be a CBOR list of at most {MAX_HAS_DIGESTS} 32-byte digests",
                request,
            )
        try:
            answers = [await store.has(d) for d in digests]
        except BlockStoreError as exc:
            return error_response(500, exc.code, exc.message, request)
        answer = cbor2.dumps(answers)
        response = web.Response(body=answer, content_type="application/cbor")
        response.headers[HEADER_BODY_SHA256] = await sha256_hex(answer)
        return response

    app.router.add_post("/blocks/has", has_blocks)
