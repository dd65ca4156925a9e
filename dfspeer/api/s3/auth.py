"""AWS Signature Version 4 for the S3 API: the ``Authorization`` header and presigned URLs.

A check is a function of the request and the key's secret (looked up through a
:class:`~dfspeer.api.s3.credentials.CredentialStore`). The canonical request is built from
what the client sent (AWS "Create a canonical request for Signature Version 4"): the
path re-encoded by AWS's rules (S3 does not normalise it: no double encoding, ``//`` and
``.`` kept), the query decoded and re-encoded, sorted, the signed headers' values
trimmed, then the payload hash (``x-amz-content-sha256`` for the header form,
``UNSIGNED-PAYLOAD`` for presigned URLs). Header canonicalisation, the query encoding,
the string to sign and the signing-key derivation are botocore's
(:class:`botocore.auth.S3SigV4Auth`), so client and server share one implementation.

Checks, in order: the header's shape (``AuthorizationHeaderMalformed``), the credential
scope (date of ``x-amz-date``, region ``s3_region``, service ``s3``), the clock
(``RequestTimeTooSkewed`` beyond 15 minutes; a presigned URL: ``AccessDenied`` once
``X-Amz-Date + X-Amz-Expires`` has passed, at most 7 days), the key
(``InvalidAccessKeyId``), the signature (``SignatureDoesNotMatch``, compared in constant
time). The body is checked later against the signed payload hash by the handler that
reads it (``XAmzContentSHA256Mismatch``).

Open mode: an unsigned request (no ``Authorization``, no ``X-Amz-Signature``) is accepted
only when the peer runs ``insecure`` with no ``s3_credentials_file`` (like the native API's
open mode); a signed request is always checked.
"""

from __future__ import annotations

import hmac
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from urllib.parse import quote, unquote

from botocore.auth import S3SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.compat import HTTPHeaders
from botocore.credentials import Credentials
from multidict import CIMultiDictProxy, MultiMapping

from dfspeer.access.principals import OPEN, Principal
from dfspeer.api.s3.credentials import CredentialStore
from dfspeer.api.s3.errors import S3Error, access_denied, invalid_request

ALGORITHM = "AWS4-HMAC-SHA256"
UNSIGNED_PAYLOAD = "UNSIGNED-PAYLOAD"
STREAMING_PREFIX = "STREAMING-"
MAX_SKEW_S = 15 * 60.0
MAX_PRESIGNED_EXPIRY_S = 7 * 86400
_AMZ_DATE = "%Y%m%dT%H%M%SZ"
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")
_SIGNATURE = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Scope:
    """What a signature claims: key, date (``YYYYMMDD``), region, service, the signed
    header names (lower-case, in the client's order), the signature (hex), the request
    time (``x-amz-date``, ``YYYYMMDDTHHMMSSZ``)."""

    access_key: str
    date: str
    region: str
    service: str
    signed_headers: tuple[str, ...]
    signature: str
    amz_date: str


@dataclass(frozen=True)
class Identity:
    """Who sent a request: ``access_key`` (None: anonymous, open mode), the payload
    mode / signed hash (``UNSIGNED-PAYLOAD``, a hex SHA-256, a ``STREAMING-...`` mode) and
    the ``principal`` the request acts as (``OPEN`` when anonymous in open mode, the admin
    for an ``s3_credentials_file`` key, the key's principal for a ``keys`` table key)."""

    access_key: str | None
    payload: str
    scope: Scope | None = None
    secret: str | None = field(default=None, repr=False)
    principal: Principal = OPEN


def _malformed(message: str) -> S3Error:
    return S3Error("AuthorizationHeaderMalformed", 400, message)


def parse_authorization(value: str) -> Scope:
    """The parts of an ``AWS4-HMAC-SHA256 Credential=..., SignedHeaders=..., Signature=...``
    header (``x-amz-date`` is filled in by the caller). Raises AuthorizationHeaderMalformed,
    InvalidRequest (another algorithm, e.g. SigV2)."""
    algorithm, _, rest = value.strip().partition(" ")
    if algorithm != ALGORITHM:
        raise invalid_request(
            "The authorization mechanism you have provided is not supported. "
            f"Please use {ALGORITHM}."
        )
    fields: dict[str, str] = {}
    for part in rest.split(","):
        name, eq, field_value = part.strip().partition("=")
        if eq:
            fields[name.strip()] = field_value.strip()
    try:
        credential, signed, signature = (
            fields["Credential"],
            fields["SignedHeaders"],
            fields["Signature"],
        )
    except KeyError as exc:
        raise _malformed(f"the authorization header has no {exc.args[0]}") from None
    return _scope(credential, signed, signature, amz_date="")


