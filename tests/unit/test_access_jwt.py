"""JWT bearer tokens (dfspeer.access.jwt_auth): ES256 and RS256 tokens made here with
keys from ``cryptography``, a PEM key file and a JWKS file, exp / iss / aud, algorithm
confusion (``none``, HS256 keyed with the public key, the other algorithm), the subject key
(unknown, disabled, its grants), startup errors of bad key files, a fuzzed token that never
gets a 500, and no token or key material in any log line."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import hmac
import json
import logging
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dfspeer.access.credentials import JwtCredential, parse_authorization
from dfspeer.access.jwt_auth import JwtVerifier, VerifyKey, load_jwt_verifier
from dfspeer.cli import build_parser
from dfspeer.commands.agent import config_from_args
from dfspeer.config import ConfigError, PeerConfig
from dfspeer.errors import Unauthenticated
from dfspeer.peer import Peer
from tests.unit.access_world import secured_world

EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_EC_KEY = ec.generate_private_key(ec.SECP256R1())
RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
ISSUER, AUDIENCE = "https://idp.example", "dfspeer"
SUB = "DK" + "0" * 24
EC_KEYS = [VerifyKey("ES256", EC_KEY.public_key())]


def pem(private: Any) -> bytes:
    return bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )


def _jwk_dict(private: Any) -> dict[str, Any]:
    algo = jwt.algorithms.ECAlgorithm if isinstance(private, ec.EllipticCurvePrivateKey) else None
    text = (algo or jwt.algorithms.RSAAlgorithm).to_jwk(private.public_key())
    doc: dict[str, Any] = json.loads(text)
    return doc


def make_jwks(*pairs: tuple[Any, str]) -> dict[str, Any]:
    return {"keys": [_jwk_dict(private) | {"kid": kid, "use": "sig"} for private, kid in pairs]}


def token(
    private: Any = EC_KEY,
    algorithm: str = "ES256",
    *,
    kid: str | None = None,
    exp_in_s: float = 300.0,
    **claims: Any,
) -> str:
    payload: dict[str, Any] = {"sub": SUB, "exp": int(time.time() + exp_in_s)} | claims
    payload = {k: v for k, v in payload.items() if v is not None}
    headers = {"kid": kid} if kid else None
    return jwt.encode(payload, private, algorithm=algorithm, headers=headers)


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def forged(header: dict[str, Any], payload: dict[str, Any], signature: bytes = b"") -> str:
    return (
        f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}.{b64(signature)}"
    )


def verifier_from(tmp_path: Path, *, jwks: dict[str, Any] | None = None, **settings_: Any) -> Any:
    if jwks is not None:
        path = tmp_path / "keys.jwks"
        path.write_text(json.dumps(jwks))
        return load_jwt_verifier(PeerConfig(jwt_jwks_file=path, **settings_))
    path = tmp_path / "jwt.pem"
    path.write_bytes(pem(EC_KEY))
    return load_jwt_verifier(PeerConfig(jwt_public_key_file=path, **settings_))


# ---------------------------------------------------------------------- the verifier
def test_es256_pem_key_gives_the_subject(tmp_path: Path) -> None:
    verifier = verifier_from(tmp_path)
    assert verifier is not None and verifier.subject(token()) == SUB
    assert "ES256" in repr(verifier)


def test_rs256_jwks_picks_the_key_by_kid(tmp_path: Path) -> None:
    verifier = verifier_from(tmp_path, jwks=make_jwks((RSA_KEY, "r1"), (EC_KEY, "e1")))
    assert verifier.subject(token(RSA_KEY, "RS256", kid="r1")) == SUB
    assert verifier.subject(token(EC_KEY, "ES256", kid="e1")) == SUB
    assert verifier.subject(token(RSA_KEY, "RS256")) == SUB  # no kid: every RS256 key is tried
    with pytest.raises(Unauthenticated, match="kid"):
        verifier.subject(token(RSA_KEY, "RS256", kid="gone"))
    with pytest.raises(Unauthenticated, match="signature"):
        verifier.subject(token(OTHER_EC_KEY, "ES256", kid="e1"))


@pytest.mark.parametrize(
    ("claims", "match"),
    [
        ({"exp_in_s": -3600}, "expired"),
        ({"exp": None}, "no exp"),
        ({"sub": None}, "no sub"),
        ({"sub": "alice"}, "access key id"),
        ({"nbf": int(time.time()) + 3600}, "not valid yet"),
        ({"aud": "someone-else"}, "aud"),  # no audience configured: a token with one is refused
    ],
)
def test_claims_are_checked(tmp_path: Path, claims: dict[str, Any], match: str) -> None:
    verifier = verifier_from(tmp_path)
    with pytest.raises(Unauthenticated, match=match):
        verifier.subject(token(**claims))


def test_issuer_and_audience_when_configured(tmp_path: Path) -> None:
    verifier = verifier_from(tmp_path, jwt_issuer=ISSUER, jwt_audience=AUDIENCE)
    assert verifier.subject(token(iss=ISSUER, aud=AUDIENCE)) == SUB
    assert verifier.subject(token(iss=ISSUER, aud=["other", AUDIENCE])) == SUB
    for claims, match in (
        ({"iss": "https://evil.example", "aud": AUDIENCE}, "iss"),
        ({"aud": AUDIENCE}, "no iss"),
        ({"iss": ISSUER, "aud": "other"}, "aud"),
        ({"iss": ISSUER}, "no aud"),
    ):
        with pytest.raises(Unauthenticated, match=match):
            verifier.subject(token(**claims))


def test_algorithm_confusion_is_refused(tmp_path: Path) -> None:
    verifier = verifier_from(tmp_path)  # one ES256 key
    payload = {"sub": SUB, "exp": int(time.time()) + 300}
    none = forged({"alg": "none", "typ": "JWT"}, payload)
    public_pem = pem(EC_KEY)
    signing_input = none.rsplit(".", 1)[0].replace(
        b64(json.dumps({"alg": "none", "typ": "JWT"}).encode()),
        b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode()),
    )
    hs256 = (
        signing_input
        + "."
        + b64(hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest())
    )
    for bad in (none, hs256, token(RSA_KEY, "RS256"), forged({"typ": "JWT"}, payload, b"x")):
        with pytest.raises(Unauthenticated, match="alg"):
            verifier.subject(bad)


def test_malformed_tokens_are_refused(tmp_path: Path) -> None:
    verifier = verifier_from(tmp_path)
    good = token()
    head, body, sig = good.split(".")
    for bad in (
        "a.b.c",
        f"{head}.{body}.",
        f"{head}.{b64(b'not json')}.{sig}",
        f"{head}.{body}.{sig[::-1]}",
    ):
        with pytest.raises(Unauthenticated):
            verifier.subject(bad)


# ---------------------------------------------------------------------- startup errors
def test_bad_key_files_are_clear_startup_errors(tmp_path: Path) -> None:
    missing = tmp_path / "missing.pem"
    with pytest.raises(ConfigError, match="jwt_public_key_file: cannot read"):
        load_jwt_verifier(PeerConfig(jwt_public_key_file=missing))
    private_pem = EC_KEY.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    cases: list[tuple[str, bytes]] = [
        ("not a PEM public key", b"hello"),
        ("not a PEM public key", private_pem),
        ("only EC P-256", pem(ed25519.Ed25519PrivateKey.generate())),
        ("at least 2048 bits", pem(rsa.generate_private_key(public_exponent=65537, key_size=1024))),
    ]
    for match, data in cases:
        path = tmp_path / "key.pem"
        path.write_bytes(data)
        with pytest.raises(ConfigError, match=f"jwt_public_key_file: .*{match}") as raised:
            load_jwt_verifier(PeerConfig(jwt_public_key_file=path))
        assert "PRIVATE KEY" not in str(raised.value)


@pytest.mark.parametrize(
    ("jwks", "match"),
    [
        ("not json", "not JSON"),
        ({"keys": []}, "expected"),
        ({"keys": [{"kty": "oct", "k": b64(b"s" * 32)}]}, "only EC P-256"),
        ({"keys": [_jwk_dict(EC_KEY) | {"alg": "HS256"}]}, "alg must be ES256 or RS256"),
        ({"keys": [_jwk_dict(EC_KEY) | {"alg": "RS256"}]}, "not a usable JWK"),
        ({"keys": [_jwk_dict(EC_KEY) | {"d": "private"}]}, "private key"),
        ({"keys": [_jwk_dict(EC_KEY) | {"use": "enc"}]}, "no signing key"),
        ({"keys": [{"kty": "RSA"}]}, "not a usable JWK"),
    ],
)
def test_bad_jwks_files_are_clear_startup_errors(tmp_path: Path, jwks: Any, match: str) -> None:
    path = tmp_path / "keys.jwks"
    path.write_text(jwks if isinstance(jwks, str) else json.dumps(jwks))
    with pytest.raises(ConfigError, match=f"jwt_jwks_file: .*{match}"):
        load_jwt_verifier(PeerConfig(jwt_jwks_file=path))


def test_config_settings_and_agent_flags(tmp_path: Path) -> None:
    assert load_jwt_verifier(PeerConfig()) is None
    with pytest.raises(ConfigError, match="not both"):
        PeerConfig(jwt_public_key_file=tmp_path / "a", jwt_jwks_file=tmp_path / "b")
    with pytest.raises(ConfigError, match="jwt_issuer"):
        PeerConfig(jwt_issuer=ISSUER)
    args = build_parser().parse_args(
        [
            *("agent", "--jwt-jwks-file", str(tmp_path / "k.jwks")),
            *("--jwt-issuer", ISSUER, "--jwt-audience", AUDIENCE),
        ]
    )
    config = config_from_args(args, environ={})
    assert config.jwt_jwks_file == tmp_path / "k.jwks"
    assert (config.jwt_issuer, config.jwt_audience) == (ISSUER, AUDIENCE)


# ---------------------------------------------------------------------- through the app
def test_a_jwt_parses_as_its_own_credential_and_hides_itself() -> None:
    text = token()
    credential = parse_authorization("Bearer " + text)
    assert credential == JwtCredential(text)
    assert text not in repr(credential)


def verifier_for_app(tmp_path: Path) -> JwtVerifier:
    verifier = verifier_from(tmp_path, jwt_issuer=ISSUER)
    assert isinstance(verifier, JwtVerifier)
    return verifier


def bearer(text: str) -> dict[str, str]:
    return {"Authorization": "Bearer " + text}


async def test_a_jwt_acts_as_its_subject_key(tmp_path: Path) -> None:
    async with secured_world(verifier_for_app(tmp_path)) as world:
        reader = token(sub=world.ids["reader"], iss=ISSUER)
        resp = await world.client.get("/v1/objects/shared/obj", headers=bearer(reader))
        assert resp.status == 200 and await resp.read() == b"data"
        resp = await world.client.put("/v1/objects/shared/obj", data=b"x", headers=bearer(reader))
        assert resp.status == 403
        writer = token(sub=world.ids["writer"], iss=ISSUER)
        resp = await world.client.put("/v1/objects/shared/new", data=b"x", headers=bearer(writer))
        assert resp.status == 201
        for who, why in ((world.ids["disabled"], "disabled"), ("DK" + "f" * 24, "not an access")):
            resp = await world.client.get(
                "/v1/objects/shared/obj", headers=bearer(token(sub=who, iss=ISSUER))
            )
            doc = await resp.json()
            assert resp.status == 401 and doc["error"]["code"] == "unauthenticated"
            assert why in doc["error"]["message"]
        expired = token(sub=world.ids["reader"], iss=ISSUER, exp_in_s=-3600)
        resp = await world.client.get("/v1/objects/shared/obj", headers=bearer(expired))
        assert resp.status == 401 and "expired" in (await resp.json())["error"]["message"]


async def test_without_a_jwt_key_a_jwt_is_refused_clearly() -> None:
    async with secured_world(None) as world:
        resp = await world.client.get(
            "/v1/objects/shared/obj", headers=bearer(token(sub=world.ids["reader"]))
        )
        doc = await resp.json()
        assert resp.status == 401 and doc["error"]["code"] == "unauthenticated"
        assert "accepts no JWT" in doc["error"]["message"]


async def test_no_token_or_key_material_in_logs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="dfspeer")  # a Peer started earlier set INFO
    async with secured_world(verifier_for_app(tmp_path)) as world:
        good = token(sub=world.ids["reader"], iss=ISSUER)
        tokens = [
            good,
            token(sub=world.ids["reader"]),
            token(sub=world.ids["disabled"], iss=ISSUER),
        ]
        for text in tokens:
            await world.client.get("/v1/objects/shared/obj", headers=bearer(text))
    assert caplog.records
    signatures = [t.rsplit(".", 1)[1] for t in tokens]
    for record in caplog.records:
        line = record.getMessage() + str(record.args)
        assert not any(s in line for s in signatures)
        assert world.secrets["reader"] not in line


# ---------------------------------------------------------------------- fuzz
B64 = st.text(
    alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_", max_size=60
)
GOOD = token(exp_in_s=7 * 86400)  # valid for the whole run
PRINTABLE = st.text(alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E), max_size=80)


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.tuples(B64, B64, B64).map(".".join),
        st.tuples(st.integers(0, len(GOOD) - 1), st.sampled_from("Aa0_-.")).map(
            lambda p: GOOD[: p[0]] + p[1] + GOOD[p[0] + 1 :]
        ),
    )
)
def test_fuzzed_tokens_only_ever_raise_unauthenticated(text: str) -> None:
    verifier = JwtVerifier(EC_KEYS)
    with contextlib.suppress(Unauthenticated):
        assert verifier.subject(text) == SUB  # only the untouched token (or a no-op edit)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.tuples(B64, B64, B64).map(".".join) | PRINTABLE.map(lambda t: t + ".x.y"))
def test_fuzzed_jwt_headers_never_get_a_500(text: str) -> None:
    async def run() -> None:
        async with secured_world(JwtVerifier(EC_KEYS)) as world:
            for method, path in (("GET", "/v1/objects/shared/obj"), ("PUT", "/v1/objects/b/k")):
                resp = await world.client.request(
                    method, path, data=b"x", headers={"Authorization": "Bearer " + text}
                )
                assert resp.status in (400, 401), (text, resp.status)
                assert world.objects.buckets.known.keys() == {"shared"}

    asyncio.run(run())


async def test_a_peer_with_a_bad_jwt_key_file_does_not_start(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pem"
    bad.write_text("hello")
    config = PeerConfig(
        insecure=True,
        data_dir=tmp_path / "data",
        port=0,
        gossip_port=0,
        s3_port=0,
        jwt_public_key_file=bad,
    )
    with pytest.raises(ConfigError, match=r"jwt_public_key_file: .*not a PEM public key"):
        async with Peer(config):
            pass
