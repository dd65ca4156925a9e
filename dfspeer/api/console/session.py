"""Console sessions: the credential in a sealed, HttpOnly, ``SameSite=Strict`` cookie.

``POST /ui/api/session`` with JSON ``{"credential": "ID.SECRET" | admin token}`` (and
``Content-Type: application/json``) checks the credential with the access layer's
:class:`~dfspeer.access.keystore.KeyService` and answers ``{"principal", "admin",
"csrf", "expires"}`` with a ``Set-Cookie`` of :data:`COOKIE_NAME`; a wrong credential is 401
``unauthenticated``. ``GET`` the same path answers the same document for a live session
(the key is checked again: a disabled key ends it), ``{"open": true, ...}`` on an
``--insecure`` peer, 401 otherwise; ``DELETE`` clears the cookie (204).

The cookie is ``base64url(SecretBox(k).encrypt(json))`` (NaCl: XSalsa20-Poly1305, so it is
both secret and signed) of ``{"c": credential, "e": expires, "x": csrf}`` under a subkey of
the cluster key (:meth:`dfspeer.gossip.Keyring.derive`, purpose :data:`SESSION_PURPOSE`):
any peer opens any peer's cookie, and the cookie rotates with the cluster key. Sessions last
:data:`SESSION_TTL_S` (the cookie's ``Max-Age`` and the sealed expiry, which is what counts).
The cookie is also ``Secure`` when the browser reached the peer over HTTPS, directly or
through a TLS-terminating proxy (:func:`cookie_secure`).

:func:`session_middleware` (installed right outside the access middleware) turns a valid
cookie into ``Authorization: Bearer <credential>`` for ``/v1/`` and ``/ui/api/`` requests
that carry no credential of their own (an ``Authorization`` header, or a share link's
``signature=``). A mutation (anything but ``GET`` / ``HEAD``)
also needs the header :data:`CSRF_HEADER` equal to the session's random token (the page
reads it from the session document): a cross-site form or script cannot send it, and
``SameSite=Strict`` keeps the cookie off cross-site requests in the first place. A request
without the token is 403 ``access_denied`` and changes nothing. ``GET`` needs no token, so
a plain ``<a href="/v1/objects/...">`` download (with ranges) works with the cookie alone.
"""

from __future__ import annotations

import base64
import binascii
import json
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import nacl.exceptions
import nacl.secret
from aiohttp import web
from aiohttp.typedefs import Handler
from multidict import CIMultiDict

from dfspeer.access.credentials import AUTHORIZATION_HEADER, MalformedCredential, parse_credential
from dfspeer.access.middleware import ACCESS_KEY, AccessControl
from dfspeer.access.principals import Principal
from dfspeer.api.jsonbody import read_json_object
from dfspeer.errors import AccessDenied, InvalidArgument, Unauthenticated
from dfspeer.gossip import Keyring

COOKIE_NAME = "dfspeer_session"
CSRF_HEADER = "X-CSRF-Token"
SESSION_PURPOSE = b"dfspeer-console-session"
SESSION_TTL_S = 8 * 3600
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_COVERED = ("/v1/", "/ui/api/")
_MAX_COOKIE_CHARS = 2048
_QUERY_CREDENTIALS = ("signature",)
"""Query parameters that carry a request's own credential (a server-made share link): such a
request is left as it is, so a logged-in browser can still open a share link."""

routes = web.RouteTableDef()


@dataclass(frozen=True)
class Session:
    """What a session cookie holds: the credential text, its expiry (unix s) and the
    CSRF token."""

    credential: str
    expires: int
    csrf: str