def _scope(credential: str, signed: str, signature: str, *, amz_date: str) -> Scope:
    parts = credential.split("/")
    if len(parts) != 5 or parts[4] != "aws4_request" or not parts[0]:
        raise _malformed("Credential must be KEY/YYYYMMDD/REGION/s3/aws4_request")
    names = tuple(n for n in signed.lower().split(";") if n)
    if not names or "host" not in names:
        raise _malformed("SignedHeaders must name at least host")
    if not _SIGNATURE.fullmatch(signature):
        raise _malformed("Signature must be 64 lower-case hex digits")
    return Scope(parts[0], parts[1], parts[2], parts[3], names, signature, amz_date)


def canonical_uri(raw_path: str) -> str:
    """The path as the client signed it: decoded, then encoded by AWS's rules (every byte
    but ``A-Za-z0-9-_.~/`` as ``%XX``)."""
    return quote(unquote(raw_path.split("?", 1)[0]), safe="/~")


def query_pairs(raw_query: str) -> list[tuple[str, str]]:
    """``name=value`` pairs of a raw query string, percent-decoded (``+`` stays ``+``)."""
    out: list[tuple[str, str]] = []
    for part in raw_query.split("&"):
        if part:
            name, _, value = part.partition("=")
            out.append((unquote(name), unquote(value)))
    return out


def _signer(
    access_key: str, secret: str, region: str, amz_date: str
) -> tuple[S3SigV4Auth, AWSRequest]:
    auth = S3SigV4Auth(Credentials(access_key, secret), "s3", region)
    request = AWSRequest(method="GET", url="http://localhost/")
    request.context["timestamp"] = amz_date
    return auth, request


def canonical_request(
    method: str,
    raw_path: str,
    query: Iterable[tuple[str, str]],
    headers: MultiMapping[str],
    signed_headers: Sequence[str],
    payload: str,
) -> str:
    """AWS's canonical request (see the module docstring); ``headers``: the request's
    (case-insensitive), of which only ``signed_headers`` count."""
    auth = S3SigV4Auth(Credentials("-", "-"), "s3", "-")
    picked = HTTPHeaders()
    for name in signed_headers:
        for value in headers.getall(name, []):
            picked[name] = value
    return "\n".join(
        [
            method.upper(),
            canonical_uri(raw_path),
            auth._canonical_query_string_params(list(query)),
            auth.canonical_headers(picked) + "\n",
            ";".join(signed_headers),
            payload,
        ]
    )


def string_to_sign(canonical: str, amz_date: str, region: str) -> str:
    """``AWS4-HMAC-SHA256 \\n time \\n scope \\n hex(SHA-256(canonical request))``."""
    auth, request = _signer("-", "-", region, amz_date)
    return str(auth.string_to_sign(request, canonical))


def sign(secret: str, amz_date: str, region: str, to_sign: str) -> str:
    """Hex HMAC-SHA256 of ``to_sign`` under the key derived from ``secret``, the date of
    ``amz_date``, ``region`` and ``s3`` (botocore's derivation)."""
    auth, request = _signer("-", secret, region, amz_date)
    return str(auth.signature(to_sign, request))


def _amz_time(amz_date: str) -> float:
    try:
        return datetime.strptime(amz_date, _AMZ_DATE).replace(tzinfo=UTC).timestamp()
    except ValueError:
        raise access_denied("x-amz-date must be YYYYMMDDTHHMMSSZ") from None


