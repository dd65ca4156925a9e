"""JWT bearer tokens: ``Authorization: Bearer <jwt>`` acting as an access key.

A peer configured with ``jwt_public_key_file`` (one PEM public key) or ``jwt_jwks_file`` (a
local JSON Web Key Set, RFC 7517) accepts a JWT (RFC 7519, compact JWS) whose signature
verifies under one of those keys and whose claims hold:

- ``exp`` (required) not passed, ``nbf`` / ``iat`` (when present) not in the future, all
  with :data:`LEEWAY_S` seconds of clock skew allowed;
- ``iss`` equal to ``jwt_issuer`` and ``aud`` naming ``jwt_audience`` when those are set (a
  token that carries an ``aud`` is refused when no audience is configured, as RFC 7519
  section 4.1.3 asks);
- ``sub`` (required): an access key id (``DK`` + 24 hex digits). The request then acts as
  that key (which must exist and not be disabled: :class:`~dfspeer.access.keystore.
  KeyService` checks it) with its bucket grants.

Only ES256 (an EC P-256 key) and RS256 (an RSA key of at least 2048 bits) are accepted, and
each key verifies only with its own algorithm: the token's ``alg`` picks nothing but a key of
that algorithm, so ``none``, HS256 keyed with a public key and any other algorithm confusion
are refused. The checks are PyJWT's (:func:`jwt.decode`); nothing here logs or repeats a token.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_pem_public_key

from dfspeer.access.credentials import KEY_ID_RE
from dfspeer.config import ConfigError, PeerConfig
from dfspeer.errors import Unauthenticated

ALGORITHMS = ("ES256", "RS256")
LEEWAY_S = 30.0
MIN_RSA_BITS = 2048
MAX_JWKS_BYTES = 1024 * 1024
MAX_KEYS = 100

PublicKey = ec.EllipticCurvePublicKey | rsa.RSAPublicKey


@dataclass(frozen=True)
class VerifyKey:
    """One public key: its algorithm (``ES256`` | ``RS256``), its ``kid`` (None: any)."""

    algorithm: str
    key: PublicKey
    kid: str | None = None


def algorithm_of(key: object) -> str:
    """``ES256`` for an EC P-256 public key, ``RS256`` for an RSA key of >= 2048 bits.
    Raises ValueError for any other key."""
    if isinstance(key, ec.EllipticCurvePublicKey) and isinstance(key.curve, ec.SECP256R1):
        return "ES256"
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise ValueError(f"an RSA key must have at least {MIN_RSA_BITS} bits")
        return "RS256"
    raise ValueError("only EC P-256 (ES256) and RSA (RS256) public keys are accepted")


def load_public_key_file(path: Path) -> list[VerifyKey]:
    """The one key of a PEM public key file (``-----BEGIN PUBLIC KEY-----``). Raises
    OSError (unreadable) or ValueError (not a PEM public key, or of another kind)."""
    data = Path(path).read_bytes()
    try:
        key = load_pem_public_key(data)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{path}: not a PEM public key") from exc
    return [VerifyKey(algorithm_of(key), _public(key))]


def load_jwks_file(path: Path) -> list[VerifyKey]:
    """The signing keys of a JWKS file ``{"keys": [JWK, ...]}``: every key whose ``use``
    is ``sig`` or absent; each must be an EC P-256 or RSA key (its ``alg``, when given,
    ES256 or RS256). Raises OSError (unreadable) or ValueError (what is wrong, by key
    index; never the key material)."""
    data = Path(path).read_bytes()
    if len(data) > MAX_JWKS_BYTES:
        raise ValueError(f"{path}: a JWKS file is at most {MAX_JWKS_BYTES} bytes")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: not JSON") from exc
    jwks = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(jwks, list) or not 0 < len(jwks) <= MAX_KEYS:
        raise ValueError(f'{path}: expected {{"keys": [1..{MAX_KEYS} JWKs]}}')
    keys = [k for i, jwk in enumerate(jwks) if (k := _jwk(path, i, jwk)) is not None]
    if not keys:
        raise ValueError(f"{path}: no signing key (every key has a use other than sig)")
    return keys


def _jwk(path: Path, index: int, jwk: Any) -> VerifyKey | None:
    """Key ``index`` of a JWKS, None when it is not a signing key. Raises ValueError."""
    where = f"{path}: key {index}"
    if not isinstance(jwk, dict):
        raise ValueError(f"{where}: not a JSON object")
    if jwk.get("use", "sig") != "sig":
        return None
    if "d" in jwk:
        raise ValueError(f"{where}: a private key; give the public key only")
    kid, alg = jwk.get("kid"), jwk.get("alg")
    if kid is not None and not isinstance(kid, str):
        raise ValueError(f"{where}: kid must be a string")
    if alg is not None and alg not in ALGORITHMS:
        raise ValueError(f"{where}: alg must be ES256 or RS256")
    try:
        parsed = jwt.PyJWK(jwk)
    except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError, KeyError) as exc:
        raise ValueError(f"{where}: not a usable JWK ({type(exc).__name__})") from exc
    try:
        algorithm = algorithm_of(parsed.key)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    if alg not in (None, algorithm):
        raise ValueError(f"{where}: alg must be {algorithm} for this key")
    return VerifyKey(algorithm, _public(parsed.key), kid)


def _public(key: object) -> PublicKey:
    assert isinstance(key, ec.EllipticCurvePublicKey | rsa.RSAPublicKey)
    return key


class JwtVerifier:
    """Verify JWT bearer tokens against fixed public keys (module docstring).

    ``keys``: at least one; ``issuer`` / ``audience``: "" = not checked; ``leeway_s``:
    clock skew allowed on ``exp``, ``nbf`` and ``iat``, seconds.
    """

    def __init__(
        self,
        keys: list[VerifyKey],
        *,
        issuer: str = "",
        audience: str = "",
        leeway_s: float = LEEWAY_S,
    ) -> None:
        if not keys:
            raise ValueError("a JwtVerifier needs at least one key")
        self.keys = tuple(keys)
        self.issuer = issuer
        self.audience = audience
        self.leeway_s = leeway_s

    def __repr__(self) -> str:
        algorithms = ",".join(sorted({k.algorithm for k in self.keys}))
        return f"JwtVerifier({len(self.keys)} keys, {algorithms})"

    def subject(self, token: str) -> str:
        """The access key id in the ``sub`` of a valid ``token``. Raises Unauthenticated
        (malformed, unaccepted ``alg``, unknown ``kid``, bad signature, expired, wrong
        ``iss`` / ``aud``, no or a malformed ``sub``), the message never showing the token."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise Unauthenticated("malformed JWT") from None
        algorithm, kid = header.get("alg"), header.get("kid")
        if algorithm not in ALGORITHMS or not any(k.algorithm == algorithm for k in self.keys):
            accepted = ", ".join(sorted({k.algorithm for k in self.keys}))
            raise Unauthenticated(f"JWT alg {str(algorithm)[:16]!r} is not accepted ({accepted})")
        candidates = [
            k
            for k in self.keys
            if k.algorithm == algorithm and (kid is None or k.kid is None or k.kid == kid)
        ]
        if not candidates:
            raise Unauthenticated("the JWT's kid names no configured key")
        claims = self._claims(token, candidates)
        sub = claims.get("sub")
        if not isinstance(sub, str) or not KEY_ID_RE.fullmatch(sub):
            raise Unauthenticated("the JWT's sub must be an access key id (DK + 24 hex digits)")
        return sub

    def _claims(self, token: str, candidates: list[VerifyKey]) -> dict[str, Any]:
        required = ["exp", "sub"] + ["iss"] * bool(self.issuer) + ["aud"] * bool(self.audience)
        for candidate in candidates:
            try:
                return jwt.decode(
                    token,
                    candidate.key,
                    algorithms=[candidate.algorithm],
                    issuer=self.issuer or None,
                    audience=self.audience or None,
                    leeway=self.leeway_s,
                    options={"require": required},
                )
            except jwt.InvalidSignatureError:
                continue
            except jwt.PyJWTError as exc:
                raise Unauthenticated(_reason(exc)) from None
        raise Unauthenticated("the JWT's signature does not verify")


