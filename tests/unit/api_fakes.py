"""In-memory test doubles for the HTTP API tests: an ObjectService (with its buckets) and a
PeerState."""

from __future__ import annotations

import hashlib
import itertools
import time
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace

from dfspeer.blockstore.store import BlockStoreStats
from dfspeer.errors import (
    BadDigest,
    BucketNotEmpty,
    IncompleteBody,
    InvalidArgument,
    InvalidRange,
    NoSuchBucket,
    NoSuchKey,
    NoSuchVersion,
)
from dfspeer.gossip import Member, MemberState
from dfspeer.model.buckets import VERSIONING_STATES, Bucket, Grant
from dfspeer.objects import ListResult, ObjectInfo, VersionInfo, VersionPage
from dfspeer.objects.download import ObjectReader
from dfspeer.ring import Ring, RingMember


@dataclass
class FakeBuckets:
    """BucketService contract, in memory (no versions of the bucket records)."""

    known: dict[str, Bucket] = field(default_factory=dict)

    async def create(
        self,
        name: str,
        versioning: str | None = None,
        *,
        owner: str = "",
        chunking: str | None = None,
    ) -> tuple[Bucket, bool]:
        if versioning is not None and versioning not in VERSIONING_STATES:
            raise InvalidArgument(f"bad versioning {versioning!r}")
        current = self.known.get(name)
        if current is not None:
            if versioning is not None:
                current = self.known[name] = replace(current, versioning=versioning)
            return current, False
        bucket = Bucket(name, time.time(), "v0", versioning or "unversioned", owner=owner)
        self.known[name] = bucket
        return bucket, True

    async def set_permissions(
        self, name: str, permissions: Callable[[Mapping[str, Grant]], Mapping[str, Grant]]
    ) -> Bucket:
        current = self.known.get(name)
        if current is None:
            raise NoSuchBucket(f"no bucket {name}")
        bucket = replace(current, permissions=dict(permissions(current.permissions)))
        self.known[name] = bucket
        return bucket

    async def read(self, name: str) -> Bucket | None:
        return self.known.get(name)

    async def list(self) -> list[Bucket]:
        return [self.known[n] for n in sorted(self.known)]

    async def set_versioning(self, name: str, status: str) -> Bucket:
        if status not in ("enabled", "suspended"):
            raise InvalidArgument(f"bad status {status!r}")
        if name not in self.known:
            raise NoSuchBucket(f"no bucket {name}")
        self.known[name] = replace(self.known[name], versioning=status)
        return self.known[name]

    async def delete(self, name: str, *, is_empty: Callable[[], Awaitable[bool]]) -> None:
        if name not in self.known:
            raise NoSuchBucket(f"no bucket {name}")
        if not await is_empty():
            raise BucketNotEmpty(f"bucket {name} is not empty")
        del self.known[name]


