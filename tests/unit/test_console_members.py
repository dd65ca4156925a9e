"""The console's member actions (an admin's drain and block reference recount of another
member, handed on to that member's own native routes): who may use them, what reaches the
member, and how the member's answers and failures come back."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from dfspeer.access.middleware import AccessControl
from dfspeer.api.app import build_app
from dfspeer.api.console import add_console
from dfspeer.api.console.members import MemberForwarder
from dfspeer.api.console.session import CSRF_HEADER
from dfspeer.config import PeerConfig
from dfspeer.errors import PeerUnreachable, RpcError
from dfspeer.peer import Peer
from tests.unit.api_fakes import FakeObjects, FakeState
from tests.unit.test_access import ADMIN_TOKEN, RecordsDouble, make_access
from tests.unit.test_console import KEYRING
from tests.unit.test_peer_single import config_for

JSON = {"Content-Type": "application/json"}
PROGRESS = {"state": "draining", "partitions_remaining": 7, "bytes_remaining": 4096, "rounds": 1}


@dataclass
class Member:
    """What the fake member answers, and every call that reached it."""

    answers: dict[tuple[str, str], tuple[int, dict[str, Any]]] = field(default_factory=dict)
    calls: list[tuple[str, str, str, str | None]] = field(default_factory=list)
    down: bool = False

    async def __call__(
        self, method: str, address: str, path: str, authorization: str | None
    ) -> tuple[int, dict[str, Any]]:
        self.calls.append((method, address, path, authorization))
        if self.down:
            raise PeerUnreachable(f"{address}: connection refused")
        return self.answers.get((method, path), (202, PROGRESS))


@dataclass
class World:
    client: TestClient[web.Request, web.Application]
    access: AccessControl
    member: Member


@pytest.fixture
async def world() -> AsyncIterator[World]:
    objects = FakeObjects()
    access = make_access(RecordsDouble(), objects)
    app = build_app(objects, FakeState(), PeerConfig(), registry=CollectorRegistry(), access=access)
    member = Member()
    add_console(app, KEYRING, forward=member)
    async with TestClient(TestServer(app)) as client:
        yield World(client, access, member)


async def log_in(world: World, credential: str = ADMIN_TOKEN) -> str:
    """Open a console session; its CSRF token."""
    resp = await world.client.post("/ui/api/session", json={"credential": credential}, headers=JSON)
    assert resp.status == 200, await resp.text()
    csrf: str = (await resp.json())["csrf"]
    return csrf


async def error_of(resp: Any) -> dict[str, Any]:
    doc: dict[str, Any] = (await resp.json())["error"]
    return doc


async def test_an_admin_drains_another_member_through_its_own_route(world: World) -> None:
    csrf = await log_in(world)
    resp = await world.client.post("/ui/api/members/p2/drain", headers={CSRF_HEADER: csrf})
    assert resp.status == 202
    assert await resp.json() == PROGRESS
    # the member's own admin route, with the admin's own credential (it checks it again)
    assert world.member.calls == [
        ("POST", "127.0.0.1:7002", "/v1/cluster/drain", f"Bearer {ADMIN_TOKEN}")
    ]
    progress = await world.client.get("/ui/api/members/p2/drain")
    assert progress.status == 202 and (await progress.json())["partitions_remaining"] == 7
    assert world.member.calls[-1][:3] == ("GET", "127.0.0.1:7002", "/v1/cluster/drain")


async def test_an_admin_recounts_a_members_block_references(world: World) -> None:
    world.member.answers[("POST", "/v1/cluster/repair/block-refs")] = (
        200,
        {"references": 12, "blocks": 9, "changed": 2},
    )
    csrf = await log_in(world)
    resp = await world.client.post(
        "/ui/api/members/p1/repair/block-refs", headers={CSRF_HEADER: csrf}
    )
    assert resp.status == 200
    assert await resp.json() == {"references": 12, "blocks": 9, "changed": 2}
    assert world.member.calls == [
        ("POST", "127.0.0.1:7001", "/v1/cluster/repair/block-refs", f"Bearer {ADMIN_TOKEN}")
    ]


ROUTES = [
    ("POST", "/ui/api/members/p2/drain"),
    ("GET", "/ui/api/members/p2/drain"),
    ("POST", "/ui/api/members/p2/repair/block-refs"),
]


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_an_access_key_is_refused(world: World, method: str, path: str) -> None:
    key, secret = await world.access.keys.create("alice")
    csrf = await log_in(world, f"{key.id}.{secret}")
    resp = await world.client.request(method, path, headers={CSRF_HEADER: csrf})
    assert resp.status == 403
    assert (await error_of(resp))["code"] == "access_denied"
    bearer = await world.client.request(
        method, path, headers={"Authorization": f"Bearer {key.id}.{secret}"}
    )
    assert bearer.status == 403
    assert world.member.calls == []


@pytest.mark.parametrize(("method", "path"), ROUTES)
async def test_no_credential_is_401(world: World, method: str, path: str) -> None:
    resp = await world.client.request(method, path)
    assert resp.status == 401
    assert (await error_of(resp))["code"] == "unauthenticated"
    assert world.member.calls == []


@pytest.mark.parametrize("path", [p for m, p in ROUTES if m == "POST"])
async def test_a_session_without_the_csrf_token_is_refused(world: World, path: str) -> None:
    await log_in(world)
    for headers in ({}, {CSRF_HEADER: "0" * 32}):
        resp = await world.client.post(path, headers=headers)
        assert resp.status == 403
        error = await error_of(resp)
        assert error["code"] == "access_denied" and CSRF_HEADER in error["message"]
    assert world.member.calls == []  # nothing reached the member


@pytest.mark.parametrize(
    ("member", "status", "code"),
    [("nobody", 404, "no_such_member"), ("p3", 409, "member_not_alive")],
)
async def test_an_unknown_or_dead_member_is_a_clear_4xx(
    world: World, member: str, status: int, code: str
) -> None:
    csrf = await log_in(world)
    for path in (f"/ui/api/members/{member}/drain", f"/ui/api/members/{member}/repair/block-refs"):
        resp = await world.client.post(path, headers={CSRF_HEADER: csrf})
        assert resp.status == status
        error = await error_of(resp)
        assert error["code"] == code and member in error["message"]
    assert world.member.calls == []


async def test_the_members_refusal_keeps_its_code_with_the_member_named(world: World) -> None:
    world.member.answers[("POST", "/v1/cluster/drain")] = (
        409,
        {
            "error": {"code": "drain_failed", "message": "cannot drain: no other peer"},
            "drain": {"state": "failed", "error": "no other peer"},
        },
    )
    csrf = await log_in(world)
    resp = await world.client.post("/ui/api/members/p2/drain", headers={CSRF_HEADER: csrf})
    assert resp.status == 409
    doc = await resp.json()
    assert doc["error"]["code"] == "drain_failed"
    assert doc["error"]["message"] == "member p2: cannot drain: no other peer"
    assert doc["drain"]["state"] == "failed"


async def test_a_member_refusing_the_credential_does_not_end_the_session(world: World) -> None:
    world.member.answers[("POST", "/v1/cluster/drain")] = (
        401,
        {"error": {"code": "unauthenticated", "message": "unknown credential"}},
    )
    csrf = await log_in(world)
    resp = await world.client.post("/ui/api/members/p2/drain", headers={CSRF_HEADER: csrf})
    assert resp.status == 502
    error = await error_of(resp)
    assert error["code"] == "peer_error" and "member p2: unknown credential" in error["message"]


async def test_a_member_that_does_not_answer_is_503(world: World) -> None:
    world.member.down = True
    csrf = await log_in(world)
    resp = await world.client.post("/ui/api/members/p2/drain", headers={CSRF_HEADER: csrf})
    assert resp.status == 503
    assert (await error_of(resp))["code"] == "peer_unreachable"


async def test_without_a_way_to_call_members_the_routes_are_501() -> None:
    objects = FakeObjects()
    app = build_app(objects, FakeState(), PeerConfig(), registry=CollectorRegistry())
    add_console(app, KEYRING)
    async with TestClient(TestServer(app)) as client:
        resp = await client.post("/ui/api/members/p2/drain")
        assert resp.status == 501
        assert (await error_of(resp))["code"] == "not_supported"


async def test_the_forwarder_calls_a_peers_public_api() -> None:
    seen: list[tuple[str, str, str | None]] = []

    async def answer(request: web.Request) -> web.Response:
        seen.append((request.method, request.path, request.headers.get("Authorization")))
        if request.path == "/text":
            return web.Response(text="not json", status=500)
        return web.json_response({"state": "idle"}, status=200)

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", answer)
    forwarder = MemberForwarder(tls=None)
    try:
        async with TestServer(app) as server:
            address = f"{server.host}:{server.port}"
            assert await forwarder("GET", address, "/v1/cluster/drain", "Bearer x") == (
                200,
                {"state": "idle"},
            )
            assert seen == [("GET", "/v1/cluster/drain", "Bearer x")]
            await forwarder("POST", address, "/v1/cluster/drain", None)
            assert seen[-1] == ("POST", "/v1/cluster/drain", None)
            with pytest.raises(RpcError, match="without a JSON document"):
                await forwarder("GET", address, "/text", None)
        with pytest.raises(PeerUnreachable):
            await forwarder("GET", address, "/v1/cluster/drain", None)
    finally:
        await forwarder.close()


async def test_a_real_peer_hands_the_calls_on_to_itself(tmp_path: Path) -> None:
    """A lone open peer: the console's recount reaches its own route, and its drain is
    refused by the peer itself (no other peer to move data to)."""
    async with Peer(config_for(tmp_path / "p1")) as peer:
        await peer.wait_ready(10)
        async with aiohttp.ClientSession() as http:
            base = f"{peer.api_url}/ui/api/members/{peer.peer_id}"
            async with http.post(base + "/repair/block-refs") as resp:
                assert resp.status == 200
                assert set(json.loads(await resp.read())) == {"references", "blocks", "changed"}
            async with http.post(base + "/drain") as resp:
                assert resp.status == 409
                doc = json.loads(await resp.read())
                assert doc["error"]["code"] == "drain_failed"
                assert doc["error"]["message"].startswith(f"member {peer.peer_id}: cannot drain")
            async with http.get(base + "/drain") as resp:
                assert resp.status == 200
                assert json.loads(await resp.read())["state"] == "failed"
