"""The auth cache (``auth_cache_ttl_s``): reads reused while fresh, dropped by a write
through it (also one racing a read in flight) or by any bucket write of the BucketService,
bounded in size; on by default (1 s, at most half the anti-entropy interval); and on a
real peer, a key disabled or a bucket's grants, owner or existence changed through it
apply at once."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dfspeer.access.cache import CachedBuckets, CachedRecords, TtlCache, cached_lookups
from dfspeer.client import Client
from dfspeer.config import ConfigError, PeerConfig
from dfspeer.errors import DfsError
from dfspeer.model.buckets import BUCKETS_TABLE, Bucket, Grant
from dfspeer.model.keys import KEYS_TABLE
from dfspeer.objects.buckets import BucketService
from dfspeer.objects.hlc import HybridLogicalClock
from dfspeer.peer import Peer
from tests.unit.test_peer_single import secured_config_for


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class Records:
    """A RecordStore that counts reads; ``during_read`` runs inside a read (a race)."""

    def __init__(self) -> None:
        self.data: dict[tuple[str, bytes], Any] = {}
        self.reads = 0
        self.during_read: Callable[[], Any] | None = None

    async def read_record(self, table: str, key: bytes) -> Any | None:
        self.reads += 1
        value = self.data.get((table, key))
        if self.during_read is not None:
            hook, self.during_read = self.during_read, None
            await hook()
        return value

    async def write_record(self, table: str, key: bytes, value: Any) -> int:
        self.data[(table, key)] = value
        return 2

    async def scan_entries(
        self, table: str, keep: Callable[[Any], bool], *, limit: int, omit: tuple[str, ...] = ()
    ) -> list[Any]:
        return [v for (t, _), v in self.data.items() if t == table and keep(v)][:limit]


def test_ttl_cache_hits_expires_and_drops() -> None:
    clock = Clock()
    cache: TtlCache[str, int | None] = TtlCache(1.0, clock=clock)
    assert cache.get("a") == (False, None)
    cache.put("a", 1, cache.ticket())
    cache.put("gone", None, cache.ticket())
    assert cache.get("a") == (True, 1) and cache.get("gone") == (True, None)
    clock.now += 0.999
    assert cache.get("a") == (True, 1)
    clock.now += 0.002
    assert cache.get("a") == (False, None)
    cache.put("a", 2, cache.ticket())
    cache.drop("a")
    assert cache.get("a") == (False, None)
    stale = cache.ticket()
    cache.drop("other")
    cache.put("a", 3, stale)  # a drop happened since the read began: nothing kept
    assert cache.get("a") == (False, None)


def test_ttl_cache_is_bounded() -> None:
    clock = Clock()
    cache: TtlCache[int, int] = TtlCache(1.0, max_entries=4, clock=clock)
    for i in range(4):
        cache.put(i, i, cache.ticket())
    clock.now += 2.0  # all expired: dropped to make room
    cache.put(9, 9, cache.ticket())
    assert len(cache) == 1
    for i in range(3):
        cache.put(i, i, cache.ticket())
    cache.put(10, 10, cache.ticket())  # full of fresh entries: starts over
    assert len(cache) == 1 and cache.get(10) == (True, 10)


async def test_cached_records_cache_keys_only_and_writes_drop() -> None:
    backend = Records()
    backend.data[(KEYS_TABLE, b"DK1")] = {"v": 1}
    backend.data[("objects", b"o")] = {"o": 1}
    records = CachedRecords(backend, TtlCache(30.0))
    for _ in range(5):
        assert await records.read_record(KEYS_TABLE, b"DK1") == {"v": 1}
        assert await records.read_record(KEYS_TABLE, b"DK-missing") is None
    assert backend.reads == 2  # one each, the miss cached too
    await records.read_record("objects", b"o")
    await records.read_record("objects", b"o")
    assert backend.reads == 4  # other tables are never cached
    await records.write_record(KEYS_TABLE, b"DK1", {"v": 2, "disabled": True})
    assert await records.read_record(KEYS_TABLE, b"DK1") == {"v": 2, "disabled": True}
    assert await records.scan_entries(KEYS_TABLE, lambda _: True, limit=10)


async def test_a_write_racing_a_read_leaves_nothing_stale() -> None:
    backend = Records()
    backend.data[(KEYS_TABLE, b"DK1")] = {"disabled": False}
    records = CachedRecords(backend, TtlCache(30.0))

    async def disable() -> None:
        await records.write_record(KEYS_TABLE, b"DK1", {"disabled": True})

    backend.during_read = disable  # the read saw the old value; the write lands meanwhile
    assert await records.read_record(KEYS_TABLE, b"DK1") == {"disabled": False}
    assert await records.read_record(KEYS_TABLE, b"DK1") == {"disabled": True}


async def test_cached_buckets_and_the_off_switch() -> None:
    class Buckets:
        def __init__(self) -> None:
            self.reads = 0
            self.known: dict[str, Bucket] = {}

        async def read(self, name: str) -> Bucket | None:
            self.reads += 1
            return self.known.get(name)

        async def create(
            self, name: str, versioning: str | None = None, *, owner: str = ""
        ) -> tuple[Bucket, bool]:
            bucket = Bucket(name=name, created=1.0, version="v1", owner=owner)
            self.known[name] = bucket
            return bucket, True

    inner = Buckets()
    cached = CachedBuckets(inner, TtlCache(30.0))
    assert await cached.read("b") is None and await cached.read("b") is None
    assert inner.reads == 1
    await cached.create("b", owner="DK1")
    assert (await cached.read("b")) is not None and inner.reads == 2
    assert inner.reads == 2
    cached.forget("b")  # what a BucketService.on_change listener does
    await cached.read("b")
    assert inner.reads == 3
    records = Records()
    listeners: list[Callable[[str], None]] = []
    assert cached_lookups(records, inner, 0.0, bucket_listeners=listeners) == (records, inner)
    assert listeners == []  # off: nothing to drop
    key_records, bucket_lookup = cached_lookups(records, inner, 1.0, bucket_listeners=listeners)
    assert isinstance(key_records, CachedRecords) and isinstance(bucket_lookup, CachedBuckets)
    assert listeners == [bucket_lookup.forget]


async def test_every_bucket_write_tells_the_listeners() -> None:
    class Replicator:
        """The buckets table in a dict; ``fail`` makes the next write raise."""

        def __init__(self) -> None:
            self.data: dict[bytes, Any] = {}
            self.fail = False

        async def read_record(self, table: str, key: bytes) -> Any | None:
            assert table == BUCKETS_TABLE
            return self.data.get(key)

        async def write_record(self, table: str, key: bytes, value: Any) -> int:
            assert table == BUCKETS_TABLE
            self.data[key] = value  # a failed write may still have reached a replica
            if self.fail:
                self.fail = False
                raise DfsError("quorum not reached")
            return 1

    replicator = Replicator()
    changed: list[str] = []
    buckets = BucketService(
        replicator,  # type: ignore[arg-type]
        HybridLogicalClock(),
        "p1",
        on_change=[changed.append],
    )
    cache: TtlCache[str, Bucket | None] = TtlCache(30.0)
    cached = CachedBuckets(buckets, cache)
    buckets.on_change.append(cached.forget)

    async def fresh(name: str) -> Bucket | None:
        """What access control sees: the cached read, asserted equal to the cluster's."""
        seen = await cached.read(name)
        assert seen == await buckets.read(name)
        return seen

    async def live(name: str) -> Bucket:
        bucket = await fresh(name)
        assert bucket is not None
        return bucket

    assert await fresh("bkt") is None  # a miss, cached
    await buckets.create("bkt", owner="DK1")
    assert changed == ["bkt"] and (await live("bkt")).owner == "DK1"
    await buckets.set_permissions("bkt", lambda p: {**p, "DK2": Grant(read=True)})
    assert (await live("bkt")).permissions["DK2"].read
    await buckets.set_permissions("bkt", lambda p: {"DK2": Grant(owner=True)})
    assert (await live("bkt")).permissions["DK2"].owner
    await buckets.set_versioning("bkt", "enabled")
    assert (await live("bkt")).versioning == "enabled"
    await buckets.create("bkt", chunking="cdc")
    assert (await live("bkt")).chunking == "cdc"

    async def empty() -> bool:
        return True

    await buckets.delete("bkt", is_empty=empty)
    assert await fresh("bkt") is None
    assert changed == ["bkt"] * 6
    await buckets.create("cat")
    await fresh("cat")
    replicator.fail = True
    with pytest.raises(DfsError):
        await buckets.set_permissions("cat", lambda p: {"DK3": Grant(read=True)})
    assert changed[-1] == "cat"  # told even so: the failed write may be what a quorum reads
    assert "DK3" in (await live("cat")).permissions


