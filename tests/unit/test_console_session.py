"""Console sessions (sealed HttpOnly cookie, CSRF token), share links, version restore and
the cluster-wide peer figures of the web console sub-app."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from dfspeer.access.middleware import AccessControl
from dfspeer.api.app import build_app
from dfspeer.api.console import add_console
from dfspeer.api.console.links import DownloadLinks
from dfspeer.api.console.session import COOKIE_NAME, CSRF_HEADER, SessionSealer
from dfspeer.config import PeerConfig
from dfspeer.errors import PeerUnreachable
from dfspeer.gossip import Keyring
from tests.unit.api_fakes import FakeObjects, FakeState
from tests.unit.test_access import ADMIN_TOKEN, RecordsDouble, make_access
from tests.unit.test_console import KEYRING, Clock

JSON = {"Content-Type": "application/json"}


@dataclass
class World:
    client: TestClient[web.Request, web.Application]
    objects: FakeObjects
    access: AccessControl
    clock: Clock
    asked: list[str]


async def peer_status(address: str) -> dict[str, Any]:
    if address.endswith(":7002"):
        raise PeerUnreachable(f"{address}: connection refused")
    return {"id": "p1", "blocks": 3, "block_bytes": 300, "partitions_held": 16}


@pytest.fixture
async def world() -> AsyncIterator[World]:
    objects = FakeObjects()
    await objects.buckets.create("photos", "enabled")
    await objects.put_object(
        "photos", "a.txt", b"first", content_type="text/plain", meta={"colour": "red"}
    )
    await objects.put_object("photos", "a.txt", b"second version")
    access = make_access(RecordsDouble(), objects)
    clock = Clock()
    app = build_app(objects, FakeState(), PeerConfig(), registry=CollectorRegistry(), access=access)
    asked: list[str] = []

    async def status(address: str) -> dict[str, Any]:
        asked.append(address)
        return await peer_status(address)

    add_console(app, KEYRING, links=DownloadLinks(KEYRING, clock=clock), peer_status=status)
    async with TestClient(TestServer(app)) as client:
        yield World(client, objects, access, clock, asked)


async def log_in(world: World, credential: str = ADMIN_TOKEN) -> dict[str, Any]:
    resp = await world.client.post("/ui/api/session", json={"credential": credential}, headers=JSON)
    assert resp.status == 200, await resp.text()
    doc: dict[str, Any] = await resp.json()
    return doc


async def test_logging_in_sets_a_sealed_httponly_strict_cookie(world: World) -> None:
    resp = await world.client.post(
        "/ui/api/session", json={"credential": ADMIN_TOKEN}, headers=JSON
    )
    assert resp.status == 200
    doc = await resp.json()
    assert doc["principal"] == "admin" and doc["admin"] is True and not doc["open"]
    assert len(doc["csrf"]) == 32
    cookie = resp.cookies[COOKIE_NAME]
    assert cookie["httponly"] is True
    assert cookie["samesite"] == "Strict"
    assert cookie["path"] == "/"
    assert int(cookie["max-age"]) == 8 * 3600
    assert ADMIN_TOKEN not in cookie.value  # sealed, not merely signed
    # the cookie alone authenticates reads of the native API, and a plain download link
    listing = await world.client.get("/v1/buckets")
    assert listing.status == 200
    got = await world.client.get("/v1/objects/photos/a.txt", headers={"Range": "bytes=0-5"})
    assert got.status == 206 and await got.read() == b"second"
    again = await world.client.get("/ui/api/session")
    assert (await again.json())["csrf"] == doc["csrf"]


async def test_a_key_logs_in_and_a_disabled_key_loses_its_session(world: World) -> None:
    key, secret = await world.access.keys.create("alice")
    doc = await log_in(world, f"{key.id}.{secret}")
    assert doc["principal"] == key.id and doc["admin"] is False
    await world.access.keys.disable(key.id)
    resp = await world.client.get("/ui/api/session")
    assert resp.status == 401
    assert (await world.client.get("/v1/buckets")).status == 401


@pytest.mark.parametrize(
    "credential", ["0" * 64, "DK000000000000000000000000.wrongsecretwrongsecret", "x y"]
)
async def test_a_wrong_credential_gets_no_cookie(world: World, credential: str) -> None:
    resp = await world.client.post("/ui/api/session", json={"credential": credential}, headers=JSON)
    assert resp.status == 401
    assert (await resp.json())["error"]["code"] == "unauthenticated"
    assert COOKIE_NAME not in resp.cookies
    assert (await world.client.get("/ui/api/session")).status == 401


async def test_logging_in_needs_a_json_body(world: World) -> None:
    resp = await world.client.post("/ui/api/session", data=f"credential={ADMIN_TOKEN}")
    assert resp.status == 400
    assert COOKIE_NAME not in resp.cookies


async def test_a_mutation_by_cookie_needs_the_csrf_token(world: World) -> None:
    doc = await log_in(world)
    resp = await world.client.put("/v1/buckets/made-by-cookie")
    assert resp.status == 403
    assert CSRF_HEADER in (await resp.json())["error"]["message"]
    assert await world.objects.buckets.read("made-by-cookie") is None  # nothing changed
    resp = await world.client.put("/v1/buckets/made-by-cookie", headers={CSRF_HEADER: "0" * 32})
    assert resp.status == 403
    resp = await world.client.put("/v1/buckets/made-by-cookie", headers={CSRF_HEADER: doc["csrf"]})
    assert resp.status == 201


async def test_an_authorization_header_wins_over_the_cookie(world: World) -> None:
    await log_in(world)
    key, secret = await world.access.keys.create("bob")
    resp = await world.client.get(
        "/v1/keys", headers={"Authorization": f"Bearer {key.id}.{secret}"}
    )
    assert resp.status == 403  # the key's own rights, not the admin's cookie


async def test_logging_out_clears_the_cookie(world: World) -> None:
    doc = await log_in(world)
    resp = await world.client.delete("/ui/api/session", headers={CSRF_HEADER: doc["csrf"]})
    assert resp.status == 204
    assert resp.cookies[COOKIE_NAME].value == ""
    assert (await world.client.get("/v1/buckets")).status == 401


def test_a_session_expires_and_a_forged_one_does_not_open() -> None:
    clock = Clock()
    sealer = SessionSealer(KEYRING, ttl_s=60, clock=clock)
    session, cookie = sealer.new("secret-credential")
    assert sealer.open(cookie) == session
    assert sealer.open(cookie[:-4] + "AAAA") is None
    assert sealer.open("not base64 !") is None
    assert SessionSealer(Keyring([bytes(32)]), clock=clock).open(cookie) is None
    rotated = SessionSealer(Keyring([bytes(32), bytes(range(32))]), clock=clock)
    assert rotated.open(cookie) == session  # a rotated-in key still opens it
    clock.now += 61
    assert sealer.open(cookie) is None


async def test_an_open_peer_needs_no_session(tmp_path: Any) -> None:
    objects = FakeObjects()
    app = build_app(objects, FakeState(), PeerConfig(), registry=CollectorRegistry())
    add_console(app, KEYRING)
    async with TestClient(TestServer(app)) as client:
        resp = await client.get("/ui/api/session")
        assert (await resp.json())["open"] is True


async def test_a_share_link_lives_as_long_as_asked(world: World) -> None:
    doc = await log_in(world)
    headers = {CSRF_HEADER: doc["csrf"]}
    resp = await world.client.get(
        "/ui/api/share-link",
        params={"bucket": "photos", "key": "a.txt", "expires_in": "86400"},
        headers=headers,
    )
    assert resp.status == 200, await resp.text()
    link = await resp.json()
    assert link["url"].startswith("http://") and "/ui/dl?" in link["url"]
    assert link["expires"] == int(world.clock.now) + 86400
    world.clock.now += 86000
    world.client.session.cookie_jar.clear()  # no session needed to follow it
    path = link["url"][link["url"].index("/ui/dl") :]
    got = await world.client.get(path)
    assert got.status == 200 and await got.read() == b"second version"
    world.clock.now += 401
    assert (await world.client.get(path)).status == 403


@pytest.mark.parametrize("expires_in", ["0", "59", "604801", "soon"])
async def test_a_share_link_lifetime_is_bounded(world: World, expires_in: str) -> None:
    await log_in(world)
    resp = await world.client.get(
        "/ui/api/share-link",
        params={"bucket": "photos", "key": "a.txt", "expires_in": expires_in},
    )
    assert resp.status == 400


async def test_only_an_owner_may_share(world: World) -> None:
    key, secret = await world.access.keys.create("reader")
    await world.objects.buckets.set_permissions(
        "photos", lambda current: {**current, key.id: _grant(read=True)}
    )
    await log_in(world, f"{key.id}.{secret}")
    params = {"bucket": "photos", "key": "a.txt"}
    assert (await world.client.get("/ui/api/download-link", params=params)).status == 200
    resp = await world.client.get("/ui/api/share-link", params={**params, "expires_in": "3600"})
    assert resp.status == 403


def _grant(**flags: bool) -> Any:
    from dfspeer.model.buckets import Grant

    return Grant(**flags)


async def test_restoring_a_version_makes_it_current(world: World) -> None:
    doc = await log_in(world)
    versions = await world.objects.list_object_versions("photos", "a.txt")
    oldest = versions[-1].version
    resp = await world.client.post(
        "/ui/api/restore",
        params={"bucket": "photos", "key": "a.txt", "version": oldest},
        headers={CSRF_HEADER: doc["csrf"]},
    )
    assert resp.status == 201, await resp.text()
    made = await resp.json()
    assert made["sha256"] == hashlib.sha256(b"first").hexdigest()
    current = await world.objects.stat_object("photos", "a.txt")
    assert current.version == made["version"] != oldest
    assert current.content_type == "text/plain" and dict(current.meta) == {"colour": "red"}
    assert len(await world.objects.list_object_versions("photos", "a.txt")) == 3
    missing = await world.client.post(
        "/ui/api/restore",
        params={"bucket": "photos", "key": "a.txt", "version": "nope"},
        headers={CSRF_HEADER: doc["csrf"]},
    )
    assert missing.status == 404


async def test_peers_lists_every_live_members_figures(world: World) -> None:
    await log_in(world)
    resp = await world.client.get("/ui/api/peers")
    assert resp.status == 200
    peers = (await resp.json())["peers"]
    assert set(peers) == {"p1", "p2"}  # p3 is dead: not asked
    assert peers["p1"]["block_bytes"] == 300
    assert "connection refused" in peers["p2"]["error"]
    world.client.session.cookie_jar.clear()
    assert (await world.client.get("/ui/api/peers")).status == 401


async def test_a_request_with_its_own_link_signature_is_left_alone(world: World) -> None:
    """A logged-in browser opening a server-made share link (``?signature=``): the cookie
    does not turn into an ``Authorization`` header beside the link's own credential."""
    await log_in(world)
    resp = await world.client.get("/v1/buckets", params={"signature": "x"})
    assert resp.status == 401  # judged without the cookie (this app has no share links)
    assert (await world.client.get("/v1/buckets")).status == 200
