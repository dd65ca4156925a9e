"""Operator actions on another member from the console (admin only, like the routes they
call): the console's page talks to its own peer, and drain and the block reference recount
act on the peer that serves them, so these routes hand the request on to the member's own
native route, with the caller's own credential (the member checks it again, and audits it).

- ``POST /ui/api/members/{id}/drain``: the member's ``POST /v1/cluster/drain``: 202 with
  its drain progress document (:mod:`dfspeer.api.repair_routes`); 409 ``drain_failed``
  when it cannot start.
- ``GET /ui/api/members/{id}/drain``: the member's ``GET /v1/cluster/drain`` (progress).
- ``POST /ui/api/members/{id}/repair/block-refs``: the member's
  ``POST /v1/cluster/repair/block-refs``: 200 ``{"references", "blocks", "changed"}``.

Removing a dead member needs no hand-on: any peer does it (``POST
/v1/cluster/members/{id}/remove`` on the console's own peer).

Errors: 404 ``no_such_member`` for an id this peer does not know, 409
``member_not_alive`` for a member that is dead or has left (nothing is sent); 503
``peer_unreachable`` when the member does not answer, 502 ``peer_error`` when its answer
is not JSON; an error answer of the member keeps
its status and code, with the member's id in front of its message, except that the member
refusing the credential (401) is 502 ``peer_error`` (this peer's session is still good).
"""

from __future__ import annotations

import json
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import web

from dfspeer.access.credentials import AUTHORIZATION_HEADER
from dfspeer.api.context import STATE_KEY
from dfspeer.errors import DfsError, NoSuchMember, PeerUnreachable, RpcError
from dfspeer.gossip import Member, MemberState

FORWARD_TIMEOUT_S = 300.0
"""Longest a handed-on call may take (a recount reads the member's whole reference table)."""
FORWARD_CONNECT_TIMEOUT_S = 5.0
MAX_ANSWER_BYTES = 1024 * 1024

Forward = Callable[[str, str, str, str | None], Awaitable[tuple[int, dict[str, Any]]]]
"""``(method, api address, path, Authorization header or None)`` -> the member's status
and JSON answer (:class:`MemberForwarder`). Raises :class:`~dfspeer.errors.PeerUnreachable`
and :class:`~dfspeer.errors.RpcError` (an answer that is not a JSON object)."""

FORWARD_KEY: web.AppKey[Forward] = web.AppKey("dfspeer.console.forward")
NO_STORE = {"Cache-Control": "no-store"}

routes = web.RouteTableDef()


class MemberForwarder:
    """Plain HTTP(S) calls to another peer's public API (``tls``: the client context of
    the peer RPC, so the member is dialled as the peer RPC dials it). One connection pool,
    made on first use; :meth:`close` when done."""

    def __init__(self, *, tls: ssl.SSLContext | None, timeout_s: float = FORWARD_TIMEOUT_S) -> None:
        self._tls = tls
        self._scheme = "https" if tls is not None else "http"
        self._timeout = aiohttp.ClientTimeout(
            total=timeout_s, sock_connect=min(timeout_s, FORWARD_CONNECT_TIMEOUT_S)
        )
        self._session: aiohttp.ClientSession | None = None

    async def __call__(
        self, method: str, address: str, path: str, authorization: str | None
    ) -> tuple[int, dict[str, Any]]:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(limit_per_host=4, ssl=self._tls or True)
            self._session = aiohttp.ClientSession(connector=connector, timeout=self._timeout)
        headers = {AUTHORIZATION_HEADER: authorization} if authorization else {}
        try:
            async with self._session.request(
                method, f"{self._scheme}://{address}{path}", headers=headers
            ) as resp:
                data = await resp.content.read(MAX_ANSWER_BYTES + 1)
                status = resp.status
        except (TimeoutError, aiohttp.ClientError, OSError) as exc:
            raise PeerUnreachable(f"{address}: {type(exc).__name__}: {exc}") from exc
        try:
            doc = json.loads(data) if len(data) <= MAX_ANSWER_BYTES else None
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            raise RpcError(f"{address}: answered {status} without a JSON document")
        return status, doc

    async def close(self) -> None:
        """Close the connection pool (idempotent)."""
        if self._session is not None:
            await self._session.close()
            self._session = None


def live_member(request: web.Request) -> Member:
    """The member ``{id}`` names, alive or suspect, with an API address. Raises
    NoSuchMember (404) and DfsError 409 ``member_not_alive``."""
    wanted = request.match_info["id"]
    for member in request.config_dict[STATE_KEY].members():
        if member.id == wanted:
            break
    else:
        raise NoSuchMember(f"no member {wanted!r} in this peer's view")
    if member.state not in (MemberState.ALIVE, MemberState.SUSPECT) or not member.api_address:
        raise DfsError(
            f"member {wanted!r} is {member.state.value}: only a live member can do this",
            code="member_not_alive",
            status=409,
        )
    return member


async def _hand_on(request: web.Request, method: str, path: str) -> web.Response:
    """Call ``path`` on the member ``{id}`` with the request's own credential; its answer."""
    member = live_member(request)
    forward = request.app.get(FORWARD_KEY)
    if forward is None:
        raise DfsError("this peer cannot call other peers", code="not_supported", status=501)
    try:
        status, doc = await forward(
            method, member.api_address, path, request.headers.get(AUTHORIZATION_HEADER)
        )
    except PeerUnreachable as exc:  # an RpcError would leave as a bare 500: say what it is
        raise DfsError(
            f"member {member.id} did not answer: {exc.message}",
            code="peer_unreachable",
            status=503,
        ) from exc
    except RpcError as exc:
        raise DfsError(f"member {member.id}: {exc.message}", code="peer_error", status=502) from exc
    if status < 400:
        return web.json_response(doc, status=status, headers=NO_STORE)
    error = doc.get("error")
    error = error if isinstance(error, dict) else {}
    code = str(error.get("code") or "peer_error")
    message = f"member {member.id}: {error.get('message') or f'status {status}'}"
    if status == 401:  # the member refused the credential: not this peer's session ending
        raise DfsError(message, code="peer_error", status=502)
    answer: dict[str, Any] = {"error": {**error, "code": code, "message": message}}
    answer.update({k: v for k, v in doc.items() if k != "error"})
    return web.json_response(answer, status=status, headers=NO_STORE)


@routes.post("/api/members/{id}/drain")
async def start_drain(request: web.Request) -> web.Response:
    """Start draining the member (module docstring)."""
    return await _hand_on(request, "POST", "/v1/cluster/drain")


@routes.get("/api/members/{id}/drain", allow_head=False)
async def drain_progress(request: web.Request) -> web.Response:
    """The member's drain progress (module docstring)."""
    return await _hand_on(request, "GET", "/v1/cluster/drain")


@routes.post("/api/members/{id}/repair/block-refs")
async def recount_block_refs(request: web.Request) -> web.Response:
    """Recount the member's block references (module docstring)."""
    return await _hand_on(request, "POST", "/v1/cluster/repair/block-refs")