@dataclass
class FakeObjects:
    """ObjectService contract, in memory. ``piece`` = bytes per yielded download chunk."""

    piece: int = 4
    fail_download_after: int | None = None  # raise after this many pieces
    explode: bool = False  # every call raises an unexpected error
    objects: dict[tuple[str, str], tuple[ObjectInfo, bytes]] = field(default_factory=dict)
    history: dict[tuple[str, str], list[tuple[ObjectInfo, bytes]]] = field(default_factory=dict)
    """Every version ever put, oldest first (plain deletes write no marker here)."""
    buckets: FakeBuckets = field(default_factory=FakeBuckets)
    upload_pieces: list[int] = field(default_factory=list)  # sizes seen by the last upload
    upload_errors: list[BaseException] = field(default_factory=list)
    list_calls: list[dict[str, object]] = field(default_factory=list)
    get_calls: list[tuple[int, int | None]] = field(default_factory=list)
    stat_calls: int = 0
    open_calls: int = 0
    """Entry reads by ``open_object`` (its reader's reads of bytes are in ``get_calls``)."""
    _versions: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def _check(self) -> None:
        if self.explode:
            raise RuntimeError("secret internal detail")

    async def put_object(
        self,
        bucket: str,
        key: str,
        body: AsyncIterable[bytes] | bytes,
        *,
        expected_sha256: str | None = None,
        content_length: int | None = None,
        content_type: str = "application/octet-stream",
        meta: Mapping[str, str] | None = None,
    ) -> ObjectInfo:
        self._check()
        self.upload_pieces = []
        data = bytearray()
        try:
            if isinstance(body, bytes):
                data += body
            else:
                async for piece in body:
                    self.upload_pieces.append(len(piece))
                    data += piece
        except BaseException as exc:
            self.upload_errors.append(exc)
            raise
        if content_length is not None and len(data) != content_length:
            raise IncompleteBody("short")
        digest = hashlib.sha256(data).hexdigest()
        if expected_sha256 is not None and expected_sha256 != digest:
            raise BadDigest("digest mismatch")
        info = ObjectInfo(
            bucket=bucket,
            key=key,
            version=f"v{next(self._versions):04d}",
            size=len(data),
            sha256=digest,
            chunks=1 if data else 0,
            modified=time.time(),
            content_type=content_type,
            meta=dict(meta or {}),
        )
        if bucket not in self.buckets.known:
            await self.buckets.create(bucket)
        self.objects[(bucket, key)] = (info, bytes(data))
        self.history.setdefault((bucket, key), []).append((info, bytes(data)))
        return info

    def _find(self, bucket: str, key: str, version: str | None) -> tuple[ObjectInfo, bytes]:
        if version is None:
            try:
                return self.objects[(bucket, key)]
            except KeyError:
                raise NoSuchKey(f"{bucket}/{key} does not exist") from None
        for info, data in self.history.get((bucket, key), []):
            if info.version == version:
                return info, data
        raise NoSuchVersion(f"{bucket}/{key} has no version {version}")

    async def stat_object(self, bucket: str, key: str, *, version: str | None = None) -> ObjectInfo:
        self._check()
        self.stat_calls += 1
        return self._find(bucket, key, version)[0]

    async def get_object(
        self,
        bucket: str,
        key: str,
        *,
        start: int = 0,
        end: int | None = None,
        version: str | None = None,
    ) -> tuple[ObjectInfo, AsyncIterator[bytes]]:
        self._check()
        info, data = self._find(bucket, key, version)
        end = info.size if end is None else min(end, info.size)  # clamped, as the service does
        if start < 0 or start > end or (start == info.size and info.size):
            raise InvalidRange("bad range")
        self.get_calls.append((start, end))
        return info, self._pieces(data[start:end])

    async def open_object(
        self,
        bucket: str,
        key: str,
        *,
        version: str | None = None,
        span: tuple[int, int | None] | None = None,
    ) -> tuple[ObjectInfo, ObjectReader]:
        # through get_object, so that doubles overriding it fail here as they would there
        info, _ = await self.get_object(bucket, key, version=version)
        self.get_calls.pop()  # that was the entry read, not a read of bytes
        self.open_calls += 1

        async def reader(start: int, end: int | None) -> AsyncIterator[bytes]:
            _, stream = await self.get_object(bucket, key, start=start, end=end, version=version)
            return stream

        return info, reader

    async def _pieces(self, data: bytes) -> AsyncIterator[bytes]:
        for i, offset in enumerate(range(0, len(data), self.piece)):
            if self.fail_download_after is not None and i >= self.fail_download_after:
                raise RuntimeError("replica went away")
            yield data[offset : offset + self.piece]

    async def delete_object(
        self, bucket: str, key: str, *, version: str | None = None
    ) -> str | None:
        self._check()
        if version is None:
            self.objects.pop((bucket, key), None)
            return None
        kept = [(i, d) for i, d in self.history.get((bucket, key), []) if i.version != version]
        if len(kept) == len(self.history.get((bucket, key), [])):
            raise NoSuchVersion(f"{bucket}/{key} has no version {version}")
        self.history[(bucket, key)] = kept
        live = self.objects.get((bucket, key))
        if live is not None and live[0].version == version:
            del self.objects[(bucket, key)]
        return version

    def _versions_of(self, bucket: str, key: str) -> list[VersionInfo]:
        listed = list(reversed(self.history.get((bucket, key), [])))
        return [
            VersionInfo(key, i.version, i.size, i.sha256, i.modified, n == 0, False)
            for n, (i, _) in enumerate(listed)
        ]

    async def list_object_versions(self, bucket: str, key: str) -> list[VersionInfo]:
        self._check()
        return self._versions_of(bucket, key)

    async def list_versions(
        self, bucket: str, *, prefix: str = "", limit: int = 1000, start_after: str = ""
    ) -> VersionPage:
        self._check()
        keys = sorted(k for (b, k) in self.history if b == bucket and k.startswith(prefix))
        out: list[VersionInfo] = []
        for k in keys:
            if k <= start_after or not self.history[(bucket, k)]:
                continue
            if len(out) >= limit:
                return VersionPage(out, True, out[-1].key)
            out += self._versions_of(bucket, k)
        return VersionPage(out, False, None)

    async def bucket_usage(self, bucket: str) -> tuple[int, int]:
        infos = [i for (b, _), (i, _) in self.objects.items() if b == bucket]
        return len(infos), sum(i.size for i in infos)

    async def bucket_is_empty(self, bucket: str) -> bool:
        return not any(v for (b, _), v in self.history.items() if b == bucket)

    async def list_objects(
        self,
        bucket: str,
        *,
        prefix: str = "",
        delimiter: str = "",
        limit: int = 1000,
        start_after: str = "",
    ) -> ListResult:
        self._check()
        self.list_calls.append(
            {"prefix": prefix, "delimiter": delimiter, "limit": limit, "start_after": start_after}
        )
        keys = sorted(k for (b, k) in self.objects if b == bucket and k.startswith(prefix))
        keys = [k for k in keys if k > start_after]
        infos: list[ObjectInfo] = []
        prefixes: list[str] = []
        for k in keys:
            rest = k[len(prefix) :]
            if delimiter and delimiter in rest:
                common = prefix + rest.split(delimiter)[0] + delimiter
                if common not in prefixes:
                    prefixes.append(common)
            else:
                infos.append(self.objects[(bucket, k)][0])
        truncated = len(infos) > limit
        infos = infos[:limit]
        return ListResult(
            objects=infos,
            common_prefixes=prefixes,
            is_truncated=truncated,
            next_start_after=infos[-1].key if truncated else None,
        )


def member(peer_id: str, port: int, state: MemberState = MemberState.ALIVE) -> Member:
    return Member(
        id=peer_id,
        gossip_address=("127.0.0.1", port + 1000),
        api_address=f"127.0.0.1:{port}",
        incarnation=2,
        state=state,
        zone="z1",
        weight=1.0,
        version="0.1.0",
    )


@dataclass
class FakeState:
    """PeerState: three members (one dead), a ring of the two live ones."""

    peer_id: str = "p1"
    ready: bool = False
    known: list[Member] = field(
        default_factory=lambda: [
            member("p1", 7001),
            member("p2", 7002, MemberState.SUSPECT),
            member("p3", 7003, MemberState.DEAD),
        ]
    )

    @property
    def ring(self) -> Ring:
        live = [RingMember(m.id, m.zone, m.weight) for m in self.known if m.is_live]
        return Ring.build(live, partition_bits=4, replication_factor=2)

    def members(self) -> list[Member]:
        return list(self.known)

    def store_stats(self) -> BlockStoreStats:
        return BlockStoreStats(
            block_count=3, block_bytes=300, map_used_bytes=4096, map_size_bytes=1 << 30
        )