def test_the_ttl_is_bounded_by_anti_entropy() -> None:
    default = PeerConfig()
    assert default.auth_cache_ttl_s == 1.0 and default.effective_auth_cache_ttl_s == 1.0
    assert PeerConfig(auth_cache_ttl_s=2.0).effective_auth_cache_ttl_s == 2.0
    assert PeerConfig(auth_cache_ttl_s=0.0).effective_auth_cache_ttl_s == 0.0  # off
    # a short anti-entropy interval shortens the TTL used instead of failing validation
    short = PeerConfig(anti_entropy_interval_s=1.0)
    assert short.auth_cache_ttl_s == 1.0 and short.effective_auth_cache_ttl_s == 0.5
    bounded = PeerConfig(auth_cache_ttl_s=10.0, anti_entropy_interval_s=10.0)
    assert bounded.effective_auth_cache_ttl_s == 5.0
    assert PeerConfig(auth_cache_ttl_s=60.0).effective_auth_cache_ttl_s == 30.0
    for bad in (61.0, -1.0, float("nan")):
        with pytest.raises(ConfigError, match=r"auth_cache_ttl_s: must be in 0\.\.60"):
            PeerConfig(auth_cache_ttl_s=bad, anti_entropy_interval_s=600.0)


async def test_a_key_disabled_through_the_peer_is_refused_at_once(tmp_path: Path) -> None:
    config, token = secured_config_for(tmp_path, tmp_path / "p1", auth_cache_ttl_s=30.0)
    async with Peer(config) as peer:
        await peer.wait_ready(10)
        async with Client(peer.api_url, token=token) as admin:
            doc = await admin.create_key("cached", allow_create_bucket=True)
            async with Client(peer.api_url, credentials=f"{doc['id']}.{doc['secret']}") as c:
                await c.put_object("mine", "k", b"v")
                for _ in range(3):
                    assert await c.get_object("mine", "k") == b"v"  # served from the cache
                await admin.disable_key(doc["id"])
                with pytest.raises(DfsError) as refused:
                    await c.get_object("mine", "k")
                assert refused.value.status == 401


