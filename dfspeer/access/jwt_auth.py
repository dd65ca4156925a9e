"""JWT bearer tokens: ``Authorization: Bearer <jwt>`` acting as an access key.

A peer configured with ``jwt_public_key_file`` (one PEM public key), ``jwt_jwks_file`` (a
local JSON Web Key Set, RFC 7517) or ``jwt_jwks_url`` (an identity provider's JWKS, fetched
and cached: :mod:`dfspeer.access.jwks_url`) accepts a JWT (RFC 7519, compact JWS) whose
signature verifies under one of those keys and whose claims hold:

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
from typing import Any, Protocol

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
    return parse_jwks(Path(path).read_bytes(), str(path))


def parse_jwks(data: bytes, where: str, *, skip_unusable: bool = False) -> list[VerifyKey]:
    """The signing keys of the JWKS document ``data`` (at most :data:`MAX_JWKS_BYTES`,
    1..:data:`MAX_KEYS` keys), ``where`` naming its source in messages. ``skip_unusable``
    (a JWKS an identity provider publishes): a key of another kind or algorithm is left
    out instead of refusing the whole set. Raises ValueError (what is wrong, by key index;
    never the key material), also when no signing key remains."""
    if len(data) > MAX_JWKS_BYTES:
        raise ValueError(f"{where}: a JWKS is at most {MAX_JWKS_BYTES} bytes")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"{where}: not JSON") from exc
    jwks = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(jwks, list) or not 0 < len(jwks) <= MAX_KEYS:
        raise ValueError(f'{where}: expected {{"keys": [1..{MAX_KEYS} JWKs]}}')
    keys = []
    for index, jwk in enumerate(jwks):
        try:
            key = _jwk(where, index, jwk)
        except ValueError:
            if not skip_unusable:
                raise
            continue
        if key is not None:
            keys.append(key)
    if not keys:
        raise ValueError(f"{where}: no signing key (an ES256 or RS256 key whose use is sig)")
    return keys


def _jwk(source: str, index: int, jwk: Any) -> VerifyKey | None:
    """Key ``index`` of a JWKS, None when it is not a signing key. Raises ValueError."""
    where = f"{source}: key {index}"
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


class KeySource(Protocol):
    """Where a :class:`JwtVerifier` gets keys it does not hold itself (a JWKS URL)."""

    async def keys(self, kid: str | None) -> tuple[VerifyKey, ...]:
        """The keys to verify a token naming ``kid`` with. Raises Unauthenticated."""
        ...

    async def warm_up(self) -> bool:
        """Fetch the keys once; False when that failed. Raises nothing."""
        ...


class JwtVerifier:
    """Verify JWT bearer tokens against public keys (module docstring).

    ``keys``: fixed keys (at least one unless ``source`` is given); ``source``: keys
    fetched as they are needed (a JWKS URL, :mod:`dfspeer.access.jwks_url`); ``issuer`` /
    ``audience``: "" = not checked; ``leeway_s``: clock skew allowed on ``exp``, ``nbf``
    and ``iat``, seconds.
    """

    def __init__(
        self,
        keys: list[VerifyKey],
        *,
        issuer: str = "",
        audience: str = "",
        leeway_s: float = LEEWAY_S,
        source: KeySource | None = None,
    ) -> None:
        if not keys and source is None:
            raise ValueError("a JwtVerifier needs at least one key")
        self.keys = tuple(keys)
        self.source = source
        self.issuer = issuer
        self.audience = audience
        self.leeway_s = leeway_s

    def __repr__(self) -> str:
        if self.source is not None:
            return f"JwtVerifier({self.source!r})"
        algorithms = ",".join(sorted({k.algorithm for k in self.keys}))
        return f"JwtVerifier({len(self.keys)} keys, {algorithms})"

    async def verify(self, token: str) -> str:
        """:meth:`subject`, with the keys of ``source`` when there is one (fetched first
        when the token names a ``kid`` they lack, or they are old). Raises Unauthenticated,
        also when the keys cannot be fetched."""
        if self.source is None:
            return self.subject(token)
        header = _header(token)
        if header.get("alg") not in ALGORITHMS:  # refused before it can cause a fetch
            return self._subject(token, ())
        kid = header.get("kid")
        keys = await self.source.keys(kid if isinstance(kid, str) else None)
        return self._subject(token, keys)

    def subject(self, token: str) -> str:
        """The access key id in the ``sub`` of a valid ``token``, checked against the fixed
        ``keys``. Raises Unauthenticated (malformed, unaccepted ``alg``, unknown ``kid``,
        bad signature, expired, wrong ``iss`` / ``aud``, no or a malformed ``sub``), the
        message never showing the token."""
        return self._subject(token, self.keys)

    def _subject(self, token: str, keys: tuple[VerifyKey, ...]) -> str:
        header = _header(token)
        algorithm, kid = header.get("alg"), header.get("kid")
        if algorithm not in ALGORITHMS or not any(k.algorithm == algorithm for k in keys):
            accepted = ", ".join(sorted({k.algorithm for k in keys}))
            raise Unauthenticated(f"JWT alg {str(algorithm)[:16]!r} is not accepted ({accepted})")
        candidates = [
            k
            for k in keys
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


def _header(token: str) -> dict[str, Any]:
    """The unverified header of ``token``. Raises Unauthenticated (malformed)."""
    try:
        return jwt.get_unverified_header(token)
    except jwt.PyJWTError:
        raise Unauthenticated("malformed JWT") from None


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
    """The verifier of ``config``'s ``jwt_public_key_file``, ``jwt_jwks_file`` or
    ``jwt_jwks_url`` (None with none: JWTs are refused). Raises ConfigError naming the
    setting when the file is unreadable or holds no acceptable key (a JWKS URL is fetched
    later: :mod:`dfspeer.access.jwks_url`)."""
    issuer, audience = config.jwt_issuer, config.jwt_audience
    if config.jwt_jwks_url:
        from dfspeer.access.jwks_url import JwksUrlKeys  # it imports this module

        source = JwksUrlKeys(config.jwt_jwks_url)
        return JwtVerifier([], issuer=issuer, audience=audience, source=source)
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
        return JwtVerifier(keys, issuer=issuer, audience=audience)
    return None
