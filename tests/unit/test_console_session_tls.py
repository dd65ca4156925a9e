"""The console's session cookie is ``Secure`` exactly when the browser reached the peer over
HTTPS: a TLS connection (an aiohttp server with a certificate made here), or a
TLS-terminating proxy's ``X-Forwarded-Proto: https`` / ``Forwarded: proto=https``; a
plain-HTTP login gets no ``Secure``, so a cookie set over HTTP keeps working over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry

from dfspeer import tls
from dfspeer.api.app import build_app
from dfspeer.api.console import add_console
from dfspeer.api.console.session import COOKIE_NAME, CSRF_HEADER
from dfspeer.config import PeerConfig
from tests.tls_certs import Pki, make_pki
from tests.unit.api_fakes import FakeObjects, FakeState
from tests.unit.test_access import ADMIN_TOKEN, RecordsDouble, make_access
from tests.unit.test_console import KEYRING

JSON = {"Content-Type": "application/json"}
Client = TestClient[web.Request, web.Application]


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("console-pki"), ["127.0.0.1"])


def console_app() -> web.Application:
    objects = FakeObjects()
    access = make_access(RecordsDouble(), objects)
    app = build_app(objects, FakeState(), PeerConfig(), registry=CollectorRegistry(), access=access)
    add_console(app, KEYRING)
    return app


@pytest.fixture
async def https_client(pki: Pki) -> AsyncIterator[Client]:
    server = TestServer(console_app(), host="127.0.0.1")
    await server.start_server(ssl=tls.server_context(pki.cert_file, pki.key_file))
    connector = aiohttp.TCPConnector(ssl=tls.client_context(pki.ca_file))
    async with TestClient(server, connector=connector) as client:
        yield client


@pytest.fixture
async def http_client() -> AsyncIterator[Client]:
    async with TestClient(TestServer(console_app(), host="127.0.0.1")) as client:
        yield client


async def log_in(client: Client, headers: dict[str, str] | None = None) -> aiohttp.ClientResponse:
    resp = await client.post(
        "/ui/api/session", json={"credential": ADMIN_TOKEN}, headers=JSON | (headers or {})
    )
    assert resp.status == 200, await resp.text()
    return resp


async def test_a_login_over_tls_sets_a_secure_cookie_that_works(https_client: Client) -> None:
    assert str(https_client.make_url("/")).startswith("https://127.0.0.1:")
    resp = await log_in(https_client)
    cookie = resp.cookies[COOKIE_NAME]
    assert cookie["secure"] is True
    assert cookie["httponly"] is True and cookie["samesite"] == "Strict"
    # the browser (here aiohttp's cookie jar) sends a Secure cookie back over https
    assert (await https_client.get("/v1/buckets")).status == 200
    csrf = (await resp.json())["csrf"]
    out = await https_client.delete("/ui/api/session", headers={CSRF_HEADER: csrf})
    assert out.status == 204
    cleared = out.cookies[COOKIE_NAME]
    assert cleared.value == "" and cleared["secure"] is True


async def test_a_plain_http_login_sets_no_secure_attribute(http_client: Client) -> None:
    resp = await log_in(http_client)
    assert not resp.cookies[COOKIE_NAME]["secure"]
    assert (await http_client.get("/v1/buckets")).status == 200


@pytest.mark.parametrize(
    ("headers", "secure"),
    [
        ({"X-Forwarded-Proto": "https"}, True),
        ({"X-Forwarded-Proto": "HTTPS, http"}, True),  # the client-side hop counts
        ({"Forwarded": "for=192.0.2.1;proto=https"}, True),
        ({"X-Forwarded-Proto": "http"}, False),
        ({"X-Forwarded-Proto": "http, https"}, False),
        ({"Forwarded": "proto=http"}, False),
        ({"Forwarded": "garbage;;="}, False),
    ],
)
async def test_a_tls_terminating_proxy_gets_a_secure_cookie(
    http_client: Client, headers: dict[str, str], secure: bool
) -> None:
    resp = await log_in(http_client, headers)
    assert bool(resp.cookies[COOKIE_NAME]["secure"]) is secure
