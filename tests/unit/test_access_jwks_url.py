"""JWT keys from a JWKS URL (dfspeer.access.jwks_url): an identity provider played by a local
aiohttp server serving a JWKS made here (ES256 keys from ``cryptography``), over HTTPS with
a CA made here and over http to loopback. The set is cached, fetched again for a new
``kid`` (key rotation) and when old, at most once in ``min_refetch_s`` however many unknown
``kid`` s arrive; a provider that is down, slow, redirecting or serving junk gets 401
``unauthenticated``, never a 500; the setting, its flag and its variable are checked."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from dfspeer import tls
from dfspeer.access.jwks_url import JwksUrlKeys
from dfspeer.access.jwt_auth import JwtVerifier, load_jwt_verifier, parse_jwks
from dfspeer.cli import build_parser
from dfspeer.client import Client
from dfspeer.commands.agent import config_from_args
from dfspeer.config import ConfigError, PeerConfig
from dfspeer.errors import DfsError, Unauthenticated
from dfspeer.peer import Peer
from tests.tls_certs import Pki, make_pki
from tests.unit.access_world import Clock, secured_world
from tests.unit.test_access_jwt import (
    EC_KEY,
    ISSUER,
    OTHER_EC_KEY,
    RSA_KEY,
    SUB,
    bearer,
    make_jwks,
    token,
)
from tests.unit.test_peer_single import secured_config_for

NEW_EC_KEY = ec.generate_private_key(ec.SECP256R1())
ED_KEY = ed25519.Ed25519PrivateKey.generate()


@dataclass
class Idp:
    """The identity provider's state: the JWKS it serves (None: 503), or raw ``body``."""

    jwks: dict[str, Any] | None
    body: bytes | None = None
    delay_s: float = 0.0
    hits: int = 0
    url: str = ""
    kids: list[list[str]] = field(default_factory=list)

    def app(self) -> web.Application:
        async def jwks(request: web.Request) -> web.StreamResponse:
            self.hits += 1
            await asyncio.sleep(self.delay_s)
            if self.body is not None:
                return web.Response(body=self.body, content_type="application/json")
            if self.jwks is None:
                return web.Response(status=503, text="down for maintenance")
            return web.json_response(self.jwks)

        async def moved(request: web.Request) -> web.StreamResponse:
            self.hits += 1
            raise web.HTTPFound("/jwks.json")

        app = web.Application()
        app.router.add_get("/jwks.json", jwks)
        app.router.add_get("/moved", moved)
        return app


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    return make_pki(tmp_path_factory.mktemp("idp-pki"), ["127.0.0.1"], name="idp")


@pytest.fixture
async def idp() -> AsyncIterator[Idp]:
    state = Idp(make_jwks((EC_KEY, "k1")))
    server = TestServer(state.app(), host="127.0.0.1")
    await server.start_server()
    state.url = str(server.make_url("/jwks.json"))
    yield state
    await server.close()


@pytest.fixture
async def https_idp(pki: Pki) -> AsyncIterator[Idp]:
    state = Idp(make_jwks((EC_KEY, "k1")))
    server = TestServer(state.app(), host="127.0.0.1")
    await server.start_server(ssl=tls.server_context(pki.cert_file, pki.key_file))
    state.url = str(server.make_url("/jwks.json"))
    assert state.url.startswith("https://127.0.0.1:")
    yield state
    await server.close()


def verifier(url: str, clock: Clock, **options: Any) -> JwtVerifier:
    source = JwksUrlKeys(url, clock=clock, timeout_s=options.pop("timeout_s", 2.0), **options)
    return JwtVerifier([], issuer=ISSUER, source=source)


async def refused(v: JwtVerifier, text: str, why: str) -> None:
    with pytest.raises(Unauthenticated, match=why):
        await v.verify(text)


# ---------------------------------------------------------------------- over https
async def test_keys_come_over_https_verified_by_the_ca(
    https_idp: Idp, pki: Pki, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(pki.ca_file))  # the "system" CAs: the test CA
    v = load_jwt_verifier(PeerConfig(jwt_jwks_url=https_idp.url, jwt_issuer=ISSUER))
    assert v is not None and v.source is not None
    assert await v.verify(token(kid="k1", iss=ISSUER)) == SUB
    assert await v.verify(token(kid="k1", iss=ISSUER)) == SUB
    assert https_idp.hits == 1  # cached
    await refused(v, token(kid="k1"), "iss")  # the usual claim checks still hold


