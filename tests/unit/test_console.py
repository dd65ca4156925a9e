"""The web console sub-app (dfspeer.api.console): assets, content types and cache headers,
routing, the access rules of its routes and the signed download links."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from dfspeer.access.routes import ROUTE_RULES, rule_for
from dfspeer.api.app import build_app
from dfspeer.api.console import add_console
from dfspeer.api.console.app import STATIC_DIR
from dfspeer.api.console.links import DownloadLink, DownloadLinks
from dfspeer.config import PeerConfig
from dfspeer.errors import AccessDenied
from dfspeer.gossip import Keyring
from tests.unit.api_fakes import FakeObjects, FakeState
from tests.unit.test_access import ADMIN_TOKEN, RecordsDouble, make_access

KEYRING = Keyring([bytes(range(32))])
DATA = b"console download body\n" * 1000


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class Console:
    client: TestClient[web.Request, web.Application]
    objects: FakeObjects
    clock: Clock


ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@pytest.fixture
async def console() -> AsyncIterator[Console]:
    objects = FakeObjects()
    await objects.buckets.create("photos")
    await objects.put_object("photos", "dir/a b.txt", DATA, content_type="text/plain")
    clock = Clock()
    access = make_access(RecordsDouble(), objects)
    app = build_app(objects, FakeState(), PeerConfig(), registry=CollectorRegistry(), access=access)
    add_console(app, KEYRING, links=DownloadLinks(KEYRING, clock=clock))
    async with TestClient(TestServer(app)) as client:
        yield Console(client, objects, clock)


async def test_the_page_is_served_at_ui_with_its_headers(console: Console) -> None:
    resp = await console.client.get("/ui/")
    assert resp.status == 200
    assert resp.headers["Content-Type"] == "text/html; charset=utf-8"
    assert resp.headers["Cache-Control"] == "no-cache"
    assert resp.headers["X-Content-Type-Options"] == "nosniff"
    assert "default-src 'self'" in resp.headers["Content-Security-Policy"]
    body = await resp.text()
    assert body == (STATIC_DIR / "index.html").read_text()
    assert '<script type="module" src="static/main.js">' in body
    again = await console.client.get("/ui/", headers={"If-None-Match": resp.headers["ETag"]})
    assert again.status == 304
    moved = await console.client.get("/ui", allow_redirects=False)
    assert moved.status == 308
    assert moved.headers["Location"] == "/ui/"


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("main.js", "text/javascript; charset=utf-8"),
        ("upload.js", "text/javascript; charset=utf-8"),
        ("console.css", "text/css; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
    ],
)
async def test_assets_have_their_content_type_and_are_revalidated(
    console: Console, name: str, content_type: str
) -> None:
    resp = await console.client.get(f"/ui/static/{name}")  # no credential needed
    assert resp.status == 200
    assert resp.headers["Content-Type"] == content_type
    assert resp.headers["Cache-Control"] == "no-cache"
    again = await console.client.get(
        f"/ui/static/{name}", headers={"If-None-Match": resp.headers["ETag"]}
    )
    assert again.status == 304
    assert await resp.read() == (STATIC_DIR / name).read_bytes()


def test_every_module_the_page_imports_is_shipped() -> None:
    """Each ``import ... from "./x.js"`` names a file of static/ (a typo is a blank page)."""
    import re

    for path in STATIC_DIR.glob("*.js"):
        for target in re.findall(r'from "\./([^"]+)"', path.read_text()):
            assert (STATIC_DIR / target).is_file(), f"{path.name} imports missing {target}"


@pytest.mark.parametrize(
    "path",
    ["/ui/static/nope.js", "/ui/static/../app.py", "/ui/static/app.py", "/ui/nope", "/ui/static/"],
)
async def test_unknown_paths_are_404(console: Console, path: str) -> None:
    resp = await console.client.get(path, headers=ADMIN)
    assert resp.status == 404
    assert (await resp.json())["error"]["code"] == "not_found"


def test_every_console_route_has_an_access_rule() -> None:
    app = build_app(FakeObjects(), FakeState(), PeerConfig(), registry=CollectorRegistry())
    add_console(app, KEYRING)
    seen = set()
    for resource in app.router.resources():
        for sub in getattr(resource, "_app", web.Application()).router.resources():
            for route in sub:
                if route.method in ("GET", "POST", "PUT", "DELETE"):
                    seen.add((route.method, sub.canonical))
                    assert (route.method, sub.canonical) in ROUTE_RULES
    assert ("GET", "/ui/dl") in seen and ("GET", "/ui/api/download-link") in seen
    assert rule_for("GET", "/ui", metrics_public=True) == ROUTE_RULES[("GET", "/ui")]


async def _link(console: Console, **params: str) -> dict[str, str]:
    resp = await console.client.get("/ui/api/download-link", params=params, headers=ADMIN)
    assert resp.status == 200, await resp.text()
    assert resp.headers["Cache-Control"] == "no-store"
    doc: dict[str, str] = await resp.json()
    return doc


async def test_a_download_link_streams_the_object_as_an_attachment(console: Console) -> None:
    doc = await _link(console, bucket="photos", key="dir/a b.txt")
    assert int(doc["expires"]) == int(console.clock.now + 60)
    resp = await console.client.get(doc["url"])  # no credential: the signature is one
    assert resp.status == 200
    assert await resp.read() == DATA
    assert resp.headers["ETag"] == f'"{hashlib.sha256(DATA).hexdigest()}"'
    assert resp.headers["Content-Type"] == "text/plain"
    assert resp.headers["Content-Disposition"] == (
        "attachment; filename=\"a b.txt\"; filename*=UTF-8''a%20b.txt"
    )
    assert resp.headers["Cache-Control"] == "no-store"


async def test_a_link_pins_the_version_current_when_it_was_made(console: Console) -> None:
    doc = await _link(console, bucket="photos", key="dir/a b.txt")
    await console.objects.put_object("photos", "dir/a b.txt", b"newer")
    resp = await console.client.get(doc["url"])
    assert resp.status == 200
    assert await resp.read() == DATA


async def test_minting_a_link_needs_a_reader_and_an_existing_object(console: Console) -> None:
    resp = await console.client.get(
        "/ui/api/download-link", params={"bucket": "photos", "key": "dir/a b.txt"}
    )
    assert resp.status == 401
    resp = await console.client.get(
        "/ui/api/download-link", params={"bucket": "photos", "key": "missing"}, headers=ADMIN
    )
    assert resp.status == 404
    resp = await console.client.get(
        "/ui/api/download-link", params={"bucket": "photos"}, headers=ADMIN
    )
    assert resp.status == 400


def _tampered(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {k: v[0] for k, v in parse_qs(parts.query).items()}
    query.update(changes)
    return parts.path + "?" + "&".join(f"{k}={v}" for k, v in query.items())


@pytest.mark.parametrize(
    "changes",
    [
        {"sig": "0" * 64},
        {"key": "dir/other.txt"},
        {"expires": "1800000999"},
        {"version": "v-not-the-one"},
    ],
)
async def test_a_bad_signature_is_403(console: Console, changes: dict[str, str]) -> None:
    doc = await _link(console, bucket="photos", key="dir/a b.txt")
    resp = await console.client.get(_tampered(doc["url"], **changes))
    assert resp.status == 403
    assert (await resp.json())["error"]["code"] == "access_denied"


async def test_an_expired_link_is_403(console: Console) -> None:
    doc = await _link(console, bucket="photos", key="dir/a b.txt")
    console.clock.now += 61
    resp = await console.client.get(doc["url"])
    assert resp.status == 403
    assert "expired" in (await resp.json())["error"]["message"]


async def test_a_link_without_its_fields_is_400(console: Console) -> None:
    resp = await console.client.get("/ui/dl", params={"bucket": "photos", "key": "dir/a b.txt"})
    assert resp.status == 400


def test_links_verify_under_any_key_of_a_rotated_ring() -> None:
    clock = Clock()
    old = DownloadLinks(Keyring([bytes(range(32))]), clock=clock)
    link, sig = old.make("b1", "k", "v1")
    rotated = DownloadLinks(Keyring([bytes(32), bytes(range(32))]), clock=clock)
    rotated.verify(link, sig)
    with pytest.raises(AccessDenied):
        DownloadLinks(Keyring([bytes(32)]), clock=clock).verify(link, sig)
    with pytest.raises(AccessDenied):  # never minted that far ahead
        old.verify(DownloadLink("b1", "k", "v1", link.expires + 8 * 86400), sig)


def test_the_assets_are_package_data() -> None:
    text = (Path(__file__).parents[2] / "pyproject.toml").read_text()
    assert '"dfspeer.api.console" = ["static/*"]' in text