class SigV4Verifier:
    """Authenticates S3 requests (module docstring). ``open_mode``: accept unsigned
    requests. ``now``: the clock (unix seconds; tests pass a fixed one)."""

    def __init__(
        self,
        store: CredentialStore,
        region: str,
        *,
        open_mode: bool,
        now: Callable[[], float] | None = None,
    ) -> None:
        self.store = store
        self.region = region
        self.open_mode = open_mode
        self._now = now or time.time

    async def verify(
        self,
        method: str,
        raw_path: str,
        raw_query: str,
        headers: CIMultiDictProxy[str] | MultiMapping[str],
    ) -> Identity:
        """Check one request's signature; its :class:`Identity`. Raises the S3 errors of
        the module docstring, or AccessDenied for an unsigned request outside open mode."""
        query = query_pairs(raw_query)
        names = {name for name, _ in query}
        if "X-Amz-Signature" in names:
            return await self._presigned(method, raw_path, query, headers)
        if {"AWSAccessKeyId", "Signature"} <= names:  # a SigV2 presigned URL
            raise invalid_request(
                "The authorization mechanism you have provided is not supported. "
                f"Please use {ALGORITHM}."
            )
        value = headers.get("Authorization")
        if value is None:
            if not self.open_mode:
                raise access_denied("this request is not signed (AWS SigV4 is required)")
            return Identity(None, headers.get("x-amz-content-sha256", UNSIGNED_PAYLOAD))
        scope = parse_authorization(value)
        amz_date = headers.get("x-amz-date", "")
        if not amz_date:
            raise access_denied("a signed request needs an x-amz-date header")
        scope = replace(scope, amz_date=amz_date)
        payload = headers.get("x-amz-content-sha256")
        if payload is None:
            raise invalid_request("Missing required header for this request: x-amz-content-sha256")
        if not (
            payload == UNSIGNED_PAYLOAD
            or payload.startswith(STREAMING_PREFIX)
            or _SHA256_HEX.fullmatch(payload)
        ):
            raise invalid_request("x-amz-content-sha256 must be a hex SHA-256 or a payload mode")
        self._check_scope(scope)
        skew = abs(self._now() - _amz_time(amz_date))
        if skew > MAX_SKEW_S:
            raise S3Error(
                "RequestTimeTooSkewed",
                403,
                "The difference between the request time and the server's time is too large.",
            )
        canonical = canonical_request(
            method, raw_path, query, headers, scope.signed_headers, payload
        )
        secret, principal = await self._check(scope, canonical)
        return Identity(scope.access_key, payload, scope, secret, principal)

    async def _presigned(
        self,
        method: str,
        raw_path: str,
        query: list[tuple[str, str]],
        headers: MultiMapping[str],
    ) -> Identity:
        q = dict(query)
        if q.get("X-Amz-Algorithm") != ALGORITHM:
            raise invalid_request(f"X-Amz-Algorithm must be {ALGORITHM}")
        try:
            amz_date, expires = q["X-Amz-Date"], int(q["X-Amz-Expires"])
            scope = _scope(
                q["X-Amz-Credential"],
                q["X-Amz-SignedHeaders"],
                q["X-Amz-Signature"],
                amz_date=q["X-Amz-Date"],
            )
        except (KeyError, ValueError):
            raise access_denied(
                "a presigned URL needs X-Amz-Credential, -Date, -Expires (seconds), "
                "-SignedHeaders and -Signature"
            ) from None
        if not 1 <= expires <= MAX_PRESIGNED_EXPIRY_S:
            raise access_denied(f"X-Amz-Expires must be in 1..{MAX_PRESIGNED_EXPIRY_S}")
        self._check_scope(scope)
        signed_at = _amz_time(amz_date)
        now = self._now()
        if now > signed_at + expires:
            raise access_denied("Request has expired")
        if signed_at > now + MAX_SKEW_S:
            raise access_denied("Request is not valid yet")
        payload = q.get("X-Amz-Content-Sha256", UNSIGNED_PAYLOAD)
        rest = [(n, v) for n, v in query if n != "X-Amz-Signature"]
        canonical = canonical_request(
            method, raw_path, rest, headers, scope.signed_headers, payload
        )
        secret, principal = await self._check(scope, canonical)
        return Identity(scope.access_key, UNSIGNED_PAYLOAD, scope, secret, principal)

    def _check_scope(self, scope: Scope) -> None:
        if scope.date != scope.amz_date[:8]:
            raise _malformed(f"the credential date {scope.date} is not that of x-amz-date")
        if scope.region != self.region:
            raise _malformed(f"the region '{scope.region}' is wrong; expecting '{self.region}'")
        if scope.service != "s3":
            raise _malformed(f"the service '{scope.service}' is wrong; expecting 's3'")

    async def _check(self, scope: Scope, canonical: str) -> tuple[str, Principal]:
        found = await self.store.lookup(scope.access_key)
        if found is None:
            raise S3Error(
                "InvalidAccessKeyId",
                403,
                "The AWS Access Key Id you provided does not exist in our records.",
            )
        secret = found.secret
        to_sign = string_to_sign(canonical, scope.amz_date, self.region)
        expected = sign(secret, scope.amz_date, self.region, to_sign)
        if not hmac.compare_digest(expected, scope.signature):
            raise S3Error(
                "SignatureDoesNotMatch",
                403,
                "The request signature we calculated does not match the signature you "
                "provided. Check your key and signing method.",
            )
        return secret, found.principal
