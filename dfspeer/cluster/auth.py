"""Peer RPC authentication: HMAC-SHA256 request (and response) signatures.

Every ``/internal/`` request carries::

    X-Dfspeer-Peer:          sender peer id (1..128 printable characters)
    X-Dfspeer-Date:          unix seconds (integer) when it was signed
    X-Dfspeer-Body-SHA256:   hex SHA-256 of the body (of b"" when there is none)
    X-Dfspeer-Signature:     hex HMAC-SHA256(k, "dfspeer-rpc-v1\\n" METHOD "\\n" PATH?QUERY "\\n"
                                                DATE "\\n" PEER "\\n" BODY_SHA256)

with ``k`` the first of ``keyring.derive(b"dfspeer-rpc")`` (the receiver accepts any key of
its keyring, so the cluster key rotates without downtime, like the gossip seal). The path is
the raw request target as sent on the wire. A request whose date is more than
``max_skew_s`` (300 s) away from the receiver's clock, or whose signature matches no key, is
answered 401 ``unauthorized`` before any handler runs, so it touches nothing.

Body integrity: the body hash is inside the signed string; the handler checks the body
against it (records: hashed on receipt; blocks: the hash IS the block digest, which the block
store verifies with ``put_verified``). A replay inside the window repeats an idempotent
operation (content-addressed block put, LWW record merge) and so changes nothing.

Responses are signed too (``X-Dfspeer-Signature`` over the request's signature, the status
and the response body hash), so a man in the middle cannot forge a record or a listing.
This gives authenticity, not confidentiality (no TLS yet).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from aiohttp import web

from dfspeer.errors import Unauthorized
from dfspeer.gossip import Keyring

HEADER_PEER = "X-Dfspeer-Peer"
HEADER_DATE = "X-Dfspeer-Date"
HEADER_BODY_SHA256 = "X-Dfspeer-Body-SHA256"
HEADER_SIGNATURE = "X-Dfspeer-Signature"
RPC_PURPOSE = b"dfspeer-rpc"
MAX_SKEW_S = 300.0
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
PEER_KEY = web.RequestKey("dfspeer.rpc_peer", str)  # request[PEER_KEY]: the sender's id

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _mac(key: bytes, text: str) -> str:
    return hmac.new(key, text.encode("utf-8"), hashlib.sha256).hexdigest()


def request_string(method: str, path_qs: str, date: str, peer: str, body_sha256: str) -> str:
    """The exact text a request signature covers."""
    return f"dfspeer-rpc-v1\n{method.upper()}\n{path_qs}\n{date}\n{peer}\n{body_sha256}"


def response_string(request_signature: str, status: int, body_sha256: str) -> str:
    """The exact text a response signature covers."""
    return f"dfspeer-rpc-resp-v1\n{request_signature}\n{status}\n{body_sha256}"


def _valid_hex_sha256(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


class RpcAuth:
    """Signs and verifies peer RPC requests and responses with the keyring's RPC subkeys.

    ``clock`` returns unix seconds (injectable for tests); ``max_skew_s`` is the accepted
    distance between a request's date and the receiver's clock.
    """

    def __init__(
        self,
        keyring: Keyring,
        self_id: str,
        *,
        max_skew_s: float = MAX_SKEW_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._keys = keyring.derive(RPC_PURPOSE)
        if not self._keys:
            raise ValueError("keyring has no keys")
        self.self_id = self_id
        self.max_skew_s = max_skew_s
        self._clock = clock

    # ------------------------------------------------------------------ client side
    def sign_request(
        self, method: str, path_qs: str, body_sha256: str = EMPTY_SHA256
    ) -> dict[str, str]:
        """Headers to send with a request for ``method`` ``path_qs`` (raw, as on the wire)."""
        date = str(int(self._clock()))
        text = request_string(method, path_qs, date, self.self_id, body_sha256)
        return {
            HEADER_PEER: self.self_id,
            HEADER_DATE: date,
            HEADER_BODY_SHA256: body_sha256,
            HEADER_SIGNATURE: _mac(self._keys[0], text),
        }

    def verify_response(
        self, request_signature: str, status: int, headers: Mapping[str, str]
    ) -> str:
        """Check a response's signature; return its claimed body SHA-256 (hex), which the
        caller compares with the body. Raises :class:`Unauthorized`."""
        body_sha = headers.get(HEADER_BODY_SHA256, "")
        signature = headers.get(HEADER_SIGNATURE, "")
        text = response_string(request_signature, status, body_sha)
        if not signature or not self._matches(text, signature):
            raise Unauthorized(f"peer answer (status {status}) carries no valid signature")
        return body_sha

    # ------------------------------------------------------------------ server side
    def verify_request(self, method: str, path_qs: str, headers: Mapping[str, str]) -> str:
        """Check a request's signature and date; return the sender's peer id.

        Raises :class:`Unauthorized` naming what is wrong (never which key was tried).
        """
        peer = headers.get(HEADER_PEER, "")
        date = headers.get(HEADER_DATE, "")
        body_sha = headers.get(HEADER_BODY_SHA256, "")
        signature = headers.get(HEADER_SIGNATURE, "")
        if not (peer and date and body_sha and signature):
            raise Unauthorized("missing peer RPC signature headers")
        if len(peer) > 128 or not peer.isprintable() or not _valid_hex_sha256(body_sha):
            raise Unauthorized("malformed peer RPC signature headers")
        try:
            sent = int(date)
        except ValueError:
            raise Unauthorized("malformed X-Dfspeer-Date") from None
        if abs(self._clock() - sent) > self.max_skew_s:
            raise Unauthorized(f"request date is more than {self.max_skew_s:.0f} s off")
        text = request_string(method, path_qs, date, peer, body_sha)
        if not self._matches(text, signature):
            raise Unauthorized("bad peer RPC signature")
        return peer

    def sign_response(self, request_signature: str, response: web.StreamResponse) -> None:
        """Add the response signature headers. Uses the response's X-Dfspeer-Body-SHA256
        if the handler set it (e.g. a block's digest), else hashes ``response.body``."""
        body_sha = response.headers.get(HEADER_BODY_SHA256)
        if body_sha is None:
            body = response.body if isinstance(response, web.Response) else b""
            data = body if isinstance(body, bytes | bytearray) else b""
            body_sha = hashlib.sha256(data).hexdigest()
            response.headers[HEADER_BODY_SHA256] = body_sha
        text = response_string(request_signature, response.status, body_sha)
        response.headers[HEADER_SIGNATURE] = _mac(self._keys[0], text)

    # ------------------------------------------------------------------ channel frames
    def sign_frame(self, domain: bytes, data: bytes) -> bytes:
        """The 32-byte HMAC-SHA256 of ``domain + data`` with the current RPC key (a
        message on the peer channel, :mod:`dfspeer.cluster.channel`)."""
        return hmac.digest(self._keys[0], domain + data, "sha256")

    def frame_matches(self, domain: bytes, data: bytes, mac: bytes) -> bool:
        """True if ``mac`` is :meth:`sign_frame` of ``domain + data`` under any key of the
        keyring (every key is tried, as for requests)."""
        text = domain + data
        return self._any_key(lambda key: hmac.digest(key, text, "sha256"), mac)

    def date_ok(self, date: int) -> bool:
        """True if unix-seconds ``date`` is within ``max_skew_s`` of this clock."""
        return abs(self._clock() - date) <= self.max_skew_s

    def _matches(self, text: str, signature: str) -> bool:
        return self._any_key(lambda key: _mac(key, text), signature)

    def _any_key(self, mac_of: Callable[[bytes], Any], given: Any) -> bool:
        """True if ``mac_of(key) == given`` for a key of the keyring; every key is checked,
        with no early exit that would time which one matched."""
        ok = False
        for key in self._keys:
            ok |= hmac.compare_digest(mac_of(key), given)
        return ok


def error_response(
    status: int, code: str, message: str, request: web.Request | None = None
) -> web.Response:
    """The one error shape: ``{"error": {"code", "message", "request_id"}}``."""
    request_id = request.headers.get("X-Request-Id", "") if request is not None else ""
    body = {"error": {"code": code, "message": message, "request_id": request_id}}
    return web.Response(
        status=status, body=json.dumps(body).encode(), content_type="application/json"
    )


def rpc_auth_middleware(auth: RpcAuth) -> Any:
    """aiohttp middleware for the internal app: 401 before the handler for a missing,
    invalid or expired signature; signs every response it lets through."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            peer = auth.verify_request(request.method, request.raw_path, request.headers)
        except Unauthorized as exc:
            return error_response(401, exc.code, exc.message, request)
        request[PEER_KEY] = peer
        try:
            response = await handler(request)
        except web.HTTPException as exc:
            response = error_response(exc.status, "http_error", exc.reason, request)
        auth.sign_response(request.headers[HEADER_SIGNATURE], response)
        return response

    return middleware
