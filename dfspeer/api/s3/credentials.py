"""Where the S3 API finds an access key's secret: :class:`CredentialStore`.

SigV4 signatures are HMACs keyed by the secret itself, so the server needs the secret (not
a hash of it). A lookup answers an :class:`S3Key`: the secret and the
:class:`~dfspeer.access.principals.Principal` the request then acts as. Two stores, asked
in order by :class:`ChainedCredentials`:

- :class:`FileCredentials` — the ``s3_credentials_file`` setting: one ``ACCESS_KEY_ID:SECRET``
  a line (``#`` comments and blank lines ignored), re-read when the file changes; these
  keys act as the admin (full access, no per-bucket permission applies);
- :class:`KeysTableCredentials` — the access-control ``keys`` table
  (:mod:`dfspeer.model.keys`), read with quorum R through the native API's auth cache
  (:mod:`dfspeer.access.cache`, the peer passes its cached reader): a read is reused for
  ``effective_auth_cache_ttl_s``, so a key disabled or deleted through this peer is refused
  at once, through another peer within that TTL, as on the native port. Its secrets are
  sealed under the cluster key (:mod:`dfspeer.access.sealing`) and opened here, on each
  lookup: the cache holds the stored record (the secret sealed), never the opened secret.
  These keys act as the native API's key principal: the buckets' per-key grants apply
  (:mod:`dfspeer.api.s3.access`).

Nothing here logs a secret.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from dfspeer.access.principals import ADMIN, OPEN, Principal, key_principal
from dfspeer.access.sealing import SecretSealer
from dfspeer.errors import DfsError
from dfspeer.gossip import Keyring
from dfspeer.model.keys import KEYS_TABLE, KeysSchema

log = logging.getLogger("dfspeer.api.s3")

MAX_ACCESS_KEY_CHARS = 128


@dataclass(frozen=True)
class S3Key:
    """A known, usable access key: its ``secret`` (hidden from ``repr``) and the
    ``principal`` its requests act as."""

    secret: str = field(repr=False)
    principal: Principal


class CredentialStore(Protocol):
    """Access key id -> its :class:`S3Key`, or None when the key is unknown or not
    usable."""

    async def lookup(self, access_key_id: str) -> S3Key | None: ...


class RecordReader(Protocol):
    """The replicated-table read the keys store needs (``Replicator.read_record``, or the
    auth cache's :class:`~dfspeer.access.cache.CachedRecords` over it)."""

    async def read_record(self, table: str, key: bytes) -> Any | None: ...


class FileCredentials:
    """Secrets from a file of ``ACCESS_KEY_ID:SECRET`` lines (module docstring). A missing
    or unreadable file holds no key (logged once per change)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._keys: dict[str, str] = {}

    def __repr__(self) -> str:  # never print a secret
        return f"FileCredentials({str(self.path)!r})"

    def _reload(self) -> None:
        try:
            st = os.stat(self.path)
        except OSError as exc:
            if self._stamp != (-1, -1):
                log.warning("s3_credentials_file %s is unreadable: %s", self.path, exc)
            self._stamp, self._keys = (-1, -1), {}
            return
        stamp = (st.st_mtime_ns, st.st_size)
        if stamp == self._stamp:
            return
        keys: dict[str, str] = {}
        for n, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), 1):
            text = line.strip()
            if not text or text.startswith("#"):
                continue
            key_id, sep, secret = text.partition(":")
            if not sep or not key_id or not secret or len(key_id) > MAX_ACCESS_KEY_CHARS:
                log.warning("s3_credentials_file %s line %d is not KEY_ID:SECRET", self.path, n)
                continue
            keys[key_id.strip()] = secret.strip()
        self._stamp, self._keys = stamp, keys

    async def lookup(self, access_key_id: str) -> S3Key | None:
        self._reload()
        secret = self._keys.get(access_key_id)
        return None if secret is None else S3Key(secret, ADMIN)


class KeysTableCredentials:
    """Secrets of the ``keys`` table (module docstring): a usable key's sealed secret,
    opened with ``keyring``; a read that fails raises what the replicator raises
    (InsufficientReplicas -> 503, so a client retries rather than being told "no such
    key"). ``enforce``: False on an ``--insecure`` peer, whose native API authorizes
    nobody: a key then acts as ``OPEN`` (everything allowed) there too."""

    def __init__(self, records: RecordReader, keyring: Keyring, *, enforce: bool = True) -> None:
        self.records = records
        self.enforce = enforce
        self.sealer = SecretSealer(keyring)
        self.schema = KeysSchema()

    def __repr__(self) -> str:
        return "KeysTableCredentials()"

    async def lookup(self, access_key_id: str) -> S3Key | None:
        if not access_key_id or len(access_key_id) > MAX_ACCESS_KEY_CHARS:
            return None
        if not access_key_id.isascii() or not access_key_id.isprintable():
            return None
        record = await self.records.read_record(KEYS_TABLE, access_key_id.encode())
        if record is None:
            return None
        try:
            key = self.schema.decode(record)
        except ValueError as exc:
            raise DfsError(f"stored access key {access_key_id} is unreadable: {exc}") from exc
        if not key.usable or key.id != access_key_id:
            return None
        secret = self.sealer.open(key.sealed_secret)
        if secret is None:  # sealed under a cluster key this peer does not have
            return None
        if not self.enforce:
            return S3Key(secret, OPEN)
        principal = key_principal(key.id, allow_create_bucket=key.allow_create_bucket)
        return S3Key(secret, principal)


class ChainedCredentials:
    """Asks each store in turn; the first secret found wins."""

    def __init__(self, *stores: CredentialStore) -> None:
        self.stores = stores

    async def lookup(self, access_key_id: str) -> S3Key | None:
        for store in self.stores:
            found = await store.lookup(access_key_id)
            if found is not None:
                return found
        return None