class SessionSealer:
    """Seal and open :class:`Session` cookies under ``keyring``'s derived subkeys.

    ``clock``: unix time in seconds (tests pass their own)."""

    def __init__(
        self,
        keyring: Keyring,
        *,
        ttl_s: int = SESSION_TTL_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._boxes = [nacl.secret.SecretBox(k) for k in keyring.derive(SESSION_PURPOSE)]
        self.ttl_s = ttl_s
        self._clock = clock

    def new(self, credential: str) -> tuple[Session, str]:
        """A fresh session for ``credential`` and its cookie value."""
        session = Session(credential, int(self._clock()) + self.ttl_s, secrets.token_hex(16))
        doc = json.dumps({"c": session.credential, "e": session.expires, "x": session.csrf})
        sealed = self._boxes[0].encrypt(doc.encode("utf-8"))
        return session, base64.urlsafe_b64encode(bytes(sealed)).decode("ascii").rstrip("=")

    def open(self, value: str) -> Session | None:
        """The session of cookie ``value``; None when it is malformed, forged, sealed
        under no key of the ring, or expired."""
        if not value or len(value) > _MAX_COOKIE_CHARS:
            return None
        try:
            raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        except (binascii.Error, ValueError):
            return None
        for box in self._boxes:
            try:
                doc = json.loads(box.decrypt(raw))
            except (nacl.exceptions.CryptoError, ValueError):
                continue
            if not isinstance(doc, dict):
                return None
            credential, expires, csrf = doc.get("c"), doc.get("e"), doc.get("x")
            if not (isinstance(credential, str) and isinstance(expires, int)):
                return None
            if not isinstance(csrf, str) or expires < self._clock():
                return None
            return Session(credential, expires, csrf)
        return None


SEALER_KEY = web.AppKey("dfspeer.console.sessions", SessionSealer)


def _access(request: web.Request) -> AccessControl | None:
    access = request.config_dict.get(ACCESS_KEY)
    return access if access is not None and access.enforce else None


def _document(principal: Principal, session: Session) -> dict[str, Any]:
    return {
        "open": False,
        "principal": principal.name,
        "admin": principal.is_admin,
        "csrf": session.csrf,
        "expires": session.expires,
    }


OPEN_DOCUMENT = {"open": True, "principal": "open", "admin": True, "csrf": "", "expires": 0}


def cookie_secure(request: web.Request) -> bool:
    """True when the browser reached the peer over HTTPS, so the cookie gets ``Secure``:
    the connection is TLS (a peer with ``tls_cert_file``), or a TLS-terminating proxy in
    front says so with ``X-Forwarded-Proto: https`` or ``Forwarded: proto=https`` (the
    first, client-side hop). A client may send those headers itself; that is harmless,
    since they can only add ``Secure`` (a browser then keeps the cookie off plain-HTTP
    requests) and never take it away from a cookie set over TLS."""
    if request.secure:
        return True
    proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
    forwarded = request.forwarded[0].get("proto", "") if request.forwarded else ""
    return "https" in (proto, forwarded.lower())


async def _principal(access: AccessControl, text: str) -> Principal:
    try:
        credential = parse_credential(text)
    except MalformedCredential as exc:
        raise Unauthenticated(f"malformed credential: {exc}") from None
    return await access.keys.authenticate(credential)


@routes.post("/api/session")
async def log_in(request: web.Request) -> web.Response:
    """Check the credential and open a session (module docstring)."""
    if request.content_type != "application/json":
        raise InvalidArgument("log in with a JSON body (Content-Type: application/json)")
    doc = await read_json_object(request, max_bytes=2048, required=True)
    text = doc.get("credential")
    if not isinstance(text, str) or not text.strip():
        raise InvalidArgument("credential (a string) is required")
    access = _access(request)
    if access is None:
        return web.json_response(OPEN_DOCUMENT, headers={"Cache-Control": "no-store"})
    principal = await _principal(access, text.strip())
    sealer = request.app[SEALER_KEY]
    session, cookie = sealer.new(text.strip())
    response = web.json_response(
        _document(principal, session), headers={"Cache-Control": "no-store"}
    )
    response.set_cookie(
        COOKIE_NAME,
        cookie,
        max_age=sealer.ttl_s,
        path="/",
        httponly=True,
        samesite="Strict",
        secure=cookie_secure(request),
    )
    return response


@routes.get("/api/session")
async def current_session(request: web.Request) -> web.Response:
    """The session of the cookie (the credential checked again), or 401."""
    access = _access(request)
    if access is None:
        return web.json_response(OPEN_DOCUMENT, headers={"Cache-Control": "no-store"})
    session = request.app[SEALER_KEY].open(request.cookies.get(COOKIE_NAME, ""))
    if session is None:
        raise Unauthenticated("no console session: log in")
    principal = await _principal(access, session.credential)
    return web.json_response(_document(principal, session), headers={"Cache-Control": "no-store"})


@routes.delete("/api/session")
async def log_out(request: web.Request) -> web.Response:
    """Forget the session: the cookie is cleared (204)."""
    response = web.Response(status=204)
    response.del_cookie(
        COOKIE_NAME, path="/", samesite="Strict", httponly=True, secure=cookie_secure(request)
    )
    return response


def session_middleware(sealer: SessionSealer) -> Any:
    """The aiohttp middleware that authenticates cookie requests (module docstring)."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        cookie = request.cookies.get(COOKIE_NAME)
        if (
            not cookie
            or AUTHORIZATION_HEADER in request.headers
            or not request.path.startswith(_COVERED)
            or any(name in request.query for name in _QUERY_CREDENTIALS)
        ):
            return await handler(request)
        session = sealer.open(cookie)
        if session is None:
            return await handler(request)  # expired or forged: as if there were none
        if request.method not in _SAFE_METHODS and not secrets.compare_digest(
            request.headers.get(CSRF_HEADER, ""), session.csrf
        ):
            raise AccessDenied(
                f"a console request that changes something needs the {CSRF_HEADER} header "
                "of its session: reload the console"
            )
        headers = CIMultiDict(request.headers)
        headers[AUTHORIZATION_HEADER] = f"Bearer {session.credential}"
        return await handler(request.clone(headers=headers))

    return middleware


def install_sessions(app: web.Application, console: web.Application, keyring: Keyring) -> None:
    """Give ``console`` its sealer and put the cookie middleware on ``app`` right outside
    its access middleware (inside the error middleware, so its 403 is rendered)."""
    sealer = SessionSealer(keyring)
    console[SEALER_KEY] = sealer
    access = app.get(ACCESS_KEY)
    place = len(app.middlewares)
    for index, middleware in enumerate(app.middlewares):
        if access is not None and getattr(middleware, "__self__", None) is access:
            place = index
            break
    app.middlewares.insert(place, session_middleware(sealer))
