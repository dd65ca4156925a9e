"""The S3 port reads access keys and buckets through the native API's auth cache
(:mod:`dfspeer.access.cache`): signed requests with one key read the ``keys`` table once
per TTL, not once each; a key disabled or deleted through the peer's key service is
refused at once (``InvalidAccessKeyId``), one changed through another peer once the
cached read expires, at the same moment on both ports; the cache keeps the secret sealed.

The TTL runs on a clock the test drives (the cache takes an injectable clock), so what is
still cached does not depend on how fast this machine is.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from multidict import CIMultiDict

from dfspeer.access.cache import CachedRecords, TtlCache, cached_lookups
from dfspeer.access.keystore import KeyService, RecordStore
from dfspeer.access.sealing import SecretSealer
from dfspeer.api.s3.auth import Identity, SigV4Verifier
from dfspeer.api.s3.credentials import KeysTableCredentials
from dfspeer.api.s3.errors import S3Error
from dfspeer.client import Client
from dfspeer.errors import DfsError
from dfspeer.gossip import Keyring
from dfspeer.loopback import free_port
from dfspeer.model.buckets import BUCKETS_TABLE, Bucket
from dfspeer.model.keys import KEYS_TABLE, KeysSchema
from dfspeer.objects.hlc import HybridLogicalClock
from dfspeer.peer import Peer
from tests.unit.s3_harness import error_code, signed
from tests.unit.test_auth_cache import Clock, Records
from tests.unit.test_peer_single import secured_config_for

KEYRING = Keyring([bytes(range(32))])
HOST = "s3.test"
TTL_S = 1.0
REQUESTS = 100


class NoBuckets:
    """The BucketLookup of :func:`cached_lookups`; the key checks read no bucket."""

    async def read(self, name: str) -> Bucket | None:
        raise AssertionError("no bucket is read here")

    async def create(
        self, name: str, versioning: str | None = None, *, owner: str = ""
    ) -> tuple[Bucket, bool]:
        raise AssertionError("no bucket is created here")


@dataclass
class Port:
    """One peer's key service and S3 verifier over the same (cached or not) key reads."""

    keys: KeyService
    verifier: SigV4Verifier

    async def verify(self, key_id: str, secret: str) -> Identity:
        """Check a GET signed by botocore with ``key_id`` / ``secret``."""
        request = signed("GET", f"http://{HOST}/b/k", key=key_id, secret=secret)
        headers = CIMultiDict(
            {k: v.decode() if isinstance(v, bytes) else v for k, v in request.headers.items()}
        )
        headers["Host"] = HOST
        return await self.verifier.verify("GET", "/b/k", "", headers)

    async def refusal(self, key_id: str, secret: str) -> str:
        """The S3 error code of that request (it must fail)."""
        with pytest.raises(S3Error) as refused:
            await self.verify(key_id, secret)
        assert refused.value.status == 403
        return refused.value.s3code


def _port(key_records: RecordStore) -> Port:
    """As :class:`~dfspeer.peer.Peer` wires them: the key service and the S3 credentials
    read the ``keys`` table through the same ``key_records``."""
    keys = KeyService(
        key_records, HybridLogicalClock(), "p1", SecretSealer(KEYRING), admin_token=None
    )
    verifier = SigV4Verifier(
        KeysTableCredentials(key_records, KEYRING), "us-east-1", open_mode=False
    )
    return Port(keys, verifier)


