"""Presigned share links: a URL that lets whoever holds it ``GET`` (and ``HEAD``) one object
until it expires, without any ``Authorization`` header.

A link is the object's native URL plus three query parameters (four when it pins a
version)::

    /v1/objects/{bucket}/{key}?[version=<V>&]expires=<unix s>&key=<signer>&signature=<64 hex>

``signer`` is the access key that made the link (``DK...``) or ``admin``. ``signature`` is
the hex HMAC-SHA256 (RFC 2104) of::

    "dfspeer-share-v1" \\n "GET" \\n <path> \\n <canonical query> \\n <expires> \\n <signer>

where ``<path>`` is the decoded request path and ``<canonical query>`` every other query
parameter, sorted and percent-encoded: ``version=<V>`` in a link that pins a version (it then
serves exactly version V, 404 ``no_such_version`` once V is gone), none in the others.
Adding, changing or removing any such parameter breaks the signature. The HMAC key is the
access key's secret, or for ``admin`` the HMAC-SHA256 of the admin token under a subkey
derived from the cluster key (:meth:`dfspeer.gossip.Keyring.derive` with purpose
:data:`ADMIN_PURPOSE`; any cluster key verifies, so links survive a key rotation until the
old key is dropped; a new admin token voids every admin link).

A link acts as its signer for that ``GET`` / ``HEAD`` only: the signer must still exist, be
enabled and (checked by the access middleware, live) be allowed to read the bucket. Links
live at most :data:`MAX_EXPIRY_S` (7 days, as S3 presigned URLs). Refusals: 401
``unauthenticated`` (malformed, expired, wrong signature, unknown or disabled signer) and
403 ``access_denied`` (another method; the signer may no longer read), each with a
``reason`` field in the error object (:data:`REASONS`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from urllib.parse import quote

from dfspeer.access.credentials import KEY_ID_RE
from dfspeer.access.keystore import KeyService
from dfspeer.access.principals import ADMIN, Principal, key_principal
from dfspeer.errors import AccessDenied, InvalidArgument, Unauthenticated
from dfspeer.gossip import Keyring
from dfspeer.model.keys import AccessKey

EXPIRES_PARAM, SIGNER_PARAM, SIGNATURE_PARAM = "expires", "key", "signature"
LINK_PARAMS = (EXPIRES_PARAM, SIGNER_PARAM, SIGNATURE_PARAM)
VERSION_PARAM = "version"
MAX_VERSION_CHARS = 128
ADMIN_SIGNER = "admin"
ADMIN_PURPOSE = b"dfspeer-share-link-admin-v1"
MAX_EXPIRY_S = 7 * 86400
CLOCK_SKEW_S = 60
LINK_METHODS = ("GET", "HEAD")
REASONS = (
    "malformed_link",
    "link_expired",
    "signature_mismatch",
    "unknown_signer",
    "signer_disabled",
    "method_not_allowed",
)
_DOMAIN = "dfspeer-share-v1"
_SIGNATURE_RE = re.compile(r"[0-9a-fA-F]{64}")
_EXPIRES_RE = re.compile(r"[0-9]{1,12}")


@dataclass(frozen=True)
class ShareLink:
    """The signed fields of a link: ``expires`` in unix seconds, ``signer`` a key id or
    ``admin``, ``query`` the other query parameters as sorted ``(name, value)`` pairs."""

    path: str
    expires: int
    signer: str
    query: tuple[tuple[str, str], ...] = ()

    def message(self) -> bytes:
        """The bytes the signature covers (module docstring)."""
        canonical = "&".join(f"{quote(k, safe='')}={quote(v, safe='')}" for k, v in self.query)
        parts = (_DOMAIN, "GET", self.path, canonical, str(self.expires), self.signer)
        return "\n".join(parts).encode("utf-8", "surrogatepass")


def valid_version(version: str) -> bool:
    """True for a version id a link may pin: 1..:data:`MAX_VERSION_CHARS` printable
    characters (what ``GET ...?version=`` accepts)."""
    return 0 < len(version) <= MAX_VERSION_CHARS and version.isprintable()


def sign(secret: bytes, link: ShareLink) -> str:
    """The hex HMAC-SHA256 of ``link`` under ``secret``."""
    return hmac.new(secret, link.message(), hashlib.sha256).hexdigest()


def _malformed(what: str) -> Unauthenticated:
    return Unauthenticated(f"malformed share link: {what}", details={"reason": "malformed_link"})


def parse_link(path: str, query: Iterable[tuple[str, str]]) -> tuple[ShareLink, str]:
    """``(link, signature)`` of a request's ``path`` and query pairs. Raises
    Unauthenticated (reason ``malformed_link``): a link parameter missing or repeated, a
    non-integer ``expires``, a signer that is no key id nor ``admin``, a signature that is
    not 64 hex digits. Pure; raises nothing else."""
    link_values: dict[str, list[str]] = {name: [] for name in LINK_PARAMS}
    others = []
    for name, value in query:
        if name in link_values:
            link_values[name].append(value)
        else:
            others.append((name, value))
    for name, values in link_values.items():
        if len(values) != 1:
            raise _malformed(f"needs exactly one {name}= parameter")
    expires, signer, signature = (link_values[name][0] for name in LINK_PARAMS)
    if not _EXPIRES_RE.fullmatch(expires):
        raise _malformed("expires must be a unix time in seconds")
    if signer != ADMIN_SIGNER and not KEY_ID_RE.fullmatch(signer):
        raise _malformed("key must be an access key id or admin")
    if not _SIGNATURE_RE.fullmatch(signature):
        raise _malformed("signature must be 64 hex digits")
    return ShareLink(path, int(expires), signer, tuple(sorted(others))), signature.lower()


def object_path(bucket: str, key: str) -> tuple[str, str]:
    """``(decoded path, percent-encoded path)`` of ``/v1/objects/{bucket}/{key}``."""
    decoded = f"/v1/objects/{bucket}/{key}"
    return decoded, f"/v1/objects/{quote(bucket, safe='')}/{quote(key, safe='/')}"


class ShareLinks:
    """Make and verify share links (module docstring).

    ``keys``: the access keys (read at every verification, through the auth cache: a
    deleted or disabled signer voids its links at once on the peer it was changed through,
    within the cache's TTL on the others); ``keyring``: the cluster keys the admin's
    link key derives from; ``admin_token``: None (no admin: admin links are refused);
    ``clock``: unix seconds.
    """

    def __init__(
        self,
        keys: KeyService,
        keyring: Keyring,
        *,
        admin_token: str | None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.keys = keys
        self.clock = clock
        self._admin_keys: tuple[bytes, ...] = ()
        if admin_token is not None:
            token = admin_token.encode("utf-8")
            self._admin_keys = tuple(
                hmac.new(k, token, hashlib.sha256).digest() for k in keyring.derive(ADMIN_PURPOSE)
            )

    def __repr__(self) -> str:  # never print key material
        return f"ShareLinks(admin={'yes' if self._admin_keys else 'no'})"

    async def _signer(self, signer: str) -> tuple[tuple[bytes, ...], AccessKey | None]:
        """The HMAC keys of ``signer`` and its access key (None for the admin), read with
        quorum. Raises Unauthenticated (an unknown or deleted signer)."""
        if signer == ADMIN_SIGNER:
            if not self._admin_keys:
                raise Unauthenticated(
                    "this peer has no admin token: admin share links are refused",
                    details={"reason": "unknown_signer"},
                )
            return self._admin_keys, None
        key = await self.keys.read(signer)
        secret = None if key is None or key.deleted else self.keys.sealer.open(key.sealed_secret)
        if key is None or secret is None:
            raise Unauthenticated(
                f"the share link's key {signer} no longer exists",
                details={"reason": "unknown_signer"},
            )
        return (secret.encode("utf-8"),), key

    async def make(
        self,
        principal: Principal,
        bucket: str,
        key: str,
        expires_s: float,
        *,
        version: str | None = None,
    ) -> tuple[str, int]:
        """``(path and query, expires)`` of a link to ``bucket/key`` (to its version
        ``version`` only, when given) signed as ``principal`` (a key or the admin), valid
        ``expires_s`` seconds (1..7 days) from now. Raises InvalidArgument (expiry out of
        range, a version that is not 1..128 printable characters, a principal that cannot
        sign) and Unauthenticated (the signer is gone)."""
        if version is not None and not valid_version(version):
            raise InvalidArgument(f"version must be 1..{MAX_VERSION_CHARS} printable characters")
        if not 1 <= expires_s <= MAX_EXPIRY_S:
            raise InvalidArgument(
                f"expires_s must be 1..{MAX_EXPIRY_S} seconds (7 days, like S3 presigned URLs)"
            )
        if principal.kind not in ("key", "admin"):
            raise InvalidArgument("only an access key or the admin token can sign a share link")
        signer = principal.key_id if principal.kind == "key" else ADMIN_SIGNER
        decoded, encoded = object_path(bucket, key)
        pinned = () if version is None else ((VERSION_PARAM, version),)
        link = ShareLink(decoded, int(self.clock() + expires_s), signer, pinned)
        keys, _ = await self._signer(signer)
        signature = sign(keys[0], link)
        query = "".join(f"{quote(k, safe='')}={quote(v, safe='')}&" for k, v in pinned)
        query += f"{EXPIRES_PARAM}={link.expires}&{SIGNER_PARAM}={signer}"
        return f"{encoded}?{query}&{SIGNATURE_PARAM}={signature}", link.expires

    async def verify(self, method: str, path: str, query: Iterable[tuple[str, str]]) -> Principal:
        """The principal (the signer) of a request carrying a share link. Raises
        Unauthenticated and AccessDenied with a ``reason`` (module docstring); the
        middleware then checks the signer may read the bucket."""
        if method.upper() not in LINK_METHODS:
            raise AccessDenied(
                "a share link allows only GET and HEAD", details={"reason": "method_not_allowed"}
            )
        link, signature = parse_link(path, query)
        if not path.startswith("/v1/objects/") or path.count("/") < 4:
            raise _malformed("a share link opens one object: /v1/objects/{bucket}/{key}")
        now = self.clock()
        if link.expires < now:
            when = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(link.expires))
            raise Unauthenticated(
                f"the share link expired at {when}", details={"reason": "link_expired"}
            )
        if link.expires > now + MAX_EXPIRY_S + CLOCK_SKEW_S:
            raise _malformed("it expires more than 7 days from now")
        keys, key = await self._signer(link.signer)
        if not any(hmac.compare_digest(sign(k, link), signature) for k in keys):
            raise Unauthenticated(
                "the share link's signature does not match (changed, or for another path)",
                details={"reason": "signature_mismatch"},
            )
        if key is None:
            return ADMIN
        if key.disabled:
            raise Unauthenticated(
                f"the share link's key {link.signer} is disabled",
                details={"reason": "signer_disabled"},
            )
        return key_principal(key.id, allow_create_bucket=False)
