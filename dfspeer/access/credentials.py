"""Credentials of the native API: pure parsing, generation and comparison.

A client proves who it is with one header, ``Authorization: Bearer <credential>``:

- ``<key_id>.<secret>`` — an access key: ``key_id`` is ``DK`` + 24 lower-case hex digits,
  ``secret`` 16..128 characters of the URL-safe base64 alphabet (``[A-Za-z0-9_-]``; new
  secrets are 43: 32 random bytes);
- ``<token>`` — the admin token (no ``.``): 16..256 characters of ``[A-Za-z0-9_-]`` (new
  tokens are 64 hex digits: 32 random bytes);
- ``<header>.<payload>.<signature>`` — a JWT (two ``.``, base64url parts, at most
  :data:`MAX_JWT_CHARS`), verified by :mod:`dfspeer.access.jwt_auth`.

Nothing here logs or formats a secret: :class:`KeyCredential` and :class:`TokenCredential`
print as ``KeyCredential(key_id=...)`` / ``TokenCredential(...)`` (and
:class:`JwtCredential` as ``JwtCredential(...)``).
"""

from __future__ import annotations

import hmac
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

AUTHORIZATION_HEADER = "Authorization"
BEARER = "bearer"
KEY_ID_PREFIX = "DK"
KEY_ID_RE = re.compile(r"DK[0-9a-f]{24}")
SECRET_RE = re.compile(r"[A-Za-z0-9_\-]{16,128}")
TOKEN_RE = re.compile(r"[A-Za-z0-9_\-]{16,256}")
JWT_RE = re.compile(r"[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]+\.[A-Za-z0-9_\-]*")
MAX_JWT_CHARS = 8000  # room for an RS4096 token with a few claims
MAX_HEADER_CHARS = MAX_JWT_CHARS + 16
KEY_ENV = "DFSPEER_KEY"
ADMIN_TOKEN_ENV = "DFSPEER_ADMIN_TOKEN"


class MalformedCredential(ValueError):
    """The ``Authorization`` header (or an ``ID.SECRET`` text) is not a credential of the
    shapes above; the message never repeats the value."""


@dataclass(frozen=True)
class KeyCredential:
    """An access key id and its secret (``secret`` hidden from ``repr``)."""

    key_id: str
    secret: str = field(repr=False)

    def header_value(self) -> str:
        """The ``Authorization`` header value: ``Bearer ID.SECRET``."""
        return f"Bearer {self.key_id}.{self.secret}"


@dataclass(frozen=True)
class TokenCredential:
    """A bearer token without a key id: the admin token (hidden from ``repr``)."""

    token: str = field(repr=False)

    def header_value(self) -> str:
        """The ``Authorization`` header value: ``Bearer TOKEN``."""
        return f"Bearer {self.token}"


@dataclass(frozen=True)
class JwtCredential:
    """A JWT in compact form, not verified yet (hidden from ``repr``)."""

    token: str = field(repr=False)

    def header_value(self) -> str:
        """The ``Authorization`` header value: ``Bearer JWT``."""
        return f"Bearer {self.token}"


Credential = KeyCredential | TokenCredential | JwtCredential


def parse_credential(text: str) -> Credential:
    """``ID.SECRET`` -> :class:`KeyCredential`, a token without ``.`` ->
    :class:`TokenCredential`, three base64url parts joined by ``.`` ->
    :class:`JwtCredential` (its signature and claims are checked later). Raises
    :class:`MalformedCredential`."""
    if len(text) > MAX_JWT_CHARS:
        raise MalformedCredential("the credential is too long")
    if text.count(".") == 2:
        if not JWT_RE.fullmatch(text):
            raise MalformedCredential("a JWT is three base64url parts joined by '.'")
        return JwtCredential(text)
    key_id, dot, secret = text.partition(".")
    if dot:
        if not KEY_ID_RE.fullmatch(key_id):
            raise MalformedCredential("the key id must be DK followed by 24 hex digits")
        if not SECRET_RE.fullmatch(secret):
            raise MalformedCredential("the secret must be 16..128 characters of [A-Za-z0-9_-]")
        return KeyCredential(key_id, secret)
    if not TOKEN_RE.fullmatch(text):
        raise MalformedCredential("a token must be 16..256 characters of [A-Za-z0-9_-]")
    return TokenCredential(text)


def parse_authorization(value: str | None) -> Credential | None:
    """The credential of an ``Authorization`` header value; None when there is none (absent
    or empty). Raises :class:`MalformedCredential` for another scheme than ``Bearer``
    (case-insensitive) or a malformed credential. Pure; never raises anything else."""
    if value is None or not value.strip():
        return None
    if len(value) > MAX_HEADER_CHARS:
        raise MalformedCredential("the Authorization header is too long")
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != BEARER:
        raise MalformedCredential("the Authorization scheme must be Bearer")
    rest = rest.strip()
    if not rest:
        raise MalformedCredential("Bearer needs a credential")
    return parse_credential(rest)


def same_secret(expected: str, given: str) -> bool:
    """Constant-time comparison of two secrets or tokens (:func:`hmac.compare_digest`)."""
    return hmac.compare_digest(expected.encode("utf-8"), given.encode("utf-8"))


def new_key_id() -> str:
    """A fresh access key id: ``DK`` + 24 hex digits (96 random bits)."""
    return KEY_ID_PREFIX + secrets.token_hex(12)


def new_secret() -> str:
    """A fresh access key secret: 43 URL-safe base64 characters (32 random bytes)."""
    return secrets.token_urlsafe(32)


def new_admin_token() -> str:
    """A fresh admin token: 64 hex digits (32 random bytes)."""
    return secrets.token_hex(32)


def load_admin_token(path: Path) -> str:
    """The admin token of ``path``: its first line that is not blank or a ``#`` comment.
    Raises ``OSError`` (unreadable) or ``ValueError`` (no token, or a malformed one; the
    message never shows the file's content)."""
    for raw in Path(path).read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if not TOKEN_RE.fullmatch(line):
            raise ValueError(f"{path}: the admin token must be 16..256 characters of [A-Za-z0-9_-]")
        return line
    raise ValueError(f"{path}: no admin token found")


def write_secret_file(path: Path, text: str, *, force: bool = False) -> None:
    """Write ``text`` plus a newline to ``path`` with mode 0600 (created so, never
    world-readable in between). Raises ``FileExistsError`` if it exists and not ``force``."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    fd = os.open(path, flags, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (text + "\n").encode())
    finally:
        os.close(fd)


def credential_from_env(environ: dict[str, str] | None = None) -> Credential | None:
    """``$DFSPEER_KEY`` (``ID.SECRET``), else ``$DFSPEER_ADMIN_TOKEN``, else None. Raises
    :class:`MalformedCredential` naming the variable when its value is malformed."""
    env = dict(os.environ) if environ is None else environ
    for name in (KEY_ENV, ADMIN_TOKEN_ENV):
        text = env.get(name, "").strip()
        if not text:
            continue
        try:
            cred = parse_credential(text)
        except MalformedCredential as exc:
            raise MalformedCredential(f"${name}: {exc}") from None
        if name == KEY_ENV and not isinstance(cred, KeyCredential):
            raise MalformedCredential(f"${name}: expected ID.SECRET")
        return cred
    return None