async def test_signed_requests_within_the_ttl_read_the_key_once() -> None:
    clock = Clock()
    cluster = Records()  # counts quorum reads
    port = _port(CachedRecords(cluster, TtlCache(TTL_S, clock=clock)))
    key, secret = await port.keys.create("s3-user")
    for _ in range(REQUESTS):
        identity = await port.verify(key.id, secret)
        assert identity.access_key == key.id and identity.principal.name == key.id
    assert cluster.reads == 1
    assert await port.refusal(key.id, "not-the-secret") == "SignatureDoesNotMatch"
    assert cluster.reads == 1  # a wrong signature is checked against the cached key too
    clock.now += TTL_S  # expired: the next request reads the key again
    await port.verify(key.id, secret)
    assert cluster.reads == 2
    # an unknown key id is a cached miss: refused every time, read once
    for _ in range(3):
        assert await port.refusal("DKNOSUCHKEY", secret) == "InvalidAccessKeyId"
    assert cluster.reads == 3

    # with the cache off (auth_cache_ttl_s = 0) every request reads the key
    uncached = Records()
    key_records, _ = cached_lookups(uncached, NoBuckets(), 0.0)
    assert key_records is uncached
    bare = _port(key_records)
    key, secret = await bare.keys.create("s3-user")
    for _ in range(REQUESTS):
        await bare.verify(key.id, secret)
    assert uncached.reads == REQUESTS


async def test_a_key_disabled_or_deleted_is_refused_within_the_ttl() -> None:
    clock = Clock()
    cluster = Records()
    port = _port(CachedRecords(cluster, TtlCache(TTL_S, clock=clock)))
    schema = KeysSchema()
    made = {name: await port.keys.create(name) for name in ("here", "there", "gone", "erased")}
    for key, secret in made.values():
        assert (await port.verify(key.id, secret)).access_key == key.id  # cached now

    # through this peer's key service: refused at once (the write drops the cached entry)
    await port.keys.disable(made["here"][0].id)
    assert await port.refusal(*_id_secret(made["here"])) == "InvalidAccessKeyId"
    await port.keys.delete(made["erased"][0].id)
    assert await port.refusal(*_id_secret(made["erased"])) == "InvalidAccessKeyId"

    # through another peer: the table changes, this peer's cached read does not
    there, gone = made["there"][0], made["gone"][0]
    await cluster.write_record(
        KEYS_TABLE, there.id.encode(), schema.encode(replace(there, disabled=True))
    )
    await cluster.write_record(
        KEYS_TABLE, gone.id.encode(), schema.encode(replace(gone, deleted=True, sealed_secret=b""))
    )
    clock.now += TTL_S / 2
    assert (await port.verify(*_id_secret(made["there"]))).access_key == there.id
    assert (await port.verify(*_id_secret(made["gone"]))).access_key == gone.id
    clock.now += TTL_S / 2  # the TTL has passed: both are read again, and refused
    assert await port.refusal(*_id_secret(made["there"])) == "InvalidAccessKeyId"
    assert await port.refusal(*_id_secret(made["gone"])) == "InvalidAccessKeyId"
    with pytest.raises(DfsError):  # the key service sees the same: disabled, deleted
        await port.keys.get(gone.id)
    assert (await port.keys.get(there.id)).disabled


def _id_secret(made: tuple[Any, str]) -> tuple[str, str]:
    key, secret = made
    return key.id, secret


