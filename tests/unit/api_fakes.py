"""In-memory test doubles for the HTTP API tests: an ObjectService and a PeerState."""

from __future__ import annotations

import hashlib
import itertools
import time
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass, field

from dfspeer.blockstore.store import BlockStoreStats
from dfspeer.errors import BadDigest, IncompleteBody, InvalidRange, NoSuchKey
from dfspeer.gossip import Member, MemberState
from dfspeer.objects import ListResult, ObjectInfo
from dfspeer.ring import Ring, RingMember


@dataclass
class FakeObjects:
    """ObjectService contract, in memory. ``piece`` = bytes per yielded download chunk."""

    piece: int = 4
    fail_download_after: int | None = None  # raise after this many pieces
    explode: bool = False  # every call raises an unexpected error
    objects: dict[tuple[str, str], tuple[ObjectInfo, bytes]] = field(default_factory=dict)
    upload_pieces: list[int] = field(default_factory=list)  # sizes seen by the last upload
    upload_errors: list[BaseException] = field(default_factory=list)
    list_calls: list[dict[str, object]] = field(default_factory=list)
    get_calls: list[tuple[int, int | None]] = field(default_factory=list)
    stat_calls: int = 0
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
        )
        self.objects[(bucket, key)] = (info, bytes(data))
        return info

    async def stat_object(self, bucket: str, key: str) -> ObjectInfo:
        self._check()
        self.stat_calls += 1
        try:
            return self.objects[(bucket, key)][0]
        except KeyError:
            raise NoSuchKey(f"{bucket}/{key} does not exist") from None

    async def get_object(
        self, bucket: str, key: str, *, start: int = 0, end: int | None = None
    ) -> tuple[ObjectInfo, AsyncIterator[bytes]]:
        self._check()
        try:
            info, data = self.objects[(bucket, key)]
        except KeyError:
            raise NoSuchKey(f"{bucket}/{key} does not exist") from None
        end = info.size if end is None else min(end, info.size)  # clamped, as the service does
        if start < 0 or start > end or (start == info.size and info.size):
            raise InvalidRange("bad range")
        self.get_calls.append((start, end))
        return info, self._pieces(data[start:end])

    async def _pieces(self, data: bytes) -> AsyncIterator[bytes]:
        for i, offset in enumerate(range(0, len(data), self.piece)):
            if self.fail_download_after is not None and i >= self.fail_download_after:
                raise RuntimeError("replica went away")
            yield data[offset : offset + self.piece]

    async def delete_object(self, bucket: str, key: str) -> None:
        self._check()
        self.objects.pop((bucket, key), None)

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
