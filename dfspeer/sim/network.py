"""An in-memory network for peer RPC, with seeded faults.

:class:`SimRpc` is a :class:`~dfspeer.cluster.rpc.PeerRpcClient` whose calls travel through
a :class:`SimNetwork` instead of HTTP: each call waits a seeded one-way delay (so messages
reorder), may be lost on the way there (the caller times out: :class:`PeerUnreachable`
after ``timeout_s``) or on the way back (the target applied it; the caller still times
out), and is refused at once by a crashed target or across a partition. On arrival the
call runs the body of the matching ``/internal/`` handler (:mod:`dfspeer.api.internal`,
:mod:`~dfspeer.api.internal_hints`, :mod:`~dfspeer.api.internal_dedup`) against the target
peer's own block store, hint store and table schemas, inside the target's task context, so
a crash of the target cancels it. Values cross as CBOR, as on the wire. Signing and HTTP
framing are not simulated. Errors are the client's: ``RpcError`` with the status and code
the handler would answer, ``PeerStoreFull``, ``BlockNotFound``, ``None`` for a missing
record.

Gossip crosses the same network (:mod:`.gossip` drives each peer's SWIM core): a datagram
(:meth:`SimNetwork.send_datagram`) gets the same seeded delay and is lost with the same
probability, across a partition, or at a closed port (a crashed peer), silently as on UDP;
a push-pull exchange (:meth:`SimNetwork.push_pull`) is a request and a reply whose legs
fail like an RPC's, with the agent's connect and stream timeouts. Every datagram and leg
goes into the message trace.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import random
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import cbor2

from dfspeer.blockstore import (
    BlockNotFound,
    BlockStore,
    BlockStoreError,
    CorruptBlock,
    PutBlock,
    StoreFull,
    TableUpdate,
)
from dfspeer.blockstore.merkle_diff import serve as merkle_serve
from dfspeer.blockstore.summary import SummaryReader
from dfspeer.cluster.handoff import HintsFull, HintStore
from dfspeer.cluster.rpc import PeerRpcClient, PeerStoreFull
from dfspeer.cluster.table import TableSchema
from dfspeer.errors import PeerUnreachable, RpcError
from dfspeer.gossip import Keyring
from dfspeer.gossip.agent import CONNECT_TIMEOUT_S, STREAM_TIMEOUT_S

_T = TypeVar("_T")
BLOCK_REFS = "block_refs"
Address = tuple[str, int]
"""A gossip address, ``(host, port)``."""


class GossipPort(Protocol):
    """What the network needs of a simulated peer's gossip driver (:mod:`.gossip`)."""

    @property
    def peer_id(self) -> str: ...

    def receive_datagram(self, data: bytes, source: Address) -> None: ...

    def serve_push_pull(self, state: bytes) -> bytes | None: ...


class Endpoint(Protocol):
    """What the network needs of a simulated peer."""

    @property
    def peer_id(self) -> str: ...

    @property
    def store(self) -> BlockStore: ...

    @property
    def hints(self) -> HintStore: ...

    @property
    def tables(self) -> Mapping[str, TableSchema[Any]]: ...

    @property
    def context(self) -> contextvars.Context: ...

    @property
    def up(self) -> bool: ...


@dataclass
class Faults:
    """The network's current faults. ``drop``: probability that a message is lost (each
    way); ``delay_s``: one-way delay range, seconds; ``cut``: pairs of peer ids that cannot
    talk (both directions)."""

    drop: float = 0.0
    delay_s: tuple[float, float] = (0.0005, 0.005)
    cut: set[frozenset[str]] = field(default_factory=set)