async def test_the_cache_keeps_the_secret_sealed(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    cache: TtlCache[bytes, Any] = TtlCache(TTL_S, clock=Clock())
    port = _port(CachedRecords(Records(), cache))
    key, secret = await port.keys.create("sealed")
    identity = await port.verify(key.id, secret)
    assert identity.secret == secret  # SigV4 needs it, for this request only
    assert secret not in repr(identity)
    found, record = cache.get(key.id.encode())
    assert found and isinstance(record, dict)
    assert secret not in repr(record) and secret.encode() not in record["secret"]
    assert SecretSealer(KEYRING).open(record["secret"]) == secret  # sealed, not plain
    assert await port.refusal(key.id, "wrong") == "SignatureDoesNotMatch"
    await port.keys.disable(key.id)
    assert await port.refusal(key.id, secret) == "InvalidAccessKeyId"
    assert caplog.records and secret not in caplog.text  # something was logged, not it


# ---------------------------------------------------------------------- a real peer
async def test_a_peers_s3_port_shares_the_native_auth_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Wired by the Peer: S3 requests read the key once, the native API then reads it no
    more (one cache); a change through the peer applies at once on both ports, one
    through another peer on both once the cached read expires."""
    config, token = secured_config_for(
        tmp_path, tmp_path / "p1", s3_port=free_port("127.0.0.1"), auth_cache_ttl_s=30.0
    )
    ttl_s = config.effective_auth_cache_ttl_s
    assert ttl_s == 30.0
    async with Peer(config) as peer:
        await peer.wait_ready(10)
        key_cache = peer._key_records
        assert isinstance(key_cache, CachedRecords)
        clock = Clock()
        clock.now = time.monotonic()
        key_cache.cache.clock = clock  # entries expire when the test says so
        replicator = peer.objects.replicator
        read_record = replicator.read_record
        reads: Counter[str] = Counter()

        async def counting(table: str, key: bytes) -> Any | None:
            reads[table] += 1
            return await read_record(table, key)

        monkeypatch.setattr(replicator, "read_record", counting)
        s3_url = peer.s3_url
        assert s3_url is not None

        async with aiohttp.ClientSession() as http:

            async def s3(method: str, path: str, key_id: str, secret: str) -> tuple[int, bytes]:
                body = b"v" if method == "PUT" and path.count("/") > 1 else b""
                request = signed(method, s3_url + path, body=body, key=key_id, secret=secret)
                async with http.request(
                    method, request.url, data=body or None, headers=dict(request.headers)
                ) as resp:
                    return resp.status, await resp.read()

            async def native_status(key_id: str, secret: str, bucket: str) -> int:
                async with Client(peer.api_url, credentials=f"{key_id}.{secret}") as client:
                    try:
                        assert await client.get_object(bucket, "k") == b"v"
                    except DfsError as exc:
                        return exc.status
                return 200

            async with Client(peer.api_url, token=token) as admin:
                docs = [
                    await admin.create_key(name, allow_create_bucket=True)
                    for name in ("one", "two", "three")
                ]
                creds = [(doc["id"], doc["secret"]) for doc in docs]
                buckets = ["cached-one", "cached-two", "cached-three"]
                reads.clear()
                for (key_id, secret), bucket in zip(creds, buckets, strict=True):
                    assert (await s3("PUT", f"/{bucket}", key_id, secret))[0] == 200
                    assert (await s3("PUT", f"/{bucket}/k", key_id, secret))[0] == 200
                one, one_bucket = creds[0], buckets[0]
                for _ in range(20):
                    assert await s3("GET", f"/{one_bucket}/k", *one) == (200, b"v")
                # one key read per key for 22 requests each; the bucket permission checks
                # also read through the cache (bucket writes through the peer drop entries)
                assert reads[KEYS_TABLE] == len(creds)
                assert reads[BUCKETS_TABLE] < 20
                assert await native_status(*one, one_bucket) == 200
                assert reads[KEYS_TABLE] == len(creds)  # the native port used the same entry

                # through the peer's key service: refused at once by both ports
                await admin.disable_key(one[0])
                status, body = await s3("GET", f"/{one_bucket}/k", *one)
                assert status == 403 and error_code(body) == "InvalidAccessKeyId"
                assert await native_status(*one, one_bucket) == 401
                await admin.delete_key(creds[2][0])
                status, body = await s3("GET", f"/{buckets[2]}/k", *creds[2])
                assert status == 403 and error_code(body) == "InvalidAccessKeyId"

                # through another peer (a write that reaches the table, not this cache)
                two, two_bucket = creds[1], buckets[1]
                schema = KeysSchema()
                current = schema.decode(await read_record(KEYS_TABLE, two[0].encode()))
                version = str(peer.objects.clock.next_version("another-peer"))
                await replicator.write_record(
                    KEYS_TABLE,
                    two[0].encode(),
                    schema.encode(replace(current, disabled=True, version=version)),
                )
                assert await s3("GET", f"/{two_bucket}/k", *two) == (200, b"v")  # cached
                assert await native_status(*two, two_bucket) == 200
                clock.now += ttl_s  # the cached read expires: both ports refuse it
                status, body = await s3("GET", f"/{two_bucket}/k", *two)
                assert status == 403 and error_code(body) == "InvalidAccessKeyId"
                assert await native_status(*two, two_bucket) == 401