def _reason(exc: jwt.PyJWTError) -> str:
    """A message for a refused JWT (PyJWT's own never hold the token)."""
    if isinstance(exc, jwt.ExpiredSignatureError):
        return "the JWT has expired"
    if isinstance(exc, jwt.ImmatureSignatureError):
        return "the JWT is not valid yet (nbf or iat in the future)"
    if isinstance(exc, jwt.MissingRequiredClaimError):
        return f"the JWT has no {exc.claim} claim"
    if isinstance(exc, jwt.InvalidIssuerError):
        return "the JWT's iss is not the configured issuer"
    if isinstance(exc, jwt.InvalidAudienceError):
        return "the JWT's aud does not name this cluster's audience"
    return f"invalid JWT: {type(exc).__name__}"


def load_jwt_verifier(config: PeerConfig) -> JwtVerifier | None:
    """The verifier of ``config``'s ``jwt_public_key_file`` or ``jwt_jwks_file`` (None
    with neither: JWTs are refused). Raises ConfigError naming the setting when the file
    is unreadable or holds no acceptable key."""
    for name, loader in (
        ("jwt_public_key_file", load_public_key_file),
        ("jwt_jwks_file", load_jwks_file),
    ):
        path: Path | None = getattr(config, name)
        if path is None:
            continue
        try:
            keys = loader(path)
        except OSError as exc:
            raise ConfigError(f"{name}: cannot read {path}: {exc.strerror or exc}") from None
        except ValueError as exc:
            raise ConfigError(f"{name}: {exc}") from None
        return JwtVerifier(keys, issuer=config.jwt_issuer, audience=config.jwt_audience)
    return None