async def test_bucket_changes_through_the_peer_apply_at_once(tmp_path: Path) -> None:
    config, token = secured_config_for(tmp_path, tmp_path / "p1", auth_cache_ttl_s=30.0)
    assert config.effective_auth_cache_ttl_s == 30.0  # nothing expires during the test
    async with Peer(config) as peer:
        await peer.wait_ready(10)
        async with Client(peer.api_url, token=token) as admin:
            first = await admin.create_key("first", allow_create_bucket=True)
            second = await admin.create_key("second", allow_create_bucket=True)

        def as_key(doc: dict[str, Any]) -> Client:
            return Client(peer.api_url, credentials=f"{doc['id']}.{doc['secret']}")

        async def refused(attempt: Any) -> int:
            with pytest.raises(DfsError) as caught:
                await attempt
            return caught.value.status

        async with as_key(first) as one, as_key(second) as two:
            await one.put_object("held", "k", b"v")
            assert await refused(two.get_object("held", "k")) == 403  # cached, no grant
            await one.set_bucket_permissions("held", second["id"], read=True)
            assert await two.get_object("held", "k") == b"v"  # granted: at once
            await one.set_bucket_permissions("held", second["id"], read=False)
            assert await refused(two.get_object("held", "k")) == 403  # revoked: at once
            await one.set_bucket_permissions("held", second["id"], owner=True)
            assert (await two.get_bucket_permissions("held"))["owner"] == first["id"]
            await one.set_bucket_permissions("held", second["id"], owner=False)
            assert await refused(two.get_bucket_permissions("held")) == 403
            await one.set_bucket_versioning("held", "suspended")
            assert await one.get_object("held", "k") == b"v"
            # deleted through this peer: the name is free at once, for another key too
            await one.delete_object("held", "k")
            await one.delete_bucket("held")
            await two.put_object("held", "again", b"w")
            assert (await two.get_bucket_permissions("held"))["owner"] == second["id"]
            assert await refused(one.get_object("held", "again")) == 403