class SimNetwork:
    """Delivers :class:`SimRpc` calls between the registered endpoints (module docstring).
    ``log(event)``: where delivery faults are recorded (the run's event log)."""

    def __init__(self, rng: random.Random, log: Callable[[str], None]) -> None:
        self.rng = rng
        self.log = log
        self.faults = Faults()
        self.endpoints: dict[str, Endpoint] = {}  # by API address
        self.gossip_ports: dict[Address, GossipPort] = {}  # the running gossip cores
        self.messages = 0
        self.dropped = 0
        self.datagrams = 0
        self.datagrams_dropped = 0
        self.trace = hashlib.sha256()
        """A running hash of every message leg (time, ends, fate): the run's fingerprint at
        message granularity, logged at the end (:meth:`fingerprint`)."""

    def fingerprint(self) -> str:
        """Hex digest of :attr:`trace` so far."""
        return self.trace.hexdigest()[:16]

    def address_of(self, peer_id: str) -> str:
        return f"{peer_id}.sim:1"

    def gossip_address_of(self, peer_id: str) -> Address:
        return (f"{peer_id}.sim", 2)

    def partition(self, side_a: Sequence[str], side_b: Sequence[str]) -> None:
        self.faults.cut |= {frozenset((a, b)) for a in side_a for b in side_b}

    def heal(self) -> None:
        self.faults = Faults()

    async def _leg(self, src: str, dst: str, timeout_s: float) -> None:
        """One way of a message: its delay, or its loss (the sender waits out its timeout)."""
        self.messages += 1
        lo, hi = self.faults.delay_s
        await asyncio.sleep(self.rng.uniform(lo, hi))
        lost = frozenset((src, dst)) in self.faults.cut or self.rng.random() < self.faults.drop
        now = asyncio.get_running_loop().time()
        self.trace.update(f"{now!r} {src}>{dst} {lost}\n".encode())
        if lost:
            self.dropped += 1
            await asyncio.sleep(timeout_s)
            raise PeerUnreachable(f"{dst}: simulated loss")

    async def call(
        self,
        src: str,
        address: str,
        timeout_s: float,
        body: Callable[[Endpoint], Coroutine[Any, Any, _T]],
    ) -> _T:
        """Deliver one call from peer ``src`` to the peer at ``address`` and back."""
        target = self.endpoints.get(address)
        if target is None or not target.up:
            await asyncio.sleep(self.rng.uniform(*self.faults.delay_s))
            raise PeerUnreachable(f"{address}: connection refused (simulated)")
        await self._leg(src, target.peer_id, timeout_s)
        if not target.up:
            raise PeerUnreachable(f"{address}: connection refused (simulated)")
        loop = asyncio.get_running_loop()
        task: asyncio.Task[_T] = loop.create_task(body(target), context=target.context.copy())
        await asyncio.wait([task])
        if task.cancelled():  # the target crashed while serving
            raise PeerUnreachable(f"{address}: connection reset (simulated crash)")
        result = task.result()
        await self._leg(target.peer_id, src, timeout_s)
        return result

    # ------------------------------------------------------------------ gossip
    def send_datagram(self, src: str, source: Address, dest: Address, data: bytes) -> None:
        """Send one gossip datagram from peer ``src`` (at ``source``) to ``dest``: it
        arrives after a seeded delay unless lost (``drop``), cut off (a partition) or the
        port is closed then (the peer crashed): then it vanishes, as UDP does."""
        self.datagrams += 1
        delay = self.rng.uniform(*self.faults.delay_s)
        loop = asyncio.get_running_loop()
        loop.call_later(delay, self._arrive, src, source, dest, data)

    def _arrive(self, src: str, source: Address, dest: Address, data: bytes) -> None:
        port = self.gossip_ports.get(dest)
        dst = port.peer_id if port is not None else dest[0]
        lost = frozenset((src, dst)) in self.faults.cut or self.rng.random() < self.faults.drop
        now = asyncio.get_running_loop().time()
        self.trace.update(f"{now!r} {src}>{dst} udp {lost}\n".encode())
        if lost or port is None:
            self.datagrams_dropped += 1
            return
        port.receive_datagram(data, source)

    async def push_pull(self, src: str, dest: Address, state: bytes) -> bytes:
        """A full-state exchange from peer ``src`` with the gossip port at ``dest``: the
        request leg, the target's merge and reply (:meth:`GossipPort.serve_push_pull`),
        the reply leg. Raises :class:`PeerUnreachable` for a closed port, a lost leg
        (after the agent's timeouts) or a rejected request."""
        port = self.gossip_ports.get(dest)
        if port is None:
            await asyncio.sleep(self.rng.uniform(*self.faults.delay_s))
            raise PeerUnreachable(f"{dest}: connection refused (simulated)")
        await self._leg(src, port.peer_id, CONNECT_TIMEOUT_S)
        if self.gossip_ports.get(dest) is not port:
            raise PeerUnreachable(f"{dest}: connection reset (simulated crash)")
        reply = port.serve_push_pull(state)
        if reply is None:
            raise PeerUnreachable(f"{dest}: push-pull rejected")
        await self._leg(port.peer_id, src, STREAM_TIMEOUT_S - CONNECT_TIMEOUT_S)
        return reply