async def test_an_https_provider_with_an_untrusted_certificate_is_refused(
    https_idp: Idp, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    v = verifier(https_idp.url, Clock())
    await refused(v, token(kid="k1", iss=ISSUER), "cannot be fetched .*[Cc]ertificate")


# ---------------------------------------------------------------------- caching, rotation
async def test_a_new_kid_fetches_the_set_again_and_a_dropped_key_stops_working(
    idp: Idp,
) -> None:
    clock = Clock()
    v = verifier(idp.url, clock)
    assert await v.verify(token(kid="k1", iss=ISSUER)) == SUB
    idp.jwks = make_jwks((EC_KEY, "k1"), (NEW_EC_KEY, "k2"))  # the provider rotates
    rotated = token(NEW_EC_KEY, kid="k2", iss=ISSUER)
    # within min_refetch_s of the last fetch, an unknown kid fetches nothing
    await refused(v, rotated, "kid names no configured key")
    assert idp.hits == 1
    clock.now += 10
    assert await v.verify(rotated) == SUB
    assert idp.hits == 2
    assert await v.verify(token(kid="k1", iss=ISSUER)) == SUB  # both keys now
    idp.jwks = make_jwks((NEW_EC_KEY, "k2"))  # k1 retired
    clock.now += 300  # the cache's lifetime
    await refused(v, token(kid="k1", iss=ISSUER), "kid names no configured key")
    assert idp.hits == 3
    assert await v.verify(rotated) == SUB
    await refused(v, token(OTHER_EC_KEY, kid="k2", iss=ISSUER), "signature")


async def test_a_flood_of_unknown_kids_makes_one_request(idp: Idp) -> None:
    clock = Clock()
    v = verifier(idp.url, clock)
    assert await v.verify(token(kid="k1", iss=ISSUER)) == SUB
    clock.now += 60
    idp.delay_s = 0.2  # the requests below overlap the one fetch they may cause
    flood = [v.verify(token(OTHER_EC_KEY, kid=f"made-up-{i}", iss=ISSUER)) for i in range(50)]
    results = await asyncio.gather(*flood, return_exceptions=True)
    assert all(isinstance(r, Unauthenticated) for r in results)
    assert idp.hits == 2
    for i in range(20):  # and none at all in the next min_refetch_s
        clock.now += 0.4
        await refused(v, token(OTHER_EC_KEY, kid=f"again-{i}", iss=ISSUER), "kid names no")
    assert idp.hits == 2
    clock.now += 2
    await refused(v, token(OTHER_EC_KEY, kid="later", iss=ISSUER), "kid names no")
    assert idp.hits == 3
    assert await v.verify(token(kid="k1", iss=ISSUER)) == SUB
    clock.now += 60
    hs256 = jwt.encode({"sub": SUB, "exp": 2**31}, "k" * 32, headers={"kid": "x"})
    await refused(v, hs256, "alg 'HS256' is not accepted")  # refused without a fetch
    await refused(v, "not.a.jwt", "malformed JWT")
    assert idp.hits == 3


# ---------------------------------------------------------------------- the provider fails
async def test_a_provider_that_is_down_gets_401_and_then_recovers(idp: Idp) -> None:
    clock = Clock()
    idp.jwks = None
    v = verifier(idp.url, clock)
    assert v.source is not None and await v.source.warm_up() is False
    await refused(v, token(kid="k1", iss=ISSUER), r"cannot be fetched \(HTTP 503\)")
    assert idp.hits == 1  # no second request within min_refetch_s
    idp.jwks = make_jwks((EC_KEY, "k1"))
    clock.now += 10
    assert await v.verify(token(kid="k1", iss=ISSUER)) == SUB
    idp.jwks = None  # down again: the keys fetched before stay in use
    clock.now += 301
    assert await v.verify(token(kid="k1", iss=ISSUER)) == SUB
    assert idp.hits == 3


@pytest.mark.parametrize(
    ("body", "path", "why"),
    [
        (b"<html>login</html>", "/jwks.json", "not JSON"),
        (b'{"keys": []}', "/jwks.json", "expected"),
        (b"x" * (1024 * 1024 + 1), "/jwks.json", "larger than"),
        (None, "/moved", "HTTP 302"),  # a redirect is not followed
    ],
)
async def test_junk_from_the_provider_is_a_clear_401(
    idp: Idp, body: bytes | None, path: str, why: str
) -> None:
    idp.body = body
    v = verifier(idp.url.replace("/jwks.json", path), Clock())
    await refused(v, token(kid="k1", iss=ISSUER), why)


async def test_a_slow_provider_times_out(idp: Idp) -> None:
    idp.delay_s = 1.0
    v = verifier(idp.url, Clock(), timeout_s=0.2)
    await refused(v, token(kid="k1", iss=ISSUER), r"cannot be fetched \(timed out\)")


async def test_a_stopped_provider_is_a_401_through_the_app(idp: Idp) -> None:
    v = verifier("http://127.0.0.1:9/jwks.json", Clock())  # the discard port: refused
    async with secured_world(v) as world:
        reader = token(sub=world.ids["reader"], kid="k1", iss=ISSUER)
        resp = await world.client.get("/v1/objects/shared/obj", headers=bearer(reader))
        doc = await resp.json()
        assert resp.status == 401 and doc["error"]["code"] == "unauthenticated"
        assert "jwt_jwks_url cannot be fetched" in doc["error"]["message"]
        good = verifier(idp.url, Clock())
        world.keys.jwt = good
        resp = await world.client.get("/v1/objects/shared/obj", headers=bearer(reader))
        assert resp.status == 200 and await resp.read() == b"data"


def test_a_published_set_keeps_only_usable_signing_keys() -> None:
    jwks = make_jwks((EC_KEY, "es"), (RSA_KEY, "rs"))
    okp = json.loads(jwt.algorithms.OKPAlgorithm.to_jwk(ED_KEY.public_key()))
    jwks["keys"] += [
        okp | {"kid": "ed"},
        {**make_jwks((OTHER_EC_KEY, "enc"))["keys"][0], "use": "enc"},
        {**make_jwks((OTHER_EC_KEY, "384"))["keys"][0], "alg": "ES384"},
    ]
    data = json.dumps(jwks).encode()
    assert [k.kid for k in parse_jwks(data, "url", skip_unusable=True)] == ["es", "rs"]
    with pytest.raises(ValueError, match="key 2"):  # a local file must be clean
        parse_jwks(data, "file")


# ---------------------------------------------------------------------- settings
def test_the_setting_its_flag_and_its_variable(tmp_path: Path) -> None:
    url = "https://idp.example/.well-known/jwks.json"
    args = build_parser().parse_args(["agent", "--jwt-jwks-url", url, "--jwt-issuer", ISSUER])
    assert config_from_args(args, environ={}).jwt_jwks_url == url
    from_env = PeerConfig.from_sources(environ={"DFSPEER_JWT_JWKS_URL": url})
    assert from_env.jwt_jwks_url == url
    assert PeerConfig(jwt_jwks_url="http://localhost:8080/k").jwt_jwks_url
    assert PeerConfig(jwt_jwks_url="http://[::1]:8080/k", jwt_audience="a").jwt_audience == "a"
    for bad, why in (
        ("http://idp.example/jwks.json", "http:// only to a loopback"),
        ("ftp://idp.example/jwks.json", "https:// URL with a host"),
        ("https:///jwks.json", "https:// URL with a host"),
        ("https://user:pw@idp.example/k", "user info"),
        ("https://idp.example/k#frag", "fragment"),
        ("https://idp.example/a b", "printable"),
        ("https://idp.example:99999/k", "not a URL"),
    ):
        with pytest.raises(ConfigError, match=f"jwt_jwks_url: .*{why}"):
            PeerConfig(jwt_jwks_url=bad)
    with pytest.raises(ConfigError, match="not two"):
        PeerConfig(jwt_jwks_url=url, jwt_jwks_file=tmp_path / "k.jwks")
    with pytest.raises(ConfigError, match=r"jwt_issuer: needs .*jwt_jwks_url"):
        PeerConfig(jwt_issuer=ISSUER)


async def test_a_peer_starts_while_the_provider_is_down_and_serves_jwts_later(
    tmp_path: Path, idp: Idp
) -> None:
    config, admin_token = secured_config_for(
        tmp_path, tmp_path / "p1", jwt_jwks_url=idp.url, jwt_issuer=ISSUER
    )
    idp.jwks = None
    async with Peer(config) as peer:
        await peer.wait_ready(10)
        assert idp.hits == 1  # the warm-up fetch at start failed; the peer runs
        async with Client(peer.api_url, token=admin_token) as admin:
            doc = await admin.create_key("by-jwt", allow_create_bucket=True)
        by_jwt = token(sub=doc["id"], kid="k1", iss=ISSUER)
        async with Client(peer.api_url, token=by_jwt, max_attempts=1) as c:
            with pytest.raises(DfsError) as raised:
                await c.put_object("jwt-made", "k", b"v")
            assert (raised.value.status, raised.value.code) == (401, "unauthenticated")
            assert "cannot be fetched (HTTP 503)" in raised.value.message
            idp.jwks = make_jwks((EC_KEY, "k1"))
            assert peer._access is not None and peer._access.keys.jwt is not None
            source = peer._access.keys.jwt.source
            assert isinstance(source, JwksUrlKeys)
            source.min_refetch_s = 0.0  # rather than wait 10 s for the next attempt
            await c.put_object("jwt-made", "k", b"v")
            assert await c.get_object("jwt-made", "k") == b"v"
        assert idp.hits == 2
