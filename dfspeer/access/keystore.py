"""KeyService: access keys over the replicated ``keys`` table, and request authentication.

Keys are written with quorum W and read with quorum R (R + W > N), through the peer's auth
cache (:mod:`dfspeer.access.cache`, ``auth_cache_ttl_s``, 1 s by default): a key disabled
or deleted is refused at once by the peer the change went through, by every other peer
within the cache's TTL (at once everywhere with the cache off). The admin token is
compared in constant time; secrets are stored sealed (:mod:`dfspeer.access.sealing`) and
never logged. A JWT (when the peer has a :class:`~dfspeer.access.jwt_auth.JwtVerifier`)
acts as the key its ``sub`` names.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from dfspeer.access.credentials import (
    Credential,
    JwtCredential,
    KeyCredential,
    TokenCredential,
    new_key_id,
    new_secret,
    same_secret,
)
from dfspeer.access.principals import ADMIN, Principal, key_principal
from dfspeer.access.sealing import SecretSealer
from dfspeer.errors import InvalidArgument, NoSuchAccessKey, Unauthenticated
from dfspeer.model.keys import KEYS_TABLE, MAX_KEY_NAME_CHARS, AccessKey, KeysSchema

if TYPE_CHECKING:  # PyJWT loads only when a JWT key source is set
    from dfspeer.access.jwt_auth import JwtVerifier

log = logging.getLogger("dfspeer.access")

MAX_KEYS_LISTED = 10_000


class RecordStore(Protocol):
    """The replicated-table operations the key service needs (``Replicator``'s)."""

    async def read_record(self, table: str, key: bytes) -> Any | None: ...

    async def write_record(self, table: str, key: bytes, value: Any) -> int: ...

    async def scan_entries(
        self,
        table: str,
        keep: Callable[[Any], bool],
        *,
        limit: int,
        omit: tuple[str, ...] = (),
    ) -> list[Any]: ...


class VersionClock(Protocol):
    """The hybrid logical clock (``dfspeer.objects.hlc.HybridLogicalClock``)."""

    def next_version(self, peer_id: str) -> object: ...

    def observe_version(self, version: str) -> None: ...


class KeyService:
    """Create, list, disable and delete access keys; authenticate credentials.

    ``admin_token``: the admin token (None: no admin; only keys authenticate).
    ``self_id``: this peer's id (the tie-break of versions it writes); ``clock``: unix s;
    ``jwt``: the verifier of JWT bearer tokens (None: JWTs are refused).
    """

    def __init__(
        self,
        records: RecordStore,
        hlc: VersionClock,
        self_id: str,
        sealer: SecretSealer,
        *,
        admin_token: str | None,
        clock: Callable[[], float] = time.time,
        jwt: JwtVerifier | None = None,
    ) -> None:
        self.records = records
        self.hlc = hlc
        self.self_id = self_id
        self.sealer = sealer
        self._admin_token = admin_token
        self.clock = clock
        self.jwt = jwt
        self.schema = KeysSchema()

    def __repr__(self) -> str:  # never print the admin token
        return f"KeyService(admin={'yes' if self._admin_token else 'no'})"

    # ------------------------------------------------------------------ storage
    def _version(self) -> str:
        return str(self.hlc.next_version(self.self_id))

    async def _write(self, key: AccessKey) -> AccessKey:
        await self.records.write_record(KEYS_TABLE, key.id.encode(), self.schema.encode(key))
        return key

    async def read(self, key_id: str) -> AccessKey | None:
        """The key ``key_id`` as a quorum read returns it (a deleted key too), or None."""
        record = await self.records.read_record(KEYS_TABLE, key_id.encode())
        if record is None:
            return None
        key = self.schema.decode(record)
        self.hlc.observe_version(key.version)
        return key

    async def get(self, key_id: str) -> AccessKey:
        """The live (not deleted) key ``key_id``. Raises NoSuchAccessKey."""
        key = await self.read(key_id)
        if key is None or key.deleted:
            raise NoSuchAccessKey(f"no access key {key_id}")
        return key

    # ------------------------------------------------------------------ operations
    async def create(
        self, name: str, *, allow_create_bucket: bool = False
    ) -> tuple[AccessKey, str]:
        """A new key named ``name`` (1..128 printable characters): ``(key, secret)``; the
        secret is returned only here. Raises InvalidArgument."""
        if not 0 < len(name) <= MAX_KEY_NAME_CHARS or not name.isprintable():
            raise InvalidArgument(f"a key name is 1..{MAX_KEY_NAME_CHARS} printable characters")
        secret = new_secret()
        key = AccessKey(
            id=new_key_id(),
            name=name,
            created=self.clock(),
            version=self._version(),
            sealed_secret=self.sealer.seal(secret),
            allow_create_bucket=allow_create_bucket,
        )
        await self._write(key)
        log.info("access key created id=%s name=%r", key.id, key.name)
        return key, secret

    async def list(self) -> list[AccessKey]:
        """Every live key, by id."""
        out: list[AccessKey] = await self.records.scan_entries(
            KEYS_TABLE, lambda key: not key.deleted, limit=MAX_KEYS_LISTED
        )
        return sorted(out, key=lambda k: k.id)

    async def disable(self, key_id: str) -> AccessKey:
        """Disable ``key_id`` (its requests get 401: at once from this peer, from every
        peer within the auth cache's TTL). Raises NoSuchAccessKey."""
        key = await self.get(key_id)
        if key.disabled:
            return key
        key = await self._write(replace(key, disabled=True, version=self._version()))
        log.info("access key disabled id=%s", key.id)
        return key

    async def delete(self, key_id: str) -> None:
        """Delete ``key_id`` (a tombstone without the secret). Raises NoSuchAccessKey."""
        key = await self.get(key_id)
        await self._write(replace(key, deleted=True, sealed_secret=b"", version=self._version()))
        log.info("access key deleted id=%s", key.id)

    # ------------------------------------------------------------------ authentication
    async def authenticate(self, credential: Credential) -> Principal:
        """The principal of ``credential``. Raises Unauthenticated (unknown token, unknown,
        deleted or disabled key, wrong secret; the message never shows the secret)."""
        if isinstance(credential, TokenCredential):
            if self._admin_token is not None and same_secret(self._admin_token, credential.token):
                return ADMIN
            raise Unauthenticated("unknown bearer token")
        if isinstance(credential, JwtCredential):
            return await self._authenticate_jwt(credential)
        assert isinstance(credential, KeyCredential)
        key = await self.read(credential.key_id)
        if key is None or key.deleted:
            raise Unauthenticated(f"unknown access key {credential.key_id}")
        secret = self.sealer.open(key.sealed_secret)
        if secret is None or not same_secret(secret, credential.secret):
            raise Unauthenticated(f"wrong secret for access key {credential.key_id}")
        if key.disabled:
            raise Unauthenticated(f"access key {credential.key_id} is disabled")
        return key_principal(key.id, allow_create_bucket=key.allow_create_bucket)

    async def _authenticate_jwt(self, credential: JwtCredential) -> Principal:
        """The access key a valid JWT's ``sub`` names. Raises Unauthenticated (no verifier
        configured, an invalid token, an unknown, deleted or disabled key)."""
        if self.jwt is None:
            raise Unauthenticated(
                "this peer accepts no JWT (it has no jwt_public_key_file, jwt_jwks_file or "
                "jwt_jwks_url)"
            )
        key_id = await self.jwt.verify(credential.token)
        key = await self.read(key_id)
        if key is None or key.deleted:
            raise Unauthenticated(f"the JWT's sub {key_id} is not an access key")
        if key.disabled:
            raise Unauthenticated(f"access key {key_id} (the JWT's sub) is disabled")
        return key_principal(key.id, allow_create_bucket=key.allow_create_bucket)