def _copy(value: Any) -> Any:
    """A value as the other side decodes it."""
    return cbor2.loads(cbor2.dumps(value))


def _server_error(exc: BlockStoreError, address: str) -> RpcError:
    status = 507 if isinstance(exc, StoreFull) else 500
    cls = PeerStoreFull if status == 507 else RpcError
    return cls(f"{address}: {status} {exc.code}: {exc.message}", status=status, code=exc.code)


class SimRpc(PeerRpcClient):
    """Peer RPC over a :class:`SimNetwork` (module docstring); one per simulated peer."""

    def __init__(self, network: SimNetwork, self_id: str, *, timeout_s: float) -> None:
        super().__init__(Keyring([bytes(32)]), self_id, timeout_s=timeout_s)
        self.network = network
        self.timeout_s = timeout_s

    async def close(self) -> None:
        """Nothing to close."""

    async def _send(self, address: str, body: Callable[[Endpoint], Awaitable[_T]]) -> _T:
        """Run ``body`` at the peer at ``address``, mapping store errors as the HTTP
        handlers do."""

        async def guarded(ep: Endpoint) -> _T:
            try:
                return await body(ep)
            except (BlockNotFound, RpcError):
                raise
            except HintsFull as exc:
                raise RpcError(f"{address}: 507 {exc.code}", status=507, code=exc.code) from exc
            except BlockStoreError as exc:
                raise _server_error(exc, address) from exc

        return await self.network.call(self.self_id, address, self.timeout_s, guarded)

    # ------------------------------------------------------------------ blocks
    async def put_block(
        self, address: str, digest: bytes, data: bytes, *, ref: Any | None = None, **hints: Any
    ) -> None:
        """As :meth:`PeerRpcClient.put_block`; batching ``hints`` (e.g. ``linger``) are moot
        on the simulated disk."""
        record = _copy(ref) if ref is not None else None

        async def body(ep: Endpoint) -> None:
            if record is None:
                await ep.store.put_verified(digest, data)
                return
            schema = ep.tables[BLOCK_REFS]
            decoded = schema.decode(record)
            key = digest + decoded.version.encode()
            merge = schema.merge_records
            update = TableUpdate(BLOCK_REFS, key, lambda cur: merge(cur, record))
            await ep.store.write_batch([PutBlock(data, digest), update])

        await self._send(address, body)

    async def _read_block(
        self, address: str, read: Callable[[Endpoint], Awaitable[bytes]]
    ) -> bytes:
        """``read`` on the target's store, a corrupt block answered as the handler does."""

        async def body(ep: Endpoint) -> bytes:
            try:
                return await read(ep)
            except CorruptBlock as exc:
                raise RpcError(
                    f"{address}: 500 corrupt_block", status=500, code="corrupt_block"
                ) from exc

        return await self._send(address, body)

    async def get_block(self, address: str, digest: bytes) -> bytes:
        return await self._read_block(address, lambda ep: ep.store.get(digest))

    async def get_block_range(self, address: str, digest: bytes, lo: int, hi: int) -> bytes:
        data = await self._read_block(address, lambda ep: ep.store.get_range(digest, lo, hi))
        if len(data) != hi - lo:
            raise RpcError(f"{address}: answered {len(data)} bytes for {hi - lo}")
        return data

    async def has_block(self, address: str, digest: bytes) -> bool:
        return await self._send(address, lambda ep: ep.store.has(digest))

    async def has_blocks(self, address: str, digests: Sequence[bytes]) -> list[bool]:
        wanted = list(digests)

        async def body(ep: Endpoint) -> list[bool]:
            return [await ep.store.has(d) for d in wanted]

        return await self._send(address, body)

    # ------------------------------------------------------------------ records
    async def put_record(self, address: str, table: str, key: bytes, value: Any) -> None:
        record = _copy(value)

        async def body(ep: Endpoint) -> None:
            merge = ep.tables[table].merge_records
            merge(None, record)
            await ep.store.table(table).update(key, lambda cur: merge(cur, record))

        await self._send(address, body)

    async def get_record(self, address: str, table: str, key: bytes) -> Any | None:
        async def body(ep: Endpoint) -> Any | None:
            return _copy(ep.store.table(table).get(key))

        return await self._send(address, body)

    async def put_hinted_block(self, address: str, target: str, digest: bytes, data: bytes) -> None:
        await self._send(address, lambda ep: ep.hints.add_block(target, digest, data))

    async def put_hinted_record(
        self, address: str, target: str, table: str, key: bytes, value: Any
    ) -> None:
        record = _copy(value)

        async def body(ep: Endpoint) -> None:
            ep.hints.schema(table).decode(record)
            await ep.hints.add_record(target, table, key, record)

        await self._send(address, body)

    async def retract_record(self, address: str, table: str, key: bytes, version: str) -> bool:
        async def body(ep: Endpoint) -> bool:
            schema = ep.tables[table]
            removed = False

            def drop(cur: Any | None) -> Any | None:
                nonlocal removed
                left = schema.retract_record(cur, version)
                removed = cur is not None and left != cur
                return left

            await ep.store.table(table).update(key, drop)
            return removed

        return await self._send(address, body)

    async def scan_records(
        self,
        address: str,
        table: str,
        *,
        prefix: bytes,
        start_after: bytes | None,
        limit: int,
        omit: tuple[str, ...] = (),
    ) -> list[tuple[bytes, Any]]:
        async def body(ep: Endpoint) -> list[tuple[bytes, Any]]:
            rows = ep.store.table(table).scan(prefix=prefix, start_after=start_after, limit=limit)
            if omit:
                rows = [
                    (k, {f: x for f, x in v.items() if f not in omit} if isinstance(v, dict) else v)
                    for k, v in rows
                ]
            return [(bytes(k), v) for k, v in _copy([[k, v] for k, v in rows])]

        return await self._send(address, body)

    async def merkle_exchange(self, address: str, tree: str, request: bytes) -> bytes:
        async def body(ep: Endpoint) -> bytes:
            def open_reader(name: str) -> SummaryReader:
                if name != tree:
                    raise ValueError(f"summary request names {name!r} on the route of {tree!r}")
                return ep.store.merkle(name)

            try:
                return merkle_serve(open_reader, request)
            except ValueError as exc:
                raise RpcError(
                    f"{address}: 400 {exc}", status=400, code="invalid_argument"
                ) from exc

        return await self._send(address, body)

    async def status(self, address: str) -> dict[str, Any]:
        async def body(ep: Endpoint) -> dict[str, Any]:
            stats = ep.store.stats()
            return {"id": ep.peer_id, "blocks": stats.block_count}

        return await self._send(address, body)
